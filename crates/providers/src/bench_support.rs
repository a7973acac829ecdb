//! Entry points for the criterion benchmarks (`benches/stream.rs`) into the crate-private
//! stream mappers. Not part of the public API: hidden from the docs, may change at any time.

use crate::sse::SseDecoder;
use crate::stream::{Out, StreamMapper};

/// Which upstream dialect to translate into OpenAI chunks.
#[derive(Debug, Clone, Copy)]
pub enum Dialect {
    /// OpenAI `chat.completion.chunk` passthrough (usage handling only).
    OpenAi,
    /// Anthropic Messages events → OpenAI chunks (`wire-formats.md` §7.4).
    Anthropic,
}

/// Decodes `bytes` (an upstream SSE body) in `piece`-byte network reads and translates every
/// event into OpenAI chunks, as the data plane does per chunk; returns the bytes emitted.
pub fn decode_and_translate(dialect: Dialect, bytes: &[u8], piece: usize) -> usize {
    let mut mapper: Box<dyn StreamMapper> = match dialect {
        Dialect::OpenAi => Box::new(crate::openai::OpenAiStream::new(true)),
        Dialect::Anthropic => Box::new(crate::anthropic::AnthropicStream::new("claude-bench", true)),
    };
    let mut decoder = SseDecoder::new();
    let mut out = Out::new();
    let mut emitted = 0;
    for part in bytes.chunks(piece.max(1)) {
        if decoder.push(part).is_err() {
            break;
        }
        while let Some(event) = decoder.next_event() {
            let done = mapper.on_event(event, &mut out);
            emitted += out.drain(..).flatten().map(|ev| ev.data.map_or(0, |d| d.len())).sum::<usize>();
            if done {
                return emitted;
            }
        }
    }
    emitted
}
