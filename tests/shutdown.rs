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

/// While the drain runs the admin listener still answers: `/readyz` is 503 (so load
/// balancers stop sending) and `/metrics` shows `switchyard_draining 1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_answers_503_on_readyz_while_draining() {
    let Harness {
        primary,
        secondary,
        gateway,
        proxy_addr,
        admin_addr,
        ..
    } = Harness::start().await;
    let admin = HttpClient::http1(admin_addr);
    let ready = admin
        .call(Method::GET, "/readyz", &[], bytes::Bytes::new())
        .await;
    assert_eq!(ready.status, StatusCode::OK);

    let client = HttpClient::http1(proxy_addr);
    let slow = tokio::spawn(async move {
        let req = client
            .request(Method::POST, "/v1/chat/completions")
            .header("content-type", "application/json")
            .header("x-mock-delay-ms", "1500")
            .body(full(json!({"model": "m", "messages": []}).to_string()))
            .unwrap();
        client.send(req).await
    });
    primary.wait_for_requests(1, SOON).await;
    let drain = tokio::spawn(gateway.shutdown());

    // A fresh connection each time: the admin listener is still accepting.
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let reply = HttpClient::http1(admin_addr)
            .call(Method::GET, "/readyz", &[], bytes::Bytes::new())
            .await;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz stayed {}",
            reply.status
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let scrape = common::metrics::scrape(admin_addr).await;
    common::metric("switchyard_draining").assert_value(&scrape, 1.0);
    assert!(!slow.is_finished(), "the request is still in flight");

    let reply = slow.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .expect("the drain ended")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(admin_addr).await.is_err(),
        "the admin listener closes last"
    );
    primary.shutdown().await;
    secondary.shutdown().await;
}

/// An idle HTTP/2 connection gets GOAWAY when the drain begins and closes, while a request
/// on another connection is still being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_h2_connection_gets_goaway_when_the_drain_begins() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let Harness {
        primary,
        secondary,
        gateway,
        proxy_addr,
        ..
    } = Harness::start().await;

    let stream = tokio::net::TcpStream::connect(proxy_addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::post(format!("http://{proxy_addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(full(json!({"model": "m", "messages": []}).to_string()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    drop(resp);

    // Keep the drain going with a slow request on its own HTTP/1.1 connection.
    let client = HttpClient::http1(proxy_addr);
    let slow = tokio::spawn(async move {
        let req = client
            .request(Method::POST, "/v1/chat/completions")
            .header("content-type", "application/json")
            .header("x-mock-delay-ms", "2000")
            .body(full(json!({"model": "m", "messages": []}).to_string()))
            .unwrap();
        client.send(req).await
    });
    primary.wait_for_requests(2, SOON).await;
    let drain = tokio::spawn(gateway.shutdown());

    // GOAWAY: the client's connection ends cleanly, well before the slow request does.
    let ended = tokio::time::timeout(Duration::from_secs(1), conn)
        .await
        .expect("the idle h2 connection was closed at once");
    assert!(ended.unwrap().is_ok(), "a clean GOAWAY, not a reset");
    assert!(!slow.is_finished());
    assert_eq!(slow.await.unwrap().status, StatusCode::OK);
    drain.await.unwrap();
    primary.shutdown().await;
    secondary.shutdown().await;
}
