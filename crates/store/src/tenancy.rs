//! Records of tenancy (issue 7): team memberships with team roles and portal login sessions.
//! The store methods are on [`crate::Store`]; implementations live in `sqlite/tenancy.rs` and
//! `postgres/tenancy.rs`.

use gatehouse_types::{Id, Timestamp};
use serde::{Deserialize, Serialize};

/// A user's membership in a team. `role` is one of `owner`, `admin`, `developer`, `viewer`
/// (the store keeps the string; `gatehouse_admin::authz::TeamRole` parses it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamMember {
    pub team_id: Id,
    pub user_id: Id,
    pub role: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
}

/// A portal login session. The cookie carries an opaque random id; only its HMAC digest
/// (`token-security.md` §2.3, same peppers as keys) is stored, so a database dump cannot be
/// replayed as a cookie.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserSession {
    pub id: Id,
    pub user_id: Id,
    #[serde(skip)]
    pub digest: Vec<u8>,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: Timestamp,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    /// Keyed fingerprint (32 bytes) of the password hash the login was verified against
    /// (issue 7, tester M4); the session stops authenticating once the user's hash changes.
    /// `None` for sessions created before migration 0115.
    #[serde(skip)]
    pub password_version: Option<Vec<u8>>,
}
