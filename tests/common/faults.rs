//! Fault injection on loopback, for the chaos and leak tests.
//!
//! - [`FaultFront`]: a TCP front for a real upstream (a `MockProvider`). The gateway is pointed
//!   at the front; the front forwards to the mock, or misbehaves as its current [`Fault`] says:
//!   refuse connections (the upstream was killed; [`FaultFront::restart`] binds the *same* port
//!   again), reset on accept, reset or close the connection part-way through the response,
//!   stall (a hang is a stall before the first response byte), answer garbage, or trickle the
//!   response a few bytes at a time. The fault can be switched at any time; a switch resets
//!   every connection opened under the previous one (as replacing the upstream process would),
//!   so keep-alive connections cannot outlive a fault.
//! - [`FaultyUpstream`]: a stand-alone upstream that answers every request with a fault of its
//!   own, chosen by the request's `x-fault` header (a [`Served`] name) or, without one, round
//!   robin. Every connection it serves is closed after one request, so the gateway never reuses
//!   one and each request meets exactly the fault it asked for.
//!
//! Neither sleeps to synchronise: delays exist only where they are the fault (a trickle), and
//! every held connection ends when its peer goes away.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Bytes that are not HTTP (a greeting from another protocol, then binary noise).
pub const GARBAGE: &[u8] = b"SSH-2.0-OpenSSH_9.6 \x00\x01\x02\xff\xfe not http\r\n\r\n";

/// Where in a response a fault strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offset {
    /// After this many bytes of the response (`Head(0)`: before its first byte; a small number:
    /// inside the status line or headers).
    Head(usize),
    /// After the head's blank line and this many body bytes.
    Body(usize),
}

/// What a [`FaultFront`] does with connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward both ways untouched.
    Pass,
    /// Nothing listens: connections are refused (the upstream was killed).
    Refuse,
    /// Accept, then reset at once (SO_LINGER 0, close) without reading anything.
    ResetOnAccept,
    /// Forward the request and the response up to the offset, then reset.
    Reset(Offset),
    /// Forward the request and the response up to the offset, then close cleanly (FIN).
    Cut(Offset),
    /// Forward the request and the response up to the offset, then send nothing more; the
    /// connection stays open until the peer closes it.
    Stall(Offset),
    /// Read the request, answer [`GARBAGE`], close.
    Garbage,
    /// Forward the response `bytes` at a time, `gap` apart.
    Trickle { bytes: usize, gap: Duration },
}

impl Fault {
    /// Accept, read the request, never answer (the request reaches the upstream; its answer
    /// is held back).
    pub const HANG: Fault = Fault::Stall(Offset::Head(0));

    /// A short label for counts.
    pub fn name(&self) -> &'static str {
        match self {
            Fault::Pass => "pass",
            Fault::Refuse => "kill",
            Fault::ResetOnAccept => "reset_on_accept",
            Fault::Reset(Offset::Head(_)) => "reset_before_head",
            Fault::Reset(Offset::Body(_)) => "reset_after_head",
            Fault::Cut(Offset::Head(_)) => "cut_in_head",
            Fault::Cut(Offset::Body(_)) => "cut_mid_body",
            Fault::Stall(Offset::Head(0)) => "hang",
            Fault::Stall(Offset::Head(_)) => "stall_in_head",
            Fault::Stall(Offset::Body(_)) => "stall_mid_body",
            Fault::Garbage => "garbage",
            Fault::Trickle { .. } => "trickle",
        }
    }
}

/// A fault-injecting TCP front for `target`, on a fixed loopback port.
pub struct FaultFront {
    addr: SocketAddr,
    target: SocketAddr,
    /// The current fault; every change resets the connections opened under the old one.
    fault: watch::Sender<Fault>,
    /// The accept loop while something listens (`None` while [`Fault::Refuse`] is on).
    accept: Mutex<Option<JoinHandle<()>>>,
    /// Connections accepted so far.
    accepted: Arc<AtomicUsize>,
    /// Connections accepted and not yet ended.
    open: Arc<AtomicUsize>,
}

