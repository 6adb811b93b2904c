//! The configuration's life: reloads, the active config's hash, settings waiting for a
//! restart, draining, and the shadow policy's disagreements with the enforced one (issue #6).

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::gauge_vec;

/// How a reload attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReloadResult {
    /// The new config is serving new requests.
    Success,
    /// The file could not be read, parsed or validated, or its upstreams could not start:
    /// the old config keeps serving.
    Error,
}

impl ReloadResult {
    pub const ALL: [ReloadResult; 2] = [ReloadResult::Success, ReloadResult::Error];

    pub const fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Success => "success",
            ReloadResult::Error => "error",
        }
    }
}

/// Metrics of the config and its reloads.
pub struct ConfigMetrics {
    reloads: IntCounterVec,
    info: IntGaugeVec,
    restart_required: IntGauge,
    last_success: IntGauge,
    shadow_disagreements: IntCounterVec,
    shadow_evaluations: IntCounter,
    draining: IntGauge,
    /// The sha256 label now at 1 (reloads only; never on the request path).
    active: std::sync::Mutex<Option<String>>,
}

impl ConfigMetrics {
    pub fn new(registry: &Registry) -> Result<ConfigMetrics, prometheus::Error> {
        let reloads = IntCounterVec::new(
            Opts::new(
                "switchyard_config_reloads_total",
                "Config reloads (SIGHUP, POST /reload, file change), by result.",
            ),
            &["result"],
        )?;
        registry.register(Box::new(reloads.clone()))?;
        for result in ReloadResult::ALL {
            reloads.with_label_values(&[result.as_str()]);
        }
        let info = gauge_vec(
            registry,
            "switchyard_config_info",
            "The active config: 1 for the SHA-256 of the file that decides new requests.",
            &["sha256"],
        )?;
        let restart_required = IntGauge::with_opts(Opts::new(
            "switchyard_config_restart_required",
            "1 when the config file changes settings that only a restart applies \
             (listen addresses, workers, ...); the rest of it is live.",
        ))?;
        registry.register(Box::new(restart_required.clone()))?;
        let last_success = IntGauge::with_opts(Opts::new(
            "switchyard_config_last_reload_success_timestamp_seconds",
            "Unix time the active config was loaded (startup or the last successful reload).",
        ))?;
        registry.register(Box::new(last_success.clone()))?;
        let shadow_disagreements = IntCounterVec::new(
            Opts::new(
                "switchyard_shadow_disagreements_total",
                "Requests the [shadow] rule set would have classified differently, by the \
                 enforced class, the shadow class and the shadow rule that decided.",
            ),
            &["enforced", "shadow", "rule"],
        )?;
        registry.register(Box::new(shadow_disagreements.clone()))?;
        let shadow_evaluations = IntCounter::with_opts(Opts::new(
            "switchyard_shadow_evaluations_total",
            "Requests the [shadow] rule set was evaluated on.",
        ))?;
        registry.register(Box::new(shadow_evaluations.clone()))?;
        let draining = IntGauge::with_opts(Opts::new(
            "switchyard_draining",
            "1 once shutdown began: no new connections, in-flight requests finishing.",
        ))?;
        registry.register(Box::new(draining.clone()))?;
        Ok(ConfigMetrics {
            active: std::sync::Mutex::new(None),
            draining,
            reloads,
            info,
            restart_required,
            last_success,
            shadow_disagreements,
            shadow_evaluations,
        })
    }

    pub fn reload(&self, result: ReloadResult) {
        self.reloads.with_label_values(&[result.as_str()]).inc();
    }

    /// `sha256` (hex) is now the active config, loaded at `unix_seconds`.
    pub fn active(&self, sha256: &str, unix_seconds: i64) {
        // The new series first, then the old one goes: a scrape never sees none.
        self.info.with_label_values(&[sha256]).set(1);
        let mut current = self
            .active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(old) = current.replace(sha256.to_owned()) {
            if old != sha256 {
                let _ = self.info.remove_label_values(&[&old]);
            }
        }
        self.last_success.set(unix_seconds);
    }

    pub fn restart_required(&self, pending: bool) {
        self.restart_required.set(i64::from(pending));
    }

    pub fn draining(&self, draining: bool) {
        self.draining.set(i64::from(draining));
    }

    pub fn shadow_evaluated(&self) {
        self.shadow_evaluations.inc();
    }

    /// `enforced` and `shadow` are a class name or `rejected`; `rule` is the shadow rule
    /// that decided (or why it refused). All bounded: classes, and rule names from the config.
    pub fn shadow_disagreement(&self, enforced: &str, shadow: &str, rule: &str) {
        self.shadow_disagreements
            .with_label_values(&[enforced, shadow, rule])
            .inc();
    }
}
