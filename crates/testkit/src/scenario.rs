//! The per-request behaviour of the mock, parsed from the model name and the
//! `x-mock-scenario` header.
//!
//! Grammar (see the crate docs for the full table):
//!
//! ```text
//! model    = base [ ":" options ]
//! header   = options                      ; value of `x-mock-scenario`
//! options  = option *( "," option )
//! option   = flag | key "=" value
//! ```
//!
//! Options are applied left to right: builder defaults first, then the model's options, then
//! the header's, so a later option wins.

use std::fmt;
use std::time::Duration;

/// Delay between stream events used by the `slow` flag when no `delay_ms` is given.
pub const SLOW_DELAY: Duration = Duration::from_millis(250);

/// Text appended to the reply by the `utf8-split` flag, so that the stream has multibyte
/// characters to split (2-, 3- and 4-byte UTF-8 sequences).
pub const UTF8_SUFFIX: &str = " — naïve café ✓ 🦀";

/// Reply text of the `fixed` flag.
pub const FIXED_REPLY: &str = "This is a fixed reply from gatehouse-mock.";

/// Name of the request header that overrides the model-name scenario.
pub const SCENARIO_HEADER: &str = "x-mock-scenario";

/// Where the reply text comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Reply {
    /// `echo: <text of the last user message>` (default). When the last turn is a tool result
    /// the reply is `tool result: <content>` instead.
    #[default]
    Echo,
    /// A fixed text (`fixed` → [`FIXED_REPLY`], `reply=<percent-encoded text>`).
    Fixed(String),
}

/// Whether the reply is text or tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ToolMode {
    /// Plain text reply (default).
    #[default]
    None,
    /// One tool call (`tools`).
    One,
    /// Two parallel tool calls (`parallel-tools`).
    Parallel,
}

/// A scripted failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Answer with this HTTP status (400..=599) and the vendor's error envelope, before any
    /// byte of the body (`429`, `500`, `529`, `status=NNN`, aliases `rate-limit`, `overloaded`).
    Status(u16),
    /// Stream some content, then the vendor's in-band error (OpenAI `data: {"error":…}`,
    /// Anthropic `event: error` with `overloaded_error`) and close without a terminator.
    /// Non-streaming requests get HTTP 500 instead.
    ErrorMidStream,
    /// Stream some content, then abort the connection (the chunked body is never terminated,
    /// HTTP/2 gets a reset). Non-streaming requests get half a JSON body, then the abort.
    EarlyClose,
    /// Stream some content, then end the HTTP body cleanly but without the SSE terminator
    /// (`data: [DONE]` / `message_stop`). Non-streaming requests get a truncated JSON body.
    EarlyEnd,
}

