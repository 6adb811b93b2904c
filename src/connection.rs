//! One client connection's life after accept: limits that hyper does not enforce itself
//! (requests per connection, keep-alive idle time on HTTP/2 as well as HTTP/1.1), the drain,
//! and a bounded label for how it ended.
//!
//! Every request served on the connection passes through [`Counted`], which counts it and
//! tracks whether anything is in flight (a response counts until its body is done, so a long
//! stream is never "idle"). [`drive`] polls the hyper connection and ends it politely — the
//! current responses finish, HTTP/1.1 answers with `connection: close`, HTTP/2 sends GOAWAY —
//! when the request budget is spent, when it has been idle for `keepalive_timeout`, or when
//! the drain begins.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::clients::ClientCert;
use crate::listener::Shutdown;
use crate::metrics::{ClientConnectionError, ConnectionClose, Metrics};
use crate::served::Graceful;

/// How long a connection closed for sending no request head may take to say goodbye (an
/// HTTP/2 GOAWAY) before it is dropped.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// What one connection may do before it is closed politely.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectionLimits {
    /// Requests served before the connection is closed; 0 is no limit.
    pub(crate) max_requests: u64,
    /// Time with nothing in flight before the connection is closed; `None` is no limit.
    pub(crate) keepalive: Option<Duration>,
    /// Time from the start until a first request head is complete (`header_read_timeout`):
    /// bounds a connection that sends nothing at all, or too little for hyper-util to tell
    /// HTTP/1.1 from HTTP/2 (its protocol sniff has no timer of its own).
    pub(crate) first_request: Option<Duration>,
    /// Time a blocked write may wait for the client to read (`limits.send_timeout`).
    pub(crate) send_timeout: Option<Duration>,
    /// SO_SNDBUF for the client socket (`limits.send_buffer`); `None` is the kernel's.
    pub(crate) send_buffer: Option<usize>,
    /// TCP_NOTSENT_LOWAT for the client socket (`limits.unsent_buffer`); `None` is the
    /// kernel's. Linux and Android only.
    #[cfg_attr(not(any(target_os = "linux", target_os = "android")), allow(dead_code))]
    pub(crate) unsent_buffer: Option<u32>,
}

impl ConnectionLimits {
    /// No limits (the admin listener).
    pub(crate) const NONE: ConnectionLimits = ConnectionLimits {
        max_requests: 0,
        keepalive: None,
        first_request: None,
        send_timeout: None,
        send_buffer: None,
        unsent_buffer: None,
    };
}

/// What the service side tells the connection's driver.
struct State {
    served: AtomicU64,
    in_flight: AtomicUsize,
    /// When the last in-flight response ended, in ms since `epoch` (the connection's start).
    idle_since_ms: AtomicU64,
    epoch: Instant,
    budget_spent: AtomicBool,
    max_requests: u64,
    /// The connection speaks HTTP/2 (seen on its first request).
    h2: AtomicBool,
    /// Response bodies that handed hyper a frame and have not been polled since: on HTTP/2,
    /// a stream waiting for the client to grant flow-control window.
    awaiting_poll: AtomicUsize,
    /// Response body polls, all streams together: progress, for the HTTP/2 stall watchdog.
    polls: AtomicU64,
    /// Wakes the driver when the request budget is spent (once per connection). Nothing
    /// else wakes it per request: the keep-alive timer is lazy (see [`State::deadline`]).
    changed: Notify,
}

impl State {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn started(self: &Arc<Self>, h2: bool) -> InFlight {
        let served = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        if h2 && served == 1 {
            self.h2.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        if self.max_requests > 0 && served == self.max_requests {
            self.budget_spent.store(true, Ordering::Relaxed);
            self.changed.notify_one();
        }
        InFlight {
            state: self.clone(),
            awaiting: false,
        }
    }

