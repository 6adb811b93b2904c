//! All Prometheus metrics: one `Metrics` struct owning its registry, passed as an `Arc`.
//!
//! Label values are bounded by construction: routes are templates from the classifier's
//! table, upstreams and rules are names from the config, and the remaining labels are enums
//! with `as_str()`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::classify::Class;

mod affinity;
mod audit;
mod clients;
mod config;
mod connections;
mod pool;
mod route;
mod streams;
mod websocket;

pub use affinity::AffinityMetrics;
pub use audit::AuditMetrics;
pub use clients::{ClientMetrics, ClientResult, UNKNOWN_CLIENT};
pub use config::{ConfigMetrics, ReloadResult};
pub use connections::{ClientConnectionError, ConnectionClose, ConnectionMetrics};
pub use pool::{
    ConnProtocol, EndpointMetrics, OpenConnection, PoolMetrics, RetryReason, UpstreamConnMetrics,
};
pub use route::{RouteMetrics, RouteMetricsTable};
pub use streams::{RouteStreamMetrics, StreamMetrics, StreamOutcome, TokenKind};
pub use websocket::WebSocketMetrics;

/// Seconds; LLM calls range from milliseconds (embeddings) to many minutes (reasoning streams).
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 600.0,
];

/// Label used where no class or upstream applies (a request refused before routing).
pub const NONE: &str = "none";

/// Why the gateway answered a request itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rejection {
    Unclassifiable,
    AmbiguousPath,
    BodyTooLarge,
    ClientBody,
    UpstreamUnavailable,
    UpstreamProtocol,
    /// The upstream did not connect or answer in time.
    Timeout,
    /// The client did not send its body in time.
    ClientTimeout,
    MethodNotAllowed,
    BadRequest,
    /// The request's model has no deployment on the (Azure classic) upstream.
    ModelNotMapped,
    /// The gateway could not authenticate to the upstream (credentials, signing).
    UpstreamAuth,
    /// Every endpoint of the upstream is failing health checks or ejected.
    NoHealthyEndpoint,
    /// The endpoint holding the request's state (or owning its session) is unavailable.
    AffinityEndpointDown,
    /// The audit trail could not take the request's record in time (`on_full = "block"`).
    AuditUnavailable,
    /// `[[clients]]` is configured and the request named none of them (401).
    Unauthenticated,
    /// The client is over its `rate_per_second` (429).
    RateLimited,
}

impl Rejection {
    pub const ALL: [Rejection; 17] = [
        Rejection::Unclassifiable,
        Rejection::AmbiguousPath,
        Rejection::BodyTooLarge,
        Rejection::ClientBody,
        Rejection::UpstreamUnavailable,
        Rejection::UpstreamProtocol,
        Rejection::Timeout,
        Rejection::ClientTimeout,
        Rejection::MethodNotAllowed,
        Rejection::BadRequest,
        Rejection::ModelNotMapped,
        Rejection::UpstreamAuth,
        Rejection::NoHealthyEndpoint,
        Rejection::AffinityEndpointDown,
        Rejection::AuditUnavailable,
        Rejection::Unauthenticated,
        Rejection::RateLimited,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Rejection::Unclassifiable => "unclassifiable",
            Rejection::AmbiguousPath => "ambiguous_path",
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::ClientBody => "client_body",
            Rejection::UpstreamUnavailable => "upstream_unavailable",
            Rejection::UpstreamProtocol => "upstream_protocol",
            Rejection::Timeout => "timeout",
            Rejection::ClientTimeout => "client_timeout",
            Rejection::MethodNotAllowed => "method_not_allowed",
            Rejection::BadRequest => "bad_request",
            Rejection::ModelNotMapped => "model_not_mapped",
            Rejection::UpstreamAuth => "upstream_auth",
            Rejection::NoHealthyEndpoint => "no_healthy_endpoint",
            Rejection::AffinityEndpointDown => "affinity_endpoint_unavailable",
            Rejection::AuditUnavailable => "audit_unavailable",
            Rejection::Unauthenticated => "unauthenticated",
            Rejection::RateLimited => "rate_limited",
        }
    }
}

/// What went wrong talking to an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UpstreamErrorKind {
    /// Connection refused or reset before the request was sent.
    Connect,
    ConnectTimeout,
    FirstByteTimeout,
    /// The connection failed or the upstream spoke garbage after the request went out.
    Protocol,
    /// The response body stalled longer than the idle timeout.
    IdleTimeout,
    /// The whole-request deadline passed while the response streamed.
    RequestTimeout,
    /// The response body broke off mid-way.
    BodyError,
    /// The TLS handshake failed: the upstream's certificate was not trusted, or it refused
    /// the gateway's client certificate.
    Tls,
}

