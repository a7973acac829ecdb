//! The call log: one [`CallLog`] record per data-plane call, written off the request path.
//!
//! Each request gets a [`CallRecorder`] (created by the request-context middleware) that layers
//! fill in as they learn things (auth: team/app/key; handler: model, route, usage). The record is
//! sent exactly once, to a bounded channel read by one writer task that inserts in batches of up
//! to [`BATCH_MAX`] rows or every [`BATCH_WINDOW`]. Requests never wait for the database: when
//! the channel is full the record is dropped with a warning.
//!
//! Streams defer the record to the end of the body ([`CallRecorder::defer`]); when the client
//! disconnects, the body (and so its guard) is dropped and the record is sent with the usage
//! seen so far, status 499 and `error_code = "client_disconnected"`.
//!
//! `status` is the HTTP status answered, except for streams that failed after their 200 went
//! out: a mid-stream upstream error logs the status that error would have had (e.g. 502) and
//! its code; a stream cut by the shutdown drain deadline logs 503 `unavailable`; a client
//! disconnect logs 499. So `errors_only` queries find every call that did not complete.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gatehouse_providers::catalog::Catalog;
use gatehouse_store::{CallLog, Store};
use gatehouse_types::{Id, Timestamp, Usage, new_id, now};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Maximum rows per insert.
pub const BATCH_MAX: usize = 256;
/// Maximum time a record waits in the writer before its batch is inserted.
pub const BATCH_WINDOW: Duration = Duration::from_millis(200);
/// Capacity of the channel between requests and the writer.
pub const CHANNEL_CAPACITY: usize = 16_384;
/// Status logged when the client went away before the answer was complete (nginx convention).
pub const STATUS_CLIENT_CLOSED: u16 = 499;
/// `error_code` logged when the client went away.
pub const CLIENT_DISCONNECTED: &str = "client_disconnected";

/// The sending side of the call log (cheap to clone).
#[derive(Clone)]
pub struct CallLogSink {
    tx: mpsc::Sender<CallLog>,
    /// Prices for `CallLog::cost_usd` (none: cost not computed).
    catalog: Option<Arc<Catalog>>,
}

impl CallLogSink {
    /// A sink and the receiver for [`run_writer`].
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<CallLog>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self { tx, catalog: None }, rx)
    }

    /// The same sink, pricing every record with `catalog` (`CallLog::cost_usd`).
    pub fn with_catalog(mut self, catalog: Arc<Catalog>) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// The cost of a call in USD: its upstream model's catalog prices applied to its exact
    /// usage; `None` when the call was not routed or the model is not in the catalog.
    pub fn cost_usd(&self, upstream_model: Option<&str>, usage: &Usage) -> Option<f64> {
        let entry = self.catalog.as_ref()?.lookup(upstream_model?)?;
        Some(entry.cost_usd(usage))
    }

    /// Queues a record without waiting. Full or closed channel: the record is dropped and a
    /// warning logged (the request never blocks on the call log).
    pub fn send(&self, record: CallLog) {
        if let Err(e) = self.tx.try_send(record) {
            let reason = match e {
                mpsc::error::TrySendError::Full(_) => "channel full",
                mpsc::error::TrySendError::Closed(_) => "writer closed",
            };
            tracing::warn!(reason, "call log record dropped");
        }
    }
}

/// The writer task: batches records and inserts them with [`Store::insert_call_logs`] until
/// `closing` is cancelled, then drains everything still queued and returns.
pub async fn run_writer(store: Arc<dyn Store>, mut rx: mpsc::Receiver<CallLog>, closing: CancellationToken) {
    let mut buf: Vec<CallLog> = Vec::with_capacity(BATCH_MAX);
    loop {
        let first = tokio::select! {
            biased;
            () = closing.cancelled() => break,
            r = rx.recv() => match r { Some(r) => r, None => break },
        };
        buf.push(first);
        let window = tokio::time::sleep(BATCH_WINDOW);
        tokio::pin!(window);
        while buf.len() < BATCH_MAX {
            tokio::select! {
                biased;
                r = rx.recv() => match r { Some(r) => buf.push(r), None => break },
                () = &mut window => break,
                () = closing.cancelled() => break,
            }
        }
        flush(store.as_ref(), &mut buf).await;
    }
    rx.close();
    while let Some(r) = rx.recv().await {
        buf.push(r);
        if buf.len() >= BATCH_MAX {
            flush(store.as_ref(), &mut buf).await;
        }
    }
    flush(store.as_ref(), &mut buf).await;
}

