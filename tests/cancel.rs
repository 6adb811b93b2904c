//! A client that goes away cancels its upstream request, in every phase: while the gateway
//! waits for the response head, and while the response streams.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use switchyard::config::Config;
use switchyard::mock::{MockOptions, MockProvider};
use switchyard::server;

async fn setup() -> (MockProvider, MockProvider, server::ServerHandle) {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let primary = MockProvider::start(any, MockOptions::new("primary"))
        .await
        .unwrap();
    let secondary = MockProvider::start(any, MockOptions::new("secondary"))
        .await
        .unwrap();
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[upstreams.primary]
url = "http://{}/v1"
[upstreams.secondary]
url = "http://{}/v1"
[routing]
stateless = "primary"
stateful = "secondary"
[log]
access_log = false
"#,
        primary.addr(),
        secondary.addr()
    );
    let handle = server::start(Config::from_toml_str(&text).unwrap())
        .await
        .unwrap();
    (primary, secondary, handle)
}

/// Send a request on a raw connection and return the open stream.
fn send(addr: SocketAddr, extra_headers: &str, body: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n{extra_headers}content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s
}

async fn gauge_in_flight(handle: &server::ServerHandle) -> String {
    let admin = handle.admin_addr;
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(admin).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.lines()
            .find(|l| l.starts_with("switchyard_requests_in_flight{upstream=\"primary\"}"))
            .unwrap_or_default()
            .to_owned()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gone_while_waiting_for_the_head_cancels_upstream() {
    let (primary, secondary, handle) = setup().await;
    let stream = send(
        handle.proxy_addr,
        "x-mock-delay-ms: 20000\r\n",
        r#"{"model":"m","messages":[]}"#,
    );
    let seen = primary.wait_for_requests(1, Duration::from_secs(10)).await;
    assert_eq!(seen.len(), 1, "the request reached the primary");
    drop(stream);
    let done = primary
        .wait_until(Duration::from_secs(10), |r| {
            r.first().is_some_and(|r| r.finished)
        })
        .await;
    assert!(
        done[0].finished,
        "the upstream exchange ended after the client left"
    );
    assert!(
        !done[0].completed,
        "the upstream never finished its response"
    );
    assert_eq!(secondary.request_count(), 0);
    // The in-flight gauge returns to zero once the cancelled request is recorded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let line = gauge_in_flight(&handle).await;
        if line.ends_with(" 0") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "in-flight stuck: {line}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gone_mid_stream_cancels_upstream() {
    let (primary, _secondary, handle) = setup().await;
    let mut stream = send(
        handle.proxy_addr,
        "x-mock-hold: 1\r\n",
        r#"{"model":"m","stream":true,"messages":[]}"#,
    );
    // Read until the first SSE event has arrived through the gateway.
    let first = tokio::task::spawn_blocking(move || {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&buf).contains("data: ") {
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed before the first event");
            buf.extend_from_slice(&chunk[..n]);
        }
        (stream, String::from_utf8_lossy(&buf).into_owned())
    })
    .await
    .unwrap();
    let (stream, text) = first;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    drop(stream);
    let done = primary
        .wait_until(Duration::from_secs(10), |r| {
            r.first().is_some_and(|r| r.finished)
        })
        .await;
    assert!(done[0].finished && !done[0].completed, "{:?}", done[0]);
    handle.shutdown().await;
}
