//! Store errors.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint was violated (name taken, duplicate digest).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A referenced row does not exist (foreign key).
    #[error("not found: {0}")]
    NotFound(String),
    /// Bad URL or settings.
    #[error("store configuration: {0}")]
    Config(String),
    /// Any other database failure (connection, I/O, migration).
    #[error("database error: {0}")]
    Database(String),
}

impl StoreError {
    /// Maps a sqlx error of an operation on `what` (e.g. `"credential"`): unique violations →
    /// [`StoreError::Conflict`], foreign-key violations → [`StoreError::NotFound`], the rest →
    /// [`StoreError::Database`]. Messages name the constraint, never the bound values.
    pub(crate) fn from_sqlx(what: &str, err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                let which = db
                    .constraint()
                    .map(str::to_owned)
                    .unwrap_or_else(|| db.message().to_owned());
                StoreError::Conflict(format!("{what} already exists ({which})"))
            }
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                let which = db
                    .constraint()
                    .map(str::to_owned)
                    .unwrap_or_else(|| db.message().to_owned());
                StoreError::NotFound(format!("{what} references a missing row ({which})"))
            }
            _ => StoreError::Database(format!("{what}: {err}")),
        }
    }

    /// A value read back from the database could not be decoded.
    pub(crate) fn decode(what: &str, detail: impl std::fmt::Display) -> Self {
        StoreError::Database(format!("{what}: cannot decode stored value: {detail}"))
    }
}
