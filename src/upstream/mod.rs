//! Upstream clients: one per upstream (its pooled connections, `conns.rs`), URI mapping and
//! request headers.
//!
//! An `UpstreamClient` knows how to reach exactly one upstream. It never chooses which
//! upstream serves a request (that is `policy.rs`) and never retries elsewhere: a failure is
//! returned to the caller as an `UpstreamError` and becomes a gateway error.

mod adapt;
pub mod auth;
pub mod azure;
pub mod balance;
mod connect;
mod conns;
pub mod health;
pub mod model;
pub mod pool;
pub mod sigv4;

pub use adapt::{AdaptError, Adapted};
pub use conns::{ConnError, Lease};
pub use pool::{Endpoint, Load, PickError, Pool, Target};

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::oneshot;
use tokio::time::Instant;

use self::connect::{Connector, LateAlerts};
use crate::config::{AzureClassic, ModelMap, Timeouts, Upstream, UpstreamKind};
use crate::metrics::Metrics;
use crate::proxy::body::{BodyLimitExceeded, ClientBodyError, UpstreamBody};

/// Client credential headers; removed on the way to an upstream that sets its own.
pub const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "api-key",
    "x-api-key",
    "ocp-apim-subscription-key",
    "x-amz-security-token",
];

/// Query parameters that carry client credentials (compared after percent-decoding, without
/// case): key parameters some APIs accept, and SigV4 presigning. `x-amz-` covers the latter.
const CREDENTIAL_PARAMS: &[&str] = &["api-key", "subscription-key"];

/// `path_and_query` without credential parameters; untouched (no copy) when it has none.
fn strip_credential_params(path_and_query: String) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query;
    };
    let is_credential = |pair: &str| {
        let name = pair.split('=').next().unwrap_or_default();
        let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
        let name = name.to_ascii_lowercase();
        name.starts_with("x-amz-") || CREDENTIAL_PARAMS.contains(&name.as_str())
    };
    if !query.split('&').any(is_credential) {
        return path_and_query;
    }
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty() && !is_credential(pair))
        .collect();
    if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

/// Why an upstream failed to answer, before any response byte came back.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("could not connect to upstream {upstream}: {detail}")]
    Connect { upstream: String, detail: String },
    #[error("TLS handshake with upstream {upstream} failed: {detail}")]
    Tls { upstream: String, detail: String },
    #[error("upstream {upstream} did not connect within {timeout:?}")]
    ConnectTimeout { upstream: String, timeout: Duration },
    #[error("upstream {upstream} sent no response head within {timeout:?}")]
    FirstByteTimeout { upstream: String, timeout: Duration },
    #[error("upstream {upstream} did not answer within the request timeout")]
    RequestTimeout { upstream: String },
    #[error("upstream {upstream} failed before answering: {detail}")]
    Protocol { upstream: String, detail: String },
}

/// Why sending a request failed: the upstream's fault, or the client's while its body was
/// being streamed through (the upload to the upstream is then aborted).
#[derive(Debug)]
pub enum SendError {
    Upstream(UpstreamError),
    BodyTooLarge { limit: u64 },
    ClientBody { detail: String },
    UploadTimeout,
}

/// A pooled client for one upstream plus everything needed to address it.
pub struct UpstreamClient {
    name: String,
    name_header: HeaderValue,
    version: Version,
    set_headers: Vec<(HeaderName, HeaderValue)>,
    forward_client_credentials: bool,
    timeouts: Timeouts,
    /// The endpoints, their health and the balancer (shared with the health checker).
    pool: Arc<Pool>,
    /// HTTP/1.1-only client for WebSocket handshakes.
    upgrade_client: Client<Connector, UpstreamBody>,
    /// TLS alerts that ended this upstream's connections (see `connect::LateAlerts`).
    alerts: LateAlerts,
    retries: u32,
    active_health: Option<crate::config::ActiveHealth>,
    /// What credentials the gateway adds, for startup logs (never the secret).
    auth_description: String,
    kind: UpstreamKind,
    models: ModelMap,
    azure_classic: Option<AzureClassic>,
    /// The config it was built from (`config::Upstream::fingerprint`): a reload reuses this
    /// client while it is unchanged.
    fingerprint: [u8; 32],
    /// Credentials loaded and health checks running (`start` ran once successfully).
    started: std::sync::atomic::AtomicBool,
}

