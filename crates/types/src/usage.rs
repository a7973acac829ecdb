//! Token usage of one call, normalised across providers (`wire-formats.md` §7.6).

use serde::{Deserialize, Serialize};

/// Token counts of one call.
///
/// * `prompt_tokens`: all input tokens, cached ones included (OpenAI's meaning; for Anthropic
///   `input_tokens + cache_read_input_tokens + cache_creation_input_tokens`).
/// * `completion_tokens`: output tokens, reasoning included.
/// * `cached_tokens`: the part of `prompt_tokens` read from the provider's prompt cache
///   (OpenAI `prompt_tokens_details.cached_tokens`, Anthropic `cache_read_input_tokens`).
/// * `cache_write_tokens`: input tokens written to the cache (Anthropic
///   `cache_creation_input_tokens`; 0 elsewhere).
/// * `reasoning_tokens`: the part of `completion_tokens` spent on reasoning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    pub reasoning_tokens: u64,
}

impl Usage {
    /// `prompt_tokens + completion_tokens`, saturating (upstream counts are untrusted).
    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}
