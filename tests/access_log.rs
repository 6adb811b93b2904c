//! The record phase's access log: one line per request, written when the response ends,
//! with the decision, how the exchange ended and the provider's own request id.
//!
//! Each test runs on a current-thread runtime, so a thread-local `tracing` subscriber sees
//! every event the gateway emits from its tasks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::logs::Captured;
use common::{full, raw_upstream, Harness, Next, SOON};
use http::{Method, StatusCode};
use serde_json::json;

async fn harness() -> Harness {
    Harness::with_config(
        r#"
        [log]
        access_log = true
        [limits]
        max_body_bytes = "1 KiB"
        [timeouts]
        idle = "300ms"
        "#,
    )
    .await
}

fn chat(stream: bool) -> String {
    json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
        .to_string()
}

#[tokio::test]
async fn completed_exchanges_are_logged_with_their_decision() {
    let log = Captured::default();
    let _guard = log.install();
    let h = harness().await;

    let reply = h
        .post_json_with(
            "/v1/chat/completions",
            &[("x-request-id", "log-json")],
            chat(false),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let line = log.line("log-json").await;
    assert_eq!(line["method"], "POST");
    assert_eq!(line["route"], "/v1/chat/completions");
    assert_eq!(line["class"], "stateless");
    assert_eq!(line["rule"], "chat.stateless");
    assert_eq!(line["upstream"], "primary");
    assert_eq!(line["status"], 200);
    assert_eq!(line["outcome"], "completed", "{line}");
    assert_eq!(line["response_bytes"], reply.body.len());

    let reply = h
        .post_json_with(
            "/v1/chat/completions",
            &[("x-request-id", "log-sse")],
            chat(true),
        )
        .await;
    let line = log.line("log-sse").await;
    assert_eq!(line["outcome"], "completed", "{line}");
    assert_eq!(line["response_bytes"], reply.body.len());

    let reply = h
        .client
        .call(
            Method::GET,
            "/v1/responses/resp_1",
            &[("x-request-id", "log-stateful")],
            "",
        )
        .await;
    let line = log.line("log-stateful").await;
    assert_eq!(line["route"], "/v1/responses/{id}");
    assert_eq!(line["class"], "stateful");
    assert_eq!(line["rule"], "responses.stored_object");
    assert_eq!(line["upstream"], "secondary");
    assert_eq!(line["outcome"], "completed", "{line}");
    assert_eq!(line["response_bytes"], reply.body.len());
    h.shutdown().await;
}

#[tokio::test]
async fn bodiless_answers_are_logged_as_completed() {
    let log = Captured::default();
    let _guard = log.install();
    let h = harness().await;
    let reply = h
        .client
        .call(
            Method::HEAD,
            "/v1/models",
            &[("x-request-id", "log-head")],
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = h
        .client
        .call(
            Method::DELETE,
            "/v1/files/file-1",
            &[("x-request-id", "log-204"), ("x-mock-status", "204")],
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let head = log.line("log-head").await;
    let no_content = log.line("log-204").await;
    assert_eq!(head["status"], 200);
    assert_eq!(no_content["status"], 204);
    // Both reached the client whole; neither client went away.
    let outcomes = (head["outcome"].clone(), no_content["outcome"].clone());
    assert_eq!(
        outcomes,
        (json!("completed"), json!("completed")),
        "(HEAD, 204) outcomes; lines: {head} {no_content}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn refusals_cancellations_and_timeouts_are_logged_as_such() {
    let log = Captured::default();
    let _guard = log.install();
    let h = harness().await;

    let reply = h
        .post_json_with(
            "/v1/responses",
            &[("x-request-id", "log-413")],
            vec![b' '; 4096],
        )
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let line = log.line("log-413").await;
    assert_eq!(line["outcome"], "body_too_large");
    assert_eq!(line["class"], "none");
    assert_eq!(line["upstream"], "none");
    assert_eq!(line["status"], 413);
    assert_eq!(line["route"], "/v1/responses");

    // The client leaves a held stream.
    let req = h
        .client
        .request(Method::POST, "/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-request-id", "log-gone")
        .header("x-mock-hold", "1")
        .body(full(chat(true)))
        .unwrap();
    let mut resp = h.client.stream(req).await;
    assert!(matches!(resp.next(SOON).await, Next::Data(_)));
    drop(resp);
    let line = log.line("log-gone").await;
    assert_eq!(line["outcome"], "client_closed", "{line}");
    assert_eq!(line["status"], 200);

    // The upstream stalls past the idle timeout.
    let req = h
        .client
        .request(Method::POST, "/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-request-id", "log-idle")
        .header("x-mock-chunk-delay-ms", "3000")
        .body(full(chat(true)))
        .unwrap();
    let mut resp = h.client.stream(req).await;
    let (_, error) = resp.rest(Duration::from_secs(5)).await;
    assert!(error.is_some());
    let line = log.line("log-idle").await;
    assert_eq!(line["outcome"], "idle_timeout", "{line}");
    h.shutdown().await;
}

/// A fixed 200 answer carrying these provider id headers.
macro_rules! answer_with {
    ($($header:literal),*) => {
        concat!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n",
            $($header, "\r\n",)*
            "content-length: 2\r\n\r\n{}"
        ).as_bytes()
    };
}

async fn ids_harness(primary: std::net::SocketAddr, secondary: std::net::SocketAddr) -> Harness {
    Harness::builder()
        .config(&format!(
            r#"
            [log]
            access_log = true
            [upstreams.primary]
            kind = "azure_openai"
            url = "http://{primary}/openai/v1"
            api_key = "${{KEY}}"
            [upstreams.secondary]
            url = "http://{secondary}/v1"
            "#
        ))
        .env("KEY", "k")
        .start()
        .await
}

#[tokio::test]
async fn provider_request_ids_are_logged_as_upstream_request_id() {
    let log = Captured::default();
    let _guard = log.install();
    // The mock cannot be told to add response headers, so fixed raw answers stand in for
    // Azure (behind API Management, and direct), Amazon and OpenAI.
    let apim = raw_upstream(
        answer_with!(
            "x-request-id: req_openai_1",
            "x-ms-request-id: ms-1",
            "apim-request-id: apim-1"
        ),
        false,
    )
    .await;
    let amazon = raw_upstream(
        answer_with!("x-request-id: req_openai_2", "x-amzn-RequestId: amzn-2"),
        false,
    )
    .await;
    let azure = raw_upstream(answer_with!("x-ms-request-id: ms-3"), false).await;
    let openai = raw_upstream(answer_with!("x-request-id: req_openai_4"), false).await;

    // GET /v1/models is stateless (primary), GET /v1/files stateful (secondary).
    let cases = [
        (apim, amazon, "/v1/models", "ids-apim", "apim-1"),
        (apim, amazon, "/v1/files", "ids-amzn", "amzn-2"),
        (azure, openai, "/v1/models", "ids-ms", "ms-3"),
        (azure, openai, "/v1/files", "ids-openai", "req_openai_4"),
    ];
    for pair in cases.chunks(2) {
        let h = ids_harness(pair[0].0, pair[0].1).await;
        for &(_, _, path, id, want) in pair {
            let reply = h
                .client
                .call(Method::GET, path, &[("x-request-id", id)], "")
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{id}: {}", reply.text());
            assert_eq!(
                reply.header("x-request-id"),
                Some(id),
                "the client's id comes back"
            );
            let line = log.line(id).await;
            assert_eq!(line["upstream_request_id"], want, "{id}: {line}");
            assert_eq!(line["outcome"], "completed", "{line}");
        }
        h.shutdown().await;
    }

    // The recording mock echoes the gateway's x-request-id: it is logged as the provider's.
    let h = Harness::with_config("[log]\naccess_log = true\n").await;
    let reply = h
        .client
        .call(
            Method::GET,
            "/v1/models",
            &[("x-request-id", "ids-mock")],
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let line = log.line("ids-mock").await;
    assert_eq!(line["upstream_request_id"], "ids-mock", "{line}");

    // A refusal never reached a provider: no id.
    let reply = h
        .post_json_with(
            "/v1/chat/completions",
            &[("x-request-id", "ids-refused")],
            "{",
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let line = log.line("ids-refused").await;
    assert_eq!(line["upstream_request_id"], "-", "{line}");
    h.shutdown().await;
}
