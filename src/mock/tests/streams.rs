//! SSE streams (chat completions, responses) and embeddings.

use serde_json::json;

use super::*;
use crate::mock::openai::base64_encode;

const CHAT_STREAM: &str = r#"{"model":"gpt-s","stream":true,"messages":[]}"#;

#[tokio::test]
async fn chat_stream_without_usage() {
    let mock = start("primary").await;
    let (parts, body) = send(
        &client(false),
        &mock,
        "POST",
        "/v1/chat/completions",
        &[],
        CHAT_STREAM,
    )
    .await;
    assert_eq!(parts.headers["content-type"], "text/event-stream");
    assert_eq!(parts.headers["cache-control"], "no-cache");
    let events = sse_events(&body);
    assert_eq!(events.len(), 1 + 5 + 1 + 1);
    assert_eq!(events.last().unwrap(), "data: [DONE]");
    let chunks: Vec<_> = events[..events.len() - 1]
        .iter()
        .map(|e| event_data(e))
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks[1..6]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Hello from mock provider primary");
    assert_eq!(chunks[6]["choices"][0]["finish_reason"], "stop");
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "gpt-s");
        assert_eq!(chunk["id"], chunks[0]["id"]);
        assert!(chunk.get("usage").is_none());
    }
    let reqs = mock.wait_until(WAIT, |r| r[0].finished).await;
    assert!(reqs[0].completed);
}

#[tokio::test]
async fn chat_stream_with_usage_and_chunk_count() {
    let mock = start("primary").await;
    let req = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
    let (_, body) = send(
        &client(true),
        &mock,
        "POST",
        "/openai/v1/chat/completions",
        &[("x-mock-chunks", "3")],
        req,
    )
    .await;
    let events = sse_events(&body);
    assert_eq!(events.len(), 1 + 3 + 1 + 1 + 1);
    assert_eq!(events.last().unwrap(), "data: [DONE]");
    let usage = event_data(&events[events.len() - 2]);
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 3);
    let prompt = usage["usage"]["prompt_tokens"].as_u64().unwrap();
    assert_eq!(usage["usage"]["total_tokens"], prompt + 3);
    for event in &events[..events.len() - 2] {
        assert!(event_data(event)["usage"].is_null());
    }
}

#[tokio::test]
async fn chunk_count_is_capped() {
    let mock = start("primary").await;
    let (_, body) = send(
        &client(false),
        &mock,
        "POST",
        "/v1/chat/completions",
        &[("x-mock-chunks", "999999")],
        CHAT_STREAM,
    )
    .await;
    assert_eq!(sse_events(&body).len(), 10_000 + 3);
}

#[tokio::test]
async fn each_event_is_its_own_frame() {
    for h2 in [false, true] {
        let mock = start("primary").await;
        let resp = send_raw(
            &client(h2),
            &mock,
            "POST",
            "/v1/chat/completions",
            &[("x-mock-chunk-delay-ms", "5")],
            CHAT_STREAM,
        )
        .await;
        let mut body = resp.into_body();
        let mut frames = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                frames.push(data);
            }
        }
        assert_eq!(frames.len(), 8, "h2={h2}");
        for frame in &frames {
            assert!(frame.starts_with(b"data: ") && frame.ends_with(b"\n\n"));
            assert_eq!(sse_events(frame).len(), 1);
        }
    }
}

#[tokio::test]
async fn responses_stream_event_sequence() {
    let mock = start("secondary").await;
    let req = r#"{"model":"m","stream":true,"input":"hi","store":false}"#;
    let (parts, body) = send(&client(false), &mock, "POST", "/v1/responses", &[], req).await;
    assert_eq!(parts.headers["content-type"], "text/event-stream");
    let events = sse_events(&body);
    let mut names = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let name = event
            .lines()
            .next()
            .unwrap()
            .strip_prefix("event: ")
            .unwrap();
        let data = event_data(event);
        assert_eq!(data["type"], name);
        assert_eq!(data["sequence_number"], i);
        names.push(name.to_owned());
    }
    let mut want = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    want.extend(["response.output_text.delta"; 5]);
    want.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(names, want);
    let deltas: String = events[4..9]
        .iter()
        .map(|e| event_data(e)["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(deltas, "Hello from mock provider secondary");
    assert_eq!(event_data(&events[9])["text"], deltas.as_str());
    let created = event_data(&events[0]);
    assert_eq!(created["response"]["status"], "in_progress");
    assert!(created["response"]["usage"].is_null());
    let done = event_data(events.last().unwrap());
    assert_eq!(done["response"]["status"], "completed");
    assert_eq!(done["response"]["id"], created["response"]["id"]);
    assert_eq!(done["response"]["store"], false);
    assert_eq!(done["response"]["usage"]["output_tokens"], 5);
    assert_eq!(
        done["response"]["output"][0]["content"][0]["text"],
        deltas.as_str()
    );
}

#[tokio::test]
async fn embeddings_float_and_base64() {
    let mock = start("primary").await;
    let c = client(false);
    let (_, v) = send_json(
        &c,
        &mock,
        "POST",
        "/v1/embeddings",
        r#"{"model":"e","input":["a","b"]}"#,
    )
    .await;
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "e");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["index"], 1);
    let floats: Vec<f32> = v["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(floats.len(), 8);
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() >= 1);

    let (_, b) = send_json(
        &c,
        &mock,
        "POST",
        "/v1/embeddings",
        r#"{"input":"a","encoding_format":"base64"}"#,
    )
    .await;
    assert_eq!(b["data"].as_array().unwrap().len(), 1);
    let bytes: Vec<u8> = floats.iter().flat_map(|f| f.to_le_bytes()).collect();
    assert_eq!(b["data"][0]["embedding"], base64_encode(&bytes).as_str());
    assert_eq!(b["data"][0]["embedding"].as_str().unwrap().len(), 44);

    let (_, t) = send_json(
        &c,
        &mock,
        "POST",
        "/v1/embeddings",
        r#"{"input":[1,2,3],"dimensions":3}"#,
    )
    .await;
    assert_eq!(t["data"].as_array().unwrap().len(), 1);
    assert_eq!(t["data"][0]["embedding"].as_array().unwrap().len(), 3);
}

#[test]
fn base64_matches_rfc4648_vectors() {
    let cases = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];
    for (input, want) in cases {
        assert_eq!(base64_encode(input.as_bytes()), want);
    }
    assert_eq!(base64_encode(&[0xff, 0xfe, 0xfd]), "//79");
}