async fn flush(store: &dyn Store, buf: &mut Vec<CallLog>) {
    if buf.is_empty() {
        return;
    }
    for attempt in 1..=3u32 {
        match store.insert_call_logs(buf).await {
            Ok(()) => {
                buf.clear();
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, rows = buf.len(), attempt, "call log insert failed");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
        }
    }
    tracing::error!(rows = buf.len(), "call log batch lost after 3 attempts");
    buf.clear();
}

/// What is known about one call so far.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    pub team_id: Option<Id>,
    pub app_id: Option<Id>,
    pub credential_id: Option<Id>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    pub stream: bool,
    pub upstream_latency_ms: Option<u64>,
    pub ttft_ms: Option<u64>,
    pub usage: Usage,
    pub upstream_request_id: Option<String>,
    /// Upstream calls made (failover attempts included; 0 = none).
    pub attempts: u32,
    /// Health key of the deployment of the last attempt (the one that served on success).
    pub deployment: Option<String>,
    /// Answered from the response cache (`crate::cache`).
    pub cache_hit: bool,
}

struct Inner {
    draft: Draft,
    deferred: bool,
    sent: bool,
}

/// The per-request call-log handle (request extension; cheap to clone). Sends one record, once.
#[derive(Clone)]
pub struct CallRecorder {
    shared: Arc<Mutex<Inner>>,
    sink: CallLogSink,
    request_id: Arc<str>,
    endpoint: Arc<str>,
    started: Instant,
    created_at: Timestamp,
}

