//! `gatehouse-load`: the load generator of Gatehouse's benchmark harness (`bench/run`).
//!
//! Subcommands:
//! - `closed`: N connections in a closed loop for a duration → requests/s and latency.
//! - `open`: a fixed arrival rate (open model); latency from each request's intended send time.
//! - `stream`: N concurrent SSE streams → TTFB / time to first `data:` line, chunk counts,
//!   `[DONE]` checks.
//! - `proc`: RSS and CPU seconds of a process tree (JSON).
//! - `key`: a Gatehouse-format API key that no server knows (`unknown`) or with a broken
//!   checksum (`bad-checksum`), for the invalid-key flood.
//!
//! Every load subcommand prints one JSON object on stdout (and writes it to `--out`), a
//! one-line summary on stderr, and with `--watch-pid` adds the watched process trees' RSS
//! (start, peak, end) and CPU seconds under `"proc"`.

mod client;
mod modes;
mod procfs;
mod schedule;
mod sse;
mod stats;
mod watch;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "gatehouse-load", about = "Load generator for the Gatehouse benchmark harness")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Closed loop: N connections, each sending its next request when the last one answered.
    Closed {
        #[command(flatten)]
        req: ReqArgs,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Open model: a fixed arrival rate; latency counts from the intended send time.
    Open {
        #[command(flatten)]
        req: ReqArgs,
        #[command(flatten)]
        load: LoadArgs,
        /// Arrival rate, requests per second.
        #[arg(long)]
        rate: f64,
    },
    /// N concurrent SSE streams, all started at the same instant.
    Stream {
        #[command(flatten)]
        req: ReqArgs,
        /// Number of concurrent streams.
        #[arg(long, default_value_t = 100)]
        streams: usize,
        /// Payload `data:` lines each stream must deliver (besides `[DONE]`).
        #[arg(long)]
        expect_chunks: Option<u64>,
    },
    /// Prints RSS (kB) and CPU seconds of a process and its descendants as JSON.
    Proc {
        /// Root process id.
        #[arg(long)]
        pid: u32,
    },
    /// Prints a Gatehouse-format API key for the invalid-key flood.
    Key {
        /// `unknown`: well-formed with a valid checksum, but issued by no server;
        /// `bad-checksum`: the same with its checksum broken.
        #[arg(long, value_enum)]
        kind: KeyKind,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum KeyKind {
    Unknown,
    BadChecksum,
}

#[derive(Args)]
struct ReqArgs {
    /// Target URL (`http://host:port/path`).
    #[arg(long)]
    url: String,
    /// HTTP method (default: POST when a body is given, else GET).
    #[arg(long)]
    method: Option<String>,
    /// Extra header `Name: value`, repeatable (e.g. `Authorization: Bearer …`).
    #[arg(long = "header", short = 'H')]
    headers: Vec<String>,
    /// Request body as a string.
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// Request body read from a file.
    #[arg(long)]
    body_file: Option<std::path::PathBuf>,
    /// Per-request timeout (e.g. `30s`); for streams the whole stream.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,
    /// Process id of the system under test; its tree's RSS and CPU are reported. Repeatable.
    #[arg(long = "watch-pid")]
    watch_pids: Vec<u32>,
    /// Label copied into the JSON output.
    #[arg(long, default_value = "")]
    label: String,
    /// Also write the JSON result to this file.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

#[derive(Args)]
struct LoadArgs {
    /// Connections (closed: concurrent loops; open: worker pool size).
    #[arg(long, short = 'c', default_value_t = 64)]
    connections: usize,
    /// Measured duration (e.g. `10s`, `500ms`, `1m`).
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Warm-up before measuring.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
}

/// Parses `1500ms`, `10s`, `2m` or a bare number of seconds (`2.5`).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| format!("bad duration {s:?} (use 500ms, 10s, 2m)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

async fn target(req: &ReqArgs) -> Result<Arc<client::Target>> {
    let body = match (&req.body, &req.body_file) {
        (Some(b), _) => Bytes::from(b.clone()),
        (None, Some(p)) => Bytes::from(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?),
        (None, None) => Bytes::new(),
    };
    let method = req.method.clone().unwrap_or_else(|| if body.is_empty() { "GET" } else { "POST" }.to_owned());
    Ok(Arc::new(client::Target::new(&req.url, &method, &req.headers, body).await?))
}

fn emit(req: &ReqArgs, report: serde_json::Value, proc_report: watch::ProcReport) -> Result<()> {
    let mut v = report;
    let obj = v.as_object_mut().ok_or_else(|| anyhow!("report is not an object"))?;
    obj.insert("label".into(), req.label.clone().into());
    obj.insert("url".into(), req.url.clone().into());
    if !proc_report.pids.is_empty() {
        obj.insert("proc".into(), serde_json::to_value(&proc_report)?);
    }
    let text = serde_json::to_string_pretty(&v)?;
    if let Some(p) = &req.out {
        std::fs::write(p, &text).with_context(|| format!("writing {}", p.display()))?;
    }
    println!("{text}");
    Ok(())
}

fn summary_line(label: &str, v: &serde_json::Value) -> String {
    let f = |path: &[&str]| {
        let mut cur = v;
        for p in path {
            cur = &cur[*p];
        }
        cur.as_f64().unwrap_or(f64::NAN)
    };
    match v["mode"].as_str() {
        Some("stream") => format!(
            "[{label}] streams={} whole={} ttft p50={:.2}ms p99={:.2}ms errors={}",
            v["streams"], v["complete_and_whole"], f(&["ttft_ms", "p50"]), f(&["ttft_ms", "p99"]), v["errors"]
        ),
        _ => format!(
            "[{label}] {} rps={:.0} p50={:.3}ms p99={:.3}ms p99.9={:.3}ms statuses={} errors={}",
            v["mode"].as_str().unwrap_or("?"),
            f(&["rps"]),
            f(&["latency_ms", "p50"]),
            f(&["latency_ms", "p99"]),
            f(&["latency_ms", "p999"]),
            v["statuses"],
            v["errors"]
        ),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Proc { pid } => {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                bail!("no process {pid}");
            }
            println!("{}", serde_json::to_string(&procfs::sample(pid))?);
        }
        Cmd::Key { kind } => {
            let key = gatehouse_auth::token::generate(
                gatehouse_auth::token::TokenKind::ApiKey,
                gatehouse_auth::token::Env::Live,
            )
            .map_err(|e| anyhow!("random source failed: {e}"))?;
            let mut s = key.token.expose_secret().to_owned();
            if let KeyKind::BadChecksum = kind {
                // Change the last checksum character to a different base62 character.
                let last = s.pop().ok_or_else(|| anyhow!("empty key"))?;
                s.push(if last == 'A' { 'B' } else { 'A' });
            }
            println!("{s}");
        }
        Cmd::Closed { req, load } => {
            let t = target(&req).await?;
            let w = watch::Watcher::start(req.watch_pids.clone());
            let opts = load_opts(&load, &req);
            let r = serde_json::to_value(modes::closed(t, opts).await?)?;
            eprintln!("{}", summary_line(&req.label, &r));
            emit(&req, r, w.finish().await)?;
        }
        Cmd::Open { req, load, rate } => {
            let t = target(&req).await?;
            let w = watch::Watcher::start(req.watch_pids.clone());
            let opts = load_opts(&load, &req);
            let r = serde_json::to_value(modes::open(t, rate, opts).await?)?;
            eprintln!("{}", summary_line(&req.label, &r));
            emit(&req, r, w.finish().await)?;
        }
        Cmd::Stream { req, streams, expect_chunks } => {
            let t = target(&req).await?;
            let w = watch::Watcher::start(req.watch_pids.clone());
            let r = serde_json::to_value(modes::stream(t, streams, expect_chunks, req.timeout).await?)?;
            eprintln!("{}", summary_line(&req.label, &r));
            emit(&req, r, w.finish().await)?;
        }
    }
    Ok(())
}

fn load_opts(load: &LoadArgs, req: &ReqArgs) -> modes::LoadOpts {
    modes::LoadOpts {
        connections: load.connections.max(1),
        duration: load.duration,
        warmup: load.warmup,
        timeout: req.timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn bad_checksum_key_differs_only_at_the_end() {
        let key = gatehouse_auth::token::generate(
            gatehouse_auth::token::TokenKind::ApiKey,
            gatehouse_auth::token::Env::Live,
        )
        .unwrap();
        let s = key.token.expose_secret().to_owned();
        assert!(gatehouse_auth::token::parse(&s).is_ok());
        let mut bad = s.clone();
        let last = bad.pop().unwrap();
        bad.push(if last == 'A' { 'B' } else { 'A' });
        assert!(gatehouse_auth::token::parse(&bad).is_err());
    }
}
