//! Edge limits: each one fires where configured, answers as documented, and is counted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{full, metric, read_raw_response, Harness, SOON};
use http::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CHAT: &str = r#"{"model":"m","messages":[]}"#;

fn chat_request(extra_headers: &str) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra_headers}\r\n{CHAT}",
        CHAT.len()
    )
}

/// Send one request on `stream` and read its response.
async fn exchange(stream: &mut TcpStream, request: &str) -> common::RawResponse {
    stream.write_all(request.as_bytes()).await.unwrap();
    read_raw_response(stream).await.expect("a response")
}

/// Read until the peer closes (Ok) or `wait` passes (Err).
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> Result<(), ()> {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(wait, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .map_err(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_a_new_connection_gets_503_and_is_counted() {
    let h = Harness::with_config("[limits]\nmax_connections = 2").await;
    let mut first = TcpStream::connect(h.proxy_addr).await.unwrap();
    let mut second = TcpStream::connect(h.proxy_addr).await.unwrap();
    // Served (so counted as open on a worker) and kept alive.
    assert_eq!(exchange(&mut first, &chat_request("")).await.status(), 200);
    assert_eq!(exchange(&mut second, &chat_request("")).await.status(), 200);

    let mut third = TcpStream::connect(h.proxy_addr).await.unwrap();
    let refused = read_raw_response(&mut third).await.expect("a refusal");
    assert_eq!(refused.status(), 503, "{}", refused.head);
    assert!(refused.head.contains("retry-after: 1"), "{}", refused.head);
    let body: serde_json::Value = serde_json::from_slice(&refused.body).unwrap();
    assert_eq!(body["error"]["code"], "too_many_connections");
    closed_within(&mut third, SOON).await.unwrap();
    let scrape = h.scrape().await;
    metric("switchyard_connections_refused_total").assert_value(&scrape, 1.0);

    // One closes: there is room again.
    drop(first);
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let mut again = TcpStream::connect(h.proxy_addr).await.unwrap();
        again.write_all(chat_request("").as_bytes()).await.unwrap();
        let reply = read_raw_response(&mut again).await;
        if reply.as_ref().is_some_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no room after a close"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_connection_is_closed_after_max_requests_per_connection() {
    let h = Harness::with_config("[limits]\nmax_requests_per_connection = 3").await;
    let mut stream = TcpStream::connect(h.proxy_addr).await.unwrap();
    for i in 1..=3 {
        let reply = exchange(&mut stream, &chat_request("")).await;
        assert_eq!(reply.status(), 200);
        let close = reply
            .head
            .to_ascii_lowercase()
            .contains("connection: close");
        assert_eq!(close, i == 3, "request {i}: {}", reply.head);
    }
    closed_within(&mut stream, SOON).await.unwrap();
    let scrape = h.scrape().await;
    metric("switchyard_connections_closed_total")
        .label("reason", "max_requests")
        .assert_value(&scrape, 1.0);
    assert_eq!(h.primary.request_count(), 3);
    h.gateway.shutdown().await;
}

/// h2 client connection over prior knowledge; the connection future resolves when it ends.
async fn h2_connect(
    h: &Harness,
) -> (
    hyper::client::conn::http2::SendRequest<common::ReqBody>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
) {
    let stream = TcpStream::connect(h.proxy_addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    (sender, tokio::spawn(conn))
}

fn h2_chat(h: &Harness, headers: &[(&str, &str)]) -> http::Request<common::ReqBody> {
    let mut req = http::Request::post(format!("http://{}/v1/chat/completions", h.proxy_addr))
        .header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(full(CHAT)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_connection_gets_goaway_after_max_requests_per_connection() {
    let h = Harness::with_config("[limits]\nmax_requests_per_connection = 2").await;
    let (mut sender, conn) = h2_connect(&h).await;
    for _ in 0..2 {
        let resp = sender.send_request(h2_chat(&h, &[])).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let ended = tokio::time::timeout(SOON, conn)
        .await
        .expect("GOAWAY ends it");
    assert!(ended.unwrap().is_ok(), "a clean GOAWAY");
    h.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_after_keepalive_timeout_but_a_long_stream_is_not() {
    let h = Harness::with_config("[limits]\nkeepalive_timeout = \"300ms\"").await;
    let (mut sender, conn) = h2_connect(&h).await;
    // A stream that lasts ~1 s, three keep-alive timeouts: it is in flight, never idle.
    let resp = sender
        .send_request(
            http::Request::post(format!("http://{}/v1/chat/completions", h.proxy_addr))
                .header("content-type", "application/json")
                .header("x-mock-chunks", "10")
                .header("x-mock-chunk-delay-ms", "100")
                .body(full(r#"{"model":"m","messages":[],"stream":true}"#))
                .unwrap(),
        )
        .await
        .unwrap();
    use http_body_util::BodyExt;
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("[DONE]"),
        "the stream finished"
    );
    let started = tokio::time::Instant::now();
    let ended = tokio::time::timeout(SOON, conn)
        .await
        .expect("closed when idle");
    assert!(ended.unwrap().is_ok());
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    let scrape = h.scrape().await;
    metric("switchyard_connections_closed_total")
        .label("reason", "keepalive_timeout")
        .assert_value(&scrape, 1.0);
    h.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_header_lines_get_431_and_are_counted() {
    let h = Harness::with_config("[limits]\nmax_headers = 12").await;
    let mut stream = TcpStream::connect(h.proxy_addr).await.unwrap();
    let extra: String = (0..20).map(|i| format!("x-h{i}: v\r\n")).collect();
    let reply = exchange(&mut stream, &chat_request(&extra)).await;
    assert_eq!(reply.status(), 431, "{}", reply.head);
    let scrape = h
        .scrape_when(|s| {
            metric("switchyard_client_errors_total")
                .label("kind", "header_too_large")
                .sum_in(s)
                == Some(1.0)
        })
        .await;
    metric("switchyard_client_errors_total")
        .label("kind", "header_too_large")
        .assert_value(&scrape, 1.0);
    // A request within the limit is fine.
    let mut ok = TcpStream::connect(h.proxy_addr).await.unwrap();
    assert_eq!(
        exchange(&mut ok, &chat_request("x-a: 1\r\n"))
            .await
            .status(),
        200
    );
    assert_eq!(h.primary.request_count(), 1);
    h.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_that_does_not_arrive_in_time_is_cut_and_counted() {
    let h = Harness::with_config("[limits]\nheader_read_timeout = \"300ms\"").await;
    let mut stream = TcpStream::connect(h.proxy_addr).await.unwrap();
    stream
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    closed_within(&mut stream, SOON).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250));
    let scrape = h
        .scrape_when(|s| {
            metric("switchyard_client_errors_total")
                .label("kind", "header_timeout")
                .sum_in(s)
                == Some(1.0)
        })
        .await;
    metric("switchyard_client_errors_total")
        .label("kind", "header_timeout")
        .assert_value(&scrape, 1.0);
    h.assert_no_upstream_contacted("slow head");
    h.gateway.shutdown().await;
}

/// The HTTP/2 rapid-reset attack (CVE-2023-44487): streams opened and reset at once. Past
/// `h2_max_pending_resets` the connection ends with GOAWAY (ENHANCE_YOUR_CALM), counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_ends_the_connection_with_goaway_and_is_counted() {
    let h = Harness::with_config("[limits]\nh2_max_pending_resets = 5").await;
    let stream = TcpStream::connect(h.proxy_addr).await.unwrap();
    let (mut client, conn) = h2::client::handshake(stream).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut sent = 0;
    for _ in 0..500 {
        let req = http::Request::post(format!("http://{}/v1/chat/completions", h.proxy_addr))
            .body(())
            .unwrap();
        let Ok(ready) = client.clone().ready().await else {
            break;
        };
        client = ready;
        match client.send_request(req, false) {
            Ok((response, mut body)) => {
                body.send_reset(h2::Reason::CANCEL);
                drop(response);
                sent += 1;
            }
            Err(_) => break,
        }
    }
    let ended = tokio::time::timeout(SOON, conn)
        .await
        .expect("the server ended it");
    let error = ended.unwrap().expect_err("GOAWAY with an error code");
    // The GOAWAY's code, unless the client was still writing resets when the server closed
    // (then its own write fails first: broken pipe or reset). The server's counter below is
    // the proof either way.
    assert!(
        error.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) || error.is_io(),
        "{error} after {sent} resets"
    );
    let scrape = h
        .scrape_when(|s| {
            metric("switchyard_client_errors_total")
                .label("kind", "h2_flood")
                .sum_in(s)
                == Some(1.0)
        })
        .await;
    metric("switchyard_client_errors_total")
        .label("kind", "h2_flood")
        .assert_value(&scrape, 1.0);
    h.gateway.shutdown().await;
}

#[test]
fn limit_errors_name_key_value_and_rule() {
    let base = common::config_text(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
        &[],
    );
    let cases = [
        (
            "max_headers = 0",
            "limits.max_headers = 0: must be a whole number from 1 to 10000",
        ),
        (
            "max_connections = -1",
            "limits.max_connections = -1: must be a whole number from 0 to 10000000",
        ),
        (
            "h2_stream_window = 100",
            "limits.h2_stream_window = 100: must be between 65535 bytes (64 KiB) and 16 MiB",
        ),
        (
            "h2_send_buffer = \"8 KiB\"",
            "limits.h2_send_buffer = 8192: must be between 16 KiB (16384) and 16 MiB",
        ),
        (
            "h2_send_buffer = \"32 MiB\"",
            "limits.h2_send_buffer = 33554432: must be between 16 KiB (16384) and 16 MiB",
        ),
        (
            "keepalive_timeout = \"0s\"",
            r#"limits.keepalive_timeout = "0s": must be a positive duration such as "500ms", "30s" or "5m""#,
        ),
        (
            "send_timeout = \"soon\"",
            r#"limits.send_timeout = "soon": must be a positive duration such as "500ms", "30s" or "5m""#,
        ),
        (
            "send_buffer = 100",
            "limits.send_buffer = 100: must be between 4096 bytes (4 KiB) and 64 MiB",
        ),
        (
            "send_buffer = \"1 GiB\"",
            "limits.send_buffer = 1073741824: must be between 4096 bytes (4 KiB) and 64 MiB",
        ),
        (
            "unsent_buffer = 1000",
            "limits.unsent_buffer = 1000: must be 0 (the kernel's net.ipv4.tcp_notsent_lowat) or between 4096 bytes (4 KiB) and 64 MiB",
        ),
        (
            "unsent_buffer = \"128 MiB\"",
            "limits.unsent_buffer = 134217728: must be 0 (the kernel's net.ipv4.tcp_notsent_lowat) or between 4096 bytes (4 KiB) and 64 MiB",
        ),
        (
            "unsent_buffer = \"lots\"",
            r#"limits.unsent_buffer = "lots": must be 0 (the kernel's net.ipv4.tcp_notsent_lowat) or between 4096 bytes (4 KiB) and 64 MiB"#,
        ),
        (
            "unsent_buffer = -5",
            "limits.unsent_buffer = -5: must be 0 (the kernel's net.ipv4.tcp_notsent_lowat) or between 4096 bytes (4 KiB) and 64 MiB",
        ),
    ];
    for (line, expected) in cases {
        let text = format!("{base}\n[limits]\n{line}\n");
        let error = switchyard::config::Config::from_toml_str(&text)
            .unwrap_err()
            .to_string();
        assert_eq!(error, expected, "{line}");
    }
}

/// A connection that never completes a first request head is closed at
/// `header_read_timeout`, whatever it sent: nothing at all, half of the HTTP/2 preface (which
/// hyper-util's protocol sniff would wait on forever), or a valid HTTP/2 preface and SETTINGS
/// but no stream (closed with GOAWAY). `keepalive_timeout` is far longer, so it is not what
/// closes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_first_request_is_closed_at_header_read_timeout() {
    let h = Harness::with_config(
        "[limits]\nheader_read_timeout = \"400ms\"\nkeepalive_timeout = \"60s\"",
    )
    .await;
    let started = tokio::time::Instant::now();
    let mut silent = TcpStream::connect(h.proxy_addr).await.unwrap();
    let mut half_preface = TcpStream::connect(h.proxy_addr).await.unwrap();
    half_preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let (_sender, h2_idle) = h2_connect(&h).await;

    // Each one's own closing time, so that none closing early goes unnoticed.
    let (silent_at, half_at, h2_at) = tokio::join!(
        async {
            closed_within(&mut silent, SOON)
                .await
                .expect("silent: closed");
            started.elapsed()
        },
        async {
            closed_within(&mut half_preface, SOON)
                .await
                .expect("half preface: closed");
            started.elapsed()
        },
        async {
            let ended = tokio::time::timeout(SOON, h2_idle)
                .await
                .expect("idle h2: closed");
            assert!(ended.unwrap().is_ok(), "idle h2: a clean GOAWAY");
            started.elapsed()
        },
    );
    for (what, at) in [
        ("silent", silent_at),
        ("half preface", half_at),
        ("idle h2", h2_at),
    ] {
        assert!(
            at >= Duration::from_millis(350),
            "{what}: closed before the timeout, at {at:?}"
        );
    }
    let scrape = h
        .scrape_when(|s| {
            metric("switchyard_client_errors_total")
                .label("kind", "header_timeout")
                .sum_in(s)
                == Some(3.0)
        })
        .await;
    metric("switchyard_client_errors_total")
        .label("kind", "header_timeout")
        .assert_value(&scrape, 3.0);
    metric("switchyard_connections_closed_total")
        .label("reason", "keepalive_timeout")
        .assert_value(&scrape, 0.0);
    h.assert_no_upstream_contacted("connections without a request");

    // A connection that sends its first request in time is served and then kept past the
    // timeout (HTTP/2: hyper times nothing between requests; HTTP/1.1's idle time between
    // requests is hyper's own header timer).
    let (mut sender, conn) = h2_connect(&h).await;
    let resp = sender.send_request(h2_chat(&h, &[])).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let resp = sender.send_request(h2_chat(&h, &[])).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(!conn.is_finished());
    h.gateway.shutdown().await;
}

/// Wait until `switchyard_client_errors_total{kind="send_timeout"}` is `n`, assert that it
/// is, and return that scrape.
async fn send_timeouts_counted(h: &Harness, n: f64) -> common::metrics::Scrape {
    let scrape = h
        .scrape_when(|s| {
            metric("switchyard_client_errors_total")
                .label("kind", "send_timeout")
                .sum_in(s)
                == Some(n)
        })
        .await;
    metric("switchyard_client_errors_total")
        .label("kind", "send_timeout")
        .assert_value(&scrape, n);
    scrape
}

/// A client connection with a small receive buffer (set before connecting, so the window is
/// small from the start), that has sent a request for `len` response bytes.
async fn large_response_request(h: &Harness, len: usize) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(h.proxy_addr).await.unwrap();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         x-mock-response-bytes: {len}\r\ncontent-length: {}\r\n\r\n{CHAT}",
        CHAT.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Read until the connection ends: the byte count, and how it ended (EOF or the error).
async fn read_to_end(stream: &mut TcpStream) -> (usize, std::io::Result<()>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => return (total, Ok(())),
            Err(e) => return (total, Err(e)),
            Ok(n) => total += n,
        }
    }
}

/// `limits.send_timeout`: a client that stops reading its response (or trickles) is cut once the gateway's
/// writes have been blocked that long (counted as `send_timeout`), and the upstream connection
/// behind it is released; a client that reads slowly but steadily gets every byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_or_trickles_is_cut_at_send_timeout_but_a_steady_reader_is_not() {
    // A 4 KiB send buffer, so that a trickler's reads do reach the gateway's writes.
    let h =
        Harness::with_config("[limits]\nsend_timeout = \"500ms\"\nsend_buffer = \"4 KiB\"").await;
    const LEN: usize = 32 * 1024 * 1024;
    let mut stalled = large_response_request(&h, LEN).await;
    send_timeouts_counted(&h, 1.0).await;
    // The connection was reset (what the kernel held for it is discarded, not left to a
    // client that does not read), well short of the whole response.
    let (got, ending) = tokio::time::timeout(SOON, read_to_end(&mut stalled))
        .await
        .expect("the cut connection ends");
    assert!(got < LEN, "read {got} of {LEN} bytes");
    assert_eq!(
        ending.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset),
        "after {got} bytes"
    );
    // The upstream's side was released too: the mock saw its response abandoned.
    let reqs = h
        .primary
        .wait_until(SOON, |reqs| reqs.len() == 1 && reqs[0].finished)
        .await;
    assert!(
        reqs[0].finished && !reqs[0].completed,
        "{:?}",
        reqs[0].finished
    );
    h.clear();

    // The slow-read attack: 64 bytes every 100 ms is "progress" at nearly every write, but
    // far under 16 KiB per send_timeout. Cut as well.
    let mut trickler = large_response_request(&h, LEN).await;
    // 2 KiB every 100 ms: "progress" at every write the gateway makes (a plain between-writes
    // timer would never fire), but about 10 KiB per send_timeout, under the 16 KiB needed.
    let started = tokio::time::Instant::now();
    let (got, ending) = tokio::time::timeout(SOON, async {
        let mut buf = [0u8; 2048];
        let mut total = 0;
        loop {
            match trickler.read(&mut buf).await {
                Ok(0) => return (total, Ok(())),
                Err(e) => return (total, Err(e)),
                Ok(n) => total += n,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the trickler is cut while it trickles");
    assert!(ending.is_err(), "reset, after {got} bytes");
    assert!(started.elapsed() >= Duration::from_millis(450));
    send_timeouts_counted(&h, 2.0).await;
    h.primary
        .wait_until(SOON, |reqs| reqs.len() == 1 && reqs[0].finished)
        .await;
    h.clear();

    // Slow but steady: 64 KiB every 20 ms, never blocked for 500 ms.
    const SLOW_LEN: usize = 2 * 1024 * 1024;
    let mut steady = large_response_request(&h, SLOW_LEN).await;
    let got = tokio::time::timeout(
        Duration::from_secs(20),
        read_to_close_after(&mut steady, SLOW_LEN, Duration::from_millis(20)),
    )
    .await
    .expect("the steady reader finishes");
    assert!(
        got >= SLOW_LEN,
        "read {got} bytes, the body alone is {SLOW_LEN}"
    );
    let scrape = h.scrape().await;
    metric("switchyard_client_errors_total")
        .label("kind", "send_timeout")
        .assert_value(&scrape, 2.0);
    h.gateway.shutdown().await;
}

/// `limits.send_buffer` bounds what the kernel takes for a client: a 1 MiB response that the
/// kernel's own autotuned buffer would swallow whole (so no write ever blocks) does not fit in
/// 16 KiB, so the writes to a client that reads nothing block and `send_timeout` cuts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_buffer_bounds_what_a_client_that_does_not_read_can_hold() {
    let h =
        Harness::with_config("[limits]\nsend_timeout = \"300ms\"\nsend_buffer = \"16 KiB\"").await;
    let mut stalled = large_response_request(&h, 1024 * 1024).await;
    send_timeouts_counted(&h, 1.0).await;
    let (_, ending) = tokio::time::timeout(SOON, read_to_end(&mut stalled))
        .await
        .expect("the cut connection ends");
    assert!(ending.is_err(), "reset");
    h.gateway.shutdown().await;
}

/// `limits.unsent_buffer` (TCP_NOTSENT_LOWAT) bounds what the kernel holds, written but unsent,
/// for a client that reads nothing, without capping the in-flight bytes of one that reads:
/// the gateway's side of the connection queues at most the limit plus one segment (up to
/// 64 KiB on loopback). With the kernel's own setting (0), its autotuned send buffer (up to
/// `net.ipv4.tcp_wmem`'s max, 4 MiB) takes the whole 1 MiB answer.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsent_buffer_bounds_what_the_kernel_queues_for_a_client_that_reads_nothing() {
    const BOUND: u64 = 16 * 1024 + 64 * 1024 + 8 * 1024;
    let mut queued = Vec::new();
    for setting in ["unsent_buffer = \"16 KiB\"", "unsent_buffer = 0"] {
        let h = Harness::with_config(&format!("[limits]\nsend_timeout = \"60s\"\n{setting}")).await;
        let stalled = large_response_request(&h, 1024 * 1024).await;
        let client = stalled.local_addr().unwrap();
        // The gateway's queue to this client, once it has stopped growing for 600 ms.
        let (mut last, mut same) = (None, 0);
        let deadline = tokio::time::Instant::now() + SOON;
        let settled = loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = kernel_send_queue(h.proxy_addr, client).filter(|n| *n > 0);
            same = if now.is_some() && now == last {
                same + 1
            } else {
                0
            };
            if let (Some(n), 3) = (now, same) {
                break n;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{setting}: the queue kept changing: {now:?}"
            );
            last = now;
        };
        queued.push(settled);
        drop(stalled);
        h.gateway.shutdown().await;
    }
    assert!(queued[0] <= BOUND, "16 KiB: {} bytes queued", queued[0]);
    // Where the host itself sets a low net.ipv4.tcp_notsent_lowat, the kernel's default is
    // bounded too.
    let host = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_notsent_lowat")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    if host > BOUND {
        assert!(
            queued[1] > BOUND,
            "kernel default: {} bytes queued",
            queued[1]
        );
    }
}

/// Bytes in the kernel's send queue (written and not yet acknowledged) of the TCP socket from
/// `local` to `remote`, from `/proc/net/tcp` (IPv4).
#[cfg(target_os = "linux")]
fn kernel_send_queue(local: std::net::SocketAddr, remote: std::net::SocketAddr) -> Option<u64> {
    fn hex(addr: std::net::SocketAddr) -> Option<String> {
        let std::net::SocketAddr::V4(v4) = addr else {
            return None;
        };
        Some(format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(v4.ip().octets()),
            v4.port()
        ))
    }
    let (local, remote) = (hex(local)?, hex(remote)?);
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&local.as_str()) || fields.get(2) != Some(&remote.as_str()) {
            return None;
        }
        let (tx, _rx) = fields.get(4)?.split_once(':')?;
        u64::from_str_radix(tx, 16).ok()
    })
}

