//! Service specs of issue 7 (API management): the JSON document that defines what a service
//! exposes, shared by the control plane (validation on create/update/publish) and the data plane
//! (admission, the REST proxy, prompt APIs). Pure data and pure functions.
//!
//! Shape (every field optional unless said; unknown fields are refused):
//!
//! ```json
//! {"description": "…", "docs": "markdown", "category": "billing", "tags": ["x"],
//!  "openapi": {…},                       // uploaded for rest; generated for ai/prompt
//!  "models": ["gpt-4o-mini"],            // ai: public model names exposed
//!  "routes": [{"methods": ["GET"], "path": "/orders/{id}", "host": "api.example.com",
//!              "headers": {"x-tenant": "acme"}, "rewrite": "/v2/orders/{id}"}],   // rest
//!  "upstream": {"nodes": [{"url": "http://10.0.0.1:8080", "weight": 2}],
//!               "balance": "round_robin" | "consistent_hash", "hash_on": "app" | "path" | "header:<name>",
//!               "timeout_ms": 30000, "retries": 1,
//!               "health_check": {"path": "/health", "interval_ms": 5000, "unhealthy_after": 2},
//!               "add_headers": {"x-k": "v"}, "remove_headers": ["x-internal"]},
//!  "prompts": [{"name": "summarize", "model": "gpt-4o-mini", "system": "You summarize…",
//!               "template": "Summarize this text: {{text}}",
//!               "variables": {JSON Schema of the variables object},
//!               "parameters": {"temperature": 0.2, "max_tokens": 200},
//!               "output_schema": {JSON Schema}}]}                            // prompt
//! ```
//!
//! Route paths are literal segments, `{name}` (one segment) and a final `{*name}` (the rest).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ApiError, ErrorCode};

/// A service's spec (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openapi: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RestRoute>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<RestUpstream>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompts: Vec<PromptApi>,
}

/// One REST route: matched on method, path template, host and headers (all given must match).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestRoute {
    /// Upper-case HTTP methods; empty = any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Path template below `/svc/{slug}`, e.g. `/orders/{id}`.
    pub path: String,
    /// Exact `Host` (without port), case-insensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Request headers that must be present with exactly these values (names case-insensitive).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Upstream path template using the route's parameters; default: the matched path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<String>,
}

/// How a node is picked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Weighted round robin over healthy nodes.
    #[default]
    RoundRobin,
    /// Rendezvous hashing of `hash_on` over healthy nodes (weights respected).
    ConsistentHash,
}

/// The upstream of a REST service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestUpstream {
    pub nodes: Vec<UpstreamNode>,
    #[serde(default)]
    pub balance: Balance,
    /// `app` (default), `path` or `header:<name>`; for `consistent_hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_on: Option<String>,
    /// Whole-request timeout per attempt in milliseconds (default 30000, 1..=600000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Extra attempts on another node after a connection error, timeout or 502/503/504 —
    /// only for idempotent methods (RFC 9110 §9.2.2). Default 1, at most 5.
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Headers set on every upstream request (after the client's are copied).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add_headers: BTreeMap<String, String>,
    /// Client headers not forwarded (names case-insensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_headers: Vec<String>,
}

fn default_timeout_ms() -> u64 {
    30_000
}
fn default_retries() -> u32 {
    1
}
fn default_weight() -> u32 {
    1
}
fn default_interval_ms() -> u64 {
    5_000
}
fn default_unhealthy_after() -> u32 {
    2
}

/// One upstream node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamNode {
    /// `http://` or `https://` base URL; the route's (rewritten) path is appended to its path.
    pub url: String,
    /// Relative share, 1..=1000 (default 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

/// Active health check: `GET {node}{path}` every `interval_ms`; a node is out after
/// `unhealthy_after` consecutive failures (non-2xx or no answer) and back after one success.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub path: String,
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    #[serde(default = "default_unhealthy_after")]
    pub unhealthy_after: u32,
}

/// A prompt API, served at `POST /prompts/{slug}/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptApi {
    /// `[a-z0-9-_]{1,63}`.
    pub name: String,
    /// Public model name.
    pub model: String,
    /// The system instructions (never contain caller input).
    #[serde(default)]
    pub system: String,
    /// User-content template with `{{variable}}` placeholders.
    pub template: String,
    /// JSON Schema of the `variables` object.
    #[serde(default = "empty_object_schema")]
    pub variables: Value,
    /// Chat parameters: `temperature`, `max_tokens`, `top_p`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, Value>,
    /// When set, the answer must be JSON valid against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
}

fn empty_object_schema() -> Value {
    serde_json::json!({"type": "object"})
}

fn bad(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message).with_param(param)
}

const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Whether `m` is idempotent (RFC 9110 §9.2.2): retries are allowed.
pub fn idempotent(m: &str) -> bool {
    matches!(m, "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS")
}

