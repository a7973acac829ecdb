//! Records of issue 7 (API management): services with their lifecycle and immutable releases,
//! and app subscriptions to services (DESIGN.md "Data model": `services`, `subscriptions`).
//!
//! A service's kind-specific definition (models of an `ai` service, routes and upstreams of a
//! `rest` service, prompt templates of a `prompt` service, plus docs/OpenAPI/category/tags) is a
//! JSON document, the *spec*: the draft is [`Service::spec`], the published one
//! [`Service::live_spec`], and every publish stores a [`ServiceRelease`] snapshot of it.

use gatehouse_types::{Id, Timestamp};
use serde::{Deserialize, Serialize};

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            /// The stored and wire text.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
            /// Inverse of `as_str`; `None` for anything else.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some(Self::$variant),)+ _ => None }
            }
            /// Every accepted text, for error messages.
            pub const NAMES: &'static [&'static str] = &[$($text),+];
        }
    };
}

text_enum!(
    /// What a service exposes.
    ServiceKind {
        /// A group of public models (chat/embeddings through the OpenAI/Anthropic/Gemini APIs).
        Ai = "ai",
        /// Routes to an upstream HTTP API the team owns, at `/svc/{slug}/…`.
        Rest = "rest",
        /// Prompt APIs at `POST /prompts/{slug}/{name}`.
        Prompt = "prompt",
    }
);

text_enum!(
    /// Lifecycle state: `draft → published → deprecated → retired`.
    ServiceStatus {
        /// Never published; not callable.
        Draft = "draft",
        /// Callable by subscribed apps.
        Published = "published",
        /// Still callable; answers carry `Deprecation` (RFC 9745) and `Sunset` (RFC 8594).
        Deprecated = "deprecated",
        /// Calls are answered 410 `service_retired`.
        Retired = "retired",
    }
);

text_enum!(
    /// Who can see (and subscribe to) a service.
    Visibility {
        /// Only the owning team.
        Team = "team",
        /// Every team.
        Public = "public",
    }
);

text_enum!(
    /// How subscription requests are decided.
    ApprovalMode {
        /// Active at once.
        Auto = "auto",
        /// Pending until the owning team approves or rejects.
        Manual = "manual",
    }
);

text_enum!(
    /// State of a subscription. `expired` is also reported for an `active` row whose
    /// `expires_at` has passed ([`Subscription::effective_status`]).
    SubscriptionStatus {
        Pending = "pending",
        Active = "active",
        Rejected = "rejected",
        Cancelled = "cancelled",
        Expired = "expired",
    }
);

/// A service (table `services`). `slug` is unique across the installation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub id: Id,
    pub team_id: Id,
    pub kind: ServiceKind,
    /// `[a-z0-9-]{1,63}`, starting with a letter or digit; the data-plane path segment.
    pub slug: String,
    pub name: String,
    pub status: ServiceStatus,
    pub visibility: Visibility,
    pub approval: ApprovalMode,
    /// The draft spec (edited by `PATCH`, snapshotted by publish).
    pub spec: serde_json::Value,
    /// The spec of the current release (what the data plane serves); `None` before the first
    /// publish.
    pub live_spec: Option<serde_json::Value>,
    /// Number of the current release (0 = never published). Releases are numbered 1, 2, …
    pub version: u32,
    #[serde(with = "time::serde::rfc3339::option")]
    pub deprecated_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub sunset_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
}

/// An immutable snapshot made by a publish or a rollback (table `service_releases`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRelease {
    pub id: Id,
    pub service_id: Id,
    /// 1, 2, … per service; unique with `service_id`.
    pub version: u32,
    /// The published spec, with the service's name/visibility/approval at that time.
    pub spec: serde_json::Value,
    /// `"publish"` or `"rollback to N"`.
    pub note: String,
    /// The operator (or user) that made it.
    pub created_by: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
}

/// An app's subscription to a service (table `subscriptions`). At most one `pending` or
/// `active` row exists per (app, service).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: Id,
    pub app_id: Id,
    pub service_id: Id,
    pub status: SubscriptionStatus,
    /// Why it was requested, rejected or cancelled (free text, ≤ 1000 chars).
    pub reason: Option<String>,
    /// Who approved/rejected/cancelled it.
    pub decided_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
}

impl Subscription {
    /// The status as of `at`: an `active` row past its `expires_at` is `expired`.
    pub fn effective_status(&self, at: Timestamp) -> SubscriptionStatus {
        match (self.status, self.expires_at) {
            (SubscriptionStatus::Active, Some(exp)) if exp <= at => SubscriptionStatus::Expired,
            (s, _) => s,
        }
    }
}

/// Filter of [`crate::Store::list_subscriptions`]; `None` fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionFilter {
    pub app_id: Option<Id>,
    pub service_id: Option<Id>,
    pub status: Option<SubscriptionStatus>,
}
