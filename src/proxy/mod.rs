//! The proxy service: the request path as four named phases.
//!
//! 1. **classify** (`classify`): decide the class from the head; read the body (bounded by
//!    `limits.max_body_bytes`) only when a rule needs it, and keep its exact bytes.
//! 2. **decide** (`Policy::settle` / `Policy::upstream_for`): the class picks the upstream.
//! 3. **forward** (`prepare`, `forward.rs`): read the body if the upstream's adapter needs it,
//!    clean the headers; pick the endpoint of the upstream's pool (affinity, session hashing
//!    or the balancer), map the path, sign, send, wait for the head; retry on another
//!    endpoint of the same upstream only when that is safe.
//! 4. **record** (`record.rs`, via `ObservedBody`): stream the answer back untouched and,
//!    when it ends, count it and write the access-log line.

pub mod body;
pub mod error;
mod forward;
pub mod headers;
pub mod record;
mod shadow;
pub mod upgrade;
mod watch;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::Entry;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use prometheus::IntCounter;
use tokio::sync::oneshot;
use tokio::time::Instant;

use self::body::{InFlight, LimitedIncoming, ObservedBody, ProxyBody, UpstreamBody};
use self::error::ProxyError;
use self::forward::Prepared;
use self::headers::{
    label_value, new_request_id, provider_request_id, strip_hop_by_hop, Upgrade, CLASS_HEADER,
    CONFIG_HEADER, MARKER_HEADER, REQUEST_ID_HEADER, RULE_HEADER, UPSTREAM_HEADER,
    UPSTREAM_ONLY_RESPONSE_HEADERS, UPSTREAM_REQUEST_ID_HEADER,
};
use self::record::{client_closed_status, Outcome, Pending, Record};
use self::upgrade::{ClientUpgrade, Handshake};
use self::watch::Watch;
use crate::classify::{Classifier, Decision, Inspection, RouteId, Unclassifiable};
use crate::clients::{ClientCert, Clients, Verdict};
use crate::gateway::Gateway;
use crate::metrics::{ClientResult, UNKNOWN_CLIENT};
use crate::reload::Live;
use crate::upstream::UpstreamClient;

/// The request path's service; hyper serves it directly, with no layers in front (`server.rs`).
#[derive(Clone)]
pub struct ProxyService {
    /// The latest config's state; each request takes it once and keeps it to the end.
    live: Arc<Live>,
}

impl ProxyService {
    pub fn new(live: Arc<Live>) -> Self {
        ProxyService { live }
    }
}

/// hyper's own service trait, served directly: no tower glue (`TowerToHyperService` clones the
/// service and wraps each call in a `Oneshot`), no layer in front.
impl hyper::service::Service<Request<Incoming>> for ProxyService {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let gw = self.live.load_full();
        Box::pin(async move { Ok(handle(gw, req).await) })
    }
}

/// What the classify phase hands on: the decision, and the body as it left it.
struct Classified {
    decision: Decision,
    body: ReadBody,
}

/// The request body after classification.
enum ReadBody {
    /// Not read (decided from the head): it streams through to the upstream.
    Unread(Incoming),
    /// Read in full for classification: these exact bytes are forwarded.
    Buffered(Bytes),
}

/// A refusal before any upstream was contacted (boxed: it is the rare path).
struct Refusal {
    route: RouteId,
    error: ProxyError,
}

