//! Rate limits, token quotas and spend budgets on the data plane (issue 6).
//!
//! Which buckets a call is checked against: for each of its team, app and key, the limit row
//! narrowed to the requested model wins over that scope's general row, metric by metric (most
//! specific wins); plus the model's own row (`scope = model`). Every applicable bucket is
//! checked and charged in one atomic [`Counters::acquire`] (all-or-nothing).
//!
//! Costs: requests 1; tokens the [`TokenEstimate`] (input + bounded output); spend the
//! estimate priced with [`Prices`]. After the call, the [`Admission`] guard settles tokens and
//! spend with the real usage from the call log draft, and ends the concurrency lease. It does so
//! when dropped, so it also settles when the client disconnected or the stream broke:
//! * usage reported (`prompt + completion > 0`) → charged exactly;
//! * the upstream failed before answering ([`Admission::nothing_consumed`]) → refunded;
//! * otherwise (disconnect or broken stream before the usage arrived) → the estimate stays
//!   charged (what the provider bills for a cancelled call is unknown).
//!
//! Overrun bound: a request is admitted only when `used + estimate <= limit`, so at any time
//! `used <= limit`; settlement can then add at most `real - estimate` per admitted call. With
//! `n` calls in flight, the final usage is at most `limit + Σ max(0, real_i - estimate_i)`;
//! since output is bounded by `max_tokens` (which the estimate reserves in full), token overrun
//! comes only from input under-estimates, and is zero for OpenAI-family models counted with the
//! real tokenizer. Tested in `tests/data_plane/limits.rs` and the counters conformance suite.
//!
//! Counter backend failures fail open (the call proceeds, an error is logged): availability is
//! preferred over enforcement while Redis is unreachable.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::response::Response;
use futures::StreamExt;
use gatehouse_providers::ChatStream;
use gatehouse_store::counters::{
    Adjustment, Bucket, BucketState, Counters, Decision, LimitBucket, Metric, limit_buckets,
};
use gatehouse_store::{BusEvent, Limit, LimitScope, Store, StoreError};
use gatehouse_types::{ApiError, ErrorCode, Id};
use http::HeaderValue;
use tokio_util::task::TaskTracker;

use crate::auth::AuthContext;
use crate::calllog::CallRecorder;
use crate::estimate::TokenEstimate;
use crate::pricing::{Price, Prices};

/// `x-ratelimit-*` header names (OpenAI's).
pub const LIMIT_REQUESTS: &str = "x-ratelimit-limit-requests";
pub const REMAINING_REQUESTS: &str = "x-ratelimit-remaining-requests";
pub const RESET_REQUESTS: &str = "x-ratelimit-reset-requests";
pub const LIMIT_TOKENS: &str = "x-ratelimit-limit-tokens";
pub const REMAINING_TOKENS: &str = "x-ratelimit-remaining-tokens";
pub const RESET_TOKENS: &str = "x-ratelimit-reset-tokens";

type RowKey = (LimitScope, String, String);

#[derive(Default)]
struct Table {
    rows: HashMap<RowKey, Limit>,
    /// Whether any row sets a token or spend metric (else no estimate is computed).
    has_usage_limits: bool,
    /// (provider name, upstream model) → public models with that deployment, so a model limit
    /// also holds when the deployment is named as `provider/model` (M4).
    aliases: HashMap<(String, String), Vec<String>>,
}

/// The limits table (snapshot of the `limits` store table, reloaded after
/// `BusEvent::LimitsChanged` / `Resync`) and the counters it charges.
pub struct Limiter {
    store: Arc<dyn Store>,
    counters: Arc<dyn Counters>,
    prices: Arc<dyn Prices>,
    tracker: TaskTracker,
    table: RwLock<Arc<Table>>,
    /// Bumped by every change event; the table is current when `loaded == generation`.
    generation: AtomicU64,
    loaded: AtomicU64,
    reload_lock: tokio::sync::Mutex<()>,
    lease_ttl: Duration,
}

