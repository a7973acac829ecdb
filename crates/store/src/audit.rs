//! The append-only, hash-chained audit log of credential events (`token-security.md` §5.6, G-11).
//!
//! * [`NewAuditEvent`] is what callers record; [`AuditEvent`] is a stored row: the event plus its
//!   position `seq` (1, 2, 3, … without gaps), `prev_hash` (the previous row's `hash`, or 64
//!   zeros for `seq = 1`) and `hash = hex(SHA-256(prev_hash ‖ canonical(event, seq)))`
//!   ([`event_hash`] documents the canonical encoding).
//! * [`AuditSink`] is the non-blocking handle the data plane and the admin API record through;
//!   an [`AuditWriter`] task appends batches with [`crate::Store::append_audit_events`] (off the
//!   request path, like the call log) and flushes everything on [`AuditWriter::close`].
//! * [`verify_audit_chain`] walks the whole chain and names the first broken link.
//!
//! Records never hold a token, a DPoP proof, an `Authorization` value or a provider key: a
//! credential appears as its id or as `Peppers::fingerprint` (a truncated keyed HMAC). Free-text
//! fields an attacker controls (user agent, reason) are cleaned of control characters and capped
//! by [`NewAuditEvent::sanitized`] (CWE-117).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gatehouse_types::{Id, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::{Store, StoreResult};

/// `prev_hash` of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Longest stored user agent / reason / actor (characters); longer values are cut.
pub const MAX_TEXT: usize = 256;
/// Events the sink buffers before [`AuditSink::record`] starts dropping (and counting) them.
pub const CHANNEL_CAPACITY: usize = 65_536;
/// Most events appended in one transaction.
pub const BATCH: usize = 500;

/// Event types (dotted, lowercase). Other crates may add their own (`token.issued`, …).
pub mod kinds {
    /// An API key was created (admin).
    pub const KEY_CREATED: &str = "key.created";
    /// First successful use of a key.
    pub const KEY_FIRST_USED: &str = "key.first_used";
    /// A key was rotated; `details.successor_id` names the new key.
    pub const KEY_ROTATED: &str = "key.rotated";
    /// A key was revoked (admin, leak report).
    pub const KEY_REVOKED: &str = "key.revoked";
    /// A key was suspended by its anomaly policy.
    pub const KEY_SUSPENDED: &str = "key.suspended";
    /// A key was used after it expired (or after its rotation grace ended).
    pub const EXPIRED_USE: &str = "auth.expired_use";
    /// A key was used after it was revoked or suspended.
    pub const REVOKED_USE: &str = "auth.revoked_use";
    /// A known credential was denied; `reason` says why (`ip_not_allowed`, `dpop_…`, …).
    pub const DENIED: &str = "auth.denied";
    /// A credential lacked the scope of the route; `details.required` names it.
    pub const SCOPE_DENIED: &str = "auth.scope_denied";
    /// A DPoP proof `jti` was seen twice within the replay window.
    pub const DPOP_REPLAY: &str = "dpop.replay_rejected";
    /// A single-use token was presented again.
    pub const SINGLE_USE_REPLAY: &str = "single_use.replay_rejected";
    /// Tokens were reported as leaked; one event per report (counts only, never which matched).
    pub const LEAK_REPORTED: &str = "leak.reported";
    /// A credential's use deviated from its history (`reason`: `ip_spread`, `ua_spread`, `burst`).
    pub const ANOMALY: &str = "anomaly.detected";
    /// Any other operator action through the admin API.
    pub const ADMIN_ACTION: &str = "admin.action";
    /// A portal login succeeded (issue 7, M8); `details.user_id`, `details.session_id`.
    pub const LOGIN_SUCCEEDED: &str = "login.succeeded";
    /// A portal login failed; `reason`: `bad_credentials` or `throttled` (never the password;
    /// `details.user_id` only when the username exists).
    pub const LOGIN_FAILED: &str = "login.failed";
    /// Portal sessions of a user were ended by the server; `reason` says why
    /// (`password_changed`), `details.count` how many.
    pub const SESSIONS_REVOKED: &str = "session.revoked";
}

