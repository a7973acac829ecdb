//! `POST /admin/v1/providers` for kind `bedrock`: the secret is a Bedrock API key or an AWS
//! credential set; a malformed credential set is a 400 naming `api_key`, never echoing it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gatehouse_admin::service::UpsertProviderRequest;
use serde_json::json;

#[test]
fn bedrock_secrets_are_checked_at_the_door() {
    let body = |key: &str| json!({"name": "bedrock", "kind": "bedrock", "api_key": key}).to_string();
    assert!(UpsertProviderRequest::from_json(body("ABSKQmVkcm9ja0FQSUtleQ==").as_bytes()).is_ok());
    let creds = gatehouse_types::aws::credentials_secret("AKIDEXAMPLE", "s3cr3t-canary", Some("tok"), Some("eu-west-1"));
    let ok = UpsertProviderRequest::from_json(body(&creds).as_bytes()).unwrap();
    assert_eq!(ok.kind, gatehouse_types::ProviderKind::Bedrock);
    let Err(e) = UpsertProviderRequest::from_json(body(r#"{"access_key_id":"AKIDEXAMPLE","secret":"s3cr3t-canary"}"#).as_bytes()) else {
        panic!("a malformed credential set was accepted");
    };
    assert_eq!(e.code.status().as_u16(), 400);
    assert_eq!(e.param.as_deref(), Some("api_key"));
    assert!(!e.message.contains("s3cr3t-canary"));
    // Other kinds take any string, braces included.
    let other = json!({"name": "o", "kind": "openai", "api_key": "{not json"}).to_string();
    assert!(UpsertProviderRequest::from_json(other.as_bytes()).is_ok());
}
