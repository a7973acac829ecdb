//! The three load shapes: closed loop, open model (fixed arrival rate) and concurrent SSE streams.

use crate::client::{Conn, Target};
use crate::schedule::Schedule;
use crate::sse::SseCounter;
use crate::stats::{Summary, Tally, summarize};
use anyhow::Result;
use http_body_util::BodyExt;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Sends one request on `conn` (opening it if needed) and reads the whole body.
///
/// Returns the status, or `None` on a transport error or timeout (the connection is dropped).
async fn one(conn: &mut Option<Conn>, t: &Target, timeout: Duration) -> Option<u16> {
    let fut = async {
        let c = match conn {
            Some(c) if c.is_usable() => c,
            _ => conn.insert(Conn::open(t.addr).await?),
        };
        let resp = c.send(t.request()?).await?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await?;
        anyhow::Ok(status)
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(s)) => Some(s),
        _ => {
            *conn = None;
            None
        }
    }
}

/// Result of a closed-loop or open-model run.
#[derive(Debug, Serialize)]
pub struct LoadReport {
    /// `closed` or `open`.
    pub mode: &'static str,
    /// Connections (workers) used.
    pub connections: usize,
    /// Measured window, seconds (after warm-up).
    pub duration_s: f64,
    /// Target arrival rate (open model only), requests/s.
    pub target_rps: Option<f64>,
    /// Responses with a status in the measured window.
    pub requests: u64,
    /// Responses per status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Transport errors and timeouts.
    pub errors: u64,
    /// Responses per second in the measured window (any status).
    pub rps: f64,
    /// Latency; in the open model measured from the *intended* send time.
    pub latency_ms: Summary,
    /// Open model only: latency measured from the actual send (service time).
    pub service_ms: Option<Summary>,
    /// Open model only: scheduled requests never sent because the run overran its deadline.
    pub unsent: Option<u64>,
}

