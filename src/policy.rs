//! The policy: class → upstream. The only place that picks an upstream.
//!
//! `Policy` owns exactly two upstream clients, one per class, and hands out the one that
//! serves a decided class. There is no API to reach the other one for the same request: a
//! failure on the chosen upstream becomes an error, never a failover across the boundary.

use std::sync::Arc;

use crate::classify::{Class, Decision, Marker, MarkerKind, Unclassifiable, UnclassifiableReason};
use crate::config::{self, Config};
use crate::metrics::Metrics;
use crate::upstream::UpstreamClient;

/// Rule name recorded when `routing.unclassifiable` assigns a class to an unreadable body.
pub const UNCLASSIFIABLE_RULE: &str = "unclassifiable";

pub struct Policy {
    stateless: Arc<UpstreamClient>,
    stateful: Arc<UpstreamClient>,
    unclassifiable: config::Unclassifiable,
    unclassifiable_rule: Arc<str>,
}

/// The config's routing names an upstream that does not exist (validation prevents this).
#[derive(Debug, thiserror::Error)]
#[error("routing names upstream #{0}, which is not defined")]
pub struct MissingUpstream(usize);

impl Policy {
    pub fn new(config: &Config, metrics: &Metrics) -> Result<Policy, MissingUpstream> {
        Self::reusing(config, metrics, None)
    }

    /// The policy of `config`, keeping the clients of `previous` (a reload's running policy)
    /// whose upstream config is unchanged: their connections, health and ejections carry on.
    pub fn reusing(
        config: &Config,
        metrics: &Metrics,
        previous: Option<&Policy>,
    ) -> Result<Policy, MissingUpstream> {
        let client = |i: usize| {
            let cfg = config.upstreams.get(i).ok_or(MissingUpstream(i))?;
            let kept = previous.and_then(|p| {
                p.upstreams()
                    .into_iter()
                    .map(|(_, client)| client)
                    .find(|client| client.built_from(cfg))
                    .cloned()
            });
            Ok(kept.unwrap_or_else(|| {
                Arc::new(UpstreamClient::new(cfg, metrics, config.server.workers))
            }))
        };
        Ok(Policy {
            stateless: client(config.routing.stateless)?,
            stateful: client(config.routing.stateful)?,
            unclassifiable: config.routing.unclassifiable,
            unclassifiable_rule: Arc::from(UNCLASSIFIABLE_RULE),
        })
    }

    /// The upstream that serves `class`.
    pub fn upstream_for(&self, class: Class) -> &UpstreamClient {
        match class {
            Class::Stateless => &self.stateless,
            Class::Stateful => &self.stateful,
        }
    }

    /// Settle a classification outcome: a decision stands; an unclassifiable body is refused
    /// or assigned a class as `routing.unclassifiable` says. Ambiguous paths are always refused.
    pub fn settle(
        &self,
        outcome: Result<Decision, Unclassifiable>,
    ) -> Result<Decision, Unclassifiable> {
        let u = match outcome {
            Ok(decision) => return Ok(decision),
            Err(u) => u,
        };
        match (self.unclassifiable, &u.reason) {
            (_, UnclassifiableReason::AmbiguousPath) | (config::Unclassifiable::Reject, _) => {
                Err(u)
            }
            (config::Unclassifiable::As(class), reason) => Ok(Decision {
                class,
                rule: self.unclassifiable_rule.clone(),
                marker: Marker {
                    kind: MarkerKind::Body,
                    text: Arc::from(reason.code()),
                },
                route: u.route,
            }),
        }
    }

    /// Both upstreams, for startup logging and metrics.
    pub fn upstreams(&self) -> [(Class, &Arc<UpstreamClient>); 2] {
        [
            (Class::Stateless, &self.stateless),
            (Class::Stateful, &self.stateful),
        ]
    }
}
