//! Upstream connections: a keep-alive pool per thread slot on hyper's own client connections
//! (`hyper::client::conn`), in place of hyper-util's legacy client.
//!
//! Each thread slot (`runtime::slot`: one per worker, slot 0 for every other thread) has its
//! own hosts, so a connection is only ever used by the thread whose event loop drives it,
//! and the slot's lock is never contended. Per host (scheme and authority):
//! - HTTP/1.1 connections are leased, one request at a time. A lease goes back to the idle
//!   list when its response has been read to the end ([`Lease::release`]); dropped any
//!   earlier (an error, a timeout, a client gone), it takes its connection with it, since
//!   hyper cannot reuse a connection with an unread response on it.
//! - HTTP/2 connections are shared: each carries up to `http2_max_streams` streams
//!   (requests waiting for their response head, and responses still open), oldest
//!   connection first. A request that finds every one full, or none, makes a new one,
//!   one request at a time and in a task of its own (the others wait for it, and get it
//!   even if that request is cancelled meanwhile). Without the cap, a request beyond the
//!   upstream's `SETTINGS_MAX_CONCURRENT_STREAMS` would wait inside hyper, unseen, until
//!   some stream ended: minutes behind long SSE answers.
//! - Idle connections close after `pool_idle_timeout` (a reaper task per slot) and at most
//!   `pool_max_idle_per_host` are kept. An HTTP/2 connection is idle once it has no open
//!   stream: one carrying long responses (SSE) is kept however long they run.
//! - A request sent on a reused connection that closed before taking it (hyper hands the
//!   request back unsent) goes once more, on a new connection: the upstream never saw it.
//!
//! Measured against the legacy client (`perf` at saturation): its pool checkout, connector
//! clone per request, SipHash of the pool key, boxed request future and the task it spawned
//! per HTTP/1.1 request to return the connection were 9.5% of the gateway's CPU.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures_util::FutureExt as _;
use http::header::{HeaderValue, HOST};
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::client::legacy::connect::Connection as _;
use hyper_util::rt::TokioTimer;
use tokio::time::Instant;
use tower::ServiceExt as _;

use super::connect::Connector;
use crate::metrics::{ConnProtocol, OpenConnection, UpstreamConnMetrics};
use crate::proxy::body::UpstreamBody;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request could not be sent or answered on an upstream connection.
#[derive(Debug)]
pub enum ConnError {
    /// Connecting failed: TCP, or the TLS handshake (bounded by the connect timeout).
    Connect(BoxError),
    /// The HTTP/2 handshake failed.
    Handshake(hyper::Error),
    /// The request failed on its connection (hyper's error: canceled before it was
    /// written, reset, a malformed response, ...).
    Request(hyper::Error),
    /// A WebSocket handshake failed (those go through hyper-util's client, whose HTTP/1.1
    /// connections can be upgraded and are never reused).
    Upgrade(hyper_util::client::legacy::Error),
}

impl ConnError {
    /// Connecting failed (no request reached the upstream).
    pub fn is_connect(&self) -> bool {
        match self {
            ConnError::Connect(_) => true,
            ConnError::Upgrade(e) => e.is_connect(),
            ConnError::Handshake(_) | ConnError::Request(_) => false,
        }
    }
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnError::Connect(_) => "client error (Connect)",
            ConnError::Handshake(_) => "client error (Handshake)",
            ConnError::Request(_) => "client error (SendRequest)",
            ConnError::Upgrade(e) => return e.fmt(f),
        })
    }
}

impl std::error::Error for ConnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnError::Connect(e) => Some(&**e),
            ConnError::Handshake(e) | ConnError::Request(e) => Some(e),
            ConnError::Upgrade(e) => e.source(),
        }
    }
}

/// How an upstream's connections are made and kept.
pub struct Settings {
    /// HTTP/2 only (prior knowledge on cleartext, ALPN `h2` on TLS).
    pub http2_only: bool,
    pub idle_timeout: Duration,
    pub max_idle_per_host: usize,
    /// Bytes read from an HTTP/1.1 connection at a time: its read buffer's fixed size, and the
    /// largest response head it accepts.
    pub h1_read_buffer: usize,
    /// HTTP/2 flow-control window the gateway grants an upstream per stream; a connection
    /// gets one per stream it may carry.
    pub h2_stream_window: u32,
    /// Streams one HTTP/2 connection carries before another is made.
    pub h2_max_streams: usize,
}

