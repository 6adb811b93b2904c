//! Recording, controls, routes and lifecycle.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Version;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

#[tokio::test]
async fn records_http1_request_exactly() {
    let mock = start("primary").await;
    let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let (parts, _) = send(
        &client(false),
        &mock,
        "POST",
        "/v1/chat/completions?api-version=1",
        &[
            ("x-request-id", "req-1"),
            ("content-type", "application/json"),
        ],
        Bytes::from_static(body),
    )
    .await;
    assert_eq!(parts.status, 200);
    assert_eq!(parts.headers["x-mock-provider"], "primary");
    assert_eq!(parts.headers["x-request-id"], "req-1");
    assert_eq!(parts.headers["x-mock-request-id"].len(), 36);

    let reqs = mock
        .wait_until(WAIT, |r| r.iter().all(|r| r.finished))
        .await;
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, http::Method::POST);
    assert_eq!(r.path_and_query, "/v1/chat/completions?api-version=1");
    assert_eq!(r.path(), "/v1/chat/completions");
    assert_eq!(r.query(), Some("api-version=1"));
    assert_eq!(r.version, Version::HTTP_11);
    assert_eq!(r.header("x-request-id"), Some("req-1"));
    assert_eq!(r.header("no-such"), None);
    assert_eq!(r.header("bad header name"), None);
    assert_eq!(&r.body[..], body);
    assert!(r.body_complete && r.completed && r.finished);
    assert_eq!(mock.request_count(), 1);
    mock.clear();
    assert!(mock.requests().is_empty());
    assert_eq!(mock.served_count(), 1);
}

#[tokio::test]
async fn records_h2c_request_with_large_body() {
    let mock = start("secondary").await;
    let body: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let (parts, answer) = send(&client(true), &mock, "PUT", "/anything", &[], body.clone()).await;
    assert_eq!(parts.version, Version::HTTP_2);
    assert_eq!(parts.headers["x-mock-provider"], "secondary");
    let echo: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(echo["object"], "mock.echo");
    assert_eq!(echo["body_bytes"], 1024 * 1024);
    let reqs = mock
        .wait_until(WAIT, |r| r.iter().all(|r| r.finished))
        .await;
    assert_eq!(reqs[0].version, Version::HTTP_2);
    assert_eq!(reqs[0].method, http::Method::PUT);
    assert_eq!(reqs[0].body.len(), body.len());
    assert!(reqs[0].body == body);
    assert!(reqs[0].completed);
}

#[tokio::test]
async fn reads_a_20_mib_body() {
    let mock = start("primary").await;
    let body = Bytes::from(vec![b'x'; 20 * 1024 * 1024]);
    let (parts, _) = send(&client(false), &mock, "POST", "/v1/files", &[], body).await;
    assert_eq!(parts.status, 200);
    assert_eq!(mock.requests()[0].body.len(), 20 * 1024 * 1024);
}

#[tokio::test]
async fn status_control_returns_openai_error() {
    let mock = start("primary").await;
    let c = client(false);
    let (parts, body) = send(
        &c,
        &mock,
        "POST",
        "/v1/chat/completions",
        &[("x-mock-status", "429")],
        "{}",
    )
    .await;
    assert_eq!(parts.status, 429);
    assert_eq!(parts.headers["x-mock-provider"], "primary");
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body,
        json!({"error": {"message": "mock error", "type": "mock_error", "code": "mock"}})
    );
    for bad in ["abc", "99", "1000", "101", ""] {
        let (parts, _) = send(
            &c,
            &mock,
            "GET",
            "/v1/models",
            &[("x-mock-status", bad)],
            "",
        )
        .await;
        assert_eq!(parts.status, 200, "{bad}");
    }
    let (parts, body) = send(
        &c,
        &mock,
        "GET",
        "/v1/models",
        &[("x-mock-status", "204")],
        "",
    )
    .await;
    assert_eq!(parts.status, 204);
    assert!(body.is_empty());
    let reqs = mock
        .wait_until(WAIT, |r| r.iter().all(|r| r.finished))
        .await;
    assert!(reqs.iter().all(|r| r.completed));
}

