//! SQLite implementation of the OAuth methods of [`crate::Store`] (issue 5). The trait impl in
//! `sqlite.rs` delegates here.

use gatehouse_types::{Id, Timestamp};
use sqlx::sqlite::SqliteRow;

use super::{
    SqliteStore, col, col_id, col_list, col_opt_id, col_opt_ts, col_ts, id_text, json_list, micros,
    opt_id_text, opt_micros,
};
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

fn client_row(row: &SqliteRow) -> StoreResult<OAuthClient> {
    Ok(OAuthClient {
        id: col_id(row, "id")?,
        team_id: col_id(row, "team_id")?,
        app_id: col_id(row, "app_id")?,
        name: col(row, "name")?,
        auth_method: col(row, "auth_method")?,
        secret_digest: col(row, "secret_digest")?,
        pepper_version: col(row, "pepper_version")?,
        secret_hint: col(row, "secret_hint")?,
        public_jwk: col(row, "public_jwk")?,
        token_format: col(row, "token_format")?,
        scopes: col_list(row, "scopes")?,
        models: col_list(row, "models")?,
        audiences: col_list(row, "audiences")?,
        access_ttl_secs: col(row, "access_ttl_secs")?,
        tls_client_certificate_bound_access_tokens: col::<i64>(row, "tls_bound")? != 0,
        revoked_at: col_opt_ts(row, "revoked_at")?,
        created_at: col_ts(row, "created_at")?,
    })
}

fn token_row(row: &SqliteRow) -> StoreResult<IssuedToken> {
    Ok(IssuedToken {
        id: col_id(row, "id")?,
        kind: col(row, "kind")?,
        digest: col(row, "digest")?,
        pepper_version: col(row, "pepper_version")?,
        hint: col(row, "hint")?,
        team_id: col_id(row, "team_id")?,
        app_id: col_id(row, "app_id")?,
        client_id: col_opt_id(row, "client_id")?,
        subject: col(row, "subject")?,
        parent_id: col_opt_id(row, "parent_id")?,
        scopes: col_list(row, "scopes")?,
        models: col_list(row, "models")?,
        audience: col(row, "audience")?,
        max_tokens: col(row, "max_tokens")?,
        max_spend_micros: col(row, "max_spend_micros")?,
        act: col(row, "act")?,
        binding_jkt: col(row, "binding_jkt")?,
        binding_x5t: col(row, "binding_x5t")?,
        expires_at: col_ts(row, "expires_at")?,
        consumed_at: col_opt_ts(row, "consumed_at")?,
        revoked_at: col_opt_ts(row, "revoked_at")?,
        created_at: col_ts(row, "created_at")?,
    })
}

fn key_row(row: &SqliteRow) -> StoreResult<SigningKey> {
    let fv: i64 = col(row, "format_version")?;
    Ok(SigningKey {
        kid: col(row, "kid")?,
        alg: col(row, "alg")?,
        public_jwk: col(row, "public_jwk")?,
        format_version: i16::try_from(fv).map_err(|e| StoreError::decode("format_version", e))?,
        kek_id: col(row, "kek_id")?,
        wrapped_dek: col(row, "wrapped_dek")?,
        nonce: col(row, "nonce")?,
        ciphertext: col(row, "ciphertext")?,
        sign_from: col_ts(row, "sign_from")?,
        retire_at: col_opt_ts(row, "retire_at")?,
        created_at: col_ts(row, "created_at")?,
    })
}

