//! PostgreSQL part of the audit log (issue 5; see [`crate::audit`]). Appends take a
//! transaction-scoped advisory lock first, so writers on several nodes queue and each reads the
//! chain head it appends after.

use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder};

use super::{PostgresStore, col};
use crate::audit::{AuditEvent, AuditQuery, GENESIS_HASH, NewAuditEvent, canonical_json, chain};
use crate::{StoreError, StoreResult};

const COLS: &str = "seq, at, actor, event_type, credential_id, fingerprint, ip, user_agent, reason, details, prev_hash, hash";
/// Advisory lock key of the audit chain head (`'gh_audit'` as an integer).
const LOCK_KEY: i64 = 0x6768_5f61_7564_6974;

fn row(r: &PgRow) -> StoreResult<AuditEvent> {
    let details: String = col(r, "details")?;
    Ok(AuditEvent {
        seq: col(r, "seq")?,
        event: NewAuditEvent {
            at: col(r, "at")?,
            actor: col(r, "actor")?,
            event_type: col(r, "event_type")?,
            credential_id: col(r, "credential_id")?,
            fingerprint: col(r, "fingerprint")?,
            ip: col(r, "ip")?,
            user_agent: col(r, "user_agent")?,
            reason: col(r, "reason")?,
            details: serde_json::from_str(&details).map_err(|e| StoreError::decode("details", e))?,
        },
        prev_hash: col(r, "prev_hash")?,
        hash: col(r, "hash")?,
    })
}

pub(super) async fn append(store: &PostgresStore, events: &[NewAuditEvent]) -> StoreResult<Vec<AuditEvent>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let err = |e| StoreError::from_sqlx("audit events", e);
    let mut tx = store.tx("audit events").await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(LOCK_KEY).execute(&mut *tx).await.map_err(err)?;
    let head: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?;
    let (seq, hash) = head.unwrap_or((0, GENESIS_HASH.to_string()));
    let chained = chain(seq, &hash, events);
    for part in chained.chunks(crate::INSERT_CHUNK) {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(format!("INSERT INTO audit_events ({COLS}) "));
        qb.push_values(part, |mut b, e| {
            b.push_bind(e.seq)
                .push_bind(e.event.at)
                .push_bind(e.event.actor.clone())
                .push_bind(e.event.event_type.clone())
                .push_bind(e.event.credential_id)
                .push_bind(e.event.fingerprint.clone())
                .push_bind(e.event.ip.clone())
                .push_bind(e.event.user_agent.clone())
                .push_bind(e.event.reason.clone())
                .push_bind(canonical_json(&e.event.details))
                .push_bind(e.prev_hash.clone())
                .push_bind(e.hash.clone());
        });
        qb.build().execute(&mut *tx).await.map_err(err)?;
    }
    tx.commit().await.map_err(err)?;
    Ok(chained)
}

pub(super) async fn query(store: &PostgresStore, q: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
    let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(format!("SELECT {COLS} FROM audit_events WHERE TRUE"));
    if let Some(t) = &q.event_type {
        qb.push(" AND event_type = ").push_bind(t.clone());
    }
    if let Some(id) = q.credential_id {
        qb.push(" AND credential_id = ").push_bind(id);
    }
    if let Some(fp) = &q.fingerprint {
        qb.push(" AND fingerprint = ").push_bind(fp.clone());
    }
    if let Some(t) = q.since {
        qb.push(" AND at >= ").push_bind(t);
    }
    if let Some(t) = q.until {
        qb.push(" AND at < ").push_bind(t);
    }
    if let Some(s) = q.before_seq {
        qb.push(" AND seq < ").push_bind(s);
    }
    qb.push(" ORDER BY seq DESC LIMIT ").push_bind(q.page_size());
    let rows = qb.build().fetch_all(store.pool()).await.map_err(|e| StoreError::from_sqlx("audit events", e))?;
    rows.iter().map(row).collect()
}

pub(super) async fn chain_page(store: &PostgresStore, after_seq: i64, limit: u32) -> StoreResult<Vec<AuditEvent>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2")))
        .bind(after_seq)
        .bind(i64::from(limit.clamp(1, 10_000)))
        .fetch_all(store.pool())
        .await
        .map_err(|e| StoreError::from_sqlx("audit events", e))?;
    rows.iter().map(row).collect()
}
