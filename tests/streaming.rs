//! SSE through the gateway: no buffering, cancellation reaches the upstream, complete
//! streams arrive whole, and a stalled stream is cut by the idle timeout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{
    eventually, full, metric, raw_upstream, sse_events, Harness, Next, CALL_TIMEOUT, SOON,
};
use http::{Method, StatusCode};
use serde_json::json;

fn chat_stream() -> String {
    json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]})
        .to_string()
}

#[tokio::test]
async fn first_event_arrives_while_upstream_holds_and_cancellation_propagates() {
    let h = Harness::start().await;
    let req = h
        .client
        .request(Method::POST, "/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-mock-hold", "1")
        .body(full(chat_stream()))
        .unwrap();
    let mut resp = h.client.stream(req).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    assert_eq!(resp.header("x-switchyard-class"), Some("stateless"));

    // The first event arrives although the upstream has not finished its body.
    let first = match resp.next(SOON).await {
        Next::Data(d) => d,
        other => panic!("expected the first SSE event while the upstream holds, got {other:?}"),
    };
    let text = String::from_utf8_lossy(&first);
    assert!(
        text.starts_with("data: {") && text.contains("chat.completion.chunk"),
        "first event: {text:?}"
    );
    let held = h.primary.requests();
    assert_eq!(held.len(), 1);
    assert!(
        !held[0].finished,
        "the upstream is still holding its stream open while the client reads"
    );
    // Nothing more comes: the upstream holds.
    assert!(
        matches!(resp.next(Duration::from_millis(200)).await, Next::TimedOut),
        "no further frame while the upstream holds"
    );

    // The client goes away; the gateway must drop its upstream exchange.
    drop(resp);
    let after = h
        .primary
        .wait_until(SOON, |reqs| reqs.first().is_some_and(|r| r.finished))
        .await;
    assert!(
        after[0].finished,
        "the upstream exchange did not end within {SOON:?} after the client left"
    );
    assert!(
        !after[0].completed,
        "the upstream stream was cut, not completed"
    );
    assert_eq!(h.secondary.request_count(), 0);

    // The gateway counts the request and frees its in-flight slot.
    let freed = eventually(SOON, || async {
        let s = h.scrape().await;
        metric("switchyard_requests_in_flight")
            .label("upstream", "primary")
            .sum_in(&s)
            == Some(0.0)
            && metric("switchyard_requests_total")
                .label("route", "/v1/chat/completions")
                .sum_in(&s)
                == Some(1.0)
    })
    .await;
    let s = h.scrape().await;
    assert!(
        freed,
        "in-flight not back to 0 or request not counted:\n{}\n{}",
        metric("switchyard_requests_in_flight").similar(&s),
        metric("switchyard_requests_total").similar(&s)
    );
    h.shutdown().await;
}

