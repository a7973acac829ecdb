//! PostgreSQL implementation of the OAuth methods of [`crate::Store`] (issue 5). The trait impl
//! in `postgres.rs` delegates here.

use gatehouse_types::{Id, Timestamp};
use sqlx::postgres::PgRow;

use super::{PostgresStore, col};
use crate::{IssuedToken, OAuthClient, SigningKey, StoreError, StoreResult};

const CLIENT_COLS: &str = "id, team_id, app_id, name, auth_method, secret_digest, pepper_version, secret_hint, \
     public_jwk, token_format, scopes, models, audiences, access_ttl_secs, revoked_at, created_at, tls_bound";
const TOKEN_COLS: &str = "id, kind, digest, pepper_version, hint, team_id, app_id, client_id, subject, parent_id, \
     scopes, models, audience, max_tokens, max_spend_micros, act, binding_jkt, expires_at, consumed_at, revoked_at, created_at, binding_x5t";
const KEY_COLS: &str =
    "kid, alg, public_jwk, format_version, kek_id, wrapped_dek, nonce, ciphertext, sign_from, retire_at, created_at";

fn db(what: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |e| StoreError::from_sqlx(what, e)
}

fn client_row(row: &PgRow) -> StoreResult<OAuthClient> {
    Ok(OAuthClient {
        id: col(row, "id")?,
        team_id: col(row, "team_id")?,
        app_id: col(row, "app_id")?,
        name: col(row, "name")?,
        auth_method: col(row, "auth_method")?,
        secret_digest: col(row, "secret_digest")?,
        pepper_version: col(row, "pepper_version")?,
        secret_hint: col(row, "secret_hint")?,
        public_jwk: col(row, "public_jwk")?,
        token_format: col(row, "token_format")?,
        scopes: col(row, "scopes")?,
        models: col(row, "models")?,
        audiences: col(row, "audiences")?,
        access_ttl_secs: col(row, "access_ttl_secs")?,
        tls_client_certificate_bound_access_tokens: col(row, "tls_bound")?,
        revoked_at: col(row, "revoked_at")?,
        created_at: col(row, "created_at")?,
    })
}

fn token_row(row: &PgRow) -> StoreResult<IssuedToken> {
    Ok(IssuedToken {
        id: col(row, "id")?,
        kind: col(row, "kind")?,
        digest: col(row, "digest")?,
        pepper_version: col(row, "pepper_version")?,
        hint: col(row, "hint")?,
        team_id: col(row, "team_id")?,
        app_id: col(row, "app_id")?,
        client_id: col(row, "client_id")?,
        subject: col(row, "subject")?,
        parent_id: col(row, "parent_id")?,
        scopes: col(row, "scopes")?,
        models: col(row, "models")?,
        audience: col(row, "audience")?,
        max_tokens: col(row, "max_tokens")?,
        max_spend_micros: col(row, "max_spend_micros")?,
        act: col(row, "act")?,
        binding_jkt: col(row, "binding_jkt")?,
        binding_x5t: col(row, "binding_x5t")?,
        expires_at: col(row, "expires_at")?,
        consumed_at: col(row, "consumed_at")?,
        revoked_at: col(row, "revoked_at")?,
        created_at: col(row, "created_at")?,
    })
}

fn key_row(row: &PgRow) -> StoreResult<SigningKey> {
    Ok(SigningKey {
        kid: col(row, "kid")?,
        alg: col(row, "alg")?,
        public_jwk: col(row, "public_jwk")?,
        format_version: col(row, "format_version")?,
        kek_id: col(row, "kek_id")?,
        wrapped_dek: col(row, "wrapped_dek")?,
        nonce: col(row, "nonce")?,
        ciphertext: col(row, "ciphertext")?,
        sign_from: col(row, "sign_from")?,
        retire_at: col(row, "retire_at")?,
        created_at: col(row, "created_at")?,
    })
}