/// HTTP/2's largest flow-control window (2^31-1).
const MAX_H2_WINDOW: u32 = (1 << 31) - 1;

/// One upstream's connections, for every thread slot.
pub struct Conns {
    dial: Arc<Dial>,
    /// Slot 0: every thread that is not a worker (and any slot beyond `workers`).
    first: Arc<Slot>,
    /// Slots `1..`: one per worker thread.
    workers: Box<[Arc<Slot>]>,
}

/// Spawns hyper's HTTP/2 tasks with their futures boxed. hyper spawns one to pipe each
/// request's body, and its h2 stream keeps that task's waker until the stream ends: a task
/// allocation lives as long as the response. Spawned inline (`TokioExecutor`), the 2.6 KiB
/// future is in that allocation; boxed, it is freed when the pipe finishes and only the
/// task's small header outlives it (heaptrack, 1,000 idle SSE streams on an h2c upstream:
/// 2.68 MiB of pipe tasks held, against 0.12 MiB boxed). hyper-util's legacy client boxes
/// them the same way.
#[derive(Clone, Copy, Debug)]
struct BoxingExecutor;

impl<F> hyper::rt::Executor<F> for BoxingExecutor
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(Box::pin(future));
    }
}

/// A response's hold on the connection it came on, kept as long as its body is read; see
/// [`Lease::release`].
pub struct Lease(Held);

enum Held {
    /// A leased HTTP/1.1 connection: closed when dropped, unless released.
    H1 {
        tx: http1::SendRequest<UpstreamBody>,
        slot: Arc<Slot>,
        host: usize,
    },
    /// A stream of a shared HTTP/2 connection, counted until the lease is dropped.
    H2 { _open: Stream },
}

impl Lease {
    /// The response was read to its end: an HTTP/1.1 connection may take another request.
    /// (Dropping the lease instead closes it; for HTTP/2 both only end the stream's count.)
    pub fn release(self) {
        match self.0 {
            Held::H1 { tx, slot, host } => slot.put_idle(host, tx),
            Held::H2 { .. } => {}
        }
    }
}

/// One open stream of a shared HTTP/2 connection, counted until dropped: the reaper keeps a
/// connection with open streams.
struct Stream(Arc<AtomicUsize>);

