//! API-key authentication of the data plane (`token-security.md` §1.2 parsing algorithm, §2.4
//! verification procedure; RFC 6750 §3.1 status and challenge table).
//!
//! Order, per request:
//! 1. `Authorization` extraction ([`gatehouse_auth::extract_authorization`]): more than one
//!    header or a malformed value → 400 `invalid_request`; none or an unsupported scheme → 401
//!    with a bare challenge. Query strings are never read.
//! 2. Format, environment and CRC32 checksum ([`gatehouse_auth::parse`]) → 401 `invalid_token`
//!    without any store access.
//! 3. `digest = HMAC(pepper, token)` → positive cache (30 s) → negative cache (5 s) → store
//!    `find_credential` (older pepper versions only on a miss).
//! 4. Revoked or expired (against `now()` on every request, cached or not) → 401 `invalid_token`.
//! 5. `last_used_at` is queued for a batched `touch_credentials`, off the request path.
//!
//! Revocation: [`Authenticator::on_bus_event`] drops the cache entry synchronously on
//! `CredentialChanged` (the memory bus runs it inside the admin API's `publish`), and flushes
//! everything on `Resync`. A generation counter keeps a lookup that raced an invalidation from
//! re-inserting a stale entry.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use gatehouse_auth::{Env, Peppers, Scheme, TokenKind};
use gatehouse_store::{BusEvent, Credential, Store};
use gatehouse_types::{ApiError, ErrorCode, Id, Timestamp, now};
use http::HeaderMap;
use moka::sync::Cache;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::calllog::CallRecorder;
use crate::dialect::{Dialect, render_error};

/// Positive cache lifetime (≤ the revocation SLA without a bus; `token-security.md` §2.4).
pub const POSITIVE_TTL: Duration = Duration::from_secs(30);
/// Negative cache lifetime for digests the store does not know.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Size bound of each cache (entries).
pub const CACHE_CAPACITY: u64 = 100_000;
/// How often batched `last_used_at` updates are written.
pub const TOUCH_INTERVAL: Duration = Duration::from_secs(1);

/// The authenticated caller, added to the request extensions by [`auth_middleware`].
#[derive(Debug, Clone)]
pub struct AuthContext {
    /// The stored API key record (digest inside, never the plaintext).
    pub credential: Arc<Credential>,
    /// A single-use token (`gths_…`) not consumed yet: model handlers redeem it once the call
    /// is admitted ([`AuthContext::redeem`]; L3). `None` for every other credential.
    pub pending: Option<Arc<PendingUse>>,
}

/// A verified single-use token whose consumption waits until the call is admitted (after
/// request validation, model and scope checks, subscription admission and limits), so a call
/// refused for the client's own mistake does not burn it (L3). Redeemed at most once.
pub struct PendingUse {
    oauth: Arc<gatehouse_oauth::OAuth>,
    claim: gatehouse_oauth::SingleUseClaim,
    /// `Some(true)` redeemed by this request, `Some(false)` lost (consumed elsewhere).
    outcome: tokio::sync::OnceCell<bool>,
}

impl std::fmt::Debug for PendingUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingUse").field("outcome", &self.outcome.get()).finish()
    }
}

impl PendingUse {
    /// Consumes the token (once per request; later calls repeat the first answer).
    ///
    /// Errors: 401 `invalid_token` when another call consumed it first (or it was revoked
    /// meanwhile), 503 when the store cannot be reached.
    pub async fn redeem(&self) -> Result<(), ApiError> {
        let mut failure = None;
        let won = *self
            .outcome
            .get_or_init(|| async {
                match crate::oauth::redeem(&self.oauth, &self.claim).await {
                    Ok(()) => true,
                    Err(e) => {
                        failure = Some(e);
                        false
                    }
                }
            })
            .await;
        match (won, failure) {
            (true, _) => Ok(()),
            (false, Some(e)) => Err(e),
            (false, None) => Err(invalid_token()),
        }
    }

    /// Whether a redemption was attempted and lost.
    fn lost(&self) -> bool {
        self.outcome.get() == Some(&false)
    }

    fn attempted(&self) -> bool {
        self.outcome.initialized()
    }
}

impl AuthContext {
    /// Consumes the request's single-use token, if any (no-op otherwise). Called by every model
    /// handler right after admission, before the upstream call.
    ///
    /// Errors: 401 `invalid_token` (consumed by a concurrent call), 503 store unavailable.
    pub async fn redeem(&self) -> Result<(), ApiError> {
        match &self.pending {
            Some(p) => p.redeem().await,
            None => Ok(()),
        }
    }

    /// Whether this key may use public model `model` (empty allow-list = every model).
    pub fn allows_model(&self, model: &str) -> bool {
        self.credential.models.is_empty() || self.credential.models.iter().any(|m| m == model)
    }
}

