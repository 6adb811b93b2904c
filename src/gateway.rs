//! The gateway's shared state, built once from a `Config`: classifier, policy, metrics.

use std::sync::Arc;

use crate::classify::Classifier;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::policy::{MissingUpstream, Policy};

pub struct Gateway {
    pub config: Config,
    pub classifier: Classifier,
    pub policy: Policy,
    pub metrics: Arc<Metrics>,
}

impl Gateway {
    pub fn new(config: Config, metrics: Arc<Metrics>) -> Result<Gateway, MissingUpstream> {
        let classifier = Classifier::new(config.classifier.clone());
        let policy = Policy::new(&config)?;
        Ok(Gateway {
            config,
            classifier,
            policy,
            metrics,
        })
    }
}
