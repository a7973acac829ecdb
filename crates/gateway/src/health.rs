//! Health of deployments and provider keys on this node (issue 6): the circuit breaker of each
//! deployment ([`crate::policy::BreakerSettings`]), `Retry-After` skips, calls in flight, and
//! the status of each provider key (active / invalid / out of quota).
//!
//! Deployments are identified by a health key: the deployment id for a public model's
//! deployment, `provider/model` for a direct `provider/model` route. State is in memory and per
//! node; a key's mark is also written to the store by the caller so that it survives restarts
//! and reaches the other nodes (see `crate::failover`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gatehouse_types::Id;

use crate::policy::BreakerSettings;

/// The breaker state of one deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    /// Calls are refused until the cool-down ends.
    Open,
    /// The cool-down ended: one probe call may go through.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open`, `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
struct Breaker {
    state: BreakerState,
    open_until: Option<Instant>,
    probe_in_flight: bool,
    consecutive: u32,
    /// Outcomes within the window: (when, failed).
    window: VecDeque<(Instant, bool)>,
    /// Skip until (upstream `Retry-After`).
    retry_after_until: Option<Instant>,
    last_error: Option<&'static str>,
    opened_total: u64,
}

impl Breaker {
    fn new() -> Self {
        Self {
            state: BreakerState::Closed,
            open_until: None,
            probe_in_flight: false,
            consecutive: 0,
            window: VecDeque::new(),
            retry_after_until: None,
            last_error: None,
            opened_total: 0,
        }
    }

    fn trim(&mut self, now: Instant, window: Duration) {
        while let Some((t, _)) = self.window.front() {
            if now.duration_since(*t) > window || self.window.len() > 1000 {
                self.window.pop_front();
            } else {
                break;
            }
        }
    }

    fn error_rate(&self) -> f64 {
        if self.window.is_empty() {
            return 0.0;
        }
        let failed = self.window.iter().filter(|(_, f)| *f).count();
        failed as f64 / self.window.len() as f64
    }
}

/// Live state of one deployment.
#[derive(Debug)]
pub struct DeploymentHealth {
    breaker: Mutex<Breaker>,
    in_flight: AtomicU64,
    successes: AtomicU64,
    failures: AtomicU64,
}

impl DeploymentHealth {
    fn lock(&self) -> MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Calls in flight on this node.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Whether a deployment may be called now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Closed breaker: call it.
    Yes,
    /// Half-open: this call is the one probe.
    Probe,
    /// Open breaker, probe already in flight, or `Retry-After` pending: skip until `until`
    /// (`None`: until the probe finishes).
    No { until: Option<Instant> },
}

/// How an attempt ended, for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Counts against the breaker (connect error, timeout, 5xx, malformed answer).
    Failure(&'static str),
    /// 429 / 503 with `Retry-After`: skip the deployment for that long; not a breaker failure.
    RetryAfter(Option<Duration>),
    /// Neither (client error, key error, translation refused).
    Neutral,
}

/// Status of a provider key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    /// The provider rejected it (401/403).
    Invalid,
    /// The provider reported it out of quota (402, 429 `insufficient_quota`).
    QuotaExceeded,
}

impl KeyStatus {
    /// `active`, `invalid`, `quota_exceeded` (the store and API spelling).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Invalid => "invalid",
            Self::QuotaExceeded => "quota_exceeded",
        }
    }

    /// Parses the store spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "invalid" => Some(Self::Invalid),
            "quota_exceeded" => Some(Self::QuotaExceeded),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct KeyMark {
    status: KeyStatus,
    recheck_at: Instant,
}

/// A point-in-time view of a deployment, for the admin API and metrics.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeploymentView {
    /// `closed`, `open`, `half_open`.
    pub state: &'static str,
    pub consecutive_failures: u32,
    /// Failed share of the calls within the breaker window, 0.0..=1.0.
    pub error_rate: f64,
    pub calls_in_window: usize,
    pub in_flight: u64,
    /// Seconds until the breaker lets a probe through (open only).
    pub open_for_secs: Option<u64>,
    /// Seconds the deployment is still skipped after an upstream `Retry-After`.
    pub retry_after_secs: Option<u64>,
    /// `ErrorCode` label of the last failure (never upstream text).
    pub last_error: Option<&'static str>,
    /// Times the breaker opened since start.
    pub opened_total: u64,
    pub successes_total: u64,
    pub failures_total: u64,
}

/// The health registry (see the module doc).
pub struct Health {
    settings: BreakerSettings,
    key_recheck: Duration,
    deployments: Mutex<HashMap<String, Arc<DeploymentHealth>>>,
    keys: Mutex<HashMap<Id, KeyMark>>,
}

fn secs_until(now: Instant, t: Option<Instant>) -> Option<u64> {
    t.filter(|t| *t > now).map(|t| t.duration_since(now).as_secs_f64().ceil() as u64)
}

impl Health {
    /// An empty registry.
    pub fn new(settings: BreakerSettings, key_recheck: Duration) -> Self {
        Self { settings, key_recheck, deployments: Mutex::new(HashMap::new()), keys: Mutex::new(HashMap::new()) }
    }

