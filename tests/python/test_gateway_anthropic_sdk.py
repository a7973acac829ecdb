"""The official `anthropic` SDK through Gatehouse's Messages API (`POST /v1/messages`), with only
its base URL changed, to an OpenAI-format upstream (`demo` → mock/mock-gpt) and an
Anthropic-format upstream (`demo-claude` → mock-anthropic/mock-claude): plain, streamed, tool use
(streamed and not, with the tool result sent back), errors in Anthropic's shape.
"""

from __future__ import annotations

import json

import urllib.error
import urllib.request

import anthropic
import pytest

from conftest import Gateway

TOOL = {
    "name": "lookup_order",
    "description": "Fetch shipping status for an order id.",
    "input_schema": {
        "type": "object",
        "properties": {"order_id": {"type": "string"}},
        "required": ["order_id"],
    },
}

# (public or explicit model, tool-scenario model) per upstream format
UPSTREAMS = {
    "openai-format": ("demo", "mock/mock-gpt:tools"),
    "anthropic-format": ("demo-claude", "mock-anthropic/mock-claude:tools"),
    # the `gemini_upstream` provider (kind gemini → the mock's generateContent)
    "gemini-format": ("py-gemini/mock-gemini", "py-gemini/mock-gemini:tools"),
}


@pytest.fixture(scope="module", autouse=True)
def _gemini_format_upstream(gemini_upstream: str) -> None:
    assert gemini_upstream == "py-gemini"


def root(gateway: Gateway) -> str:
    return gateway.base_url.removesuffix("/v1")


def post(url: str, headers: dict, body: dict) -> tuple[int, str]:
    """A raw POST (stdlib only): `(status, body text)`."""
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json", **headers}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture(scope="module")
def key(gateway: Gateway) -> str:
    return gateway.create_key("python-anthropic-inbound")["key"]


@pytest.fixture(scope="module")
def claude(gateway: Gateway, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=key, base_url=root(gateway), max_retries=0, timeout=30)


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_create(claude: anthropic.Anthropic, upstream: str) -> None:
    model, _ = UPSTREAMS[upstream]
    m = claude.messages.create(
        model=model,
        max_tokens=200,
        system="Be brief.",
        messages=[{"role": "user", "content": "hello messages"}],
    )
    assert m.type == "message" and m.role == "assistant"
    assert m.content[0].type == "text" and m.content[0].text == "echo: hello messages"
    assert m.stop_reason == "end_turn"
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_stream_text(claude: anthropic.Anthropic, upstream: str) -> None:
    model, _ = UPSTREAMS[upstream]
    with claude.messages.stream(
        model=model, max_tokens=200, messages=[{"role": "user", "content": "stream me"}]
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "echo: stream me"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_tool_use_and_result(claude: anthropic.Anthropic, upstream: str) -> None:
    model, tools_model = UPSTREAMS[upstream]
    m = claude.messages.create(
        model=tools_model,
        max_tokens=200,
        tools=[TOOL],
        messages=[{"role": "user", "content": "where is my order?"}],
    )
    assert m.stop_reason == "tool_use"
    call = next(b for b in m.content if b.type == "tool_use")
    assert call.name == "lookup_order" and isinstance(call.input["order_id"], str)
    follow = claude.messages.create(
        model=model,
        max_tokens=200,
        tools=[TOOL],
        messages=[
            {"role": "user", "content": "where is my order?"},
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "in transit"}]},
        ],
    )
    assert follow.content[0].text == "tool result: in transit"


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_stream_tool_use(claude: anthropic.Anthropic, upstream: str) -> None:
    _, tools_model = UPSTREAMS[upstream]
    with claude.messages.stream(
        model=tools_model,
        max_tokens=200,
        tools=[TOOL],
        messages=[{"role": "user", "content": "where is my order?"}],
    ) as s:
        events = [e.type for e in s]
        final = s.get_final_message()
    assert events[0] == "message_start" and "message_stop" in events
    call = next(b for b in final.content if b.type == "tool_use")
    assert call.name == "lookup_order" and isinstance(call.input["order_id"], str)
    assert final.stop_reason == "tool_use"


def test_x_api_key_header_also_works(gateway: Gateway, key: str) -> None:
    status, text = post(
        root(gateway) + "/v1/messages",
        {"x-api-key": key, "anthropic-version": "2023-06-01"},
        {"model": "demo", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert status == 200, text
    assert json.loads(text)["content"][0]["text"] == "echo: hi"


def test_two_credentials_is_400(gateway: Gateway, key: str) -> None:
    status, text = post(
        root(gateway) + "/v1/messages",
        {"x-api-key": key, "authorization": f"Bearer {key}"},
        {"model": "demo", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert status == 400
    assert key not in text
    assert json.loads(text)["error"]["type"] == "invalid_request_error"


def test_errors_map_to_sdk_exceptions(gateway: Gateway, claude: anthropic.Anthropic) -> None:
    bad = anthropic.Anthropic(api_key="gthk_live_not_a_key", base_url=root(gateway), max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="demo", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.OverloadedError):
        claude.messages.create(model="mock/mock-gpt:529", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.RateLimitError):
        claude.messages.create(model="mock/mock-gpt:429", max_tokens=5, messages=[{"role": "user", "content": "x"}])


def test_error_mid_stream_raises(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.APIStatusError) as e:
        with claude.messages.stream(
            model="mock/mock-gpt:error-mid-stream", max_tokens=50, messages=[{"role": "user", "content": "x"}]
        ) as s:
            for _ in s:
                pass
    assert e.value.body["error"]["type"] == "api_error", e.value.body
