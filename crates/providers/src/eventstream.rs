//! Incremental decoder of the AWS binary event-stream framing (`application/vnd.amazon.eventstream`,
//! `wire-formats.md` §6), as Bedrock's ConverseStream sends it.
//!
//! A frame is `total_len: u32 BE | headers_len: u32 BE | prelude_crc: u32 | headers | payload |
//! message_crc: u32`; both CRC-32 checks and the header decoding are done by the
//! `aws-smithy-eventstream` crate ([`read_message_from`]). This module only buffers bytes until a
//! whole frame is there, bounds the frame size before buffering it, and turns each frame into
//! an [`SseEvent`] so the shared stream driver can hand it to a mapper:
//!
//! | `:message-type` | [`SseEvent::event`] | [`SseEvent::data`] |
//! |---|---|---|
//! | `event` | the `:event-type` (e.g. `contentBlockDelta`) | the JSON payload |
//! | `exception` | `exception/<:exception-type>` (e.g. `exception/throttlingException`) | the JSON payload |
//! | `error` | `error/<:error-code>` | the `:error-message` header |
//!
//! Never panics on arbitrary bytes: a bad CRC, a length out of bounds, malformed headers or a
//! payload that is not UTF-8 is [`SseError::Malformed`].

use std::collections::VecDeque;

use aws_smithy_eventstream::frame::read_message_from;
use aws_smithy_types::event_stream::Message;
use bytes::BytesMut;

use crate::sse::{SseError, SseEvent};

/// Largest frame accepted (bytes): AWS caps an event-stream message at 16 MiB of payload and
/// 128 KiB of headers; anything larger is refused before it is buffered.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024 + 128 * 1024 + 16;

/// Smallest possible frame: prelude (12) + message CRC (4).
const MIN_FRAME_BYTES: usize = 16;

/// Prefix of [`SseEvent::event`] for `:message-type: exception` frames.
pub const EXCEPTION_PREFIX: &str = "exception/";

/// Prefix of [`SseEvent::event`] for `:message-type: error` frames.
pub const ERROR_PREFIX: &str = "error/";

/// Buffers event-stream bytes and yields one [`SseEvent`] per complete frame.
#[derive(Debug, Default)]
pub struct EventStreamDecoder {
    buf: BytesMut,
    out: VecDeque<SseEvent>,
    failed: bool,
}

impl EventStreamDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `chunk` and decodes every complete frame. After an error the decoder stays
    /// failed (further input is ignored and the same kind of error is returned).
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), SseError> {
        if self.failed {
            return Err(SseError::Malformed("event stream already failed".into()));
        }
        self.buf.extend_from_slice(chunk);
        loop {
            if self.buf.len() < 4 {
                return Ok(());
            }
            let total = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
            if !(MIN_FRAME_BYTES..=MAX_FRAME_BYTES).contains(&total) {
                return self.fail(format!("event-stream frame length {total} out of bounds"));
            }
            if self.buf.len() < total {
                return Ok(());
            }
            let frame = self.buf.split_to(total).freeze();
            match read_message_from(frame) {
                Ok(message) => match to_event(&message) {
                    Ok(Some(ev)) => self.out.push_back(ev),
                    Ok(None) => {}
                    Err(e) => return self.fail(e),
                },
                Err(e) => return self.fail(format!("bad event-stream frame: {e}")),
            }
        }
    }

    /// Marks the end of input; a partial frame left in the buffer is dropped (the stream
    /// driver reports the missing terminator).
    pub fn finish(&mut self) {
        self.buf.clear();
    }

    /// The next decoded event, if any.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        self.out.pop_front()
    }

    fn fail(&mut self, message: String) -> Result<(), SseError> {
        self.failed = true;
        self.buf.clear();
        Err(SseError::Malformed(message))
    }
}

/// The string value of header `name`, if present and a string.
fn header<'m>(message: &'m Message, name: &str) -> Option<&'m str> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| h.value().as_string().ok())
        .map(|s| s.as_str())
}

