//! Anomaly detection per credential on the data plane (issue 5; `token-security.md` §5.6,
//! DESIGN.md "anomaly detection").
//!
//! Every call that passed authentication and the policy checks is observed under its
//! credential's public id (API key id, or `jti` of an issued token). Per credential the detector
//! keeps the current fixed window ([`AnomalyConfig::window`], default 60 s): calls, distinct
//! client IPs and distinct user agents (hashed; at most [`MAX_DISTINCT`] each), and a baseline
//! of each figure: an exponentially weighted mean over past windows (weight
//! [`AnomalyConfig::alpha`] for the newest; idle windows count as 0).
//!
//! Signals (at most once per credential, signal and window):
//!
//! | reason | fires when, in the current window | default |
//! |---|---|---|
//! | `ip_spread` | distinct client IPs > max(`ip_floor`, `spread_factor` × baseline) | > max(8, 3×) |
//! | `ua_spread` | distinct user agents > max(`ua_floor`, `spread_factor` × baseline) | > max(4, 3×) |
//! | `burst` | calls > max(`burst_floor`, `burst_factor` × baseline) | > max(600, 10×) per minute |
//!
//! The floors keep young or quiet credentials (baseline ≈ 0) from raising alarms for normal
//! use; the factors scale with what the credential usually does. Client IPs are the gateway's
//! view (socket address, or `X-Forwarded-For` from a trusted proxy only).
//!
//! Each signal records one `anomaly.detected` audit event (`reason` = the signal; `details`:
//! `observed`, `baseline`, `threshold`, `window_seconds`, `suppressed`). If the key's policy has
//! `auto_suspend`, the key is suspended (store + bus: every cache drops it before the answer),
//! `key.suspended` is recorded, and this call and every later one fail with 401
//! `invalid_token` until an operator acts.
//!
//! The other anomaly signals are recorded where they are detected: use after revocation,
//! suspension or expiry (`auth.revoked_use`, `auth.expired_use`, [`crate::security`]) and
//! single-use replays (`single_use.replay_rejected`, `gatehouse_oauth::audit`). All of them pass
//! an [`EventGate`] (one record per credential and event type per minute; the next record
//! carries `details.suppressed`), so a flood of bad calls cannot flood the audit log.
//!
//! State is in memory per node (bounded: [`MAX_TRACKED`] credentials, forgotten after an idle
//! hour); a restart starts baselines afresh.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse_oauth::EventGate;
use gatehouse_store::audit::kinds;
use gatehouse_store::{AuditSink, Bus, BusEvent, Credential, NewAuditEvent, Store};
use gatehouse_types::{ApiError, ErrorCode, Id, now};
use moka::sync::Cache;
use serde_json::json;

use crate::security::ClientInfo;

/// Most distinct IPs / user agents counted per window (more are not told apart).
pub const MAX_DISTINCT: usize = 1024;
/// Most credentials tracked at once.
pub const MAX_TRACKED: u64 = 100_000;
/// A credential unused this long is forgotten.
pub const IDLE_FORGET: Duration = Duration::from_secs(3600);

/// Thresholds of the module doc.
#[derive(Debug, Clone)]
pub struct AnomalyConfig {
    /// Length of the fixed window (default 60 s).
    pub window: Duration,
    /// Weight of the newest window in the baseline, 0..=1 (default 0.25).
    pub alpha: f64,
    /// Distinct IPs / user agents above this multiple of the baseline are a spread (default 3).
    pub spread_factor: f64,
    /// Distinct IPs per window never flagged at or below this (default 8).
    pub ip_floor: u64,
    /// Distinct user agents per window never flagged at or below this (default 4).
    pub ua_floor: u64,
    /// Calls above this multiple of the baseline are a burst (default 10).
    pub burst_factor: f64,
    /// Calls per window never flagged at or below this (default 600).
    pub burst_floor: u64,
    /// One audit record per credential and event type per this interval (default 60 s).
    pub event_interval: Duration,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            alpha: 0.25,
            spread_factor: 3.0,
            ip_floor: 8,
            ua_floor: 4,
            burst_factor: 10.0,
            burst_floor: 600,
            event_interval: Duration::from_secs(60),
        }
    }
}

