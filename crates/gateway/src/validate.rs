//! Checks of the sampling and structure fields of OpenAI request bodies before any upstream call
//! (OpenAI API reference, "Create chat completion" and "Create embeddings"; `wire-formats.md`
//! §1.3, §1.7).
//!
//! A field that is absent or `null` is always accepted (the upstream's default applies); a
//! present field must have the documented type and range. Every failure is 400
//! `invalid_request_error` with `param` naming the field as OpenAI does (`temperature`,
//! `messages[2].role`, `tools[0].function.name`). Fields not listed here pass through untouched.
//!
//! Chat: `max_tokens`, `max_completion_tokens` (integer ≥ 1), `n` (integer 1..=[`MAX_N`]),
//! `temperature` (number 0..=2), `top_p` (number 0..=1), `presence_penalty` and
//! `frequency_penalty` (number -2..=2), `tools` (array of `function` tools with a `name`, or
//! `custom` tools with a `name`), `messages[i].role` (one of [`ROLES`]), `messages[i].content`
//! (string, array or null), `tool_call_id` of `tool` messages (non-empty string).
//! Embeddings: `input` (non-empty string, or a non-empty array of at most
//! [`MAX_EMBEDDING_INPUTS`] non-empty strings, or of token arrays), `dimensions` (integer ≥ 1),
//! `encoding_format` (`float` or `base64`).

use gatehouse_types::{ApiError, ErrorCode};
use serde_json::{Map, Value};

/// Largest accepted `n` (OpenAI's documented maximum).
pub const MAX_N: u64 = 128;
/// Largest number of inputs in one embeddings request (OpenAI's documented maximum).
pub const MAX_EMBEDDING_INPUTS: usize = 2048;
/// Accepted message roles. `function` is OpenAI's deprecated predecessor of `tool`, still
/// accepted by its API.
pub const ROLES: [&str; 6] = ["system", "developer", "user", "assistant", "tool", "function"];

fn bad(param: &str, message: String) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message).with_param(param)
}

/// A present, non-null field.
fn field<'a>(body: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    body.get(name).filter(|v| !v.is_null())
}

fn positive_int(body: &Map<String, Value>, name: &str, max: Option<u64>) -> Result<(), ApiError> {
    let Some(v) = field(body, name) else { return Ok(()) };
    let n = v.as_u64().filter(|n| *n >= 1);
    match (n, max) {
        (Some(n), Some(max)) if n > max => Err(bad(name, format!("`{name}` must be at most {max}"))),
        (Some(_), _) => Ok(()),
        (None, Some(max)) => Err(bad(name, format!("`{name}` must be an integer from 1 to {max}"))),
        (None, None) => Err(bad(name, format!("`{name}` must be a positive integer"))),
    }
}

fn number_in(body: &Map<String, Value>, name: &str, min: f64, max: f64) -> Result<(), ApiError> {
    let Some(v) = field(body, name) else { return Ok(()) };
    match v.as_f64() {
        Some(x) if (min..=max).contains(&x) => Ok(()),
        _ => Err(bad(name, format!("`{name}` must be a number from {min} to {max}"))),
    }
}

fn non_empty_str(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::String(s)) if !s.trim().is_empty())
}

/// Validates the chat fields listed in the module doc. `messages` is already known to be a
/// non-empty array of objects (`request::parse_chat`).
pub fn chat(body: &Map<String, Value>) -> Result<(), ApiError> {
    positive_int(body, "max_tokens", None)?;
    positive_int(body, "max_completion_tokens", None)?;
    positive_int(body, "n", Some(MAX_N))?;
    number_in(body, "temperature", 0.0, 2.0)?;
    number_in(body, "top_p", 0.0, 1.0)?;
    number_in(body, "presence_penalty", -2.0, 2.0)?;
    number_in(body, "frequency_penalty", -2.0, 2.0)?;
    tools(body)?;
    if let Some(Value::Array(messages)) = body.get("messages") {
        for (i, m) in messages.iter().enumerate() {
            message(i, m)?;
        }
    }
    Ok(())
}

