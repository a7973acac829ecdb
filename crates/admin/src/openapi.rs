//! The OpenAPI 3.1 document of `/admin/v1` (issue 7), generated with utoipa from the operation
//! declarations and schema types below and served at `GET /admin/v1/openapi.json` (no credential
//! needed: the document holds no data).
//!
//! The operations are declared here (not on the handlers, which several modules own) and a test
//! keeps them equal to the route table [`crate::authz_http::ROUTES`]: an endpoint added to the
//! table without an operation here, or documented without a route, fails the build's tests.
//! Every operation documents the one error shape ([`ErrorBody`]) as its `default` response;
//! schemathesis (`tests/python/test_admin_openapi.py`) checks the live server against it.

#![allow(dead_code)] // the structs and functions exist only to be read by the derive macros

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

// ------------------------------------------------------------------------------------ schemas

/// Body of `POST /admin/v1/teams/{id}/config`.
#[derive(ToSchema, Deserialize)]
pub struct ConfigApplyBody {
    /// The configuration document (`version`, `team`, `apps`, `limits`, `services`, `models`?).
    pub document: Value,
    /// Plan only (default false).
    pub dry_run: Option<bool>,
}

/// One line of a configuration plan.
#[derive(ToSchema, serde::Serialize)]
pub struct ConfigPlanItem {
    /// `create`, `update`, `unchanged`, `not_in_file`.
    pub action: String,
    /// `app`, `limit`, `service`, `model`.
    pub kind: String,
    pub name: String,
    /// e.g. `+ create app checkout`.
    pub summary: String,
}

/// The plan of a configuration apply (written in one transaction unless `dry_run`).
#[derive(ToSchema, serde::Serialize)]
pub struct ConfigPlan {
    pub team: String,
    pub dry_run: bool,
    /// True if changes were written.
    pub applied: bool,
    pub changes: Vec<ConfigPlanItem>,
    pub unchanged: Vec<ConfigPlanItem>,
    /// Resources of the server the document does not list (left alone).
    pub not_in_file: Vec<ConfigPlanItem>,
}

/// The one error shape of the admin API; `code` is from the shared error-code table.
#[derive(ToSchema, serde::Serialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// Error details.
#[derive(ToSchema, serde::Serialize)]
pub struct ErrorDetail {
    pub message: String,
    /// e.g. `invalid_request_error`, `authentication_error`, `permission_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// e.g. `invalid_request`, `not_found`, `permission_denied`.
    pub code: String,
    /// The offending field, when one is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
}

/// A team (tenant).
#[derive(ToSchema, serde::Serialize)]
pub struct Team {
    pub id: String,
    pub name: String,
    pub created_at: String,
}

/// An app of a team; API keys belong to apps.
#[derive(ToSchema, serde::Serialize)]
pub struct App {
    pub id: String,
    pub team_id: String,
    pub name: String,
    pub created_at: String,
}

/// A user (never a password hash).
#[derive(ToSchema, serde::Serialize)]
pub struct User {
    pub id: String,
    pub username: String,
    /// `admin` | `member`.
    pub system_role: String,
    pub created_at: String,
}

/// An API key as listed: metadata and hint only.
#[derive(ToSchema, serde::Serialize)]
pub struct Key {
    pub id: String,
    pub name: String,
    pub hint: String,
    pub team_id: String,
    pub app_id: String,
    pub models: Vec<String>,
    pub scopes: Vec<String>,
    pub ip_allow: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub dpop_jkt: Option<String>,
    /// RFC 8705 `x5t#S256` of the client certificate the key is bound to.
    pub mtls_x5t: Option<String>,
    pub rotated_from: Option<String>,
    pub suspended_at: Option<String>,
    pub auto_suspend: bool,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
    pub created_at: String,
}

/// A created key: the metadata plus the plaintext `key`, shown only in this answer.
#[derive(ToSchema, serde::Serialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub view: Key,
    pub key: String,
}

