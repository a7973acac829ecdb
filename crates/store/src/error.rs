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