/// Read until at least `len` bytes (head and body) arrived, pausing between reads.
async fn read_to_close_after(stream: &mut TcpStream, len: usize, pause: Duration) -> usize {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    while total < len {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return total,
            Ok(n) => total += n,
        }
        tokio::time::sleep(pause).await;
    }
    total
}

/// An HTTP/2 frame: the 9-byte header, then `payload`.
fn h2_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len();
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// `limits.send_timeout` on HTTP/2, at the socket: a client that grants every window (2^31-1)
/// but reads nothing from its socket has its streams' answers fill the gateway's send buffer;
/// the blocked writes end the connection once `send_timeout` passed, counted as
/// `send_timeout` (hyper reports h2's I/O errors as its own, with only the kind kept; they
/// were counted as `io`), and the upstream requests behind its streams end too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_client_that_reads_nothing_from_its_socket_is_cut_at_send_timeout() {
    let h =
        Harness::with_config("[limits]\nsend_timeout = \"300ms\"\nsend_buffer = \"16 KiB\"").await;
    const MAX_WINDOW: u32 = 0x7fff_ffff;
    const STREAMS: u32 = 4;
    let mut out = common::raw::H2_PREFACE_AND_SETTINGS[..24].to_vec();
    let mut settings = vec![0, 4];
    settings.extend_from_slice(&MAX_WINDOW.to_be_bytes());
    h2_frame(&mut out, 4, 0, 0, &settings);
    h2_frame(&mut out, 8, 0, 0, &(MAX_WINDOW - 65_535).to_be_bytes());
    // HPACK literals without indexing or Huffman coding (RFC 7541 §6.2.2).
    let mut block = Vec::new();
    let authority = h.proxy_addr.to_string();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/v1/chat/completions"),
        (":authority", authority.as_str()),
        ("content-type", "application/json"),
        ("x-mock-response-bytes", "4194304"),
    ] {
        block.push(0);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    for i in 0..STREAMS {
        h2_frame(&mut out, 1, 0x4, 2 * i + 1, &block);
        h2_frame(&mut out, 0, 0x1, 2 * i + 1, CHAT.as_bytes());
    }
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(h.proxy_addr).await.unwrap();
    stream.write_all(&out).await.unwrap();

    let scrape = send_timeouts_counted(&h, 1.0).await;
    metric("switchyard_client_errors_total")
        .label("kind", "io")
        .assert_value(&scrape, 0.0);
    // Every upstream request behind it has ended (the kernel's buffers on the upstream side
    // can hold a whole 4 MiB answer, so some may have been sent to the end).
    let reqs = h
        .primary
        .wait_until(SOON, |reqs| {
            reqs.len() == STREAMS as usize && reqs.iter().all(|r| r.finished)
        })
        .await;
    assert_eq!(reqs.len(), STREAMS as usize);
    assert!(
        reqs.iter().all(|r| r.finished),
        "every upstream request ended"
    );
    drop(stream);
    h.gateway.shutdown().await;
}

