//! A deliberately cheap OpenAI-style upstream for the end-to-end load harness
//! (`bash benches/load/run.sh`): the same bytes for every request, so the figures measure the
//! proxy in front of it, not the mock.
//!
//! `POST …/chat/completions` answers a canned chat completion (~0.5 KB, `content-length`), or,
//! when the body contains `"stream":true` (or `"stream": true`), a token-by-token SSE stream:
//! one frame per event, `data: [DONE]` last. Anything else gets 404. The request body is read
//! whole (like a real provider) but never parsed. HTTP/1.1 keep-alive only (what the gateway,
//! nginx and wrk speak to it). Unlike `switchyard::mock::MockProvider` (which parses every body
//! into a `serde_json::Value` and generates fresh ids), per-request work here is a body scan.
//!
//! Usage: `load_upstream [ADDR]` (default `127.0.0.1:0`); prints `listening on ADDR` once bound,
//! then serves until killed.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Content tokens in a streamed answer.
const STREAM_TOKENS: usize = 20;

const COMPLETION: &str = r#"{"id":"chatcmpl-load0000000000000000000000000000","object":"chat.completion","created":1700000000,"model":"gpt-4o","system_fingerprint":"fp_load","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the load upstream. This is a canned answer of a realistic size for a short chat completion.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":300,"completion_tokens":24,"total_tokens":324}}"#;

const TOKENS: [&str; 5] = [" lorem", " ipsum", " dolor", " sit", " amet"];

type Body = Either<
    Full<Bytes>,
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>,
>;

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
    let body = req.into_body().collect().await?.to_bytes();
    let mut resp = if !is_chat {
        let mut r = Response::new(Either::Left(Full::new(Bytes::from_static(
            br#"{"error":{"message":"not found","type":"invalid_request_error"}}"#,
        ))));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    } else if wants_stream(&body) {
        let frames: Vec<Result<Frame<Bytes>, Infallible>> =
            events.into_iter().map(|e| Ok(Frame::data(e))).collect();
        let mut r = Response::new(Either::Right(StreamBody::new(futures_util::stream::iter(
            frames,
        ))));
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
    let listener = TcpListener::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?);
    let events = sse_events();
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
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, events.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