async fn handle(gw: Arc<Gateway>, req: Request<Incoming>) -> Response<ProxyBody> {
    let start = Instant::now();
    let (mut parts, body) = req.into_parts();
    // Every request gets an id before anything logs or forwards it; a client's own
    // `x-request-id` is kept so that its traces line up with ours. It goes on every response
    // (over a provider's own: `own_request_id`).
    if let Entry::Vacant(slot) = parts.headers.entry(REQUEST_ID_HEADER) {
        slot.insert(new_request_id());
    }
    // The client's connection upgrade (WebSocket) leaves the request before it is rebuilt.
    let client_upgrade = ClientUpgrade::take(&mut parts);
    // Checked before the hop-by-hop headers (transfer-encoding among them) go.
    let framing = framing_error(&parts.headers);
    // Hop-by-hop headers never reach the upstream, so they must not decide the class either:
    // a marker named in `Connection` would be classified here and missing there.
    strip_hop_by_hop(&mut parts.headers, Upgrade::Keep);
    let request_id = parts.headers.get(REQUEST_ID_HEADER).cloned();
    let mut pending = Pending::new(Record {
        gw: gw.clone(),
        start,
        method: parts.method.clone(),
        request_id: request_id.clone(),
        upstream_request_id: None,
        route: RouteId::OTHER,
        decision: None,
        endpoint: None,
        status: client_closed_status(),
        audit: None,
        request_bytes: None,
    });
    if let Some(error) = framing {
        return refuse(&gw, pending, None, &error, &request_id);
    }
    // `[[clients]]`: who is calling, and whether it may now. The key is removed from the
    // headers here; it never reaches a provider.
    if let Some(clients) = &gw.clients {
        if let Err(error) = admit(&gw, clients, &mut parts) {
            linger(body, Unread::from(&parts.headers));
            return refuse(&gw, pending, None, &error, &request_id);
        }
    }
    // With `[audit]`, a place in the writer's queue is taken before anything else, so that
    // the record is written without waiting when the request ends. `on_full = "block"` waits
    // here while the queue is full, at most until the request's deadline; "drop" goes on
    // without a record (counted by the audit log).
    if let Some(log) = &gw.audit {
        let deadline = start + gw.config.timeouts.request;
        match tokio::time::timeout_at(deadline, log.reserve()).await {
            Ok(Some(slot)) => pending.audit(slot),
            Ok(None) => {}
            Err(_) => {
                let error = ProxyError::AuditUnavailable;
                drop(body);
                return refuse(&gw, pending, None, &error, &request_id);
            }
        }
    }

    let Classified { decision, body } = match classify(&gw, &parts, body, start).await {
        Ok(classified) => classified,
        Err(refusal) => {
            pending.update(refusal.route, None);
            return refuse(&gw, pending, None, &refusal.error, &request_id);
        }
    };
    gw.metrics.decision(decision.class, &decision.rule);
    pending.update(decision.route, Some(decision.clone()));

    let upstream = gw.policy.upstream_for(decision.class);
    let timeouts = *upstream.timeouts();
    let deadline = start + timeouts.request;
    if Instant::now() >= deadline {
        // Reading the body used up the whole request time: the client's fault, not the upstream's.
        let error = ProxyError::ClientBodyTimeout;
        return refuse(&gw, pending, Some(&decision), &error, &request_id);
    }
    // A WebSocket handshake keeps its upgrade headers; any other `Upgrade` goes.
    let websocket = match Handshake::settle(&gw, client_upgrade, &decision, upstream, &mut parts) {
        Ok(websocket) => websocket,
        Err(error) => return refuse(&gw, pending, Some(&decision), &error, &request_id),
    };
    let prepared = match prepare(&gw, upstream, decision.route, parts, body, deadline).await {
        Ok(prepared) => prepared,
        Err(error) => return refuse(&gw, pending, Some(&decision), &error, &request_id),
    };
    let route_metrics = gw.route_metrics(decision.route, decision.class);
    let located = forward::locate(&gw, upstream, decision.class, &prepared).await;
    let in_flight = InFlight::start(route_metrics.in_flight.clone());
    let result = forward::send(
        &gw,
        upstream,
        &decision,
        prepared,
        &located,
        deadline,
        &route_metrics.request_bytes,
        &mut pending,
    )
    .await;
    match result {
        Ok(forwarded) => {
            let forward::Forwarded {
                response,
                sent,
                endpoint,
                load,
                lease,
            } = forwarded;
            route_metrics.first_byte(sent.elapsed().as_secs_f64());
            let in_flight = in_flight.with_load(load).with_lease(lease);
            if let Some(websocket) = websocket {
                if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                    return websocket.relay(response, pending, in_flight, &decision, &request_id);
                }
                websocket.refused();
            }
            let (mut head, incoming) = response.into_parts();
            pending.upstream_request_id(provider_request_id(&head.headers));
            let watch = Watch::new(&gw, &decision, upstream, &endpoint, &head, start);
            strip_hop_by_hop(&mut head.headers, Upgrade::Strip);
            for name in UPSTREAM_ONLY_RESPONSE_HEADERS {
                head.headers.remove(name);
            }
            own_request_id(&mut head.headers, &request_id);
            decision_headers(&gw, &mut head.headers, &decision);
            let record = pending.into_record(head.status);
            let observed = ObservedBody::new(
                incoming,
                timeouts.idle,
                deadline,
                route_metrics.response_bytes.clone(),
                record,
                in_flight,
                watch,
            );
            Response::from_parts(head, ProxyBody::Upstream { body: observed })
        }
        Err(error) => {
            drop(in_flight);
            refuse(&gw, pending, Some(&decision), &error, &request_id)
        }
    }
}

