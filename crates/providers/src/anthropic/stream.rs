//! Anthropic Messages SSE → OpenAI `chat.completion.chunk`s (`wire-formats.md` §7.4): the
//! chunk shapes written, the event shapes read, and the [`AnthropicStream`] mapper.

use super::*;

#[derive(Serialize)]
struct Chunk<'a, D: Serialize> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    choices: &'a [Choice<D>],
    /// Absent without `include_usage`; `null` on ordinary chunks and the object on the final
    /// usage chunk with it (§1.5).
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<WireUsage>>,
}

#[derive(Serialize)]
struct Choice<D: Serialize> {
    index: u32,
    delta: D,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDelta<'a>; 1]>,
    /// One complete `thinking` / `redacted_thinking` block, sent when it ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking_blocks: Option<[Value; 1]>,
}

#[derive(Serialize)]
struct ToolCallDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[derive(Deserialize)]
pub(super) struct TypePeek<'a> {
    #[serde(rename = "type", borrow)]
    pub(super) kind: Cow<'a, str>,
}

#[derive(Deserialize)]
struct MessageStart {
    message: MessageHead,
}

/// The parts of `message_start.message` the stream needs.
#[derive(Deserialize)]
struct MessageHead {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct BlockStart<'a> {
    index: u32,
    #[serde(borrow)]
    content_block: BlockHead<'a>,
}

#[derive(Deserialize)]
struct BlockHead<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    thinking: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    signature: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    data: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct BlockStop {
    index: u32,
}

/// A `thinking` or `redacted_thinking` block being streamed.
struct OpenThinking {
    index: u32,
    redacted: bool,
    /// The reasoning text (`thinking`) or the encrypted data (`redacted_thinking`).
    text: String,
    signature: String,
}

#[derive(Deserialize)]
struct BlockDelta<'a> {
    index: u32,
    #[serde(borrow)]
    delta: DeltaIn<'a>,
}

#[derive(Deserialize)]
struct DeltaIn<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    thinking: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    signature: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct MessageDelta {
    #[serde(default)]
    delta: Option<StopDelta>,
    #[serde(default)]
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct StopDelta {
    #[serde(default)]
    stop_reason: Option<String>,
}

/// Anthropic Messages SSE → OpenAI `chat.completion.chunk`s (§7.4).
pub(crate) struct AnthropicStream {
    include_usage: bool,
    id: String,
    model: String,
    created: i64,
    started: bool,
    /// Anthropic block index → OpenAI tool-call index, for `tool_use` blocks.
    tool_index: Vec<(u32, u32)>,
    tools_seen: u32,
    finish_sent: bool,
    usage: UsageAcc,
    buf: Vec<u8>,
    /// The thinking block being streamed (its text goes out as `reasoning_content` deltas, the
    /// whole block with its signature as `thinking_blocks` when it stops).
    thinking: Option<OpenThinking>,
    /// Where the answer's thinking blocks are remembered by its first tool call id
    /// ([`super::remember_thinking`]); `None`: not remembered.
    cache: Option<crate::gemini::SignatureCache>,
    /// The completed thinking blocks and the first tool call id, for `cache`.
    done_thinking: Vec<Value>,
    first_tool_id: Option<String>,
}

impl AnthropicStream {
    pub(crate) fn new(upstream_model: &str, include_usage: bool) -> Self {
        Self {
            include_usage,
            id: completion_id(""),
            model: upstream_model.to_string(),
            created: unix_now(),
            started: false,
            tool_index: Vec::new(),
            tools_seen: 0,
            finish_sent: false,
            usage: UsageAcc::default(),
            buf: Vec::with_capacity(256),
            thinking: None,
            cache: None,
            done_thinking: Vec::new(),
            first_tool_id: None,
        }
    }

    /// Remembers the answer's thinking blocks in `cache` when the stream completes
    /// ([`super::remember_thinking`]).
    pub(crate) fn remembering(mut self, cache: crate::gemini::SignatureCache) -> Self {
        self.cache = Some(cache);
        self
    }

