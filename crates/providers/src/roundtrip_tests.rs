//! Round-trip property tests (issue 4, "Tests"): an OpenAI request or answer sent through a
//! provider's format and back keeps its text, its tool calls (ids, names, arguments) and its
//! finish reason — for Anthropic, Gemini, Ollama and every OpenAI-compatible kind, streamed
//! (Anthropic, Gemini) and not. The "provider side" is produced by the inbound translators
//! (OpenAI → Anthropic/Gemini) and read by the outbound adapters (Anthropic/Gemini → OpenAI),
//! so both directions of both are exercised; the decoders are fed arbitrary bytes too.
//!
//! What a format cannot carry is excluded from its property and named here: Ollama has no
//! tool-call ids (they are synthesised) and no content-filter finish; Mistral rewrites ids to
//! its 9-character form on the request side (checked to be consistent instead).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::ProviderKind;
use crate::inbound;
use crate::sse::SseDecoder;
use crate::stream::{Out, StreamMapper};

#[derive(Debug, Clone, PartialEq)]
struct Call {
    id: String,
    name: String,
    args: Value,
}

/// One assistant answer as a client sees it.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    text: String,
    calls: Vec<Call>,
    finish: String,
}

fn arg_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i32>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        prop::collection::vec("[a-z]{0,5}", 0..3).prop_map(|v| json!(v)),
    ]
}

fn call() -> impl Strategy<Value = Call> {
    ("call_[A-Za-z0-9]{4,20}", "[a-z][a-z0-9_]{0,15}", prop::collection::btree_map("[a-z][a-z_]{0,8}", arg_value(), 0..4))
        .prop_map(|(id, name, m)| Call { id, name, args: Value::Object(m.into_iter().collect()) })
}

/// Answers whose finish reason is consistent with their content (tool calls → `tool_calls`).
fn answer(finishes: &'static [&'static str]) -> impl Strategy<Value = Answer> {
    ("\\PC{0,40}", prop::collection::vec(call(), 0..3), prop::sample::select(finishes)).prop_map(|(text, mut calls, finish)| {
        for (i, c) in calls.iter_mut().enumerate() {
            c.id.push_str(&format!("x{i}"));
        }
        let text = if text.is_empty() && calls.is_empty() { "ok".to_string() } else { text };
        let finish = if calls.is_empty() { finish.to_string() } else { "tool_calls".to_string() };
        Answer { text, calls, finish }
    })
}

const FINISHES: &[&str] = &["stop", "length", "content_filter"];

fn openai_message(a: &Answer) -> Value {
    let mut msg = json!({"role": "assistant", "content": if a.text.is_empty() && !a.calls.is_empty() { Value::Null } else { Value::from(a.text.as_str()) }});
    if !a.calls.is_empty() {
        msg["tool_calls"] = a
            .calls
            .iter()
            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.args.to_string()}}))
            .collect();
    }
    msg
}