impl CallRecorder {
    /// A recorder for a request that started `started` (monotonic) / `created_at` (wall clock).
    pub fn new(sink: CallLogSink, request_id: &str, endpoint: &str, started: Instant, created_at: Timestamp) -> Self {
        Self {
            shared: Arc::new(Mutex::new(Inner { draft: Draft::default(), deferred: false, sent: false })),
            sink,
            request_id: request_id.into(),
            endpoint: endpoint.into(),
            started,
            created_at,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `x-request-id` of this call.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Monotonic start of the request (for latency, TTFT and upstream timings).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Milliseconds since the request started.
    pub fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Changes the draft.
    pub fn update(&self, f: impl FnOnce(&mut Draft)) {
        f(&mut self.lock().draft);
    }

    /// A copy of the draft (tests and diagnostics).
    pub fn snapshot(&self) -> Draft {
        self.lock().draft.clone()
    }

    /// Hands the record over to a streaming body: the middleware will not send it.
    pub fn defer(&self) {
        self.lock().deferred = true;
    }

    /// Whether a streaming body owns the record.
    pub fn is_deferred(&self) -> bool {
        self.lock().deferred
    }

    /// Sends the record with the final `status` and `error_code`, unless already sent.
    pub fn finish(&self, status: u16, error_code: Option<&str>) {
        let record = {
            let mut inner = self.lock();
            if inner.sent {
                return;
            }
            inner.sent = true;
            let d = &inner.draft;
            CallLog {
                id: new_id(),
                created_at: self.created_at,
                request_id: self.request_id.to_string(),
                team_id: d.team_id,
                app_id: d.app_id,
                credential_id: d.credential_id,
                endpoint: self.endpoint.to_string(),
                model: d.model.clone(),
                provider: d.provider.clone(),
                upstream_model: d.upstream_model.clone(),
                stream: d.stream,
                status,
                error_code: error_code.map(str::to_string),
                latency_ms: self.elapsed_ms(),
                upstream_latency_ms: d.upstream_latency_ms,
                ttft_ms: d.ttft_ms,
                prompt_tokens: d.usage.prompt_tokens,
                completion_tokens: d.usage.completion_tokens,
                cached_tokens: d.usage.cached_tokens,
                upstream_request_id: d.upstream_request_id.clone(),
                cache_write_tokens: d.usage.cache_write_tokens,
                reasoning_tokens: d.usage.reasoning_tokens,
                // A cache hit costs nothing upstream.
                cost_usd: if d.cache_hit { Some(0.0) } else { self.sink.cost_usd(d.upstream_model.as_deref(), &d.usage) },
                cache_hit: d.cache_hit,
                attempts: d.attempts,
                deployment: d.deployment.clone(),
            }
        };
        crate::metrics::request(&record.endpoint, record.status, record.stream, record.latency_ms, record.ttft_ms, record.upstream_latency_ms);
        self.sink.send(record);
    }

    /// Whether the record was sent.
    pub fn is_sent(&self) -> bool {
        self.lock().sent
    }
}

/// Sends the record as "client disconnected" when dropped before [`RecordGuard::disarm`] or an
/// explicit finish: used by the request middleware (request future dropped) and by the stream
/// body (response body dropped mid-stream).
pub struct RecordGuard {
    recorder: CallRecorder,
    /// When true, a deferred record is left alone on drop (the stream body owns it).
    respect_defer: bool,
}

impl RecordGuard {
    /// Guard for the request middleware: leaves deferred records to the stream body.
    pub fn for_request(recorder: CallRecorder) -> Self {
        Self { recorder, respect_defer: true }
    }

    /// Guard for a stream body: always sends on drop unless already sent.
    pub fn for_stream(recorder: CallRecorder) -> Self {
        Self { recorder, respect_defer: false }
    }

    /// The recorder guarded.
    pub fn recorder(&self) -> &CallRecorder {
        &self.recorder
    }
}

impl Drop for RecordGuard {
    fn drop(&mut self) {
        if self.recorder.is_sent() || (self.respect_defer && self.recorder.is_deferred()) {
            return;
        }
        self.recorder.finish(STATUS_CLIENT_CLOSED, Some(CLIENT_DISCONNECTED));
    }
}

/// Wall-clock now, re-exported for the middleware.
pub fn wall_now() -> Timestamp {
    now()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn recorder() -> (CallRecorder, mpsc::Receiver<CallLog>) {
        let (sink, rx) = CallLogSink::channel(8);
        (CallRecorder::new(sink, "rid", "POST /v1/chat/completions", Instant::now(), now()), rx)
    }

    #[test]
    fn finish_sends_once() {
        let (r, mut rx) = recorder();
        r.update(|d| d.model = Some("m".into()));
        r.finish(200, None);
        r.finish(500, Some("x"));
        let rec = rx.try_recv().unwrap();
        assert_eq!(rec.status, 200);
        assert_eq!(rec.model.as_deref(), Some("m"));
        assert_eq!(rec.request_id, "rid");
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn dropped_stream_guard_logs_disconnect_with_partial_usage() {
        let (r, mut rx) = recorder();
        r.defer();
        let request_guard = RecordGuard::for_request(r.clone());
        drop(request_guard);
        assert!(rx.try_recv().is_err(), "deferred record must be left to the stream");
        let g = RecordGuard::for_stream(r.clone());
        g.recorder().update(|d| d.usage.completion_tokens = 3);
        drop(g);
        let rec = rx.try_recv().unwrap();
        assert_eq!(rec.status, STATUS_CLIENT_CLOSED);
        assert_eq!(rec.error_code.as_deref(), Some(CLIENT_DISCONNECTED));
        assert_eq!(rec.completion_tokens, 3);
    }

    #[test]
    fn request_guard_logs_when_future_dropped() {
        let (r, mut rx) = recorder();
        drop(RecordGuard::for_request(r));
        assert_eq!(rx.try_recv().unwrap().status, STATUS_CLIENT_CLOSED);
    }

    #[test]
    fn cost_is_priced_from_the_catalog_when_known() {
        let (sink, mut rx) = CallLogSink::channel(4);
        let sink = sink.with_catalog(Arc::new(Catalog::builtin()));
        let r = CallRecorder::new(sink.clone(), "r", "e", Instant::now(), now());
        r.update(|d| {
            d.upstream_model = Some("gpt-4o-mini-2024-07-18".into());
            d.usage = Usage { prompt_tokens: 1000, completion_tokens: 500, ..Usage::default() };
        });
        r.finish(200, None);
        let cost = rx.try_recv().unwrap().cost_usd.unwrap();
        assert!((cost - (1000.0 * 0.15 + 500.0 * 0.60) / 1e6).abs() < 1e-12, "{cost}");
        let r = CallRecorder::new(sink, "r2", "e", Instant::now(), now());
        r.update(|d| d.upstream_model = Some("unknown-model".into()));
        r.finish(200, None);
        assert_eq!(rx.try_recv().unwrap().cost_usd, None);
    }

    #[test]
    fn full_channel_drops_without_blocking() {
        let (sink, _rx) = CallLogSink::channel(1);
        for _ in 0..3 {
            CallRecorder::new(sink.clone(), "r", "e", Instant::now(), now()).finish(200, None);
        }
    }
}
