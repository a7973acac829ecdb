//! Login throttling of the portal (issue 7, M8): failed logins are counted per username and per
//! client IP in the shared [`gatehouse_store::Counters`] (in memory on one node, Redis across
//! nodes), in two fixed windows each (a minute and a UTC day). Once a bucket is full, every
//! login attempt for that username or from that address answers 429 `rate_limit_exceeded` with
//! `Retry-After` until the window ends — before the password is checked, and the same way for
//! unknown usernames, so the answer reveals neither the password's correctness nor whether the
//! user exists. A successful login clears the per-username buckets (not the per-IP ones).
//!
//! Keys never hold the username: `login:user:<keyed fingerprint of the lowercased name>` and
//! `login:ip:<address>`. If the counters backend fails, the login is not throttled (logged as an
//! error): an unreachable Redis must not lock every operator out of the admin API.

use std::net::IpAddr;

use gatehouse_store::counters::{Adjustment, Bucket, Decision, Window};
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

    /// 429 (with `Retry-After` in seconds) when any of the attempt's buckets is full.
    pub(crate) async fn login_throttle_check(&self, username: &str, client: &LoginClient) -> Result<(), ApiError> {
        let buckets = self.login_buckets(username, client);
        let states = match self.counters().peek(&buckets).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "login throttle: counters unavailable; not throttling");
                return Ok(());
            }
        };
        let wait_ms = buckets
            .iter()
            .zip(&states)
            .filter(|(b, s)| s.used >= b.limit)
            .map(|(_, s)| s.reset_ms)
            .max();
        match wait_ms {
            None => Ok(()),
            Some(ms) => Err(ApiError::new(ErrorCode::RateLimitExceeded, "too many failed logins; try again later")
                .with_retry_after(Some(ms.div_ceil(1000).max(1)))),
        }
    }

    /// Counts one failed login against the username and the client IP.
    pub(crate) async fn login_throttle_fail(&self, username: &str, client: &LoginClient) {
        let buckets = self.login_buckets(username, client);
        match self.counters().acquire(&buckets, "", std::time::Duration::ZERO).await {
            Ok(Decision::Admitted { .. }) => {}
            // a full bucket: the next attempt is refused by `login_throttle_check` anyway
            Ok(Decision::Denied { .. }) => {}
            Err(e) => tracing::error!(error = %e, "login throttle: counters unavailable; failure not counted"),
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
