//! PostgreSQL implementation of the limits methods (issue 6).

use gatehouse_types::Id;
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::PostgresStore;
use crate::{Limit, LimitScope, StoreError, StoreResult, i64_to_u64, u64_to_i64};

const COLUMNS: &str = "id, scope, scope_id, model, rpm, concurrent, tpm, tokens_per_day, tokens_per_month, \
                       usd_micros_per_day, usd_micros_per_month, created_at, updated_at";

fn opt(v: Option<u64>) -> Option<i64> {
    v.map(u64_to_i64)
}

fn row_to_limit(row: &PgRow) -> StoreResult<Limit> {
    let get_opt = |name: &str| -> StoreResult<Option<u64>> {
        row.try_get::<Option<i64>, _>(name)
            .map(|v| v.map(i64_to_u64))
            .map_err(|e| StoreError::decode("limit", e))
    };
    let scope: String = row
        .try_get("scope")
        .map_err(|e| StoreError::decode("limit", e))?;
    Ok(Limit {
        id: row
            .try_get("id")
            .map_err(|e| StoreError::decode("limit", e))?,
        scope: LimitScope::parse(&scope)
            .ok_or_else(|| StoreError::decode("limit", "unknown scope"))?,
        scope_id: row
            .try_get("scope_id")
            .map_err(|e| StoreError::decode("limit", e))?,
        model: row
            .try_get("model")
            .map_err(|e| StoreError::decode("limit", e))?,
        rpm: get_opt("rpm")?,
        concurrent: get_opt("concurrent")?,
        tpm: get_opt("tpm")?,
        tokens_per_day: get_opt("tokens_per_day")?,
        tokens_per_month: get_opt("tokens_per_month")?,
        usd_micros_per_day: get_opt("usd_micros_per_day")?,
        usd_micros_per_month: get_opt("usd_micros_per_month")?,
        created_at: row
            .try_get("created_at")
            .map_err(|e| StoreError::decode("limit", e))?,
        updated_at: row
            .try_get("updated_at")
            .map_err(|e| StoreError::decode("limit", e))?,
    })
}

/// Insert or update a limit row inside `tx` (shared by `upsert_limit` and `apply_config`).
pub(super) async fn upsert_in(tx: &mut sqlx::Transaction<'static, sqlx::Postgres>, l: &Limit) -> StoreResult<Limit> {
    let sql = format!(
        "INSERT INTO limits ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (scope, scope_id, model) DO UPDATE SET rpm = excluded.rpm, \
         concurrent = excluded.concurrent, tpm = excluded.tpm, tokens_per_day = excluded.tokens_per_day, \
         tokens_per_month = excluded.tokens_per_month, usd_micros_per_day = excluded.usd_micros_per_day, \
         usd_micros_per_month = excluded.usd_micros_per_month, updated_at = excluded.updated_at \
         RETURNING {COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(l.id)
        .bind(l.scope.as_str())
        .bind(&l.scope_id)
        .bind(&l.model)
        .bind(opt(l.rpm))
        .bind(opt(l.concurrent))
        .bind(opt(l.tpm))
        .bind(opt(l.tokens_per_day))
        .bind(opt(l.tokens_per_month))
        .bind(opt(l.usd_micros_per_day))
        .bind(opt(l.usd_micros_per_month))
        .bind(l.created_at)
        .bind(l.updated_at)
        .fetch_one(&mut **tx)
        .await
        .map_err(|e| StoreError::from_sqlx("limit", e))?;
    row_to_limit(&row)
}

impl PostgresStore {
    pub(super) async fn limits_upsert(&self, l: &Limit) -> StoreResult<Limit> {
        let mut tx = self.tx("limit").await?;
        let stored = upsert_in(&mut tx, l).await?;
        tx.commit()
            .await
            .map_err(|e| StoreError::from_sqlx("limit", e))?;
        Ok(stored)
    }

    pub(super) async fn limits_list(&self) -> StoreResult<Vec<Limit>> {
        let sql = format!("SELECT {COLUMNS} FROM limits ORDER BY scope, scope_id, model");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| StoreError::from_sqlx("limit", e))?;
        rows.iter().map(row_to_limit).collect()
    }

    pub(super) async fn limits_delete(&self, id: Id) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM limits WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| StoreError::from_sqlx("limit", e))?;
        Ok(done.rows_affected() > 0)
    }
}
