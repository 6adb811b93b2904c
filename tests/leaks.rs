//! No leaks under failing upstreams (issue #7, item 3): 10,000 requests through the real
//! binary, every one of them meeting a fault (connection refused, reset before or after the
//! head, a hang, garbage instead of HTTP, a head trickled slower than the first-byte timeout,
//! a body cut short, a body that stalls). Each client gets a prompt, correct answer (502/504
//! before any byte, a terminated stream after), `switchyard_upstream_errors_total` counts each
//! by kind, and the gateway's file descriptors and RSS come back to where they were after a
//! warm-up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::faults::{FaultyUpstream, Served};
use common::process::{config_file, Gateway};
use common::{dead_addr, full, metric, ReqBody, Scrape};
use http::{Method, Request};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::time::Instant;

/// Requests measured (after the warm-up).
const REQUESTS: usize = 10_000;
/// Requests before the baseline is taken: pools, metric label sets, allocator arenas.
const WARM_UP: usize = 500;
const CONCURRENCY: usize = 32;
/// File descriptors the gateway may hold beyond its baseline once the load has stopped.
const FD_SLACK: usize = 8;
/// RSS growth allowed across the measured requests.
const RSS_SLACK_KIB: u64 = 20 * 1024;
/// Every answer, a cut stream's end included, must come within this (the longest fault
/// resolves at `timeouts.first_byte` / `timeouts.idle`, 150 ms).
const PROMPT: Duration = Duration::from_secs(3);
/// How long the gateway may take to close everything once the load stops.
const SETTLE: Duration = Duration::from_secs(5);

/// A request's fault: one the faulty upstream serves (stateless, to "primary"), or a refused
/// connection (stateful, to "secondary", where nothing listens).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Refused,
    Served(Served),
}

impl Kind {
    const COUNT: usize = Served::ALL.len() + 1;

    fn of(i: usize) -> Kind {
        match i % Kind::COUNT {
            0 => Kind::Refused,
            n => Kind::Served(Served::ALL[n - 1]),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Refused => "refused",
            Kind::Served(s) => s.name(),
        }
    }

    /// What the client must get.
    fn expected(self) -> Outcome {
        let error = |status: u16, code: &str| Outcome::Error(status, code.to_owned());
        match self {
            Kind::Refused => error(502, "upstream_unavailable"),
            Kind::Served(Served::ResetBeforeHead | Served::Garbage) => {
                error(502, "upstream_protocol")
            }
            Kind::Served(Served::Hang | Served::TrickleHead) => error(504, "timeout"),
            Kind::Served(
                Served::ResetAfterHead | Served::CutAfterHead | Served::StallAfterHead,
            ) => Outcome::Cut(200),
        }
    }

    fn request(self, id: &str) -> Request<ReqBody> {
        let (path, body) = match self {
            Kind::Refused => (
                "/v1/responses",
                json!({"model": "m", "input": "hi", "previous_response_id": "resp_1"}),
            ),
            Kind::Served(_) => (
                "/v1/chat/completions",
                json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
            ),
        };
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("content-type", "application/json")
            .header("x-request-id", id);
        if let Kind::Served(s) = self {
            req = req.header("x-fault", s.name());
        }
        req.body(full(body.to_string())).unwrap()
    }
}

/// What a client got.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// A gateway error before any byte: status and `error.code`.
    Error(u16, String),
    /// A head with this status, then a body that broke off.
    Cut(u16),
    /// A whole response (not expected here).
    Complete(u16, String),
    /// No response: the request failed, or nothing came within [`PROMPT`].
    Failed(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Error(status, code) => write!(f, "{status} {code}"),
            Outcome::Cut(status) => write!(f, "{status} + terminated stream"),
            Outcome::Complete(status, body) => write!(f, "{status} complete: {body}"),
            Outcome::Failed(why) => write!(f, "no answer: {why}"),
        }
    }
}

