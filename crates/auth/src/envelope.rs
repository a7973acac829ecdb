//! Envelope encryption of stored provider keys (G-8, `token-security.md` §3.1).
//!
//! Each record gets its own random 256-bit DEK; the provider key is sealed with
//! AES-256-GCM(DEK, random 96-bit nonce, AAD). The DEK is wrapped by the KEK of a
//! [`KeyProvider`] (the local master key today; Vault Transit / cloud KMS later) under the same
//! AAD. The AAD binds tenant, credential id, provider, format version and KEK id, so a
//! ciphertext copied into another row fails to open instead of being used for another tenant.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use gatehouse_types::Id;
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::MasterKey;

/// Format version written in every sealed record.
pub const FORMAT_VERSION: i16 = 1;
const NONCE_LEN: usize = 12;

/// Why sealing or opening failed. Opening failures never say more than "could not decrypt".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("unsupported sealed format version {0}")]
    Version(i16),
    #[error("sealed record was wrapped by key {0}, which this node does not hold")]
    UnknownKek(String),
    #[error("could not decrypt the sealed record (wrong key, wrong record binding or tampering)")]
    Decrypt,
    #[error("could not encrypt")]
    Encrypt,
    #[error("the decrypted secret is not UTF-8")]
    NotUtf8,
    #[error("the operating system has no random source")]
    Entropy,
}

/// What a sealed record is bound to (its AAD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aad {
    pub tenant_id: Id,
    pub credential_id: Id,
    pub provider: String,
}

/// A sealed secret as stored (`provider_credentials` columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub format_version: i16,
    pub kek_id: String,
    pub wrapped_dek: Vec<u8>,
    pub nonce: Vec<u8>,
    /// Ciphertext followed by the 16-byte GCM tag.
    pub ciphertext: Vec<u8>,
}

/// Wraps and unwraps DEKs with a key-encryption key. Implementations: [`LocalKeyProvider`];
/// KMS/Vault providers later.
pub trait KeyProvider: Send + Sync {
    /// Identifier of the KEK used for new records, e.g. `local:v1`.
    fn kek_id(&self) -> &str;
    /// Wraps a DEK under the current KEK, bound to `aad`.
    fn wrap(&self, dek: &[u8; 32], aad: &[u8]) -> Result<Vec<u8>, EnvelopeError>;
    /// Unwraps a DEK wrapped by KEK `kek_id`, bound to `aad`.
    fn unwrap(&self, kek_id: &str, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<[u8; 32]>, EnvelopeError>;
}

/// The self-hosting KEK: AES-256-GCM under the local master key, nonce prepended to the wrap.
pub struct LocalKeyProvider {
    kek: Zeroizing<[u8; 32]>,
    id: String,
}

impl LocalKeyProvider {
    /// A provider whose KEK is `master` (id `local:v1`).
    pub fn new(master: &MasterKey) -> Self {
        Self { kek: Zeroizing::new(*master.bytes()), id: "local:v1".to_string() }
    }
}

impl KeyProvider for LocalKeyProvider {
    fn kek_id(&self) -> &str {
        &self.id
    }

