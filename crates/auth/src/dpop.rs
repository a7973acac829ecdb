//! DPoP proof verification (RFC 9449 §4.3; `token-security.md` §1.8, G-7, G-10) as one pure
//! function, [`verify_proof`], shared by the data plane and the token endpoint, plus the
//! RFC 7638 thumbprint ([`jwk_thumbprint`]) that binds a credential (`jkt`), `htu`
//! normalisation ([`normalize_htu`]) and an in-memory `jti` replay window ([`ReplayWindow`]).
//!
//! Checks, all of which must pass: compact JWS with three base64url parts; header is a JSON
//! object without duplicate members; `typ` = `dpop+jwt`; `alg` ∈ {`ES256`, `EdDSA`} (never
//! `none`, never a MAC); `jwk` present, public only (no `d`), and of the family `alg` names (EC
//! P-256 / OKP Ed25519); signature valid under that `jwk`; claims `jti` (1..=256 bytes), `htm`,
//! `htu`, `iat` present with the right JSON types; `htm` = request method; `htu` = request URI
//! after normalisation (scheme and host lower-cased, default port dropped, query and fragment
//! ignored); `iat` ∈ [now − 60 s, now + 10 s] (G-10); `ath` = base64url(SHA-256(access token))
//! when a token is presented; `nonce` equal to the expected one when the server demands nonces.
//! Unknown extra claims are accepted (OpenID conformance suite).
//!
//! Replay (`jti` seen before) is not decided here: callers pass [`VerifiedProof::replay_key`] to
//! a [`ReplayWindow`] (in memory now; Redis `SET NX EX` for multi-node).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ED25519, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

/// Algorithms accepted in proofs, as advertised in `DPoP algs="…"` challenges and
/// `dpop_signing_alg_values_supported`.
pub const SUPPORTED_ALGS: &[&str] = &["ES256", "EdDSA"];
/// Oldest accepted proof, seconds before now (G-10).
pub const MAX_AGE_SECS: i64 = 60;
/// Newest accepted proof, seconds after now (G-10).
pub const MAX_FUTURE_SECS: i64 = 10;
/// How long a `jti` is remembered: longer than the acceptance window (§5.4: ≈ 90 s).
pub const REPLAY_WINDOW: Duration = Duration::from_secs(90);
/// Longest proof accepted (bytes).
pub const MAX_PROOF_LEN: usize = 8192;

/// What the request looks like to the server.
#[derive(Debug, Clone, Copy)]
pub struct ProofContext<'a> {
    /// HTTP method, e.g. `POST`.
    pub method: &'a str,
    /// The request URI as the server sees it (`https://host[:port]/path[?query]`).
    pub uri: &'a str,
    /// The access token presented with the proof (`Authorization: DPoP <token>`), if any.
    pub access_token: Option<&'a str>,
    /// The nonce the server currently demands, if it uses nonces.
    pub expected_nonce: Option<&'a str>,
    /// Current time, Unix seconds.
    pub now: i64,
}

/// A proof that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// RFC 7638 SHA-256 thumbprint of the proof key (compare with the credential's `jkt`).
    pub jkt: String,
    /// The proof's `jti`.
    pub jti: String,
    /// The proof's `iat` (Unix seconds).
    pub iat: i64,
    /// Normalised `htu`.
    pub htu: String,
    /// The proof's `nonce` claim, if any (for servers that check nonces themselves instead of
    /// passing [`ProofContext::expected_nonce`]).
    pub nonce: Option<String>,
}

impl VerifiedProof {
    /// Key for the replay window: hex SHA-256 over `htu` and `jti` (bounded size, §11.1).
    pub fn replay_key(&self) -> [u8; 32] {
        let mut input = Vec::with_capacity(self.htu.len() + self.jti.len() + 1);
        input.extend_from_slice(self.htu.as_bytes());
        input.push(0);
        input.extend_from_slice(self.jti.as_bytes());
        let d = digest(&SHA256, &input);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }
}

/// Why a proof was rejected. Every variant maps to `invalid_dpop_proof` except
/// [`DpopError::NonceRequired`] (`use_dpop_nonce`). Messages never contain proof content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpopError {
    /// Not a compact JWS, bad base64url, not JSON objects, duplicate members, too long.
    Malformed,
    /// `typ` is not `dpop+jwt`.
    Typ,
    /// `alg` missing, `none`, symmetric or unsupported.
    Alg,
    /// `jwk` missing, malformed, of another family than `alg`, or not on the curve.
    Jwk,
    /// `jwk` contains private key material.
    PrivateKey,
    /// The signature does not verify.
    Signature,
    /// A required claim is missing or has the wrong JSON type.
    Claims,
    /// `htm` differs from the request method.
    Htm,
    /// `htu` differs from the request URI.
    Htu,
    /// `iat` outside the acceptance window.
    Iat,
    /// `ath` missing or not the hash of the presented token.
    Ath,
    /// The server demands a nonce and the proof has none or another one.
    NonceRequired,
}

