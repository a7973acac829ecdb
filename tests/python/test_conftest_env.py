"""The gateway under test never sees a provider's environment variables (conftest filter)."""

from __future__ import annotations

import pytest

from conftest import is_provider_env


@pytest.mark.parametrize(
    "name",
    [
        "OPENAI_API_KEY",
        "ANTHROPIC_BASE_URL",
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "AZURE_OPENAI_API_KEY",
        "AZURE_OPENAI_ENDPOINT",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "OLLAMA_HOST",
        "MISTRAL_API_KEY",
        "DEEPSEEK_API_KEY",
        "GROQ_API_KEY",
        "VLLM_BASE_URL",
        "OPENROUTER_API_KEY",
        "TOGETHER_API_KEY",
        "FIREWORKS_API_KEY",
        "XAI_API_KEY",
        "GATEHOUSE_ADMIN_TOKEN",
        "gemini_api_key",
    ],
)
def test_provider_env_is_filtered(name: str) -> None:
    assert is_provider_env(name)


@pytest.mark.parametrize("name", ["PATH", "HOME", "RUST_LOG", "LANG", "TMPDIR"])
def test_other_env_is_kept(name: str) -> None:
    assert not is_provider_env(name)