    fn wrap(&self, dek: &[u8; 32], aad: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        let (nonce, ct) = aead_seal(&self.kek, dek, aad)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn unwrap(&self, kek_id: &str, wrapped: &[u8], aad: &[u8]) -> Result<Zeroizing<[u8; 32]>, EnvelopeError> {
        if kek_id != self.id {
            return Err(EnvelopeError::UnknownKek(kek_id.to_string()));
        }
        if wrapped.len() < NONCE_LEN {
            return Err(EnvelopeError::Decrypt);
        }
        let (nonce, ct) = wrapped.split_at(NONCE_LEN);
        let plain = Zeroizing::new(aead_open(&self.kek, nonce, ct, aad)?);
        let dek: [u8; 32] = plain.as_slice().try_into().map_err(|_| EnvelopeError::Decrypt)?;
        Ok(Zeroizing::new(dek))
    }
}

/// Canonical AAD: length-prefixed fields in a fixed order (§3.1).
fn aad_bytes(aad: &Aad, format_version: i16, kek_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let mut field = |b: &[u8]| {
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(b);
    };
    field(b"gatehouse:provider-credential");
    field(&format_version.to_be_bytes());
    field(aad.tenant_id.as_bytes());
    field(aad.credential_id.as_bytes());
    field(aad.provider.as_bytes());
    field(kek_id.as_bytes());
    out
}

/// Seals `plaintext` for the record described by `aad` with a fresh DEK.
pub fn seal(kp: &dyn KeyProvider, aad: &Aad, plaintext: &[u8]) -> Result<Sealed, EnvelopeError> {
    let mut dek = Zeroizing::new([0u8; 32]);
    getrandom::fill(dek.as_mut_slice()).map_err(|_| EnvelopeError::Entropy)?;
    let kek_id = kp.kek_id().to_string();
    let ad = aad_bytes(aad, FORMAT_VERSION, &kek_id);
    let wrapped_dek = kp.wrap(&dek, &ad)?;
    let (nonce, ciphertext) = aead_seal(&dek, plaintext, &ad)?;
    Ok(Sealed { format_version: FORMAT_VERSION, kek_id, wrapped_dek, nonce: nonce.to_vec(), ciphertext })
}

/// Opens a sealed record. Fails with [`EnvelopeError::Decrypt`] if anything (key, AAD binding,
/// nonce, ciphertext) differs from what was sealed.
pub fn open(kp: &dyn KeyProvider, aad: &Aad, sealed: &Sealed) -> Result<SecretString, EnvelopeError> {
    if sealed.format_version != FORMAT_VERSION {
        return Err(EnvelopeError::Version(sealed.format_version));
    }
    let ad = aad_bytes(aad, sealed.format_version, &sealed.kek_id);
    let dek = kp.unwrap(&sealed.kek_id, &sealed.wrapped_dek, &ad)?;
    let plain = Zeroizing::new(aead_open(&dek, &sealed.nonce, &sealed.ciphertext, &ad)?);
    let text = std::str::from_utf8(&plain).map_err(|_| EnvelopeError::NotUtf8)?;
    Ok(SecretString::from(text.to_string()))
}

/// A display hint for a provider key that never shows more than a third of it (L5):
/// * 24 characters or more: the first 3, `…`, the last 4 (e.g. `sk-…abcd`);
/// * 12–23: `…` and the last 4;
/// * 8–11: `…` and the last 2;
/// * shorter: only the length, e.g. `…(5 chars)`.
pub fn secret_hint(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    let n = chars.len();
    let tail = |k: usize| -> String { chars[n - k..].iter().collect() };
    match n {
        0..8 => format!("…({n} chars)"),
        8..12 => format!("…{}", tail(2)),
        12..24 => format!("…{}", tail(4)),
        _ => {
            let head: String = chars[..3].iter().collect();
            format!("{head}…{}", tail(4))
        }
    }
}

/// AES-256-GCM with AES-256-GCM a random nonce; AEAD primitives (`aes-gcm`, RustCrypto).
pub(crate) fn aead_seal(key: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> Result<([u8; NONCE_LEN], Vec<u8>), EnvelopeError> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| EnvelopeError::Encrypt)?;
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| EnvelopeError::Entropy)?;
    let ct = cipher
        .encrypt(&nonce.into(), Payload { msg: plaintext, aad })
        .map_err(|_| EnvelopeError::Encrypt)?;
    Ok((nonce, ct))
}

