//! SQLite implementation of the tenancy methods (issue 7): users, team memberships, sessions.

use gatehouse_types::{Id, Timestamp};
use sqlx::sqlite::SqliteRow;

use super::{SqliteStore, col, col_id, col_opt_ts, col_ts, id_text, micros, opt_micros, user_row};
use crate::{StoreError, StoreResult, TeamMember, User, UserSession};

const USER_COLS: &str = "id, username, password_hash, system_role, created_at";
const SESSION_COLS: &str = "id, user_id, digest, expires_at, revoked_at, created_at, password_version";

fn member_row(row: &SqliteRow) -> StoreResult<TeamMember> {
    Ok(TeamMember {
        team_id: col_id(row, "team_id")?,
        user_id: col_id(row, "user_id")?,
        role: col(row, "role")?,
        created_at: col_ts(row, "created_at")?,
    })
}

fn session_row(row: &SqliteRow) -> StoreResult<UserSession> {
    Ok(UserSession {
        id: col_id(row, "id")?,
        user_id: col_id(row, "user_id")?,
        digest: col(row, "digest")?,
        expires_at: col_ts(row, "expires_at")?,
        revoked_at: col_opt_ts(row, "revoked_at")?,
        created_at: col_ts(row, "created_at")?,
        password_version: col(row, "password_version")?,
    })
}

impl SqliteStore {
    pub(super) async fn tenancy_get_user(&self, id: Id) -> StoreResult<Option<User>> {
        let sql = format!("SELECT {USER_COLS} FROM users WHERE id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id_text(id))
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
        let mut tx = self.write_tx("user").await?;
        let done = sqlx::query("UPDATE users SET password_hash = ?, system_role = ? WHERE id = ?")
            .bind(&user.password_hash)
            .bind(&user.system_role)
            .bind(id_text(user.id))
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_sqlx("user", e))?;
        tx.commit().await.map_err(|e| StoreError::from_sqlx("user", e))?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn tenancy_upsert_member(&self, m: &TeamMember) -> StoreResult<()> {
        let mut tx = self.write_tx("team member").await?;
        sqlx::query(
            "INSERT INTO team_members (team_id, user_id, role, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (team_id, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(id_text(m.team_id))
        .bind(id_text(m.user_id))
        .bind(&m.role)
        .bind(micros(m.created_at)?)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_sqlx("team member", e))?;
        tx.commit().await.map_err(|e| StoreError::from_sqlx("team member", e))
    }

    pub(super) async fn tenancy_remove_member(&self, team_id: Id, user_id: Id) -> StoreResult<bool> {
        let mut tx = self.write_tx("team member").await?;
        let done = sqlx::query("DELETE FROM team_members WHERE team_id = ? AND user_id = ?")
            .bind(id_text(team_id))
            .bind(id_text(user_id))
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_sqlx("team member", e))?;
        tx.commit().await.map_err(|e| StoreError::from_sqlx("team member", e))?;
        Ok(done.rows_affected() > 0)
    }

    /// Soft delete: `deleted_at` is set once (a second delete finds no live app).
    pub(super) async fn tenancy_delete_app(&self, id: Id, at: Timestamp) -> StoreResult<bool> {
        let mut tx = self.write_tx("app").await?;
        let done = sqlx::query("UPDATE apps SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL")
            .bind(micros(at)?)
            .bind(id_text(id))
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
            "SELECT team_id, user_id, role, created_at FROM team_members WHERE {column} = ? \
             ORDER BY created_at, team_id, user_id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id_text(id))
            .fetch_all(self.pool())
            .await
            .map_err(|e| StoreError::from_sqlx("team members", e))?;
        rows.iter().map(member_row).collect()
    }

    pub(super) async fn tenancy_create_session(&self, s: &UserSession) -> StoreResult<()> {
        let mut tx = self.write_tx("session").await?;
        let sql = format!("INSERT INTO user_sessions ({SESSION_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id_text(s.id))
            .bind(id_text(s.user_id))
            .bind(&s.digest)
            .bind(micros(s.expires_at)?)
            .bind(opt_micros(s.revoked_at)?)
            .bind(micros(s.created_at)?)
            .bind(&s.password_version)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_sqlx("session", e))?;
        tx.commit().await.map_err(|e| StoreError::from_sqlx("session", e))
    }

    pub(super) async fn tenancy_find_session(&self, digest: &[u8]) -> StoreResult<Option<UserSession>> {
        let sql = format!("SELECT {SESSION_COLS} FROM user_sessions WHERE digest = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(digest)
            .fetch_optional(self.pool())
            .await
            .map_err(|e| StoreError::from_sqlx("session", e))?;
        row.as_ref().map(session_row).transpose()
    }

    pub(super) async fn tenancy_revoke_session(&self, id: Id, at: Timestamp) -> StoreResult<bool> {
        let mut tx = self.write_tx("session").await?;
        let exists = sqlx::query("SELECT 1 FROM user_sessions WHERE id = ?")
            .bind(id_text(id))
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| StoreError::from_sqlx("session", e))?
            .is_some();
        sqlx::query("UPDATE user_sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(micros(at)?)
            .bind(id_text(id))
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_sqlx("session", e))?;
        tx.commit().await.map_err(|e| StoreError::from_sqlx("session", e))?;
        Ok(exists)
    }

    pub(super) async fn tenancy_revoke_user_sessions(&self, user_id: Id, keep: Option<Id>, at: Timestamp) -> StoreResult<u64> {
        let mut tx = self.write_tx("session").await?;
        let keep = keep.map(id_text);
        let done = sqlx::query(
            "UPDATE user_sessions SET revoked_at = ? \
             WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ? AND (? IS NULL OR id <> ?)",
        )
        .bind(micros(at)?)
        .bind(id_text(user_id))
        .bind(micros(at)?)
        .bind(keep.clone())
        .bind(keep)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from_sqlx("session", e))?;
        tx.commit().await.map_err(|e| StoreError::from_sqlx("session", e))?;
        Ok(done.rows_affected())
    }

    pub(super) async fn tenancy_set_session_password_version(&self, id: Id, version: &[u8]) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE user_sessions SET password_version = ? WHERE id = ?")
            .bind(version)
            .bind(id_text(id))
            .execute(self.pool())
            .await
            .map_err(|e| StoreError::from_sqlx("session", e))?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn tenancy_delete_expired_sessions(&self, before: Timestamp) -> StoreResult<u64> {
        let mut tx = self.write_tx("session").await?;
        let done = sqlx::query("DELETE FROM user_sessions WHERE expires_at <= ?")
            .bind(micros(before)?)
            .execute(&mut *tx)
            .await
            .map_err(|e| StoreError::from_sqlx("session", e))?;
        tx.commit().await.map_err(|e| StoreError::from_sqlx("session", e))?;
        Ok(done.rows_affected())
    }
}
