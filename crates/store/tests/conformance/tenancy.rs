//! Conformance tests of the tenancy methods (issue 7): users by id, list and update; team
//! memberships (upsert replaces the role, remove, both directions, cascade checks); login
//! sessions (digest lookup, revocation, unknown ids).

use std::sync::Arc;

use gatehouse_store::{Store, TeamMember, UserSession};
use time::Duration;

use super::*;

fn user(name: &str, role: &str) -> User {
    User {
        id: new_id(),
        username: name.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        system_role: role.into(),
        created_at: now_us(),
    }
}

fn member(team: &Team, user: &User, role: &str) -> TeamMember {
    TeamMember { team_id: team.id, user_id: user.id, role: role.into(), created_at: now_us() }
}

async fn users_by_id_list_and_update(s: Arc<dyn Store>) {
    let b = user("bob", "member");
    let a = user("alice", "admin");
    s.create_user(&b).await.unwrap();
    s.create_user(&a).await.unwrap();
    assert_eq!(s.get_user(b.id).await.unwrap().unwrap(), b);
    assert!(s.get_user(new_id()).await.unwrap().is_none());
    let names: Vec<String> = s.list_users().await.unwrap().into_iter().map(|u| u.username).collect();
    assert_eq!(names, ["alice", "bob"]);
    let mut changed = b.clone();
    changed.system_role = "admin".into();
    changed.password_hash = "$argon2id$new".into();
    assert!(s.update_user(&changed).await.unwrap());
    assert_eq!(s.get_user(b.id).await.unwrap().unwrap(), changed);
    assert!(!s.update_user(&user("ghost", "member")).await.unwrap());
}
store_test!(users_by_id_list_and_update);

async fn team_members_upsert_list_remove(s: Arc<dyn Store>) {
    let t1 = team("t1");
    let t2 = team("t2");
    s.create_team(&t1).await.unwrap();
    s.create_team(&t2).await.unwrap();
    let u = user("carol", "member");
    let v = user("dave", "member");
    s.create_user(&u).await.unwrap();
    s.create_user(&v).await.unwrap();
    s.upsert_team_member(&member(&t1, &u, "viewer")).await.unwrap();
    s.upsert_team_member(&member(&t1, &v, "owner")).await.unwrap();
    s.upsert_team_member(&member(&t2, &u, "developer")).await.unwrap();
    // upsert replaces the role, keeps one row
    s.upsert_team_member(&member(&t1, &u, "admin")).await.unwrap();
    let m1 = s.list_team_members(t1.id).await.unwrap();
    assert_eq!(m1.len(), 2);
    assert_eq!(m1.iter().find(|m| m.user_id == u.id).unwrap().role, "admin");
    let mu = s.list_user_memberships(u.id).await.unwrap();
    let mut teams: Vec<Id> = mu.iter().map(|m| m.team_id).collect();
    teams.sort();
    let mut want = vec![t1.id, t2.id];
    want.sort();
    assert_eq!(teams, want);
    assert!(s.list_user_memberships(new_id()).await.unwrap().is_empty());
    // unknown team or user: NotFound, nothing written
    let ghost = user("ghost", "member");
    assert!(matches!(s.upsert_team_member(&member(&t1, &ghost, "viewer")).await, Err(StoreError::NotFound(_))));
    assert!(matches!(s.upsert_team_member(&member(&team("nope"), &u, "viewer")).await, Err(StoreError::NotFound(_))));
    assert_eq!(s.list_team_members(t1.id).await.unwrap().len(), 2);
    assert!(s.remove_team_member(t1.id, u.id).await.unwrap());
    assert!(!s.remove_team_member(t1.id, u.id).await.unwrap());
    assert_eq!(s.list_team_members(t1.id).await.unwrap().len(), 1);
    assert_eq!(s.list_user_memberships(u.id).await.unwrap().len(), 1);
}
store_test!(team_members_upsert_list_remove);

