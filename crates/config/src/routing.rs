//! `[routing]`: load balancing, failover, circuit breaker and per-model routing options
//! (issue 6). Validated here; the server turns [`RoutingConfig`] into the gateway's policy.
//!
//! ```toml
//! [routing]
//! max_attempts = 3                 # upstream calls per request, all deployments and keys
//! backoff_base = "25ms"            # full-jitter exponential backoff between attempts
//! backoff_max = "1s"
//! max_retry_after_wait = "2s"      # wait out a Retry-After up to this long when nothing else is left
//! key_recheck = "10m"              # a key marked invalid / out of quota is retried after this
//! breaker_failures = 5             # consecutive failures that open a deployment's circuit
//! breaker_error_rate_percent = 50  # … or this failed share of at least breaker_min_calls calls
//! breaker_min_calls = 20
//! breaker_window = "60s"
//! breaker_cool_down = "30s"        # open → half-open (one probe)
//!
//! [[routing.models]]
//! name = "gpt-4o"                  # a public model of [[models]]
//! strategy = "least_in_flight"     # or "weighted" (default)
//! fallbacks = ["claude-sonnet-4-5"]
//! connect_timeout = "5s"
//! first_byte_timeout = "30s"
//! ttft_timeout = "20s"
//! idle_timeout = "30s"
//! total_timeout = "5m"
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;

use crate::ConfigIssue;
use crate::raw::RawDuration;

/// `[routing]` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    pub max_attempts: Option<i64>,
    pub backoff_base: Option<RawDuration>,
    pub backoff_max: Option<RawDuration>,
    pub max_retry_after_wait: Option<RawDuration>,
    pub key_recheck: Option<RawDuration>,
    pub breaker_failures: Option<i64>,
    pub breaker_error_rate_percent: Option<i64>,
    pub breaker_min_calls: Option<i64>,
    pub breaker_window: Option<RawDuration>,
    pub breaker_cool_down: Option<RawDuration>,
    #[serde(default)]
    pub models: Vec<RawModelRouting>,
}

/// One `[[routing.models]]` entry as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModelRouting {
    pub name: String,
    pub strategy: Option<String>,
    #[serde(default)]
    pub fallbacks: Vec<String>,
    pub connect_timeout: Option<RawDuration>,
    pub first_byte_timeout: Option<RawDuration>,
    pub ttft_timeout: Option<RawDuration>,
    pub idle_timeout: Option<RawDuration>,
    pub total_timeout: Option<RawDuration>,
}

/// Validated `[routing]`; `None` = the gateway's default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoutingConfig {
    /// 1..=20.
    pub max_attempts: Option<u32>,
    pub backoff_base: Option<Duration>,
    pub backoff_max: Option<Duration>,
    pub max_retry_after_wait: Option<Duration>,
    pub key_recheck: Option<Duration>,
    /// 1..=1000.
    pub breaker_failures: Option<u32>,
    /// 1..=100 (percent).
    pub breaker_error_rate_percent: Option<u32>,
    /// 1..=100000.
    pub breaker_min_calls: Option<u32>,
    pub breaker_window: Option<Duration>,
    pub breaker_cool_down: Option<Duration>,
    pub models: Vec<ModelRoutingConfig>,
}

/// Validated routing options of one public model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelRoutingConfig {
    pub name: String,
    /// `weighted` (default) or `least_in_flight`.
    pub strategy: Option<String>,
    pub fallbacks: Vec<String>,
    pub connect_timeout: Option<Duration>,
    pub first_byte_timeout: Option<Duration>,
    pub ttft_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub total_timeout: Option<Duration>,
}

/// The accepted strategy names.
pub const STRATEGIES: &[&str] = &["weighted", "least_in_flight"];

fn int(v: Option<i64>, path: &str, range: std::ops::RangeInclusive<i64>, issues: &mut Vec<ConfigIssue>) -> Option<u32> {
    let n = v?;
    if range.contains(&n) {
        u32::try_from(n).ok()
    } else {
        issues.push(ConfigIssue::new(path, format!("must be between {} and {}", range.start(), range.end())));
        None
    }
}

fn dur(v: &Option<RawDuration>, path: &str, allow_zero: bool, issues: &mut Vec<ConfigIssue>) -> Option<Duration> {
    let raw = v.as_ref()?;
    match crate::parse_duration(raw) {
        Ok(d) if d.is_zero() && !allow_zero => {
            issues.push(ConfigIssue::new(path, "must be greater than zero"));
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            issues.push(ConfigIssue::new(path, e));
            None
        }
    }
}

