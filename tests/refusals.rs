//! Requests the gateway refuses itself, before or instead of routing: bodies it cannot
//! classify, encoded bodies, dot segments, oversized or broken uploads, oversized heads.
//! Whatever the reason, no upstream sees a complete request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::{chunked, metric, read_raw_response, Harness, SOON};
use http::{Method, StatusCode};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn chat() -> serde_json::Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn unclassifiable_bodies_are_refused_before_any_upstream() {
    let h = Harness::start().await;
    let cases: [(&str, &[u8], &str); 8] = [
        ("/v1/responses", b"{not json", "invalid_json"),
        ("/v1/responses", b"", "invalid_json"),
        ("/v1/responses", b"[1, 2, 3]", "not_an_object"),
        (
            "/v1/responses",
            br#"{"store": false, "store": true}"#,
            "duplicate_key",
        ),
        (
            "/v1/chat/completions",
            br#"{"model": "m", "messages": [}"#,
            "invalid_json",
        ),
        // Providers disagree on coercing these; the gateway refuses to guess.
        ("/v1/responses", br#"{"store": "false"}"#, "invalid_marker"),
        (
            "/v1/responses",
            br#"{"store": false, "background": 1}"#,
            "invalid_marker",
        ),
        (
            "/v1/chat/completions",
            br#"{"messages": [], "store": "true"}"#,
            "invalid_marker",
        ),
    ];
    for (path, body, code) in cases {
        let reply = h.post_json_with(path, &[], Bytes::from_static(body)).await;
        let shown = String::from_utf8_lossy(body);
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{path} {shown}: {}",
            reply.text()
        );
        assert_eq!(reply.error_code(), code, "{path} {shown}");
        assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
        assert!(reply.header("x-request-id").is_some());
        h.assert_no_upstream_contacted(&format!("{path} {shown}"));
    }
    h.shutdown().await;
}

#[tokio::test]
async fn unclassifiable_as_stateless_goes_to_primary_only() {
    let h = Harness::with_config(
        r#"
        [routing]
        unclassifiable = "stateless"
        "#,
    )
    .await;
    let body = Bytes::from_static(b"{\"model\": \"m\", \"input\": oops");
    let reply = h
        .post_json_with("/v1/responses?x=1", &[], body.clone())
        .await;
    assert_eq!(
        reply.header("x-mock-provider"),
        Some("primary"),
        "{}",
        reply.text()
    );
    assert_eq!(reply.header("x-switchyard-class"), Some("stateless"));
    assert_eq!(reply.header("x-switchyard-rule"), Some("unclassifiable"));
    let got = h.primary.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path_and_query, "/v1/responses?x=1");
    assert_eq!(got[0].body, body, "forwarded byte for byte");
    assert_eq!(h.secondary.request_count(), 0);

    // Ambiguous paths are refused whatever the policy.
    h.clear();
    let reply = h
        .client
        .call(Method::GET, "/v1/files/../chat/completions", &[], "")
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), "ambiguous_path");
    h.assert_no_upstream_contacted("ambiguous path with unclassifiable = stateless");
    h.shutdown().await;
}