/// What is known about a call when it is admitted.
pub struct CallInfo<'a> {
    pub auth: &'a AuthContext,
    /// The public model as requested.
    pub model: &'a str,
    pub provider: &'a str,
    pub upstream_model: &'a str,
    /// Computed only if a token or spend limit applies.
    pub estimate: &'a (dyn Fn() -> TokenEstimate + Sync),
}

async fn load(store: &dyn Store) -> Result<Table, StoreError> {
    let mut t = Table::default();
    for l in store.list_limits().await? {
        t.has_usage_limits |= Metric::ALL
            .iter()
            .any(|m| (m.is_tokens() || m.is_spend()) && m.of(&l).is_some());
        t.rows
            .insert((l.scope, l.scope_id.clone(), l.model.clone()), l);
    }
    if t.rows.keys().any(|(scope, _, _)| *scope == LimitScope::Model) {
        let providers: HashMap<Id, String> = store
            .list_providers()
            .await?
            .into_iter()
            .map(|p| (p.id, p.name))
            .collect();
        for m in store.list_models().await? {
            for d in &m.deployments {
                if let Some(p) = providers.get(&d.provider_id) {
                    t.aliases
                        .entry((p.clone(), d.upstream_model.clone()))
                        .or_default()
                        .push(m.name.clone());
                }
            }
        }
    }
    Ok(t)
}

impl Limiter {
    /// Loads the table. `lease_ttl` bounds how long a crashed node's concurrency leases live
    /// (use at least the longest call: the total upstream timeout).
    pub async fn load(
        store: Arc<dyn Store>,
        counters: Arc<dyn Counters>,
        prices: Arc<dyn Prices>,
        tracker: TaskTracker,
        lease_ttl: Duration,
    ) -> Result<Self, StoreError> {
        let table = load(store.as_ref()).await?;
        Ok(Self {
            store,
            counters,
            prices,
            tracker,
            table: RwLock::new(Arc::new(table)),
            generation: AtomicU64::new(0),
            loaded: AtomicU64::new(0),
            reload_lock: tokio::sync::Mutex::new(()),
            lease_ttl,
        })
    }