/// A token of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg<'a> {
    Lit(&'a str),
    Param(&'a str),
    Rest(&'a str),
}

fn segments(template: &str) -> Option<Vec<Seg<'_>>> {
    let body = template.strip_prefix('/')?;
    if body.is_empty() {
        return Some(Vec::new());
    }
    let parts: Vec<&str> = body.split('/').collect();
    let last = parts.len() - 1;
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if let Some(name) = p.strip_prefix("{*").and_then(|r| r.strip_suffix('}')) {
                (i == last && ident(name)).then_some(Seg::Rest(name))
            } else if let Some(name) = p.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                ident(name).then_some(Seg::Param(name))
            } else if !p.is_empty() && !p.contains(['{', '}']) {
                Some(Seg::Lit(p))
            } else {
                None
            }
        })
        .collect()
}

fn ident(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Matches `path` (starting with `/`, no query) against a route template; returns the
/// parameters (`{*rest}` captures the remaining segments joined by `/`). `None`: no match.
pub fn match_path(template: &str, path: &str) -> Option<Vec<(String, String)>> {
    let segs = segments(template)?;
    let body = path.strip_prefix('/')?;
    let parts: Vec<&str> = if body.is_empty() { Vec::new() } else { body.split('/').collect() };
    let mut params = Vec::new();
    for (i, seg) in segs.iter().enumerate() {
        match seg {
            Seg::Rest(name) => {
                params.push(((*name).to_string(), parts.get(i..).map(|r| r.join("/")).unwrap_or_default()));
                return Some(params);
            }
            Seg::Lit(l) => {
                if parts.get(i) != Some(l) {
                    return None;
                }
            }
            Seg::Param(name) => match parts.get(i) {
                Some(v) if !v.is_empty() => params.push(((*name).to_string(), (*v).to_string())),
                _ => return None,
            },
        }
    }
    (parts.len() == segs.len()).then_some(params)
}

/// Fills a rewrite template with matched parameters (unknown names stay empty).
pub fn fill_template(template: &str, params: &[(String, String)]) -> String {
    let Some(segs) = segments(template) else { return template.to_string() };
    let value = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap_or_default();
    let parts: Vec<String> = segs
        .iter()
        .map(|s| match s {
            Seg::Lit(l) => (*l).to_string(),
            Seg::Param(n) | Seg::Rest(n) => value(n),
        })
        .collect();
    format!("/{}", parts.join("/"))
}

fn check_text(param: &str, s: &str, max: usize) -> Result<(), ApiError> {
    if s.trim().is_empty() || s.len() > max || s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(bad(param, format!("`{param}` must be non-empty text of at most {max} bytes")));
    }
    Ok(())
}

fn check_header_name(param: &str, n: &str) -> Result<(), ApiError> {
    if n.is_empty() || n.len() > 128 || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b)) {
        return Err(bad(param, format!("`{param}`: `{n}` is not a valid header name")));
    }
    Ok(())
}

fn check_header_value(param: &str, v: &str) -> Result<(), ApiError> {
    if v.len() > 4096 || v.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
        return Err(bad(param, format!("`{param}` must be a header value without control characters")));
    }
    Ok(())
}

/// Whether `n` may not be set or matched through a spec: the gateway owns these headers.
pub fn reserved_header(n: &str) -> bool {
    let n = n.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "host" | "authorization" | "proxy-authorization" | "cookie" | "x-api-key" | "api-key" | "x-goog-api-key"
            | "content-length" | "transfer-encoding" | "connection" | "x-request-id" | "x-gatehouse-app-id"
            | "dpop"
    )
}

impl ServiceSpec {
    /// Parses and checks a draft spec (`param` names the field in errors, e.g. `spec`). Only the
    /// sections of `kind` (`ai`, `rest`, `prompt`) may be set.
    ///
    /// Errors: 400 `invalid_request` naming the field.
    pub fn parse(kind: &str, value: &Value, param: &str) -> Result<Self, ApiError> {
        let spec: ServiceSpec = serde_json::from_value(value.clone())
            .map_err(|e| bad(param, format!("`{param}` is not a valid service spec: {e}")))?;
        spec.check(kind, param)?;
        Ok(spec)
    }

