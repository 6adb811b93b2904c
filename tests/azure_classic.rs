//! Azure OpenAI's classic deployments API (`api_version` + `deployments`), end to end through
//! the gateway: the deployment comes from the request's `model` (JSON or multipart),
//! `api-version` goes on every call, Azure's own deployment paths are checked against the
//! configured deployments, and every refusal contacts no upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::providers::{chat, CLIENT_CREDENTIALS};
use common::{metric, summary, Harness};
use http::{Method, StatusCode};
use serde_json::{json, Value};

/// Both upstreams speak the classic API, with different versions and deployments, so that
/// every request shows which one it reached.
async fn classic() -> Harness {
    Harness::builder()
        .config(
            r#"
            [upstreams.primary]
            kind = "azure_openai"
            url = "http://{primary}/openai"
            api_version = "2024-10-21"
            api_key = "${PRIMARY_KEY}"
            [upstreams.primary.deployments]
            "gpt-4o" = "gpt4o-prod"
            "gpt-35-turbo-instruct" = "instruct-prod"
            "text-embedding-3-small" = "emb-prod"
            "dall-e-3" = "dalle3-prod"
            "whisper-1" = "whisper-prod"

            [upstreams.secondary]
            kind = "azure_openai"
            url = "http://{secondary}/openai"
            api_version = "2025-04-01-preview"
            api_key = "${SECONDARY_KEY}"
            deployments = { "gpt-4o" = "gpt4o-stateful", "o3" = "o3-stateful" }
            "#,
        )
        .env("PRIMARY_KEY", "primary-key")
        .env("SECONDARY_KEY", "secondary-key")
        .start()
        .await
}

const BOUNDARY: &str = "----switchyard-test-7MA4YWxkTrZu0gW";