    /// Marks the table stale on `LimitsChanged` / `Resync` (reloaded by the next request).
    pub fn on_bus_event(&self, event: &BusEvent) {
        if matches!(event, BusEvent::LimitsChanged | BusEvent::RoutingChanged | BusEvent::Resync) {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn read(&self) -> Arc<Table> {
        match self.table.read() {
            Ok(t) => t.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The table, reloaded first if a change event arrived since the last load. Requests that
    /// arrive during a reload wait for it (a limit set before a burst applies to the whole burst).
    async fn current(&self) -> Arc<Table> {
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
                    // Keep serving the previous table; the next request tries again.
                    Err(e) => {
                        tracing::error!(error = %e, "limits reload failed; keeping the previous table")
                    }
                }
            }
        }
        self.read()
    }

    /// The buckets applying to a call (cost 0), see the module doc. For a token derived from an
    /// API key the key scope is that root key's (issue 5 H5: same rows, same counters).
    fn applicable(table: &Table, auth: &AuthContext, model: &str, provider: &str, upstream: &str) -> Vec<LimitBucket> {
        let c = &auth.credential;
        let mut out = Vec::new();
        for (scope, id) in [
            (LimitScope::Team, c.team_id),
            (LimitScope::App, c.app_id),
            (LimitScope::Key, c.security.limit_key.unwrap_or(c.id)),
        ] {
            let id = id_str(id);
            let specific = table
                .rows
                .get(&(scope, id.clone(), model.to_string()))
                .map(limit_buckets)
                .unwrap_or_default();
            let general = table
                .rows
                .get(&(scope, id, String::new()))
                .map(limit_buckets)
                .unwrap_or_default();
            for g in general {
                if !specific.iter().any(|s| s.metric == g.metric) {
                    out.push(g);
                }
            }
            out.extend(specific);
        }
        if let Some(l) = table
            .rows
            .get(&(LimitScope::Model, model.to_string(), String::new()))
        {
            out.extend(limit_buckets(l));
        }
        // `provider/model` naming a deployment of a limited public model: that model's limits
        // apply too (M4), so the direct form cannot bypass them.
        if model.contains('/')
            && let Some(names) = table.aliases.get(&(provider.to_string(), upstream.to_string()))
        {
            for name in names.iter().filter(|n| n.as_str() != model) {
                if let Some(l) = table.rows.get(&(LimitScope::Model, name.clone(), String::new())) {
                    out.extend(limit_buckets(l));
                }
            }
        }
        out
    }

    /// Checks and charges every applicable bucket. `Ok(None)` when no limit applies.
    ///
    /// Errors: 429 `rate_limit_exceeded` (requests, concurrency, tokens) or 429
    /// `insufficient_quota` (spend) with `Retry-After` in whole seconds (at least 1).
    pub async fn admit(
        &self,
        call: &CallInfo<'_>,
        rec: &CallRecorder,
    ) -> Result<Option<Admission>, ApiError> {
        let table = self.current().await;
        // A token carrying caps (issue 5, crate::caps) is limited even without rows.
        let caps = crate::caps::cap_buckets(call.auth);
        if table.rows.is_empty() && caps.is_empty() {
            return Ok(None);
        }
        let mut applicable = Self::applicable(&table, call.auth, call.model, call.provider, call.upstream_model);
        applicable.extend(caps);
        if applicable.is_empty() {
            return Ok(None);
        }
        let needs_estimate = applicable
            .iter()
            .any(|b| b.metric.is_tokens() || b.metric.is_spend());
        let estimate = if needs_estimate {
            (call.estimate)()
        } else {
            TokenEstimate::default()
        };
        let price = if applicable.iter().any(|b| b.metric.is_spend()) {
            let p = self.prices.price(call.provider, call.upstream_model);
            if p.is_none() {
                tracing::debug!(
                    provider = call.provider,
                    upstream_model = call.upstream_model,
                    "no price known: spend limits charge 0 for this call"
                );
            }
            p
        } else {
            None
        };
        let spend = price.map_or(0, |p| p.cost_micros(estimate.input, estimate.output));
        for b in &mut applicable {
            b.bucket.cost = match b.metric {
                Metric::Rpm | Metric::Concurrent => 1,
                m if m.is_tokens() => estimate.total(),
                _ => spend,
            };
        }
        crate::caps::set_cost(&mut applicable, &estimate, price.map_or(0, |p| p.cost_micros(estimate.input, 0)));
        let buckets: Vec<Bucket> = applicable.iter().map(|b| b.bucket.clone()).collect();
        let lease = rec.request_id().to_string();
        let decision = match self
            .counters
            .acquire(&buckets, &lease, self.lease_ttl)
            .await
        {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "rate-limit counters unavailable; call admitted without limits");
                return Ok(None);
            }
        };
        match decision {
            Decision::Denied {
                bucket,
                retry_after_ms,
                states,
            } => {
                let hit = &applicable[bucket.min(applicable.len() - 1)];
                let used = states.get(bucket).map_or(0, |s| s.used);
                if crate::caps::is_cap(hit) {
                    return Err(crate::caps::denial(hit, used));
                }
                Err(denial(hit, used, retry_after_ms))
            }
            Decision::Admitted { states } => Ok(Some(Admission {
                counters: self.counters.clone(),
                tracker: self.tracker.clone(),
                lease,
                headers: RateHeaders::from_states(&applicable, &states),
                charges: applicable
                    .iter()
                    .zip(&states)
                    .filter(|(b, _)| b.metric != Metric::Rpm)
                    .map(|(b, s)| (b.metric, b.bucket.key.clone(), s.window_id, b.bucket.cost))
                    .collect(),
                estimate,
                spend,
                price,
                recorder: rec.clone(),
                nothing_consumed: Mutex::new(false),
            })),
        }
    }
}

/// What the call-log seeding knows of one credential id (an API key or an issued token).
#[derive(Default)]
struct Chain {
    /// The key-scope id its calls are limited under (the root API key of a derived token,
    /// else the credential itself; as [`Limiter::applicable`]).
    key: Option<Id>,
    /// Tokens of the chain (itself and its ancestors) with a token cap / a spend cap.
    token_caps: Vec<Id>,
    spend_caps: Vec<Id>,
}