#[tokio::test]
async fn stateful_stream_hold_and_cancel() {
    let h = Harness::start().await;
    let body = json!({"model": "m", "input": "hi", "stream": true}).to_string();
    let req = h
        .client
        .request(Method::POST, "/v1/responses")
        .header("content-type", "application/json")
        .header("x-mock-hold", "1")
        .body(full(body))
        .unwrap();
    let mut resp = h.client.stream(req).await;
    assert_eq!(resp.header("x-switchyard-upstream"), Some("secondary"));
    match resp.next(SOON).await {
        Next::Data(d) => assert!(
            String::from_utf8_lossy(&d).starts_with("event: response.created"),
            "{d:?}"
        ),
        other => panic!("expected response.created, got {other:?}"),
    }
    drop(resp);
    let after = h
        .secondary
        .wait_until(SOON, |reqs| reqs.first().is_some_and(|r| r.finished))
        .await;
    assert!(after[0].finished && !after[0].completed, "{:?}", after[0]);
    assert_eq!(h.primary.request_count(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn full_chat_stream_arrives_complete() {
    let h = Harness::start().await;
    let req = h
        .client
        .request(Method::POST, "/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-mock-chunks", "20")
        .body(full(
            json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "hi"}]})
            .to_string(),
        ))
        .unwrap();
    let mut resp = h.client.stream(req).await;
    assert_eq!(resp.status, StatusCode::OK);
    let (bytes, error) = resp.rest(CALL_TIMEOUT).await;
    assert_eq!(error, None, "the stream ended cleanly");
    let events = sse_events(&bytes);
    // role + 20 tokens + finish + usage + [DONE]
    assert_eq!(events.len(), 24, "events: {events:#?}");
    assert_eq!(events.last().map(String::as_str), Some("data: [DONE]"));
    let mut content = String::new();
    for e in &events[..events.len() - 1] {
        let v: serde_json::Value = serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap();
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            content.push_str(c);
        }
    }
    assert!(
        content.starts_with("Hello from mock provider primary"),
        "{content:?}"
    );
    let usage: serde_json::Value =
        serde_json::from_str(events[events.len() - 2].strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 20);

    let recorded = h
        .primary
        .wait_until(SOON, |r| r.first().is_some_and(|r| r.finished))
        .await;
    assert!(
        recorded[0].completed,
        "the upstream handed over its whole stream"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn responses_stream_ends_with_response_completed() {
    let h = Harness::start().await;
    let req = h
        .client
        .request(Method::POST, "/v1/responses")
        .header("content-type", "application/json")
        .header("x-mock-chunks", "7")
        .body(full(
            json!({"model": "gpt-4o", "input": "hi", "store": false, "stream": true}).to_string(),
        ))
        .unwrap();
    let mut resp = h.client.stream(req).await;
    assert_eq!(resp.header("x-switchyard-class"), Some("stateless"));
    let (bytes, error) = resp.rest(CALL_TIMEOUT).await;
    assert_eq!(error, None);
    let events = sse_events(&bytes);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e.lines().next().unwrap_or("").trim_start_matches("event: "))
        .collect();
    assert_eq!(kinds.first(), Some(&"response.created"));
    assert_eq!(kinds.last(), Some(&"response.completed"), "{kinds:?}");
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "response.output_text.delta")
            .count(),
        7
    );
    let last = events.last().unwrap();
    let data: serde_json::Value =
        serde_json::from_str(last.lines().nth(1).unwrap().strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(data["response"]["status"], "completed");
    assert_eq!(data["response"]["usage"]["output_tokens"], 7);
    h.shutdown().await;
}

#[tokio::test]
async fn idle_timeout_cuts_a_stalled_stream() {
    let h = Harness::with_config(
        r#"
        [timeouts]
        idle = "300ms"
        "#,
    )
    .await;
    let req = h
        .client
        .request(Method::POST, "/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-mock-chunk-delay-ms", "2000")
        .body(full(chat_stream()))
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut resp = h.client.stream(req).await;
    assert_eq!(resp.status, StatusCode::OK);
    let (bytes, error) = resp.rest(Duration::from_secs(10)).await;
    let elapsed = started.elapsed();
    let events = sse_events(&bytes);
    assert_eq!(
        events.len(),
        1,
        "only the first event came before the stall: {events:?}"
    );
    assert!(
        error.is_some(),
        "a cut stream must end with an error, not a clean end (got {} events)",
        events.len()
    );
    assert_ne!(
        error.as_deref(),
        Some("timed out"),
        "the gateway cut it, not our deadline"
    );
    assert!(
        elapsed < Duration::from_millis(1800),
        "cut by the 300 ms idle timeout, before the upstream's next event: {elapsed:?}"
    );

    let counted = eventually(SOON, || async {
        metric("switchyard_upstream_errors_total")
            .label("upstream", "primary")
            .label("kind", "idle_timeout")
            .sum_in(&h.scrape().await)
            == Some(1.0)
    })
    .await;
    let s = h.scrape().await;
    assert!(
        counted,
        "idle timeout not counted once:\n{}",
        metric("switchyard_upstream_errors_total").similar(&s)
    );
    metric("switchyard_requests_in_flight")
        .label("upstream", "primary")
        .assert_value(&s, 0.0);
    // The upstream exchange is dropped too.
    let rec = h
        .primary
        .wait_until(SOON, |r| r.first().is_some_and(|r| r.finished))
        .await;
    assert!(rec[0].finished && !rec[0].completed, "{:?}", rec[0]);
    h.shutdown().await;
}