/// A rotation: the successor (with its plaintext, once) and the old key with its new expiry.
#[derive(ToSchema, serde::Serialize)]
pub struct RotatedKey {
    #[serde(flatten)]
    pub view: Key,
    pub key: String,
    pub previous: Key,
}

/// A provider: never the key, only its hint.
#[derive(ToSchema, serde::Serialize)]
pub struct Provider {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub base_url: String,
    pub key_hint: Option<String>,
    pub created_at: String,
}

/// A deployment of a public model.
#[derive(ToSchema, serde::Serialize)]
pub struct Deployment {
    pub provider: String,
    pub model: String,
    pub weight: i32,
    pub priority: i32,
}

/// A public model and its deployments.
#[derive(ToSchema, serde::Serialize)]
pub struct Model {
    pub id: String,
    pub name: String,
    pub deployments: Vec<Deployment>,
    pub created_at: String,
}

/// A team membership with the user's name.
#[derive(ToSchema, serde::Serialize)]
pub struct Member {
    pub team_id: String,
    pub user_id: String,
    pub username: String,
    /// `owner` | `admin` | `developer` | `viewer`.
    pub role: String,
    pub created_at: String,
}

/// One membership of the caller.
#[derive(ToSchema, serde::Serialize)]
pub struct Membership {
    pub team_id: String,
    pub team: String,
    pub role: String,
}

/// `GET /me`.
#[derive(ToSchema, serde::Serialize)]
pub struct Me {
    pub user: User,
    /// `operator_token` | `session`.
    pub auth: String,
    pub memberships: Vec<Membership>,
    /// For a cookie session: the `X-CSRF-Token` value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

/// A created operator token: the plaintext `token` is shown only here.
#[derive(ToSchema, serde::Serialize)]
pub struct CreatedToken {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub pepper_version: i32,
    pub hint: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub created_at: String,
    pub token: String,
}

/// A new login session (the cookie is in `Set-Cookie`).
#[derive(ToSchema, serde::Serialize)]
pub struct Session {
    pub user: User,
    pub expires_at: String,
    /// Send as `X-CSRF-Token` with every state-changing request made with the session cookie.
    pub csrf_token: String,
}

/// `{"logged_out": true}`.
#[derive(ToSchema, serde::Serialize)]
pub struct LoggedOut {
    pub logged_out: bool,
}

/// A deletion acknowledgement (further fields name what was deleted).
#[derive(ToSchema, serde::Serialize)]
pub struct Deleted {
    pub deleted: bool,
}

/// `{"received": n}`.
#[derive(ToSchema, serde::Serialize)]
pub struct LeakReceived {
    pub received: u64,
}

/// `{"data": [Team]}`.
#[derive(ToSchema, serde::Serialize)]
pub struct TeamList {
    pub data: Vec<Team>,
}
/// Answer of `DELETE /apps/{id}`.
#[derive(ToSchema, serde::Serialize)]
pub struct AppDeleted {
    pub deleted: bool,
    pub id: String,
    /// How many live keys of the app were revoked.
    pub revoked_keys: u64,
    /// How many pending or active subscriptions were cancelled.
    pub cancelled_subscriptions: u64,
    /// How many OAuth clients were revoked (with the tokens they obtained).
    pub revoked_oauth_clients: u64,
    /// How many other live issued tokens of the app were revoked.
    pub revoked_tokens: u64,
}

/// `{"data": [App]}`.
#[derive(ToSchema, serde::Serialize)]
pub struct AppList {
    pub data: Vec<App>,
}
/// `{"data": [User]}`.
#[derive(ToSchema, serde::Serialize)]
pub struct UserList {
    pub data: Vec<User>,
}
/// `{"data": [Key]}`.
#[derive(ToSchema, serde::Serialize)]
pub struct KeyList {
    pub data: Vec<Key>,
}
/// `{"data": [Provider]}`.
#[derive(ToSchema, serde::Serialize)]
pub struct ProviderList {
    pub data: Vec<Provider>,
}
/// `{"data": [Model]}`.
#[derive(ToSchema, serde::Serialize)]
pub struct ModelList {
    pub data: Vec<Model>,
}
/// `{"data": [Member]}`.
#[derive(ToSchema, serde::Serialize)]
pub struct MemberList {
    pub data: Vec<Member>,
}
/// One page of call logs, newest first.
#[derive(ToSchema, serde::Serialize)]
pub struct LogPage {
    pub data: Vec<Value>,
    pub next_before: Option<String>,
}
/// One page of audit events, newest first.
#[derive(ToSchema, serde::Serialize)]
pub struct AuditPage {
    pub data: Vec<Value>,
    pub next_before_seq: Option<i64>,
}
/// The audit chain check.
#[derive(ToSchema, serde::Serialize)]
pub struct AuditVerify {
    pub ok: bool,
    pub checked: u64,
}
/// `{"data": [limit with usage]}`.
/// `GET /health/deployments`: one object per deployment and per provider key.
#[derive(ToSchema, serde::Serialize)]
pub struct HealthSnapshot {
    pub deployments: Vec<Value>,
    pub keys: Vec<Value>,
}

/// `POST /health/keys/{id}/restore`.
#[derive(ToSchema, serde::Serialize)]
pub struct KeyRestored {
    pub credential_id: String,
    pub restored: bool,
}

#[derive(ToSchema, serde::Serialize)]
pub struct LimitList {
    pub data: Vec<Value>,
}

/// `{"data": [object]}` (OAuth clients).
#[derive(ToSchema, serde::Serialize)]
pub struct ObjectList {
    pub data: Vec<Value>,
}

// --------------------------------------------------------------------------- request bodies

/// `POST /oauth-clients`.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthClientBody {
    pub name: String,
    pub app_id: Option<String>,
    /// `client_secret_basic` | `private_key_jwt`.
    pub auth_method: Option<String>,
    pub public_jwk: Option<Value>,
    /// `opaque` | `jwt`.
    pub token_format: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub models: Option<Vec<String>>,
    pub audiences: Option<Vec<String>>,
    pub access_ttl: Option<Value>,
    /// RFC 8705 §3.4: bind the client's tokens to its TLS client certificate.
    pub tls_client_certificate_bound_access_tokens: Option<bool>,
}

