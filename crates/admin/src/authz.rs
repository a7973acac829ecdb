//! Authorization of the admin API (issue 7): who may do what, in one place.
//!
//! * [`Principal`]: the authenticated caller — a user with a [`SystemRole`] and zero or more
//!   team memberships, each with a [`TeamRole`]. Built by the admin router's authentication
//!   layer from an operator token (`gtho_…`) or a portal session cookie and put into the
//!   request extensions (handlers take `Extension<Principal>`).
//! * [`Permission`]: one `resource.action` pair; [`Permission::rule`] is the written permission
//!   matrix (`docs/permissions.md` renders the same table; a test checks they agree).
//! * [`authorize`]: THE authorization function. Every admin endpoint goes through it, either in
//!   the route gate ([`crate::authz_http`], for routes whose scope is the system or a team/key/app
//!   named in the path) or in the handler (lists and creates, whose team comes from the query or
//!   the body).
//!
//! Visibility rule: a team-scoped check by a user who is not a member of that team answers
//! **404** (the team's resources are invisible, not merely forbidden); a member whose role is too
//! low gets **403** `permission_denied`. System admins may do everything.

use gatehouse_types::{ApiError, ErrorCode, Id};
use serde::Serialize;

/// System-wide role of a user (`users.system_role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SystemRole {
    /// Manages the installation: providers, models, users, teams, audit; sees every team.
    Admin,
    /// Sees and changes only what the team roles of its memberships allow.
    Member,
}

impl SystemRole {
    /// `admin` | `member`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    /// Parses `admin` | `member` (exact, lowercase).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "member" => Some(Self::Member),
            _ => None,
        }
    }
}

/// Role of a user inside one team (`team_members.role`). Ordered: each role includes the
/// rights of the roles below it (`Viewer < Developer < Admin < Owner`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TeamRole {
    /// Reads the team's apps, keys (hints only), services, logs and limits.
    Viewer,
    /// Also creates apps and keys, rotates and revokes keys, edits services.
    Developer,
    /// Also manages members (except owners), limits, publishing and subscription decisions.
    Admin,
    /// Also grants or removes the owner role.
    Owner,
}

impl TeamRole {
    /// Every role, lowest first.
    pub const ALL: [TeamRole; 4] = [Self::Viewer, Self::Developer, Self::Admin, Self::Owner];

    /// `owner` | `admin` | `developer` | `viewer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Developer => "developer",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// How the principal authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// `Authorization: Bearer gtho_…` (the operator token's id).
    OperatorToken(Id),
    /// The portal session cookie (the session's id).
    Session(Id),
}

/// The authenticated caller of an admin endpoint.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Id,
    pub username: String,
    pub system_role: SystemRole,
    /// `(team id, role)`, one entry per membership.
    pub memberships: Vec<(Id, TeamRole)>,
    pub via: AuthMethod,
}

impl Principal {
    /// True for system admins.
    pub fn is_admin(&self) -> bool {
        self.system_role == SystemRole::Admin
    }

    /// The principal's role in `team`, if a member.
    pub fn team_role(&self, team: Id) -> Option<TeamRole> {
        self.memberships.iter().find(|(t, _)| *t == team).map(|(_, r)| *r)
    }

    /// Which teams' resources a list may show for `permission`: every team for admins,
    /// otherwise the teams where the principal's role satisfies the permission's rule.
    /// This is the list-side twin of [`authorize`] (a list of team data without a `team_id`
    /// filter must be cut down to these teams).
    pub fn visible_teams(&self, permission: Permission) -> Visible {
        if self.is_admin() {
            return Visible::All;
        }
        match permission.rule() {
            Rule::SystemAdmin => Visible::Teams(Vec::new()),
            Rule::AnyUser => Visible::Teams(self.memberships.iter().map(|(t, _)| *t).collect()),
            Rule::Team(min) => Visible::Teams(self.memberships.iter().filter(|(_, r)| *r >= min).map(|(t, _)| *t).collect()),
        }
    }
}

/// Result of [`Principal::visible_teams`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visible {
    /// No filter (system admin).
    All,
    /// Only these teams (possibly none).
    Teams(Vec<Id>),
}

impl Visible {
    /// True if a resource of `team` may be shown.
    pub fn contains(&self, team: Id) -> bool {
        match self {
            Self::All => true,
            Self::Teams(t) => t.contains(&team),
        }
    }
}