    fn check(&self, kind: &str, p: &str) -> Result<(), ApiError> {
        for (field, set, allowed) in [
            ("models", !self.models.is_empty(), "ai"),
            ("routes", !self.routes.is_empty(), "rest"),
            ("upstream", self.upstream.is_some(), "rest"),
            ("prompts", !self.prompts.is_empty(), "prompt"),
        ] {
            if set && kind != allowed {
                return Err(bad(&format!("{p}.{field}"), format!("`{field}` is only for `{allowed}` services")));
            }
        }
        if let Some(d) = &self.description {
            check_text(&format!("{p}.description"), d, 2000)?;
        }
        if let Some(d) = &self.docs {
            check_text(&format!("{p}.docs"), d, 200_000)?;
        }
        if let Some(c) = &self.category {
            check_text(&format!("{p}.category"), c, 100)?;
        }
        if self.tags.len() > 32 {
            return Err(bad(&format!("{p}.tags"), "at most 32 tags"));
        }
        for (i, t) in self.tags.iter().enumerate() {
            check_text(&format!("{p}.tags[{i}]"), t, 64)?;
        }
        if let Some(o) = &self.openapi
            && !(o.is_object() && o.get("openapi").is_some_and(Value::is_string))
        {
            return Err(bad(&format!("{p}.openapi"), "`openapi` must be an OpenAPI document (an object with an `openapi` version string)"));
        }
        for (i, m) in self.models.iter().enumerate() {
            check_text(&format!("{p}.models[{i}]"), m, 256)?;
        }
        for (i, r) in self.routes.iter().enumerate() {
            let rp = format!("{p}.routes[{i}]");
            for (j, m) in r.methods.iter().enumerate() {
                if !METHODS.contains(&m.as_str()) {
                    return Err(bad(&format!("{rp}.methods[{j}]"), format!("unknown method `{m}` (expected one of: {})", METHODS.join(", "))));
                }
            }
            if r.path.len() > 1024 || segments(&r.path).is_none() {
                return Err(bad(&format!("{rp}.path"), "`path` must start with `/` and use literal segments, `{name}` and a final `{*name}`"));
            }
            if let Some(h) = &r.host {
                check_text(&format!("{rp}.host"), h, 253)?;
            }
            for (n, v) in &r.headers {
                check_header_name(&format!("{rp}.headers"), n)?;
                check_header_value(&format!("{rp}.headers.{n}"), v)?;
            }
            if let Some(rw) = &r.rewrite {
                let names: Vec<String> = segments(&r.path).unwrap_or_default().iter().filter_map(|s| match s {
                    Seg::Param(n) | Seg::Rest(n) => Some((*n).to_string()),
                    Seg::Lit(_) => None,
                }).collect();
                let ok = segments(rw).is_some_and(|segs| segs.iter().all(|s| match s {
                    Seg::Param(n) | Seg::Rest(n) => names.iter().any(|x| x == n),
                    Seg::Lit(_) => true,
                }));
                if !ok || rw.len() > 1024 {
                    return Err(bad(&format!("{rp}.rewrite"), "`rewrite` must be a path template using only the route's parameters"));
                }
            }
        }
        if let Some(u) = &self.upstream {
            let up = format!("{p}.upstream");
            if u.nodes.is_empty() || u.nodes.len() > 64 {
                return Err(bad(&format!("{up}.nodes"), "`nodes` must list 1 to 64 nodes"));
            }
            for (i, n) in u.nodes.iter().enumerate() {
                let ok = (n.url.starts_with("http://") || n.url.starts_with("https://"))
                    && n.url.len() <= 2048
                    && !n.url.contains(['?', '#', '@', ' '])
                    && n.url.split("://").nth(1).is_some_and(|h| !h.is_empty() && !h.starts_with('/'));
                if !ok {
                    return Err(bad(&format!("{up}.nodes[{i}].url"), "`url` must be an http:// or https:// URL without credentials, query or fragment"));
                }
                if !(1..=1000).contains(&n.weight) {
                    return Err(bad(&format!("{up}.nodes[{i}].weight"), "`weight` must be 1..=1000"));
                }
            }
            if let Some(h) = &u.hash_on
                && !(h == "app" || h == "path" || h.strip_prefix("header:").is_some_and(|n| check_header_name("hash_on", n).is_ok()))
            {
                return Err(bad(&format!("{up}.hash_on"), "`hash_on` must be `app`, `path` or `header:<name>`"));
            }
            if !(1..=600_000).contains(&u.timeout_ms) {
                return Err(bad(&format!("{up}.timeout_ms"), "`timeout_ms` must be 1..=600000"));
            }
            if u.retries > 5 {
                return Err(bad(&format!("{up}.retries"), "`retries` must be 0..=5"));
            }
            if let Some(h) = &u.health_check
                && (segments(&h.path).is_none() || !(100..=3_600_000).contains(&h.interval_ms) || !(1..=100).contains(&h.unhealthy_after))
            {
                return Err(bad(&format!("{up}.health_check"), "`health_check` needs a `path` starting with `/`, `interval_ms` 100..=3600000, `unhealthy_after` 1..=100"));
            }
            for (n, v) in &u.add_headers {
                check_header_name(&format!("{up}.add_headers"), n)?;
                check_header_value(&format!("{up}.add_headers.{n}"), v)?;
                if reserved_header(n) {
                    return Err(bad(&format!("{up}.add_headers"), format!("`{n}` is set by the gateway")));
                }
            }
            for n in &u.remove_headers {
                check_header_name(&format!("{up}.remove_headers"), n)?;
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, pa) in self.prompts.iter().enumerate() {
            let pp = format!("{p}.prompts[{i}]");
            if pa.name.is_empty() || pa.name.len() > 63 || !pa.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
                return Err(bad(&format!("{pp}.name"), "`name` must be 1-63 characters of a-z, 0-9, `-`, `_`"));
            }
            if !names.insert(pa.name.as_str()) {
                return Err(bad(&format!("{pp}.name"), format!("prompt `{}` is defined twice", pa.name)));
            }
            check_text(&format!("{pp}.model"), &pa.model, 256)?;
            check_text(&format!("{pp}.template"), &pa.template, 100_000)?;
            if pa.system.len() > 100_000 {
                return Err(bad(&format!("{pp}.system"), "`system` is at most 100000 bytes"));
            }
            if pa.variables.get("type").and_then(Value::as_str) != Some("object") {
                return Err(bad(&format!("{pp}.variables"), "`variables` must be a JSON Schema with \"type\": \"object\""));
            }
            for k in pa.parameters.keys() {
                if !["temperature", "max_tokens", "top_p"].contains(&k.as_str()) {
                    return Err(bad(&format!("{pp}.parameters.{k}"), "parameters are `temperature`, `max_tokens`, `top_p`"));
                }
            }
            if let Some(o) = &pa.output_schema
                && !o.is_object()
            {
                return Err(bad(&format!("{pp}.output_schema"), "`output_schema` must be a JSON Schema object"));
            }
        }
        Ok(())
    }

