"""The official `google-genai` SDK (pinned 3.6.1; it calls `/v1/models/{model}:generateContent`
and `…:streamGenerateContent?alt=sse` with `x-goog-api-key`) through Gatehouse's Gemini API,
with only its base URL changed, to an OpenAI-format upstream (`demo` → mock/mock-gpt) and an
Anthropic-format upstream (`demo-claude` → mock-anthropic/mock-claude) and a Gemini-format upstream
(provider `py-gemini`, kind gemini, registered on the mock process): plain, streamed, function
calls (streamed and not, with the function response sent back), errors.
"""

from __future__ import annotations

import pytest
from google import genai
from google.genai import errors, types

from conftest import Gateway

UPSTREAMS = {
    "openai-format": ("demo", "mock/mock-gpt:tools"),
    "anthropic-format": ("demo-claude", "mock-anthropic/mock-claude:tools"),
    # the `gemini_upstream` provider (kind gemini → the mock's generateContent): Gemini in and out
    "gemini-format": ("py-gemini/mock-gemini", "py-gemini/mock-gemini:tools"),
}


@pytest.fixture(scope="module", autouse=True)
def _gemini_format_upstream(gemini_upstream: str) -> None:
    assert gemini_upstream == "py-gemini"

LOOKUP = types.FunctionDeclaration(
    name="lookup_order",
    description="Fetch shipping status for an order id.",
    parameters=types.Schema(
        type=types.Type.OBJECT,
        properties={"order_id": types.Schema(type=types.Type.STRING)},
        required=["order_id"],
    ),
)
TOOLS = [types.Tool(function_declarations=[LOOKUP])]


def client(gateway: Gateway, key: str) -> genai.Client:
    return genai.Client(
        api_key=key,
        http_options=types.HttpOptions(
            base_url=gateway.base_url.removesuffix("/v1"),
            retry_options=types.HttpRetryOptions(attempts=1),
        ),
    )


@pytest.fixture(scope="module")
def key(gateway: Gateway) -> str:
    return gateway.create_key("python-genai-inbound")["key"]


@pytest.fixture(scope="module")
def gem(gateway: Gateway, key: str) -> genai.Client:
    return client(gateway, key)


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_generate_content(gem: genai.Client, upstream: str) -> None:
    model, _ = UPSTREAMS[upstream]
    r = gem.models.generate_content(
        model=model,
        contents="hello gemini",
        config=types.GenerateContentConfig(system_instruction="Be brief.", max_output_tokens=100),
    )
    assert r.text == "echo: hello gemini"
    assert r.candidates[0].finish_reason == types.FinishReason.STOP
    assert r.usage_metadata.prompt_token_count > 0
    assert r.usage_metadata.candidates_token_count > 0


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_stream(gem: genai.Client, upstream: str) -> None:
    model, _ = UPSTREAMS[upstream]
    chunks = list(gem.models.generate_content_stream(model=model, contents="stream gemini"))
    assert "".join(c.text or "" for c in chunks) == "echo: stream gemini"
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.total_token_count > 0


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_function_call_and_response(gem: genai.Client, upstream: str) -> None:
    model, tools_model = UPSTREAMS[upstream]
    config = types.GenerateContentConfig(
        tools=TOOLS, automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)
    )
    r = gem.models.generate_content(model=tools_model, contents="where is my order?", config=config)
    call = r.function_calls[0]
    assert call.name == "lookup_order" and isinstance(call.args["order_id"], str)
    follow = gem.models.generate_content(
        model=model,
        contents=[
            types.Content(role="user", parts=[types.Part(text="where is my order?")]),
            r.candidates[0].content,
            types.Content(
                role="user",
                parts=[
                    types.Part(
                        function_response=types.FunctionResponse(
                            id=call.id, name=call.name, response={"output": "in transit"}
                        )
                    )
                ],
            ),
        ],
        config=config,
    )
    assert follow.text == "tool result: in transit"


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_stream_function_call(gem: genai.Client, upstream: str) -> None:
    _, tools_model = UPSTREAMS[upstream]
    config = types.GenerateContentConfig(
        tools=TOOLS, automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)
    )
    calls = [
        fc
        for chunk in gem.models.generate_content_stream(model=tools_model, contents="where?", config=config)
        for fc in (chunk.function_calls or [])
    ]
    assert len(calls) == 1 and calls[0].name == "lookup_order"
    assert isinstance(calls[0].args["order_id"], str)


def test_errors(gateway: Gateway, gem: genai.Client) -> None:
    bad = client(gateway, "gthk_live_not_a_key")  # kept referenced: the SDK closes on collection
    with pytest.raises(errors.ClientError) as e:
        bad.models.generate_content(model="demo", contents="x")
    assert e.value.code == 401
    with pytest.raises(errors.ClientError) as e:
        gem.models.generate_content(model="no-such-model", contents="x")
    assert e.value.code == 404 and e.value.status == "NOT_FOUND"
    with pytest.raises(errors.ClientError) as e:
        gem.models.generate_content(model="mock/mock-gpt:429", contents="x")
    assert e.value.code == 429
    with pytest.raises(errors.ServerError) as e:
        gem.models.generate_content(model="mock/mock-gpt:529", contents="x")
    assert e.value.code == 503


def test_error_mid_stream_raises(gem: genai.Client) -> None:
    with pytest.raises(errors.APIError) as e:
        for _ in gem.models.generate_content_stream(model="mock/mock-gpt:error-mid-stream", contents="x"):
            pass
    assert e.value.code == 502
