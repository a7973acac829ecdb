//! Credential formats (G-3, `token-security.md` §2.2).
//!
//! `<prefix>_<env>_<body><check>`:
//! * prefix: `gthk` API key, `gtha` access token, `gths` single-use token, `gthc` OAuth client
//!   secret, `gtho` operator (admin API) token (DESIGN.md "Key formats");
//! * env: `live` or `test`;
//! * body: 43 base62 characters encoding 32 random bytes (62^43 > 2^256, left-padded with `0`);
//! * check: 6 base62 characters of CRC32 (IEEE) over `<prefix>_<env>_<body>` (62^6 > 2^32).
//!
//! The checksum is not a security control: it lets the gateway drop typos and garbage before
//! touching the database, and lets secret scanners confirm a hit offline.

use secrecy::SecretString;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Length of the random body in base62 characters.
pub const BODY_LEN: usize = 43;
/// Length of the checksum in base62 characters.
pub const CHECK_LEN: usize = 6;
/// Longest credential we accept at all (GitHub's advice: parsers accept up to 255).
pub const MAX_LEN: usize = 255;

/// The type of a credential, fixed by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// `gthk_`: API key of an app.
    ApiKey,
    /// `gtha_`: short-lived opaque access token.
    Access,
    /// `gths_`: single-use token.
    SingleUse,
    /// `gthc_`: OAuth client secret.
    ClientSecret,
    /// `gtho_`: operator token for the admin API.
    Operator,
}

impl TokenKind {
    /// The prefix without the trailing underscore, e.g. `gthk`.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::ApiKey => "gthk",
            Self::Access => "gtha",
            Self::SingleUse => "gths",
            Self::ClientSecret => "gthc",
            Self::Operator => "gtho",
        }
    }

    fn from_prefix(p: &str) -> Option<Self> {
        Some(match p {
            "gthk" => Self::ApiKey,
            "gtha" => Self::Access,
            "gths" => Self::SingleUse,
            "gthc" => Self::ClientSecret,
            "gtho" => Self::Operator,
            _ => return None,
        })
    }
}

/// The deployment environment a credential belongs to; a `test` key never authenticates on a
/// `live` deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Env {
    #[default]
    Live,
    Test,
}

impl Env {
    /// `live` or `test`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Test => "test",
        }
    }

    /// Parses `live` / `test`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "live" => Some(Self::Live),
            "test" => Some(Self::Test),
            _ => None,
        }
    }
}

/// A freshly generated credential: the plaintext (to show exactly once) and its display hint.
pub struct GeneratedToken {
    pub token: SecretString,
    /// `<prefix>_<env>_…` plus the last 4 characters of the body, e.g. `gthk_live_…x9Qa`.
    pub hint: String,
}

/// What the format of a credential says about it (nothing here is verified against a store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedToken {
    pub kind: TokenKind,
    pub env: Env,
}

/// Why a string is not a well-formed Gatehouse credential. Callers answer all of these with
/// 401 `invalid_token` and the same generic message (`token-security.md` §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenFormatError {
    #[error("token too long")]
    TooLong,
    #[error("unknown token prefix")]
    UnknownPrefix,
    #[error("unknown token environment")]
    UnknownEnv,
    #[error("token body has the wrong length or characters")]
    BadBody,
    #[error("token checksum mismatch")]
    BadChecksum,
}

/// Generates a new credential of `kind` for `env` from the OS CSPRNG.
///
/// Errors only if the OS has no entropy source.
pub fn generate(kind: TokenKind, env: Env) -> Result<GeneratedToken, getrandom::Error> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)?;
    let body = base62_fixed(&raw, BODY_LEN);
    let mut s = String::with_capacity(4 + 1 + 4 + 1 + BODY_LEN + CHECK_LEN);
    s.push_str(kind.prefix());
    s.push('_');
    s.push_str(env.as_str());
    s.push('_');
    s.push_str(&body);
    let check = checksum(s.as_bytes());
    s.push_str(&check);
    let hint = hint(&s);
    Ok(GeneratedToken { token: SecretString::from(s), hint })
}

/// The display hint of a credential: everything up to and including the env, `…`, and the last
/// four characters of the body (never the checksum). For strings that are not ours: `…` + last 4.
pub fn hint(token: &str) -> String {
    let parts: Vec<&str> = token.splitn(3, '_').collect();
    if let [prefix, env, rest] = parts.as_slice() {
        if rest.len() > CHECK_LEN + 4 && rest.is_ascii() {
            let body = &rest[..rest.len() - CHECK_LEN];
            return format!("{prefix}_{env}_…{}", &body[body.len() - 4..]);
        }
    }
    let tail: String = token.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("…{tail}")
}

