//! The upstream connection pool (`src/upstream/conns.rs`) on real sockets, the upstream behind
//! a `FaultFront` that counts its connections: keep-alive reuse (whole and streamed bodies),
//! a connection whose response the client abandoned is closed and never reused, a connection
//! the upstream closed while idle costs no request and sends none twice, idle connections
//! close after `pool_idle_timeout`, `pool_max_idle_per_host = 0` keeps none, one HTTP/2
//! connection carries concurrent requests, and one full (`http2_max_streams`) makes another
//! rather than keep a request waiting.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::faults::{Fault, FaultFront};
use common::{full, metric, Harness, Next, Scrape};
use http::{Method, StatusCode};
use serde_json::json;
use switchyard::mock::{MockOptions, MockProvider};
use tokio::time::Instant;

/// A mock primary behind a fault front, and a one-worker gateway pointed at the front (one
/// worker: one pool, so connection counts are exact).
async fn setup(mock: MockOptions, upstream: &str) -> (MockProvider, FaultFront, Harness) {
    let mock = MockProvider::start(SocketAddr::from(([127, 0, 0, 1], 0)), mock)
        .await
        .unwrap();
    let front = FaultFront::start(mock.addr()).await;
    let h = Harness::with_config(&format!(
        "[server]\nworkers = 1\n\n[upstreams.primary]\nurl = \"http://{}/v1\"\n{upstream}\n",
        front.addr()
    ))
    .await;
    (mock, front, h)
}

