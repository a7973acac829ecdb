//! The route gate of the admin API (issue 7): every `/admin/v1` route has an entry in
//! [`ROUTES`] naming its [`Permission`] and where its team comes from; the gate calls
//! [`authorize`] before the handler runs. A route missing from the table is treated as
//! [`Permission::Unlisted`] (system admins only), so a new endpoint is never open to members by
//! accident. Routes whose team is known only from the query or the body ([`Target::Handler`])
//! call [`authorize`] / [`Principal::visible_teams`] in their handler.
//!
//! Adding an endpoint: add a [`RoutePolicy`] line here (and the route to the router); the
//! cross-team walk test in `tests/isolation.rs` reads this table, so it covers the endpoint.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gatehouse_types::{ApiError, Id};

use crate::authz::{Permission, Principal, Scope, authorize, invisible};
use crate::http::AdminError;
use crate::service::AdminService;

/// Where the team of a route's resource comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Installation-wide (or a cross-team action): checked with [`Scope::System`].
    System,
    /// `{id}` in the path is a team id.
    TeamParam,
    /// `{id}` in the path is an API key id; its team is looked up.
    KeyParam,
    /// `{id}` in the path is an app id; its team is looked up.
    AppParam,
    /// `{id}` in the path is a service id or slug; its team is looked up (issue 7).
    ServiceParam,
    /// Like [`Target::ServiceParam`], but a public non-draft service (the catalog) is readable
    /// by every user ([`Permission::CatalogRead`]); others stay 404 to outsiders.
    CatalogServiceParam,
    /// `{id}` in the path is a subscription id: the service's team for
    /// `subscriptions.decide`, the app's team otherwise (issue 7).
    SubscriptionParam,
    /// `{id}` in the path is a limit row id: the team of its team/app/key; a model-scope row is
    /// installation-wide (checked with [`Scope::System`]).
    LimitParam,
    /// `{id}` in the path is an OAuth client id; its team is looked up.
    OAuthClientParam,
    /// The handler checks (team from the query or the body; lists filter by visible teams).
    Handler,
}

/// One row of the route table.
#[derive(Debug, Clone)]
pub struct RoutePolicy {
    pub method: Method,
    /// The route pattern below `/admin/v1`, as given to the router (`/keys/{id}`).
    pub path: &'static str,
    pub permission: Permission,
    pub target: Target,
}

const fn r(method: Method, path: &'static str, permission: Permission, target: Target) -> RoutePolicy {
    RoutePolicy { method, path, permission, target }
}

use Permission as P;
use Target as T;

