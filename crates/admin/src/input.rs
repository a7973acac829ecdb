//! Strict reading of JSON request bodies and query strings, so that every bad input is a 400
//! naming the field (`deployments[1].provider`), never a 500 and never a vague "bad JSON".

use std::collections::HashMap;

use gatehouse_types::{ApiError, ErrorCode, Id, Timestamp};
use serde_json::{Map, Value};

/// A 400 `invalid_request` naming `field`.
pub fn bad(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message.into()).with_param(field)
}

/// A JSON object being read field by field. `prefix` is the path of the object itself
/// (empty for the body, `deployments[0]` for an element).
pub struct Fields {
    map: Map<String, Value>,
    prefix: String,
}

impl Fields {
    /// Parses a request body that must be one JSON object.
    ///
    /// Errors: 400 if the body is empty, not JSON, or not an object.
    pub fn from_body(body: &[u8]) -> Result<Self, ApiError> {
        if body.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(bad("body", "the request body must be a JSON object"));
        }
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            bad("body", format!("the request body is not valid JSON (line {}, column {})", e.line(), e.column()))
        })?;
        Self::from_value(value, "")
    }

    /// Wraps a value that must be an object; `prefix` names it in errors.
    pub fn from_value(value: Value, prefix: &str) -> Result<Self, ApiError> {
        match value {
            Value::Object(map) => Ok(Self { map, prefix: prefix.to_string() }),
            _ => Err(bad(if prefix.is_empty() { "body" } else { prefix }, "must be a JSON object")),
        }
    }

    /// The full path of a field of this object.
    pub fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() { key.to_string() } else { format!("{}.{key}", self.prefix) }
    }

    /// Rejects keys outside `allowed` (400 naming the first unknown key).
    pub fn deny_unknown(&self, allowed: &[&str]) -> Result<(), ApiError> {
        if let Some(k) = self.map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(bad(&self.path(k), format!("unknown field `{k}` (expected one of: {})", allowed.join(", "))));
        }
        Ok(())
    }

    /// Takes the raw value of a field; JSON `null` counts as absent.
    pub fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key).filter(|v| !v.is_null())
    }

    /// A required non-empty string.
    pub fn string(&mut self, key: &str) -> Result<String, ApiError> {
        self.opt_string(key)?.ok_or_else(|| bad(&self.path(key), format!("`{key}` is required")))
    }

    /// An optional string (must be non-empty when present).
    pub fn opt_string(&mut self, key: &str) -> Result<Option<String>, ApiError> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s)),
            Some(Value::String(_)) => Err(bad(&self.path(key), format!("`{key}` must not be empty"))),
            Some(_) => Err(bad(&self.path(key), format!("`{key}` must be a string"))),
        }
    }

    /// An optional list of non-empty strings.
    pub fn opt_string_list(&mut self, key: &str) -> Result<Option<Vec<String>>, ApiError> {
        let path = self.path(key);
        match self.take(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) if !s.trim().is_empty() => Ok(s),
                    _ => Err(bad(&format!("{path}[{i}]"), "must be a non-empty string")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(bad(&path, format!("`{key}` must be an array of strings"))),
        }
    }

    /// An optional integer within `range`.
    pub fn opt_int(&mut self, key: &str, range: std::ops::RangeInclusive<i64>) -> Result<Option<i64>, ApiError> {
        let path = self.path(key);
        match self.take(key) {
            None => Ok(None),
            Some(v) => match v.as_i64() {
                Some(n) if range.contains(&n) => Ok(Some(n)),
                _ => Err(bad(&path, format!("`{key}` must be an integer from {} to {}", range.start(), range.end()))),
            },
        }
    }

    /// An optional UUID.
    pub fn opt_id(&mut self, key: &str) -> Result<Option<Id>, ApiError> {
        let path = self.path(key);
        match self.opt_string(key)? {
            None => Ok(None),
            Some(s) => parse_id(&s, &path).map(Some),
        }
    }

    /// An optional RFC 3339 timestamp.
    pub fn opt_time(&mut self, key: &str) -> Result<Option<Timestamp>, ApiError> {
        let path = self.path(key);
        match self.opt_string(key)? {
            None => Ok(None),
            Some(s) => parse_time(&s, &path).map(Some),
        }
    }

    /// A required array of objects.
    pub fn objects(&mut self, key: &str) -> Result<Vec<Fields>, ApiError> {
        let path = self.path(key);
        match self.take(key) {
            None => Err(bad(&path, format!("`{key}` is required"))),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| Fields::from_value(v, &format!("{path}[{i}]")))
                .collect(),
            Some(_) => Err(bad(&path, format!("`{key}` must be an array of objects"))),
        }
    }
}

/// Parses a UUID, 400 naming `field` otherwise.
pub fn parse_id(s: &str, field: &str) -> Result<Id, ApiError> {
    s.parse::<Id>().map_err(|_| bad(field, format!("`{field}` must be a UUID")))
}

/// Parses an RFC 3339 timestamp, 400 naming `field` otherwise.
pub fn parse_time(s: &str, field: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| bad(field, format!("`{field}` must be an RFC 3339 timestamp (e.g. 2030-01-01T00:00:00Z)")))
}

/// A query string read parameter by parameter.
pub struct Params(pub HashMap<String, String>);

impl Params {
    /// Rejects parameters outside `allowed`.
    pub fn deny_unknown(&self, allowed: &[&str]) -> Result<(), ApiError> {
        if let Some(k) = self.0.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(bad(k, format!("unknown query parameter `{k}` (expected one of: {})", allowed.join(", "))));
        }
        Ok(())
    }

    /// A parameter; empty counts as absent.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|s| !s.is_empty())
    }

    /// A UUID parameter.
    pub fn id(&self, key: &str) -> Result<Option<Id>, ApiError> {
        self.str(key).map(|s| parse_id(s, key)).transpose()
    }

    /// An RFC 3339 parameter.
    pub fn time(&self, key: &str) -> Result<Option<Timestamp>, ApiError> {
        self.str(key).map(|s| parse_time(s, key)).transpose()
    }

    /// `true`/`false`/`1`/`0`.
    pub fn bool(&self, key: &str) -> Result<bool, ApiError> {
        match self.str(key) {
            None => Ok(false),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(_) => Err(bad(key, format!("`{key}` must be true or false"))),
        }
    }

    /// An integer in `range`.
    pub fn int(&self, key: &str, range: std::ops::RangeInclusive<u64>) -> Result<Option<u64>, ApiError> {
        match self.str(key) {
            None => Ok(None),
            Some(s) => match s.parse::<u64>() {
                Ok(n) if range.contains(&n) => Ok(Some(n)),
                _ => Err(bad(key, format!("`{key}` must be an integer from {} to {}", range.start(), range.end()))),
            },
        }
    }
}