#[tokio::test]
async fn delay_and_response_bytes_controls() {
    let mock = start("primary").await;
    let c = client(false);
    let started = Instant::now();
    send(
        &c,
        &mock,
        "GET",
        "/v1/models",
        &[("x-mock-delay-ms", "60")],
        "",
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(60));

    let n = 200_000;
    let (parts, body) = send(
        &c,
        &mock,
        "POST",
        "/x",
        &[("x-mock-response-bytes", "200000")],
        "",
    )
    .await;
    assert_eq!(parts.headers["content-type"], "application/octet-stream");
    assert_eq!(parts.headers["content-length"], "200000");
    assert_eq!(body.len(), n);
    assert!(body.iter().enumerate().all(|(i, b)| *b == (i % 256) as u8));
    let (_, body) = send(
        &client(true),
        &mock,
        "GET",
        "/x",
        &[("x-mock-response-bytes", "0")],
        "",
    )
    .await;
    assert!(body.is_empty());
}

#[tokio::test]
async fn hold_marks_incomplete_when_http1_client_leaves() {
    let mock = start("primary").await;
    let mut tcp = tokio::net::TcpStream::connect(mock.addr()).await.unwrap();
    let body = r#"{"model":"m","stream":true}"#;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: mock\r\nx-mock-hold: 1\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("chat.completion.chunk") {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed early");
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"));
    assert!(text.contains("text/event-stream"));
    assert!(!text.contains("[DONE]"));
    let reqs = mock.wait_for_requests(1, WAIT).await;
    assert!(reqs[0].body_complete && !reqs[0].finished);
    drop(tcp);
    let reqs = mock.wait_until(WAIT, |r| r[0].finished).await;
    assert!(reqs[0].finished, "the mock noticed the client left");
    assert!(!reqs[0].completed);
}

#[tokio::test]
async fn hold_marks_incomplete_when_h2_stream_is_dropped() {
    let mock = start("primary").await;
    let c = client(true);
    let resp = send_raw(
        &c,
        &mock,
        "POST",
        "/v1/responses",
        &[("x-mock-hold", "true")],
        r#"{"stream":true}"#,
    )
    .await;
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(first.starts_with(b"event: response.created\n"));
    assert!(!mock.requests()[0].finished);
    drop(body);
    let reqs = mock.wait_until(WAIT, |r| r[0].finished).await;
    assert!(reqs[0].finished && !reqs[0].completed);
}

#[tokio::test]
async fn wait_for_requests_without_sleeping() {
    let mock = start("primary").await;
    let quick = mock.wait_for_requests(1, Duration::from_millis(20)).await;
    assert!(quick.is_empty(), "times out with what is there");
    let addr = mock.addr();
    let sender = tokio::spawn(async move {
        let c = client(false);
        for path in ["/v1/a", "/v1/b"] {
            let req = http::Request::post(format!("http://{addr}{path}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            c.request(req).await.unwrap();
        }
    });
    let reqs = mock.wait_for_requests(2, WAIT).await;
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].path(), "/v1/a");
    assert_eq!(reqs[1].path(), "/v1/b");
    sender.await.unwrap();
}

#[tokio::test]
async fn recording_off_counts_only() {
    let mock = start_with(MockOptions::new("bench").with_record(false)).await;
    send(
        &client(false),
        &mock,
        "POST",
        "/v1/embeddings",
        &[],
        r#"{"input":"x"}"#,
    )
    .await;
    assert!(mock.requests().is_empty());
    assert_eq!(mock.request_count(), 0);
    assert_eq!(mock.served_count(), 1);
}

