//! The model catalog: context window, max output and USD list prices per model, built into the
//! binary (`catalog/models.toml`, whose header says the prices must be checked) and overridable
//! by `<data_dir>/models.toml` (same format; entries replace built-in ones with the same `id`,
//! others are added).
//!
//! [`Catalog::lookup`] matches an upstream model id exactly (case-insensitive, ids and aliases),
//! then after normalisation: `models/` and `provider/` prefixes, Bedrock region prefixes
//! (`us.`, `eu.`, `apac.`, `global.`), Ollama `:tag`s, and date suffixes (`-20250929`,
//! `-2024-08-06`, `@20240620`) or `-latest` are stripped, one step at a time.
//!
//! [`Entry::cost_usd`] prices one call from its exact [`Usage`]: uncached input, cache reads,
//! cache writes, visible output and reasoning output each at their own price, every token
//! counted once (`prompt_tokens` already includes cached and cache-written tokens, §7.6).

use std::collections::HashMap;
use std::path::Path;

use gatehouse_types::Usage;
use serde::{Deserialize, Serialize};

/// The built-in catalog file.
pub const BUILTIN: &str = include_str!("../catalog/models.toml");

/// One model's limits and prices (USD per 1,000,000 tokens).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The upstream model id.
    pub id: String,
    /// Other ids of the same model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Who serves it (`openai`, `anthropic`, `gemini`, …).
    pub provider: String,
    /// Context window in tokens (input + output).
    pub context: u64,
    /// Largest completion in tokens.
    pub max_output: u64,
    /// Uncached input tokens.
    pub input: f64,
    /// Visible output tokens.
    pub output: f64,
    /// Cache-read input tokens (default: `input`).
    #[serde(default)]
    pub cached: Option<f64>,
    /// Cache-write input tokens (default: `input`).
    #[serde(default)]
    pub cache_write: Option<f64>,
    /// Reasoning output tokens (default: `output`).
    #[serde(default)]
    pub reasoning: Option<f64>,
    /// The model takes `reasoning_effort` / thinking.
    #[serde(default)]
    pub reasoning_model: bool,
}

impl Entry {
    /// The cost of one call in USD (module doc). Saturates on inconsistent counts (e.g. more
    /// cached than prompt tokens) instead of going negative.
    pub fn cost_usd(&self, u: &Usage) -> f64 {
        let uncached = u.prompt_tokens.saturating_sub(u.cached_tokens).saturating_sub(u.cache_write_tokens);
        let visible = u.completion_tokens.saturating_sub(u.reasoning_tokens);
        let micro = uncached as f64 * self.input
            + u.cached_tokens as f64 * self.cached.unwrap_or(self.input)
            + u.cache_write_tokens as f64 * self.cache_write.unwrap_or(self.input)
            + visible as f64 * self.output
            + u.reasoning_tokens as f64 * self.reasoning.unwrap_or(self.output);
        micro / 1_000_000.0
    }