/// Identify the calling client and take a token from its bucket; refusals are counted per
/// client (`unknown` when none was named).
fn admit(gw: &Gateway, clients: &Clients, parts: &mut Parts) -> Result<(), ProxyError> {
    let cert = parts.extensions.get::<ClientCert>().copied();
    let metrics = &gw.metrics.clients;
    match clients.check(&mut parts.headers, cert.as_ref()) {
        Verdict::Allowed(client) => {
            metrics.request(client, ClientResult::Allowed);
            Ok(())
        }
        Verdict::Unauthenticated => {
            metrics.request(UNKNOWN_CLIENT, ClientResult::Unauthenticated);
            Err(ProxyError::Unauthenticated)
        }
        Verdict::RateLimited {
            client,
            retry_after,
        } => {
            metrics.request(client, ClientResult::RateLimited);
            Err(ProxyError::RateLimited {
                client: client.to_owned(),
                retry_after,
            })
        }
    }
}

/// Phase 1: classify. Reads the body only when the classifier asks for it.
async fn classify(
    gw: &Gateway,
    parts: &Parts,
    body: Incoming,
    start: Instant,
) -> Result<Classified, Box<Refusal>> {
    if parts.method == Method::CONNECT
        || parts.method == Method::TRACE
        || is_miscased_standard_method(&parts.method)
    {
        // CONNECT would tunnel anywhere; TRACE would echo injected credentials back; `post`
        // is an extension method to the classifier but may be POST to an upstream.
        linger(body, Unread::from(&parts.headers));
        return Err(Box::new(Refusal {
            route: RouteId::OTHER,
            error: ProxyError::MethodNotAllowed(parts.method.clone()),
        }));
    }
    // Asterisk-form (`OPTIONS *`) and other non-path targets; and on HTTP/1.x the
    // absolute form (`GET http://elsewhere/v1/models`), which only a forward proxy takes:
    // a client that sends it may mean another host, and the gateway is not an open proxy.
    // (HTTP/2 requests always carry scheme and authority as pseudo-headers.)
    let absolute = parts.version < http::Version::HTTP_2
        && (parts.uri.scheme().is_some() || parts.uri.authority().is_some());
    if !parts.uri.path().starts_with('/') || absolute {
        linger(body, Unread::from(&parts.headers));
        return Err(Box::new(Refusal {
            route: RouteId::OTHER,
            error: ProxyError::BadTarget,
        }));
    }
    if let Some(problem) = host_problem(parts) {
        linger(body, Unread::from(&parts.headers));
        return Err(Box::new(Refusal {
            route: RouteId::OTHER,
            error: ProxyError::BadHost(problem),
        }));
    }
    let limit = gw.config.limits.max_body_bytes;
    let inspection = gw
        .classifier
        .inspect(&parts.method, parts.uri.path(), &parts.headers);
    let route = inspection.route();
    let refuse = |error| Box::new(Refusal { route, error });
    let declared = declared_length(&parts.headers);
    if declared.is_some_and(|len| len > limit) {
        linger(body, Unread::from(&parts.headers));
        return Err(refuse(ProxyError::BodyTooLarge { limit }));
    }
    let settle = |outcome: Result<Decision, Unclassifiable>| {
        gw.policy
            .settle(outcome)
            .map_err(|u| refuse(ProxyError::Unclassifiable(u)))
    };
    // `[shadow]` looks at the same request; it may need the body when the enforced rules
    // do not, and then the body is read (within the same limits) so that it can.
    let shadow = gw.shadow.as_ref().map(|s| {
        (
            s,
            s.inspect(&parts.method, parts.uri.path(), &parts.headers),
        )
    });
    let shadow_needs_body = matches!(shadow, Some((_, Inspection::NeedsBody(_))));
    let (settled, body) = match inspection {
        Inspection::Decided(decision) if !shadow_needs_body => {
            (Ok(decision), ReadBody::Unread(body))
        }
        // The body was never read; it streams through if the policy assigns a class.
        Inspection::Unclassifiable(u) if !shadow_needs_body => {
            (settle(Err(u)), ReadBody::Unread(body))
        }
        inspection => {
            // Decided already (only the shadow needs the body): the body gets the timeouts
            // of the upstream it goes to, as it would have streaming there.
            let timeouts = match &inspection {
                Inspection::Decided(d) => *gw.policy.upstream_for(d.class).timeouts(),
                _ => gw.config.timeouts,
            };
            let deadline = start + timeouts.request;
            let mut body = body;
            let read = read_body(&mut body, limit, declared, timeouts.idle, deadline);
            let bytes = match read.await {
                Ok(bytes) => bytes,
                Err(error) => {
                    linger(body, Unread::Partly);
                    return Err(refuse(error));
                }
            };
            let outcome = match inspection {
                Inspection::Decided(decision) => Ok(decision),
                Inspection::Unclassifiable(u) => Err(u),
                Inspection::NeedsBody(pending) => pending.finish(&gw.classifier, &bytes),
            };
            (settle(outcome), ReadBody::Buffered(bytes))
        }
    };
    if let Some((classifier, inspection)) = shadow {
        let read = match &body {
            ReadBody::Buffered(bytes) => Some(&bytes[..]),
            ReadBody::Unread(_) => None,
        };
        let enforced = settled.as_ref().ok().map(|d| d.class);
        shadow::compare(gw, classifier, inspection, read, enforced, &parts.headers);
    }
    Ok(Classified {
        decision: settled?,
        body,
    })
}

