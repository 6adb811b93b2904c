//! HTTP/2: h2c prior-knowledge clients through the gateway, many streams on one connection,
//! and upstreams spoken to over HTTP/2.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{full, sse_events, H2Connection, Harness, Next, CALL_TIMEOUT, SOON};
use http::{Method, StatusCode, Version};
use serde_json::json;

fn chat(stream: bool) -> String {
    json!({"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
        .to_string()
}

#[tokio::test]
async fn h2c_client_json_and_sse() {
    let h = Harness::start().await;
    let client = h.h2c_client();

    let req = client
        .request(Method::POST, "/v1/chat/completions")
        .header("content-type", "application/json")
        .body(full(chat(false)))
        .unwrap();
    let reply = client.send(req).await;
    assert_eq!(reply.version, Version::HTTP_2);
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-switchyard-class"), Some("stateless"));
    assert_eq!(reply.json()["object"], "chat.completion");
    let got = h.primary.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body.as_ref(), chat(false).as_bytes());
    assert_eq!(
        got[0].version,
        Version::HTTP_11,
        "the upstream is spoken to in its own protocol"
    );
    assert!(
        got[0].header("host").is_some(),
        "an HTTP/1.1 upstream gets a host header even from an h2 client"
    );

    let req = client
        .request(Method::POST, "/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-mock-chunks", "6")
        .body(full(chat(true)))
        .unwrap();
    let mut resp = client.stream(req).await;
    assert_eq!(resp.version, Version::HTTP_2);
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    let (bytes, error) = resp.rest(CALL_TIMEOUT).await;
    assert_eq!(error, None);
    let events = sse_events(&bytes);
    assert_eq!(events.len(), 9, "role + 6 + finish + [DONE]: {events:#?}");
    assert_eq!(events.last().map(String::as_str), Some("data: [DONE]"));
    assert_eq!(h.secondary.request_count(), 0);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_on_one_connection_reach_their_own_upstreams() {
    let h = Harness::start().await;
    let conn = H2Connection::connect(h.proxy_addr).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            let stateful = i % 2 == 1;
            let req = if stateful {
                conn.request(Method::POST, &format!("/v1/responses?i={i}"))
                    .header("content-type", "application/json")
                    .header("x-mock-delay-ms", "50")
                    .body(full(
                        json!({"model": "m", "input": format!("req {i}")}).to_string(),
                    ))
                    .unwrap()
            } else {
                conn.request(Method::POST, &format!("/v1/chat/completions?i={i}"))
                    .header("content-type", "application/json")
                    .header("x-mock-delay-ms", "50")
                    .body(full(chat(i % 4 == 0)))
                    .unwrap()
            };
            (i, stateful, conn.send(req).await)
        }));
    }
    for t in tasks {
        let (i, stateful, reply) = t.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK, "request {i}");
        assert_eq!(reply.version, Version::HTTP_2);
        let (class, mock) = if stateful {
            ("stateful", "secondary")
        } else {
            ("stateless", "primary")
        };
        assert_eq!(
            reply.header("x-switchyard-class"),
            Some(class),
            "request {i}"
        );
        assert_eq!(reply.header("x-mock-provider"), Some(mock), "request {i}");
    }
    let mut primary: Vec<String> = h
        .primary
        .requests()
        .iter()
        .map(|r| r.path_and_query.clone())
        .collect();
    let mut secondary: Vec<String> = h
        .secondary
        .requests()
        .iter()
        .map(|r| r.path_and_query.clone())
        .collect();
    primary.sort();
    secondary.sort();
    let mut want_p: Vec<String> = (0..20)
        .filter(|i| i % 2 == 0)
        .map(|i| format!("/v1/chat/completions?i={i}"))
        .collect();
    let mut want_s: Vec<String> = (0..20)
        .filter(|i| i % 2 == 1)
        .map(|i| format!("/v1/responses?i={i}"))
        .collect();
    want_p.sort();
    want_s.sort();
    assert_eq!(primary, want_p);
    assert_eq!(secondary, want_s);
    h.shutdown().await;
}

