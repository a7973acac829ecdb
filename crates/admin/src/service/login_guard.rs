//! Login throttling of the portal (issue 7, M8): failed logins are counted per username and per
//! client IP in the shared [`gatehouse_store::Counters`] (in memory on one node, Redis across
//! nodes), in two fixed windows each (a minute and a UTC day). Every attempt reserves its place
//! in the buckets atomically before the password is checked (so parallel attempts cannot all
//! reach argon2) and a successful one gives it back. Once a bucket is full, every
//! login attempt for that username or from that address answers 429 `rate_limit_exceeded` with
//! `Retry-After` until the window ends — before the password is checked, and the same way for
//! unknown usernames, so the answer reveals neither the password's correctness nor whether the
//! user exists. A successful login clears the per-username buckets (not the per-IP ones).
//!
//! Keys never hold the username: `login:user:<keyed fingerprint of the lowercased name>` and
//! `login:ip:<address>`. If the counters backend fails, the login is not throttled (logged as an
//! error): an unreachable Redis must not lock every operator out of the admin API.

use std::net::IpAddr;

use gatehouse_store::counters::{Adjustment, Bucket, BucketState, Decision, Window};
use gatehouse_types::{ApiError, ErrorCode};

use super::AdminService;

/// Failed logins per username admitted per minute.
pub const USER_PER_MINUTE: u64 = 5;
/// Failed logins per username admitted per UTC day.
pub const USER_PER_DAY: u64 = 50;
/// Failed logins per client IP admitted per minute.
pub const IP_PER_MINUTE: u64 = 20;
/// Failed logins per client IP admitted per UTC day.
pub const IP_PER_DAY: u64 = 500;

/// Who is logging in, as far as the throttle cares.
#[derive(Debug, Clone, Default)]
pub struct LoginClient {
    /// The client address (socket peer, or `X-Forwarded-For` behind a trusted proxy).
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

/// One login attempt charged on the throttle's buckets (see
/// [`AdminService::login_throttle_reserve`]): the buckets and the windows they were charged in.
#[derive(Debug)]
pub(crate) struct LoginReservation {
    buckets: Vec<Bucket>,
    states: Vec<BucketState>,
}

fn bucket(key: String, window: Window, limit: u64) -> Bucket {
    Bucket { key, window, limit, cost: 1 }
}

impl AdminService {
    fn login_user_buckets(&self, username: &str) -> Vec<Bucket> {
        let fp = self.deps.peppers.fingerprint(&format!("login-user:{}", username.to_lowercase()));
        vec![
            bucket(format!("login:user:{fp}:m"), Window::Minute, USER_PER_MINUTE),
            bucket(format!("login:user:{fp}:d"), Window::Day, USER_PER_DAY),
        ]
    }

    fn login_buckets(&self, username: &str, client: &LoginClient) -> Vec<Bucket> {
        let mut b = self.login_user_buckets(username);
        if let Some(ip) = client.ip {
            b.push(bucket(format!("login:ip:{ip}:m"), Window::Minute, IP_PER_MINUTE));
            b.push(bucket(format!("login:ip:{ip}:d"), Window::Day, IP_PER_DAY));
        }
        b
    }

    /// Reserves one attempt on every bucket of the attempt (username and client IP, minute and
    /// day), atomically and before the password is checked (issue 7, tester M3): `N` parallel
    /// attempts can pass at most `limit` of them to argon2, the rest answer 429 at once. A
    /// successful login gives its reservation back ([`Self::login_throttle_refund`]); a failed
    /// one keeps it, which is the failure count.
    ///
    /// Returns `Ok(None)` when the counters backend fails (not throttled, logged as an error).
    /// Errors: 429 `rate_limit_exceeded` with `Retry-After` (seconds, at least 1) when a bucket
    /// is full; nothing is charged then.
    pub(crate) async fn login_throttle_reserve(
        &self,
        username: &str,
        client: &LoginClient,
    ) -> Result<Option<LoginReservation>, ApiError> {
        let buckets = self.login_buckets(username, client);
        match self.counters().acquire(&buckets, "", std::time::Duration::ZERO).await {
            Ok(Decision::Admitted { states }) => Ok(Some(LoginReservation { buckets, states })),
            Ok(Decision::Denied { retry_after_ms, .. }) => Err(ApiError::new(
                ErrorCode::RateLimitExceeded,
                "too many failed logins; try again later",
            )
            .with_retry_after(Some(retry_after_ms.div_ceil(1000).max(1)))),
            Err(e) => {
                tracing::error!(error = %e, "login throttle: counters unavailable; not throttling");
                Ok(None)
            }
        }
    }

    /// Gives back the attempt reserved by [`Self::login_throttle_reserve`] (after a successful
    /// login), in the windows it was charged in.
    pub(crate) async fn login_throttle_refund(&self, reservation: LoginReservation) {
        let adjustments: Vec<Adjustment> = reservation
            .buckets
            .iter()
            .zip(&reservation.states)
            .map(|(b, s)| Adjustment { key: b.key.clone(), window_id: s.window_id, delta: -1 })
            .collect();
        if let Err(e) = self.counters().settle(&adjustments).await {
            tracing::error!(error = %e, "login throttle: counters unavailable; attempt not refunded");
        }
    }

    /// Clears the per-username failure counts after a successful login.
    pub(crate) async fn login_throttle_reset(&self, username: &str) {
        let buckets = self.login_user_buckets(username);
        let states = match self.counters().peek(&buckets).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "login throttle: counters unavailable; count not reset");
                return;
            }
        };
        let adjustments: Vec<Adjustment> = buckets
            .iter()
            .zip(&states)
            .filter(|(_, s)| s.used > 0)
            .map(|(b, s)| Adjustment { key: b.key.clone(), window_id: s.window_id, delta: -i64::try_from(s.used).unwrap_or(i64::MAX) })
            .collect();
        if !adjustments.is_empty()
            && let Err(e) = self.counters().settle(&adjustments).await
        {
            tracing::error!(error = %e, "login throttle: counters unavailable; count not reset");
        }
    }
}
