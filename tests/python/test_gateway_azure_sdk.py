"""The `openai` SDK's `AzureOpenAI` client (it sends the key in `api-key` and calls
`/openai/deployments/{deployment}/…?api-version=…`) against Gatehouse with only its endpoint
changed; the deployment name is the Gatehouse model name. And Azure's `/openai/v1/` form with the
same `api-key` header.
"""

from __future__ import annotations

import json
import urllib.request

import openai
import pytest

from conftest import Gateway


@pytest.fixture(scope="module")
def key(gateway: Gateway) -> str:
    return gateway.create_key("python-azure-inbound")["key"]


@pytest.fixture(scope="module")
def azure(gateway: Gateway, key: str) -> openai.AzureOpenAI:
    return openai.AzureOpenAI(
        api_key=key,
        azure_endpoint=gateway.base_url.removesuffix("/v1"),
        api_version="2024-10-21",
        max_retries=0,
        timeout=30,
    )


@pytest.mark.parametrize("deployment", ["demo", "demo-claude"])
def test_chat_by_deployment(azure: openai.AzureOpenAI, deployment: str) -> None:
    r = azure.chat.completions.create(model=deployment, messages=[{"role": "user", "content": "hello azure"}])
    assert r.choices[0].message.content == "echo: hello azure"
    assert r.usage.prompt_tokens > 0


def test_stream_by_deployment(azure: openai.AzureOpenAI) -> None:
    chunks = list(
        azure.chat.completions.create(
            model="demo",
            messages=[{"role": "user", "content": "stream azure"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: stream azure"
    assert chunks[-1].usage.completion_tokens > 0


def test_v1_base_with_api_key(gateway: Gateway, key: str) -> None:
    body = json.dumps({"model": "demo", "messages": [{"role": "user", "content": "v1"}]}).encode()
    req = urllib.request.Request(
        gateway.base_url.removesuffix("/v1") + "/openai/v1/chat/completions",
        data=body,
        headers={"api-key": key, "content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        assert json.loads(r.read())["choices"][0]["message"]["content"] == "echo: v1"


def test_wrong_key(gateway: Gateway) -> None:
    bad = openai.AzureOpenAI(
        api_key="gthk_live_not_a_key",
        azure_endpoint=gateway.base_url.removesuffix("/v1"),
        api_version="2024-10-21",
        max_retries=0,
        timeout=30,
    )
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="demo", messages=[{"role": "user", "content": "x"}])
