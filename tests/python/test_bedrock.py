"""AWS Bedrock Converse: `boto3` (botocore's own SigV4 signer and event-stream parser) straight at
gatehouse-mock, which recomputes every signature with MOCK_KEY as the secret access key; then the
official `openai` SDK through the real Gatehouse binary to a `bedrock` provider (SigV4,
registered through the admin API) on the same mock, streamed and not, with tool calls.
"""

from __future__ import annotations

import json

import boto3
import botocore.exceptions
import openai
import pytest
from botocore.config import Config

from conftest import MOCK_KEY, Gateway, Mock

ACCESS_KEY_ID = "AKIDPYTHONSUITE"

WEATHER_TOOL = {
    "toolSpec": {
        "name": "get_weather",
        "description": "Weather for a city",
        "inputSchema": {"json": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}},
    }
}


def bedrock(mock: Mock, secret: str = MOCK_KEY):
    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=mock.base_url,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=10, read_timeout=30),
    )


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": [{"text": text}]}]


def test_boto3_converse(mock: Mock) -> None:
    r = bedrock(mock).converse(
        modelId="mock-bedrock:cached=8",
        system=[{"text": "Be brief."}],
        messages=user("hello bedrock"),
        inferenceConfig={"maxTokens": 50, "stopSequences": ["END"]},
    )
    assert r["output"]["message"]["content"][0]["text"] == "echo: hello bedrock"
    assert r["stopReason"] == "end_turn"
    assert r["usage"]["cacheReadInputTokens"] == 8
    assert r["usage"]["inputTokens"] > 0 and r["usage"]["outputTokens"] > 0


def test_boto3_converse_stream_parallel_tools(mock: Mock) -> None:
    r = bedrock(mock).converse_stream(
        modelId="mock-bedrock:parallel-tools", messages=user("weather?"), toolConfig={"tools": [WEATHER_TOOL]}
    )
    events = list(r["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "messageStart" and kinds[-2:] == ["messageStop", "metadata"], kinds
    starts = [e["contentBlockStart"]["start"]["toolUse"] for e in events if "contentBlockStart" in e]
    assert [s["name"] for s in starts] == ["get_weather", "get_weather"]
    assert len({s["toolUseId"] for s in starts}) == 2
    pieces: dict[int, str] = {}
    for e in events:
        d = e.get("contentBlockDelta")
        if d and "toolUse" in d["delta"]:
            pieces[d["contentBlockIndex"]] = pieces.get(d["contentBlockIndex"], "") + d["delta"]["toolUse"]["input"]
    assert len(pieces) == 2 and all(json.loads(p)["location"] for p in pieces.values())
    assert events[-2]["messageStop"]["stopReason"] == "tool_use"
    assert events[-1]["metadata"]["usage"]["outputTokens"] > 0


def test_boto3_stream_multibyte_split(mock: Mock) -> None:
    r = bedrock(mock).converse_stream(modelId="mock-bedrock:utf8-split,chunks=3", messages=user("split"))
    text = "".join(e["contentBlockDelta"]["delta"].get("text", "") for e in r["stream"] if "contentBlockDelta" in e)
    assert text.startswith("echo: split") and text.endswith("🦀")


def test_boto3_exception_mid_stream(mock: Mock) -> None:
    r = bedrock(mock).converse_stream(modelId="mock-bedrock:chunks=6,error-mid-stream", messages=user("x"))
    with pytest.raises(botocore.exceptions.EventStreamError) as e:
        list(r["stream"])
    assert e.value.response["Error"]["Code"] == "modelStreamErrorException"


def test_boto3_errors(mock: Mock) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bedrock(mock).converse(modelId="mock-bedrock:429", messages=user("x"))
    assert e.value.response["Error"]["Code"] == "ThrottlingException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bedrock(mock, secret="not-the-secret").converse(modelId="mock-bedrock", messages=user("x"))
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"


@pytest.fixture(scope="module")
def via_gateway(gateway: Gateway, mock: Mock) -> openai.OpenAI:
    creds = {"secret_access_key": MOCK_KEY, "region": "us-east-1", "access_key_id": ACCESS_KEY_ID}
    gateway.admin("POST", "/admin/v1/providers", {"name": "py-bedrock", "kind": "bedrock", "base_url": mock.base_url, "api_key": json.dumps(creds)})
    key = gateway.create_key("python-bedrock")["key"]
    return openai.OpenAI(api_key=key, base_url=gateway.base_url, max_retries=0, timeout=30)


def test_openai_sdk_through_gatehouse_to_bedrock(via_gateway: openai.OpenAI) -> None:
    r = via_gateway.chat.completions.create(model="py-bedrock/mock-bedrock", messages=[{"role": "user", "content": "hello bedrock"}])
    assert r.choices[0].message.content == "echo: hello bedrock"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 0

    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}]
    stream = via_gateway.chat.completions.create(
        model="py-bedrock/mock-bedrock:tools", messages=[{"role": "user", "content": "weather?"}], tools=tools, stream=True,
        stream_options={"include_usage": True},
    )
    calls: dict[int, dict] = {}
    finish = None
    usage = None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            for tc in ch.delta.tool_calls or []:
                c = calls.setdefault(tc.index, {"id": "", "name": "", "args": ""})
                c["id"] += tc.id or ""
                c["name"] += (tc.function.name or "") if tc.function else ""
                c["args"] += (tc.function.arguments or "") if tc.function else ""
            finish = ch.finish_reason or finish
    assert finish == "tool_calls"
    assert calls[0]["name"] == "get_weather" and calls[0]["id"].startswith("tooluse_")
    assert json.loads(calls[0]["args"])["location"]
    assert usage is not None and usage.completion_tokens > 0
