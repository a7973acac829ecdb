//! Compact JWS with ES256 only (RFC 7515, RFC 7518 §3.4), for RFC 9068 access tokens we sign
//! and RFC 7523 client assertions we verify. Built on `aws-lc-rs` (G-12) so the rules of
//! `token-security.md` §1.6 are ours, not a library's defaults:
//!
//! * compact serialization only: exactly three segments of the strict base64url alphabet
//!   (no padding, no JSON serialization, no JWE);
//! * header and payload are JSON objects with **no duplicate member names** (rejected, §1.6);
//! * `alg` must be exactly `ES256` (case-sensitive allow-list; `none`, `HS256`, `RS256` … fail,
//!   which stops algorithm confusion, CVE-2015-9235);
//! * `jwk`, `jku`, `x5u`, `x5c`, `x5t`, `x5t#S256` in the header are rejected: only keys we
//!   hold count (RFC 8725 §3.10) and nothing is ever fetched;
//! * any `crit` is rejected (we implement no extensions, RFC 7515 §4.1.11);
//! * `typ` is checked by the caller ([`verify`] takes the expected value);
//! * the key is selected by `kid` from a map the caller built from trusted keys.
//!
//! Every failure is one opaque [`JwsError`]; callers answer `invalid_token`/`invalid_client`.

use std::collections::HashSet;
use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{self, MapAccess, Visitor};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The only signature algorithm we produce and accept.
pub const ALG: &str = "ES256";
/// Longest compact JWS we parse at all (bytes); longer inputs are rejected before decoding.
pub const MAX_JWS_LEN: usize = 8192;

/// Why a JWS was rejected. Deliberately coarse: never tells a caller more than "invalid".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("malformed JWS")]
    Malformed,
    #[error("JWS header not acceptable")]
    Header,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("bad signature")]
    Signature,
    #[error("key error")]
    Key,
}

/// A P-256 public key: the uncompressed point `0x04 || x || y` (65 bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct EcPublicKey {
    point: Vec<u8>,
}

impl fmt::Debug for EcPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EcPublicKey({})", self.thumbprint())
    }
}

impl EcPublicKey {
    /// Parses a public EC JWK: `kty` = `EC`, `crv` = `P-256`, 32-byte `x` and `y`; a JWK with a
    /// private member (`d`), `use` other than `sig`, or `alg` other than ES256 is refused.
    pub fn from_jwk(jwk: &Value) -> Result<Self, JwsError> {
        let obj = jwk.as_object().ok_or(JwsError::Key)?;
        if obj.get("kty").and_then(Value::as_str) != Some("EC") || obj.get("crv").and_then(Value::as_str) != Some("P-256") {
            return Err(JwsError::Key);
        }
        if obj.contains_key("d") {
            return Err(JwsError::Key);
        }
        if obj.get("use").is_some_and(|u| u.as_str() != Some("sig")) || obj.get("alg").is_some_and(|a| a.as_str() != Some(ALG)) {
            return Err(JwsError::Key);
        }
        // RFC 7517 §4.3: `key_ops`, if present, must allow `verify` (and not be combined with
        // `use`); Wycheproof `rejectWrongKeyOps`.
        if let Some(ops) = obj.get("key_ops") {
            let allows = ops.as_array().is_some_and(|a| a.iter().any(|o| o.as_str() == Some("verify")));
            if !allows || obj.contains_key("use") {
                return Err(JwsError::Key);
            }
        }
        let coord = |name: &str| -> Result<Vec<u8>, JwsError> {
            let s = obj.get(name).and_then(Value::as_str).ok_or(JwsError::Key)?;
            let b = b64_decode(s).ok_or(JwsError::Key)?;
            if b.len() == 32 { Ok(b) } else { Err(JwsError::Key) }
        };
        let mut point = vec![4u8];
        point.extend(coord("x")?);
        point.extend(coord("y")?);
        // Reject points that are not on the curve now rather than at first use.
        UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point).parse().map_err(|_| JwsError::Key)?;
        Ok(Self { point })
    }

    /// The public JWK (`kty`, `crv`, `x`, `y`).
    pub fn to_jwk(&self) -> Value {
        json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(&self.point[1..33]), "y": URL_SAFE_NO_PAD.encode(&self.point[33..65])})
    }

    /// RFC 7638 SHA-256 thumbprint, base64url (used as `kid` and as DPoP `jkt`).
    pub fn thumbprint(&self) -> String {
        if self.point.len() != 65 {
            return String::new();
        }
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            URL_SAFE_NO_PAD.encode(&self.point[1..33]),
            URL_SAFE_NO_PAD.encode(&self.point[33..65])
        );
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), JwsError> {
        if sig.len() != 64 {
            return Err(JwsError::Signature);
        }
        UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &self.point)
            .verify(msg, sig)
            .map_err(|_| JwsError::Signature)
    }
}

/// A P-256 signing key (private). `Debug` never prints key material.
pub struct EcSigningKey {
    pair: EcdsaKeyPair,
    public: EcPublicKey,
}

