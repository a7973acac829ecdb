//! Token caps and spend caps of issued tokens on the data plane (issue 5; `token-security.md`
//! §5.2 G-6 "lower spend or token cap").
//!
//! An access, single-use or JWT token may carry `max_tokens` (RFC 8693 exchange parameter of
//! Gatehouse, JWT claim `max_tokens`): the total tokens (input + output) that every call made
//! with that token may use together; and `max_spend` (USD, stored as micros): the catalog cost
//! ([`crate::pricing`], as for spend limits) of those calls together.
//!
//! One shared budget per capped token (H6): a call made with a token is charged to the caps of
//! that token *and of every capped token it was exchanged from* (its lineage,
//! [`gatehouse_oauth::Lineage`]), so exchanging again cannot reset or multiply a cap. Exchange
//! also never issues a cap above the subject's remaining cap ([`CounterUsage`] tells it what
//! was used).
//!
//! Enforcement goes through the limits path ([`crate::limits::Limiter::admit`]): one extra
//! bucket per cap, keys `cap:tokens:<jti>` (limit = the cap) and `cap:spend:<jti>` (limit = the
//! cap in USD micros), charged atomically with the other buckets and settled with the real
//! usage after the call. Their reservation is the *input* estimate only (token caps: at least 1
//! token; spend caps: the input priced): a small cap is not refused up front because the
//! request did not bound its output. So a call is admitted while `used + input ≤ cap`, and the
//! overrun is bounded by the output of the calls in flight when the cap is reached. The buckets
//! use the monthly window (tokens live ≤ 1 h, so only a token alive across the turn of a UTC
//! month could see it reset once). A refused call is 429 `insufficient_quota` without
//! `Retry-After`: a cap never resets. A model without a catalog price charges 0 to spend caps
//! (as for spend limits).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use gatehouse_oauth::{CapUsage, CapUsed};
use gatehouse_store::LimitScope;
use gatehouse_store::counters::{Bucket, Counters, LimitBucket, Metric};
use gatehouse_types::{ApiError, ErrorCode, Id};

use crate::auth::AuthContext;
use crate::estimate::TokenEstimate;

/// Prefix of the counter keys of token caps.
pub const CAP_PREFIX: &str = "cap:tokens:";
/// Prefix of the counter keys of spend caps.
pub const SPEND_CAP_PREFIX: &str = "cap:spend:";

fn bucket(metric: Metric, prefix: &str, id: Id, limit: u64) -> LimitBucket {
    LimitBucket { metric, scope: LimitScope::Key, bucket: Bucket { key: format!("{prefix}{}", id.hyphenated()), window: metric.window(), limit, cost: 0 } }
}

/// The cap buckets of the caller's token (its own caps and its ancestors'), cost 0 (see
/// [`set_cost`]). Empty for API keys.
pub fn cap_buckets(auth: &AuthContext) -> Vec<LimitBucket> {
    let sec = &auth.credential.security;
    let tokens = sec.token_caps.iter().map(|(id, cap)| bucket(Metric::TokensPerMonth, CAP_PREFIX, *id, *cap));
    let spend = sec.spend_caps.iter().map(|(id, cap)| bucket(Metric::UsdPerMonth, SPEND_CAP_PREFIX, *id, *cap));
    tokens.chain(spend).collect()
}

/// Whether `b` is a token-cap or spend-cap bucket.
pub fn is_cap(b: &LimitBucket) -> bool {
    b.bucket.key.starts_with(CAP_PREFIX) || b.bucket.key.starts_with(SPEND_CAP_PREFIX)
}

/// Sets the reservation of cap buckets (module doc): the input estimate (at least 1) for token
/// caps, `input_spend` (the input estimate priced, USD micros) for spend caps.
pub fn set_cost(buckets: &mut [LimitBucket], estimate: &TokenEstimate, input_spend: u64) {
    for b in buckets.iter_mut().filter(|b| is_cap(b)) {
        b.bucket.cost = if b.metric.is_spend() { input_spend } else { estimate.input.max(1) };
    }
}