/// How a request is answered. Built by [`Scenario::parse_model`] and
/// [`Scenario::apply_options`]; `Scenario::default()` is a plain echo.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scenario {
    /// Reply text source.
    pub reply: Reply,
    /// Text or tool calls.
    pub tools: ToolMode,
    /// Scripted failure, if any.
    pub failure: Option<Failure>,
    /// Apply `failure` only to the first N calls that carry the same scenario (model name plus
    /// header); later calls succeed (`fail_first=N`). `None` = always.
    pub fail_first: Option<u32>,
    /// Cached prompt tokens reported in usage (`cached` → 1024, `cached=N`). For Anthropic,
    /// also `cache_creation_input_tokens` = N / 4.
    pub cached_tokens: u32,
    /// Reasoning tokens reported in usage (`reasoning` → 64, `reasoning=N`).
    pub reasoning_tokens: u32,
    /// Split a multibyte UTF-8 character across two TCP writes (`utf8-split`).
    pub utf8_split: bool,
    /// Frame SSE with `\r\n` line endings (`crlf`).
    pub crlf: bool,
    /// Emit `: keep-alive` comment lines before events, and blank lines before a
    /// non-streaming JSON body (`keepalive`).
    pub keepalive: bool,
    /// Use [`SLOW_DELAY`] between events unless `delay` is set (`slow`).
    pub slow: bool,
    /// Parser noise (`noise`): OpenAI streams start with an Azure-style chunk with empty
    /// `choices` and `prompt_filter_results`; Anthropic streams carry an unknown event type
    /// and an extra `ping`; every JSON answer has an unknown top-level field.
    pub noise: bool,
    /// Split the reply text into exactly N content deltas (`chunks=N`); the text is padded
    /// with ` lorem` words when it has fewer than N characters.
    pub chunks: Option<usize>,
    /// Split the reply text into deltas of N characters (`chunk_size=N`).
    pub chunk_size: Option<usize>,
    /// Delay between stream events (`delay_ms=N`).
    pub delay: Option<Duration>,
    /// Delay before the response headers are sent (`wait_ms=N`), for timeout tests.
    pub wait: Duration,
    /// Finish/stop reason override (`finish=length`); OpenAI names (`stop`, `length`,
    /// `tool_calls`, `content_filter`) and Anthropic names (`end_turn`, `max_tokens`,
    /// `tool_use`, `stop_sequence`, `refusal`, …) are both accepted and mapped per vendor.
    pub finish: Option<String>,
    /// `retry-after` seconds on error answers (`retry_after=N`; 429/503/529 default to 1).
    pub retry_after: Option<u64>,
    /// `retry-after-ms` on error answers (`retry_after_ms=N`).
    pub retry_after_ms: Option<u64>,
    /// `x-should-retry` on error answers (`should_retry=true|false`).
    pub should_retry: Option<bool>,
}

/// A scenario string that could not be parsed. The message names the offending option; it is
/// returned to the client as a 400 in the vendor's envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// The option as written.
    pub option: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid mock scenario option `{}`: {}",
            self.option, self.reason
        )
    }
}

impl std::error::Error for ScenarioError {}