impl fmt::Debug for EcSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EcSigningKey(kid={})", self.public.thumbprint())
    }
}

impl EcSigningKey {
    /// A fresh key from the OS CSPRNG and its PKCS#8 v1 encoding (to seal and store).
    pub fn generate() -> Result<(Self, Vec<u8>), JwsError> {
        let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .map_err(|_| JwsError::Key)?;
        let key = Self::from_pkcs8(doc.as_ref())?;
        Ok((key, doc.as_ref().to_vec()))
    }

    /// Loads a PKCS#8 key.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, JwsError> {
        let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(|_| JwsError::Key)?;
        let public = EcPublicKey { point: pair.public_key().as_ref().to_vec() };
        Ok(Self { pair, public })
    }

    /// The public half.
    pub fn public(&self) -> &EcPublicKey {
        &self.public
    }

    /// Signs `claims` as a compact JWS with header `{"alg":"ES256","typ":typ,"kid":kid}`.
    pub fn sign(&self, typ: &str, kid: &str, claims: &Value) -> Result<String, JwsError> {
        let header = json!({"alg": ALG, "typ": typ, "kid": kid});
        let mut input = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).map_err(|_| JwsError::Malformed)?);
        input.push('.');
        input.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).map_err(|_| JwsError::Malformed)?));
        let sig = self.pair.sign(&SystemRandom::new(), input.as_bytes()).map_err(|_| JwsError::Key)?;
        input.push('.');
        input.push_str(&URL_SAFE_NO_PAD.encode(sig.as_ref()));
        Ok(input)
    }
}

/// A verified JWS: its header and claims (both duplicate-free JSON objects).
#[derive(Debug, Clone)]
pub struct Verified {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
}

/// Header parameters that would make us trust or fetch a key named by the token itself.
const FORBIDDEN_HEADER: [&str; 6] = ["jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256"];

/// The claims of a compact JWS **without** verifying anything (only to find which client's key
/// to verify with). Never trust the result before [`verify`] succeeded.
pub fn peek_claims(token: &str) -> Result<Map<String, Value>, JwsError> {
    if !looks_like_jws(token) {
        return Err(JwsError::Malformed);
    }
    let p = token.split('.').nth(1).ok_or(JwsError::Malformed)?;
    parse_object(&b64_decode(p).ok_or(JwsError::Malformed)?)
}

/// Whether `s` has the shape of a compact JWS (two dots, base64url alphabet). Cheap pre-check.
pub fn looks_like_jws(s: &str) -> bool {
    s.len() <= MAX_JWS_LEN && s.bytes().filter(|&b| b == b'.').count() == 2 && s.bytes().all(|b| b == b'.' || is_b64url(b))
}

/// Verifies a compact ES256 JWS: format, header rules of the module doc, `typ` (compared
/// case-insensitively, with or without the `application/` prefix, RFC 7515 §4.1.9) and the
/// signature with the key `keys(kid)` returns. Claims are **not** checked here.
pub fn verify(token: &str, expected_typ: Option<&str>, keys: impl FnOnce(Option<&str>) -> Option<EcPublicKey>) -> Result<Verified, JwsError> {
    let (header, payload) = verify_raw(token, expected_typ, keys)?;
    let claims = parse_object(&payload)?;
    Ok(Verified { header, claims })
}

