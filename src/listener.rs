//! Accept loops: TCP connections, through a rustls handshake on TLS listeners, served as
//! HTTP/1.1 and HTTP/2 by hyper's auto builder and drained gracefully on shutdown.
//!
//! The accept loop only accepts: every handshake runs in the connection's own task, bounded
//! by `limits.header_read_timeout`, so a slow or silent client never holds up the next one.
//!
//! Connections are served with upgrades: an HTTP/1.1 connection may be handed over for a
//! WebSocket session (`proxy/upgrade.rs`), and HTTP/2 advertises RFC 8441 extended CONNECT
//! (`SETTINGS_ENABLE_CONNECT_PROTOCOL`) so that h2 clients can open WebSockets as streams.
//! Whether an upgrade is relayed is the proxy's decision, never the listener's.

use arc_swap::ArcSwap;
use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use prometheus::IntGauge;

use sha2::{Digest, Sha256};

use crate::clients::ClientCert;
use crate::connection::{self, ConnectionLimits};
use crate::metrics::{Metrics, TlsHandshakeError};
use crate::served::{self, Protocols, Served};

/// Shutdown as the accept loops see it: `None` while serving; once draining, the instant by
/// which open connections must have finished (`server.drain_timeout` after SIGTERM).
pub(crate) type Shutdown = watch::Receiver<Option<Instant>>;

/// What a TLS listener needs beyond TCP: the acceptor, the handshake deadline and the
/// counter of failed handshakes.
#[derive(Clone)]
pub(crate) struct TlsSettings {
    /// The server's certificate, key and client CA; a reload swaps in new ones, which the
    /// next handshake uses.
    pub(crate) config: Arc<ArcSwap<rustls::ServerConfig>>,
    /// A client must finish the handshake within this (`limits.header_read_timeout`).
    pub(crate) handshake_timeout: Duration,
    pub(crate) metrics: Arc<Metrics>,
}

/// Where an accept loop takes its connections from.
pub(crate) enum Source {
    /// It accepts them itself (the admin listener).
    Listener(TcpListener),
    /// The distributor accepted them and handed them to this worker ([`distribute`]).
    Handoff(mpsc::UnboundedReceiver<Handoff>),
}

/// A connection the distributor accepted for a worker.
pub(crate) struct Handoff {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    /// Counts the connection against its worker until the connection ends.
    open: OpenGuard,
}

/// One worker's open client connections (`switchyard_worker_connections`), for the
/// distributor's choice.
#[derive(Clone)]
pub(crate) struct OpenCount(IntGauge);

impl OpenCount {
    pub(crate) fn new(gauge: IntGauge) -> OpenCount {
        OpenCount(gauge)
    }
}

/// Decrements its worker's [`OpenCount`] when dropped.
pub(crate) struct OpenGuard(IntGauge);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Source {
    /// The next connection, or `None` once the distributor has stopped.
    async fn next(
        &mut self,
    ) -> Option<std::io::Result<(TcpStream, SocketAddr, Option<OpenGuard>)>> {
        match self {
            Source::Listener(listener) => Some(
                listener
                    .accept()
                    .await
                    .map(|(stream, peer)| (stream, peer, None)),
            ),
            Source::Handoff(rx) => {
                let handoff = rx.recv().await?;
                // Registers the socket with this worker's event loop.
                Some(
                    TcpStream::from_std(handoff.stream)
                        .map(|stream| (stream, handoff.peer, Some(handoff.open))),
                )
            }
        }
    }
}

/// `limits.max_connections`: how many client connections may be open at once, over every
/// worker (and both client listeners, which share the workers' counts).
#[derive(Clone)]
pub(crate) struct ConnectionCap {
    /// 0 is no limit.
    pub(crate) max: usize,
    /// Whether the listener speaks plain HTTP, so that a refusal can be answered.
    pub(crate) plain: bool,
    pub(crate) metrics: Arc<Metrics>,
}

/// What a plain-HTTP client gets when the connection limit is reached.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\nretry-after: 1\r\ncontent-length: 146\r\n\r\n{\"error\":{\"message\":\"the gateway has too many open connections; retry shortly\",\"type\":\"gateway_error\",\"param\":null,\"code\":\"too_many_connections\"}}";

impl ConnectionCap {
    fn reached(&self, workers: &[(mpsc::UnboundedSender<Handoff>, OpenCount)]) -> bool {
        if self.max == 0 {
            return false;
        }
        let open: i64 = workers.iter().map(|(_, open)| open.0.get()).sum();
        usize::try_from(open).unwrap_or(0) >= self.max
    }