/// What an action is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Installation-wide resources (providers, models, users, audit) and cross-team lists.
    System,
    /// A resource owned by this team.
    Team(Id),
}

/// Who may perform a [`Permission`] (system admins always may).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Only system admins.
    SystemAdmin,
    /// Any authenticated user (the handler limits the result to the caller's own data).
    AnyUser,
    /// Members of the team in scope with at least this role.
    Team(TeamRole),
}

macro_rules! permissions {
    ($($variant:ident = $name:literal => $rule:expr, $doc:literal;)*) => {
        /// One `resource.action` of the admin API. The matrix (who may) is [`Permission::rule`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Permission {
            $(#[doc = $doc] $variant,)*
        }

        impl Permission {
            /// Every permission, in matrix order.
            pub const ALL: &'static [Permission] = &[$(Self::$variant,)*];

            /// The stable `resource.action` name (used in docs and error messages).
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name,)* }
            }

            /// The permission matrix: who may perform this action.
            pub fn rule(self) -> Rule {
                match self { $(Self::$variant => $rule,)* }
            }
        }
    };
}

use Rule::{AnyUser, SystemAdmin, Team};
use TeamRole::{Admin as TAdmin, Developer, Owner, Viewer};

permissions! {
    TeamsList = "teams.list" => AnyUser, "List teams (members see their own teams).";
    TeamsCreate = "teams.create" => SystemAdmin, "Create a team.";
    TeamsRead = "teams.read" => Team(Viewer), "Read one team.";
    MembersRead = "members.read" => Team(Viewer), "List a team's members.";
    MembersManage = "members.manage" => Team(TAdmin), "Add, change or remove a member (not an owner).";
    MembersManageOwners = "members.manage_owners" => Team(Owner), "Grant or remove the owner role.";
    UsersList = "users.list" => SystemAdmin, "List users.";
    UsersCreate = "users.create" => SystemAdmin, "Create a user.";
    UsersUpdate = "users.update" => SystemAdmin, "Change a user's system role or password.";
    SelfRead = "self.read" => AnyUser, "Read one's own user, memberships and session.";
    TokensCreateOwn = "tokens.create_own" => AnyUser, "Create an operator token for oneself.";
    SelfPassword = "self.password" => AnyUser, "Change one's own password (the current one is required).";
    AppsRead = "apps.read" => Team(Viewer), "List and read a team's apps.";
    AppsWrite = "apps.write" => Team(Developer), "Create or delete a team's apps.";
    KeysRead = "keys.read" => Team(Viewer), "List and read a team's API keys (hints only).";
    KeysWrite = "keys.write" => Team(Developer), "Create, rotate or revoke a team's API keys.";
    LogsRead = "logs.read" => Team(Viewer), "Read a team's call logs.";
    LimitsRead = "limits.read" => Team(Viewer), "Read a team's limits and usage.";
    LimitsWrite = "limits.write" => Team(TAdmin), "Set or delete a team's limits.";
    ServicesRead = "services.read" => Team(Viewer), "Read a team's services (incl. drafts) and releases.";
    ServicesWrite = "services.write" => Team(Developer), "Create or edit a team's services.";
    ServicesPublish = "services.publish" => Team(TAdmin), "Publish, deprecate, retire or roll back a service.";
    CatalogRead = "catalog.read" => AnyUser, "Browse published public services.";
    SubscriptionsRequest = "subscriptions.request" => Team(Developer), "Subscribe one of the team's apps; cancel it.";
    SubscriptionsDecide = "subscriptions.decide" => Team(TAdmin), "Approve or reject subscriptions to the team's services.";
    OAuthClientsRead = "oauth_clients.read" => Team(Viewer), "Read a team's OAuth clients.";
    OAuthClientsWrite = "oauth_clients.write" => Team(Developer), "Create or revoke a team's OAuth clients.";
    ProvidersRead = "providers.read" => SystemAdmin, "Read providers (key hints only).";
    ProvidersWrite = "providers.write" => SystemAdmin, "Create, update or delete providers.";
    ModelsRead = "models.read" => AnyUser, "Read public models and their deployments.";
    ModelsWrite = "models.write" => SystemAdmin, "Create, update or delete public models.";
    AuditRead = "audit.read" => SystemAdmin, "Read and verify the audit log.";
    LeaksReport = "credentials.report_leak" => SystemAdmin, "Report leaked tokens (suspends matching keys).";
    TokensManage = "tokens.manage" => SystemAdmin, "Revoke or introspect issued tokens; mint single-use tokens.";
    ConfigManage = "config.manage" => Team(TAdmin), "Export or apply a team's configuration.";
    Unlisted = "admin.unlisted" => SystemAdmin, "Any route without an entry in the route table (safe default).";
}

