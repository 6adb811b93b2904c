//! The mock's response body: a whole buffer, a list of SSE events sent one frame each (with an
//! optional delay between them), or a pattern of n bytes in 64 KiB frames; optionally held open
//! after the first frame. It tells the request's tracker when it was fully handed over.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use super::record::Tracker;

/// Size of a pattern frame.
pub(crate) const PATTERN_FRAME: usize = 64 * 1024;

/// A 64 KiB block of the pattern `byte[i] = i % 256`; every frame is a prefix of it.
pub(crate) fn pattern_block() -> Bytes {
    // Truncation is the point: the pattern repeats every 256 bytes.
    #[allow(clippy::cast_possible_truncation)]
    let block: Vec<u8> = (0..PATTERN_FRAME).map(|i| i as u8).collect();
    Bytes::from(block)
}

enum Frames {
    Once(Option<Bytes>),
    Events(VecDeque<Bytes>),
    Pattern { block: Bytes, remaining: u64 },
}

impl Frames {
    fn next(&mut self) -> Option<Bytes> {
        match self {
            Frames::Once(bytes) => bytes.take(),
            Frames::Events(events) => events.pop_front(),
            Frames::Pattern { block, remaining } => {
                if *remaining == 0 {
                    return None;
                }
                let n = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(block.len());
                *remaining -= n as u64;
                Some(block.slice(..n))
            }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Frames::Once(bytes) => bytes.is_none(),
            Frames::Events(events) => events.is_empty(),
            Frames::Pattern { remaining, .. } => *remaining == 0,
        }
    }

    fn len(&self) -> Option<u64> {
        match self {
            Frames::Once(bytes) => Some(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Frames::Events(_) => None,
            Frames::Pattern { remaining, .. } => Some(*remaining),
        }
    }
}

/// The response body of every mock answer.
pub(crate) struct MockBody {
    frames: Frames,
    /// After the first frame, stay pending until dropped.
    hold: bool,
    sent_any: bool,
    /// Delay before every frame but the first.
    delay: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    tracker: Option<Tracker>,
}

impl MockBody {
    fn new(frames: Frames) -> Self {
        Self {
            frames,
            hold: false,
            sent_any: false,
            delay: Duration::ZERO,
            sleep: None,
            tracker: None,
        }
    }

    /// A whole body in one frame (nothing if empty).
    pub(crate) fn full(bytes: Bytes) -> Self {
        Self::new(Frames::Once((!bytes.is_empty()).then_some(bytes)))
    }

    pub(crate) fn empty() -> Self {
        Self::new(Frames::Once(None))
    }

    /// SSE events, one frame each, `delay` apart.
    pub(crate) fn events(events: Vec<Bytes>, delay: Duration) -> Self {
        let mut body = Self::new(Frames::Events(events.into()));
        body.delay = delay;
        body
    }

    /// `len` bytes of the pattern, in frames of at most [`PATTERN_FRAME`] bytes.
    pub(crate) fn pattern(block: Bytes, len: u64) -> Self {
        Self::new(Frames::Pattern {
            block,
            remaining: len,
        })
    }

    /// Send the first frame, then hold the stream open until the body is dropped.
    pub(crate) fn hold(mut self) -> Self {
        self.hold = true;
        self
    }

    /// Report completion (or abandonment, if dropped early) to this tracker.
    pub(crate) fn tracked(mut self, tracker: Option<Tracker>) -> Self {
        self.tracker = tracker;
        self
    }

    fn complete(&mut self) {
        if let Some(tracker) = self.tracker.take() {
            tracker.complete();
        }
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.hold && this.sent_any {
            // Held: never wakes; the connection drops the body when the client goes away.
            return Poll::Pending;
        }
        if this.sent_any && !this.delay.is_zero() && !this.frames.is_empty() {
            let delay = this.delay;
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        match this.frames.next() {
            Some(bytes) => {
                this.sent_any = true;
                if !this.hold && this.frames.is_empty() {
                    // Handing over the last frame: the connection may not poll again.
                    this.complete();
                }
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            None if this.hold => Poll::Pending,
            None => {
                this.complete();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.hold && self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.frames.len() {
            Some(len) if !self.hold => SizeHint::with_exact(len),
            _ => SizeHint::default(),
        }
    }
}

impl Drop for MockBody {
    fn drop(&mut self) {
        // A body that was empty from the start may be dropped without ever being polled.
        if !self.hold && self.frames.is_empty() {
            self.complete();
        }
        // Otherwise the tracker's own drop records that the client went away.
    }
}
