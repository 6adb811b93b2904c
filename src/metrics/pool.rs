//! Endpoint pools: endpoint health, ejections, health checks, retries, requests per endpoint,
//! and the upstream connections the gateway keeps (open now, and opened).
//!
//! Per-endpoint handles are resolved once when an upstream client is built
//! ([`PoolMetrics::endpoint`]), so a request only touches atomics.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::gauge_vec;

/// Why a request was sent again to another endpoint of the same upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryReason {
    /// The connection failed before anything was sent.
    Connect,
    /// An idempotent request failed before the response head arrived.
    Reset,
}

impl RetryReason {
    pub const ALL: [RetryReason; 2] = [RetryReason::Connect, RetryReason::Reset];

    pub const fn as_str(self) -> &'static str {
        match self {
            RetryReason::Connect => "connect",
            RetryReason::Reset => "reset",
        }
    }
}

pub struct PoolMetrics {
    up: IntGaugeVec,
    requests: IntCounterVec,
    ejections: IntCounterVec,
    checks: IntCounterVec,
    retries: IntCounterVec,
    connections: IntGaugeVec,
    connections_opened: IntCounterVec,
}

/// The protocol of an upstream connection (its `protocol` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnProtocol {
    Http1,
    Http2,
}

impl ConnProtocol {
    pub const ALL: [ConnProtocol; 2] = [ConnProtocol::Http1, ConnProtocol::Http2];

    pub const fn as_str(self) -> &'static str {
        match self {
            ConnProtocol::Http1 => "http1",
            ConnProtocol::Http2 => "http2",
        }
    }
}

/// One upstream's connection series, by protocol (resolved once per upstream client).
#[derive(Clone)]
pub struct UpstreamConnMetrics {
    http1: ProtocolConns,
    http2: ProtocolConns,
}

#[derive(Clone)]
struct ProtocolConns {
    open: IntGauge,
    opened: IntCounter,
}

/// One open upstream connection, counted in `switchyard_upstream_connections` until dropped.
pub struct OpenConnection(IntGauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl UpstreamConnMetrics {
    /// A connection was made: counted as opened, and as open until the guard is dropped.
    pub fn opened(&self, protocol: ConnProtocol) -> OpenConnection {
        let series = match protocol {
            ConnProtocol::Http1 => &self.http1,
            ConnProtocol::Http2 => &self.http2,
        };
        series.opened.inc();
        series.open.inc();
        OpenConnection(series.open.clone())
    }

    /// Series registered nowhere, for unit tests of the connection pool.
    #[cfg(test)]
    pub fn detached() -> UpstreamConnMetrics {
        let series = || ProtocolConns {
            open: IntGauge::new("open", "open").unwrap(),
            opened: IntCounter::new("opened", "opened").unwrap(),
        };
        UpstreamConnMetrics {
            http1: series(),
            http2: series(),
        }
    }
}

/// One endpoint's metric handles.
#[derive(Clone)]
pub struct EndpointMetrics {
    pub up: IntGauge,
    pub requests: IntCounter,
    pub ejections: IntCounter,
    checks_ok: IntCounter,
    checks_failed: IntCounter,
}

impl EndpointMetrics {
    pub fn health_check(&self, ok: bool) {
        if ok {
            self.checks_ok.inc();
        } else {
            self.checks_failed.inc();
        }
    }

    pub fn set_up(&self, up: bool) {
        self.up.set(i64::from(up));
    }
}

impl PoolMetrics {
    pub fn new(registry: &Registry, upstreams: &[&str]) -> Result<PoolMetrics, prometheus::Error> {
        let up = gauge_vec(
            registry,
            "switchyard_endpoint_up",
            "1 if the endpoint takes traffic (health checks passing, not ejected), else 0.",
            &["upstream", "endpoint"],
        )?;
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let requests = counter(
            "switchyard_endpoint_requests_total",
            "Requests sent to each endpoint (every attempt, retries included).",
            &["upstream", "endpoint"],
        )?;
        let ejections = counter(
            "switchyard_endpoint_ejections_total",
            "Times an endpoint was ejected after consecutive connect failures.",
            &["upstream", "endpoint"],
        )?;
        let checks = counter(
            "switchyard_health_checks_total",
            "Active health checks, by result (ok or failed).",
            &["upstream", "endpoint", "result"],
        )?;
        let retries = counter(
            "switchyard_retries_total",
            "Requests sent again to another endpoint of the same upstream, by reason.",
            &["upstream", "reason"],
        )?;
        let connections = gauge_vec(
            registry,
            "switchyard_upstream_connections",
            "Upstream connections open now, by upstream and protocol (http1, http2).",
            &["upstream", "protocol"],
        )?;
        let connections_opened = counter(
            "switchyard_upstream_connections_opened_total",
            "Upstream connections made (connected and handshaken), by upstream and protocol.",
            &["upstream", "protocol"],
        )?;
        for up in upstreams {
            for reason in RetryReason::ALL {
                retries.with_label_values(&[up, reason.as_str()]);
            }
            for protocol in ConnProtocol::ALL {
                connections.with_label_values(&[up, protocol.as_str()]);
                connections_opened.with_label_values(&[up, protocol.as_str()]);
            }
        }
        Ok(PoolMetrics {
            up,
            requests,
            ejections,
            checks,
            retries,
            connections,
            connections_opened,
        })
    }

    /// One upstream's connection series.
    pub fn upstream_connections(&self, upstream: &str) -> UpstreamConnMetrics {
        let series = |protocol: ConnProtocol| ProtocolConns {
            open: self
                .connections
                .with_label_values(&[upstream, protocol.as_str()]),
            opened: self
                .connections_opened
                .with_label_values(&[upstream, protocol.as_str()]),
        };
        UpstreamConnMetrics {
            http1: series(ConnProtocol::Http1),
            http2: series(ConnProtocol::Http2),
        }
    }

    /// Create (at zero, `up` = 1) and return one endpoint's series.
    pub fn endpoint(&self, upstream: &str, endpoint: &str) -> EndpointMetrics {
        let labels = [upstream, endpoint];
        let up = self.up.with_label_values(&labels);
        up.set(1);
        EndpointMetrics {
            up,
            requests: self.requests.with_label_values(&labels),
            ejections: self.ejections.with_label_values(&labels),
            checks_ok: self.checks.with_label_values(&[upstream, endpoint, "ok"]),
            checks_failed: self
                .checks
                .with_label_values(&[upstream, endpoint, "failed"]),
        }
    }

    /// Remove the `endpoint_up` series of an endpoint a reload took out of the config, so
    /// that it neither shows as up nor fires an alert as down.
    pub fn forget_endpoint(&self, upstream: &str, endpoint: &str) {
        let _ = self.up.remove_label_values(&[upstream, endpoint]);
    }

    pub fn retry(&self, upstream: &str, reason: RetryReason) {
        self.retries
            .with_label_values(&[upstream, reason.as_str()])
            .inc();
    }
}