    /// Count the refusal and close the connection; on a plain listener first say why (503,
    /// `connection: close`), without waiting for the client: the write goes out if the
    /// socket takes it at once.
    fn refuse(&self, name: &'static str, stream: TcpStream, peer: SocketAddr) {
        self.metrics.connections.refused();
        tracing::debug!(listener = name, %peer, max = self.max, "connection refused: limits.max_connections open");
        if self.plain {
            let _ = stream.try_write(REFUSAL);
        }
    }
}

/// Accept on a client listener until shutdown and hand each connection to the worker with
/// the fewest open connections.
///
/// Workers used to accept on a shared socket themselves; whichever woke first took the whole
/// backlog, and `perf` showed one of two workers serving all 32 connections of a benchmark
/// while the other idled. One acceptor (on the control runtime) choosing the least-loaded
/// worker keeps them even; the cost is per connection (the socket moves to the worker's event
/// loop), never per request.
pub(crate) async fn distribute(
    name: &'static str,
    listener: TcpListener,
    mut workers: Vec<(mpsc::UnboundedSender<Handoff>, OpenCount)>,
    limit: ConnectionCap,
    mut shutdown: Shutdown,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if limit.reached(&workers) {
            limit.refuse(name, stream, peer);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let mut stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(listener = name, %peer, error = %e, "cannot hand a connection to a worker");
                continue;
            }
        };
        // A worker whose channel is closed has ended (it panicked: workers only stop after
        // this loop): it is dropped from the choice and the connection goes to the next.
        loop {
            let Some((index, (tx, open))) = workers
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, open))| open.0.get())
            else {
                tracing::error!(
                    listener = name,
                    "no worker thread is left to serve connections; no longer accepting"
                );
                return;
            };
            open.0.inc();
            let handoff = Handoff {
                stream,
                peer,
                open: OpenGuard(open.0.clone()),
            };
            match tx.send(handoff) {
                Ok(()) => break,
                Err(mpsc::error::SendError(handoff)) => {
                    tracing::error!(
                        listener = name,
                        worker = index + 1,
                        "a worker thread has stopped; its share goes to the others"
                    );
                    stream = handoff.stream;
                    workers.swap_remove(index);
                }
            }
        }
    }
}

/// How an accept loop serves its connections: the hyper builder, the limits per connection,
/// and where client errors are counted.
pub(crate) struct Serving {
    pub(crate) protocols: Protocols,
    pub(crate) limits: ConnectionLimits,
    pub(crate) metrics: Arc<Metrics>,
}

/// Accept connections until shutdown, then drain them gracefully. With `tls`, each
/// connection is served only once its handshake succeeded.
pub(crate) async fn accept_loop<S, B>(
    name: &'static str,
    mut source: Source,
    tls: Option<TlsSettings>,
    serving: Serving,
    service: S,
    mut shutdown: Shutdown,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let tls = tls.map(Arc::new);
    let Serving {
        protocols,
        limits,
        metrics,
    } = serving;
    let protocols = Arc::new(protocols);
    // Connection tasks, so that any still running after the drain timeout can be ended.
    let mut connections = JoinSet::new();
    // A worker's connections come from the distributor, which stops on shutdown and closes
    // the channel: the worker serves what was already handed to it, then drains. A listener
    // of its own (admin) stops on the signal itself.
    let own_listener = matches!(source, Source::Listener(_));
    loop {
        tokio::select! {
            _ = shutdown.changed(), if own_listener => break,
            // Reap finished connections so the set stays as large as the open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = source.next() => {
                let (stream, peer, open) = match accepted {
                    // The distributor stopped: shutting down.
                    None => break,
                    Some(Ok(conn)) => conn,
                    Some(Err(e)) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(listener = name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                if let Some(size) = limits.send_buffer {
                    // Bounds what the kernel holds for a client that reads slowly.
                    let _ = socket2::SockRef::from(&stream).set_send_buffer_size(size);
                }
                // Bounds what the kernel holds unsent for a client that reads slowly, without
                // the cap on in-flight bytes that SO_SNDBUF puts on a fast one (Linux only).
                #[cfg(any(target_os = "linux", target_os = "android"))]
                if let Some(bytes) = limits.unsent_buffer {
                    let _ = socket2::SockRef::from(&stream).set_tcp_notsent_lowat(bytes);
                }
                let protocols = Arc::clone(&protocols);
                let service = service.clone();
                let metrics = metrics.clone();
                let stop = shutdown.clone();
                let Some(tls) = tls.clone() else {
                    connections.spawn(async move {
                        let _open = open;
                        let (service, watch) = connection::counted(service, limits, None);
                        let conn = Served::sniff(&protocols, stream, limits.send_timeout, service);
                        connection::drive(conn, watch, stop, &metrics, name, peer).await;
                    });
                    continue;
                };
                let mut stop_handshake = shutdown.clone();
                connections.spawn(async move {
                    let _open = open;
                    let stream = tokio::select! {
                        stream = handshake(&tls, stream, peer, name) => match stream {
                            Some(stream) => stream,
                            None => return,
                        },
                        // Shutting down: a connection that never got to a request is dropped.
                        _ = stop_handshake.wait_for(|draining| draining.is_some()) => return,
                    };
                    let session = stream.get_ref().1;
                    let negotiated = served::negotiated(session.alpn_protocol());
                    // The client certificate's digest identifies a `[[clients]]` entry.
                    let cert = session
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|leaf| ClientCert(Sha256::digest(leaf.as_ref()).into()));
                    let (service, watch) = connection::counted(service, limits, cert);
                    let conn = Served::negotiated(
                        &protocols,
                        negotiated,
                        stream,
                        limits.send_timeout,
                        service,
                    );
                    connection::drive(conn, watch, stop, &metrics, name, peer).await;
                });
            }
        }
    }
    drop(source);
    // A worker may see its channel close before the deadline is published: wait for it.
    let deadline = match shutdown.wait_for(|draining| draining.is_some()).await {
        Ok(deadline) => (*deadline).unwrap_or_else(Instant::now),
        // The sender is gone: nobody is waiting for a drain.
        Err(_) => Instant::now(),
    };
    // Every connection saw the same signal and is finishing its responses politely.
    let drained = tokio::time::timeout_at(deadline, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            listener = name,
            open = connections.len(),
            "drain timeout passed; closing remaining connections"
        );
    }
    connections.shutdown().await;
}

