//! Tenancy services (issue 7): principals, teams and memberships, users, apps, login sessions.

use gatehouse_store::{OperatorToken, User};
use gatehouse_types::{ApiError, Id};

use super::{AdminService, internal};
use crate::authz::{AuthMethod, Principal, SystemRole, TeamRole};

impl AdminService {
    /// The principal behind a verified operator token: its user, system role and memberships.
    ///
    /// Errors: 401 if the user no longer exists; 500 on store failures or an unreadable role.
    pub async fn principal_for_token(&self, token: &OperatorToken) -> Result<Principal, ApiError> {
        let user = self
            .deps
            .store
            .get_user(token.user_id)
            .await
            .map_err(|e| internal("reading a token's user", &e))?
            .ok_or_else(|| {
                ApiError::new(gatehouse_types::ErrorCode::InvalidToken, "the operator token is invalid, expired or revoked")
            })?;
        self.principal_for_user(&user, AuthMethod::OperatorToken(token.id)).await
    }

    /// The principal of `user` (memberships read now).
    pub async fn principal_for_user(&self, user: &User, via: AuthMethod) -> Result<Principal, ApiError> {
        let system_role = SystemRole::parse(&user.system_role).ok_or_else(|| {
            tracing::error!(user_id = %user.id, "a user has an unknown system role");
            ApiError::internal()
        })?;
        let rows = self
            .deps
            .store
            .list_user_memberships(user.id)
            .await
            .map_err(|e| internal("reading memberships", &e))?;
        let mut memberships = Vec::with_capacity(rows.len());
        for m in rows {
            match TeamRole::parse(&m.role) {
                Some(r) => memberships.push((m.team_id, r)),
                None => tracing::error!(user_id = %user.id, team_id = %m.team_id, "a membership has an unknown role; ignored"),
            }
        }
        Ok(Principal { user_id: user.id, username: user.username.clone(), system_role, memberships, via })
    }

    /// The team of an API key, `None` if there is no such key.
    pub async fn key_team(&self, id: Id) -> Result<Option<Id>, ApiError> {
        let key = self.deps.store.get_credential(id).await.map_err(|e| internal("reading a key", &e))?;
        if let Some(k) = key {
            return Ok(Some(k.team_id));
        }
        // An issued token's id (`keys revoke` of a single-use token, L3).
        let token = self.deps.store.get_issued_token(id).await.map_err(|e| internal("reading a token", &e))?;
        Ok(token.map(|t| t.team_id))
    }

    /// The team of an OAuth client, `None` if there is no such client (issue 7).
    pub async fn oauth_client_team(&self, id: Id) -> Result<Option<Id>, ApiError> {
        let c = self.deps.store.get_oauth_client(id).await.map_err(|e| internal("reading an oauth client", &e))?;
        Ok(c.map(|c| c.team_id))
    }

    /// The team of an app, `None` if there is no such app.
    pub async fn app_team(&self, id: Id) -> Result<Option<Id>, ApiError> {
        let app = self.deps.store.get_app(id).await.map_err(|e| internal("reading an app", &e))?;
        Ok(app.map(|a| a.team_id))
    }
}

impl AdminService {
    /// Authorizes `permission` on the team of `app_id` (default: the bootstrap app). An unknown
    /// app answers 404 naming `app_id` (also for system admins, before anything is written).
    pub async fn authorize_app(
        &self,
        principal: &Principal,
        app_id: Option<Id>,
        permission: crate::authz::Permission,
    ) -> Result<(), ApiError> {
        let team = match app_id {
            Some(id) => match self.app_team(id).await? {
                Some(t) => t,
                None if principal.is_admin() => return Ok(()), // the handler answers the 404
                None => return Err(crate::authz::invisible()),
            },
            None => self.default_team().await?.id,
        };
        crate::authz::authorize(principal, crate::authz::Scope::Team(team), permission)
    }
}

/// Name of the portal session cookie.
pub const SESSION_COOKIE: &str = "gatehouse_session";
/// Lifetime of a login session (12 hours).
pub const SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(12 * 3600);
/// Shortest accepted password (characters).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest accepted password (bytes; argon2 input is bounded to keep hashing cheap to refuse).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A membership as listed: the user's name and the role.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MemberView {
    pub team_id: Id,
    pub user_id: Id,
    pub username: String,
    /// `owner` | `admin` | `developer` | `viewer`.
    pub role: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: gatehouse_types::Timestamp,
}

