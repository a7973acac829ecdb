//! # gatehouse-testkit: mock OpenAI and Anthropic upstreams
//!
//! [`MockProvider`] is an HTTP server (axum, started in-process on `127.0.0.1:0`, or as the
//! `gatehouse-mock` binary) that speaks the vendors' wire formats closely enough for the
//! official SDKs to work against it unchanged (`../shared/wire-formats.md` §1, §2, §8). The
//! gateway's tests, `gatehouse serve --demo` and the benchmark use it.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use gatehouse_testkit::MockProvider;
//! let mock = MockProvider::builder().expected_key("sk-test").start().await?;
//! let openai_base = mock.openai_base_url();       // http://127.0.0.1:PORT/v1
//! let anthropic_base = mock.anthropic_base_url(); // http://127.0.0.1:PORT
//! // … drive the gateway against it …
//! assert_eq!(mock.calls_for("/v1/chat/completions"), 1);
//! # Ok(()) }
//! ```
//!
//! ## Endpoints
//!
//! | Route | Format |
//! |---|---|
//! | `POST /v1/chat/completions` | OpenAI Chat Completions, non-streaming (§1.4) and SSE (§1.5) with `stream_options.include_usage` (final `choices: []` usage chunk, earlier chunks `"usage": null`), terminated by `data: [DONE]` |
//! | `POST /v1/embeddings` | OpenAI embeddings (§1.7): deterministic unit vectors (16 floats, or `dimensions`), `encoding_format` `float` or `base64` (little-endian f32) |
//! | `GET /v1/models`, `GET /v1/models/{id}` | OpenAI list/object (§1.8); Anthropic's shape (§2.8) when the request has `anthropic-version` or `x-api-key` |
//! | `POST /v1/messages` | Anthropic Messages (§2.5), and SSE (§2.6) in the exact order `message_start`, `content_block_start`, `ping`, `content_block_delta`…, `content_block_stop`, (more blocks), `message_delta`, `message_stop` |
//! | `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent[?alt=sse]` (also `/v1/models/…`) | Gemini (§3): key in `x-goog-api-key` (a bad key is 400 `API_KEY_INVALID`, as Google does), CRLF-framed SSE without terminator, whole `functionCall` parts (the first with a `thoughtSignature` and no `id`, the second with an `id`), usage on every chunk, `finish=blocked` → `promptFeedback` only, `error-mid-stream` → a bare JSON error object; without `alt=sse` one JSON array |
//! | `POST /api/chat` | Ollama native (§4.4): `stream` defaults to true, NDJSON lines, final `done: true` line with `prompt_eval_count`/`eval_count`, `{"error": …}` line mid-stream |
//! | `POST /model/{modelId}/converse`, `POST /model/{modelId}/converse-stream` | AWS Bedrock Converse (§6): Bearer API key or SigV4 (signature recomputed with the expected key as the secret), `{"message"}` errors with `x-amzn-ErrorType`, binary event-stream frames with CRC checks (`messageStart` … `metadata`), `modelStreamErrorException` mid-stream |
//! | `POST /openai/deployments/{d}/chat/completions?api-version=…`, `POST /openai/v1/chat/completions` | Azure OpenAI (§5): key in `api-key`, deployment selects the model, missing `api-version` → 404; OpenAI answers with Azure's empty-`choices` content-filter chunk first |
//! | anything else | 404 in the vendor's error envelope |
//!
//! Auth is checked like the vendors do: OpenAI routes read `Authorization: Bearer <key>`,
//! Anthropic routes read `x-api-key` (or a Bearer token) and require an `anthropic-version`
//! header (any value; missing → 400 `invalid_request_error`). With
//! [`MockProviderBuilder::expected_key`] a missing or wrong key gets the vendor's 401
//! envelope (OpenAI `invalid_api_key`, Anthropic `authentication_error`); without it any key
//! passes. Bad JSON, a missing `model`, missing `messages` (and Anthropic's missing
//! `max_tokens`) get a 400 in the vendor's envelope. Like OpenAI, the OpenAI and Azure routes
//! refuse `max_tokens` for a reasoning model (`o1`, `o3`, `o4`, `gpt-5` families,
//! [`is_reasoning_model`]) with 400 `unsupported_parameter`.
//!
//! ## Behaviour: the scenario convention
//!
//! Each request's behaviour comes from its **model name**, so it can be chosen through the
//! gateway too (e.g. `mock/mock-gpt:tools` with the explicit `provider/model` form):
//!
//! ```text
//! model   = base [ ":" options ]          e.g.  mock-gpt   mock-gpt:tools   mock-claude:529
//! options = option *( "," option )         e.g.  mock-gpt:chunks=50,delay_ms=20
//! option  = flag | key "=" value
//! ```
//!
//! The name is split at its **first** `:`; the base is echoed back as part of `model` (the
//! whole string is returned as the response's `model`). The request header
//! **`x-mock-scenario: <options>`** adds options after the model's; the builder's
//! [`MockProviderBuilder::scenario`] gives options applied before both. Later options win.
//! An unknown flag or key, or a bad value, is answered with a 400 naming the option.
//!
//! | Option | Effect |
//! |---|---|
//! | *(none)*, `echo` | reply `echo: <text of the last user message>`; if the last turn is a tool result: `tool result: <content>` |
//! | `fixed` | reply [`FIXED_REPLY`] |
//! | `reply=<text>` | reply `<text>` (percent-encoded: `%2C` for `,`, `%3A` for `:`, `+` or `%20` for space) |
//! | `tools` | one tool call: the request's first tool with arguments built from its schema (required properties, strings `"Paris"`), else `get_weather {"location":"Paris"}`. OpenAI streams `arguments` in fragments; Anthropic sends `input_json_delta` pieces starting with `""` and puts a short text block first unless `tool_choice` is `any`/`tool` |
//! | `parallel-tools` | two tool calls (second tool or the first again, strings `"Tokyo"`); OpenAI fragments keyed by `index` 0 and 1 |
//! | `text` | back to a text reply (undoes `tools`) |
//! | `cached`, `cached=N` | usage with N (default 1024) cached prompt tokens: OpenAI `prompt_tokens_details.cached_tokens` (included in `prompt_tokens`); Anthropic `cache_read_input_tokens` = N and `cache_creation_input_tokens` = N/4 |
//! | `reasoning`, `reasoning=N` | N (default 64) reasoning tokens (OpenAI `completion_tokens_details.reasoning_tokens`; added to output tokens) |
//! | `finish=<reason>` | finish/stop reason override; OpenAI and Anthropic names are mapped to each other |
//! | `chunks=N` | stream the text in exactly N deltas (padded with ` lorem` when shorter than N characters) |
//! | `chunk_size=N` | stream the text in deltas of N characters (default: one word per delta) |
//! | `delay_ms=N` | pause N ms between SSE events (each event is its own flushed write) |
//! | `slow` | pause [`SLOW_DELAY`] (250 ms) between events unless `delay_ms` is given |
//! | `wait_ms=N` | wait N ms before sending the response headers (timeouts) |
//! | `utf8-split` | append [`UTF8_SUFFIX`] to the reply and send every event holding a multibyte character as two TCP writes split inside that character |
//! | `crlf` | SSE lines end with `\r\n` |
//! | `noise` | parser noise: OpenAI streams start with an Azure-style chunk with empty `choices` and `prompt_filter_results`; Anthropic streams carry an extra `ping` and an unknown event type (`mock_future_event`); JSON answers get an unknown top-level field |
//! | `keepalive` | `: keep-alive` comment before every SSE event; two blank lines before a non-streaming JSON body |
//! | `429`, `500`, `529`, `401`, any `4xx`/`5xx`, `status=NNN` | answer that status with the vendor's error envelope; 429/503/529 carry `retry-after: 1` (OpenAI 429 also `x-ratelimit-*`). Aliases: `rate-limit` = 429, `overloaded` = 529 |
//! | `retry_after=N`, `retry_after_ms=N`, `should_retry=true\|false` | headers on error answers |
//! | `fail_first=N` | the failure applies only to the first N calls with the same path, model string and header; later ones succeed (retry tests) |
//! | `error-mid-stream` | stream about half the events, then OpenAI `data: {"error":{…"type":"server_error"…}}` / Anthropic `event: error` (`overloaded_error`), and end without a terminator; non-streaming: HTTP 500 |
//! | `early-close` | stream about half the events, then abort the connection (no chunked terminator); non-streaming: half the JSON, then abort |
//! | `early-end` | like `early-close` but the HTTP body ends cleanly (no `[DONE]` / `message_stop`) |
//! | `ok` | clears a failure set earlier (e.g. by the builder's defaults) |
//!
//! Usage numbers are deterministic: prompt tokens = words of every message (+3 per message),
//! completion tokens = words of the reply (tool calls: 8 + arguments length / 4).
//! [`MockProvider::last_usage`] gives the figures of the last answer normalised as a
//! [`gatehouse_types::Usage`].
//!
//! ## Recording
//!
//! [`MockProvider::calls`], [`MockProvider::calls_for`], [`MockProvider::last_request`],
//! [`MockProvider::last_headers`], [`MockProvider::requests`] and
//! [`MockProvider::disconnects`] (a stream whose client went away before the last byte) let
//! tests assert exactly which upstream calls happened and that a client disconnect cancelled
//! the upstream stream.

mod anthropic;
mod azure;
mod bedrock;
mod common;
mod gemini;
mod ollama;
mod openai;
mod respond;
pub mod scenario;
mod server;
pub mod state;
mod stream;

pub use anthropic::{ANTHROPIC_MODELS, TOOL_PREAMBLE};
pub use gemini::MOCK_THOUGHT_SIGNATURE;
pub use openai::{DEFAULT_EMBEDDING_DIMS, OPENAI_MODELS, is_reasoning_model};
pub use scenario::{
    FIXED_REPLY, Failure, Reply, SCENARIO_HEADER, SLOW_DELAY, Scenario, ScenarioError, ToolMode,
    UTF8_SUFFIX,
};
pub use server::{BODY_LIMIT_BYTES, MockProvider, MockProviderBuilder};
pub use state::{RECORDED_REQUESTS, RecordedRequest};