/// [`verify`] without interpreting the payload: returns the header and the payload bytes.
pub fn verify_raw(
    token: &str,
    expected_typ: Option<&str>,
    keys: impl FnOnce(Option<&str>) -> Option<EcPublicKey>,
) -> Result<(Map<String, Value>, Vec<u8>), JwsError> {
    if !looks_like_jws(token) {
        return Err(JwsError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwsError::Malformed);
    };
    let header = parse_object(&b64_decode(h).ok_or(JwsError::Malformed)?)?;
    let claims_raw = b64_decode(p).ok_or(JwsError::Malformed)?;
    let sig = b64_decode(s).ok_or(JwsError::Malformed)?;
    if header.get("alg").and_then(Value::as_str) != Some(ALG) {
        return Err(JwsError::Header);
    }
    if FORBIDDEN_HEADER.iter().any(|k| header.contains_key(*k)) || header.contains_key("crit") {
        return Err(JwsError::Header);
    }
    let typ = match header.get("typ") {
        Some(Value::String(t)) => Some(t.to_ascii_lowercase()),
        None => None,
        Some(_) => return Err(JwsError::Header),
    };
    match (expected_typ, typ) {
        (Some(want), Some(typ)) => {
            let want = want.to_ascii_lowercase();
            if typ != want && typ != format!("application/{want}") {
                return Err(JwsError::Header);
            }
        }
        (Some(_), None) => return Err(JwsError::Header),
        // Client assertions (RFC 7523): `typ` absent or `JWT`; never another explicit type
        // such as `at+jwt` or `dpop+jwt` (RFC 8725 §3.11).
        (None, None) => {}
        (None, Some(typ)) if typ == "jwt" => {}
        (None, Some(_)) => return Err(JwsError::Header),
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) if k.len() <= 128 => Some(k.as_str()),
        Some(_) => return Err(JwsError::Header),
    };
    let key = keys(kid).ok_or(JwsError::UnknownKey)?;
    key.verify(&token.as_bytes()[..h.len() + 1 + p.len()], &sig)?;
    Ok((header, claims_raw))
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Strict base64url without padding (RFC 7515 §2); `None` for any other character or a
/// non-canonical trailing group.
pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    if !s.bytes().all(is_b64url) {
        return None;
    }
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// Parses a JSON object, rejecting duplicate member names at the top level.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JwsError> {
    struct Strict(Map<String, Value>);
    impl<'de> de::Deserialize<'de> for Strict {
        fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Strict;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Strict, A::Error> {
                    let mut seen = HashSet::new();
                    let mut out = Map::new();
                    while let Some(k) = m.next_key::<String>()? {
                        if !seen.insert(k.clone()) {
                            return Err(de::Error::custom("duplicate member"));
                        }
                        let v: Value = m.next_value()?;
                        out.insert(k, v);
                    }
                    Ok(Strict(out))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_slice::<Strict>(bytes).map(|s| s.0).map_err(|_| JwsError::Malformed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn signed(claims: Value) -> (EcSigningKey, String) {
        let (k, _) = EcSigningKey::generate().unwrap();
        let kid = k.public().thumbprint();
        let t = k.sign("at+jwt", &kid, &claims).unwrap();
        (k, t)
    }

    fn forge(header: Value, claims: Value, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()),
            URL_SAFE_NO_PAD.encode(sig)
        )
    }

    #[test]
    fn round_trip_and_tampering() {
        let (k, t) = signed(json!({"sub": "a"}));
        let pk = k.public().clone();
        let v = verify(&t, Some("at+jwt"), |_| Some(pk.clone())).unwrap();
        assert_eq!(v.claims["sub"], "a");
        assert_eq!(verify(&t, Some("dpop+jwt"), |_| Some(pk.clone())).unwrap_err(), JwsError::Header);
        let mut bad = t.clone().into_bytes();
        let i = t.find('.').unwrap() + 3;
        bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
        assert!(verify(std::str::from_utf8(&bad).unwrap(), Some("at+jwt"), |_| Some(pk.clone())).is_err());
        let (other, _) = EcSigningKey::generate().unwrap();
        assert_eq!(verify(&t, Some("at+jwt"), |_| Some(other.public().clone())).unwrap_err(), JwsError::Signature);
        assert_eq!(verify(&t, Some("at+jwt"), |_| None).unwrap_err(), JwsError::UnknownKey);
    }

    #[test]
    fn forbidden_headers_duplicates_and_shapes() {
        let (k, _) = EcSigningKey::generate().unwrap();
        let pk = k.public().clone();
        for extra in ["jwk", "jku", "x5u", "x5c", "crit"] {
            let t = forge(json!({"alg": "ES256", "typ": "at+jwt", extra: "x"}), json!({}), &[0; 64]);
            assert_eq!(verify(&t, Some("at+jwt"), |_| Some(pk.clone())).unwrap_err(), JwsError::Header, "{extra}");
        }
        for alg in ["none", "None", "HS256", "RS256", "es256"] {
            let t = forge(json!({"alg": alg, "typ": "at+jwt"}), json!({}), &[]);
            assert_eq!(verify(&t, Some("at+jwt"), |_| Some(pk.clone())).unwrap_err(), JwsError::Header, "{alg}");
        }
        let dup = format!("{}.{}.AA", URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","alg":"ES256","typ":"at+jwt"}"#), URL_SAFE_NO_PAD.encode(b"{}"));
        assert_eq!(verify(&dup, Some("at+jwt"), |_| Some(pk.clone())).unwrap_err(), JwsError::Malformed);
        for s in ["a.b", "a.b.c.d", "", "..", "a.b.c=", "{\"payload\":\"x\"}"] {
            assert!(verify(s, Some("at+jwt"), |_| Some(pk.clone())).is_err(), "{s}");
        }
        assert!(parse_object(br#"{"exp":1,"exp":2}"#).is_err());
    }

    #[test]
    fn jwk_parsing_and_thumbprint() {
        // RFC 7638 §3.1 uses RSA; check stability and private-member refusal instead.
        let (k, _) = EcSigningKey::generate().unwrap();
        let jwk = k.public().to_jwk();
        let back = EcPublicKey::from_jwk(&jwk).unwrap();
        assert_eq!(back.thumbprint(), k.public().thumbprint());
        assert_eq!(back.thumbprint().len(), 43);
        let mut private = jwk.clone();
        private["d"] = json!("AAAA");
        assert!(EcPublicKey::from_jwk(&private).is_err());
        let mut off = jwk.clone();
        off["y"] = json!(URL_SAFE_NO_PAD.encode([7u8; 32]));
        assert!(EcPublicKey::from_jwk(&off).is_err());
        let mut enc = jwk;
        enc["use"] = json!("enc");
        assert!(EcPublicKey::from_jwk(&enc).is_err());
    }
}