/// An event as recorded (before it gets its place in the chain).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEvent {
    /// When it happened (stored with microsecond precision).
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
    /// Who acted: `gateway`, `operator:<token id>`, `anomaly`, `leak-report`, `oauth`, …
    pub actor: String,
    /// One of [`kinds`] (or another dotted type).
    pub event_type: String,
    /// The credential concerned (its public id), if known.
    pub credential_id: Option<Id>,
    /// `Peppers::fingerprint` of the presented token when no id is known (G-11).
    pub fingerprint: Option<String>,
    /// Client IP as the gateway determined it.
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Internal reason code (`expired`, `revoked`, `ip_not_allowed`, `scope`, `replay`, …).
    pub reason: Option<String>,
    /// Further facts as a JSON object (never secrets).
    pub details: Value,
}

impl NewAuditEvent {
    /// An event of `event_type` by `actor`, now, with empty details.
    pub fn new(event_type: &str, actor: &str) -> Self {
        Self {
            at: gatehouse_types::now(),
            actor: actor.to_string(),
            event_type: event_type.to_string(),
            credential_id: None,
            fingerprint: None,
            ip: None,
            user_agent: None,
            reason: None,
            details: Value::Object(serde_json::Map::new()),
        }
    }

    /// Sets the credential id.
    pub fn credential(mut self, id: Id) -> Self {
        self.credential_id = Some(id);
        self
    }

    /// Sets the keyed fingerprint.
    pub fn fingerprint(mut self, fp: impl Into<String>) -> Self {
        self.fingerprint = Some(fp.into());
        self
    }

    /// Sets client IP and user agent.
    pub fn client(mut self, ip: Option<String>, user_agent: Option<String>) -> Self {
        self.ip = ip;
        self.user_agent = user_agent;
        self
    }

    /// Sets the reason code.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Sets the details object.
    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// The event with control characters replaced by `?`, text fields capped at [`MAX_TEXT`]
    /// characters, the timestamp truncated to microseconds (what both backends store) and
    /// non-object details wrapped as `{"value": …}`.
    pub fn sanitized(mut self) -> Self {
        fn clean(s: &str) -> String {
            s.chars().take(MAX_TEXT).map(|c| if c.is_control() { '?' } else { c }).collect()
        }
        self.actor = clean(&self.actor);
        self.event_type = clean(&self.event_type);
        for f in [&mut self.fingerprint, &mut self.ip, &mut self.user_agent, &mut self.reason] {
            if let Some(v) = f.as_mut() {
                *v = clean(v);
            }
        }
        let nanos = self.at.nanosecond() / 1000 * 1000;
        self.at = self.at.replace_nanosecond(nanos).unwrap_or(self.at);
        if !self.details.is_object() {
            self.details = serde_json::json!({ "value": self.details });
        }
        self
    }
}

/// A stored audit event: its place in the chain and the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Position in the chain, 1-based, without gaps.
    pub seq: i64,
    #[serde(flatten)]
    pub event: NewAuditEvent,
    /// Hex SHA-256 of the previous event ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// Hex SHA-256 over `prev_hash` and this event ([`event_hash`]).
    pub hash: String,
}

/// Filter and page for [`crate::Store::query_audit_events`] (newest first).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditQuery {
    pub event_type: Option<String>,
    pub credential_id: Option<Id>,
    pub fingerprint: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub since: Option<Timestamp>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub until: Option<Timestamp>,
    /// Keyset paging: events with `seq` strictly below this one.
    pub before_seq: Option<i64>,
    /// Page size, 1..=1000 (default 100).
    pub limit: Option<u32>,
}

impl AuditQuery {
    /// `limit` clamped to 1..=1000, default 100.
    pub fn page_size(&self) -> i64 {
        i64::from(self.limit.unwrap_or(100).clamp(1, 1000))
    }
}

