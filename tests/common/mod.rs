//! Shared integration-test harness: two recording mock providers plus the gateway on
//! ephemeral ports, HTTP/1.1 and h2c clients, and a small Prometheus text matcher.
//!
//! Nothing here sleeps to synchronise: waiting is always on a condition with a deadline
//! (`MockProvider::wait_until`, [`eventually`]).
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod metrics;

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use switchyard::config::Config;
use switchyard::mock::{MockOptions, MockProvider, RecordedRequest};
use switchyard::server::ServerHandle;

#[allow(unused_imports)]
pub use self::metrics::{metric, Scrape};

/// Upper bound for any single exchange in a test; a hang becomes a clear failure.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for something that should happen "soon" (metrics, cancellation).
pub const SOON: Duration = Duration::from_secs(5);

/// The configuration every harness starts from. `{primary}` / `{secondary}` become the
/// mock providers' `host:port`.
pub const TEMPLATE: &str = r#"
[server]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[upstreams.primary]
url = "http://{primary}/v1"

[upstreams.secondary]
url = "http://{secondary}/v1"

[routing]
stateless = "primary"
stateful = "secondary"

[log]
access_log = false
"#;

pub type ReqBody = BoxBody<Bytes, Infallible>;

/// A `host:port` on loopback where nothing listens (bound, then released).
pub async fn dead_addr() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// Two recording mocks and a gateway between them.
pub struct Harness {
    /// The stateless upstream (named "primary").
    pub primary: MockProvider,
    /// The stateful upstream (named "secondary").
    pub secondary: MockProvider,
    pub gateway: ServerHandle,
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// An HTTP/1.1 client.
    pub client: HttpClient,
    /// The TOML the gateway was started with.
    pub config_text: String,
}

/// Builds a [`Harness`]: the template, deep-merged with TOML overrides.
#[derive(Default)]
pub struct HarnessBuilder {
    overrides: Vec<String>,
    env: HashMap<String, String>,
}

impl HarnessBuilder {
    /// Merge this TOML over the template (tables merge key by key; other values, arrays
    /// included, replace). `{primary}` and `{secondary}` are substituted first.
    pub fn config(mut self, toml: &str) -> Self {
        self.overrides.push(toml.to_owned());
        self
    }

    /// A variable visible to `${NAME}` references in the config.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.insert(name.to_owned(), value.to_owned());
        self
    }

    pub async fn start(self) -> Harness {
        let primary = MockProvider::start(local0(), MockOptions::new("primary"))
            .await
            .unwrap();
        let secondary = MockProvider::start(local0(), MockOptions::new("secondary"))
            .await
            .unwrap();
        let fill = |text: &str| {
            text.replace("{primary}", &primary.addr().to_string())
                .replace("{secondary}", &secondary.addr().to_string())
        };
        let mut table: toml::Table = fill(TEMPLATE).parse().unwrap();
        for over in &self.overrides {
            let over: toml::Table = fill(over)
                .parse()
                .unwrap_or_else(|e| panic!("override is not TOML: {e}\n{over}"));
            merge(&mut table, over);
        }
        let config_text = toml::to_string(&table).unwrap();
        let env = self.env;
        let config = Config::from_toml_str_with_env(&config_text, &|name| env.get(name).cloned())
            .unwrap_or_else(|e| panic!("config rejected: {e}\n{config_text}"));
        let gateway = switchyard::server::start(config)
            .await
            .unwrap_or_else(|e| panic!("gateway did not start: {e}"));
        Harness {
            proxy_addr: gateway.proxy_addr,
            admin_addr: gateway.admin_addr,
            client: HttpClient::http1(gateway.proxy_addr),
            primary,
            secondary,
            gateway,
            config_text,
        }
    }
}

fn local0() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Deep-merge `over` into `base`: tables merge, everything else replaces.
pub fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

impl Harness {
    pub fn builder() -> HarnessBuilder {
        HarnessBuilder::default()
    }

    /// The template as is.
    pub async fn start() -> Harness {
        Self::builder().start().await
    }

    /// The template with one TOML override.
    pub async fn with_config(toml: &str) -> Harness {
        Self::builder().config(toml).start().await
    }

    /// A fresh h2c (prior knowledge) client for the proxy listener.
    pub fn h2c_client(&self) -> HttpClient {
        HttpClient::h2c(self.proxy_addr)
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.client.call(Method::GET, path, &[], Bytes::new()).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.client
            .call(
                Method::POST,
                path,
                &[("content-type", "application/json")],
                Bytes::from(body.to_string()),
            )
            .await
    }

