//! The mock's server side: the accept loop, connection tasks that end on shutdown, and the
//! request handler (record → read body → controls → route → response with common headers).

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::body::{pattern_block, MockBody};
use super::record::{RecordedRequest, Recorder, Tracker};
use super::routes::{route, Reply, RouteCtx};
use super::websocket;
use super::MockOptions;

/// Request bodies above this are refused with 413 (tests send tens of MiB).
const MAX_REQUEST_BODY: usize = 256 * 1024 * 1024;
/// `x-mock-response-bytes` is capped at this.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
/// `x-mock-chunks` is capped at this.
const MAX_CHUNKS: usize = 10_000;
/// Default number of content tokens.
const DEFAULT_CHUNKS: usize = 5;
/// Delays from headers are capped at this.
const MAX_DELAY: Duration = Duration::from_secs(600);

static X_MOCK_PROVIDER: HeaderName = HeaderName::from_static("x-mock-provider");
static X_MOCK_REQUEST_ID: HeaderName = HeaderName::from_static("x-mock-request-id");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// State shared by the accept loop, the connections and the [`super::MockProvider`] handle.
pub(crate) struct Shared {
    pub(crate) name: String,
    name_header: HeaderValue,
    pub(crate) record: bool,
    stream_delay: Duration,
    pub(crate) recorder: Arc<Recorder>,
    pub(crate) served: AtomicU64,
    /// Serving HTTPS.
    pub(crate) tls: bool,
    /// Failed TLS handshakes.
    pub(crate) tls_failures: AtomicU64,
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` for HTTP/2 connections.
    h2_max_streams: u32,
    pattern: Bytes,
    files: Mutex<Vec<Value>>,
}

impl Shared {
    pub(crate) fn new(opts: &MockOptions) -> Self {
        Self {
            name: opts.name.clone(),
            name_header: HeaderValue::from_str(&opts.name)
                .unwrap_or_else(|_| HeaderValue::from_static("mock")),
            record: opts.record,
            stream_delay: opts.stream_delay,
            recorder: Arc::default(),
            served: AtomicU64::new(0),
            tls: opts.tls.is_some(),
            tls_failures: AtomicU64::new(0),
            h2_max_streams: opts.h2_max_streams,
            pattern: pattern_block(),
            files: Mutex::default(),
        }
    }
}

/// Resolves once shutdown was requested (or the provider handle is gone).
pub(super) async fn cancelled(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Spawns hyper's HTTP/2 stream tasks so that they end on shutdown too.
#[derive(Clone)]
struct Exec {
    cancel: watch::Receiver<bool>,
}

impl<F> hyper::rt::Executor<F> for Exec
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        let cancel = self.cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = fut => {}
                () = cancelled(cancel) => {}
            }
        });
    }
}

/// Accept connections until cancelled, then end every connection task. With `tls`, each
/// connection's handshake runs in its own task; h2 is served when ALPN picked it (or the
/// client sent the h2 preface), HTTP/1.1 otherwise.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    cancel: watch::Receiver<bool>,
) {
    let exec = Exec {
        cancel: cancel.clone(),
    };
    let mut builder = auto::Builder::new(exec);
    builder.http1().keep_alive(true);
    builder
        .http2()
        .max_concurrent_streams(shared.h2_max_streams)
        .initial_stream_window_size(4 * 1024 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024);
    let builder = Arc::new(builder);
    let mut conns = JoinSet::new();
    let stop = cancelled(cancel.clone());
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    let builder = Arc::clone(&builder);
                    let shared = Arc::clone(&shared);
                    let tls = tls.clone();
                    let cancel = cancel.clone();
                    conns.spawn(async move {
                        let svc = {
                            let shared = Arc::clone(&shared);
                            service_fn(move |req| {
                                let tracker = record_head(&shared, &req);
                                handle(Arc::clone(&shared), req, tracker, cancel.clone())
                            })
                        };
                        // With upgrades: WebSocket handshakes hand the connection to an echo.
                        let served = match tls {
                            None => {
                                let io = TokioIo::new(stream);
                                builder.serve_connection_with_upgrades(io, svc).await
                            }
                            Some(tls) => match tls.accept(stream).into_fallible().await {
                                Ok(stream) => {
                                    let io = TokioIo::new(stream);
                                    builder.serve_connection_with_upgrades(io, svc).await
                                }
                                Err((error, stream)) => {
                                    shared.tls_failures.fetch_add(1, Ordering::Relaxed);
                                    tracing::debug!(%error, "mock TLS handshake failed");
                                    linger(stream).await;
                                    return;
                                }
                            },
                        };
                        if let Err(error) = served {
                            tracing::trace!(%error, "mock connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off briefly, keep serving.
                    tracing::warn!(%error, "mock provider accept failed");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    conns.shutdown().await;
}

/// Test controls read from the request headers; bad values are ignored.
#[derive(Debug, Default)]
struct Controls {
    status: Option<StatusCode>,
    delay: Option<Duration>,
    chunk_delay: Option<Duration>,
    chunks: Option<usize>,
    hold: bool,
    response_bytes: Option<u64>,
}

fn header_num<T: std::str::FromStr>(headers: &HeaderMap, name: &str) -> Option<T> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

impl Controls {
    fn from_headers(headers: &HeaderMap) -> Self {
        let millis = |name| {
            header_num::<u64>(headers, name).map(|ms| Duration::from_millis(ms).min(MAX_DELAY))
        };
        let hold = headers
            .get("x-mock-hold")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes")
            });
        Self {
            status: header_num::<u16>(headers, "x-mock-status")
                .filter(|code| (200..=599).contains(code))
                .and_then(|code| StatusCode::from_u16(code).ok()),
            delay: millis("x-mock-delay-ms"),
            chunk_delay: millis("x-mock-chunk-delay-ms"),
            chunks: header_num::<usize>(headers, "x-mock-chunks").map(|n| n.min(MAX_CHUNKS)),
            hold,
            response_bytes: header_num::<u64>(headers, "x-mock-response-bytes")
                .map(|n| n.min(MAX_RESPONSE_BYTES)),
        }
    }
}

/// The body as received, or what arrived before it broke off (and whether it was too large).
async fn read_body(mut body: Incoming, limit: usize) -> Result<Bytes, (Bytes, bool)> {
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    let mut len = 0usize;
    let gathered = |first: Option<Bytes>, rest: BytesMut| match first {
        Some(first) if rest.is_empty() => first,
        Some(first) => {
            let mut all = BytesMut::with_capacity(first.len() + rest.len());
            all.extend_from_slice(&first);
            all.extend_from_slice(&rest);
            all.freeze()
        }
        None => rest.freeze(),
    };
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err((gathered(first, rest), false));
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        len = len.saturating_add(data.len());
        if len > limit {
            return Err((gathered(first, rest), true));
        }
        if first.is_none() {
            first = Some(data);
        } else {
            rest.extend_from_slice(&data);
        }
    }
    Ok(gathered(first, rest))
}

/// Status, content type and body of a response.
type Parts = (StatusCode, &'static str, MockBody);

fn json_body(status: StatusCode, value: &Value) -> Parts {
    let bytes = Bytes::from(value.to_string());
    (status, "application/json", MockBody::full(bytes))
}

fn error_reply(status: StatusCode, message: &str, kind: &str, code: &str) -> Parts {
    let error = json!({"error": {"message": message, "type": kind, "code": code}});
    json_body(status, &error)
}

/// Count and record a request head. Runs when the connection hands the request over (not
/// when the handler is first polled), so heads are recorded in order of arrival.
fn record_head(shared: &Shared, req: &Request<Incoming>) -> Option<Tracker> {
    shared.served.fetch_add(1, Ordering::Relaxed);
    shared.record.then(|| {
        shared.recorder.start(RecordedRequest {
            method: req.method().clone(),
            path_and_query: req
                .uri()
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned()),
            version: req.version(),
            headers: req.headers().clone(),
            body: Bytes::new(),
            body_complete: false,
            completed: false,
            finished: false,
        })
    })
}

/// Serve one request. Never fails: every problem becomes a response.
async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    tracker: Option<Tracker>,
    cancel: watch::Receiver<bool>,
) -> Result<Response<MockBody>, Infallible> {
    if websocket::is_handshake(&req) {
        return Ok(websocket_handshake(&shared, req, tracker, cancel));
    }
    let (parts, body) = req.into_parts();
    let controls = Controls::from_headers(&parts.headers);
    let body = match read_body(body, MAX_REQUEST_BODY).await {
        Ok(body) => {
            if let Some(tracker) = &tracker {
                tracker.body(body.clone(), true);
            }
            Ok(body)
        }
        Err((partial, too_large)) => {
            if let Some(tracker) = &tracker {
                tracker.body(partial, false);
            }
            Err(too_large)
        }
    };
    if let Some(delay) = controls.delay {
        tokio::time::sleep(delay).await;
    }
    let chunk_delay = controls.chunk_delay.unwrap_or(shared.stream_delay);
    let (status, content_type, body) = match (&body, controls.status, controls.response_bytes) {
        (Err(true), _, _) => error_reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large for the mock",
            "invalid_request_error",
            "body_too_large",
        ),
        (Err(false), _, _) => error_reply(
            StatusCode::BAD_REQUEST,
            "request body broke off",
            "invalid_request_error",
            "body_incomplete",
        ),
        (Ok(_), Some(status), _) => error_reply(status, "mock error", "mock_error", "mock"),
        (Ok(_), None, Some(len)) => (
            StatusCode::OK,
            "application/octet-stream",
            MockBody::pattern(shared.pattern.clone(), len),
        ),
        (Ok(body), None, None) => {
            let reply = route(&RouteCtx {
                provider: &shared.name,
                method: &parts.method,
                path: parts.uri.path(),
                content_type: parts
                    .headers
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok()),
                body,
                tokens: controls.chunks.unwrap_or(DEFAULT_CHUNKS),
                files: &shared.files,
            });
            match reply {
                Reply::Json(status, value) => json_body(status, &value),
                Reply::Sse(events) => (
                    StatusCode::OK,
                    "text/event-stream",
                    MockBody::events(events, chunk_delay),
                ),
                Reply::Raw(content_type, bytes) => {
                    (StatusCode::OK, content_type, MockBody::full(bytes))
                }
            }
        }
    };
    let bodiless = parts.method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let mut body = if bodiless { MockBody::empty() } else { body };
    if controls.hold {
        body = body.hold();
    }
    let mut response = Response::new(body.tracked(tracker));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if content_type == "text/event-stream" {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    common_headers(&shared, parts.headers.get(&X_REQUEST_ID).cloned(), headers);
    Ok(response)
}

/// `x-mock-provider`, a fresh `x-mock-request-id`, and the request's `x-request-id` echoed.
fn common_headers(shared: &Shared, request_id: Option<HeaderValue>, headers: &mut HeaderMap) {
    headers.insert(X_MOCK_PROVIDER.clone(), shared.name_header.clone());
    if let Ok(id) = HeaderValue::try_from(uuid::Uuid::new_v4().to_string()) {
        headers.insert(X_MOCK_REQUEST_ID.clone(), id);
    }
    if let Some(id) = request_id {
        headers.insert(X_REQUEST_ID.clone(), id);
    }
}

/// A WebSocket handshake (see `websocket.rs`): `x-mock-status` answers with that error,
/// otherwise 101 and an echo session, or 400 for a handshake the mock does not serve.
fn websocket_handshake(
    shared: &Shared,
    req: Request<Incoming>,
    mut tracker: Option<Tracker>,
    cancel: watch::Receiver<bool>,
) -> Response<MockBody> {
    if let Some(tracker) = &tracker {
        tracker.body(Bytes::new(), true);
    }
    let request_id = req.headers().get(&X_REQUEST_ID).cloned();
    let answer = match Controls::from_headers(req.headers()).status {
        Some(status) => Err(error_reply(status, "mock error", "mock_error", "mock")),
        None => websocket::answer(req, &mut tracker, cancel).map_err(|refusal| {
            let message = refusal.to_string();
            error_reply(
                StatusCode::BAD_REQUEST,
                &message,
                "invalid_request_error",
                "websocket_refused",
            )
        }),
    };
    let mut response = match answer {
        Ok(response) => response,
        Err((status, content_type, body)) => {
            let mut response = Response::new(body.tracked(tracker));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            response
        }
    };
    common_headers(shared, request_id, response.headers_mut());
    response
}

/// Close a connection whose handshake failed the way a polite server does: FIN after the
/// alert, then read what the client still sends until it hangs up (at most a second). In
/// TLS 1.3 a client learns that its certificate was refused only after its handshake ended,
/// often with its first request already sent; closing with that request unread would send a
/// RST, which discards the alert in the client's receive queue, and the client would see a
/// bare broken pipe instead of the refusal (a test flake, 1 run in 4 on a loaded machine).
async fn linger(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while matches!(stream.read(&mut sink).await, Ok(1..)) {}
    })
    .await;
}
