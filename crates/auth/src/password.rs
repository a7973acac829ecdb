//! Human passwords: argon2id with a per-password salt and OWASP's minimum parameters
//! (19 MiB, 2 iterations, parallelism 1; `token-security.md` §2.3), stored as PHC strings.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};

/// Why a password could not be hashed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("password hashing failed")]
pub struct PasswordError;

/// Hashes `password` with argon2id; returns the PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|_| PasswordError)
}

/// True if `password` matches the PHC string `phc` (constant-time inside argon2). A malformed
/// `phc` never matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    Argon2::default().verify_password(password.as_bytes(), phc).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a phc string"));
    }
}
