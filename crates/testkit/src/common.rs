//! Helpers shared by the OpenAI and Anthropic dialects: ids, base64, text chunking, token
//! estimates, tool-call synthesis and embedding vectors.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::scenario::{Reply, Scenario, ToolMode, UTF8_SUFFIX};

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static ID_COUNTER: AtomicU64 = AtomicU64::new(0);

/// `prefix` followed by `len` base62 characters, unique within the process.
pub(crate) fn new_id(prefix: &str, len: usize) -> String {
    let n = ID_COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    // splitmix64 over (counter, time): well spread, never repeats within a process.
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ nanos;
    let mut out = String::with_capacity(prefix.len() + len);
    out.push_str(prefix);
    for _ in 0..len {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.push(char::from(BASE62[(z % 62) as usize]));
    }
    out
}

/// Unix time in seconds.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Standard base64 with padding (RFC 4648 §4).
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Rough token estimate: whitespace-separated words, at least 1.
pub(crate) fn tokens(text: &str) -> u32 {
    let n = text.split_whitespace().count();
    u32::try_from(n).unwrap_or(u32::MAX).max(1)
}

/// The reply text for a text answer, given the text of the last user turn (or tool result).
pub(crate) fn reply_text(s: &Scenario, last: &LastTurn) -> String {
    let mut text = match &s.reply {
        Reply::Fixed(t) => t.clone(),
        Reply::Echo => match last {
            LastTurn::User(t) => format!("echo: {t}"),
            LastTurn::ToolResult(t) => format!("tool result: {t}"),
        },
    };
    if s.utf8_split {
        text.push_str(UTF8_SUFFIX);
    }
    text
}

/// What the last turn of the conversation was.
pub(crate) enum LastTurn {
    User(String),
    ToolResult(String),
}

/// Splits reply text into stream deltas: `chunks=N` exactly N pieces (padding with ` lorem`
/// when the text is shorter than N characters), `chunk_size=N` pieces of N characters, else
/// word by word (each piece after the first starts with its space).
pub(crate) fn split_text(text: &str, s: &Scenario) -> Vec<String> {
    if text.is_empty() && s.chunks.is_none() {
        return Vec::new();
    }
    if let Some(n) = s.chunks {
        let mut padded = text.to_owned();
        while padded.chars().count() < n {
            padded.push_str(" lorem");
        }
        let chars: Vec<char> = padded.chars().collect();
        let total = chars.len();
        return (0..n)
            .map(|i| chars[i * total / n..(i + 1) * total / n].iter().collect())
            .collect();
    }
    if let Some(size) = s.chunk_size {
        let chars: Vec<char> = text.chars().collect();
        return chars.chunks(size).map(|c| c.iter().collect()).collect();
    }
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut prev_space = false;
    for c in text.chars() {
        let space = c.is_whitespace();
        if space && !prev_space && !current.is_empty() && !current.chars().all(char::is_whitespace)
        {
            pieces.push(std::mem::take(&mut current));
        }
        current.push(c);
        prev_space = space;
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

/// A synthesized tool call.
pub(crate) struct ToolCall {
    pub(crate) name: String,
    /// Arguments as JSON text.
    pub(crate) arguments: String,
}

impl ToolCall {
    /// The arguments cut into three fragments (character boundaries), for streaming.
    pub(crate) fn fragments(&self) -> Vec<String> {
        let chars: Vec<char> = self.arguments.chars().collect();
        let n = chars.len();
        let cuts = [0, n / 3, 2 * n / 3, n];
        cuts.windows(2)
            .map(|w| chars[w[0]..w[1]].iter().collect::<String>())
            .filter(|p| !p.is_empty())
            .collect()
    }
}

/// Tool calls for a `tools`/`parallel-tools` scenario. `tools` are the request's tool
/// definitions as (name, JSON schema). Call 0 uses the first tool, call 1 the second (or the
/// first again); without tools the calls go to `get_weather {"location": …}`.
pub(crate) fn tool_calls(mode: ToolMode, tools: &[(String, Value)]) -> Vec<ToolCall> {
    let count = match mode {
        ToolMode::None => 0,
        ToolMode::One => 1,
        ToolMode::Parallel => 2,
    };
    (0..count)
        .map(|i| match tools.get(i).or_else(|| tools.first()) {
            Some((name, schema)) => ToolCall {
                name: name.clone(),
                arguments: Value::Object(arguments_for(schema, i)).to_string(),
            },
            None => ToolCall {
                name: "get_weather".to_owned(),
                arguments: json!({"location": SAMPLE_STRINGS[i % SAMPLE_STRINGS.len()]})
                    .to_string(),
            },
        })
        .collect()
}

const SAMPLE_STRINGS: [&str; 2] = ["Paris", "Tokyo"];

/// Builds an argument object for a JSON schema: the required properties (or the first one)
/// with a sample value of their type.
fn arguments_for(schema: &Value, call: usize) -> Map<String, Value> {
    let mut args = Map::new();
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return args;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let names: Vec<&String> = if required.is_empty() {
        props.keys().take(1).collect()
    } else {
        props
            .keys()
            .filter(|k| required.contains(&k.as_str()))
            .collect()
    };
    for name in names {
        if let Some(prop) = props.get(name) {
            args.insert(name.clone(), sample_value(prop, call));
        }
    }
    args
}

fn sample_value(prop: &Value, call: usize) -> Value {
    if let Some(first) = prop
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    let ty = match prop.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("string"),
        _ => "string",
    };
    match ty {
        "integer" => json!(call + 1),
        "number" => json!(call as f64 + 1.5),
        "boolean" => json!(true),
        "array" => json!([]),
        "object" => json!({}),
        "null" => Value::Null,
        _ => json!(SAMPLE_STRINGS[call % SAMPLE_STRINGS.len()]),
    }
}

/// A deterministic unit vector for `text` (FNV-1a seeded per dimension), `dims` floats.
pub(crate) fn embedding(text: &str, dims: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dims)
        .map(|i| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ (i as u64).wrapping_mul(0x100_0000_01b3);
            for b in text.as_bytes() {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x100_0000_01b3);
            }
            h ^= h >> 33;
            // map to [-1, 1)
            ((h % 20_001) as f32 / 10_000.0) - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x /= norm;
        }
    }
    v
}