/// `GET /admin/v1/me`: the caller and their memberships.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MeView {
    pub user: User,
    /// `operator_token` | `session`.
    pub auth: &'static str,
    pub memberships: Vec<MembershipView>,
}

/// One membership of the caller.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MembershipView {
    pub team_id: Id,
    pub team: String,
    pub role: String,
}

/// A new login session: the opaque cookie value (never stored; shown once in `Set-Cookie`).
pub struct NewSession {
    pub cookie_value: secrecy::SecretString,
    pub session: gatehouse_store::UserSession,
    pub user: User,
}

/// What deleting an app cut off (`DELETE /admin/v1/apps/{id}`), as counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct AppDeletion {
    /// Live API keys revoked.
    pub revoked_keys: usize,
    /// Pending or active subscriptions cancelled.
    pub cancelled_subscriptions: usize,
    /// OAuth clients revoked (with the tokens they obtained).
    pub revoked_oauth_clients: usize,
    /// Other live issued tokens of the app revoked (exchange, single-use).
    pub revoked_tokens: usize,
}

/// A new operator token: the plaintext (shown once) and its metadata.
pub struct NewOperatorToken {
    pub token: secrecy::SecretString,
    pub record: OperatorToken,
}

/// Checks a new password's length: 400 naming `field`.
pub fn check_password(p: &str, field: &str) -> Result<(), ApiError> {
    if p.chars().count() < MIN_PASSWORD_CHARS || p.len() > MAX_PASSWORD_BYTES {
        return Err(crate::input::bad(
            field,
            format!("`{field}` must have {MIN_PASSWORD_CHARS}-{MAX_PASSWORD_BYTES} characters"),
        ));
    }
    Ok(())
}

/// Checks a username: 1-64 of `a-z 0-9 . _ -` (lowercase), starting with a letter or digit.
pub fn check_username(u: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&u.len())
        && u.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
        && u.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(crate::input::bad("username", "`username` must be 1-64 of a-z 0-9 . _ - starting with a letter or digit"))
    }
}

async fn hash_blocking(password: secrecy::SecretString) -> Result<String, ApiError> {
    use secrecy::ExposeSecret;
    tokio::task::spawn_blocking(move || gatehouse_auth::hash_password(password.expose_secret()))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(|_| ApiError::internal())
}

async fn verify_blocking(password: secrecy::SecretString, phc: String) -> bool {
    use secrecy::ExposeSecret;
    tokio::task::spawn_blocking(move || gatehouse_auth::verify_password(password.expose_secret(), &phc))
        .await
        .unwrap_or(false)
}

/// An argon2id hash of a random string (made once), verified against when the username is
/// unknown so that a login takes as long for unknown users as for wrong passwords.
async fn dummy_phc() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(d) = DUMMY.get() {
        return d.clone();
    }
    let mut raw = [0u8; 24];
    let _ = gatehouse_auth::random_bytes(&mut raw);
    let seed: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let made = hash_blocking(secrecy::SecretString::from(seed)).await.unwrap_or_default();
    DUMMY.get_or_init(|| made).clone()
}

impl AdminService {
    // ---------------------------------------------------------------- users

    /// Every user (never a password hash), by username.
    pub async fn list_users(&self) -> Result<Vec<User>, ApiError> {
        self.deps.store.list_users().await.map_err(|e| internal("listing users", &e))
    }

    /// Creates a user with an argon2id password hash. Errors: 400 (username, password, role),
    /// 409 if the username is taken.
    pub async fn create_user(
        &self,
        username: String,
        password: secrecy::SecretString,
        system_role: SystemRole,
    ) -> Result<User, ApiError> {
        use secrecy::ExposeSecret;
        check_username(&username)?;
        check_password(password.expose_secret(), "password")?;
        let user = User {
            id: gatehouse_types::new_id(),
            username,
            password_hash: hash_blocking(password).await?,
            system_role: system_role.as_str().into(),
            created_at: gatehouse_types::now(),
        };
        match self.deps.store.create_user(&user).await {
            Ok(()) => {}
            Err(gatehouse_store::StoreError::Conflict(_)) => {
                return Err(ApiError::new(gatehouse_types::ErrorCode::Conflict, "a user with this username exists")
                    .with_param("username"));
            }
            Err(e) => return Err(internal("creating a user", &e)),
        }
        tracing::info!(user_id = %user.id, role = %user.system_role, "user created");
        Ok(user)
    }