pub(super) async fn create_oauth_client(s: &PostgresStore, c: &OAuthClient) -> StoreResult<()> {
    let sql = format!(
        "INSERT INTO oauth_clients ({CLIENT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
    );
    let mut tx = s.tx("oauth client").await?;
    super::require_live_app(&mut tx, c.app_id, "oauth client").await?;
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(c.id)
        .bind(c.team_id)
        .bind(c.app_id)
        .bind(&c.name)
        .bind(&c.auth_method)
        .bind(&c.secret_digest)
        .bind(c.pepper_version)
        .bind(&c.secret_hint)
        .bind(&c.public_jwk)
        .bind(&c.token_format)
        .bind(&c.scopes)
        .bind(&c.models)
        .bind(&c.audiences)
        .bind(c.access_ttl_secs)
        .bind(c.revoked_at)
        .bind(c.created_at)
        .bind(c.tls_client_certificate_bound_access_tokens)
        .execute(&mut *tx)
        .await
        .map_err(db("oauth client"))?;
    tx.commit().await.map_err(db("oauth client"))
}

pub(super) async fn get_oauth_client(s: &PostgresStore, id: Id) -> StoreResult<Option<OAuthClient>> {
    let sql = format!("SELECT {CLIENT_COLS} FROM oauth_clients WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(s.pool()).await.map_err(db("oauth client"))?;
    row.as_ref().map(client_row).transpose()
}

pub(super) async fn list_oauth_clients(s: &PostgresStore, include_revoked: bool) -> StoreResult<Vec<OAuthClient>> {
    let filter = if include_revoked { "" } else { " WHERE revoked_at IS NULL" };
    let sql = format!("SELECT {CLIENT_COLS} FROM oauth_clients{filter} ORDER BY created_at DESC, id DESC");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(s.pool()).await.map_err(db("oauth clients"))?;
    rows.iter().map(client_row).collect()
}

pub(super) async fn revoke_oauth_client(s: &PostgresStore, id: Id, at: Timestamp) -> StoreResult<bool> {
    let mut tx = s.tx("oauth client").await?;
    let done = sqlx::query("UPDATE oauth_clients SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2")
        .bind(at)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db("oauth client"))?;
    sqlx::query("UPDATE issued_tokens SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL")
        .bind(at)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db("issued tokens"))?;
    tx.commit().await.map_err(db("oauth client"))?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn revoke_app_tokens(s: &PostgresStore, app_id: Id, at: Timestamp) -> StoreResult<Vec<Id>> {
    let rows = sqlx::query("UPDATE issued_tokens SET revoked_at = $1 WHERE app_id = $2 AND revoked_at IS NULL RETURNING id")
        .bind(at)
        .bind(app_id)
        .fetch_all(s.pool())
        .await
        .map_err(db("issued tokens"))?;
    rows.iter().map(|r| col::<Id>(r, "id")).collect()
}

pub(super) async fn create_issued_token(s: &PostgresStore, t: &IssuedToken) -> StoreResult<()> {
    let sql = format!(
        "INSERT INTO issued_tokens ({TOKEN_COLS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)"
    );
    let mut tx = s.tx("issued token").await?;
    super::require_live_app(&mut tx, t.app_id, "issued token").await?;
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(t.id)
        .bind(&t.kind)
        .bind(&t.digest)
        .bind(t.pepper_version)
        .bind(&t.hint)
        .bind(t.team_id)
        .bind(t.app_id)
        .bind(t.client_id)
        .bind(&t.subject)
        .bind(t.parent_id)
        .bind(&t.scopes)
        .bind(&t.models)
        .bind(&t.audience)
        .bind(t.max_tokens)
        .bind(t.max_spend_micros)
        .bind(&t.act)
        .bind(&t.binding_jkt)
        .bind(t.expires_at)
        .bind(t.consumed_at)
        .bind(t.revoked_at)
        .bind(t.created_at)
        .bind(&t.binding_x5t)
        .execute(&mut *tx)
        .await
        .map_err(db("issued token"))?;
    tx.commit().await.map_err(db("issued token"))
}

