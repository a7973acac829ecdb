//! Model routing: a snapshot of providers, their active encrypted keys and the public models
//! with their deployments, loaded at start and reloaded after `BusEvent::RoutingChanged`.
//!
//! Resolution (contracts.md "Model resolution"): a public model name → its deployments, ordered
//! by `priority` ascending (0 is tried first) then `weight` descending; otherwise
//! `provider/model` where `provider` is a configured provider name → that provider with upstream
//! model `model`; otherwise 404 `model_not_found`. `crate::failover` turns that into the order
//! one request tries the deployments (weighted random or least-in-flight within a priority,
//! then the fallback models) and walks it.
//!
//! Each provider has a key pool: its unrevoked credentials by `priority` ascending; the
//! failover walk skips keys the health registry has marked invalid or out of quota.
//!
//! Reloads: a bus event bumps a generation counter; the next request reloads under a lock
//! when the loaded generation is behind, and the loaded generation is only advanced once the
//! new table is installed, so no request resolves against a table older than an event it
//! could have seen, and an event during a reload triggers another reload.
//!
//! Provider keys are decrypted on demand ([`gatehouse_auth::open`], AAD = team of the key,
//! provider-credential id, provider name; `token-security.md` §3.4) and the plaintext is kept in
//! memory as a `SecretString` for [`KEY_TTL`] (zeroized when dropped).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use gatehouse_auth::{Aad, KeyProvider, Sealed};
use gatehouse_providers::{ProviderKind, Target};
use gatehouse_store::{BusEvent, ProviderCredential, Store, StoreError};
use gatehouse_types::{ApiError, ErrorCode, Id, Timestamp};
use moka::sync::Cache;
use secrecy::SecretString;

/// How long a decrypted provider key stays in memory.
pub const KEY_TTL: Duration = Duration::from_secs(300);

/// A configured upstream provider as the data plane sees it.
#[derive(Debug)]
pub struct ProviderEntry {
    pub id: Id,
    /// Unique name, the `provider` of `provider/model`.
    pub name: String,
    pub kind: ProviderKind,
    /// Without trailing slash.
    pub base_url: String,
    /// The key pool: unrevoked keys by `priority` ascending, still sealed; empty = the
    /// upstream needs no key.
    pub credentials: Vec<ProviderCredential>,
    pub created_at: Timestamp,
}

/// One way to serve a request: a provider and the model name it expects.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub provider: Arc<ProviderEntry>,
    pub upstream_model: String,
    /// The health key: the deployment id, or `provider/model` for a direct route.
    pub deployment: String,
    /// Relative weight within its priority (≥ 0).
    pub weight: u32,
    /// Lower is tried first.
    pub priority: i32,
    /// The public model (or `provider/model`) this candidate serves.
    pub model: Arc<str>,
}

/// The outcome of resolving a requested model: candidates in the order they should be tried.
#[derive(Debug, Clone)]
pub struct Route {
    pub candidates: Vec<Candidate>,
}

impl Route {
    /// The candidate called today (failover will walk the rest).
    pub fn primary(&self) -> Option<&Candidate> {
        self.candidates.first()
    }
}

/// A public model as listed by `GET /v1/models` (`wire-formats.md` §1.8).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    pub id: String,
    pub object: &'static str,
    /// Unix seconds.
    pub created: i64,
    pub owned_by: String,
}

#[derive(Debug)]
struct PublicModel {
    created_at: Timestamp,
    candidates: Vec<Candidate>,
}

#[derive(Debug, Default)]
struct Snapshot {
    providers: HashMap<String, Arc<ProviderEntry>>,
    models: BTreeMap<String, PublicModel>,
}

/// The routing table (see the module doc).
pub struct Routing {
    store: Arc<dyn Store>,
    key_provider: Arc<dyn KeyProvider>,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Bumped by every routing bus event.
    generation: AtomicU64,
    /// The generation the current snapshot was loaded for.
    loaded: AtomicU64,
    reload_lock: tokio::sync::Mutex<()>,
    keys: Cache<Id, SecretString>,
}

impl Routing {
    /// Loads the first snapshot. Errors: the store failed.
    pub async fn load(store: Arc<dyn Store>, key_provider: Arc<dyn KeyProvider>) -> Result<Self, StoreError> {
        let snapshot = build_snapshot(store.as_ref()).await?;
        Ok(Self {
            store,
            key_provider,
            snapshot: RwLock::new(Arc::new(snapshot)),
            generation: AtomicU64::new(0),
            loaded: AtomicU64::new(0),
            reload_lock: tokio::sync::Mutex::new(()),
            keys: Cache::builder().max_capacity(1024).time_to_live(KEY_TTL).build(),
        })
    }