fn chat(stream: bool) -> String {
    json!({"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
        .to_string()
}

/// A stateless chat completion through the gateway; it must reach the primary.
async fn complete(h: &Harness, stream: bool) {
    let reply = h
        .client
        .post_json_with("/v1/chat/completions", &[], chat(stream))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("x-switchyard-upstream"), Some("primary"));
    if stream {
        assert!(reply.text().contains("data: [DONE]"), "{}", reply.text());
    }
}

/// `switchyard_upstream_connections` (open now) and `..._opened_total` for the primary.
fn connections(scrape: &Scrape, protocol: &str) -> (f64, f64) {
    let series = |name: &str| {
        metric(name)
            .label("upstream", "primary")
            .label("protocol", protocol)
            .sum_in(scrape)
            .unwrap_or(-1.0)
    };
    (
        series("switchyard_upstream_connections"),
        series("switchyard_upstream_connections_opened_total"),
    )
}

/// Wait until `done` holds, for at most `limit`.
async fn eventually(limit: Duration, what: &str, done: impl Fn() -> bool) {
    let until = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < until, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_serves_whole_and_streamed_responses_on_one_connection() {
    let (mock, front, h) = setup(MockOptions::new("primary"), "").await;
    for i in 0..20 {
        complete(&h, i % 2 == 1).await;
    }
    assert_eq!(mock.request_count(), 20);
    assert_eq!(
        front.accepted(),
        1,
        "every request after the first reuses the connection"
    );
    let scrape = h.scrape().await;
    assert_eq!(connections(&scrape, "http1"), (1.0, 1.0), "open, opened");
    assert_eq!(connections(&scrape, "http2"), (0.0, 0.0));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_the_client_abandoned_closes_its_connection() {
    let (mock, front, h) = setup(
        MockOptions::new("primary").with_stream_delay(Duration::from_millis(200)),
        "",
    )
    .await;
    let req = h
        .client
        .request(Method::POST, "/v1/chat/completions")
        .header("content-type", "application/json")
        .body(full(chat(true)))
        .unwrap();
    let mut streaming = h.client.stream(req).await;
    assert_eq!(streaming.status, StatusCode::OK);
    assert!(matches!(
        streaming.next(Duration::from_secs(5)).await,
        Next::Data(_)
    ));
    // The client leaves mid-stream: the upstream connection has an unread rest of a
    // response on it, so it must be closed, not pooled.
    drop(streaming);
    eventually(
        Duration::from_secs(5),
        "the abandoned connection closes",
        || front.open() == 0,
    )
    .await;
    // The next request gets its own answer on a new connection.
    complete(&h, false).await;
    assert_eq!(front.accepted(), 2);
    assert_eq!(mock.request_count(), 2);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_the_upstream_closed_costs_no_request_and_sends_none_twice() {
    let (mock, front, h) = setup(MockOptions::new("primary"), "").await;
    const ROUNDS: usize = 20;
    for _ in 0..ROUNDS {
        complete(&h, false).await;
        // The upstream resets its idle keep-alive connection. Once the reset is sent (not
        // before: a reset after the request went out is a failure no client may retry), the
        // next request comes at once, racing the gateway's noticing it: either it is found
        // closed in the pool, or it takes the request and hands it back unsent, and the
        // request goes on a new connection (that second case is forced deterministically by
        // the unit test `a_request_handed_back_unsent_goes_on_a_new_connection`).
        front.set(Fault::Pass).await;
        eventually(Duration::from_secs(5), "the reset is sent", || {
            front.open() == 0
        })
        .await;
        complete(&h, false).await;
    }
    assert_eq!(
        mock.request_count(),
        2 * ROUNDS,
        "the upstream saw each request exactly once"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_after_the_idle_timeout() {
    let (mock, front, h) =
        setup(MockOptions::new("primary"), "pool_idle_timeout = \"300ms\"").await;
    complete(&h, false).await;
    complete(&h, true).await;
    assert_eq!(front.accepted(), 1);
    // Nothing else happens: the reaper closes it.
    eventually(Duration::from_secs(5), "the idle connection closes", || {
        front.open() == 0
    })
    .await;
    let scrape = h.scrape_when(|s| connections(s, "http1").0 == 0.0).await;
    assert_eq!(connections(&scrape, "http1"), (0.0, 1.0), "open, opened");
    complete(&h, false).await;
    assert_eq!(front.accepted(), 2);
    assert_eq!(mock.request_count(), 3);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_idle_connection_is_kept_when_the_pool_keeps_none() {
    let (mock, front, h) = setup(MockOptions::new("primary"), "pool_max_idle_per_host = 0").await;
    for _ in 0..3 {
        complete(&h, false).await;
    }
    assert_eq!(front.accepted(), 3);
    assert_eq!(mock.request_count(), 3);
    eventually(Duration::from_secs(5), "every connection closes", || {
        front.open() == 0
    })
    .await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_http2_connection() {
    let (mock, front, h) = setup(MockOptions::new("primary"), "http2 = true").await;
    let requests = (0..16).map(|_| complete(&h, false));
    futures_util::future::join_all(requests).await;
    let requests = (0..16).map(|i| complete(&h, i % 2 == 0));
    futures_util::future::join_all(requests).await;
    assert_eq!(mock.request_count(), 32);
    assert_eq!(
        front.accepted(),
        1,
        "one HTTP/2 connection for every request"
    );
    // The upstream closes it: the next requests make one new connection between them.
    front.set(Fault::Pass).await;
    eventually(Duration::from_secs(5), "the reset connection ends", || {
        front.open() == 0
    })
    .await;
    let requests = (0..8).map(|_| complete(&h, false));
    futures_util::future::join_all(requests).await;
    assert_eq!(front.accepted(), 2);
    assert_eq!(mock.request_count(), 40);
    h.shutdown().await;
}

/// A streaming chat request that holds its upstream stream open for about `seconds` (three
/// events, a third of it apart), read to its end.
fn held_stream(h: &Harness, seconds: u64) -> tokio::task::JoinHandle<common::Reply> {
    let client = h.client.clone();
    let delay = (seconds * 1000 / 3).to_string();
    tokio::spawn(async move {
        client
            .post_json_with(
                "/v1/chat/completions",
                &[("x-mock-chunks", "3"), ("x-mock-chunk-delay-ms", &delay)],
                chat(true),
            )
            .await
    })
}

/// `n` streams of `seconds` each (`held_stream`), once every one has reached the upstream,
/// which must happen within `within`.
async fn held_streams(
    h: &Harness,
    mock: &MockProvider,
    n: usize,
    seconds: u64,
    within: Duration,
) -> Vec<tokio::task::JoinHandle<common::Reply>> {
    let held = (0..n).map(|_| held_stream(h, seconds)).collect();
    eventually(
        within,
        &format!("{n} streams reach the upstream together"),
        || mock.request_count() == n,
    )
    .await;
    held
}

/// An upstream that allows 4 concurrent streams per connection, and a gateway told so
/// (`http2_max_streams = 4`): 4 long streams fill the connection, and a fifth request goes on
/// a second connection at once instead of waiting inside hyper for one of them to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_http2_connection_makes_another_instead_of_queueing() {
    let (mock, front, h) = setup(
        MockOptions::new("primary").with_h2_max_streams(4),
        "http2 = true\nhttp2_max_streams = 4",
    )
    .await;
    let held = held_streams(&h, &mock, 4, 6, Duration::from_secs(5)).await;
    assert_eq!(front.accepted(), 1, "4 streams fit on one connection");
    tokio::time::timeout(Duration::from_secs(2), complete(&h, false))
        .await
        .expect("a fifth request is answered while the 4 streams run");
    assert_eq!(front.accepted(), 2, "the fifth went on a second connection");
    assert!(
        held.iter().all(|t| !t.is_finished()),
        "the streams still run"
    );
    for task in held {
        let reply = task.await.unwrap();
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.text().contains("data: [DONE]"), "{}", reply.text());
    }
    // Both connections are free now: the next requests reuse them.
    for _ in 0..4 {
        complete(&h, true).await;
    }
    assert_eq!(front.accepted(), 2);
    h.shutdown().await;
}

/// A burst of 10 streams with room for 4 per connection opens 3 connections, not one per
/// request; every stream reaches the upstream at once; and once they have ended the extra
/// connections close after `pool_idle_timeout` like any idle one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_streams_opens_only_the_connections_it_needs() {
    let (mock, front, h) = setup(
        MockOptions::new("primary").with_h2_max_streams(4),
        "http2 = true\nhttp2_max_streams = 4\npool_idle_timeout = \"1s\"",
    )
    .await;
    let held = held_streams(&h, &mock, 10, 3, Duration::from_secs(2)).await;
    assert_eq!(front.accepted(), 3, "ceil(10 / 4) connections");
    assert_eq!(connections(&h.scrape().await, "http2"), (3.0, 3.0));
    for task in held {
        assert_eq!(task.await.unwrap().status, StatusCode::OK);
    }
    eventually(Duration::from_secs(5), "idle connections close", || {
        front.open() == 0
    })
    .await;
    let scrape = h.scrape_when(|s| connections(s, "http2").0 == 0.0).await;
    assert_eq!(connections(&scrape, "http2"), (0.0, 3.0), "open, opened");
    h.shutdown().await;
}