    /// The catalog fields shown by `GET /v1/models`: `context_window`, `max_output_tokens` and
    /// `pricing` (USD per million tokens).
    pub fn public_json(&self) -> serde_json::Value {
        serde_json::json!({
            "context_window": self.context,
            "max_output_tokens": self.max_output,
            "pricing": {
                "currency": "USD",
                "unit": "1M tokens",
                "input": self.input,
                "output": self.output,
                "cached_input": self.cached.unwrap_or(self.input),
                "cache_write": self.cache_write.unwrap_or(self.input),
                "reasoning": self.reasoning.unwrap_or(self.output),
            },
            "reasoning": self.reasoning_model,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    models: Vec<Entry>,
}

/// Why a catalog file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not a valid model catalog: {message}")]
    Parse { path: String, message: String },
}

/// The model catalog (see the module doc).
#[derive(Debug, Clone)]
pub struct Catalog {
    entries: Vec<Entry>,
    /// Lowercased id or alias → index in `entries`.
    index: HashMap<String, usize>,
}

impl Default for Catalog {
    /// The built-in catalog.
    fn default() -> Self {
        Self::builtin()
    }
}

impl Catalog {
    /// The built-in catalog (a broken built-in file is a build defect caught by the tests; it
    /// yields an empty catalog rather than a panic).
    pub fn builtin() -> Self {
        Self::parse(BUILTIN, "built-in catalog").unwrap_or_else(|e| {
            tracing::error!(error = %e, "built-in model catalog unusable");
            Self::from_entries(Vec::new())
        })
    }

    /// Parses a catalog file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, CatalogError> {
        let file: File = toml::from_str(text).map_err(|e| CatalogError::Parse { path: origin.to_string(), message: e.to_string() })?;
        for e in &file.models {
            let prices = [Some(e.input), Some(e.output), e.cached, e.cache_write, e.reasoning];
            if e.id.is_empty() || prices.iter().flatten().any(|p| !p.is_finite() || *p < 0.0) {
                return Err(CatalogError::Parse {
                    path: origin.to_string(),
                    message: format!("entry `{}`: empty id or a negative/non-finite price", e.id),
                });
            }
        }
        Ok(Self::from_entries(file.models))
    }

    /// The built-in catalog merged with `path` if that file exists (its entries replace
    /// built-in ones with the same id).
    ///
    /// Errors: the file exists but cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Self, CatalogError> {
        let mut catalog = Self::builtin();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(catalog),
            Err(source) => return Err(CatalogError::Read { path: path.display().to_string(), source }),
        };
        let extra = Self::parse(&text, &path.display().to_string())?;
        let mut entries = std::mem::take(&mut catalog.entries);
        for e in extra.entries {
            match entries.iter_mut().find(|b| b.id.eq_ignore_ascii_case(&e.id)) {
                Some(b) => *b = e,
                None => entries.push(e),
            }
        }
        Ok(Self::from_entries(entries))
    }

    fn from_entries(entries: Vec<Entry>) -> Self {
        let mut index = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            for name in std::iter::once(&e.id).chain(&e.aliases) {
                index.entry(name.to_ascii_lowercase()).or_insert(i);
            }
        }
        Self { entries, index }
    }

    /// Every entry.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry of an upstream model id (module doc), or `None` when unknown.
    pub fn lookup(&self, model: &str) -> Option<&Entry> {
        let mut queue = vec![model.trim().to_ascii_lowercase()];
        let mut seen = 0;
        while let Some(name) = queue.pop() {
            if let Some(&i) = self.index.get(&name) {
                return self.entries.get(i);
            }
            seen += 1;
            if seen > 32 {
                break;
            }
            queue.extend(variants(&name));
        }
        None
    }
}

/// One-step normalisations of a model id (module doc).
fn variants(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(rest) = name.strip_prefix("models/") {
        out.push(rest.to_string());
    }
    if let Some((_, rest)) = name.split_once('/')
        && !rest.is_empty()
    {
        out.push(rest.to_string());
    }
    for region in ["us.", "eu.", "apac.", "global.", "us-gov."] {
        if let Some(rest) = name.strip_prefix(region) {
            out.push(rest.to_string());
        }
    }
    if let Some(rest) = name.strip_suffix("-latest") {
        out.push(rest.to_string());
    }
    if let Some((base, tag)) = name.rsplit_once(':')
        && !base.is_empty()
        && !tag.is_empty()
    {
        out.push(base.to_string());
    }
    if let Some((base, date)) = name.rsplit_once('@')
        && date.bytes().all(|b| b.is_ascii_digit())
    {
        out.push(base.to_string());
    }
    if let Some(base) = strip_date(name) {
        out.push(base);
    }
    out
}

