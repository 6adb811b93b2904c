//! Upgraded connections: WebSocket handshakes relayed to the upstream of their class, then
//! the session's bytes copied both ways until either side ends it.
//!
//! A handshake takes the normal request path (classify → decide → forward → record), with
//! three hooks in `proxy/mod.rs`:
//!
//! 1. [`ClientUpgrade::take`], before anything else: the client's `OnUpgrade` leaves the
//!    request (which is rebuilt for the upstream). An HTTP/2 extended CONNECT (RFC 8441,
//!    `:protocol = websocket`) becomes the HTTP/1.1 handshake it stands for (`GET` +
//!    `Upgrade: websocket`), so it is classified as what the upstream will see.
//! 2. [`Handshake::settle`], once the class and its upstream are decided: a `GET` with
//!    `Upgrade: websocket` on a WebSocket route (`/responses`, `/realtime*`, the routes of the
//!    `websocket.upgrade` rule, whichever rule decided the class) from a connection that can
//!    be upgraded is relayed: `Connection: upgrade` and `Upgrade: websocket` go upstream with
//!    the client's `Sec-WebSocket-*` headers (for an HTTP/2 client the gateway makes the key).
//!    Nothing else is: `Upgrade` is stripped as before, and an extended CONNECT that would not
//!    be relayed is refused like any CONNECT.
//! 3. [`Handshake::relay`] when the upstream answered 101: the client gets the 101 (HTTP/2:
//!    200, after the upstream's `Sec-WebSocket-Accept` was checked), and a task relays the
//!    two upgraded connections. Any other answer is passed back as a normal response
//!    ([`Handshake::refused`]).
//!
//! Choices:
//! - **Timeouts.** A session is not HTTP: the idle and request timeouts of responses do not
//!   apply, and the gateway adds none (Realtime sessions may be silent for minutes) except
//!   `limits.send_timeout` on writes to the client, which stays on the upgraded socket: a
//!   client that stops reading what the upstream sends is cut (logged, not counted). A session
//!   ends when both peers closed (the close handshake, then FIN; a half-close is passed on and
//!   the other direction keeps flowing), when either fails (reset), or 10 s after one peer
//!   ended if the other does not follow (a WebSocket has no use for a half-open connection;
//!   `relay.rs`). A peer that vanishes silently is found by TCP keepalive on the upstream
//!   side (the upstream connector sets it, 60 s) and by the providers' own session limits;
//!   the client-facing sockets carry no keepalive today, so a vanished client's session lasts
//!   until the upstream ends it.
//! - **Record and in-flight.** The handshake is the request: it is recorded once, when the
//!   101 goes back (status 101; 200 for an HTTP/2 client, the status it got), and leaves the
//!   in-flight gauge then. The session is counted by `switchyard_websocket_sessions_open` and
//!   `switchyard_websocket_bytes_total`, and logged at debug level when it ends.
//! - **Shutdown.** Relay tasks are not drained: a session outlives the gateway's listeners and
//!   ends with its peers or with the process.
//! - **Upstream protocol.** The handshake goes over the upstream's pooled client; an upstream
//!   reached over HTTP/2 (configured `http2`, or h2 picked by ALPN) cannot take an HTTP/1.1
//!   upgrade, answers something other than 101, and the handshake counts as `refused`.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::ext::Protocol;
use hyper::upgrade::OnUpgrade;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

mod relay;

use self::relay::Session;
use super::body::{InFlight, ProxyBody};
use super::error::ProxyError;
use super::headers::{
    provider_request_id, strip_hop_by_hop, Upgrade, UPSTREAM_ONLY_RESPONSE_HEADERS,
};
use super::record::{Outcome, Pending};
use crate::classify::{Decision, RouteId};
use crate::gateway::Gateway;
use crate::upstream::{UpstreamClient, UpstreamError};

