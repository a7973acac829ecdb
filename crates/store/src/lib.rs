//! Persistence for Gatehouse: the [`Store`] trait with SQLite and PostgreSQL backends (one
//! conformance suite for both), and the [`Bus`] for change events (revocations).
//!
//! Records are plain structs in [`records`]. Secrets never live here in plaintext: API keys as
//! HMAC digests (`token-security.md` §2.3), provider keys as envelope-encrypted blobs (§3).

pub mod bus;
pub mod error;
pub mod records;

use async_trait::async_trait;
use gatehouse_types::{Id, Timestamp};

pub use bus::{Bus, BusEvent, MemoryBus};
pub use error::StoreError;
pub use records::*;

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Everything Gatehouse persists. Implemented by `SqliteStore` and `PostgresStore`; both pass
/// `tests/conformance.rs`. Every method is one transaction: a change is applied whole or not at
/// all. Lists are ordered newest first unless said otherwise.
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
    /// Errors with `Conflict` if the username is taken.
    async fn create_user(&self, user: &User) -> StoreResult<()>;
    async fn get_user_by_username(&self, username: &str) -> StoreResult<Option<User>>;

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
    async fn list_provider_credentials(&self, provider_id: Id) -> StoreResult<Vec<ProviderCredential>>;
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
}

/// Opens the store for a URL: `sqlite://PATH` (created if missing, WAL mode) or
/// `postgres://…`. Runs no migrations; call [`Store::migrate`].
///
/// Errors: `StoreError::Config` for an unknown scheme, `StoreError::Database` if it cannot connect.
pub async fn connect(url: &str) -> StoreResult<std::sync::Arc<dyn Store>> {
    let _ = url;
    Err(StoreError::Config("not implemented yet".into()))
}
