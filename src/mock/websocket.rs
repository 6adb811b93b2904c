//! The mock's WebSocket endpoint: a handshake (`GET` + `Upgrade: websocket`) on `/realtime`
//! or `/responses` (behind any prefix [`super::routes::api_segments`] knows) is answered 101,
//! and the session echoes every message back whole (text and binary; fragmented messages
//! come back reassembled), answers pings with pongs and closes when the client closes.
//!
//! A handshake elsewhere, or without a valid `Sec-WebSocket-Key` / `Sec-WebSocket-Version:
//! 13`, is answered 400; `x-mock-status` answers with that status instead. The handshake is
//! recorded like any request; it is `completed` once the session ended cleanly.

use futures_util::{SinkExt, StreamExt};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::body::MockBody;
use super::record::Tracker;
use super::routes::api_segments;

/// A `GET` asking to upgrade to `websocket`.
pub(crate) fn is_handshake(req: &Request<Incoming>) -> bool {
    req.method() == Method::GET
        && req.headers().get_all(header::UPGRADE).iter().any(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"websocket"))
        })
}

/// Why the mock refuses a handshake.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("the mock serves WebSockets on /realtime and /responses only")]
    Path,
    #[error("a WebSocket handshake needs Sec-WebSocket-Key and Sec-WebSocket-Version: 13")]
    Handshake,
}

/// Answer a handshake: 101 and an echo session (spawned, ended on `cancel`; it takes the
/// tracker), or the refusal. Common mock headers are the caller's.
pub(crate) fn answer(
    mut req: Request<Incoming>,
    tracker: &mut Option<Tracker>,
    cancel: watch::Receiver<bool>,
) -> Result<Response<MockBody>, Refusal> {
    let segs = api_segments(req.uri().path());
    if !matches!(segs.as_slice(), ["realtime"] | ["responses"]) {
        return Err(Refusal::Path);
    }
    let headers = req.headers();
    let version_13 = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let accept = match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(key) if version_13 && !key.is_empty() => derive_accept_key(key.as_bytes()),
        _ => return Err(Refusal::Handshake),
    };
    let accept = HeaderValue::try_from(accept).map_err(|_| Refusal::Handshake)?;
    let protocol = first_protocol(headers);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let tracker = tracker.take();
    tokio::spawn(async move {
        tokio::select! {
            () = echo(on_upgrade, tracker) => {}
            () = super::server::cancelled(cancel) => {}
        }
    });
    let mut response = Response::new(MockBody::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let out = response.headers_mut();
    out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    out.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    if let Some(protocol) = protocol {
        out.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    Ok(response)
}

/// The first subprotocol the client offered: a client that offers some needs one picked.
fn first_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let offered = headers.get(header::SEC_WEBSOCKET_PROTOCOL)?.to_str().ok()?;
    let first = offered.split(',').next()?.trim();
    HeaderValue::from_str(first).ok().filter(|v| !v.is_empty())
}

/// Echo messages until the client closes or the connection breaks.
async fn echo(on_upgrade: OnUpgrade, tracker: Option<Tracker>) {
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(error) => {
            tracing::debug!(%error, "mock WebSocket upgrade failed");
            return;
        }
    };
    let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
    while let Some(message) = ws.next().await {
        let sent = match message {
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => ws.send(message).await,
            // The pong is queued by tungstenite; flush it now rather than with the next read.
            Ok(Message::Ping(_)) => ws.flush().await,
            // The close reply goes out with the next read, which then ends the stream.
            Ok(Message::Close(_) | Message::Pong(_) | Message::Frame(_)) => Ok(()),
            Err(error) => Err(error),
        };
        if let Err(error) = sent {
            tracing::debug!(%error, "mock WebSocket session broke off");
            return;
        }
    }
    if let Some(tracker) = tracker {
        tracker.complete();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_first_offered_subprotocol() {
        let mut h = HeaderMap::new();
        assert!(first_protocol(&h).is_none());
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("realtime, openai-beta.realtime-v1"),
        );
        assert_eq!(first_protocol(&h).unwrap(), "realtime");
    }
}