/// Read a whole request body into one buffer: at most `limit` bytes, each frame within
/// `idle` of the last, all of it by `deadline`. A body that arrives as a single frame is not
/// copied at all; otherwise it is copied once into a buffer sized in two steps (see
/// [`BodyBuf`]), so a slow client declaring a large body holds no more than [`READ_AHEAD`].
async fn read_body(
    body: &mut Incoming,
    limit: u64,
    declared: Option<u64>,
    idle: Duration,
    deadline: Instant,
) -> Result<Bytes, ProxyError> {
    let mut buf = BodyBuf::new(declared, limit);
    loop {
        let wait = deadline.min(Instant::now() + idle);
        let frame = match tokio::time::timeout_at(wait, body.frame()).await {
            Err(_) => return Err(ProxyError::ClientBodyTimeout),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(ProxyError::ClientBody(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry no body bytes
        };
        if (buf.len() + data.len()) as u64 > limit {
            return Err(ProxyError::BodyTooLarge { limit });
        }
        if buf.is_empty() && body.is_end_stream() {
            return Ok(data);
        }
        buf.extend(&data);
    }
    Ok(buf.freeze())
}

/// The buffer a body is read into, sized from its `content-length` in two steps: up to
/// [`READ_AHEAD`] before any byte arrives, the whole declared length (within the limit) once
/// the client has sent more than that. A slow POST declaring 32 MiB and sending a byte at a
/// time thus holds 64 KiB, not a reservation of its declared size (10,000 of them reserved
/// 10.6 GB of address space at 1 MiB each; 1.2 GB now); a fast large body costs one extra
/// copy of its first 64 KiB. Without a length (chunked) the buffer doubles as it fills.
struct BodyBuf {
    buf: BytesMut,
    /// The declared length, capped at the limit; 0 when none was declared.
    declared: usize,
}

impl BodyBuf {
    fn new(declared: Option<u64>, limit: u64) -> BodyBuf {
        let declared = usize::try_from(declared.unwrap_or(0).min(limit)).unwrap_or(0);
        let ahead = usize::try_from(READ_AHEAD).unwrap_or(usize::MAX);
        BodyBuf {
            buf: BytesMut::with_capacity(declared.min(ahead)),
            declared,
        }
    }

    fn len(&self) -> usize {
        self.buf.len()
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn extend(&mut self, data: &[u8]) {
        let needed = self.buf.len() + data.len();
        if needed > self.buf.capacity() && self.declared > needed {
            // Past the read-ahead: the client is really sending; make room for all it declared.
            self.buf.reserve(self.declared - self.buf.len());
        }
        self.buf.extend_from_slice(data);
    }

    fn freeze(self) -> Bytes {
        self.buf.freeze()
    }
}

/// The most buffer reserved for a body before its bytes arrive.
const READ_AHEAD: u64 = 64 * 1024;

/// How much of a refused request's body is read and discarded, at most.
const LINGER_BYTES: u64 = 1024 * 1024;
/// How long a refused request's body is read and discarded, at most.
const LINGER_FOR: Duration = Duration::from_secs(2);

/// How much of a refused request's body has been read, for [`linger`].
enum Unread {
    /// None of it, with the `content-length` the client declared (if any), and whether it
    /// waits for `100 Continue` before sending it.
    All {
        declared: Option<u64>,
        expects_continue: bool,
    },
    /// Some of it was read (so a `100 Continue` went out, if one was asked for).
    Partly,
}

impl Unread {
    fn from(headers: &HeaderMap) -> Unread {
        Unread::All {
            declared: declared_length(headers),
            expects_continue: headers
                .get(header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue")),
        }
    }
}

/// Read and discard what is left of a refused request's body, in the background, while the
/// refusal is answered: nginx's lingering close. Closing a connection with request bytes
/// still unread makes the kernel reset it, and a client still sending its body then loses
/// the 413 (or other refusal) that was written before its own bytes arrived. Bounded in
/// bytes and time; past either, the connection is closed as before. Not done when it cannot
/// help: a client waiting for `100 Continue` sends nothing (and hyper, which has not sent it,
/// closes the connection cleanly), and a declared body larger than the bound would be reset
/// anyway.
fn linger(mut body: Incoming, unread: Unread) {
    if body.is_end_stream() {
        return;
    }
    if let Unread::All {
        declared,
        expects_continue,
    } = unread
    {
        if expects_continue || declared.is_some_and(|len| len > LINGER_BYTES) {
            return;
        }
    }
    tokio::spawn(async move {
        let until = Instant::now() + LINGER_FOR;
        let mut read = 0u64;
        while read < LINGER_BYTES {
            match tokio::time::timeout_at(until, body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    read += frame.data_ref().map_or(0, |d| d.len() as u64);
                }
                _ => break,
            }
        }
    });
}

/// The body as it goes upstream, counted in `counter`: buffered bytes as they are, an unread
/// body streamed through within the size limit. The receiver fires when a streamed body has
/// been sent; it is `None` when the body is already complete.
fn upstream_body(
    body: ReadBody,
    limit: u64,
    counter: IntCounter,
    tally: Option<Arc<AtomicU64>>,
) -> (UpstreamBody, Option<oneshot::Receiver<()>>) {
    match body {
        ReadBody::Buffered(bytes) => {
            counter.inc_by(bytes.len() as u64);
            if let Some(tally) = tally {
                // Each attempt sends the same bytes: the request sent this many.
                tally.store(bytes.len() as u64, Ordering::Relaxed);
            }
            (UpstreamBody::buffered(bytes), None)
        }
        // No body (GET and friends): nothing to stream, nothing to wait for.
        ReadBody::Unread(body) if body.is_end_stream() => {
            (UpstreamBody::buffered(Bytes::new()), None)
        }
        ReadBody::Unread(body) => {
            let (body, uploaded) = LimitedIncoming::new(body, limit, counter, tally);
            (UpstreamBody::Streaming(body), Some(uploaded))
        }
    }
}

/// The response carries the gateway's request id (the client's own, or the one it was
/// given); a provider's different id is kept as `x-upstream-request-id`.
fn own_request_id(headers: &mut HeaderMap, request_id: &Option<HeaderValue>) {
    let Some(id) = request_id else { return };
    if let Some(theirs) = headers.insert(REQUEST_ID_HEADER, id.clone()) {
        if theirs != id {
            headers.insert(UPSTREAM_REQUEST_ID_HEADER, theirs);
        }
    }
}

/// Phase 3a: what every endpoint of `upstream` gets: the body read whole if the upstream's
/// adapter needs it (SigV4, model mapping, Azure deployments) or usage is to be injected,
/// `stream_options.include_usage` added when configured, the headers cleaned. The
/// per-endpoint part (URI, model rename, credentials) is `forward::for_endpoint`.
async fn prepare(
    gw: &Gateway,
    upstream: &UpstreamClient,
    route: RouteId,
    parts: Parts,
    body: ReadBody,
    deadline: Instant,
) -> Result<Prepared, ProxyError> {
    let Parts {
        method,
        uri,
        mut headers,
        ..
    } = parts;
    let base_path = &gw.config.server.base_path;
    let inject = gw.config.accounting.inject_include_usage
        && method == Method::POST
        && gw
            .classifier
            .route_label(route)
            .ends_with("/chat/completions");
    let body = match body {
        ReadBody::Unread(incoming)
            if inject || upstream.needs_body(&method, uri.path(), &headers, base_path) =>
        {
            let limit = gw.config.limits.max_body_bytes;
            let declared = declared_length(&headers);
            let idle = upstream.timeouts().idle;
            let mut incoming = incoming;
            match read_body(&mut incoming, limit, declared, idle, deadline).await {
                Ok(bytes) => ReadBody::Buffered(bytes),
                Err(error) => {
                    linger(incoming, Unread::Partly);
                    return Err(error);
                }
            }
        }
        body => body,
    };
    let body = match body {
        ReadBody::Buffered(bytes) if inject => match crate::observe::inject_include_usage(&bytes) {
            Some(rewritten) => {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(rewritten.len()));
                ReadBody::Buffered(rewritten)
            }
            None => ReadBody::Buffered(bytes),
        },
        body => body,
    };
    let pq = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    upstream.prepare_headers(&mut headers);
    Ok(Prepared {
        method,
        pq,
        headers,
        body,
    })
}

/// A path the classifier did not know must not become one it knows on the way upstream:
/// `/v1/deployments/x/chat/completions` to an Azure classic upstream (url `…/openai`) is an
/// unknown path here and a chat completion there, and would be routed by the `default` rule
/// without its body ever being looked at. Such requests are refused, like other ambiguous
/// paths.
pub fn same_meaning_upstream(
    classifier: &Classifier,
    method: &Method,
    uri: &http::Uri,
    headers: &HeaderMap,
) -> Result<(), ProxyError> {
    let mapped = classifier.inspect(method, uri.path(), headers).route();
    if mapped == RouteId::OTHER {
        return Ok(());
    }
    Err(ProxyError::UpstreamPathAmbiguous {
        path: uri.path().to_owned(),
        route: classifier.route_label(mapped).to_owned(),
    })
}

/// Answer with a gateway error: count it, record it, and say what was decided, if anything.
fn refuse(
    gw: &Gateway,
    pending: Pending,
    decision: Option<&Decision>,
    error: &ProxyError,
    request_id: &Option<HeaderValue>,
) -> Response<ProxyBody> {
    gw.metrics.rejection(error.rejection());
    if let (Some(kind), Some(d)) = (error.upstream_kind(), decision) {
        gw.metrics
            .upstream_error(gw.policy.upstream_for(d.class).name(), kind);
    }
    tracing::debug!(error = %error, "request refused");
    let (mut head, body) = error.to_response().into_parts();
    let body_len = body.size_hint().exact().unwrap_or(0);
    match decision {
        Some(d) => decision_headers(gw, &mut head.headers, d),
        // Refused before any decision: still say which config refused it.
        None if gw.config.server.decision_headers => {
            head.headers.insert(CONFIG_HEADER, gw.config_header.clone());
        }
        None => {}
    }
    if let Some(id) = request_id {
        head.headers.insert(REQUEST_ID_HEADER, id.clone());
    }
    if let Some(record) = pending.into_record(head.status) {
        record.finish(Outcome::Rejected(error.rejection()), body_len);
    }
    Response::from_parts(head, ProxyBody::local(body))
}

/// Add `x-switchyard-{class,upstream,rule,marker,config}` unless turned off.
fn decision_headers(gw: &Gateway, headers: &mut HeaderMap, decision: &Decision) {
    if !gw.config.server.decision_headers {
        // Never let an upstream speak for the gateway.
        for name in [
            CLASS_HEADER,
            UPSTREAM_HEADER,
            RULE_HEADER,
            MARKER_HEADER,
            CONFIG_HEADER,
        ] {
            headers.remove(name);
        }
        return;
    }
    headers.insert(
        CLASS_HEADER,
        HeaderValue::from_static(decision.class.as_str()),
    );
    headers.insert(
        UPSTREAM_HEADER,
        gw.policy.upstream_for(decision.class).name_header().clone(),
    );
    headers.insert(RULE_HEADER, label_value(&decision.rule));
    headers.insert(CONFIG_HEADER, gw.config_header.clone());
    // The formatted marker's buffer becomes the header value (one allocation, not two).
    let marker = HeaderValue::from_maybe_shared(Bytes::from(decision.marker.to_string()))
        .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    headers.insert(MARKER_HEADER, marker);
}

/// A method that differs from a standard one only in case (`post`, `Get`). Methods are
/// case-sensitive, so the classifier treats these as unknown methods, while an upstream
/// that is lenient about case would run them as the standard one.
fn is_miscased_standard_method(method: &Method) -> bool {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::CONNECT,
        Method::TRACE,
    ];
    let name = method.as_str();
    name.bytes().any(|b| b.is_ascii_lowercase())
        && STANDARD
            .iter()
            .any(|m| m.as_str().eq_ignore_ascii_case(name))
}

/// A request body may be chunked, once, and nothing else: hyper already refuses a coding it
/// cannot decode last, but lets `gzip, chunked`, `chunked, chunked` or two
/// `transfer-encoding` lines through, and the upstream would then get a body whose coding
/// was silently dropped. (`content-length` with `transfer-encoding` never gets here: hyper
/// frames such a request by the transfer coding alone and closes the connection after it, as
/// RFC 9112 section 6.1 allows.)
fn framing_error(headers: &HeaderMap) -> Option<ProxyError> {
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter().peekable();
    codings.peek()?;
    let mut seen = String::new();
    let mut count = 0;
    for value in codings {
        let text = String::from_utf8_lossy(value.as_bytes());
        for coding in text.split(',') {
            count += 1;
            if !seen.is_empty() {
                seen.push_str(", ");
            }
            seen.push_str(coding.trim());
        }
    }
    let plain = count == 1 && seen.eq_ignore_ascii_case("chunked");
    (!plain).then_some(ProxyError::BadFraming(seen))
}

/// What is wrong with the request's `Host`, if anything: HTTP/1.1 needs exactly one; no
/// version may repeat it; it must be a plain `host[:port]` (no user info, no path, no list).
/// The gateway never routes by it, but an upstream or a log might read it.
fn host_problem(parts: &Parts) -> Option<&'static str> {
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let Some(host) = hosts.next() else {
        return (parts.version == http::Version::HTTP_11)
            .then_some("an HTTP/1.1 request needs a Host header");
    };
    if hosts.next().is_some() {
        return Some("a request may carry one Host header");
    }
    let valid = host
        .to_str()
        .ok()
        .filter(|h| !h.is_empty() && !h.contains('@'))
        .is_some_and(|h| h.parse::<http::uri::Authority>().is_ok());
    (!valid).then_some("the Host header must be host or host:port")
}