/// `POST /tokens/revoke`, `POST /tokens/introspect` (RFC 7009, RFC 7662).
#[derive(ToSchema, Deserialize)]
pub struct TokenBody {
    pub token: String,
    pub token_type_hint: Option<String>,
}

/// `POST /tokens/single-use`.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SingleUseBody {
    pub name: String,
    pub app_id: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub models: Option<Vec<String>>,
    pub expires_in: Option<Value>,
}

/// `POST /keys`. `expires_in`: a duration (`"30m"`, `"7d"`) or seconds.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyBody {
    pub name: String,
    pub models: Option<Vec<String>>,
    pub expires_in: Option<Value>,
    pub expires_at: Option<String>,
    pub app_id: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub ip_allow: Option<Vec<String>>,
    pub labels: Option<BTreeMap<String, String>>,
    pub auto_suspend: Option<bool>,
    /// RFC 7638 thumbprint: the key then works only with DPoP proofs of that key.
    pub dpop_jkt: Option<String>,
    /// RFC 8705 `x5t#S256` thumbprint: the key then works only over a connection with that
    /// client certificate.
    pub mtls_x5t: Option<String>,
}

/// `POST /keys/{id}/rotate`: overlap of the old key (`"1h"` or seconds; default 24 h, max 7 d).
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    pub grace: Option<Value>,
}

/// `POST /providers`.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderBody {
    pub name: String,
    pub kind: String,
    pub base_url: Option<String>,
    pub api_key: Option<String>,
}