pub(super) async fn create_oauth_client(s: &SqliteStore, c: &OAuthClient) -> StoreResult<()> {
    let mut tx = s.write_tx("oauth client").await?;
    super::require_live_app(&mut tx, c.app_id, "oauth client").await?;
    let sql = format!("INSERT INTO oauth_clients ({CLIENT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id_text(c.id))
        .bind(id_text(c.team_id))
        .bind(id_text(c.app_id))
        .bind(&c.name)
        .bind(&c.auth_method)
        .bind(&c.secret_digest)
        .bind(c.pepper_version)
        .bind(&c.secret_hint)
        .bind(&c.public_jwk)
        .bind(&c.token_format)
        .bind(json_list(&c.scopes)?)
        .bind(json_list(&c.models)?)
        .bind(json_list(&c.audiences)?)
        .bind(c.access_ttl_secs)
        .bind(opt_micros(c.revoked_at)?)
        .bind(micros(c.created_at)?)
        .bind(i64::from(c.tls_client_certificate_bound_access_tokens))
        .execute(&mut *tx)
        .await
        .map_err(db("oauth client"))?;
    tx.commit().await.map_err(db("oauth client"))
}

pub(super) async fn get_oauth_client(s: &SqliteStore, id: Id) -> StoreResult<Option<OAuthClient>> {
    let sql = format!("SELECT {CLIENT_COLS} FROM oauth_clients WHERE id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id_text(id)).fetch_optional(s.pool()).await.map_err(db("oauth client"))?;
    row.as_ref().map(client_row).transpose()
}

pub(super) async fn list_oauth_clients(s: &SqliteStore, include_revoked: bool) -> StoreResult<Vec<OAuthClient>> {
    let filter = if include_revoked { "" } else { " WHERE revoked_at IS NULL" };
    let sql = format!("SELECT {CLIENT_COLS} FROM oauth_clients{filter} ORDER BY created_at DESC, id DESC");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(s.pool()).await.map_err(db("oauth clients"))?;
    rows.iter().map(client_row).collect()
}

pub(super) async fn revoke_oauth_client(s: &SqliteStore, id: Id, at: Timestamp) -> StoreResult<bool> {
    let mut tx = s.write_tx("oauth client").await?;
    let done = sqlx::query("UPDATE oauth_clients SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?")
        .bind(micros(at)?)
        .bind(id_text(id))
        .execute(&mut *tx)
        .await
        .map_err(db("oauth client"))?;
    sqlx::query("UPDATE issued_tokens SET revoked_at = ? WHERE client_id = ? AND revoked_at IS NULL")
        .bind(micros(at)?)
        .bind(id_text(id))
        .execute(&mut *tx)
        .await
        .map_err(db("issued tokens"))?;
    tx.commit().await.map_err(db("oauth client"))?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn revoke_app_tokens(s: &SqliteStore, app_id: Id, at: Timestamp) -> StoreResult<Vec<Id>> {
    let mut tx = s.write_tx("issued tokens").await?;
    let rows = sqlx::query("SELECT id FROM issued_tokens WHERE app_id = ? AND revoked_at IS NULL")
        .bind(id_text(app_id))
        .fetch_all(&mut *tx)
        .await
        .map_err(db("issued tokens"))?;
    let ids = rows.iter().map(|r| col_id(r, "id")).collect::<StoreResult<Vec<Id>>>()?;
    sqlx::query("UPDATE issued_tokens SET revoked_at = ? WHERE app_id = ? AND revoked_at IS NULL")
        .bind(micros(at)?)
        .bind(id_text(app_id))
        .execute(&mut *tx)
        .await
        .map_err(db("issued tokens"))?;
    tx.commit().await.map_err(db("issued tokens"))?;
    Ok(ids)
}

pub(super) async fn create_issued_token(s: &SqliteStore, t: &IssuedToken) -> StoreResult<()> {
    let mut tx = s.write_tx("issued token").await?;
    super::require_live_app(&mut tx, t.app_id, "issued token").await?;
    let sql = format!(
        "INSERT INTO issued_tokens ({TOKEN_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id_text(t.id))
        .bind(&t.kind)
        .bind(&t.digest)
        .bind(t.pepper_version)
        .bind(&t.hint)
        .bind(id_text(t.team_id))
        .bind(id_text(t.app_id))
        .bind(opt_id_text(t.client_id))
        .bind(&t.subject)
        .bind(opt_id_text(t.parent_id))
        .bind(json_list(&t.scopes)?)
        .bind(json_list(&t.models)?)
        .bind(&t.audience)
        .bind(t.max_tokens)
        .bind(t.max_spend_micros)
        .bind(&t.act)
        .bind(&t.binding_jkt)
        .bind(micros(t.expires_at)?)
        .bind(opt_micros(t.consumed_at)?)
        .bind(opt_micros(t.revoked_at)?)
        .bind(micros(t.created_at)?)
        .bind(&t.binding_x5t)
        .execute(&mut *tx)
        .await
        .map_err(db("issued token"))?;
    tx.commit().await.map_err(db("issued token"))
}

pub(super) async fn get_issued_token(s: &SqliteStore, id: Id) -> StoreResult<Option<IssuedToken>> {
    let sql = format!("SELECT {TOKEN_COLS} FROM issued_tokens WHERE id = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id_text(id)).fetch_optional(s.pool()).await.map_err(db("issued token"))?;
    row.as_ref().map(token_row).transpose()
}

pub(super) async fn find_issued_token(s: &SqliteStore, digest: &[u8]) -> StoreResult<Option<IssuedToken>> {
    let sql = format!("SELECT {TOKEN_COLS} FROM issued_tokens WHERE digest = ?");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(digest).fetch_optional(s.pool()).await.map_err(db("issued token"))?;
    row.as_ref().map(token_row).transpose()
}

pub(super) async fn revoke_issued_token(s: &SqliteStore, id: Id, at: Timestamp) -> StoreResult<bool> {
    let mut tx = s.write_tx("issued token").await?;
    let done = sqlx::query("UPDATE issued_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?")
        .bind(micros(at)?)
        .bind(id_text(id))
        .execute(&mut *tx)
        .await
        .map_err(db("issued token"))?;
    sqlx::query("UPDATE issued_tokens SET revoked_at = ? WHERE parent_id = ? AND revoked_at IS NULL")
        .bind(micros(at)?)
        .bind(id_text(id))
        .execute(&mut *tx)
        .await
        .map_err(db("issued token"))?;
    tx.commit().await.map_err(db("issued token"))?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn list_revoked_ids(s: &SqliteStore, since: Timestamp) -> StoreResult<Vec<Id>> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM issued_tokens WHERE revoked_at >= ?1 \
         UNION SELECT id FROM credentials WHERE revoked_at >= ?1 \
         UNION SELECT id FROM oauth_clients WHERE revoked_at >= ?1",
    )
    .bind(micros(since)?)
    .fetch_all(s.pool())
    .await
    .map_err(db("revoked ids"))?;
    rows.iter().map(|r| Id::parse_str(r).map_err(|e| StoreError::decode("id", e))).collect()
}

pub(super) async fn consume_single_use(s: &SqliteStore, digest: &[u8]) -> StoreResult<Option<IssuedToken>> {
    // SQLite serializes writers (BEGIN IMMEDIATE); the single conditional UPDATE … RETURNING
    // is the same statement as on PostgreSQL (G-9). Same host, so the process clock is the
    // database clock here.
    let at = micros(gatehouse_types::now())?;
    let mut tx = s.write_tx("single-use token").await?;
    let sql = format!(
        "UPDATE issued_tokens SET consumed_at = ?1 WHERE digest = ?2 AND kind = 'single_use' \
         AND consumed_at IS NULL AND revoked_at IS NULL AND expires_at > ?1 RETURNING {TOKEN_COLS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(at)
        .bind(digest)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("single-use token"))?;
    tx.commit().await.map_err(db("single-use token"))?;
    row.as_ref().map(token_row).transpose()
}

pub(super) async fn create_signing_key(s: &SqliteStore, k: &SigningKey) -> StoreResult<()> {
    let mut tx = s.write_tx("signing key").await?;
    let sql = format!("INSERT INTO signing_keys ({KEY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&k.kid)
        .bind(&k.alg)
        .bind(&k.public_jwk)
        .bind(i64::from(k.format_version))
        .bind(&k.kek_id)
        .bind(&k.wrapped_dek)
        .bind(&k.nonce)
        .bind(&k.ciphertext)
        .bind(micros(k.sign_from)?)
        .bind(opt_micros(k.retire_at)?)
        .bind(micros(k.created_at)?)
        .execute(&mut *tx)
        .await
        .map_err(db("signing key"))?;
    tx.commit().await.map_err(db("signing key"))
}

pub(super) async fn list_signing_keys(s: &SqliteStore) -> StoreResult<Vec<SigningKey>> {
    let sql = format!("SELECT {KEY_COLS} FROM signing_keys ORDER BY sign_from DESC, kid");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(s.pool()).await.map_err(db("signing keys"))?;
    rows.iter().map(key_row).collect()
}

pub(super) async fn retire_signing_key(s: &SqliteStore, kid: &str, at: Timestamp) -> StoreResult<bool> {
    let mut tx = s.write_tx("signing key").await?;
    let done = sqlx::query("UPDATE signing_keys SET retire_at = MIN(COALESCE(retire_at, ?1), ?1) WHERE kid = ?2")
        .bind(micros(at)?)
        .bind(kid)
        .execute(&mut *tx)
        .await
        .map_err(db("signing key"))?;
    tx.commit().await.map_err(db("signing key"))?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn record_jti(s: &SqliteStore, key: &[u8], expires_at: Timestamp) -> StoreResult<bool> {
    let now = micros(gatehouse_types::now())?;
    let mut tx = s.write_tx("jti").await?;
    sqlx::query("DELETE FROM used_jtis WHERE expires_at < ?")
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db("jti"))?;
    let done = sqlx::query("INSERT INTO used_jtis (key, expires_at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING")
        .bind(key)
        .bind(micros(expires_at)?)
        .execute(&mut *tx)
        .await
        .map_err(db("jti"))?;
    tx.commit().await.map_err(db("jti"))?;
    Ok(done.rows_affected() == 1)
}