/// Slow clients cannot stall other clients' streams on a shared HTTP/2 upstream connection.
/// A stream's flow-control window stays taken while its client has not read what arrived,
/// and the connection's window is shared by every stream on it: with hyper's defaults (2 MiB
/// per stream, 5 MiB per connection) three stalled streams held up everything else on the
/// connection. Here 8 clients read none of their 8 MiB answers (a 16 KiB send buffer, so the
/// kernel does not take them), and a 1 MiB answer for another client still arrives at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_do_not_stall_other_streams_on_an_http2_upstream_connection() {
    let h = Harness::with_config(
        "[limits]\nsend_buffer = \"16 KiB\"\n[upstreams.primary]\nhttp2 = true\n",
    )
    .await;
    let mut stalled = Vec::new();
    for _ in 0..8 {
        stalled.push(large_response_request(&h, 8 * 1024 * 1024).await);
    }
    h.primary.wait_until(SOON, |reqs| reqs.len() == 8).await;
    // Time for the upstream to fill every window it was given.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reply = tokio::time::timeout(
        SOON,
        h.client.post_json_with(
            "/v1/chat/completions",
            &[("x-mock-response-bytes", "1048576")],
            CHAT,
        ),
    )
    .await
    .expect("another client's answer is not held up by the stalled streams");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body.len(), 1024 * 1024);
    drop(stalled);
    h.gateway.shutdown().await;
}