/// Longest parent chain followed when seeding (a guard against a cycle in bad data).
const MAX_CHAIN: usize = 64;

impl Limiter {
    /// Seeds the counters from the durable call log (h5seed): with in-memory counters a restart
    /// would otherwise give every day/month quota and every token/spend cap a fresh budget.
    /// One aggregate query ([`Store::call_usage`]) over the current UTC month (the day part
    /// separately) is charged, without any limit, to:
    /// * the day and month token/spend buckets of every limit row (team, app, key — a derived
    ///   token's calls under its root key — and model), honouring "most specific wins" as
    ///   [`Self::applicable`] does;
    /// * the token-cap and spend-cap buckets (`crate::caps`, monthly window) of the token used
    ///   and of every capped token it was exchanged from (its parents, read once per id).
    ///
    /// Minute windows and concurrency are not seeded (they are over after a restart). Call once,
    /// before serving, on counters that are not shared (never on Redis: already durable).
    /// Returns the number of buckets seeded. Errors: the store could not be read.
    pub async fn seed_from_call_log(&self) -> Result<usize, StoreError> {
        let now = time::OffsetDateTime::now_utc();
        let day_start = now.replace_time(time::Time::MIDNIGHT);
        let month_start = day_start.replace_day(1).unwrap_or(day_start);
        let usage = self.store.call_usage(month_start, day_start).await?;
        if usage.is_empty() {
            return Ok(0);
        }
        let table = self.current().await;
        let mut tokens: HashMap<Id, Option<gatehouse_store::IssuedToken>> = HashMap::new();
        let mut chains: HashMap<Id, Chain> = HashMap::new();
        for id in usage.iter().filter_map(|u| u.credential_id) {
            if chains.contains_key(&id) {
                continue;
            }
            let mut chain = Chain::default();
            let mut next = Some(id);
            for _ in 0..MAX_CHAIN {
                let Some(cur) = next else { break };
                if let std::collections::hash_map::Entry::Vacant(e) = tokens.entry(cur) {
                    e.insert(self.store.get_issued_token(cur).await?);
                }
                match tokens.get(&cur).and_then(Option::as_ref) {
                    Some(t) => {
                        if t.max_tokens.is_some_and(|m| m > 0) {
                            chain.token_caps.push(cur);
                        }
                        if t.max_spend_micros.is_some_and(|m| m > 0) {
                            chain.spend_caps.push(cur);
                        }
                        next = t.parent_id;
                    }
                    // Not an issued token: an API key, the root of the chain.
                    None => {
                        chain.key = Some(cur);
                        next = None;
                    }
                }
            }
            // A token not derived from a key is limited under its own id.
            chain.key.get_or_insert(id);
            chains.insert(id, chain);
        }
        let mut amounts: HashMap<(String, gatehouse_store::counters::Window), u64> = HashMap::new();
        let mut add = |key: String, window, amount: u64| {
            if amount > 0 {
                *amounts.entry((key, window)).or_default() += amount;
            }
        };
        for ((scope, scope_id, model), row) in &table.rows {
            for b in limit_buckets(row) {
                let day = match b.metric {
                    Metric::TokensPerDay | Metric::UsdPerDay => true,
                    Metric::TokensPerMonth | Metric::UsdPerMonth => false,
                    _ => continue,
                };
                for u in &usage {
                    let subject = match scope {
                        LimitScope::Team => u.team_id.map(id_str),
                        LimitScope::App => u.app_id.map(id_str),
                        LimitScope::Key => u.credential_id.and_then(|c| chains.get(&c)).and_then(|c| c.key).map(id_str),
                        LimitScope::Model => u.model.clone(),
                    };
                    if subject.as_deref() != Some(scope_id.as_str()) {
                        continue;
                    }
                    let called = u.model.clone().unwrap_or_default();
                    if model.is_empty() {
                        // A general row counts only the models without a specific row setting
                        // the same metric (most specific wins).
                        let specific = *scope != LimitScope::Model
                            && table
                                .rows
                                .get(&(*scope, scope_id.clone(), called))
                                .is_some_and(|r| b.metric.of(r).is_some());
                        if specific {
                            continue;
                        }
                    } else if called != *model {
                        continue;
                    }
                    let amount = match (b.metric.is_spend(), day) {
                        (false, true) => u.tokens_day,
                        (false, false) => u.tokens_month,
                        (true, true) => u.cost_micros_day,
                        (true, false) => u.cost_micros_month,
                    };
                    add(b.bucket.key.clone(), b.bucket.window, amount);
                }
            }
        }
        for u in &usage {
            let Some(chain) = u.credential_id.and_then(|c| chains.get(&c)) else { continue };
            for id in &chain.token_caps {
                add(format!("{}{}", crate::caps::CAP_PREFIX, id_str(*id)), Metric::TokensPerMonth.window(), u.tokens_month);
            }
            for id in &chain.spend_caps {
                add(format!("{}{}", crate::caps::SPEND_CAP_PREFIX, id_str(*id)), Metric::UsdPerMonth.window(), u.cost_micros_month);
            }
        }
        let buckets: Vec<Bucket> = amounts
            .into_iter()
            .map(|((key, window), cost)| Bucket { key, window, limit: u64::MAX, cost })
            .collect();
        if buckets.is_empty() {
            return Ok(0);
        }
        match self.counters.acquire(&buckets, "call-log-seed", self.lease_ttl).await {
            Ok(_) => Ok(buckets.len()),
            Err(e) => {
                tracing::error!(error = %e, "seeding the limit counters from the call log failed");
                Ok(0)
            }
        }
    }
}

