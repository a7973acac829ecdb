"""The official `openai` SDK through the real Gatehouse binary (`gatehouse serve --demo`).

Keys are created and revoked through the admin API (`/admin/v1/keys`, operator token). The demo
registers providers `mock` (OpenAI kind) and `mock-anthropic` (Anthropic kind) on an in-process
gatehouse-mock, with models `demo` → mock/mock-gpt and `demo-claude` → mock-anthropic/mock-claude.
The mock's scenario convention (`mock-gpt:tools`, …) is reached through the explicit
`provider/model` form.
"""

from __future__ import annotations

import json
import time

import openai
import pytest

from conftest import Gateway

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_order",
            "description": "Fetch shipping status for an order id.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    }
]


def client(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=gateway.base_url, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def key(gateway: Gateway) -> str:
    """An API key for every model."""
    created = gateway.create_key("python-suite")
    assert created["key"].startswith("gthk_")
    assert "hint" in created and created["key"] not in created["hint"]
    return created["key"]


@pytest.fixture(scope="module")
def oai(gateway: Gateway, key: str) -> openai.OpenAI:
    return client(gateway, key)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_chat_demo(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(model="demo", messages=user("hello gateway"))
    assert r.choices[0].message.content == "echo: hello gateway"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.completion_tokens > 0
    assert r._request_id, "x-request-id on every answer"


def test_stream_with_usage_once(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="demo",
        messages=user("stream through the gateway"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)  # the SDK stops at [DONE]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream through the gateway"
    usages = [c.usage for c in chunks if c.usage is not None]
    assert len(usages) == 1, "usage arrives exactly once"
    assert usages[0].total_tokens == usages[0].prompt_tokens + usages[0].completion_tokens


def test_stream_without_usage(oai: openai.OpenAI) -> None:
    chunks = list(oai.chat.completions.create(model="demo", messages=user("no usage"), stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: no usage"
    assert all(c.usage is None for c in chunks)


def test_tool_calls(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(model="mock/mock-gpt:tools", messages=user("where is 7731?"), tools=TOOLS)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "lookup_order"
    assert json.loads(call.function.arguments) == {"order_id": "Paris"}


def test_parallel_tool_calls_stream(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="mock/mock-gpt:parallel-tools", messages=user("two orders"), tools=TOOLS, stream=True
    )
    calls: dict[int, dict] = {}
    for chunk in stream:
        if not chunk.choices:
            continue
        for tc in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(tc.index, {"name": None, "args": ""})
            if tc.function and tc.function.name:
                entry["name"] = tc.function.name
            entry["args"] += (tc.function.arguments or "") if tc.function else ""
    assert sorted(calls) == [0, 1]
    assert [json.loads(calls[i]["args"]) for i in (0, 1)] == [{"order_id": "Paris"}, {"order_id": "Tokyo"}]


def test_embeddings(oai: openai.OpenAI) -> None:
    b64 = oai.embeddings.create(model="demo", input=["red lamp", "blue lamp"])  # SDK default: base64
    flt = oai.embeddings.create(model="demo", input=["red lamp", "blue lamp"], encoding_format="float")
    assert len(b64.data) == 2 and len(b64.data[0].embedding) > 0
    for a, b in zip(b64.data, flt.data):
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)


def test_models_list_shows_only_allowed(gateway: Gateway) -> None:
    restricted = gateway.create_key("python-suite-demo-only", models=["demo"])
    assert restricted["models"] == ["demo"]
    ids = [m.id for m in client(gateway, restricted["key"]).models.list()]
    assert ids == ["demo"]


def test_models_list_unrestricted(oai: openai.OpenAI) -> None:
    ids = {m.id for m in oai.models.list()}
    assert {"demo", "demo-claude"} <= ids


def test_wrong_key(gateway: Gateway) -> None:
    for bad in ["sk-not-a-gatehouse-key", "gthk_live_" + "A" * 49]:
        with pytest.raises(openai.AuthenticationError) as e:
            client(gateway, bad).chat.completions.create(model="demo", messages=user("x"))
        assert e.value.status_code == 401
        assert bad not in str(e.value.body), "the key is never echoed"


def test_revoked_key(gateway: Gateway) -> None:
    created = gateway.create_key("python-suite-revoke")
    c = client(gateway, created["key"])
    assert c.chat.completions.create(model="demo", messages=user("before")).choices[0].message.content == "echo: before"
    revoked = gateway.revoke_key(created["id"])
    assert revoked.get("revoked_at")
    with pytest.raises(openai.AuthenticationError):
        c.chat.completions.create(model="demo", messages=user("after"))


def test_expired_key(gateway: Gateway) -> None:
    created = gateway.create_key("python-suite-expiring", expires_in="1s")
    assert created.get("expires_at")
    time.sleep(2)
    with pytest.raises(openai.AuthenticationError):
        client(gateway, created["key"]).chat.completions.create(model="demo", messages=user("late"))


def test_disallowed_model(gateway: Gateway) -> None:
    restricted = gateway.create_key("python-suite-no-claude", models=["demo"])
    with pytest.raises(openai.PermissionDeniedError) as e:
        client(gateway, restricted["key"]).chat.completions.create(model="demo-claude", messages=user("x"))
    assert e.value.status_code == 403


def test_anthropic_backed_chat(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(
        model="demo-claude",
        messages=[{"role": "system", "content": "be brief"}, *user("hello claude")],
    )
    assert r.choices[0].message.content == "echo: hello claude"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0


def test_anthropic_backed_stream(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="demo-claude",
        messages=user("stream from claude"),
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream from claude"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    usages = [c.usage for c in chunks if c.usage is not None]
    assert len(usages) == 1
    assert usages[0].completion_tokens > 0


def test_anthropic_backed_tool_calls(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(
        model="mock-anthropic/mock-claude:tools", messages=user("where is 7731?"), tools=TOOLS
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "lookup_order"
    assert json.loads(call.function.arguments) == {"order_id": "Paris"}


def test_upstream_rate_limit_keeps_retry_after(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as e:
        oai.chat.completions.create(model="mock/mock-gpt:429", messages=user("x"))
    assert e.value.response.headers.get("retry-after") == "1"
