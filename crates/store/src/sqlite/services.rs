//! SQLite implementation of the issue-7 methods: services, releases, subscriptions, app
//! deletion. Ids as TEXT, timestamps as INTEGER microseconds, specs as JSON TEXT.

use gatehouse_types::Id;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Sqlite};

use super::{SqliteStore, col, col_id, col_opt_ts, col_ts, id_text, micros, opt_micros};
use crate::{
    ApprovalMode, Service, ServiceKind, ServiceRelease, ServiceStatus, StoreError, StoreResult, Subscription,
    SubscriptionFilter, SubscriptionStatus, Visibility,
};

const SERVICE_COLUMNS: &str = "id, team_id, kind, slug, name, status, visibility, approval, spec, live_spec, \
                               version, deprecated_at, sunset_at, created_at, updated_at";
const RELEASE_COLUMNS: &str = "id, service_id, version, spec, note, created_by, created_at";
const SUB_COLUMNS: &str = "id, app_id, service_id, status, reason, decided_by, expires_at, created_at, updated_at";

fn json_col(row: &SqliteRow, name: &str) -> StoreResult<serde_json::Value> {
    let s: String = col(row, name)?;
    serde_json::from_str(&s).map_err(|e| StoreError::decode(name, e))
}

fn to_json(v: &serde_json::Value) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Database(format!("encode spec: {e}")))
}

fn enum_col<T>(row: &SqliteRow, name: &str, parse: fn(&str) -> Option<T>) -> StoreResult<T> {
    let s: String = col(row, name)?;
    parse(&s).ok_or_else(|| StoreError::decode(name, "unknown value"))
}

fn version_col(row: &SqliteRow) -> StoreResult<u32> {
    let v: i64 = col(row, "version")?;
    u32::try_from(v).map_err(|e| StoreError::decode("version", e))
}

fn service_row(row: &SqliteRow) -> StoreResult<Service> {
    let live: Option<String> = col(row, "live_spec")?;
    Ok(Service {
        id: col_id(row, "id")?,
        team_id: col_id(row, "team_id")?,
        kind: enum_col(row, "kind", ServiceKind::parse)?,
        slug: col(row, "slug")?,
        name: col(row, "name")?,
        status: enum_col(row, "status", ServiceStatus::parse)?,
        visibility: enum_col(row, "visibility", Visibility::parse)?,
        approval: enum_col(row, "approval", ApprovalMode::parse)?,
        spec: json_col(row, "spec")?,
        live_spec: live
            .map(|s| serde_json::from_str(&s).map_err(|e| StoreError::decode("live_spec", e)))
            .transpose()?,
        version: version_col(row)?,
        deprecated_at: col_opt_ts(row, "deprecated_at")?,
        sunset_at: col_opt_ts(row, "sunset_at")?,
        created_at: col_ts(row, "created_at")?,
        updated_at: col_ts(row, "updated_at")?,
    })
}

fn release_row(row: &SqliteRow) -> StoreResult<ServiceRelease> {
    Ok(ServiceRelease {
        id: col_id(row, "id")?,
        service_id: col_id(row, "service_id")?,
        version: version_col(row)?,
        spec: json_col(row, "spec")?,
        note: col(row, "note")?,
        created_by: col(row, "created_by")?,
        created_at: col_ts(row, "created_at")?,
    })
}

fn subscription_row(row: &SqliteRow) -> StoreResult<Subscription> {
    Ok(Subscription {
        id: col_id(row, "id")?,
        app_id: col_id(row, "app_id")?,
        service_id: col_id(row, "service_id")?,
        status: enum_col(row, "status", SubscriptionStatus::parse)?,
        reason: col(row, "reason")?,
        decided_by: col(row, "decided_by")?,
        expires_at: col_opt_ts(row, "expires_at")?,
        created_at: col_ts(row, "created_at")?,
        updated_at: col_ts(row, "updated_at")?,
    })
}

fn db(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| StoreError::from_sqlx(what, e)
}

/// Inserts a service row with any executor (the pool, or a transaction of `apply_config`).
pub(super) async fn insert_service<'e, E: sqlx::Executor<'e, Database = sqlx::Sqlite>>(ex: E, s: &Service) -> StoreResult<()> {
    let sql = format!("INSERT INTO services ({SERVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    let live = s.live_spec.as_ref().map(to_json).transpose()?;
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id_text(s.id))
        .bind(id_text(s.team_id))
        .bind(s.kind.as_str())
        .bind(&s.slug)
        .bind(&s.name)
        .bind(s.status.as_str())
        .bind(s.visibility.as_str())
        .bind(s.approval.as_str())
        .bind(to_json(&s.spec)?)
        .bind(live)
        .bind(i64::from(s.version))
        .bind(opt_micros(s.deprecated_at)?)
        .bind(opt_micros(s.sunset_at)?)
        .bind(micros(s.created_at)?)
        .bind(micros(s.updated_at)?)
        .execute(ex)
        .await
        .map_err(db("service"))?;
    Ok(())
}

