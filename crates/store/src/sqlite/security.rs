//! SQLite part of the API-key security attributes (issue 5; `CredentialSecurity`), rotation
//! and suspension.

use sqlx::sqlite::SqliteRow;
use sqlx::{Sqlite, Transaction};

use super::{SqliteStore, col, col_list, col_opt_id, col_opt_ts, id_text, json_list, micros, opt_id_text, opt_micros};
use crate::{Credential, CredentialSecurity, StoreError, StoreResult};

pub(super) fn read(row: &SqliteRow) -> StoreResult<CredentialSecurity> {
    let labels: String = col(row, "labels")?;
    let auto: i64 = col(row, "auto_suspend")?;
    Ok(CredentialSecurity {
        ip_allow: col_list(row, "ip_allow")?,
        labels: serde_json::from_str(&labels).map_err(|e| StoreError::decode("labels", e))?,
        dpop_jkt: col(row, "dpop_jkt")?,
        mtls_x5t: col(row, "mtls_x5t")?,
        rotated_from: col_opt_id(row, "rotated_from")?,
        suspended_at: col_opt_ts(row, "suspended_at")?,
        auto_suspend: auto != 0,
        ..CredentialSecurity::default()
    })
}

/// Writes the security attributes of a credential just inserted in `tx`.
pub(super) async fn write(tx: &mut Transaction<'static, Sqlite>, c: &Credential) -> StoreResult<()> {
    let s = &c.security;
    let labels = serde_json::to_string(&s.labels).map_err(|e| StoreError::Database(format!("labels: {e}")))?;
    sqlx::query(
        "UPDATE credentials SET ip_allow = ?, labels = ?, dpop_jkt = ?, rotated_from = ?, suspended_at = ?, \
         auto_suspend = ?, mtls_x5t = ? WHERE id = ?",
    )
    .bind(json_list(&s.ip_allow)?)
    .bind(labels)
    .bind(&s.dpop_jkt)
    .bind(opt_id_text(s.rotated_from))
    .bind(opt_micros(s.suspended_at)?)
    .bind(i64::from(s.auto_suspend))
    .bind(&s.mtls_x5t)
    .bind(id_text(c.id))
    .execute(&mut **tx)
    .await
    .map_err(|e| StoreError::from_sqlx("credential", e))?;
    Ok(())
}

/// One transaction: insert `successor`, then cap the old key's expiry and record the successor
/// in `rotated_to` (compare-and-set: only while `rotated_to IS NULL`); nothing changes if the old
/// key is unknown, revoked, suspended or already rotated (returns false), so concurrent
/// rotations of one key create exactly one successor (L2).
pub(super) async fn rotate(store: &SqliteStore, old: gatehouse_types::Id, successor: &Credential, old_expires_at: gatehouse_types::Timestamp) -> StoreResult<bool> {
    let err = |e| StoreError::from_sqlx("credential", e);
    let mut tx = store.write_tx("credential").await?;
    let c = successor;
    sqlx::query(
        "INSERT INTO credentials (id, team_id, app_id, name, digest, pepper_version, hint, models, scopes, \
         expires_at, revoked_at, last_used_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id_text(c.id))
    .bind(id_text(c.team_id))
    .bind(id_text(c.app_id))
    .bind(&c.name)
    .bind(&c.digest)
    .bind(c.pepper_version)
    .bind(&c.hint)
    .bind(json_list(&c.models)?)
    .bind(json_list(&c.scopes)?)
    .bind(opt_micros(c.expires_at)?)
    .bind(opt_micros(c.revoked_at)?)
    .bind(opt_micros(c.last_used_at)?)
    .bind(micros(c.created_at)?)
    .execute(&mut *tx)
    .await
    .map_err(err)?;
    write(&mut tx, c).await?;
    let changed = sqlx::query(
        "UPDATE credentials SET expires_at = MIN(COALESCE(expires_at, ?1), ?1), rotated_to = ?3 \
         WHERE id = ?2 AND revoked_at IS NULL AND suspended_at IS NULL AND rotated_to IS NULL",
    )
    .bind(micros(old_expires_at)?)
    .bind(id_text(old))
    .bind(id_text(c.id))
    .execute(&mut *tx)
    .await
    .map_err(err)?
    .rows_affected();
    if changed == 0 {
        // Dropping the transaction rolls the insert back.
        return Ok(false);
    }
    tx.commit().await.map_err(err)?;
    Ok(true)
}

pub(super) async fn suspend(store: &SqliteStore, id: gatehouse_types::Id, at: gatehouse_types::Timestamp) -> StoreResult<bool> {
    let err = |e| StoreError::from_sqlx("credential", e);
    let mut tx = store.write_tx("credential").await?;
    let n = sqlx::query("UPDATE credentials SET suspended_at = COALESCE(suspended_at, ?) WHERE id = ?")
        .bind(micros(at)?)
        .bind(id_text(id))
        .execute(&mut *tx)
        .await
        .map_err(err)?
        .rows_affected();
    tx.commit().await.map_err(err)?;
    Ok(n > 0)
}