    /// Scrape the admin listener's `/metrics`.
    pub async fn scrape(&self) -> Scrape {
        let reply = HttpClient::http1(self.admin_addr)
            .call(Method::GET, "/metrics", &[], Bytes::new())
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "GET /metrics: {}",
            reply.text()
        );
        Scrape::parse(&reply.text())
    }

    /// Scrape until `done` holds for the scrape (every 10 ms, up to [`SOON`]); returns the
    /// last scrape either way, so that the caller's assertions explain what is missing.
    pub async fn scrape_when(&self, done: impl Fn(&Scrape) -> bool) -> Scrape {
        let deadline = tokio::time::Instant::now() + SOON;
        loop {
            let scrape = self.scrape().await;
            if done(&scrape) || tokio::time::Instant::now() >= deadline {
                return scrape;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stop the mock serving `upstream` for good: its port refuses connections from now on.
    /// (A fresh, unconfigured mock takes its place in the struct.)
    pub async fn stop_upstream(&mut self, upstream: &str) {
        let spare = MockProvider::start(local0(), MockOptions::new("spare"))
            .await
            .unwrap();
        let slot = match upstream {
            "primary" => &mut self.primary,
            "secondary" => &mut self.secondary,
            other => panic!("no mock named {other}"),
        };
        std::mem::replace(slot, spare).shutdown().await;
    }

    /// GET a path on the admin listener.
    pub async fn admin_get(&self, path: &str) -> Reply {
        HttpClient::http1(self.admin_addr)
            .call(Method::GET, path, &[], Bytes::new())
            .await
    }

    /// Forget what both mocks recorded.
    pub fn clear(&self) {
        self.primary.clear();
        self.secondary.clear();
    }

    /// The mock serving `upstream` ("primary" or "secondary").
    pub fn mock(&self, upstream: &str) -> &MockProvider {
        match upstream {
            "primary" => &self.primary,
            "secondary" => &self.secondary,
            other => panic!("no mock named {other}"),
        }
    }

    /// Assert that neither mock has seen a request.
    pub fn assert_no_upstream_contacted(&self, context: &str) {
        let p = self.primary.requests();
        let s = self.secondary.requests();
        assert!(
            p.is_empty() && s.is_empty(),
            "{context}: expected no upstream request, primary saw {:?}, secondary saw {:?}",
            summary(&p),
            summary(&s)
        );
    }

    pub async fn shutdown(self) {
        self.gateway.shutdown().await;
        self.primary.shutdown().await;
        self.secondary.shutdown().await;
    }
}

/// `METHOD path` of each recorded request, for messages.
pub fn summary(reqs: &[RecordedRequest]) -> Vec<String> {
    reqs.iter()
        .map(|r| format!("{} {}", r.method, r.path_and_query))
        .collect()
}

/// Check `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub async fn eventually<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------
// HTTP client
// ---------------------------------------------------------------------------------------

/// A whole response: status, headers and every body byte.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.text()))
    }

    /// The gateway's `error.code`, asserting the OpenAI error shape on the way.
    pub fn error_code(&self) -> String {
        let v = self.json();
        let err = v
            .get("error")
            .unwrap_or_else(|| panic!("no `error` object in {v}"));
        for key in ["message", "type", "param", "code"] {
            assert!(err.get(key).is_some(), "error object lacks `{key}`: {v}");
        }
        err["code"].as_str().unwrap_or_default().to_owned()
    }

    pub fn error_message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// A response whose body is read frame by frame.
pub struct Streaming {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Incoming,
}

/// One step of a streamed body.
#[derive(Debug)]
pub enum Next {
    Data(Bytes),
    End,
    Error(String),
    TimedOut,
}

impl Streaming {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The next data frame (trailers are skipped), the end, an error, or nothing in `wait`.
    pub async fn next(&mut self, wait: Duration) -> Next {
        let read = async {
            loop {
                match self.body.frame().await {
                    None => return Next::End,
                    Some(Err(e)) => return Next::Error(e.to_string()),
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            return Next::Data(data);
                        }
                    }
                }
            }
        };
        tokio::time::timeout(wait, read)
            .await
            .unwrap_or(Next::TimedOut)
    }

    /// Every remaining body byte, and how the body ended (`None` for a clean end).
    pub async fn rest(&mut self, wait: Duration) -> (Vec<u8>, Option<String>) {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Next::Data(d) => out.extend_from_slice(&d),
                Next::End => return (out, None),
                Next::Error(e) => return (out, Some(e)),
                Next::TimedOut => return (out, Some("timed out".to_owned())),
            }
        }
    }
}

/// A hyper-util legacy client bound to one address.
#[derive(Clone)]
pub struct HttpClient {
    addr: SocketAddr,
    client: Client<HttpConnector, ReqBody>,
}

