//! Incremental Server-Sent Events decoder (WHATWG HTML Living Standard §9.2.6 "Interpreting an
//! event stream", as summarised in `wire-formats.md` §0.1).
//!
//! Bytes go in as they arrive from the network ([`SseDecoder::push`]); complete events come out
//! ([`SseDecoder::next_event`]). The decoder buffers bytes and only decodes complete lines, so a
//! multibyte UTF-8 character split across two network chunks comes out whole. Line terminators
//! `\n`, `\r\n` and `\r` are all accepted, including a `\r` at the end of one chunk followed by
//! `\n` at the start of the next. Work is linear in the input: every byte is scanned once and
//! the buffer is compacted only when the consumed prefix is at least as long as what remains.

use std::collections::VecDeque;

/// Default cap on the bytes of one buffered line and of one event's joined data (32 MiB).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 32 * 1024 * 1024;

/// One dispatched SSE event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field; empty when the event had none (the spec's default type `message`).
    pub event: String,
    /// The `data:` lines joined with `\n` (the trailing newline of the spec is not kept).
    pub data: String,
    /// The last `id:` seen so far in the stream (the spec's "last event ID"), if any.
    pub id: Option<String>,
}

impl SseEvent {
    /// The event type: the `event:` field, or `"message"` when absent.
    pub fn event_type(&self) -> &str {
        if self.event.is_empty() { "message" } else { &self.event }
    }
}

/// The stream broke the decoder's limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A line or an event's data grew beyond the configured cap (bytes).
    #[error("server-sent event larger than {0} bytes")]
    TooLarge(usize),
    /// A binary frame failed its checks (AWS event stream: CRC, length, headers, UTF-8).
    #[error("malformed stream frame: {0}")]
    Malformed(String),
}

/// Incremental SSE decoder. Never panics on arbitrary input; invalid UTF-8 inside a line is
/// replaced with U+FFFD.
#[derive(Debug)]
pub struct SseDecoder {
    buf: Vec<u8>,
    /// Start of the current (not yet terminated) line in `buf`.
    line_start: usize,
    /// Bytes of the current line already scanned without finding a terminator.
    scanned: usize,
    /// The previous line ended with `\r`: a `\n` right after it belongs to the same terminator.
    skip_lf: bool,
    /// Still at the very start of the stream (a leading U+FEFF BOM is skipped).
    at_start: bool,
    event: String,
    data: String,
    has_data: bool,
    last_id: Option<String>,
    /// `retry:` value in milliseconds, if the server sent one.
    retry_ms: Option<u64>,
    ready: VecDeque<SseEvent>,
    max_bytes: usize,
    /// Raw-JSON mode ([`SseDecoder::with_raw_json`]): the object being accumulated and its
    /// brace depth / string state.
    raw_json: bool,
    raw: Raw,
}

/// Accumulation state of a raw (non-`data:`) JSON value.
#[derive(Debug, Default)]
struct Raw {
    text: String,
    depth: u32,
    in_string: bool,
    escaped: bool,
}

