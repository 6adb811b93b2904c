//! The upstream connector: TCP (hyper-util), then TLS for `https://` (hyper-rustls), the two
//! together bounded by the upstream's connect timeout. hyper-util's own timeout covers TCP
//! only, so an upstream that accepts and then stalls the handshake would otherwise hold the
//! request until its deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::Authority;
use http::Uri;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `HttpsConnector` with one deadline for connect plus handshake.
#[derive(Clone)]
pub struct Connector {
    inner: HttpsConnector<HttpConnector>,
    timeout: Duration,
    alerts: LateAlerts,
}

impl Connector {
    pub fn new(
        inner: HttpsConnector<HttpConnector>,
        timeout: Duration,
        alerts: LateAlerts,
    ) -> Connector {
        Connector {
            inner,
            timeout,
            alerts,
        }
    }
}

impl tower::Service<Uri> for Connector {
    type Response = Recorded;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let authority = uri.authority().cloned();
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        let alerts = self.alerts.clone();
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(Ok(stream)) => Ok(Recorded {
                    inner: stream,
                    authority,
                    alerts,
                }),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting (TCP and TLS handshake) took longer than {timeout:?}"),
                )) as BoxError),
            }
        })
    }
}

/// An upstream connection that reports a TLS alert its server sent before hanging up.
///
/// Under TLS 1.3 a server judges the client certificate after the client's handshake has
/// ended, so its refusal (`CertificateRequired`, `UnknownCA`, …) arrives once the connection
/// is in hyper's hands. If hyper's next operation is a write, it meets the closed socket
/// (EPIPE) with the alert still unread, and the request would fail as a bare "broken pipe".
/// This wrapper reads the alert then and fails that write with it instead, so the error
/// says what the upstream refused. The error belongs to this connection only; the alert is
/// also noted in its upstream's [`LateAlerts`] for a request that never reached it.
pub struct Recorded {
    inner: MaybeHttpsStream<TokioIo<TcpStream>>,
    authority: Option<Authority>,
    alerts: LateAlerts,
}

/// The last fatal TLS alert that ended one of an upstream's connections, with the endpoint
/// (authority) it came from.
///
/// When hyper meets the alert before the connection took its first request, it reports that
/// request only as canceled ("connection closed": never written), without the cause. A
/// request notes [`LateAlerts::mark`] before it is sent; if it then comes back canceled,
/// [`LateAlerts::since`] tells whether a connection to the same endpoint failed with an alert
/// meanwhile. One relaxed atomic load on the request path; the lock only on failures.
#[derive(Clone, Default)]
pub struct LateAlerts(Arc<Alerts>);

#[derive(Default)]
struct Alerts {
    /// How many alerts were recorded.
    seq: AtomicU64,
    last: Mutex<Option<(Option<Authority>, rustls::AlertDescription)>>,
}

impl LateAlerts {
    fn record(&self, authority: Option<Authority>, alert: rustls::AlertDescription) {
        if let Ok(mut last) = self.0.last.lock() {
            *last = Some((authority, alert));
            self.0.seq.fetch_add(1, Ordering::Release);
        }
    }

    /// Where the record stands before a request is sent.
    pub fn mark(&self) -> u64 {
        self.0.seq.load(Ordering::Acquire)
    }

    /// The alert a connection to `authority` failed with after `mark`, if one did.
    pub fn since(&self, mark: u64, authority: Option<&Authority>) -> Option<String> {
        if self.0.seq.load(Ordering::Acquire) == mark {
            return None;
        }
        let last = self.0.last.lock().ok()?;
        match &*last {
            Some((from, alert)) if from.as_ref() == authority => Some(format!("{alert:?}")),
            _ => None,
        }
    }
}

impl Connection for Recorded {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}

impl Recorded {
    /// A write failed because the server closed the connection (it refused the client
    /// certificate and hung up): the alert it sent first may still be waiting unread. Read
    /// it and fail the write with it. The read goes straight to the socket (non-blocking),
    /// since tokio only reads once its event loop has seen the socket readable.
    fn after_write<T>(&mut self, result: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if let Poll::Ready(Err(e)) = &result {
            let closed = matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            );
            if closed {
                if let Some(alert) = self.salvage_alert() {
                    self.alerts.record(self.authority.clone(), alert);
                    // As tokio-rustls reports an alert met while reading.
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        rustls::Error::AlertReceived(alert),
                    )));
                }
            }
        }
        result
    }

    fn salvage_alert(&mut self) -> Option<rustls::AlertDescription> {
        use std::io::Read as _;
        let MaybeHttpsStream::Https(tls) = &mut self.inner else {
            return None;
        };
        let (tcp, conn) = tls.inner_mut().get_mut();
        let mut buf = [0u8; 512];
        let socket = socket2::SockRef::from(tcp.inner().inner());
        let n = (&*socket).read(&mut buf).ok()?;
        let mut received = buf.get(..n).unwrap_or_default();
        while !received.is_empty() {
            if !matches!(conn.read_tls(&mut received), Ok(1..)) {
                return None;
            }
            if let Err(rustls::Error::AlertReceived(alert)) = conn.process_new_packets() {
                return Some(alert);
            }
        }
        None
    }
}

impl hyper::rt::Read for Recorded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Err(e)) = &result {
            let alert = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>());
            if let Some(rustls::Error::AlertReceived(alert)) = alert {
                self.alerts.record(self.authority.clone(), *alert);
            }
        }
        result
    }
}

impl hyper::rt::Write for Recorded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.after_write(result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after_write(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.after_write(result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