/// Route templates (the end of a route label, after its prefix) on which a `GET` with
/// `Upgrade: websocket` is a WebSocket handshake: those of the `websocket.upgrade` rule.
const WEBSOCKET_TEMPLATES: [&str; 7] = [
    "/responses",
    "/realtime",
    "/realtime/calls",
    "/realtime/client_secrets",
    "/realtime/sessions",
    "/realtime/transcription_sessions",
    "/realtime/*",
];

/// Whether `headers` carry the `Connection: upgrade` that [`Handshake::settle`] sets on a
/// handshake it relays. The client's own `Connection` header is removed before classifying,
/// so nothing else carries it: `UpstreamClient::prepare_headers` keeps `Upgrade` only then.
pub fn is_relayed(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"upgrade"))
}

/// How the client asked to upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientSide {
    /// HTTP/1.1 `Upgrade`: the upstream's 101 goes back as it is.
    Http1,
    /// HTTP/2 extended CONNECT: answered 200; the gateway makes and checks the key.
    ExtendedConnect,
}

/// The client connection's pending upgrade, taken out of the request.
pub struct ClientUpgrade {
    on_upgrade: OnUpgrade,
    side: ClientSide,
}

impl ClientUpgrade {
    /// Take the client's upgrade out of `parts`, if its connection offers one: an HTTP/1.1
    /// request with `Upgrade`, or an HTTP/2 extended CONNECT for `websocket` (rewritten to
    /// `GET` + `Upgrade: websocket`). A plain CONNECT is left alone, to be refused.
    pub fn take(parts: &mut Parts) -> Option<ClientUpgrade> {
        if parts.method != Method::CONNECT {
            let on_upgrade = parts.extensions.remove::<OnUpgrade>()?;
            return Some(ClientUpgrade {
                on_upgrade,
                side: ClientSide::Http1,
            });
        }
        let websocket = parts
            .extensions
            .get::<Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
        if !websocket || parts.version != Version::HTTP_2 {
            return None;
        }
        let on_upgrade = parts.extensions.remove::<OnUpgrade>()?;
        parts.method = Method::GET;
        parts
            .headers
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        Some(ClientUpgrade {
            on_upgrade,
            side: ClientSide::ExtendedConnect,
        })
    }
}

/// A WebSocket handshake on its way to the upstream. Counted in
/// `switchyard_websocket_upgrades_total` exactly once: `ok` when relayed, `refused` when the
/// upstream answered otherwise, `error` if dropped without an answer.
pub struct Handshake {
    gw: Arc<Gateway>,
    client: Option<OnUpgrade>,
    side: ClientSide,
    /// The `Sec-WebSocket-Accept` the upstream must answer (extended CONNECT only: an
    /// HTTP/1.1 client checks its own).
    accept: Option<String>,
    route: RouteId,
    upstream: String,
    counted: bool,
}

impl Handshake {
    /// Decide whether the client's upgrade is relayed, and prepare `parts` for it. `Ok(None)`:
    /// not a handshake (`Upgrade` is stripped on the way upstream). An extended CONNECT that
    /// is not a relayable handshake is refused as the CONNECT it is.
    pub fn settle(
        gw: &Arc<Gateway>,
        client: Option<ClientUpgrade>,
        decision: &Decision,
        upstream: &UpstreamClient,
        parts: &mut Parts,
    ) -> Result<Option<Handshake>, ProxyError> {
        let Some(client) = client else {
            return Ok(None);
        };
        let route = gw.classifier.route_label(decision.route);
        let refuse_connect = || match client.side {
            ClientSide::Http1 => Ok(None),
            ClientSide::ExtendedConnect => Err(ProxyError::MethodNotAllowed(Method::CONNECT)),
        };
        if !is_handshake(&parts.method, &parts.headers, route) {
            return refuse_connect();
        }
        let headers = &mut parts.headers;
        let accept = match client.side {
            ClientSide::Http1 => None,
            ClientSide::ExtendedConnect => {
                let key = generate_key();
                let accept = derive_accept_key(key.as_bytes());
                let Ok(key) = HeaderValue::try_from(key) else {
                    return refuse_connect();
                };
                headers.insert(header::SEC_WEBSOCKET_KEY, key);
                headers
                    .entry(header::SEC_WEBSOCKET_VERSION)
                    .or_insert(HeaderValue::from_static("13"));
                Some(accept)
            }
        };
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        Ok(Some(Handshake {
            gw: Arc::clone(gw),
            client: Some(client.on_upgrade),
            side: client.side,
            accept,
            route: decision.route,
            upstream: upstream.name().to_owned(),
            counted: false,
        }))
    }

