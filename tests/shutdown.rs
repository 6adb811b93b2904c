//! Graceful shutdown: in-flight requests finish, new connections are refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{full, Harness, HttpClient, SOON};
use http::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests_and_stops_accepting() {
    let Harness {
        primary,
        secondary,
        gateway,
        proxy_addr,
        ..
    } = Harness::start().await;

    // A slow request is in flight when shutdown begins.
    let client = HttpClient::http1(proxy_addr);
    let slow = {
        let client = client.clone();
        tokio::spawn(async move {
            let req = client
                .request(Method::POST, "/v1/chat/completions")
                .header("content-type", "application/json")
                .header("x-mock-delay-ms", "400")
                .body(full(json!({"model": "m", "messages": []}).to_string()))
                .unwrap();
            client.send(req).await
        })
    };
    let seen = primary.wait_for_requests(1, SOON).await;
    assert_eq!(seen.len(), 1, "the slow request reached the upstream");

    let started = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), gateway.shutdown())
        .await
        .expect("shutdown drained within 10 s");
    let reply = slow.await.unwrap();
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "the in-flight request finished"
    );
    assert_eq!(reply.header("x-mock-provider"), Some("primary"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // The listener is closed.
    let refused = tokio::net::TcpStream::connect(proxy_addr).await;
    assert!(
        refused.is_err(),
        "new connections are refused after shutdown"
    );
    assert_eq!(secondary.request_count(), 0);
    primary.shutdown().await;
    secondary.shutdown().await;
}
