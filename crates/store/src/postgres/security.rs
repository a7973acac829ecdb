//! PostgreSQL part of the API-key security attributes (issue 5; `CredentialSecurity`), rotation
//! and suspension.

use sqlx::postgres::PgRow;
use sqlx::{Postgres, Transaction};

use super::{PostgresStore, col};
use crate::{Credential, CredentialSecurity, StoreError, StoreResult};
use gatehouse_types::{Id, Timestamp};

pub(super) fn read(row: &PgRow) -> StoreResult<CredentialSecurity> {
    let labels: serde_json::Value = col(row, "labels")?;
    Ok(CredentialSecurity {
        ip_allow: col(row, "ip_allow")?,
        labels: serde_json::from_value(labels).map_err(|e| StoreError::decode("labels", e))?,
        dpop_jkt: col(row, "dpop_jkt")?,
        mtls_x5t: col(row, "mtls_x5t")?,
        rotated_from: col(row, "rotated_from")?,
        suspended_at: col(row, "suspended_at")?,
        auto_suspend: col(row, "auto_suspend")?,
        ..CredentialSecurity::default()
    })
}

/// Writes the security attributes of a credential just inserted in `tx`.
pub(super) async fn write(tx: &mut Transaction<'static, Postgres>, c: &Credential) -> StoreResult<()> {
    let s = &c.security;
    let labels = serde_json::to_value(&s.labels).map_err(|e| StoreError::Database(format!("labels: {e}")))?;
    sqlx::query(
        "UPDATE credentials SET ip_allow = $1, labels = $2, dpop_jkt = $3, rotated_from = $4, suspended_at = $5, \
         auto_suspend = $6, mtls_x5t = $7 WHERE id = $8",
    )
    .bind(&s.ip_allow)
    .bind(labels)
    .bind(&s.dpop_jkt)
    .bind(s.rotated_from)
    .bind(s.suspended_at)
    .bind(s.auto_suspend)
    .bind(&s.mtls_x5t)
    .bind(c.id)
    .execute(&mut **tx)
    .await
    .map_err(|e| StoreError::from_sqlx("credential", e))?;
    Ok(())
}

/// One transaction: insert `successor`, then cap the old key's expiry and record the successor
/// in `rotated_to` (compare-and-set: only while `rotated_to IS NULL`); nothing changes if the old
/// key is unknown, revoked, suspended or already rotated (returns false), so concurrent
/// rotations of one key create exactly one successor (L2).
pub(super) async fn rotate(store: &PostgresStore, old: Id, successor: &Credential, old_expires_at: Timestamp) -> StoreResult<bool> {
    let err = |e| StoreError::from_sqlx("credential", e);
    let mut tx = store.tx("credential").await?;
    let c = successor;
    sqlx::query(
        "INSERT INTO credentials (id, team_id, app_id, name, digest, pepper_version, hint, models, scopes, \
         expires_at, revoked_at, last_used_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
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
    .map_err(err)?;
    write(&mut tx, c).await?;
    let changed = sqlx::query(
        "UPDATE credentials SET expires_at = LEAST(COALESCE(expires_at, $1), $1), rotated_to = $3 \
         WHERE id = $2 AND revoked_at IS NULL AND suspended_at IS NULL AND rotated_to IS NULL",
    )
    .bind(old_expires_at)
    .bind(old)
    .bind(c.id)
    .execute(&mut *tx)
    .await
    .map_err(err)?
    .rows_affected();
    if changed == 0 {
        return Ok(false);
    }
    tx.commit().await.map_err(err)?;
    Ok(true)
}

pub(super) async fn suspend(store: &PostgresStore, id: Id, at: Timestamp) -> StoreResult<bool> {
    let n = sqlx::query("UPDATE credentials SET suspended_at = COALESCE(suspended_at, $1) WHERE id = $2")
        .bind(at)
        .bind(id)
        .execute(store.pool())
        .await
        .map_err(|e| StoreError::from_sqlx("credential", e))?
        .rows_affected();
    Ok(n > 0)
}