    fn chunk(&mut self, delta: Delta<'_>, finish_reason: Option<&'static str>) -> Bytes {
        let choices = [Choice { index: 0, delta, logprobs: None, finish_reason }];
        let chunk = Chunk {
            id: &self.id,
            object: CHAT_COMPLETION_CHUNK,
            created: self.created,
            model: &self.model,
            choices: &choices,
            usage: self.include_usage.then_some(None),
        };
        self.buf.clear();
        // Serialising plain structs of strings and integers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.buf, &chunk);
        Bytes::copy_from_slice(&self.buf)
    }

    fn usage_chunk(&mut self) -> Bytes {
        let chunk: Chunk<'_, Delta<'_>> = Chunk {
            id: &self.id,
            object: CHAT_COMPLETION_CHUNK,
            created: self.created,
            model: &self.model,
            choices: &[],
            usage: Some(Some(WireUsage::from_usage(&self.usage.usage()))),
        };
        self.buf.clear();
        let _ = serde_json::to_writer(&mut self.buf, &chunk);
        Bytes::copy_from_slice(&self.buf)
    }

    fn emit(&mut self, out: &mut Out, data: Bytes, usage: Option<Usage>) {
        out.push_back(Ok(StreamEvent { data: Some(data), usage }));
    }

    fn ensure_started(&mut self, out: &mut Out) {
        if !self.started {
            self.started = true;
            let first = self.chunk(Delta { role: Some("assistant"), content: Some(""), ..Delta::default() }, None);
            let usage = Some(self.usage.usage());
            self.emit(out, first, usage);
        }
    }

