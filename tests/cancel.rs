//! A client that goes away cancels its upstream request, in every phase: while the gateway
//! waits for the response head, and while the response streams.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{metric, Harness, SOON};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Send a chat request on a raw connection and return the open stream.
async fn send(h: &Harness, extra_headers: &str, body: &str) -> TcpStream {
    let mut s = TcpStream::connect(h.proxy_addr).await.unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n{extra_headers}content-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

#[tokio::test]
async fn client_gone_while_waiting_for_the_head_cancels_upstream() {
    let h = Harness::start().await;
    let stream = send(
        &h,
        "x-mock-delay-ms: 20000\r\n",
        r#"{"model":"m","messages":[]}"#,
    )
    .await;
    let seen = h.primary.wait_for_requests(1, SOON).await;
    assert_eq!(seen.len(), 1, "the request reached the primary");
    drop(stream);
    let done = h
        .primary
        .wait_until(SOON, |r| r.first().is_some_and(|r| r.finished))
        .await;
    assert!(
        done[0].finished,
        "the upstream exchange ended after the client left"
    );
    assert!(
        !done[0].completed,
        "the upstream never finished its response"
    );
    assert_eq!(h.secondary.request_count(), 0);
    // The in-flight gauge returns to zero once the cancelled request is recorded.
    let scrape = h
        .scrape_when(|s| {
            metric("switchyard_requests_in_flight")
                .label("upstream", "primary")
                .sum_in(s)
                == Some(0.0)
        })
        .await;
    metric("switchyard_requests_in_flight")
        .label("upstream", "primary")
        .assert_value(&scrape, 0.0);
    h.shutdown().await;
}

#[tokio::test]
async fn client_gone_mid_stream_cancels_upstream() {
    let h = Harness::start().await;
    let mut stream = send(
        &h,
        "x-mock-hold: 1\r\n",
        r#"{"model":"m","stream":true,"messages":[]}"#,
    )
    .await;
    // Read until the first SSE event has arrived through the gateway.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&buf).contains("data: ") {
        let n = tokio::time::timeout(SOON, stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed before the first event");
        buf.extend_from_slice(&chunk[..n]);
    }
    assert!(
        buf.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    drop(stream);
    let done = h
        .primary
        .wait_until(SOON, |r| r.first().is_some_and(|r| r.finished))
        .await;
    assert!(done[0].finished && !done[0].completed, "{:?}", done[0]);
    h.shutdown().await;
}
