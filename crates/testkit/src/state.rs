//! What the mock remembers about the requests it received.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::{HeaderMap, Method};
use gatehouse_types::Usage;
use serde_json::Value;

use crate::scenario::Scenario;

/// How many recent requests [`crate::MockProvider::requests`] keeps (older ones are dropped so
/// a long-running demo mock does not grow without bound).
pub const RECORDED_REQUESTS: usize = 256;

/// One request as the mock received it.
///
/// The headers are kept verbatim, including `authorization`/`x-api-key`, so tests can check
/// which provider key reached the upstream. Never log a `RecordedRequest`.
#[derive(Clone)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: Method,
    /// Request path without the query, e.g. `/v1/chat/completions`.
    pub path: String,
    /// All request headers.
    pub headers: HeaderMap,
    /// The JSON body, when the body parsed as JSON.
    pub body: Option<Value>,
}

impl std::fmt::Debug for RecordedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values may hold keys: print names only.
        let names: Vec<&str> = self.headers.keys().map(|k| k.as_str()).collect();
        f.debug_struct("RecordedRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("header_names", &names)
            .field("body", &self.body)
            .finish()
    }
}

/// Most distinct paths / `fail_first` scenarios remembered.
const MAX_DISTINCT_KEYS: usize = 1024;

#[derive(Default)]
struct Log {
    per_path: HashMap<String, usize>,
    recent: VecDeque<RecordedRequest>,
    last_body: Option<Value>,
    last_headers: Option<HeaderMap>,
    last_usage: Option<Usage>,
    fail_counts: HashMap<String, u32>,
}

/// Shared state of one mock server.
pub(crate) struct MockState {
    pub(crate) expected_key: Option<String>,
    pub(crate) defaults: Scenario,
    calls: AtomicUsize,
    disconnects: AtomicUsize,
    log: Mutex<Log>,
}

impl MockState {
    pub(crate) fn new(expected_key: Option<String>, defaults: Scenario) -> Self {
        MockState {
            expected_key,
            defaults,
            calls: AtomicUsize::new(0),
            disconnects: AtomicUsize::new(0),
            log: Mutex::new(Log::default()),
        }
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        // A panic while holding the lock cannot leave the log inconsistent in a way that
        // matters for counting, so recover from poisoning.
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn record(
        &self,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: Option<Value>,
    ) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut log = self.log();
        // Bounded: a scan of random paths must not grow a long-running mock forever.
        if log.per_path.len() < MAX_DISTINCT_KEYS || log.per_path.contains_key(path) {
            *log.per_path.entry(path.to_owned()).or_insert(0) += 1;
        }
        if body.is_some() {
            log.last_body = body.clone();
        }
        log.last_headers = Some(headers.clone());
        if log.recent.len() >= RECORDED_REQUESTS {
            log.recent.pop_front();
        }
        log.recent.push_back(RecordedRequest {
            method,
            path: path.to_owned(),
            headers: headers.clone(),
            body,
        });
    }

    pub(crate) fn set_last_usage(&self, usage: Usage) {
        self.log().last_usage = Some(usage);
    }

    /// Counts one call of a `fail_first` scenario and says whether it should still fail.
    pub(crate) fn should_fail(&self, key: &str, first: Option<u32>) -> bool {
        match first {
            None => true,
            Some(n) => {
                let mut log = self.log();
                if log.fail_counts.len() >= MAX_DISTINCT_KEYS && !log.fail_counts.contains_key(key)
                {
                    log.fail_counts.clear();
                }
                let seen = log.fail_counts.entry(key.to_owned()).or_insert(0);
                let fail = *seen < n;
                *seen = seen.saturating_add(1);
                fail
            }
        }
    }

    pub(crate) fn add_disconnect(&self) {
        self.disconnects.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub(crate) fn disconnects(&self) -> usize {
        self.disconnects.load(Ordering::SeqCst)
    }

    pub(crate) fn calls_for(&self, path: &str) -> usize {
        self.log().per_path.get(path).copied().unwrap_or(0)
    }

    pub(crate) fn last_request(&self) -> Option<Value> {
        self.log().last_body.clone()
    }

    pub(crate) fn last_headers(&self) -> Option<HeaderMap> {
        self.log().last_headers.clone()
    }

    pub(crate) fn last_usage(&self) -> Option<Usage> {
        self.log().last_usage
    }

    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.log().recent.iter().cloned().collect()
    }

    pub(crate) fn reset(&self) {
        self.calls.store(0, Ordering::SeqCst);
        self.disconnects.store(0, Ordering::SeqCst);
        *self.log() = Log::default();
    }
}
