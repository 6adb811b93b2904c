//! The record phase's access log: one line per request, written when the response ends,
//! with the decision and how the exchange ended.
//!
//! Each test runs on a current-thread runtime, so a thread-local `tracing` subscriber sees
//! every event the gateway emits from its tasks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, full, Harness, Next, SOON};
use http::{Method, StatusCode};
use serde_json::{json, Value};

/// Captured JSON log lines.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Install a JSON subscriber for this thread; keep the guard alive for the test.
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let sink = self.0.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "switchyard::access=info",
            ))
            .with_writer(move || CaptureWriter(sink.clone()))
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    /// Every access-log line so far.
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "switchyard::access")
            .collect()
    }

    /// The line of the request with this id, waiting for it up to [`SOON`].
    async fn line(&self, request_id: &str) -> Value {
        let found = eventually(SOON, || async {
            self.lines().iter().any(|l| l["request_id"] == request_id)
        })
        .await;
        let lines = self.lines();
        assert!(
            found,
            "no access-log line for {request_id}; lines: {lines:#?}"
        );
        let mine: Vec<&Value> = lines
            .iter()
            .filter(|l| l["request_id"] == request_id)
            .collect();
        assert_eq!(mine.len(), 1, "exactly one line per request: {mine:#?}");
        mine[0].clone()
    }
}

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