fn openai_response(a: &Answer) -> Value {
    json!({"id": "chatcmpl-rt", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": openai_message(a), "finish_reason": a.finish}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}})
}

fn read_calls(calls: Option<&Value>) -> Vec<Call> {
    calls
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .map(|c| Call {
                    id: c["id"].as_str().unwrap_or_default().to_string(),
                    name: c["function"]["name"].as_str().unwrap_or_default().to_string(),
                    args: serde_json::from_str(c["function"]["arguments"].as_str().unwrap_or("null")).unwrap_or(Value::Null),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn read_answer(body: &Value) -> Answer {
    let choice = &body["choices"][0];
    let msg = &choice["message"];
    Answer {
        text: msg["content"].as_str().unwrap_or_default().to_string(),
        calls: read_calls(msg.get("tool_calls")),
        finish: choice["finish_reason"].as_str().unwrap_or_default().to_string(),
    }
}

/// OpenAI chunks for an answer: text in pieces, each call's arguments in fragments, the finish
/// chunk and the usage chunk (as OpenAI streams them).
fn openai_chunks(a: &Answer, pieces: usize) -> Vec<Value> {
    let mk = |delta: Value, finish: Option<&str>| json!({"id": "chatcmpl-rt", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    let mut out = vec![mk(json!({"role": "assistant", "content": ""}), None)];
    let chars: Vec<char> = a.text.chars().collect();
    for piece in chars.chunks(chars.len().div_ceil(pieces.max(1)).max(1)) {
        out.push(mk(json!({"content": piece.iter().collect::<String>()}), None));
    }
    for (i, c) in a.calls.iter().enumerate() {
        out.push(mk(json!({"tool_calls": [{"index": i, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": ""}}]}), None));
        let args: Vec<char> = c.args.to_string().chars().collect();
        for frag in args.chunks(args.len().div_ceil(pieces.max(1)).max(1)) {
            out.push(mk(json!({"tool_calls": [{"index": i, "function": {"arguments": frag.iter().collect::<String>()}}]}), None));
        }
    }
    out.push(mk(json!({}), Some(&a.finish)));
    out.push(json!({"id": "chatcmpl-rt", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}}));
    out
}

/// Folds OpenAI chunks (as the gateway sends them) into the answer a client would assemble.
fn fold_chunks(chunks: &[Value]) -> Answer {
    let mut text = String::new();
    let mut calls: Vec<(u64, Call, String)> = Vec::new();
    let mut finish = String::new();
    for c in chunks {
        let Some(choice) = c.pointer("/choices/0") else { continue };
        let d = &choice["delta"];
        text.push_str(d["content"].as_str().unwrap_or_default());
        for tc in d["tool_calls"].as_array().into_iter().flatten() {
            let idx = tc["index"].as_u64().unwrap();
            if !calls.iter().any(|(i, ..)| *i == idx) {
                calls.push((idx, Call { id: String::new(), name: String::new(), args: Value::Null }, String::new()));
            }
            let (_, call, args) = calls.iter_mut().find(|(i, ..)| *i == idx).unwrap();
            if let Some(id) = tc["id"].as_str() {
                call.id = id.to_string();
            }
            if let Some(n) = tc["function"]["name"].as_str() {
                call.name = n.to_string();
            }
            args.push_str(tc["function"]["arguments"].as_str().unwrap_or_default());
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            finish = f.to_string();
        }
    }
    calls.sort_by_key(|(i, ..)| *i);
    let calls = calls.into_iter().map(|(_, mut c, a)| {
        c.args = serde_json::from_str(&a).unwrap_or(Value::Null);
        c
    });
    Answer { text, calls: calls.collect(), finish }
}

/// Feeds `wire` through the SSE decoder (in `cut`-byte pieces) and `mapper`; returns the OpenAI
/// chunks it produced and whether the stream completed cleanly.
fn drive<M: StreamMapper>(wire: &str, cut: usize, raw_json: bool, mut mapper: M) -> (Vec<Value>, bool) {
    let mut dec = if raw_json { SseDecoder::new().with_raw_json() } else { SseDecoder::new() };
    let mut out = Out::new();
    let mut done = false;
    'feed: for piece in wire.as_bytes().chunks(cut.max(1)) {
        dec.push(piece).unwrap();
        while let Some(ev) = dec.next_event() {
            if mapper.on_event(ev, &mut out) {
                done = true;
                break 'feed;
            }
        }
    }
    if !done {
        dec.finish();
        while let Some(ev) = dec.next_event() {
            if mapper.on_event(ev, &mut out) {
                done = true;
                break;
            }
        }
    }
    let ok = out.iter().all(Result::is_ok);
    let chunks = out.into_iter().filter_map(|e| e.ok().and_then(|e| e.data)).map(|d| serde_json::from_slice(&d).unwrap()).collect();
    (chunks, done && ok)
}

/// An OpenAI request holding a previous turn with `prior`'s text and calls, their results, and
/// a final user message.
fn openai_request(prior: &Answer, user: &str) -> Map<String, Value> {
    let mut messages = vec![json!({"role": "user", "content": user}), openai_message(prior)];
    for c in &prior.calls {
        messages.push(json!({"role": "tool", "tool_call_id": c.id, "content": format!("result of {}", c.name)}));
    }
    messages.push(json!({"role": "user", "content": "and now?"}));
    let Value::Object(m) = json!({"model": "m", "max_tokens": 100, "messages": messages}) else { unreachable!() };
    m
}

/// The prior assistant turn and tool results as read back from a translated request.
fn read_history(req: &Map<String, Value>) -> (Answer, Vec<String>) {
    let messages = req["messages"].as_array().unwrap();
    let assistant = messages.iter().find(|m| m["role"] == "assistant").unwrap();
    let prior = Answer {
        text: match &assistant["content"] {
            Value::String(s) => s.clone(),
            _ => String::new(),
        },
        calls: read_calls(assistant.get("tool_calls")),
        finish: String::new(),
    };
    let results = messages.iter().filter(|m| m["role"] == "tool").map(|m| m["tool_call_id"].as_str().unwrap_or_default().to_string()).collect();
    (prior, results)
}

fn without_finish(mut a: Answer) -> Answer {
    a.finish = String::new();
    a
}

const COMPAT: [ProviderKind; 11] = [
    ProviderKind::OpenAi,
    ProviderKind::Azure,
    ProviderKind::Mistral,
    ProviderKind::DeepSeek,
    ProviderKind::Groq,
    ProviderKind::Vllm,
    ProviderKind::OpenRouter,
    ProviderKind::Together,
    ProviderKind::Fireworks,
    ProviderKind::Xai,
    ProviderKind::Generic,
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    /// Anthropic answer → OpenAI answer, whole and streamed in any pieces.
    #[test]
    fn anthropic_answers_round_trip(a in answer(FINISHES), pieces in 1usize..6, cut in 1usize..64) {
        let msg = inbound::anthropic::from_openai_response(&openai_response(&a), "m", false).unwrap();
        let (body, _) = crate::anthropic::parse_response(msg.to_string().as_bytes(), "m").unwrap();
        prop_assert_eq!(read_answer(&body), a.clone());

        let mut t = inbound::anthropic::StreamTranslator::new("m", false);
        let mut wire = String::new();
        for c in openai_chunks(&a, pieces) {
            for ev in t.on_chunk(&c).unwrap() {
                wire.push_str(&format!("event: {}\ndata: {ev}\n\n", ev["type"].as_str().unwrap()));
            }
        }
        for ev in t.finish() {
            wire.push_str(&format!("event: {}\ndata: {ev}\n\n", ev["type"].as_str().unwrap()));
        }
        let (chunks, done) = drive(&wire, cut, false, crate::anthropic::AnthropicStream::new("m", true));
        prop_assert!(done);
        prop_assert_eq!(fold_chunks(&chunks), a);
    }

    /// Gemini answer → OpenAI answer, whole and streamed (SSE, CRLF-framed as Google sends).
    #[test]
    fn gemini_answers_round_trip(a in answer(FINISHES), pieces in 1usize..6, cut in 1usize..64) {
        let sigs = crate::gemini::SignatureCache::default();
        let g = inbound::gemini::from_openai_response(&openai_response(&a), "m", false).unwrap();
        let (body, _) = crate::gemini::parse_response(g.to_string().as_bytes(), "m", &sigs).unwrap();
        prop_assert_eq!(read_answer(&body), a.clone());

        let mut t = inbound::gemini::StreamTranslator::new("m", false);
        let mut wire = String::new();
        for c in openai_chunks(&a, pieces) {
            for ev in t.on_chunk(&c) {
                wire.push_str(&format!("data: {ev}\r\n\r\n"));
            }
        }
        for ev in t.finish().unwrap() {
            wire.push_str(&format!("data: {ev}\r\n\r\n"));
        }
        let (chunks, done) = drive(&wire, cut, true, crate::gemini::GeminiStream::new("m", true, 1, sigs));
        prop_assert!(done);
        prop_assert_eq!(fold_chunks(&chunks), a);
    }

    /// Ollama `/api/chat` answer → OpenAI answer: text, call names and arguments, finish
    /// (`stop`/`length`; ids are synthesised, Ollama has none).
    #[test]
    fn ollama_answers_round_trip(a in answer(&["stop", "length"])) {
        let calls: Vec<Value> = a.calls.iter().map(|c| json!({"function": {"name": c.name, "arguments": c.args}})).collect();
        let done_reason = if a.finish == "length" { "length" } else { "stop" };
        let native = json!({"model": "m", "created_at": "2026-01-01T00:00:00Z", "message": {"role": "assistant", "content": a.text, "tool_calls": calls},
            "done": true, "done_reason": done_reason, "prompt_eval_count": 3, "eval_count": 5});
        let (body, _) = crate::ollama::parse_response(native.to_string().as_bytes(), "m").unwrap();
        let got = read_answer(&body);
        prop_assert_eq!(&got.text, &a.text);
        prop_assert_eq!(&got.finish, &a.finish);
        let strip = |l: &[Call]| l.iter().map(|c| (c.name.clone(), c.args.clone())).collect::<Vec<_>>();
        prop_assert_eq!(strip(&got.calls), strip(&a.calls));
        prop_assert!(got.calls.iter().all(|c| !c.id.is_empty()));
    }

    /// OpenAI-compatible kinds: the answer passes through their response mapping unchanged.
    #[test]
    fn compat_answers_round_trip(a in answer(FINISHES)) {
        for kind in COMPAT {
            let (body, _) = crate::compat::parse_response(kind, openai_response(&a).to_string().as_bytes()).unwrap();
            prop_assert_eq!(read_answer(&body), a.clone(), "{:?}", kind);
        }
    }

    /// OpenAI request → Anthropic / Gemini request → (the inbound translators) → OpenAI request:
    /// the previous turn's text, tool calls (ids, names, arguments) and the tool results' ids
    /// survive.
    #[test]
    fn requests_round_trip(prior in answer(&["stop"]), user in "\\PC{1,30}") {
        let req = openai_request(&prior, &user);
        let want = (without_finish(prior.clone()), prior.calls.iter().map(|c| c.id.clone()).collect::<Vec<_>>());

        let anthropic = crate::anthropic::build_request(&req, "claude", false).unwrap();
        let back = inbound::anthropic::parse_request(&anthropic).unwrap();
        prop_assert_eq!(read_history(&back.body), want.clone());

        let sigs = crate::gemini::SignatureCache::default();
        let gemini = crate::gemini::build_request(&req, "gemini", &sigs).unwrap();
        let back = inbound::gemini::parse_request("gemini", false, &gemini).unwrap();
        prop_assert_eq!(read_history(&back.body), want.clone());

        // Compat kinds send the request as it is (Mistral: ids mapped consistently).
        for kind in COMPAT {
            let body: Map<String, Value> = serde_json::from_slice(&crate::compat::chat_body(kind, req.clone(), "m", false).unwrap()).unwrap();
            let (got, results) = read_history(&body);
            prop_assert_eq!(&got.text, &prior.text);
            prop_assert_eq!(got.calls.len(), prior.calls.len());
            for (g, p) in got.calls.iter().zip(&prior.calls) {
                prop_assert_eq!((&g.name, &g.args), (&p.name, &p.args));
            }
            let ids: Vec<String> = got.calls.iter().map(|c| c.id.clone()).collect();
            prop_assert_eq!(&results, &ids, "{:?}", kind);
            if kind != ProviderKind::Mistral {
                prop_assert_eq!(ids, want.1.clone());
            }
        }
    }

    /// The decoders never panic on arbitrary bytes, however they are cut.
    #[test]
    fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), cut in 1usize..40) {
        let mut sse = SseDecoder::new();
        let mut raw = SseDecoder::new().with_raw_json();
        let mut nd = crate::ndjson::NdjsonDecoder::new();
        for piece in bytes.chunks(cut) {
            let _ = sse.push(piece);
            let _ = raw.push(piece);
            let _ = nd.push(piece);
            while sse.next_event().is_some() {}
            while raw.next_event().is_some() {}
            while nd.next_line().is_some() {}
        }
        sse.finish();
        raw.finish();
        nd.finish();
        while sse.next_event().is_some() {}
        while raw.next_event().is_some() {}
        while nd.next_line().is_some() {}
    }

    /// The stream mappers never panic on arbitrary (SSE-framed) bytes either.
    #[test]
    fn mappers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), cut in 1usize..40) {
        let wire = String::from_utf8_lossy(&bytes).into_owned();
        let sigs = crate::gemini::SignatureCache::default();
        let _ = drive(&wire, cut, false, crate::anthropic::AnthropicStream::new("m", true));
        let _ = drive(&wire, cut, true, crate::gemini::GeminiStream::new("m", true, 1, sigs));
        let _ = drive(&wire, cut, false, crate::compat::CompatStream::new(ProviderKind::OpenAi, true));
        let _ = drive(&wire, cut, false, crate::ollama::OllamaStream::new("m", true));
    }
}