/// A deviation found by [`Detector::observe_at`].
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    /// `ip_spread`, `ua_spread` or `burst`.
    pub reason: &'static str,
    /// The figure in the current window.
    pub observed: u64,
    /// Its usual value (EWMA of past windows).
    pub baseline: f64,
    /// The value it exceeded.
    pub threshold: f64,
}

struct KeyState {
    start: Instant,
    calls: u64,
    ips: HashSet<IpAddr>,
    uas: HashSet<u64>,
    /// Bit per signal already raised in this window.
    raised: u8,
    base_calls: f64,
    base_ips: f64,
    base_uas: f64,
}

impl KeyState {
    fn new(now: Instant) -> Self {
        Self { start: now, calls: 0, ips: HashSet::new(), uas: HashSet::new(), raised: 0, base_calls: 0.0, base_ips: 0.0, base_uas: 0.0 }
    }

    /// Moves to the window containing `now`, folding finished windows into the baselines.
    fn roll(&mut self, now: Instant, cfg: &AnomalyConfig) {
        let w = cfg.window.max(Duration::from_millis(1));
        let elapsed = now.saturating_duration_since(self.start);
        if elapsed < w {
            return;
        }
        let passed = (elapsed.as_nanos() / w.as_nanos()).min(10_000) as u32;
        let a = cfg.alpha.clamp(0.0, 1.0);
        self.base_calls = (1.0 - a) * self.base_calls + a * self.calls as f64;
        self.base_ips = (1.0 - a) * self.base_ips + a * self.ips.len() as f64;
        self.base_uas = (1.0 - a) * self.base_uas + a * self.uas.len() as f64;
        // Idle windows in between count as zero use.
        let decay = (1.0 - a).powi(passed.saturating_sub(1) as i32);
        self.base_calls *= decay;
        self.base_ips *= decay;
        self.base_uas *= decay;
        self.start += w * passed;
        self.calls = 0;
        self.ips.clear();
        self.uas.clear();
        self.raised = 0;
    }
}

/// The per-credential detector of the module doc, with the audit and suspension side effects.
pub struct Detector {
    config: AnomalyConfig,
    keys: Cache<Id, Arc<Mutex<KeyState>>>,
    gate: EventGate,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    audit: AuditSink,
}

fn ua_hash(ua: &str) -> u64 {
    let mut h = DefaultHasher::new();
    ua.hash(&mut h);
    h.finish()
}

impl Detector {
    /// A detector recording into `audit` and suspending through `store` + `bus`.
    pub fn new(config: AnomalyConfig, store: Arc<dyn Store>, bus: Arc<dyn Bus>, audit: AuditSink) -> Self {
        Self {
            gate: EventGate::new(config.event_interval),
            config,
            keys: Cache::builder().max_capacity(MAX_TRACKED).time_to_idle(IDLE_FORGET).build(),
            store,
            bus,
            audit,
        }
    }

    /// The thresholds in use.
    pub fn config(&self) -> &AnomalyConfig {
        &self.config
    }

    /// Counts one successful call of credential `id` at `now` and returns the signals it raises
    /// (each at most once per window). Pure bookkeeping: no I/O.
    pub fn observe_at(&self, id: Id, ip: Option<IpAddr>, user_agent: Option<&str>, now: Instant) -> Vec<Signal> {
        let cfg = &self.config;
        let entry = self.keys.get_with(id, || Arc::new(Mutex::new(KeyState::new(now))));
        let mut s = match entry.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        s.roll(now, cfg);
        s.calls += 1;
        if let Some(ip) = ip
            && s.ips.len() < MAX_DISTINCT
        {
            s.ips.insert(ip);
        }
        if let Some(ua) = user_agent
            && s.uas.len() < MAX_DISTINCT
        {
            s.uas.insert(ua_hash(ua));
        }
        let checks = [
            ("ip_spread", s.ips.len() as u64, s.base_ips, cfg.ip_floor, cfg.spread_factor),
            ("ua_spread", s.uas.len() as u64, s.base_uas, cfg.ua_floor, cfg.spread_factor),
            ("burst", s.calls, s.base_calls, cfg.burst_floor, cfg.burst_factor),
        ];
        let mut out = Vec::new();
        for (bit, (reason, observed, baseline, floor, factor)) in checks.into_iter().enumerate() {
            let threshold = (floor as f64).max(factor * baseline);
            let mask = 1u8 << bit;
            if observed as f64 > threshold && s.raised & mask == 0 {
                s.raised |= mask;
                out.push(Signal { reason, observed, baseline: (baseline * 100.0).round() / 100.0, threshold: (threshold * 100.0).round() / 100.0 });
            }
        }
        out
    }