/// The `content-length` the client declared, if it is one well-formed number.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod future_size {
    /// The size of the future an async fn of two arguments returns.
    fn future_size<F, A, B, R>(_: F) -> usize
    where
        F: FnOnce(A, B) -> R,
    {
        std::mem::size_of::<R>()
    }

    /// Every request's future is built and moved into its box, and each phase's future into
    /// it: `memmove` was 4.6% of the gateway's CPU at saturation. Rare, large phases (reading
    /// a multipart body's `model` for Azure classic) are boxed where they are awaited, which
    /// took this future from 5,000 to about 3,100 bytes; this keeps it from growing back
    /// unnoticed.
    #[test]
    fn the_request_future_stays_under_4_kib() {
        let size = future_size(super::handle);
        assert!(size <= 4096, "proxy::handle's future is {size} bytes");
    }
}

#[cfg(test)]
mod body_buf {
    use super::{BodyBuf, READ_AHEAD};

    const AHEAD: usize = READ_AHEAD as usize;
    const LIMIT: u64 = 32 * 1024 * 1024;

    #[test]
    fn a_large_declared_body_reserves_only_the_read_ahead_until_it_arrives() {
        let mut buf = BodyBuf::new(Some(LIMIT), LIMIT);
        assert_eq!(buf.buf.capacity(), AHEAD);
        // A slow POST: a byte at a time, never past the read-ahead.
        for _ in 0..1000 {
            buf.extend(b"x");
        }
        assert_eq!(
            buf.buf.capacity(),
            AHEAD,
            "no growth while under the read-ahead"
        );
        assert_eq!(buf.len(), 1000);
    }

