//! The generic streamed-answer driver: reads the upstream body chunk by chunk (idle timeout per
//! chunk), decodes SSE, lets a provider-specific [`StreamMapper`] turn events into
//! [`StreamEvent`]s, and turns a body that ends without the terminator into
//! [`UpstreamError::EarlyClose`].

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, Stream, StreamExt};

use crate::eventstream::EventStreamDecoder;
use crate::ndjson::NdjsonDecoder;
use crate::sse::{SseDecoder, SseError, SseEvent};
use crate::{ChatStream, StreamEvent, UpstreamError};

/// Output queue of a mapper.
pub(crate) type Out = VecDeque<Result<StreamEvent, UpstreamError>>;

/// Turns the SSE events of one provider into OpenAI chunks.
pub(crate) trait StreamMapper: Send + 'static {
    /// Handles one event, pushing zero or more items to `out`. Returns `true` when the stream is
    /// complete: its terminator was seen or an error was pushed (nothing is read after that).
    fn on_event(&mut self, event: SseEvent, out: &mut Out) -> bool;
}

/// How the upstream body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Server-sent events.
    Sse,
    /// Server-sent events plus bare JSON values outside `data:` (Gemini, see
    /// [`SseDecoder::with_raw_json`]).
    SseRawJson,
    /// One JSON value per line (Ollama); each line reaches the mapper as an event's `data`.
    Ndjson,
    /// AWS binary event stream (Bedrock ConverseStream), see [`crate::eventstream`].
    EventStream,
}

enum Decoder {
    Sse(SseDecoder),
    Ndjson(NdjsonDecoder),
    EventStream(EventStreamDecoder),
}

impl Decoder {
    fn new(framing: Framing) -> Self {
        match framing {
            Framing::Sse => Self::Sse(SseDecoder::new()),
            Framing::SseRawJson => Self::Sse(SseDecoder::new().with_raw_json()),
            Framing::Ndjson => Self::Ndjson(NdjsonDecoder::new()),
            Framing::EventStream => Self::EventStream(EventStreamDecoder::new()),
        }
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        match self {
            Self::Sse(d) => d.push(bytes),
            Self::Ndjson(d) => d.push(bytes),
            Self::EventStream(d) => d.push(bytes),
        }
    }

    fn finish(&mut self) {
        match self {
            Self::Sse(d) => d.finish(),
            Self::Ndjson(d) => d.finish(),
            Self::EventStream(d) => d.finish(),
        }
    }

    fn next_event(&mut self) -> Option<SseEvent> {
        match self {
            Self::Sse(d) => d.next_event(),
            Self::Ndjson(d) => d.next_line().map(|data| SseEvent { event: String::new(), data, id: None }),
            Self::EventStream(d) => d.next_event(),
        }
    }
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

struct Driver<M> {
    body: Option<Body>,
    decoder: Decoder,
    mapper: M,
    queue: Out,
    idle: Duration,
}

impl<M: StreamMapper> Driver<M> {
    /// Runs every complete event through the mapper; `true` once the stream is complete.
    fn pump(&mut self) -> bool {
        while let Some(ev) = self.decoder.next_event() {
            if self.mapper.on_event(ev, &mut self.queue) {
                return true;
            }
        }
        false
    }

    fn fail(&mut self, e: UpstreamError) {
        self.body = None; // drops the response: the upstream request is cancelled
        self.queue.push_back(Err(e));
    }

    /// After the terminator: read the rest of the body (normally just the end of the chunked
    /// encoding) so the connection can go back to the pool, without delaying our stream.
    fn release(&mut self) {
        let Some(mut body) = self.body.take() else { return };
        for _ in 0..4 {
            match body.next().now_or_never() {
                Some(Some(Ok(_))) => continue,
                Some(None) | Some(Some(Err(_))) => return,
                None => break,
            }
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let drain = async { while let Some(Ok(_)) = body.next().await {} };
                let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
            });
        }
    }
}

/// The [`ChatStream`] of one upstream response. Dropping it drops the response.
pub(crate) fn drive<M: StreamMapper>(resp: reqwest::Response, mapper: M, idle: Duration, framing: Framing) -> ChatStream {
    let driver = Driver {
        body: Some(Box::pin(resp.bytes_stream())),
        decoder: Decoder::new(framing),
        mapper,
        queue: VecDeque::new(),
        idle,
    };
    Box::pin(futures::stream::unfold(driver, |mut d| async move {
        loop {
            if let Some(item) = d.queue.pop_front() {
                return Some((item, d));
            }
            let body = d.body.as_mut()?;
            match tokio::time::timeout(d.idle, body.next()).await {
                Err(_) => d.fail(UpstreamError::Timeout("idle between stream chunks")),
                Ok(None) => {
                    d.body = None;
                    d.decoder.finish();
                    if !d.pump() {
                        d.queue.push_back(Err(UpstreamError::EarlyClose));
                    }
                }
                Ok(Some(Err(e))) => {
                    tracing::debug!(error = %e.without_url(), "upstream stream broke");
                    d.fail(UpstreamError::EarlyClose);
                }
                Ok(Some(Ok(bytes))) => match d.decoder.push(&bytes) {
                    Err(e) => d.fail(UpstreamError::Protocol(e.to_string())),
                    Ok(()) => {
                        if d.pump() {
                            d.release();
                        }
                    }
                },
            }
        }
    }))
}
