//! Keyed digests of machine-generated credentials (G-4, `token-security.md` §2.3):
//! `digest = HMAC-SHA-256(pepper_v, full_token_string)`, stored with `pepper_v`.
//!
//! Peppers are derived from the master key (`pepper_v = HMAC-SHA-256(master, "gatehouse/pepper/v<v>")`),
//! so they live outside the database: a stolen database alone cannot confirm a candidate token.
//! Version 1 is current; rotation adds a version and keeps older ones for verification.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::MasterKey;

type HmacSha256 = Hmac<Sha256>;

/// The pepper set: the current version first, older ones after.
pub struct Peppers {
    /// (version, pepper), current first.
    versions: Vec<(i32, Zeroizing<[u8; 32]>)>,
}

impl Peppers {
    /// The current pepper version written with new digests.
    pub const CURRENT: i32 = 1;

    /// Derives the pepper set from the master key.
    pub fn from_master_key(master: &MasterKey) -> Self {
        let versions = (1..=Self::CURRENT)
            .rev()
            .map(|v| (v, derive(master.bytes(), format!("gatehouse/pepper/v{v}").as_bytes())))
            .collect();
        Self { versions }
    }

    /// The version new digests are written with.
    pub fn current_version(&self) -> i32 {
        Self::CURRENT
    }

    /// Digest of `token` under the current pepper.
    pub fn digest(&self, token: &str) -> [u8; 32] {
        self.digest_with(Self::CURRENT, token).unwrap_or([0; 32])
    }

    /// Digest of `token` under pepper `version`; `None` for an unknown version.
    pub fn digest_with(&self, version: i32, token: &str) -> Option<[u8; 32]> {
        let (_, key) = self.versions.iter().find(|(v, _)| *v == version)?;
        Some(*derive(key.as_slice(), token.as_bytes()))
    }

    /// A short keyed fingerprint for logs and audit records (G-11): the first 8 bytes of the
    /// digest in hex. Never reversible to the token.
    pub fn fingerprint(&self, token: &str) -> String {
        self.digest(token)[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn derive(key: &[u8], data: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    if let Ok(mut mac) = HmacSha256::new_from_slice(key) {
        mac.update(data);
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_keyed_and_stable() {
        let a = Peppers::from_master_key(&MasterKey::parse(&"11".repeat(32)).unwrap());
        let b = Peppers::from_master_key(&MasterKey::parse(&"22".repeat(32)).unwrap());
        assert_eq!(a.digest("x"), a.digest("x"));
        assert_ne!(a.digest("x"), a.digest("y"));
        assert_ne!(a.digest("x"), b.digest("x"));
        assert_eq!(a.digest_with(1, "x"), Some(a.digest("x")));
        assert_eq!(a.digest_with(7, "x"), None);
        assert_eq!(a.fingerprint("x").len(), 16);
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        // RFC 4231 §4.3: key "Jefe", data "what do ya want for nothing?"
        let d = derive(b"Jefe", b"what do ya want for nothing?");
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