#[tokio::test]
async fn slow_but_steady_stream_is_not_cut() {
    let h = Harness::with_config(
        r#"
        [timeouts]
        idle = "400ms"
        "#,
    )
    .await;
    let req = h
        .client
        .request(Method::POST, "/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-mock-chunk-delay-ms", "100")
        .header("x-mock-chunks", "8")
        .body(full(chat_stream()))
        .unwrap();
    let mut resp = h.client.stream(req).await;
    let (bytes, error) = resp.rest(CALL_TIMEOUT).await;
    assert_eq!(error, None, "each gap is below the idle timeout");
    let events = sse_events(&bytes);
    assert_eq!(events.len(), 11, "role + 8 + finish + [DONE]");
    assert_eq!(events.last().map(String::as_str), Some("data: [DONE]"));
    h.shutdown().await;
}

#[tokio::test]
async fn an_upstream_body_that_breaks_off_is_not_relayed_as_complete() {
    // A chunked SSE stream cut before its last chunk, and a body shorter than its length.
    let chunked = raw_upstream(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
          f\r\ndata: partial\n\n\r\n",
        true,
    )
    .await;
    let short = raw_upstream(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"partial\":",
        true,
    )
    .await;
    let h = Harness::with_config(&format!(
        "[upstreams.primary]\nurl = \"http://{chunked}/v1\"\n[upstreams.secondary]\nurl = \"http://{short}/v1\"\n"
    ))
    .await;

    let req = h
        .client
        .request(Method::POST, "/v1/chat/completions")
        .header("content-type", "application/json")
        .body(full(chat_stream()))
        .unwrap();
    let mut resp = h.client.stream(req).await;
    assert_eq!(resp.status, StatusCode::OK);
    let (bytes, error) = resp.rest(CALL_TIMEOUT).await;
    assert_eq!(bytes, b"data: partial\n\n");
    assert!(
        error.is_some() && error.as_deref() != Some("timed out"),
        "a cut chunked stream must end in an error for the client, got {error:?}"
    );

    let req = h
        .client
        .request(Method::GET, "/v1/responses/resp_1")
        .body(full(""))
        .unwrap();
    let mut resp = h.client.stream(req).await;
    let (bytes, error) = resp.rest(CALL_TIMEOUT).await;
    assert_eq!(bytes, b"{\"partial\":");
    assert!(
        error.is_some() && error.as_deref() != Some("timed out"),
        "a body shorter than its content-length must end in an error, got {error:?}"
    );

    let s = h
        .scrape_when(|s| {
            metric("switchyard_upstream_errors_total")
                .label("kind", "body_error")
                .sum_in(s)
                == Some(2.0)
        })
        .await;
    for up in ["primary", "secondary"] {
        metric("switchyard_upstream_errors_total")
            .label("upstream", up)
            .label("kind", "body_error")
            .assert_value(&s, 1.0);
        metric("switchyard_requests_in_flight")
            .label("upstream", up)
            .assert_value(&s, 0.0);
    }
    h.shutdown().await;
}

#[tokio::test]
async fn request_timeout_cuts_a_stream_that_keeps_going() {
    let h = Harness::with_config(
        r#"
        [timeouts]
        idle = "5s"
        request = "700ms"
        "#,
    )
    .await;
    let req = h
        .client
        .request(Method::POST, "/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-mock-chunk-delay-ms", "100")
        .header("x-mock-chunks", "40")
        .body(full(chat_stream()))
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut resp = h.client.stream(req).await;
    let (bytes, error) = resp.rest(Duration::from_secs(10)).await;
    let elapsed = started.elapsed();
    let events = sse_events(&bytes);
    assert!(
        error.is_some() && error.as_deref() != Some("timed out"),
        "cut by the gateway: {error:?}"
    );
    assert!(
        (3..40).contains(&events.len()),
        "some events came through before the deadline: {}",
        events.len()
    );
    assert!(
        elapsed >= Duration::from_millis(600) && elapsed < Duration::from_millis(2500),
        "{elapsed:?}"
    );
    let s = h
        .scrape_when(|s| {
            metric("switchyard_upstream_errors_total")
                .label("kind", "request_timeout")
                .sum_in(s)
                == Some(1.0)
        })
        .await;
    metric("switchyard_upstream_errors_total")
        .label("upstream", "primary")
        .label("kind", "request_timeout")
        .assert_value(&s, 1.0);
    metric("switchyard_upstream_errors_total")
        .label("kind", "idle_timeout")
        .assert_value(&s, 0.0);
    h.shutdown().await;
}
