//! The security kernel of Gatehouse. `token-security.md` is the reference.
//!
//! * [`token`]: credential formats `gth?_<env>_<43 base62><6 base62 CRC32>` (G-3), generation
//!   from the OS CSPRNG and offline format + checksum checks.
//! * [`master_key`]: the local 32-byte master key (KEK) from `GATEHOUSE_MASTER_KEY` or a file.
//! * [`pepper`]: `HMAC-SHA-256(pepper_v, token)` digests stored instead of tokens (G-4).
//! * [`envelope`]: AES-256-GCM envelope encryption of provider keys with AAD binding (G-8).
//! * [`password`]: argon2id hashing of human passwords (§2.3).
//! * [`cidr`]: CIDR allow-lists and the client address behind trusted proxies (issue 5).
//! * [`dpop`]: RFC 9449 DPoP proof verification (`verify_proof`), RFC 7638 thumbprints.
//! * [`extract`]: the `Authorization` header parsing algorithm (G-1, G-2; RFC 6750 §2.1).
//!
//! No I/O happens here; every function is synchronous and never panics on input.
#![forbid(unsafe_code)]

pub mod cidr;
pub mod dpop;
pub mod envelope;
pub mod extract;
pub mod master_key;
pub mod password;
pub mod pepper;
pub mod token;

pub use envelope::{open, seal, secret_hint, Aad, EnvelopeError, KeyProvider, LocalKeyProvider, Sealed};
pub use extract::{extract_authorization, Credential, ExtractError, Scheme};
pub use master_key::{MasterKey, MasterKeyError};
pub use password::{hash_password, verify_password, PasswordError};
pub use pepper::Peppers;
pub use token::{generate, parse, Env, GeneratedToken, ParsedToken, TokenFormatError, TokenKind};

/// Fills `buf` from the operating system's CSPRNG.
///
/// Errors only if the OS has no entropy source, which Gatehouse treats as fatal at the caller.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), getrandom::Error> {
    getrandom::fill(buf)
}