/// 429 `insufficient_quota` for a token whose cap (or an ancestor's) has no room for the call
/// (no `Retry-After`). `used` is the bucket's amount before the call. Two messages: the cap is
/// used up (`used ≥ cap`), or something is left but this call's reservation (`hit.bucket.cost`,
/// the input estimate, tokens or USD micros) alone needs more — then the message says how much
/// the call needs and how much is left (L1), so the client knows to shorten the request. Only
/// amounts, never a token or its id.
pub fn denial(hit: &LimitBucket, used: u64) -> ApiError {
    let limit = hit.bucket.limit;
    let left = limit.saturating_sub(used);
    let need = hit.bucket.cost;
    let message = match (hit.metric.is_spend(), left > 0) {
        (true, false) => format!("This token's spend cap of {} USD is used up ({} USD used); obtain a new token.", usd(limit), usd(used)),
        (true, true) => format!(
            "This call needs ~{} USD but {} USD are left of this token's spend cap of {} USD; shorten the request or obtain a new token.",
            usd(need),
            usd(left),
            usd(limit)
        ),
        (false, false) => format!("This token's cap of {} tokens is used up ({} used); obtain a new token.", thousands(limit), thousands(used)),
        (false, true) => format!(
            "This call needs ~{} tokens but {} are left of this token's cap of {} tokens; shorten the request or obtain a new token.",
            thousands(need),
            thousands(left),
            thousands(limit)
        ),
    };
    ApiError::new(ErrorCode::InsufficientQuota, message)
}

/// `4106` → `4,106` (refusal messages).
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn usd(micros: u64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// What exchange reads to bound a child's caps by the parent's remaining caps (H6): the
/// current values of the parent's cap buckets in the limit counters.
pub struct CounterUsage(pub Arc<dyn Counters>);

impl CapUsage for CounterUsage {
    fn used(&self, jti: Id) -> Pin<Box<dyn Future<Output = Option<CapUsed>> + Send + '_>> {
        Box::pin(async move {
            let buckets = [
                bucket(Metric::TokensPerMonth, CAP_PREFIX, jti, 0).bucket,
                bucket(Metric::UsdPerMonth, SPEND_CAP_PREFIX, jti, 0).bucket,
            ];
            match self.0.peek(&buckets).await {
                Ok(states) => Some(CapUsed {
                    tokens: states.first().map_or(0, |s| s.used),
                    spend_micros: states.get(1).map_or(0, |s| s.used),
                }),
                Err(e) => {
                    tracing::error!(error = %e, "rate-limit counters unavailable; exchange bounds caps by their nominal values");
                    None
                }
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn hit(metric: Metric, prefix: &str, limit: u64, cost: u64) -> LimitBucket {
        let mut b = bucket(metric, prefix, gatehouse_types::new_id(), limit);
        b.bucket.cost = cost;
        b
    }

    #[test]
    fn refusals_say_what_the_call_needs_and_what_is_left() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(4106), "4,106");
        assert_eq!(thousands(1_234_567), "1,234,567");
        // The estimate alone is more than what is left: no "used up (0 used)" (L1).
        let e = denial(&hit(Metric::TokensPerMonth, CAP_PREFIX, 20, 4106), 0);
        assert_eq!(e.code, ErrorCode::InsufficientQuota);
        assert_eq!(e.message, "This call needs ~4,106 tokens but 20 are left of this token's cap of 20 tokens; shorten the request or obtain a new token.");
        let e = denial(&hit(Metric::UsdPerMonth, SPEND_CAP_PREFIX, 1_000_000, 1_500_000), 250_000);
        assert!(e.message.contains("needs ~1.500000 USD but 0.750000 USD are left"), "{}", e.message);
        // Really used up.
        let e = denial(&hit(Metric::TokensPerMonth, CAP_PREFIX, 20, 5), 23);
        assert_eq!(e.message, "This token's cap of 20 tokens is used up (23 used); obtain a new token.");
        assert!(denial(&hit(Metric::UsdPerMonth, SPEND_CAP_PREFIX, 10, 5), 10).message.contains("is used up"));
    }
}