/// Options shared by the request/response modes.
#[derive(Debug, Clone, Copy)]
pub struct LoadOpts {
    /// Connections (closed: concurrent loops; open: worker pool).
    pub connections: usize,
    /// Measured duration.
    pub duration: Duration,
    /// Warm-up before measuring (requests in it are not recorded).
    pub warmup: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// Closed loop: each connection sends its next request as soon as the previous one answered.
pub async fn closed(t: Arc<Target>, o: LoadOpts) -> Result<LoadReport> {
    let start = Instant::now();
    let measure_from = start + o.warmup;
    let end = measure_from + o.duration;
    let mut handles = Vec::with_capacity(o.connections);
    for _ in 0..o.connections {
        let t = t.clone();
        handles.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut conn = None;
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let r = one(&mut conn, &t, o.timeout).await;
                if sent < measure_from {
                    continue;
                }
                match r {
                    Some(s) => {
                        *tally.statuses.entry(s).or_default() += 1;
                        tally.latencies_us.push(sent.elapsed().as_micros() as u64);
                    }
                    None => {
                        tally.errors += 1;
                        // Do not spin on a refused connection.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for h in handles {
        all.merge(h.await?);
    }
    let secs = o.duration.as_secs_f64();
    Ok(LoadReport {
        mode: "closed",
        connections: o.connections,
        duration_s: secs,
        target_rps: None,
        requests: all.responses(),
        rps: all.responses() as f64 / secs,
        statuses: all.statuses,
        errors: all.errors,
        latency_ms: summarize(&mut all.latencies_us),
        service_ms: None,
        unsent: None,
    })
}

/// Open model: requests are due at a fixed rate; a pool of connections takes the next due
/// request when free. Latency counts from the intended time, so queueing shows.
///
/// The schedule is kept by a dedicated OS thread sleeping with `nanosleep` precision (tokio's
/// timer has a 1 ms granularity, which would add up to 1 ms of artificial lateness); it hands
/// each due request to the worker pool through a channel, where it waits if every connection
/// is busy.
pub async fn open(t: Arc<Target>, rate: f64, o: LoadOpts) -> Result<LoadReport> {
    let schedule = Schedule::new(rate, o.warmup + o.duration)?;
    let first_measured = schedule.first_at_or_after(o.warmup);
    let start = std::time::Instant::now() + Duration::from_millis(50);
    let deadline = start + o.warmup + o.duration + Duration::from_secs(5);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let dispatcher = std::thread::spawn(move || {
        let mut sent = 0u64;
        for k in 0..schedule.total() {
            let intended = start + schedule.offset(k);
            let now = std::time::Instant::now();
            if now > deadline {
                break;
            }
            if intended > now {
                std::thread::sleep(intended - now);
            }
            if tx.send((k, Instant::from_std(intended))).is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut handles = Vec::with_capacity(o.connections);
    for _ in 0..o.connections {
        let (t, rx) = (t.clone(), rx.clone());
        handles.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut conn = None;
            loop {
                let next = rx.lock().await.recv().await;
                let Some((k, intended)) = next else { break };
                let sent = Instant::now();
                let r = one(&mut conn, &t, o.timeout).await;
                if k < first_measured {
                    continue;
                }
                match r {
                    Some(s) => {
                        *tally.statuses.entry(s).or_default() += 1;
                        tally.latencies_us.push(intended.elapsed().as_micros() as u64);
                        tally.service_us.push(sent.elapsed().as_micros() as u64);
                    }
                    None => tally.errors += 1,
                }
            }
            tally
        }));
    }
    let mut all = Tally::default();
    for h in handles {
        all.merge(h.await?);
    }
    let dispatched = dispatcher.join().map_err(|_| anyhow::anyhow!("dispatcher thread failed"))?;
    let unsent = schedule.total().saturating_sub(dispatched);
    let secs = o.duration.as_secs_f64();
    Ok(LoadReport {
        mode: "open",
        connections: o.connections,
        duration_s: secs,
        target_rps: Some(rate),
        requests: all.responses(),
        rps: all.responses() as f64 / secs,
        statuses: all.statuses,
        errors: all.errors,
        latency_ms: summarize(&mut all.latencies_us),
        service_ms: Some(summarize(&mut all.service_us)),
        unsent: Some(unsent),
    })
}

/// Result of a streaming run.
#[derive(Debug, Serialize)]
pub struct StreamReport {
    /// Always `stream`.
    pub mode: &'static str,
    /// Streams requested.
    pub streams: usize,
    /// Streams whose connection opened before the start signal.
    pub connected: usize,
    /// Text-bearing chunks each stream must deliver (if given).
    pub expect_chunks: Option<u64>,
    /// Responses per status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Connect failures, transport errors and timeouts.
    pub errors: u64,
    /// Streams that ended with exactly one `data: [DONE]`.
    pub completed: u64,
    /// Streams with status 200, exactly one `[DONE]` and (if expected) the expected chunk count.
    pub complete_and_whole: u64,
    /// True when every stream is `complete_and_whole`.
    pub all_delivered: bool,
    /// Payload `data:` lines over all streams (text, role, finish and usage chunks).
    pub data_lines_total: u64,
    /// Fewest text-bearing chunks (`choices[0].delta.content` non-empty) in one stream.
    pub chunks_min: u64,
    /// Most text-bearing chunks in one stream.
    pub chunks_max: u64,
    /// Text-bearing chunks over all streams.
    pub chunks_total: u64,
    /// Time from send to the response head, ms.
    pub ttfb_ms: Summary,
    /// Time from send to the first text-bearing `data:` line (time to first token), ms.
    pub ttft_ms: Summary,
    /// Time from send to the end of the stream, ms.
    pub total_ms: Summary,
}

#[derive(Default)]
struct StreamOutcome {
    status: Option<u16>,
    ttfb_us: Option<u64>,
    ttft_us: Option<u64>,
    total_us: Option<u64>,
    chunks: u64,
    data_lines: u64,
    done_lines: u64,
    error: bool,
}

/// Opens `streams` connections first (64 connects at a time), then starts every request at
/// the same instant and reads each SSE stream to its end.
pub async fn stream(
    t: Arc<Target>,
    streams: usize,
    expect_chunks: Option<u64>,
    timeout: Duration,
) -> Result<StreamReport> {
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    let connect_gate = Arc::new(tokio::sync::Semaphore::new(64));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<bool>(streams.max(1));
    let mut handles = Vec::with_capacity(streams);
    for _ in 0..streams {
        let (t, mut go, gate, ready) = (t.clone(), go_rx.clone(), connect_gate.clone(), ready_tx.clone());
        handles.push(tokio::spawn(async move {
            let mut out = StreamOutcome::default();
            let conn = {
                let _permit = gate.acquire().await;
                Conn::open(t.addr).await
            };
            let _ = ready.send(conn.is_ok()).await;
            let Ok(mut conn) = conn else {
                out.error = true;
                return out;
            };
            while !*go.borrow_and_update() {
                if go.changed().await.is_err() {
                    break;
                }
            }
            let sent = Instant::now();
            let run = async {
                let req = t.request()?;
                let resp = conn.send(req).await?;
                out.ttfb_us = Some(sent.elapsed().as_micros() as u64);
                out.status = Some(resp.status().as_u16());
                let mut body = resp.into_body();
                let mut sse = SseCounter::default();
                while let Some(frame) = body.frame().await {
                    let frame = frame?;
                    if let Some(data) = frame.data_ref() {
                        let fed = sse.feed(data);
                        if fed.content_lines > 0 && out.ttft_us.is_none() {
                            out.ttft_us = Some(sent.elapsed().as_micros() as u64);
                        }
                    }
                }
                out.chunks = sse.content_lines;
                out.data_lines = sse.data_lines;
                out.done_lines = sse.done_lines;
                out.total_us = Some(sent.elapsed().as_micros() as u64);
                anyhow::Ok(())
            };
            match tokio::time::timeout(timeout, run).await {
                Ok(Ok(())) => {}
                _ => out.error = true,
            }
            out
        }));
    }
    drop(ready_tx);
    let mut connected = 0;
    for _ in 0..streams {
        match ready_rx.recv().await {
            Some(true) => connected += 1,
            Some(false) => {}
            None => break,
        }
    }
    let _ = go_tx.send(true);
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let (mut ttfb, mut ttft, mut total) = (Vec::new(), Vec::new(), Vec::new());
    let (mut errors, mut completed, mut whole, mut cmin, mut cmax, mut ctotal, mut dtotal) =
        (0, 0, 0, u64::MAX, 0, 0, 0);
    for h in handles {
        let o = h.await?;
        if let Some(s) = o.status {
            *statuses.entry(s).or_default() += 1;
        }
        errors += u64::from(o.error);
        ttfb.extend(o.ttfb_us);
        ttft.extend(o.ttft_us);
        total.extend(o.total_us);
        cmin = cmin.min(o.chunks);
        cmax = cmax.max(o.chunks);
        ctotal += o.chunks;
        dtotal += o.data_lines;
        let done = !o.error && o.done_lines == 1;
        completed += u64::from(done);
        let ok = done && o.status == Some(200) && expect_chunks.is_none_or(|e| o.chunks == e);
        whole += u64::from(ok);
    }
    Ok(StreamReport {
        mode: "stream",
        streams,
        connected,
        expect_chunks,
        statuses,
        errors,
        completed,
        complete_and_whole: whole,
        all_delivered: whole == streams as u64 && streams > 0,
        chunks_min: if cmin == u64::MAX { 0 } else { cmin },
        chunks_max: cmax,
        chunks_total: ctotal,
        data_lines_total: dtotal,
        ttfb_ms: summarize(&mut ttfb),
        ttft_ms: summarize(&mut ttft),
        total_ms: summarize(&mut total),
    })
}