/// Every authenticated `/admin/v1` route. (`POST /session` — the login — is the one route
/// without a principal and is not gated.)
pub static ROUTES: &[RoutePolicy] = &[
    r(Method::GET, "/me", P::SelfRead, T::System),
    r(Method::POST, "/me/tokens", P::TokensCreateOwn, T::System),
    r(Method::POST, "/me/password", P::SelfPassword, T::System),
    r(Method::DELETE, "/session", P::SelfRead, T::System),
    r(Method::GET, "/users", P::UsersList, T::System),
    r(Method::POST, "/users", P::UsersCreate, T::System),
    r(Method::PATCH, "/users/{id}", P::UsersUpdate, T::System),
    r(Method::GET, "/teams", P::TeamsList, T::Handler),
    r(Method::POST, "/teams", P::TeamsCreate, T::System),
    r(Method::GET, "/teams/{id}", P::TeamsRead, T::TeamParam),
    r(Method::GET, "/teams/{id}/members", P::MembersRead, T::TeamParam),
    r(Method::PUT, "/teams/{id}/members/{user_id}", P::MembersManage, T::TeamParam),
    r(Method::DELETE, "/teams/{id}/members/{user_id}", P::MembersManage, T::TeamParam),
    r(Method::GET, "/apps", P::AppsRead, T::Handler),
    r(Method::POST, "/apps", P::AppsWrite, T::Handler),
    r(Method::GET, "/apps/{id}", P::AppsRead, T::AppParam),
    r(Method::DELETE, "/apps/{id}", P::AppsWrite, T::AppParam),
    r(Method::POST, "/keys", P::KeysWrite, T::Handler),
    r(Method::GET, "/keys", P::KeysRead, T::Handler),
    r(Method::GET, "/keys/{id}", P::KeysRead, T::KeyParam),
    r(Method::POST, "/keys/{id}/revoke", P::KeysWrite, T::KeyParam),
    r(Method::POST, "/keys/{id}/rotate", P::KeysWrite, T::KeyParam),
    r(Method::GET, "/logs", P::LogsRead, T::Handler),
    r(Method::GET, "/providers", P::ProvidersRead, T::System),
    r(Method::POST, "/providers", P::ProvidersWrite, T::System),
    r(Method::DELETE, "/providers/{name}", P::ProvidersWrite, T::System),
    r(Method::GET, "/models", P::ModelsRead, T::System),
    r(Method::POST, "/models", P::ModelsWrite, T::System),
    r(Method::DELETE, "/models/{name}", P::ModelsWrite, T::System),
    r(Method::GET, "/models/{name}/cache", P::ModelsRead, T::System),
    r(Method::PUT, "/models/{name}/cache", P::ModelsWrite, T::System),
    r(Method::DELETE, "/models/{name}/cache", P::ModelsWrite, T::System),
    // Limits (issue 6) are team data by their team/app/key; model-scope rows are system-wide.
    r(Method::GET, "/limits", P::LimitsRead, T::Handler),
    r(Method::POST, "/limits", P::LimitsWrite, T::Handler),
    r(Method::DELETE, "/limits/{id}", P::LimitsWrite, T::LimitParam),
    r(Method::POST, "/credentials/report-leak", P::LeaksReport, T::System),
    // OAuth clients belong to an app's team (issue 7).
    r(Method::POST, "/oauth-clients", P::OAuthClientsWrite, T::Handler),
    r(Method::GET, "/oauth-clients", P::OAuthClientsRead, T::Handler),
    r(Method::GET, "/oauth-clients/{id}", P::OAuthClientsRead, T::OAuthClientParam),
    r(Method::POST, "/oauth-clients/{id}/revoke", P::OAuthClientsWrite, T::OAuthClientParam),
    r(Method::POST, "/tokens/revoke", P::TokensManage, T::System),
    r(Method::POST, "/tokens/introspect", P::TokensManage, T::System),
    r(Method::POST, "/tokens/single-use", P::TokensManage, T::System),
    // Services and subscriptions (issue 7, `apim.rs`, `subscriptions.rs`).
    r(Method::POST, "/services", P::ServicesWrite, T::Handler),
    r(Method::GET, "/services", P::ServicesRead, T::Handler),
    r(Method::GET, "/services/{id}", P::ServicesRead, T::CatalogServiceParam),
    r(Method::PATCH, "/services/{id}", P::ServicesWrite, T::ServiceParam),
    r(Method::POST, "/services/{id}/publish", P::ServicesPublish, T::ServiceParam),
    r(Method::POST, "/services/{id}/deprecate", P::ServicesPublish, T::ServiceParam),
    r(Method::POST, "/services/{id}/retire", P::ServicesPublish, T::ServiceParam),
    r(Method::POST, "/services/{id}/rollback", P::ServicesPublish, T::ServiceParam),
    r(Method::GET, "/services/{id}/releases", P::ServicesRead, T::ServiceParam),
    r(Method::GET, "/services/{id}/releases/{version}", P::ServicesRead, T::ServiceParam),
    r(Method::GET, "/services/{id}/diff", P::ServicesRead, T::ServiceParam),
    r(Method::POST, "/subscriptions", P::SubscriptionsRequest, T::Handler),
    r(Method::GET, "/subscriptions", P::AppsRead, T::Handler),
    r(Method::GET, "/subscriptions/{id}", P::AppsRead, T::SubscriptionParam),
    r(Method::POST, "/subscriptions/{id}/approve", P::SubscriptionsDecide, T::SubscriptionParam),
    r(Method::POST, "/subscriptions/{id}/reject", P::SubscriptionsDecide, T::SubscriptionParam),
    r(Method::POST, "/subscriptions/{id}/cancel", P::SubscriptionsRequest, T::SubscriptionParam),
    // Declarative team configuration (issue 7, `team_config.rs`); changing public models in a
    // document additionally needs `models.write` (checked in the handler).
    r(Method::GET, "/teams/{id}/config", P::ConfigManage, T::TeamParam),
    r(Method::POST, "/teams/{id}/config", P::ConfigManage, T::TeamParam),
    r(Method::GET, "/audit", P::AuditRead, T::System),
    r(Method::GET, "/audit/verify", P::AuditRead, T::System),
    // Routing health (issue 6), mounted by the server from the gateway crate through
    // `router_with` (`gatehouse_gateway::Gateway::admin_routes`): installation-wide provider data.
    r(Method::GET, "/health/deployments", P::ProvidersRead, T::System),
    r(Method::POST, "/health/keys/{id}/restore", P::ProvidersWrite, T::System),
];

