//! PostgreSQL implementation of the tenancy methods (issue 7): users, team memberships, sessions.

use gatehouse_types::{Id, Timestamp};
use sqlx::postgres::PgRow;

use super::{PostgresStore, col, user_row};
use crate::{StoreError, StoreResult, TeamMember, User, UserSession};

const USER_COLS: &str = "id, username, password_hash, system_role, created_at";
const SESSION_COLS: &str = "id, user_id, digest, expires_at, revoked_at, created_at, password_version";

fn member_row(row: &PgRow) -> StoreResult<TeamMember> {
    Ok(TeamMember {
        team_id: col(row, "team_id")?,
        user_id: col(row, "user_id")?,
        role: col(row, "role")?,
        created_at: col(row, "created_at")?,
    })
}

fn session_row(row: &PgRow) -> StoreResult<UserSession> {
    Ok(UserSession {
        id: col(row, "id")?,
        user_id: col(row, "user_id")?,
        digest: col(row, "digest")?,
        expires_at: col(row, "expires_at")?,
        revoked_at: col(row, "revoked_at")?,
        created_at: col(row, "created_at")?,
        password_version: col(row, "password_version")?,
    })
}

impl PostgresStore {
    pub(super) async fn tenancy_get_user(&self, id: Id) -> StoreResult<Option<User>> {
        let sql = format!("SELECT {USER_COLS} FROM users WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(|e| StoreError::from_sqlx("user", e))?;
        row.as_ref().map(user_row).transpose()
    }

    pub(super) async fn tenancy_list_users(&self) -> StoreResult<Vec<User>> {
        let sql = format!("SELECT {USER_COLS} FROM users ORDER BY username");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await
            .map_err(|e| StoreError::from_sqlx("users", e))?;
        rows.iter().map(user_row).collect()
    }

    pub(super) async fn tenancy_update_user(&self, user: &User) -> StoreResult<bool> {
        let mut tx = self.tx("user").await?;
        let done = sqlx::query("UPDATE users SET password_hash = $1, system_role = $2 WHERE id = $3")
            .bind(&user.password_hash)
            .bind(&user.system_role)
            .bind(user.id)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_sqlx("user", e))?;
        tx.commit().await.map_err(|e| StoreError::from_sqlx("user", e))?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn tenancy_upsert_member(&self, m: &TeamMember) -> StoreResult<()> {
        let mut tx = self.tx("team member").await?;
        sqlx::query(
            "INSERT INTO team_members (team_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (team_id, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(m.team_id)
        .bind(m.user_id)
        .bind(&m.role)
        .bind(m.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_sqlx("team member", e))?;
        tx.commit().await.map_err(|e| StoreError::from_sqlx("team member", e))
    }

    pub(super) async fn tenancy_remove_member(&self, team_id: Id, user_id: Id) -> StoreResult<bool> {
        let mut tx = self.tx("team member").await?;
        let done = sqlx::query("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2")
            .bind(team_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_sqlx("team member", e))?;
        tx.commit().await.map_err(|e| StoreError::from_sqlx("team member", e))?;
        Ok(done.rows_affected() > 0)
    }

    /// Soft delete: `deleted_at` is set once (a second delete finds no live app).
    pub(super) async fn tenancy_delete_app(&self, id: Id, at: Timestamp) -> StoreResult<bool> {
        let mut tx = self.tx("app").await?;
        let done = sqlx::query("UPDATE apps SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_sqlx("app", e))?;
        tx.commit().await.map_err(|e| StoreError::from_sqlx("app", e))?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn tenancy_list_members(&self, column: &str, id: Id) -> StoreResult<Vec<TeamMember>> {
        // `column` is one of two fixed names chosen by the caller, never client input.
        let column = if column == "team_id" { "team_id" } else { "user_id" };
        let sql = format!(
            "SELECT team_id, user_id, role, created_at FROM team_members WHERE {column} = $1 \
             ORDER BY created_at, team_id, user_id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_all(self.pool())
            .await
            .map_err(|e| StoreError::from_sqlx("team members", e))?;
        rows.iter().map(member_row).collect()
    }

    pub(super) async fn tenancy_create_session(&self, s: &UserSession) -> StoreResult<()> {
        let mut tx = self.tx("session").await?;
        let sql = format!("INSERT INTO user_sessions ({SESSION_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(s.id)
            .bind(s.user_id)
            .bind(&s.digest)
            .bind(s.expires_at)
            .bind(s.revoked_at)
            .bind(s.created_at)
            .bind(&s.password_version)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_sqlx("session", e))?;
        tx.commit().await.map_err(|e| StoreError::from_sqlx("session", e))
    }

    pub(super) async fn tenancy_find_session(&self, digest: &[u8]) -> StoreResult<Option<UserSession>> {
        let sql = format!("SELECT {SESSION_COLS} FROM user_sessions WHERE digest = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(digest)
            .fetch_optional(self.pool())
            .await
            .map_err(|e| StoreError::from_sqlx("session", e))?;
        row.as_ref().map(session_row).transpose()
    }

    pub(super) async fn tenancy_revoke_session(&self, id: Id, at: Timestamp) -> StoreResult<bool> {
        let mut tx = self.tx("session").await?;
        let exists = sqlx::query("SELECT 1 FROM user_sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| StoreError::from_sqlx("session", e))?
            .is_some();
        sqlx::query("UPDATE user_sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_sqlx("session", e))?;
        tx.commit().await.map_err(|e| StoreError::from_sqlx("session", e))?;
        Ok(exists)
    }

    pub(super) async fn tenancy_revoke_user_sessions(&self, user_id: Id, keep: Option<Id>, at: Timestamp) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE user_sessions SET revoked_at = $1 \
             WHERE user_id = $2 AND revoked_at IS NULL AND expires_at > $1 AND ($3::uuid IS NULL OR id <> $3)",
        )
        .bind(at)
        .bind(user_id)
        .bind(keep)
        .execute(self.pool())
        .await
        .map_err(|e| StoreError::from_sqlx("session", e))?;
        Ok(done.rows_affected())
    }

    pub(super) async fn tenancy_set_session_password_version(&self, id: Id, version: &[u8]) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE user_sessions SET password_version = $1 WHERE id = $2")
            .bind(version)
            .bind(id)
            .execute(self.pool())
            .await
            .map_err(|e| StoreError::from_sqlx("session", e))?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn tenancy_delete_expired_sessions(&self, before: Timestamp) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM user_sessions WHERE expires_at <= $1")
            .bind(before)
            .execute(self.pool())
            .await
            .map_err(|e| StoreError::from_sqlx("session", e))?;
        Ok(done.rows_affected())
    }
}
