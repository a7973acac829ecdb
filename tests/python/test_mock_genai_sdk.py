"""The official `google-genai` SDK (pinned 3.6.1) pointed straight at gatehouse-mock: proves the
mock speaks the real Gemini format (`generateContent`, `streamGenerateContent?alt=sse`,
`x-goog-api-key`, Google's error envelope), which the gateway's Gemini adapter is tested against.
"""

from __future__ import annotations

import pytest
from google import genai
from google.genai import errors, types

from conftest import MOCK_KEY, Mock

LOOKUP = types.FunctionDeclaration(
    name="lookup_order",
    description="Fetch shipping status for an order id.",
    parameters=types.Schema(
        type=types.Type.OBJECT,
        properties={"order_id": types.Schema(type=types.Type.STRING)},
        required=["order_id"],
    ),
)
NO_AFC = types.AutomaticFunctionCallingConfig(disable=True)


def client(mock: Mock, key: str = MOCK_KEY) -> genai.Client:
    return genai.Client(
        api_key=key,
        http_options=types.HttpOptions(base_url=mock.base_url, retry_options=types.HttpRetryOptions(attempts=1)),
    )


@pytest.fixture()
def gem(mock: Mock) -> genai.Client:
    return client(mock)


def test_generate_content(gem: genai.Client) -> None:
    r = gem.models.generate_content(
        model="mock-gemini",
        contents="hello mock",
        config=types.GenerateContentConfig(system_instruction="Be brief.", max_output_tokens=50),
    )
    assert r.text == "echo: hello mock"
    assert r.candidates[0].finish_reason == types.FinishReason.STOP
    u = r.usage_metadata
    assert u.prompt_token_count > 0 and u.candidates_token_count > 0
    assert u.total_token_count == u.prompt_token_count + u.candidates_token_count


def test_usage_with_cache_and_thoughts(gem: genai.Client) -> None:
    r = gem.models.generate_content(model="mock-gemini:cached=64,reasoning=16", contents="count me")
    u = r.usage_metadata
    assert u.cached_content_token_count == 64
    assert u.thoughts_token_count == 16


def test_stream(gem: genai.Client) -> None:
    chunks = list(gem.models.generate_content_stream(model="mock-gemini:chunks=4", contents="stream mock"))
    assert len(chunks) >= 4
    assert "".join(c.text or "" for c in chunks) == "echo: stream mock"
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert all(c.usage_metadata is not None for c in chunks)


def test_stream_utf8_split(gem: genai.Client) -> None:
    text = "".join(c.text or "" for c in gem.models.generate_content_stream(model="mock-gemini:utf8-split", contents="x"))
    assert text.startswith("echo: x") and len(text) > len("echo: x")


def test_function_call_with_thought_signature_and_response(gem: genai.Client) -> None:
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[LOOKUP])], automatic_function_calling=NO_AFC)
    r = gem.models.generate_content(model="mock-gemini:tools", contents="where is my order?", config=config)
    assert r.candidates[0].finish_reason == types.FinishReason.STOP
    call = r.function_calls[0]
    assert call.name == "lookup_order" and isinstance(call.args["order_id"], str)
    part = next(p for p in r.candidates[0].content.parts if p.function_call)
    assert part.thought_signature  # opaque bytes, sent back unchanged below
    follow = gem.models.generate_content(
        model="mock-gemini",
        contents=[
            types.Content(role="user", parts=[types.Part(text="where is my order?")]),
            r.candidates[0].content,
            types.Content(
                role="user",
                parts=[types.Part(function_response=types.FunctionResponse(name=call.name, response={"output": "in transit"}))],
            ),
        ],
        config=config,
    )
    assert follow.text == "tool result: in transit"


def test_parallel_function_calls_stream(gem: genai.Client) -> None:
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[LOOKUP])], automatic_function_calling=NO_AFC)
    calls = [
        fc
        for chunk in gem.models.generate_content_stream(model="mock-gemini:parallel-tools", contents="two orders", config=config)
        for fc in (chunk.function_calls or [])
    ]
    assert len(calls) == 2 and {c.name for c in calls} == {"lookup_order"}


def test_finish_reasons(gem: genai.Client) -> None:
    r = gem.models.generate_content(model="mock-gemini:finish=length", contents="x")
    assert r.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    r = gem.models.generate_content(model="mock-gemini:finish=content_filter", contents="x")
    assert r.candidates[0].finish_reason == types.FinishReason.SAFETY


def test_errors(mock: Mock, gem: genai.Client) -> None:
    bad = client(mock, "wrong-key")  # kept referenced: the SDK closes on collection
    with pytest.raises(errors.ClientError) as e:
        bad.models.generate_content(model="mock-gemini", contents="x")
    assert e.value.code == 400 and e.value.status == "INVALID_ARGUMENT"  # Google's API_KEY_INVALID
    with pytest.raises(errors.ClientError) as e:
        gem.models.generate_content(model="mock-gemini:429", contents="x")
    assert e.value.code == 429 and e.value.status == "RESOURCE_EXHAUSTED"
    with pytest.raises(errors.ServerError) as e:
        gem.models.generate_content(model="mock-gemini:503", contents="x")
    assert e.value.code == 503


def test_error_mid_stream(gem: genai.Client) -> None:
    with pytest.raises(errors.APIError):
        for _ in gem.models.generate_content_stream(model="mock-gemini:error-mid-stream", contents="x"):
            pass