/// Bytes read from one upstream connection (HTTP/1.1) at a time, and so the most it buffers
/// before the client takes them; also the largest response head accepted (nginx's
/// `proxy_buffer_size` is 4 or 8 KiB).
const UPSTREAM_READ_BUFFER: usize = 32 * 1024;

/// HTTP/2 flow-control window per upstream stream: what one response may have in flight
/// (512 KiB is ~10 MB/s per stream at 50 ms of round trip), and so the most a stream whose
/// client reads slowly can leave unread in the gateway. A connection gets one per stream it
/// may carry (`conns.rs`).
const UPSTREAM_H2_STREAM_WINDOW: u32 = 512 * 1024;

impl UpstreamClient {
    /// A client for `cfg` with one connection pool per worker thread (`workers`) plus one for
    /// every other thread (health checks), so that a connection is only ever used by the
    /// thread whose event loop drives it.
    pub fn new(cfg: &Upstream, metrics: &Metrics, workers: usize) -> UpstreamClient {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(cfg.timeouts.connect));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        // https_or_http: the URL's scheme decides. SNI is on; ALPN offers h2 and http/1.1
        // unless `http2` asks for h2 only. The rustls config carries the trust anchors.
        connector.enforce_http(false);
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*cfg.tls).clone())
            .https_or_http();
        // WebSocket handshakes need HTTP/1.1 (an Upgrade does not exist in h2): their own
        // client, whose TLS offers http/1.1 only, so ALPN can never pick h2 for them.
        let upgrade_connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*cfg.tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector.clone());
        let connector = if cfg.http2 {
            builder.enable_http2().wrap_connector(connector)
        } else {
            builder.enable_all_versions().wrap_connector(connector)
        };
        let alerts = LateAlerts::default();
        let connector = Connector::new(connector, cfg.timeouts.connect, alerts.clone());
        let upgrade_connector =
            Connector::new(upgrade_connector, cfg.timeouts.connect, alerts.clone());
        let upgrade_client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            // An upgraded connection never returns to the pool.
            .pool_max_idle_per_host(0)
            .build(upgrade_connector);
        if cfg.danger_accept_invalid_certs {
            tracing::warn!(
                upstream = %cfg.name,
                "danger_accept_invalid_certs = true: the upstream's certificate is NOT verified; never use this outside local testing"
            );
        }
        let settings = conns::Settings {
            http2_only: cfg.http2,
            idle_timeout: cfg.pool_idle_timeout,
            max_idle_per_host: cfg.pool_max_idle_per_host,
            // hyper's default read buffer grows toward ~400 KB when the client reads slower
            // than the upstream sends; the slow-reader bench found 97% of the gateway's memory
            // there. 32 KiB reads keep a stream flowing at full speed.
            h1_read_buffer: UPSTREAM_READ_BUFFER,
            h2_stream_window: UPSTREAM_H2_STREAM_WINDOW,
            h2_max_streams: usize::try_from(cfg.http2_max_streams).unwrap_or(usize::MAX),
        };
        let conns = conns::Conns::new(
            connector,
            &settings,
            workers + 1,
            metrics.pool.upstream_connections(&cfg.name),
        );
        let name_header = HeaderValue::from_str(&cfg.name)
            .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        let version = if cfg.http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        let set_headers: Vec<(HeaderName, HeaderValue)> = cfg
            .set_headers
            .iter()
            .map(|(n, v)| (n.clone(), v.0.clone()))
            .collect();
        let pool = Pool::new(cfg, conns, set_headers.clone(), version, metrics);
        UpstreamClient {
            name: cfg.name.clone(),
            name_header,
            version,
            set_headers,
            forward_client_credentials: cfg.forward_client_credentials,
            timeouts: cfg.timeouts,
            pool: Arc::new(pool),
            upgrade_client,
            alerts,
            retries: cfg.retries,
            active_health: cfg.health.active.clone(),
            auth_description: cfg.auth.describe(),
            kind: cfg.kind,
            models: cfg.models.clone(),
            azure_classic: cfg.azure_classic.clone(),
            fingerprint: cfg.fingerprint,
            started: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether this client was built from `cfg` as it is now (same name, same fingerprint).
    pub fn built_from(&self, cfg: &Upstream) -> bool {
        self.name == cfg.name && self.fingerprint == cfg.fingerprint
    }

    /// The HTTP version requests to this upstream are sent with (HTTP/2 when `http2`).
    pub fn version(&self) -> Version {
        self.version
    }

    /// Load every endpoint's credentials and start the health checker, if configured. Once
    /// it has succeeded, later calls (a reload that keeps this client) do nothing.
    pub async fn start(&self) -> Result<(), auth::AuthError> {
        use std::sync::atomic::Ordering;
        if self.started.load(Ordering::Acquire) {
            return Ok(());
        }
        for endpoint in self.pool.endpoints() {
            endpoint.auth.start().await?;
        }
        if let Some(active) = &self.active_health {
            health::spawn_checker(Arc::downgrade(&self.pool), active.clone());
        }
        self.started.store(true, Ordering::Release);
        Ok(())
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Extra attempts allowed on other endpoints.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The upstream name as a header value, for `x-switchyard-upstream`.
    pub fn name_header(&self) -> &HeaderValue {
        &self.name_header
    }

    pub fn kind(&self) -> UpstreamKind {
        self.kind
    }

    pub fn auth_description(&self) -> &str {
        &self.auth_description
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Map a client path-and-query onto this upstream: the client-facing `base_path` prefix
    /// is replaced by the upstream URL's path; other paths are kept as they are.
    pub fn map_uri(
        &self,
        endpoint: &Endpoint,
        base_path: &str,
        pq: &PathAndQuery,
    ) -> Result<Uri, http::Error> {
        let path = pq.path();
        let rest = rest_of(base_path, path);
        let mut target = String::with_capacity(endpoint.url.path.len() + pq.as_str().len());
        match rest {
            Some(rest) => {
                target.push_str(&endpoint.url.path);
                target.push_str(rest);
            }
            None => target.push_str(path),
        }
        if target.is_empty() {
            target.push('/');
        }
        if let Some(q) = pq.query() {
            target.push('?');
            target.push_str(q);
        }
        self.uri(endpoint, target)
    }

    /// An absolute URI on `endpoint` for `path_and_query`. Client credentials carried in
    /// the query go the way of credential headers.
    fn uri(&self, endpoint: &Endpoint, path_and_query: String) -> Result<Uri, http::Error> {
        let path_and_query = if self.forward_client_credentials {
            path_and_query
        } else {
            strip_credential_params(path_and_query)
        };
        Uri::builder()
            .scheme(endpoint.url.scheme.clone())
            .authority(endpoint.url.authority.clone())
            .path_and_query(path_and_query)
            .build()
    }

    /// Rewrite the client's headers for this upstream. The proxy has already removed the
    /// hop-by-hop headers (before classifying) except `upgrade`, which the classifier reads
    /// and which goes now (unless this is a WebSocket handshake the proxy relays: then it
    /// has set `Connection: upgrade`, see `proxy::upgrade::is_relayed`), with `host` and
    /// `expect`; client credentials are removed when the upstream sets its own; configured
    /// headers are set.
    pub fn prepare_headers(&self, headers: &mut HeaderMap) {
        if !crate::proxy::upgrade::is_relayed(headers) {
            headers.remove(header::UPGRADE);
        }
        headers.remove(header::HOST);
        headers.remove(header::EXPECT);
        if !self.forward_client_credentials {
            for name in CREDENTIAL_HEADERS {
                headers.remove(*name);
            }
        }
        for (name, value) in &self.set_headers {
            headers.insert(name.clone(), value.clone());
        }
    }

    /// Send `req` (already mapped and prepared) and wait for the response head. The
    /// first-byte clock starts when the request body has been sent (`uploaded` fires, or is
    /// `None` for a body that is already complete); until then only `deadline` applies, and
    /// running out of it then is the client's slow upload, not the upstream's fault.
    /// Returns the response, the instant the first-byte clock started and its connection's
    /// lease (none for a WebSocket upgrade): release it once the response body has been read
    /// to its end.
    /// Nothing here retries on another upstream.
    pub async fn send(
        &self,
        mut req: Request<UpstreamBody>,
        uploaded: Option<oneshot::Receiver<()>>,
        deadline: Instant,
    ) -> Result<(Response<Incoming>, Instant, Option<Lease>), SendError> {
        let alerts = self.alerts.mark();
        let authority = req.uri().authority().cloned();
        // `prepare_headers` keeps `Upgrade` only on a WebSocket handshake the proxy relays.
        let response = if req.headers().contains_key(header::UPGRADE) {
            *req.version_mut() = Version::HTTP_11;
            // Made here, so that only hyper-util's (boxed) future is held, not the request.
            let handshake = self.upgrade_client.request(req);
            futures_util::future::Either::Left(futures_util::FutureExt::map(handshake, |result| {
                match result {
                    Ok(response) => Ok((response, None)),
                    Err(e) => Err(ConnError::Upgrade(e)),
                }
            }))
        } else {
            *req.version_mut() = self.version;
            // Boxed (about 1.1 KB), as hyper-util's client boxed its own: every request's
            // future is moved into place phase by phase, and memmove was 4.6% of the CPU.
            let send = self.pool.conns().send(req);
            futures_util::future::Either::Right(Box::pin(futures_util::FutureExt::map(
                send,
                |result| result.map(|(response, lease)| (response, Some(lease))),
            )))
        };
        tokio::pin!(response);
        if let Some(uploaded) = uploaded {
            tokio::select! {
                result = &mut response => {
                    // The upstream answered before the upload ended (an early error, say).
                    return result
                        .map(|(r, lease)| (r, Instant::now(), lease))
                        .map_err(|e| self.classify_error(&e, alerts, authority.as_ref()));
                }
                // Sent, or the body was dropped because the exchange failed: either way the
                // response future now settles on its own terms.
                _ = uploaded => {}
                _ = tokio::time::sleep_until(deadline) => return Err(SendError::UploadTimeout),
            }
        }
        let sent = Instant::now();
        let budget = self.timeouts.first_byte;
        let by_budget = sent + budget;
        match tokio::time::timeout_at(by_budget.min(deadline), &mut response).await {
            Ok(Ok((resp, lease))) => Ok((resp, sent, lease)),
            Ok(Err(e)) => Err(self.classify_error(&e, alerts, authority.as_ref())),
            Err(_) if deadline < by_budget => {
                Err(SendError::Upstream(UpstreamError::RequestTimeout {
                    upstream: self.name.clone(),
                }))
            }
            Err(_) => Err(SendError::Upstream(UpstreamError::FirstByteTimeout {
                upstream: self.name.clone(),
                timeout: budget,
            })),
        }
    }

    /// Why a send to `authority` failed; `alerts` is [`LateAlerts::mark`] from before it was
    /// sent.
    fn classify_error(
        &self,
        e: &ConnError,
        alerts: u64,
        authority: Option<&http::uri::Authority>,
    ) -> SendError {
        use std::error::Error as _;
        let mut source = e.source();
        while let Some(err) = source {
            if let Some(limit) = err.downcast_ref::<BodyLimitExceeded>() {
                return SendError::BodyTooLarge { limit: limit.limit };
            }
            if let Some(client) = err.downcast_ref::<ClientBodyError>() {
                return SendError::ClientBody {
                    detail: client.0.to_string(),
                };
            }
            if let Some(tls) = rustls_error(err) {
                return SendError::Upstream(UpstreamError::Tls {
                    upstream: self.name.clone(),
                    detail: tls_hint(tls, &self.name),
                });
            }
            if let Some(alert) = late_tls_alert(err) {
                // TLS 1.3: the server judges the client certificate after the client's
                // handshake ends, so its refusal arrives as the first read fails. It never
                // processed the request.
                return SendError::Upstream(UpstreamError::Tls {
                    upstream: self.name.clone(),
                    detail: alert_hint(&alert, &self.name),
                });
            }
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::TimedOut && e.is_connect() {
                    return SendError::Upstream(UpstreamError::ConnectTimeout {
                        upstream: self.name.clone(),
                        timeout: self.timeouts.connect,
                    });
                }
            }
            source = err.source();
        }
        // Canceled: hyper never wrote the request. If a connection to the same endpoint
        // failed with a TLS alert meanwhile, that is why (see `connect::LateAlerts`).
        let canceled = e
            .source()
            .and_then(|s| s.downcast_ref::<hyper::Error>())
            .is_some_and(hyper::Error::is_canceled);
        if canceled {
            if let Some(alert) = self.alerts.since(alerts, authority) {
                return SendError::Upstream(UpstreamError::Tls {
                    upstream: self.name.clone(),
                    detail: alert_hint(&alert, &self.name),
                });
            }
        }
        let upstream = self.name.clone();
        let detail = error_chain(e);
        SendError::Upstream(if e.is_connect() {
            UpstreamError::Connect { upstream, detail }
        } else {
            UpstreamError::Protocol { upstream, detail }
        })
    }
}

/// The rustls error behind `err`, looking inside `io::Error`s (the TLS connector wraps
/// rustls's error in one, and the connector wraps that in another).
fn rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current: &(dyn std::error::Error + 'static) = err;
    loop {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let io = current.downcast_ref::<std::io::Error>()?;
        current = io.get_ref()?;
    }
}

/// A TLS failure with what to do about it.
fn tls_hint(e: &rustls::Error, upstream: &str) -> String {
    match e {
        rustls::Error::InvalidCertificate(_) => format!(
            "{e}; the gateway does not trust the upstream's certificate (set upstreams.{upstream}.ca if a private CA issued it)"
        ),
        rustls::Error::AlertReceived(alert) => alert_hint(&format!("{alert:?}"), upstream),
        other => other.to_string(),
    }
}

/// Alerts by which a server refuses the client's certificate.
const CLIENT_CERT_ALERTS: [&str; 7] = [
    "CertificateRequired",
    "BadCertificate",
    "UnknownCA",
    "CertificateUnknown",
    "AccessDenied",
    "CertificateExpired",
    "CertificateRevoked",
];

/// A fatal alert from the upstream, with what to do about it.
fn alert_hint(alert: &str, upstream: &str) -> String {
    if CLIENT_CERT_ALERTS.contains(&alert) {
        format!(
            "received fatal alert: {alert}; the upstream did not accept the gateway's client certificate (see upstreams.{upstream}.client_cert and client_key)"
        )
    } else {
        format!("received fatal alert: {alert}")
    }
}

/// A fatal TLS alert that surfaced as a read error after the handshake (tokio-rustls keeps
/// only rustls's message then: "received fatal alert: NAME").
fn late_tls_alert(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let io = err.downcast_ref::<std::io::Error>()?;
    if io.kind() != std::io::ErrorKind::InvalidData {
        return None;
    }
    let text = io.get_ref()?.to_string();
    text.strip_prefix("received fatal alert: ")
        .map(|alert| alert.trim().to_owned())
}

/// The client path after the client-facing `base_path`, or `None` when the path is outside it
/// (then it goes to the upstream as it is).
fn rest_of<'a>(base_path: &str, path: &'a str) -> Option<&'a str> {
    if base_path.is_empty() {
        Some(path)
    } else {
        path.strip_prefix(base_path)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

/// The error and its sources on one line (hyper's and the AWS crates' top-level messages
/// are terse).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(err) = source {
        let text = err.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = err.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::strip_credential_params;

    #[test]
    fn credential_query_parameters_are_removed() {
        let cases = [
            ("/v1/models", "/v1/models"),
            ("/v1/models?limit=5", "/v1/models?limit=5"),
            ("/v1/models?api-key=secret", "/v1/models"),
            ("/v1/x?a=1&API-KEY=s&b=2", "/v1/x?a=1&b=2"),
            ("/v1/x?subscription-key=s&a=1", "/v1/x?a=1"),
            (
                "/model/m/invoke?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F&X-Amz-Signature=abc&q=1",
                "/model/m/invoke?q=1",
            ),
            ("/v1/x?api%2Dkey=s&a=1", "/v1/x?a=1"),
            ("/v1/x?apikey=kept&key=kept", "/v1/x?apikey=kept&key=kept"),
        ];
        for (given, want) in cases {
            assert_eq!(strip_credential_params(given.to_owned()), want, "{given}");
        }
    }
}