#[tokio::test]
async fn unclassifiable_as_stateful_goes_to_secondary_only() {
    let h = Harness::with_config(
        r#"
        [routing]
        unclassifiable = "stateful"
        "#,
    )
    .await;
    let reply = h.post_json_with("/v1/chat/completions", &[], "[]").await;
    assert_eq!(
        reply.header("x-mock-provider"),
        Some("secondary"),
        "{}",
        reply.text()
    );
    assert_eq!(reply.header("x-switchyard-class"), Some("stateful"));
    assert_eq!(h.secondary.request_count(), 1);
    assert_eq!(h.primary.request_count(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn encoded_body_on_an_inspected_route_is_refused() {
    let h = Harness::start().await;
    // A real gzip member header; the gateway must not guess at the content.
    let gz: &[u8] = &[
        0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 0x03, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    for path in ["/v1/responses", "/v1/chat/completions"] {
        let reply = h
            .post_json_with(
                path,
                &[("content-encoding", "gzip")],
                Bytes::from_static(gz),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            reply.text()
        );
        assert_eq!(reply.error_code(), "encoded_body", "{path}");
        h.assert_no_upstream_contacted(path);
    }
    // `identity` is no encoding at all.
    let reply = h
        .post_json_with(
            "/v1/chat/completions",
            &[("content-encoding", "identity")],
            chat().to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("x-mock-provider"), Some("primary"));
    h.clear();
    // On a route decided by its path alone, the encoding does not matter.
    let reply = h
        .client
        .call(
            Method::POST,
            "/v1/files",
            &[
                ("content-type", "application/octet-stream"),
                ("content-encoding", "gzip"),
            ],
            Bytes::from_static(gz),
        )
        .await;
    assert_eq!(reply.header("x-mock-provider"), Some("secondary"));
    assert_eq!(h.secondary.requests()[0].body, Bytes::from_static(gz));
    h.shutdown().await;
}

#[tokio::test]
async fn ambiguous_paths_are_refused() {
    // Paths an upstream could read differently from the classifier: dot segments, empty
    // segments, encoded slashes, path parameters, bad percent-encoding.
    let h = Harness::start().await;
    for path in [
        "/v1/files/../chat/completions",
        "/v1/files/%2e%2e/chat/completions",
        "/v1/./responses",
        "/v1/chat/completions/..",
        "/v1//chat/completions",
        "//v1/chat/completions",
        "/v1/responses/..%2Fembeddings",
        "/v1/files%2Ffile-abc",
        "/v1/chat/completions;x=1",
        "/v1/chat/completions%3Bx=1",
        "/v1/chat/%zzcompletions",
    ] {
        let reply = h.post_json_with(path, &[], chat().to_string()).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            reply.text()
        );
        assert_eq!(reply.error_code(), "ambiguous_path", "{path}");
        h.assert_no_upstream_contacted(path);
    }
    h.shutdown().await;
}

/// A gateway whose `max_body_bytes` is 1 KiB.
async fn one_kib_limit() -> Harness {
    Harness::with_config(
        r#"
        [limits]
        max_body_bytes = "1 KiB"
        "#,
    )
    .await
}

/// A Responses request body of about 2 KB, over [`one_kib_limit`].
fn over_one_kib() -> String {
    format!(
        "{{\"model\":\"m\",\"store\":false,\"input\":\"{}\"}}",
        "x".repeat(2000)
    )
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_before_any_upstream() {
    let h = one_kib_limit().await;
    let big_json = over_one_kib();
    // Declared too large, on an inspected route and on a streamed one.
    for (path, body) in [
        ("/v1/responses", Bytes::from(big_json.clone())),
        ("/v1/chat/completions", Bytes::from(big_json.clone())),
        ("/v1/files", Bytes::from(vec![7u8; 4096])),
    ] {
        let reply = h.post_json_with(path, &[], body).await;
        assert_eq!(
            reply.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{path}: {}",
            reply.text()
        );
        assert_eq!(reply.error_code(), "body_too_large", "{path}");
        assert!(
            reply.error_message().contains("1024"),
            "{}",
            reply.error_message()
        );
        h.assert_no_upstream_contacted(&format!("content-length on {path}"));
    }
    // Chunked, without content-length, on an inspected route.
    let frames: Vec<Bytes> = big_json
        .as_bytes()
        .chunks(300)
        .map(Bytes::copy_from_slice)
        .collect();
    let req = h
        .client
        .request(Method::POST, "/v1/responses")
        .header("content-type", "application/json")
        .body(chunked(frames))
        .unwrap();
    let reply = h.client.send(req).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text()
    );
    assert_eq!(reply.error_code(), "body_too_large");
    h.assert_no_upstream_contacted("chunked on /v1/responses");

    // Exactly at the limit is fine.
    let at_limit = format!(
        "{{\"model\":\"m\",\"store\":false,\"input\":\"{}\"}}",
        "y".repeat(1024 - 38)
    );
    assert_eq!(at_limit.len(), 1024);
    let reply = h
        .post_json_with("/v1/responses", &[], at_limit.clone())
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(h.primary.requests()[0].body, Bytes::from(at_limit));
    h.shutdown().await;
}

#[tokio::test]
async fn chunked_body_over_the_limit_on_a_streamed_route_never_arrives_whole() {
    let h = one_kib_limit().await;
    let frames: Vec<Bytes> = (0..8).map(|_| Bytes::from(vec![b'z'; 512])).collect();
    let req = h
        .client
        .request(Method::POST, "/v1/files")
        .header("content-type", "application/octet-stream")
        .body(chunked(frames))
        .unwrap();
    let reply = h.client.send(req).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text()
    );
    assert_eq!(reply.error_code(), "body_too_large");
    assert_eq!(h.primary.request_count(), 0, "never the other upstream");
    // The streamed body may have started upstream, but the upstream must never see it end.
    let seen = h
        .secondary
        .wait_until(SOON, |reqs| reqs.iter().all(|r| r.finished))
        .await;
    for r in &seen {
        assert!(
            !r.body_complete,
            "the upstream received a complete body of {} bytes over the limit",
            r.body.len()
        );
        assert!(
            r.body.len() <= 1024,
            "more than the limit was forwarded: {}",
            r.body.len()
        );
    }
    h.shutdown().await;
}

/// Send a request head promising `declared` body bytes, send `sent` of them, and stop
/// sending. Returns the response, if the gateway sent one.
async fn truncated_upload(h: &Harness, path: &str, declared: usize, sent: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(h.proxy_addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
         content-length: {declared}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(sent).await.unwrap();
    stream.shutdown().await.unwrap();
    read_raw_response(&mut stream).await.map(|r| r.status())
}

#[tokio::test]
async fn a_client_body_that_breaks_off_never_completes_upstream() {
    let h = Harness::start().await;
    // Inspected route: the gateway is still reading the body, so no upstream is contacted.
    let status = truncated_upload(&h, "/v1/responses", 1000, b"{\"model\": \"m\", ").await;
    assert!(
        matches!(status, None | Some(400)),
        "a broken body is the client's fault: {status:?}"
    );
    let s = h
        .scrape_when(|s| {
            metric("switchyard_rejections_total")
                .label("reason", "client_body")
                .sum_in(s)
                == Some(1.0)
        })
        .await;
    metric("switchyard_rejections_total")
        .label("reason", "client_body")
        .assert_value(&s, 1.0);
    h.assert_no_upstream_contacted("truncated inspected body");

    // Streamed route: the upload may start upstream but must never look complete there.
    let status = truncated_upload(&h, "/v1/files", 1000, &[b'q'; 100]).await;
    assert!(matches!(status, None | Some(400) | Some(502)), "{status:?}");
    let seen = h
        .secondary
        .wait_until(SOON, |reqs| reqs.iter().all(|r| r.finished))
        .await;
    for r in &seen {
        assert!(
            !r.body_complete,
            "the upstream saw a complete body of {} bytes",
            r.body.len()
        );
    }
    assert_eq!(h.primary.request_count(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn oversized_request_heads_get_431() {
    let h = Harness::with_config(
        r#"
        [limits]
        max_header_bytes = 8192
        "#,
    )
    .await;
    let big = "a".repeat(16 * 1024);
    let mut stream = TcpStream::connect(h.proxy_addr).await.unwrap();
    let req = format!("GET /v1/models HTTP/1.1\r\nhost: gw\r\nx-big: {big}\r\n\r\n");
    let _ = stream.write_all(req.as_bytes()).await;
    let status = read_raw_response(&mut stream).await.map(|r| r.status());
    assert_eq!(status, Some(431), "request header fields too large");
    h.assert_no_upstream_contacted("oversized head");

    // A normal request still works.
    let reply = h.get("/v1/models").await;
    assert_eq!(reply.status, StatusCode::OK);
    h.shutdown().await;
}

/// A refused request whose client waits for `100 Continue` is answered at once and its
/// connection ends cleanly: no body is awaited that the client will never send, so a request
/// that follows on the same connection is never taken for body bytes. A refused body sent
/// right away is read and discarded so that the client gets its 413, and the connection
/// stays usable.
#[tokio::test]
async fn refusals_neither_wait_for_a_continued_body_nor_reset_a_sent_one() {
    let h = one_kib_limit().await;
    // Expect: 100-continue, body too large: 413 without 100 Continue, then the connection
    // closes (the body was never sent, so it cannot be skipped).
    let mut stream = TcpStream::connect(h.proxy_addr).await.unwrap();
    stream
        .write_all(
            b"POST /v1/responses HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
              content-length: 5000\r\nexpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let reply = read_raw_response(&mut stream).await.expect("a response");
    assert_eq!(reply.status(), 413, "{}", reply.head);
    let mut rest = Vec::new();
    // Well inside the 2 s a lingering read of the body would hold the connection.
    let closed = tokio::time::timeout(std::time::Duration::from_millis(1000), async {
        use tokio::io::AsyncReadExt;
        stream.read_to_end(&mut rest).await
    })
    .await;
    assert!(
        matches!(closed, Ok(Ok(_)) | Ok(Err(_))),
        "the connection stayed open waiting for a body that will never come"
    );

    // Body sent with the head, slightly over the limit: 413, and the connection still
    // answers the next request.
    let mut stream = TcpStream::connect(h.proxy_addr).await.unwrap();
    let body = over_one_kib();
    let head = format!(
        "POST /v1/responses HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let reply = read_raw_response(&mut stream)
        .await
        .expect("a 413, not a reset");
    assert_eq!(reply.status(), 413, "{}", reply.head);
    stream
        .write_all(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let next = read_raw_response(&mut stream)
        .await
        .expect("the connection serves the next request after the discarded body");
    assert_eq!(next.status(), 200, "{}", next.head);
    h.shutdown().await;
}