/// One frame → an event (see the module table). Frames of an unknown `:message-type` are
/// skipped (`Ok(None)`).
fn to_event(message: &Message) -> Result<Option<SseEvent>, String> {
    let payload = || std::str::from_utf8(message.payload()).map(str::to_owned).map_err(|_| "event-stream payload is not UTF-8".to_string());
    let event = match header(message, ":message-type") {
        Some("event") => {
            let ty = header(message, ":event-type").ok_or("event-stream event without :event-type")?;
            SseEvent { event: ty.to_owned(), data: payload()?, id: None }
        }
        Some("exception") => {
            let ty = header(message, ":exception-type").unwrap_or("unknownException");
            SseEvent { event: format!("{EXCEPTION_PREFIX}{ty}"), data: payload()?, id: None }
        }
        Some("error") => {
            let code = header(message, ":error-code").unwrap_or("UnknownError");
            let msg = header(message, ":error-message").unwrap_or_default();
            SseEvent { event: format!("{ERROR_PREFIX}{code}"), data: msg.to_owned(), id: None }
        }
        _ => return Ok(None),
    };
    Ok(Some(event))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::{Header, HeaderValue};
    use proptest::prelude::*;

    fn frame(kind: &str, ty_header: &'static str, ty: &str, payload: &str) -> Vec<u8> {
        let m = Message::new(payload.as_bytes().to_vec())
            .add_header(Header::new(":message-type", HeaderValue::String(kind.to_owned().into())))
            .add_header(Header::new(ty_header, HeaderValue::String(ty.to_owned().into())))
            .add_header(Header::new(":content-type", HeaderValue::String("application/json".into())));
        let mut out = Vec::new();
        write_message_to(&m, &mut out).unwrap();
        out
    }

    fn drain(d: &mut EventStreamDecoder) -> Vec<SseEvent> {
        std::iter::from_fn(|| d.next_event()).collect()
    }

    #[test]
    fn frames_split_anywhere_decode_the_same() {
        let mut bytes = frame("event", ":event-type", "messageStart", r#"{"role":"assistant"}"#);
        bytes.extend(frame("event", ":event-type", "contentBlockDelta", r#"{"contentBlockIndex":0,"delta":{"text":"café ✓"}}"#));
        bytes.extend(frame("exception", ":exception-type", "throttlingException", r#"{"message":"slow down"}"#));
        for cut in 0..bytes.len() {
            let mut d = EventStreamDecoder::new();
            d.push(&bytes[..cut]).unwrap();
            d.push(&bytes[cut..]).unwrap();
            let evs = drain(&mut d);
            assert_eq!(evs.len(), 3, "cut at {cut}");
            assert_eq!(evs[0].event, "messageStart");
            assert!(evs[1].data.contains("café ✓"));
            assert_eq!(evs[2].event, "exception/throttlingException");
        }
    }

    #[test]
    fn a_flipped_bit_fails_the_crc() {
        let mut bytes = frame("event", ":event-type", "messageStop", r#"{"stopReason":"end_turn"}"#);
        let n = bytes.len();
        bytes[n - 6] ^= 0x01; // inside the payload
        let mut d = EventStreamDecoder::new();
        assert!(matches!(d.push(&bytes), Err(SseError::Malformed(_))));
        assert!(d.next_event().is_none());
        assert!(d.push(b"more").is_err(), "stays failed");
    }

    #[test]
    fn oversized_lengths_are_refused_before_buffering() {
        let mut d = EventStreamDecoder::new();
        assert!(matches!(d.push(&u32::MAX.to_be_bytes()), Err(SseError::Malformed(_))));
        let mut d = EventStreamDecoder::new();
        assert!(d.push(&[0, 0, 0, 3]).is_err(), "shorter than a prelude");
    }

    #[test]
    fn error_frames_and_unknown_types() {
        let m = Message::new(Vec::new())
            .add_header(Header::new(":message-type", HeaderValue::String("error".into())))
            .add_header(Header::new(":error-code", HeaderValue::String("InternalFailure".into())))
            .add_header(Header::new(":error-message", HeaderValue::String("boom".into())));
        let mut bytes = Vec::new();
        write_message_to(&m, &mut bytes).unwrap();
        bytes.extend(frame("future-kind", ":event-type", "x", "{}"));
        let mut d = EventStreamDecoder::new();
        d.push(&bytes).unwrap();
        let evs = drain(&mut d);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].event, "error/InternalFailure");
        assert_eq!(evs[0].data, "boom");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Arbitrary bytes, in arbitrary chunks, never panic the decoder.
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048), cuts in proptest::collection::vec(0usize..2048, 0..8)) {
            let mut d = EventStreamDecoder::new();
            let mut at = 0;
            let mut cuts = cuts;
            cuts.sort_unstable();
            for c in cuts.into_iter().chain([data.len()]) {
                let c = c.min(data.len());
                if c < at { continue; }
                let _ = d.push(&data[at..c]);
                at = c;
                while d.next_event().is_some() {}
            }
            d.finish();
        }

        /// Valid frames with a corrupted byte anywhere never panic and never yield the
        /// corrupted frame's event as if it were intact.
        #[test]
        fn corrupted_frames_never_panic(text in ".{0,64}", at in any::<usize>(), bit in 0u8..8) {
            let mut bytes = frame("event", ":event-type", "contentBlockDelta", &serde_json::json!({"delta": {"text": text}}).to_string());
            let i = at % bytes.len();
            bytes[i] ^= 1 << bit;
            let mut d = EventStreamDecoder::new();
            let r = d.push(&bytes);
            if r.is_ok() {
                // Only a length prefix that now asks for more bytes can pass: nothing decoded.
                prop_assert!(d.next_event().is_none());
            }
        }
    }
}
