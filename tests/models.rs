//! Model aliasing (`models = { "client-name" = "provider-name" }` on an upstream), end to
//! end: only the top-level `model` token of a JSON body changes, every other byte arrives as
//! sent with a `content-length` that matches; bodies the gateway cannot or must not rename go
//! byte-identical; an ambiguous `model` is refused before any upstream; aliases belong to the
//! upstream the class chose; streams, large bodies and Azure deployments still work.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::{chunked, full, sse_events, summary, Harness, CALL_TIMEOUT};
use http::{Method, StatusCode};
use serde_json::Value;
use switchyard::mock::RecordedRequest;

/// Primary renames `alias` and `café`; secondary renames `stateful-alias`.
async fn harness() -> Harness {
    Harness::with_config(
        r#"
        [upstreams.primary]
        models = { "alias" = "provider-model-1", "café" = "cafe-prod" }
        [upstreams.secondary]
        models = { "stateful-alias" = "secondary-model" }
        "#,
    )
    .await
}

/// The one request `upstream` recorded, and that the other saw nothing.
#[track_caller]
fn only_request(h: &Harness, upstream: &str, context: &str) -> RecordedRequest {
    let other = if upstream == "primary" {
        "secondary"
    } else {
        "primary"
    };
    let leaked = h.mock(other).requests();
    assert!(
        leaked.is_empty(),
        "{context}: {other} must see nothing, saw {:?}",
        summary(&leaked)
    );
    let seen = h.mock(upstream).requests();
    assert_eq!(
        seen.len(),
        1,
        "{context}: {upstream} saw {:?}",
        summary(&seen)
    );
    assert!(seen[0].body_complete, "{context}: the body arrived whole");
    seen[0].clone()
}

/// The body arrived exactly as `want`, with a `content-length` equal to its length and no
/// `transfer-encoding`.
#[track_caller]
fn assert_body(req: &RecordedRequest, want: &[u8], context: &str) {
    assert!(
        req.body == want,
        "{context}: upstream body differs ({} bytes, want {}):\n  got  {}\n  want {}",
        req.body.len(),
        want.len(),
        preview(&req.body),
        preview(want)
    );
    assert_eq!(
        req.header("content-length"),
        Some(want.len().to_string().as_str()),
        "{context}: content-length must be the length of the body sent"
    );
    assert_eq!(req.header("transfer-encoding"), None, "{context}");
}

/// The start of a body, for failure messages.
fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.chars().take(300).collect()
}

/// A body with everything a careless rewrite would disturb: odd whitespace, key order,
/// unicode escapes and raw UTF-8, `model` in strings and in nested objects.
const ODD_BODY: &str = "{ \"messages\" : [ {\"role\":\"user\",\"content\":\"caf\\u00e9 \u{2615} \\\"model\\\": \\\"alias\\\"\"},\n\
    \t{\"role\":\"assistant\", \"content\":\"ok\", \"model\":\"alias\"} ],\r\n\
    \t\"model\"  :\t\"alias\" ,\"temperature\":0.50, \"z\":{\"model\":\"alias\"},\"n\":1e0 }";
/// `ODD_BODY` with only the top-level `model` value changed.
const ODD_RENAMED: &str = "{ \"messages\" : [ {\"role\":\"user\",\"content\":\"caf\\u00e9 \u{2615} \\\"model\\\": \\\"alias\\\"\"},\n\
    \t{\"role\":\"assistant\", \"content\":\"ok\", \"model\":\"alias\"} ],\r\n\
    \t\"model\"  :\t\"provider-model-1\" ,\"temperature\":0.50, \"z\":{\"model\":\"alias\"},\"n\":1e0 }";

/// Routes that carry a `model`: one the classifier reads (chat), two it streams through
/// (the adapter reads those).
const MODEL_ROUTES: [&str; 3] = ["/v1/chat/completions", "/v1/embeddings", "/v1/completions"];

