//! Large bodies pass through unchanged in both directions: inspected (buffered) requests,
//! streamed requests, and large responses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::{chunked, metric, Harness};
use http::{Method, StatusCode};

const SIZES: [usize; 3] = [64 * 1024 + 1, 1024 * 1024, 20 * 1024 * 1024];

async fn harness() -> Harness {
    Harness::with_config(
        r#"
        [limits]
        max_body_bytes = "24 MiB"
        "#,
    )
    .await
}

/// A JSON Responses body of exactly `len` bytes, padded with a long string.
fn padded_json(len: usize) -> Bytes {
    let head = r#"{"model":"gpt-4o","store":false,"input":""#;
    let tail = r#""}"#;
    let pad = len - head.len() - tail.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(head.as_bytes());
    // Printable, non-repeating at small periods, no characters JSON would need escaped.
    out.extend((0..pad).map(|i| b'a' + ((i * 7 + i / 26) % 26) as u8));
    out.extend_from_slice(tail.as_bytes());
    assert_eq!(out.len(), len);
    Bytes::from(out)
}

/// `len` bytes of every value 0..=255, in a non-trivial order.
fn binary(len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_left(7) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then_some(a.len().min(b.len())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspected_request_bodies_arrive_byte_identical() {
    let h = harness().await;
    for len in SIZES {
        h.clear();
        let body = padded_json(len);
        let reply = h.post_json_with("/v1/responses", &[], body.clone()).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{len} bytes: {}",
            reply.text()
        );
        assert_eq!(reply.header("x-switchyard-class"), Some("stateless"));
        let got = h.primary.requests();
        assert_eq!(got.len(), 1, "{len} bytes");
        let r = &got[0];
        assert!(r.body_complete);
        assert_eq!(
            first_difference(&r.body, &body),
            None,
            "{len} bytes: upstream body differs (got {} bytes)",
            r.body.len()
        );
        assert_eq!(
            r.header("content-length"),
            Some(len.to_string().as_str()),
            "a buffered body goes upstream with its exact content-length"
        );
        assert_eq!(r.header("transfer-encoding"), None);
        assert_eq!(h.secondary.request_count(), 0);
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspected_chunked_request_body_gets_a_content_length_upstream() {
    let h = harness().await;
    let body = padded_json(1024 * 1024);
    let frames: Vec<Bytes> = body.chunks(100_000).map(Bytes::copy_from_slice).collect();
    let req = h
        .client
        .request(Method::POST, "/v1/responses")
        .header("content-type", "application/json")
        .body(chunked(frames))
        .unwrap();
    let reply = h.client.send(req).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let got = h.primary.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(first_difference(&got[0].body, &body), None);
    assert_eq!(
        got[0].header("content-length"),
        Some(body.len().to_string().as_str()),
        "the buffered body's length is known, so it is declared"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_request_bodies_arrive_byte_identical() {
    let h = harness().await;
    for len in SIZES {
        h.clear();
        let body = binary(len);
        let reply = h
            .client
            .call(
                Method::POST,
                "/v1/files",
                &[("content-type", "application/octet-stream")],
                body.clone(),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{len} bytes: {}",
            reply.text()
        );
        assert_eq!(reply.header("x-switchyard-class"), Some("stateful"));
        let got = h.secondary.requests();
        assert_eq!(got.len(), 1);
        assert!(got[0].body_complete);
        assert_eq!(
            first_difference(&got[0].body, &body),
            None,
            "{len} bytes: upstream body differs (got {} bytes)",
            got[0].body.len()
        );
        assert_eq!(
            got[0].header("content-length"),
            Some(len.to_string().as_str())
        );
        assert_eq!(reply.json()["bytes"], len, "the mock saw every byte");
        assert_eq!(h.primary.request_count(), 0);
    }
    // Streamed bytes are counted as they pass.
    let s = h
        .scrape_when(|s| {
            metric("switchyard_requests_total")
                .label("route", "/v1/files")
                .sum_in(s)
                == Some(3.0)
        })
        .await;
    metric("switchyard_request_bytes_total")
        .label("route", "/v1/files")
        .label("upstream", "secondary")
        .assert_value(&s, SIZES.iter().sum::<usize>() as f64);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_chunked_request_body_arrives_identical() {
    let h = harness().await;
    let body = binary(3 * 1024 * 1024 + 17);
    let frames: Vec<Bytes> = body.chunks(65_537).map(Bytes::copy_from_slice).collect();
    let req = h
        .client
        .request(Method::POST, "/v1/files")
        .header("content-type", "application/octet-stream")
        .body(chunked(frames))
        .unwrap();
    let reply = h.client.send(req).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let got = h.secondary.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(first_difference(&got[0].body, &body), None);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_responses_arrive_byte_identical() {
    let h = harness().await;
    let len = 20 * 1024 * 1024;
    for (path, mock) in [
        ("/v1/models", "primary"),
        ("/v1/files/file-1/content", "secondary"),
    ] {
        let reply = h
            .client
            .call(
                Method::GET,
                path,
                &[("x-mock-response-bytes", &len.to_string())],
                "",
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("x-mock-provider"), Some(mock));
        assert_eq!(reply.body.len(), len, "{path}");
        let bad = reply
            .body
            .iter()
            .enumerate()
            .position(|(i, b)| *b != (i % 256) as u8);
        assert_eq!(bad, None, "{path}: the pattern breaks at this offset");
        assert_eq!(
            reply.header("content-length"),
            Some(len.to_string().as_str()),
            "the upstream's content-length is kept"
        );
    }
    let s = h
        .scrape_when(|s| metric("switchyard_requests_total").sum_in(s) == Some(2.0))
        .await;
    metric("switchyard_response_bytes_total")
        .label("route", "/v1/models")
        .label("upstream", "primary")
        .assert_value(&s, len as f64);
    metric("switchyard_response_bytes_total")
        .label("route", "/v1/files/{id}/content")
        .label("upstream", "secondary")
        .assert_value(&s, len as f64);
    h.shutdown().await;
}