/// The `/admin/v1` routes that need no credential: `POST /admin/v1/session` (login) and
/// `GET /admin/v1/openapi.json` (the API description, no data). `path` with or without the
/// `/admin/v1` prefix (nested routers see it stripped).
pub fn is_public(method: &Method, path: &str) -> bool {
    let path = path.strip_prefix("/admin/v1").unwrap_or(path);
    (*method == Method::POST && path == "/session") || (*method == Method::GET && path == "/openapi.json")
}

/// The policy of a route (`path` below `/admin/v1`), if listed.
pub fn policy(method: &Method, path: &str) -> Option<&'static RoutePolicy> {
    ROUTES.iter().find(|p| p.method == *method && p.path == path)
}

/// The first `{…}` parameter of `pattern` read from `path` (same number of segments).
fn first_param(pattern: &str, path: &str) -> Option<String> {
    let (pat, got): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    if pat.len() != got.len() {
        return None;
    }
    pat.iter().zip(got).find(|(p, _)| p.starts_with('{')).map(|(_, g)| g.to_string())
}

/// Middleware (inside the authentication layer): looks up the route's policy and calls
/// [`authorize`]. Requests that matched no route pass on to the 404/405 fallbacks.
pub async fn gate(State(svc): State<Arc<AdminService>>, request: Request, next: Next) -> Response {
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        if is_public(request.method(), request.uri().path()) {
            return next.run(request).await;
        }
        // Only reachable if the layer order is wrong: refuse rather than serve.
        return AdminError(ApiError::internal()).into_response();
    };
    let Some(matched) = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()) else {
        return next.run(request).await;
    };
    let route = matched.strip_prefix("/admin/v1").unwrap_or(&matched);
    let verdict = match policy(request.method(), route) {
        None => authorize(&principal, Scope::System, P::Unlisted),
        Some(p) => {
            // inside the nested router the URI may already be stripped of `/admin/v1`
            let path = request.uri().path();
            check(&svc, &principal, p, path.strip_prefix("/admin/v1").unwrap_or(path)).await
        }
    };
    match verdict {
        Ok(()) => next.run(request).await,
        Err(e) => AdminError(e).into_response(),
    }
}

async fn check(svc: &AdminService, principal: &Principal, p: &RoutePolicy, path: &str) -> Result<(), ApiError> {
    if principal.is_admin() || matches!(p.target, T::Handler) {
        return Ok(());
    }
    let id = || first_param(p.path, path).and_then(|s| Id::parse_str(&s).ok()).ok_or_else(invisible);
    let team = match p.target {
        T::System => return authorize(principal, Scope::System, p.permission),
        T::Handler => return Ok(()),
        T::TeamParam => id()?,
        T::KeyParam => svc.key_team(id()?).await?.ok_or_else(invisible)?,
        T::AppParam => svc.app_team(id()?).await?.ok_or_else(invisible)?,
        T::ServiceParam => {
            let key = first_param(p.path, path).ok_or_else(invisible)?;
            crate::apim::service_team(svc, &key).await?.ok_or_else(invisible)?
        }
        T::CatalogServiceParam => {
            let key = first_param(p.path, path).ok_or_else(invisible)?;
            match crate::apim::catalog_service_team(svc, &key).await?.ok_or_else(invisible)? {
                (team, true) if principal.team_role(team).is_none() => return authorize(principal, Scope::Team(team), P::CatalogRead),
                (team, _) => team,
            }
        }
        T::SubscriptionParam => crate::subscriptions::subscription_team(svc, id()?, p.permission).await?.ok_or_else(invisible)?,
        T::LimitParam => match crate::limits::limit_team(svc, id()?).await? {
            None => return Err(invisible()),
            Some(None) => return authorize(principal, Scope::System, p.permission),
            Some(Some(team)) => team,
        },
        T::OAuthClientParam => svc.oauth_client_team(id()?).await?.ok_or_else(invisible)?,
    };
    authorize(principal, Scope::Team(team), p.permission)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_param_reads_the_segment() {
        assert_eq!(first_param("/keys/{id}/rotate", "/keys/abc/rotate").as_deref(), Some("abc"));
        assert_eq!(first_param("/teams/{id}/members/{user_id}", "/teams/t/members/u").as_deref(), Some("t"));
        assert_eq!(first_param("/keys/{id}", "/keys/a/b"), None);
    }

    #[test]
    fn table_has_no_duplicates_and_every_path_param_route_names_its_target() {
        for (i, a) in ROUTES.iter().enumerate() {
            assert!(!ROUTES[i + 1..].iter().any(|b| b.method == a.method && b.path == a.path), "{} {}", a.method, a.path);
            if a.path.contains("{id}") {
                assert!(a.target != T::Handler, "{} {} should be checked in the gate", a.method, a.path);
            }
        }
    }
}
