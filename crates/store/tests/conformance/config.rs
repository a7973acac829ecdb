//! Conformance of `apply_config` (issue 7, declarative team configuration): the whole change set
//! in one transaction; a failure in its LAST change leaves nothing of the earlier ones.

use std::sync::Arc;

use gatehouse_store::{
    ApprovalMode, ConfigChanges, Limit, LimitScope, Service, ServiceKind, ServiceRelease, ServiceStatus, ServiceWrite,
    Store, Visibility,
};
use serde_json::json;

use super::*;

fn limit_on(app: &App, rpm: u64) -> Limit {
    Limit {
        id: new_id(),
        scope: LimitScope::App,
        scope_id: app.id.hyphenated().to_string(),
        model: String::new(),
        rpm: Some(rpm),
        concurrent: None,
        tpm: None,
        tokens_per_day: None,
        tokens_per_month: None,
        usd_micros_per_day: Some(25_500_000),
        usd_micros_per_month: None,
        created_at: now_us(),
        updated_at: now_us(),
    }
}

fn rest_service(team: &Team, slug: &str) -> Service {
    Service {
        id: new_id(),
        team_id: team.id,
        kind: ServiceKind::Rest,
        slug: slug.into(),
        name: slug.into(),
        status: ServiceStatus::Draft,
        visibility: Visibility::Team,
        approval: ApprovalMode::Auto,
        spec: json!({"routes": [{"path": "/x"}]}),
        live_spec: None,
        version: 0,
        deprecated_at: None,
        sunset_at: None,
        created_at: now_us(),
        updated_at: now_us(),
    }
}

fn published(mut s: Service, version: u32) -> (Service, ServiceRelease) {
    s.status = ServiceStatus::Published;
    s.version = version;
    s.live_spec = Some(s.spec.clone());
    let r = ServiceRelease {
        id: new_id(),
        service_id: s.id,
        version,
        spec: json!({"name": s.name, "spec": s.spec}),
        note: "publish".into(),
        created_by: Some("user:admin".into()),
        created_at: now_us(),
    };
    (s, r)
}

/// Every kind of change lands, in one call: a new app with a limit on it, a model, a new service
/// published at once (row + release 1) and an update of an existing one.
async fn config_apply_writes_every_kind_of_change(s: Arc<dyn Store>) {
    let (team, _) = seed_app(&s).await;
    let p = provider("openai-cfg");
    let p = s.upsert_provider(&p).await.unwrap();
    let existing = rest_service(&team, "existing");
    s.create_service(&existing).await.unwrap();

    let new_app = app(team.id, "checkout");
    let (fresh, r1) = published(rest_service(&team, "fresh"), 1);
    let mut edited = existing.clone();
    edited.name = "Existing, renamed".into();
    edited.spec = json!({"routes": [{"path": "/y"}]});
    let changes = ConfigChanges {
        apps: vec![new_app.clone()],
        limits: vec![limit_on(&new_app, 600)],
        models: vec![model("cfg-model", vec![deployment(p.id, "gpt-4o-mini", 0)])],
        services: vec![
            ServiceWrite { service: fresh.clone(), create: true, release: Some(r1.clone()) },
            ServiceWrite { service: edited.clone(), create: false, release: None },
        ],
    };
    assert!(!changes.is_empty());
    s.apply_config(&changes).await.unwrap();

    assert_eq!(s.get_app(new_app.id).await.unwrap(), Some(new_app.clone()));
    let limits = s.list_limits().await.unwrap();
    assert_eq!(limits.len(), 1);
    assert_eq!((limits[0].rpm, limits[0].usd_micros_per_day), (Some(600), Some(25_500_000)));
    let m = s.get_model("cfg-model").await.unwrap().unwrap();
    assert_eq!(m.deployments.len(), 1);
    assert_eq!(s.get_service(fresh.id).await.unwrap(), Some(fresh.clone()));
    assert_eq!(s.list_service_releases(fresh.id).await.unwrap(), vec![r1]);
    assert_eq!(s.get_service(existing.id).await.unwrap(), Some(edited));
    // an empty change set is a no-op
    s.apply_config(&ConfigChanges::default()).await.unwrap();
}
store_test!(config_apply_writes_every_kind_of_change);

/// A failure in the last change (a taken slug; then an update of a service that does not exist;
/// then a duplicate release version) leaves NOTHING of the change set: no app, no limit (an
/// existing limit keeps its values), no model, no service row, no release.
async fn config_apply_failure_in_last_change_leaves_nothing(s: Arc<dyn Store>) {
    let (team, default_app) = seed_app(&s).await;
    let before_limit = s.upsert_limit(&limit_on(&default_app, 10)).await.unwrap();
    let taken = rest_service(&team, "taken");
    s.create_service(&taken).await.unwrap();
    let (taken_v1, r1) = published(taken.clone(), 1);
    assert!(s.update_service(&taken_v1, Some(&r1)).await.unwrap());

    let new_app = app(team.id, "checkout");
    let mut raise = before_limit.clone();
    raise.rpm = Some(999);
    raise.updated_at = now_us();
    let ok_service = rest_service(&team, "fine");
    let base = ConfigChanges {
        apps: vec![new_app.clone()],
        limits: vec![limit_on(&new_app, 600), raise],
        models: vec![model("cfg-model", vec![])],
        services: vec![ServiceWrite { service: ok_service.clone(), create: true, release: None }],
    };
    let mut renamed = taken_v1.clone();
    renamed.name = "renamed".into();
    let lasts = [
        // slug taken → Conflict
        ServiceWrite { service: rest_service(&team, "taken"), create: true, release: None },
        // no such service → NotFound
        ServiceWrite { service: rest_service(&team, "ghost"), create: false, release: None },
        // release version 1 exists → Conflict
        ServiceWrite { service: renamed, create: false, release: Some(ServiceRelease { id: new_id(), ..r1.clone() }) },
    ];
    for (i, last) in lasts.into_iter().enumerate() {
        let mut changes = base.clone();
        changes.services.push(last);
        let err = s.apply_config(&changes).await.unwrap_err();
        match (i, &err) {
            (0 | 2, StoreError::Conflict(_)) | (1, StoreError::NotFound(_)) => {}
            _ => panic!("case {i}: unexpected {err:?}"),
        }
        assert_eq!(s.get_app(new_app.id).await.unwrap(), None, "case {i}");
        assert_eq!(s.list_apps(Some(team.id)).await.unwrap().len(), 1, "case {i}");
        assert_eq!(s.list_limits().await.unwrap(), vec![before_limit.clone()], "case {i}");
        assert_eq!(s.get_model("cfg-model").await.unwrap(), None, "case {i}");
        assert_eq!(s.get_service(ok_service.id).await.unwrap(), None, "case {i}");
        assert_eq!(s.get_service(taken.id).await.unwrap(), Some(taken_v1.clone()), "case {i}");
        assert_eq!(s.list_service_releases(taken.id).await.unwrap().len(), 1, "case {i}");
    }
    // the same change set without the bad last change applies
    s.apply_config(&base).await.unwrap();
    assert!(s.get_app(new_app.id).await.unwrap().is_some());
    assert_eq!(s.list_limits().await.unwrap().len(), 2);
}
store_test!(config_apply_failure_in_last_change_leaves_nothing);