    #[test]
    fn past_the_read_ahead_the_whole_declared_length_is_reserved_once() {
        let declared = 1024 * 1024 + 7;
        let mut buf = BodyBuf::new(Some(declared as u64), LIMIT);
        let chunk = vec![b'a'; 16 * 1024 + 3];
        let mut sent = 0;
        let mut capacities = Vec::new();
        while sent < declared {
            let n = chunk.len().min(declared - sent);
            buf.extend(&chunk[..n]);
            sent += n;
            capacities.push(buf.buf.capacity());
        }
        capacities.dedup();
        assert_eq!(capacities.len(), 2, "one reallocation: {capacities:?}");
        assert!(capacities[1] >= declared && capacities[1] < declared + AHEAD);
        let body = buf.freeze();
        assert_eq!(body.len(), declared);
        assert!(body.iter().all(|&b| b == b'a'));
    }

    #[test]
    fn small_and_undeclared_bodies() {
        let mut small = BodyBuf::new(Some(300), LIMIT);
        assert_eq!(small.buf.capacity(), 300);
        small.extend(&[1; 200]);
        small.extend(&[2; 100]);
        assert_eq!(small.buf.capacity(), 300);
        assert_eq!(&small.freeze()[195..205], &[1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);

        // A length larger than the limit reserves no more than the read-ahead either.
        assert_eq!(BodyBuf::new(Some(u64::MAX), LIMIT).buf.capacity(), AHEAD);

        // A client that sends more than it declared (hyper refuses that on the wire; the
        // buffer still just grows).
        let mut liar = BodyBuf::new(Some(10), LIMIT);
        liar.extend(&[7; 100]);
        assert_eq!(liar.len(), 100);

        let mut chunked = BodyBuf::new(None, LIMIT);
        assert!(chunked.is_empty());
        for _ in 0..100 {
            chunked.extend(&[3; 1000]);
        }
        assert_eq!(chunked.freeze().len(), 100_000);
    }
}