pub(super) async fn get_issued_token(s: &PostgresStore, id: Id) -> StoreResult<Option<IssuedToken>> {
    let sql = format!("SELECT {TOKEN_COLS} FROM issued_tokens WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(s.pool()).await.map_err(db("issued token"))?;
    row.as_ref().map(token_row).transpose()
}

pub(super) async fn find_issued_token(s: &PostgresStore, digest: &[u8]) -> StoreResult<Option<IssuedToken>> {
    let sql = format!("SELECT {TOKEN_COLS} FROM issued_tokens WHERE digest = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(digest).fetch_optional(s.pool()).await.map_err(db("issued token"))?;
    row.as_ref().map(token_row).transpose()
}

pub(super) async fn revoke_issued_token(s: &PostgresStore, id: Id, at: Timestamp) -> StoreResult<bool> {
    let mut tx = s.tx("issued token").await?;
    let done = sqlx::query("UPDATE issued_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2")
        .bind(at)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db("issued token"))?;
    sqlx::query("UPDATE issued_tokens SET revoked_at = $1 WHERE parent_id = $2 AND revoked_at IS NULL")
        .bind(at)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db("issued token"))?;
    tx.commit().await.map_err(db("issued token"))?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn list_revoked_ids(s: &PostgresStore, since: Timestamp) -> StoreResult<Vec<Id>> {
    sqlx::query_scalar(
        "SELECT id FROM issued_tokens WHERE revoked_at >= $1 \
         UNION SELECT id FROM credentials WHERE revoked_at >= $1 \
         UNION SELECT id FROM oauth_clients WHERE revoked_at >= $1",
    )
    .bind(since)
    .fetch_all(s.pool())
    .await
    .map_err(db("revoked ids"))
}

pub(super) async fn consume_single_use(s: &PostgresStore, digest: &[u8]) -> StoreResult<Option<IssuedToken>> {
    // G-9 / token-security.md §5.2: one statement, database clock; under READ COMMITTED a
    // concurrent UPDATE waits for the row lock and then re-checks the WHERE clause.
    let sql = format!(
        "UPDATE issued_tokens SET consumed_at = now() WHERE digest = $1 AND kind = 'single_use' \
         AND consumed_at IS NULL AND revoked_at IS NULL AND expires_at > now() RETURNING {TOKEN_COLS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(digest).fetch_optional(s.pool()).await.map_err(db("single-use token"))?;
    row.as_ref().map(token_row).transpose()
}

pub(super) async fn create_signing_key(s: &PostgresStore, k: &SigningKey) -> StoreResult<()> {
    let sql = format!("INSERT INTO signing_keys ({KEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&k.kid)
        .bind(&k.alg)
        .bind(&k.public_jwk)
        .bind(k.format_version)
        .bind(&k.kek_id)
        .bind(&k.wrapped_dek)
        .bind(&k.nonce)
        .bind(&k.ciphertext)
        .bind(k.sign_from)
        .bind(k.retire_at)
        .bind(k.created_at)
        .execute(s.pool())
        .await
        .map_err(db("signing key"))?;
    Ok(())
}

pub(super) async fn list_signing_keys(s: &PostgresStore) -> StoreResult<Vec<SigningKey>> {
    let sql = format!("SELECT {KEY_COLS} FROM signing_keys ORDER BY sign_from DESC, kid");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(s.pool()).await.map_err(db("signing keys"))?;
    rows.iter().map(key_row).collect()
}

pub(super) async fn retire_signing_key(s: &PostgresStore, kid: &str, at: Timestamp) -> StoreResult<bool> {
    let done = sqlx::query("UPDATE signing_keys SET retire_at = LEAST(COALESCE(retire_at, $1), $1) WHERE kid = $2")
        .bind(at)
        .bind(kid)
        .execute(s.pool())
        .await
        .map_err(db("signing key"))?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn record_jti(s: &PostgresStore, key: &[u8], expires_at: Timestamp) -> StoreResult<bool> {
    let mut tx = s.tx("jti").await?;
    sqlx::query("DELETE FROM used_jtis WHERE expires_at < now()").execute(&mut *tx).await.map_err(db("jti"))?;
    let done = sqlx::query("INSERT INTO used_jtis (key, expires_at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
        .bind(key)
        .bind(expires_at)
        .execute(&mut *tx)
        .await
        .map_err(db("jti"))?;
    tx.commit().await.map_err(db("jti"))?;
    Ok(done.rows_affected() == 1)
}
