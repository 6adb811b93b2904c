//! Gateway clients (`[[clients]]`, issue #7): requests by client and what became of them.

use prometheus::{IntCounterVec, Opts, Registry};

/// The label of requests that named no known client.
pub const UNKNOWN_CLIENT: &str = "unknown";

/// What the client check decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientResult {
    Allowed,
    RateLimited,
    Unauthenticated,
}

impl ClientResult {
    pub const fn as_str(self) -> &'static str {
        match self {
            ClientResult::Allowed => "allowed",
            ClientResult::RateLimited => "rate_limited",
            ClientResult::Unauthenticated => "unauthenticated",
        }
    }
}

pub struct ClientMetrics {
    requests: IntCounterVec,
}

impl ClientMetrics {
    pub fn new(registry: &Registry) -> Result<ClientMetrics, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "switchyard_client_requests_total",
                "Requests by gateway client ([[clients]] name, or unknown) and result: \
                 allowed, rate_limited (429), unauthenticated (401).",
            ),
            &["client", "result"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        Ok(ClientMetrics { requests })
    }

    /// Series at zero for `clients`, so that dashboards see them before traffic.
    pub fn known(&self, clients: impl Iterator<Item = impl AsRef<str>>) {
        for client in clients {
            for result in [ClientResult::Allowed, ClientResult::RateLimited] {
                self.requests
                    .with_label_values(&[client.as_ref(), result.as_str()]);
            }
        }
        self.requests
            .with_label_values(&[UNKNOWN_CLIENT, ClientResult::Unauthenticated.as_str()]);
    }

    pub fn request(&self, client: &str, result: ClientResult) {
        self.requests
            .with_label_values(&[client, result.as_str()])
            .inc();
    }
}
