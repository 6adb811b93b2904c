//! The relay of one upgraded session: both connections copied both ways, bytes counted as
//! they are written, and the session's end (close, failure, or a peer that does not follow
//! the other's close) decided here. See `upgrade.rs` for the choices behind it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Copy buffer per direction: large enough that multi-MiB audio or image messages do not
/// cost a syscall per 8 KiB.
const RELAY_BUFFER: usize = 64 * 1024;

/// Once one side of a session ended, how long the other gets to end too (see [`relay`]).
const CLOSE_LINGER: Duration = Duration::from_secs(10);

/// Holds one `switchyard_websocket_sessions_open` while the session lives.
struct OpenSession(IntGauge);

impl OpenSession {
    fn start(gauge: IntGauge) -> Self {
        gauge.inc();
        OpenSession(gauge)
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One relayed session.
pub(super) struct Session {
    open: OpenSession,
    to_upstream: IntCounter,
    to_client: IntCounter,
    upstream: String,
    request_id: Option<HeaderValue>,
}

impl Session {
    /// A session to `upstream`, open (in `open`) from now on; `to_upstream` and `to_client`
    /// count the bytes written each way.
    pub(super) fn new(
        open: IntGauge,
        (to_upstream, to_client): (IntCounter, IntCounter),
        upstream: String,
        request_id: Option<HeaderValue>,
    ) -> Session {
        Session {
            open: OpenSession::start(open),
            to_upstream,
            to_client,
            upstream,
            request_id,
        }
    }

    /// Wait for both upgrades, then relay until the session ends.
    pub(super) async fn run(self, client: OnUpgrade, upstream: OnUpgrade) {
        let start = Instant::now();
        let request_id = self
            .request_id
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(error) => {
                tracing::debug!(
                    request_id,
                    upstream = %self.upstream,
                    %error,
                    "WebSocket upgrade did not complete"
                );
                return;
            }
        };
        let relayed = relay(
            TokioIo::new(client),
            TokioIo::new(upstream),
            self.to_client,
            self.to_upstream,
            CLOSE_LINGER,
        )
        .await;
        let seconds = start.elapsed().as_secs_f64();
        match relayed {
            Ok((to_upstream, to_client)) => tracing::debug!(
                request_id,
                upstream = %self.upstream,
                to_upstream,
                to_client,
                seconds,
                "WebSocket session ended"
            ),
            Err(error) => tracing::debug!(
                request_id,
                upstream = %self.upstream,
                %error,
                seconds,
                "WebSocket session ended with an error"
            ),
        }
        drop(self.open);
    }
}

/// How a relayed session ended other than by both sides closing.
#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("one side ended and the other did not follow within {0:?}")]
    Linger(Duration),
}

/// Copy both ways until both directions ended (each side's end of stream is passed on as a
/// write shutdown, so a half-close reaches the other peer while the other direction keeps
/// flowing) or either failed. WebSocket has no use for a half-open connection: once one side
/// ended, the other gets `linger` to finish its close handshake and close too.
/// Returns the bytes sent (to the upstream, to the client).
async fn relay<C, U>(
    client: C,
    upstream: U,
    to_client: IntCounter,
    to_upstream: IntCounter,
    linger: Duration,
) -> Result<(u64, u64), RelayError>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (client_eof, client_ended) = oneshot::channel();
    let (upstream_eof, upstream_ended) = oneshot::channel();
    let mut client = Side::new(client, to_client, client_eof);
    let mut upstream = Side::new(upstream, to_upstream, upstream_eof);
    let copy = tokio::io::copy_bidirectional_with_sizes(
        &mut client,
        &mut upstream,
        RELAY_BUFFER,
        RELAY_BUFFER,
    );
    let one_ended = async {
        tokio::select! {
            Ok(()) = client_ended => {}
            Ok(()) = upstream_ended => {}
            else => std::future::pending::<()>().await,
        }
        tokio::time::sleep(linger).await;
    };
    tokio::select! {
        biased;
        copied = copy => Ok(copied?),
        () = one_ended => Err(RelayError::Linger(linger)),
    }
}

/// One upgraded connection in the relay: counts the bytes written to it and reports when
/// reading from it reached the end.
struct Side<T> {
    inner: T,
    written: IntCounter,
    eof: Option<oneshot::Sender<()>>,
}

impl<T> Side<T> {
    fn new(inner: T, written: IntCounter, eof: oneshot::Sender<()>) -> Self {
        Side {
            inner,
            written,
            eof: Some(eof),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Side<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() == before {
            if let Some(eof) = self.eof.take() {
                let _ = eof.send(());
            }
        }
        read
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Side<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            self.written.inc_by(n as u64);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters() -> (IntCounter, IntCounter) {
        let c = || IntCounter::new("c", "c").unwrap();
        (c(), c())
    }

    #[tokio::test]
    async fn relays_both_ways_and_passes_a_half_close_on() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, client_gw) = tokio::io::duplex(1024);
        let (upstream_gw, mut upstream) = tokio::io::duplex(1024);
        let (to_client, to_upstream) = counters();
        let relayed = tokio::spawn(relay(
            client_gw,
            upstream_gw,
            to_client.clone(),
            to_upstream.clone(),
            Duration::from_secs(3600),
        ));
        let mut buf = [0u8; 5];
        client.write_all(b"hello").await.unwrap();
        upstream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        // The client half-closes: the upstream sees the end and can still answer.
        client.shutdown().await.unwrap();
        assert_eq!(upstream.read(&mut buf).await.unwrap(), 0);
        upstream.write_all(b"bye!!").await.unwrap();
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"bye!!");
        drop(upstream);
        let (up, down) = relayed.await.unwrap().unwrap();
        assert_eq!((up, down), (5, 5));
        assert_eq!((to_upstream.get(), to_client.get()), (5, 5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_side_that_never_follows_a_close_is_let_go_after_the_linger() {
        let (client, client_gw) = tokio::io::duplex(1024);
        let (upstream_gw, _silent_upstream) = tokio::io::duplex(1024);
        let (to_client, to_upstream) = counters();
        drop(client);
        let relayed = relay(
            client_gw,
            upstream_gw,
            to_client,
            to_upstream,
            Duration::from_secs(10),
        );
        let started = Instant::now();
        let error = relayed.await.unwrap_err();
        assert!(matches!(error, RelayError::Linger(_)), "{error}");
        assert!(started.elapsed() >= Duration::from_secs(10));
    }
}