/// JSON with object keys sorted at every level and no whitespace (serde_json's number and string
/// formatting). Used for the `details` column and inside [`event_hash`].
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(*k) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The chain hash of `event` at position `seq` after `prev_hash`:
///
/// `hex(SHA-256("gatehouse.audit.v1" ‖ prev_hash ‖ be64(seq) ‖ be64(at in µs since epoch) ‖
/// f(actor) ‖ f(event_type) ‖ o(credential_id) ‖ o(fingerprint) ‖ o(ip) ‖ o(user_agent) ‖
/// o(reason) ‖ f(canonical_json(details))))`
///
/// where `f(s) = be32(len(s)) ‖ s` and `o(None) = 0x00`, `o(Some(s)) = 0x01 ‖ f(s)`; ids are
/// hyphenated lowercase UUIDs. Length prefixes make the encoding unambiguous.
pub fn event_hash(prev_hash: &str, seq: i64, event: &NewAuditEvent) -> String {
    fn f(h: &mut Sha256, s: &str) {
        h.update((s.len() as u32).to_be_bytes());
        h.update(s.as_bytes());
    }
    fn o(h: &mut Sha256, s: Option<&str>) {
        match s {
            None => h.update([0u8]),
            Some(s) => {
                h.update([1u8]);
                f(h, s);
            }
        }
    }
    let micros = i64::try_from(event.at.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX);
    let mut h = Sha256::new();
    h.update(b"gatehouse.audit.v1");
    f(&mut h, prev_hash);
    h.update(seq.to_be_bytes());
    h.update(micros.to_be_bytes());
    f(&mut h, &event.actor);
    f(&mut h, &event.event_type);
    o(&mut h, event.credential_id.map(|i| i.hyphenated().to_string()).as_deref());
    o(&mut h, event.fingerprint.as_deref());
    o(&mut h, event.ip.as_deref());
    o(&mut h, event.user_agent.as_deref());
    o(&mut h, event.reason.as_deref());
    f(&mut h, &canonical_json(&event.details));
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Places `events` after the chain head `(last_seq, last_hash)`: assigns `seq`, `prev_hash` and
/// `hash`. Backends call this inside their append transaction (after locking the head).
pub fn chain(last_seq: i64, last_hash: &str, events: &[NewAuditEvent]) -> Vec<AuditEvent> {
    let mut prev = last_hash.to_string();
    let mut out = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        let event = e.clone().sanitized();
        let seq = last_seq + 1 + i as i64;
        let hash = event_hash(&prev, seq, &event);
        out.push(AuditEvent { seq, event, prev_hash: prev, hash: hash.clone() });
        prev = hash;
    }
    out
}

/// The first link that does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenLink {
    /// The `seq` where checking failed (the expected `seq` if one is missing).
    pub seq: i64,
    /// `hash_mismatch` (the row was altered), `prev_hash_mismatch` (a row before it was altered
    /// or removed), or `seq_gap` (rows are missing).
    pub reason: String,
}

/// Result of [`verify_audit_chain`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// Events checked before stopping.
    pub checked: u64,
    /// `seq` and `hash` of the last event that verified.
    pub head_seq: i64,
    pub head_hash: String,
    /// `None` when the whole chain verifies.
    pub first_broken: Option<BrokenLink>,
}

/// Checks `events` (ascending `seq`) continuing from `(seq, hash)`; returns the new head or the
/// first broken link.
pub fn verify_segment(mut seq: i64, mut hash: String, events: &[AuditEvent]) -> Result<(i64, String), BrokenLink> {
    for e in events {
        if e.seq != seq + 1 {
            return Err(BrokenLink { seq: seq + 1, reason: "seq_gap".into() });
        }
        if e.prev_hash != hash {
            return Err(BrokenLink { seq: e.seq, reason: "prev_hash_mismatch".into() });
        }
        if event_hash(&e.prev_hash, e.seq, &e.event) != e.hash {
            return Err(BrokenLink { seq: e.seq, reason: "hash_mismatch".into() });
        }
        seq = e.seq;
        hash = e.hash.clone();
    }
    Ok((seq, hash))
}

