//! PostgreSQL backend of [`Store`] (multi-node mode).
//!
//! Storage conventions (see `migrations/postgres/`): `uuid` ids, `timestamptz` (microsecond
//! precision), `text[]` lists, `jsonb` provider settings, `bytea` digests and envelope parts.
//! Tables live in the first schema of the connection's `search_path`.


mod limits;
mod tenancy;
mod response_cache;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_types::{Id, Timestamp};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Postgres, QueryBuilder, Row, Transaction};

use crate::audit::{AuditEvent, AuditQuery, NewAuditEvent};
use crate::{
    App, CallLog, CallLogQuery, CallUsage, Credential, CredentialFilter, Deployment, INSERT_CHUNK, Model,
    OperatorToken, Provider, ProviderCredential, Store, StoreError, StoreResult, Team, User,
    i64_to_u64, page_size, quote_ident, u64_to_i64,
};

mod audit;
mod security;
mod oauth;
mod services;
mod config;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections in the pool.
const POOL_SIZE: u32 = 10;
/// How long to wait for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL store. Cheap to clone (shares the pool).
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `postgres://…` with a pool of 10 connections. Options sqlx understands may
    /// be given in the URL, e.g. `?options[search_path]=gh_test`.
    ///
    /// Errors: `Config` for a URL sqlx cannot parse, `Database` if it cannot connect. Neither
    /// message contains the URL.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| StoreError::Config("invalid postgres URL".into()))?;
        Self::connect_with(options).await
    }

    /// Connects with explicit options (pool of 10).
    pub async fn connect_with(options: PgConnectOptions) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::from_sqlx("connect to postgres", e))?;
        Ok(Self { pool })
    }

    /// Wraps an existing pool.
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The underlying pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn tx(&self, what: &str) -> StoreResult<Transaction<'static, Postgres>> {
        self.pool
            .begin()
            .await
            .map_err(|e| StoreError::from_sqlx(what, e))
    }
}

/// Makes a credential-like insert for `app_id` (API key, OAuth client, issued token) conditional
/// on the app being live, atomically (issue 5, tester M2): takes a `FOR SHARE` lock on the app
/// row inside `tx`, so a concurrent `delete_app` (an `UPDATE` of that row) either commits first
/// (then this sees `deleted_at` set) or waits until `tx` commits (then the service's revocation
/// sweep after the delete sees the new row). Errors: [`StoreError::NotFound`] `"app not found"`
/// when the app does not exist or is soft-deleted.
pub(crate) async fn require_live_app(tx: &mut Transaction<'static, Postgres>, app_id: Id, what: &str) -> StoreResult<()> {
    let live = sqlx::query("SELECT 1 FROM apps WHERE id = $1 AND deleted_at IS NULL FOR SHARE")
        .bind(app_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(|e| StoreError::from_sqlx(what, e))?;
    match live {
        Some(_) => Ok(()),
        None => Err(StoreError::NotFound("app not found".to_owned())),
    }
}

// ---------------------------------------------------------------------------------------------
// conversions

fn col<'r, T>(row: &'r PgRow, name: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(name).map_err(|e| StoreError::decode(name, e))
}

fn team_row(row: &PgRow) -> StoreResult<Team> {
    Ok(Team {
        id: col(row, "id")?,
        name: col(row, "name")?,
        created_at: col(row, "created_at")?,
    })
}

fn app_row(row: &PgRow) -> StoreResult<App> {
    Ok(App {
        id: col(row, "id")?,
        team_id: col(row, "team_id")?,
        name: col(row, "name")?,
        created_at: col(row, "created_at")?,
    })
}

fn user_row(row: &PgRow) -> StoreResult<User> {
    Ok(User {
        id: col(row, "id")?,
        username: col(row, "username")?,
        password_hash: col(row, "password_hash")?,
        system_role: col(row, "system_role")?,
        created_at: col(row, "created_at")?,
    })
}

fn operator_token_row(row: &PgRow) -> StoreResult<OperatorToken> {
    Ok(OperatorToken {
        id: col(row, "id")?,
        user_id: col(row, "user_id")?,
        name: col(row, "name")?,
        digest: col(row, "digest")?,
        pepper_version: col(row, "pepper_version")?,
        hint: col(row, "hint")?,
        expires_at: col(row, "expires_at")?,
        revoked_at: col(row, "revoked_at")?,
        created_at: col(row, "created_at")?,
    })
}

fn credential_row(row: &PgRow) -> StoreResult<Credential> {
    Ok(Credential {
        id: col(row, "id")?,
        team_id: col(row, "team_id")?,
        app_id: col(row, "app_id")?,
        name: col(row, "name")?,
        digest: col(row, "digest")?,
        pepper_version: col(row, "pepper_version")?,
        hint: col(row, "hint")?,
        models: col(row, "models")?,
        scopes: col(row, "scopes")?,
        expires_at: col(row, "expires_at")?,
        revoked_at: col(row, "revoked_at")?,
        last_used_at: col(row, "last_used_at")?,
        created_at: col(row, "created_at")?,
        security: security::read(row)?,
    })
}

fn provider_row(row: &PgRow) -> StoreResult<Provider> {
    let settings: sqlx::types::Json<serde_json::Value> = col(row, "settings")?;
    Ok(Provider {
        id: col(row, "id")?,
        name: col(row, "name")?,
        kind: col(row, "kind")?,
        base_url: col(row, "base_url")?,
        settings: settings.0,
        created_at: col(row, "created_at")?,
    })
}

