//! The gateway's state for one config: classifier, shadow classifier, policy, and the handles
//! shared by every config a process runs (metrics, affinity table, audit trail).
//!
//! A reload builds a new `Gateway` from the new config with [`Gateway::next`], reusing what
//! has not changed (upstream clients, with their connections and health), and swaps it in
//! (`reload.rs`); requests already running keep the `Arc<Gateway>` they started with.

use std::sync::Arc;

use http::HeaderValue;

use crate::affinity::{AffinityError, AffinitySettings, AffinityTable, StoreSettings};
use crate::audit::AuditLog;
use crate::classify::{Class, Classifier, RouteId};
use crate::clients::Clients;
use crate::config::Config;
use crate::metrics::{Metrics, RouteMetrics, RouteMetricsTable};
use crate::policy::{MissingUpstream, Policy};
use crate::upstream::auth::AuthError;

/// How many hex digits of the config's SHA-256 `x-switchyard-config` carries.
const CONFIG_HEADER_DIGITS: usize = 12;

pub struct Gateway {
    pub config: Config,
    pub classifier: Classifier,
    /// `[shadow]`: evaluated beside `classifier` on every request, never enforced.
    pub shadow: Option<Classifier>,
    pub policy: Policy,
    pub metrics: Arc<Metrics>,
    /// The learned id -> endpoint table; `None` until `start` connects it (and in `explain`).
    pub affinity: Option<Arc<AffinityTable>>,
    /// The audit trail, when `[audit]` is configured and the server opened it.
    pub audit: Option<AuditLog>,
    /// `x-switchyard-config`: the start of the config's SHA-256.
    pub config_header: HeaderValue,
    /// `[[clients]]`: who may call, and how often; `None` lets anyone call.
    pub clients: Option<Clients>,
    /// Metric handles per (route, class), resolved on first use.
    routes: RouteMetricsTable,
}

/// The gateway's state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Policy(#[from] MissingUpstream),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Affinity(#[from] AffinityError),
}

impl Gateway {
    /// Build the state without loading credentials (for `explain` and tests of pure parts).
    pub fn new(config: Config, metrics: Arc<Metrics>) -> Result<Gateway, GatewayError> {
        Self::build(config, metrics, None)
    }

    fn build(
        config: Config,
        metrics: Arc<Metrics>,
        previous: Option<&Gateway>,
    ) -> Result<Gateway, GatewayError> {
        let classifier = Classifier::new(config.classifier.clone());
        let shadow = config.shadow.clone().map(Classifier::new);
        let policy = Policy::reusing(&config, &metrics, previous.map(|p| &p.policy))?;
        let routes = RouteMetricsTable::new(classifier.route_labels().count());
        let clients = Clients::new(&config.clients, previous.and_then(|p| p.clients.as_ref()));
        if let Some(clients) = &clients {
            metrics.clients.known(clients.names());
        }
        let digits = config
            .source
            .sha256
            .get(..CONFIG_HEADER_DIGITS)
            .unwrap_or(&config.source.sha256);
        let config_header =
            HeaderValue::from_str(digits).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Ok(Gateway {
            config,
            classifier,
            shadow,
            policy,
            metrics,
            affinity: previous.and_then(|p| p.affinity.clone()),
            audit: previous.and_then(|p| p.audit.clone()),
            config_header,
            clients,
            routes,
        })
    }

    /// The metric handles of requests on `route` decided `class`.
    pub fn route_metrics(&self, route: RouteId, class: Class) -> &RouteMetrics {
        self.routes.get(&self.metrics, route, class, |route| {
            (
                self.classifier.route_label(route),
                self.policy.upstream_for(class).name(),
            )
        })
    }

    /// Build the state and load every upstream's credentials (token files, AWS keys),
    /// starting their refresh tasks. A credential that cannot be loaded stops the start.
    pub async fn start(config: Config, metrics: Arc<Metrics>) -> Result<Gateway, GatewayError> {
        let mut gateway = Gateway::new(config, metrics)?;
        gateway.start_parts().await?;
        Ok(gateway)
    }

    /// The state for `config`, the running `self` being replaced: unchanged upstream clients
    /// are kept (connections, health, ejections), new ones are started, and the affinity
    /// table and audit trail carry over (their settings only change with a restart, which
    /// `reload.rs` reports). On error nothing of the running state has changed.
    pub async fn next(&self, config: Config) -> Result<Gateway, GatewayError> {
        let mut gateway = Self::build(config, self.metrics.clone(), Some(self))?;
        gateway.start_parts().await?;
        Ok(gateway)
    }

    /// Start the upstream clients not yet started and connect the affinity table if the
    /// config has pools and none is connected.
    async fn start_parts(&mut self) -> Result<(), GatewayError> {
        for (_, upstream) in self.policy.upstreams() {
            upstream.start().await?;
        }
        // Only pools need the table: a lone endpoint holds everything its upstream keeps.
        let pools = self
            .policy
            .upstreams()
            .iter()
            .any(|(_, u)| u.pool().is_pool());
        if pools && self.affinity.is_none() {
            let settings = affinity_settings(&self.config.affinity);
            let table = AffinityTable::connect(&settings, self.metrics.clone()).await?;
            tracing::info!(store = %table.describe(), "affinity table ready");
            self.affinity = Some(Arc::new(table));
        }
        Ok(())
    }
}

fn affinity_settings(cfg: &crate::config::Affinity) -> AffinitySettings {
    let store = match &cfg.store {
        crate::config::AffinityStore::Memory { capacity } => StoreSettings::Memory {
            capacity: *capacity,
        },
        crate::config::AffinityStore::Redis {
            url,
            key_prefix,
            timeout,
            local_capacity,
        } => StoreSettings::Redis {
            url: url.clone(),
            key_prefix: key_prefix.clone(),
            timeout: *timeout,
            local_capacity: *local_capacity,
        },
    };
    AffinitySettings {
        store,
        ttl: cfg.ttl,
    }
}
