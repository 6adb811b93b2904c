//! Azure OpenAI upstreams (`kind = "azure_openai"`), end to end through the gateway: the v1
//! API and its credentials (`api_key`, `bearer_token`, `bearer_token_file` and its refresh),
//! and the class boundary with Azure upstreams in either role. The classic deployments API
//! is in tests/azure_classic.rs, provider request ids in tests/access_log.rs.
//!
//! Each test runs on a current-thread runtime, so a thread-local `tracing` subscriber sees
//! every event the gateway emits from its tasks (access-log lines, the token refresh).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::logs::Captured;
use common::providers::{
    assert_credentials, chat, post_with_client_credentials, CLIENT_CREDENTIALS,
};
use common::{dead_addr, eventually, summary, Harness};
use http::{Method, StatusCode};
use serde_json::json;
use switchyard::config::Config;

// ---------------------------------------------------------------------------------------
// v1 API and credentials
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn v1_api_maps_the_path_keeps_the_query_and_sends_the_api_key() {
    let h = Harness::builder()
        .config(
            r#"
            [upstreams.primary]
            kind = "azure_openai"
            url = "http://{primary}/openai/v1"
            api_key = "${AZURE_OPENAI_API_KEY}"
            "#,
        )
        .env("AZURE_OPENAI_API_KEY", "azure-key-123")
        .start()
        .await;
    let body = chat("gpt-4o");
    let reply =
        post_with_client_credentials(&h, "/v1/chat/completions?trace=on&x=1", body.clone()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("x-switchyard-upstream"), Some("primary"));

    let seen = h.primary.requests();
    assert_eq!(seen.len(), 1, "{:?}", summary(&seen));
    let req = &seen[0];
    assert_eq!(req.method, Method::POST);
    assert_eq!(
        req.path_and_query, "/openai/v1/chat/completions?trace=on&x=1",
        "v1 API: base path replaced, query kept, no api-version added"
    );
    assert_eq!(req.body, body.as_bytes(), "the body goes byte-identical");
    assert_credentials(req, ("api-key", "azure-key-123"));
    assert!(h.secondary.requests().is_empty());

    // A bodiless GET gets the key too.
    h.clear();
    let reply = h
        .client
        .call(Method::GET, "/v1/models", &CLIENT_CREDENTIALS, "")
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = h.primary.requests();
    assert_eq!(seen[0].path_and_query, "/openai/v1/models");
    assert_credentials(&seen[0], ("api-key", "azure-key-123"));
    h.shutdown().await;
}

