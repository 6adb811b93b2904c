//! The gateway's shared state, built once from a `Config`: classifier, policy, metrics.

use std::sync::Arc;

use crate::classify::Classifier;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::policy::{MissingUpstream, Policy};
use crate::upstream::auth::AuthError;

pub struct Gateway {
    pub config: Config,
    pub classifier: Classifier,
    pub policy: Policy,
    pub metrics: Arc<Metrics>,
}

/// The gateway's state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Policy(#[from] MissingUpstream),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl Gateway {
    /// Build the state without loading credentials (for `explain` and tests of pure parts).
    pub fn new(config: Config, metrics: Arc<Metrics>) -> Result<Gateway, GatewayError> {
        let classifier = Classifier::new(config.classifier.clone());
        let policy = Policy::new(&config)?;
        Ok(Gateway {
            config,
            classifier,
            policy,
            metrics,
        })
    }

    /// Build the state and load every upstream's credentials (token files, AWS keys),
    /// starting their refresh tasks. A credential that cannot be loaded stops the start.
    pub async fn start(config: Config, metrics: Arc<Metrics>) -> Result<Gateway, GatewayError> {
        let gateway = Gateway::new(config, metrics)?;
        for (_, upstream) in gateway.policy.upstreams() {
            upstream.auth().start().await?;
        }
        Ok(gateway)
    }
}