    /// Changes a user's password and/or system role. Errors: 404, 400. Demoting the last
    /// system admin is refused (409). A password change or demotion revokes the user's operator
    /// tokens, and a password change ends the user's portal sessions (issue 7, M8) — except the
    /// credential of the caller (`keep`: the request's own token or session).
    pub async fn update_user(
        &self,
        id: Id,
        password: Option<secrecy::SecretString>,
        system_role: Option<SystemRole>,
        keep: Option<AuthMethod>,
    ) -> Result<User, ApiError> {
        let keep_token = match keep {
            Some(AuthMethod::OperatorToken(t)) => Some(t),
            _ => None,
        };
        let keep_session = match keep {
            Some(AuthMethod::Session(s)) => Some(s),
            _ => None,
        };
        use secrecy::ExposeSecret;
        let store = &self.deps.store;
        let mut user = store
            .get_user(id)
            .await
            .map_err(|e| internal("reading a user", &e))?
            .ok_or_else(|| super::not_found("user", "id"))?;
        if let Some(p) = &password {
            check_password(p.expose_secret(), "password")?;
        }
        let demoted = system_role == Some(SystemRole::Member) && user.system_role == "admin";
        let password_changed = password.is_some();
        let reset = password_changed || demoted;
        if let Some(role) = system_role {
            if role == SystemRole::Member && user.system_role == "admin" {
                let admins = self.list_users().await?.iter().filter(|u| u.system_role == "admin").count();
                if admins <= 1 {
                    return Err(ApiError::new(gatehouse_types::ErrorCode::Conflict, "the last system admin cannot be demoted")
                        .with_param("system_role"));
                }
            }
            user.system_role = role.as_str().into();
        }
        if let Some(p) = password {
            user.password_hash = hash_blocking(p).await?;
        }
        if !store.update_user(&user).await.map_err(|e| internal("updating a user", &e))? {
            return Err(super::not_found("user", "id"));
        }
        tracing::info!(user_id = %user.id, "user updated");
        if reset {
            // a password change or demotion ends the user's operator tokens (except the caller's)
            let reason = if password_changed { "password_changed" } else { "role_lowered" };
            let tokens = store.list_operator_tokens().await.map_err(|e| internal("listing operator tokens", &e))?;
            for t in tokens.iter().filter(|t| t.user_id == user.id && t.revoked_at.is_none() && Some(t.id) != keep_token) {
                self.revoke_operator_token_id(t.id, "admin", reason).await?;
            }
        }
        if password_changed {
            // issue 7 (M8): a new password ends the user's portal sessions, except the caller's,
            // which moves to the new hash (M4: sessions of an older hash stop authenticating)
            if let Some(keep) = keep_session {
                store
                    .set_session_password_version(keep, &self.password_version(&user.password_hash))
                    .await
                    .map_err(|e| internal("updating a session", &e))?;
            }
            let n = store
                .revoke_user_sessions(user.id, keep_session, gatehouse_types::now())
                .await
                .map_err(|e| internal("revoking a user's sessions", &e))?;
            if n > 0 {
                self.deps.audit.record(
                    gatehouse_store::NewAuditEvent::new(gatehouse_store::audit::kinds::SESSIONS_REVOKED, "admin")
                        .reason("password_changed")
                        .details(serde_json::json!({ "user_id": user.id, "count": n })),
                );
            }
            tracing::info!(user_id = %user.id, revoked_sessions = n, "password changed: sessions ended");
        }
        Ok(user)
    }

