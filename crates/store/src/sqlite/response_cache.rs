//! SQLite implementation of the response-cache settings (issue 6, table `model_cache`).

use gatehouse_types::Timestamp;
use sqlx::sqlite::SqliteRow;

use super::{SqliteStore, col, col_ts, micros};
use crate::{ModelCachePolicy, StoreError, StoreResult};

fn row_to_policy(row: &SqliteRow) -> StoreResult<ModelCachePolicy> {
    let ttl: i64 = col(row, "ttl_secs")?;
    Ok(ModelCachePolicy {
        model: col(row, "name")?,
        ttl_secs: u32::try_from(ttl).map_err(|e| StoreError::decode("ttl_secs", e))?,
        updated_at: col_ts(row, "updated_at")?,
    })
}

impl SqliteStore {
    pub(super) async fn model_cache_set(&self, model: &str, ttl_secs: u32, at: Timestamp) -> StoreResult<Option<ModelCachePolicy>> {
        let mut tx = self.write_tx("model cache").await?;
        let done = sqlx::query(
            "INSERT INTO model_cache (model_id, ttl_secs, updated_at) SELECT id, ?, ? FROM models WHERE name = ? \
             ON CONFLICT (model_id) DO UPDATE SET ttl_secs = excluded.ttl_secs, updated_at = excluded.updated_at",
        )
        .bind(i64::from(ttl_secs))
        .bind(micros(at)?)
        .bind(model)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_sqlx("model cache", e))?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT m.name, c.ttl_secs, c.updated_at FROM model_cache c JOIN models m ON m.id = c.model_id WHERE m.name = ?",
        )
        .bind(model)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| StoreError::from_sqlx("model cache", e))?;
        let stored = row_to_policy(&row)?;
        tx.commit().await.map_err(|e| StoreError::from_sqlx("model cache", e))?;
        Ok(Some(stored))
    }

    pub(super) async fn model_cache_list(&self) -> StoreResult<Vec<ModelCachePolicy>> {
        let rows = sqlx::query(
            "SELECT m.name, c.ttl_secs, c.updated_at FROM model_cache c JOIN models m ON m.id = c.model_id ORDER BY m.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("model cache", e))?;
        rows.iter().map(row_to_policy).collect()
    }

    pub(super) async fn model_cache_delete(&self, model: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM model_cache WHERE model_id IN (SELECT id FROM models WHERE name = ?)")
            .bind(model)
            .execute(&self.pool)
            .await
            .map_err(|e| StoreError::from_sqlx("model cache", e))?;
        Ok(done.rows_affected() > 0)
    }
}
