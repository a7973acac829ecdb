//! REST services on the data plane (issue 7) against an upstream that echoes what it got:
//! which client headers reach the upstream (tester finding: hop-by-hop, forwarding headers,
//! the admin session cookie), and that other teams' internal services and drafts answer exactly
//! like an unknown slug.

use gatehouse_store::{ApprovalMode, Bus, BusEvent, Service, ServiceKind, ServiceStatus, Store, Subscription, SubscriptionStatus, Team, Visibility};
use gatehouse_types::{Id, new_id, now};
use serde_json::{Value, json};

use crate::harness::{Harness, Options};

/// The gateway with the SSRF guard letting REST nodes reach this machine's loopback (the echo
/// upstream listens there), as `[rest] allow_upstream = ["127.0.0.0/8"]` does.
async fn harness() -> Harness {
    let allow = vec![gatehouse_auth::cidr::Cidr::parse("127.0.0.0/8").unwrap()];
    let settings = gatehouse_gateway::GatewaySettings { rest_allow_upstream: std::sync::Arc::new(allow), ..Default::default() };
    Harness::start_with(Options { settings, ..Default::default() }).await
}

/// An upstream answering every request with `{"headers": {name: value, …}}` (repeated names
/// joined with `, `).
async fn echo_upstream() -> String {
    async fn echo(req: axum::extract::Request) -> axum::Json<Value> {
        let mut headers = serde_json::Map::new();
        for name in req.headers().keys() {
            let all: Vec<&str> = req.headers().get_all(name).iter().map(|v| v.to_str().unwrap_or_default()).collect();
            headers.insert(name.as_str().to_string(), json!(all.join(", ")));
        }
        axum::Json(json!({ "headers": headers }))
    }
    let app = axum::Router::new().fallback(echo);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn add_service(h: &Harness, team: Id, slug: &str, visibility: Visibility, published: bool, upstream: &str) -> Id {
    let spec = json!({"routes": [{"path": "/hello"}], "upstream": {"nodes": [{"url": upstream}]}});
    let s = Service {
        id: new_id(),
        team_id: team,
        kind: ServiceKind::Rest,
        slug: slug.into(),
        name: slug.into(),
        status: if published { ServiceStatus::Published } else { ServiceStatus::Draft },
        visibility,
        approval: ApprovalMode::Auto,
        spec: spec.clone(),
        live_spec: published.then_some(spec),
        version: u32::from(published),
        deprecated_at: None,
        sunset_at: None,
        created_at: now(),
        updated_at: now(),
    };
    h.store.create_service(&s).await.unwrap();
    h.bus.publish(BusEvent::ServicesChanged);
    s.id
}

async fn subscribe(h: &Harness, service: Id) {
    let at = now();
    let sub = Subscription {
        id: new_id(),
        app_id: h.app_id,
        service_id: service,
        status: SubscriptionStatus::Active,
        reason: None,
        decided_by: Some("auto".into()),
        expires_at: None,
        created_at: at,
        updated_at: at,
    };
    h.store.create_subscription(&sub).await.unwrap();
    h.bus.publish(BusEvent::ServicesChanged);
}

async fn other_team(h: &Harness) -> Id {
    let team = Team { id: new_id(), name: "other".into(), created_at: now() };
    h.store.create_team(&team).await.unwrap();
    team.id
}

async fn get(h: &Harness, slug: &str) -> (u16, Value) {
    let r = h.client.get(h.url(&format!("/svc/{slug}/hello"))).bearer_auth(&h.key).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn rest_proxy_drops_hop_by_hop_and_session_cookie_and_sets_forwarded_headers() {
    let h = harness().await;
    let up = echo_upstream().await;
    let other = other_team(&h).await;
    let id = add_service(&h, other, "echo", Visibility::Public, true, &up).await;
    subscribe(&h, id).await;

    let r = h
        .client
        .get(h.url("/svc/echo/hello"))
        .bearer_auth(&h.key)
        .header("Connection", "close, X-Secret-Hop")
        .header("X-Secret-Hop", "1")
        .header("X-Forwarded-For", "6.6.6.6")
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "evil.example")
        .header("Cookie", "a=b; gatehouse_session=canary-session-7f3; c=d")
        .header("X-Kept", "yes")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let seen: Value = r.json().await.unwrap();
    let got = &seen["headers"];
    assert!(got.get("x-secret-hop").is_none(), "a header named in Connection reached the upstream: {got}");
    assert!(got.get("connection").is_none_or(|c| c != "close, X-Secret-Hop"), "{got}");
    assert!(got.get("authorization").is_none(), "{got}");
    // the peer is 127.0.0.1, not a trusted proxy: the client's forwarding headers are replaced
    assert_eq!(got["x-forwarded-for"], "127.0.0.1", "{got}");
    assert_eq!(got["x-forwarded-proto"], "http", "{got}");
    assert_eq!(got["x-forwarded-host"], h.base.trim_start_matches("http://"), "{got}");
    assert_eq!(got["cookie"], "a=b; c=d", "{got}");
    assert!(!seen.to_string().contains("canary-session-7f3"));
    assert_eq!(got["x-kept"], "yes");
}

#[tokio::test]
async fn other_teams_internal_and_draft_services_answer_like_an_unknown_slug() {
    let h = harness().await;
    let up = echo_upstream().await;
    let other = other_team(&h).await;
    add_service(&h, other, "theirs-internal", Visibility::Team, true, &up).await;
    add_service(&h, other, "theirs-draft", Visibility::Public, false, &up).await;
    add_service(&h, other, "theirs-public", Visibility::Public, true, &up).await;
    add_service(&h, h.team_id, "ours-internal", Visibility::Team, true, &up).await;

    let unknown = get(&h, "no-such-service").await;
    assert_eq!(unknown.0, 404, "{unknown:?}");
    for slug in ["theirs-internal", "theirs-draft"] {
        assert_eq!(get(&h, slug).await, unknown, "{slug}");
    }
    // what stays observable: a public service of another team and the own team's internal one
    assert_eq!(get(&h, "theirs-public").await.1["error"]["code"], "subscription_required");
    assert_eq!(get(&h, "ours-internal").await.1["error"]["code"], "subscription_required");

    // an app already subscribed (e.g. before the service became team-only) keeps its access
    let id = add_service(&h, other, "theirs-subscribed", Visibility::Team, true, &up).await;
    subscribe(&h, id).await;
    assert_eq!(get(&h, "theirs-subscribed").await.0, 200);
}
