//! The wire dialects Gatehouse can send a chat request to (`wire-formats.md` §1–§6).
//!
//! One enum shared by the configuration, the admin API, the gateway and the adapters, so that a
//! kind name means the same everywhere. Stored as [`ProviderKind::as_str`].

/// The wire dialect (and vendor quirks) of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// OpenAI (`wire-formats.md` §1); also `openai-compatible` for backwards compatibility.
    OpenAi,
    /// Anthropic Messages API (§2).
    Anthropic,
    /// Google Gemini Developer API, native `generateContent` (§3), key in `x-goog-api-key`.
    Gemini,
    /// Azure OpenAI (§5): deployment URLs with `api-version`, or the `/openai/v1` form; `api-key`.
    Azure,
    /// AWS Bedrock Runtime Converse / ConverseStream (§6): SigV4 (signing name `bedrock`) or a
    /// Bedrock API key as a Bearer token; binary `application/vnd.amazon.eventstream` streams.
    Bedrock,
    /// Ollama's native `/api/chat` with NDJSON streaming (§4.4).
    Ollama,
    /// Mistral (§4.1): 9-character tool-call ids, `random_seed`, `max_tokens`.
    Mistral,
    /// DeepSeek (§4.2): `reasoning_content` round trip, cache-hit usage.
    DeepSeek,
    /// Groq (§4.3): unsupported fields stripped, `x_groq.usage`.
    Groq,
    /// vLLM's OpenAI-compatible server (§4.5): integer error codes, `reasoning`.
    Vllm,
    /// OpenRouter (OpenAI-compatible).
    OpenRouter,
    /// Together AI (OpenAI-compatible).
    Together,
    /// Fireworks AI (OpenAI-compatible).
    Fireworks,
    /// xAI (OpenAI-compatible).
    Xai,
    /// Any other OpenAI-compatible server; needs an explicit base URL.
    Generic,
}

impl ProviderKind {
    /// Every kind, in documentation order.
    pub const ALL: [ProviderKind; 15] = [
        Self::OpenAi,
        Self::Anthropic,
        Self::Gemini,
        Self::Azure,
        Self::Bedrock,
        Self::Ollama,
        Self::Mistral,
        Self::DeepSeek,
        Self::Groq,
        Self::Vllm,
        Self::OpenRouter,
        Self::Together,
        Self::Fireworks,
        Self::Xai,
        Self::Generic,
    ];

    /// The canonical name: `openai`, `anthropic`, `gemini`, `azure`, `bedrock`, `ollama`, `mistral`,
    /// `deepseek`, `groq`, `vllm`, `openrouter`, `together`, `fireworks`, `xai`, `generic`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Azure => "azure",
            Self::Bedrock => "bedrock",
            Self::Ollama => "ollama",
            Self::Mistral => "mistral",
            Self::DeepSeek => "deepseek",
            Self::Groq => "groq",
            Self::Vllm => "vllm",
            Self::OpenRouter => "openrouter",
            Self::Together => "together",
            Self::Fireworks => "fireworks",
            Self::Xai => "xai",
            Self::Generic => "generic",
        }
    }

    /// Parses a canonical name, plus the aliases `openai-compatible`/`openai_compatible`
    /// (→ [`ProviderKind::OpenAi`], as before), `google` (→ Gemini), `azure-openai`/`azure_openai`
    /// (→ Azure). Case-sensitive.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "openai" | "openai-compatible" | "openai_compatible" => Some(Self::OpenAi),
            "google" => Some(Self::Gemini),
            "azure-openai" | "azure_openai" => Some(Self::Azure),
            _ => Self::ALL.into_iter().find(|k| k.as_str() == s),
        }
    }

    /// The vendor's default base URL; empty for [`ProviderKind::Azure`] and
    /// [`ProviderKind::Generic`], which need one configured ([`ProviderKind::needs_base_url`]).
    ///
    /// The base URL ends where the adapter appends its path: `/chat/completions` for the
    /// OpenAI-compatible kinds, `/v1/messages` for Anthropic, `/v1beta/models/{model}:…` for
    /// Gemini, `/model/{modelId}/converse[-stream]` for Bedrock (whose region is read from a
    /// `bedrock-runtime.{region}.amazonaws.com` host), `/api/chat` for Ollama, `/openai/deployments/{deployment}/…` (or, for a base ending
    /// in `/openai/v1`, `/chat/completions`) for Azure.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Self::OpenAi => "https://api.openai.com/v1",
            Self::Anthropic => "https://api.anthropic.com",
            Self::Gemini => "https://generativelanguage.googleapis.com",
            Self::Azure | Self::Generic => "",
            Self::Bedrock => "https://bedrock-runtime.us-east-1.amazonaws.com",
            Self::Ollama => "http://localhost:11434",
            Self::Mistral => "https://api.mistral.ai/v1",
            Self::DeepSeek => "https://api.deepseek.com",
            Self::Groq => "https://api.groq.com/openai/v1",
            Self::Vllm => "http://localhost:8000/v1",
            Self::OpenRouter => "https://openrouter.ai/api/v1",
            Self::Together => "https://api.together.xyz/v1",
            Self::Fireworks => "https://api.fireworks.ai/inference/v1",
            Self::Xai => "https://api.x.ai/v1",
        }
    }

    /// Whether a provider of this kind must be given a base URL (no usable default).
    pub fn needs_base_url(self) -> bool {
        self.default_base_url().is_empty()
    }

    /// Whether the upstream speaks OpenAI's Chat Completions (possibly with quirks): every kind
    /// but Anthropic, Gemini, Bedrock and Ollama.
    pub fn is_openai_compatible(self) -> bool {
        !matches!(self, Self::Anthropic | Self::Gemini | Self::Bedrock | Self::Ollama)
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_round_trip_and_aliases() {
        for k in ProviderKind::ALL {
            assert_eq!(ProviderKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), serde_json::Value::from(k.as_str()));
        }
        assert_eq!(ProviderKind::parse("openai-compatible"), Some(ProviderKind::OpenAi));
        assert_eq!(ProviderKind::parse("google"), Some(ProviderKind::Gemini));
        assert_eq!(ProviderKind::parse("azure_openai"), Some(ProviderKind::Azure));
        assert_eq!(ProviderKind::parse("OpenAI"), None);
        assert_eq!(ProviderKind::parse(""), None);
    }

    #[test]
    fn base_urls() {
        assert!(ProviderKind::Azure.needs_base_url());
        assert!(ProviderKind::Generic.needs_base_url());
        for k in ProviderKind::ALL.into_iter().filter(|k| !k.needs_base_url()) {
            let u = k.default_base_url();
            assert!(u.starts_with("http") && !u.ends_with('/'), "{u}");
        }
        assert!(!ProviderKind::Gemini.is_openai_compatible());
        assert!(ProviderKind::Mistral.is_openai_compatible());
        assert!(!ProviderKind::Bedrock.is_openai_compatible());
        assert_eq!(ProviderKind::parse("bedrock"), Some(ProviderKind::Bedrock));
    }
}