type Http = Client<hyper_util::client::legacy::connect::HttpConnector, ReqBody>;

async fn exchange(client: &Http, addr: std::net::SocketAddr, mut req: Request<ReqBody>) -> Outcome {
    let uri = format!("http://{addr}{}", req.uri());
    *req.uri_mut() = uri.parse().unwrap();
    let answer = async {
        let resp = match client.request(req).await {
            Ok(resp) => resp,
            Err(e) => return Outcome::Failed(common::client::chain(&e)),
        };
        let status = resp.status().as_u16();
        match resp.into_body().collect().await {
            Err(_) => Outcome::Cut(status),
            Ok(body) => {
                let body = body.to_bytes();
                let code = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
                match code {
                    Some(code) if status >= 400 => Outcome::Error(status, code),
                    _ => Outcome::Complete(status, String::from_utf8_lossy(&body).into_owned()),
                }
            }
        }
    };
    tokio::time::timeout(PROMPT, answer)
        .await
        .unwrap_or_else(|_| Outcome::Failed(format!("nothing within {PROMPT:?}")))
}

/// Per kind: outcomes and the slowest answer.
#[derive(Default)]
struct Tally {
    outcomes: BTreeMap<(Kind, Outcome), usize>,
    slowest: BTreeMap<Kind, Duration>,
}