/// AES-256-GCM decryption; any failure is [`EnvelopeError::Decrypt`].
pub(crate) fn aead_open(key: &[u8; 32], nonce: &[u8], ciphertext: &[u8], aad: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| EnvelopeError::Decrypt)?;
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| EnvelopeError::Decrypt)?;
    cipher.decrypt(&nonce.into(), Payload { msg: ciphertext, aad }).map_err(|_| EnvelopeError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn kp() -> LocalKeyProvider {
        LocalKeyProvider::new(&MasterKey::parse(&"42".repeat(32)).unwrap())
    }

    fn aad() -> Aad {
        Aad { tenant_id: gatehouse_types::new_id(), credential_id: gatehouse_types::new_id(), provider: "openai".into() }
    }

    #[test]
    fn seal_open_round_trip_and_no_plaintext_in_record() {
        let a = aad();
        let s = seal(&kp(), &a, b"sk-canary-1234567890").unwrap();
        assert_eq!(open(&kp(), &a, &s).unwrap().expose_secret(), "sk-canary-1234567890");
        for field in [&s.wrapped_dek, &s.nonce, &s.ciphertext] {
            assert!(!field.windows(9).any(|w| w == b"sk-canary"));
        }
        let s2 = seal(&kp(), &a, b"sk-canary-1234567890").unwrap();
        assert_ne!(s.ciphertext, s2.ciphertext, "fresh DEK and nonce each time");
    }

    #[test]
    fn any_binding_change_or_tampering_fails() {
        let a = aad();
        let s = seal(&kp(), &a, b"secret").unwrap();
        let mut other = a.clone();
        other.tenant_id = gatehouse_types::new_id();
        assert_eq!(open(&kp(), &other, &s).unwrap_err(), EnvelopeError::Decrypt);
        let mut other = a.clone();
        other.provider = "anthropic".into();
        assert_eq!(open(&kp(), &other, &s).unwrap_err(), EnvelopeError::Decrypt);
        let mut t = s.clone();
        t.ciphertext[0] ^= 1;
        assert_eq!(open(&kp(), &a, &t).unwrap_err(), EnvelopeError::Decrypt);
        let mut t = s.clone();
        t.wrapped_dek[20] ^= 1;
        assert_eq!(open(&kp(), &a, &t).unwrap_err(), EnvelopeError::Decrypt);
        let mut t = s.clone();
        t.kek_id = "local:v9".into();
        assert!(matches!(open(&kp(), &a, &t), Err(EnvelopeError::UnknownKek(_))));
        let wrong = LocalKeyProvider::new(&MasterKey::parse(&"43".repeat(32)).unwrap());
        assert_eq!(open(&wrong, &a, &s).unwrap_err(), EnvelopeError::Decrypt);
    }

    #[test]
    fn hints_show_little() {
        assert_eq!(secret_hint("sk-proj-abcdefghijklmnop"), "sk-…mnop");
        assert_eq!(secret_hint("short"), "…(5 chars)");
        assert_eq!(secret_hint(""), "…(0 chars)");
    }

    /// L5: a short provider key is never shown whole (nor more than a third of it).
    #[test]
    fn l5_short_key_hints_never_show_the_key() {
        let alphabet: Vec<char> = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789".chars().collect();
        for n in 1..=40 {
            let key: String = alphabet.iter().cycle().skip(n).take(n).collect();
            let hint = secret_hint(&key);
            // Characters of the key in the hint: everything but the ellipsis, or nothing for
            // the length-only form.
            let shown = if hint.ends_with(" chars)") { 0 } else { hint.chars().filter(|c| *c != '…').count() };
            assert!(shown * 3 <= n, "{n} chars: {hint} shows {shown}");
            assert!(!hint.contains(key.as_str()), "{n}: {hint}");
        }
        assert_eq!(secret_hint("abcdefghij"), "…ij");
        assert_eq!(secret_hint("abcdefghijklmn"), "…klmn");
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// Wycheproof AES-GCM vectors (C2SP/wycheproof, `shared/testdata/wycheproof/aes_gcm_test.json`):
    /// every 256-bit-key case must open exactly when the vector says `valid`; our envelope only
    /// accepts 96-bit nonces, so every other nonce size must be refused.
    #[test]
    fn wycheproof_aes_gcm_vectors() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/testdata/wycheproof/aes_gcm_test.json");
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut checked = 0;
        for group in doc["testGroups"].as_array().unwrap() {
            if group["keySize"] != 256 {
                continue;
            }
            for case in group["tests"].as_array().unwrap() {
                let key: [u8; 32] = unhex(case["key"].as_str().unwrap()).try_into().unwrap();
                let iv = unhex(case["iv"].as_str().unwrap());
                let aad = unhex(case["aad"].as_str().unwrap());
                let msg = unhex(case["msg"].as_str().unwrap());
                let mut ct = unhex(case["ct"].as_str().unwrap());
                ct.extend(unhex(case["tag"].as_str().unwrap()));
                let opened = aead_open(&key, &iv, &ct, &aad);
                let id = &case["tcId"];
                if group["ivSize"] == 96 && case["result"] == "valid" {
                    assert_eq!(opened.as_deref(), Ok(msg.as_slice()), "tcId {id}");
                } else if group["ivSize"] != 96 || case["result"] == "invalid" {
                    assert!(opened.is_err(), "tcId {id} must be refused");
                }
                checked += 1;
            }
        }
        assert!(checked > 50, "only {checked} vectors checked");
    }
}
