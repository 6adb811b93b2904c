//! Token accounting (issue #4): `switchyard_tokens_total` equals the usage the upstream
//! reported (JSON `usage`, the last chat chunk's `usage`, `response.completed`), streams are
//! counted by outcome with their time to first token, a stream cut mid-way counts only the
//! usage that arrived, and `inject_include_usage` asks streaming chat completions for usage
//! without touching any other byte.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::pool::value;
use common::{full, metric, raw_upstream, sse_events, Harness, Next, Scrape, SOON};
use http::{Method, StatusCode};
use serde_json::{json, Value};

const CHAT: &str = "/v1/chat/completions";
const RESPONSES: &str = "/v1/responses";

fn tokens(scrape: &Scrape, route: &str, upstream: &str, kind: &str) -> f64 {
    value(
        scrape,
        &metric("switchyard_tokens_total")
            .label("route", route)
            .label("upstream", upstream)
            .label("kind", kind),
    )
}

fn streams(scrape: &Scrape, route: &str, upstream: &str, outcome: &str) -> f64 {
    value(
        scrape,
        &metric("switchyard_streams_total")
            .label("route", route)
            .label("upstream", upstream)
            .label("outcome", outcome),
    )
}

fn ttft_count(scrape: &Scrape, route: &str, upstream: &str) -> f64 {
    value(
        scrape,
        &metric("switchyard_time_to_first_token_seconds_count")
            .label("route", route)
            .label("upstream", upstream),
    )
}

/// Input, output, cached and reasoning tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Counts {
    input: f64,
    output: f64,
    cached: f64,
    reasoning: f64,
}

impl Counts {
    fn read(scrape: &Scrape, route: &str, upstream: &str) -> Counts {
        Counts {
            input: tokens(scrape, route, upstream, "input"),
            output: tokens(scrape, route, upstream, "output"),
            cached: tokens(scrape, route, upstream, "cached"),
            reasoning: tokens(scrape, route, upstream, "reasoning"),
        }
    }

    /// From a chat completion's `usage` (`prompt_tokens`, ...).
    fn chat(usage: &Value) -> Counts {
        let n = |p: &str| usage.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
        Counts {
            input: n("/prompt_tokens"),
            output: n("/completion_tokens"),
            cached: n("/prompt_tokens_details/cached_tokens"),
            reasoning: n("/completion_tokens_details/reasoning_tokens"),
        }
    }

    /// From a response's `usage` (`input_tokens`, ...).
    fn responses(usage: &Value) -> Counts {
        let n = |p: &str| usage.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
        Counts {
            input: n("/input_tokens"),
            output: n("/output_tokens"),
            cached: n("/input_tokens_details/cached_tokens"),
            reasoning: n("/output_tokens_details/reasoning_tokens"),
        }
    }

    fn add(self, o: Counts) -> Counts {
        Counts {
            input: self.input + o.input,
            output: self.output + o.output,
            cached: self.cached + o.cached,
            reasoning: self.reasoning + o.reasoning,
        }
    }
}

fn usage_object(v: &Value) -> &Value {
    let usage = &v["usage"];
    assert!(usage.is_object(), "no usage in {v}");
    usage
}

/// The `data:` JSON of each SSE event (`[DONE]` left out).
fn sse_data(body: &[u8]) -> Vec<Value> {
    sse_events(body)
        .iter()
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("bad SSE data {d:?}: {e}")))
        .collect()
}

fn chat_body(stream: bool, prompt: &str) -> Value {
    let mut v = json!({"model": "m", "messages": [{"role": "user", "content": prompt}]});
    if stream {
        v["stream"] = json!(true);
    }
    v
}