impl FaultFront {
    /// Listen on `127.0.0.1:0`, forwarding to `target` ([`Fault::Pass`]).
    pub async fn start(target: SocketAddr) -> FaultFront {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let front = FaultFront {
            addr: listener.local_addr().unwrap(),
            target,
            fault: watch::channel(Fault::Pass).0,
            accept: Mutex::new(None),
            accepted: Arc::default(),
            open: Arc::default(),
        };
        front.serve(listener);
        front
    }

    /// The address the gateway should use.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted since start.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections open now (accepted, and neither side has ended them).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn fault(&self) -> Fault {
        *self.fault.borrow()
    }

    /// Switch to `fault`; connections opened under the previous fault are reset.
    /// [`Fault::Refuse`] closes the listener (returning once it is closed), and any other
    /// fault after it binds the same port again.
    pub async fn set(&self, fault: Fault) {
        let was = self.fault.send_replace(fault);
        if fault == Fault::Refuse {
            let task = self.accept.lock().unwrap().take();
            if let Some(task) = task {
                task.abort();
                let _ = task.await; // the listener is dropped with the task
            }
        } else if was == Fault::Refuse {
            // SO_REUSEADDR: connections lingering in TIME_WAIT do not stand in the way.
            let listener = bind(self.addr)
                .unwrap_or_else(|e| panic!("re-binding {} after a kill failed: {e}", self.addr));
            self.serve(listener);
        }
    }

    /// Kill the upstream: nothing listens, open connections are reset.
    pub async fn kill(&self) {
        self.set(Fault::Refuse).await;
    }

    /// Kill, then listen again on the same port with the fault from before (or
    /// [`Fault::Pass`] after a kill).
    pub async fn restart(&self) {
        let fault = match self.fault() {
            Fault::Refuse => Fault::Pass,
            other => other,
        };
        self.kill().await;
        self.set(fault).await;
    }

    fn serve(&self, listener: TcpListener) {
        let target = self.target;
        let faults = self.fault.subscribe();
        let accepted = self.accepted.clone();
        let open = self.open.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::Relaxed);
                let mut faults = faults.clone();
                let fault = *faults.borrow_and_update();
                let open = OpenFront::new(open.clone());
                tokio::spawn(async move {
                    front_connection(stream, target, fault, faults).await;
                    drop(open);
                });
            }
        });
        *self.accept.lock().unwrap() = Some(task);
    }
}

impl Drop for FaultFront {
    fn drop(&mut self) {
        if let Some(task) = self.accept.lock().unwrap().take() {
            task.abort();
        }
        // Connection tasks end when their fault "changes" (the sender is gone).
    }
}

/// Counts a front connection as open while it lives.
struct OpenFront(Arc<AtomicUsize>);

impl OpenFront {
    fn new(count: Arc<AtomicUsize>) -> OpenFront {
        count.fetch_add(1, Ordering::Relaxed);
        OpenFront(count)
    }
}

impl Drop for OpenFront {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A listener on `addr` with SO_REUSEADDR.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Close `stream` with a reset (SO_LINGER 0) instead of a FIN.
pub fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// One connection through the front under `fault`, until it ends or the fault changes
/// (then it is reset).
async fn front_connection(
    mut client: TcpStream,
    target: SocketAddr,
    fault: Fault,
    mut changed: watch::Receiver<Fault>,
) {
    let _ = client.set_nodelay(true);
    let reset_now = match fault {
        Fault::Refuse | Fault::ResetOnAccept => true,
        Fault::Garbage => {
            let answer = async {
                let mut buf = [0u8; 4096];
                if matches!(client.read(&mut buf).await, Ok(n) if n > 0) {
                    let _ = client.write_all(GARBAGE).await;
                    let _ = client.shutdown().await;
                    drain(&mut client).await; // until the peer closes: unread bytes would reset
                }
            };
            tokio::select! {
                () = answer => false,
                _ = changed.changed() => true,
            }
        }
        _ => {
            let Ok(mut upstream) = TcpStream::connect(target).await else {
                return reset(client);
            };
            let _ = upstream.set_nodelay(true);
            let (mut from_client, mut to_client) = client.split();
            let (mut from_upstream, mut to_upstream) = upstream.split();
            let request = async {
                let _ = tokio::io::copy(&mut from_client, &mut to_upstream).await;
                let _ = to_upstream.shutdown().await;
            };
            let response = relay(&mut from_upstream, &mut to_client, fault);
            tokio::pin!(request, response);
            let mut request_done = false;
            let mut reset_now = loop {
                tokio::select! {
                    () = &mut request, if !request_done => request_done = true,
                    end = &mut response => break end == End::Reset,
                    _ = changed.changed() => break true,
                }
            };
            if !reset_now && !request_done {
                // Closed or stalled: the connection lives until the peer leaves.
                tokio::select! {
                    () = &mut request => {}
                    _ = changed.changed() => reset_now = true,
                }
            }
            reset_now
        }
    };
    if reset_now {
        reset(client);
    }
}

/// How the response direction ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Closed with a FIN (the upstream closed, or a cut).
    Fin,
    /// To be reset.
    Reset,
    /// Nothing more is sent; the connection stays open.
    Hold,
}