impl Scenario {
    /// Splits a model name `base[:options]` at its first `:` and parses the options on top of
    /// `self` (usually the builder's default scenario). Returns the base name.
    ///
    /// # Errors
    /// [`ScenarioError`] for an unknown flag, an unknown key or a bad value.
    pub fn parse_model<'m>(&mut self, model: &'m str) -> Result<&'m str, ScenarioError> {
        match model.split_once(':') {
            Some((base, options)) => {
                self.apply_options(options)?;
                Ok(base)
            }
            None => Ok(model),
        }
    }

    /// Parses `options` (comma-separated, as in the `x-mock-scenario` header) and applies them
    /// to `self`, left to right. Empty items and surrounding whitespace are ignored.
    ///
    /// # Errors
    /// [`ScenarioError`] for an unknown flag, an unknown key or a bad value.
    pub fn apply_options(&mut self, options: &str) -> Result<(), ScenarioError> {
        for raw in options.split(',') {
            let item = raw.trim();
            if item.is_empty() {
                continue;
            }
            let err = |reason: &str| ScenarioError {
                option: item.to_owned(),
                reason: reason.to_owned(),
            };
            match item.split_once('=') {
                None => self.apply_flag(item).map_err(|r| err(&r))?,
                Some((key, value)) => self
                    .apply_key(key.trim(), value.trim())
                    .map_err(|r| err(&r))?,
            }
        }
        Ok(())
    }

    /// Parses options into a fresh scenario (`Scenario::default()` plus `options`).
    ///
    /// # Errors
    /// See [`Scenario::apply_options`].
    pub fn from_options(options: &str) -> Result<Scenario, ScenarioError> {
        let mut s = Scenario::default();
        s.apply_options(options)?;
        Ok(s)
    }

    /// The delay between stream events: `delay`, else [`SLOW_DELAY`] with `slow`, else zero.
    pub fn event_delay(&self) -> Duration {
        match (self.delay, self.slow) {
            (Some(d), _) => d,
            (None, true) => SLOW_DELAY,
            (None, false) => Duration::ZERO,
        }
    }

    fn apply_flag(&mut self, flag: &str) -> Result<(), String> {
        match flag {
            "echo" => self.reply = Reply::Echo,
            "fixed" => self.reply = Reply::Fixed(FIXED_REPLY.to_owned()),
            "text" => self.tools = ToolMode::None,
            "tools" | "tool" => self.tools = ToolMode::One,
            "parallel-tools" => self.tools = ToolMode::Parallel,
            "cached" => self.cached_tokens = 1024,
            "reasoning" => self.reasoning_tokens = 64,
            "utf8-split" => self.utf8_split = true,
            "crlf" => self.crlf = true,
            "keepalive" | "keep-alive" => self.keepalive = true,
            "slow" => self.slow = true,
            "noise" => self.noise = true,
            "error-mid-stream" => self.failure = Some(Failure::ErrorMidStream),
            "early-close" => self.failure = Some(Failure::EarlyClose),
            "early-end" => self.failure = Some(Failure::EarlyEnd),
            "rate-limit" => self.failure = Some(Failure::Status(429)),
            "overloaded" => self.failure = Some(Failure::Status(529)),
            "ok" => {
                self.failure = None;
                self.fail_first = None;
            }
            other if other.len() == 3 && other.bytes().all(|b| b.is_ascii_digit()) => {
                self.failure = Some(Failure::Status(parse_status(other)?));
            }
            _ => return Err("unknown flag".to_owned()),
        }
        Ok(())
    }

    fn apply_key(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "reply" => self.reply = Reply::Fixed(percent_decode(value)?),
            "chunks" => self.chunks = Some(parse_positive(value)?),
            "chunk_size" => self.chunk_size = Some(parse_positive(value)?),
            "delay_ms" => self.delay = Some(Duration::from_millis(parse_u64(value)?)),
            "wait_ms" => self.wait = Duration::from_millis(parse_u64(value)?),
            "cached" => self.cached_tokens = parse_u32(value)?,
            "reasoning" => self.reasoning_tokens = parse_u32(value)?,
            "finish" => {
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                    return Err("expected a finish reason like `length`".to_owned());
                }
                self.finish = Some(value.to_owned());
            }
            "status" => self.failure = Some(Failure::Status(parse_status(value)?)),
            "fail_first" => self.fail_first = Some(parse_u32(value)?),
            "retry_after" => self.retry_after = Some(parse_u64(value)?),
            "retry_after_ms" => self.retry_after_ms = Some(parse_u64(value)?),
            "should_retry" => {
                self.should_retry = Some(match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err("expected `true` or `false`".to_owned()),
                })
            }
            _ => return Err("unknown key".to_owned()),
        }
        Ok(())
    }
}

fn parse_u64(value: &str) -> Result<u64, String> {
    value
        .parse::<u64>()
        .map_err(|_| "expected a non-negative integer".to_owned())
}

fn parse_u32(value: &str) -> Result<u32, String> {
    value
        .parse::<u32>()
        .map_err(|_| "expected a non-negative integer below 2^32".to_owned())
}

fn parse_positive(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err("expected an integer from 1 to 1000000".to_owned()),
    }
}

fn parse_status(value: &str) -> Result<u16, String> {
    match value.parse::<u16>() {
        Ok(n) if (400..=599).contains(&n) => Ok(n),
        _ => Err("expected an HTTP error status from 400 to 599".to_owned()),
    }
}

