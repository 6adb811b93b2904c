//! How one client connection is served: hyper's own HTTP/1.1 or HTTP/2 connection once the
//! protocol is known (from ALPN, or by peeking at a plain connection's first bytes), and
//! hyper-util's auto connection only when it is not.
//!
//! Peeking rather than reading matters for memory: hyper-util's auto connection reads up to
//! the 24 bytes of the HTTP/2 preface itself and replays them to hyper, whose first parse then
//! sees a partial head and doubles its 8 KiB read buffer to 16 KiB, on every HTTP/1.1
//! connection, for the connection's life (heaptrack on 2,000 idle streams). A peek leaves the
//! bytes in the socket for hyper's first read.

use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::{HttpService, Service};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use pin_project_lite::pin_project;
use tokio::io::ReadBuf;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::send_deadline::{Abort, SendDeadline};

/// The connection preface every HTTP/2 client with prior knowledge starts with (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

type BoxError = Box<dyn StdError + Send + Sync>;
type Io<T> = TokioIo<SendDeadline<T>>;

/// What a connection's first bytes say about its protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sniffed {
    /// They differ from the HTTP/2 preface: HTTP/1.x (or garbage, which hyper answers).
    Http1,
    /// The whole HTTP/2 preface.
    Http2,
    /// A proper prefix of the preface so far (or nothing to peek at): the auto connection reads
    /// on until it can tell.
    Unsure,
    /// The client closed before sending a byte.
    Closed,
}

/// The protocol of a connection whose first bytes are `first`.
pub(crate) fn sniff(first: &[u8]) -> Sniffed {
    let n = first.len().min(PREFACE.len());
    if n == 0 {
        Sniffed::Closed
    } else if first[..n] != PREFACE[..n] {
        Sniffed::Http1
    } else if n == PREFACE.len() {
        Sniffed::Http2
    } else {
        Sniffed::Unsure
    }
}

/// A transport whose first bytes can be looked at without taking them.
pub(crate) trait Peek {
    /// Wait for the first bytes and tell the protocol from them.
    fn poll_sniff(&self, cx: &mut Context<'_>) -> Poll<io::Result<Sniffed>>;
}

impl Peek for TcpStream {
    fn poll_sniff(&self, cx: &mut Context<'_>) -> Poll<io::Result<Sniffed>> {
        let mut first = [0u8; PREFACE.len()];
        let mut buf = ReadBuf::new(&mut first);
        ready!(self.poll_peek(cx, &mut buf))?;
        Poll::Ready(Ok(sniff(buf.filled())))
    }
}

impl Peek for TlsStream<TcpStream> {
    /// Decrypted bytes cannot be peeked at: ALPN decides, and without it the auto connection.
    fn poll_sniff(&self, _: &mut Context<'_>) -> Poll<io::Result<Sniffed>> {
        Poll::Ready(Ok(Sniffed::Unsure))
    }
}

/// The protocol a TLS handshake's ALPN chose: `h2` or `http/1.1`; `None` when the client
/// offered neither (served like a plain connection: the auto connection tells).
pub(crate) fn negotiated(alpn: Option<&[u8]>) -> Option<Sniffed> {
    match alpn {
        Some(b"h2") => Some(Sniffed::Http2),
        Some(b"http/1.1") => Some(Sniffed::Http1),
        _ => None,
    }
}

/// What a client connection runs over: a plain or a TLS stream.
pub(crate) trait Transport:
    Peek + Abort + tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static
{
}

impl<T> Transport for T where
    T: Peek + Abort + tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static
{
}

/// The service a connection's requests go to, answering with `B` bodies.
pub(crate) trait Handler<B>:
    Service<
        Request<Incoming>,
        Response = Response<B>,
        Future: Send + 'static,
        Error: Into<BoxError>,
    > + Send
    + 'static
{
}

impl<S, B> Handler<B> for S where
    S: Service<
            Request<Incoming>,
            Response = Response<B>,
            Future: Send + 'static,
            Error: Into<BoxError>,
        > + Send
        + 'static
{
}

/// A response body hyper can send on either protocol.
pub(crate) trait ResponseBody:
    Body<Data: Send, Error: Into<BoxError>> + Send + 'static
{
}

impl<B> ResponseBody for B where B: Body<Data: Send, Error: Into<BoxError>> + Send + 'static {}

/// HTTP/1.1 settings of a listener's connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Http1Settings {
    /// Deadline for a request head; also the keep-alive idle limit (hyper starts it when it
    /// waits for the next head).
    pub(crate) header_read_timeout: Duration,
    /// The largest request head, in bytes; hyper's own default when `None`.
    pub(crate) max_buf_size: Option<usize>,
    /// The most request headers; hyper's own default (100, on the stack) when `None`.
    pub(crate) max_headers: Option<usize>,
}