#[tokio::test]
async fn shutdown_closes_listener_and_held_connections() {
    let mock = start("primary").await;
    let addr = mock.addr();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /v1/models HTTP/1.1\r\nhost: m\r\nx-mock-hold: 1\r\n\r\n")
        .await
        .unwrap();
    mock.wait_for_requests(1, WAIT).await;
    tokio::time::timeout(WAIT, mock.shutdown()).await.unwrap();
    let mut rest = Vec::new();
    // EOF or a reset both mean closed; a timeout would mean the connection task leaked.
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn routes_answer_behind_any_prefix() {
    let mock = start("secondary").await;
    let c = client(false);
    let chat = r#"{"model":"gpt-x","messages":[]}"#;
    for path in [
        "/v1/chat/completions",
        "/openai/v1/chat/completions",
        "/openai/deployments/dep/chat/completions?api-version=2024-10-21",
        "/chat/completions",
    ] {
        let (status, v) = send_json(&c, &mock, "POST", path, chat).await;
        assert_eq!(status, 200);
        assert_eq!(v["object"], "chat.completion", "{path}");
        assert_eq!(v["model"], "gpt-x");
        let content = v["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(content.contains("secondary"), "{content}");
        assert_eq!(v["usage"]["completion_tokens"], 5);
    }
    let (_, r) = send_json(
        &c,
        &mock,
        "POST",
        "/openai/responses",
        r#"{"model":"m","store":false,"conversation":"conv_1"}"#,
    )
    .await;
    assert_eq!(r["object"], "response");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["store"], false);
    assert_eq!(r["conversation"], json!({"id": "conv_1"}));
    assert_eq!(r["output"][0]["content"][0]["type"], "output_text");
    assert_eq!(r["usage"]["output_tokens_details"]["reasoning_tokens"], 0);
    let (_, r) = send_json(&c, &mock, "GET", "/v1/responses/resp_9", "").await;
    assert_eq!(r["id"], "resp_9");
    let (_, r) = send_json(&c, &mock, "DELETE", "/v1/responses/resp_9", "").await;
    assert_eq!(r["deleted"], true);
    let (_, r) = send_json(&c, &mock, "POST", "/v1/responses/resp_9/cancel", "").await;
    assert_eq!(r["status"], "cancelled");
    let (_, r) = send_json(&c, &mock, "GET", "/v1/responses/resp_9/input_items", "").await;
    assert_eq!(r["object"], "list");

    let (_, conv) = send_json(&c, &mock, "POST", "/v1/conversations", "{}").await;
    assert!(conv["id"].as_str().unwrap().starts_with("conv_"));
    assert_eq!(conv["object"], "conversation");
    let (_, r) = send_json(&c, &mock, "GET", "/v1/conversations/conv_1/items", "").await;
    assert_eq!(r["data"], json!([]));
    let (_, r) = send_json(&c, &mock, "DELETE", "/v1/conversations/conv_1", "").await;
    assert_eq!(r["deleted"], true);

    let (_, models) = send_json(&c, &mock, "GET", "/v1/models", "").await;
    assert_eq!(models["data"][0]["object"], "model");
    let (_, echo) = send_json(&c, &mock, "POST", "/v1/unknown/route", "abc").await;
    assert_eq!(
        echo,
        json!({"object": "mock.echo", "provider": "secondary", "method": "POST",
        "path": "/v1/unknown/route", "api_path": "/unknown/route", "body_bytes": 3})
    );
}

#[tokio::test]
async fn files_upload_list_get_delete() {
    let mock = start("secondary").await;
    let c = client(false);
    let multipart =
        "--xx\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--xx\r\n\
        Content-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\n\
        Content-Type: application/octet-stream\r\n\r\nhello\r\n--xx--\r\n";
    let ct = [("content-type", "multipart/form-data; boundary=xx")];
    let (_, body) = send(&c, &mock, "POST", "/v1/files", &ct, multipart).await;
    let file: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(file["id"].as_str().unwrap().starts_with("file-"));
    assert_eq!(file["filename"], "a.jsonl");
    assert_eq!(file["purpose"], "batch");
    assert_eq!(file["bytes"], multipart.len());
    let id = file["id"].as_str().unwrap();
    let (_, list) = send_json(&c, &mock, "GET", "/v1/files", "").await;
    assert_eq!(list["data"][0]["id"], id);
    assert_eq!(list["has_more"], false);
    let (_, got) = send_json(&c, &mock, "GET", &format!("/v1/files/{id}"), "").await;
    assert_eq!(got["filename"], "a.jsonl");
    let (parts, content) = send(
        &c,
        &mock,
        "GET",
        &format!("/v1/files/{id}/content"),
        &[],
        "",
    )
    .await;
    assert_eq!(parts.headers["content-type"], "application/octet-stream");
    assert!(!content.is_empty());
    let (_, del) = send_json(&c, &mock, "DELETE", &format!("/v1/files/{id}"), "").await;
    assert_eq!(del, json!({"id": id, "object": "file", "deleted": true}));
    let (_, list) = send_json(&c, &mock, "GET", "/v1/files", "").await;
    assert_eq!(list["data"], json!([]));
}