fn id_str(id: Id) -> String {
    id.hyphenated().to_string()
}

/// The 429 of a limit row's bucket. `used` is the bucket's amount before the call. For token and
/// spend windows whose remainder is not 0 but less than this call's reservation
/// (`hit.bucket.cost`: the input estimate plus the output bound), the message says how much the
/// call needs and how much is left (L1) instead of "reached".
fn denial(hit: &LimitBucket, used: u64, retry_after_ms: u64) -> ApiError {
    let secs = retry_after_ms.div_ceil(1000).max(1);
    let scope = hit.scope.as_str();
    let limit = hit.bucket.limit;
    let left = limit.saturating_sub(used);
    let need = hit.bucket.cost;
    let th = crate::caps::thousands;
    let tokens_short = |what: &str| {
        format!(
            "{what} on this {scope}: this call needs ~{} tokens but {} are left (limit {}); lower max_tokens or retry in {secs}s.",
            th(need),
            th(left),
            th(limit)
        )
    };
    let spend_short = |what: &str| {
        format!(
            "{what} on this {scope}: this call needs ~{} USD but {} USD are left (limit {} USD); lower max_tokens.",
            usd(need),
            usd(left),
            usd(limit)
        )
    };
    let (code, message) = match hit.metric {
        Metric::Rpm => (
            ErrorCode::RateLimitExceeded,
            format!(
                "Rate limit reached for requests per minute on this {scope}: limit {limit}, used {used}. Retry in {secs}s."
            ),
        ),
        Metric::Concurrent => (
            ErrorCode::RateLimitExceeded,
            format!(
                "Too many concurrent requests on this {scope}: limit {limit}. Retry when a request has finished."
            ),
        ),
        Metric::Tpm if left > 0 => (ErrorCode::RateLimitExceeded, tokens_short("Tokens per minute")),
        Metric::Tpm => (
            ErrorCode::RateLimitExceeded,
            format!(
                "Rate limit reached for tokens per minute on this {scope}: limit {limit}, used {used}; this request needs more. Retry in {secs}s."
            ),
        ),
        Metric::TokensPerDay if left > 0 => (ErrorCode::RateLimitExceeded, tokens_short("Daily token quota")),
        Metric::TokensPerDay => (
            ErrorCode::RateLimitExceeded,
            format!(
                "Daily token quota reached on this {scope}: limit {limit}, used {used}. Retry in {secs}s."
            ),
        ),
        Metric::TokensPerMonth if left > 0 => (ErrorCode::RateLimitExceeded, tokens_short("Monthly token quota")),
        Metric::TokensPerMonth => (
            ErrorCode::RateLimitExceeded,
            format!(
                "Monthly token quota reached on this {scope}: limit {limit}, used {used}. Retry in {secs}s."
            ),
        ),
        Metric::UsdPerDay if left > 0 => (ErrorCode::InsufficientQuota, spend_short("Daily spend budget")),
        Metric::UsdPerDay => (
            ErrorCode::InsufficientQuota,
            format!(
                "Daily spend budget reached on this {scope}: limit {} USD, used {} USD.",
                usd(limit),
                usd(used)
            ),
        ),
        Metric::UsdPerMonth if left > 0 => (ErrorCode::InsufficientQuota, spend_short("Monthly spend budget")),
        Metric::UsdPerMonth => (
            ErrorCode::InsufficientQuota,
            format!(
                "Monthly spend budget reached on this {scope}: limit {} USD, used {} USD.",
                usd(limit),
                usd(used)
            ),
        ),
    };
    ApiError::new(code, message).with_retry_after(Some(secs))
}