/// Relay the response from `up` to `down` as `fault` says; a FIN is sent here, a reset or
/// a hold is left to the caller.
async fn relay<R, W>(up: &mut R, down: &mut W, fault: Fault) -> End
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (offset, end) = match fault {
        Fault::Reset(o) => (Some(o), End::Reset),
        Fault::Cut(o) => (Some(o), End::Fin),
        Fault::Stall(o) => (Some(o), End::Hold),
        _ => (None, End::Fin),
    };
    // Where to stop, once known: a `Body` offset needs the end of the head first.
    let limit = |body_at: Option<usize>| match offset? {
        Offset::Head(n) => Some(n),
        Offset::Body(n) => body_at.map(|b| b + n),
    };
    let mut sent = 0usize;
    let mut head = Vec::new(); // the response until its blank line (at most 64 KiB)
    let mut body_at: Option<usize> = None;
    let mut buf = vec![0u8; 16 * 1024];
    while limit(body_at).is_none_or(|l| sent < l) {
        let n = match up.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if body_at.is_none() && head.len() < 64 * 1024 {
            head.extend_from_slice(&buf[..n]);
            body_at = find(&head, b"\r\n\r\n").map(|i| i + 4);
        }
        let take = limit(body_at).map_or(n, |l| n.min(l.saturating_sub(sent)));
        let written = match fault {
            Fault::Trickle { bytes, gap } => trickle(down, &buf[..take], bytes, gap).await,
            _ => down.write_all(&buf[..take]).await.is_ok(),
        };
        if !written {
            return End::Reset;
        }
        sent += take;
    }
    if end == End::Fin {
        let _ = down.shutdown().await;
    }
    end
}

/// Write `chunk` `bytes` at a time with `gap` before each piece; false if the peer is gone.
async fn trickle<W: AsyncWrite + Unpin>(
    down: &mut W,
    chunk: &[u8],
    bytes: usize,
    gap: Duration,
) -> bool {
    for piece in chunk.chunks(bytes.max(1)) {
        tokio::time::sleep(gap).await; // the fault itself, not synchronisation
        if down.write_all(piece).await.is_err() {
            return false;
        }
    }
    true
}

/// Read and discard until the peer closes (or fails).
async fn drain<R: AsyncRead + Unpin>(r: &mut R) {
    let mut buf = [0u8; 4096];
    while matches!(r.read(&mut buf).await, Ok(n) if n > 0) {}
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------
// A stand-alone faulty upstream
// ---------------------------------------------------------------------------------------

/// The faults a [`FaultyUpstream`] serves, one per request, and what the gateway should make
/// of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Served {
    /// The request is read, then the connection is reset: no response byte.
    ResetBeforeHead,
    /// [`GARBAGE`] instead of a response, then a clean close.
    Garbage,
    /// The request is read and never answered.
    Hang,
    /// A response whose head arrives 4 bytes every 25 ms: bytes keep coming, but the head
    /// is never complete in time (a first-byte deadline that an inactivity timer would miss).
    TrickleHead,
    /// A `200` SSE head and one event, then a reset.
    ResetAfterHead,
    /// A `200` SSE head and half an event, then a clean close.
    CutAfterHead,
    /// A `200` SSE head and one event, then silence until the peer leaves.
    StallAfterHead,
}

impl Served {
    pub const ALL: [Served; 7] = [
        Served::ResetBeforeHead,
        Served::Garbage,
        Served::Hang,
        Served::TrickleHead,
        Served::ResetAfterHead,
        Served::CutAfterHead,
        Served::StallAfterHead,
    ];

