//! The load harness's own HTTP/1.1 load generator (`bash benches/load/run.sh`), for the two
//! measurements wrk cannot make: latency at a fixed request rate, and many idle streams.
//!
//! `rate ADDR`: open-loop latency at a fixed rate, like wrk2. C keep-alive connections share one
//! global schedule: request k is due at t0 + k/rate and connection j sends the requests
//! k ≡ j (mod C). Coordinated omission is corrected: when a connection is still busy with its
//! previous request as a request falls due, that request's latency counts from when it was
//! due; when the connection was idle (the send was late only because tokio timers tick once a
//! millisecond), it counts from the actual send. Prints one JSON line: achieved rate, errors,
//! non-2xx, percentiles in µs.
//!
//! `hold ADDR`: opens N connections (at most `--parallel` opening at once, fewer than the 128
//! that tokio's and std's `TcpListener::bind` give a listen backlog, so that none overflows and
//! no SYN waits a second for its retransmission), each with one streaming chat request carrying `x-load-hold: 1` (the load
//! upstream then sends one SSE event and keeps the stream open). Once every stream has its first
//! body bytes (or `--open-timeout` passed), prints `READY {json}`; then holds everything until
//! stdin reaches EOF (or `--max-hold` passed), prints `DONE {json}` and exits.
//!
//! One current-thread tokio runtime: the generator uses about one core, like `wrk -t1`.
//!
//! Usage: `load_client rate ADDR [--rate 10000] [--duration 5] [--connections 32]
//! [--body FILE] [--path /v1/chat/completions]`, `load_client hold ADDR [--streams 10000]
//! [--parallel 100] [--open-timeout 30] [--max-hold 120] [--body FILE] [--path …]`.

use std::collections::HashMap;
use std::error::Error;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, HOST};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::{sleep_until, timeout, timeout_at, Instant};

type BoxError = Box<dyn Error + Send + Sync>;

/// A request that takes longer than this counts as an error (and its connection is replaced).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

const DEFAULT_PATH: &str = "/v1/chat/completions";
const DEFAULT_CHAT: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Hello!"}]}"#;
const DEFAULT_STREAM: &str =
    r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Hello!"}]}"#;

/// Where requests go and what they carry.
struct Target {
    addr: SocketAddr,
    authority: String,
    path: String,
    body: Bytes,
}

