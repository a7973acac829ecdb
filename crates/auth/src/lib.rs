//! The security kernel: token formats and checksums (G-3), HMAC-with-pepper digests (G-4),
//! envelope encryption of provider keys (G-8), argon2id passwords, credential extraction from
//! headers (G-1, G-2). `token-security.md` is the reference. No I/O here.
//!
//! CONTRACT (signatures the gateway/admin/server code against):
//! * [`token::generate`]`(kind, env) -> GeneratedToken` and [`token::parse`]`(&str) -> Result<ParsedToken, TokenFormatError>`
//!   (prefix, env, charset, length and CRC32 checksum; no database).
//! * [`pepper::Peppers`]: `from_master_key(&MasterKey)`, `current()`, `digest(&str) -> [u8; 32]`,
//!   `digest_with(version, &str) -> Option<[u8; 32]>`.
//! * [`envelope`]: `KeyProvider` trait, `LocalKeyProvider`, `seal(&dyn KeyProvider, &Aad, &[u8]) -> Sealed`,
//!   `open(&dyn KeyProvider, &Aad, &Sealed) -> Result<SecretString, EnvelopeError>`, `provider_key_hint(&str) -> String`.
//! * [`password`]: `hash_password(&str) -> Result<String, _>`, `verify_password(&str, &str) -> bool`.
//! * [`extract`]: `extract_bearer(&HeaderMap-like values) -> Result<Option<&str>, ExtractError>`.
//! * [`master_key`]: `MasterKey` (32 bytes, zeroized), parsing from base64/hex and generation.
#![forbid(unsafe_code)]