/// HTTP/2 flow control: a client that grants no window (here: never reads the response body,
/// so its window is never reopened) leaves the gateway's writes unblocked but the stream
/// waiting forever, holding its upstream request. The stall watchdog drops the connection
/// once responses had data ready and nothing was taken for `send_timeout`. A stream that is
/// slow because its upstream is slow (the body is waiting, not hyper) is never cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_client_that_grants_no_window_is_cut_but_a_slow_upstream_stream_is_not() {
    use http_body_util::BodyExt;
    let h = Harness::with_config("[limits]\nsend_timeout = \"300ms\"").await;

    // A stream whose upstream pauses 500 ms between events, longer than send_timeout.
    let (mut sender, _conn) = h2_connect(&h).await;
    let resp = sender
        .send_request(
            http::Request::post(format!("http://{}/v1/chat/completions", h.proxy_addr))
                .header("content-type", "application/json")
                .header("x-mock-chunks", "4")
                .header("x-mock-chunk-delay-ms", "500")
                .body(full(r#"{"model":"m","messages":[],"stream":true}"#))
                .unwrap(),
        )
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("[DONE]"));
    h.clear();

    // A client that reads the head, then none of an 8 MiB body.
    let (mut sender, conn) = h2_connect(&h).await;
    let resp = sender
        .send_request(h2_chat(&h, &[("x-mock-response-bytes", "8388608")]))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let started = tokio::time::Instant::now();
    let ended = tokio::time::timeout(SOON, conn)
        .await
        .expect("the stalled connection is dropped");
    assert!(ended.unwrap().is_err(), "dropped, not a clean GOAWAY");
    assert!(started.elapsed() >= Duration::from_millis(250));
    send_timeouts_counted(&h, 1.0).await;
    // The upstream request behind it ended too.
    let reqs = h
        .primary
        .wait_until(SOON, |reqs| reqs.len() == 1 && reqs[0].finished)
        .await;
    assert!(reqs[0].finished && !reqs[0].completed);
    drop(resp);
    h.gateway.shutdown().await;
}