/// Walks the whole chain in pages of 1000 and reports the first broken link.
///
/// Errors: only store failures.
pub async fn verify_audit_chain(store: &dyn Store) -> StoreResult<ChainReport> {
    let mut head = (0i64, GENESIS_HASH.to_string());
    let mut checked = 0u64;
    loop {
        let page = store.audit_chain(head.0, 1000).await?;
        if page.is_empty() {
            return Ok(ChainReport { checked, head_seq: head.0, head_hash: head.1, first_broken: None });
        }
        match verify_segment(head.0, head.1.clone(), &page) {
            Ok(next) => {
                checked += page.len() as u64;
                head = next;
            }
            Err(broken) => {
                checked += page.iter().take_while(|e| e.seq < broken.seq).count() as u64;
                // Report the head up to the link before the break.
                let (seq, hash) = page
                    .iter()
                    .take_while(|e| e.seq < broken.seq)
                    .last()
                    .map(|e| (e.seq, e.hash.clone()))
                    .unwrap_or(head);
                return Ok(ChainReport { checked, head_seq: seq, head_hash: hash, first_broken: Some(broken) });
            }
        }
    }
}

enum Msg {
    Event(Box<NewAuditEvent>),
    Flush(oneshot::Sender<()>),
}

/// Non-blocking handle for recording audit events. Cheap to clone; shared by the data plane,
/// the admin API and the OAuth endpoints.
#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<Msg>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSink").field("dropped", &self.dropped()).finish()
    }
}

impl AuditSink {
    /// Queues `event` for the writer. Never blocks; if the queue is full (the store is far
    /// behind) or the writer has closed, the event is counted in [`Self::dropped`] and an error
    /// is logged (without the event's content).
    pub fn record(&self, event: NewAuditEvent) {
        if let Err(e) = self.tx.try_send(Msg::Event(Box::new(event))) {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "queue full",
                mpsc::error::TrySendError::Closed(_) => "writer closed",
            };
            tracing::error!(dropped_total = n, why, "audit event dropped");
        }
    }

    /// Waits until every event recorded before this call is in the store (for tests and the
    /// admin API's read-your-writes). Returns immediately if the writer is gone.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Events dropped so far (queue full or writer closed).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Starts the writer task for `store` (needs a Tokio runtime) and returns the sink and the
    /// writer's handle.
    pub fn spawn(store: Arc<dyn Store>) -> (AuditSink, AuditWriter) {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (close_tx, close_rx) = oneshot::channel();
        let task = tokio::spawn(run_writer(store, rx, close_rx));
        (AuditSink { tx, dropped: Arc::new(AtomicU64::new(0)) }, AuditWriter { close: close_tx, task })
    }
}

/// The writer task of an [`AuditSink`]. Dropping it without [`AuditWriter::close`] leaves the
/// task running until every clone of the sink is dropped.
pub struct AuditWriter {
    close: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl AuditWriter {
    /// Stops accepting events and returns once every event queued before has been written (each
    /// batch is retried a few times on store errors; what still fails is logged as lost).
    pub async fn close(self) {
        let _ = self.close.send(());
        let _ = self.task.await;
    }
}

/// Delay between retries of a failed batch.
const RETRY_DELAY: Duration = Duration::from_millis(200);
/// Attempts per batch.
const ATTEMPTS: u32 = 5;

async fn run_writer(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Msg>, mut close: oneshot::Receiver<()>) {
    let mut batch: Vec<NewAuditEvent> = Vec::new();
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    // A dropped `AuditWriter` (without `close`) detaches: the task then runs until every sink
    // is gone.
    let mut detached = false;
    loop {
        let msg = tokio::select! {
            biased;
            m = rx.recv() => m,
            r = &mut close, if !detached => match r {
                Ok(()) => None,
                Err(_) => {
                    detached = true;
                    continue;
                }
            },
        };
        let Some(msg) = msg else { break };
        take(msg, &mut batch, &mut waiters);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(m) => take(m, &mut batch, &mut waiters),
                Err(_) => break,
            }
        }
        write(store.as_ref(), &mut batch).await;
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
    // Closing: refuse new events, then write everything already queued.
    rx.close();
    while let Some(m) = rx.recv().await {
        take(m, &mut batch, &mut waiters);
        if batch.len() >= BATCH {
            write(store.as_ref(), &mut batch).await;
        }
    }
    write(store.as_ref(), &mut batch).await;
    for w in waiters.drain(..) {
        let _ = w.send(());
    }
}

