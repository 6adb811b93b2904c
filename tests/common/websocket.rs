//! WebSocket clients: tokio-tungstenite over HTTP/1.1 (the handshake as client libraries send
//! it) and over an HTTP/2 extended CONNECT stream (RFC 8441, which tungstenite cannot open
//! itself), plus helpers to send fragmented messages and read with a deadline.

use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::client::chain;
use super::CALL_TIMEOUT;

/// A WebSocket over a plain TCP connection.
pub type Ws = WebSocketStream<TcpStream>;
/// A WebSocket over an HTTP/2 stream.
pub type H2Ws = WebSocketStream<TokioIo<Upgraded>>;

/// What a refused handshake got back.
#[derive(Debug)]
pub struct Refused {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// A successful handshake: the socket, the 101's headers and the key the client sent.
pub struct Opened<S> {
    pub ws: WebSocketStream<S>,
    pub headers: HeaderMap,
    pub key: String,
}

/// Open `ws://addr{path}` with extra `headers`; a non-101 answer is `Err(Refused)`.
pub async fn connect(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Opened<TcpStream>, Box<Refused>> {
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (name, value) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let key = req.headers()["sec-websocket-key"]
        .to_str()
        .unwrap()
        .to_owned();
    let stream = TcpStream::connect(addr).await.unwrap();
    let handshake = tokio_tungstenite::client_async(req, stream);
    match tokio::time::timeout(CALL_TIMEOUT, handshake).await {
        Err(_) => panic!("GET {path}: no handshake answer within {CALL_TIMEOUT:?}"),
        Ok(Ok((ws, resp))) => Ok(Opened {
            ws,
            headers: resp.headers().clone(),
            key,
        }),
        Ok(Err(WsError::Http(resp))) => Err(Box::new(Refused {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned(),
        })),
        Ok(Err(e)) => panic!("GET {path}: WebSocket handshake failed: {}", chain(&e)),
    }
}

/// Open a WebSocket on `path` as an HTTP/2 extended CONNECT (`:protocol websocket`) over a
/// fresh h2c connection; a non-2xx answer is `Err(Refused)`.
pub async fn connect_h2(
    addr: SocketAddr,
    path: &str,
) -> Result<Opened<TokioIo<Upgraded>>, Box<Refused>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::builder()
        .method(Method::CONNECT)
        .uri(format!("http://{addr}{path}"))
        .header("sec-websocket-version", "13")
        .body(Empty::<Bytes>::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let exchange = async {
        let mut resp = sender
            .send_request(req)
            .await
            .unwrap_or_else(|e| panic!("CONNECT {path}: h2 request failed: {}", chain(&e)));
        if !resp.status().is_success() {
            let (head, body) = resp.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            return Err(Box::new(Refused {
                status: head.status,
                headers: head.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            }));
        }
        let headers = resp.headers().clone();
        let upgraded = hyper::upgrade::on(&mut resp)
            .await
            .unwrap_or_else(|e| panic!("CONNECT {path}: no upgraded stream: {e}"));
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
        Ok(Opened {
            ws,
            headers,
            key: String::new(),
        })
    };
    tokio::time::timeout(CALL_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("CONNECT {path}: no answer within {CALL_TIMEOUT:?}"))
}

/// The next message, failing the test on an error, the end of the stream or a timeout.
pub async fn next<S>(ws: &mut WebSocketStream<S>) -> Message
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(CALL_TIMEOUT, ws.next()).await {
        Err(_) => panic!("no WebSocket message within {CALL_TIMEOUT:?}"),
        Ok(None) => panic!("the WebSocket ended"),
        Ok(Some(Err(e))) => panic!("WebSocket read failed: {}", chain(&e)),
        Ok(Some(Ok(message))) => message,
    }
}

/// Send `message` and return the echo.
pub async fn echo<S>(ws: &mut WebSocketStream<S>, message: Message) -> Message
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ws.send(message).await.unwrap();
    next(ws).await
}

/// Send one text message as a first frame and continuation frames, one per part.
pub async fn send_fragmented<S>(ws: &mut WebSocketStream<S>, parts: &[&str])
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for (i, part) in parts.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let last = i + 1 == parts.len();
        let frame = Frame::message(Bytes::copy_from_slice(part.as_bytes()), opcode, last);
        ws.feed(Message::Frame(frame)).await.unwrap();
    }
    ws.flush().await.unwrap();
}

/// Close from the client side and read until the server's close frame and the end.
pub async fn close<S>(ws: &mut WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    ws.close(None).await.unwrap();
    let drain = async {
        let mut saw_close = false;
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Close(_)) => saw_close = true,
                Ok(other) => panic!("unexpected message while closing: {other:?}"),
                Err(e) => panic!("close handshake failed: {}", chain(&e)),
            }
        }
        saw_close
    };
    let saw_close = tokio::time::timeout(CALL_TIMEOUT, drain)
        .await
        .unwrap_or_else(|_| panic!("the close handshake did not finish within {CALL_TIMEOUT:?}"));
    assert!(saw_close, "the server answered no close frame");
}