    /// `RoutingChanged` / `Resync`: marks the snapshot stale (the next request reloads it before
    /// resolving) and forgets decrypted keys. Synchronous and quick.
    pub fn on_bus_event(&self, event: &BusEvent) {
        if matches!(event, BusEvent::RoutingChanged | BusEvent::Resync) {
            self.generation.fetch_add(1, Ordering::SeqCst);
            self.keys.invalidate_all();
        }
    }

    fn read(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    async fn current(&self) -> Arc<Snapshot> {
        if self.generation.load(Ordering::SeqCst) != self.loaded.load(Ordering::SeqCst) {
            let _one_reloader = self.reload_lock.lock().await;
            // Read the target generation before the store: an event during the reload leaves
            // `loaded` behind, so the next request reloads again.
            let wanted = self.generation.load(Ordering::SeqCst);
            if wanted != self.loaded.load(Ordering::SeqCst) {
                match build_snapshot(self.store.as_ref()).await {
                    Ok(s) => {
                        match self.snapshot.write() {
                            Ok(mut w) => *w = Arc::new(s),
                            Err(p) => *p.into_inner() = Arc::new(s),
                        }
                        self.loaded.store(wanted, Ordering::SeqCst);
                    }
                    // Keep serving the old table; the next request tries again.
                    Err(e) => tracing::error!(error = %e, "routing reload failed"),
                }
            }
        }
        self.read()
    }

    /// Resolves `model` (see the module doc). Errors: 404 `model_not_found`.
    pub async fn resolve(&self, model: &str) -> Result<Route, ApiError> {
        let snap = self.current().await;
        if let Some(m) = snap.models.get(model)
            && !m.candidates.is_empty()
        {
            return Ok(Route { candidates: m.candidates.clone() });
        }
        if let Some((provider, upstream)) = model.split_once('/')
            && let Some(p) = snap.providers.get(provider)
            && !upstream.is_empty()
        {
            return Ok(Route { candidates: vec![direct(p, upstream)] });
        }
        Err(model_not_found(model))
    }

    /// The call target for `candidate` with its first key, decrypting it if not cached.
    /// Errors: as [`Routing::target_with`].
    pub fn target(&self, candidate: &Candidate) -> Result<Target, ApiError> {
        self.target_with(candidate, candidate.provider.credentials.first())
    }

    /// The call target for `candidate` with key `key` (`None`: no key), decrypting it if not
    /// cached. Errors: 500 `internal_error` if the key cannot be opened (wrong master key,
    /// tampered row); the cause is logged, never returned.
    pub fn target_with(&self, candidate: &Candidate, key: Option<&ProviderCredential>) -> Result<Target, ApiError> {
        let p = &candidate.provider;
        let api_key = match key {
            None => SecretString::from(String::new()),
            Some(pc) => match self.keys.get(&pc.id) {
                Some(k) => k,
                None => {
                    let aad = Aad { tenant_id: pc.team_id, credential_id: pc.id, provider: p.name.clone() };
                    let sealed = Sealed {
                        format_version: pc.format_version,
                        kek_id: pc.kek_id.clone(),
                        wrapped_dek: pc.wrapped_dek.clone(),
                        nonce: pc.nonce.clone(),
                        ciphertext: pc.ciphertext.clone(),
                    };
                    let key = gatehouse_auth::open(self.key_provider.as_ref(), &aad, &sealed).map_err(|e| {
                        tracing::error!(error = %e, provider = %p.name, credential_id = %pc.id, "provider key cannot be decrypted");
                        ApiError::internal()
                    })?;
                    self.keys.insert(pc.id, key.clone());
                    key
                }
            },
        };
        Ok(Target { kind: p.kind, base_url: p.base_url.clone(), api_key, upstream_model: candidate.upstream_model.clone(), anthropic_beta: None })
    }

    /// Every deployment of every public model, and every provider with its key pool (health
    /// API and metrics).
    pub async fn inventory(&self) -> (Vec<Candidate>, Vec<Arc<ProviderEntry>>) {
        let snap = self.current().await;
        let models = snap.models.values().flat_map(|m| m.candidates.iter().cloned()).collect();
        let mut providers: Vec<Arc<ProviderEntry>> = snap.providers.values().cloned().collect();
        providers.sort_by(|a, b| a.name.cmp(&b.name));
        (models, providers)
    }

    /// The models a key with allow-list `allowed` may use (empty = every public model), by name.
    /// Allow-list entries of the form `provider/model` are listed when the provider exists.
    pub async fn list_models(&self, allowed: &[String]) -> Vec<ModelInfo> {
        let snap = self.current().await;
        let public = |name: &str, m: &PublicModel| ModelInfo {
            id: name.to_string(),
            object: "model",
            created: m.created_at.unix_timestamp(),
            owned_by: m.candidates.first().map_or_else(|| "gatehouse".to_string(), |c| c.provider.name.clone()),
        };
        if allowed.is_empty() {
            return snap.models.iter().filter(|(_, m)| !m.candidates.is_empty()).map(|(n, m)| public(n, m)).collect();
        }
        let mut out: Vec<ModelInfo> = Vec::new();
        for name in allowed {
            if let Some(m) = snap.models.get(name.as_str()).filter(|m| !m.candidates.is_empty()) {
                out.push(public(name, m));
            } else if let Some((prov, model)) = name.split_once('/')
                && let Some(p) = snap.providers.get(prov).filter(|_| !model.is_empty())
            {
                out.push(ModelInfo {
                    id: name.clone(),
                    object: "model",
                    created: p.created_at.unix_timestamp(),
                    owned_by: p.name.clone(),
                });
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out.dedup_by(|a, b| a.id == b.id);
        out
    }
}

/// 404 `model_not_found` in OpenAI's wording; the name is the client's own input (truncated).
pub fn model_not_found(model: &str) -> ApiError {
    let shown: String = model.chars().take(200).collect();
    ApiError::new(ErrorCode::ModelNotFound, format!("The model `{shown}` does not exist or you do not have access to it."))
        .with_param("model")
}

async fn build_snapshot(store: &dyn Store) -> Result<Snapshot, StoreError> {
    let mut by_id: HashMap<Id, Arc<ProviderEntry>> = HashMap::new();
    let mut providers = HashMap::new();
    for p in store.list_providers().await? {
        let Some(kind) = ProviderKind::parse(&p.kind) else {
            tracing::warn!(provider = %p.name, kind = %p.kind, "provider of unknown kind skipped");
            continue;
        };
        let mut credentials: Vec<ProviderCredential> =
            store.list_provider_credentials(p.id).await?.into_iter().filter(|c| c.revoked_at.is_none()).collect();
        credentials.sort_by_key(|c| c.priority);
        let base = if p.base_url.trim().is_empty() { kind.default_base_url() } else { p.base_url.trim() };
        let entry = Arc::new(ProviderEntry {
            id: p.id,
            name: p.name.clone(),
            kind,
            base_url: base.trim_end_matches('/').to_string(),
            credentials,
            created_at: p.created_at,
        });
        by_id.insert(p.id, entry.clone());
        providers.insert(p.name, entry);
    }
    let mut models = BTreeMap::new();
    for m in store.list_models().await? {
        let mut deployments = m.deployments;
        deployments.sort_by(|a, b| a.priority.cmp(&b.priority).then(b.weight.cmp(&a.weight)));
        let name: Arc<str> = Arc::from(m.name.as_str());
        let candidates = deployments
            .into_iter()
            .filter_map(|d| {
                let provider = by_id.get(&d.provider_id)?.clone();
                Some(Candidate {
                    provider,
                    upstream_model: d.upstream_model,
                    deployment: d.id.to_string(),
                    weight: u32::try_from(d.weight).unwrap_or(0),
                    priority: d.priority,
                    model: name.clone(),
                })
            })
            .collect();
        models.insert(m.name, PublicModel { created_at: m.created_at, candidates });
    }
    Ok(Snapshot { providers, models })
}

/// The candidate of a direct `provider/model` route.
fn direct(p: &Arc<ProviderEntry>, upstream: &str) -> Candidate {
    let model: Arc<str> = Arc::from(format!("{}/{upstream}", p.name).as_str());
    Candidate {
        provider: p.clone(),
        upstream_model: upstream.to_string(),
        deployment: model.to_string(),
        weight: 1,
        priority: 0,
        model,
    }
}