fn take(msg: Msg, batch: &mut Vec<NewAuditEvent>, waiters: &mut Vec<oneshot::Sender<()>>) {
    match msg {
        Msg::Event(e) => batch.push(*e),
        Msg::Flush(w) => waiters.push(w),
    }
}

async fn write(store: &dyn Store, batch: &mut Vec<NewAuditEvent>) {
    if batch.is_empty() {
        return;
    }
    for attempt in 1..=ATTEMPTS {
        match store.append_audit_events(batch).await {
            Ok(_) => {
                batch.clear();
                return;
            }
            Err(e) if attempt < ATTEMPTS => {
                tracing::warn!(error = %e, attempt, events = batch.len(), "audit append failed; retrying");
                tokio::time::sleep(RETRY_DELAY).await;
            }
            Err(e) => tracing::error!(error = %e, events = batch.len(), "audit events lost after retries"),
        }
    }
    batch.clear();
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn ev(t: &str) -> NewAuditEvent {
        NewAuditEvent::new(t, "test").details(serde_json::json!({"b": 1, "a": [true, {"z": null, "y": "x"}]}))
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = serde_json::json!({"b": 1, "a": [true, {"z": null, "y": "x\n"}]});
        assert_eq!(canonical_json(&v), r#"{"a":[true,{"y":"x\n","z":null}],"b":1}"#);
    }

    #[test]
    fn chain_links_and_verifies() {
        let events = chain(0, GENESIS_HASH, &[ev("a"), ev("b"), ev("c")]);
        assert_eq!(events[0].prev_hash, GENESIS_HASH);
        assert_eq!(events[1].prev_hash, events[0].hash);
        assert_eq!(verify_segment(0, GENESIS_HASH.into(), &events), Ok((3, events[2].hash.clone())));
    }

    #[test]
    fn tampering_is_located() {
        let events = chain(0, GENESIS_HASH, &[ev("a"), ev("b"), ev("c")]);
        let mut altered = events.clone();
        altered[1].event.reason = Some("nothing happened".into());
        assert_eq!(verify_segment(0, GENESIS_HASH.into(), &altered), Err(BrokenLink { seq: 2, reason: "hash_mismatch".into() }));
        let mut removed = events.clone();
        removed.remove(1);
        assert_eq!(verify_segment(0, GENESIS_HASH.into(), &removed), Err(BrokenLink { seq: 2, reason: "seq_gap".into() }));
        let mut rehashed = events.clone();
        rehashed[1].event.actor = "someone".into();
        rehashed[1].hash = event_hash(&rehashed[1].prev_hash, 2, &rehashed[1].event);
        assert_eq!(
            verify_segment(0, GENESIS_HASH.into(), &rehashed),
            Err(BrokenLink { seq: 3, reason: "prev_hash_mismatch".into() })
        );
    }

    #[test]
    fn sanitizing_removes_control_characters_and_caps_length() {
        let e = NewAuditEvent::new("x", "y").client(Some("1.2.3.4".into()), Some(format!("evil\r\nInjected: 1{}", "a".repeat(1000)))).sanitized();
        let ua = e.user_agent.unwrap();
        assert!(!ua.contains('\n') && !ua.contains('\r'));
        assert_eq!(ua.chars().count(), MAX_TEXT);
    }
}