/// HTTP/2 settings of a listener's connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Http2Settings {
    pub(crate) max_header_list_size: u32,
    pub(crate) max_concurrent_streams: u32,
    pub(crate) max_pending_accept_reset_streams: usize,
    pub(crate) stream_window: u32,
    pub(crate) connection_window: u32,
    /// Response bytes a stream may queue for a slow client (hyper's default is ~400 KB).
    pub(crate) send_buffer: usize,
}

/// The hyper builders of one listener, configured alike: HTTP/1.1 and HTTP/2 for connections
/// whose protocol is known, auto for the rest.
#[derive(Clone)]
pub(crate) struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    auto: auto::Builder<TokioExecutor>,
}

impl Protocols {
    /// Builders with `h1`'s settings, and `h2`'s (hyper's defaults when `None`). HTTP/2 always
    /// advertises RFC 8441 extended CONNECT, for WebSockets over h2 streams; whether one is
    /// relayed is the proxy's decision.
    pub(crate) fn new(h1: Http1Settings, h2: Option<Http2Settings>) -> Protocols {
        let mut http1 = http1::Builder::new();
        let mut auto = auto::Builder::new(TokioExecutor::new());
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(h1.header_read_timeout)
            .keep_alive(true);
        auto.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(h1.header_read_timeout)
            .keep_alive(true);
        if let Some(size) = h1.max_buf_size {
            http1.max_buf_size(size);
            auto.http1().max_buf_size(size);
        }
        if let Some(count) = h1.max_headers {
            http1.max_headers(count);
            auto.http1().max_headers(count);
        }
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2.enable_connect_protocol();
        auto.http2().enable_connect_protocol();
        if let Some(h2) = h2 {
            http2
                .timer(TokioTimer::new())
                .max_header_list_size(h2.max_header_list_size)
                .max_concurrent_streams(h2.max_concurrent_streams)
                .max_pending_accept_reset_streams(h2.max_pending_accept_reset_streams)
                .initial_stream_window_size(h2.stream_window)
                .initial_connection_window_size(h2.connection_window)
                .max_send_buf_size(h2.send_buffer);
            auto.http2()
                .timer(TokioTimer::new())
                .max_header_list_size(h2.max_header_list_size)
                .max_concurrent_streams(h2.max_concurrent_streams)
                .max_pending_accept_reset_streams(h2.max_pending_accept_reset_streams)
                .initial_stream_window_size(h2.stream_window)
                .initial_connection_window_size(h2.connection_window)
                .max_send_buf_size(h2.send_buffer);
        }
        Protocols { http1, http2, auto }
    }
}

pin_project! {
    /// One client connection being served, to its end.
    #[project = ServedProj]
    pub(crate) enum Served<'a, T, S>
    where
        S: HttpService<Incoming>,
        S: Service<Request<Incoming>>,
    {
        /// Waiting for the first bytes of a plain connection.
        Sniffing {
            start: Option<Start<T, S>>,
            protocols: &'a Protocols,
        },
        Http1 {
            #[pin]
            conn: http1::UpgradeableConnection<Io<T>, S>,
        },
        // Boxed: an HTTP/2 connection's state is several times an HTTP/1.1 one's, and every
        // connection's task would otherwise be that large.
        Http2 {
            conn: Pin<Box<http2::Connection<Io<T>, S, TokioExecutor>>>,
        },
        Auto {
            conn: Pin<Box<auto::UpgradeableConnection<'a, Io<T>, S, TokioExecutor>>>,
        },
        /// Shut down before a protocol was known.
        Done,
    }
}

/// What a connection is made of before its protocol is known.
pub(crate) struct Start<T, S> {
    stream: T,
    send_timeout: Option<Duration>,
    service: S,
}

impl<'a, T, S, B> Served<'a, T, S>
where
    T: Transport,
    // The projection pins `B` down; `Handler` carries the rest.
    S: Handler<B> + Service<Request<Incoming>, Response = Response<B>>,
    B: ResponseBody,
{
    /// A connection whose protocol its first bytes will tell.
    pub(crate) fn sniff(
        protocols: &'a Protocols,
        stream: T,
        send_timeout: Option<Duration>,
        service: S,
    ) -> Self {
        Served::Sniffing {
            start: Some(Start {
                stream,
                send_timeout,
                service,
            }),
            protocols,
        }
    }

    /// A TLS connection: the protocol ALPN chose ([`negotiated`]), or sniffed if none.
    pub(crate) fn negotiated(
        protocols: &'a Protocols,
        negotiated: Option<Sniffed>,
        stream: T,
        send_timeout: Option<Duration>,
        service: S,
    ) -> Self {
        let start = Start {
            stream,
            send_timeout,
            service,
        };
        match negotiated {
            Some(protocol) => Self::with(protocols, protocol, start),
            None => Served::Sniffing {
                start: Some(start),
                protocols,
            },
        }
    }

    fn with(protocols: &'a Protocols, protocol: Sniffed, start: Start<T, S>) -> Self {
        let io = TokioIo::new(SendDeadline::new(start.stream, start.send_timeout));
        match protocol {
            Sniffed::Http1 => Served::Http1 {
                conn: protocols
                    .http1
                    .serve_connection(io, start.service)
                    .with_upgrades(),
            },
            Sniffed::Http2 => Served::Http2 {
                conn: Box::pin(protocols.http2.serve_connection(io, start.service)),
            },
            Sniffed::Unsure | Sniffed::Closed => Served::Auto {
                conn: Box::pin(
                    protocols
                        .auto
                        .serve_connection_with_upgrades(io, start.service),
                ),
            },
        }
    }
}

