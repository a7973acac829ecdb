//! Client request headers forwarded to the upstream. Only `anthropic-beta` (Anthropic's feature
//! flags, `wire-formats.md` §2.1: `anthropic-beta: <flag>[,<flag>…]`) is forwarded, from any
//! inbound API (the Anthropic SDKs send it on `/v1/messages`; OpenAI clients may add it as an
//! extra header), and only to Anthropic upstreams (`gatehouse_providers::Target::anthropic_beta`).
//! Nothing else a client sends reaches a provider as a header.

use gatehouse_types::{ApiError, ErrorCode};
use http::HeaderMap;

/// The header name (lowercase, as HTTP/2 sends it).
pub const ANTHROPIC_BETA: &str = "anthropic-beta";

/// Most flags accepted in one request.
pub const MAX_BETA_FLAGS: usize = 16;

/// Longest single flag (bytes); real flags look like `interleaved-thinking-2025-05-14`.
pub const MAX_BETA_FLAG_LEN: usize = 64;

/// The client's `anthropic-beta` flags, joined with `,` (repeated headers are merged, blanks
/// dropped), or `None` without the header.
///
/// Errors: 400 `invalid_request` (param `anthropic-beta`) for a value that is not visible ASCII,
/// a flag outside `[A-Za-z0-9._-]`, longer than [`MAX_BETA_FLAG_LEN`], or more than
/// [`MAX_BETA_FLAGS`] flags. Unknown flags are Anthropic's to refuse (it answers 400).
pub fn anthropic_beta(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let bad = |m: &str| ApiError::new(ErrorCode::InvalidRequest, format!("the anthropic-beta header {m}")).with_param(ANTHROPIC_BETA);
    let mut flags: Vec<&str> = Vec::new();
    for v in headers.get_all(ANTHROPIC_BETA) {
        let v = v.to_str().map_err(|_| bad("must be ASCII"))?;
        for flag in v.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            if flag.len() > MAX_BETA_FLAG_LEN || !flag.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
                return Err(bad("takes comma-separated flags of letters, digits, `-`, `_` and `.`"));
            }
            if !flags.contains(&flag) {
                flags.push(flag);
            }
        }
    }
    if flags.len() > MAX_BETA_FLAGS {
        return Err(bad(&format!("takes at most {MAX_BETA_FLAGS} flags")));
    }
    Ok((!flags.is_empty()).then(|| flags.join(",")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(values: &[&str]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for v in values {
            m.append(ANTHROPIC_BETA, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn flags_are_merged_and_checked() {
        assert_eq!(anthropic_beta(&h(&[])).unwrap(), None);
        assert_eq!(anthropic_beta(&h(&[" , "])).unwrap(), None);
        assert_eq!(
            anthropic_beta(&h(&["interleaved-thinking-2025-05-14, context-1m-2025-08-07", "interleaved-thinking-2025-05-14"])).unwrap().as_deref(),
            Some("interleaved-thinking-2025-05-14,context-1m-2025-08-07")
        );
        let long = "x".repeat(MAX_BETA_FLAG_LEN + 1);
        let many = (0..=MAX_BETA_FLAGS).map(|i| format!("f{i}")).collect::<Vec<_>>().join(",");
        for bad in ["a b", "a;b", "flag=1", long.as_str(), many.as_str()] {
            let e = anthropic_beta(&h(&[bad])).unwrap_err();
            assert_eq!((e.code, e.param.as_deref()), (ErrorCode::InvalidRequest, Some(ANTHROPIC_BETA)), "{bad}");
        }
        let mut m = HeaderMap::new();
        m.insert(ANTHROPIC_BETA, HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        assert!(anthropic_beta(&m).is_err());
    }
}
