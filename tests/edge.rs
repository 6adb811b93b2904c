//! Edge cases where what the gateway classifies could differ from what the upstream sees,
//! and where a client's fault must not be blamed on an upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{chunked_parts, metric, trickle, Harness, SOON};
use http::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn a_marker_hidden_behind_connection_does_not_decide() {
    // `mcp-session-id` named in `Connection` is hop-by-hop: the upstream never sees it, so it
    // must not make a stateless call stateful (and send it to the secondary).
    let h = Harness::start().await;
    let reply = h
        .post_json_with(
            "/v1/embeddings",
            &[
                ("mcp-session-id", "abc"),
                ("connection", "keep-alive, mcp-session-id"),
            ],
            r#"{"model":"e","input":"x"}"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("x-switchyard-class"), Some("stateless"));
    assert_eq!(h.secondary.request_count(), 0);
    let got = h.primary.requests();
    assert_eq!(got.len(), 1);
    assert!(got[0].headers.get("mcp-session-id").is_none());

    // Sent as an end-to-end header, the same marker does decide.
    let reply = h
        .post_json_with(
            "/v1/embeddings",
            &[("mcp-session-id", "abc")],
            r#"{"model":"e","input":"x"}"#,
        )
        .await;
    assert_eq!(reply.header("x-switchyard-class"), Some("stateful"));
    assert_eq!(
        reply.header("x-switchyard-rule"),
        Some("header.mcp_session")
    );
    assert_eq!(h.secondary.request_count(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn connect_trace_miscased_methods_and_asterisk_targets_are_refused() {
    let h = Harness::start().await;
    let reply = h
        .client
        .call(Method::TRACE, "/v1/models", &[], Bytes::new())
        .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.error_code(), "method_not_allowed");
    assert!(reply.header("allow").is_some());

    for request in [
        "CONNECT evil.example:443 HTTP/1.1\r\nhost: evil.example:443\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nhost: gw\r\n\r\n",
        // Lower-case `post` is an unknown method to the classifier (so `store:false` would not
        // be read) but POST to a lenient upstream.
        "post /v1/responses HTTP/1.1\r\nhost: gw\r\ncontent-length: 15\r\n\r\n{\"store\":false}",
    ] {
        let mut s = TcpStream::connect(h.proxy_addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(SOON, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(
            text.starts_with("HTTP/1.1 405") || text.starts_with("HTTP/1.1 400"),
            "{request:?} -> {text}"
        );
    }
    assert_eq!(h.primary.request_count(), 0);
    assert_eq!(h.secondary.request_count(), 0);
    let scrape = h.scrape().await;
    metric("switchyard_rejections_total")
        .label("reason", "method_not_allowed")
        .assert_value(&scrape, 3.0);
    h.shutdown().await;
}

/// A chunked POST whose chunks trickle in `gap` apart; the raw response.
async fn trickle_post(h: &Harness, path: &str, chunks: &[&str], gap: Duration) -> String {
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    let parts: Vec<String> = std::iter::once(head).chain(chunked_parts(chunks)).collect();
    trickle(h.proxy_addr, &parts, gap).await
}

#[tokio::test]
async fn a_slow_upload_is_the_clients_fault_not_the_upstreams() {
    // The primary's request timeout is 600 ms; the client needs ~900 ms to send its body.
    let h = Harness::with_config(
        "[upstreams.primary.timeouts]\nrequest = \"600ms\"\n[upstreams.secondary.timeouts]\nrequest = \"600ms\"\n",
    )
    .await;
    let gap = Duration::from_millis(300);
    let chunks = [r#"{"model":"m","#, r#""messages":[],"#, r#""store":false}"#];
    // Buffered (classified by body) route.
    let resp = trickle_post(&h, "/v1/chat/completions", &chunks, gap).await;
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert!(resp.contains("\"code\":\"client_timeout\""), "{resp}");
    // Streamed route: the upload is cut off when the deadline passes.
    let resp = trickle_post(&h, "/v1/files", &["a", "b", "c", "d"], gap).await;
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    let scrape = h.scrape().await;
    metric("switchyard_rejections_total")
        .label("reason", "client_timeout")
        .assert_value(&scrape, 2.0);
    for kind in ["request_timeout", "first_byte_timeout"] {
        metric("switchyard_upstream_errors_total")
            .label("kind", kind)
            .assert_absent_or_zero(&scrape);
    }
    assert_eq!(h.primary.request_count(), 0, "the buffered body never left");
    h.shutdown().await;
}

#[tokio::test]
async fn a_stalled_body_on_an_inspected_route_hits_the_idle_timeout() {
    let h = Harness::with_config("[timeouts]\nidle = \"200ms\"\n").await;
    let resp = trickle_post(
        &h,
        "/v1/responses",
        &[r#"{"model":"m","#, r#""input":"x"}"#],
        Duration::from_millis(600),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert_eq!(h.primary.request_count() + h.secondary.request_count(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn a_streamed_body_over_the_limit_says_the_upload_was_aborted() {
    let h = Harness::with_config("[limits]\nmax_body_bytes = 1024\n").await;
    let big = "x".repeat(700);
    let resp = trickle_post(&h, "/v1/files", &[&big, &big], Duration::from_millis(10)).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(
        resp.contains("its upload to upstream secondary was aborted"),
        "{resp}"
    );
    // What arrived upstream is a cut-off upload, never a complete request.
    let seen = h
        .secondary
        .wait_until(SOON, |r| r.iter().all(|r| r.finished))
        .await;
    assert!(seen.iter().all(|r| !r.body_complete), "{seen:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_client_gone_before_the_head_is_recorded_once_as_499() {
    let h = Harness::start().await;
    let mut s = TcpStream::connect(h.proxy_addr).await.unwrap();
    let body = r#"{"model":"m","messages":[]}"#;
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nx-mock-delay-ms: 20000\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    h.primary.wait_for_requests(1, SOON).await;
    drop(s);
    // The record and the in-flight gauge are settled as the request's future is dropped, in
    // no fixed order: wait for both.
    let scrape = h
        .scrape_when(|s| {
            metric("switchyard_requests_total")
                .label("status", "499")
                .sum_in(s)
                .is_some()
                && metric("switchyard_requests_in_flight")
                    .label("upstream", "primary")
                    .sum_in(s)
                    == Some(0.0)
        })
        .await;
    metric("switchyard_requests_total")
        .label("route", "/v1/chat/completions")
        .label("class", "stateless")
        .label("upstream", "primary")
        .label("status", "499")
        .assert_value(&scrape, 1.0);
    metric("switchyard_requests_in_flight")
        .label("upstream", "primary")
        .assert_value(&scrape, 0.0);
    h.shutdown().await;
}