    /// Whether an event of `kind` about `id` should be recorded now: `Some(n)` with the number
    /// held back since the last one, `None` if this one is held back (see the module doc).
    pub fn gate(&self, kind: &str, id: Id) -> Option<u64> {
        self.gate.pass(kind, Some(id))
    }

    /// Observes a call that passed every check; on a signal records `anomaly.detected` (gated)
    /// and applies the key's `auto_suspend` policy.
    ///
    /// Errors: 401 `invalid_token` when this call got the key suspended (the key is refused
    /// from now on, this call included); 503 if the suspension could not be stored (fail
    /// closed: the policy asked for the key to stop).
    pub async fn after_success(&self, client: &ClientInfo, credential: &Credential) -> Result<(), ApiError> {
        let signals = self.observe_at(credential.id, client.ip, client.user_agent.as_deref(), Instant::now());
        if signals.is_empty() {
            return Ok(());
        }
        for sig in &signals {
            if let Some(suppressed) = self.gate(&format!("{}:{}", kinds::ANOMALY, sig.reason), credential.id) {
                tracing::warn!(target: gatehouse_oauth::SECURITY_TARGET, key_id = %credential.id, reason = sig.reason, observed = sig.observed, "anomalous credential use");
                self.audit.record(
                    NewAuditEvent::new(kinds::ANOMALY, "anomaly")
                        .credential(credential.id)
                        .client(client.ip.map(|i| i.to_string()), client.user_agent.clone())
                        .reason(sig.reason)
                        .details(json!({
                            "observed": sig.observed,
                            "baseline": sig.baseline,
                            "threshold": sig.threshold,
                            "window_seconds": self.config.window.as_secs(),
                            "suppressed": suppressed,
                            "auto_suspend": credential.security.auto_suspend,
                        })),
                );
            }
        }
        if !credential.security.auto_suspend || credential.security.suspended_at.is_some() {
            return Ok(());
        }
        let found = self.store.suspend_credential(credential.id, now()).await.map_err(|e| {
            tracing::error!(error = %e, key_id = %credential.id, "suspending a key after an anomaly failed");
            ApiError::new(ErrorCode::Unavailable, "the gateway cannot verify keys right now; retry later")
        })?;
        if found {
            self.bus.publish(BusEvent::CredentialChanged { id: credential.id, digest: credential.digest.clone() });
            let reasons: Vec<&str> = signals.iter().map(|s| s.reason).collect();
            self.audit.record(
                NewAuditEvent::new(kinds::KEY_SUSPENDED, "anomaly")
                    .credential(credential.id)
                    .client(client.ip.map(|i| i.to_string()), client.user_agent.clone())
                    .reason(reasons.join(","))
                    .details(json!({ "policy": "auto_suspend" })),
            );
            tracing::warn!(target: gatehouse_oauth::SECURITY_TARGET, key_id = %credential.id, "key suspended by its anomaly policy");
        }
        Err(ApiError::new(ErrorCode::InvalidToken, "invalid API key: the key is unknown, malformed, expired or revoked"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    async fn detector(config: AnomalyConfig) -> Detector {
        let dir = std::env::temp_dir().join(format!("gh-anomaly-{}", gatehouse_types::new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = gatehouse_store::connect(&format!("sqlite://{}/a.db", dir.display())).await.unwrap();
        store.migrate().await.unwrap();
        let audit = AuditSink::spawn(store.clone()).0;
        Detector::new(config, store, Arc::new(gatehouse_store::MemoryBus::new()), audit)
    }

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, n]))
    }

    fn reasons(s: &[Signal]) -> Vec<&'static str> {
        s.iter().map(|x| x.reason).collect()
    }