/// The server side of the TLS handshake; `None` (logged at debug and counted) if it failed.
async fn handshake(
    tls: &TlsSettings,
    stream: TcpStream,
    peer: SocketAddr,
    name: &'static str,
) -> Option<TlsStream<TcpStream>> {
    let acceptor = TlsAcceptor::from(tls.config.load_full());
    let (reason, error) =
        match tokio::time::timeout(tls.handshake_timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => return Some(stream),
            Ok(Err(e)) => (handshake_failure(&e), e.to_string()),
            Err(_) => (
                TlsHandshakeError::Timeout,
                format!("not finished within {:?}", tls.handshake_timeout),
            ),
        };
    tracing::debug!(
        listener = name,
        %peer,
        reason = reason.as_str(),
        %error,
        "TLS handshake failed"
    );
    tls.metrics.tls_handshake_error(reason);
    None
}

/// Why a handshake failed, from the error tokio-rustls returned (a `rustls::Error` wrapped in
/// an `io::Error`, or a plain I/O error from the socket).
fn handshake_failure(e: &std::io::Error) -> TlsHandshakeError {
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return TlsHandshakeError::Io;
    };
    match tls {
        rustls::Error::NoCertificatesPresented => TlsHandshakeError::NoClientCert,
        rustls::Error::InvalidCertificate(_) => TlsHandshakeError::BadCertificate,
        rustls::Error::AlertReceived(_) => TlsHandshakeError::ClientAlert,
        _ => TlsHandshakeError::Protocol,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped(e: rustls::Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn handshake_failures_map_to_bounded_reasons() {
        use rustls::{AlertDescription, CertificateError, Error, InvalidMessage};
        let cases = [
            (
                wrapped(Error::NoCertificatesPresented),
                TlsHandshakeError::NoClientCert,
            ),
            (
                wrapped(Error::InvalidCertificate(CertificateError::UnknownIssuer)),
                TlsHandshakeError::BadCertificate,
            ),
            (
                wrapped(Error::AlertReceived(AlertDescription::UnknownCA)),
                TlsHandshakeError::ClientAlert,
            ),
            (
                wrapped(Error::InvalidMessage(InvalidMessage::InvalidContentType)),
                TlsHandshakeError::Protocol,
            ),
            (
                std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                TlsHandshakeError::Io,
            ),
        ];
        for (error, reason) in cases {
            assert_eq!(handshake_failure(&error), reason, "{error}");
        }
    }

    #[test]
    fn the_connection_refusal_is_well_formed() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let declared: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(declared, body.len());
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "too_many_connections");
    }
}