    /// The caller's own view.
    pub async fn me(&self, p: &Principal) -> Result<MeView, ApiError> {
        let store = &self.deps.store;
        let user = store
            .get_user(p.user_id)
            .await
            .map_err(|e| internal("reading a user", &e))?
            .ok_or_else(|| super::not_found("user", "id"))?;
        let mut memberships = Vec::new();
        for (team_id, role) in &p.memberships {
            let team = store.get_team(*team_id).await.map_err(|e| internal("reading a team", &e))?;
            memberships.push(MembershipView {
                team_id: *team_id,
                team: team.map(|t| t.name).unwrap_or_default(),
                role: role.as_str().into(),
            });
        }
        let auth = match p.via {
            AuthMethod::OperatorToken(_) => "operator_token",
            AuthMethod::Session(_) => "session",
        };
        Ok(MeView { user, auth, memberships })
    }

    /// Issues an operator token (`gtho_…`) for `user_id`; the plaintext is returned only here.
    pub async fn create_operator_token_for(
        &self,
        user_id: Id,
        name: String,
        expires_at: Option<gatehouse_types::Timestamp>,
    ) -> Result<NewOperatorToken, ApiError> {
        use secrecy::ExposeSecret;
        let g = gatehouse_auth::token::generate(gatehouse_auth::token::TokenKind::Operator, self.deps.env)
            .map_err(|_| ApiError::internal())?;
        let record = OperatorToken {
            id: gatehouse_types::new_id(),
            user_id,
            name,
            digest: self.deps.peppers.digest(g.token.expose_secret()).to_vec(),
            pepper_version: self.deps.peppers.current_version(),
            hint: g.hint,
            expires_at,
            revoked_at: None,
            created_at: gatehouse_types::now(),
        };
        self.deps
            .store
            .create_operator_token(&record)
            .await
            .map_err(|e| internal("creating an operator token", &e))?;
        tracing::info!(token_id = %record.id, user_id = %user_id, "operator token created");
        Ok(NewOperatorToken { token: g.token, record })
    }

    // ---------------------------------------------------------------- teams and members

    /// Creates a team; `owner` (a user id) becomes its first owner. Errors: 400, 404 unknown
    /// owner, 409 name taken.
    pub async fn create_team(&self, name: String, owner: Option<Id>) -> Result<gatehouse_store::Team, ApiError> {
        if !gatehouse_config::valid_name(&name) {
            return Err(crate::input::bad("name", "`name` must be 1-64 of a-z A-Z 0-9 . _ -"));
        }
        let store = &self.deps.store;
        if let Some(o) = owner
            && store.get_user(o).await.map_err(|e| internal("reading a user", &e))?.is_none()
        {
            return Err(super::not_found("user", "owner"));
        }
        let team = gatehouse_store::Team { id: gatehouse_types::new_id(), name, created_at: gatehouse_types::now() };
        match store.create_team(&team).await {
            Ok(()) => {}
            Err(gatehouse_store::StoreError::Conflict(_)) => {
                return Err(ApiError::new(gatehouse_types::ErrorCode::Conflict, "a team with this name exists").with_param("name"));
            }
            Err(e) => return Err(internal("creating a team", &e)),
        }
        if let Some(o) = owner {
            let m = gatehouse_store::TeamMember { team_id: team.id, user_id: o, role: "owner".into(), created_at: team.created_at };
            store.upsert_team_member(&m).await.map_err(|e| internal("adding the team owner", &e))?;
        }
        tracing::info!(team_id = %team.id, "team created");
        Ok(team)
    }

    /// One team. Errors: 404.
    pub async fn get_team(&self, id: Id) -> Result<gatehouse_store::Team, ApiError> {
        self.deps
            .store
            .get_team(id)
            .await
            .map_err(|e| internal("reading a team", &e))?
            .ok_or_else(|| super::not_found("team", "id"))
    }

    /// Members of a team with usernames. Errors: 404 unknown team.
    pub async fn list_members(&self, team_id: Id) -> Result<Vec<MemberView>, ApiError> {
        self.get_team(team_id).await?;
        let store = &self.deps.store;
        let rows = store.list_team_members(team_id).await.map_err(|e| internal("listing members", &e))?;
        let users = self.list_users().await?;
        Ok(rows
            .into_iter()
            .map(|m| MemberView {
                team_id: m.team_id,
                user_id: m.user_id,
                username: users.iter().find(|u| u.id == m.user_id).map(|u| u.username.clone()).unwrap_or_default(),
                role: m.role,
                created_at: m.created_at,
            })
            .collect())
    }