#[tokio::test]
async fn http2_upstream_receives_http2() {
    let h = Harness::with_config(
        r#"
        [upstreams.secondary]
        http2 = true
        "#,
    )
    .await;
    // HTTP/1.1 client, h2c upstream.
    let reply = h.get("/v1/responses/resp_1?x=1").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("x-mock-provider"), Some("secondary"));
    let got = h.secondary.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].version, Version::HTTP_2);
    assert_eq!(got[0].path_and_query, "/v1/responses/resp_1?x=1");

    // A body and a stream over the h2 upstream.
    h.clear();
    let body = json!({"model": "m", "input": "hi", "stream": true}).to_string();
    let req = h
        .client
        .request(Method::POST, "/v1/responses")
        .header("content-type", "application/json")
        .body(full(body.clone()))
        .unwrap();
    let mut resp = h.client.stream(req).await;
    let (bytes, error) = resp.rest(CALL_TIMEOUT).await;
    assert_eq!(error, None);
    let events = sse_events(&bytes);
    assert!(
        events
            .last()
            .is_some_and(|e| e.starts_with("event: response.completed")),
        "{events:#?}"
    );
    let got = h.secondary.requests();
    assert_eq!(got[0].version, Version::HTTP_2);
    assert_eq!(got[0].body.as_ref(), body.as_bytes());

    // The primary is still HTTP/1.1.
    let reply = h.post_json("/v1/embeddings", &json!({"input": "x"})).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(h.primary.requests()[0].version, Version::HTTP_11);

    // h2 end to end.
    let client = h.h2c_client();
    let req = client
        .request(Method::GET, "/v1/conversations/conv_1")
        .body(full(""))
        .unwrap();
    let reply = client.send(req).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["id"], "conv_1");
    assert_eq!(
        h.secondary.requests().last().unwrap().version,
        Version::HTTP_2
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_over_h2_on_both_sides() {
    let h = Harness::with_config(
        r#"
        [upstreams.secondary]
        http2 = true
        "#,
    )
    .await;
    let client = h.h2c_client();
    let len = 5 * 1024 * 1024;
    // Inspected (buffered) body, h2 client → HTTP/1.1 upstream: more than any default window.
    let head = r#"{"model":"m","store":false,"input":""#;
    let mut json = Vec::with_capacity(len);
    json.extend_from_slice(head.as_bytes());
    json.resize(len - 2, b'k');
    json.extend_from_slice(b"\"}");
    let req = client
        .request(Method::POST, "/v1/responses")
        .header("content-type", "application/json")
        .body(full(json.clone()))
        .unwrap();
    let reply = client.send(req).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("x-mock-provider"), Some("primary"));
    assert!(
        h.primary.requests()[0].body.as_ref() == json.as_slice(),
        "buffered body differs"
    );

    // Streamed body, h2 client → h2 upstream, and a large response back.
    let blob: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    let req = client
        .request(Method::POST, "/v1/files")
        .header("content-type", "application/octet-stream")
        .header("x-mock-response-bytes", len.to_string())
        .body(full(blob.clone()))
        .unwrap();
    let reply = client.send(req).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body.len(), len);
    assert!(
        reply
            .body
            .iter()
            .enumerate()
            .all(|(i, b)| *b == (i % 256) as u8),
        "response pattern broken"
    );
    let got = &h.secondary.requests()[0];
    assert_eq!(got.version, Version::HTTP_2);
    assert!(
        got.body.as_ref() == blob.as_slice(),
        "streamed body differs"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn h2_client_reset_reaches_h1_and_h2_upstreams() {
    let h = Harness::with_config(
        r#"
        [upstreams.secondary]
        http2 = true
        "#,
    )
    .await;
    let client = h.h2c_client();
    for (path, body, mock) in [
        (
            "/v1/chat/completions",
            json!({"model": "m", "stream": true, "messages": []}),
            "primary",
        ),
        (
            "/v1/responses",
            json!({"model": "m", "stream": true, "input": "x"}),
            "secondary",
        ),
    ] {
        let req = client
            .request(Method::POST, path)
            .header("content-type", "application/json")
            .header("x-mock-hold", "1")
            .body(full(body.to_string()))
            .unwrap();
        let mut resp = client.stream(req).await;
        assert_eq!(resp.header("x-mock-provider"), Some(mock));
        assert!(
            matches!(resp.next(SOON).await, Next::Data(_)),
            "{path}: first event arrives while the upstream holds"
        );
        drop(resp); // RST_STREAM; the connection itself stays open
        let seen = h
            .mock(mock)
            .wait_until(SOON, |r| r.first().is_some_and(|r| r.finished))
            .await;
        assert!(
            seen[0].finished && !seen[0].completed,
            "{path}: the upstream exchange was not cancelled: {:?}",
            seen[0]
        );
    }
    h.shutdown().await;
}

/// A plain connection's protocol is told by peeking at its first bytes. A client that sends
/// them a few at a time is still told apart and served in its own protocol: the preface in
/// three writes is HTTP/2, and a request whose first write is a lone `P` (which could still
/// be the preface) is HTTP/1.1.
#[tokio::test]
async fn trickled_first_bytes_are_still_told_apart() {
    use tokio::io::AsyncWriteExt;
    let h = Harness::start().await;

    let mut h2 = tokio::net::TcpStream::connect(h.proxy_addr).await.unwrap();
    let preface = common::H2_PREFACE_AND_SETTINGS;
    for part in [&preface[..1], &preface[1..10], &preface[10..]] {
        h2.write_all(part).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    common::expect_h2_settings(&mut h2).await;
    drop(h2);

    let body = chat(false);
    let parts = [
        "P".to_owned(),
        format!(
            "OST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ),
    ];
    let response =
        common::trickle(h.proxy_addr, &parts, std::time::Duration::from_millis(100)).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let got = h.primary.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body.as_ref(), body.as_bytes());
    h.shutdown().await;
}