#[tokio::test]
async fn a_mapped_model_is_the_only_change() {
    let h = harness().await;
    let cases: [(&str, &str); 3] = [
        (ODD_BODY, ODD_RENAMED),
        (r#"{"model":"alias"}"#, r#"{"model":"provider-model-1"}"#),
        // The client's name is compared unescaped; the rest of the body keeps its escapes.
        (
            r#"{"input":"\u00e9\n","model":"caf\u00e9","user":"u"}"#,
            r#"{"input":"\u00e9\n","model":"cafe-prod","user":"u"}"#,
        ),
    ];
    assert_ne!(ODD_BODY, ODD_RENAMED);
    serde_json::from_str::<Value>(ODD_BODY).expect("the odd body is valid JSON");
    for path in MODEL_ROUTES {
        for (sent, want) in cases {
            h.clear();
            let reply = h.post_json_with(path, &[], sent).await;
            let context = format!("{path} {sent}");
            assert_eq!(reply.status, StatusCode::OK, "{context}: {}", reply.text());
            let req = only_request(&h, "primary", &context);
            assert_body(&req, want.as_bytes(), &context);
        }
    }
    h.shutdown().await;
}

#[tokio::test]
async fn a_chunked_upload_is_renamed_with_a_content_length() {
    let h = harness().await;
    let h2 = h.h2c_client();
    // Frames split inside the model token and inside a UTF-8 sequence.
    let bytes = ODD_BODY.as_bytes();
    let cut = ODD_BODY.find("\"alias\" ,").unwrap() + 3;
    let utf8 = ODD_BODY.find('\u{2615}').unwrap() + 1;
    let frames = vec![
        Bytes::copy_from_slice(&bytes[..utf8]),
        Bytes::copy_from_slice(&bytes[utf8..cut]),
        Bytes::copy_from_slice(&bytes[cut..]),
    ];
    for (client, version) in [(&h.client, "HTTP/1.1 chunked"), (&h2, "h2c, no length")] {
        for path in MODEL_ROUTES {
            h.clear();
            let req = client
                .request(Method::POST, path)
                .header("content-type", "application/json")
                .body(chunked(frames.clone()))
                .unwrap();
            let reply = client.send(req).await;
            let context = format!("{version} {path}");
            assert_eq!(reply.status, StatusCode::OK, "{context}: {}", reply.text());
            let req = only_request(&h, "primary", &context);
            assert_body(&req, ODD_RENAMED.as_bytes(), &context);
        }
    }
    h.shutdown().await;
}

/// CRC-32 (IEEE), for a hand-built gzip member.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A valid gzip member holding `data` in one stored (uncompressed) deflate block: the JSON,
/// mapped model included, is readable in the bytes, yet the body is encoded.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let len = u16::try_from(data.len()).unwrap();
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.push(1); // final block, stored
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
    out
}

/// A body that must reach the upstream exactly as sent.
struct Passthrough {
    name: &'static str,
    path: &'static str,
    content_type: String,
    content_encoding: Option<&'static str>,
    body: Vec<u8>,
}

fn pass(name: &'static str, path: &'static str, content_type: &str, body: &[u8]) -> Passthrough {
    Passthrough {
        name,
        path,
        content_type: content_type.to_owned(),
        content_encoding: None,
        body: body.to_vec(),
    }
}

impl Passthrough {
    fn encoded(mut self, encoding: &'static str) -> Self {
        self.content_encoding = Some(encoding);
        self
    }
}

