//! SQLite part of the audit log (issue 5; see [`crate::audit`]). The append runs in one
//! `BEGIN IMMEDIATE` transaction, which serializes writers, so reading the chain head and
//! inserting after it cannot race.

use sqlx::{QueryBuilder, Sqlite};
use sqlx::sqlite::SqliteRow;

use super::{SqliteStore, col, col_opt_id, from_micros, id_text, micros, opt_id_text};
use crate::audit::{AuditEvent, AuditQuery, GENESIS_HASH, NewAuditEvent, canonical_json, chain};
use crate::{StoreError, StoreResult};

const COLS: &str = "seq, at, actor, event_type, credential_id, fingerprint, ip, user_agent, reason, details, prev_hash, hash";

fn row(r: &SqliteRow) -> StoreResult<AuditEvent> {
    let details: String = col(r, "details")?;
    Ok(AuditEvent {
        seq: col(r, "seq")?,
        event: NewAuditEvent {
            at: from_micros(col(r, "at")?)?,
            actor: col(r, "actor")?,
            event_type: col(r, "event_type")?,
            credential_id: col_opt_id(r, "credential_id")?,
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

pub(super) async fn append(store: &SqliteStore, events: &[NewAuditEvent]) -> StoreResult<Vec<AuditEvent>> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let err = |e| StoreError::from_sqlx("audit events", e);
    let mut tx = store.write_tx("audit events").await?;
    let head: Option<(i64, String)> = sqlx::query_as("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *tx)
        .await
        .map_err(err)?;
    let (seq, hash) = head.unwrap_or((0, GENESIS_HASH.to_string()));
    let chained = chain(seq, &hash, events);
    for part in chained.chunks(crate::INSERT_CHUNK / 12 + 1) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(format!("INSERT INTO audit_events ({COLS}) "));
        let mut failed = None;
        qb.push_values(part, |mut b, e| {
            let at = match micros(e.event.at) {
                Ok(v) => v,
                Err(x) => {
                    failed = Some(x);
                    0
                }
            };
            b.push_bind(e.seq)
                .push_bind(at)
                .push_bind(e.event.actor.clone())
                .push_bind(e.event.event_type.clone())
                .push_bind(opt_id_text(e.event.credential_id))
                .push_bind(e.event.fingerprint.clone())
                .push_bind(e.event.ip.clone())
                .push_bind(e.event.user_agent.clone())
                .push_bind(e.event.reason.clone())
                .push_bind(canonical_json(&e.event.details))
                .push_bind(e.prev_hash.clone())
                .push_bind(e.hash.clone());
        });
        if let Some(x) = failed {
            return Err(x);
        }
        qb.build().execute(&mut *tx).await.map_err(err)?;
    }
    tx.commit().await.map_err(err)?;
    Ok(chained)
}

pub(super) async fn query(store: &SqliteStore, q: &AuditQuery) -> StoreResult<Vec<AuditEvent>> {
    let err = |e| StoreError::from_sqlx("audit events", e);
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(format!("SELECT {COLS} FROM audit_events WHERE 1 = 1"));
    if let Some(t) = &q.event_type {
        qb.push(" AND event_type = ").push_bind(t.clone());
    }
    if let Some(id) = q.credential_id {
        qb.push(" AND credential_id = ").push_bind(id_text(id));
    }
    if let Some(fp) = &q.fingerprint {
        qb.push(" AND fingerprint = ").push_bind(fp.clone());
    }
    if let Some(t) = q.since {
        qb.push(" AND at >= ").push_bind(micros(t)?);
    }
    if let Some(t) = q.until {
        qb.push(" AND at < ").push_bind(micros(t)?);
    }
    if let Some(s) = q.before_seq {
        qb.push(" AND seq < ").push_bind(s);
    }
    qb.push(" ORDER BY seq DESC LIMIT ").push_bind(q.page_size());
    let rows = qb.build().fetch_all(store.pool()).await.map_err(err)?;
    rows.iter().map(row).collect()
}

pub(super) async fn chain_page(store: &SqliteStore, after_seq: i64, limit: u32) -> StoreResult<Vec<AuditEvent>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?")))
        .bind(after_seq)
        .bind(i64::from(limit.clamp(1, 10_000)))
        .fetch_all(store.pool())
        .await
        .map_err(|e| StoreError::from_sqlx("audit events", e))?;
    rows.iter().map(row).collect()
}
