//! Phase 3, forward: which endpoint of the chosen upstream, the request built for it, and
//! the attempts.
//!
//! `locate` decides where in the pool a request belongs (the endpoint holding its state, the
//! owner of its session, or anywhere). `send` then tries endpoints of that one upstream only:
//! a retry goes to another endpoint of the same upstream, and only when nothing was sent
//! (the connection failed) or the request is idempotent and failed before any answer. The
//! body of a retry is the same buffered bytes; a streamed body is never replayed.

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use prometheus::IntCounter;
use tokio::time::Instant;

use super::error::ProxyError;
use super::record::Pending;
use super::{same_meaning_upstream, upstream_body, ReadBody};
use crate::affinity::Lookup;
use crate::classify::{Class, Decision, RouteId};
use crate::config::OnEndpointDown;
use crate::gateway::Gateway;
use crate::metrics::RetryReason;
use crate::upstream::{Endpoint, Lease, Load, SendError, Target, UpstreamClient, UpstreamError};

/// A request ready for any endpoint: mapped per endpoint and signed in `for_endpoint`.
pub(super) struct Prepared {
    pub method: Method,
    pub pq: PathAndQuery,
    pub headers: HeaderMap,
    pub body: ReadBody,
}

/// Where in the pool a request belongs.
pub(super) enum Located {
    Anywhere,
    /// The affinity table says this endpoint holds the state the request refers to.
    Pinned {
        index: usize,
        holder: String,
    },
    /// A session header, hashed onto the ring.
    Session {
        key: HeaderValue,
        holder: String,
    },
}

impl Located {
    fn target(&self) -> Target<'_> {
        match self {
            Located::Anywhere => Target::Balanced,
            Located::Pinned { index, .. } => Target::Pinned(*index),
            Located::Session { key, .. } => Target::Session(key.as_bytes()),
        }
    }

    fn holder(&self) -> Option<&str> {
        match self {
            Located::Anywhere => None,
            Located::Pinned { holder, .. } | Located::Session { holder, .. } => Some(holder),
        }
    }
}

/// Where a stateful request to a pool belongs: the endpoint that holds the state it refers
/// to (learned from earlier responses), the ring owner of its session header, or anywhere.
/// Stateless requests and lone endpoints are never looked up.
pub(super) async fn locate(
    gw: &Gateway,
    upstream: &UpstreamClient,
    class: Class,
    prepared: &Prepared,
) -> Located {
    let pool = upstream.pool();
    if class != Class::Stateful || !pool.is_pool() {
        return Located::Anywhere;
    }
    let body = match &prepared.body {
        ReadBody::Buffered(bytes) => Some(&bytes[..]),
        ReadBody::Unread(_) => None,
    };
    if let (Some(table), Some(id)) = (
        gw.affinity.as_deref(),
        crate::observe::request_state_id(prepared.pq.path(), body),
    ) {
        match table.lookup(upstream.name(), &id.value).await {
            Lookup::Hit(name) => match pool.index_of(&name) {
                Some(index) => {
                    return Located::Pinned {
                        index,
                        holder: format!("{}", id.value),
                    }
                }
                None => tracing::warn!(
                    upstream = upstream.name(),
                    endpoint = %name,
                    id = %id.value,
                    "the affinity table names an endpoint this upstream no longer has"
                ),
            },
            // Unknown here (expired, or created before the table knew it), or the store
            // failed (counted by the table): the request is balanced.
            Lookup::Miss | Lookup::Error => {}
        }
    }
    for name in &gw.config.affinity.session_headers {
        if let Some(value) = prepared.headers.get(name) {
            if !value.as_bytes().iter().all(|b| b.is_ascii_whitespace()) {
                return Located::Session {
                    key: value.clone(),
                    holder: format!("session header {name}"),
                };
            }
        }
    }
    Located::Anywhere
}

/// A response head from an endpoint.
pub(super) struct Forwarded {
    pub response: Response<Incoming>,
    /// When the first-byte clock started (the request was sent).
    pub sent: Instant,
    pub endpoint: Arc<str>,
    /// Holds the endpoint's load until the response ends.
    pub load: Option<Load>,
    /// The HTTP/1.1 connection the response came on; released when the body has been read
    /// to its end.
    pub lease: Option<Lease>,
}

