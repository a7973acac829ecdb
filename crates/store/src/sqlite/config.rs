//! Sqlite implementation of [`crate::Store::apply_config`]: one transaction over the same
//! statements as the single-resource methods (shared helpers, so the two cannot drift).

use super::SqliteStore;
use crate::{ConfigChanges, StoreError, StoreResult};

impl SqliteStore {
    pub(super) async fn config_apply(&self, c: &ConfigChanges) -> StoreResult<()> {
        let mut tx = self.write_tx("configuration").await?;
        for app in &c.apps {
            super::insert_app(&mut tx, app).await?;
        }
        for l in &c.limits {
            super::limits::upsert_in(&mut tx, l).await?;
        }
        for m in &c.models {
            super::upsert_model_in(&mut tx, m).await?;
        }
        for w in &c.services {
            if w.create {
                super::services::insert_service(&mut *tx, &w.service).await?;
                if w.release.is_some() && !super::services::update_service_in(&mut tx, &w.service, w.release.as_ref()).await? {
                    return Err(StoreError::NotFound("service".into()));
                }
            } else if !super::services::update_service_in(&mut tx, &w.service, w.release.as_ref()).await? {
                return Err(StoreError::NotFound(format!("service {} no longer exists", w.service.id)));
            }
        }
        // dropping `tx` on an early return above rolls everything back
        tx.commit().await.map_err(|e| StoreError::from_sqlx("configuration", e))
    }
}