impl Stream {
    fn open(streams: &Arc<AtomicUsize>) -> Stream {
        streams.fetch_add(1, Ordering::Relaxed);
        Stream(streams.clone())
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connections of one thread slot.
struct Slot {
    hosts: Mutex<Vec<Host>>,
    idle_timeout: Duration,
    max_idle: usize,
    /// Streams per HTTP/2 connection.
    max_streams: usize,
    /// The reaper task runs (started with the first idle connection).
    reaping: AtomicBool,
}

struct Host {
    scheme: Scheme,
    authority: Authority,
    idle: VecDeque<Idle>,
    /// Open HTTP/2 connections, oldest first.
    h2: Vec<Shared>,
    /// The host answered ALPN with `h2` once: its next connections are HTTP/2 too.
    alpn_h2: bool,
    /// Held while an HTTP/2 connection is being made, so that only one request makes it.
    h2_connecting: Arc<tokio::sync::Mutex<()>>,
    /// HTTP/2 connections that failed to be made under `h2_connecting`.
    h2_failures: u64,
}

struct Idle {
    tx: http1::SendRequest<UpstreamBody>,
    since: Instant,
}

struct Shared {
    tx: http2::SendRequest<UpstreamBody>,
    /// Last checked out, or last seen by the reaper with a stream open.
    used: Instant,
    /// Its open streams (responses whose body is still being read).
    streams: Arc<AtomicUsize>,
}

impl Shared {
    fn checkout(&mut self, now: Instant) -> Checked {
        self.used = now;
        Checked::H2(self.tx.clone(), Stream::open(&self.streams))
    }
}

impl Host {
    /// A stream on the oldest open HTTP/2 connection with fewer than `max_streams`; closed
    /// ones met on the way are dropped.
    fn h2_stream(&mut self, max_streams: usize, now: Instant) -> Option<Checked> {
        self.h2.retain(|s| !s.tx.is_closed());
        self.h2
            .iter_mut()
            .find(|s| s.streams.load(Ordering::Relaxed) < max_streams)
            .map(|s| s.checkout(now))
    }
}

/// A connection checked out for one request.
enum Checked {
    H1(http1::SendRequest<UpstreamBody>),
    H2(http2::SendRequest<UpstreamBody>, Stream),
}

impl Conns {
    /// `slots`: slot 0 and one per worker thread (`runtime::slot`); `metrics`: the
    /// upstream's connection series.
    pub fn new(
        connector: Connector,
        settings: &Settings,
        slots: usize,
        metrics: UpstreamConnMetrics,
    ) -> Conns {
        let mut h1 = http1::Builder::new();
        // A fixed-size read buffer. hyper's adaptive one (`max_buf_size`) doubles its capacity
        // whenever its next read size grows while the old buffer is still in use, so a
        // connection that once carried a large body kept ~120 KiB for the rest of its life:
        // 72% of the heap with 1,000 slow readers held (heaptrack).
        h1.read_buf_exact_size(Some(settings.h1_read_buffer));
        let mut h2 = http2::Builder::new(BoxingExecutor);
        // A stream's window stays taken while its client has not read what arrived, and the
        // connection's window is shared by every stream on it: with hyper's 2 MiB per stream
        // and 5 MiB per connection, three slow clients stalled every other stream. One stream
        // window per stream the connection may carry means they never can.
        let max_streams = settings.h2_max_streams.max(1);
        let connection_window = u32::try_from(max_streams)
            .unwrap_or(u32::MAX)
            .saturating_mul(settings.h2_stream_window)
            .min(MAX_H2_WINDOW);
        h2.timer(TokioTimer::new())
            .initial_stream_window_size(settings.h2_stream_window)
            .initial_connection_window_size(connection_window);
        let slot = || {
            Arc::new(Slot {
                hosts: Mutex::new(Vec::new()),
                idle_timeout: settings.idle_timeout,
                max_idle: settings.max_idle_per_host,
                max_streams,
                reaping: AtomicBool::new(false),
            })
        };
        Conns {
            dial: Arc::new(Dial {
                connector,
                h1,
                h2,
                http2_only: settings.http2_only,
                metrics,
            }),
            first: slot(),
            workers: (1..slots).map(|_| slot()).collect(),
        }
    }

    /// Send `req` (an absolute URI: the scheme and authority choose the host) and wait for
    /// the response head. The lease of its connection goes with the response body: release
    /// it when the body has been read to the end, drop it otherwise.
    pub async fn send(
        &self,
        mut req: Request<UpstreamBody>,
    ) -> Result<(Response<Incoming>, Lease), ConnError> {
        let slot = self.slot();
        let uri = req.uri().clone();
        let host = slot.host(&uri);
        // A reused connection that closed before taking the request gives it back unsent:
        // once more on a new connection. A new connection's failure is final.
        let mut reuse = true;
        loop {
            let checked = match reuse.then(|| slot.checkout(host)).flatten() {
                Some(checked) => checked,
                None => {
                    reuse = false;
                    // Rare, and its future (connector, TLS and HTTP/2 handshakes) is large:
                    // boxed, so that every request's future stays small.
                    Box::pin(self.connect(slot, host, &uri)).await?
                }
            };
            match checked {
                Checked::H1(mut tx) => {
                    let added_host = h1_form(&mut req);
                    match tx.try_send_request(req).await {
                        Ok(response) => {
                            let lease = Lease(Held::H1 {
                                tx,
                                slot: slot.clone(),
                                host,
                            });
                            return Ok((response, lease));
                        }
                        Err(mut e) => match e.take_message() {
                            Some(back) if reuse => {
                                req = back;
                                *req.uri_mut() = uri.clone();
                                if added_host {
                                    req.headers_mut().remove(HOST);
                                }
                                reuse = false;
                            }
                            _ => return Err(ConnError::Request(e.into_error())),
                        },
                    }
                }
                Checked::H2(mut tx, stream) => match tx.try_send_request(req).await {
                    Ok(response) => return Ok((response, Lease(Held::H2 { _open: stream }))),
                    Err(mut e) => match e.take_message() {
                        Some(back) if reuse => {
                            slot.drop_h2(host);
                            req = back;
                            reuse = false;
                        }
                        _ => return Err(ConnError::Request(e.into_error())),
                    },
                },
            }
        }
    }

    /// The calling thread's slot (slot 0 for a slot this upstream was not built for).
    fn slot(&self) -> &Arc<Slot> {
        crate::runtime::slot()
            .checked_sub(1)
            .and_then(|worker| self.workers.get(worker))
            .unwrap_or(&self.first)
    }

    /// A new connection to `host`: HTTP/2 when the upstream is HTTP/2 only or ALPN chose
    /// it, else HTTP/1.1. Its task runs on the calling thread's runtime.
    ///
    /// HTTP/2 connections are made one at a time per host: the request holding the host's
    /// connect lock makes one, in a task of its own, so that a request cancelled meanwhile
    /// (its client gone, its deadline passed) does not take the handshake with it. The
    /// requests waiting for the lock take a stream on it, or on one whose stream ended
    /// meanwhile, and the first that finds them all full makes the next. Should making one
    /// fail, each waiter tries on its own (in parallel, each bounded by the connect
    /// timeout) rather than one after the other.
    async fn connect(
        &self,
        slot: &Arc<Slot>,
        host: usize,
        uri: &Uri,
    ) -> Result<Checked, ConnError> {
        if !(self.dial.http2_only || slot.alpn_h2(host)) {
            return self.dial.open(slot, host, uri).await;
        }
        let lock = slot.h2_lock(host);
        let failures = slot.h2_failures(host);
        let guard = lock.lock_owned().await;
        if let Some(stream) = slot.h2_stream(host) {
            return Ok(stream);
        }
        if slot.h2_failures(host) != failures {
            drop(guard);
            return self.dial.open(slot, host, uri).await;
        }
        let (dial, slot, uri) = (self.dial.clone(), slot.clone(), uri.clone());
        tokio::spawn(async move {
            let made = dial.open(&slot, host, &uri).await;
            if made.is_err() {
                slot.h2_failed(host);
            }
            drop(guard);
            made
        })
        .await
        .map_err(|e| ConnError::Connect(Box::new(e)))?
    }
}

/// How an upstream's connections are made: its connector and hyper's two handshakes.
struct Dial {
    connector: Connector,
    h1: http1::Builder,
    h2: http2::Builder<BoxingExecutor>,
    http2_only: bool,
    metrics: UpstreamConnMetrics,
}

impl Dial {
    /// Connect (TCP, TLS) and hand the connection to hyper; its task is spawned, and an
    /// HTTP/2 connection becomes the host's shared one.
    async fn open(&self, slot: &Arc<Slot>, host: usize, uri: &Uri) -> Result<Checked, ConnError> {
        let io = self
            .connector
            .clone()
            .oneshot(uri.clone())
            .await
            .map_err(ConnError::Connect)?;
        if self.http2_only || io.connected().is_negotiated_h2() {
            let (tx, conn) = self.h2.handshake(io).await.map_err(ConnError::Handshake)?;
            let open = self.metrics.opened(ConnProtocol::Http2);
            tokio::spawn(drive(conn, "HTTP/2", open));
            let streams = Arc::default();
            let stream = Stream::open(&streams);
            slot.set_h2(host, tx.clone(), streams);
            Ok(Checked::H2(tx, stream))
        } else {
            let (tx, conn) = self.h1.handshake(io).await.map_err(ConnError::Handshake)?;
            let open = self.metrics.opened(ConnProtocol::Http1);
            tokio::spawn(drive(conn, "HTTP/1.1", open));
            Ok(Checked::H1(tx))
        }
    }
}

/// A connection's task: runs it to its end, logs how it ended, and keeps it counted as open
/// until then (or until the task is dropped).
///
/// `map`, not `async move { conn.await }`: an async block keeps the captured connection and
/// the awaited one apart, so its task took 3.7 KiB per HTTP/1.1 connection where the
/// connection is 1.8 KiB (heaptrack, 1,000 idle streams).
fn drive<C, E>(
    conn: C,
    protocol: &'static str,
    open: OpenConnection,
) -> impl std::future::Future<Output = ()>
where
    C: std::future::Future<Output = Result<(), E>>,
    E: fmt::Display,
{
    conn.map(move |ended| {
        if let Err(e) = ended {
            tracing::debug!(error = %e, protocol, "upstream connection ended with an error");
        }
        // Named here so that the closure owns it (an unused capture would not be moved in).
        drop(open);
    })
}

/// What HTTP/1.1 needs that HTTP/2 does not: a `Host` header (unless the request has one)
/// and the target in origin form.
/// Returns whether it added `Host`.
fn h1_form(req: &mut Request<UpstreamBody>) -> bool {
    let mut added = false;
    if !req.headers().contains_key(HOST) {
        if let Some(host) = host_value(req.uri()) {
            req.headers_mut().insert(HOST, host);
            added = true;
        }
    }
    let uri = req.uri();
    if uri.scheme().is_some() || uri.authority().is_some() {
        let origin = match uri.path_and_query() {
            Some(pq) if pq.as_str() != "/" => {
                let mut parts = http::uri::Parts::default();
                parts.path_and_query = Some(pq.clone());
                Uri::from_parts(parts).unwrap_or_default()
            }
            _ => Uri::default(),
        };
        *req.uri_mut() = origin;
    }
    added
}

/// `Host` as hyper's legacy client derives it: the host, and the port unless it is the
/// scheme's default.
fn host_value(uri: &Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    let default = match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    match uri.port_u16() {
        Some(port) if port != default => HeaderValue::from_str(&format!("{host}:{port}")).ok(),
        _ => HeaderValue::from_str(host).ok(),
    }
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Vec<Host>> {
        // A panic while holding the lock cannot leave the lists inconsistent (each change
        // is one push or pop): go on with them.
        self.hosts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The index of `uri`'s host, added if new. Hosts are never removed, so indexes stay.
    fn host(&self, uri: &Uri) -> usize {
        let scheme = uri.scheme().cloned().unwrap_or(Scheme::HTTP);
        let Some(authority) = uri.authority() else {
            return usize::MAX;
        };
        let mut hosts = self.lock();
        if let Some(i) = hosts
            .iter()
            .position(|h| h.authority == *authority && h.scheme == scheme)
        {
            return i;
        }
        hosts.push(Host {
            scheme,
            authority: authority.clone(),
            idle: VecDeque::new(),
            h2: Vec::new(),
            alpn_h2: false,
            h2_connecting: Arc::default(),
            h2_failures: 0,
        });
        hosts.len() - 1
    }

    /// A connection ready for a request: a stream on an HTTP/2 one with room, or the most
    /// recently used idle HTTP/1.1 one. Closed and expired ones met on the way are dropped.
    fn checkout(&self, host: usize) -> Option<Checked> {
        let now = Instant::now();
        let mut hosts = self.lock();
        let host = hosts.get_mut(host)?;
        if let Some(stream) = host.h2_stream(self.max_streams, now) {
            return Some(stream);
        }
        // Newest first; closed and expired ones are dropped. One not ready yet (its last
        // response has only just ended) is skipped and kept.
        let mut i = host.idle.len();
        while i > 0 {
            i -= 1;
            let Some(idle) = host.idle.get(i) else {
                break;
            };
            if idle.tx.is_closed() || now.duration_since(idle.since) >= self.idle_timeout {
                host.idle.remove(i);
            } else if idle.tx.is_ready() {
                return host.idle.remove(i).map(|idle| Checked::H1(idle.tx));
            }
        }
        None
    }

    fn put_idle(self: &Arc<Self>, host: usize, tx: http1::SendRequest<UpstreamBody>) {
        if tx.is_closed() || self.max_idle == 0 {
            return;
        }
        {
            let mut hosts = self.lock();
            let Some(h) = hosts.get_mut(host) else {
                return;
            };
            if h.idle.len() >= self.max_idle {
                // The oldest goes.
                h.idle.pop_front();
            }
            h.idle.push_back(Idle {
                tx,
                since: Instant::now(),
            });
        }
        self.start_reaper();
    }

    fn alpn_h2(&self, host: usize) -> bool {
        self.lock().get(host).is_some_and(|h| h.alpn_h2)
    }

    fn h2_lock(&self, host: usize) -> Arc<tokio::sync::Mutex<()>> {
        self.lock()
            .get(host)
            .map(|h| h.h2_connecting.clone())
            .unwrap_or_default()
    }

    fn h2_stream(&self, host: usize) -> Option<Checked> {
        let max_streams = self.max_streams;
        self.lock()
            .get_mut(host)?
            .h2_stream(max_streams, Instant::now())
    }

    fn h2_failures(&self, host: usize) -> u64 {
        self.lock().get(host).map_or(0, |h| h.h2_failures)
    }

    fn h2_failed(&self, host: usize) {
        if let Some(h) = self.lock().get_mut(host) {
            h.h2_failures += 1;
        }
    }

    fn set_h2(
        self: &Arc<Self>,
        host: usize,
        tx: http2::SendRequest<UpstreamBody>,
        streams: Arc<AtomicUsize>,
    ) {
        {
            let mut hosts = self.lock();
            let Some(h) = hosts.get_mut(host) else {
                return;
            };
            h.alpn_h2 = true;
            h.h2.push(Shared {
                tx,
                used: Instant::now(),
                streams,
            });
        }
        self.start_reaper();
    }

    /// Forget the host's closed HTTP/2 connections (a request came back unsent from one).
    fn drop_h2(&self, host: usize) {
        if let Some(h) = self.lock().get_mut(host) {
            h.h2.retain(|s| !s.tx.is_closed());
        }
    }

    /// Close connections idle for longer than the timeout. Returns whether any are left.
    fn reap(&self) -> bool {
        let now = Instant::now();
        let mut hosts = self.lock();
        let mut left = false;
        for h in hosts.iter_mut() {
            // Oldest first: stop at the first one still young enough.
            while h.idle.front().is_some_and(|idle| {
                idle.tx.is_closed() || now.duration_since(idle.since) >= self.idle_timeout
            }) {
                h.idle.pop_front();
            }
            h.h2.retain_mut(|s| {
                if s.tx.is_closed() {
                    false
                } else if s.streams.load(Ordering::Relaxed) > 0 {
                    // In use: its idle time starts when its last stream has ended (as seen
                    // here, so it closes one to one and a half timeouts after that).
                    s.used = now;
                    true
                } else {
                    now.duration_since(s.used) < self.idle_timeout
                }
            });
            left |= !h.idle.is_empty() || !h.h2.is_empty();
        }
        left
    }

    /// Start the slot's reaper on the calling thread's runtime, unless it runs. It ends
    /// when nothing is left to reap (the next idle connection starts it again) or the slot
    /// is gone (a reload replaced the upstream).
    fn start_reaper(self: &Arc<Self>) {
        if self.reaping.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.reaping.store(false, Ordering::Release);
            return;
        };
        let weak: Weak<Slot> = Arc::downgrade(self);
        let every =
            (self.idle_timeout / 2).clamp(Duration::from_millis(50), Duration::from_secs(30));
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(slot) = weak.upgrade() else {
                    return;
                };
                if !slot.reap() {
                    slot.reaping.store(false, Ordering::Release);
                    // An idle connection put back between `reap` and here found the flag
                    // still set and started nothing: go on for it.
                    if slot.reap() && !slot.reaping.swap(true, Ordering::AcqRel) {
                        continue;
                    }
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str) -> Request<UpstreamBody> {
        let mut req = Request::new(UpstreamBody::buffered(bytes::Bytes::new()));
        *req.uri_mut() = uri.parse().unwrap();
        req
    }

    #[test]
    fn http1_requests_get_host_and_origin_form() {
        let cases = [
            (
                "http://127.0.0.1:8080/v1/chat/completions?x=1",
                "/v1/chat/completions?x=1",
                "127.0.0.1:8080",
            ),
            ("http://example.com/", "/", "example.com"),
            ("http://example.com:80/a", "/a", "example.com"),
            ("https://example.com:443/a", "/a", "example.com"),
            ("https://example.com:8443/a", "/a", "example.com:8443"),
            ("http://[::1]:9000/a", "/a", "[::1]:9000"),
        ];
        for (given, target, host) in cases {
            let mut r = req(given);
            assert!(h1_form(&mut r));
            assert_eq!(r.uri().to_string(), target, "{given}");
            assert_eq!(r.headers()[HOST], host, "{given}");
        }
    }

    #[test]
    fn a_host_header_already_set_is_kept() {
        let mut r = req("http://127.0.0.1:8080/a");
        r.headers_mut()
            .insert(HOST, HeaderValue::from_static("kept.example"));
        assert!(!h1_form(&mut r));
        assert_eq!(r.headers()[HOST], "kept.example");
    }

    /// Connections to cleartext upstreams (the connector TLS-capable, as in the gateway),
    /// one slot, a 5 s connect timeout.
    fn plain_conns(http2_only: bool) -> Conns {
        conns_idling(http2_only, Duration::from_secs(60))
    }

    fn conns_idling(http2_only: bool, idle_timeout: Duration) -> Conns {
        conns_with(http2_only, idle_timeout, Duration::from_secs(5))
    }

    fn conns_with(http2_only: bool, idle_timeout: Duration, connect_timeout: Duration) -> Conns {
        let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(hyper_util::client::legacy::connect::HttpConnector::new());
        let connector = Connector::new(
            https,
            connect_timeout,
            super::super::connect::LateAlerts::default(),
        );
        let settings = Settings {
            http2_only,
            idle_timeout,
            max_idle_per_host: 8,
            h1_read_buffer: 32 * 1024,
            h2_stream_window: 512 * 1024,
            h2_max_streams: 100,
        };
        Conns::new(connector, &settings, 1, UpstreamConnMetrics::detached())
    }

    /// An h2c upstream that counts the connections it accepts, and answers `/long` with a
    /// head and a body that never ends, anything else with an empty 200.
    async fn serve_h2c(listener: tokio::net::TcpListener, accepted: Arc<AtomicUsize>) {
        use hyper::body::Frame;
        type Frames = std::pin::Pin<
            Box<
                dyn futures_util::Stream<
                        Item = Result<Frame<bytes::Bytes>, std::convert::Infallible>,
                    > + Send,
            >,
        >;
        while let Ok((stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            let answer = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let frames: Frames = if req.uri().path() == "/long" {
                    Box::pin(futures_util::stream::pending())
                } else {
                    Box::pin(futures_util::stream::empty())
                };
                Ok::<_, std::convert::Infallible>(Response::new(http_body_util::StreamBody::new(
                    frames,
                )))
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), answer),
            );
        }
    }

    /// A listener whose accept queue is full (a backlog of 0 and one connection, the
    /// filler, that nobody accepts): a connect to it hangs until the queue is drained.
    async fn full_accept_queue() -> (
        tokio::net::TcpListener,
        std::net::SocketAddr,
        tokio::net::TcpStream,
    ) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        let filler = tokio::net::TcpStream::connect(addr).await.unwrap();
        (listener, addr, filler)
    }

