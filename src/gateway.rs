//! The gateway's shared state, built once from a `Config`: classifier, policy, metrics.

use std::sync::Arc;

use crate::affinity::{AffinityError, AffinitySettings, AffinityTable, StoreSettings};
use crate::classify::{Class, Classifier, RouteId};
use crate::config::Config;
use crate::metrics::{Metrics, RouteMetrics, RouteMetricsTable};
use crate::policy::{MissingUpstream, Policy};
use crate::upstream::auth::AuthError;

pub struct Gateway {
    pub config: Config,
    pub classifier: Classifier,
    pub policy: Policy,
    pub metrics: Arc<Metrics>,
    /// The learned id -> endpoint table; `None` until `start` connects it (and in `explain`).
    pub affinity: Option<Arc<AffinityTable>>,
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
        let classifier = Classifier::new(config.classifier.clone());
        let policy = Policy::new(&config, &metrics)?;
        let routes = RouteMetricsTable::new(classifier.route_labels().count());
        Ok(Gateway {
            config,
            classifier,
            policy,
            metrics,
            affinity: None,
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
        for (_, upstream) in gateway.policy.upstreams() {
            upstream.start().await?;
        }
        // Only pools need the table: a lone endpoint holds everything its upstream keeps.
        let pools = gateway
            .policy
            .upstreams()
            .iter()
            .any(|(_, u)| u.pool().is_pool());
        if pools {
            let settings = affinity_settings(&gateway.config.affinity);
            let table = AffinityTable::connect(&settings, gateway.metrics.clone()).await?;
            tracing::info!(store = %table.describe(), "affinity table ready");
            gateway.affinity = Some(Arc::new(table));
        }
        Ok(gateway)
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
