//! Identifiers and time. All ids are UUIDv7 (RFC 9562 §5.7): time-ordered, so they index well.

/// Identifier of every stored record (team, app, credential, provider, call log, …).
pub type Id = uuid::Uuid;

/// A point in time, UTC. Serialized as RFC 3339.
pub type Timestamp = time::OffsetDateTime;

/// A fresh UUIDv7.
pub fn new_id() -> Id {
    uuid::Uuid::now_v7()
}

/// The current time in UTC (the single time authority of a process).
pub fn now() -> Timestamp {
    time::OffsetDateTime::now_utc()
}
