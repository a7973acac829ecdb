//! RFC 9449 §4.3 checks, one by one (`token-security.md` T27–T29), with real ES256 and Ed25519
//! keys from aws-lc-rs.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::json;

use super::*;

const NOW: i64 = 1_800_000_000;
const URI: &str = "https://gw.example.com/v1/chat/completions";
const TOKEN: &str = "gthk_live_token";

struct Signer {
    es: EcdsaKeyPair,
}

impl Signer {
    fn new() -> Self {
        Self { es: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap() }
    }
    fn jwk(&self) -> Value {
        let p = self.es.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..65])})
    }
    fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        let c = URL_SAFE_NO_PAD.encode(claims.to_string());
        let sig = self.es.sign(&SystemRandom::new(), format!("{h}.{c}").as_bytes()).unwrap();
        format!("{h}.{c}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
    fn proof(&self, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
        let mut header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk()});
        let mut claims = json!({"jti": "e1j3V_bKic8-LAEB", "htm": "POST", "htu": URI, "iat": NOW, "ath": ath(TOKEN)});
        edit(&mut header, &mut claims);
        self.sign_raw(&header, &claims)
    }
}

fn ctx() -> ProofContext<'static> {
    ProofContext { method: "POST", uri: URI, access_token: Some(TOKEN), expected_nonce: None, now: NOW }
}

#[test]
fn rfc9449_example_thumbprint() {
    let jwk = json!({"kty":"EC","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA","crv":"P-256"});
    assert_eq!(jwk_thumbprint(jwk.as_object().unwrap()).unwrap(), "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
}

#[test]
fn a_valid_es256_proof_verifies_and_yields_the_key_thumbprint() {
    let s = Signer::new();
    let v = verify_proof(&s.proof(|_, _| {}), &ctx()).unwrap();
    assert_eq!(v.jkt, jwk_thumbprint(s.jwk().as_object().unwrap()).unwrap());
    assert_eq!((v.jti.as_str(), v.iat), ("e1j3V_bKic8-LAEB", NOW));
}

#[test]
fn a_valid_eddsa_proof_verifies() {
    let kp = Ed25519KeyPair::generate().unwrap();
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(kp.public_key().as_ref())});
    let h = URL_SAFE_NO_PAD.encode(json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk}).to_string());
    let c = URL_SAFE_NO_PAD.encode(json!({"jti": "x", "htm": "POST", "htu": URI, "iat": NOW, "ath": ath(TOKEN)}).to_string());
    let sig = kp.sign(format!("{h}.{c}").as_bytes());
    let proof = format!("{h}.{c}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
    assert!(verify_proof(&proof, &ctx()).is_ok());
}