// ---------------------------------------------------------------------------------------
// 10. Usage as reported
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn chat_completion_tokens_match_the_reported_usage() {
    let h = Harness::start().await;
    let mut want = Counts::default();
    // Different prompt sizes and lengths, so that each count is distinct.
    for (prompt, chunks) in [
        ("hi", "5"),
        ("a much longer prompt than that", "12"),
        ("x", "1"),
    ] {
        let reply = h
            .post_json_with(
                CHAT,
                &[("x-mock-chunks", chunks)],
                chat_body(false, prompt).to_string(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.header("x-switchyard-upstream"), Some("primary"));
        want = want.add(Counts::chat(usage_object(&reply.json())));
    }
    assert!(want.input > 0.0 && want.output > 0.0, "{want:?}");
    let scrape = h
        .scrape_when(|s| Counts::read(s, CHAT, "primary") == want)
        .await;
    assert_eq!(
        Counts::read(&scrape, CHAT, "primary"),
        want,
        "\n{}",
        metric("switchyard_tokens_total").similar(&scrape)
    );
    // The mock reports zero cached and reasoning tokens.
    assert_eq!((want.cached, want.reasoning), (0.0, 0.0));
    // Not streams: no stream outcome, no time to first token.
    metric("switchyard_streams_total").assert_absent_or_zero(&scrape);
    metric("switchyard_time_to_first_token_seconds_count").assert_absent_or_zero(&scrape);
    metric("switchyard_tokens_total")
        .label("upstream", "secondary")
        .assert_absent_or_zero(&scrape);
    h.shutdown().await;
}

#[tokio::test]
async fn streamed_chat_tokens_come_from_the_final_chunk() {
    let h = Harness::start().await;
    let mut want = Counts::default();
    for chunks in ["3", "8"] {
        let mut body = chat_body(true, "tell me a story");
        body["stream_options"] = json!({"include_usage": true});
        let reply = h
            .post_json_with(CHAT, &[("x-mock-chunks", chunks)], body.to_string())
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.header("content-type"), Some("text/event-stream"));
        let chunks = sse_data(&reply.body);
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"], json!([]), "the usage chunk comes last");
        want = want.add(Counts::chat(usage_object(last)));
    }
    let scrape = h
        .scrape_when(|s| {
            Counts::read(s, CHAT, "primary") == want
                && streams(s, CHAT, "primary", "completed") == 2.0
        })
        .await;
    assert_eq!(
        Counts::read(&scrape, CHAT, "primary"),
        want,
        "\n{}",
        metric("switchyard_tokens_total").similar(&scrape)
    );
    assert_eq!(streams(&scrape, CHAT, "primary", "completed"), 2.0);
    assert_eq!(streams(&scrape, CHAT, "primary", "upstream_error"), 0.0);
    assert_eq!(streams(&scrape, CHAT, "primary", "client_closed"), 0.0);
    assert_eq!(ttft_count(&scrape, CHAT, "primary"), 2.0);

    // Without include_usage the stream reports no usage: nothing more is counted, but the
    // stream and its first token are.
    let reply = h.post_json(CHAT, &chat_body(true, "no usage please")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(sse_data(&reply.body)
        .iter()
        .all(|c| c.get("usage").is_none()));
    let scrape = h
        .scrape_when(|s| streams(s, CHAT, "primary", "completed") == 3.0)
        .await;
    assert_eq!(streams(&scrape, CHAT, "primary", "completed"), 3.0);
    assert_eq!(ttft_count(&scrape, CHAT, "primary"), 3.0);
    assert_eq!(Counts::read(&scrape, CHAT, "primary"), want);
    h.shutdown().await;
}

#[tokio::test]
async fn responses_tokens_streamed_and_not() {
    let h = Harness::start().await;
    // Plain (stored: stateful, "secondary").
    let reply = h
        .post_json_with(
            RESPONSES,
            &[("x-mock-chunks", "7")],
            json!({"model": "m", "input": "hello there"}).to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let upstream = reply.header("x-switchyard-upstream").unwrap().to_owned();
    assert_eq!(upstream, "secondary");
    let mut want = Counts::responses(usage_object(&reply.json()));

    // Streamed: the usage of `response.completed`.
    let reply = h
        .post_json_with(
            RESPONSES,
            &[("x-mock-chunks", "4")],
            json!({"model": "m", "input": "hello again, at more length", "stream": true})
                .to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.header("x-switchyard-upstream"),
        Some(upstream.as_str())
    );
    let events = sse_data(&reply.body);
    let created = &events[0];
    assert_eq!(created["type"], "response.created");
    assert!(created["response"]["usage"].is_null());
    let completed = events.last().unwrap();
    assert_eq!(completed["type"], "response.completed");
    want = want.add(Counts::responses(&completed["response"]["usage"]));

    let scrape = h
        .scrape_when(|s| {
            Counts::read(s, RESPONSES, &upstream) == want
                && streams(s, RESPONSES, &upstream, "completed") == 1.0
        })
        .await;
    assert_eq!(
        Counts::read(&scrape, RESPONSES, &upstream),
        want,
        "\n{}",
        metric("switchyard_tokens_total").similar(&scrape)
    );
    assert_eq!(streams(&scrape, RESPONSES, &upstream, "completed"), 1.0);
    assert_eq!(ttft_count(&scrape, RESPONSES, &upstream), 1.0);
    metric("switchyard_tokens_total")
        .label("route", CHAT)
        .assert_absent_or_zero(&scrape);
    h.shutdown().await;
}

/// `body` as an HTTP/1.1 response with `content-length`.
fn fixed_response(content_type: &str, body: &str) -> &'static [u8] {
    let text = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    Box::leak(text.into_bytes().into_boxed_slice())
}

#[tokio::test]
async fn cached_and_reasoning_tokens_are_counted() {
    let chat = json!({
        "id": "chatcmpl-raw1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52,
            "prompt_tokens_details": {"cached_tokens": 16, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 5, "audio_tokens": 0}
        }
    });
    let response = json!({
        "id": "resp_raw1", "object": "response", "status": "completed", "model": "m", "output": [],
        "usage": {
            "input_tokens": 30, "input_tokens_details": {"cached_tokens": 20},
            "output_tokens": 9, "output_tokens_details": {"reasoning_tokens": 4},
            "total_tokens": 39
        }
    });
    let primary = raw_upstream(fixed_response("application/json", &chat.to_string()), false).await;
    let secondary = raw_upstream(
        fixed_response("application/json", &response.to_string()),
        false,
    )
    .await;
    let h = Harness::with_config(&format!(
        "[upstreams.primary]\nurl = \"http://{primary}/v1\"\n[upstreams.secondary]\nurl = \"http://{secondary}/v1\""
    ))
    .await;
    for _ in 0..2 {
        let reply = h.post_json(CHAT, &chat_body(false, "hi")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    }
    let reply = h
        .post_json(RESPONSES, &json!({"model": "m", "input": "hi"}))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("x-switchyard-upstream"), Some("secondary"));

    let want_chat = Counts {
        input: 80.0,
        output: 24.0,
        cached: 32.0,
        reasoning: 10.0,
    };
    let want_responses = Counts {
        input: 30.0,
        output: 9.0,
        cached: 20.0,
        reasoning: 4.0,
    };
    let scrape = h
        .scrape_when(|s| {
            Counts::read(s, CHAT, "primary") == want_chat
                && Counts::read(s, RESPONSES, "secondary") == want_responses
        })
        .await;
    let similar = metric("switchyard_tokens_total").similar(&scrape);
    assert_eq!(
        Counts::read(&scrape, CHAT, "primary"),
        want_chat,
        "\n{similar}"
    );
    assert_eq!(
        Counts::read(&scrape, RESPONSES, "secondary"),
        want_responses,
        "\n{similar}"
    );
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 11. A stream cut mid-way
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_stream_cut_before_its_usage_counts_an_upstream_error_and_no_tokens() {
    // The mock has no "cut" control; holding the stream after its first event and then
    // stopping the mock ends the connection mid-body.
    let mut h = Harness::start().await;
    let mut body = chat_body(true, "hi");
    body["stream_options"] = json!({"include_usage": true});
    let req = h
        .client
        .request(Method::POST, CHAT)
        .header("content-type", "application/json")
        .header("x-mock-hold", "1")
        .body(full(body.to_string()))
        .unwrap();
    let mut resp = h.client.stream(req).await;
    assert_eq!(resp.status, StatusCode::OK);
    match resp.next(SOON).await {
        Next::Data(d) => assert!(String::from_utf8_lossy(&d).contains("chat.completion.chunk")),
        other => panic!("expected the first event, got {other:?}"),
    }
    h.stop_upstream("primary").await;
    let (_rest, ended) = resp.rest(SOON).await;
    assert!(
        ended.is_some(),
        "a stream cut upstream must not end cleanly for the client"
    );
    let scrape = h
        .scrape_when(|s| streams(s, CHAT, "primary", "upstream_error") == 1.0)
        .await;
    assert_eq!(
        streams(&scrape, CHAT, "primary", "upstream_error"),
        1.0,
        "\n{}",
        metric("switchyard_streams_total").similar(&scrape)
    );
    assert_eq!(streams(&scrape, CHAT, "primary", "completed"), 0.0);
    assert_eq!(streams(&scrape, CHAT, "primary", "client_closed"), 0.0);
    assert_eq!(
        Counts::read(&scrape, CHAT, "primary"),
        Counts::default(),
        "no usage arrived before the cut\n{}",
        metric("switchyard_tokens_total").similar(&scrape)
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_stream_cut_after_its_usage_counts_that_usage() {
    // A raw upstream: a chunked SSE chat stream whose usage chunk arrives, then the
    // connection closes without the final chunk (no `[DONE]`, no terminating chunk).
    let events = [
        r#"data: {"id":"chatcmpl-cut","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}"#,
        r#"data: {"id":"chatcmpl-cut","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"usage":null}"#,
        r#"data: {"id":"chatcmpl-cut","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18,"prompt_tokens_details":{"cached_tokens":3},"completion_tokens_details":{"reasoning_tokens":2}}}"#,
    ];
    let mut text = String::from(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
    );
    for e in events {
        let frame = format!("{e}\n\n");
        text.push_str(&format!("{:x}\r\n{frame}\r\n", frame.len()));
    }
    let raw: &'static [u8] = Box::leak(text.into_bytes().into_boxed_slice());
    let upstream = raw_upstream(raw, true).await;
    let h = Harness::with_config(&format!(
        "[upstreams.primary]\nurl = \"http://{upstream}/v1\""
    ))
    .await;
    let mut body = chat_body(true, "hi");
    body["stream_options"] = json!({"include_usage": true});
    let req = h
        .client
        .request(Method::POST, CHAT)
        .header("content-type", "application/json")
        .body(full(body.to_string()))
        .unwrap();
    let mut resp = h.client.stream(req).await;
    assert_eq!(resp.status, StatusCode::OK);
    let (got, ended) = resp.rest(SOON).await;
    assert!(
        String::from_utf8_lossy(&got).contains("\"completion_tokens\":7"),
        "the usage chunk was relayed: {}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        ended.is_some(),
        "the truncated stream ended cleanly for the client"
    );
    let want = Counts {
        input: 11.0,
        output: 7.0,
        cached: 3.0,
        reasoning: 2.0,
    };
    let scrape = h
        .scrape_when(|s| streams(s, CHAT, "primary", "upstream_error") == 1.0)
        .await;
    assert_eq!(
        streams(&scrape, CHAT, "primary", "upstream_error"),
        1.0,
        "\n{}",
        metric("switchyard_streams_total").similar(&scrape)
    );
    assert_eq!(streams(&scrape, CHAT, "primary", "completed"), 0.0);
    assert_eq!(
        Counts::read(&scrape, CHAT, "primary"),
        want,
        "the usage that arrived before the cut is counted\n{}",
        metric("switchyard_tokens_total").similar(&scrape)
    );
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 12. inject_include_usage
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn include_usage_is_injected_only_where_it_is_missing() {
    let h = Harness::with_config("[accounting]\ninject_include_usage = true").await;

    // A streaming chat completion without stream_options: asked for usage, nothing else
    // changed.
    let sent = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let reply = h.post_json_with(CHAT, &[], sent).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let got = h.primary.requests();
    assert_eq!(got.len(), 1);
    assert!(got[0].body_complete);
    let recorded = got[0].json().unwrap();
    assert_eq!(recorded["stream_options"]["include_usage"], json!(true));
    let expected = format!(
        "{},\"stream_options\":{{\"include_usage\":true}}}}",
        &sent[..sent.len() - 1]
    );
    assert_eq!(
        String::from_utf8_lossy(&got[0].body),
        expected,
        "only the stream_options member is added"
    );
    assert_eq!(
        got[0].header("content-length"),
        Some(expected.len().to_string().as_str())
    );
    let usage = sse_data(&reply.body)
        .into_iter()
        .rev()
        .find(|c| c["usage"].is_object())
        .expect("the upstream sent usage");
    let want = Counts::chat(&usage["usage"]);
    assert!(want.input > 0.0 && want.output > 0.0);
    let scrape = h
        .scrape_when(|s| Counts::read(s, CHAT, "primary") == want)
        .await;
    assert_eq!(
        Counts::read(&scrape, CHAT, "primary"),
        want,
        "\n{}",
        metric("switchyard_tokens_total").similar(&scrape)
    );

    // The client said no: left alone, byte for byte, and no usage to count.
    h.clear();
    let declined = r#"{"model":"m","stream":true,"stream_options":{"include_usage":false},"messages":[{"role":"user","content":"hi"}]}"#;
    let reply = h.post_json_with(CHAT, &[], declined).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(sse_data(&reply.body)
        .iter()
        .all(|c| !c["usage"].is_object()));
    let got = h.primary.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].body[..], declined.as_bytes());

    // Not streaming: byte-identical.
    h.clear();
    let plain = r#"{"model":"m", "messages":[{"role":"user","content":"hi"}] ,"stream":false}"#;
    let reply = h.post_json_with(CHAT, &[], plain).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let got = h.primary.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].body[..], plain.as_bytes());
    let want = want.add(Counts::chat(usage_object(&reply.json())));
    let scrape = h
        .scrape_when(|s| {
            Counts::read(s, CHAT, "primary") == want
                && streams(s, CHAT, "primary", "completed") == 2.0
        })
        .await;
    assert_eq!(Counts::read(&scrape, CHAT, "primary"), want);
    assert_eq!(streams(&scrape, CHAT, "primary", "completed"), 2.0);
    h.shutdown().await;
}

#[tokio::test]
async fn without_injection_a_streaming_chat_is_forwarded_as_is() {
    let h = Harness::start().await;
    let sent = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let reply = h.post_json_with(CHAT, &[], sent).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let got = h.primary.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].body[..], sent.as_bytes());
    let scrape = h
        .scrape_when(|s| streams(s, CHAT, "primary", "completed") == 1.0)
        .await;
    assert_eq!(streams(&scrape, CHAT, "primary", "completed"), 1.0);
    assert_eq!(Counts::read(&scrape, CHAT, "primary"), Counts::default());
    h.shutdown().await;
}
