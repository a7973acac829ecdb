//! OpenAI-compatible wire types (`wire-formats.md` §1). Bodies are handled as
//! `serde_json::Map` so unknown fields pass through untouched; these types are typed views of
//! the parts Gatehouse reads or writes itself.

use serde::{Deserialize, Serialize};

use crate::Usage;

/// `object` of a non-streamed chat answer.
pub const CHAT_COMPLETION: &str = "chat.completion";
/// `object` of one streamed chat chunk.
pub const CHAT_COMPLETION_CHUNK: &str = "chat.completion.chunk";

/// The `usage` object of a chat completion, chunk or embeddings answer (§1.4, §1.5, §1.7).
///
/// Reading tolerates every OpenAI-compatible variant seen in the wild: missing detail objects,
/// `null` details, DeepSeek's `prompt_cache_hit_tokens` (§4.2) and the non-standard
/// `prompt_tokens_details.cache_write_tokens` (§7.6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireUsage {
    #[serde(default, deserialize_with = "null_as_zero")]
    pub prompt_tokens: u64,
    #[serde(default, deserialize_with = "null_as_zero")]
    pub completion_tokens: u64,
    #[serde(default, deserialize_with = "null_as_zero")]
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
    /// DeepSeek: the cached part of `prompt_tokens`.
    #[serde(default, skip_serializing)]
    pub prompt_cache_hit_tokens: Option<u64>,
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    /// Subset of `prompt_tokens` read from the prompt cache.
    #[serde(default, deserialize_with = "null_as_zero")]
    pub cached_tokens: u64,
    /// Input tokens written to the cache (Anthropic upstreams; not an OpenAI field).
    #[serde(default, skip_serializing_if = "is_zero", deserialize_with = "null_as_zero")]
    pub cache_write_tokens: u64,
}

/// `usage.completion_tokens_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionTokensDetails {
    /// Subset of `completion_tokens` spent on reasoning.
    #[serde(default, deserialize_with = "null_as_zero")]
    pub reasoning_tokens: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn null_as_zero<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(Option::<u64>::deserialize(d)?.unwrap_or(0))
}

impl WireUsage {
    /// The normalised [`Usage`] (`wire-formats.md` §7.6).
    pub fn to_usage(&self) -> Usage {
        let cached = self
            .prompt_tokens_details
            .map(|d| d.cached_tokens)
            .filter(|&c| c > 0)
            .or(self.prompt_cache_hit_tokens)
            .unwrap_or(0);
        Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cached_tokens: cached,
            cache_write_tokens: self.prompt_tokens_details.map_or(0, |d| d.cache_write_tokens),
            reasoning_tokens: self.completion_tokens_details.map_or(0, |d| d.reasoning_tokens),
        }
    }

    /// The OpenAI `usage` object for a normalised [`Usage`]: `total_tokens` computed, details
    /// always present (`cache_write_tokens` only when non-zero).
    pub fn from_usage(u: &Usage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens.saturating_add(u.completion_tokens),
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: u.cached_tokens,
                cache_write_tokens: u.cache_write_tokens,
            }),
            completion_tokens_details: Some(CompletionTokensDetails { reasoning_tokens: u.reasoning_tokens }),
            prompt_cache_hit_tokens: None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_openai_usage_with_details() {
        let u: WireUsage = serde_json::from_str(
            r#"{"prompt_tokens":1184,"completion_tokens":15,"total_tokens":1199,
                "prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},
                "completion_tokens_details":{"reasoning_tokens":5,"audio_tokens":0}}"#,
        )
        .unwrap();
        let n = u.to_usage();
        assert_eq!((n.prompt_tokens, n.completion_tokens, n.cached_tokens, n.reasoning_tokens), (1184, 15, 1024, 5));
    }

    #[test]
    fn tolerates_missing_and_null_details_and_deepseek() {
        let u: WireUsage = serde_json::from_str(r#"{"prompt_tokens":4,"total_tokens":4,"prompt_tokens_details":null}"#).unwrap();
        assert_eq!(u.to_usage().prompt_tokens, 4);
        let u: WireUsage = serde_json::from_str(r#"{"prompt_tokens":10,"completion_tokens":2,"prompt_cache_hit_tokens":8}"#).unwrap();
        assert_eq!(u.to_usage().cached_tokens, 8);
    }

    #[test]
    fn writes_usage_round_trip() {
        let n = Usage { prompt_tokens: 10, completion_tokens: 3, cached_tokens: 4, cache_write_tokens: 2, reasoning_tokens: 1 };
        let v = serde_json::to_value(WireUsage::from_usage(&n)).unwrap();
        assert_eq!(v["total_tokens"], 13);
        assert_eq!(v["prompt_tokens_details"]["cache_write_tokens"], 2);
        let back: WireUsage = serde_json::from_value(v).unwrap();
        assert_eq!(back.to_usage(), n);
    }
}
