//! The first-byte clock starts when the request body has been sent: a slow streamed upload is
//! not a slow upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{chunked_parts, trickle, Harness, SOON};

#[tokio::test]
async fn slow_streamed_upload_is_not_a_first_byte_timeout() {
    let h = Harness::with_config("[timeouts]\nfirst_byte = \"300ms\"\n").await;
    // A chunked upload to a streamed (stateful) route, spread over ~1 s: three times the
    // first-byte timeout. The upstream answers at once when the body is complete.
    let head = "POST /v1/files HTTP/1.1\r\nhost: gw\r\ncontent-type: application/octet-stream\r\n\
                transfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    let parts: Vec<String> = std::iter::once(head.to_owned())
        .chain(chunked_parts(&["hello ", "slow ", "world"]))
        .collect();
    let response = trickle(h.proxy_addr, &parts, Duration::from_millis(350)).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("x-mock-provider: secondary"),
        "{response}"
    );
    let seen = h
        .secondary
        .wait_until(SOON, |r| r.first().is_some_and(|r| r.body_complete))
        .await;
    assert_eq!(&seen[0].body[..], b"hello slow world");
    assert_eq!(h.primary.request_count(), 0);

    // The first-byte timeout still applies once the body is sent.
    let head = "POST /v1/files HTTP/1.1\r\nhost: gw\r\nx-mock-delay-ms: 5000\r\n\
                content-length: 3\r\nconnection: close\r\n\r\nabc";
    let slow = trickle(h.proxy_addr, &[head.to_owned()], Duration::ZERO).await;
    assert!(slow.starts_with("HTTP/1.1 504"), "{slow}");
    assert!(slow.contains("\"code\":\"timeout\""), "{slow}");
    h.shutdown().await;
}