#[tokio::test]
async fn bodies_without_a_mappable_top_level_model_go_byte_identical() {
    let h = harness().await;
    let json = "application/json";
    let boundary = "sy-boundary-1";
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nalias\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\
         Content-Type: audio/wav\r\n\r\nRIFF....\r\n--{boundary}--\r\n"
    );
    let chat = "/v1/chat/completions";
    let embeddings = "/v1/embeddings";
    let cases = [
        pass(
            "unmapped model",
            chat,
            json,
            br#"{"model":"gpt-4o", "messages":[{"role":"user","content":"alias"}]}"#,
        ),
        pass(
            "no model",
            chat,
            json,
            br#"{"messages":[{"role":"user","content":"hi"}]}"#,
        ),
        pass("no model, embeddings", embeddings, json, br#"{"input":"alias"}"#),
        pass(
            "model only nested in messages",
            chat,
            json,
            br#"{"messages":[{"role":"user","content":"hi","model":"alias"}],"metadata":{"model":"alias"}}"#,
        ),
        pass(
            "model not a string",
            embeddings,
            json,
            br#"{"model":["alias"],"input":"x"}"#,
        ),
        pass("a JSON array", embeddings, json, br#"[{"model":"alias"}]"#),
        // Not an object, whatever the text says: the provider judges it.
        pass("a JSON string", embeddings, json, br#""duplicate model""#),
        pass("invalid JSON", embeddings, json, br#"{"model":"alias","input":"#),
        pass("not JSON", embeddings, "text/plain", br#"{"model":"alias"}"#),
        pass(
            "gzip",
            embeddings,
            json,
            &gzip_stored(br#"{"model":"alias","input":"x"}"#),
        )
        .encoded("gzip"),
        // The label decides, not a look at the bytes: plain JSON said to be gzip is not
        // renamed either (the provider would decode it first).
        pass(
            "labelled gzip",
            embeddings,
            json,
            br#"{"model":"alias","input":"x"}"#,
        )
        .encoded("gzip"),
        pass(
            "multipart form (only JSON bodies are renamed)",
            "/v1/audio/transcriptions",
            &format!("multipart/form-data; boundary={boundary}"),
            form.as_bytes(),
        ),
    ];
    for case in cases {
        h.clear();
        let name = case.name;
        let mut headers = vec![("content-type", case.content_type.as_str())];
        if let Some(encoding) = case.content_encoding {
            headers.push(("content-encoding", encoding));
        }
        let reply = h
            .client
            .call(Method::POST, case.path, &headers, case.body.clone())
            .await;
        assert!(
            !reply.status.is_server_error() && reply.header("x-mock-provider").is_some(),
            "{name}: the upstream answered: {} {}",
            reply.status,
            reply.text()
        );
        let req = only_request(&h, "primary", name);
        assert_body(&req, &case.body, name);
        for (header, value) in &headers {
            assert_eq!(req.header(header), Some(*value), "{name}: {header}");
        }
    }
    h.shutdown().await;
}

#[tokio::test]
async fn duplicate_model_keys_are_refused_when_a_mapping_is_configured() {
    // Only the primary renames models; the secondary forwards what it gets.
    let h = Harness::with_config(
        r#"
        [upstreams.primary]
        models = { "alias" = "provider-model-1" }
        "#,
    )
    .await;
    let duplicates: [(&str, &str); 4] = [
        (
            "/v1/chat/completions",
            r#"{"model":"alias","messages":[],"model":"gpt-4o"}"#,
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","messages":[],"model":"gpt-4o"}"#,
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-4o","mod\u0065l":"alias","messages":[]}"#,
        ),
        (
            "/v1/embeddings",
            r#"{"model":"alias","input":"x","model":"alias"}"#,
        ),
    ];
    for (path, body) in duplicates {
        let reply = h.post_json_with(path, &[], body).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.text()
        );
        assert_eq!(
            reply.error_code(),
            "duplicate_model",
            "{body}: {}",
            reply.text()
        );
        assert!(
            reply.error_message().contains("model"),
            "{}",
            reply.error_message()
        );
        h.assert_no_upstream_contacted(body);
    }
    // Without a mapping the gateway has nothing to rename and does not judge: the stateful
    // upstream gets the duplicate as sent.
    let body = r#"{"model":"alias","messages":[],"store":true,"model":"gpt-4o"}"#;
    let reply = h.post_json_with("/v1/chat/completions", &[], body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let req = only_request(&h, "secondary", "duplicate without mapping");
    assert_body(&req, body.as_bytes(), "duplicate without mapping");
    h.shutdown().await;
}

#[tokio::test]
async fn an_escaped_model_key_is_recognised_and_renamed() {
    let h = harness().await;
    for path in MODEL_ROUTES {
        h.clear();
        let sent =
            r#"{"mod\u0065l" : "alias","messages":[{"role":"user","content":"hi"}],"input":"hi"}"#;
        let want = r#"{"mod\u0065l" : "provider-model-1","messages":[{"role":"user","content":"hi"}],"input":"hi"}"#;
        let reply = h.post_json_with(path, &[], sent).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        let req = only_request(&h, "primary", path);
        assert_body(&req, want.as_bytes(), path);
    }
    h.shutdown().await;
}

#[tokio::test]
async fn aliases_apply_only_on_the_upstream_the_class_chose() {
    let h = harness().await;
    // (body, upstream, body it must receive)
    let cases = [
        (
            r#"{"model":"alias","messages":[]}"#,
            "primary",
            r#"{"model":"provider-model-1","messages":[]}"#,
        ),
        (
            r#"{"model":"stateful-alias","messages":[]}"#,
            "primary",
            r#"{"model":"stateful-alias","messages":[]}"#,
        ),
        (
            r#"{"model":"stateful-alias","messages":[],"store":true}"#,
            "secondary",
            r#"{"model":"secondary-model","messages":[],"store":true}"#,
        ),
        (
            r#"{"model":"alias","messages":[],"store":true}"#,
            "secondary",
            r#"{"model":"alias","messages":[],"store":true}"#,
        ),
    ];
    for (sent, upstream, want) in cases {
        h.clear();
        let reply = h.post_json_with("/v1/chat/completions", &[], sent).await;
        assert_eq!(reply.status, StatusCode::OK, "{sent}: {}", reply.text());
        assert_eq!(
            reply.header("x-switchyard-upstream"),
            Some(upstream),
            "{sent}"
        );
        let req = only_request(&h, upstream, sent);
        assert_body(&req, want.as_bytes(), sent);
    }
    // Responses too: stored (stateful) and not.
    let cases = [
        (
            r#"{"model":"stateful-alias","input":"hi"}"#,
            "secondary",
            r#"{"model":"secondary-model","input":"hi"}"#,
        ),
        (
            r#"{"model":"alias","input":"hi","store":false}"#,
            "primary",
            r#"{"model":"provider-model-1","input":"hi","store":false}"#,
        ),
    ];
    for (sent, upstream, want) in cases {
        h.clear();
        let reply = h.post_json_with("/v1/responses", &[], sent).await;
        assert_eq!(reply.status, StatusCode::OK, "{sent}: {}", reply.text());
        let req = only_request(&h, upstream, sent);
        assert_body(&req, want.as_bytes(), sent);
    }
    h.shutdown().await;
}

#[tokio::test]
async fn a_streaming_request_with_a_mapped_model_streams_back() {
    let h = harness().await;
    let sent = r#"{"model":"alias","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let req = h
        .client
        .request(Method::POST, "/v1/chat/completions")
        .header("content-type", "application/json")
        .header("x-mock-chunks", "4")
        .body(full(sent))
        .unwrap();
    let mut resp = h.client.stream(req).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    assert_eq!(
        resp.header("content-length"),
        None,
        "streamed, not buffered"
    );
    let (bytes, error) = resp.rest(CALL_TIMEOUT).await;
    assert_eq!(error, None, "the stream ends cleanly");
    let events = sse_events(&bytes);
    assert_eq!(events.last().map(String::as_str), Some("data: [DONE]"));
    let chunks: Vec<Value> = events
        .iter()
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks.len() >= 4,
        "one event per token at least: {events:?}"
    );
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
        // The mock answers with the model it was asked for: the provider's name.
        assert_eq!(chunk["model"], "provider-model-1", "{chunk}");
    }
    let req = only_request(&h, "primary", "stream");
    assert_body(
        &req,
        br#"{"model":"provider-model-1","stream":true,"messages":[{"role":"user","content":"hi"}]}"#,
        "stream",
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_large_body_is_renamed() {
    let h = harness().await;
    // 5 MiB of conversation, escapes included, with `model` last so the whole body is
    // scanned before it is found.
    let piece = "The yard switches trains \\\"safely\\\" \\u00e9\\n ";
    let mut content = String::with_capacity(5 * 1024 * 1024 + piece.len());
    while content.len() < 5 * 1024 * 1024 {
        content.push_str(piece);
    }
    let body = |model: &str| {
        format!(
            r#"{{"messages":[{{"role":"system","content":"be brief"}},{{"role":"user","content":"{content}"}}],"temperature":0,"model":"{model}"}}"#
        )
    };
    let sent = body("alias");
    let want = body("provider-model-1");
    for path in ["/v1/chat/completions", "/v1/embeddings"] {
        h.clear();
        let reply = h.post_json_with(path, &[], sent.clone()).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
        let req = only_request(&h, "primary", path);
        assert_body(&req, want.as_bytes(), path);
    }
    h.shutdown().await;
}

#[tokio::test]
async fn classic_azure_picks_the_deployment_by_the_client_model_and_renames_the_body() {
    let h = Harness::builder()
        .config(
            r#"
            [upstreams.primary]
            kind = "azure_openai"
            url = "http://{primary}/openai"
            api_version = "2024-10-21"
            api_key = "${AZURE_KEY}"
            deployments = { "gpt-4o" = "gpt4o-prod", "whisper-1" = "whisper-prod" }
            models = { "gpt-4o" = "gpt-4o-2024-08-06", "whisper-1" = "whisper-large" }
            "#,
        )
        .env("AZURE_KEY", "azure-key")
        .start()
        .await;
    let sent = r#"{"messages":[{"role":"user","content":"hi"}], "model": "gpt-4o"}"#;
    let reply = h
        .post_json_with("/v1/chat/completions?api-version=2020-01-01", &[], sent)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let req = only_request(&h, "primary", "classic chat");
    assert_eq!(
        req.path_and_query,
        "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"
    );
    assert_eq!(req.header("api-key"), Some("azure-key"));
    assert_body(
        &req,
        br#"{"messages":[{"role":"user","content":"hi"}], "model": "gpt-4o-2024-08-06"}"#,
        "classic chat",
    );

    // A streamed-through route, read by the adapter, chunked by the client.
    h.clear();
    let req = h
        .client
        .request(Method::POST, "/v1/embeddings")
        .header("content-type", "application/json")
        .body(chunked(vec![
            Bytes::from_static(b"{\"input\":\"x\",\"mo"),
            Bytes::from_static(b"del\":\"gpt-4o\"}"),
        ]))
        .unwrap();
    let reply = h.client.send(req).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let req = only_request(&h, "primary", "classic embeddings");
    assert_eq!(
        req.path_and_query,
        "/openai/deployments/gpt4o-prod/embeddings?api-version=2024-10-21"
    );
    assert_body(
        &req,
        br#"{"input":"x","model":"gpt-4o-2024-08-06"}"#,
        "classic embeddings",
    );

    // The deployment map is keyed by the client's name: the provider's name is not in it.
    h.clear();
    let reply = h
        .post_json_with(
            "/v1/chat/completions",
            &[],
            r#"{"model":"gpt-4o-2024-08-06"}"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert_eq!(reply.error_code(), "model_not_mapped");
    h.assert_no_upstream_contacted("provider name as the client's model");

    // A multipart form picks its deployment from its model field and goes untouched.
    let form = "--b1\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n\
                --b1\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n\
                RIFF\r\n--b1--\r\n";
    let reply = h
        .client
        .call(
            Method::POST,
            "/v1/audio/transcriptions",
            &[("content-type", "multipart/form-data; boundary=b1")],
            form,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let req = only_request(&h, "primary", "classic multipart");
    assert_eq!(
        req.path_and_query,
        "/openai/deployments/whisper-prod/audio/transcriptions?api-version=2024-10-21"
    );
    assert_body(&req, form.as_bytes(), "classic multipart");
    h.shutdown().await;
}

#[tokio::test]
async fn renaming_works_over_an_h2c_upstream() {
    // The upstream speaks HTTP/2: the rewritten body's length still travels as
    // `content-length`.
    let h = Harness::with_config(
        r#"
        [upstreams.primary]
        http2 = true
        models = { "alias" = "provider-model-1" }
        "#,
    )
    .await;
    let reply = h
        .post_json_with("/v1/chat/completions", &[], ODD_BODY)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let req = only_request(&h, "primary", "h2 upstream");
    assert_eq!(req.version, http::Version::HTTP_2);
    assert_body(&req, ODD_RENAMED.as_bytes(), "h2 upstream");
    h.shutdown().await;
}
