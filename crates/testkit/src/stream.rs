//! Scripted response bodies: a list of writes and pauses, played chunk by chunk through
//! `axum::body::Body::from_stream`, so every write is flushed on its own when a pause follows.
//! A body dropped before its script ends counts as a client disconnect.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;

use crate::state::MockState;

/// Pause between the two halves of a split multibyte character: long enough for the first
/// half to leave in its own TCP segment.
const SPLIT_GAP: Duration = Duration::from_millis(15);

/// One step of a scripted body.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    Write(Bytes),
    Sleep(Duration),
    /// End the body with an error: hyper aborts the connection (no chunked terminator).
    Abort,
}

/// Builds SSE scripts: framing (`\n` or `\r\n`), keep-alive comments, inter-event delays and
/// UTF-8 splitting, per the scenario.
pub(crate) struct SseScript {
    steps: Vec<Step>,
    eol: &'static str,
    keepalive: bool,
    delay: Duration,
    utf8_split: bool,
    events: usize,
}

impl SseScript {
    pub(crate) fn new(crlf: bool, keepalive: bool, delay: Duration, utf8_split: bool) -> Self {
        SseScript {
            steps: Vec::new(),
            eol: if crlf { "\r\n" } else { "\n" },
            keepalive,
            delay,
            utf8_split,
            events: 0,
        }
    }

    /// Appends one event: optional `event:` line, one `data:` line, blank line.
    pub(crate) fn event(&mut self, name: Option<&str>, data: &str) {
        if self.events > 0 && !self.delay.is_zero() {
            self.steps.push(Step::Sleep(self.delay));
        }
        self.events += 1;
        if self.keepalive {
            let comment = format!(": keep-alive{eol}{eol}", eol = self.eol);
            self.steps.push(Step::Write(Bytes::from(comment)));
        }
        let mut text = String::with_capacity(data.len() + 32);
        if let Some(name) = name {
            text.push_str("event: ");
            text.push_str(name);
            text.push_str(self.eol);
        }
        text.push_str("data: ");
        text.push_str(data);
        text.push_str(self.eol);
        text.push_str(self.eol);
        self.push_text(text.into_bytes());
    }

    /// Appends a JSON event.
    pub(crate) fn json(&mut self, name: Option<&str>, value: &serde_json::Value) {
        self.event(name, &value.to_string());
    }

    fn push_text(&mut self, bytes: Vec<u8>) {
        if self.utf8_split {
            // Split inside the first multibyte character: after its lead byte.
            if let Some(lead) = bytes.iter().position(|b| *b >= 0xC0) {
                let mut first = bytes;
                let second = first.split_off(lead + 1);
                self.steps.push(Step::Write(Bytes::from(first)));
                self.steps.push(Step::Sleep(SPLIT_GAP));
                self.steps.push(Step::Write(Bytes::from(second)));
                return;
            }
        }
        self.steps.push(Step::Write(Bytes::from(bytes)));
    }

    /// Appends bytes outside any SSE framing (e.g. Gemini's bare JSON error object).
    pub(crate) fn raw(&mut self, bytes: Vec<u8>) {
        if self.events > 0 && !self.delay.is_zero() {
            self.steps.push(Step::Sleep(self.delay));
        }
        self.events += 1;
        self.steps.push(Step::Write(Bytes::from(bytes)));
    }

    /// Ends the script by aborting the connection, after a pause so that everything written
    /// so far (headers included) has been flushed to the socket.
    pub(crate) fn abort(&mut self) {
        self.steps.push(Step::Sleep(SPLIT_GAP));
        self.steps.push(Step::Abort);
    }

    pub(crate) fn into_steps(self) -> Vec<Step> {
        self.steps
    }
}

/// The body stream that plays a script.
pub(crate) struct ScriptedBody {
    steps: std::vec::IntoIter<Step>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    finished: bool,
    state: Arc<MockState>,
}

impl ScriptedBody {
    pub(crate) fn new(steps: Vec<Step>, state: Arc<MockState>) -> Self {
        ScriptedBody {
            steps: steps.into_iter(),
            sleep: None,
            finished: false,
            state,
        }
    }
}

impl Stream for ScriptedBody {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(sleep) = this.sleep.as_mut() {
                match sleep.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => this.sleep = None,
                }
            }
            match this.steps.next() {
                None => {
                    this.finished = true;
                    return Poll::Ready(None);
                }
                Some(Step::Write(bytes)) => {
                    if this.steps.len() == 0 {
                        this.finished = true;
                    }
                    return Poll::Ready(Some(Ok(bytes)));
                }
                Some(Step::Sleep(d)) => this.sleep = Some(Box::pin(tokio::time::sleep(d))),
                Some(Step::Abort) => {
                    this.finished = true;
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "gatehouse-mock: scripted early close",
                    ))));
                }
            }
        }
    }
}

impl Drop for ScriptedBody {
    fn drop(&mut self) {
        if !self.finished {
            self.state.add_disconnect();
        }
    }
}

/// Counts a disconnect when a handler future is dropped before it finished (the client left
/// while the mock was still waiting, e.g. during `wait_ms`).
pub(crate) struct HandlerGuard {
    state: Arc<MockState>,
    armed: bool,
}

impl HandlerGuard {
    pub(crate) fn new(state: Arc<MockState>) -> Self {
        HandlerGuard { state, armed: true }
    }

    pub(crate) fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for HandlerGuard {
    fn drop(&mut self) {
        if self.armed {
            self.state.add_disconnect();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn writes(steps: &[Step]) -> Vec<Vec<u8>> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Write(b) => Some(b.to_vec()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn framing_lf_and_crlf() {
        let mut s = SseScript::new(false, false, Duration::ZERO, false);
        s.event(Some("ping"), "{}");
        s.event(None, "[DONE]");
        let w = writes(&s.into_steps());
        assert_eq!(w[0], b"event: ping\ndata: {}\n\n");
        assert_eq!(w[1], b"data: [DONE]\n\n");

        let mut s = SseScript::new(true, true, Duration::from_millis(3), false);
        s.event(None, "a");
        s.event(None, "b");
        let steps = s.into_steps();
        assert!(matches!(steps[2], Step::Sleep(_)));
        let w = writes(&steps);
        assert_eq!(w[0], b": keep-alive\r\n\r\n");
        assert_eq!(w[1], b"data: a\r\n\r\n");
        assert_eq!(w[3], b"data: b\r\n\r\n");
    }

    #[test]
    fn utf8_split_cuts_inside_a_character() {
        let mut s = SseScript::new(false, false, Duration::ZERO, true);
        s.event(None, "caf\u{e9}!");
        let w = writes(&s.into_steps());
        assert_eq!(w.len(), 2);
        assert!(std::str::from_utf8(&w[0]).is_err());
        assert!(std::str::from_utf8(&w[1]).is_err());
        let joined: Vec<u8> = w.concat();
        assert_eq!(
            std::str::from_utf8(&joined).unwrap(),
            "data: caf\u{e9}!\n\n"
        );
    }
}