    /// What a publish additionally needs: `ai` ≥ 1 model, `rest` ≥ 1 route and an upstream,
    /// `prompt` ≥ 1 prompt. Errors: 400 naming the missing section.
    pub fn check_publishable(&self, kind: &str) -> Result<(), ApiError> {
        let missing = match kind {
            "ai" if self.models.is_empty() => Some("models"),
            "rest" if self.routes.is_empty() => Some("routes"),
            "rest" if self.upstream.is_none() => Some("upstream"),
            "prompt" if self.prompts.is_empty() => Some("prompts"),
            _ => None,
        };
        match missing {
            Some(f) => Err(bad(&format!("spec.{f}"), format!("a `{kind}` service needs `{f}` before it can be published"))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn path_templates_match_and_fill() {
        let p = match_path("/orders/{id}", "/orders/42").unwrap();
        assert_eq!(p, vec![("id".to_string(), "42".to_string())]);
        assert!(match_path("/orders/{id}", "/orders/42/x").is_none());
        assert!(match_path("/orders/{id}", "/orders/").is_none());
        assert!(match_path("/orders", "/orders/1").is_none());
        assert_eq!(match_path("/", "/").unwrap(), vec![]);
        let r = match_path("/files/{*rest}", "/files/a/b/c").unwrap();
        assert_eq!(r, vec![("rest".to_string(), "a/b/c".to_string())]);
        assert_eq!(fill_template("/v2/{rest}/x", &r), "/v2/a/b/c/x");
        assert!(segments("orders").is_none());
        assert!(segments("/{*a}/b").is_none());
        assert!(segments("/a//b").is_none());
    }

    #[test]
    fn spec_errors_name_the_field() {
        let e = ServiceSpec::parse("rest", &json!({"models": ["m"]}), "spec").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("spec.models"));
        let e = ServiceSpec::parse("rest", &json!({"routes": [{"path": "/a", "methods": ["GOT"]}]}), "spec").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("spec.routes[0].methods[0]"));
        let e = ServiceSpec::parse("rest", &json!({"routes": [{"path": "/a/{id}", "rewrite": "/b/{other}"}]}), "spec").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("spec.routes[0].rewrite"));
        let e = ServiceSpec::parse("rest", &json!({"upstream": {"nodes": [{"url": "http://u:p@h"}]}}), "spec").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("spec.upstream.nodes[0].url"));
        let e = ServiceSpec::parse("rest", &json!({"upstream": {"nodes": [{"url": "http://h"}], "add_headers": {"Authorization": "x"}}}), "spec").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("spec.upstream.add_headers"));
        let e = ServiceSpec::parse("ai", &json!({"bogus": 1}), "spec").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("spec"));
        let ok = ServiceSpec::parse("rest", &json!({"routes": [{"path": "/a/{id}", "rewrite": "/b/{id}"}], "upstream": {"nodes": [{"url": "http://h:1"}]}}), "spec").unwrap();
        assert!(ok.check_publishable("rest").is_ok());
        assert_eq!(ServiceSpec::default().check_publishable("ai").unwrap_err().param.as_deref(), Some("spec.models"));
    }
}