fn provider_credential_row(row: &PgRow) -> StoreResult<ProviderCredential> {
    Ok(ProviderCredential {
        id: col(row, "id")?,
        provider_id: col(row, "provider_id")?,
        team_id: col(row, "team_id")?,
        hint: col(row, "hint")?,
        format_version: col(row, "format_version")?,
        kek_id: col(row, "kek_id")?,
        wrapped_dek: col(row, "wrapped_dek")?,
        nonce: col(row, "nonce")?,
        ciphertext: col(row, "ciphertext")?,
        priority: col(row, "priority")?,
        revoked_at: col(row, "revoked_at")?,
        created_at: col(row, "created_at")?,
    })
}

fn deployment_row(row: &PgRow) -> StoreResult<Deployment> {
    Ok(Deployment {
        id: col(row, "id")?,
        provider_id: col(row, "provider_id")?,
        upstream_model: col(row, "upstream_model")?,
        weight: col(row, "weight")?,
        priority: col(row, "priority")?,
    })
}

fn call_log_row(row: &PgRow) -> StoreResult<CallLog> {
    let status: i32 = col(row, "status")?;
    let opt_u64 = |name: &str| -> StoreResult<Option<u64>> {
        let v: Option<i64> = col(row, name)?;
        Ok(v.map(i64_to_u64))
    };
    Ok(CallLog {
        id: col(row, "id")?,
        created_at: col(row, "created_at")?,
        request_id: col(row, "request_id")?,
        team_id: col(row, "team_id")?,
        app_id: col(row, "app_id")?,
        credential_id: col(row, "credential_id")?,
        endpoint: col(row, "endpoint")?,
        model: col(row, "model")?,
        provider: col(row, "provider")?,
        upstream_model: col(row, "upstream_model")?,
        stream: col(row, "stream")?,
        status: u16::try_from(status).map_err(|e| StoreError::decode("status", e))?,
        error_code: col(row, "error_code")?,
        latency_ms: i64_to_u64(col(row, "latency_ms")?),
        upstream_latency_ms: opt_u64("upstream_latency_ms")?,
        ttft_ms: opt_u64("ttft_ms")?,
        prompt_tokens: i64_to_u64(col(row, "prompt_tokens")?),
        completion_tokens: i64_to_u64(col(row, "completion_tokens")?),
        cached_tokens: i64_to_u64(col(row, "cached_tokens")?),
        upstream_request_id: col(row, "upstream_request_id")?,
        cache_write_tokens: i64_to_u64(col(row, "cache_write_tokens")?),
        reasoning_tokens: i64_to_u64(col(row, "reasoning_tokens")?),
        cost_usd: col(row, "cost_usd")?,
        attempts: u32::try_from(col::<i32>(row, "attempts")?).unwrap_or(0),
        deployment: col(row, "deployment")?,
        cache_hit: col(row, "cache_hit")?,
    })
}

async fn load_deployments(
    tx: &mut Transaction<'static, Postgres>,
    model_id: Id,
) -> StoreResult<Vec<Deployment>> {
    let rows = sqlx::query(
        "SELECT id, provider_id, upstream_model, weight, priority FROM deployments \
         WHERE model_id = $1 ORDER BY position, id",
    )
    .bind(model_id)
    .fetch_all(&mut **tx)
    .await
    .map_err(|e| StoreError::from_sqlx("deployments", e))?;
    rows.iter().map(deployment_row).collect()
}

async fn model_from_row(
    tx: &mut Transaction<'static, Postgres>,
    row: &PgRow,
) -> StoreResult<Model> {
    let id: Id = col(row, "id")?;
    Ok(Model {
        id,
        name: col(row, "name")?,
        deployments: load_deployments(tx, id).await?,
        created_at: col(row, "created_at")?,
    })
}

/// Insert or replace a model and its deployments inside `tx` (the body of `upsert_model`, shared
/// with `apply_config`).
async fn upsert_model_in(tx: &mut Transaction<'static, Postgres>, model: &Model) -> StoreResult<Model> {
    let row = sqlx::query(
        "INSERT INTO models (id, name, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET name = excluded.name \
         RETURNING id, name, created_at",
    )
    .bind(model.id)
    .bind(&model.name)
    .bind(model.created_at)
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| StoreError::from_sqlx("model", e))?;
    let model_id: Id = col(&row, "id")?;
    sqlx::query("DELETE FROM deployments WHERE model_id = $1")
        .bind(model_id)
        .execute(&mut **tx)
        .await
        .map_err(|e| StoreError::from_sqlx("deployment", e))?;
    let now = gatehouse_types::now();
    for (position, d) in model.deployments.iter().enumerate() {
        let position = i32::try_from(position).unwrap_or(i32::MAX);
        sqlx::query(
            "INSERT INTO deployments \
             (id, model_id, provider_id, upstream_model, weight, priority, position, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(d.id)
        .bind(model_id)
        .bind(d.provider_id)
        .bind(&d.upstream_model)
        .bind(d.weight)
        .bind(d.priority)
        .bind(position)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(|e| StoreError::from_sqlx("deployment", e))?;
    }
    model_from_row(tx, &row).await
}