/// A `multipart/form-data` body: a binary file part (every byte value, CRLFs included),
/// then the text fields. `model` comes after the file, so reading it means reading past it.
fn multipart(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
    out.extend_from_slice(
        b"Content-Disposition: form-data; name=\"file\"; filename=\"speech.wav\"\r\n\
          Content-Type: audio/wav\r\n\r\n",
    );
    out.extend_from_slice(b"RIFF");
    out.extend((0..=255u8).chain(0..=255u8));
    out.extend_from_slice(b"\r\n");
    for (name, value) in fields {
        out.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        out.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

fn multipart_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// One classic-API case: the request, and the path and query the upstream must see.
struct Case {
    name: &'static str,
    method: Method,
    path: &'static str,
    content_type: Option<String>,
    body: Vec<u8>,
    upstream: &'static str,
    want: &'static str,
}

impl Case {
    fn on(mut self, upstream: &'static str) -> Self {
        self.upstream = upstream;
        self
    }
}

fn json_case(name: &'static str, path: &'static str, body: Value, want: &'static str) -> Case {
    Case {
        name,
        method: Method::POST,
        path,
        content_type: Some("application/json".to_owned()),
        body: body.to_string().into_bytes(),
        upstream: "primary",
        want,
    }
}

async fn check_cases(h: &Harness, cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in &cases {
        h.clear();
        let mut headers: Vec<(&str, &str)> = CLIENT_CREDENTIALS.to_vec();
        if let Some(ct) = &case.content_type {
            headers.push(("content-type", ct));
        }
        let reply = h
            .client
            .call(
                case.method.clone(),
                case.path,
                &headers,
                Bytes::from(case.body.clone()),
            )
            .await;
        let other = if case.upstream == "primary" {
            "secondary"
        } else {
            "primary"
        };
        let mut problems = Vec::new();
        if reply.status != StatusCode::OK {
            problems.push(format!("status {}: {}", reply.status, reply.text()));
        }
        let seen = h.mock(case.upstream).requests();
        match seen.as_slice() {
            [req] => {
                if req.path_and_query != case.want {
                    problems.push(format!(
                        "upstream saw {}, want {}",
                        req.path_and_query, case.want
                    ));
                }
                if req.body != case.body {
                    problems.push(format!(
                        "body of {} bytes differs from the {} sent",
                        req.body.len(),
                        case.body.len()
                    ));
                }
                if req.header("content-type") != case.content_type.as_deref() {
                    problems.push(format!("content-type {:?}", req.header("content-type")));
                }
                let key = format!("{}-key", case.upstream);
                if req.header("api-key") != Some(key.as_str())
                    || req.header("authorization").is_some()
                    || req.header("x-api-key").is_some()
                {
                    problems.push(format!(
                        "credentials: api-key {:?}, authorization {:?}, x-api-key {:?}",
                        req.header("api-key"),
                        req.header("authorization"),
                        req.header("x-api-key")
                    ));
                }
            }
            other => problems.push(format!("{} saw {:?}", case.upstream, summary(other))),
        }
        let leaked = h.mock(other).requests();
        if !leaked.is_empty() {
            problems.push(format!(
                "{other} must see nothing, saw {:?}",
                summary(&leaked)
            ));
        }
        if !problems.is_empty() {
            failures.push(format!("[{}] {}", case.name, problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
}

#[tokio::test]
async fn classic_api_picks_the_deployment_from_the_model() {
    let h = classic().await;
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let cases = vec![
        json_case(
            "chat",
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": msgs}),
            "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21",
        ),
        json_case(
            "chat, the client's api-version replaced, other query kept",
            "/v1/chat/completions?api-version=2023-05-15&trace=1",
            json!({"model": "gpt-4o", "messages": msgs}),
            "/openai/deployments/gpt4o-prod/chat/completions?trace=1&api-version=2024-10-21",
        ),
        json_case(
            "chat, stored: the stateful upstream's deployment and version",
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": msgs, "store": true}),
            "/openai/deployments/gpt4o-stateful/chat/completions?api-version=2025-04-01-preview",
        )
        .on("secondary"),
        json_case(
            "completions",
            "/v1/completions",
            json!({"model": "gpt-35-turbo-instruct", "prompt": "Say hi"}),
            "/openai/deployments/instruct-prod/completions?api-version=2024-10-21",
        ),
        json_case(
            "embeddings",
            "/v1/embeddings",
            json!({"input": ["a", "b"], "model": "text-embedding-3-small"}),
            "/openai/deployments/emb-prod/embeddings?api-version=2024-10-21",
        ),
        json_case(
            "images",
            "/v1/images/generations",
            json!({"model": "dall-e-3", "prompt": "a switchyard", "n": 1}),
            "/openai/deployments/dalle3-prod/images/generations?api-version=2024-10-21",
        ),
        Case {
            name: "audio transcription, multipart",
            method: Method::POST,
            path: "/v1/audio/transcriptions",
            content_type: Some(multipart_type()),
            body: multipart(&[("model", "whisper-1"), ("response_format", "json")]),
            upstream: "primary",
            want: "/openai/deployments/whisper-prod/audio/transcriptions?api-version=2024-10-21",
        },
    ];
    check_cases(&h, cases).await;
    h.shutdown().await;
}

#[tokio::test]
async fn classic_api_non_deployment_endpoints_get_the_api_version_only() {
    let h = classic().await;
    let get = |name, path, upstream, want| Case {
        name,
        method: Method::GET,
        path,
        content_type: None,
        body: Vec::new(),
        upstream,
        want,
    };
    let responses = json_case(
        "responses, store false",
        "/v1/responses",
        json!({"model": "gpt-4o", "input": "hi", "store": false}),
        "/openai/responses?api-version=2024-10-21",
    );
    let cases = vec![
        get(
            "files list",
            "/v1/files?purpose=x",
            "secondary",
            "/openai/files?purpose=x&api-version=2025-04-01-preview",
        ),
        get(
            "file by id, the client's api-version replaced",
            "/v1/files/file-1?api-version=2023-01-01",
            "secondary",
            "/openai/files/file-1?api-version=2025-04-01-preview",
        ),
        get(
            "models",
            "/v1/models",
            "primary",
            "/openai/models?api-version=2024-10-21",
        ),
        responses,
    ];
    check_cases(&h, cases).await;
    h.shutdown().await;
}

#[tokio::test]
async fn classic_api_unmapped_model_is_refused_before_any_upstream() {
    let h = classic().await;
    let before = h.scrape().await;
    let counter = metric("switchyard_rejections_total").label("reason", "model_not_mapped");
    let base = counter.sum_in(&before).unwrap_or(0.0);

    let reply = h
        .post_json_with("/v1/chat/completions", &[], chat("gpt-5-unmapped"))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert_eq!(reply.error_code(), "model_not_mapped");
    let message = reply.error_message();
    assert!(
        message.contains("gpt-5-unmapped"),
        "names the model: {message}"
    );
    assert!(message.contains("primary"), "names the upstream: {message}");
    assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
    assert_eq!(reply.header("x-switchyard-upstream"), Some("primary"));
    h.assert_no_upstream_contacted("unmapped chat model");

    // A model only the stateful upstream maps is unmapped for stateless traffic: refused,
    // never sent across to the upstream that knows it.
    let reply = h
        .post_json_with("/v1/chat/completions", &[], chat("o3"))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert_eq!(reply.error_code(), "model_not_mapped");
    h.assert_no_upstream_contacted("model mapped only on the other upstream");

    let reply = h
        .post_json_with(
            "/v1/embeddings",
            &[],
            json!({"model": "gpt-4o-mini", "input": "x"}).to_string(),
        )
        .await;
    assert_eq!(reply.error_code(), "model_not_mapped");
    h.assert_no_upstream_contacted("unmapped embeddings model");

    let reply = h
        .client
        .call(
            Method::POST,
            "/v1/audio/transcriptions",
            &[("content-type", &multipart_type())],
            multipart(&[("model", "whisper-2")]),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert_eq!(reply.error_code(), "model_not_mapped");
    assert!(reply.error_message().contains("whisper-2"));
    h.assert_no_upstream_contacted("unmapped multipart model");

    let scrape = h
        .scrape_when(|s| counter.sum_in(s).unwrap_or(0.0) >= base + 4.0)
        .await;
    counter.assert_value(&scrape, base + 4.0);
    h.shutdown().await;
}

#[tokio::test]
async fn classic_api_scoped_request_without_a_model_is_refused() {
    let h = classic().await;
    let cases: Vec<(&str, &str, Option<String>, Vec<u8>)> = vec![
        (
            "chat without model",
            "/v1/chat/completions",
            Some("application/json".to_owned()),
            br#"{"messages":[{"role":"user","content":"hi"}]}"#.to_vec(),
        ),
        (
            "embeddings without model",
            "/v1/embeddings",
            Some("application/json".to_owned()),
            br#"{"input":"x"}"#.to_vec(),
        ),
        (
            "embeddings, model not a string",
            "/v1/embeddings",
            Some("application/json".to_owned()),
            br#"{"input":"x","model":42}"#.to_vec(),
        ),
        ("embeddings, empty body", "/v1/embeddings", None, Vec::new()),
        (
            "embeddings, text body",
            "/v1/embeddings",
            Some("text/plain".to_owned()),
            b"model=gpt-4o".to_vec(),
        ),
        (
            "transcription without a model field",
            "/v1/audio/transcriptions",
            Some(multipart_type()),
            multipart(&[("language", "en")]),
        ),
        (
            "transcription with two model fields",
            "/v1/audio/transcriptions",
            Some(multipart_type()),
            multipart(&[("model", "gpt-4o"), ("model", "whisper-2")]),
        ),
    ];
    for (name, path, content_type, body) in cases {
        let headers: Vec<(&str, &str)> = content_type
            .as_deref()
            .map(|ct| vec![("content-type", ct)])
            .unwrap_or_default();
        let reply = h.client.call(Method::POST, path, &headers, body).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{name}: {}",
            reply.text()
        );
        assert_eq!(
            reply.error_code(),
            "missing_model",
            "{name}: {}",
            reply.text()
        );
        assert!(
            reply.error_message().contains("model"),
            "{name}: {}",
            reply.error_message()
        );
        h.assert_no_upstream_contacted(name);
    }
    h.shutdown().await;
}

/// A path the gateway does not know must not become a known API on the way upstream:
/// `/v1/deployments/x/chat/completions` would reach the classic upstream as a chat completion
/// (here a stored one) after the `default` rule routed it stateless without reading the body.
/// Refused as an ambiguous path; nothing is contacted.
#[tokio::test]
async fn classic_api_refuses_paths_that_become_known_apis_upstream() {
    let h = classic().await;
    let stored = json!({"model": "gpt-4o", "store": true, "messages": []}).to_string();
    for path in [
        "/v1/deployments/x/chat/completions",
        "/v1/deployments/gpt4o-prod/chat/completions",
        "/v1/deployments/x/embeddings",
    ] {
        let reply = h
            .client
            .call(
                Method::POST,
                path,
                &[("content-type", "application/json")],
                stored.clone().into_bytes(),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            reply.text()
        );
        assert_eq!(
            reply.error_code(),
            "ambiguous_path",
            "{path}: {}",
            reply.text()
        );
        assert!(
            reply.error_message().contains("/openai/deployments/"),
            "{}",
            reply.error_message()
        );
        h.assert_no_upstream_contacted(path);
    }
    // An unknown path that stays unknown upstream still goes through (the default rule).
    let reply = h
        .post_json_with("/v1/some/new/endpoint", &[], "{}".to_owned())
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    h.shutdown().await;
}

/// A client that speaks Azure's own deployment paths may name only configured deployments:
/// the `deployments` map is also the allowlist.
#[tokio::test]
async fn classic_api_direct_deployment_paths_must_name_a_configured_deployment() {
    let h = classic().await;
    let body = json!({"messages": [{"role": "user", "content": "hi"}]}).to_string();
    let reply = h
        .post_json_with(
            "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-02-01",
            &[],
            body.clone(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = h.primary.requests();
    assert_eq!(
        seen[0].path_and_query,
        "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"
    );
    h.clear();
    let reply = h
        .post_json_with(
            "/openai/deployments/someone-elses/chat/completions",
            &[],
            body,
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert_eq!(reply.error_code(), "deployment_not_configured");
    assert!(reply.error_message().contains("someone-elses"));
    h.assert_no_upstream_contacted("unconfigured deployment");
    h.shutdown().await;
}

/// Listing stored chat completions is a GET on the unscoped path, not a deployment call.
#[tokio::test]
async fn classic_api_lists_stored_chat_completions_without_a_model() {
    let h = classic().await;
    let reply = h.get("/v1/chat/completions?limit=5").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = h.secondary.requests();
    assert_eq!(
        seen[0].path_and_query,
        "/openai/chat/completions?limit=5&api-version=2025-04-01-preview"
    );
    assert!(h.primary.requests().is_empty());
    h.shutdown().await;
}
