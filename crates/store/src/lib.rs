//! Persistence for Gatehouse: the [`Store`] trait with SQLite and PostgreSQL backends (one
//! conformance suite for both), and the [`Bus`] for change events (revocations).
//!
//! Records are plain structs in [`records`]. Secrets never live here in plaintext: API keys as
//! HMAC digests (`token-security.md` §2.3), provider keys as envelope-encrypted blobs (§3).

pub mod audit;
pub mod bus;
pub mod config;
pub mod counters;
pub mod error;
pub mod postgres;
pub mod records;
pub mod replay;
pub mod response_cache;
pub mod services;
pub mod sqlite;
pub mod tenancy;

use async_trait::async_trait;
use gatehouse_types::{Id, Timestamp};

pub use audit::{AuditEvent, AuditQuery, AuditSink, AuditWriter, NewAuditEvent};
pub use bus::{Bus, BusEvent, MemoryBus};
pub use config::{ConfigChanges, ServiceWrite};
pub use counters::{Counters, CountersError, MemoryCounters, RedisCounters};
pub use error::StoreError;
pub use postgres::PostgresStore;
pub use records::*;
pub use replay::{MemoryReplayCache, RedisReplayCache, ReplayCache};
pub use response_cache::ModelCachePolicy;
pub use services::{
    ApprovalMode, Service, ServiceKind, ServiceRelease, ServiceStatus, Subscription, SubscriptionFilter,
    SubscriptionStatus, Visibility,
};
pub use sqlite::SqliteStore;
pub use tenancy::{TeamMember, UserSession};

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Everything Gatehouse persists. Implemented by `SqliteStore` and `PostgresStore`; both pass
/// `tests/conformance.rs`. Every method is one transaction: a change is applied whole or not at
/// all. Lists are ordered newest first unless said otherwise.
///
/// Timestamps are stored with microsecond precision (PostgreSQL `timestamptz`; SQLite INTEGER
/// microseconds since the Unix epoch): a value read back is the written one truncated to whole
/// microseconds, in UTC.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies pending migrations (idempotent).
    async fn migrate(&self) -> StoreResult<()>;
    /// Cheap liveness probe (`SELECT 1`).
    async fn ping(&self) -> StoreResult<()>;

    // --- settings (small key/value facts, e.g. "bootstrapped") ---
    async fn get_setting(&self, key: &str) -> StoreResult<Option<String>>;
    async fn set_setting(&self, key: &str, value: &str) -> StoreResult<()>;

    // --- teams, apps, users ---
    /// Errors with `Conflict` if the name is taken.
    async fn create_team(&self, team: &Team) -> StoreResult<()>;
    async fn get_team(&self, id: Id) -> StoreResult<Option<Team>>;
    async fn get_team_by_name(&self, name: &str) -> StoreResult<Option<Team>>;
    async fn list_teams(&self) -> StoreResult<Vec<Team>>;
    /// Errors with `Conflict` if (team, name) is taken.
    async fn create_app(&self, app: &App) -> StoreResult<()>;
    async fn get_app(&self, id: Id) -> StoreResult<Option<App>>;
    async fn list_apps(&self, team_id: Option<Id>) -> StoreResult<Vec<App>>;
    /// Soft-deletes an app (issue 7): sets `deleted_at = at`; from then on `get_app` and
    /// `list_apps` no longer return it (the row stays for the keys, logs and audit events that
    /// reference it; its name stays taken in the team). False if there is no such live app.
    async fn delete_app(&self, id: Id, at: Timestamp) -> StoreResult<bool>;
    /// Errors with `Conflict` if the username is taken.
    async fn create_user(&self, user: &User) -> StoreResult<()>;
    async fn get_user_by_username(&self, username: &str) -> StoreResult<Option<User>>;

    // --- issue 7 (tenancy): users, team memberships, login sessions. Implementations live in
    // `sqlite/tenancy.rs` and `postgres/tenancy.rs`. ---
    async fn get_user(&self, id: Id) -> StoreResult<Option<User>>;
    /// Every user, ordered by username.
    async fn list_users(&self) -> StoreResult<Vec<User>>;
    /// Replaces `password_hash` and `system_role`; false if no such user.
    async fn update_user(&self, user: &User) -> StoreResult<bool>;
    /// Insert, or replace the role of an existing (team, user) membership. `NotFound` if the
    /// team or user does not exist.
    async fn upsert_team_member(&self, member: &TeamMember) -> StoreResult<()>;
    /// False if there was no such membership.
    async fn remove_team_member(&self, team_id: Id, user_id: Id) -> StoreResult<bool>;
    /// Members of a team, oldest first.
    async fn list_team_members(&self, team_id: Id) -> StoreResult<Vec<TeamMember>>;
    /// Memberships of a user, oldest first.
    async fn list_user_memberships(&self, user_id: Id) -> StoreResult<Vec<TeamMember>>;
    /// Errors with `Conflict` on a duplicate id or digest.
    async fn create_session(&self, session: &UserSession) -> StoreResult<()>;
    /// By digest, whatever its state (the caller checks expiry and revocation).
    async fn find_session(&self, digest: &[u8]) -> StoreResult<Option<UserSession>>;
    /// Sets `revoked_at` if not yet revoked; false if no such session.
    async fn revoke_session(&self, id: Id, at: Timestamp) -> StoreResult<bool>;
    /// Sets a session's `password_version` (keyed fingerprint of the password hash, issue 7 M4):
    /// a password change keeps the caller's own session valid by moving it to the new hash.
    /// Returns false if no such session.
    async fn set_session_password_version(&self, id: Id, version: &[u8]) -> StoreResult<bool>;
    /// Sets `revoked_at = at` on every live (unrevoked, unexpired at `at`) session of `user_id`
    /// except `keep` (the session making a password change may survive it). Returns how many
    /// sessions were revoked (issue 7, M8).
    async fn revoke_user_sessions(&self, user_id: Id, keep: Option<Id>, at: Timestamp) -> StoreResult<u64>;
    /// Deletes every session whose `expires_at <= before` (revoked or not); returns how many.
    async fn delete_expired_sessions(&self, before: Timestamp) -> StoreResult<u64>;

    // --- operator tokens (admin API bearer tokens, `gtho_…`) ---
    async fn create_operator_token(&self, token: &OperatorToken) -> StoreResult<()>;
    async fn find_operator_token(&self, digest: &[u8]) -> StoreResult<Option<OperatorToken>>;
    async fn list_operator_tokens(&self) -> StoreResult<Vec<OperatorToken>>;
    async fn revoke_operator_token(&self, id: Id, at: Timestamp) -> StoreResult<bool>;

    // --- credentials (API keys of apps, `gthk_…`) ---
    /// Errors with `Conflict` on a duplicate digest.
    async fn create_credential(&self, credential: &Credential) -> StoreResult<()>;
    async fn get_credential(&self, id: Id) -> StoreResult<Option<Credential>>;
    /// Lookup on the unique digest index (the data plane's only credential query).
    async fn find_credential(&self, digest: &[u8]) -> StoreResult<Option<Credential>>;
    async fn list_credentials(&self, filter: &CredentialFilter) -> StoreResult<Vec<Credential>>;
    /// Sets `revoked_at` if not yet revoked. Returns false if no such credential.
    async fn revoke_credential(&self, id: Id, at: Timestamp) -> StoreResult<bool>;
    /// Batched `last_used_at` updates (never on the request path).
    async fn touch_credentials(&self, uses: &[(Id, Timestamp)]) -> StoreResult<()>;

    // --- providers and their encrypted credentials ---
    /// Insert or update by `name`; returns the stored row (its id is kept on update).
    async fn upsert_provider(&self, provider: &Provider) -> StoreResult<Provider>;
    async fn get_provider(&self, id: Id) -> StoreResult<Option<Provider>>;
    async fn get_provider_by_name(&self, name: &str) -> StoreResult<Option<Provider>>;
    async fn list_providers(&self) -> StoreResult<Vec<Provider>>;
    /// Deletes the provider, its credentials and deployments that use it.
    async fn delete_provider(&self, id: Id) -> StoreResult<bool>;
    async fn create_provider_credential(&self, credential: &ProviderCredential) -> StoreResult<()>;
    /// Active (not revoked) credentials of a provider, by priority ascending then newest.
    async fn list_provider_credentials(
        &self,
        provider_id: Id,
    ) -> StoreResult<Vec<ProviderCredential>>;
    async fn revoke_provider_credential(&self, id: Id, at: Timestamp) -> StoreResult<bool>;

    // --- models (public name → deployments) ---
    /// Insert or replace by `name`, deployments included, in one transaction.
    async fn upsert_model(&self, model: &Model) -> StoreResult<Model>;
    async fn get_model(&self, name: &str) -> StoreResult<Option<Model>>;
    /// All models with their deployments, ordered by name.
    async fn list_models(&self) -> StoreResult<Vec<Model>>;
    async fn delete_model(&self, name: &str) -> StoreResult<bool>;

    // --- call log ---
    /// Appends a batch in one transaction.
    async fn insert_call_logs(&self, logs: &[CallLog]) -> StoreResult<()>;
    /// Filtered, newest first, keyset-paged by (`before` id).
    async fn query_call_logs(&self, query: &CallLogQuery) -> StoreResult<Vec<CallLog>>;
    /// Tokens and cost of the calls logged at or after `month_start`, grouped by (team, app,
    /// credential, model), with the part logged at or after `day_start` (one aggregate query over
    /// `call_logs_created`). Calls without a price count 0 cost.
    async fn call_usage(&self, month_start: Timestamp, day_start: Timestamp) -> StoreResult<Vec<CallUsage>>;

    // --- audits ---
    /// For tests and audits only (never served over HTTP): every text-typed column (TEXT,
    /// JSON, arrays) of every table, plus every BLOB/`bytea` column rendered as lossy UTF-8, as
    /// lines `table.column: value`. Used to prove that no plaintext key or token is stored
    /// (`token-security.md` §2.3, §3.1). Migration bookkeeping (`_sqlx_migrations`) is left out.
    async fn debug_dump(&self) -> StoreResult<String>;

    // --- issue 5 (token security, part b): audit log. Implementations live in
    // `sqlite/audit.rs` and `postgres/audit.rs`. ---
    /// Appends `events` to the hash chain in one transaction (see [`audit`]): each gets the next
    /// `seq`, `prev_hash` and `hash`; events are sanitized first ([`NewAuditEvent::sanitized`]).
    /// Concurrent appenders (also on other nodes, PostgreSQL) are serialized. Returns the stored
    /// events.
    async fn append_audit_events(&self, events: &[NewAuditEvent]) -> StoreResult<Vec<AuditEvent>>;
    /// Filtered audit events, newest first (`seq` descending), keyset-paged by `before_seq`.
    async fn query_audit_events(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>>;
    /// Events with `seq > after_seq` in chain order, at most `limit` (clamped to 1..=10000);
    /// used by [`audit::verify_audit_chain`].
    async fn audit_chain(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<AuditEvent>>;

    // --- issue 5 (token security, part b): key rotation and suspension (`sqlite/security.rs`,
    // `postgres/security.rs`). ---
    /// Rotation with overlap, one transaction: inserts `successor` and sets the old key's
    /// `expires_at = min(expires_at, old_expires_at)` and its `rotated_to` column (compare-and-set
    /// on `rotated_to IS NULL`). Returns false (and changes nothing) if the old key does not exist,
    /// is revoked or suspended, or already has a successor: of any number of concurrent
    /// rotations of one key exactly one returns true (L2). `Conflict` on a duplicate digest.
    async fn rotate_credential(&self, old: Id, successor: &Credential, old_expires_at: Timestamp) -> StoreResult<bool>;
    /// Sets `security.suspended_at` if not yet set. Returns false if no such credential.
    async fn suspend_credential(&self, id: Id, at: Timestamp) -> StoreResult<bool>;
    // --- issue 6: limits (implementations in `sqlite/limits.rs`, `postgres/limits.rs`) ---
    /// Insert, or replace the limit values of the row with the same (`scope`, `scope_id`,
    /// `model`); returns the stored row (id and `created_at` kept on update).
    async fn upsert_limit(&self, limit: &Limit) -> StoreResult<Limit>;
    /// Every limit, ordered by scope, scope id, model.
    async fn list_limits(&self) -> StoreResult<Vec<Limit>>;
    /// Removes a limit row; false if there was none.
    async fn delete_limit(&self, id: Id) -> StoreResult<bool>;
    // --- issue 6: response cache (`sqlite/response_cache.rs`, `postgres/response_cache.rs`) ---
    /// Opts public model `model` in to the response cache with `ttl_secs`, or changes its TTL;
    /// returns the stored setting, or `None` if there is no such model.
    async fn set_model_cache(&self, model: &str, ttl_secs: u32, at: Timestamp) -> StoreResult<Option<ModelCachePolicy>>;
    /// Every model that opted in, ordered by model name.
    async fn list_model_caches(&self) -> StoreResult<Vec<ModelCachePolicy>>;
    /// Opts `model` out of the response cache; false if it was not opted in.
    async fn delete_model_cache(&self, model: &str) -> StoreResult<bool>;


    // --- OAuth 2.0 authorization server (issue 5; token-security.md §1.1-1.7, §5.2) ---
    // Implementations: `sqlite/oauth.rs`, `postgres/oauth.rs`.
    /// Errors with `Conflict` on a duplicate id.
    async fn create_oauth_client(&self, client: &OAuthClient) -> StoreResult<()>;
    async fn get_oauth_client(&self, id: Id) -> StoreResult<Option<OAuthClient>>;
    /// Newest first.
    async fn list_oauth_clients(&self, include_revoked: bool) -> StoreResult<Vec<OAuthClient>>;
    /// Sets `revoked_at` on the client and on every unrevoked token it obtained, in one
    /// transaction. Returns false if no such client.
    async fn revoke_oauth_client(&self, id: Id, at: Timestamp) -> StoreResult<bool>;
    /// Issue 7 (app deletion): sets `revoked_at = at` on every unrevoked issued token of
    /// `app_id` (whatever obtained it: a client, an exchange, a single-use mint) in one
    /// transaction; returns their ids (for the bus deny-list).
    async fn revoke_app_tokens(&self, app_id: Id, at: Timestamp) -> StoreResult<Vec<Id>>;
    /// Errors with `Conflict` on a duplicate id or digest.
    async fn create_issued_token(&self, token: &IssuedToken) -> StoreResult<()>;
    /// By `jti`.
    async fn get_issued_token(&self, id: Id) -> StoreResult<Option<IssuedToken>>;
    /// By digest (opaque kinds).
    async fn find_issued_token(&self, digest: &[u8]) -> StoreResult<Option<IssuedToken>>;
    /// Sets `revoked_at` on the token and on tokens derived from it (`parent_id`). Returns false
    /// if no such token.
    async fn revoke_issued_token(&self, id: Id, at: Timestamp) -> StoreResult<bool>;
    /// Ids revoked at or after `since`: issued tokens, API keys and OAuth clients (the data
    /// plane's deny-list for JWTs and derived tokens).
    async fn list_revoked_ids(&self, since: Timestamp) -> StoreResult<Vec<Id>>;
    /// G-9: consumes a single-use token with one conditional `UPDATE … RETURNING` (database
    /// clock on PostgreSQL). Exactly one concurrent caller gets the row; everyone else `None`
    /// (unknown, expired, revoked or already consumed).
    async fn consume_single_use(&self, digest: &[u8]) -> StoreResult<Option<IssuedToken>>;
    /// Errors with `Conflict` on a duplicate kid.
    async fn create_signing_key(&self, key: &SigningKey) -> StoreResult<()>;
    /// Every signing key, newest `sign_from` first (retired ones included).
    async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKey>>;
    /// Sets `retire_at` (earliest wins). Returns false if no such key.
    async fn retire_signing_key(&self, kid: &str, at: Timestamp) -> StoreResult<bool>;
    /// Records a client-assertion `jti` key (a digest) until `expires_at`: true the first time,
    /// false on a replay (`INSERT … ON CONFLICT DO NOTHING`, §5.2). Purges expired rows.
    async fn record_jti(&self, key: &[u8], expires_at: Timestamp) -> StoreResult<bool>;

    // --- issue 7: services, releases, subscriptions, app deletion (`sqlite/services.rs`,
    // `postgres/services.rs`; records in [`services`]). ---
    /// Errors with `Conflict` if the slug is taken.
    async fn create_service(&self, service: &Service) -> StoreResult<()>;
    async fn get_service(&self, id: Id) -> StoreResult<Option<Service>>;
    async fn get_service_by_slug(&self, slug: &str) -> StoreResult<Option<Service>>;
    /// Services (of one team, or all), newest first.
    async fn list_services(&self, team_id: Option<Id>) -> StoreResult<Vec<Service>>;
    /// Replaces every column but `id`, `team_id`, `kind`, `slug`, `created_at` of the row with
    /// `service.id`, and inserts `release` (if any) in the same transaction. Returns false (and
    /// changes nothing) if no such service. `Conflict` if the release version exists.
    async fn update_service(&self, service: &Service, release: Option<&ServiceRelease>) -> StoreResult<bool>;
    /// Releases of a service, newest (highest version) first.
    async fn list_service_releases(&self, service_id: Id) -> StoreResult<Vec<ServiceRelease>>;
    async fn get_service_release(&self, service_id: Id, version: u32) -> StoreResult<Option<ServiceRelease>>;
    /// Errors with `Conflict` if the app already has a pending or active subscription to the
    /// service.
    async fn create_subscription(&self, subscription: &Subscription) -> StoreResult<()>;
    async fn get_subscription(&self, id: Id) -> StoreResult<Option<Subscription>>;
    /// Filtered, newest first.
    async fn list_subscriptions(&self, filter: &SubscriptionFilter) -> StoreResult<Vec<Subscription>>;
    /// Writes `status`, `reason`, `decided_by`, `expires_at`, `updated_at` of the row only if its
    /// stored status is still `expected` (a compare-and-set: two deciders never both win).
    /// Returns false if the row is missing or its status changed.
    async fn update_subscription(&self, subscription: &Subscription, expected: SubscriptionStatus) -> StoreResult<bool>;

    // --- issue 7: declarative team configuration (`sqlite/config.rs`, `postgres/config.rs`) ---
    /// Writes a whole [`ConfigChanges`] in ONE transaction, in its field order (apps, limits,
    /// models, services with their releases). All or nothing: on any error — `Conflict` for a
    /// taken app name, slug or release version, `NotFound` for an updated service that no longer
    /// exists or a deployment naming a missing provider — nothing at all is written.
    async fn apply_config(&self, changes: &ConfigChanges) -> StoreResult<()>;
}

/// Opens the store for a URL. Runs no migrations; call [`Store::migrate`].
///
/// * `sqlite://PATH` or `sqlite:PATH` (relative or absolute path; `sqlite:///abs/path` works
///   too): the file and its parent directory are created if missing; WAL journal,
///   `synchronous=NORMAL`, foreign keys on, busy timeout 5 s, a pool of 4 connections.
///   `sqlite::memory:` opens a private in-memory database (one connection; for tests). A query
///   string (`?mode=…`) is ignored.
/// * `postgres://…` or `postgresql://…`: a pool of 10 connections. Connection options go in the
///   URL as sqlx understands them, e.g. `?options[search_path]=myschema`.
///
/// Errors: `StoreError::Config` for an unknown scheme or a bad URL, `StoreError::Database` if
/// it cannot connect. Messages never contain the URL (it may hold a password).
pub async fn connect(url: &str) -> StoreResult<std::sync::Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(PostgresStore::connect(url).await?))
    } else {
        Err(StoreError::Config(
            "database URL must start with sqlite: or postgres://".into(),
        ))
    }
}

/// Page size of a call-log query: `limit` clamped to 1..=1000, default 100.
pub(crate) fn page_size(query: &CallLogQuery) -> i64 {
    i64::from(query.limit.unwrap_or(100).clamp(1, 1000))
}

/// Rows per statement in batched inserts (stays far below both backends' bind-parameter limits).
pub(crate) const INSERT_CHUNK: usize = 500;

/// `u64` counter → `BIGINT` (saturating; no realistic counter reaches `i64::MAX`).
pub(crate) fn u64_to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `BIGINT` → `u64` (negative values, which we never write, read as 0).
pub(crate) fn i64_to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Quotes an identifier read from the database catalog (for `debug_dump` only).
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
