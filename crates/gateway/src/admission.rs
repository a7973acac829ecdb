//! Data-plane admission for issue 7 (DESIGN.md "Request path": subscription check): a call is
//! admitted only if the key's app has an active subscription to a published or deprecated
//! service exposing the model (ai), route (rest) or prompt (prompt).
//!
//! **Backward compatibility (documented default):** admission for a *model* is enforced only
//! once some non-draft `ai` service exposes that model. Models no service exposes stay open to
//! every valid key, so existing deployments and keys keep working until a team publishes a
//! service for their models. REST services (`/svc/…`) and prompt APIs (`/prompts/…`) always
//! require a subscription; drafts and other teams' `team`-visibility services (unless the app
//! is subscribed) answer 404 exactly like an unknown slug, so their existence is not observable.
//!
//! The table (services with their live spec, active subscriptions) is a snapshot of the store,
//! reloaded before the next request after `BusEvent::ServicesChanged` / `Resync` (the memory
//! bus runs the handler inside the admin API's publish, so a cancelled subscription, a retired
//! service or a deleted app is refused on the very next request). Subscription expiry is
//! checked per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use gatehouse_store::{
    BusEvent, ServiceKind, ServiceStatus, Store, StoreError, SubscriptionFilter, SubscriptionStatus, Visibility,
};
use gatehouse_types::apim::ServiceSpec;
use gatehouse_types::{ApiError, ErrorCode, Id, Timestamp, now};
use http::{HeaderMap, HeaderValue};

/// A non-draft service as the data plane sees it.
#[derive(Debug)]
pub struct LiveService {
    pub id: Id,
    pub team_id: Id,
    pub kind: ServiceKind,
    pub slug: String,
    pub status: ServiceStatus,
    /// `team`: only the owning team's apps (and apps already subscribed) can see it exists.
    pub visibility: Visibility,
    /// Release number of `spec`.
    pub version: u32,
    pub deprecated_at: Option<Timestamp>,
    pub sunset_at: Option<Timestamp>,
    /// The published spec.
    pub spec: ServiceSpec,
}

impl LiveService {
    /// RFC 9745 `Deprecation: @<unix seconds>` and RFC 8594 `Sunset: <IMF-fixdate>` for a
    /// deprecated service (nothing otherwise).
    pub fn apply_lifecycle_headers(&self, headers: &mut HeaderMap) {
        if self.status != ServiceStatus::Deprecated {
            return;
        }
        let since = self.deprecated_at.map_or(0, |t| t.unix_timestamp());
        if let Ok(v) = HeaderValue::from_str(&format!("@{since}")) {
            headers.insert("deprecation", v);
        }
        if let Some(s) = self.sunset_at
            && let Ok(v) = HeaderValue::from_str(&http_date(s))
        {
            headers.insert("sunset", v);
        }
    }
}

/// IMF-fixdate (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(t: Timestamp) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[usize::from(t.weekday().number_days_from_monday())],
        t.day(),
        MONTHS[usize::from(u8::from(t.month()) - 1)],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

tokio::task_local! {
    /// The ai service a model call of this request was admitted through (for its lifecycle
    /// headers); set by [`note_admitted`], read by [`lifecycle_headers`].
    static ADMITTED_VIA: std::cell::RefCell<Option<Arc<LiveService>>>;
}

/// Records the service a model call was admitted through (no-op outside
/// [`lifecycle_headers`]).
pub(crate) fn note_admitted(service: Arc<LiveService>) {
    let _ = ADMITTED_VIA.try_with(|c| *c.borrow_mut() = Some(service));
}

/// Middleware: adds `Deprecation`/`Sunset` to the answer of a model call admitted through a
/// deprecated ai service (the handler and this layer run in the same task).
pub async fn lifecycle_headers(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    ADMITTED_VIA
        .scope(std::cell::RefCell::new(None), async move {
            let mut resp = next.run(req).await;
            if let Some(s) = ADMITTED_VIA.with(|c| c.borrow_mut().take()) {
                s.apply_lifecycle_headers(resp.headers_mut());
            }
            resp
        })
        .await
}

#[derive(Default)]
struct Table {
    by_slug: HashMap<String, Arc<LiveService>>,
    /// Public model → non-draft `ai` services exposing it.
    by_model: HashMap<String, Vec<Arc<LiveService>>>,
    /// (app, service) → `expires_at` of the active subscription.
    active: HashMap<(Id, Id), Option<Timestamp>>,
}

impl Table {
    fn subscribed(&self, app: Id, service: Id, at: Timestamp) -> bool {
        matches!(self.active.get(&(app, service)), Some(exp) if exp.is_none_or(|e| e > at))
    }
}