/// Send requests `from..to` (kind by index) with [`CONCURRENCY`] clients, each its own
/// connection pool, and tally the outcomes.
async fn drive(gateway: &Gateway, from: usize, to: usize, tally: &Arc<Mutex<Tally>>) {
    let next = Arc::new(AtomicUsize::new(from));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (next, tally) = (next.clone(), tally.clone());
        let addr = gateway.proxy_addr;
        workers.push(tokio::spawn(async move {
            let client: Http = Client::builder(TokioExecutor::new()).build_http();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= to {
                    break;
                }
                let kind = Kind::of(i);
                let started = Instant::now();
                let outcome = exchange(&client, addr, kind.request(&format!("leak-{i}"))).await;
                let took = started.elapsed();
                let mut t = tally.lock().unwrap();
                *t.outcomes.entry((kind, outcome)).or_default() += 1;
                let slowest = t.slowest.entry(kind).or_default();
                *slowest = (*slowest).max(took);
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
}

/// Open file descriptors of `pid`, and what each one is (`socket:[…]`, `pipe:[…]`, …).
fn fds(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|target| target.display().to_string())
        .collect()
}

/// A `kB` field of `/proc/PID/status` (VmRSS) or a count (Threads).
fn status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// fd kinds with counts, for messages.
fn fd_summary(fds: &[String]) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    for fd in fds {
        let kind = fd.split(':').next().unwrap_or(fd).to_owned();
        *kinds.entry(kind).or_default() += 1;
    }
    kinds
}

/// Wait until the load is over for the gateway: no client connection, no request in flight,
/// and no connection to the faulty upstream left open (its side closes when the gateway's
/// does); then until its fd count is at most `ceiling` (or `timeout` passes). Returns the fds
/// then and the last scrape.
async fn settle(
    gateway: &Gateway,
    upstream: &FaultyUpstream,
    ceiling: usize,
    timeout: Duration,
) -> (Vec<String>, Scrape) {
    let deadline = Instant::now() + timeout;
    let scrape = common::metrics::scrape_within(gateway.admin_addr, timeout, |s| {
        metric("switchyard_worker_connections").sum_in(s) == Some(0.0)
            && metric("switchyard_requests_in_flight").sum_in(s) == Some(0.0)
            && upstream.open() == 0
    })
    .await;
    loop {
        let open = fds(gateway.pid());
        if open.len() <= ceiling || Instant::now() >= deadline {
            return (open, scrape);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_faulted_requests_leak_no_fd_no_memory_and_each_gets_a_prompt_answer() {
    let faulty = FaultyUpstream::start().await;
    let dead = dead_addr().await;
    let extra = r#"
[log]
format = "json"
access_log = false

[timeouts]
connect = "200ms"
first_byte = "150ms"
idle = "150ms"
request = "5s"

[upstreams.primary]
pool_idle_timeout = "500ms"

[upstreams.secondary]
pool_idle_timeout = "500ms"
"#;
    let file = config_file(&common::config_text(faulty.addr(), dead, &[extra]));
    let gateway = Gateway::serve(file.path());
    let pid = gateway.pid();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();

    drive(&gateway, 0, WARM_UP, &tally).await;
    // The baseline: once nothing is open any more (at most a scrape's connection).
    let (before, _) = settle(&gateway, &faulty, usize::MAX, SETTLE).await;
    let rss_before = status_field(pid, "VmRSS");
    let threads_before = status_field(pid, "Threads");
    let warmed = started.elapsed();

    let load = Instant::now();
    drive(&gateway, WARM_UP, WARM_UP + REQUESTS, &tally).await;
    let load_took = load.elapsed();
    let rss_peak = status_field(pid, "VmRSS");
    let (after, scrape) = settle(&gateway, &faulty, before.len() + FD_SLACK, SETTLE).await;
    let open_upstream = faulty.open();
    let rss_after = status_field(pid, "VmRSS");
    let threads_after = status_field(pid, "Threads");

    // The report.
    let tally = tally.lock().unwrap();
    println!(
        "{REQUESTS} faulted requests (+{WARM_UP} warm-up) in {load_took:.2?} ({:.0}/s) at concurrency {CONCURRENCY}; warm-up and baseline took {warmed:.2?}",
        REQUESTS as f64 / load_took.as_secs_f64()
    );
    println!(
        "fds    before {:>6}   after {:>6}   {:?} -> {:?}",
        before.len(),
        after.len(),
        fd_summary(&before),
        fd_summary(&after)
    );
    println!(
        "RSS    before {:>6} KiB after {:>6} KiB (at the end of the load {rss_peak} KiB)",
        rss_before, rss_after
    );
    println!("threads before {threads_before} after {threads_after}; connections still open to the faulty upstream: {open_upstream}");
    println!("requests by outcome (warm-up included):");
    println!(
        "  {:<18} {:<28} {:>6} {:>10}",
        "fault", "outcome", "count", "slowest"
    );
    for ((kind, outcome), count) in &tally.outcomes {
        println!(
            "  {:<18} {:<28} {:>6} {:>10.1?}",
            kind.name(),
            outcome.to_string(),
            count,
            tally.slowest[kind]
        );
    }
    println!("switchyard_upstream_errors_total:");
    for s in metric("switchyard_upstream_errors_total").find(&scrape) {
        if s.value > 0.0 {
            println!(
                "  {:<10} {:<20} {:>6}",
                s.labels["upstream"], s.labels["kind"], s.value
            );
        }
    }

    // Every client got the right answer, promptly. On a loaded machine a served request's
    // head may miss the 150 ms first-byte deadline before its fault strikes: a 504 is then
    // just as right (nothing had reached the client), and is counted as such below.
    let timeout = Outcome::Error(504, "timeout".to_owned());
    let wrong: Vec<String> = tally
        .outcomes
        .iter()
        .filter(|((kind, outcome), _)| {
            *outcome != kind.expected() && !(matches!(kind, Kind::Served(_)) && *outcome == timeout)
        })
        .map(|((kind, outcome), n)| {
            format!(
                "{n} × {}: {outcome} (expected {})",
                kind.name(),
                kind.expected()
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "unexpected answers:\n{}",
        wrong.join("\n")
    );
    let total: usize = tally.outcomes.values().sum();
    assert_eq!(total, WARM_UP + REQUESTS);

    // Counted by what each request met, once per request.
    let count = |kinds: &[Kind]| -> f64 {
        tally
            .outcomes
            .iter()
            .filter(|((k, outcome), _)| kinds.contains(k) && *outcome != timeout)
            .map(|(_, n)| *n as f64)
            .sum()
    };
    let timeouts: f64 = tally
        .outcomes
        .iter()
        .filter(|((_, outcome), _)| *outcome == timeout)
        .map(|(_, n)| *n as f64)
        .sum();
    // Per kind, the attribution may shift by a few requests on a loaded machine, where a fault
    // races a deadline (a reset read as a stall, a garbage request timed out before the
    // upstream counted it): `slack` allows for that. The totals below are exact.
    let surprises = timeouts
        - count_timeouts(
            &tally,
            &[
                Kind::Served(Served::Hang),
                Kind::Served(Served::TrickleHead),
            ],
        );
    let slack = surprises + 5.0;
    let errors = |up: &str, kind: &str, expected: f64| {
        let got = metric("switchyard_upstream_errors_total")
            .label("upstream", up)
            .label("kind", kind)
            .sum_in(&scrape)
            .unwrap_or(0.0);
        assert!(
            (got - expected).abs() <= slack,
            "switchyard_upstream_errors_total{{upstream={up},kind={kind}}} = {got}, expected {expected} (± {slack})"
        );
    };
    errors("secondary", "connect", count(&[Kind::Refused]));
    errors(
        "primary",
        "protocol",
        count(&[
            Kind::Served(Served::ResetBeforeHead),
            Kind::Served(Served::Garbage),
        ]),
    );
    errors("primary", "first_byte_timeout", timeouts);
    errors(
        "primary",
        "body_error",
        count(&[
            Kind::Served(Served::ResetAfterHead),
            Kind::Served(Served::CutAfterHead),
        ]),
    );
    errors(
        "primary",
        "idle_timeout",
        count(&[Kind::Served(Served::StallAfterHead)]),
    );
    metric("switchyard_upstream_errors_total").assert_value(&scrape, total as f64);
    metric("switchyard_requests_total").assert_value(&scrape, total as f64);
    let all = |kind: Kind| -> f64 {
        tally
            .outcomes
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, n)| *n as f64)
            .sum()
    };
    for fault in Served::ALL {
        let (served, sent) = (faulty.served(fault) as f64, all(Kind::Served(fault)));
        // Never more than once per request; fewer only when the gateway gave up first.
        assert!(
            served <= sent && sent - served <= slack,
            "{fault:?}: the upstream served {served} of {sent} requests (± {slack})"
        );
    }

    // Nothing leaked: no connection (client or upstream side), no request, no fd, no memory.
    metric("switchyard_worker_connections").assert_value(&scrape, 0.0);
    metric("switchyard_requests_in_flight").assert_value(&scrape, 0.0);
    assert_eq!(
        open_upstream, 0,
        "the gateway left upstream connections open"
    );
    assert!(
        after.len() <= before.len() + FD_SLACK,
        "the gateway holds {} fds after the load, {} before (slack {FD_SLACK}):\nbefore {:?}\nafter  {:?}",
        after.len(),
        before.len(),
        fd_summary(&before),
        fd_summary(&after)
    );
    assert!(
        rss_after <= rss_before + RSS_SLACK_KIB,
        "RSS grew from {rss_before} KiB to {rss_after} KiB (allowed: {RSS_SLACK_KIB} KiB)"
    );
    assert_eq!(threads_after, threads_before, "threads");
}

/// How many requests of `kinds` ended in a 504 timeout.
fn count_timeouts(tally: &Tally, kinds: &[Kind]) -> f64 {
    let timeout = Outcome::Error(504, "timeout".to_owned());
    tally
        .outcomes
        .iter()
        .filter(|((k, outcome), _)| kinds.contains(k) && *outcome == timeout)
        .map(|(_, n)| *n as f64)
        .sum()
}
