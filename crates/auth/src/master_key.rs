//! The local master key (KEK for self-hosting, `token-security.md` §3.1): 32 bytes from
//! `GATEHOUSE_MASTER_KEY` or a generated file in the data directory. Zeroized on drop; never
//! printed by `Debug`.

use base64::Engine;
use zeroize::Zeroize;

/// A 32-byte master key.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Why a master key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MasterKeyError {
    #[error("the master key must be 32 bytes, given as 64 hex characters or standard base64")]
    Format,
    #[error("the operating system has no random source")]
    Entropy,
}

impl MasterKey {
    /// A new key from the OS CSPRNG.
    pub fn generate() -> Result<Self, MasterKeyError> {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k).map_err(|_| MasterKeyError::Entropy)?;
        Ok(Self(k))
    }

    /// Parses 64 hex characters or the standard base64 (padded or not) of 32 bytes; surrounding
    /// whitespace is ignored.
    pub fn parse(text: &str) -> Result<Self, MasterKeyError> {
        let t = text.trim();
        let mut k = [0u8; 32];
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            for (i, chunk) in t.as_bytes().chunks(2).enumerate() {
                let s = std::str::from_utf8(chunk).map_err(|_| MasterKeyError::Format)?;
                k[i] = u8::from_str_radix(s, 16).map_err(|_| MasterKeyError::Format)?;
            }
            return Ok(Self(k));
        }
        let mut decoded = base64::engine::general_purpose::STANDARD
            .decode(t)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(t))
            .map_err(|_| MasterKeyError::Format)?;
        if decoded.len() != 32 {
            decoded.zeroize();
            return Err(MasterKeyError::Format);
        }
        k.copy_from_slice(&decoded);
        decoded.zeroize();
        Ok(Self(k))
    }

    /// The standard base64 form, for writing the key file.
    pub fn to_encoded(&self) -> secrecy::SecretString {
        secrecy::SecretString::from(base64::engine::general_purpose::STANDARD.encode(self.0))
    }

    /// The raw key bytes (for deriving peppers and wrapping DEKs inside this crate).
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn round_trips_and_accepts_hex() {
        let k = MasterKey::generate().unwrap();
        let again = MasterKey::parse(k.to_encoded().expose_secret()).unwrap();
        assert_eq!(k.bytes(), again.bytes());
        let hex = "00".repeat(31) + "ff";
        assert_eq!(MasterKey::parse(&hex).unwrap().bytes()[31], 0xff);
        assert!(matches!(MasterKey::parse("short"), Err(MasterKeyError::Format)));
        assert!(format!("{k:?}").contains("redacted"));
    }
}