    /// The `x-fault` header value.
    pub fn name(self) -> &'static str {
        match self {
            Served::ResetBeforeHead => "reset_before_head",
            Served::Garbage => "garbage",
            Served::Hang => "hang",
            Served::TrickleHead => "trickle_head",
            Served::ResetAfterHead => "reset_after_head",
            Served::CutAfterHead => "cut_after_head",
            Served::StallAfterHead => "stall_after_head",
        }
    }

    pub fn from_name(name: &str) -> Option<Served> {
        Served::ALL.into_iter().find(|s| s.name() == name)
    }
}

const SSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
const ONE_EVENT: &[u8] = b"f\r\ndata: partial\n\n\r\n";
const HALF_EVENT: &[u8] = b"f\r\ndata: par";

/// An upstream that serves a [`Served`] fault per request.
pub struct FaultyUpstream {
    addr: SocketAddr,
    task: JoinHandle<()>,
    counts: Arc<Counts>,
}

#[derive(Default)]
struct Counts {
    /// Requests read, per fault (index in [`Served::ALL`]).
    served: [AtomicUsize; Served::ALL.len()],
    /// Connections accepted and not yet closed.
    open: AtomicUsize,
    /// For requests without `x-fault`.
    next: AtomicUsize,
}

/// Counts a connection as open while it lives.
struct Open(Arc<Counts>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl FaultyUpstream {
    pub async fn start() -> FaultyUpstream {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let addr = listener.local_addr().unwrap();
        let counts: Arc<Counts> = Arc::default();
        let shared = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                shared.open.fetch_add(1, Ordering::Relaxed);
                let open = Open(shared.clone());
                tokio::spawn(serve_fault(stream, open));
            }
        });
        FaultyUpstream { addr, task, counts }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests served with `fault` so far.
    pub fn served(&self, fault: Served) -> usize {
        let i = Served::ALL.iter().position(|s| *s == fault).unwrap_or(0);
        self.counts.served[i].load(Ordering::Relaxed)
    }

    /// Connections open now (each ends when the gateway closes its side, or is reset).
    pub fn open(&self) -> usize {
        self.counts.open.load(Ordering::Relaxed)
    }
}

impl Drop for FaultyUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_fault(mut stream: TcpStream, open: Open) {
    let counts = &open.0;
    let _ = stream.set_nodelay(true);
    let Some(head) = read_request(&mut stream).await else {
        return;
    };
    let fault = header_value(&head, "x-fault")
        .and_then(Served::from_name)
        .unwrap_or_else(|| {
            Served::ALL[counts.next.fetch_add(1, Ordering::Relaxed) % Served::ALL.len()]
        });
    let i = Served::ALL.iter().position(|s| *s == fault).unwrap_or(0);
    counts.served[i].fetch_add(1, Ordering::Relaxed);
    match fault {
        Served::ResetBeforeHead => return reset(stream),
        Served::Garbage => {
            let _ = stream.write_all(GARBAGE).await;
            let _ = stream.shutdown().await;
        }
        Served::Hang => {}
        Served::TrickleHead => {
            let endless = SSE_HEAD.iter().chain(ONE_EVENT.iter().cycle());
            let mut piece = Vec::with_capacity(4);
            for byte in endless {
                piece.push(*byte);
                if piece.len() == 4 {
                    tokio::time::sleep(Duration::from_millis(25)).await; // the fault
                    if stream.write_all(&piece).await.is_err() {
                        return;
                    }
                    piece.clear();
                }
            }
        }
        Served::ResetAfterHead => {
            let _ = stream.write_all(&[SSE_HEAD, ONE_EVENT].concat()).await;
            return reset(stream);
        }
        Served::CutAfterHead => {
            let _ = stream.write_all(&[SSE_HEAD, HALF_EVENT].concat()).await;
            let _ = stream.shutdown().await;
        }
        Served::StallAfterHead => {
            let _ = stream.write_all(&[SSE_HEAD, ONE_EVENT].concat()).await;
        }
    }
    // Held (or closed on our side) until the gateway closes its end.
    drain(&mut stream).await;
}

/// Read one request (head plus a `content-length` body); its head as text.
async fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = header_value(&head, "content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Some(head);
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}
