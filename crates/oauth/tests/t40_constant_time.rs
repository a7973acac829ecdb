//! T40 (`token-security.md` §4.4), the structural half: timing is never asserted in tests
//! (house rule), so this checks *how* secrets are compared. The measured half is the
//! `t40_secret_checks` benchmark (`cargo bench -p gatehouse-oauth`, figures in BENCHMARKS.md).
//!
//! * OAuth client secrets (`client_secret_basic`, RFC 6749 §2.3.1) are compared as keyed
//!   HMAC digests through `subtle::ConstantTimeEq`, never with `==`.
//! * The digest is computed before the lookup result is inspected, so an unknown client id and a
//!   known id with a wrong secret do the same work.

/// The text of `fn name` in `src` (from its signature to the next top-level item of the impl).
fn function_body<'a>(src: &'a str, name: &str) -> &'a str {
    let start = src.find(&format!("pub async fn {name}(")).unwrap_or_else(|| panic!("fn {name} not found"));
    let rest = &src[start..];
    let end = rest[1..].find("\n    pub ").or_else(|| rest[1..].find("\n    fn ")).map_or(rest.len(), |e| e + 1);
    &rest[..end]
}

#[test]
fn t40_client_secrets_are_compared_in_constant_time() {
    let src = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/tokens.rs"));
    assert!(src.contains("use subtle::ConstantTimeEq;"), "tokens.rs must use subtle's constant-time equality");
    let body = function_body(src, "authenticate_basic");
    // the comparison of the presented secret's digest with the stored one
    assert!(body.contains(".ct_eq("), "authenticate_basic must compare digests with ct_eq:\n{body}");
    for forbidden in ["== expected", "!= expected", "expected ==", "expected !=", "== client.secret_digest", "secret_digest =="] {
        assert!(!body.contains(forbidden), "authenticate_basic compares the secret with `{forbidden}`");
    }
    // the digest is computed whether or not the client exists (same work for unknown ids)
    let digest_at = body.find("digest_with(").expect("the presented secret is digested with the pepper");
    let unknown_at = body.find("let Some(client) = client else").expect("the unknown-client branch");
    let compare_at = body.find(".ct_eq(").unwrap_or(0);
    assert!(digest_at < unknown_at, "the HMAC must run before an unknown client returns early");
    assert!(digest_at < compare_at);
    assert!(body.contains("unwrap_or([0; 32])"), "a missing digest must still be compared (fixed-size dummy)");
}