/// One deployment of `POST /models`.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentBody {
    pub provider: String,
    pub model: String,
    pub weight: Option<i64>,
    pub priority: Option<i64>,
}

/// `POST /models`.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelBody {
    pub name: String,
    pub deployments: Vec<DeploymentBody>,
}

/// `PUT /models/{name}/cache`: the TTL of cached answers, seconds (1 to 2,592,000).
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCacheBody {
    #[schema(minimum = 1, maximum = 2592000)]
    pub ttl_secs: u32,
}

/// `POST /limits` (see the limits module for the fields).
#[derive(ToSchema, Deserialize)]
pub struct LimitBody {
    /// `team` | `app` | `key` | `model`.
    pub scope: String,
    pub id: String,
    pub model: Option<String>,
}

/// `POST /session`.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    pub username: String,
    pub password: String,
}

/// `POST /users`. `system_role`: `admin` | `member` (default).
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUserBody {
    pub username: String,
    pub password: String,
    pub system_role: Option<String>,
}

/// `PATCH /users/{id}`.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserBody {
    pub password: Option<String>,
    pub system_role: Option<String>,
}

/// `POST /teams`: `owner` is a user id that becomes the first owner.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTeamBody {
    pub name: String,
    pub owner: Option<String>,
}

/// `PUT /teams/{id}/members/{user_id}`: `owner` | `admin` | `developer` | `viewer`.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    pub role: String,
}

/// `POST /apps`.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAppBody {
    pub team_id: String,
    pub name: String,
}

/// `POST /me/tokens`: `expires_in` a duration such as `"90d"`.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenBody {
    pub name: String,
    pub expires_in: Option<String>,
}

/// `POST /me/password`.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordBody {
    pub current_password: String,
    /// At least 8 characters.
    pub new_password: String,
}

// ------------------------------------------------------------------------------- operations

macro_rules! op {
    ($fn:ident, $method:ident, $path:literal, $tag:literal, $summary:literal, ok = $status:literal $(/ $status2:literal)? $body:ty $(, req = $req:ty)? $(, params($($p:tt)*))?) => {
        #[utoipa::path(
            $method,
            path = $path,
            tag = $tag,
            summary = $summary,
            $(request_body = $req,)?
            $(params($($p)*),)?
            responses(
                (status = $status, description = "success", body = $body),
                $((status = $status2, description = "success (created)", body = $body),)?
                (status = "default", description = "an error in the one admin error shape", body = ErrorBody)
            ),
            security(("operator_token" = []), ("session" = []))
        )]
        fn $fn() {}
    };
}

op!(login, post, "/admin/v1/session", "session", "Log in (sets the HttpOnly session cookie)", ok = 201 Session, req = LoginBody);
op!(logout, delete, "/admin/v1/session", "session", "Log out (ends the cookie's session)", ok = 200 LoggedOut);
op!(me, get, "/admin/v1/me", "session", "The caller, their system role and memberships", ok = 200 Me);
op!(create_token, post, "/admin/v1/me/tokens", "session", "Create an operator token for oneself (shown once)", ok = 201 CreatedToken, req = CreateTokenBody);
op!(change_password, post, "/admin/v1/me/password", "session", "Change one's own password (other sessions and tokens end)", ok = 200 User, req = ChangePasswordBody);
op!(list_users, get, "/admin/v1/users", "users", "List users", ok = 200 UserList);
op!(create_user, post, "/admin/v1/users", "users", "Create a user (argon2id password hash)", ok = 201 User, req = CreateUserBody);
op!(update_user, patch, "/admin/v1/users/{id}", "users", "Change a user's password or system role", ok = 200 User, req = UpdateUserBody, params(("id" = String, Path, description = "user id")));
op!(list_teams, get, "/admin/v1/teams", "teams", "List the teams the caller may see", ok = 200 TeamList);
op!(create_team, post, "/admin/v1/teams", "teams", "Create a team", ok = 201 Team, req = CreateTeamBody);
op!(get_team, get, "/admin/v1/teams/{id}", "teams", "Read a team", ok = 200 Team, params(("id" = String, Path, description = "team id")));
op!(list_members, get, "/admin/v1/teams/{id}/members", "teams", "List a team's members", ok = 200 MemberList, params(("id" = String, Path, description = "team id")));
op!(set_member, put, "/admin/v1/teams/{id}/members/{user_id}", "teams", "Add a member or change a member's role", ok = 200 / 201 Member, req = MemberBody,
    params(("id" = String, Path, description = "team id"), ("user_id" = String, Path, description = "user id")));