/// The generic message of every `invalid_token` answer (never says why, never echoes the key).
const INVALID_KEY_MESSAGE: &str = "invalid API key: the key is unknown, malformed, expired or revoked";

fn invalid_token() -> ApiError {
    ApiError::new(ErrorCode::InvalidToken, INVALID_KEY_MESSAGE)
}

/// Verifies API keys with caches in front of the store.
pub struct Authenticator {
    store: Arc<dyn Store>,
    peppers: Arc<Peppers>,
    env: Env,
    positive: Cache<[u8; 32], Arc<Credential>>,
    negative: Cache<[u8; 32], ()>,
    generation: AtomicU64,
    touch: mpsc::Sender<(Id, Timestamp)>,
    /// Access, single-use and JWT tokens of the authorization server (issue 5); without it
    /// such tokens are answered `invalid_token`.
    oauth: Option<Arc<gatehouse_oauth::OAuth>>,
}

impl Authenticator {
    /// An authenticator and the receiver for [`run_toucher`].
    pub fn new(store: Arc<dyn Store>, peppers: Arc<Peppers>, env: Env) -> (Self, mpsc::Receiver<(Id, Timestamp)>) {
        let (touch, rx) = mpsc::channel(8192);
        let auth = Self {
            store,
            peppers,
            env,
            positive: Cache::builder().max_capacity(CACHE_CAPACITY).time_to_live(POSITIVE_TTL).build(),
            negative: Cache::builder().max_capacity(CACHE_CAPACITY).time_to_live(NEGATIVE_TTL).build(),
            generation: AtomicU64::new(0),
            touch,
            oauth: None,
        };
        (auth, rx)
    }

    /// Accepts the tokens of this OAuth authorization server too (issue 5): `gtha_…`,
    /// `gths_…` (consumed on use) and RFC 9068 JWTs. Bus events are forwarded to it.
    pub fn set_oauth(&mut self, oauth: Arc<gatehouse_oauth::OAuth>) {
        self.oauth = Some(oauth);
    }

    /// Applies a bus event: `CredentialChanged` drops that digest from both caches (every digest
    /// if the event's digest is not 32 bytes), `Resync` flushes both. Synchronous and quick.
    pub fn on_bus_event(&self, event: &BusEvent) {
        match event {
            BusEvent::CredentialChanged { digest, .. } => {
                self.generation.fetch_add(1, Ordering::SeqCst);
                match <[u8; 32]>::try_from(digest.as_slice()) {
                    Ok(d) => {
                        self.positive.invalidate(&d);
                        self.negative.invalidate(&d);
                    }
                    Err(_) => self.flush(),
                }
            }
            BusEvent::Resync => {
                self.generation.fetch_add(1, Ordering::SeqCst);
                self.flush();
            }
            BusEvent::RoutingChanged | BusEvent::LimitsChanged | BusEvent::TokenRevoked { .. } | BusEvent::ServicesChanged => {}
        }
        if let Some(o) = &self.oauth {
            o.on_bus_event(event);
        }
    }

    fn flush(&self) {
        self.positive.invalidate_all();
        self.negative.invalidate_all();
    }

    /// Runs steps 1–5 of the module doc on `headers` of an OpenAI-dialect request.
    ///
    /// Errors: `InvalidCredentialRequest` (400), `MissingCredential` (401), `InvalidToken` (401),
    /// `Internal` (500, store failure; logged here without the key).
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Credential>, ApiError> {
        let uri = http::Uri::from_static("/");
        let token = crate::dialect::extract_credential(headers, &uri, Dialect::OpenAi)?;
        self.verify(token).await
    }

    /// Steps 2–5 of the module doc for a credential already extracted
    /// ([`crate::dialect::extract_credential`]).
    ///
    /// Errors: `InvalidToken` (401), `Unavailable` (503, store failure; logged without the key).
    pub async fn verify(&self, token: &str) -> Result<Arc<Credential>, ApiError> {
        self.verify_detailed(token).await.map_err(|(e, _)| e)
    }