/// THE authorization check of the admin API.
///
/// * system admin → `Ok`;
/// * [`Rule::SystemAdmin`] → 403 `permission_denied`;
/// * [`Rule::AnyUser`] → `Ok`;
/// * [`Rule::Team`] with [`Scope::Team`]: a member with at least the role → `Ok`, a member
///   with a lower role → 403 `permission_denied`, a non-member → 404 `not_found` (the team's
///   data is invisible); with [`Scope::System`] → 403 (use [`Principal::visible_teams`] for
///   cross-team lists).
///
/// Messages name the permission and the roles involved, never a secret.
pub fn authorize(principal: &Principal, scope: Scope, permission: Permission) -> Result<(), ApiError> {
    if principal.is_admin() {
        return Ok(());
    }
    let denied = |why: String| ApiError::new(ErrorCode::PermissionDenied, why);
    match (permission.rule(), scope) {
        (Rule::AnyUser, _) => Ok(()),
        (Rule::SystemAdmin, _) => Err(denied(format!("`{}` needs the system role admin", permission.as_str()))),
        (Rule::Team(_), Scope::System) => Err(denied(format!(
            "`{}` across teams needs the system role admin; name a team",
            permission.as_str()
        ))),
        (Rule::Team(min), Scope::Team(team)) => match principal.team_role(team) {
            None => Err(invisible()),
            Some(role) if role >= min => Ok(()),
            Some(role) => Err(denied(format!(
                "`{}` needs the team role {} or higher (yours: {})",
                permission.as_str(),
                min.as_str(),
                role.as_str()
            ))),
        },
    }
}

