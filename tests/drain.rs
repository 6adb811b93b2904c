//! The real binary's life after startup (issue #6): draining on SIGTERM (open streams finish,
//! what outlives `server.drain_timeout` is cut, idle keep-alive connections are closed),
//! reloading on SIGHUP, and `switchyard probe`.
//!
//! Each test starts `switchyard serve` on a temporary config file in front of two recording
//! mocks in this process, and reads the bound addresses from its JSON log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::process::{config_file, Gateway, BIN};
use common::{full, metric, sse_events, HttpClient, Next, Streaming, SOON};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Digest as _;
use switchyard::mock::{MockOptions, MockProvider};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Content deltas each test stream carries (`x-mock-chunks`).
const DELTAS: usize = 20;
/// Milliseconds between a stream's events (`x-mock-chunk-delay-ms`): with the role, finish and
/// `[DONE]` events, a stream lasts (DELTAS + 2) × 80 ms ≈ 1.8 s.
const DELTA_GAP_MS: u64 = 80;

/// Two recording mocks: "primary" serves stateless requests, "secondary" stateful ones.
struct Mocks {
    primary: MockProvider,
    secondary: MockProvider,
}

impl Mocks {
    async fn start() -> Mocks {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Mocks {
            primary: MockProvider::start(loopback, MockOptions::new("primary"))
                .await
                .unwrap(),
            secondary: MockProvider::start(loopback, MockOptions::new("secondary"))
                .await
                .unwrap(),
        }
    }

    /// A config routing to these mocks, JSON logs on stdout, with `extra` TOML merged over
    /// it.
    fn config(&self, drain_timeout: &str, extra: &str) -> String {
        let base = format!(
            "[server]\ndrain_timeout = \"{drain_timeout}\"\n[log]\nformat = \"json\"\naccess_log = false\n"
        );
        common::config_text(self.primary.addr(), self.secondary.addr(), &[&base, extra])
    }
}

/// A streamed chat completion of [`DELTAS`] deltas, [`DELTA_GAP_MS`] apart, plus `headers`.
fn stream_request(client: &HttpClient, headers: &[(&str, &str)]) -> http::Request<common::ReqBody> {
    let chunks = DELTAS.to_string();
    let gap = DELTA_GAP_MS.to_string();
    let mut req = client
        .request(Method::POST, "/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-mock-chunks", chunks.as_str())
        .header("x-mock-chunk-delay-ms", gap.as_str());
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let body = json!({
        "model": "m",
        "stream": true,
        "messages": [{"role": "user", "content": "hi"}],
    });
    req.body(full(body.to_string())).unwrap()
}

/// Wait for a stream's first data frame (so it is really open end to end).
async fn first_frame(stream: &mut Streaming) -> Bytes {
    match stream.next(SOON).await {
        Next::Data(data) => data,
        other => panic!("no first event within {SOON:?}: {other:?}"),
    }
}

/// The content deltas of an SSE chat stream, and whether its last event is `data: [DONE]`.
fn deltas(body: &[u8]) -> (Vec<String>, bool) {
    let events = sse_events(body);
    let done = events.last().map(String::as_str) == Some("data: [DONE]");
    let deltas = events
        .iter()
        .filter_map(|e| e.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str::<Value>(data).ok())
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
        })
        .collect();
    (deltas, done)
}