/// A connection future that can be asked to finish what is in flight and close.
pub(crate) trait Graceful: Future<Output = Result<(), BoxError>> {
    /// Finish what is in flight and close (HTTP/2: GOAWAY; HTTP/1.1: after the response).
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<T, S, B> Graceful for Served<'_, T, S>
where
    T: Transport,
    // The projection pins `B` down; `Handler` carries the rest.
    S: Handler<B> + Service<Request<Incoming>, Response = Response<B>>,
    B: ResponseBody,
{
    /// Before a protocol is known there is nothing in flight: close now.
    fn graceful_shutdown(self: Pin<&mut Self>) {
        match self.project() {
            ServedProj::Sniffing { start, .. } => {
                start.take();
            }
            ServedProj::Http1 { conn } => conn.graceful_shutdown(),
            ServedProj::Http2 { conn } => conn.as_mut().graceful_shutdown(),
            ServedProj::Auto { conn } => conn.as_mut().graceful_shutdown(),
            ServedProj::Done => {}
        }
    }
}

impl<'a, T, S, B> Future for Served<'a, T, S>
where
    T: Transport,
    // The projection pins `B` down; `Handler` carries the rest.
    S: Handler<B> + Service<Request<Incoming>, Response = Response<B>>,
    B: ResponseBody,
{
    type Output = Result<(), BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project() {
                ServedProj::Sniffing { start, protocols } => {
                    let protocols: &'a Protocols = protocols;
                    let Some(pending) = start.as_ref() else {
                        // Shut down while waiting for the first bytes.
                        self.set(Served::Done);
                        return Poll::Ready(Ok(()));
                    };
                    let sniffed = match ready!(pending.stream.poll_sniff(cx)) {
                        Ok(sniffed) => sniffed,
                        Err(e) => {
                            self.set(Served::Done);
                            return Poll::Ready(Err(e.into()));
                        }
                    };
                    let Some(taken) = start.take() else {
                        continue;
                    };
                    if sniffed == Sniffed::Closed {
                        // Gone before a byte: nothing to serve, as hyper sees a silent close.
                        self.set(Served::Done);
                        return Poll::Ready(Ok(()));
                    }
                    let next = Self::with(protocols, sniffed, taken);
                    self.set(next);
                }
                ServedProj::Http1 { conn } => return conn.poll(cx).map_err(Into::into),
                ServedProj::Http2 { conn } => return conn.as_mut().poll(cx).map_err(Into::into),
                ServedProj::Auto { conn } => return conn.as_mut().poll(cx),
                ServedProj::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_tell_the_protocol() {
        let cases: &[(&[u8], Sniffed)] = &[
            (b"", Sniffed::Closed),
            (b"P", Sniffed::Unsure),
            (b"PR", Sniffed::Unsure),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r", Sniffed::Unsure),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Sniffed::Http2),
            (
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04",
                Sniffed::Http2,
            ),
            (b"PO", Sniffed::Http1),
            (b"POST /v1/chat/completions HTTP/1.1\r\n", Sniffed::Http1),
            (b"GET / HTTP/1.1\r\n", Sniffed::Http1),
            (b"PRI * HTTP/1.1\r\n", Sniffed::Http1),
            (b"pri * HTTP/2.0\r\n\r\nSM\r\n\r\n", Sniffed::Http1),
            (b"\x16\x03\x01\x02\x00", Sniffed::Http1),
        ];
        for (first, want) in cases {
            assert_eq!(sniff(first), *want, "{:?}", String::from_utf8_lossy(first));
        }
    }

    #[test]
    fn alpn_tells_the_protocol() {
        assert_eq!(negotiated(Some(b"h2")), Some(Sniffed::Http2));
        assert_eq!(negotiated(Some(b"http/1.1")), Some(Sniffed::Http1));
        assert_eq!(negotiated(Some(b"http/1.0")), None);
        assert_eq!(negotiated(None), None);
    }
}