/// Send to the endpoint the pool picks; on a retryable failure, to another one of the same
/// upstream, at most `retries` more times.
#[allow(clippy::too_many_arguments)]
pub(super) async fn send(
    gw: &Gateway,
    upstream: &UpstreamClient,
    decision: &Decision,
    prepared: Prepared,
    located: &Located,
    deadline: Instant,
    request_counter: &IntCounter,
    pending: &mut Pending,
) -> Result<Forwarded, ProxyError> {
    let pool = upstream.pool();
    let on_down = gw.config.affinity.on_endpoint_down;
    let attempts = if pool.is_pool() {
        1 + upstream.retries()
    } else {
        1
    };
    let held = located.holder().is_some() && on_down == OnEndpointDown::Fail;
    let Prepared {
        method,
        pq,
        mut headers,
        body,
    } = prepared;
    let mut body = Some(body);
    let mut tried: Vec<usize> = Vec::new();
    let mut last_error: Option<ProxyError> = None;
    for attempt in 0..attempts {
        let index = match pool.pick(located.target(), on_down, &tried) {
            Ok(index) => index,
            Err(error) => {
                return Err(last_error.unwrap_or_else(|| ProxyError::Pool {
                    upstream: upstream.name().to_owned(),
                    class: decision.class,
                    error,
                    holder: located.holder().map(str::to_owned),
                }))
            }
        };
        let Some(endpoint) = pool.endpoints().get(index) else {
            break;
        };
        pending.endpoint(endpoint.name.clone());
        let more = attempt + 1 < attempts && !held;
        let attempt_headers = if more {
            headers.clone()
        } else {
            std::mem::take(&mut headers)
        };
        // Buffered bytes can be sent again; a streamed body goes once.
        let attempt_body = match body.take() {
            Some(ReadBody::Buffered(bytes)) => {
                body = Some(ReadBody::Buffered(bytes.clone()));
                ReadBody::Buffered(bytes)
            }
            Some(unread) => unread,
            None => break,
        };
        let (parts, attempt_body) = for_endpoint(
            gw,
            upstream,
            endpoint,
            decision.route,
            &method,
            &pq,
            attempt_headers,
            attempt_body,
        )
        .await?;
        let limit = gw.config.limits.max_body_bytes;
        let (up_body, uploaded) = upstream_body(
            attempt_body,
            limit,
            request_counter.clone(),
            pending.request_bytes(),
        );
        let load = pool.start(index);
        match upstream
            .send(Request::from_parts(parts, up_body), uploaded, deadline)
            .await
        {
            Ok((response, sent, lease)) => {
                pool.success(index);
                return Ok(Forwarded {
                    response,
                    sent,
                    endpoint: endpoint.name.clone(),
                    load,
                    lease,
                });
            }
            Err(error) => {
                drop(load);
                let reason = match &error {
                    SendError::Upstream(
                        UpstreamError::Connect { .. }
                        | UpstreamError::ConnectTimeout { .. }
                        | UpstreamError::Tls { .. },
                    ) => {
                        pool.connect_failure(index);
                        Some(RetryReason::Connect)
                    }
                    SendError::Upstream(UpstreamError::Protocol { .. }) if idempotent(&method) => {
                        Some(RetryReason::Reset)
                    }
                    _ => None,
                };
                let error = ProxyError::from_send(error, decision.class, upstream.name());
                match reason {
                    Some(reason) if more && body.is_some() => {
                        gw.metrics.pool.retry(upstream.name(), reason);
                        if let Some(kind) = error.upstream_kind() {
                            gw.metrics.upstream_error(upstream.name(), kind);
                        }
                        tracing::debug!(
                            upstream = upstream.name(),
                            endpoint = %endpoint.name,
                            error = %error,
                            "retrying on another endpoint of the same upstream"
                        );
                        tried.push(index);
                        last_error = Some(error);
                    }
                    _ => return Err(error),
                }
            }
        }
    }
    Err(last_error.unwrap_or_else(|| ProxyError::Pool {
        upstream: upstream.name().to_owned(),
        class: decision.class,
        error: crate::upstream::PickError::NoneUsable {
            total: pool.endpoints().len(),
            down: 0,
            ejected: 0,
        },
        holder: None,
    }))
}

/// Safe to send twice: RFC 9110's idempotent methods.
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

/// The request for one endpoint: its URI (path mapping, Azure deployment), the body with
/// the model renamed, and its credentials. Signing comes last, over the exact head and bytes
/// that will be sent.
#[allow(clippy::too_many_arguments)]
async fn for_endpoint(
    gw: &Gateway,
    upstream: &UpstreamClient,
    endpoint: &Endpoint,
    route: RouteId,
    method: &Method,
    pq: &PathAndQuery,
    mut headers: HeaderMap,
    body: ReadBody,
) -> Result<(Parts, ReadBody), ProxyError> {
    let buffered = match &body {
        ReadBody::Buffered(bytes) => Some(bytes),
        ReadBody::Unread(_) => None,
    };
    let base_path = &gw.config.server.base_path;
    let adapted = upstream
        .adapt(endpoint, base_path, method, pq, &headers, buffered)
        .await
        .map_err(ProxyError::Adapt)?;
    if route == RouteId::OTHER {
        same_meaning_upstream(&gw.classifier, method, &adapted.uri, &headers)?;
    }
    let body = match adapted.body {
        Some(renamed) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(renamed.len()));
            ReadBody::Buffered(renamed)
        }
        None => body,
    };
    let empty = Bytes::new();
    let bytes: &Bytes = match &body {
        ReadBody::Buffered(bytes) => bytes,
        ReadBody::Unread(_) => &empty,
    };
    endpoint
        .auth
        .apply(method, &adapted.uri, &mut headers, bytes)
        .map_err(ProxyError::UpstreamAuth)?;
    // HTTP/1.1 needs `Host`; set it here from the endpoint's ready-made value (signing above
    // covered the same authority) instead of letting hyper format one per request.
    if upstream.version() == http::Version::HTTP_11
        && adapted.uri.authority() == Some(&endpoint.url.authority)
    {
        if let Some(host) = &endpoint.host {
            headers.insert(header::HOST, host.clone());
        }
    }
    let mut req = Request::new(());
    *req.method_mut() = method.clone();
    *req.uri_mut() = adapted.uri;
    *req.headers_mut() = headers;
    let (parts, ()) = req.into_parts();
    Ok((parts, body))
}