fn message(i: usize, m: &Value) -> Result<(), ApiError> {
    let role = match m.get("role") {
        Some(Value::String(r)) if ROLES.contains(&r.as_str()) => r.as_str(),
        Some(Value::String(_)) => {
            return Err(bad(&format!("messages[{i}].role"), format!("`messages[{i}].role` must be one of {}", ROLES.join(", "))));
        }
        Some(_) => return Err(bad(&format!("messages[{i}].role"), format!("`messages[{i}].role` must be a string"))),
        None => return Err(bad(&format!("messages[{i}].role"), format!("`messages[{i}].role` is required"))),
    };
    match m.get("content") {
        None | Some(Value::Null | Value::String(_) | Value::Array(_)) => {}
        Some(_) => {
            return Err(bad(
                &format!("messages[{i}].content"),
                format!("`messages[{i}].content` must be a string, an array of content parts or null"),
            ));
        }
    }
    if role == "tool" && !non_empty_str(m.get("tool_call_id")) {
        return Err(bad(
            &format!("messages[{i}].tool_call_id"),
            format!("`messages[{i}].tool_call_id` is required for a `tool` message (the id of the tool call it answers)"),
        ));
    }
    Ok(())
}

fn tools(body: &Map<String, Value>) -> Result<(), ApiError> {
    let Some(v) = field(body, "tools") else { return Ok(()) };
    let Value::Array(tools) = v else {
        return Err(bad("tools", "`tools` must be an array of tool definitions".into()));
    };
    for (i, t) in tools.iter().enumerate() {
        let kind = t.get("type").and_then(Value::as_str);
        let inner = match kind {
            Some("function") => "function",
            Some("custom") => "custom",
            _ => return Err(bad(&format!("tools[{i}].type"), format!("`tools[{i}].type` must be `function` or `custom`"))),
        };
        let def = t.get(inner);
        if !def.is_some_and(Value::is_object) {
            return Err(bad(&format!("tools[{i}].{inner}"), format!("`tools[{i}].{inner}` must be an object")));
        }
        if !non_empty_str(def.and_then(|d| d.get("name"))) {
            return Err(bad(&format!("tools[{i}].{inner}.name"), format!("`tools[{i}].{inner}.name` must be a non-empty string")));
        }
    }
    Ok(())
}

/// Validates the embeddings fields listed in the module doc. `input` is already known to be a
/// string or an array (`request::parse_embeddings`).
pub fn embeddings(body: &Map<String, Value>) -> Result<(), ApiError> {
    match body.get("input") {
        Some(Value::String(s)) if s.is_empty() => return Err(bad("input", "`input` must not be empty".into())),
        Some(Value::Array(items)) => embedding_items(items)?,
        _ => {}
    }
    positive_int(body, "dimensions", None)?;
    match field(body, "encoding_format") {
        None => Ok(()),
        Some(Value::String(s)) if s == "float" || s == "base64" => Ok(()),
        Some(_) => Err(bad("encoding_format", "`encoding_format` must be `float` or `base64`".into())),
    }
}

