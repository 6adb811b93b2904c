//! Fail closed: when the upstream of a class is down, slow, broken or answers with an error,
//! the client gets a gateway error (or the upstream's own answer) and the other upstream
//! sees nothing. Requests refused before routing are in `refusals.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{dead_addr, metric, raw_upstream, summary, Harness};
use http::{Method, StatusCode};
use serde_json::json;

fn chat() -> serde_json::Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn primary_down_stateless_gets_502_and_secondary_sees_nothing() {
    let dead = dead_addr().await;
    let h = Harness::with_config(&format!(
        "[upstreams.primary]\nurl = \"http://{dead}/v1\"\n"
    ))
    .await;
    let reply = h.post_json("/v1/chat/completions", &chat()).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    assert_eq!(reply.error_code(), "upstream_unavailable");
    let msg = reply.error_message();
    assert!(
        msg.contains("primary") && msg.contains("was not sent to any other upstream"),
        "the message names the upstream and says nothing else was tried: {msg}"
    );
    assert_eq!(reply.json()["error"]["type"], "gateway_error");
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("x-switchyard-class"), Some("stateless"));
    assert_eq!(reply.header("x-switchyard-upstream"), Some("primary"));
    assert!(reply.header("x-request-id").is_some());
    assert_eq!(
        h.secondary.request_count(),
        0,
        "never fail over: {:?}",
        summary(&h.secondary.requests())
    );

    // A stateful call still works: only the dead class is affected.
    let ok = h.get("/v1/responses/resp_1").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.header("x-mock-provider"), Some("secondary"));
    h.shutdown().await;
}

#[tokio::test]
async fn secondary_down_stateful_gets_502_and_primary_sees_nothing() {
    let dead = dead_addr().await;
    let h = Harness::with_config(&format!(
        "[upstreams.secondary]\nurl = \"http://{dead}/v1\"\n"
    ))
    .await;
    let cases = [
        (
            Method::POST,
            "/v1/responses",
            json!({"model": "m", "input": "x"}).to_string(),
        ),
        (Method::GET, "/v1/responses/resp_1", String::new()),
        (Method::POST, "/v1/files", "file bytes".to_owned()),
    ];
    for (method, path, body) in cases {
        let reply = h
            .client
            .call(
                method.clone(),
                path,
                &[("content-type", "application/json")],
                body,
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_GATEWAY,
            "{method} {path}: {}",
            reply.text()
        );
        assert_eq!(
            reply.error_code(),
            "upstream_unavailable",
            "{method} {path}"
        );
        assert!(
            reply.error_message().contains("secondary"),
            "{}",
            reply.error_message()
        );
        assert_eq!(reply.header("x-switchyard-class"), Some("stateful"));
        assert_eq!(reply.header("x-switchyard-upstream"), Some("secondary"));
    }
    assert_eq!(
        h.primary.request_count(),
        0,
        "never fail over: {:?}",
        summary(&h.primary.requests())
    );
    h.shutdown().await;
}

#[tokio::test]
async fn first_byte_timeout_is_504_without_failover() {
    let h = Harness::with_config(
        r#"
        [timeouts]
        first_byte = "300ms"
        "#,
    )
    .await;
    let started = tokio::time::Instant::now();
    let reply = h
        .post_json_with(
            "/v1/chat/completions",
            &[("x-mock-delay-ms", "3000")],
            chat().to_string(),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        reply.text()
    );
    assert_eq!(reply.error_code(), "timeout");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "the gateway gave up after first_byte, not after the upstream answered: {:?}",
        started.elapsed()
    );
    assert_eq!(h.primary.request_count(), 1, "sent once, not retried");
    assert_eq!(h.secondary.request_count(), 0, "never fail over");

    // The stateful side, with the same delay: primary untouched.
    h.clear();
    let reply = h
        .client
        .call(
            Method::GET,
            "/v1/responses/resp_1",
            &[("x-mock-delay-ms", "3000")],
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(reply.header("x-switchyard-upstream"), Some("secondary"));
    assert_eq!(h.secondary.request_count(), 1);
    assert_eq!(h.primary.request_count(), 0);

    // Under the limit: answered.
    let reply = h
        .post_json_with(
            "/v1/chat/completions",
            &[("x-mock-delay-ms", "50")],
            chat().to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);

    let s = h
        .scrape_when(|s| metric("switchyard_requests_total").sum_in(s) == Some(3.0))
        .await;
    for up in ["primary", "secondary"] {
        metric("switchyard_upstream_errors_total")
            .label("upstream", up)
            .label("kind", "first_byte_timeout")
            .assert_value(&s, 1.0);
    }
    metric("switchyard_rejections_total")
        .label("reason", "timeout")
        .assert_value(&s, 2.0);
    metric("switchyard_requests_total")
        .label("route", "/v1/chat/completions")
        .label("class", "stateless")
        .label("upstream", "primary")
        .label("status", "504")
        .assert_value(&s, 1.0);
    h.shutdown().await;
}