/// Validates `[routing]`; `models` are the public model names of the file (fallbacks and
/// entries must name one of them, or a `provider/model`).
pub fn build(raw: &RawRouting, models: &BTreeSet<String>, issues: &mut Vec<ConfigIssue>) -> RoutingConfig {
    let p = |k: &str| format!("routing.{k}");
    let mut out = RoutingConfig {
        max_attempts: int(raw.max_attempts, &p("max_attempts"), 1..=20, issues),
        backoff_base: dur(&raw.backoff_base, &p("backoff_base"), true, issues),
        backoff_max: dur(&raw.backoff_max, &p("backoff_max"), true, issues),
        max_retry_after_wait: dur(&raw.max_retry_after_wait, &p("max_retry_after_wait"), true, issues),
        key_recheck: dur(&raw.key_recheck, &p("key_recheck"), false, issues),
        breaker_failures: int(raw.breaker_failures, &p("breaker_failures"), 1..=1000, issues),
        breaker_error_rate_percent: int(raw.breaker_error_rate_percent, &p("breaker_error_rate_percent"), 1..=100, issues),
        breaker_min_calls: int(raw.breaker_min_calls, &p("breaker_min_calls"), 1..=100_000, issues),
        breaker_window: dur(&raw.breaker_window, &p("breaker_window"), false, issues),
        breaker_cool_down: dur(&raw.breaker_cool_down, &p("breaker_cool_down"), false, issues),
        models: Vec::new(),
    };
    let known = |name: &str| models.contains(name) || name.split_once('/').is_some_and(|(a, b)| !a.is_empty() && !b.is_empty());
    let mut seen = BTreeSet::new();
    for (i, m) in raw.models.iter().enumerate() {
        let path = format!("routing.models[{i}]");
        if !known(&m.name) {
            issues.push(ConfigIssue::new(format!("{path}.name"), format!("unknown model `{}` (not in [[models]])", m.name)));
        } else if !seen.insert(m.name.clone()) {
            issues.push(ConfigIssue::new(format!("{path}.name"), format!("duplicate entry for model `{}`", m.name)));
        }
        if let Some(s) = &m.strategy
            && !STRATEGIES.contains(&s.as_str())
        {
            issues.push(ConfigIssue::new(format!("{path}.strategy"), format!("unknown strategy `{s}` (expected one of {})", STRATEGIES.join(", "))));
        }
        for (j, f) in m.fallbacks.iter().enumerate() {
            if !known(f) {
                issues.push(ConfigIssue::new(format!("{path}.fallbacks[{j}]"), format!("unknown model `{f}` (not in [[models]])")));
            } else if *f == m.name {
                issues.push(ConfigIssue::new(format!("{path}.fallbacks[{j}]"), "a model cannot be its own fallback"));
            }
        }
        out.models.push(ModelRoutingConfig {
            name: m.name.clone(),
            strategy: m.strategy.clone(),
            fallbacks: m.fallbacks.clone(),
            connect_timeout: dur(&m.connect_timeout, &format!("{path}.connect_timeout"), false, issues),
            first_byte_timeout: dur(&m.first_byte_timeout, &format!("{path}.first_byte_timeout"), false, issues),
            ttft_timeout: dur(&m.ttft_timeout, &format!("{path}.ttft_timeout"), false, issues),
            idle_timeout: dur(&m.idle_timeout, &format!("{path}.idle_timeout"), false, issues),
            total_timeout: dur(&m.total_timeout, &format!("{path}.total_timeout"), false, issues),
        });
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::raw::parse_raw;

    const EXAMPLE: &str = r#"
[routing]
max_attempts = 4
backoff_base = "10ms"
backoff_max = "2s"
max_retry_after_wait = 0
key_recheck = "5m"
breaker_failures = 3
breaker_error_rate_percent = 40
breaker_min_calls = 10
breaker_window = "30s"
breaker_cool_down = "15s"

[[routing.models]]
name = "gpt-4o"
strategy = "least_in_flight"
fallbacks = ["claude-sonnet-4-5", "openai/gpt-4o-mini"]
connect_timeout = "5s"
first_byte_timeout = 30
ttft_timeout = "20s"
idle_timeout = "30s"
total_timeout = "5m"
"#;

    fn names() -> BTreeSet<String> {
        ["gpt-4o", "claude-sonnet-4-5"].into_iter().map(String::from).collect()
    }

    #[test]
    fn every_key_parses() {
        let raw = parse_raw(EXAMPLE).unwrap();
        let mut issues = Vec::new();
        let r = build(raw.routing.as_ref().unwrap(), &names(), &mut issues);
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(r.max_attempts, Some(4));
        assert_eq!(r.max_retry_after_wait, Some(Duration::ZERO));
        assert_eq!(r.breaker_error_rate_percent, Some(40));
        let m = &r.models[0];
        assert_eq!(m.strategy.as_deref(), Some("least_in_flight"));
        assert_eq!(m.fallbacks.len(), 2);
        assert_eq!(m.first_byte_timeout, Some(Duration::from_secs(30)));
        assert_eq!(m.total_timeout, Some(Duration::from_secs(300)));
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let text = r#"
[routing]
max_attempts = 0
breaker_error_rate_percent = 101
breaker_cool_down = "0s"

[[routing.models]]
name = "nope"
strategy = "random"
fallbacks = ["gpt-4o", "missing"]
ttft_timeout = "soon"

[[routing.models]]
name = "gpt-4o"
fallbacks = ["gpt-4o"]
"#;
        let raw = parse_raw(text).unwrap();
        let mut issues = Vec::new();
        build(raw.routing.as_ref().unwrap(), &names(), &mut issues);
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        for p in [
            "routing.max_attempts",
            "routing.breaker_error_rate_percent",
            "routing.breaker_cool_down",
            "routing.models[0].name",
            "routing.models[0].strategy",
            "routing.models[0].fallbacks[1]",
            "routing.models[0].ttft_timeout",
            "routing.models[1].fallbacks[0]",
        ] {
            assert!(paths.contains(&p), "{p} missing from {paths:?}");
        }
        assert_eq!(issues.len(), 8, "{issues:?}");
    }

    #[test]
    fn unknown_keys_are_linted() {
        let issues = parse_raw("[routing]\nretries = 3\n[[routing.models]]\nname = \"m\"\nweight = 1\n").unwrap_err();
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["routing.models[0].weight", "routing.retries"].iter().copied().filter(|p| paths.contains(p)).collect::<Vec<_>>());
        assert_eq!(issues.len(), 2, "{issues:?}");
    }
}