impl DpopError {
    /// The RFC 9449 error code: `use_dpop_nonce` or `invalid_dpop_proof`.
    pub fn code(self) -> &'static str {
        if self == Self::NonceRequired { "use_dpop_nonce" } else { "invalid_dpop_proof" }
    }

    /// Short internal reason for audit records.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "dpop_malformed",
            Self::Typ => "dpop_typ",
            Self::Alg => "dpop_alg",
            Self::Jwk => "dpop_jwk",
            Self::PrivateKey => "dpop_private_key",
            Self::Signature => "dpop_signature",
            Self::Claims => "dpop_claims",
            Self::Htm => "dpop_htm",
            Self::Htu => "dpop_htu",
            Self::Iat => "dpop_iat",
            Self::Ath => "dpop_ath",
            Self::NonceRequired => "dpop_nonce",
        }
    }
}

impl fmt::Display for DpopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NonceRequired => "a DPoP nonce is required",
            _ => "the DPoP proof is invalid",
        })
    }
}

impl std::error::Error for DpopError {}

/// A JSON object that refuses duplicate member names (RFC 7515 §4: gateway rule "reject").
struct StrictObject(Map<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<StrictObject, A::Error> {
                let mut m = Map::new();
                while let Some((k, v)) = a.next_entry::<String, Value>()? {
                    if m.contains_key(&k) {
                        return Err(serde::de::Error::custom("duplicate member"));
                    }
                    m.insert(k, v);
                }
                Ok(StrictObject(m))
            }
        }
        d.deserialize_map(V)
    }
}

fn b64(s: &str) -> Result<Vec<u8>, DpopError> {
    URL_SAFE_NO_PAD.decode(s).map_err(|_| DpopError::Malformed)
}

fn object(part: &str) -> Result<Map<String, Value>, DpopError> {
    let bytes = b64(part)?;
    serde_json::from_slice::<StrictObject>(&bytes).map(|o| o.0).map_err(|_| DpopError::Malformed)
}

/// base64url(SHA-256(ASCII token)), the `ath` of a proof sent with `token` (RFC 9449 §4.2).
pub fn ath(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, token.as_bytes()))
}