/// The update of `update_service` inside `tx` (shared with `apply_config`): false if no such
/// service (the caller rolls back).
pub(super) async fn update_service_in(tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>, s: &Service, release: Option<&ServiceRelease>) -> StoreResult<bool> {
    let live = s.live_spec.as_ref().map(to_json).transpose()?;
    let done = sqlx::query(
        "UPDATE services SET name = ?, status = ?, visibility = ?, approval = ?, spec = ?, live_spec = ?, \
         version = ?, deprecated_at = ?, sunset_at = ?, updated_at = ? WHERE id = ?",
    )
    .bind(&s.name)
    .bind(s.status.as_str())
    .bind(s.visibility.as_str())
    .bind(s.approval.as_str())
    .bind(to_json(&s.spec)?)
    .bind(live)
    .bind(i64::from(s.version))
    .bind(opt_micros(s.deprecated_at)?)
    .bind(opt_micros(s.sunset_at)?)
    .bind(micros(s.updated_at)?)
    .bind(id_text(s.id))
    .execute(&mut **tx)
    .await
    .map_err(db("service"))?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    if let Some(r) = release {
        let sql = format!("INSERT INTO service_releases ({RELEASE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id_text(r.id))
            .bind(id_text(r.service_id))
            .bind(i64::from(r.version))
            .bind(to_json(&r.spec)?)
            .bind(&r.note)
            .bind(&r.created_by)
            .bind(micros(r.created_at)?)
            .execute(&mut **tx)
            .await
            .map_err(db("service release"))?;
    }
    Ok(true)
}

impl SqliteStore {
    pub(super) async fn services_create(&self, s: &Service) -> StoreResult<()> {
        insert_service(&self.pool, s).await
    }

    pub(super) async fn services_get(&self, id: Option<Id>, slug: Option<&str>) -> StoreResult<Option<Service>> {
        let mut qb = QueryBuilder::<Sqlite>::new(format!("SELECT {SERVICE_COLUMNS} FROM services WHERE "));
        match (id, slug) {
            (Some(id), _) => qb.push("id = ").push_bind(id_text(id)),
            (None, Some(slug)) => qb.push("slug = ").push_bind(slug.to_string()),
            (None, None) => return Ok(None),
        };
        let row = qb.build().fetch_optional(&self.pool).await.map_err(db("service"))?;
        row.as_ref().map(service_row).transpose()
    }

    pub(super) async fn services_list(&self, team_id: Option<Id>) -> StoreResult<Vec<Service>> {
        let mut qb = QueryBuilder::<Sqlite>::new(format!("SELECT {SERVICE_COLUMNS} FROM services"));
        if let Some(t) = team_id {
            qb.push(" WHERE team_id = ").push_bind(id_text(t));
        }
        qb.push(" ORDER BY created_at DESC, id DESC");
        let rows = qb.build().fetch_all(&self.pool).await.map_err(db("services"))?;
        rows.iter().map(service_row).collect()
    }

    pub(super) async fn services_update(&self, s: &Service, release: Option<&ServiceRelease>) -> StoreResult<bool> {
        let mut tx = self.write_tx("service").await?;
        if !update_service_in(&mut tx, s, release).await? {
            return Ok(false);
        }
        tx.commit().await.map_err(db("service"))?;
        Ok(true)
    }

    pub(super) async fn releases_list(&self, service_id: Id, version: Option<u32>) -> StoreResult<Vec<ServiceRelease>> {
        let mut qb = QueryBuilder::<Sqlite>::new(format!("SELECT {RELEASE_COLUMNS} FROM service_releases WHERE service_id = "));
        qb.push_bind(id_text(service_id));
        if let Some(v) = version {
            qb.push(" AND version = ").push_bind(i64::from(v));
        }
        qb.push(" ORDER BY version DESC");
        let rows = qb.build().fetch_all(&self.pool).await.map_err(db("service releases"))?;
        rows.iter().map(release_row).collect()
    }

    pub(super) async fn subscriptions_create(&self, s: &Subscription) -> StoreResult<()> {
        let sql = format!("INSERT INTO subscriptions ({SUB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id_text(s.id))
            .bind(id_text(s.app_id))
            .bind(id_text(s.service_id))
            .bind(s.status.as_str())
            .bind(&s.reason)
            .bind(&s.decided_by)
            .bind(opt_micros(s.expires_at)?)
            .bind(micros(s.created_at)?)
            .bind(micros(s.updated_at)?)
            .execute(&self.pool)
            .await
            .map_err(db("subscription"))?;
        Ok(())
    }

    pub(super) async fn subscriptions_list(&self, id: Option<Id>, f: &SubscriptionFilter) -> StoreResult<Vec<Subscription>> {
        let mut qb = QueryBuilder::<Sqlite>::new(format!("SELECT {SUB_COLUMNS} FROM subscriptions WHERE 1 = 1"));
        if let Some(id) = id {
            qb.push(" AND id = ").push_bind(id_text(id));
        }
        if let Some(a) = f.app_id {
            qb.push(" AND app_id = ").push_bind(id_text(a));
        }
        if let Some(s) = f.service_id {
            qb.push(" AND service_id = ").push_bind(id_text(s));
        }
        if let Some(st) = f.status {
            qb.push(" AND status = ").push_bind(st.as_str());
        }
        qb.push(" ORDER BY created_at DESC, id DESC");
        let rows = qb.build().fetch_all(&self.pool).await.map_err(db("subscriptions"))?;
        rows.iter().map(subscription_row).collect()
    }

    pub(super) async fn subscriptions_update(&self, s: &Subscription, expected: SubscriptionStatus) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE subscriptions SET status = ?, reason = ?, decided_by = ?, expires_at = ?, updated_at = ? \
             WHERE id = ? AND status = ?",
        )
        .bind(s.status.as_str())
        .bind(&s.reason)
        .bind(&s.decided_by)
        .bind(opt_micros(s.expires_at)?)
        .bind(micros(s.updated_at)?)
        .bind(id_text(s.id))
        .bind(expected.as_str())
        .execute(&self.pool)
        .await
        .map_err(db("subscription"))?;
        Ok(done.rows_affected() > 0)
    }
}