async fn load(store: &dyn Store) -> Result<Table, StoreError> {
    let mut t = Table::default();
    for s in store.list_services(None).await? {
        let Some(live) = s.live_spec.as_ref().filter(|_| s.status != ServiceStatus::Draft) else { continue };
        let spec = match serde_json::from_value::<ServiceSpec>(live.clone()) {
            Ok(spec) => spec,
            Err(e) => {
                tracing::error!(service = %s.id, error = %e, "unreadable live spec; service skipped");
                continue;
            }
        };
        let ls = Arc::new(LiveService {
            id: s.id,
            team_id: s.team_id,
            kind: s.kind,
            slug: s.slug.clone(),
            status: s.status,
            visibility: s.visibility,
            version: s.version,
            deprecated_at: s.deprecated_at,
            sunset_at: s.sunset_at,
            spec,
        });
        if ls.kind == ServiceKind::Ai {
            for m in &ls.spec.models {
                t.by_model.entry(m.clone()).or_default().push(ls.clone());
            }
        }
        t.by_slug.insert(s.slug, ls);
    }
    let filter = SubscriptionFilter { status: Some(SubscriptionStatus::Active), ..Default::default() };
    for sub in store.list_subscriptions(&filter).await? {
        t.active.insert((sub.app_id, sub.service_id), sub.expires_at);
    }
    Ok(t)
}

/// The admission table.
pub struct Admission {
    store: Arc<dyn Store>,
    table: RwLock<Arc<Table>>,
    generation: AtomicU64,
    loaded: AtomicU64,
    reload_lock: tokio::sync::Mutex<()>,
}

fn retired() -> ApiError {
    ApiError::new(ErrorCode::ServiceRetired, "this service has been retired")
}

fn not_subscribed(what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::SubscriptionRequired,
        format!("this API key's app has no active subscription to a service exposing {what}"),
    )
}

impl Admission {
    /// Loads the table. Errors: the store could not be read.
    pub async fn load(store: Arc<dyn Store>) -> Result<Self, StoreError> {
        let table = load(store.as_ref()).await?;
        Ok(Self {
            store,
            table: RwLock::new(Arc::new(table)),
            generation: AtomicU64::new(0),
            loaded: AtomicU64::new(0),
            reload_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Marks the table stale on `ServicesChanged` / `Resync`.
    pub fn on_bus_event(&self, event: &BusEvent) {
        if matches!(event, BusEvent::ServicesChanged | BusEvent::Resync) {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn read(&self) -> Arc<Table> {
        match self.table.read() {
            Ok(t) => t.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The table, reloaded first when a change event arrived. A failed reload fails closed for
    /// this request (503) rather than serving a table that may still admit a cancelled app.
    async fn current(&self) -> Result<Arc<Table>, ApiError> {
        let wanted = self.generation.load(Ordering::SeqCst);
        if self.loaded.load(Ordering::SeqCst) != wanted {
            let _one = self.reload_lock.lock().await;
            let wanted = self.generation.load(Ordering::SeqCst);
            if self.loaded.load(Ordering::SeqCst) != wanted {
                match load(self.store.as_ref()).await {
                    Ok(t) => {
                        match self.table.write() {
                            Ok(mut w) => *w = Arc::new(t),
                            Err(p) => *p.into_inner() = Arc::new(t),
                        }
                        self.loaded.store(wanted, Ordering::SeqCst);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "admission reload failed");
                        return Err(ApiError::new(ErrorCode::Unavailable, "the gateway could not load its service table; retry"));
                    }
                }
            }
        }
        Ok(self.read())
    }

    /// Admission for a model call by `app`. `Ok(None)`: no service governs the model (open,
    /// see the module doc); `Ok(Some(service))`: admitted through that service.
    ///
    /// Errors: 403 `subscription_required`; 410 `service_retired` when every service exposing
    /// the model is retired; 503 if the table cannot be reloaded.
    pub async fn admit_model(&self, app: Id, model: &str) -> Result<Option<Arc<LiveService>>, ApiError> {
        let t = self.current().await?;
        let Some(services) = t.by_model.get(model) else { return Ok(None) };
        let at = now();
        let open = |s: &&Arc<LiveService>| matches!(s.status, ServiceStatus::Published | ServiceStatus::Deprecated);
        if let Some(s) = services.iter().filter(open).find(|s| t.subscribed(app, s.id, at)) {
            return Ok(Some(s.clone()));
        }
        if !services.iter().any(|s| open(&s)) {
            return Err(retired());
        }
        let shown: String = model.chars().take(200).collect();
        Err(not_subscribed(&format!("the model `{shown}`")))
    }

    /// Admission to the service `slug` of `kind` by `app` of team `team`.
    ///
    /// Errors: 404 `not_found` (no such non-draft service of that kind, or a `team`-visibility
    /// service of another team the app is not subscribed to: answered exactly like an unknown
    /// slug so other teams' internal services cannot be discovered); 410 `service_retired`;
    /// 403 `subscription_required`; 503 if the table cannot be reloaded.
    pub async fn admit_service(&self, app: Id, team: Id, slug: &str, kind: ServiceKind) -> Result<Arc<LiveService>, ApiError> {
        let t = self.current().await?;
        let s = t
            .by_slug
            .get(slug)
            .filter(|s| s.kind == kind)
            .filter(|s| s.visibility == Visibility::Public || s.team_id == team || t.subscribed(app, s.id, now()))
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such service"))?;
        if s.status == ServiceStatus::Retired {
            return Err(retired());
        }
        if !t.subscribed(app, s.id, now()) {
            return Err(not_subscribed("this service"));
        }
        Ok(s.clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_are_imf_fixdate() {
        let t = Timestamp::from_unix_timestamp(784_111_777).unwrap();
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