async fn sessions_by_digest_and_revocation(s: Arc<dyn Store>) {
    let u = user("erin", "member");
    s.create_user(&u).await.unwrap();
    let session = UserSession {
        id: new_id(),
        user_id: u.id,
        digest: digest(41),
        expires_at: now_us() + Duration::hours(12),
        revoked_at: None,
        created_at: now_us(),
        password_version: Some(digest(44)),
    };
    s.create_session(&session).await.unwrap();
    assert_eq!(s.find_session(&digest(41)).await.unwrap().unwrap(), session);
    assert!(s.find_session(&digest(42)).await.unwrap().is_none());
    // a second session with the same digest is a conflict
    let dup = UserSession { id: new_id(), ..session.clone() };
    assert!(matches!(s.create_session(&dup).await, Err(StoreError::Conflict(_))));
    let at = now_us();
    assert!(s.revoke_session(session.id, at).await.unwrap());
    // idempotent: the first revocation time stays
    assert!(s.revoke_session(session.id, at + Duration::seconds(5)).await.unwrap());
    assert_eq!(s.find_session(&digest(41)).await.unwrap().unwrap().revoked_at, Some(at));
    assert!(!s.revoke_session(new_id(), at).await.unwrap());
    // issue 7 (M4): the password version is replaced in place
    assert!(s.set_session_password_version(session.id, &digest(45)).await.unwrap());
    assert_eq!(s.find_session(&digest(41)).await.unwrap().unwrap().password_version, Some(digest(45)));
    assert!(!s.set_session_password_version(new_id(), &digest(45)).await.unwrap());
    // a session of an unknown user is refused
    let orphan = UserSession { id: new_id(), user_id: new_id(), digest: digest(43), ..session };
    assert!(matches!(s.create_session(&orphan).await, Err(StoreError::NotFound(_))));
}
store_test!(sessions_by_digest_and_revocation);

/// Issue 7 (M8): a password change revokes every live session of the user except the one that
/// made it; other users' sessions are untouched; expired sessions are deleted.
async fn sessions_revoked_per_user_and_expired_deleted(s: Arc<dyn Store>) {
    let (u, other) = (user("gina", "member"), user("hank", "member"));
    s.create_user(&u).await.unwrap();
    s.create_user(&other).await.unwrap();
    let t0 = now_us();
    let session = |user: &User, d: u8, expires: Timestamp| UserSession {
        id: new_id(),
        user_id: user.id,
        digest: digest(d),
        expires_at: expires,
        revoked_at: None,
        created_at: t0,
        password_version: None,
    };
    let keep = session(&u, 51, t0 + Duration::hours(12));
    let live = session(&u, 52, t0 + Duration::hours(12));
    let old = session(&u, 53, t0 - Duration::hours(1));
    let foreign = session(&other, 54, t0 + Duration::hours(12));
    for x in [&keep, &live, &old, &foreign] {
        s.create_session(x).await.unwrap();
    }
    assert_eq!(s.revoke_user_sessions(u.id, Some(keep.id), t0).await.unwrap(), 1, "only the live, other session");
    assert_eq!(s.find_session(&digest(52)).await.unwrap().unwrap().revoked_at, Some(t0));
    assert_eq!(s.find_session(&digest(51)).await.unwrap().unwrap().revoked_at, None);
    assert_eq!(s.find_session(&digest(54)).await.unwrap().unwrap().revoked_at, None);
    // again without an exception: the kept one now goes too; already revoked ones are not counted
    assert_eq!(s.revoke_user_sessions(u.id, None, t0).await.unwrap(), 1);
    assert!(s.find_session(&digest(51)).await.unwrap().unwrap().revoked_at.is_some());
    assert_eq!(s.revoke_user_sessions(new_id(), None, t0).await.unwrap(), 0);
    // cleanup removes only what expired by `before`
    assert_eq!(s.delete_expired_sessions(t0).await.unwrap(), 1);
    assert!(s.find_session(&digest(53)).await.unwrap().is_none());
    assert!(s.find_session(&digest(54)).await.unwrap().is_some());
    assert_eq!(s.delete_expired_sessions(t0 + Duration::hours(13)).await.unwrap(), 3);
    assert!(s.find_session(&digest(54)).await.unwrap().is_none());
}
store_test!(sessions_revoked_per_user_and_expired_deleted);

/// `DELETE /admin/v1/apps/{id}` (issue 7): soft delete hides the app from reads and lists, once.
async fn apps_soft_delete_hides_them(s: Arc<dyn Store>) {
    let t = team("soft");
    s.create_team(&t).await.unwrap();
    let (keep, gone) = (app(t.id, "keep"), app(t.id, "gone"));
    s.create_app(&keep).await.unwrap();
    s.create_app(&gone).await.unwrap();
    assert!(s.delete_app(gone.id, now_us()).await.unwrap());
    assert!(s.get_app(gone.id).await.unwrap().is_none());
    assert_eq!(s.get_app(keep.id).await.unwrap().unwrap(), keep);
    let ids = |v: Vec<App>| v.into_iter().map(|a| a.id).collect::<Vec<_>>();
    assert_eq!(ids(s.list_apps(Some(t.id)).await.unwrap()), [keep.id]);
    assert!(!ids(s.list_apps(None).await.unwrap()).contains(&gone.id));
    // a second delete, or an unknown id, finds no live app
    assert!(!s.delete_app(gone.id, now_us()).await.unwrap());
    assert!(!s.delete_app(new_id(), now_us()).await.unwrap());
}
store_test!(apps_soft_delete_hides_them);
