//! A client socket whose writes must make progress: `limits.send_timeout` (nginx's
//! `send_timeout`, made robust to trickling), so a client that stops reading, or reads a few
//! bytes now and then, cannot hold a connection, its response and the upstream connection
//! behind it for long.
//!
//! The clock runs only while the gateway has something to send that the client does not take:
//! it starts at the first write that cannot proceed (the socket's send buffer is full). It
//! stops when the client has caught up (a flush completes: hyper, h2 and the WebSocket relay
//! flush once their own buffers are empty; a write that merely fits in a TLS buffer proves
//! nothing) or has taken at least [`MIN_PROGRESS`] bytes since it started. A client that
//! reads nothing, or trickles (64 bytes every few seconds: the classic slow-read attack, which
//! a plain "time between two writes" lets through), gets the connection's writes failing with
//! [`SendTimeout`] once the timeout passed. That ends the connection (hyper drops it; on
//! HTTP/2 every stream on it) with a reset: what the kernel still holds for that client is
//! discarded at once instead of waiting, orphaned, for a peer that does not read (nginx's
//! `reset_timedout_connection`). A slow but steady reader, or one that pauses between
//! requests, is never cut. Reads are never timed here: idle time between requests is the
//! connection driver's business (`keepalive_timeout`).
//!
//! Cost on the request path: one branch per write that succeeds at once while nothing is
//! blocked; the timer is allocated the first time a write blocks, and reused.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// The error a blocked write ends with once `limits.send_timeout` passed; its kind is
/// [`io::ErrorKind::TimedOut`], which is how it is recognised after hyper or h2 wrapped it.
#[derive(Debug, thiserror::Error)]
#[error("the client took too little of its response for {0:?} (limits.send_timeout)")]
pub(crate) struct SendTimeout(pub(crate) Duration);

/// A client socket that can be set to end with a reset (RST) when it is closed.
pub(crate) trait Abort {
    /// From now on, closing the socket resets it and discards unsent data (`SO_LINGER` 0).
    fn abort_on_close(&self);
}

impl Abort for TcpStream {
    fn abort_on_close(&self) {
        let _ = self.set_zero_linger();
    }
}

impl Abort for tokio_rustls::server::TlsStream<TcpStream> {
    fn abort_on_close(&self) {
        self.get_ref().0.abort_on_close();
    }
}

/// Bytes a blocked client must take within `send_timeout` for its clock to start over (or all
/// that was offered): 16 KiB, about 270 bytes/s at the default 60 s, far below any real
/// client's pace and far above a slow-read attacker's.
pub(crate) const MIN_PROGRESS: usize = 16 * 1024;

/// `T` with its writes bounded by a progress timeout (none: `T` as it is).
pub(crate) struct SendDeadline<T> {
    io: T,
    timeout: Option<Duration>,
    /// Allocated at the first blocked write; armed while the client is behind.
    timer: Option<Pin<Box<Sleep>>>,
    armed: bool,
    /// Bytes the client took since the clock started.
    progress: usize,
}

impl<T: Abort> SendDeadline<T> {
    pub(crate) fn new(io: T, timeout: Option<Duration>) -> SendDeadline<T> {
        SendDeadline {
            io,
            timeout,
            timer: None,
            armed: false,
            progress: 0,
        }
    }

