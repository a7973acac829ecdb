//! Incremental Server-Sent Events line counter (WHATWG HTML "server-sent events", §9.2.6).
//!
//! Feeds arbitrary byte chunks (lines may be split anywhere, including inside `\r\n`) and
//! counts `data:` fields: the `[DONE]` sentinel of OpenAI-style streams separately from
//! payload lines. Only the incomplete tail of the last line is buffered.

/// Result of feeding one chunk of bytes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fed {
    /// Payload `data:` lines completed in this chunk (excluding `[DONE]`).
    pub data_lines: u64,
    /// Whether a `data: [DONE]` line was completed in this chunk.
    pub done: bool,
    /// Payload lines in this chunk that carry text (`choices[0].delta.content` non-empty).
    pub content_lines: u64,
}

/// Counts SSE `data:` lines across chunk boundaries.
#[derive(Debug, Default)]
pub struct SseCounter {
    tail: Vec<u8>,
    /// Total payload `data:` lines so far.
    pub data_lines: u64,
    /// Number of `data: [DONE]` lines so far (should end at exactly 1).
    pub done_lines: u64,
    /// Payload lines so far whose OpenAI chunk JSON has a non-empty
    /// `choices[0].delta.content` (the text-bearing chunks; role-only, finish and usage chunks
    /// are not counted).
    pub content_lines: u64,
}

/// Whether an OpenAI `chat.completion.chunk` JSON carries text in `choices[0].delta.content`.
pub fn has_content(json: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v.pointer("/choices/0/delta/content").and_then(|c| c.as_str()).map(|s| !s.is_empty()))
        .unwrap_or(false)
}

impl SseCounter {
    /// Feeds bytes; returns what completed lines in them contained.
    pub fn feed(&mut self, bytes: &[u8]) -> Fed {
        let mut fed = Fed::default();
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let (head, after) = rest.split_at(pos);
            rest = after.get(1..).unwrap_or(&[]);
            if self.tail.is_empty() {
                self.line(head, &mut fed);
            } else {
                let mut line = std::mem::take(&mut self.tail);
                line.extend_from_slice(head);
                self.line(&line, &mut fed);
            }
        }
        self.tail.extend_from_slice(rest);
        fed
    }

    fn line(&mut self, raw: &[u8], fed: &mut Fed) {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let Some(value) = line.strip_prefix(b"data:") else {
            return;
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if value == b"[DONE]" {
            self.done_lines += 1;
            fed.done = true;
        } else {
            self.data_lines += 1;
            fed.data_lines += 1;
            if has_content(value) {
                self.content_lines += 1;
                fed.content_lines += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_whole_events() {
        let mut c = SseCounter::default();
        let f = c.feed(b"data: {\"a\":1}\n\ndata: {\"a\":2}\n\ndata: [DONE]\n\n");
        assert_eq!(f, Fed { data_lines: 2, done: true, content_lines: 0 });
        assert_eq!(c.data_lines, 2);
        assert_eq!(c.done_lines, 1);
    }

    #[test]
    fn lines_split_across_chunks_and_crlf() {
        let mut c = SseCounter::default();
        assert_eq!(c.feed(b"da").data_lines, 0);
        assert_eq!(c.feed(b"ta: x\r").data_lines, 0);
        assert_eq!(c.feed(b"\n\r\n: keep-alive\r\nevent: ping\r\ndata:[DO").data_lines, 1);
        let f = c.feed(b"NE]\r\n\r\n");
        assert!(f.done);
        assert_eq!(c.data_lines, 1);
        assert_eq!(c.done_lines, 1);
    }

    #[test]
    fn counts_text_bearing_chunks() {
        let mut c = SseCounter::default();
        let f = c.feed(
            b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n\
data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n\
data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1}}\n\n",
        );
        assert_eq!(f.data_lines, 4);
        assert_eq!(f.content_lines, 1);
        assert!(has_content(br#"{"choices":[{"delta":{"content":"x"}}]}"#));
        assert!(!has_content(b"not json"));
    }

    #[test]
    fn ignores_non_data_fields() {
        let mut c = SseCounter::default();
        c.feed(b"id: 1\nretry: 10\nevent: message\n: comment\n\n");
        assert_eq!(c.data_lines, 0);
        assert_eq!(c.done_lines, 0);
    }
}
