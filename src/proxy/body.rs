//! Body types on both sides of the proxy.
//!
//! `UpstreamBody` is what goes upstream: the exact buffered bytes of an inspected request, or
//! the client's stream passed through with a size limit. `ProxyBody` is what goes back to the
//! client: a small gateway error, or `ObservedBody`, which relays the upstream's frames as
//! they arrive, enforces the idle and whole-request timeouts, counts bytes, and records the
//! request (metrics + access log) exactly once when it ends, however it ends.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use prometheus::{IntCounter, IntGauge};
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

use super::record::{Outcome, Record};
use super::watch::{Hold, Watch};
use crate::metrics::UpstreamErrorKind;
use crate::upstream::{Lease, Load};

pub type BoxError = Box<dyn StdError + Send + Sync>;

/// The client sent more body bytes than `limits.max_body_bytes` allows.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds the limit of {limit} bytes")]
pub struct BodyLimitExceeded {
    pub limit: u64,
}

/// The client's request body failed while it was streamed upstream.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientBodyError(pub hyper::Error);

/// The upstream's response body stalled or outlived the request deadline.
#[derive(Debug, thiserror::Error)]
#[error("upstream response body timed out ({kind})")]
pub struct BodyTimeout {
    pub kind: &'static str,
}

/// A request body on its way upstream.
pub enum UpstreamBody {
    /// The exact bytes the client sent, already read for classification.
    Buffered(Option<Bytes>),
    /// The client's body, streamed through as it arrives.
    Streaming(LimitedIncoming),
}

impl UpstreamBody {
    pub fn buffered(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            UpstreamBody::Buffered(None)
        } else {
            UpstreamBody::Buffered(Some(bytes))
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpstreamBody::Buffered(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            UpstreamBody::Streaming(s) => Pin::new(s).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Buffered(bytes) => bytes.is_none(),
            UpstreamBody::Streaming(s) => s.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Buffered(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            UpstreamBody::Streaming(s) => s.inner.size_hint(),
        }
    }
}

/// The client's body with a byte limit and a byte counter. It reports the end of the upload
/// on `uploaded` (or by being dropped), so that the first-byte clock starts only then.
pub struct LimitedIncoming {
    inner: Incoming,
    limit: u64,
    seen: u64,
    counter: IntCounter,
    /// This request's own count, for its audit record (only when the audit trail is on).
    tally: Option<Arc<AtomicU64>>,
    uploaded: Option<oneshot::Sender<()>>,
}

impl LimitedIncoming {
    pub fn new(
        inner: Incoming,
        limit: u64,
        counter: IntCounter,
        tally: Option<Arc<AtomicU64>>,
    ) -> (Self, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let body = LimitedIncoming {
            inner,
            limit,
            seen: 0,
            counter,
            tally,
            uploaded: Some(tx),
        };
        (body, rx)
    }