#[test]
fn t27_each_negative_case_is_rejected_with_its_reason() {
    let s = Signer::new();
    let other = Signer::new();
    let cases: Vec<(&str, String, DpopError)> = vec![
        ("malformed", "not.a.jwt!".into(), DpopError::Malformed),
        ("two dots only", "a.b".into(), DpopError::Malformed),
        ("typ missing", s.proof(|h, _| { h.as_object_mut().unwrap().remove("typ"); }), DpopError::Typ),
        ("typ JWT", s.proof(|h, _| h["typ"] = json!("JWT")), DpopError::Typ),
        ("alg none", s.proof(|h, _| h["alg"] = json!("none")), DpopError::Alg),
        ("alg HS256", s.proof(|h, _| h["alg"] = json!("HS256")), DpopError::Alg),
        ("alg RS256", s.proof(|h, _| h["alg"] = json!("RS256")), DpopError::Alg),
        ("jwk missing", s.proof(|h, _| { h.as_object_mut().unwrap().remove("jwk"); }), DpopError::Jwk),
        ("private key in jwk", s.proof(|h, _| h["jwk"]["d"] = json!("AAAA")), DpopError::PrivateKey),
        ("EdDSA alg with EC key", s.proof(|h, _| h["alg"] = json!("EdDSA")), DpopError::Jwk),
        ("signed by another key", { let mut p = s.proof(|_, _| {}); let o = other.proof(|_, _| {}); p.truncate(p.rfind('.').unwrap()); p.push_str(&o[o.rfind('.').unwrap()..]); p }, DpopError::Signature),
        ("jwk of another key", s.proof(|h, _| h["jwk"] = other.jwk()), DpopError::Signature),
        ("jti missing", s.proof(|_, c| { c.as_object_mut().unwrap().remove("jti"); }), DpopError::Claims),
        ("jti too long", s.proof(|_, c| c["jti"] = json!("j".repeat(257))), DpopError::Claims),
        ("htm missing", s.proof(|_, c| { c.as_object_mut().unwrap().remove("htm"); }), DpopError::Claims),
        ("iat as string", s.proof(|_, c| c["iat"] = json!(NOW.to_string())), DpopError::Claims),
        ("htm PUT on POST", s.proof(|_, c| c["htm"] = json!("PUT")), DpopError::Htm),
        ("other URL", s.proof(|_, c| c["htu"] = json!("https://gw.example.com/v1/embeddings")), DpopError::Htu),
        ("other host", s.proof(|_, c| c["htu"] = json!("https://evil.example.com/v1/chat/completions")), DpopError::Htu),
        ("iat -1 h", s.proof(|_, c| c["iat"] = json!(NOW - 3600)), DpopError::Iat),
        ("iat +1 h", s.proof(|_, c| c["iat"] = json!(NOW + 3600)), DpopError::Iat),
        ("iat +11 s", s.proof(|_, c| c["iat"] = json!(NOW + 11)), DpopError::Iat),
        ("ath missing", s.proof(|_, c| { c.as_object_mut().unwrap().remove("ath"); }), DpopError::Ath),
        ("ath of another token", s.proof(|_, c| c["ath"] = json!(ath("other"))), DpopError::Ath),
    ];
    for (name, proof, want) in cases {
        assert_eq!(verify_proof(&proof, &ctx()), Err(want), "{name}");
    }
    // duplicate header members are refused
    let h = URL_SAFE_NO_PAD.encode(r#"{"typ":"dpop+jwt","typ":"dpop+jwt","alg":"ES256"}"#);
    assert_eq!(verify_proof(&format!("{h}.e30.AA"), &ctx()), Err(DpopError::Malformed));
    // nonce demanded but absent or different
    let with_nonce = ProofContext { expected_nonce: Some("n-1"), ..ctx() };
    assert_eq!(verify_proof(&s.proof(|_, _| {}), &with_nonce), Err(DpopError::NonceRequired));
    assert_eq!(verify_proof(&s.proof(|_, c| c["nonce"] = json!("n-0")), &with_nonce), Err(DpopError::NonceRequired));
    assert!(verify_proof(&s.proof(|_, c| c["nonce"] = json!("n-1")), &with_nonce).is_ok());
    assert_eq!(DpopError::NonceRequired.code(), "use_dpop_nonce");
    assert_eq!(DpopError::Htu.code(), "invalid_dpop_proof");
}

#[test]
fn t29_htu_with_query_fragment_upper_case_host_default_port_and_iat_skew_are_accepted() {
    let s = Signer::new();
    for htu in [
        "https://gw.example.com/v1/chat/completions?x=1",
        "https://gw.example.com/v1/chat/completions#frag",
        "https://GW.Example.COM/v1/chat/completions",
        "HTTPS://gw.example.com:443/v1/chat/completions",
    ] {
        assert!(verify_proof(&s.proof(|_, c| c["htu"] = json!(htu)), &ctx()).is_ok(), "{htu}");
    }
    for iat in [NOW - 10, NOW + 10, NOW - 60] {
        assert!(verify_proof(&s.proof(|_, c| c["iat"] = json!(iat)), &ctx()).is_ok(), "{iat}");
    }
    // unknown extra claims are fine; without an access token no ath is needed
    assert!(verify_proof(&s.proof(|_, c| c["extra"] = json!({"a": 1})), &ctx()).is_ok());
    let no_token = ProofContext { access_token: None, ..ctx() };
    assert!(verify_proof(&s.proof(|_, c| { c.as_object_mut().unwrap().remove("ath"); }), &no_token).is_ok());
    assert_eq!(normalize_htu("http://h:80"), Some("http://h/".into()));
    assert_eq!(normalize_htu("http://h:8080/a?b"), Some("http://h:8080/a".into()));
    assert_eq!(normalize_htu("ftp://h/a"), None);
    assert_eq!(normalize_htu("https://user@h/a"), None);
}

#[test]
fn replay_window_accepts_a_jti_once_per_window() {
    let w = ReplayWindow::new(Duration::from_secs(90), 2);
    let t0 = Instant::now();
    assert!(w.first_use([1; 32], t0));
    assert!(!w.first_use([1; 32], t0 + Duration::from_secs(89)));
    assert!(w.first_use([1; 32], t0 + Duration::from_secs(91)));
    assert!(w.first_use([2; 32], t0 + Duration::from_secs(91)));
    // full of live entries → refused (fail closed)
    assert!(!w.first_use([3; 32], t0 + Duration::from_secs(92)));
}