#[tokio::test]
async fn upstream_errors_are_relayed_not_retried() {
    let h = Harness::start().await;
    let reply = h
        .post_json_with(
            "/v1/chat/completions",
            &[("x-mock-status", "500")],
            chat().to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.header("x-mock-provider"), Some("primary"));
    assert_eq!(reply.header("x-switchyard-upstream"), Some("primary"));
    let body = reply.json();
    assert_eq!(
        body["error"]["code"], "mock",
        "the upstream's own body: {body}"
    );
    assert_eq!(body["error"]["type"], "mock_error");
    assert_eq!(h.primary.request_count(), 1, "not retried");
    assert_eq!(h.secondary.request_count(), 0, "not failed over");

    let reply = h
        .client
        .call(
            Method::GET,
            "/v1/responses/resp_1",
            &[("x-mock-status", "503")],
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.header("x-mock-provider"), Some("secondary"));
    assert_eq!(reply.json()["error"]["code"], "mock");
    assert_eq!(h.secondary.request_count(), 1, "not retried");
    assert_eq!(h.primary.request_count(), 1, "not failed over");

    // A 404 from the upstream is relayed too.
    let reply = h
        .client
        .call(Method::PATCH, "/v1/files/file-1/nope", &[], "")
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.header("x-mock-provider"), Some("secondary"));

    // So is a bodiless 204.
    let reply = h
        .client
        .call(
            Method::DELETE,
            "/v1/files/file-1",
            &[("x-mock-status", "204")],
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.body.is_empty());
    assert_eq!(h.primary.request_count(), 1, "still only the one chat call");
    h.shutdown().await;
}

#[tokio::test]
async fn an_upstream_that_does_not_speak_http_gets_502_upstream_protocol() {
    let garbage = raw_upstream(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", true).await;
    let silent = raw_upstream(b"", true).await;
    let h = Harness::with_config(&format!(
        "[upstreams.primary]\nurl = \"http://{garbage}/v1\"\n\
         [upstreams.secondary]\nurl = \"http://{silent}/v1\"\n"
    ))
    .await;
    let reply = h.post_json("/v1/chat/completions", &chat()).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    assert_eq!(reply.error_code(), "upstream_protocol");
    assert!(
        reply.error_message().contains("primary"),
        "{}",
        reply.error_message()
    );
    let reply = h.get("/v1/responses/resp_1").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    assert_eq!(reply.error_code(), "upstream_protocol");
    assert_eq!(reply.header("x-switchyard-upstream"), Some("secondary"));
    let s = h
        .scrape_when(|s| metric("switchyard_requests_total").sum_in(s) == Some(2.0))
        .await;
    for up in ["primary", "secondary"] {
        metric("switchyard_upstream_errors_total")
            .label("upstream", up)
            .label("kind", "protocol")
            .assert_value(&s, 1.0);
    }
    metric("switchyard_rejections_total")
        .label("reason", "upstream_protocol")
        .assert_value(&s, 2.0);
    h.shutdown().await;
}

/// An upstream response head is read into a fixed 32 KiB buffer (nginx's `proxy_buffer_size`
/// is 4 or 8 KiB): a 24 KiB head is relayed whole, a 40 KiB one is a clean 502, counted as a
/// protocol error, never a hang or a truncated head.
#[tokio::test]
async fn an_upstream_response_head_larger_than_the_read_buffer_gets_502() {
    fn answer(header_bytes: usize) -> &'static [u8] {
        let value = "v".repeat(header_bytes);
        let text = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-big: {value}\r\n\
             content-length: 2\r\n\r\n{{}}"
        );
        Box::leak(text.into_bytes().into_boxed_slice())
    }
    let fits = raw_upstream(answer(24 * 1024), false).await;
    let too_big = raw_upstream(answer(40 * 1024), false).await;
    let h = Harness::with_config(&format!(
        "[upstreams.primary]\nurl = \"http://{fits}/v1\"\n\
         [upstreams.secondary]\nurl = \"http://{too_big}/v1\"\n"
    ))
    .await;
    let reply = h.post_json("/v1/chat/completions", &chat()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("x-big").map(str::len), Some(24 * 1024));
    let reply = h.get("/v1/responses/resp_1").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    assert_eq!(reply.error_code(), "upstream_protocol");
    let s = h
        .scrape_when(|s| metric("switchyard_requests_total").sum_in(s) == Some(2.0))
        .await;
    metric("switchyard_upstream_errors_total")
        .label("upstream", "secondary")
        .label("kind", "protocol")
        .assert_value(&s, 1.0);
    h.shutdown().await;
}
