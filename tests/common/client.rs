//! The test clients: a hyper-util legacy client (HTTP/1.1 or h2c prior knowledge) that
//! returns whole responses or streams them frame by frame, and one shared HTTP/2 connection
//! for many concurrent streams.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

use super::CALL_TIMEOUT;

pub type ReqBody = BoxBody<Bytes, Infallible>;

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

    /// POST `body` with `content-type: application/json` plus `headers`.
    pub async fn post_json_with(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut all = Vec::with_capacity(headers.len() + 1);
        all.push(("content-type", "application/json"));
        all.extend_from_slice(headers);
        self.call(Method::POST, path, &all, body).await
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

/// Split an SSE byte stream into events (blocks separated by a blank line).
pub fn sse_events(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .split("\n\n")
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}
