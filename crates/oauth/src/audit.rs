//! Security events of the authorization server into the hash-chained audit log
//! (`token-security.md` §5.6, G-11), and the rate gate that keeps an attacker's flood from
//! flooding the log.
//!
//! * [`AuditEvents`] is the [`SecurityEvents`] hook the node installs: every event becomes one
//!   audit record (`actor = "oauth"`, `event_type` = the hook's kind, `credential_id` = the
//!   public id concerned, `reason` = the fixed detail) and one `warn` at
//!   [`crate::SECURITY_TARGET`]. Writing is off the request path ([`AuditSink`] batches).
//! * Events an outsider can repeat at will (`single_use.replay_rejected`, `client.auth_failed`,
//!   `token.revoke_foreign`) pass an [`EventGate`]: at most one record per kind and subject per
//!   [`GATE_INTERVAL`]; the next record that passes carries `details.suppressed` = how many were
//!   held back since the previous one (so counts are never lost while the flood goes on).
//!   Lifecycle events (`token.issued`, `token.revoked`) are never gated.
//!
//! Records never contain a token: subjects are token `jti`s, key ids or client ids.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gatehouse_store::{AuditSink, NewAuditEvent};
use gatehouse_types::Id;
use serde_json::json;

use crate::{SECURITY_TARGET, SecurityEvents};

/// Shortest time between two gated records of the same kind and subject (60 s).
pub const GATE_INTERVAL: Duration = Duration::from_secs(60);
/// Entries the gate keeps before it forgets subjects quiet for a whole interval.
pub const GATE_CAPACITY: usize = 100_000;

/// Kinds that are never rate-gated (each one is an operator or client action, not a flood).
pub const UNGATED: &[&str] = &["token.issued", "token.revoked", "oauth_client.created", "oauth_client.revoked"];

/// At most one pass per key per interval; counts what it holds back.
///
/// Keys are `(kind, subject)`; `None` subjects share one entry per kind. Memory is bounded by
/// [`GATE_CAPACITY`] (older entries are pruned; a pruned key passes again at once).
pub struct EventGate {
    interval: Duration,
    state: Mutex<HashMap<(String, Option<Id>), (Instant, u64)>>,
}

impl Default for EventGate {
    fn default() -> Self {
        Self::new(GATE_INTERVAL)
    }
}

impl EventGate {
    /// A gate letting one event per key through per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self { interval, state: Mutex::new(HashMap::new()) }
    }

    /// [`Self::pass_at`] now.
    pub fn pass(&self, kind: &str, subject: Option<Id>) -> Option<u64> {
        self.pass_at(kind, subject, Instant::now())
    }

    /// `Some(n)` if an event of `kind` about `subject` at `now` should be recorded, where `n` is
    /// the number of events of that key held back since the last one recorded; `None` if it is
    /// held back (and counted).
    pub fn pass_at(&self, kind: &str, subject: Option<Id>, now: Instant) -> Option<u64> {
        let mut map = match self.state.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let key = (kind.to_string(), subject);
        if let Some((last, held)) = map.get_mut(&key) {
            if now.saturating_duration_since(*last) < self.interval {
                *held += 1;
                return None;
            }
            let n = *held;
            *last = now;
            *held = 0;
            return Some(n);
        }
        if map.len() >= GATE_CAPACITY {
            let interval = self.interval;
            map.retain(|_, (last, _)| now.saturating_duration_since(*last) < interval);
            if map.len() >= GATE_CAPACITY {
                map.clear();
            }
        }
        map.insert(key, (now, 0));
        Some(0)
    }
}

/// The [`SecurityEvents`] hook writing to the audit log (see the module doc).
pub struct AuditEvents {
    sink: AuditSink,
    gate: EventGate,
}

impl AuditEvents {
    /// A hook recording into `sink` with the default [`EventGate`].
    pub fn new(sink: AuditSink) -> Self {
        Self { sink, gate: EventGate::default() }
    }

    /// A hook with its own gate interval (tests).
    pub fn with_interval(sink: AuditSink, interval: Duration) -> Self {
        Self { sink, gate: EventGate::new(interval) }
    }
}

impl SecurityEvents for AuditEvents {
    fn record(&self, kind: &'static str, subject: Option<Id>, detail: &'static str) {
        let suppressed = if UNGATED.contains(&kind) {
            0
        } else {
            match self.gate.pass(kind, subject) {
                Some(n) => n,
                None => return,
            }
        };
        if !UNGATED.contains(&kind) {
            tracing::warn!(target: SECURITY_TARGET, event = kind, subject = ?subject, detail, suppressed, "security event");
        }
        let mut e = NewAuditEvent::new(kind, "oauth").reason(detail);
        if let Some(id) = subject {
            e = e.credential(id);
        }
        if suppressed > 0 {
            e = e.details(json!({ "suppressed": suppressed }));
        }
        self.sink.record(e);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn gate_passes_once_per_interval_and_counts_what_it_held_back() {
        let gate = EventGate::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let id = gatehouse_types::new_id();
        assert_eq!(gate.pass_at("replay", Some(id), t0), Some(0));
        for i in 1..=5 {
            assert_eq!(gate.pass_at("replay", Some(id), t0 + Duration::from_secs(i)), None);
        }
        // Another subject and another kind are independent.
        assert_eq!(gate.pass_at("replay", Some(gatehouse_types::new_id()), t0), Some(0));
        assert_eq!(gate.pass_at("other", Some(id), t0), Some(0));
        assert_eq!(gate.pass_at("replay", Some(id), t0 + Duration::from_secs(61)), Some(5));
        assert_eq!(gate.pass_at("replay", Some(id), t0 + Duration::from_secs(62)), None);
    }
}
