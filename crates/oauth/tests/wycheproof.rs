//! C2SP/wycheproof JSON-web vectors (`shared/testdata/wycheproof/json_web_signature_test.json`,
//! `json_web_key_test.json`) through our verifier (`token-security.md` §4.2). We accept only
//! ES256 with P-256 keys from a trusted set: every `invalid` vector must be rejected, every
//! `valid` ES256 vector accepted; `valid` vectors of other algorithms must be rejected too (not
//! supported) and are counted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;

use gatehouse_oauth::jws::{self, EcPublicKey};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/../../../shared/testdata/wycheproof/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

/// The trusted keys of a group: public members only (a private JWK is reduced to its public
/// part as a verifier would publish it); a set with duplicate `kid`s is refused as a whole.
fn keys(group: &Value) -> Vec<(Option<String>, EcPublicKey)> {
    let src = group.get("public").or_else(|| group.get("private")).cloned().unwrap_or(Value::Null);
    let list: Vec<Value> = match src.get("keys") {
        Some(Value::Array(a)) => a.clone(),
        _ => vec![src],
    };
    let mut kids = HashSet::new();
    if list.iter().filter_map(|k| k.get("kid").and_then(Value::as_str)).any(|k| !kids.insert(k.to_string())) {
        return vec![];
    }
    list.into_iter()
        .filter_map(|mut k| {
            if let Some(o) = k.as_object_mut() {
                o.remove("d");
            }
            let kid = k.get("kid").and_then(Value::as_str).map(str::to_string);
            EcPublicKey::from_jwk(&k).ok().map(|key| (kid, key))
        })
        .collect()
}

fn run(file: &str) -> (usize, usize, usize) {
    let data = load(file);
    let (mut rejected_invalid, mut accepted_valid, mut unsupported_valid) = (0, 0, 0);
    for group in data["testGroups"].as_array().unwrap() {
        let ring = keys(group);
        for t in group["tests"].as_array().unwrap() {
            let jws_str = t["jws"].as_str().map(str::to_string).unwrap_or_else(|| t["jws"].to_string());
            let verdict = jws::verify_raw(&jws_str, None, |kid| {
                ring.iter().find(|(k, _)| kid.is_none() || k.as_deref() == kid).map(|(_, key)| key.clone())
            });
            let id = &t["tcId"];
            match t["result"].as_str().unwrap() {
                "invalid" => {
                    assert!(verdict.is_err(), "{file} tcId {id} ({}) was accepted", t["comment"]);
                    rejected_invalid += 1;
                }
                "valid" => {
                    let es256 = jws_str.split('.').next().and_then(jws::b64_decode).and_then(|h| jws::parse_object(&h).ok()).is_some_and(|h| h.get("alg").and_then(Value::as_str) == Some("ES256"));
                    if es256 && !ring.is_empty() {
                        assert!(verdict.is_ok(), "{file} tcId {id} ({}) was rejected", t["comment"]);
                        accepted_valid += 1;
                    } else {
                        assert!(verdict.is_err(), "{file} tcId {id}: non-ES256 accepted");
                        unsupported_valid += 1;
                    }
                }
                other => panic!("unknown result {other}"),
            }
        }
    }
    (rejected_invalid, accepted_valid, unsupported_valid)
}

#[test]
fn wycheproof_json_web_signature_vectors() {
    let (invalid, valid, unsupported) = run("json_web_signature_test.json");
    println!("jws: {invalid} invalid rejected, {valid} valid ES256 accepted, {unsupported} valid non-ES256 rejected (unsupported)");
    assert!(invalid > 100 && valid >= 1, "{invalid} {valid}");
}

#[test]
fn wycheproof_json_web_key_vectors() {
    let (invalid, valid, unsupported) = run("json_web_key_test.json");
    println!("jwk: {invalid} invalid rejected, {valid} valid ES256 accepted, {unsupported} valid non-ES256 rejected (unsupported)");
    assert!(invalid >= 10, "{invalid}");
}