    /// The state of deployment `key`, created on first use.
    pub fn deployment(&self, key: &str) -> Arc<DeploymentHealth> {
        let mut map = self.deployments.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = map.get(key) {
            return d.clone();
        }
        let d = Arc::new(DeploymentHealth {
            breaker: Mutex::new(Breaker::new()),
            in_flight: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        });
        map.insert(key.to_string(), d.clone());
        d
    }

    /// Whether deployment `key` may be called at `now`; a [`Admit::Probe`] answer reserves the
    /// half-open probe for the caller (released by [`Attempt`]).
    pub fn admit(&self, key: &str, now: Instant) -> Admit {
        let d = self.deployment(key);
        let mut b = d.lock();
        if let Some(until) = b.retry_after_until {
            if until > now {
                return Admit::No { until: Some(until) };
            }
            b.retry_after_until = None;
        }
        match b.state {
            BreakerState::Closed => Admit::Yes,
            BreakerState::Open => match b.open_until {
                Some(until) if until > now => Admit::No { until: Some(until) },
                _ => {
                    b.state = BreakerState::HalfOpen;
                    b.probe_in_flight = true;
                    Admit::Probe
                }
            },
            BreakerState::HalfOpen if b.probe_in_flight => Admit::No { until: None },
            BreakerState::HalfOpen => {
                b.probe_in_flight = true;
                Admit::Probe
            }
        }
    }

    /// Starts an attempt on deployment `key` (counts it in flight until dropped).
    pub fn start(&self, key: &str, probe: bool) -> Attempt {
        let d = self.deployment(key);
        d.in_flight.fetch_add(1, Ordering::Relaxed);
        Attempt { deployment: d, probe, settings: self.settings, resolved: false }
    }

    /// Skips deployment `key` for `wait` (an upstream `Retry-After` on a failure).
    pub fn skip(&self, key: &str, wait: Duration) {
        if wait.is_zero() {
            return;
        }
        let d = self.deployment(key);
        d.lock().retry_after_until = Some(Instant::now() + wait);
    }

    /// Whether provider key `id` may be used at `now` (active, or marked but due for a
    /// re-check: the next call tries it again).
    pub fn key_usable(&self, id: Id, now: Instant) -> bool {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        keys.get(&id).is_none_or(|m| m.status == KeyStatus::Active || m.recheck_at <= now)
    }

    /// Marks provider key `id` (skipped until [`Health::restore_key`] or the re-check time).
    pub fn mark_key(&self, id: Id, status: KeyStatus, now: Instant) {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if status == KeyStatus::Active {
            keys.remove(&id);
        } else {
            keys.insert(id, KeyMark { status, recheck_at: now + self.key_recheck });
        }
    }

    /// Clears a key's mark; `true` if it was marked.
    pub fn restore_key(&self, id: Id) -> bool {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).remove(&id).is_some()
    }

    /// A key's status and seconds until its re-check (`None` when active).
    pub fn key_status(&self, id: Id, now: Instant) -> (KeyStatus, Option<u64>) {
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        match keys.get(&id) {
            None => (KeyStatus::Active, None),
            Some(m) => (m.status.clone(), Some(secs_until(now, Some(m.recheck_at)).unwrap_or(0))),
        }
    }

    /// A view of deployment `key` at `now`.
    pub fn view(&self, key: &str, now: Instant) -> DeploymentView {
        let d = self.deployment(key);
        let mut b = d.lock();
        b.trim(now, self.settings.window);
        DeploymentView {
            state: b.state.as_str(),
            consecutive_failures: b.consecutive,
            error_rate: b.error_rate(),
            calls_in_window: b.window.len(),
            in_flight: d.in_flight(),
            open_for_secs: if b.state == BreakerState::Open { Some(secs_until(now, b.open_until).unwrap_or(0)) } else { None },
            retry_after_secs: secs_until(now, b.retry_after_until),
            last_error: b.last_error,
            opened_total: b.opened_total,
            successes_total: d.successes.load(Ordering::Relaxed),
            failures_total: d.failures.load(Ordering::Relaxed),
        }
    }
}

/// One call on a deployment: in flight until dropped; [`Attempt::finish`] feeds the breaker.
/// Dropped without `finish` (client went away): a reserved probe is released.
pub struct Attempt {
    deployment: Arc<DeploymentHealth>,
    probe: bool,
    settings: BreakerSettings,
    resolved: bool,
}