    /// Adds a member or changes a member's role. Granting `owner`, or changing an owner's
    /// role, needs the owner role (`members.manage_owners`); the last owner cannot be demoted
    /// (409). Returns the membership and whether it is new. Errors: 404 team or user.
    pub async fn set_member(&self, p: &Principal, team_id: Id, user_id: Id, role: TeamRole) -> Result<(MemberView, bool), ApiError> {
        let members = self.list_members(team_id).await?;
        let current = members.iter().find(|m| m.user_id == user_id);
        let was_owner = current.is_some_and(|m| m.role == "owner");
        if role == TeamRole::Owner || was_owner {
            crate::authz::authorize(p, crate::authz::Scope::Team(team_id), crate::authz::Permission::MembersManageOwners)?;
        }
        if was_owner && role != TeamRole::Owner && members.iter().filter(|m| m.role == "owner").count() <= 1 {
            return Err(ApiError::new(gatehouse_types::ErrorCode::Conflict, "a team keeps at least one owner").with_param("role"));
        }
        let store = &self.deps.store;
        let user = store
            .get_user(user_id)
            .await
            .map_err(|e| internal("reading a user", &e))?
            .ok_or_else(|| super::not_found("user", "user_id"))?;
        let created_at = current.map(|m| m.created_at).unwrap_or_else(gatehouse_types::now);
        let m = gatehouse_store::TeamMember { team_id, user_id, role: role.as_str().into(), created_at };
        match store.upsert_team_member(&m).await {
            Ok(()) => {}
            Err(gatehouse_store::StoreError::NotFound(_)) => return Err(super::not_found("team or user", "user_id")),
            Err(e) => return Err(internal("storing a member", &e)),
        }
        tracing::info!(team_id = %team_id, user_id = %user_id, role = role.as_str(), "team member set");
        Ok((MemberView { team_id, user_id, username: user.username, role: m.role, created_at }, current.is_none()))
    }

    /// Removes a member. Removing an owner needs the owner role; the last owner stays (409).
    /// Errors: 404 team or membership.
    pub async fn remove_member(&self, p: &Principal, team_id: Id, user_id: Id) -> Result<(), ApiError> {
        let members = self.list_members(team_id).await?;
        let current = members.iter().find(|m| m.user_id == user_id).ok_or_else(|| super::not_found("member", "user_id"))?;
        if current.role == "owner" {
            crate::authz::authorize(p, crate::authz::Scope::Team(team_id), crate::authz::Permission::MembersManageOwners)?;
            if members.iter().filter(|m| m.role == "owner").count() <= 1 {
                return Err(ApiError::new(gatehouse_types::ErrorCode::Conflict, "a team keeps at least one owner").with_param("user_id"));
            }
        }
        self.deps
            .store
            .remove_team_member(team_id, user_id)
            .await
            .map_err(|e| internal("removing a member", &e))?;
        tracing::info!(team_id = %team_id, user_id = %user_id, "team member removed");
        Ok(())
    }

    // ---------------------------------------------------------------- apps

    /// Creates an app in a team. Errors: 400 name, 404 team, 409 name taken in the team.
    pub async fn create_app(&self, team_id: Id, name: String) -> Result<gatehouse_store::App, ApiError> {
        if !gatehouse_config::valid_name(&name) {
            return Err(crate::input::bad("name", "`name` must be 1-64 of a-z A-Z 0-9 . _ -"));
        }
        self.get_team(team_id).await.map_err(|_| super::not_found("team", "team_id"))?;
        let app = gatehouse_store::App { id: gatehouse_types::new_id(), team_id, name, created_at: gatehouse_types::now() };
        match self.deps.store.create_app(&app).await {
            Ok(()) => {}
            Err(gatehouse_store::StoreError::Conflict(_)) => {
                return Err(ApiError::new(gatehouse_types::ErrorCode::Conflict, "the team has an app with this name").with_param("name"));
            }
            Err(e) => return Err(internal("creating an app", &e)),
        }
        tracing::info!(app_id = %app.id, team_id = %team_id, "app created");
        Ok(app)
    }

    /// One app. Errors: 404.
    pub async fn get_app(&self, id: Id) -> Result<gatehouse_store::App, ApiError> {
        self.deps
            .store
            .get_app(id)
            .await
            .map_err(|e| internal("reading an app", &e))?
            .ok_or_else(|| super::not_found("app", "id"))
    }