/// Event name of a raw JSON value dispatched in raw-JSON mode.
pub const RAW_JSON_EVENT: &str = "raw-json";

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SseDecoder {
    /// A decoder with the default size cap ([`DEFAULT_MAX_EVENT_BYTES`]).
    pub fn new() -> Self {
        Self::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A decoder that fails with [`SseError::TooLarge`] once a line or an event's data exceeds
    /// `max_bytes`.
    pub fn with_max_event_bytes(max_bytes: usize) -> Self {
        Self {
            buf: Vec::new(),
            line_start: 0,
            scanned: 0,
            skip_lf: false,
            at_start: true,
            event: String::new(),
            data: String::new(),
            has_data: false,
            last_id: None,
            retry_ms: None,
            ready: VecDeque::new(),
            max_bytes,
            raw_json: false,
            raw: Raw::default(),
        }
    }

    /// Also reports JSON values written *without* `data:` framing (a line starting with `{` or
    /// `[`, continued over lines until its brackets balance) as events named
    /// [`RAW_JSON_EVENT`]. Gemini writes a bare JSON error object into an SSE body when it fails
    /// after the stream started (`wire-formats.md` §3.3); the official SDK detects it the same way.
    pub fn with_raw_json(mut self) -> Self {
        self.raw_json = true;
        self
    }

    /// Raw-JSON mode: consumes `line` if it starts or continues a bare JSON value.
    fn raw_line(&mut self, line: &[u8]) -> Result<bool, SseError> {
        if self.raw.depth == 0 && !matches!(line.first(), Some(b'{' | b'[')) {
            return Ok(false);
        }
        for &b in line {
            let r = &mut self.raw;
            if r.in_string {
                if r.escaped {
                    r.escaped = false;
                } else if b == b'\\' {
                    r.escaped = true;
                } else if b == b'"' {
                    r.in_string = false;
                }
            } else {
                match b {
                    b'"' => r.in_string = true,
                    b'{' | b'[' => r.depth = r.depth.saturating_add(1),
                    b'}' | b']' => r.depth = r.depth.saturating_sub(1),
                    _ => {}
                }
            }
        }
        push_utf8(&mut self.raw.text, line);
        self.raw.text.push('\n');
        if self.raw.text.len() > self.max_bytes {
            self.raw = Raw::default();
            return Err(SseError::TooLarge(self.max_bytes));
        }
        if self.raw.depth == 0 {
            let raw = std::mem::take(&mut self.raw);
            self.ready.push_back(SseEvent { event: RAW_JSON_EVENT.to_string(), data: raw.text, id: self.last_id.clone() });
        }
        Ok(true)
    }

    /// The last `retry:` reconnection time in milliseconds, if any.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    /// Feeds one network chunk. Complete events become available through
    /// [`SseDecoder::next_event`].
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), SseError> {
        let mut chunk = chunk;
        if chunk.is_empty() {
            return Ok(());
        }
        if self.skip_lf {
            self.skip_lf = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        self.buf.extend_from_slice(chunk);
        if self.at_start {
            // The BOM may itself arrive split; wait until three bytes (or a mismatch) are known.
            let pending = &self.buf[self.line_start..];
            let bom = [0xEF_u8, 0xBB, 0xBF];
            let n = pending.len().min(3);
            if pending[..n] != bom[..n] {
                self.at_start = false;
            } else if n == 3 {
                self.line_start += 3;
                self.at_start = false;
            } else {
                return Ok(());
            }
        }
        self.scan_lines()?;
        self.compact();
        Ok(())
    }

    /// Ends the input. A final line without terminator is dropped (the stream was most likely
    /// cut in the middle of it); a pending event whose lines were all complete is dispatched,
    /// tolerating servers that close without the final blank line.
    pub fn finish(&mut self) {
        // A partial (unterminated) line is most likely cut off: drop it.
        self.buf.clear();
        self.line_start = 0;
        self.scanned = 0;
        self.dispatch();
    }

    /// The next complete event, if any.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        self.ready.pop_front()
    }

    fn scan_lines(&mut self) -> Result<(), SseError> {
        // Take the buffer out so lines can borrow it while fields are updated.
        let buf = std::mem::take(&mut self.buf);
        let result = self.scan_lines_in(&buf);
        self.buf = buf;
        result
    }

    fn scan_lines_in(&mut self, buf: &[u8]) -> Result<(), SseError> {
        loop {
            let from = self.line_start + self.scanned;
            let rest = &buf[from..];
            let Some(rel) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                self.scanned = buf.len() - self.line_start;
                if self.scanned > self.max_bytes {
                    return Err(SseError::TooLarge(self.max_bytes));
                }
                return Ok(());
            };
            let end = from + rel;
            let term = buf[end];
            let mut next = end + 1;
            if term == b'\r' {
                if next < buf.len() {
                    if buf[next] == b'\n' {
                        next += 1;
                    }
                } else {
                    // The `\n` of a `\r\n` may start the next chunk.
                    self.skip_lf = true;
                }
            }
            let (start, stop) = (self.line_start, end);
            self.line_start = next;
            self.scanned = 0;
            if stop - start > self.max_bytes {
                return Err(SseError::TooLarge(self.max_bytes));
            }
            self.process_line(&buf[start..stop])?;
        }
    }

    fn process_line(&mut self, line: &[u8]) -> Result<(), SseError> {
        if self.raw_json && self.raw_line(line)? {
            return Ok(());
        }
        if line.is_empty() {
            self.dispatch();
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(()); // comment
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &line[..0]),
        };
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.has_data = true;
                push_utf8(&mut self.data, value);
                if self.data.len() > self.max_bytes {
                    return Err(SseError::TooLarge(self.max_bytes));
                }
            }
            b"event" => {
                self.event.clear();
                push_utf8(&mut self.event, value);
            }
            // The spec ignores ids containing NUL.
            b"id" if !value.contains(&0) => {
                let mut id = String::new();
                push_utf8(&mut id, value);
                self.last_id = Some(id);
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry_ms = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok());
            }
            _ => {} // unknown field: ignored
        }
        Ok(())
    }

    fn dispatch(&mut self) {
        if !self.has_data {
            self.event.clear();
            return;
        }
        self.has_data = false;
        self.ready.push_back(SseEvent {
            event: std::mem::take(&mut self.event),
            data: std::mem::take(&mut self.data),
            id: self.last_id.clone(),
        });
    }

    /// Drops consumed bytes once they are at least as many as the bytes kept (amortised O(1)
    /// per byte).
    fn compact(&mut self) {
        if self.line_start == self.buf.len() {
            self.buf.clear();
            self.line_start = 0;
        } else if self.line_start >= self.buf.len() - self.line_start {
            self.buf.drain(..self.line_start);
            self.line_start = 0;
        }
    }
}

