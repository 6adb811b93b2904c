//! A deliberately cheap OpenAI-style upstream for the end-to-end load harness
//! (`bash benches/load/run.sh`): the same bytes for every request, so the figures measure the
//! proxy in front of it, not the mock.
//!
//! `POST …/chat/completions` answers a canned chat completion (~0.5 KB, `content-length`), or,
//! when the body contains `"stream":true` (or `"stream": true`), a token-by-token SSE stream:
//! one frame per event, `data: [DONE]` last. Anything else gets 404. The request body is read
//! whole (like a real provider) but never parsed. Unlike `switchyard::mock::MockProvider`
//! (which parses every body into a `serde_json::Value` and generates fresh ids), per-request
//! work here is a body scan.
//!
//! Hold mode, for the idle-streams memory test: a streaming request with the header
//! `x-load-hold: 1` gets the SSE headers and the first event only, and then the stream stays
//! open and silent until the peer goes away (connection closed, or the HTTP/2 stream reset),
//! which drops it. A held stream owns no task and no timer, so it costs no CPU while it waits.
//!
//! One port speaks both HTTP/1.1 with keep-alive (what wrk, nginx and the gateway use by
//! default) and HTTP/2 cleartext with prior knowledge (h2c, for a gateway upstream with
//! `http2 = true`), told apart by the connection preface; HTTP/2 allows 100,000 concurrent
//! streams per connection so that no held stream is refused.
//!
//! Usage: `load_upstream [ADDR]` (default `127.0.0.1:0`); prints `listening on ADDR` once bound,
//! then serves until killed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpSocket;

/// Content tokens in a streamed answer.
const STREAM_TOKENS: usize = 20;

/// HTTP/2 streams allowed at once on one connection: more than the idle-streams test opens.
const H2_MAX_STREAMS: u32 = 100_000;

/// Listen backlog: room for every connection the load client opens at once (tokio's
/// `TcpListener::bind` gives 128).
const BACKLOG: u32 = 1024;

/// The request header that asks for a held stream (value `1`).
const HOLD_HEADER: &str = "x-load-hold";

const COMPLETION: &str = r#"{"id":"chatcmpl-load0000000000000000000000000000","object":"chat.completion","created":1700000000,"model":"gpt-4o","system_fingerprint":"fp_load","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the load upstream. This is a canned answer of a realistic size for a short chat completion.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":300,"completion_tokens":24,"total_tokens":324}}"#;

const TOKENS: [&str; 5] = [" lorem", " ipsum", " dolor", " sit", " amet"];

type Body = Either<Full<Bytes>, Sse>;

/// A streamed answer: one data frame per event, then either the end of the body or, when
/// held, a body that never ends (it is dropped when hyper sees the peer go away).
struct Sse {
    events: std::vec::IntoIter<Bytes>,
    hold: bool,
}

impl hyper::body::Body for Sse {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.events.next() {
            Some(event) => Poll::Ready(Some(Ok(Frame::data(event)))),
            // No waker is kept: nothing will ever wake a held stream. hyper still polls the
            // connection (HTTP/1.1 watches for EOF, HTTP/2 for a reset) and drops this body
            // when the peer leaves.
            None if self.hold => Poll::Pending,
            None => Poll::Ready(None),
        }
    }
}

/// The SSE events of one streamed answer: role, one per token, finish, `[DONE]`.
fn sse_events() -> Vec<Bytes> {
    let chunk = |delta: &str, finish: &str| {
        Bytes::from(format!(
            "data: {{\"id\":\"chatcmpl-load\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"gpt-4o\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]}}\n\n"
        ))
    };
    let mut events = vec![chunk(r#"{"role":"assistant","content":""}"#, "null")];
    for i in 0..STREAM_TOKENS {
        let token = TOKENS[i % TOKENS.len()];
        events.push(chunk(&format!(r#"{{"content":"{token}"}}"#), "null"));
    }
    events.push(chunk("{}", r#""stop""#));
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn wants_stream(body: &[u8]) -> bool {
    contains(body, br#""stream":true"#) || contains(body, br#""stream": true"#)
}

async fn handle(
    req: Request<Incoming>,
    events: Vec<Bytes>,
) -> Result<Response<Body>, hyper::Error> {
    let is_chat = req.method() == Method::POST && req.uri().path().ends_with("/chat/completions");
    let hold = req
        .headers()
        .get(HOLD_HEADER)
        .is_some_and(|v| v.as_bytes() == b"1");
    let body = req.into_body().collect().await?.to_bytes();
    let mut resp = if !is_chat {
        let mut r = Response::new(Either::Left(Full::new(Bytes::from_static(
            br#"{"error":{"message":"not found","type":"invalid_request_error"}}"#,
        ))));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    } else if wants_stream(&body) {
        let events = if hold {
            events.into_iter().take(1).collect()
        } else {
            events
        };
        let mut r = Response::new(Either::Right(Sse {
            events: events.into_iter(),
            hold,
        }));
        r.headers_mut().insert(
            CONTENT_TYPE,
            http::HeaderValue::from_static("text/event-stream"),
        );
        return Ok(r);
    } else {
        Response::new(Either::Left(Full::new(Bytes::from_static(
            COMPLETION.as_bytes(),
        ))))
    };
    resp.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    // `content-length` comes from `Full`'s exact size hint.
    Ok(resp)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(a) => a.parse().map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{a}: {e}"))
        })?,
        None => SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(BACKLOG)?;
    println!("listening on {}", listener.local_addr()?);
    let events = sse_events();
    // HTTP/1.1 keeps hyper's defaults (keep-alive on); HTTP/2 only raises the stream limit.
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(H2_MAX_STREAMS);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let events = events.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, events.clone()));
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