/// RFC 7638 thumbprint (SHA-256, base64url) of a public JWK: over the required members only, in
/// lexicographic order, without whitespace (EC: `crv`,`kty`,`x`,`y`; OKP: `crv`,`kty`,`x`).
///
/// Errors: [`DpopError::Jwk`] for other key types or missing/non-string members.
pub fn jwk_thumbprint(jwk: &Map<String, Value>) -> Result<String, DpopError> {
    let get = |k: &str| jwk.get(k).and_then(Value::as_str).ok_or(DpopError::Jwk);
    let canonical = match get("kty")? {
        "EC" => format!(
            r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
            Value::from(get("crv")?),
            Value::from(get("x")?),
            Value::from(get("y")?)
        ),
        "OKP" => format!(r#"{{"crv":{},"kty":"OKP","x":{}}}"#, Value::from(get("crv")?), Value::from(get("x")?)),
        _ => return Err(DpopError::Jwk),
    };
    Ok(URL_SAFE_NO_PAD.encode(digest(&SHA256, canonical.as_bytes())))
}

/// Normalises an `htu` or request URI for comparison (RFC 3986 §6.2.2–6.2.3): scheme and host
/// lower-cased, default port (80 for http, 443 for https) dropped, empty path → `/`, query and
/// fragment removed. `None` for anything that is not an absolute http(s) URI.
pub fn normalize_htu(uri: &str) -> Option<String> {
    let uri = uri.split(['#', '?']).next()?;
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let authority = authority.to_ascii_lowercase();
    let default = if scheme == "http" { ":80" } else { ":443" };
    let authority = authority.strip_suffix(default).unwrap_or(&authority);
    Some(format!("{scheme}://{authority}{path}"))
}

/// Verifies one DPoP proof against the request (module doc). Pure: no clock, no I/O, no state.
pub fn verify_proof(proof: &str, ctx: &ProofContext<'_>) -> Result<VerifiedProof, DpopError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(DpopError::Malformed);
    }
    let mut parts = proof.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(DpopError::Malformed);
    };
    let header = object(h)?;
    let claims = object(p)?;
    let signature = b64(s)?;

    if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(DpopError::Typ);
    }
    let alg = header.get("alg").and_then(Value::as_str).ok_or(DpopError::Alg)?;
    if !SUPPORTED_ALGS.contains(&alg) {
        return Err(DpopError::Alg);
    }
    if header.contains_key("crit") {
        return Err(DpopError::Malformed);
    }
    let jwk = header.get("jwk").and_then(Value::as_object).ok_or(DpopError::Jwk)?;
    if ["d", "p", "q", "dp", "dq", "qi", "k"].iter().any(|m| jwk.contains_key(*m)) {
        return Err(DpopError::PrivateKey);
    }
    let member = |k: &str| jwk.get(k).and_then(Value::as_str).ok_or(DpopError::Jwk);
    let signed = format!("{h}.{p}");
    match alg {
        "ES256" => {
            if member("kty")? != "EC" || member("crv")? != "P-256" {
                return Err(DpopError::Jwk);
            }
            let x = b64(member("x")?).map_err(|_| DpopError::Jwk)?;
            let y = b64(member("y")?).map_err(|_| DpopError::Jwk)?;
            if x.len() != 32 || y.len() != 32 || signature.len() != 64 {
                return Err(if signature.len() != 64 { DpopError::Signature } else { DpopError::Jwk });
            }
            let mut point = Vec::with_capacity(65);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
                .verify(signed.as_bytes(), &signature)
                .map_err(|_| DpopError::Signature)?;
        }
        _ => {
            if member("kty")? != "OKP" || member("crv")? != "Ed25519" {
                return Err(DpopError::Jwk);
            }
            let x = b64(member("x")?).map_err(|_| DpopError::Jwk)?;
            if x.len() != 32 {
                return Err(DpopError::Jwk);
            }
            UnparsedPublicKey::new(&ED25519, &x).verify(signed.as_bytes(), &signature).map_err(|_| DpopError::Signature)?;
        }
    }

    let jti = claims.get("jti").and_then(Value::as_str).filter(|j| !j.is_empty() && j.len() <= 256).ok_or(DpopError::Claims)?;
    let htm = claims.get("htm").and_then(Value::as_str).ok_or(DpopError::Claims)?;
    let htu = claims.get("htu").and_then(Value::as_str).ok_or(DpopError::Claims)?;
    let iat = claims.get("iat").and_then(Value::as_i64).ok_or(DpopError::Claims)?;
    if htm != ctx.method {
        return Err(DpopError::Htm);
    }
    let htu_norm = normalize_htu(htu).ok_or(DpopError::Htu)?;
    if Some(&htu_norm) != normalize_htu(ctx.uri).as_ref() {
        return Err(DpopError::Htu);
    }
    if iat < ctx.now - MAX_AGE_SECS || iat > ctx.now + MAX_FUTURE_SECS {
        return Err(DpopError::Iat);
    }
    if let Some(token) = ctx.access_token {
        match claims.get("ath").and_then(Value::as_str) {
            Some(a) if a == ath(token) => {}
            _ => return Err(DpopError::Ath),
        }
    }
    if let Some(expected) = ctx.expected_nonce
        && claims.get("nonce").and_then(Value::as_str) != Some(expected)
    {
        return Err(DpopError::NonceRequired);
    }
    let nonce = claims.get("nonce").and_then(Value::as_str).map(str::to_string);
    Ok(VerifiedProof { jkt: jwk_thumbprint(jwk)?, jti: jti.to_string(), iat, htu: htu_norm, nonce })
}

/// An in-memory `jti` replay window (single node; RFC 9449 §11.1). Bounded: when full, expired
/// entries are purged, and if still full the proof is refused (fail closed).
pub struct ReplayWindow {
    seen: Mutex<HashMap<[u8; 32], Instant>>,
    ttl: Duration,
    capacity: usize,
}

impl ReplayWindow {
    /// A window remembering keys for `ttl`, at most `capacity` at once.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self { seen: Mutex::new(HashMap::new()), ttl, capacity }
    }

    /// Records `key`; true if it was not seen within the window (first use), false on replay
    /// (or when the window is full of live entries).
    pub fn first_use(&self, key: [u8; 32], now: Instant) -> bool {
        let Ok(mut seen) = self.seen.lock() else { return false };
        if let Some(at) = seen.get(&key)
            && now.duration_since(*at) < self.ttl
        {
            return false;
        }
        if seen.len() >= self.capacity {
            let ttl = self.ttl;
            seen.retain(|_, at| now.duration_since(*at) < ttl);
            if seen.len() >= self.capacity {
                return false;
            }
        }
        seen.insert(key, now);
        true
    }
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new(REPLAY_WINDOW, 1_000_000)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
