//! Samples the system under test's process tree during a run: RSS every 50 ms (peak) and CPU
//! seconds at start and end.

use crate::procfs;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// What the watcher saw over a run, for the sum of the watched trees.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcReport {
    /// Watched root process ids.
    pub pids: Vec<u32>,
    /// RSS at the start, kB.
    pub rss_start_kb: u64,
    /// Highest sampled RSS during the run (50 ms samples), kB.
    pub rss_peak_kb: u64,
    /// RSS at the end, kB.
    pub rss_end_kb: u64,
    /// CPU seconds (user + system) spent during the run.
    pub cpu_seconds: f64,
}

/// A running sampler; `finish` stops it and reports.
pub struct Watcher {
    pids: Vec<u32>,
    start: (u64, f64),
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn total(pids: &[u32]) -> (u64, f64) {
    pids.iter().map(|p| procfs::sample(*p)).fold((0, 0.0), |(r, c), s| (r + s.rss_kb, c + s.cpu_seconds))
}

impl Watcher {
    /// Starts sampling the given trees (nothing is sampled for an empty list).
    pub fn start(pids: Vec<u32>) -> Self {
        let start = total(&pids);
        let peak = Arc::new(AtomicU64::new(start.0));
        let stop = Arc::new(AtomicBool::new(false));
        let task = if pids.is_empty() {
            None
        } else {
            let (p, s, ids) = (peak.clone(), stop.clone(), pids.clone());
            Some(tokio::spawn(async move {
                while !s.load(Ordering::Relaxed) {
                    let (rss, _) = total(&ids);
                    p.fetch_max(rss, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }))
        };
        Self { pids, start, peak, stop, task }
    }

    /// Stops sampling and reports.
    pub async fn finish(mut self) -> ProcReport {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        let end = total(&self.pids);
        ProcReport {
            pids: self.pids.clone(),
            rss_start_kb: self.start.0,
            rss_peak_kb: self.peak.load(Ordering::Relaxed).max(end.0),
            rss_end_kb: end.0,
            cpu_seconds: (end.1 - self.start.1).max(0.0),
        }
    }
}