#[tokio::test]
async fn v1_api_bearer_token_replaces_the_clients_credentials() {
    let h = Harness::builder()
        .config(
            r#"
            [upstreams.primary]
            kind = "azure_openai"
            url = "http://{primary}/openai/v1"
            bearer_token = "${AZURE_TOKEN}"
            "#,
        )
        .env("AZURE_TOKEN", "entra-token-abc")
        .start()
        .await;
    let reply = post_with_client_credentials(&h, "/v1/chat/completions", chat("gpt-4o")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = h.primary.requests();
    assert_eq!(seen.len(), 1, "{:?}", summary(&seen));
    assert_eq!(seen[0].path_and_query, "/openai/v1/chat/completions");
    assert_credentials(&seen[0], ("authorization", "Bearer entra-token-abc"));
    h.shutdown().await;
}

/// Write `token` to `path` the way a token projector does: a new file renamed over the old.
fn write_token(path: &std::path::Path, token: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, token).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn bearer_token_file_is_sent_and_a_rewritten_file_is_picked_up() {
    let log = Captured::default();
    let _guard = log.install_with("switchyard=warn");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("azure-token");
    // Surrounding whitespace (the trailing newline every tool writes) is not the token.
    write_token(&path, "  token-one\n");
    let h = Harness::with_config(&format!(
        r#"
        [upstreams.primary]
        kind = "azure_openai"
        url = "http://{{primary}}/openai/v1"
        bearer_token_file = {path:?}
        "#,
        path = path.display().to_string()
    ))
    .await;

    let reply = post_with_client_credentials(&h, "/v1/chat/completions", chat("gpt-4o")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = h.primary.requests();
    assert_eq!(seen.len(), 1, "{:?}", summary(&seen));
    assert_credentials(&seen[0], ("authorization", "Bearer token-one"));

    // Rotate the token. The file is polled every TOKEN_FILE_POLL (5 s): keep sending, up to
    // three poll periods, until a request carries the new token. Until then every request
    // must carry the old one (never none), and once the new one is in use the old never
    // comes back.
    write_token(&path, "token-two\n");
    h.clear();
    let poll = switchyard::config::defaults::TOKEN_FILE_POLL;
    let deadline = tokio::time::Instant::now() + poll * 3;
    let mut switched = false;
    while !switched && tokio::time::Instant::now() < deadline {
        let reply = h.get("/v1/models").await;
        assert_eq!(reply.status, StatusCode::OK);
        switched = h
            .primary
            .requests()
            .last()
            .is_some_and(|r| r.header("authorization") == Some("Bearer token-two"));
        if !switched {
            // A retry interval, not synchronisation: the refresh has no observable event.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let seen = h.primary.requests();
    let tokens: Vec<Option<&str>> = seen.iter().map(|r| r.header("authorization")).collect();
    assert!(
        switched,
        "the rewritten token was not used within {:?}; tokens seen: {tokens:?}",
        poll * 3
    );
    let first_new = tokens
        .iter()
        .position(|t| *t == Some("Bearer token-two"))
        .unwrap();
    assert!(
        tokens[..first_new]
            .iter()
            .all(|t| *t == Some("Bearer token-one")),
        "before the switch every request carries the old token: {tokens:?}"
    );
    assert!(
        tokens[first_new..]
            .iter()
            .all(|t| *t == Some("Bearer token-two")),
        "after the switch every request carries the new token: {tokens:?}"
    );

    // A file that turns unreadable keeps the last good token: wait for the refresh to
    // report the failed read, then send.
    std::fs::remove_file(&path).unwrap();
    let failed = eventually(poll * 3, || async {
        log.all_lines()
            .iter()
            .any(|l| l["message"] == "keeping the previous bearer token")
    })
    .await;
    assert!(failed, "no failed refresh logged: {:#?}", log.all_lines());
    h.clear();
    let reply = h.get("/v1/models").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        h.primary.requests()[0].header("authorization"),
        Some("Bearer token-two")
    );
    h.shutdown().await;
}

/// A config whose primary upstream reads its token from `path`; nothing listens anywhere.
async fn token_file_config(path: &std::path::Path) -> Config {
    let text = format!(
        r#"
        [server]
        listen = "127.0.0.1:0"
        [admin]
        listen = "127.0.0.1:0"
        [upstreams.primary]
        kind = "azure_openai"
        url = "http://{primary}/openai/v1"
        bearer_token_file = {path:?}
        [upstreams.secondary]
        url = "http://{secondary}/v1"
        [routing]
        stateless = "primary"
        stateful = "secondary"
        [log]
        access_log = false
        "#,
        primary = dead_addr().await,
        secondary = dead_addr().await,
        path = path.display().to_string(),
    );
    Config::from_toml_str(&text).unwrap_or_else(|e| panic!("config rejected: {e}\n{text}"))
}

#[tokio::test]
async fn an_unreadable_token_file_stops_the_gateway_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-token");
    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, "\n").unwrap();
    for (path, detail) in [
        (&missing, "cannot read the token"),
        (&empty, "the file is empty"),
    ] {
        let config = token_file_config(path).await;
        match switchyard::server::start(config).await {
            Ok(handle) => {
                handle.shutdown().await;
                panic!("the gateway started with token file {}", path.display());
            }
            Err(e) => {
                let text = e.to_string();
                assert!(
                    text.contains("upstreams.primary.bearer_token_file"),
                    "the error names the key: {text}"
                );
                assert!(
                    text.contains(&path.display().to_string()),
                    "the error names the file: {text}"
                );
                assert!(text.contains(detail), "the error says why: {text}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The class boundary with Azure upstreams
// ---------------------------------------------------------------------------------------

/// Send stateless and stateful calls; each must reach only the upstream of its class, with
/// that upstream's credentials and path.
async fn check_roles(h: &Harness, want: [(&str, &str, &str); 4]) {
    let calls = [
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": []}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "messages": [], "store": true}),
        ),
        (
            "/v1/responses",
            json!({"model": "gpt-4o", "input": "hi", "store": false}),
        ),
        (
            "/v1/responses",
            json!({"model": "gpt-4o", "input": "hi", "store": true}),
        ),
    ];
    for ((path, body), (upstream, want_path, credential)) in calls.into_iter().zip(want) {
        h.clear();
        let reply = post_with_client_credentials(h, path, body.to_string()).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{path} {body}: {}",
            reply.text()
        );
        assert_eq!(
            reply.header("x-switchyard-upstream"),
            Some(upstream),
            "{body}"
        );
        let other = if upstream == "primary" {
            "secondary"
        } else {
            "primary"
        };
        let seen = h.mock(upstream).requests();
        assert_eq!(seen.len(), 1, "{body}: {:?}", summary(&seen));
        assert_eq!(seen[0].path_and_query, want_path, "{body}");
        assert_eq!(seen[0].body, body.to_string().as_bytes(), "{body}");
        let (name, value) = credential.split_once(": ").unwrap();
        assert_credentials(&seen[0], (name, value));
        assert!(
            h.mock(other).requests().is_empty(),
            "{body} leaked to {other}: {:?}",
            summary(&h.mock(other).requests())
        );
    }
}

#[tokio::test]
async fn the_class_boundary_holds_with_azure_as_the_stateless_upstream() {
    let h = Harness::builder()
        .config(
            r#"
            [upstreams.primary]
            kind = "azure_openai"
            url = "http://{primary}/openai"
            api_version = "2024-10-21"
            api_key = "${AZURE_KEY}"
            deployments = { "gpt-4o" = "gpt4o-prod" }
            [upstreams.secondary]
            api_key = "${OTHER_KEY}"
            "#,
        )
        .env("AZURE_KEY", "azure-key")
        .env("OTHER_KEY", "other-key")
        .start()
        .await;
    check_roles(
        &h,
        [
            (
                "primary",
                "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21",
                "api-key: azure-key",
            ),
            (
                "secondary",
                "/v1/chat/completions",
                "authorization: Bearer other-key",
            ),
            (
                "primary",
                "/openai/responses?api-version=2024-10-21",
                "api-key: azure-key",
            ),
            (
                "secondary",
                "/v1/responses",
                "authorization: Bearer other-key",
            ),
        ],
    )
    .await;
    h.shutdown().await;
}

#[tokio::test]
async fn the_class_boundary_holds_with_azure_as_the_stateful_upstream() {
    let h = Harness::builder()
        .config(
            r#"
            [upstreams.primary]
            api_key = "${OTHER_KEY}"
            [upstreams.secondary]
            kind = "azure_openai"
            url = "http://{secondary}/openai/v1"
            bearer_token = "${AZURE_TOKEN}"
            "#,
        )
        .env("AZURE_TOKEN", "azure-token")
        .env("OTHER_KEY", "other-key")
        .start()
        .await;
    check_roles(
        &h,
        [
            (
                "primary",
                "/v1/chat/completions",
                "authorization: Bearer other-key",
            ),
            (
                "secondary",
                "/openai/v1/chat/completions",
                "authorization: Bearer azure-token",
            ),
            (
                "primary",
                "/v1/responses",
                "authorization: Bearer other-key",
            ),
            (
                "secondary",
                "/openai/v1/responses",
                "authorization: Bearer azure-token",
            ),
        ],
    )
    .await;
    h.shutdown().await;
}