    /// When the driver should look again: before the first request, at `first_request` (or
    /// `keepalive`, if sooner); after it, when the connection would have been idle for
    /// `keepalive` as things stand. The timer is lazy: requests starting and ending do not
    /// move it (that would cost a wake-up and a timer update per request); when it fires,
    /// [`State::idle_for`] says whether the connection really was idle that long.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        if self.served.load(Ordering::Relaxed) == 0 {
            // The first look also comes no later than `send_timeout`, so that the HTTP/2
            // watchdog starts in time on a connection whose first request is a stream.
            let look = [limits.first_request, limits.keepalive, limits.send_timeout]
                .into_iter()
                .flatten()
                .min()?;
            return Some(self.epoch + look);
        }
        if self.in_flight.load(Ordering::Acquire) > 0 {
            // Busy: look again after the keep-alive time, or sooner on HTTP/2, whose streams
            // the stall watchdog checks every `send_timeout`.
            let recheck = match (limits.keepalive, self.watchdog(limits)) {
                (Some(k), Some(s)) => k.min(s),
                (k, s) => k.or(s)?,
            };
            return Some(Instant::now() + recheck);
        }
        let keepalive = limits.keepalive?;
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Relaxed));
        Some(self.epoch + since + keepalive)
    }

    /// Whether the connection has gone without a first request for its whole allowance
    /// (`first_request`, or `keepalive` if sooner).
    fn first_request_overdue(&self, limits: &ConnectionLimits) -> bool {
        let allowance = match (limits.first_request, limits.keepalive) {
            (Some(f), Some(k)) => f.min(k),
            (Some(d), None) | (None, Some(d)) => d,
            (None, None) => return false,
        };
        self.epoch + allowance <= Instant::now()
    }

    /// The HTTP/2 stall watchdog's period, if it runs on this connection.
    fn watchdog(&self, limits: &ConnectionLimits) -> Option<Duration> {
        limits
            .send_timeout
            .filter(|_| self.h2.load(Ordering::Relaxed))
    }

    /// The watchdog's look: whether a response has been waiting to send and no body was
    /// polled since the last look (one `send_timeout` ago); `seen` carries the poll count.
    fn stalled(&self, seen: &mut Option<u64>) -> bool {
        let polls = self.polls.load(Ordering::Relaxed);
        if self.awaiting_poll.load(Ordering::Relaxed) == 0 {
            *seen = None;
            return false;
        }
        let stalled = *seen == Some(polls);
        *seen = Some(polls);
        stalled
    }

    /// Whether nothing has been in flight for `keepalive` now.
    fn idle_for(&self, keepalive: Duration) -> bool {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return false;
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Relaxed));
        self.epoch + since + keepalive <= Instant::now()
    }
}

/// One request or response in flight on the connection; ends when dropped.
struct InFlight {
    state: Arc<State>,
    /// This response's body handed hyper a frame and was not polled since.
    awaiting: bool,
}

impl InFlight {
    /// The body is being polled: progress, and no longer waiting for hyper.
    fn polled(&mut self) {
        self.state.polls.fetch_add(1, Ordering::Relaxed);
        if self.awaiting {
            self.awaiting = false;
            self.state.awaiting_poll.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The body handed hyper a frame: until it is polled again, hyper is waiting to send it.
    fn handed_over(&mut self) {
        self.awaiting = true;
        self.state.awaiting_poll.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let state = &self.state;
        if self.awaiting {
            state.awaiting_poll.fetch_sub(1, Ordering::Relaxed);
        }
        // Idle-since first, then the count (Release; the driver loads it with Acquire): a
        // driver that sees nothing in flight also sees when that began. (Bodies of HTTP/2
        // streams may be dropped on another thread.) Storing it while other responses are
        // still in flight is harmless: only a count of zero makes the driver read it.
        state.idle_since_ms.store(state.now_ms(), Ordering::Relaxed);
        state.in_flight.fetch_sub(1, Ordering::Release);
    }
}

/// The connection's service: `S`, with every request counted (and, on a TLS connection
/// with a client certificate, marked with its digest for `[[clients]]`).
#[derive(Clone)]
pub(crate) struct Counted<S> {
    inner: S,
    state: Arc<State>,
    cert: Option<ClientCert>,
}

impl<S, B> hyper::service::Service<Request<hyper::body::Incoming>> for Counted<S>
where
    S: hyper::service::Service<Request<hyper::body::Incoming>, Response = Response<B>>,
{
    type Response = Response<Tracked<B>>;
    type Error = S::Error;
    type Future = CountedFuture<S::Future>;

    fn call(&self, mut req: Request<hyper::body::Incoming>) -> Self::Future {
        if let Some(cert) = self.cert {
            req.extensions_mut().insert(cert);
        }
        let in_flight = self.state.started(req.version() == http::Version::HTTP_2);
        CountedFuture {
            inner: self.inner.call(req),
            in_flight: Some(in_flight),
        }
    }
}

pin_project! {
    /// The response future of [`Counted`]: hands the in-flight mark on to the body.
    pub(crate) struct CountedFuture<F> {
        #[pin]
        inner: F,
        in_flight: Option<InFlight>,
    }
}

impl<F, B, E> Future for CountedFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<Tracked<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let in_flight = this.in_flight.take();
        Poll::Ready(result.map(|resp| resp.map(|body| Tracked { body, in_flight })))
    }
}

pin_project! {
    /// A response body that keeps its connection "in flight" until it is done or dropped.
    pub(crate) struct Tracked<B> {
        #[pin]
        body: B,
        in_flight: Option<InFlight>,
    }
}