    /// The request making a host's HTTP/2 connection is cancelled mid-connect (its client
    /// gone) while two others wait for that connection: the connection is still made, and
    /// the two share it. The upstream's accept queue is full at first (a listen backlog of
    /// 0 and one connection nobody accepts), so the connect hangs until the queue is
    /// drained and the kernel resends its SYN (about a second later).
    #[tokio::test(flavor = "current_thread")]
    async fn a_cancelled_http2_connect_still_serves_the_requests_waiting_for_it() {
        let (listener, addr, filler) = full_accept_queue().await;
        let conns = Arc::new(plain_conns(true));
        let url = format!("http://{addr}/v1/models");
        let send = |conns: &Arc<Conns>| {
            let (conns, url) = (conns.clone(), url.clone());
            tokio::spawn(async move { conns.send(req(&url)).await.map(|(r, _)| r.status()) })
        };

        let first = send(&conns);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let waiting = [send(&conns), send(&conns)];
        tokio::time::sleep(Duration::from_millis(100)).await;
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());

        // The upstream starts accepting: the filler is dropped, each other connection
        // counted and served over h2c.
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        tokio::spawn(async move {
            let Ok((unused, _)) = listener.accept().await else {
                return;
            };
            drop((unused, filler));
            serve_h2c(listener, counted).await;
        });
        for waiter in waiting {
            let status = tokio::time::timeout(Duration::from_secs(10), waiter)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(status, 200);
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one HTTP/2 connection for both waiting requests"
        );
    }

    /// Making a host's HTTP/2 connection fails (its connect times out: the upstream's accept
    /// queue is full) while four other requests wait for it: they then try on their own,
    /// all at once, rather than one after another behind the connect lock.
    #[tokio::test(flavor = "current_thread")]
    async fn requests_waiting_for_a_failed_http2_connect_try_on_their_own_at_once() {
        let (listener, addr, _filler) = full_accept_queue().await;
        let connect_timeout = Duration::from_millis(300);
        let conns = Arc::new(conns_with(true, Duration::from_secs(60), connect_timeout));
        let url = format!("http://{addr}/v1/models");
        let started = Instant::now();
        let sends: Vec<_> = (0..5)
            .map(|_| {
                let (conns, url) = (conns.clone(), url.clone());
                tokio::spawn(async move { conns.send(req(&url)).await.map(|(r, _)| r.status()) })
            })
            .collect();
        for send in sends {
            let failed = send.await.unwrap().unwrap_err();
            assert!(failed.is_connect(), "{failed}");
        }
        let took = started.elapsed();
        assert!(
            took >= 2 * connect_timeout,
            "the first try, then the others': {took:?}"
        );
        assert!(
            took < 4 * connect_timeout,
            "one after another would take 5 connect timeouts; took {took:?}"
        );
        drop(listener);
    }

    /// Every upstream connection has a task of its own for its whole life: the task adds
    /// almost nothing to the connection it runs (an async block holding the connection
    /// and awaiting it took twice the connection's size).
    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_task_is_about_the_size_of_its_connection() {
        let (near, _far) = tokio::io::duplex(64);
        let (_tx, conn) = http1::handshake::<_, UpstreamBody>(hyper_util::rt::TokioIo::new(near))
            .await
            .unwrap();
        let connection = std::mem::size_of_val(&conn);
        let open = UpstreamConnMetrics::detached().opened(ConnProtocol::Http1);
        let task = std::mem::size_of_val(&drive(conn, "HTTP/1.1", open));
        assert!(
            task <= connection + 64,
            "the task is {task} bytes for a {connection}-byte connection"
        );
    }

    /// A reused connection that closed before taking its request hands the request back
    /// unsent: it goes once more, on a new connection, and the upstream sees it once. The
    /// pooled connection here runs over an in-memory pipe whose far end is dropped right
    /// before the request; its connection task has not run since, so the pool still finds
    /// it ready (the race a real upstream's idle close opens), and only when the request is
    /// queued does hyper meet the closed pipe.
    #[tokio::test(flavor = "current_thread")]
    async fn a_request_handed_back_unsent_goes_on_a_new_connection() {
        use hyper_util::rt::TokioIo;
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

        // A real upstream: one fixed answer per request head, counting both.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
        let seen = counts.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                seen.0.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while let Ok(n @ 1..) = socket.read(&mut chunk).await {
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            seen.1.fetch_add(1, Ordering::SeqCst);
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if socket.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });

        let conns = plain_conns(false);
        let url = format!("http://{addr}/v1/models");

        // A pooled connection over a pipe, used once so that it is idle and ready.
        let slot = conns.slot();
        let host = slot.host(&url.parse().unwrap());
        let (near, mut far) = tokio::io::duplex(4096);
        let (mut tx, conn) = http1::handshake::<_, UpstreamBody>(TokioIo::new(near))
            .await
            .unwrap();
        tokio::spawn(conn);
        let first = tx.send_request(req(&url));
        let mut head = [0u8; 256];
        let n = far.read(&mut head).await.unwrap();
        assert!(head[..n].starts_with(b"GET "));
        far.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(first.await.unwrap().status(), 200);
        tx.ready().await.unwrap();
        slot.put_idle(host, tx);

        // Its far end goes; the request comes before the connection task runs again.
        drop(far);
        let (response, lease) = conns.send(req(&url)).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(matches!(lease.0, Held::H1 { .. }));
        assert_eq!(counts.0.load(Ordering::SeqCst), 1, "one new connection");
        assert_eq!(
            counts.1.load(Ordering::SeqCst),
            1,
            "the request arrived once"
        );
    }

    /// An HTTP/2 connection stays pooled while a stream on it is open, however long past
    /// the idle timeout (a long SSE answer), and closes once idle after its last stream.
    /// Before streams were counted, the reaper dropped it a timeout after its last
    /// checkout, and the next request opened a second connection beside the live one.
    #[tokio::test(flavor = "current_thread")]
    async fn an_http2_connection_with_an_open_stream_is_not_idle() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        tokio::spawn(serve_h2c(listener, accepted.clone()));
        let idle = Duration::from_millis(100);
        let conns = conns_idling(true, idle);
        let short = || async {
            let (response, lease) = conns
                .send(req(&format!("http://{addr}/short")))
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap();
            lease.release();
        };

        let (long, lease) = conns
            .send(req(&format!("http://{addr}/long")))
            .await
            .unwrap();
        assert_eq!(long.status(), 200);
        tokio::time::sleep(idle * 5).await;
        short().await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "a connection with an open stream was dropped as idle"
        );

        // The long answer ends (its client gone): once idle, the connection closes.
        drop((long, lease));
        tokio::time::sleep(idle * 5).await;
        short().await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "an idle connection was kept"
        );
    }
}