    /// Soft-deletes an app (`DELETE /admin/v1/apps/{id}`, `gatehouse apps delete`) and cuts
    /// every access it had, effective on the very next request on every gateway node:
    ///
    /// 1. the app disappears from reads and lists (no new key, client or subscription for it);
    /// 2. every live key is revoked like `POST /keys/{id}/revoke` (audit `key.revoked`, bus
    ///    invalidation; tokens exchanged from a key die with it through the deny-list);
    /// 3. every pending or active subscription is cancelled (reason `app deleted`), then
    ///    `ServicesChanged` makes the data plane reload its admission table;
    /// 4. every OAuth client of the app is revoked with the tokens it obtained, and every other
    ///    live token issued to the app (exchange, single-use) is revoked; each id is published as
    ///    `TokenRevoked` so caches and JWT deny-lists drop it.
    ///
    /// Errors: 404 unknown or already deleted app; 409 the bootstrap default app (keys created
    /// without `app_id` land there); 500 store failures (what was done before stays done; a
    /// retry answers 404, so the cascade is idempotent only through its steps 2-4 being re-run by
    /// an operator: `POST /keys/{id}/revoke`, `/subscriptions/{id}/cancel`,
    /// `/oauth-clients/{id}/revoke`).
    pub async fn delete_app(&self, id: Id) -> Result<AppDeletion, ApiError> {
        const APP_DELETED: &str = "app_deleted";
        use gatehouse_store::{BusEvent, SubscriptionFilter, SubscriptionStatus};
        let app = self.get_app(id).await?;
        if self.default_app().await.is_ok_and(|d| d.id == app.id) {
            return Err(ApiError::new(gatehouse_types::ErrorCode::Conflict, "the default app cannot be deleted").with_param("id"));
        }
        let store = &self.deps.store;
        let at = gatehouse_types::now();
        if !store.delete_app(id, at).await.map_err(|e| internal("deleting an app", &e))? {
            return Err(super::not_found("app", "id"));
        }
        let filter = gatehouse_store::CredentialFilter { team_id: None, app_id: Some(id), include_revoked: false };
        let keys = store.list_credentials(&filter).await.map_err(|e| internal("listing an app's keys", &e))?;
        for key in &keys {
            self.revoke_key_because(key.id, Some(APP_DELETED)).await?;
        }
        let mut cancelled = 0;
        let subs = store
            .list_subscriptions(&SubscriptionFilter { app_id: Some(id), service_id: None, status: None })
            .await
            .map_err(|e| internal("listing an app's subscriptions", &e))?;
        for mut s in subs {
            let current = s.status;
            if !matches!(current, SubscriptionStatus::Pending | SubscriptionStatus::Active) {
                continue;
            }
            s.status = SubscriptionStatus::Cancelled;
            s.reason = Some("app deleted".into());
            s.decided_by = Some("system:app-deletion".into());
            s.updated_at = at;
            // compare-and-set: a concurrent decision on the same row simply wins
            if store.update_subscription(&s, current).await.map_err(|e| internal("cancelling a subscription", &e))? {
                cancelled += 1;
            }
        }
        self.deps.bus.publish(BusEvent::ServicesChanged);
        let clients = store.list_oauth_clients(false).await.map_err(|e| internal("listing oauth clients", &e))?;
        let mut revoked_clients = 0;
        for c in clients.iter().filter(|c| c.app_id == id) {
            self.revoke_client_now(c.id).await?;
            revoked_clients += 1;
        }
        let tokens = store.revoke_app_tokens(id, at).await.map_err(|e| internal("revoking an app's tokens", &e))?;
        for t in &tokens {
            // every credential event is audited (issue 5), one record per token
            self.deps.audit.record(gatehouse_store::NewAuditEvent::new("token.revoked", "admin").credential(*t).reason(APP_DELETED));
            self.deps.bus.publish(BusEvent::TokenRevoked { id: *t });
        }
        tracing::info!(
            app_id = %id,
            revoked_keys = keys.len(),
            cancelled_subscriptions = cancelled,
            revoked_oauth_clients = revoked_clients,
            revoked_tokens = tokens.len(),
            "app deleted"
        );
        Ok(AppDeletion {
            revoked_keys: keys.len(),
            cancelled_subscriptions: cancelled,
            revoked_oauth_clients: revoked_clients,
            revoked_tokens: tokens.len(),
        })
    }

