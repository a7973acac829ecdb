//! Token estimates reserved before a call (issue 6, estimate → settle).
//!
//! * Input: OpenAI-family upstream models (`gpt-4o*`, `gpt-4.1*`, `gpt-5*`, `o1*`, `o3*`,
//!   `o4*` → `o200k_base`; other `gpt-4*`, `gpt-3.5*` → `cl100k_base`) are counted with the real
//!   BPE (`tiktoken-rs`, vocabularies bundled in the crate, no network). Other models use the
//!   documented estimate `ceil(characters / 3)` (deliberately high: Claude-family tokenizers
//!   average about 3.5 characters per English token). Both add 4 tokens per message plus 3 for
//!   the reply priming (OpenAI's chat overhead). Text is every string in `messages` and `tools`
//!   except inside `image_url` / `input_audio` parts.
//! * Output: `max_completion_tokens` or `max_tokens` from the request, else
//!   [`DEFAULT_MAX_OUTPUT`].
//!
//! The estimate only has to bound what the call will really use; settlement corrects it.

use std::sync::OnceLock;

use serde_json::{Map, Value};
use tiktoken_rs::CoreBPE;

/// Output tokens reserved when the request sets no `max_tokens` / `max_completion_tokens`.
pub const DEFAULT_MAX_OUTPUT: u64 = 4096;

/// Reserved token amounts of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenEstimate {
    pub input: u64,
    pub output: u64,
}

impl TokenEstimate {
    /// `input + output`.
    pub fn total(&self) -> u64 {
        self.input.saturating_add(self.output)
    }
}

#[derive(Clone, Copy)]
enum Encoding {
    O200k,
    Cl100k,
}

fn encoding_for(upstream_model: &str) -> Option<Encoding> {
    let m = upstream_model.rsplit('/').next().unwrap_or(upstream_model);
    if [
        "gpt-4o",
        "gpt-4.1",
        "gpt-4.5",
        "gpt-5",
        "o1",
        "o3",
        "o4",
        "chatgpt-4o",
    ]
    .iter()
    .any(|p| m.starts_with(p))
    {
        Some(Encoding::O200k)
    } else if m.starts_with("gpt-4") || m.starts_with("gpt-3.5") {
        Some(Encoding::Cl100k)
    } else {
        None
    }
}

fn bpe(enc: Encoding) -> Option<&'static CoreBPE> {
    static O200K: OnceLock<Option<CoreBPE>> = OnceLock::new();
    static CL100K: OnceLock<Option<CoreBPE>> = OnceLock::new();
    match enc {
        Encoding::O200k => O200K
            .get_or_init(|| tiktoken_rs::o200k_base().ok())
            .as_ref(),
        Encoding::Cl100k => CL100K
            .get_or_init(|| tiktoken_rs::cl100k_base().ok())
            .as_ref(),
    }
}

/// Loads the BPE vocabularies (a few hundred ms once); call off the request path at start.
pub fn warm_up() {
    let _ = bpe(Encoding::O200k);
    let _ = bpe(Encoding::Cl100k);
}

fn collect_text<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| collect_text(i, out)),
        Value::Object(map) => {
            for (k, v) in map {
                if k != "image_url" && k != "input_audio" {
                    collect_text(v, out);
                }
            }
        }
        _ => {}
    }
}

/// The estimate for a chat request body going to `upstream_model`.
pub fn estimate_chat(body: &Map<String, Value>, upstream_model: &str) -> TokenEstimate {
    let mut texts = Vec::new();
    let mut messages = 0u64;
    if let Some(Value::Array(items)) = body.get("messages") {
        messages = items.len() as u64;
        items.iter().for_each(|m| collect_text(m, &mut texts));
    }
    if let Some(tools) = body.get("tools") {
        collect_text(tools, &mut texts);
    }
    let counted: u64 = match encoding_for(upstream_model).and_then(bpe) {
        Some(bpe) => texts
            .iter()
            .map(|t| bpe.encode_ordinary(t).len() as u64)
            .sum(),
        None => texts
            .iter()
            .map(|t| (t.chars().count() as u64).div_ceil(3))
            .sum(),
    };
    let input = counted + 4 * messages + 3;
    let output = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_u64))
        .unwrap_or(DEFAULT_MAX_OUTPUT);
    TokenEstimate { input, output }
}

/// The estimate for an embeddings body: the input strings, no output.
pub fn estimate_embeddings(body: &Map<String, Value>, upstream_model: &str) -> TokenEstimate {
    let mut texts = Vec::new();
    if let Some(input) = body.get("input") {
        collect_text(input, &mut texts);
    }
    let input = match encoding_for(upstream_model).and_then(bpe) {
        Some(bpe) => texts
            .iter()
            .map(|t| bpe.encode_ordinary(t).len() as u64)
            .sum(),
        None => texts
            .iter()
            .map(|t| (t.chars().count() as u64).div_ceil(3))
            .sum::<u64>(),
    };
    // Token-id arrays (`input: [[1,2,3]]`) count one token per number.
    let ids = match body.get("input") {
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::Number(_) => 1,
                Value::Array(inner) => inner.len() as u64,
                _ => 0,
            })
            .sum(),
        _ => 0,
    };
    TokenEstimate {
        input: input + ids,
        output: 0,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn openai_models_use_the_real_tokenizer() {
        let b = body(
            json!({"model":"x","messages":[{"role":"user","content":"hello world"}],"max_tokens":50}),
        );
        let e = estimate_chat(&b, "gpt-4o");
        // "user" + "hello world" = 1 + 2 tokens in o200k_base, + 4 per message + 3.
        assert_eq!(
            e,
            TokenEstimate {
                input: 3 + 4 + 3,
                output: 50
            }
        );
    }

    #[test]
    fn other_models_use_the_character_estimate() {
        let b = body(
            json!({"model":"x","messages":[{"role":"user","content":[{"type":"text","text":"abcdefghi"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}),
        );
        let e = estimate_chat(&b, "claude-sonnet-4-5");
        // "user"(2) + "text"(2) + "abcdefghi"(3) + "image_url"(3); the image data is skipped.
        assert_eq!(e.input, 2 + 2 + 3 + 3 + 4 + 3);
        assert_eq!(e.output, DEFAULT_MAX_OUTPUT);
    }

    #[test]
    fn embeddings_count_inputs() {
        let b = body(json!({"model":"x","input":["hello world", "hello"]}));
        assert_eq!(
            estimate_embeddings(&b, "text-embedding-3-small").input,
            4 + 2
        );
        let ids = body(json!({"model":"x","input":[[1,2,3],[4]]}));
        assert_eq!(estimate_embeddings(&ids, "m").input, 4);
    }
}