    fn uploaded(&mut self) {
        if let Some(tx) = self.uploaded.take() {
            let _ = tx.send(());
        }
    }
}

impl Body for LimitedIncoming {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    self.seen = self.seen.saturating_add(len);
                    if self.seen > self.limit {
                        return Poll::Ready(Some(Err(Box::new(BodyLimitExceeded {
                            limit: self.limit,
                        }))));
                    }
                    self.counter.inc_by(len);
                    if let Some(tally) = &self.tally {
                        tally.fetch_add(len, Ordering::Relaxed);
                    }
                }
                if self.inner.is_end_stream() {
                    self.uploaded();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(ClientBodyError(e))))),
            Poll::Ready(None) => {
                self.uploaded();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// The response body sent to the client.
    #[project = ProxyBodyProj]
    pub enum ProxyBody {
        /// A response the gateway made itself (errors).
        Local { #[pin] body: Full<Bytes> },
        /// The upstream's response, relayed frame by frame.
        Upstream { #[pin] body: ObservedBody },
    }
}

impl ProxyBody {
    pub fn local(bytes: Full<Bytes>) -> Self {
        ProxyBody::Local { body: bytes }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            ProxyBodyProj::Local { body } => body.poll_frame(cx).map_err(|e| match e {}),
            ProxyBodyProj::Upstream { body } => body.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Local { body } => body.is_end_stream(),
            ProxyBody::Upstream { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Local { body } => body.size_hint(),
            ProxyBody::Upstream { body } => body.size_hint(),
        }
    }
}

/// Decrements an in-flight gauge when dropped, and releases the endpoint's load. Holds the
/// upstream connection's lease: [`InFlight::complete`] gives an HTTP/1.1 connection back to
/// its pool; dropped otherwise, the lease closes it (an HTTP/2 stream is only uncounted).
pub struct InFlight(IntGauge, Option<Load>, Option<Lease>);

impl InFlight {
    pub fn start(gauge: IntGauge) -> Self {
        gauge.inc();
        InFlight(gauge, None, None)
    }

    /// Also hold the serving endpoint's load (the balancer's in-flight count) until dropped.
    pub fn with_load(mut self, load: Option<Load>) -> Self {
        self.1 = load;
        self
    }

    /// Also hold the lease of the upstream connection the response comes on.
    pub fn with_lease(mut self, lease: Option<Lease>) -> Self {
        self.2 = lease;
        self
    }

    /// The response was read to its end: its connection may serve another request.
    pub fn complete(mut self) {
        if let Some(lease) = self.2.take() {
            lease.release();
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pin_project! {
    /// Relays an upstream response body and records the request when it ends.
    pub struct ObservedBody {
        #[pin]
        inner: Incoming,
        // One timer serves both deadlines. It is armed for the earlier of
        // `last_frame + idle` and `deadline`, and only re-armed when it fires, so that a
        // frame costs a clock read rather than a timer-wheel update.
        #[pin]
        timer: Sleep,
        idle: Duration,
        deadline: Instant,
        last_frame: Instant,
        bytes: u64,
        counter: IntCounter,
        record: Option<Record>,
        in_flight: Option<InFlight>,
        // Token usage, first token, learned ids (`None` when nothing is observed).
        watch: Option<Box<Watch>>,
        // A frame held until a shared affinity store has the id it carries.
        held: Option<(Frame<Bytes>, Hold)>,
        // An error that came before the first body byte, handed to hyper one poll later (see
        // `poll_frame`).
        deferred: Option<BoxError>,
    }

    impl PinnedDrop for ObservedBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            this.in_flight.take();
            if let Some(record) = this.record.take() {
                if let Some(watch) = this.watch.as_deref() {
                    watch.finish(Outcome::ClientClosed);
                }
                record.finish(Outcome::ClientClosed, *this.bytes);
            }
        }
    }
}

impl ObservedBody {
    pub fn new(
        inner: Incoming,
        idle: Duration,
        deadline: Instant,
        counter: IntCounter,
        record: Option<Record>,
        in_flight: InFlight,
        watch: Option<Box<Watch>>,
    ) -> Self {
        let now = Instant::now();
        let (record, in_flight) = if inner.is_end_stream() {
            // Nothing to relay (HEAD, 204, 304, empty body): hyper will not poll this body,
            // so the exchange is complete now.
            in_flight.complete();
            if let Some(record) = record {
                if let Some(watch) = watch.as_deref() {
                    watch.finish(Outcome::Completed);
                }
                record.finish(Outcome::Completed, 0);
            }
            (None, None)
        } else {
            (record, Some(in_flight))
        };
        ObservedBody {
            inner,
            timer: tokio::time::sleep_until(deadline.min(now + idle)),
            idle,
            deadline,
            last_frame: now,
            bytes: 0,
            counter,
            record,
            in_flight,
            watch,
            held: None,
            deferred: None,
        }
    }
}

impl Body for ObservedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if let Some(error) = this.deferred.take() {
            return Poll::Ready(Some(Err(error)));
        }
        if this.record.is_none() {
            // Already ended (end of stream, error or timeout).
            return Poll::Ready(None);
        }
        if let Some((_, hold)) = this.held.as_mut() {
            // Bounded by the store's own timeout.
            if hold.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if let Some((frame, _)) = this.held.take() {
                if this.inner.is_end_stream() {
                    end(
                        this.record,
                        this.in_flight,
                        this.watch,
                        Outcome::Completed,
                        *this.bytes,
                    );
                }
                return Poll::Ready(Some(Ok(frame)));
            }
        }
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let mut hold = None;
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    *this.bytes += len;
                    this.counter.inc_by(len);
                    if let Some(watch) = this.watch.as_deref_mut() {
                        hold = watch.feed(data);
                    }
                }
                *this.last_frame = Instant::now();
                if let Some(mut hold) = hold {
                    if hold.as_mut().poll(cx).is_pending() {
                        *this.held = Some((frame, hold));
                        return Poll::Pending;
                    }
                }
                if this.inner.is_end_stream() {
                    end(
                        this.record,
                        this.in_flight,
                        this.watch,
                        Outcome::Completed,
                        *this.bytes,
                    );
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let outcome = Outcome::UpstreamError(UpstreamErrorKind::BodyError);
                end(
                    this.record,
                    this.in_flight,
                    this.watch,
                    outcome,
                    *this.bytes,
                );
                if *this.bytes == 0 {
                    // The upstream broke off right after its head. An error on hyper's first
                    // poll of the body makes its HTTP/1.1 server drop the connection with the
                    // response head still unwritten, and the client would get no answer at
                    // all. One `Pending` first lets hyper write the head; the error then cuts
                    // the response, as any error after the head does.
                    *this.deferred = Some(Box::new(e));
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => {
                end(
                    this.record,
                    this.in_flight,
                    this.watch,
                    Outcome::Completed,
                    *this.bytes,
                );
                Poll::Ready(None)
            }
            Poll::Pending => loop {
                if this.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let now = Instant::now();
                let (kind, label) = if now >= *this.deadline {
                    (UpstreamErrorKind::RequestTimeout, "request")
                } else if now >= *this.last_frame + *this.idle {
                    (UpstreamErrorKind::IdleTimeout, "idle")
                } else {
                    // A frame arrived since the timer was armed: re-arm and poll it again.
                    let next = (*this.deadline).min(*this.last_frame + *this.idle);
                    this.timer.as_mut().reset(next);
                    continue;
                };
                end(
                    this.record,
                    this.in_flight,
                    this.watch,
                    Outcome::UpstreamError(kind),
                    *this.bytes,
                );
                return Poll::Ready(Some(Err(Box::new(BodyTimeout { kind: label }))));
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.record.is_none() || (self.held.is_none() && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn end(
    record: &mut Option<Record>,
    in_flight: &mut Option<InFlight>,
    watch: &Option<Box<Watch>>,
    outcome: Outcome,
    bytes: u64,
) {
    if let Some(in_flight) = in_flight.take() {
        if outcome == Outcome::Completed {
            in_flight.complete();
        }
    }
    if let Some(record) = record.take() {
        if let Some(watch) = watch.as_deref() {
            watch.finish(outcome);
        }
        record.finish(outcome, bytes);
    }
}
