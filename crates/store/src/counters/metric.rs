//! The kinds of limit and the counter buckets a [`Limit`] row stands for; shared by the data
//! plane (which charges them) and the admin API (which shows usage against them).

use crate::{Limit, LimitScope};

use super::{Bucket, Window};

/// One kind of limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Requests per minute.
    Rpm,
    /// Requests in flight.
    Concurrent,
    /// Tokens (input + output) per minute.
    Tpm,
    TokensPerDay,
    TokensPerMonth,
    /// Spend in micro-USD per UTC day.
    UsdPerDay,
    /// Spend in micro-USD per UTC month.
    UsdPerMonth,
}

impl Metric {
    /// Every metric, in display order.
    pub const ALL: [Metric; 7] = [
        Self::Rpm,
        Self::Concurrent,
        Self::Tpm,
        Self::TokensPerDay,
        Self::TokensPerMonth,
        Self::UsdPerDay,
        Self::UsdPerMonth,
    ];

    /// Short name used in bucket keys and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rpm => "rpm",
            Self::Concurrent => "concurrent",
            Self::Tpm => "tpm",
            Self::TokensPerDay => "tokens_per_day",
            Self::TokensPerMonth => "tokens_per_month",
            Self::UsdPerDay => "usd_per_day",
            Self::UsdPerMonth => "usd_per_month",
        }
    }

    /// The counting window.
    pub fn window(self) -> Window {
        match self {
            Self::Rpm | Self::Tpm => Window::Minute,
            Self::Concurrent => Window::Concurrent,
            Self::TokensPerDay | Self::UsdPerDay => Window::Day,
            Self::TokensPerMonth | Self::UsdPerMonth => Window::Month,
        }
    }

    /// Counts tokens (charged with an estimate, settled with real usage).
    pub fn is_tokens(self) -> bool {
        matches!(self, Self::Tpm | Self::TokensPerDay | Self::TokensPerMonth)
    }

    /// Counts spend (a budget: a hit answers `insufficient_quota`).
    pub fn is_spend(self) -> bool {
        matches!(self, Self::UsdPerDay | Self::UsdPerMonth)
    }

    /// The value of this metric in `limit`, if set.
    pub fn of(self, limit: &Limit) -> Option<u64> {
        match self {
            Self::Rpm => limit.rpm,
            Self::Concurrent => limit.concurrent,
            Self::Tpm => limit.tpm,
            Self::TokensPerDay => limit.tokens_per_day,
            Self::TokensPerMonth => limit.tokens_per_month,
            Self::UsdPerDay => limit.usd_micros_per_day,
            Self::UsdPerMonth => limit.usd_micros_per_month,
        }
    }
}

/// A bucket of a limit row, with what it measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitBucket {
    pub metric: Metric,
    pub scope: LimitScope,
    /// `cost` is 0; the caller sets it.
    pub bucket: Bucket,
}

/// The counter key of `metric` for a limit row: `<metric>:<scope>:<scope_id>[:<model>]`.
pub fn bucket_key(metric: Metric, scope: LimitScope, scope_id: &str, model: &str) -> String {
    let mut k = format!("{}:{}:{}", metric.as_str(), scope.as_str(), scope_id);
    if !model.is_empty() {
        k.push(':');
        k.push_str(model);
    }
    k
}

/// One bucket per metric set in `limit` (cost 0).
pub fn limit_buckets(limit: &Limit) -> Vec<LimitBucket> {
    Metric::ALL
        .iter()
        .filter_map(|&metric| {
            let value = metric.of(limit)?;
            Some(LimitBucket {
                metric,
                scope: limit.scope,
                bucket: Bucket {
                    key: bucket_key(metric, limit.scope, &limit.scope_id, &limit.model),
                    window: metric.window(),
                    limit: value,
                    cost: 0,
                },
            })
        })
        .collect()
}