fn embedding_items(items: &[Value]) -> Result<(), ApiError> {
    if items.is_empty() {
        return Err(bad("input", "`input` must not be an empty array".into()));
    }
    if items.len() > MAX_EMBEDDING_INPUTS {
        return Err(bad("input", format!("`input` may hold at most {MAX_EMBEDDING_INPUTS} items")));
    }
    // Either one token array (integers) or a list of strings / token arrays.
    if items.iter().all(Value::is_u64) {
        return Ok(());
    }
    for (i, item) in items.iter().enumerate() {
        let ok = match item {
            Value::String(s) => !s.is_empty(),
            Value::Array(tokens) => !tokens.is_empty() && tokens.iter().all(Value::is_u64),
            _ => false,
        };
        if !ok {
            return Err(bad(
                &format!("input[{i}]"),
                format!("`input[{i}]` must be a non-empty string or a non-empty array of token ids"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat_param(extra: Value) -> Option<String> {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        chat(body.as_object().unwrap()).err().map(|e| {
            assert_eq!(e.code, ErrorCode::InvalidRequest);
            e.param.unwrap()
        })
    }

    #[test]
    fn sampling_fields_are_range_checked() {
        for (field, bad_values, good_values) in [
            ("max_tokens", vec![json!(0), json!(-1), json!(1.5), json!("10")], vec![json!(1), json!(4096), Value::Null]),
            ("max_completion_tokens", vec![json!(0), json!("x")], vec![json!(16)]),
            ("n", vec![json!(0), json!(129), json!(2.0)], vec![json!(1), json!(128)]),
            ("temperature", vec![json!(-0.1), json!(2.01), json!("hot")], vec![json!(0), json!(2), json!(0.7)]),
            ("top_p", vec![json!(1.5), json!(-1)], vec![json!(0), json!(1), json!(0.9)]),
            ("presence_penalty", vec![json!(3)], vec![json!(-2), json!(2)]),
            ("frequency_penalty", vec![json!(-2.5)], vec![json!(0.5)]),
        ] {
            for v in bad_values {
                assert_eq!(chat_param(json!({ field: v.clone() })).as_deref(), Some(field), "{field} = {v}");
            }
            for v in good_values {
                assert_eq!(chat_param(json!({ field: v.clone() })), None, "{field} = {v}");
            }
        }
    }

    #[test]
    fn tools_need_a_type_and_a_name() {
        assert_eq!(chat_param(json!({"tools": {"type": "function"}})).as_deref(), Some("tools"));
        assert_eq!(chat_param(json!({"tools": [{"type": "web"}]})).as_deref(), Some("tools[0].type"));
        assert_eq!(chat_param(json!({"tools": [{"type": "function"}]})).as_deref(), Some("tools[0].function"));
        assert_eq!(
            chat_param(json!({"tools": [{"type": "function", "function": {"name": "a"}}, {"type": "function", "function": {"name": ""}}]}))
                .as_deref(),
            Some("tools[1].function.name")
        );
        assert_eq!(chat_param(json!({"tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]})), None);
        assert_eq!(chat_param(json!({"tools": [{"type": "custom", "custom": {"name": "grammar"}}]})), None);
        assert_eq!(chat_param(json!({"tools": []})), None);
    }

    #[test]
    fn message_roles_and_tool_call_ids() {
        let msgs = |m: Value| chat_param(json!({ "messages": m }));
        assert_eq!(msgs(json!([{"content": "x"}])).as_deref(), Some("messages[0].role"));
        assert_eq!(msgs(json!([{"role": "user", "content": "x"}, {"role": "wizard", "content": "x"}])).as_deref(), Some("messages[1].role"));
        assert_eq!(msgs(json!([{"role": 1, "content": "x"}])).as_deref(), Some("messages[0].role"));
        assert_eq!(msgs(json!([{"role": "user", "content": 5}])).as_deref(), Some("messages[0].content"));
        assert_eq!(msgs(json!([{"role": "tool", "content": "42"}])).as_deref(), Some("messages[0].tool_call_id"));
        assert_eq!(msgs(json!([{"role": "tool", "content": "42", "tool_call_id": ""}])).as_deref(), Some("messages[0].tool_call_id"));
        for role in ROLES {
            assert_eq!(msgs(json!([{"role": role, "content": "x", "tool_call_id": "call_1"}])), None, "{role}");
        }
        assert_eq!(msgs(json!([{"role": "assistant", "content": null, "tool_calls": []}])), None);
    }

    #[test]
    fn embeddings_input_shapes() {
        let p = |v: Value| embeddings(v.as_object().unwrap()).err().map(|e| e.param.unwrap());
        assert_eq!(p(json!({"input": ""})).as_deref(), Some("input"));
        assert_eq!(p(json!({"input": []})).as_deref(), Some("input"));
        assert_eq!(p(json!({"input": ["a", ""]})).as_deref(), Some("input[1]"));
        assert_eq!(p(json!({"input": ["a", {"x": 1}]})).as_deref(), Some("input[1]"));
        assert_eq!(p(json!({"input": [[1, 2], []]})).as_deref(), Some("input[1]"));
        assert_eq!(p(json!({"input": vec!["a"; MAX_EMBEDDING_INPUTS + 1]})).as_deref(), Some("input"));
        assert_eq!(p(json!({"input": "a", "dimensions": 0})).as_deref(), Some("dimensions"));
        assert_eq!(p(json!({"input": "a", "encoding_format": "utf8"})).as_deref(), Some("encoding_format"));
        for ok in [json!("a"), json!(["a", "b"]), json!([1, 2, 3]), json!([[1, 2], [3]])] {
            assert_eq!(p(json!({"input": ok.clone(), "dimensions": 256, "encoding_format": "base64"})), None, "{ok}");
        }
    }
}