    /// [`Self::verify`], telling on failure which known key was refused and why (`revoked`,
    /// `suspended`, `expired`) so the caller can audit it; the client still gets the one
    /// generic `invalid_token`.
    pub async fn verify_detailed(&self, token: &str) -> Result<Arc<Credential>, (ApiError, Option<(Arc<Credential>, &'static str)>)> {
        let (credential, pending) = self.verify_pending(token).await?;
        if let Some(p) = pending {
            p.redeem().await.map_err(|e| (e, None))?;
        }
        Ok(credential)
    }

    /// [`Self::verify_detailed`], leaving a single-use token unconsumed: it comes back as a
    /// [`PendingUse`] to redeem once the call is admitted (L3).
    pub async fn verify_pending(
        &self,
        token: &str,
    ) -> Result<(Arc<Credential>, Option<Arc<PendingUse>>), (ApiError, Option<(Arc<Credential>, &'static str)>)> {
        match gatehouse_auth::parse(token) {
            Ok(p) if p.kind == TokenKind::ApiKey && p.env == self.env => {}
            // OAuth access tokens (`gtha_`), single-use tokens (`gths_`) and JWTs (issue 5).
            Ok(p) if matches!(p.kind, TokenKind::Access | TokenKind::SingleUse) && let Some(o) = &self.oauth => {
                let (credential, claim) = crate::oauth::authenticate_deferred(o, token).await.map_err(|e| (e, None))?;
                let pending = claim.map(|claim| Arc::new(PendingUse { oauth: o.clone(), claim, outcome: tokio::sync::OnceCell::new() }));
                return Ok((credential, pending));
            }
            Err(_) if gatehouse_oauth::jws::looks_like_jws(token) && let Some(o) = &self.oauth => {
                let (credential, _) = crate::oauth::authenticate_deferred(o, token).await.map_err(|e| (e, None))?;
                return Ok((credential, None));
            }
            _ => return Err((invalid_token(), None)),
        }
        let credential = self.lookup(token).await.map_err(|e| (e, None))?.ok_or_else(|| (invalid_token(), None))?;
        let at = now();
        let refused = if credential.revoked_at.is_some() {
            Some("revoked")
        } else if credential.security.suspended_at.is_some() {
            Some("suspended")
        } else if credential.expires_at.is_some_and(|e| e <= at) {
            Some("expired")
        } else {
            None
        };
        if let Some(reason) = refused {
            return Err((invalid_token(), Some((credential, reason))));
        }
        // Dropped when the channel is full: last_used_at is advisory.
        let _ = self.touch.try_send((credential.id, at));
        Ok((credential, None))
    }

    async fn lookup(&self, token: &str) -> Result<Option<Arc<Credential>>, ApiError> {
        let current = self.peppers.current_version();
        if let Some(c) = self.lookup_digest(self.peppers.digest(token)).await? {
            return Ok(Some(c));
        }
        for version in (1..current).rev() {
            if let Some(d) = self.peppers.digest_with(version, token)
                && let Some(c) = self.lookup_digest(d).await?
            {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    async fn lookup_digest(&self, digest: [u8; 32]) -> Result<Option<Arc<Credential>>, ApiError> {
        if let Some(c) = self.positive.get(&digest) {
            return Ok(Some(c));
        }
        if self.negative.contains_key(&digest) {
            return Ok(None);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let found = self.store.find_credential(&digest).await.map_err(|e| {
            tracing::error!(error = %e, "credential lookup failed");
            ApiError::new(ErrorCode::Unavailable, "the gateway cannot verify keys right now; retry later")
        })?;
        let found = found.map(Arc::new);
        // An invalidation that ran during the query may concern this digest: do not cache.
        if self.generation.load(Ordering::SeqCst) == generation {
            match &found {
                Some(c) => self.positive.insert(digest, c.clone()),
                None => self.negative.insert(digest, ()),
            }
        }
        Ok(found)
    }
}

/// The auth layer: authenticates, fills team/app/key into the call log and adds [`AuthContext`];
/// on failure answers the OpenAI-shaped error with its RFC 6750 challenge.
pub async fn auth_middleware(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let dialect = Dialect::of(req.method(), req.uri().path());
    let mut client = crate::security::ClientInfo::of(&req, &state.settings.trusted_proxies);
    let mut scheme = Scheme::Bearer;
    let mut pending = None;
    let verified = match crate::dialect::extract_credential_scheme(req.headers(), req.uri(), dialect) {
        Ok((token, s)) => {
            scheme = s;
            // A single-use token is only checked here; it is consumed after its DPoP proof and
            // every policy check (L3), see `redeems_after_admission`.
            let checked = state.auth.verify_pending(token).await.map(|(credential, p)| {
                pending = p;
                credential
            });
            match checked {
                // `Authorization: DPoP`: the proof and the key binding (RFC 9449 §7.1).
                Ok(credential) if s == Scheme::DPoP => {
                    let bound = credential.security.dpop_jkt.as_deref();
                    match state.dpop.check_resource(req.headers(), req.method(), req.uri(), req.extensions(), token, bound).await {
                        Ok(jkt) => {
                            client.dpop_jkt = Some(jkt);
                            Ok(credential)
                        }
                        Err(d) => {
                            crate::dpop::audit_denial(&state, &client, &credential, d.reason);
                            Err(d.error)
                        }
                    }
                }
                Ok(credential) => Ok(credential),
                Err((e, denial)) => {
                    if let Some((credential, reason)) = denial {
                        crate::security::audit_status_denial(&state, &client, &credential, reason);
                    }
                    Err(e)
                }
            }
        }
        Err(e) => Err(e),
    };
    let verified = verified.and_then(|credential| {
        crate::security::check(&state, &client, &credential, req.method(), req.uri().path()).map(|()| credential)
    });
    // Anomaly detection (issue 5): may suspend the key and refuse this call.
    let verified = match verified {
        Ok(credential) => state.anomaly.after_success(&client, &credential).await.map(|()| credential),
        Err(e) => Err(e),
    };
    // A single-use token on a route whose handler does not redeem it after admission is
    // consumed now, after every check above.
    let deferred = pending.is_some() && redeems_after_admission(req.method(), req.uri().path());
    let verified = match (verified, &pending) {
        (Ok(credential), Some(p)) if !deferred => p.redeem().await.map(|()| credential),
        (v, _) => v,
    };
    match verified {
        Ok(credential) => {
            if let Some(rec) = req.extensions().get::<CallRecorder>() {
                rec.update(|d| {
                    d.team_id = Some(credential.team_id);
                    d.app_id = Some(credential.app_id);
                    d.credential_id = Some(credential.id);
                });
            }
            req.extensions_mut().insert(AuthContext { credential, pending: pending.clone() });
            let mut resp = next.run(req).await;
            if let Some(p) = pending.filter(|_| deferred) {
                if p.lost() && resp.status() == http::StatusCode::UNAUTHORIZED {
                    // Another call consumed the token between our check and the handler's
                    // redemption: the same 401 as an upfront refusal, challenge included.
                    let e = invalid_token();
                    resp = crate::security::with_scope_challenge(render_error(dialect, &e), &e);
                    resp = if scheme == Scheme::DPoP { crate::dpop::dpop_challenge(resp, &e, None) } else { crate::dpop::offer_dpop(resp, &e) };
                } else if !p.attempted() && resp.status().is_success() {
                    // Fail closed if a handler answered without redeeming: burn it now.
                    tracing::warn!("single-use token not redeemed by its handler; consumed after the answer");
                    let _ = p.redeem().await;
                }
            }
            // A fresh nonce rides on every answer when nonces are on (RFC 9449 §8.2).
            let nonce = (scheme == Scheme::DPoP && state.dpop.nonces()).then(|| state.dpop.current_nonce());
            crate::dpop::with_nonce(resp, nonce)
        }
        Err(e) => {
            let resp = crate::security::with_scope_challenge(render_error(dialect, &e), &e);
            if scheme == Scheme::DPoP {
                let nonce = (e.code == ErrorCode::UseDpopNonce || state.dpop.nonces()).then(|| state.dpop.current_nonce());
                crate::dpop::dpop_challenge(resp, &e, nonce)
            } else {
                crate::dpop::offer_dpop(resp, &e)
            }
        }
    }
}

/// Routes whose handlers redeem a single-use token themselves right after admission
/// ([`AuthContext::redeem`] in `handlers::admit`): the model calls (`POST` below `/v1`,
/// `/v1beta`, `/openai` and `/prompts`). Everything else (`GET /v1/models`, REST services under
/// `/svc`) consumes it in the middleware once every check passed.
fn redeems_after_admission(method: &http::Method, path: &str) -> bool {
    method == http::Method::POST && !path.starts_with("/svc/")
}

/// Writes `last_used_at` in batches (latest use per key) every [`TOUCH_INTERVAL`], and once
/// more when `closing` is cancelled.
pub async fn run_toucher(store: Arc<dyn Store>, mut rx: mpsc::Receiver<(Id, Timestamp)>, closing: CancellationToken) {
    let mut pending: HashMap<Id, Timestamp> = HashMap::new();
    let mut tick = tokio::time::interval(TOUCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = closing.cancelled() => break,
            r = rx.recv() => match r {
                Some((id, at)) => { pending.insert(id, at); }
                None => break,
            },
            _ = tick.tick() => touch(store.as_ref(), &mut pending).await,
        }
    }
    rx.close();
    while let Some((id, at)) = rx.recv().await {
        pending.insert(id, at);
    }
    touch(store.as_ref(), &mut pending).await;
}

async fn touch(store: &dyn Store, pending: &mut HashMap<Id, Timestamp>) {
    if pending.is_empty() {
        return;
    }
    let uses: Vec<(Id, Timestamp)> = pending.drain().collect();
    if let Err(e) = store.touch_credentials(&uses).await {
        tracing::warn!(error = %e, keys = uses.len(), "last_used_at update failed");
    }
}
