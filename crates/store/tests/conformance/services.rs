//! Conformance tests of the issue-7 methods: services and their releases, subscriptions (one
//! open row per app and service, compare-and-set decisions).

use std::sync::Arc;

use gatehouse_store::{
    ApprovalMode, Service, ServiceKind, ServiceRelease, ServiceStatus, Store, Subscription, SubscriptionFilter,
    SubscriptionStatus, Visibility,
};
use serde_json::json;
use time::Duration;

use super::*;

fn service(team: &Team, slug: &str) -> Service {
    Service {
        id: new_id(),
        team_id: team.id,
        kind: ServiceKind::Rest,
        slug: slug.into(),
        name: "Orders".into(),
        status: ServiceStatus::Draft,
        visibility: Visibility::Public,
        approval: ApprovalMode::Manual,
        spec: json!({"routes": [{"path": "/orders/{id}"}], "tags": ["shop"]}),
        live_spec: None,
        version: 0,
        deprecated_at: None,
        sunset_at: None,
        created_at: now_us(),
        updated_at: now_us(),
    }
}

fn subscription(app: &App, svc: &Service, status: SubscriptionStatus) -> Subscription {
    Subscription {
        id: new_id(),
        app_id: app.id,
        service_id: svc.id,
        status,
        reason: Some("we need orders".into()),
        decided_by: None,
        expires_at: None,
        created_at: now_us(),
        updated_at: now_us(),
    }
}

async fn services_round_trip_publish_and_releases(s: Arc<dyn Store>) {
    let (team, _) = seed_app(&s).await;
    let svc = service(&team, "orders");
    s.create_service(&svc).await.unwrap();
    assert_conflict(s.create_service(&Service { id: new_id(), ..svc.clone() }).await);
    assert_eq!(s.get_service(svc.id).await.unwrap(), Some(svc.clone()));
    assert_eq!(s.get_service_by_slug("orders").await.unwrap(), Some(svc.clone()));
    assert_eq!(s.get_service_by_slug("nope").await.unwrap(), None);

    // publish: row + release in one transaction
    let mut published = svc.clone();
    published.status = ServiceStatus::Published;
    published.version = 1;
    published.live_spec = Some(svc.spec.clone());
    published.updated_at = now_us();
    let r1 = ServiceRelease {
        id: new_id(),
        service_id: svc.id,
        version: 1,
        spec: svc.spec.clone(),
        note: "publish".into(),
        created_by: Some("op".into()),
        created_at: now_us(),
    };
    assert!(s.update_service(&published, Some(&r1)).await.unwrap());
    assert_eq!(s.get_service(svc.id).await.unwrap(), Some(published.clone()));
    // A duplicate release version is a Conflict and the row change is rolled back.
    let mut renamed = published.clone();
    renamed.name = "Renamed".into();
    assert_conflict(s.update_service(&renamed, Some(&ServiceRelease { id: new_id(), ..r1.clone() })).await);
    assert_eq!(s.get_service(svc.id).await.unwrap().unwrap().name, "Orders");
    let r2 = ServiceRelease { id: new_id(), version: 2, spec: json!({"routes": []}), ..r1.clone() };
    let mut v2 = published.clone();
    v2.version = 2;
    v2.status = ServiceStatus::Deprecated;
    v2.deprecated_at = Some(now_us());
    v2.sunset_at = Some(now_us() + Duration::days(30));
    assert!(s.update_service(&v2, Some(&r2)).await.unwrap());
    let releases = s.list_service_releases(svc.id).await.unwrap();
    assert_eq!(releases, vec![r2.clone(), r1.clone()]);
    assert_eq!(s.get_service_release(svc.id, 1).await.unwrap(), Some(r1));
    assert_eq!(s.get_service_release(svc.id, 3).await.unwrap(), None);
    assert_eq!(s.get_service(svc.id).await.unwrap(), Some(v2));
    assert!(!s.update_service(&service(&team, "ghost"), None).await.unwrap());

    let other = team_named(&s, "other").await;
    let svc2 = service(&other, "billing");
    s.create_service(&svc2).await.unwrap();
    assert_eq!(s.list_services(None).await.unwrap().len(), 2);
    let mine = s.list_services(Some(team.id)).await.unwrap();
    assert_eq!(mine.iter().map(|x| x.slug.as_str()).collect::<Vec<_>>(), vec!["orders"]);
}
store_test!(services_round_trip_publish_and_releases);

async fn team_named(s: &Arc<dyn Store>, name: &str) -> Team {
    let t = team(name);
    s.create_team(&t).await.unwrap();
    t
}

async fn subscriptions_one_open_row_and_compare_and_set(s: Arc<dyn Store>) {
    let (team, app) = seed_app(&s).await;
    let svc = service(&team, "orders");
    s.create_service(&svc).await.unwrap();
    let sub = subscription(&app, &svc, SubscriptionStatus::Pending);
    s.create_subscription(&sub).await.unwrap();
    // a second open request for the same pair conflicts
    assert_conflict(s.create_subscription(&subscription(&app, &svc, SubscriptionStatus::Active)).await);
    assert_eq!(s.get_subscription(sub.id).await.unwrap(), Some(sub.clone()));

    let mut approved = sub.clone();
    approved.status = SubscriptionStatus::Active;
    approved.decided_by = Some("owner".into());
    approved.expires_at = Some(now_us() + Duration::days(1));
    approved.updated_at = now_us();
    assert!(s.update_subscription(&approved, SubscriptionStatus::Pending).await.unwrap());
    // the loser of a race sees the status changed
    let mut rejected = sub.clone();
    rejected.status = SubscriptionStatus::Rejected;
    assert!(!s.update_subscription(&rejected, SubscriptionStatus::Pending).await.unwrap());
    assert_eq!(s.get_subscription(sub.id).await.unwrap(), Some(approved.clone()));

    let mut cancelled = approved.clone();
    cancelled.status = SubscriptionStatus::Cancelled;
    assert!(s.update_subscription(&cancelled, SubscriptionStatus::Active).await.unwrap());
    // after cancellation a new request is allowed
    let again = subscription(&app, &svc, SubscriptionStatus::Active);
    s.create_subscription(&again).await.unwrap();

    let by_app = s.list_subscriptions(&SubscriptionFilter { app_id: Some(app.id), ..Default::default() }).await.unwrap();
    assert_eq!(by_app.iter().map(|x| x.id).collect::<Vec<_>>(), vec![again.id, sub.id]);
    let active = s
        .list_subscriptions(&SubscriptionFilter { status: Some(SubscriptionStatus::Active), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(active, vec![again.clone()]);
    let none = s.list_subscriptions(&SubscriptionFilter { service_id: Some(new_id()), ..Default::default() }).await.unwrap();
    assert!(none.is_empty());
    assert_eq!(s.get_subscription(new_id()).await.unwrap(), None);
    // effective status: an active row past expires_at reads as expired
    let past = Subscription { expires_at: Some(now_us() - Duration::seconds(1)), ..again };
    assert_eq!(past.effective_status(now_us()), SubscriptionStatus::Expired);
}
store_test!(subscriptions_one_open_row_and_compare_and_set);