impl Attempt {
    /// Records how the call ended.
    pub fn finish(&mut self, outcome: Outcome) {
        self.resolved = true;
        let now = Instant::now();
        let d = &self.deployment;
        let mut b = d.lock();
        if self.probe {
            b.probe_in_flight = false;
        }
        match outcome {
            Outcome::Success => {
                d.successes.fetch_add(1, Ordering::Relaxed);
                b.consecutive = 0;
                b.window.push_back((now, false));
                if b.state != BreakerState::Closed {
                    tracing::info!("circuit closed after a successful probe");
                }
                b.state = BreakerState::Closed;
                b.open_until = None;
            }
            Outcome::Failure(code) => {
                d.failures.fetch_add(1, Ordering::Relaxed);
                b.consecutive = b.consecutive.saturating_add(1);
                b.window.push_back((now, true));
                b.last_error = Some(code);
                b.trim(now, self.settings.window);
                let rate_tripped =
                    b.window.len() >= self.settings.min_calls as usize && b.error_rate() >= self.settings.error_rate;
                let tripped = b.consecutive >= self.settings.consecutive_failures || rate_tripped;
                if b.state == BreakerState::HalfOpen || (b.state == BreakerState::Closed && tripped) {
                    b.state = BreakerState::Open;
                    b.open_until = Some(now + self.settings.cool_down);
                    b.opened_total += 1;
                    tracing::warn!(code, consecutive = b.consecutive, "circuit opened");
                }
            }
            Outcome::RetryAfter(wait) => {
                if let Some(w) = wait.filter(|w| !w.is_zero()) {
                    b.retry_after_until = Some(now + w);
                }
                if b.state == BreakerState::HalfOpen {
                    // The probe got an answer: the upstream is reachable again.
                    b.state = BreakerState::Closed;
                    b.consecutive = 0;
                }
            }
            Outcome::Neutral => {}
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.deployment.in_flight.fetch_sub(1, Ordering::Relaxed);
        if self.probe && !self.resolved {
            self.deployment.lock().probe_in_flight = false;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn health() -> Health {
        let s = BreakerSettings {
            consecutive_failures: 3,
            error_rate: 0.5,
            min_calls: 10,
            window: Duration::from_secs(60),
            cool_down: Duration::from_secs(30),
        };
        Health::new(s, Duration::from_secs(600))
    }

    fn call(h: &Health, outcome: Outcome) {
        let probe = h.admit("d", Instant::now()) == Admit::Probe;
        h.start("d", probe).finish(outcome);
    }

    #[test]
    fn consecutive_failures_open_then_probe_closes() {
        let h = health();
        for _ in 0..2 {
            call(&h, Outcome::Failure("upstream_error"));
        }
        assert_eq!(h.admit("d", Instant::now()), Admit::Yes);
        call(&h, Outcome::Failure("upstream_error"));
        let now = Instant::now();
        assert!(matches!(h.admit("d", now), Admit::No { until: Some(_) }));
        assert_eq!(h.view("d", now).state, "open");
        // After the cool-down: exactly one probe.
        let later = now + Duration::from_secs(31);
        assert_eq!(h.admit("d", later), Admit::Probe);
        assert_eq!(h.admit("d", later), Admit::No { until: None });
        h.start("d", true).finish(Outcome::Success);
        assert_eq!(h.admit("d", later), Admit::Yes);
        assert_eq!(h.view("d", later).state, "closed");
    }

    #[test]
    fn failed_probe_reopens_and_dropped_probe_is_released() {
        let h = health();
        for _ in 0..3 {
            call(&h, Outcome::Failure("upstream_timeout"));
        }
        let later = Instant::now() + Duration::from_secs(31);
        assert_eq!(h.admit("d", later), Admit::Probe);
        drop(h.start("d", true));
        assert_eq!(h.admit("d", later), Admit::Probe, "a dropped probe frees the slot");
        h.start("d", true).finish(Outcome::Failure("upstream_timeout"));
        assert!(matches!(h.admit("d", Instant::now()), Admit::No { .. }));
        assert_eq!(h.view("d", Instant::now()).opened_total, 2);
    }

    #[test]
    fn error_rate_opens() {
        let h = health();
        for i in 0..11 {
            call(&h, if i % 2 == 0 { Outcome::Failure("upstream_error") } else { Outcome::Success });
        }
        assert_eq!(h.view("d", Instant::now()).state, "open");
    }

    #[test]
    fn retry_after_skips_without_opening() {
        let h = health();
        call(&h, Outcome::RetryAfter(Some(Duration::from_secs(5))));
        let now = Instant::now();
        assert!(matches!(h.admit("d", now), Admit::No { until: Some(_) }));
        assert_eq!(h.admit("d", now + Duration::from_secs(6)), Admit::Yes);
        assert_eq!(h.view("d", now).state, "closed");
    }

    #[test]
    fn keys_marked_until_restored_or_rechecked() {
        let h = health();
        let id = gatehouse_types::new_id();
        let now = Instant::now();
        assert!(h.key_usable(id, now));
        h.mark_key(id, KeyStatus::Invalid, now);
        assert!(!h.key_usable(id, now));
        assert!(h.key_usable(id, now + Duration::from_secs(601)), "timed re-check");
        assert_eq!(h.key_status(id, now).0, KeyStatus::Invalid);
        assert!(h.restore_key(id));
        assert!(h.key_usable(id, now));
    }

    #[test]
    fn in_flight_counts_attempts() {
        let h = health();
        let a = h.start("d", false);
        let b = h.start("d", false);
        assert_eq!(h.deployment("d").in_flight(), 2);
        drop(a);
        drop(b);
        assert_eq!(h.deployment("d").in_flight(), 0);
    }
}