    /// The upstream answered something other than 101: count it; the caller passes the
    /// answer on as a normal response.
    pub fn refused(mut self) {
        self.counted = true;
        let route = self.gw.classifier.route_label(self.route);
        self.gw
            .metrics
            .websocket
            .upgrade_refused(route, &self.upstream);
    }

    /// The upstream answered 101: record the handshake, start the relay and return the answer
    /// for the client (101, or 200 to an HTTP/2 extended CONNECT).
    pub fn relay(
        mut self,
        mut resp: Response<Incoming>,
        mut pending: Pending,
        in_flight: InFlight,
        decision: &Decision,
        request_id: &Option<HeaderValue>,
    ) -> Response<ProxyBody> {
        // The handshake is over either way: a session is not an in-flight request.
        drop(in_flight);
        let upstream_io = hyper::upgrade::on(&mut resp);
        let (mut head, _) = resp.into_parts();
        let accepted = self.accept.as_ref().is_none_or(|want| {
            head.headers
                .get(header::SEC_WEBSOCKET_ACCEPT)
                .is_some_and(|got| got.as_bytes() == want.as_bytes())
        });
        let Some(client_io) = self.client.take().filter(|_| accepted) else {
            // Dropping `self` counts the error; dropping `upstream_io` closes the connection.
            let error = ProxyError::Upstream {
                error: UpstreamError::Protocol {
                    upstream: self.upstream.clone(),
                    detail: "it answered the WebSocket handshake without the right \
                             Sec-WebSocket-Accept"
                        .to_owned(),
                },
                class: decision.class,
            };
            return super::refuse(&self.gw, pending, Some(decision), &error, request_id);
        };
        pending.upstream_request_id(provider_request_id(&head.headers));
        strip_hop_by_hop(&mut head.headers, Upgrade::Strip);
        for name in UPSTREAM_ONLY_RESPONSE_HEADERS {
            head.headers.remove(name);
        }
        head.headers.remove(header::CONTENT_LENGTH);
        match self.side {
            ClientSide::Http1 => {
                head.headers
                    .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                head.headers
                    .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            }
            ClientSide::ExtendedConnect => {
                head.status = StatusCode::OK;
                head.headers.remove(header::SEC_WEBSOCKET_ACCEPT);
            }
        }
        super::own_request_id(&mut head.headers, request_id);
        super::decision_headers(&self.gw, &mut head.headers, decision);
        if let Some(record) = pending.into_record(head.status) {
            record.finish(Outcome::Completed, 0);
        }

        self.counted = true;
        let websocket = &self.gw.metrics.websocket;
        let route = self.gw.classifier.route_label(self.route);
        websocket.upgrade_ok(route, &self.upstream);
        let session = Session::new(
            websocket.session_open(&self.upstream),
            websocket.session_bytes(&self.upstream),
            self.upstream.clone(),
            request_id.clone(),
        );
        tokio::spawn(session.run(client_io, upstream_io));
        Response::from_parts(head, ProxyBody::local(Full::new(Bytes::new())))
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        if !self.counted {
            let route = self.gw.classifier.route_label(self.route);
            self.gw
                .metrics
                .websocket
                .upgrade_error(route, &self.upstream);
        }
    }
}

