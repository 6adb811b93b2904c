//! WebSocket upgrades, open sessions and bytes relayed each way (issue #4).
//!
//! A session's handles are resolved once when it starts ([`WebSocketMetrics::session_open`],
//! [`WebSocketMetrics::session_bytes`]), so relaying a chunk only touches an atomic. Label
//! values come from the enums below; callers outside `metrics` reach them through one method
//! per value (`metrics/mod.rs` re-exports only [`WebSocketMetrics`]).

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::gauge_vec;

/// How a WebSocket handshake the gateway forwarded ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UpgradeResult {
    /// The upstream answered 101 and the session is relayed.
    Ok,
    /// The upstream answered something else; the client got that answer.
    Refused,
    /// No answer to relay: the upstream failed, answered a broken handshake, or the gateway
    /// refused the request before sending it.
    Error,
}

impl UpgradeResult {
    pub const fn as_str(self) -> &'static str {
        match self {
            UpgradeResult::Ok => "ok",
            UpgradeResult::Refused => "refused",
            UpgradeResult::Error => "error",
        }
    }
}

/// Which way relayed bytes went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    ClientToUpstream,
    UpstreamToClient,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::ClientToUpstream, Direction::UpstreamToClient];

    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::ClientToUpstream => "client_to_upstream",
            Direction::UpstreamToClient => "upstream_to_client",
        }
    }
}

pub struct WebSocketMetrics {
    upgrades: IntCounterVec,
    sessions_open: IntGaugeVec,
    bytes: IntCounterVec,
}

impl WebSocketMetrics {
    /// Register the metrics; per-upstream series start at zero.
    pub fn new(
        registry: &Registry,
        upstreams: &[&str],
    ) -> Result<WebSocketMetrics, prometheus::Error> {
        let upgrades = IntCounterVec::new(
            Opts::new(
                "switchyard_websocket_upgrades_total",
                "WebSocket handshakes forwarded upstream, by route, upstream and result \
                 (ok: 101 relayed, refused: the upstream answered something else, error).",
            ),
            &["route", "upstream", "result"],
        )?;
        registry.register(Box::new(upgrades.clone()))?;
        let sessions_open = gauge_vec(
            registry,
            "switchyard_websocket_sessions_open",
            "WebSocket sessions being relayed.",
            &["upstream"],
        )?;
        let bytes = IntCounterVec::new(
            Opts::new(
                "switchyard_websocket_bytes_total",
                "Bytes relayed over upgraded WebSocket connections, by direction.",
            ),
            &["upstream", "direction"],
        )?;
        registry.register(Box::new(bytes.clone()))?;
        for up in upstreams {
            sessions_open.with_label_values(&[up]);
            for direction in Direction::ALL {
                bytes.with_label_values(&[up, direction.as_str()]);
            }
        }
        Ok(WebSocketMetrics {
            upgrades,
            sessions_open,
            bytes,
        })
    }

    /// The upstream answered the handshake with 101; the session is relayed.
    pub fn upgrade_ok(&self, route: &str, upstream: &str) {
        self.upgrade(route, upstream, UpgradeResult::Ok);
    }

    /// The upstream answered the handshake with something else, passed on to the client.
    pub fn upgrade_refused(&self, route: &str, upstream: &str) {
        self.upgrade(route, upstream, UpgradeResult::Refused);
    }

    /// The handshake got no answer to relay (upstream failure, broken 101, gateway refusal).
    pub fn upgrade_error(&self, route: &str, upstream: &str) {
        self.upgrade(route, upstream, UpgradeResult::Error);
    }

    fn upgrade(&self, route: &str, upstream: &str, result: UpgradeResult) {
        self.upgrades
            .with_label_values(&[route, upstream, result.as_str()])
            .inc();
    }

    /// The open-sessions gauge of `upstream`, incremented while a session is relayed.
    pub fn session_open(&self, upstream: &str) -> IntGauge {
        self.sessions_open.with_label_values(&[upstream])
    }

    /// Byte counters of one session to `upstream`: (client to upstream, upstream to client).
    pub fn session_bytes(&self, upstream: &str) -> (IntCounter, IntCounter) {
        let bytes = |direction: Direction| {
            self.bytes
                .with_label_values(&[upstream, direction.as_str()])
        };
        (
            bytes(Direction::ClientToUpstream),
            bytes(Direction::UpstreamToClient),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_upstream_series_start_at_zero() {
        let registry = Registry::new();
        let m = WebSocketMetrics::new(&registry, &["a", "b"]).unwrap();
        let families = registry.gather();
        let count = |name: &str| {
            families
                .iter()
                .find(|f| f.name() == name)
                .map_or(0, |f| f.get_metric().len())
        };
        assert_eq!(count("switchyard_websocket_sessions_open"), 2);
        assert_eq!(count("switchyard_websocket_bytes_total"), 4);
        m.upgrade_refused("/v1/realtime", "a");
        let (to_upstream, _) = m.session_bytes("a");
        to_upstream.inc_by(3);
        assert_eq!(
            m.bytes
                .with_label_values(&["a", "client_to_upstream"])
                .get(),
            3
        );
        assert_eq!(
            m.upgrades
                .with_label_values(&["/v1/realtime", "a", "refused"])
                .get(),
            1
        );
    }
}