op!(remove_member, delete, "/admin/v1/teams/{id}/members/{user_id}", "teams", "Remove a member", ok = 200 Deleted,
    params(("id" = String, Path, description = "team id"), ("user_id" = String, Path, description = "user id")));
op!(list_apps, get, "/admin/v1/apps", "apps", "List apps (of one team)", ok = 200 AppList,
    params(("team_id" = Option<String>, Query, description = "only this team's apps")));
op!(create_app, post, "/admin/v1/apps", "apps", "Create an app in a team", ok = 201 App, req = CreateAppBody);
op!(get_app, get, "/admin/v1/apps/{id}", "apps", "Read an app", ok = 200 App, params(("id" = String, Path, description = "app id")));
op!(delete_app, delete, "/admin/v1/apps/{id}", "apps", "Delete an app (soft): revoke its keys, OAuth clients and tokens, cancel its subscriptions", ok = 200 AppDeleted,
    params(("id" = String, Path, description = "app id")));
op!(create_key, post, "/admin/v1/keys", "keys", "Create an API key (the plaintext is shown once)", ok = 201 CreatedKey, req = CreateKeyBody);
op!(list_keys, get, "/admin/v1/keys", "keys", "List API keys (hints only)", ok = 200 KeyList,
    params(("app_id" = Option<String>, Query, description = "only this app's keys"), ("include_revoked" = Option<bool>, Query, description = "also revoked keys")));
op!(get_key, get, "/admin/v1/keys/{id}", "keys", "Read an API key (hint only)", ok = 200 Key, params(("id" = String, Path, description = "key id")));
op!(revoke_key, post, "/admin/v1/keys/{id}/revoke", "keys", "Revoke an API key (or an issued single-use / access token by its id) now", ok = 200 Key, params(("id" = String, Path, description = "key id, or the id of a token issued by the authorization server")));
op!(rotate_key, post, "/admin/v1/keys/{id}/rotate", "keys", "Rotate an API key with an overlap (once: 409 if already rotated)", ok = 201 RotatedKey, req = RotateBody,
    params(("id" = String, Path, description = "key id")));
op!(list_providers, get, "/admin/v1/providers", "providers", "List providers (key hints only)", ok = 200 ProviderList);
op!(upsert_provider, post, "/admin/v1/providers", "providers", "Create or update a provider", ok = 200 / 201 Provider, req = ProviderBody);
op!(delete_provider, delete, "/admin/v1/providers/{name}", "providers", "Delete a provider", ok = 200 Deleted,
    params(("name" = String, Path, description = "provider name")));
op!(list_models, get, "/admin/v1/models", "models", "List public models", ok = 200 ModelList);
op!(upsert_model, post, "/admin/v1/models", "models", "Create or replace a public model", ok = 200 / 201 Model, req = ModelBody);
op!(delete_model, delete, "/admin/v1/models/{name}", "models", "Delete a public model", ok = 200 Deleted,
    params(("name" = String, Path, description = "model name")));
op!(get_model_cache, get, "/admin/v1/models/{name}/cache", "models", "A model's response-cache setting", ok = 200 Value,
    params(("name" = String, Path, description = "model name")));