    fn protocol(out: &mut Out, what: &str, e: serde_json::Error) -> bool {
        out.push_back(Err(UpstreamError::Protocol(format!("malformed {what} event: {e}"))));
        true
    }
}

impl StreamMapper for AnthropicStream {
    fn on_event(&mut self, event: SseEvent, out: &mut Out) -> bool {
        let data = event.data.as_str();
        let kind: Cow<'_, str> = if event.event.is_empty() {
            match serde_json::from_str::<TypePeek<'_>>(data) {
                Ok(p) => p.kind,
                Err(_) => return false, // untyped noise
            }
        } else {
            Cow::Borrowed(event.event.as_str())
        };
        match kind.as_ref() {
            "message_start" => {
                let start: MessageStart = match serde_json::from_str(data) {
                    Ok(s) => s,
                    Err(e) => return Self::protocol(out, "message_start", e),
                };
                if !self.started {
                    if !start.message.id.is_empty() {
                        self.id = completion_id(&start.message.id);
                    }
                    if let Some(m) = start.message.model.filter(|m| !m.is_empty()) {
                        self.model = m;
                    }
                }
                if let Some(u) = &start.message.usage {
                    self.usage.apply(u);
                }
                self.ensure_started(out);
            }
            "content_block_start" => {
                let start: BlockStart<'_> = match serde_json::from_str(data) {
                    Ok(s) => s,
                    Err(e) => return Self::protocol(out, "content_block_start", e),
                };
                self.ensure_started(out);
                if matches!(start.content_block.kind.as_ref(), "thinking" | "redacted_thinking") {
                    let head = &start.content_block;
                    let redacted = head.kind == "redacted_thinking";
                    let text = if redacted { head.data.as_deref() } else { head.thinking.as_deref() }.unwrap_or_default().to_string();
                    if !redacted && !text.is_empty() {
                        let bytes = self.chunk(Delta { reasoning_content: Some(&text), ..Delta::default() }, None);
                        self.emit(out, bytes, None);
                    }
                    let signature = head.signature.as_deref().unwrap_or_default().to_string();
                    self.thinking = Some(OpenThinking { index: start.index, redacted, text, signature });
                } else if start.content_block.kind == "tool_use" {
                    let tc = self.tools_seen;
                    self.tools_seen = self.tools_seen.saturating_add(1);
                    self.tool_index.push((start.index, tc));
                    let head = &start.content_block;
                    if self.first_tool_id.is_none() {
                        self.first_tool_id = head.id.as_deref().map(str::to_owned);
                    }
                    let delta = Delta {
                        tool_calls: Some([ToolCallDelta {
                            index: tc,
                            id: Some(head.id.as_deref().unwrap_or_default()),
                            kind: Some("function"),
                            function: FunctionDelta { name: Some(head.name.as_deref().unwrap_or_default()), arguments: "" },
                        }]),
                        ..Delta::default()
                    };
                    let bytes = self.chunk(delta, None);
                    self.emit(out, bytes, None);
                }
            }
            "content_block_delta" => {
                let d: BlockDelta<'_> = match serde_json::from_str(data) {
                    Ok(d) => d,
                    Err(e) => return Self::protocol(out, "content_block_delta", e),
                };
                self.ensure_started(out);
                match d.delta.kind.as_ref() {
                    "text_delta" => {
                        if let Some(text) = d.delta.text.as_deref().filter(|t| !t.is_empty()) {
                            let bytes = self.chunk(Delta { content: Some(text), ..Delta::default() }, None);
                            self.emit(out, bytes, None);
                        }
                    }
                    "input_json_delta" => {
                        let Some(frag) = d.delta.partial_json.as_deref().filter(|f| !f.is_empty()) else { return false };
                        let Some(&(_, tc)) = self.tool_index.iter().rev().find(|(b, _)| *b == d.index) else {
                            out.push_back(Err(UpstreamError::Protocol("input_json_delta for a block that is not a tool_use".into())));
                            return true;
                        };
                        let delta = Delta {
                            tool_calls: Some([ToolCallDelta {
                                index: tc,
                                id: None,
                                kind: None,
                                function: FunctionDelta { name: None, arguments: frag },
                            }]),
                            ..Delta::default()
                        };
                        let bytes = self.chunk(delta, None);
                        self.emit(out, bytes, None);
                    }
                    "thinking_delta" => {
                        let Some(t) = d.delta.thinking.as_deref().filter(|t| !t.is_empty()) else { return false };
                        if let Some(open) = self.thinking.as_mut().filter(|o| o.index == d.index) {
                            open.text.push_str(t);
                        }
                        let bytes = self.chunk(Delta { reasoning_content: Some(t), ..Delta::default() }, None);
                        self.emit(out, bytes, None);
                    }
                    "signature_delta" => {
                        if let (Some(open), Some(sig)) = (self.thinking.as_mut().filter(|o| o.index == d.index), d.delta.signature.as_deref()) {
                            open.signature.push_str(sig);
                        }
                    }
                    _ => {} // citations_delta, future types
                }
            }
            "content_block_stop" => {
                let Ok(stop) = serde_json::from_str::<BlockStop>(data) else { return false };
                if let Some(open) = self.thinking.take_if(|o| o.index == stop.index) {
                    let block = if open.redacted {
                        json!({"type":"redacted_thinking","data":open.text})
                    } else {
                        json!({"type":"thinking","thinking":open.text,"signature":open.signature})
                    };
                    if self.cache.is_some() {
                        self.done_thinking.push(block.clone());
                    }
                    let bytes = self.chunk(Delta { thinking_blocks: Some([block]), ..Delta::default() }, None);
                    self.emit(out, bytes, None);
                }
            }
            "message_delta" => {
                let d: MessageDelta = match serde_json::from_str(data) {
                    Ok(d) => d,
                    Err(e) => return Self::protocol(out, "message_delta", e),
                };
                self.ensure_started(out);
                if let Some(u) = &d.usage {
                    self.usage.apply(u);
                }
                let stop = d.delta.and_then(|s| s.stop_reason);
                if let Some(stop) = stop.as_deref()
                    && !self.finish_sent
                {
                    self.finish_sent = true;
                    let reason = finish_reason(Some(stop), self.tools_seen > 0);
                    let bytes = self.chunk(Delta::default(), Some(reason));
                    let usage = Some(self.usage.usage());
                    self.emit(out, bytes, usage);
                }
            }
            "message_stop" => {
                self.ensure_started(out);
                if let Some(cache) = &self.cache {
                    super::remember_thinking(&self.done_thinking, self.first_tool_id.as_deref(), cache);
                }
                if !self.finish_sent {
                    self.finish_sent = true;
                    let reason = finish_reason(None, self.tools_seen > 0);
                    let bytes = self.chunk(Delta::default(), Some(reason));
                    self.emit(out, bytes, None);
                }
                let usage = Some(self.usage.usage());
                let data = if self.include_usage { Some(self.usage_chunk()) } else { None };
                out.push_back(Ok(StreamEvent { data, usage }));
                return true;
            }
            "error" => {
                out.push_back(Err(UpstreamError::mid_stream(data.as_bytes())));
                return true;
            }
            _ => {} // ping, unknown future events
        }
        false
    }
}
