"""The official SDKs pointed straight at gatehouse-mock: proves the mock speaks the real formats."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from conftest import MOCK_KEY, Mock

TOOLS_OPENAI = [
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

TOOLS_ANTHROPIC = [
    {
        "name": "lookup_order",
        "description": "Fetch shipping status for an order id.",
        "input_schema": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
    }
]


@pytest.fixture()
def oai(mock: Mock) -> openai.OpenAI:
    return openai.OpenAI(api_key=MOCK_KEY, base_url=mock.openai_base_url, max_retries=0, timeout=30)


@pytest.fixture()
def claude(mock: Mock) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=MOCK_KEY, base_url=mock.anthropic_base_url, max_retries=0, timeout=30)


# --- OpenAI -----------------------------------------------------------------------------------


def test_openai_chat(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "hello mock"}])
    assert r.object == "chat.completion"
    assert r.choices[0].message.content == "echo: hello mock"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r._request_id is not None


def test_openai_stream_with_usage(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="mock-gpt:cached",
        messages=[{"role": "user", "content": "stream to me"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream to me"
    usages = [c.usage for c in chunks if c.usage is not None]
    assert len(usages) == 1
    assert usages[0].prompt_tokens_details.cached_tokens == 1024
    assert chunks[-1].choices == []
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]


def test_openai_stream_variants_parse(oai: openai.OpenAI) -> None:
    # CRLF framing, keep-alive comments and split UTF-8 all parse in the real SDK.
    stream = oai.chat.completions.create(
        model="mock-gpt:crlf,keepalive,utf8-split,chunks=7",
        messages=[{"role": "user", "content": "héllo"}],
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "echo: héllo — naïve café ✓ 🦀"


def test_openai_stream_noise(oai: openai.OpenAI) -> None:
    # Azure-style empty-choices chunk and unknown fields are tolerated by the SDK.
    chunks = list(
        oai.chat.completions.create(
            model="mock-gpt:noise", messages=[{"role": "user", "content": "noisy"}], stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices == [] and chunks[0].usage is None
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: noisy"
    assert sum(1 for c in chunks if c.usage is not None) == 1


def test_openai_tool_call(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(
        model="mock-gpt:tools", messages=[{"role": "user", "content": "where is 7731?"}], tools=TOOLS_OPENAI
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_")
    assert call.function.name == "lookup_order"
    assert json.loads(call.function.arguments) == {"order_id": "Paris"}


def test_openai_parallel_tool_calls_stream(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="mock-gpt:parallel-tools",
        messages=[{"role": "user", "content": "two orders"}],
        tools=TOOLS_OPENAI,
        stream=True,
    )
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        if not chunk.choices:
            continue
        finish = chunk.choices[0].finish_reason or finish
        for tc in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(tc.index, {"name": None, "args": ""})
            if tc.function.name:
                entry["name"] = tc.function.name
            entry["args"] += tc.function.arguments or ""
    assert finish == "tool_calls"
    assert sorted(calls) == [0, 1]
    assert [calls[i]["name"] for i in (0, 1)] == ["lookup_order", "lookup_order"]
    assert json.loads(calls[0]["args"]) == {"order_id": "Paris"}
    assert json.loads(calls[1]["args"]) == {"order_id": "Tokyo"}


def test_openai_tool_call_stream_helper(oai: openai.OpenAI) -> None:
    # The SDK's high-level stream helper accumulates tool-call fragments itself.
    with oai.chat.completions.stream(
        model="mock-gpt:tools", messages=[{"role": "user", "content": "x"}], tools=TOOLS_OPENAI
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    (call,) = final.choices[0].message.tool_calls
    assert json.loads(call.function.arguments) == {"order_id": "Paris"}


def test_openai_embeddings(oai: openai.OpenAI) -> None:
    # The SDK asks for base64 by default and decodes it; float must give the same numbers.
    b64 = oai.embeddings.create(model="mock-embed", input=["red lamp", "blue lamp"])
    flt = oai.embeddings.create(model="mock-embed", input=["red lamp", "blue lamp"], encoding_format="float")
    assert [d.index for d in b64.data] == [0, 1]
    assert len(b64.data[0].embedding) == 16
    for a, b in zip(b64.data, flt.data):
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)
    assert b64.data[0].embedding != b64.data[1].embedding
    assert b64.usage.prompt_tokens == 4
    dims = oai.embeddings.create(model="mock-embed", input="x", dimensions=4)
    assert len(dims.data[0].embedding) == 4


def test_openai_models(oai: openai.OpenAI) -> None:
    ids = [m.id for m in oai.models.list()]
    assert "mock-gpt" in ids
    assert oai.models.retrieve("mock-gpt").id == "mock-gpt"


def test_openai_wrong_key(mock: Mock) -> None:
    bad = openai.OpenAI(api_key="sk-wrong", base_url=mock.openai_base_url, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 401
    assert e.value.code == "invalid_api_key"


def test_openai_scripted_401(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.AuthenticationError):
        oai.chat.completions.create(model="mock-gpt:401", messages=[{"role": "user", "content": "x"}])


def test_openai_rate_limit(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as e:
        oai.chat.completions.create(model="mock-gpt:429", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 429
    assert e.value.response.headers["retry-after"] == "1"
    assert e.value.code == "rate_limit_exceeded"


def test_openai_server_error_and_header_override(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError):
        oai.chat.completions.create(
            model="mock-gpt",
            messages=[{"role": "user", "content": "x"}],
            extra_headers={"x-mock-scenario": "500"},
        )


def test_openai_retry_honours_retry_after(mock: Mock) -> None:
    # The SDK retries a 429 carrying retry-after (fail_first=1: the second call succeeds).
    c = openai.OpenAI(api_key=MOCK_KEY, base_url=mock.openai_base_url, max_retries=1, timeout=30)
    r = c.chat.completions.create(
        model="mock-gpt:429,fail_first=1,retry_after=0,reply=after+retry", messages=[{"role": "user", "content": "x"}]
    )
    assert r.choices[0].message.content == "after retry"


def test_openai_error_mid_stream(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="mock-gpt:error-mid-stream", messages=[{"role": "user", "content": "a b c d e"}], stream=True
    )
    with pytest.raises(openai.APIError) as e:
        for _ in stream:
            pass
    assert "error" in str(e.value).lower()


def test_openai_bad_scenario_is_a_400(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        oai.chat.completions.create(model="mock-gpt:bogus", messages=[{"role": "user", "content": "x"}])
    assert "bogus" in str(e.value)


# --- Anthropic --------------------------------------------------------------------------------


def test_anthropic_create(claude: anthropic.Anthropic) -> None:
    m = claude.messages.create(
        model="mock-claude:cached",
        max_tokens=64,
        system="be brief",
        messages=[{"role": "user", "content": "hello claude"}],
    )
    assert m.type == "message"
    assert m.role == "assistant"
    assert m.content[0].type == "text"
    assert m.content[0].text == "echo: hello claude"
    assert m.stop_reason == "end_turn"
    assert m.usage.cache_read_input_tokens == 1024
    assert m.usage.cache_creation_input_tokens == 256
    assert m.usage.output_tokens > 0


def test_anthropic_stream_text(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model="mock-claude:crlf,keepalive", max_tokens=64, messages=[{"role": "user", "content": "stream please"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: stream please"
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3


def test_anthropic_stream_noise(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model="mock-claude:noise", max_tokens=64, messages=[{"role": "user", "content": "noisy"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: noisy"
    assert final.stop_reason == "end_turn"


def test_anthropic_stream_events(claude: anthropic.Anthropic) -> None:
    stream = claude.messages.create(
        model="mock-claude", max_tokens=64, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    # The SDK drops `ping` itself; the rest is the exact §2.6 order.
    types = [e.type for e in stream]
    assert types == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_anthropic_stream_tool_use(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model="mock-claude:parallel-tools",
        max_tokens=256,
        tools=TOOLS_ANTHROPIC,
        messages=[{"role": "user", "content": "where are 7731 and 7732?"}],
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    kinds = [b.type for b in final.content]
    assert kinds == ["text", "tool_use", "tool_use"]
    uses = [b for b in final.content if b.type == "tool_use"]
    assert [u.name for u in uses] == ["lookup_order", "lookup_order"]
    assert [u.input for u in uses] == [{"order_id": "Paris"}, {"order_id": "Tokyo"}]
    assert all(u.id.startswith("toolu_") for u in uses)


def test_anthropic_forced_tool_non_stream(claude: anthropic.Anthropic) -> None:
    m = claude.messages.create(
        model="mock-claude:tools",
        max_tokens=64,
        tools=TOOLS_ANTHROPIC,
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": "x"}],
    )
    assert [b.type for b in m.content] == ["tool_use"]
    assert m.content[0].input == {"order_id": "Paris"}


def test_anthropic_tool_result_round_trip(claude: anthropic.Anthropic) -> None:
    m = claude.messages.create(
        model="mock-claude",
        max_tokens=64,
        messages=[
            {"role": "user", "content": "where is 7731?"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_01abc", "name": "lookup_order", "input": {"order_id": "7731"}}],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01abc", "content": "in transit"}]},
        ],
    )
    assert m.content[0].text == "tool result: in transit"


def test_anthropic_overloaded(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.APIStatusError) as e:
        claude.messages.create(model="mock-claude:529", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 529
    assert isinstance(e.value, anthropic.OverloadedError)
    assert e.value.body["error"]["type"] == "overloaded_error"


def test_anthropic_rate_limit(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as e:
        claude.messages.create(model="mock-claude:429", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert e.value.response.headers["retry-after"] == "1"


def test_anthropic_wrong_key(mock: Mock) -> None:
    bad = anthropic.Anthropic(api_key="sk-ant-wrong", base_url=mock.anthropic_base_url, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model="mock-claude", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 401
    assert e.value.body["error"]["type"] == "authentication_error"


def test_anthropic_error_mid_stream(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.APIStatusError) as e:
        with claude.messages.stream(
            model="mock-claude:error-mid-stream", max_tokens=64, messages=[{"role": "user", "content": "a b c d"}]
        ) as stream:
            for _ in stream:
                pass
    assert "overloaded" in str(e.value).lower()


def test_anthropic_models(claude: anthropic.Anthropic) -> None:
    ids = [m.id for m in claude.models.list()]
    assert "mock-claude" in ids