impl Target {
    fn request(&self, hold: bool) -> Result<Request<Full<Bytes>>, http::Error> {
        let mut req = Request::post(self.path.as_str())
            .header(HOST, self.authority.as_str())
            .header(CONTENT_TYPE, "application/json");
        if hold {
            req = req.header("x-load-hold", "1");
        }
        req.body(Full::new(self.body.clone()))
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, BoxError> {
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}

/// `--name value` options after the subcommand and address.
struct Args {
    addr: SocketAddr,
    opts: HashMap<String, String>,
}

impl Args {
    fn parse(rest: &[String]) -> Result<Args, BoxError> {
        let (addr, flags) = rest.split_first().ok_or("missing ADDR")?;
        let addr = addr.parse().map_err(|e| format!("ADDR {addr}: {e}"))?;
        let mut opts = HashMap::new();
        let mut it = flags.iter();
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

    fn target(&self, default_body: &'static str) -> Result<Target, BoxError> {
        let body = match self.opts.get("body") {
            Some(file) => Bytes::from(std::fs::read(file).map_err(|e| format!("{file}: {e}"))?),
            None => Bytes::from_static(default_body.as_bytes()),
        };
        Ok(Target {
            addr: self.addr,
            authority: self.addr.to_string(),
            path: self
                .opts
                .get("path")
                .cloned()
                .unwrap_or_else(|| DEFAULT_PATH.to_owned()),
            body,
        })
    }
}

/// Writes one line to stdout and flushes it (an error, not a panic, when stdout is gone).
fn emit(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

// ---- rate --------------------------------------------------------------------------------

/// What one connection of the `rate` run saw.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    non_2xx: u64,
    errors: u64,
    /// Requests never sent: their connection was still behind schedule at the give-up time.
    unsent: u64,
    /// Requests measured from their due time because their connection was still busy.
    late: u64,
    reconnects: u64,
    last_done: Option<Instant>,
}

/// One request on a (re)used connection; the connection is put back only when it can carry
/// another request.
async fn exchange(
    conn: &mut Option<SendRequest<Full<Bytes>>>,
    target: &Target,
    reconnects: &mut u64,
) -> Result<StatusCode, BoxError> {
    let mut sender = match conn.take() {
        Some(s) if !s.is_closed() => s,
        _ => {
            *reconnects += 1;
            target.connect().await?
        }
    };
    // A keep-alive connection the server closed since: reconnect rather than fail.
    if sender.ready().await.is_err() {
        *reconnects += 1;
        sender = target.connect().await?;
        sender.ready().await?;
    }
    let resp = sender.send_request(target.request(false)?).await?;
    let status = resp.status();
    let close = resp
        .headers()
        .get(CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    resp.into_body().collect().await?;
    if !close {
        *conn = Some(sender);
    }
    Ok(status)
}

/// The global schedule of a `rate` run: request k is due at `t0 + k / rate`.
#[derive(Clone, Copy)]
struct Schedule {
    t0: Instant,
    rate: f64,
    /// Requests in the run.
    total: u64,
    /// Connections, each sending every `connections`-th request.
    connections: u64,
    /// Requests not yet sent by then are given up (counted as `unsent`).
    give_up: Instant,
}

/// Connection `j`: sends requests j, j+C, j+2C, … when they fall due.
async fn rate_connection(
    j: u64,
    s: Schedule,
    target: Arc<Target>,
    mut conn: Option<SendRequest<Full<Bytes>>>,
) -> Tally {
    let c = s.connections;
    let mut tally = Tally {
        latencies_us: Vec::with_capacity(usize::try_from(s.total / c + 1).unwrap_or(0)),
        ..Tally::default()
    };
    let mut k = j;
    while k < s.total {
        let due = s.t0 + Duration::from_secs_f64(k as f64 / s.rate);
        let now = Instant::now();
        if now >= s.give_up {
            tally.unsent = (s.total - k).div_ceil(c);
            break;
        }
        let start = if now < due {
            sleep_until(due).await;
            Instant::now()
        } else {
            tally.late += 1;
            due
        };
        let result = timeout(
            REQUEST_TIMEOUT,
            exchange(&mut conn, &target, &mut tally.reconnects),
        )
        .await;
        let done = Instant::now();
        match result {
            Ok(Ok(status)) => {
                let us = done.duration_since(start).as_micros();
                tally
                    .latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
                if !status.is_success() {
                    tally.non_2xx += 1;
                }
                tally.last_done = Some(done);
            }
            Ok(Err(_)) | Err(_) => {
                tally.errors += 1;
                conn = None;
            }
        }
        k += c;
    }
    tally
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u32], p: f64) -> Option<u32> {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

async fn rate(args: Args) -> Result<(), BoxError> {
    let rate: f64 = args.num("rate", 10_000.0)?;
    let duration: f64 = args.num("duration", 5.0)?;
    let c: u64 = args.num("connections", 32)?;
    if !(rate > 0.0 && duration > 0.0 && c > 0) {
        return Err("--rate, --duration and --connections must be positive".into());
    }
    let target = Arc::new(args.target(DEFAULT_CHAT)?);
    let total = (rate * duration).round() as u64;
    // Connect everything first, so the schedule starts on warm connections.
    let mut conns = Vec::new();
    for _ in 0..c {
        conns.push(target.connect().await?);
    }
    let t0 = Instant::now() + Duration::from_millis(10);
    let schedule = Schedule {
        t0,
        rate,
        total,
        connections: c,
        give_up: t0 + Duration::from_secs_f64(2.0 * duration + 5.0),
    };
    let mut tasks = Vec::new();
    for (j, conn) in (0..c).zip(conns) {
        let task = rate_connection(j, schedule, target.clone(), Some(conn));
        tasks.push(tokio::spawn(task));
    }
    let mut all = Tally::default();
    let mut panicked = 0u64;
    for task in tasks {
        let Ok(t) = task.await else {
            panicked += 1;
            continue;
        };
        all.latencies_us.extend_from_slice(&t.latencies_us);
        all.non_2xx += t.non_2xx;
        all.errors += t.errors;
        all.unsent += t.unsent;
        all.late += t.late;
        all.reconnects += t.reconnects;
        all.last_done = all.last_done.max(t.last_done);
    }
    let mut lat = all.latencies_us;
    lat.sort_unstable();
    let seconds = all
        .last_done
        .map_or(0.0, |d| d.saturating_duration_since(t0).as_secs_f64());
    let completed = lat.len() as u64;
    let line = json!({
        "rate": rate,
        "connections": c,
        "scheduled": total,
        "requests": completed,
        "seconds": seconds,
        "rps": if seconds > 0.0 { completed as f64 / seconds } else { 0.0 },
        "errors": all.errors + panicked,
        "non_2xx": all.non_2xx,
        "unsent": all.unsent,
        "late": all.late,
        "reconnects": all.reconnects,
        "p50_us": percentile(&lat, 50.0),
        "p90_us": percentile(&lat, 90.0),
        "p99_us": percentile(&lat, 99.0),
        "p999_us": percentile(&lat, 99.9),
        "max_us": lat.last(),
        "mean_us": if lat.is_empty() { None } else {
            Some(lat.iter().map(|&v| u64::from(v)).sum::<u64>() / completed)
        },
    });
    emit(&line.to_string())?;
    Ok(())
}

// ---- hold --------------------------------------------------------------------------------

/// Opens one stream and waits for its first body bytes.
async fn open_stream(
    target: &Target,
) -> Result<(SendRequest<Full<Bytes>>, hyper::body::Incoming), BoxError> {
    let mut sender = target.connect().await?;
    sender.ready().await?;
    let resp = sender.send_request(target.request(true)?).await?;
    if resp.status() != StatusCode::OK {
        return Err(format!("status {}", resp.status()).into());
    }
    let mut body = resp.into_body();
    loop {
        match body.frame().await {
            Some(Ok(frame)) if frame.data_ref().is_some_and(|d| !d.is_empty()) => {
                return Ok((sender, body))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Err("the stream ended before its first event".into()),
        }
    }
}

/// Opens a stream, reports it, then keeps it open until the process exits, counting the
/// streams that the far side ended.
async fn hold_stream(
    target: Arc<Target>,
    permit: tokio::sync::OwnedSemaphorePermit,
    ready: mpsc::UnboundedSender<Result<(), String>>,
    ended: Arc<AtomicU64>,
) {
    let opened = open_stream(&target).await;
    drop(permit);
    match opened {
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
        }
        Ok((_sender, mut body)) => {
            let _ = ready.send(Ok(()));
            // Nothing more should come; the loop ends when the far side ends the stream.
            while let Some(Ok(_)) = body.frame().await {}
            ended.fetch_add(1, Ordering::Relaxed);
            std::future::pending::<()>().await;
        }
    }
}

async fn hold(args: Args) -> Result<(), BoxError> {
    let n: u64 = args.num("streams", 10_000)?;
    let parallel: usize = args.num("parallel", 100)?;
    let open_timeout = Duration::from_secs_f64(args.num("open-timeout", 30.0)?);
    let max_hold = Duration::from_secs_f64(args.num("max-hold", 120.0)?);
    let target = Arc::new(args.target(DEFAULT_STREAM)?);
    let gate = Arc::new(Semaphore::new(parallel.max(1)));
    let ended = Arc::new(AtomicU64::new(0));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let t0 = Instant::now();
    let opener = {
        let (target, ended) = (target.clone(), ended.clone());
        tokio::spawn(async move {
            for _ in 0..n {
                let Ok(permit) = gate.clone().acquire_owned().await else {
                    return;
                };
                let task = hold_stream(target.clone(), permit, ready_tx.clone(), ended.clone());
                tokio::spawn(task);
            }
        })
    };
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
    let ready = json!({
        "streams": n,
        "opened": opened,
        "failed": failed,
        "pending": n - opened - failed,
        "seconds": t0.elapsed().as_secs_f64(),
        "first_error": first_error,
    });
    emit(&format!("READY {ready}"))?;
    // Stop opening; the open streams stay until the runtime is dropped.
    opener.abort();
    let (eof_tx, eof_rx) = oneshot::channel();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = eof_tx.send(());
    });
    let stdin_eof = timeout(max_hold, eof_rx).await.is_ok();
    let done = json!({
        "held_seconds": t0.elapsed().as_secs_f64(),
        "ended_early": ended.load(Ordering::Relaxed),
        "stdin_eof": stdin_eof,
    });
    emit(&format!("DONE {done}"))?;
    Ok(())
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("load_client: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match argv.get(1).map(String::as_str) {
        Some("rate") => Args::parse(&argv[2..]).map(|a| runtime.block_on(rate(a))),
        Some("hold") => Args::parse(&argv[2..]).map(|a| runtime.block_on(hold(a))),
        _ => Err("usage: load_client rate|hold ADDR [--option value]…".into()),
    }
    .and_then(|r| r);
    // Dropping the runtime closes every connection still open (the held streams).
    drop(runtime);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load_client: {e}");
            ExitCode::FAILURE
        }
    }
}