/// Inserts an app inside `tx` (shared by `create_app` and `apply_config`).
async fn insert_app(tx: &mut Transaction<'static, Postgres>, app: &App) -> StoreResult<()> {
    sqlx::query("INSERT INTO apps (id, team_id, name, created_at) VALUES ($1, $2, $3, $4)")
        .bind(app.id)
        .bind(app.team_id)
        .bind(&app.name)
        .bind(app.created_at)
        .execute(&mut **tx)
        .await
        .map_err(|e| StoreError::from_sqlx("app", e))?;
    Ok(())
}

macro_rules! operator_token_cols {
    () => {
        "id, user_id, name, digest, pepper_version, hint, expires_at, revoked_at, created_at"
    };
}
macro_rules! credential_cols {
    () => {
        "id, team_id, app_id, name, digest, pepper_version, hint, models, scopes, expires_at, \
         revoked_at, last_used_at, created_at, ip_allow, labels, dpop_jkt, rotated_from, \
         suspended_at, auto_suspend, mtls_x5t"
    };
}
macro_rules! provider_credential_cols {
    () => {
        "id, provider_id, team_id, hint, format_version, kek_id, wrapped_dek, nonce, ciphertext, \
         priority, revoked_at, created_at"
    };
}
macro_rules! call_log_cols {
    () => {
        "id, created_at, request_id, team_id, app_id, credential_id, endpoint, model, provider, \
         upstream_model, stream, status, error_code, latency_ms, upstream_latency_ms, ttft_ms, \
         prompt_tokens, completion_tokens, cached_tokens, upstream_request_id, cache_write_tokens, reasoning_tokens, cost_usd, attempts, deployment, \
         cache_hit"
    };
}