/// The answer for a resource of a team the caller may not see (404, like a missing one).
pub fn invisible() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "not found")
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_types::new_id;

    fn member(roles: &[(Id, TeamRole)]) -> Principal {
        Principal {
            user_id: new_id(),
            username: "m".into(),
            system_role: SystemRole::Member,
            memberships: roles.to_vec(),
            via: AuthMethod::OperatorToken(new_id()),
        }
    }

    /// The matrix, table-driven: for every permission and every caller kind (system admin,
    /// each team role in the scoped team, a member of another team only), the expected status.
    #[test]
    fn matrix_table() {
        let team = new_id();
        let other = new_id();
        // expected outcome for: [viewer, developer, admin, owner] in `team`; outsider; admin
        #[rustfmt::skip]
        let table: &[(Permission, [u16; 4], u16)] = &[
            (Permission::TeamsRead,            [200, 200, 200, 200], 404),
            (Permission::MembersRead,          [200, 200, 200, 200], 404),
            (Permission::MembersManage,        [403, 403, 200, 200], 404),
            (Permission::MembersManageOwners,  [403, 403, 403, 200], 404),
            (Permission::AppsRead,             [200, 200, 200, 200], 404),
            (Permission::AppsWrite,            [403, 200, 200, 200], 404),
            (Permission::KeysRead,             [200, 200, 200, 200], 404),
            (Permission::KeysWrite,            [403, 200, 200, 200], 404),
            (Permission::LogsRead,             [200, 200, 200, 200], 404),
            (Permission::LimitsRead,           [200, 200, 200, 200], 404),
            (Permission::LimitsWrite,          [403, 403, 200, 200], 404),
            (Permission::ServicesRead,         [200, 200, 200, 200], 404),
            (Permission::ServicesWrite,        [403, 200, 200, 200], 404),
            (Permission::ServicesPublish,      [403, 403, 200, 200], 404),
            (Permission::SubscriptionsRequest, [403, 200, 200, 200], 404),
            (Permission::SubscriptionsDecide,  [403, 403, 200, 200], 404),
            (Permission::OAuthClientsRead,     [200, 200, 200, 200], 404),
            (Permission::OAuthClientsWrite,    [403, 200, 200, 200], 404),
            (Permission::ConfigManage,         [403, 403, 200, 200], 404),
            (Permission::TeamsList,            [200, 200, 200, 200], 200),
            (Permission::SelfRead,             [200, 200, 200, 200], 200),
            (Permission::TokensCreateOwn,      [200, 200, 200, 200], 200),
            (Permission::SelfPassword,         [200, 200, 200, 200], 200),
            (Permission::CatalogRead,          [200, 200, 200, 200], 200),
            (Permission::ModelsRead,           [200, 200, 200, 200], 200),
            (Permission::TeamsCreate,          [403, 403, 403, 403], 403),
            (Permission::UsersList,            [403, 403, 403, 403], 403),
            (Permission::UsersCreate,          [403, 403, 403, 403], 403),
            (Permission::UsersUpdate,          [403, 403, 403, 403], 403),
            (Permission::ProvidersRead,        [403, 403, 403, 403], 403),
            (Permission::ProvidersWrite,       [403, 403, 403, 403], 403),
            (Permission::ModelsWrite,          [403, 403, 403, 403], 403),
            (Permission::AuditRead,            [403, 403, 403, 403], 403),
            (Permission::LeaksReport,          [403, 403, 403, 403], 403),
            (Permission::TokensManage,         [403, 403, 403, 403], 403),
            (Permission::Unlisted,             [403, 403, 403, 403], 403),
        ];
        let status = |r: Result<(), ApiError>| r.map(|()| 200).unwrap_or_else(|e| e.code.status().as_u16());
        assert_eq!(table.len(), Permission::ALL.len(), "every permission is in the table");
        let admin = Principal { system_role: SystemRole::Admin, ..member(&[]) };
        for (perm, by_role, outsider) in table {
            for (role, want) in TeamRole::ALL.iter().zip(by_role) {
                let p = member(&[(team, *role), (other, TeamRole::Owner)]);
                assert_eq!(status(authorize(&p, Scope::Team(team), *perm)), *want, "{} as {}", perm.as_str(), role.as_str());
            }
            let p = member(&[(other, TeamRole::Owner)]);
            assert_eq!(status(authorize(&p, Scope::Team(team), *perm)), *outsider, "{} as outsider", perm.as_str());
            assert_eq!(status(authorize(&admin, Scope::Team(team), *perm)), 200);
            assert_eq!(status(authorize(&admin, Scope::System, *perm)), 200);
            // a team-scoped permission is never granted system-wide to a member
            if matches!(perm.rule(), Rule::Team(_)) {
                assert_eq!(status(authorize(&p, Scope::System, *perm)), 403, "{}", perm.as_str());
            }
        }
    }

    #[test]
    fn visible_teams_follow_the_rule() {
        let (a, b) = (new_id(), new_id());
        let p = member(&[(a, TeamRole::Viewer), (b, TeamRole::Admin)]);
        assert_eq!(p.visible_teams(Permission::KeysRead), Visible::Teams(vec![a, b]));
        assert_eq!(p.visible_teams(Permission::LimitsWrite), Visible::Teams(vec![b]));
        assert_eq!(p.visible_teams(Permission::AuditRead), Visible::Teams(vec![]));
        assert!(!p.visible_teams(Permission::KeysRead).contains(new_id()));
        let admin = Principal { system_role: SystemRole::Admin, ..p };
        assert_eq!(admin.visible_teams(Permission::AuditRead), Visible::All);
    }

    #[test]
    fn matrix_doc_matches_code() {
        let doc = include_str!("../../../docs/permissions.md");
        for perm in Permission::ALL {
            let who = match perm.rule() {
                Rule::SystemAdmin => "system admin".to_string(),
                Rule::AnyUser => "any user".to_string(),
                Rule::Team(r) => format!("team {}+", r.as_str()),
            };
            let row = format!("| `{}` | {} |", perm.as_str(), who);
            assert!(doc.contains(&row), "docs/permissions.md lacks the row {row}");
        }
    }

    #[test]
    fn role_names_round_trip() {
        for r in TeamRole::ALL {
            assert_eq!(TeamRole::parse(r.as_str()), Some(r));
        }
        assert_eq!(TeamRole::parse("Owner"), None);
        assert_eq!(SystemRole::parse("admin"), Some(SystemRole::Admin));
        assert_eq!(SystemRole::parse("root"), None);
    }
}