/// `name-YYYYMMDD` or `name-YYYY-MM-DD` → `name`.
fn strip_date(name: &str) -> Option<String> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (base, last) = name.rsplit_once('-')?;
    if last.len() == 8 && digits(last) {
        return Some(base.to_string());
    }
    if last.len() == 2 && digits(last) {
        let (base2, month) = base.rsplit_once('-')?;
        let (base3, year) = base2.rsplit_once('-')?;
        if month.len() == 2 && digits(month) && year.len() == 4 && digits(year) {
            return Some(base3.to_string());
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn builtin_parses_with_over_100_models_across_providers() {
        let c = Catalog::parse(BUILTIN, "built-in").unwrap();
        assert!(c.entries().len() >= 100, "{}", c.entries().len());
        for p in ["openai", "anthropic", "gemini", "mistral", "deepseek", "groq", "xai", "bedrock", "ollama"] {
            assert!(c.entries().iter().any(|e| e.provider == p), "{p}");
        }
        for e in c.entries() {
            assert!(e.context > 0 && e.max_output <= e.context, "{}", e.id);
        }
        assert!(BUILTIN.contains("PRICES MUST BE CHECKED"));
    }

    #[test]
    fn lookup_normalises_ids() {
        let c = Catalog::builtin();
        let id = |m: &str| c.lookup(m).map(|e| e.id.clone());
        assert_eq!(id("gpt-4o").as_deref(), Some("gpt-4o"));
        assert_eq!(id("GPT-4o-2024-08-06").as_deref(), Some("gpt-4o"));
        assert_eq!(id("gpt-4o-2024-05-13").as_deref(), Some("gpt-4o-2024-05-13"), "exact beats normalised");
        assert_eq!(id("claude-sonnet-4-5-20250929").as_deref(), Some("claude-sonnet-4-5"));
        assert_eq!(id("claude-3-7-sonnet-latest").as_deref(), Some("claude-3-7-sonnet"));
        assert_eq!(id("claude-3-5-sonnet@20240620").as_deref(), Some("claude-3-5-sonnet"));
        assert_eq!(id("models/gemini-2.5-flash").as_deref(), Some("gemini-2.5-flash"));
        assert_eq!(id("openai/gpt-4.1-mini").as_deref(), Some("gpt-4.1-mini"));
        assert_eq!(id("us.anthropic.claude-sonnet-4-20250514-v1:0").as_deref(), Some("anthropic.claude-sonnet-4-20250514-v1:0"));
        assert_eq!(id("llama3.2:3b").as_deref(), Some("llama3.2"));
        assert_eq!(id("mistral-large-2411").as_deref(), Some("mistral-large-latest"));
        assert_eq!(id("mock-gpt"), None);
        assert_eq!(id(""), None);
    }

    #[test]
    fn cost_counts_each_token_once() {
        let c = Catalog::builtin();
        let sonnet = c.lookup("claude-sonnet-4-5").unwrap();
        // Anthropic: input 100 uncached + 1000 cache read + 200 cache write = prompt 1300.
        let u = Usage { prompt_tokens: 1300, completion_tokens: 50, cached_tokens: 1000, cache_write_tokens: 200, reasoning_tokens: 0 };
        let want = (100.0 * 3.0 + 1000.0 * 0.30 + 200.0 * 3.75 + 50.0 * 15.0) / 1e6;
        assert!((sonnet.cost_usd(&u) - want).abs() < 1e-12, "{} vs {want}", sonnet.cost_usd(&u));
        // Reasoning at its own price (default: the output price).
        let e = Entry { reasoning: Some(1.0), ..c.lookup("o3").unwrap().clone() };
        let u = Usage { prompt_tokens: 10, completion_tokens: 30, reasoning_tokens: 20, ..Usage::default() };
        assert!((e.cost_usd(&u) - (10.0 * 2.0 + 10.0 * 8.0 + 20.0 * 1.0) / 1e6).abs() < 1e-12);
        // Inconsistent counts never go negative.
        let u = Usage { prompt_tokens: 5, cached_tokens: 10, ..Usage::default() };
        assert!(e.cost_usd(&u) >= 0.0);
    }

    #[test]
    fn override_file_replaces_and_adds() {
        let dir = std::env::temp_dir().join(format!("gatehouse-catalog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("models.toml");
        assert!(Catalog::load(&path).unwrap().lookup("gpt-4o").is_some(), "missing file = built-in");
        std::fs::write(
            &path,
            "models = [\n { id = \"gpt-4o\", provider = \"openai\", context = 1, max_output = 1, input = 9.0, output = 9.0 },\n { id = \"mock-gpt\", provider = \"mock\", context = 10, max_output = 5, input = 1.0, output = 2.0 },\n]\n",
        )
        .unwrap();
        let c = Catalog::load(&path).unwrap();
        assert_eq!(c.lookup("gpt-4o").unwrap().input, 9.0);
        assert_eq!(c.lookup("mock-gpt").unwrap().output, 2.0);
        assert!(c.lookup("claude-sonnet-4-5").is_some());
        std::fs::write(&path, "models = [ { id = \"x\", provider = \"p\", context = 1, max_output = 1, input = -1.0, output = 0.0 } ]").unwrap();
        assert!(matches!(Catalog::load(&path), Err(CatalogError::Parse { .. })));
        std::fs::write(&path, "not toml [").unwrap();
        assert!(Catalog::load(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