    /// A write returned `polled`: start, keep, stop or enforce the clock.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Ready(Ok(n)) if self.armed => {
                self.progress = self.progress.saturating_add(n);
                if self.progress >= MIN_PROGRESS {
                    self.armed = false; // moving at a real pace
                    Poll::Ready(Ok(n))
                } else if self.expired() {
                    Poll::Ready(Err(self.cut()))
                } else {
                    Poll::Ready(Ok(n))
                }
            }
            Poll::Pending => self.blocked(cx),
            ready => ready,
        }
    }

    /// A flush or shutdown returned `polled`: done means everything offered was taken.
    fn flushed(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<()>>,
    ) -> Poll<io::Result<()>> {
        match polled {
            Poll::Pending => self.blocked(cx),
            ready => {
                self.armed = false;
                ready
            }
        }
    }

    /// The client takes nothing now: start the clock if it is not running, and fail once it
    /// has run out. Polling the timer registers this task's waker with it, so the connection
    /// is polled again when it fires even if the client never opens its window.
    fn blocked<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let Some(timeout) = self.timeout else {
            return Poll::Pending;
        };
        if !self.armed {
            let deadline = Instant::now() + timeout;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.armed = true;
            self.progress = 0;
        }
        let fired = self
            .timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
        if fired {
            return Poll::Ready(Err(self.cut()));
        }
        Poll::Pending
    }

    /// Whether the running clock has passed its deadline.
    fn expired(&self) -> bool {
        self.timer
            .as_ref()
            .is_some_and(|timer| timer.deadline() <= Instant::now())
    }

    /// The timeout passed: the connection ends with a reset.
    fn cut(&mut self) -> io::Error {
        self.armed = false;
        self.io.abort_on_close();
        io::Error::new(
            io::ErrorKind::TimedOut,
            SendTimeout(self.timeout.unwrap_or_default()),
        )
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for SendDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Abort + Unpin> AsyncWrite for SendDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.wrote(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.wrote(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.flushed(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.io).poll_shutdown(cx);
        this.flushed(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    impl Abort for DuplexStream {
        fn abort_on_close(&self) {}
    }

    impl Abort for tokio::io::BufWriter<DuplexStream> {
        fn abort_on_close(&self) {}
    }

    /// A TLS stream takes whole writes into its own buffer while the socket is blocked; that
    /// is not the client catching up (only a completed flush is). A trickling client behind
    /// such a buffer (here a `BufWriter`, written then flushed the way hyper does) is cut.
    #[tokio::test(start_paused = true)]
    async fn a_write_that_only_fills_a_buffer_does_not_stop_the_clock() {
        let (near, mut far) = tokio::io::duplex(64);
        let buffered = tokio::io::BufWriter::with_capacity(64, near);
        let mut io = SendDeadline::new(buffered, Some(Duration::from_secs(5)));
        tokio::spawn(async move {
            let mut buf = [0; 8];
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                if far.read(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
            }
        });
        let started = Instant::now();
        // Each round offers 64 bytes and the client takes 8 every 2 s: it never catches up.
        let rounds = async {
            loop {
                if let Err(e) = io.write_all(&[1; 64]).await {
                    return e;
                }
                if let Err(e) = io.flush().await {
                    return e;
                }
            }
        };
        let err = tokio::time::timeout(Duration::from_secs(60), rounds)
            .await
            .expect("cut within the minute");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let took = started.elapsed();
        assert!(took <= Duration::from_secs(7), "{took:?}");
    }

    /// A write that cannot proceed (the peer reads nothing) fails after the timeout with the
    /// recognisable error; before that, nothing fails.
    #[tokio::test(start_paused = true)]
    async fn a_stalled_write_fails_after_the_timeout() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut io = SendDeadline::new(near, Some(Duration::from_secs(5)));
        io.write_all(&[0; 64]).await.unwrap(); // fills the pipe
        let started = Instant::now();
        let err = io.write_all(&[1; 16]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err
            .get_ref()
            .unwrap()
            .downcast_ref::<SendTimeout>()
            .is_some());
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        // The far side still has the first 64 bytes: nothing was lost before the cut.
        let mut got = [0; 64];
        far.read_exact(&mut got).await.unwrap();
    }

    /// A reader that keeps a real pace (here 8 KiB/s, far past the 5 s timeout) is never cut:
    /// each 16 KiB it takes starts the clock over.
    #[tokio::test(start_paused = true)]
    async fn a_steady_reader_is_never_cut() {
        let (near, mut far) = tokio::io::duplex(8192);
        let mut io = SendDeadline::new(near, Some(Duration::from_secs(5)));
        let reader = tokio::spawn(async move {
            let mut total = 0;
            let mut buf = [0; 8192];
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                match far.read(&mut buf).await.unwrap() {
                    0 => return total,
                    n => total += n,
                }
            }
        });
        let started = Instant::now();
        io.write_all(&[7; 160 * 1024]).await.unwrap();
        io.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), 160 * 1024);
        assert!(started.elapsed() >= Duration::from_secs(19));
    }

    /// The slow-read attack: a client that takes a few bytes every few seconds makes "progress"
    /// at every write, which would keep a plain between-writes timer from ever firing. It is
    /// cut once the timeout passed without [`MIN_PROGRESS`] bytes taken.
    #[tokio::test(start_paused = true)]
    async fn a_trickling_reader_is_cut() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut io = SendDeadline::new(near, Some(Duration::from_secs(5)));
        tokio::spawn(async move {
            let mut buf = [0; 8];
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                if far.read(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
            }
        });
        let started = Instant::now();
        let err = io.write_all(&[1; 64 * 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(5) && took <= Duration::from_secs(7),
            "{took:?}"
        );
    }

    /// A client that caught up stops the clock: after a pause with nothing to send (a model
    /// thinking), the next blocked write gets a whole timeout of its own.
    #[tokio::test(start_paused = true)]
    async fn catching_up_stops_the_clock() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut io = SendDeadline::new(near, Some(Duration::from_secs(5)));
        let t0 = Instant::now();
        let reader = tokio::spawn(async move {
            let mut buf = [0; 64];
            // Drains the pipe at 4 s and at 68 s: each time within 5 s of a write blocking.
            for at in [4, 68] {
                tokio::time::sleep_until(t0 + Duration::from_secs(at)).await;
                far.read_exact(&mut buf).await.unwrap();
            }
            far
        });
        io.write_all(&[0; 64]).await.unwrap(); // fills the pipe
        io.write_all(&[1; 16]).await.unwrap(); // blocks at 0 s until the drain at 4 s
        io.flush().await.unwrap(); // all taken: the clock stops
        tokio::time::sleep(Duration::from_secs(60)).await; // nothing to send
        io.write_all(&[2; 48]).await.unwrap(); // fills the pipe again at 64 s
        io.write_all(&[3; 16]).await.unwrap(); // blocks until 68 s: not cut
        assert_eq!(t0.elapsed(), Duration::from_secs(68));
        drop(reader.await.unwrap());
    }

    /// Reads are not timed: a connection waiting for its client's next request is untouched.
    #[tokio::test(start_paused = true)]
    async fn reads_are_not_timed() {
        let (near, mut far) = tokio::io::duplex(16);
        let mut io = SendDeadline::new(near, Some(Duration::from_secs(1)));
        let read = tokio::spawn(async move {
            let mut buf = [0; 4];
            io.read_exact(&mut buf).await.map(|_| buf)
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        far.write_all(b"ping").await.unwrap();
        assert_eq!(&read.await.unwrap().unwrap(), b"ping");
    }
}