fn usd(micros: u64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// The `x-ratelimit-*` values of an admitted call: the requests and tokens buckets with the
/// least remaining (`None` when no such limit applies).
#[derive(Debug, Clone, Default)]
pub struct RateHeaders {
    requests: Option<(u64, u64, u64)>,
    tokens: Option<(u64, u64, u64)>,
}

impl RateHeaders {
    fn from_states(buckets: &[LimitBucket], states: &[BucketState]) -> Self {
        let pick = |want: Metric| {
            buckets
                .iter()
                .zip(states)
                .filter(|(b, _)| b.metric == want)
                .map(|(b, s)| {
                    (
                        b.bucket.limit,
                        b.bucket.limit.saturating_sub(s.used),
                        s.reset_ms,
                    )
                })
                .min_by_key(|(_, remaining, _)| *remaining)
        };
        Self {
            requests: pick(Metric::Rpm),
            tokens: pick(Metric::Tpm),
        }
    }

    /// Sets the headers on `resp`.
    pub fn apply(&self, resp: &mut Response) {
        let h = resp.headers_mut();
        for (values, names) in [
            (
                self.requests,
                [LIMIT_REQUESTS, REMAINING_REQUESTS, RESET_REQUESTS],
            ),
            (self.tokens, [LIMIT_TOKENS, REMAINING_TOKENS, RESET_TOKENS]),
        ] {
            if let Some((limit, remaining, reset_ms)) = values {
                h.insert(names[0], HeaderValue::from(limit));
                h.insert(names[1], HeaderValue::from(remaining));
                if let Ok(v) = HeaderValue::from_str(&format_reset(reset_ms)) {
                    h.insert(names[2], v);
                }
            }
        }
    }
}

/// A duration as OpenAI writes it in `x-ratelimit-reset-*`: `850ms`, `12s`, `1m30s`.
pub fn format_reset(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = ms.div_ceil(1000);
    if secs < 60 {
        format!("{secs}s")
    } else {
        format!("{}m{}s", secs / 60, secs % 60)
    }
}

/// An admitted call's reservation; settles on drop (see the module doc).
pub struct Admission {
    counters: Arc<dyn Counters>,
    tracker: TaskTracker,
    lease: String,
    headers: RateHeaders,
    /// (metric, key, window id, amount charged) of every charged bucket except requests per minute.
    charges: Vec<(Metric, String, i64, u64)>,
    estimate: TokenEstimate,
    spend: u64,
    price: Option<Price>,
    recorder: CallRecorder,
    nothing_consumed: Mutex<bool>,
}

impl Admission {
    /// The `x-ratelimit-*` headers for the answer.
    pub fn headers(&self) -> &RateHeaders {
        &self.headers
    }

    /// The upstream failed before producing anything: refund tokens and spend on drop.
    pub fn nothing_consumed(&self) {
        *self
            .nothing_consumed
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = true;
    }
}

fn delta(real: u64, charged: u64) -> i64 {
    i64::try_from(real)
        .unwrap_or(i64::MAX)
        .saturating_sub(i64::try_from(charged).unwrap_or(i64::MAX))
}

impl Drop for Admission {
    fn drop(&mut self) {
        let usage = self.recorder.snapshot().usage;
        let reported = usage.prompt_tokens + usage.completion_tokens > 0;
        let refund = *self
            .nothing_consumed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (real_tokens, real_spend) = if reported {
            let spend = self.price.map_or(0, |p| {
                p.cost_micros(usage.prompt_tokens, usage.completion_tokens)
            });
            (usage.prompt_tokens + usage.completion_tokens, spend)
        } else if refund {
            (0, 0)
        } else {
            (self.estimate.total(), self.spend)
        };
        let mut adjustments = Vec::new();
        let mut leases = Vec::new();
        for (metric, key, window_id, charged) in self.charges.drain(..) {
            // `charged`: what acquire took from this bucket (the estimate, or for a token or
            // spend cap only its input part, crate::caps); refunds take back exactly that.
            let d = if metric.is_tokens() {
                delta(real_tokens, charged)
            } else if metric.is_spend() {
                delta(real_spend, charged)
            } else {
                leases.push(key);
                continue;
            };
            if d != 0 {
                adjustments.push(Adjustment {
                    key,
                    window_id,
                    delta: d,
                });
            }
        }
        if adjustments.is_empty() && leases.is_empty() {
            return;
        }
        let counters = self.counters.clone();
        let lease = std::mem::take(&mut self.lease);
        let settle = async move {
            if let Err(e) = counters.settle(&adjustments).await {
                tracing::error!(error = %e, "settling token/spend usage failed");
            }
            if let Err(e) = counters.release(&leases, &lease).await {
                tracing::error!(error = %e, "releasing a concurrency lease failed (it expires by itself)");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(_) => {
                self.tracker.spawn(settle);
            }
            Err(_) => {
                tracing::error!("no runtime to settle limits on; leases expire by themselves")
            }
        }
    }
}

/// Wraps a stream so that `admission` lives exactly as long as it (settled when the stream
/// ends or is dropped, e.g. on client disconnect).
pub fn hold_until_end(stream: ChatStream, admission: Option<Admission>) -> ChatStream {
    match admission {
        None => stream,
        Some(a) => Box::pin(stream.map(move |item| {
            let _held = &a;
            item
        })),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn reset_format_matches_openai() {
        assert_eq!(format_reset(850), "850ms");
        assert_eq!(format_reset(12_000), "12s");
        assert_eq!(format_reset(11_001), "12s");
        assert_eq!(format_reset(90_000), "1m30s");
        assert_eq!(usd(5_000_000), "5.000000");
    }

    fn hit(metric: Metric, limit: u64, cost: u64) -> LimitBucket {
        let mut b = limit_buckets(&Limit {
            id: gatehouse_types::new_id(),
            scope: LimitScope::Key,
            scope_id: "k".into(),
            model: String::new(),
            rpm: None,
            concurrent: None,
            tpm: None,
            tokens_per_day: Some(limit),
            tokens_per_month: None,
            usd_micros_per_day: Some(limit),
            usd_micros_per_month: None,
            created_at: gatehouse_types::now(),
            updated_at: gatehouse_types::now(),
        })
        .into_iter()
        .find(|b| b.metric == metric)
        .unwrap();
        b.bucket.cost = cost;
        b
    }

    #[test]
    fn a_call_larger_than_what_is_left_says_so() {
        let e = denial(&hit(Metric::TokensPerDay, 20, 4106), 0, 5_000);
        assert_eq!(e.code, ErrorCode::RateLimitExceeded);
        assert_eq!(
            e.message,
            "Daily token quota on this key: this call needs ~4,106 tokens but 20 are left (limit 20); lower max_tokens or retry in 5s."
        );
        let e = denial(&hit(Metric::UsdPerDay, 1_000, 3_000), 400, 5_000);
        assert_eq!(e.code, ErrorCode::InsufficientQuota);
        assert!(e.message.contains("needs ~0.003000 USD but 0.000600 USD are left"), "{}", e.message);
        // Reached: the old wording.
        let e = denial(&hit(Metric::TokensPerDay, 20, 5), 20, 5_000);
        assert_eq!(e.message, "Daily token quota reached on this key: limit 20, used 20. Retry in 5s.");
    }
}