op!(set_model_cache, put, "/admin/v1/models/{name}/cache", "models", "Opt a model in to the response cache (per team, per node)", ok = 200 Value,
    req = ModelCacheBody, params(("name" = String, Path, description = "model name")));
op!(delete_model_cache, delete, "/admin/v1/models/{name}/cache", "models", "Opt a model out of the response cache", ok = 200 Value,
    params(("name" = String, Path, description = "model name")));
op!(query_logs, get, "/admin/v1/logs", "logs", "Call logs, newest first", ok = 200 LogPage,
    params(("team_id" = Option<String>, Query, description = "team"), ("app_id" = Option<String>, Query, description = "app"),
           ("key_id" = Option<String>, Query, description = "key"), ("model" = Option<String>, Query, description = "public model"),
           ("status" = Option<u16>, Query, description = "HTTP status"), ("errors_only" = Option<bool>, Query, description = "only errors"),
           ("since" = Option<String>, Query, description = "RFC 3339"), ("until" = Option<String>, Query, description = "RFC 3339"),
           ("before" = Option<String>, Query, description = "page cursor"), ("limit" = Option<u32>, Query, description = "1-1000")));
op!(list_limits, get, "/admin/v1/limits", "limits", "Limits with usage", ok = 200 LimitList);
op!(set_limit, post, "/admin/v1/limits", "limits", "Set limits of a team, app, key or model", ok = 200 / 201 Value, req = LimitBody);
op!(delete_limit, delete, "/admin/v1/limits/{id}", "limits", "Delete a limit row", ok = 200 Value, params(("id" = String, Path, description = "limit id")));
op!(report_leak, post, "/admin/v1/credentials/report-leak", "keys", "Report leaked tokens (GitHub secret-scanning shape)", ok = 202 LeakReceived,
    req = Value);
op!(create_oauth_client, post, "/admin/v1/oauth-clients", "oauth", "Create an OAuth client (the secret is shown once)", ok = 201 Value,
    req = OAuthClientBody);
op!(list_oauth_clients, get, "/admin/v1/oauth-clients", "oauth", "List OAuth clients", ok = 200 ObjectList,
    params(("include_revoked" = Option<bool>, Query, description = "also revoked clients")));
op!(get_oauth_client, get, "/admin/v1/oauth-clients/{id}", "oauth", "Read an OAuth client", ok = 200 Value,
    params(("id" = String, Path, description = "client id")));
op!(revoke_oauth_client, post, "/admin/v1/oauth-clients/{id}/revoke", "oauth", "Revoke an OAuth client and its tokens", ok = 200 Value,
    params(("id" = String, Path, description = "client id")));
op!(revoke_token, post, "/admin/v1/tokens/revoke", "oauth", "Revoke any API key or issued token (RFC 7009 semantics)", ok = 200 Value, req = TokenBody);
op!(introspect_token, post, "/admin/v1/tokens/introspect", "oauth", "Introspect a token (RFC 7662 §2.2)", ok = 200 Value, req = TokenBody);
op!(create_single_use, post, "/admin/v1/tokens/single-use", "oauth", "Mint a single-use token (shown once)", ok = 201 Value, req = SingleUseBody);
op!(query_audit, get, "/admin/v1/audit", "audit", "Audit events, newest first", ok = 200 AuditPage,
    params(("event_type" = Option<String>, Query, description = "event type"), ("key_id" = Option<String>, Query, description = "key"),
           ("fingerprint" = Option<String>, Query, description = "token fingerprint"), ("since" = Option<String>, Query, description = "RFC 3339"),
           ("until" = Option<String>, Query, description = "RFC 3339"), ("before_seq" = Option<i64>, Query, description = "page cursor"),
           ("limit" = Option<u32>, Query, description = "1-1000")));
op!(verify_audit, get, "/admin/v1/audit/verify", "audit", "Verify the audit hash chain", ok = 200 AuditVerify);
// Routing health (issue 6; served by the gateway crate's `health_api`, mounted via `router_with`).
op!(health_deployments, get, "/admin/v1/health/deployments", "health",
    "Circuit state of every deployment and status of every provider key (hints only)", ok = 200 HealthSnapshot);
