//! The output-cap field an upstream takes (`wire-formats.md` §1.3): OpenAI's reasoning models
//! (o1, o3, o4 and the gpt-5 family) refuse the deprecated `max_tokens` with 400
//! `unsupported_parameter` and take `max_completion_tokens` only, while many OpenAI-compatible
//! servers know only `max_tokens`. So the cap is renamed for OpenAI and Azure upstreams serving a
//! reasoning model, and left alone for everything else (the compat kinds rename the other way in
//! `gatehouse_providers`).

use gatehouse_providers::{ProviderKind, Target};
use serde_json::{Map, Value};

/// Whether a model name looks like an OpenAI reasoning model, for models the catalog does not
/// know (e.g. Azure deployment names that keep the model name, `o3-mini-prod`): `o1`, `o3`, `o4`
/// or `gpt-5`, alone or followed by `-`/`.`, after any `provider/` prefix.
pub(crate) fn looks_like_reasoning_model(model: &str) -> bool {
    let base = model.rsplit('/').next().unwrap_or(model).to_ascii_lowercase();
    ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|f| base == *f || base.strip_prefix(f).is_some_and(|rest| rest.starts_with(['-', '.'])))
}

/// For an OpenAI or Azure `target` whose model is a reasoning model (`reasoning_model`: the
/// catalog's flag, `None` when the catalog does not know the model → [`looks_like_reasoning_model`]),
/// moves `max_tokens` to `max_completion_tokens`. When both are set, `max_completion_tokens` (the
/// current field) wins and `max_tokens` is dropped. Other kinds and models are untouched.
pub(crate) fn fit_token_cap(body: &mut Map<String, Value>, target: &Target, reasoning_model: Option<bool>) {
    if !matches!(target.kind, ProviderKind::OpenAi | ProviderKind::Azure) {
        return;
    }
    if !reasoning_model.unwrap_or_else(|| looks_like_reasoning_model(&target.upstream_model)) {
        return;
    }
    let Some(cap) = body.remove("max_tokens") else { return };
    if cap.is_null() {
        return;
    }
    if body.get("max_completion_tokens").is_none_or(Value::is_null) {
        body.insert("max_completion_tokens".into(), cap);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use secrecy::SecretString;
    use serde_json::json;

    fn target(kind: ProviderKind, model: &str) -> Target {
        Target { kind, base_url: "http://x".into(), api_key: SecretString::from("k"), upstream_model: model.into(), anthropic_beta: None }
    }

    fn fit(kind: ProviderKind, model: &str, flag: Option<bool>, body: Value) -> Value {
        let Value::Object(mut m) = body else { panic!() };
        fit_token_cap(&mut m, &target(kind, model), flag);
        Value::Object(m)
    }

    #[test]
    fn names() {
        for m in ["o1", "o3-mini", "o4-mini-2025-04-16", "gpt-5", "gpt-5.1", "GPT-5-nano", "openai/o3", "o1-preview"] {
            assert!(looks_like_reasoning_model(m), "{m}");
        }
        for m in ["gpt-4o", "o10", "gpt-50", "foo-o3", "gpt-4.1", "claude-3"] {
            assert!(!looks_like_reasoning_model(m), "{m}");
        }
    }

    #[test]
    fn renames_only_for_openai_and_azure_reasoning_models() {
        let b = json!({"max_tokens": 50});
        assert_eq!(fit(ProviderKind::OpenAi, "o3", None, b.clone()), json!({"max_completion_tokens": 50}));
        assert_eq!(fit(ProviderKind::Azure, "my-deployment", Some(true), b.clone()), json!({"max_completion_tokens": 50}));
        assert_eq!(fit(ProviderKind::Azure, "o4-mini-prod", None, b.clone()), json!({"max_completion_tokens": 50}));
        // The catalog's flag wins over the name.
        assert_eq!(fit(ProviderKind::OpenAi, "o3", Some(false), b.clone()), b);
        assert_eq!(fit(ProviderKind::OpenAi, "gpt-4o", None, b.clone()), b);
        for kind in [ProviderKind::DeepSeek, ProviderKind::Generic, ProviderKind::Anthropic, ProviderKind::Mistral] {
            assert_eq!(fit(kind, "o3", Some(true), b.clone()), b, "{kind:?}");
        }
        // Both sent: the current field wins; null is absent.
        assert_eq!(
            fit(ProviderKind::OpenAi, "o3", None, json!({"max_tokens": 50, "max_completion_tokens": 20})),
            json!({"max_completion_tokens": 20})
        );
        assert_eq!(fit(ProviderKind::OpenAi, "o3", None, json!({"max_tokens": null})), json!({}));
        assert_eq!(fit(ProviderKind::OpenAi, "o3", None, json!({"max_tokens": 9, "max_completion_tokens": null})), json!({"max_completion_tokens": 9}));
        assert_eq!(fit(ProviderKind::OpenAi, "o3", None, json!({"temperature": 1})), json!({"temperature": 1}));
    }
}