/// The frame that ends an OpenAI-style stream: `data: [DONE]\n\n` (`wire-formats.md` §1.5).
pub const DONE_FRAME: &[u8] = b"data: [DONE]\n\n";

/// Frames `payload` as one SSE event: `event: <name>\n` when `event` is given, then one
/// `data: ` line per line of `payload` (split on `\n`, `\r\n` and `\r`, so the frame stays
/// well-formed whatever the payload holds), then a blank line. The usual case (single-line
/// JSON, no event name) costs one allocation.
pub fn encode_event(event: Option<&str>, payload: &[u8]) -> bytes::Bytes {
    let mut out = Vec::with_capacity(payload.len() + 16 + event.map_or(0, |e| e.len() + 8));
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        // A name cannot hold a line break: keep only its first line.
        let first = name.split(['\n', '\r']).next().unwrap_or_default();
        out.extend_from_slice(first.as_bytes());
        out.push(b'\n');
    }
    let mut rest = payload;
    loop {
        out.extend_from_slice(b"data: ");
        match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            None => {
                out.extend_from_slice(rest);
                out.push(b'\n');
                break;
            }
            Some(i) => {
                out.extend_from_slice(&rest[..i]);
                out.push(b'\n');
                let skip = if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
                rest = &rest[i + skip..];
            }
        }
    }
    out.push(b'\n');
    bytes::Bytes::from(out)
}

/// [`encode_event`] without an event name: `data: <payload>\n\n`.
pub fn encode_data(payload: &[u8]) -> bytes::Bytes {
    encode_event(None, payload)
}

