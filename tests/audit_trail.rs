//! The audit trail end to end: requests through the gateway become hash-chained records that
//! say where each one went and under which config, and never hold a body or a credential.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use common::{chunked, metric, Harness, Reply};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard::audit::{verify, Sealed};
use switchyard::config::sha256_hex;

/// A gateway writing its audit trail into a temporary directory.
async fn audited(extra: &str) -> (Harness, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let config = format!(
        "[audit]\npath = {}\n{extra}",
        toml::Value::String(path.display().to_string())
    );
    let h = Harness::with_config(&config).await;
    (h, dir, path)
}

/// The `request` records of the log, in order.
fn requests(path: &PathBuf) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "request")
        .collect()
}

fn assert_matches_reply(record: &Value, reply: &Reply, config_sha: &str) {
    let context = format!("record {record}");
    assert_eq!(
        record["request_id"].as_str(),
        reply.header("x-request-id"),
        "{context}"
    );
    assert_eq!(
        record["class"].as_str(),
        reply.header("x-switchyard-class"),
        "{context}"
    );
    assert_eq!(
        record["rule"].as_str(),
        reply.header("x-switchyard-rule"),
        "{context}"
    );
    assert_eq!(
        record["upstream"].as_str(),
        reply.header("x-switchyard-upstream"),
        "{context}"
    );
    assert_eq!(
        record["marker"].as_str(),
        reply.header("x-switchyard-marker"),
        "{context}"
    );
    assert_eq!(record["status"], json!(reply.status.as_u16()), "{context}");
    assert_eq!(
        record["response_bytes"],
        json!(reply.body.len()),
        "{context}"
    );
    assert_eq!(record["config_sha256"], json!(config_sha), "{context}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_one_chained_record_of_where_it_went() {
    let (h, _dir, path) = audited("").await;
    let config_sha = sha256_hex(h.config_text.as_bytes());
    let secret_body =
        json!({"model": "m", "messages": [{"role": "user", "content": "sekrit-payload"}]});
    let mut replies = Vec::new();
    for _ in 0..3 {
        replies.push(
            h.post_json_with(
                "/v1/chat/completions",
                &[("authorization", "Bearer sk-very-secret")],
                secret_body.to_string(),
            )
            .await,
        );
    }
    let stateful = json!({"model": "m", "input": "hi", "previous_response_id": "resp_1"});
    for _ in 0..2 {
        replies.push(h.post_json("/v1/responses", &stateful).await);
    }
    // A streamed (chunked) upload: its bytes are counted as they go.
    let req = h
        .client
        .request(Method::POST, "/v1/embeddings")
        .header("content-type", "application/json")
        .header("x-request-id", "client-chose-this-id")
        .body(chunked(vec![
            bytes::Bytes::from_static(br#"{"model":"m","#),
            bytes::Bytes::from_static(br#""input":"hello"}"#),
        ]))
        .unwrap();
    let streamed = h.client.send(req).await;
    assert_eq!(streamed.status, StatusCode::OK, "{}", streamed.text());
    replies.push(streamed);
    // Refused before routing: recorded with no class.
    let refused = h
        .client
        .call(Method::TRACE, "/v1/models", &[], bytes::Bytes::new())
        .await;
    assert_eq!(refused.status, StatusCode::METHOD_NOT_ALLOWED);

    // Shutdown drains and closes the log (the `seal` line).
    let Harness {
        gateway,
        primary,
        secondary,
        admin_addr,
        ..
    } = h;
    let scrape = common::metrics::scrape(admin_addr).await;
    gateway.shutdown().await;
    primary.shutdown().await;
    secondary.shutdown().await;

    let records = requests(&path);
    assert_eq!(records.len(), 7, "{records:#?}");
    for (record, reply) in records.iter().zip(&replies) {
        assert_matches_reply(record, reply, &config_sha);
        // The provider's id comes from the response (the mock echoes `x-request-id`).
        assert_eq!(
            record["upstream_request_id"].as_str(),
            reply.header("x-request-id")
        );
        assert_eq!(record["outcome"], "completed");
        assert!(record["endpoint"].is_string(), "{record}");
    }
    assert_eq!(records[0]["class"], "stateless");
    assert_eq!(records[0]["upstream"], "primary");
    assert_eq!(
        records[0]["request_bytes"],
        json!(secret_body.to_string().len())
    );
    assert_eq!(records[3]["class"], "stateful");
    assert_eq!(records[3]["upstream"], "secondary");
    assert_eq!(records[3]["rule"], "responses.previous_response_id");
    assert_eq!(records[5]["request_id"], "client-chose-this-id");
    assert_eq!(
        records[5]["request_bytes"],
        json!(r#"{"model":"m","input":"hello"}"#.len())
    );
    let last = &records[6];
    assert_eq!(last["method"], "TRACE");
    assert_eq!(last["status"], 405);
    assert_eq!(last["outcome"], "method_not_allowed");
    assert!(
        last["class"].is_null() && last["upstream"].is_null(),
        "{last}"
    );

    // Never a body, never a credential.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("sekrit-payload"),
        "a body reached the audit log"
    );
    assert!(
        !text.contains("sk-very-secret"),
        "a credential reached the audit log"
    );

    // The chain verifies and ends with a seal.
    let summary = verify(std::slice::from_ref(&path), None).unwrap();
    assert_eq!(summary.requests, 7);
    assert_eq!(summary.sealed, Sealed::Closed, "{summary:?}");
    metric("switchyard_audit_records_total").assert_above(&scrape, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_gateway_continues_the_chain() {
    let (h, dir, path) = audited("").await;
    h.post_json(
        "/v1/chat/completions",
        &json!({"model": "m", "messages": []}),
    )
    .await;
    let config = h.config_text.clone();
    let Harness {
        gateway,
        primary,
        secondary,
        ..
    } = h;
    gateway.shutdown().await;

    // The same config again, same audit file: the chain resumes.
    let config = switchyard::config::Config::from_toml_str(&config).unwrap();
    let gateway = switchyard::server::start(config).await.unwrap();
    let client = common::HttpClient::http1(gateway.proxy_addr);
    let reply = client
        .post_json_with(
            "/v1/responses",
            &[],
            json!({"model": "m", "input": "x", "store": true}).to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    gateway.shutdown().await;
    primary.shutdown().await;
    secondary.shutdown().await;

    let summary = verify(std::slice::from_ref(&path), None).unwrap();
    assert_eq!(summary.requests, 2, "{summary:?}");
    assert_eq!(summary.unclean_starts, 0);
    assert_eq!(summary.sealed, Sealed::Closed);
    let seqs: Vec<u64> = requests(&path)
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs[1] > seqs[0], "{seqs:?}");
    drop(dir);
}