/// A `GET` with `Upgrade: websocket` on a WebSocket route (`route` is its label).
fn is_handshake(method: &Method, headers: &HeaderMap, route: &str) -> bool {
    let websocket = headers.get_all(header::UPGRADE).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"websocket"))
    });
    method == Method::GET && websocket && WEBSOCKET_TEMPLATES.iter().any(|t| route.ends_with(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(method: Method, version: Version) -> Parts {
        let mut req = Request::new(());
        *req.method_mut() = method;
        *req.version_mut() = version;
        *req.uri_mut() = http::Uri::from_static("/v1/realtime");
        req.into_parts().0
    }

    #[test]
    fn handshake_needs_get_upgrade_websocket_and_a_websocket_route() {
        let mut ws = HeaderMap::new();
        ws.insert(header::UPGRADE, HeaderValue::from_static("h2c, WebSocket"));
        let none = HeaderMap::new();
        let get = Method::GET;
        for route in [
            "/v1/responses",
            "/v1/realtime",
            "/openai/v1/realtime/*",
            "/openai/deployments/{deployment}/realtime",
            "/realtime/realtime/sessions",
        ] {
            assert!(is_handshake(&get, &ws, route), "{route}");
        }
        for route in [
            "/v1/responses/{id}",
            "/v1/chat/completions",
            "other",
            "/realtime/chat/completions",
        ] {
            assert!(!is_handshake(&get, &ws, route), "{route}");
        }
        assert!(!is_handshake(&Method::POST, &ws, "/v1/responses"));
        assert!(!is_handshake(&get, &none, "/v1/responses"));
    }

    #[test]
    fn only_an_extended_connect_for_websocket_is_rewritten() {
        // A plain CONNECT (with or without an upgrade) stays a CONNECT, to be refused.
        let mut plain = parts(Method::CONNECT, Version::HTTP_2);
        plain.extensions.insert(no_upgrade());
        assert!(ClientUpgrade::take(&mut plain).is_none());
        assert_eq!(plain.method, Method::CONNECT);

        let mut other = parts(Method::CONNECT, Version::HTTP_2);
        other
            .extensions
            .insert(Protocol::from_static("connect-udp"));
        assert!(ClientUpgrade::take(&mut other).is_none());
        assert_eq!(other.method, Method::CONNECT);

        // Without an upgradable connection there is nothing to take either.
        let mut bare = parts(Method::CONNECT, Version::HTTP_2);
        bare.extensions.insert(Protocol::from_static("websocket"));
        assert!(ClientUpgrade::take(&mut bare).is_none());
        assert_eq!(bare.method, Method::CONNECT);

        let mut ws = parts(Method::CONNECT, Version::HTTP_2);
        ws.extensions.insert(Protocol::from_static("websocket"));
        ws.extensions.insert(no_upgrade());
        let taken = ClientUpgrade::take(&mut ws).map(|u| u.side);
        assert_eq!(taken, Some(ClientSide::ExtendedConnect));
        assert_eq!(ws.method, Method::GET);
        assert_eq!(ws.headers[header::UPGRADE], "websocket");
        assert!(ws.extensions.get::<OnUpgrade>().is_none());

        // A GET without an upgrade offers nothing; with one it is an HTTP/1.1 upgrade.
        let mut get = parts(Method::GET, Version::HTTP_11);
        assert!(ClientUpgrade::take(&mut get).is_none());
        get.extensions.insert(no_upgrade());
        let taken = ClientUpgrade::take(&mut get).map(|u| u.side);
        assert_eq!(taken, Some(ClientSide::Http1));
    }

    #[test]
    fn relayed_means_connection_upgrade() {
        let mut h = HeaderMap::new();
        assert!(!is_relayed(&h));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        assert!(is_relayed(&h));
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        assert!(!is_relayed(&h));
    }

    /// hyper makes real `OnUpgrade`s only inside its connections (the integration tests
    /// cover those); this is the empty one it hands out for a message without an upgrade.
    fn no_upgrade() -> OnUpgrade {
        hyper::upgrade::on(Request::new(()))
    }
}