impl<B: Body> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if let Some(in_flight) = this.in_flight.as_mut() {
            in_flight.polled();
        }
        let polled = this.body.poll_frame(cx);
        if let (Poll::Ready(Some(Ok(_))), Some(in_flight)) = (&polled, this.in_flight.as_mut()) {
            in_flight.handed_over();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A new connection's counted service, and the state its driver watches.
pub(crate) fn counted<S>(
    service: S,
    limits: ConnectionLimits,
    cert: Option<ClientCert>,
) -> (Counted<S>, Watch) {
    let state = Arc::new(State {
        served: AtomicU64::new(0),
        in_flight: AtomicUsize::new(0),
        idle_since_ms: AtomicU64::new(0),
        epoch: Instant::now(),
        budget_spent: AtomicBool::new(false),
        h2: AtomicBool::new(false),
        awaiting_poll: AtomicUsize::new(0),
        polls: AtomicU64::new(0),
        max_requests: limits.max_requests,
        changed: Notify::new(),
    });
    (
        Counted {
            inner: service,
            state: state.clone(),
            cert,
        },
        Watch { state, limits },
    )
}

/// What [`drive`] watches besides the connection itself.
pub(crate) struct Watch {
    state: Arc<State>,
    limits: ConnectionLimits,
}

/// Why [`drive`] stops serving a connection before it ends by itself.
enum Ending {
    /// Finish what is in flight, then close (with the reason to count, if any).
    Polite(Option<ConnectionClose>),
    /// No request head arrived in time: close now.
    NoRequest,
    /// HTTP/2 streams had data ready and the client took none for `send_timeout`: drop it.
    Stalled,
}

/// Serve `conn` to the end, closing it politely when its limits say so or the drain begins.
pub(crate) async fn drive<C>(
    conn: C,
    watch: Watch,
    mut shutdown: Shutdown,
    metrics: &Metrics,
    listener: &'static str,
    peer: SocketAddr,
) where
    C: Graceful,
{
    tokio::pin!(conn);
    let Watch { state, limits } = watch;
    // Body polls seen at the watchdog's last look, if something was waiting then.
    let mut stalled_at: Option<u64> = None;
    let result = loop {
        let deadline = state.deadline(&limits);
        let ending = tokio::select! {
            // The connection first: a head already waiting wins over a timer due now.
            biased;
            result = conn.as_mut() => break result,
            _ = shutdown.wait_for(|draining| draining.is_some()) => Ending::Polite(None),
            _ = state.changed.notified() => {
                if !state.budget_spent.load(Ordering::Relaxed) {
                    continue;
                }
                Ending::Polite(Some(ConnectionClose::MaxRequests))
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                if state.served.load(Ordering::Relaxed) == 0 {
                    if !state.first_request_overdue(&limits) {
                        continue; // an early look (send_timeout): nothing to do yet
                    }
                    Ending::NoRequest
                } else if state.watchdog(&limits).is_some() && state.stalled(&mut stalled_at) {
                    Ending::Stalled
                } else if !limits.keepalive.is_some_and(|k| state.idle_for(k)) {
                    continue; // busy, or busy since the timer was set: look again later
                } else {
                    Ending::Polite(Some(ConnectionClose::KeepaliveTimeout))
                }
            }
        };
        let close = match ending {
            Ending::Polite(close) => close,
            Ending::Stalled => {
                // HTTP/2: responses had data ready and the client took none of it for a whole
                // `send_timeout` (no flow-control window granted). Politeness would wait for
                // those very streams: drop the connection, and the upstream requests with it.
                metrics
                    .connections
                    .error(ClientConnectionError::SendTimeout);
                tracing::debug!(listener, %peer, "HTTP/2 client took nothing for send_timeout; closing");
                return;
            }
            Ending::NoRequest => {
                // No request head within `header_read_timeout`: an idle or trickling client.
                // Close it (GOAWAY on HTTP/2, which it may have spoken); hyper may still be
                // waiting for the rest of a head, so do not wait long.
                tracing::debug!(listener, %peer, "no request head in time; closing");
                conn.as_mut().graceful_shutdown();
                let grace = tokio::time::timeout(FIRST_REQUEST_GRACE, conn.as_mut()).await;
                if state.served.load(Ordering::Relaxed) > 0 {
                    // A head that completed meanwhile was accepted: serve it to the end, as
                    // the polite path does (GOAWAY or `connection: close` already went out).
                    match grace {
                        Ok(result) => break result,
                        Err(_) => break conn.await,
                    }
                }
                // Counted once here, whatever hyper made of it (its own header timer may
                // have fired too).
                metrics
                    .connections
                    .error(ClientConnectionError::HeaderTimeout);
                return;
            }
        };
        if let Some(reason) = close {
            metrics.connections.closed(reason);
        }
        conn.as_mut().graceful_shutdown();
        break conn.await;
    };
    if let Err(e) = result {
        let kind = ClientConnectionError::of(&*e);
        if let Some(kind) = kind {
            metrics.connections.error(kind);
        }
        tracing::debug!(listener, %peer, error = %e, "connection ended with an error");
    }
}