fn push_utf8(out: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(s) => out.push_str(s),
        Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn decode_chunks(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        for c in chunks {
            d.push(c).unwrap();
            while let Some(e) = d.next_event() {
                out.push(e);
            }
        }
        d.finish();
        while let Some(e) = d.next_event() {
            out.push(e);
        }
        out
    }

    fn datas(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn lf_framing() {
        let ev = decode_chunks(&[b"data: {\"a\":1}\n\ndata: [DONE]\n\n"]);
        assert_eq!(datas(&ev), vec!["{\"a\":1}", "[DONE]"]);
        assert_eq!(ev[0].event_type(), "message");
    }

    #[test]
    fn crlf_framing() {
        let ev = decode_chunks(&[b"event: a\r\ndata: 1\r\n\r\nevent: b\r\ndata: 2\r\n\r\n"]);
        assert_eq!(datas(&ev), vec!["1", "2"]);
        assert_eq!(ev[0].event, "a");
        assert_eq!(ev[1].event, "b");
    }

    #[test]
    fn cr_only_framing() {
        let ev = decode_chunks(&[b"data: 1\r\rdata: 2\r\r"]);
        assert_eq!(datas(&ev), vec!["1", "2"]);
    }

    #[test]
    fn cr_at_chunk_end_lf_at_next_start() {
        let ev = decode_chunks(&[b"data: 1\r", b"\n\r", b"\ndata: 2\r\n\r", b"\n"]);
        assert_eq!(datas(&ev), vec!["1", "2"]);
    }

    #[test]
    fn cr_then_cr_is_blank_line_across_chunks() {
        // "\r" then "\r": two terminators, i.e. a blank line → dispatch.
        let ev = decode_chunks(&[b"data: x\r", b"\r"]);
        assert_eq!(datas(&ev), vec!["x"]);
    }

    #[test]
    fn comments_are_ignored() {
        let ev = decode_chunks(&[b": keep-alive\n\n: PROCESSING\ndata: a\n: mid\n\n"]);
        assert_eq!(datas(&ev), vec!["a"]);
    }

    #[test]
    fn fields_event_id_retry() {
        let mut d = SseDecoder::new();
        d.push(b"retry: 1500\nid: 7\nevent: message_start\ndata: {}\n\n").unwrap();
        let e = d.next_event().unwrap();
        assert_eq!(e.event, "message_start");
        assert_eq!(e.id.as_deref(), Some("7"));
        assert_eq!(d.retry_ms(), Some(1500));
        d.push(b"retry: soon\ndata: {}\n\n").unwrap();
        assert_eq!(d.retry_ms(), Some(1500));
        // The id persists; the event name does not.
        let e = d.next_event().unwrap();
        assert_eq!(e.event, "");
        assert_eq!(e.id.as_deref(), Some("7"));
    }

    #[test]
    fn data_with_and_without_space() {
        let ev = decode_chunks(&[b"data:{\"x\":1}\n\ndata:  two\n\n"]);
        // Only one leading space is removed.
        assert_eq!(datas(&ev), vec!["{\"x\":1}", " two"]);
    }

    #[test]
    fn multiple_data_lines_joined() {
        let ev = decode_chunks(&[b"data: a\ndata: b\ndata\ndata: c\n\n"]);
        assert_eq!(datas(&ev), vec!["a\nb\n\nc"]);
    }

    #[test]
    fn event_without_data_is_not_dispatched() {
        let ev = decode_chunks(&[b"event: ping\n\nid: 3\n\ndata: x\n\n"]);
        assert_eq!(datas(&ev), vec!["x"]);
        assert_eq!(ev[0].event, "");
    }

    #[test]
    fn split_utf8_across_chunks() {
        let s = "data: héllo €𝄞\n\n".as_bytes();
        // Split inside every byte position.
        for i in 1..s.len() {
            let ev = decode_chunks(&[&s[..i], &s[i..]]);
            assert_eq!(datas(&ev), vec!["héllo €𝄞"], "split at {i}");
        }
        // One byte at a time.
        let singles: Vec<&[u8]> = s.chunks(1).collect();
        assert_eq!(datas(&decode_chunks(&singles)), vec!["héllo €𝄞"]);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_panicking() {
        let ev = decode_chunks(&[b"data: a\xFFb\n\n"]);
        assert_eq!(datas(&ev), vec!["a\u{FFFD}b"]);
    }

    #[test]
    fn bom_is_skipped_even_when_split() {
        let ev = decode_chunks(&[b"\xEF", b"\xBB\xBFdata: a\n\n"]);
        assert_eq!(datas(&ev), vec!["a"]);
        assert_eq!(ev[0].data, "a");
    }

    #[test]
    fn finish_dispatches_complete_pending_event_but_drops_partial_line() {
        let ev = decode_chunks(&[b"data: [DONE]\n"]);
        assert_eq!(datas(&ev), vec!["[DONE]"]);
        let ev = decode_chunks(&[b"data: {\"a\":1}\n\ndata: {\"trunc"]);
        assert_eq!(datas(&ev), vec!["{\"a\":1}"]);
    }

    #[test]
    fn too_large_line_is_an_error() {
        let mut d = SseDecoder::with_max_event_bytes(16);
        assert!(d.push(b"data: 0123456789").is_ok());
        assert_eq!(d.push(b"abcdefgh"), Err(SseError::TooLarge(16)));
        let mut d = SseDecoder::with_max_event_bytes(16);
        d.push(b"data: 0123456789\n").unwrap();
        assert_eq!(d.push(b"data: 0123456789\n"), Err(SseError::TooLarge(16)));
    }

    #[test]
    fn long_line_in_tiny_chunks() {
        let mut body = b"data: ".to_vec();
        body.extend(std::iter::repeat_n(b'x', 100_000));
        body.extend_from_slice(b"\n\n");
        let mut d = SseDecoder::new();
        for c in body.chunks(7) {
            d.push(c).unwrap();
        }
        assert_eq!(d.next_event().unwrap().data.len(), 100_000);
    }

    #[test]
    fn encoder_round_trips_through_the_decoder() {
        assert_eq!(&encode_data(b"{\"a\":1}")[..], b"data: {\"a\":1}\n\n");
        assert_eq!(&encode_event(Some("error"), b"{}")[..], b"event: error\ndata: {}\n\n");
        for payload in ["one", "two\nlines", "cr\rlf\r\nmix", "", "trailing\n", "é€𝄞"] {
            let mut d = SseDecoder::new();
            d.push(&encode_event(Some("x"), payload.as_bytes())).unwrap();
            let e = d.next_event().unwrap();
            assert_eq!(e.data, payload.replace("\r\n", "\n").replace('\r', "\n"), "{payload:?}");
            assert_eq!(e.event, "x");
        }
    }

    /// xorshift64*: a deterministic generator so the property test is reproducible.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    #[test]
    fn random_bytes_never_panic_and_chunking_does_not_matter() {
        let alphabet: &[u8] = b"data:event:id:retry: \r\n\r\n:xyz\xC3\xA9\xE2\x82\xAC\xFF\x00";
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..500 {
            let len = (rng.next() % 300) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.next().is_multiple_of(4) {
                        rng.next() as u8
                    } else {
                        alphabet[(rng.next() % alphabet.len() as u64) as usize]
                    }
                })
                .collect();
            let whole = decode_chunks(&[&bytes]);
            // Same input in random chunks must give the same events.
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = 1 + (rng.next() % 9) as usize;
                let n = n.min(rest.len());
                chunks.push(&rest[..n]);
                rest = &rest[n..];
            }
            assert_eq!(decode_chunks(&chunks), whole, "input {bytes:?}");
        }
    }
}