/// Decodes `%XX` escapes and `+` (space) in a `reply=` value.
fn percent_decode(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| "bad percent escape".to_owned())?;
                out.push(hex);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "percent escapes do not form UTF-8".to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn plain_model_is_echo() {
        let mut s = Scenario::default();
        assert_eq!(s.parse_model("mock-gpt").unwrap(), "mock-gpt");
        assert_eq!(s, Scenario::default());
        assert_eq!(s.reply, Reply::Echo);
        assert_eq!(s.event_delay(), Duration::ZERO);
    }

    #[test]
    fn flags_and_keys() {
        let mut s = Scenario::default();
        let base = s
            .parse_model("mock-gpt:tools,cached,chunks=50,delay_ms=20,crlf,keepalive")
            .unwrap();
        assert_eq!(base, "mock-gpt");
        assert_eq!(s.tools, ToolMode::One);
        assert_eq!(s.cached_tokens, 1024);
        assert_eq!(s.chunks, Some(50));
        assert_eq!(s.delay, Some(Duration::from_millis(20)));
        assert!(s.crlf && s.keepalive);
        assert!(!s.noise);
        assert!(Scenario::from_options("noise").unwrap().noise);
        assert!(!s.utf8_split);
    }

    #[test]
    fn statuses_and_aliases() {
        let s = Scenario::from_options("429").unwrap();
        assert_eq!(s.failure, Some(Failure::Status(429)));
        let s = Scenario::from_options("overloaded").unwrap();
        assert_eq!(s.failure, Some(Failure::Status(529)));
        let s = Scenario::from_options("status=503,retry_after=7,should_retry=false").unwrap();
        assert_eq!(s.failure, Some(Failure::Status(503)));
        assert_eq!(s.retry_after, Some(7));
        assert_eq!(s.should_retry, Some(false));
        assert!(Scenario::from_options("200").is_err());
        assert!(Scenario::from_options("status=600").is_err());
    }

    #[test]
    fn stream_failures() {
        for (opt, f) in [
            ("error-mid-stream", Failure::ErrorMidStream),
            ("early-close", Failure::EarlyClose),
            ("early-end", Failure::EarlyEnd),
        ] {
            assert_eq!(Scenario::from_options(opt).unwrap().failure, Some(f));
        }
        let s = Scenario::from_options("500,fail_first=2").unwrap();
        assert_eq!(s.fail_first, Some(2));
        let s = Scenario::from_options("500,ok").unwrap();
        assert_eq!(s.failure, None);
    }

    #[test]
    fn later_options_win_and_header_overrides() {
        let mut s = Scenario::from_options("delay_ms=5").unwrap();
        s.parse_model("mock-claude:parallel-tools,slow").unwrap();
        assert_eq!(s.tools, ToolMode::Parallel);
        // an explicit delay beats `slow`
        assert_eq!(s.event_delay(), Duration::from_millis(5));
        s.apply_options("text, delay_ms=0").unwrap();
        assert_eq!(s.tools, ToolMode::None);
        assert_eq!(s.event_delay(), Duration::ZERO);
        let s = Scenario::from_options("slow").unwrap();
        assert_eq!(s.event_delay(), SLOW_DELAY);
    }

    #[test]
    fn reply_is_percent_decoded() {
        let s = Scenario::from_options("reply=Hello%2C+w%C3%B6rld").unwrap();
        assert_eq!(s.reply, Reply::Fixed("Hello, wörld".to_owned()));
        assert_eq!(
            Scenario::from_options("fixed").unwrap().reply,
            Reply::Fixed(FIXED_REPLY.to_owned())
        );
        assert!(Scenario::from_options("reply=%zz").is_err());
        assert!(Scenario::from_options("reply=%ff").is_err());
    }

    #[test]
    fn errors_name_the_option() {
        let e = Scenario::from_options("tools,bogus").unwrap_err();
        assert_eq!(e.option, "bogus");
        assert!(e.to_string().contains("bogus"));
        let e = Scenario::from_options("chunks=0").unwrap_err();
        assert_eq!(e.option, "chunks=0");
        let e = Scenario::from_options("nokey=1").unwrap_err();
        assert!(e.reason.contains("unknown key"));
        assert!(Scenario::from_options("delay_ms=-1").is_err());
        assert!(Scenario::from_options("finish=Bad!").is_err());
        // whitespace and empty items are fine
        assert!(Scenario::from_options(" tools , ,cached ").is_ok());
    }

    #[test]
    fn only_first_colon_splits() {
        let mut s = Scenario::default();
        assert_eq!(s.parse_model("mock-gpt:reply=a%3Ab").unwrap(), "mock-gpt");
        assert_eq!(s.reply, Reply::Fixed("a:b".to_owned()));
        let mut s = Scenario::default();
        assert!(s.parse_model("mock-gpt:tools:429").is_err());
    }
}