op!(restore_provider_key, post, "/admin/v1/health/keys/{id}/restore", "health",
    "Clear a provider key's invalid or quota mark on this node", ok = 200 KeyRestored,
    params(("id" = String, Path, description = "provider credential id")));

// Services and subscriptions (issue 7; `apim.rs`, `subscriptions.rs`). Specs are free-form JSON
// (`gatehouse_types::apim::ServiceSpec`, validated by the server, 400 naming the field).
op!(create_service, post, "/admin/v1/services", "services", "Create a draft service (ai, rest or prompt)", ok = 201 Value, req = Value);
op!(list_services, get, "/admin/v1/services", "services", "List services (own teams', and published public ones)", ok = 200 ObjectList,
    params(("team_id" = Option<String>, Query, description = "only this team's services"), ("kind" = Option<String>, Query, description = "ai | rest | prompt"),
           ("status" = Option<String>, Query, description = "draft | published | deprecated | retired")));
op!(get_service, get, "/admin/v1/services/{id}", "services", "Read a service (id or slug)", ok = 200 Value, params(("id" = String, Path, description = "service id or slug")));
op!(update_service, patch, "/admin/v1/services/{id}", "services", "Edit a service's draft", ok = 200 Value, req = Value, params(("id" = String, Path, description = "service id or slug")));
op!(publish_service, post, "/admin/v1/services/{id}/publish", "services", "Publish the draft as a new immutable release", ok = 200 Value, req = Value,
    params(("id" = String, Path, description = "service id or slug")));
op!(deprecate_service, post, "/admin/v1/services/{id}/deprecate", "services", "Deprecate with a sunset date (Deprecation/Sunset headers)", ok = 200 Value, req = Value,
    params(("id" = String, Path, description = "service id or slug")));
op!(retire_service, post, "/admin/v1/services/{id}/retire", "services", "Retire (calls answer 410)", ok = 200 Value, params(("id" = String, Path, description = "service id or slug")));
op!(rollback_service, post, "/admin/v1/services/{id}/rollback", "services", "Republish an earlier release", ok = 200 Value, req = Value,
    params(("id" = String, Path, description = "service id or slug")));
op!(list_releases, get, "/admin/v1/services/{id}/releases", "services", "Releases, newest first", ok = 200 ObjectList,
    params(("id" = String, Path, description = "service id or slug")));
op!(get_release, get, "/admin/v1/services/{id}/releases/{version}", "services", "Read one release", ok = 200 Value,
    params(("id" = String, Path, description = "service id or slug"), ("version" = String, Path, description = "release number")));
op!(diff_releases, get, "/admin/v1/services/{id}/diff", "services", "Differences between two releases (JSON Pointers)", ok = 200 Value,
    params(("id" = String, Path, description = "service id or slug"), ("from" = Option<String>, Query, description = "release number"),
           ("to" = Option<String>, Query, description = "release number")));
op!(request_subscription, post, "/admin/v1/subscriptions", "subscriptions", "Subscribe an app to a service", ok = 201 Value, req = Value);
op!(list_subscriptions, get, "/admin/v1/subscriptions", "subscriptions", "List subscriptions", ok = 200 ObjectList,
    params(("app_id" = Option<String>, Query, description = "app"), ("service_id" = Option<String>, Query, description = "service"),
           ("status" = Option<String>, Query, description = "pending | active | rejected | cancelled | expired")));
op!(get_subscription, get, "/admin/v1/subscriptions/{id}", "subscriptions", "Read a subscription", ok = 200 Value, params(("id" = String, Path, description = "subscription id")));
op!(approve_subscription, post, "/admin/v1/subscriptions/{id}/approve", "subscriptions", "Approve a pending subscription", ok = 200 Value, req = Value,
    params(("id" = String, Path, description = "subscription id")));
