//! Token caps of issued tokens on the data plane (issue 5; `token-security.md` §5.2 G-6
//! "lower spend or token cap").
//!
//! An access, single-use or JWT token may carry `max_tokens` (RFC 8693 exchange parameter of
//! Gatehouse, JWT claim `max_tokens`): the total tokens (input + output) that every call made
//! with that token may use together. Exchange only lowers it (`invalid_scope` otherwise).
//!
//! Enforcement goes through the limits path ([`crate::limits::Limiter::admit`]): one extra
//! token bucket per capped token, key `cap:tokens:<jti>`, limit = the cap, charged atomically
//! with the other buckets and settled with the real usage after the call. Its reservation is
//! the *input* estimate only (at least 1): a small cap is not refused up front because the
//! request did not bound its output. So a call is admitted while `used + input ≤ cap`, and the
//! overrun is bounded by the output of the calls in flight when the cap is reached. The bucket
//! uses the monthly window (tokens live ≤ 1 h, so only a token alive across the turn of a UTC
//! month could see it reset once). A refused call is 429 `insufficient_quota` without
//! `Retry-After`: the cap never resets.

use gatehouse_store::LimitScope;
use gatehouse_store::counters::{Bucket, LimitBucket, Metric};
use gatehouse_types::{ApiError, ErrorCode};

use crate::auth::AuthContext;
use crate::estimate::TokenEstimate;

/// Prefix of the counter keys of token caps.
pub const CAP_PREFIX: &str = "cap:tokens:";

/// The cap bucket of the caller's token, if it carries a cap (cost 0; see [`set_cost`]).
pub fn token_cap_bucket(auth: &AuthContext) -> Option<LimitBucket> {
    let cap = auth.credential.security.token_cap?;
    let metric = Metric::TokensPerMonth;
    Some(LimitBucket {
        metric,
        scope: LimitScope::Key,
        bucket: Bucket { key: format!("{CAP_PREFIX}{}", auth.credential.id.hyphenated()), window: metric.window(), limit: cap, cost: 0 },
    })
}

/// Whether `b` is a token-cap bucket.
pub fn is_cap(b: &LimitBucket) -> bool {
    b.bucket.key.starts_with(CAP_PREFIX)
}

/// Sets the reservation of cap buckets: the input estimate, at least 1 (module doc).
pub fn set_cost(buckets: &mut [LimitBucket], estimate: &TokenEstimate) {
    for b in buckets.iter_mut().filter(|b| is_cap(b)) {
        b.bucket.cost = estimate.input.max(1);
    }
}

/// 429 `insufficient_quota` for a token whose cap is used up (no `Retry-After`).
pub fn denial(hit: &LimitBucket, used: u64) -> ApiError {
    ApiError::new(
        ErrorCode::InsufficientQuota,
        format!("This token's cap of {} tokens is used up ({used} used); obtain a new token.", hit.bucket.limit),
    )
}