    // ---------------------------------------------------------------- sessions

    /// Password login: verifies the argon2id hash (a dummy hash for unknown users, so both
    /// failures take the same time) and opens a session of [`SESSION_TTL`]. The cookie value is
    /// 32 random bytes, base64url; only its HMAC digest is stored.
    ///
    /// Issue 7 (M8): attempts are throttled per username and per client IP
    /// ([`super::login_guard`]); every attempt is audited (`login.succeeded` /
    /// `login.failed` with reason `bad_credentials` or `throttled`; never the password, and the
    /// username only as `details.user_id` when it exists); expired sessions are deleted.
    ///
    /// Errors: 401 `invalid_api_key` with one message for every wrong username or password;
    /// 429 `rate_limit_exceeded` with `Retry-After` while throttled (checked before the
    /// password, the same for unknown users).
    pub async fn login(
        &self,
        username: &str,
        password: secrecy::SecretString,
        client: &super::login_guard::LoginClient,
    ) -> Result<NewSession, ApiError> {
        use base64::Engine;
        use gatehouse_store::audit::kinds;
        let fail = || ApiError::new(gatehouse_types::ErrorCode::InvalidToken, "wrong username or password");
        let event = |kind: &str| {
            gatehouse_store::NewAuditEvent::new(kind, "login")
                .client(client.ip.map(|i| i.to_string()), client.user_agent.clone())
        };
        let store = &self.deps.store;
        let user = if username.len() <= 64 {
            store.get_user_by_username(username).await.map_err(|e| internal("reading a user", &e))?
        } else {
            None
        };
        let user_detail = || serde_json::json!({ "user_id": user.as_ref().map(|u| u.id) });
        // reserve the attempt atomically before argon2 (M3); kept on failure, refunded on success
        let reservation = match self.login_throttle_reserve(username, client).await {
            Ok(r) => r,
            Err(e) => {
                self.deps.audit.record(event(kinds::LOGIN_FAILED).reason("throttled").details(user_detail()));
                return Err(e);
            }
        };
        let phc = match &user {
            Some(u) => u.password_hash.clone(),
            None => dummy_phc().await,
        };
        let ok = verify_blocking(password, phc).await;
        let user = match &user {
            Some(u) if ok => u.clone(),
            _ => {
                self.deps.audit.record(event(kinds::LOGIN_FAILED).reason("bad_credentials").details(user_detail()));
                tracing::info!(known_user = user.is_some(), "login failed");
                return Err(fail());
            }
        };
        if let Some(r) = reservation {
            self.login_throttle_refund(r).await;
        }
        self.login_throttle_reset(username).await;
        let mut raw = [0u8; 32];
        gatehouse_auth::random_bytes(&mut raw).map_err(|_| ApiError::internal())?;
        let value = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let created_at = gatehouse_types::now();
        let ttl = time::Duration::try_from(SESSION_TTL).map_err(|_| ApiError::internal())?;
        let session = gatehouse_store::UserSession {
            id: gatehouse_types::new_id(),
            user_id: user.id,
            digest: self.deps.peppers.digest(&value).to_vec(),
            expires_at: created_at + ttl,
            revoked_at: None,
            created_at,
            // the hash this login was verified against (M4): a racing password change ends it
            password_version: Some(self.password_version(&user.password_hash)),
        };
        // Housekeeping: sessions past their expiry are useless; drop them (every user's).
        match store.delete_expired_sessions(created_at).await {
            Ok(n) if n > 0 => tracing::debug!(deleted = n, "expired sessions deleted"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "deleting expired sessions failed"),
        }
        store.create_session(&session).await.map_err(|e| internal("creating a session", &e))?;
        self.deps.audit.record(
            event(kinds::LOGIN_SUCCEEDED).details(serde_json::json!({ "user_id": user.id, "session_id": session.id })),
        );
        tracing::info!(user_id = %user.id, session_id = %session.id, "login");
        Ok(NewSession { cookie_value: secrecy::SecretString::from(value), session, user })
    }