/// Checks the format of `token` offline: length, prefix, env, base62 body and CRC32 checksum.
/// O(n), no allocation, no I/O.
pub fn parse(token: &str) -> Result<ParsedToken, TokenFormatError> {
    if token.len() > MAX_LEN {
        return Err(TokenFormatError::TooLong);
    }
    let bytes = token.as_bytes();
    let (prefix, rest) = token.split_once('_').ok_or(TokenFormatError::UnknownPrefix)?;
    let kind = TokenKind::from_prefix(prefix).ok_or(TokenFormatError::UnknownPrefix)?;
    let (env, payload) = rest.split_once('_').ok_or(TokenFormatError::UnknownEnv)?;
    let env = Env::parse(env).ok_or(TokenFormatError::UnknownEnv)?;
    if payload.len() < BODY_LEN + CHECK_LEN || !payload.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(TokenFormatError::BadBody);
    }
    let split = bytes.len() - CHECK_LEN;
    let expected = checksum(&bytes[..split]);
    if expected.as_bytes() != &bytes[split..] {
        return Err(TokenFormatError::BadChecksum);
    }
    Ok(ParsedToken { kind, env })
}

/// Base62 of CRC32 (IEEE) over `data`, fixed width [`CHECK_LEN`].
fn checksum(data: &[u8]) -> String {
    let crc = crc32fast::hash(data);
    base62_fixed(&crc.to_be_bytes(), CHECK_LEN)
}

/// Big-endian base62 of `bytes`, left-padded with `0` to `width` characters.
fn base62_fixed(bytes: &[u8], width: usize) -> String {
    // Repeated division of a big-endian byte string by 62; inputs are at most 32 bytes.
    let mut num: Vec<u8> = bytes.to_vec();
    let mut out = vec![b'0'; width];
    let mut pos = width;
    while num.iter().any(|&b| b != 0) && pos > 0 {
        let mut rem: u32 = 0;
        for byte in num.iter_mut() {
            let acc = (rem << 8) | u32::from(*byte);
            *byte = (acc / 62) as u8;
            rem = acc % 62;
        }
        pos -= 1;
        out[pos] = ALPHABET[rem as usize];
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn generated_tokens_parse_and_have_the_documented_shape() {
        for kind in [TokenKind::ApiKey, TokenKind::Access, TokenKind::SingleUse, TokenKind::ClientSecret, TokenKind::Operator] {
            for env in [Env::Live, Env::Test] {
                let g = generate(kind, env).unwrap();
                let t = g.token.expose_secret();
                assert_eq!(t.len(), 4 + 1 + env.as_str().len() + 1 + BODY_LEN + CHECK_LEN);
                assert!(t.starts_with(&format!("{}_{}_", kind.prefix(), env.as_str())));
                assert_eq!(parse(t), Ok(ParsedToken { kind, env }));
                assert!(g.hint.starts_with(&format!("{}_{}_…", kind.prefix(), env.as_str())));
                assert!(!g.hint.contains(&t[10..40]));
            }
        }
    }

    #[test]
    fn every_single_character_change_is_caught() {
        let g = generate(TokenKind::ApiKey, Env::Live).unwrap();
        let t = g.token.expose_secret().to_string();
        for i in 10..t.len() {
            let mut b = t.clone().into_bytes();
            b[i] = if b[i] == b'a' { b'b' } else { b'a' };
            let s = String::from_utf8(b).unwrap();
            assert!(parse(&s).is_err(), "position {i}");
        }
    }

    #[test]
    fn malformed_inputs_are_rejected_without_panic() {
        let cases = ["", "_", "gthk", "gthk_", "gthk_live_", "gthk_prod_abc", "sk-abc", "gthk_live_ä€😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀"];
        for c in cases {
            assert!(parse(c).is_err(), "{c}");
        }
        assert_eq!(parse(&"a".repeat(300)), Err(TokenFormatError::TooLong));
    }

    #[test]
    fn base62_pads_and_encodes() {
        assert_eq!(base62_fixed(&[0, 0], 3), "000");
        assert_eq!(base62_fixed(&[61], 2), "0z");
        assert_eq!(base62_fixed(&[62], 2), "10");
        assert_eq!(base62_fixed(&[0xff; 32], BODY_LEN).len(), BODY_LEN);
        assert_ne!(base62_fixed(&[0xff; 32], BODY_LEN).as_bytes()[0], b'0');
    }
}
