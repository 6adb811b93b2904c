//! Worker threads: new client connections go to the worker with the fewest open ones, each
//! worker's count is exported, and every worker serves requests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::metrics::{metric, Scrape};
use common::Harness;
use http::StatusCode;
use serde_json::json;
use tokio::net::TcpStream;

const WORKERS: &str = r#"
[server]
workers = 2
"#;

/// Open connections per worker, from one scrape.
fn per_worker(scrape: &Scrape) -> [f64; 2] {
    [1, 2].map(|w| {
        metric("switchyard_worker_connections")
            .label("worker", w)
            .sum_in(scrape)
            .unwrap_or(-1.0)
    })
}

#[tokio::test]
async fn connections_go_to_the_least_loaded_worker() {
    let h = Harness::with_config(WORKERS).await;
    let idle = h.scrape().await;
    assert_eq!(per_worker(&idle), [0.0, 0.0], "{}", idle.text);

    // Four connections, one after the other: the workers take turns.
    let mut conns = Vec::new();
    for n in 1..=4 {
        conns.push(TcpStream::connect(h.proxy_addr).await.unwrap());
        let half = f64::from(n / 2);
        let expected = [f64::from(n) - half, half];
        let scrape = h.scrape_when(|s| per_worker(s) == expected).await;
        assert_eq!(per_worker(&scrape), expected, "after {n} connections");
    }

    // Worker 1 had the first and third; with both closed it is the least loaded and gets the
    // next two connections.
    drop(conns.remove(2));
    drop(conns.remove(0));
    let scrape = h.scrape_when(|s| per_worker(s) == [0.0, 2.0]).await;
    assert_eq!(per_worker(&scrape), [0.0, 2.0], "{}", scrape.text);
    for _ in 0..2 {
        conns.push(TcpStream::connect(h.proxy_addr).await.unwrap());
    }
    let scrape = h.scrape_when(|s| per_worker(s) == [2.0, 2.0]).await;
    assert_eq!(per_worker(&scrape), [2.0, 2.0], "{}", scrape.text);
    drop(conns);
    let scrape = h.scrape_when(|s| per_worker(s) == [0.0, 0.0]).await;
    assert_eq!(per_worker(&scrape), [0.0, 0.0], "{}", scrape.text);
    h.shutdown().await;
}

#[tokio::test]
async fn both_workers_serve_requests_on_their_own_connections() {
    let h = Harness::with_config(WORKERS).await;
    // Two clients, two connections (one per worker); each sends a few requests.
    let clients = [
        common::HttpClient::http1(h.proxy_addr),
        common::HttpClient::http1(h.proxy_addr),
    ];
    for round in 0..3 {
        for client in &clients {
            let reply = client
                .call(
                    http::Method::POST,
                    "/v1/chat/completions",
                    &[("content-type", "application/json")],
                    bytes::Bytes::from(
                        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": format!("hi {round}")}]})
                            .to_string(),
                    ),
                )
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        }
    }
    let scrape = h.scrape().await;
    assert_eq!(per_worker(&scrape), [1.0, 1.0], "{}", scrape.text);
    assert_eq!(h.mock("primary").requests().len(), 6);
    h.shutdown().await;
}