/// Maps a finish reason to OpenAI's vocabulary.
pub(crate) fn openai_finish(reason: &str) -> &str {
    match reason {
        "end_turn" | "stop_sequence" | "pause_turn" => "stop",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        other => other,
    }
}

/// Maps a finish reason to Anthropic's vocabulary.
pub(crate) fn anthropic_stop(reason: &str) -> &str {
    match reason {
        "stop" => "end_turn",
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        other => other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn split_by_words_keeps_text() {
        let s = Scenario::default();
        let p = split_text("echo: hello  world", &s);
        assert_eq!(p, vec!["echo:", " hello", "  world"]);
        assert_eq!(p.concat(), "echo: hello  world");
    }

    #[test]
    fn split_by_count_and_size() {
        let s = Scenario::from_options("chunks=4").unwrap();
        let p = split_text("abcdefgh", &s);
        assert_eq!(p, vec!["ab", "cd", "ef", "gh"]);
        let p = split_text("ab", &Scenario::from_options("chunks=5").unwrap());
        assert_eq!(p.len(), 5);
        assert!(p.concat().starts_with("ab lorem"));
        let p = split_text(
            "h\u{e9}llo",
            &Scenario::from_options("chunk_size=2").unwrap(),
        );
        assert_eq!(p, vec!["h\u{e9}", "ll", "o"]);
    }

    #[test]
    fn tool_calls_follow_the_schema() {
        let tools = vec![(
            "lookup_order".to_owned(),
            json!({"type":"object","properties":{"order_id":{"type":"string"},"n":{"type":"integer"}},"required":["order_id"]}),
        )];
        let calls = tool_calls(ToolMode::Parallel, &tools);
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].name, "lookup_order");
        assert_eq!(calls[0].arguments, r#"{"order_id":"Paris"}"#);
        assert_eq!(calls[1].arguments, r#"{"order_id":"Tokyo"}"#);
        assert_eq!(calls[0].fragments().concat(), calls[0].arguments);
        let none = tool_calls(ToolMode::One, &[]);
        assert_eq!(none[0].name, "get_weather");
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embedding("red lamp", 16);
        assert_eq!(a, embedding("red lamp", 16));
        assert_ne!(a, embedding("blue lamp", 16));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }

    #[test]
    fn ids_have_the_right_shape() {
        let a = new_id("chatcmpl-", 29);
        let b = new_id("chatcmpl-", 29);
        assert_ne!(a, b);
        assert_eq!(a.len(), 9 + 29);
        assert!(a[9..].bytes().all(|c| c.is_ascii_alphanumeric()));
    }
}