#[async_trait]
impl Store for PostgresStore {
    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Database(format!("migrate: {e}")))
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| StoreError::from_sqlx("ping", e))
    }

    // --- settings ---

    async fn get_setting(&self, key: &str) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| StoreError::from_sqlx("setting", e))
    }

    async fn set_setting(&self, key: &str, value: &str) -> StoreResult<()> {
        let now = gatehouse_types::now();
        let mut tx = self.tx("setting").await?;
        sqlx::query(
            "INSERT INTO settings (key, value, created_at, updated_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(key)
        .bind(value)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_sqlx("setting", e))?;
        tx.commit()
            .await
            .map_err(|e| StoreError::from_sqlx("setting", e))
    }

    // --- teams, apps, users ---

    async fn create_team(&self, team: &Team) -> StoreResult<()> {
        let mut tx = self.tx("team").await?;
        sqlx::query("INSERT INTO teams (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(team.id)
            .bind(&team.name)
            .bind(team.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_sqlx("team", e))?;
        tx.commit()
            .await
            .map_err(|e| StoreError::from_sqlx("team", e))
    }

    async fn get_team(&self, id: Id) -> StoreResult<Option<Team>> {
        let row = sqlx::query("SELECT id, name, created_at FROM teams WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| StoreError::from_sqlx("team", e))?;
        row.as_ref().map(team_row).transpose()
    }

    async fn get_team_by_name(&self, name: &str) -> StoreResult<Option<Team>> {
        let row = sqlx::query("SELECT id, name, created_at FROM teams WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| StoreError::from_sqlx("team", e))?;
        row.as_ref().map(team_row).transpose()
    }

    async fn list_teams(&self) -> StoreResult<Vec<Team>> {
        let rows =
            sqlx::query("SELECT id, name, created_at FROM teams ORDER BY created_at DESC, id DESC")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| StoreError::from_sqlx("teams", e))?;
        rows.iter().map(team_row).collect()
    }

    async fn create_app(&self, app: &App) -> StoreResult<()> {
        let mut tx = self.tx("app").await?;
        insert_app(&mut tx, app).await?;
        tx.commit()
            .await
            .map_err(|e| StoreError::from_sqlx("app", e))
    }

    async fn get_app(&self, id: Id) -> StoreResult<Option<App>> {
        let row = sqlx::query("SELECT id, team_id, name, created_at FROM apps WHERE id = $1 AND deleted_at IS NULL")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| StoreError::from_sqlx("app", e))?;
        row.as_ref().map(app_row).transpose()
    }

    async fn list_apps(&self, team_id: Option<Id>) -> StoreResult<Vec<App>> {
        let mut qb =
            QueryBuilder::<Postgres>::new("SELECT id, team_id, name, created_at FROM apps WHERE deleted_at IS NULL");
        if let Some(team_id) = team_id {
            qb.push(" AND team_id = ").push_bind(team_id);
        }
        qb.push(" ORDER BY created_at DESC, id DESC");
        let rows = qb
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(|e| StoreError::from_sqlx("apps", e))?;
        rows.iter().map(app_row).collect()
    }

    async fn create_user(&self, user: &User) -> StoreResult<()> {
        let mut tx = self.tx("user").await?;
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, system_role, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(user.id)
        .bind(&user.username)
        .bind(&user.password_hash)
        .bind(&user.system_role)
        .bind(user.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_sqlx("user", e))?;
        tx.commit()
            .await
            .map_err(|e| StoreError::from_sqlx("user", e))
    }

    async fn get_user_by_username(&self, username: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query(
            "SELECT id, username, password_hash, system_role, created_at FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("user", e))?;
        row.as_ref().map(user_row).transpose()
    }

    // --- issue 7 (tenancy): `tenancy.rs` ---
    async fn get_user(&self, id: Id) -> StoreResult<Option<User>> {
        self.tenancy_get_user(id).await
    }
    async fn list_users(&self) -> StoreResult<Vec<User>> {
        self.tenancy_list_users().await
    }
    async fn update_user(&self, user: &User) -> StoreResult<bool> {
        self.tenancy_update_user(user).await
    }
    async fn upsert_team_member(&self, member: &crate::TeamMember) -> StoreResult<()> {
        self.tenancy_upsert_member(member).await
    }
    async fn remove_team_member(&self, team_id: Id, user_id: Id) -> StoreResult<bool> {
        self.tenancy_remove_member(team_id, user_id).await
    }
    async fn delete_app(&self, id: Id, at: Timestamp) -> StoreResult<bool> {
        self.tenancy_delete_app(id, at).await
    }
    async fn list_team_members(&self, team_id: Id) -> StoreResult<Vec<crate::TeamMember>> {
        self.tenancy_list_members("team_id", team_id).await
    }
    async fn list_user_memberships(&self, user_id: Id) -> StoreResult<Vec<crate::TeamMember>> {
        self.tenancy_list_members("user_id", user_id).await
    }
    async fn create_session(&self, session: &crate::UserSession) -> StoreResult<()> {
        self.tenancy_create_session(session).await
    }
    async fn find_session(&self, digest: &[u8]) -> StoreResult<Option<crate::UserSession>> {
        self.tenancy_find_session(digest).await
    }
    async fn revoke_session(&self, id: Id, at: Timestamp) -> StoreResult<bool> {
        self.tenancy_revoke_session(id, at).await
    }
    async fn set_session_password_version(&self, id: Id, version: &[u8]) -> StoreResult<bool> {
        self.tenancy_set_session_password_version(id, version).await
    }
    async fn revoke_user_sessions(&self, user_id: Id, keep: Option<Id>, at: Timestamp) -> StoreResult<u64> {
        self.tenancy_revoke_user_sessions(user_id, keep, at).await
    }
    async fn delete_expired_sessions(&self, before: Timestamp) -> StoreResult<u64> {
        self.tenancy_delete_expired_sessions(before).await
    }

    // --- operator tokens ---

    async fn create_operator_token(&self, t: &OperatorToken) -> StoreResult<()> {
        let mut tx = self.tx("operator token").await?;
        sqlx::query(concat!(
            "INSERT INTO operator_tokens (",
            operator_token_cols!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(t.id)
        .bind(t.user_id)
        .bind(&t.name)
        .bind(&t.digest)
        .bind(t.pepper_version)
        .bind(&t.hint)
        .bind(t.expires_at)
        .bind(t.revoked_at)
        .bind(t.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_sqlx("operator token", e))?;
        tx.commit()
            .await
            .map_err(|e| StoreError::from_sqlx("operator token", e))
    }

    async fn find_operator_token(&self, digest: &[u8]) -> StoreResult<Option<OperatorToken>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            operator_token_cols!(),
            " FROM operator_tokens WHERE digest = $1"
        ))
        .bind(digest)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("operator token", e))?;
        row.as_ref().map(operator_token_row).transpose()
    }

    async fn list_operator_tokens(&self) -> StoreResult<Vec<OperatorToken>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            operator_token_cols!(),
            " FROM operator_tokens ORDER BY created_at DESC, id DESC"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("operator tokens", e))?;
        rows.iter().map(operator_token_row).collect()
    }

    async fn revoke_operator_token(&self, id: Id, at: Timestamp) -> StoreResult<bool> {
        let mut tx = self.tx("operator token").await?;
        let done = sqlx::query(
            "UPDATE operator_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2",
        )
        .bind(at)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_sqlx("operator token", e))?;
        tx.commit()
            .await
            .map_err(|e| StoreError::from_sqlx("operator token", e))?;
        Ok(done.rows_affected() > 0)
    }

    // --- credentials ---

    async fn create_credential(&self, c: &Credential) -> StoreResult<()> {
        let mut tx = self.tx("credential").await?;
        require_live_app(&mut tx, c.app_id, "credential").await?;
        sqlx::query(concat!(
            "INSERT INTO credentials (",
            "id, team_id, app_id, name, digest, pepper_version, hint, models, scopes, expires_at, revoked_at, last_used_at, created_at",
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(c.id)
        .bind(c.team_id)
        .bind(c.app_id)
        .bind(&c.name)
        .bind(&c.digest)
        .bind(c.pepper_version)
        .bind(&c.hint)
        .bind(&c.models)
        .bind(&c.scopes)
        .bind(c.expires_at)
        .bind(c.revoked_at)
        .bind(c.last_used_at)
        .bind(c.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_sqlx("credential", e))?;
        security::write(&mut tx, c).await?;
        tx.commit()
            .await
            .map_err(|e| StoreError::from_sqlx("credential", e))
    }

    async fn get_credential(&self, id: Id) -> StoreResult<Option<Credential>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            credential_cols!(),
            " FROM credentials WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("credential", e))?;
        row.as_ref().map(credential_row).transpose()
    }

    async fn find_credential(&self, digest: &[u8]) -> StoreResult<Option<Credential>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            credential_cols!(),
            " FROM credentials WHERE digest = $1"
        ))
        .bind(digest)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("credential", e))?;
        row.as_ref().map(credential_row).transpose()
    }

    async fn list_credentials(&self, filter: &CredentialFilter) -> StoreResult<Vec<Credential>> {
        let mut qb = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            credential_cols!(),
            " FROM credentials WHERE TRUE"
        ));
        if let Some(team_id) = filter.team_id {
            qb.push(" AND team_id = ").push_bind(team_id);
        }
        if let Some(app_id) = filter.app_id {
            qb.push(" AND app_id = ").push_bind(app_id);
        }
        if !filter.include_revoked {
            qb.push(" AND revoked_at IS NULL");
        }
        qb.push(" ORDER BY created_at DESC, id DESC");
        let rows = qb
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(|e| StoreError::from_sqlx("credentials", e))?;
        rows.iter().map(credential_row).collect()
    }

    async fn revoke_credential(&self, id: Id, at: Timestamp) -> StoreResult<bool> {
        let mut tx = self.tx("credential").await?;
        let done = sqlx::query(
            "UPDATE credentials SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2",
        )
        .bind(at)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_sqlx("credential", e))?;
        tx.commit()
            .await
            .map_err(|e| StoreError::from_sqlx("credential", e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn touch_credentials(&self, uses: &[(Id, Timestamp)]) -> StoreResult<()> {
        if uses.is_empty() {
            return Ok(());
        }
        let mut tx = self.tx("credential").await?;
        for (id, at) in uses {
            // GREATEST ignores NULL: last_used_at only moves forward.
            sqlx::query(
                "UPDATE credentials SET last_used_at = GREATEST(last_used_at, $1) WHERE id = $2",
            )
            .bind(*at)
            .bind(*id)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_sqlx("credential", e))?;
        }
        tx.commit()
            .await
            .map_err(|e| StoreError::from_sqlx("credential", e))
    }

    // --- providers ---

    async fn upsert_provider(&self, p: &Provider) -> StoreResult<Provider> {
        let mut tx = self.tx("provider").await?;
        let row = sqlx::query(
            "INSERT INTO providers (id, name, kind, base_url, settings, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, base_url = excluded.base_url, \
             settings = excluded.settings \
             RETURNING id, name, kind, base_url, settings, created_at",
        )
        .bind(p.id)
        .bind(&p.name)
        .bind(&p.kind)
        .bind(&p.base_url)
        .bind(sqlx::types::Json(&p.settings))
        .bind(p.created_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| StoreError::from_sqlx("provider", e))?;
        let stored = provider_row(&row)?;
        tx.commit()
            .await
            .map_err(|e| StoreError::from_sqlx("provider", e))?;
        Ok(stored)
    }

    async fn get_provider(&self, id: Id) -> StoreResult<Option<Provider>> {
        let row = sqlx::query(
            "SELECT id, name, kind, base_url, settings, created_at FROM providers WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("provider", e))?;
        row.as_ref().map(provider_row).transpose()
    }

    async fn get_provider_by_name(&self, name: &str) -> StoreResult<Option<Provider>> {
        let row = sqlx::query(
            "SELECT id, name, kind, base_url, settings, created_at FROM providers WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("provider", e))?;
        row.as_ref().map(provider_row).transpose()
    }

    async fn list_providers(&self) -> StoreResult<Vec<Provider>> {
        let rows = sqlx::query(
            "SELECT id, name, kind, base_url, settings, created_at FROM providers \
             ORDER BY created_at DESC, id DESC",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("providers", e))?;
        rows.iter().map(provider_row).collect()
    }

    async fn delete_provider(&self, id: Id) -> StoreResult<bool> {
        let mut tx = self.tx("provider").await?;
        // Credentials and deployments go with it (ON DELETE CASCADE).
        let done = sqlx::query("DELETE FROM providers WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_sqlx("provider", e))?;
        tx.commit()
            .await
            .map_err(|e| StoreError::from_sqlx("provider", e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_provider_credential(&self, c: &ProviderCredential) -> StoreResult<()> {
        let mut tx = self.tx("provider credential").await?;
        sqlx::query(concat!(
            "INSERT INTO provider_credentials (",
            provider_credential_cols!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(c.id)
        .bind(c.provider_id)
        .bind(c.team_id)
        .bind(&c.hint)
        .bind(c.format_version)
        .bind(&c.kek_id)
        .bind(&c.wrapped_dek)
        .bind(&c.nonce)
        .bind(&c.ciphertext)
        .bind(c.priority)
        .bind(c.revoked_at)
        .bind(c.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_sqlx("provider credential", e))?;
        tx.commit()
            .await
            .map_err(|e| StoreError::from_sqlx("provider credential", e))
    }

    async fn list_provider_credentials(
        &self,
        provider_id: Id,
    ) -> StoreResult<Vec<ProviderCredential>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            provider_credential_cols!(),
            " FROM provider_credentials WHERE provider_id = $1 AND revoked_at IS NULL \
             ORDER BY priority ASC, created_at DESC, id DESC"
        ))
        .bind(provider_id)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("provider credentials", e))?;
        rows.iter().map(provider_credential_row).collect()
    }

    async fn revoke_provider_credential(&self, id: Id, at: Timestamp) -> StoreResult<bool> {
        let mut tx = self.tx("provider credential").await?;
        let done = sqlx::query(
            "UPDATE provider_credentials SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2",
        )
        .bind(at)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_sqlx("provider credential", e))?;
        tx.commit()
            .await
            .map_err(|e| StoreError::from_sqlx("provider credential", e))?;
        Ok(done.rows_affected() > 0)
    }

    // --- models ---

    async fn upsert_model(&self, model: &Model) -> StoreResult<Model> {
        let mut tx = self.tx("model").await?;
        let stored = upsert_model_in(&mut tx, model).await?;
        tx.commit()
            .await
            .map_err(|e| StoreError::from_sqlx("model", e))?;
        Ok(stored)
    }

    async fn get_model(&self, name: &str) -> StoreResult<Option<Model>> {
        let mut tx = self.tx("model").await?;
        // One snapshot for the model and its deployments.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_sqlx("model", e))?;
        let row = sqlx::query("SELECT id, name, created_at FROM models WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| StoreError::from_sqlx("model", e))?;
        let model = match row {
            Some(row) => Some(model_from_row(&mut tx, &row).await?),
            None => None,
        };
        tx.commit()
            .await
            .map_err(|e| StoreError::from_sqlx("model", e))?;
        Ok(model)
    }

    async fn list_models(&self) -> StoreResult<Vec<Model>> {
        let mut tx = self.tx("models").await?;
        // One snapshot for the models and their deployments.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_sqlx("models", e))?;
        let rows = sqlx::query("SELECT id, name, created_at FROM models ORDER BY name")
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| StoreError::from_sqlx("models", e))?;
        let mut models = Vec::with_capacity(rows.len());
        for row in &rows {
            models.push(model_from_row(&mut tx, row).await?);
        }
        tx.commit()
            .await
            .map_err(|e| StoreError::from_sqlx("models", e))?;
        Ok(models)
    }

    async fn delete_model(&self, name: &str) -> StoreResult<bool> {
        let mut tx = self.tx("model").await?;
        let done = sqlx::query("DELETE FROM models WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_sqlx("model", e))?;
        tx.commit()
            .await
            .map_err(|e| StoreError::from_sqlx("model", e))?;
        Ok(done.rows_affected() > 0)
    }

    // --- call log ---

    async fn insert_call_logs(&self, logs: &[CallLog]) -> StoreResult<()> {
        if logs.is_empty() {
            return Ok(());
        }
        let mut tx = self.tx("call log").await?;
        for chunk in logs.chunks(INSERT_CHUNK) {
            let mut qb = QueryBuilder::<Postgres>::new(concat!(
                "INSERT INTO call_logs (",
                call_log_cols!(),
                ") "
            ));
            qb.push_values(chunk, |mut b, l| {
                b.push_bind(l.id)
                    .push_bind(l.created_at)
                    .push_bind(l.request_id.clone())
                    .push_bind(l.team_id)
                    .push_bind(l.app_id)
                    .push_bind(l.credential_id)
                    .push_bind(l.endpoint.clone())
                    .push_bind(l.model.clone())
                    .push_bind(l.provider.clone())
                    .push_bind(l.upstream_model.clone())
                    .push_bind(l.stream)
                    .push_bind(i32::from(l.status))
                    .push_bind(l.error_code.clone())
                    .push_bind(u64_to_i64(l.latency_ms))
                    .push_bind(l.upstream_latency_ms.map(u64_to_i64))
                    .push_bind(l.ttft_ms.map(u64_to_i64))
                    .push_bind(u64_to_i64(l.prompt_tokens))
                    .push_bind(u64_to_i64(l.completion_tokens))
                    .push_bind(u64_to_i64(l.cached_tokens))
                    .push_bind(l.upstream_request_id.clone())
                    .push_bind(u64_to_i64(l.cache_write_tokens))
                    .push_bind(u64_to_i64(l.reasoning_tokens))
                    .push_bind(l.cost_usd.filter(|c| c.is_finite()))
                    .push_bind(i32::try_from(l.attempts).unwrap_or(i32::MAX))
                    .push_bind(l.deployment.clone())
                    .push_bind(l.cache_hit);
            });
            qb.build()
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::from_sqlx("call log", e))?;
        }
        tx.commit()
            .await
            .map_err(|e| StoreError::from_sqlx("call log", e))
    }

    async fn query_call_logs(&self, q: &CallLogQuery) -> StoreResult<Vec<CallLog>> {
        let mut tx = self.tx("call logs").await?;
        // Keyset cursor: the (created_at, id) of the `before` row; an unknown id falls back to
        // "ids older than it" (UUIDv7 order).
        let cursor: Option<(Option<Timestamp>, Id)> = match q.before {
            Some(before) => {
                let at: Option<Timestamp> =
                    sqlx::query_scalar("SELECT created_at FROM call_logs WHERE id = $1")
                        .bind(before)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(|e| StoreError::from_sqlx("call logs", e))?;
                Some((at, before))
            }
            None => None,
        };
        let mut qb = QueryBuilder::<Postgres>::new(concat!(
            "SELECT ",
            call_log_cols!(),
            " FROM call_logs WHERE TRUE"
        ));
        if let Some(v) = q.team_id {
            qb.push(" AND team_id = ").push_bind(v);
        }
        if let Some(v) = q.app_id {
            qb.push(" AND app_id = ").push_bind(v);
        }
        if let Some(v) = q.credential_id {
            qb.push(" AND credential_id = ").push_bind(v);
        }
        if let Some(v) = &q.model {
            qb.push(" AND model = ").push_bind(v.clone());
        }
        if let Some(v) = q.status {
            qb.push(" AND status = ").push_bind(i32::from(v));
        }
        if q.errors_only {
            qb.push(" AND status >= 400");
        }
        if let Some(v) = q.since {
            qb.push(" AND created_at >= ").push_bind(v);
        }
        if let Some(v) = q.until {
            qb.push(" AND created_at < ").push_bind(v);
        }
        match cursor {
            Some((Some(at), id)) => {
                qb.push(" AND (created_at, id) < (")
                    .push_bind(at)
                    .push(", ")
                    .push_bind(id)
                    .push(")");
            }
            Some((None, id)) => {
                qb.push(" AND id < ").push_bind(id);
            }
            None => {}
        }
        qb.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(page_size(q));
        let rows = qb
            .build()
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| StoreError::from_sqlx("call logs", e))?;
        tx.commit()
            .await
            .map_err(|e| StoreError::from_sqlx("call logs", e))?;
        rows.iter().map(call_log_row).collect()
    }

    // --- audits ---

    async fn call_usage(&self, month_start: Timestamp, day_start: Timestamp) -> StoreResult<Vec<CallUsage>> {
        // Tokens are prompt + completion; cost is cost_usd in micros (NULL = 0).
        const SQL: &str = "SELECT team_id, app_id, credential_id, model, COALESCE(SUM((prompt_tokens + completion_tokens)), 0)::bigint AS tm, COALESCE(SUM(CASE WHEN created_at >= $2 THEN (prompt_tokens + completion_tokens) ELSE 0 END), 0)::bigint AS td, COALESCE(SUM(ROUND(COALESCE(cost_usd, 0)::numeric * 1000000)), 0)::bigint AS cm, COALESCE(SUM(CASE WHEN created_at >= $2 THEN ROUND(COALESCE(cost_usd, 0)::numeric * 1000000) ELSE 0 END), 0)::bigint AS cd FROM call_logs WHERE created_at >= $1 GROUP BY team_id, app_id, credential_id, model";
        let rows = sqlx::query(SQL)
            .bind(month_start)
            .bind(day_start)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| StoreError::from_sqlx("call usage", e))?;
        rows.iter()
            .map(|r| {
                let n = |name: &str| col::<i64>(r, name).map(i64_to_u64);
                Ok(CallUsage {
                    team_id: col(r, "team_id")?,
                    app_id: col(r, "app_id")?,
                    credential_id: col(r, "credential_id")?,
                    model: col(r, "model")?,
                    tokens_month: n("tm")?,
                    tokens_day: n("td")?,
                    cost_micros_month: n("cm")?,
                    cost_micros_day: n("cd")?,
                })
            })
            .collect()
    }

    async fn debug_dump(&self) -> StoreResult<String> {
        let mut tx = self.tx("dump").await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_sqlx("dump", e))?;
        let columns = sqlx::query(
            "SELECT c.table_name::text AS table_name, c.column_name::text AS column_name, \
                    c.data_type::text AS data_type \
             FROM information_schema.columns c \
             JOIN information_schema.tables t \
               ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
             WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' \
               AND c.table_name <> '_sqlx_migrations' \
             ORDER BY c.table_name, c.ordinal_position",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| StoreError::from_sqlx("dump", e))?;
        let mut out = String::new();
        for c in &columns {
            let table: String = col(c, "table_name")?;
            let name: String = col(c, "column_name")?;
            let ty: String = col(c, "data_type")?;
            let is_text = matches!(
                ty.as_str(),
                "text" | "character varying" | "character" | "json" | "jsonb" | "ARRAY"
            );
            let is_blob = ty == "bytea";
            if !is_text && !is_blob {
                continue;
            }
            // Identifiers come from the catalog, quoted; no value is interpolated.
            let sql = if is_text {
                format!(
                    "SELECT {}::text FROM {}",
                    quote_ident(&name),
                    quote_ident(&table)
                )
            } else {
                format!("SELECT {} FROM {}", quote_ident(&name), quote_ident(&table))
            };
            let rows = sqlx::query(AssertSqlSafe(sql))
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| StoreError::from_sqlx("dump", e))?;
            for r in &rows {
                let value = if is_text {
                    let v: Option<String> =
                        r.try_get(0).map_err(|e| StoreError::decode(&name, e))?;
                    v
                } else {
                    let v: Option<Vec<u8>> =
                        r.try_get(0).map_err(|e| StoreError::decode(&name, e))?;
                    v.map(|b| String::from_utf8_lossy(&b).into_owned())
                };
                if let Some(value) = value {
                    out.push_str(&table);
                    out.push('.');
                    out.push_str(&name);
                    out.push_str(": ");
                    out.push_str(&value);
                    out.push('\n');
                }
            }
        }
        tx.commit()
            .await
            .map_err(|e| StoreError::from_sqlx("dump", e))?;
        Ok(out)
    }

    // --- issue 5 (token security, part b): audit log (`audit.rs` beside this file) ---

    async fn append_audit_events(&self, events: &[NewAuditEvent]) -> StoreResult<Vec<AuditEvent>> {
        audit::append(self, events).await
    }

    async fn query_audit_events(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        audit::query(self, query).await
    }

    async fn audit_chain(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<AuditEvent>> {
        audit::chain_page(self, after_seq, limit).await
    }

    // --- issue 5 (token security, part b): rotation and suspension (`security.rs`) ---

    async fn rotate_credential(&self, old: Id, successor: &Credential, old_expires_at: Timestamp) -> StoreResult<bool> {
        security::rotate(self, old, successor, old_expires_at).await
    }

    async fn suspend_credential(&self, id: Id, at: Timestamp) -> StoreResult<bool> {
        security::suspend(self, id, at).await
    }

    // --- issue 6: limits (see `limits.rs`) ---
    async fn upsert_limit(&self, limit: &crate::Limit) -> StoreResult<crate::Limit> {
        self.limits_upsert(limit).await
    }
    async fn list_limits(&self) -> StoreResult<Vec<crate::Limit>> {
        self.limits_list().await
    }
    async fn delete_limit(&self, id: Id) -> StoreResult<bool> {
        self.limits_delete(id).await
    }
    // --- issue 6: response cache (see `response_cache.rs`) ---
    async fn set_model_cache(&self, model: &str, ttl_secs: u32, at: Timestamp) -> StoreResult<Option<crate::ModelCachePolicy>> {
        self.model_cache_set(model, ttl_secs, at).await
    }
    async fn list_model_caches(&self) -> StoreResult<Vec<crate::ModelCachePolicy>> {
        self.model_cache_list().await
    }
    async fn delete_model_cache(&self, model: &str) -> StoreResult<bool> {
        self.model_cache_delete(model).await
    }

    // --- OAuth (issue 5): bodies in `postgres/oauth.rs` ---

    async fn create_oauth_client(&self, client: &crate::OAuthClient) -> StoreResult<()> {
        oauth::create_oauth_client(self, client).await
    }
    async fn get_oauth_client(&self, id: Id) -> StoreResult<Option<crate::OAuthClient>> {
        oauth::get_oauth_client(self, id).await
    }
    async fn list_oauth_clients(&self, include_revoked: bool) -> StoreResult<Vec<crate::OAuthClient>> {
        oauth::list_oauth_clients(self, include_revoked).await
    }
    async fn revoke_oauth_client(&self, id: Id, at: Timestamp) -> StoreResult<bool> {
        oauth::revoke_oauth_client(self, id, at).await
    }
    async fn revoke_app_tokens(&self, app_id: Id, at: Timestamp) -> StoreResult<Vec<Id>> {
        oauth::revoke_app_tokens(self, app_id, at).await
    }
    async fn create_issued_token(&self, token: &crate::IssuedToken) -> StoreResult<()> {
        oauth::create_issued_token(self, token).await
    }
    async fn get_issued_token(&self, id: Id) -> StoreResult<Option<crate::IssuedToken>> {
        oauth::get_issued_token(self, id).await
    }
    async fn find_issued_token(&self, digest: &[u8]) -> StoreResult<Option<crate::IssuedToken>> {
        oauth::find_issued_token(self, digest).await
    }
    async fn revoke_issued_token(&self, id: Id, at: Timestamp) -> StoreResult<bool> {
        oauth::revoke_issued_token(self, id, at).await
    }
    async fn list_revoked_ids(&self, since: Timestamp) -> StoreResult<Vec<Id>> {
        oauth::list_revoked_ids(self, since).await
    }
    async fn consume_single_use(&self, digest: &[u8]) -> StoreResult<Option<crate::IssuedToken>> {
        oauth::consume_single_use(self, digest).await
    }
    async fn create_signing_key(&self, key: &crate::SigningKey) -> StoreResult<()> {
        oauth::create_signing_key(self, key).await
    }
    async fn list_signing_keys(&self) -> StoreResult<Vec<crate::SigningKey>> {
        oauth::list_signing_keys(self).await
    }
    async fn retire_signing_key(&self, kid: &str, at: Timestamp) -> StoreResult<bool> {
        oauth::retire_signing_key(self, kid, at).await
    }
    async fn record_jti(&self, key: &[u8], expires_at: Timestamp) -> StoreResult<bool> {
        oauth::record_jti(self, key, expires_at).await
    }

    // --- issue 7 (`services.rs` sub-module) ---
    async fn create_service(&self, service: &crate::Service) -> StoreResult<()> {
        self.services_create(service).await
    }
    async fn get_service(&self, id: Id) -> StoreResult<Option<crate::Service>> {
        self.services_get(Some(id), None).await
    }
    async fn get_service_by_slug(&self, slug: &str) -> StoreResult<Option<crate::Service>> {
        self.services_get(None, Some(slug)).await
    }
    async fn list_services(&self, team_id: Option<Id>) -> StoreResult<Vec<crate::Service>> {
        self.services_list(team_id).await
    }
    async fn update_service(&self, service: &crate::Service, release: Option<&crate::ServiceRelease>) -> StoreResult<bool> {
        self.services_update(service, release).await
    }
    async fn list_service_releases(&self, service_id: Id) -> StoreResult<Vec<crate::ServiceRelease>> {
        self.releases_list(service_id, None).await
    }
    async fn get_service_release(&self, service_id: Id, version: u32) -> StoreResult<Option<crate::ServiceRelease>> {
        Ok(self.releases_list(service_id, Some(version)).await?.into_iter().next())
    }
    async fn create_subscription(&self, subscription: &crate::Subscription) -> StoreResult<()> {
        self.subscriptions_create(subscription).await
    }
    async fn get_subscription(&self, id: Id) -> StoreResult<Option<crate::Subscription>> {
        Ok(self.subscriptions_list(Some(id), &crate::SubscriptionFilter::default()).await?.into_iter().next())
    }
    async fn list_subscriptions(&self, filter: &crate::SubscriptionFilter) -> StoreResult<Vec<crate::Subscription>> {
        self.subscriptions_list(None, filter).await
    }
    async fn update_subscription(&self, subscription: &crate::Subscription, expected: crate::SubscriptionStatus) -> StoreResult<bool> {
        self.subscriptions_update(subscription, expected).await
    }
    async fn apply_config(&self, changes: &crate::ConfigChanges) -> StoreResult<()> {
        self.config_apply(changes).await
    }
}
