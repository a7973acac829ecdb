//! The change set of a declarative team configuration (issue 7, `gatehouse config apply`):
//! everything one apply writes, handed to [`crate::Store::apply_config`] as a whole so it is
//! committed in ONE transaction (all or nothing).

use crate::{App, Limit, Model, Service, ServiceRelease};

/// A service row to write, with the release a publish makes (if any).
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceWrite {
    /// The full row as it must be stored.
    pub service: Service,
    /// True: insert (errors with `Conflict` if the slug is taken); false: update the row with
    /// `service.id` (every column but `id`, `team_id`, `kind`, `slug`, `created_at`; `NotFound`
    /// if it no longer exists).
    pub create: bool,
    /// A release inserted with it (`Conflict` if its version exists).
    pub release: Option<ServiceRelease>,
}

/// Everything one configuration apply writes. Applied in field order: apps, limits, models,
/// services (so limits may target apps created by the same change set, and services may name
/// models it creates).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigChanges {
    /// Inserted (`Conflict` if the name is taken in the team).
    pub apps: Vec<App>,
    /// Upserted by (`scope`, `scope_id`, `model`), like [`crate::Store::upsert_limit`].
    pub limits: Vec<Limit>,
    /// Upserted by name with their deployments, like [`crate::Store::upsert_model`].
    pub models: Vec<Model>,
    pub services: Vec<ServiceWrite>,
}

impl ConfigChanges {
    /// True if there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty() && self.limits.is_empty() && self.models.is_empty() && self.services.is_empty()
    }
}