impl UpstreamErrorKind {
    pub const ALL: [UpstreamErrorKind; 8] = [
        UpstreamErrorKind::Connect,
        UpstreamErrorKind::ConnectTimeout,
        UpstreamErrorKind::FirstByteTimeout,
        UpstreamErrorKind::Protocol,
        UpstreamErrorKind::IdleTimeout,
        UpstreamErrorKind::RequestTimeout,
        UpstreamErrorKind::BodyError,
        UpstreamErrorKind::Tls,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::ConnectTimeout => "connect_timeout",
            UpstreamErrorKind::FirstByteTimeout => "first_byte_timeout",
            UpstreamErrorKind::Protocol => "protocol",
            UpstreamErrorKind::IdleTimeout => "idle_timeout",
            UpstreamErrorKind::RequestTimeout => "request_timeout",
            UpstreamErrorKind::BodyError => "body_error",
            UpstreamErrorKind::Tls => "tls",
        }
    }
}

/// Why a TLS handshake on the client-facing listener failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsHandshakeError {
    /// The client did not finish the handshake within `limits.header_read_timeout`.
    Timeout,
    /// Client certificates are required (`client_ca`) and the client sent none.
    NoClientCert,
    /// The client's certificate was rejected (unknown issuer, expired, wrong usage, ...).
    BadCertificate,
    /// The client aborted with an alert, typically because it does not trust our certificate.
    ClientAlert,
    /// Not TLS (plain HTTP to the TLS port), or TLS the gateway does not speak.
    Protocol,
    /// The connection broke (reset, closed) during the handshake.
    Io,
}

impl TlsHandshakeError {
    pub const ALL: [TlsHandshakeError; 6] = [
        TlsHandshakeError::Timeout,
        TlsHandshakeError::NoClientCert,
        TlsHandshakeError::BadCertificate,
        TlsHandshakeError::ClientAlert,
        TlsHandshakeError::Protocol,
        TlsHandshakeError::Io,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            TlsHandshakeError::Timeout => "timeout",
            TlsHandshakeError::NoClientCert => "no_client_cert",
            TlsHandshakeError::BadCertificate => "bad_certificate",
            TlsHandshakeError::ClientAlert => "client_alert",
            TlsHandshakeError::Protocol => "protocol",
            TlsHandshakeError::Io => "io",
        }
    }
}

/// The gateway's metrics. Built once; cloned handles are cheap (`Arc` inside).
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    first_byte: HistogramVec,
    in_flight: IntGaugeVec,
    decisions: IntCounterVec,
    rejections: IntCounterVec,
    upstream_errors: IntCounterVec,
    request_bytes: IntCounterVec,
    response_bytes: IntCounterVec,
    tls_handshake_errors: IntCounterVec,
    worker_connections: IntGaugeVec,
    /// Endpoint pools (health, ejections, retries).
    pub pool: PoolMetrics,
    /// The id -> endpoint affinity table.
    pub affinity: AffinityMetrics,
    /// Tokens, time to first token, stream outcomes.
    pub streams: StreamMetrics,
    /// WebSocket sessions.
    pub websocket: WebSocketMetrics,
    /// Reloads, the active config, shadow policy disagreements.
    pub config: ConfigMetrics,
    /// The audit trail's writer.
    pub audit: AuditMetrics,
    /// Client connections: refused, closed by a limit, ended by a client error.
    pub connections: ConnectionMetrics,
    /// Requests by gateway client.
    pub clients: ClientMetrics,
}

