//! Tests of the mock provider over real loopback sockets (HTTP/1.1 and h2c).

mod requests;
mod streams;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::{MockOptions, MockProvider};

pub(super) const WAIT: Duration = Duration::from_secs(3);

pub(super) async fn start(name: &str) -> MockProvider {
    start_with(MockOptions::new(name)).await
}

pub(super) async fn start_with(opts: MockOptions) -> MockProvider {
    MockProvider::start(([127, 0, 0, 1], 0).into(), opts)
        .await
        .unwrap()
}

pub(super) type TestClient = Client<HttpConnector, Full<Bytes>>;

/// An HTTP/1.1 client, or an h2c (prior knowledge) client.
pub(super) fn client(h2: bool) -> TestClient {
    let mut builder = Client::builder(TokioExecutor::new());
    builder.http2_only(h2);
    builder.build_http()
}

/// Send a request; returns the response with its body unread.
pub(super) async fn send_raw(
    client: &TestClient,
    mock: &MockProvider,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> http::Response<Incoming> {
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", mock.addr()));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(body.into())).unwrap();
    client.request(req).await.unwrap()
}

/// Send a request and read the whole answer.
pub(super) async fn send(
    client: &TestClient,
    mock: &MockProvider,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (http::response::Parts, Bytes) {
    let (parts, body) = send_raw(client, mock, method, path, headers, body)
        .await
        .into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts, body)
}

/// Send a request and parse the JSON answer.
pub(super) async fn send_json(
    client: &TestClient,
    mock: &MockProvider,
    method: &str,
    path: &str,
    body: &str,
) -> (http::StatusCode, serde_json::Value) {
    let (parts, bytes) = send(client, mock, method, path, &[], body.to_owned()).await;
    assert_eq!(parts.headers["content-type"], "application/json", "{path}");
    (parts.status, serde_json::from_slice(&bytes).unwrap())
}

/// Split an SSE body into events (blocks separated by a blank line).
pub(super) fn sse_events(body: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(body).unwrap();
    assert!(
        text.ends_with("\n\n"),
        "SSE body must end with a blank line"
    );
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The JSON of a `data: …` line of an event.
pub(super) fn event_data(event: &str) -> serde_json::Value {
    let data = event
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap();
    serde_json::from_str(data).unwrap()
}