    /// Checks `current` against the user's password before a self-service change
    /// (`POST /me/password`): throttled per username and client IP like a login (the attempt is
    /// reserved before argon2, refunded on success) and audited as `login.failed` with reason
    /// `password_change` when wrong, so a stolen session cannot guess the password faster than
    /// the login form. Errors: 403 `permission_denied` wrong password; 429 while throttled.
    pub async fn check_own_password(
        &self,
        user_id: Id,
        current: secrecy::SecretString,
        client: &super::login_guard::LoginClient,
    ) -> Result<(), ApiError> {
        use gatehouse_store::audit::kinds;
        let store = &self.deps.store;
        let user = store.get_user(user_id).await.map_err(|e| internal("reading a user", &e))?.ok_or_else(|| super::not_found("user", "id"))?;
        let event = || {
            gatehouse_store::NewAuditEvent::new(kinds::LOGIN_FAILED, "login")
                .client(client.ip.map(|i| i.to_string()), client.user_agent.clone())
                .details(serde_json::json!({ "user_id": user.id }))
        };
        let reservation = match self.login_throttle_reserve(&user.username, client).await {
            Ok(r) => r,
            Err(e) => {
                self.deps.audit.record(event().reason("throttled"));
                return Err(e);
            }
        };
        if !verify_blocking(current, user.password_hash.clone()).await {
            self.deps.audit.record(event().reason("password_change"));
            return Err(ApiError::new(gatehouse_types::ErrorCode::PermissionDenied, "the current password is wrong").with_param("current_password"));
        }
        if let Some(r) = reservation {
            self.login_throttle_refund(r).await;
        }
        Ok(())
    }

    /// The CSRF token of a session (issue 7, M8): base64url of the keyed digest of the cookie
    /// value under a separate label, so nothing extra is stored and it cannot be computed
    /// without the server's pepper. Returned at login and by `GET /me`; required in
    /// `X-CSRF-Token` on state-changing cookie requests ([`crate::csrf`]).
    pub fn csrf_token(&self, cookie_value: &str) -> String {
        use base64::Engine;
        let d = self.deps.peppers.digest(&format!("gatehouse/csrf/v1:{cookie_value}"));
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)
    }

    /// The principal of a session cookie value. Errors: 401 for unknown, expired or revoked
    /// sessions (one message).
    pub async fn authenticate_session(&self, value: &str) -> Result<Principal, ApiError> {
        let invalid = || ApiError::new(gatehouse_types::ErrorCode::InvalidToken, "the session is invalid, expired or ended");
        if value.is_empty() || value.len() > 128 {
            return Err(invalid());
        }
        let digest = self.deps.peppers.digest(value);
        let store = &self.deps.store;
        let s = store.find_session(&digest).await.map_err(|e| internal("reading a session", &e))?.ok_or_else(invalid)?;
        if s.revoked_at.is_some() || s.expires_at <= gatehouse_types::now() {
            return Err(invalid());
        }
        let user = store.get_user(s.user_id).await.map_err(|e| internal("reading a user", &e))?.ok_or_else(invalid)?;
        // M4: a session opened with a password that has since changed (a login racing the
        // change, after its revocation sweep) no longer authenticates.
        if let Some(v) = &s.password_version {
            use subtle::ConstantTimeEq;
            if !bool::from(v.as_slice().ct_eq(&self.password_version(&user.password_hash))) {
                return Err(invalid());
            }
        }
        self.principal_for_user(&user, AuthMethod::Session(s.id)).await
    }

    /// Keyed fingerprint (32 bytes) of a stored password hash (PHC string), kept in each session
    /// row (issue 7, tester M4). Each password change stores a new hash with a new salt, so the
    /// fingerprint changes with it. Never logged.
    pub(crate) fn password_version(&self, phc: &str) -> Vec<u8> {
        self.deps.peppers.digest(&format!("gatehouse/password-version/v1:{phc}")).to_vec()
    }

    /// Ends a session (idempotent).
    pub async fn logout(&self, session_id: Id) -> Result<(), ApiError> {
        self.deps
            .store
            .revoke_session(session_id, gatehouse_types::now())
            .await
            .map_err(|e| internal("ending a session", &e))?;
        tracing::info!(session_id = %session_id, "logout");
        Ok(())
    }
}