impl Metrics {
    /// Register every metric. `upstreams` pre-creates per-upstream series at zero so that
    /// dashboards and alerts see them before the first request.
    pub fn new(upstreams: &[&str]) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let histogram =
            |name: &str, help: &str, labels: &[&str]| -> Result<HistogramVec, prometheus::Error> {
                let h = HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                    labels,
                )?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let requests = counter(
            "switchyard_requests_total",
            "Requests answered, by route template, class, upstream and HTTP status.",
            &["route", "class", "upstream", "status"],
        )?;
        let duration = histogram(
            "switchyard_request_duration_seconds",
            "Time from the request arriving to the last response byte.",
            &["route", "class", "upstream"],
        )?;
        let first_byte = histogram(
            "switchyard_upstream_first_byte_seconds",
            "Time from sending a request upstream to receiving its response head.",
            &["route", "upstream"],
        )?;
        let in_flight = gauge_vec(
            &registry,
            "switchyard_requests_in_flight",
            "Requests forwarded to an upstream whose response has not ended.",
            &["upstream"],
        )?;
        let decisions = counter(
            "switchyard_decisions_total",
            "Classification decisions, by class and the rule that decided.",
            &["class", "rule"],
        )?;
        let rejections = counter(
            "switchyard_rejections_total",
            "Requests the gateway answered itself with an error, by reason.",
            &["reason"],
        )?;
        let upstream_errors = counter(
            "switchyard_upstream_errors_total",
            "Failures talking to an upstream, by kind.",
            &["upstream", "kind"],
        )?;
        let request_bytes = counter(
            "switchyard_request_bytes_total",
            "Request body bytes forwarded upstream.",
            &["route", "upstream"],
        )?;
        let response_bytes = counter(
            "switchyard_response_bytes_total",
            "Response body bytes relayed to clients.",
            &["route", "upstream"],
        )?;
        let tls_handshake_errors = counter(
            "switchyard_tls_handshake_errors_total",
            "TLS handshakes on the client-facing listener that failed, by reason.",
            &["reason"],
        )?;
        let worker_connections = gauge_vec(
            &registry,
            "switchyard_worker_connections",
            "Client connections open, by worker thread (1 to server.workers).",
            &["worker"],
        )?;
        let build_info = gauge_vec(
            &registry,
            "switchyard_build_info",
            "Build information; always 1.",
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        for reason in Rejection::ALL {
            rejections.with_label_values(&[reason.as_str()]);
        }
        for reason in TlsHandshakeError::ALL {
            tls_handshake_errors.with_label_values(&[reason.as_str()]);
        }
        for up in upstreams {
            in_flight.with_label_values(&[up]);
            for kind in UpstreamErrorKind::ALL {
                upstream_errors.with_label_values(&[up, kind.as_str()]);
            }
        }
        let pool = PoolMetrics::new(&registry, upstreams)?;
        let affinity = AffinityMetrics::new(&registry, upstreams)?;
        let streams = StreamMetrics::new(&registry, upstreams)?;
        let websocket = WebSocketMetrics::new(&registry, upstreams)?;
        let config = ConfigMetrics::new(&registry)?;
        let audit = AuditMetrics::new(&registry)?;
        let connections = ConnectionMetrics::new(&registry)?;
        let clients = ClientMetrics::new(&registry)?;
        Ok(Metrics {
            clients,
            connections,
            config,
            audit,
            pool,
            affinity,
            streams,
            websocket,
            registry,
            requests,
            duration,
            first_byte,
            in_flight,
            decisions,
            rejections,
            upstream_errors,
            request_bytes,
            response_bytes,
            tls_handshake_errors,
            worker_connections,
        })
    }

    /// The open-connections gauge of worker `worker` (numbered from 1).
    pub fn worker_connections(&self, worker: usize) -> IntGauge {
        self.worker_connections
            .with_label_values(&[&worker.to_string()])
    }

    pub fn decision(&self, class: Class, rule: &str) {
        self.decisions
            .with_label_values(&[class.as_str(), rule])
            .inc();
    }

    pub fn rejection(&self, reason: Rejection) {
        self.rejections.with_label_values(&[reason.as_str()]).inc();
    }

    pub fn upstream_error(&self, upstream: &str, kind: UpstreamErrorKind) {
        self.upstream_errors
            .with_label_values(&[upstream, kind.as_str()])
            .inc();
    }

    /// A client's TLS handshake failed; the connection was closed before any request.
    pub fn tls_handshake_error(&self, reason: TlsHandshakeError) {
        self.tls_handshake_errors
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// A finished request: its status count and its duration.
    pub fn request_done(
        &self,
        route: &str,
        class: &str,
        upstream: &str,
        status: &str,
        seconds: f64,
    ) {
        self.requests
            .with_label_values(&[route, class, upstream, status])
            .inc();
        self.duration
            .with_label_values(&[route, class, upstream])
            .observe(seconds);
    }

    /// The in-flight gauge of `upstream`, to be incremented while a request is outstanding.
    pub fn in_flight(&self, upstream: &str) -> IntGauge {
        self.in_flight.with_label_values(&[upstream])
    }

    /// Byte counters for one (route, upstream), resolved once per request so that body
    /// frames only touch an atomic.
    pub fn byte_counters(&self, route: &str, upstream: &str) -> (IntCounter, IntCounter) {
        (
            self.request_bytes.with_label_values(&[route, upstream]),
            self.response_bytes.with_label_values(&[route, upstream]),
        )
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec cannot fail for valid metric families.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// A gauge vector registered in `registry`.
pub(crate) fn gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, prometheus::Error> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}