op!(reject_subscription, post, "/admin/v1/subscriptions/{id}/reject", "subscriptions", "Reject a pending subscription (reason required)", ok = 200 Value, req = Value,
    params(("id" = String, Path, description = "subscription id")));
op!(cancel_subscription, post, "/admin/v1/subscriptions/{id}/cancel", "subscriptions", "Cancel a pending or active subscription", ok = 200 Value, req = Value,
    params(("id" = String, Path, description = "subscription id")));

// Declarative team configuration (issue 7; `team_config.rs`). The document is free-form JSON
// (validated by the server, 400 naming the field, e.g. `document.limits[0].target`).
op!(export_config, get, "/admin/v1/teams/{id}/config", "config", "Export a team's configuration (apps, limits, services) as one document", ok = 200 Value,
    params(("id" = String, Path, description = "team id"), ("models" = Option<bool>, Query, description = "also the public models")));
op!(apply_config, post, "/admin/v1/teams/{id}/config", "config", "Plan (dry_run) or apply a configuration document in one transaction", ok = 200 ConfigPlan,
    req = ConfigApplyBody, params(("id" = String, Path, description = "team id")));

/// Adds the two security schemes: the operator token (bearer) and the session cookie.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "operator_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("gtho_…").build()),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::service::tenancy::SESSION_COOKIE))),
        );
    }
}

/// The document's root.
#[derive(OpenApi)]
#[openapi(
    info(title = "Gatehouse admin API", description = "The control plane of Gatehouse (`/admin/v1`). Errors: `{\"error\":{\"message\",\"type\",\"code\",\"param\"?}}`."),
    paths(
        login, logout, me, create_token, change_password, list_users, create_user, update_user, list_teams, create_team, get_team,
        list_members, set_member, remove_member, list_apps, create_app, get_app, delete_app, create_key, list_keys, get_key,
        revoke_key, rotate_key, list_providers, upsert_provider, delete_provider, list_models, upsert_model,
        delete_model, get_model_cache, set_model_cache, delete_model_cache, query_logs, list_limits, set_limit, delete_limit, report_leak, query_audit, verify_audit,
        create_oauth_client, list_oauth_clients, get_oauth_client, revoke_oauth_client, revoke_token, introspect_token,
        create_single_use, create_service, list_services, get_service, update_service, publish_service,
        deprecate_service, retire_service, rollback_service, list_releases, get_release, diff_releases,
        request_subscription, list_subscriptions, get_subscription, approve_subscription, reject_subscription,
        cancel_subscription, health_deployments, restore_provider_key, export_config, apply_config
    ),
    modifiers(&Security)
)]
struct AdminApi;

/// The OpenAPI 3.1 document of the admin API.
pub fn document() -> utoipa::openapi::OpenApi {
    AdminApi::openapi()
}

/// `GET /admin/v1/openapi.json`.
pub async fn serve() -> axum::response::Response {
    use axum::response::IntoResponse;
    axum::Json(document()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document's operations are exactly the route table (plus the login).
    #[test]
    fn document_covers_every_route_and_nothing_else() {
        let doc = serde_json::to_value(document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    documented.push((method.to_uppercase(), path.clone()));
                }
            }
        }
        let mut routed: Vec<(String, String)> = crate::authz_http::ROUTES
            .iter()
            .map(|r| (r.method.to_string(), format!("/admin/v1{}", r.path)))
            .collect();
        routed.push(("POST".into(), "/admin/v1/session".into()));
        documented.sort();
        routed.sort();
        assert_eq!(documented, routed);
        if let Ok(path) = std::env::var("GATEHOUSE_DUMP_OPENAPI") {
            std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        }
        // every operation documents the error shape
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (m, op) in item.as_object().unwrap() {
                assert!(op["responses"]["default"].is_object(), "{m} {path}");
            }
        }
    }
}