impl HttpClient {
    pub fn http1(addr: SocketAddr) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        HttpClient { addr, client }
    }

    /// HTTP/2 over cleartext with prior knowledge.
    pub fn h2c(addr: SocketAddr) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http();
        HttpClient { addr, client }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A request for `path` on this client's address (no body yet).
    pub fn request(&self, method: Method, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.addr, path))
    }

    /// Send a request with headers and a body of known length.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut builder = self.request(method, path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        self.send(builder.body(full(body)).unwrap()).await
    }

    /// Send and read the whole response.
    pub async fn send(&self, req: Request<ReqBody>) -> Reply {
        let what = format!("{} {}", req.method(), req.uri());
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .unwrap_or_else(|e| panic!("{what}: request failed: {}", chain(&e)));
            let (head, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .unwrap_or_else(|e| panic!("{what}: reading the body failed: {e}"))
                .to_bytes();
            Reply {
                status: head.status,
                version: head.version,
                headers: head.headers,
                body,
            }
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| panic!("{what}: no complete answer within {CALL_TIMEOUT:?}"))
    }

    /// Send and return as soon as the response head arrives.
    pub async fn stream(&self, req: Request<ReqBody>) -> Streaming {
        let what = format!("{} {}", req.method(), req.uri());
        let resp = tokio::time::timeout(CALL_TIMEOUT, self.client.request(req))
            .await
            .unwrap_or_else(|_| panic!("{what}: no response head within {CALL_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("{what}: request failed: {}", chain(&e)));
        let (head, body) = resp.into_parts();
        Streaming {
            status: head.status,
            version: head.version,
            headers: head.headers,
            body,
        }
    }
}

/// An error and its sources on one line.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A body of known length (sent with `content-length`).
pub fn full(bytes: impl Into<Bytes>) -> ReqBody {
    Full::new(bytes.into()).boxed()
}

/// A body of unknown length, sent as the given frames (HTTP/1.1: chunked, no content-length).
pub fn chunked(frames: Vec<Bytes>) -> ReqBody {
    ChunkedBody(frames.into()).boxed()
}

struct ChunkedBody(VecDeque<Bytes>);

impl Body for ChunkedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        // Deliberately no exact size: the length is unknown to the transport.
        SizeHint::default()
    }
}

/// One HTTP/2 (h2c prior knowledge) connection, shared by clones of its sender: every
/// request sent through it is a stream on the same TCP connection.
#[derive(Clone)]
pub struct H2Connection {
    addr: SocketAddr,
    sender: hyper::client::conn::http2::SendRequest<ReqBody>,
}

impl H2Connection {
    pub async fn connect(addr: SocketAddr) -> H2Connection {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        H2Connection { addr, sender }
    }

    pub fn request(&self, method: Method, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.addr, path))
    }

    pub async fn send(&self, req: Request<ReqBody>) -> Reply {
        let what = format!("{} {}", req.method(), req.uri());
        let mut sender = self.sender.clone();
        let exchange = async {
            let resp = sender
                .send_request(req)
                .await
                .unwrap_or_else(|e| panic!("{what}: h2 request failed: {}", chain(&e)));
            let (head, body) = resp.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            Reply {
                status: head.status,
                version: head.version,
                headers: head.headers,
                body,
            }
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| panic!("{what}: no complete h2 answer within {CALL_TIMEOUT:?}"))
    }
}

/// Header name/value pairs as a `HeaderMap`.
pub fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (n, v) in pairs {
        map.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    map
}

/// Split an SSE byte stream into events (blocks separated by a blank line).
pub fn sse_events(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .split("\n\n")
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Raw sockets, for what a well-behaved HTTP library will not send or answer
// ---------------------------------------------------------------------------------------

/// A minimal HTTP/1.1 upstream: it reads each request (head plus a `content-length` body)
/// and answers with `response` verbatim. With `close`, it closes the connection after
/// writing, which truncates a response that promised more.
pub async fn raw_upstream(response: &'static [u8], close: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut buf = Vec::new();
                while read_request(&mut stream, &mut buf).await {
                    if stream.write_all(response).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Read one request (head plus `content-length` body) off `stream`, consuming it from `buf`.
async fn read_request(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> bool {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let len = content_length(&buf[..end]);
            if buf.len() >= end + 4 + len {
                buf.drain(..end + 4 + len);
                return true;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}

/// A raw HTTP/1.1 response: status line + headers as text, and the body bytes.
#[derive(Debug)]
pub struct RawResponse {
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn status(&self) -> u16 {
        self.head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Read one response with a `content-length` body (or none) from `stream`; `None` if the
/// connection ends first or nothing arrives within [`SOON`].
pub async fn read_raw_response(stream: &mut tokio::net::TcpStream) -> Option<RawResponse> {
    use tokio::io::AsyncReadExt;
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let len = content_length(&buf[..end]);
                if buf.len() >= end + 4 + len {
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let body = buf[end + 4..end + 4 + len].to_vec();
                    return Some(RawResponse { head, body });
                }
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(SOON, read).await.ok().flatten()
}
