//! Incremental NDJSON decoder (newline-delimited JSON, as Ollama streams `/api/chat`,
//! `wire-formats.md` §4.4): one value per line, `\n` or `\r\n` terminated, blank lines skipped.
//! Never panics on arbitrary bytes; invalid UTF-8 is replaced with U+FFFD.

use std::collections::VecDeque;

use crate::sse::SseError;

/// Splits a byte stream into lines (each line is one JSON text, not parsed here).
#[derive(Debug)]
pub struct NdjsonDecoder {
    buf: Vec<u8>,
    ready: VecDeque<String>,
    max_bytes: usize,
}

impl Default for NdjsonDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl NdjsonDecoder {
    /// A decoder with the SSE decoder's default line cap.
    pub fn new() -> Self {
        Self::with_max_line_bytes(crate::sse::DEFAULT_MAX_EVENT_BYTES)
    }

    /// A decoder that fails with [`SseError::TooLarge`] once a line exceeds `max_bytes`.
    pub fn with_max_line_bytes(max_bytes: usize) -> Self {
        Self { buf: Vec::new(), ready: VecDeque::new(), max_bytes }
    }

    /// Feeds one network chunk.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), SseError> {
        let mut rest = chunk;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            self.buf.extend_from_slice(&rest[..i]);
            rest = &rest[i + 1..];
            self.take_line();
        }
        self.buf.extend_from_slice(rest);
        if self.buf.len() > self.max_bytes {
            self.buf.clear();
            return Err(SseError::TooLarge(self.max_bytes));
        }
        Ok(())
    }

    /// Ends the input: a final line without `\n` is kept if it is non-blank (NDJSON writers may
    /// omit the last newline; a cut-off line fails to parse as JSON downstream).
    pub fn finish(&mut self) {
        self.take_line();
    }

    /// The next complete line.
    pub fn next_line(&mut self) -> Option<String> {
        self.ready.pop_front()
    }

    fn take_line(&mut self) {
        let line = std::mem::take(&mut self.buf);
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if !text.is_empty() {
            self.ready.push_back(text.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Vec<String> {
        let mut d = NdjsonDecoder::new();
        let mut out = Vec::new();
        for c in chunks {
            d.push(c).unwrap();
            while let Some(l) = d.next_line() {
                out.push(l);
            }
        }
        d.finish();
        while let Some(l) = d.next_line() {
            out.push(l);
        }
        out
    }

    #[test]
    fn splits_lines_across_chunks_and_crlf() {
        assert_eq!(lines(&[b"{\"a\":1}\r\n{\"b\"", b":2}\n\n", b"{\"c\":3}"]), vec!["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]);
    }

    #[test]
    fn multibyte_split_is_kept_whole() {
        let s = "{\"t\":\"caf\u{e9}\"}\n".as_bytes();
        let (a, b) = s.split_at(12);
        assert_eq!(lines(&[a, b]), vec!["{\"t\":\"caf\u{e9}\"}"]);
    }

    #[test]
    fn too_long_line_is_an_error() {
        let mut d = NdjsonDecoder::with_max_line_bytes(8);
        assert!(d.push(b"0123456789").is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x1234_5678_9abc_def0;
        for _ in 0..200 {
            let mut d = NdjsonDecoder::with_max_line_bytes(4096);
            for _ in 0..20 {
                let mut chunk = Vec::new();
                for _ in 0..(x % 64) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    chunk.push((x & 0xff) as u8);
                }
                let _ = d.push(&chunk);
                while d.next_line().is_some() {}
            }
            d.finish();
        }
    }
}
