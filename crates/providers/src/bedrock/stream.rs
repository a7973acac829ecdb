//! ConverseStream events (decoded from the binary event stream by [`crate::eventstream`]) →
//! OpenAI `chat.completion.chunk`s (`wire-formats.md` §6, §7.4).
//!
//! | Bedrock event | OpenAI chunk |
//! |---|---|
//! | `messageStart {role}` | `delta: {role: assistant, content: ""}` |
//! | `contentBlockStart {contentBlockIndex, start.toolUse {toolUseId, name}}` | `delta.tool_calls[{index, id, type, function {name, arguments: ""}}]` |
//! | `contentBlockDelta {delta.text}` | `delta.content` |
//! | `contentBlockDelta {delta.toolUse.input}` (JSON fragments) | `delta.tool_calls[{index, function.arguments}]` |
//! | `contentBlockDelta {delta.reasoningContent.text}` | `delta.reasoning_content` (signatures and redacted reasoning are dropped) |
//! | `contentBlockStop` | — |
//! | `messageStop {stopReason}` | `finish_reason` chunk |
//! | `metadata {usage}` | usage (and the usage-only chunk when asked); the terminator |
//! | `exception/*`, `error/*` frames | [`UpstreamError::MidStream`] |
//!
//! Unknown event types are ignored. Bedrock reports usage only in the final `metadata` event, so
//! an interrupted stream has no partial usage.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::common::ChunkWriter;
use crate::eventstream::{ERROR_PREFIX, EXCEPTION_PREFIX};
use crate::sse::SseEvent;
use crate::stream::{Out, StreamMapper};
use crate::{StreamEvent, UpstreamError};

/// The ConverseStream → OpenAI chunk mapper of one response.
pub(crate) struct BedrockStream {
    w: ChunkWriter,
    started: bool,
    /// Bedrock `contentBlockIndex` → OpenAI tool-call index.
    tool_index: HashMap<u64, u64>,
    tools: u64,
    finish: Option<&'static str>,
}

impl BedrockStream {
    pub(crate) fn new(upstream_model: &str, include_usage: bool) -> Self {
        Self {
            w: ChunkWriter { id: super::new_completion_id(), created: crate::anthropic::unix_now(), model: upstream_model.to_owned(), include_usage },
            started: false,
            tool_index: HashMap::new(),
            tools: 0,
            finish: None,
        }
    }

    fn emit(&self, out: &mut Out, delta: Value, finish: Option<&str>) {
        out.push_back(Ok(StreamEvent { data: Some(self.w.delta(0, delta, finish)), usage: None }));
    }

    fn start(&mut self, out: &mut Out) {
        if !self.started {
            self.started = true;
            self.emit(out, json!({"role": "assistant", "content": ""}), None);
        }
    }

    /// The OpenAI index of the tool call in Bedrock block `block`, opening one if a delta came
    /// without its `contentBlockStart` (tolerated; id and name are then unknown).
    fn tool_for(&mut self, block: u64) -> (u64, bool) {
        if let Some(i) = self.tool_index.get(&block) {
            return (*i, false);
        }
        let i = self.tools;
        self.tools += 1;
        self.tool_index.insert(block, i);
        (i, true)
    }
}

fn protocol(out: &mut Out, what: &str) -> bool {
    out.push_back(Err(UpstreamError::Protocol(format!("converse stream: {what}"))));
    true
}

impl StreamMapper for BedrockStream {
    fn on_event(&mut self, event: SseEvent, out: &mut Out) -> bool {
        if let Some(kind) = event.event.strip_prefix(EXCEPTION_PREFIX) {
            out.push_back(Err(super::stream_exception(kind, &event.data)));
            return true;
        }
        if let Some(code) = event.event.strip_prefix(ERROR_PREFIX) {
            let message = if event.data.is_empty() { format!("the upstream provider reported {code} mid-stream") } else { event.data.chars().take(2000).collect() };
            out.push_back(Err(UpstreamError::MidStream { provider_code: Some(code.to_owned()), message }));
            return true;
        }
        let v: Value = match serde_json::from_str(&event.data) {
            Ok(v @ Value::Object(_)) => v,
            _ => return protocol(out, "event payload is not a JSON object"),
        };
        let block = || v.get("contentBlockIndex").and_then(Value::as_u64).unwrap_or(0);
        match event.event.as_str() {
            "messageStart" => self.start(out),
            "contentBlockStart" => {
                self.start(out);
                if let Some(tu) = v.pointer("/start/toolUse") {
                    let (index, _) = self.tool_for(block());
                    let call = json!({"index": index, "id": tu.get("toolUseId").and_then(Value::as_str).unwrap_or_default(), "type": "function",
                        "function": {"name": tu.get("name").and_then(Value::as_str).unwrap_or_default(), "arguments": ""}});
                    self.emit(out, json!({"tool_calls": [call]}), None);
                }
            }
            "contentBlockDelta" => {
                self.start(out);
                let Some(delta) = v.get("delta") else { return protocol(out, "contentBlockDelta without delta") };
                if let Some(t) = delta.get("text").and_then(Value::as_str) {
                    if !t.is_empty() {
                        self.emit(out, json!({"content": t}), None);
                    }
                } else if let Some(input) = delta.pointer("/toolUse/input").and_then(Value::as_str) {
                    let (index, fresh) = self.tool_for(block());
                    let call = if fresh {
                        json!({"index": index, "id": "", "type": "function", "function": {"name": "", "arguments": input}})
                    } else {
                        json!({"index": index, "function": {"arguments": input}})
                    };
                    self.emit(out, json!({"tool_calls": [call]}), None);
                } else if let Some(t) = delta.pointer("/reasoningContent/text").and_then(Value::as_str)
                    && !t.is_empty()
                {
                    self.emit(out, json!({"reasoning_content": t}), None);
                }
            }
            "messageStop" => {
                self.start(out);
                let reason = super::finish_reason(v.get("stopReason").and_then(Value::as_str), self.tools > 0);
                self.finish = Some(reason);
                self.emit(out, json!({}), Some(reason));
            }
            "metadata" => {
                if self.finish.is_none() {
                    return protocol(out, "metadata before messageStop");
                }
                let usage = super::usage_of(v.get("usage"));
                let data = self.w.include_usage.then(|| self.w.usage(&usage));
                out.push_back(Ok(StreamEvent { data, usage: Some(usage) }));
                return true;
            }
            _ => {} // contentBlockStop and future event types
        }
        false
    }
}