    #[tokio::test]
    async fn ip_spread_above_the_floor_fires_once_per_window() {
        let d = detector(AnomalyConfig::default()).await;
        let (id, t0) = (gatehouse_types::new_id(), Instant::now());
        for n in 1..=8 {
            assert!(d.observe_at(id, ip(n), Some("sdk"), t0).is_empty(), "{n} addresses are within the floor");
        }
        let s = d.observe_at(id, ip(9), Some("sdk"), t0);
        assert_eq!(reasons(&s), ["ip_spread"]);
        assert_eq!((s[0].observed, s[0].threshold), (9, 8.0));
        assert!(d.observe_at(id, ip(10), Some("sdk"), t0).is_empty(), "raised once per window");
        // Next window: the count starts again.
        let t1 = t0 + Duration::from_secs(61);
        assert!(d.observe_at(id, ip(1), Some("sdk"), t1).is_empty());
    }

    #[tokio::test]
    async fn ua_spread_scales_with_the_credentials_history() {
        let d = detector(AnomalyConfig::default()).await;
        let (id, t0) = (gatehouse_types::new_id(), Instant::now());
        // A credential that always shows 4 user agents per minute for 20 minutes: baseline → 4.
        for w in 0..20u64 {
            let t = t0 + Duration::from_secs(60 * w);
            for u in 0..4 {
                assert!(d.observe_at(id, ip(1), Some(&format!("ua-{u}")), t).is_empty());
            }
        }
        // 10 distinct agents: above the floor (4) but not above 3 × ~4: no signal.
        let t = t0 + Duration::from_secs(60 * 20);
        for u in 0..10 {
            assert!(d.observe_at(id, ip(1), Some(&format!("ua-{u}")), t).is_empty(), "ua {u}");
        }
        // A fresh credential with 5 agents in its first minute is flagged at the floor.
        let fresh = gatehouse_types::new_id();
        let signals: Vec<Signal> = (0..5).flat_map(|u| d.observe_at(fresh, ip(1), Some(&format!("ua-{u}")), t0)).collect();
        assert_eq!(reasons(&signals), ["ua_spread"]);
    }

    #[tokio::test]
    async fn burst_far_above_the_usual_rate() {
        let cfg = AnomalyConfig { burst_floor: 20, ..AnomalyConfig::default() };
        let d = detector(cfg).await;
        let (id, t0) = (gatehouse_types::new_id(), Instant::now());
        // 10 calls per minute for 30 minutes: baseline ≈ 10, threshold max(20, 100) = 100.
        for w in 0..30u64 {
            for _ in 0..10 {
                assert!(d.observe_at(id, ip(1), Some("sdk"), t0 + Duration::from_secs(60 * w)).is_empty());
            }
        }
        let t = t0 + Duration::from_secs(60 * 30);
        let mut fired = Vec::new();
        for n in 1..=150u64 {
            for s in d.observe_at(id, ip(1), Some("sdk"), t) {
                fired.push((n, s));
            }
        }
        assert_eq!(fired.len(), 1, "{fired:?}");
        let (n, s) = &fired[0];
        assert_eq!(s.reason, "burst");
        assert!((96..=101).contains(n), "fired at call {n}, threshold {}", s.threshold);
        // After a long quiet period the baseline decays back to the floor.
        let later = t + Duration::from_secs(6 * 3600);
        let fired: Vec<Signal> = (0..21).flat_map(|_| d.observe_at(id, ip(1), Some("sdk"), later)).collect();
        assert_eq!(reasons(&fired), ["burst"]);
    }

    #[tokio::test]
    async fn the_event_gate_limits_records_per_credential_and_kind() {
        let d = detector(AnomalyConfig::default()).await;
        let id = gatehouse_types::new_id();
        assert_eq!(d.gate("auth.revoked_use", id), Some(0));
        assert_eq!(d.gate("auth.revoked_use", id), None);
        assert_eq!(d.gate("auth.expired_use", id), Some(0));
        assert_eq!(d.gate("auth.revoked_use", gatehouse_types::new_id()), Some(0));
    }
}
