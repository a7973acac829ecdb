//! The control plane of Gatehouse: business services ([`service`]) and the `/admin/v1` REST API
//! ([`http`]) over them.
//!
//! * [`service::AdminService`] holds the logic: first-start bootstrap (default team, app, admin
//!   user, operator token), API keys (create → shown once, list → hint only, revoke → bus
//!   event), providers (key sealed with envelope encryption, `token-security.md` §3, G-8),
//!   models, teams/apps, call logs. It never depends on HTTP types.
//! * [`http::router`] maps HTTP onto the service with thin handlers, checks the operator token
//!   on every route except `/healthz` and `/readyz`, and answers errors as
//!   `{"error":{"message","type","code"}}` from the shared [`gatehouse_types::ErrorCode`] table.
//!
//! Provider keys and API keys never appear in a response (except the one creation response of an
//! API key), an error message or a log line.

pub mod apim;
pub mod apim_openapi;
pub mod audit;
pub mod authz;
pub mod authz_http;
pub mod cache;
pub mod csrf;
pub mod http;
pub mod input;
pub mod oauth_http;
pub mod security_http;
pub mod limits;
pub mod openapi;
pub mod query_guard;
pub mod service;
pub mod team_config;
pub mod tenancy_http;
pub mod subscriptions;

pub use http::{router, router_with};
pub use service::{AdminDeps, AdminService, BootstrapOptions, BootstrapOutput};