/// The status of `GET path` on `addr` over a fresh connection, or why there is none
/// (connection refused, reset, closed without an answer).
async fn get_status(addr: SocketAddr, path: &str) -> Result<u16, String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut out = Vec::new();
        stream
            .read_to_end(&mut out)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&out);
        text.split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status line in {text:?}"))
    };
    tokio::time::timeout(SOON, exchange)
        .await
        .unwrap_or_else(|_| Err("no answer".to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_50_open_sse_streams_finish_within_the_drain_timeout() {
    const STREAMS: usize = 50;
    let mocks = Mocks::start().await;
    let file = config_file(&mocks.config("20s", ""));
    let mut gateway = Gateway::serve(file.path());
    assert_eq!(get_status(gateway.admin_addr, "/readyz").await, Ok(200));

    // 50 streams, each on a connection of its own (one client, so one pool, per stream).
    let (opened_tx, mut opened_rx) = tokio::sync::mpsc::unbounded_channel();
    let finished = Arc::new(AtomicUsize::new(0));
    let mut streams = Vec::with_capacity(STREAMS);
    for i in 0..STREAMS {
        let client = HttpClient::http1(gateway.proxy_addr);
        let opened = opened_tx.clone();
        let finished = finished.clone();
        streams.push(tokio::spawn(async move {
            let id = format!("drain-{i}");
            let mut stream = client
                .stream(stream_request(&client, &[("x-request-id", &id)]))
                .await;
            assert_eq!(stream.status, StatusCode::OK, "stream {i}");
            assert_eq!(stream.header("x-switchyard-upstream"), Some("primary"));
            let mut body = first_frame(&mut stream).await.to_vec();
            opened.send(i).unwrap();
            let (rest, ended) = stream.rest(common::CALL_TIMEOUT).await;
            finished.fetch_add(1, Ordering::SeqCst);
            body.extend_from_slice(&rest);
            (body, ended)
        }));
    }
    drop(opened_tx);
    for _ in 0..STREAMS {
        let opened = tokio::time::timeout(SOON, opened_rx.recv()).await;
        assert!(
            matches!(opened, Ok(Some(_))),
            "all {STREAMS} streams sent their first event within {SOON:?}"
        );
    }
    assert_eq!(
        finished.load(Ordering::SeqCst),
        0,
        "every stream is still running when SIGTERM is sent"
    );

    gateway.signal("TERM");
    let signalled = tokio::time::Instant::now();

    // While the streams drain, the gateway stops accepting (see
    // `readyz_answers_503_and_the_draining_gauge_is_1_while_streams_drain` for the admin side).
    let refused = common::eventually(SOON, || async {
        tokio::net::TcpStream::connect(gateway.proxy_addr)
            .await
            .is_err()
    })
    .await;
    assert!(
        refused,
        "new connections to the proxy port are refused while draining"
    );
    assert!(
        finished.load(Ordering::SeqCst) < STREAMS,
        "the proxy port closed while streams were still running"
    );

    for (i, stream) in streams.into_iter().enumerate() {
        let (body, ended) = stream.await.unwrap();
        assert_eq!(ended, None, "stream {i} ended cleanly");
        let (deltas, done) = deltas(&body);
        assert_eq!(
            deltas.len(),
            DELTAS,
            "stream {i} got every delta: {deltas:?}"
        );
        assert!(
            done,
            "stream {i} ends with [DONE]: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let status = gateway.exit_within(Duration::from_secs(15)).await;
    let took = signalled.elapsed();
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "the gateway exits 0 after draining"
    );
    assert!(
        took < Duration::from_secs(8),
        "the gateway exits once its streams are done, well before the 20 s drain timeout: {took:?}"
    );
    let primary = mocks.primary.requests();
    assert_eq!(primary.len(), STREAMS);
    assert!(
        primary.iter().all(|r| r.completed),
        "every upstream stream completed"
    );
    assert_eq!(mocks.secondary.request_count(), 0);
    gateway.lines.wait_message("drained", SOON);
}

/// A readiness probe and a metrics scrape must still get answers while the gateway drains:
/// `/readyz` says 503 (so the load balancer stops sending) and `switchyard_draining` says 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_503_and_the_draining_gauge_is_1_while_streams_drain() {
    let mocks = Mocks::start().await;
    let file = config_file(&mocks.config("20s", ""));
    let mut gateway = Gateway::serve(file.path());
    assert_eq!(get_status(gateway.admin_addr, "/readyz").await, Ok(200));
    let scrape = common::metrics::scrape(gateway.admin_addr).await;
    metric("switchyard_draining").assert_value(&scrape, 0.0);

    // A held stream keeps the gateway draining (for up to 20 s) after SIGTERM.
    let client = HttpClient::http1(gateway.proxy_addr);
    let mut held = client
        .stream(stream_request(&client, &[("x-mock-hold", "1")]))
        .await;
    first_frame(&mut held).await;
    gateway.signal("TERM");
    gateway.lines.wait_message(
        "draining: no new connections, in-flight requests may finish",
        SOON,
    );

    // What /readyz answered, each change in order, until it answers 503.
    let mut readyz = Vec::new();
    let deadline = tokio::time::Instant::now() + SOON;
    while tokio::time::Instant::now() < deadline {
        let status = get_status(gateway.admin_addr, "/readyz").await;
        let done = status == Ok(503);
        if readyz.last() != Some(&status) {
            readyz.push(status);
        }
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let metrics = get_status(gateway.admin_addr, "/metrics").await;
    assert!(
        gateway.exited().is_none() && matches!(held.next(Duration::ZERO).await, Next::TimedOut),
        "the gateway is still draining the held stream"
    );
    assert_eq!(
        readyz.last(),
        Some(&Ok(503)),
        "GET /readyz answers 503 while the gateway drains; it answered {readyz:?}"
    );
    assert_eq!(metrics, Ok(200), "/metrics is served while draining");
    let scrape = common::metrics::scrape(gateway.admin_addr).await;
    metric("switchyard_draining").assert_value(&scrape, 1.0);

    drop(held);
    drop(client);
    let status = gateway.exit_within(SOON).await;
    assert_eq!(status.map(|s| s.code()), Some(Some(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_cuts_what_outlives_the_drain_timeout_and_still_exits_0() {
    let mocks = Mocks::start().await;
    let file = config_file(&mocks.config("1s", ""));
    let mut gateway = Gateway::serve(file.path());
    let client = HttpClient::http1(gateway.proxy_addr);
    // The mock sends the head and the first event, then holds the stream open for good.
    let mut stream = client
        .stream(stream_request(&client, &[("x-mock-hold", "1")]))
        .await;
    assert_eq!(stream.status, StatusCode::OK);
    first_frame(&mut stream).await;

    gateway.signal("TERM");
    let signalled = tokio::time::Instant::now();
    let (rest, ended) = stream.rest(Duration::from_secs(10)).await;
    let cut_after = signalled.elapsed();
    assert_ne!(
        ended.as_deref(),
        Some("timed out"),
        "the stream is cut, not left hanging"
    );
    let (_, done) = deltas(&rest);
    assert!(!done, "a cut stream does not end with [DONE]");
    let status = gateway.exit_within(Duration::from_secs(6)).await;
    let took = signalled.elapsed();
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "the gateway exits 0 after cutting the stream ({took:?} after SIGTERM)"
    );
    assert!(
        cut_after >= Duration::from_millis(900),
        "the stream had the 1 s drain timeout to finish, it was cut after {cut_after:?}"
    );
    assert!(took < Duration::from_secs(6), "{took:?}");
    let warned = gateway.lines.wait_json(SOON, |v| {
        v["message"] == "drain timeout passed; closing remaining connections"
            && v["listener"] == "proxy"
    });
    assert!(
        warned.is_some(),
        "the cut is logged; output:\n{}",
        gateway.lines.all().join("\n")
    );
    // The upstream stream ended with the client's.
    let upstream = mocks
        .primary
        .wait_until(SOON, |reqs| reqs.len() == 1 && reqs[0].finished)
        .await;
    assert!(
        upstream[0].finished && !upstream[0].completed,
        "{upstream:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_on_sigterm() {
    let mocks = Mocks::start().await;
    let file = config_file(&mocks.config("20s", ""));
    let mut gateway = Gateway::serve(file.path());

    // A stream in flight keeps the gateway draining (and running) after SIGTERM, so that the
    // idle connection's end below is the drain's doing, not the process's exit.
    let client = HttpClient::http1(gateway.proxy_addr);
    let mut held = client
        .stream(stream_request(&client, &[("x-mock-hold", "1")]))
        .await;
    first_frame(&mut held).await;

    // Two requests on one connection: it is kept alive, then left idle.
    let mut idle = tokio::net::TcpStream::connect(gateway.proxy_addr)
        .await
        .unwrap();
    for _ in 0..2 {
        idle.write_all(b"GET /v1/models HTTP/1.1\r\nhost: gateway\r\n\r\n")
            .await
            .unwrap();
        let reply = common::read_raw_response(&mut idle)
            .await
            .expect("a response on the kept-alive connection");
        assert_eq!(reply.status(), 200, "{}", reply.head);
        assert_ne!(reply.header("connection"), Some("close"), "{}", reply.head);
    }

    gateway.signal("TERM");
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(SOON, idle.read(&mut buf)).await;
    match read {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => panic!(
            "expected EOF, read {n} bytes: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Ok(Err(e)) => panic!("expected a clean EOF, got {e}"),
        Err(_) => panic!("the idle connection was still open {SOON:?} after SIGTERM"),
    }
    assert!(
        gateway.exited().is_none(),
        "the gateway is still draining the held stream when the idle connection closes"
    );
    assert!(
        matches!(held.next(Duration::ZERO).await, Next::TimedOut),
        "the held stream is still open"
    );

    // The last stream's client goes away: nothing is left to drain.
    drop(held);
    drop(client);
    let status = gateway.exit_within(SOON).await;
    assert_eq!(status.map(|s| s.code()), Some(Some(0)));
}

/// The lowercase hex SHA-256 of `bytes`.
fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// POST a non-streamed chat completion with `headers`; the reply.
async fn chat(client: &HttpClient, headers: &[(&str, &str)]) -> common::Reply {
    client
        .post_json_with(
            "/v1/chat/completions",
            headers,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_and_a_bad_file_keeps_the_old_one() {
    let mocks = Mocks::start().await;
    let first = mocks.config("30s", "");
    let file = config_file(&first);
    let mut gateway = Gateway::serve(file.path());
    let client = HttpClient::http1(gateway.proxy_addr);
    let tenant = [("x-tenant", "1")];

    let before = chat(&client, &tenant).await;
    assert_eq!(before.status, StatusCode::OK);
    assert_eq!(before.header("x-switchyard-rule"), Some("chat.stateless"));
    assert_eq!(before.header("x-mock-provider"), Some("primary"));
    let first_sha = sha256_hex(first.as_bytes());
    assert_eq!(before.header("x-switchyard-config"), Some(&first_sha[..12]));
    let scrape = common::metrics::scrape(gateway.admin_addr).await;
    metric("switchyard_config_info")
        .label("sha256", &first_sha)
        .assert_value(&scrape, 1.0);

    // A rule sends requests with an `x-tenant` header to the stateful upstream.
    let second = mocks.config(
        "30s",
        r#"
[[rules]]
name = "tenant-stateful"
class = "stateful"
header_present = ["x-tenant"]
"#,
    );
    std::fs::write(file.path(), &second).unwrap();
    let second_sha = sha256_hex(second.as_bytes());
    gateway.signal("HUP");
    let scrape = common::metrics::scrape_within(gateway.admin_addr, SOON, |s| {
        metric("switchyard_config_reloads_total")
            .label("result", "success")
            .sum_in(s)
            == Some(1.0)
    })
    .await;
    metric("switchyard_config_reloads_total")
        .label("result", "success")
        .assert_value(&scrape, 1.0);
    metric("switchyard_config_reloads_total")
        .label("result", "error")
        .assert_value(&scrape, 0.0);
    metric("switchyard_config_info")
        .label("sha256", &second_sha)
        .assert_value(&scrape, 1.0);
    metric("switchyard_config_info")
        .label("sha256", &first_sha)
        .assert_absent_or_zero(&scrape);
    metric("switchyard_config_restart_required").assert_value(&scrape, 0.0);
    let reloaded = gateway.lines.wait_message("config reloaded", SOON);
    assert_eq!(reloaded["sha256"], second_sha.as_str(), "{reloaded}");
    assert_eq!(reloaded["previous"], first_sha.as_str(), "{reloaded}");

    let after = chat(&client, &tenant).await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(after.header("x-switchyard-rule"), Some("tenant-stateful"));
    assert_eq!(after.header("x-switchyard-class"), Some("stateful"));
    assert_eq!(after.header("x-mock-provider"), Some("secondary"));
    assert_eq!(after.header("x-switchyard-config"), Some(&second_sha[..12]));
    let untouched = chat(&client, &[]).await;
    assert_eq!(
        untouched.header("x-switchyard-rule"),
        Some("chat.stateless")
    );
    assert_eq!(mocks.primary.request_count(), 2);
    assert_eq!(mocks.secondary.request_count(), 1);

    // A file that does not validate changes nothing.
    let bad = second.replace(r#"stateless = "primary""#, r#"stateless = "nope""#);
    assert_ne!(bad, second);
    std::fs::write(file.path(), &bad).unwrap();
    gateway.signal("HUP");
    let scrape = common::metrics::scrape_within(gateway.admin_addr, SOON, |s| {
        metric("switchyard_config_reloads_total")
            .label("result", "error")
            .sum_in(s)
            == Some(1.0)
    })
    .await;
    metric("switchyard_config_reloads_total")
        .label("result", "error")
        .assert_value(&scrape, 1.0);
    metric("switchyard_config_reloads_total")
        .label("result", "success")
        .assert_value(&scrape, 1.0);
    metric("switchyard_config_info")
        .label("sha256", &second_sha)
        .assert_value(&scrape, 1.0);
    metric("switchyard_config_info")
        .label("sha256", sha256_hex(bad.as_bytes()))
        .assert_absent_or_zero(&scrape);
    let failed = gateway.lines.wait_message(
        "config reload failed; the running config is unchanged",
        SOON,
    );
    assert_eq!(failed["level"], "ERROR", "{failed}");
    assert_eq!(failed["trigger"], "SIGHUP", "{failed}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(r#"routing.stateless = "nope""#),
        "the error names the key and the value: {failed}"
    );

    let still = chat(&client, &tenant).await;
    assert_eq!(still.status, StatusCode::OK);
    assert_eq!(still.header("x-switchyard-rule"), Some("tenant-stateful"));
    assert_eq!(still.header("x-mock-provider"), Some("secondary"));
    assert_eq!(still.header("x-switchyard-config"), Some(&second_sha[..12]));

    gateway.signal("TERM");
    let status = gateway.exit_within(SOON).await;
    assert_eq!(status.map(|s| s.code()), Some(Some(0)));
}

/// `switchyard probe URL`: its exit code and stderr.
fn probe(url: &str) -> (Option<i32>, String) {
    let out = std::process::Command::new(BIN)
        .args(["probe", url, "--timeout", "2s"])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_exits_0_on_readyz_and_1_on_a_404() {
    let mocks = Mocks::start().await;
    let file = config_file(&mocks.config("30s", ""));
    let mut gateway = Gateway::serve(file.path());
    let admin = gateway.admin_addr;
    let (ready, not_found, refused) = tokio::task::spawn_blocking(move || {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        (
            probe(&format!("http://{admin}/readyz")),
            probe(&format!("http://{admin}/no-such-page")),
            probe(&format!("http://{closed}/readyz")),
        )
    })
    .await
    .unwrap();
    assert_eq!(ready.0, Some(0), "probe of /readyz: {}", ready.1);
    assert_eq!(not_found.0, Some(1), "probe of a 404: {}", not_found.1);
    assert!(not_found.1.contains("404"), "{}", not_found.1);
    assert_eq!(refused.0, Some(1), "probe of a closed port: {}", refused.1);
    gateway.signal("TERM");
    let status = gateway.exit_within(SOON).await;
    assert_eq!(status.map(|s| s.code()), Some(Some(0)));
}
