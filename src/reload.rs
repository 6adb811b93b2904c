//! Hot reload: read and validate the config file again, build the gateway state for it, and
//! swap it in atomically. Triggered by SIGHUP, `POST /reload` on the admin listener, or a
//! change of the file's content (`[reload] watch`).
//!
//! New requests take the new state from the [`Live`] cell; a request already running keeps
//! the `Arc<Gateway>` it started with, so it finishes under the config that decided it. A
//! file that does not load changes nothing. Settings bound at startup (listen addresses,
//! worker threads, the affinity store, the audit trail, logging) are reported as needing a
//! restart, never silently ignored; everything else applies at once.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::config::{sha256_hex, AffinityStore, Config, ConfigError};
use crate::gateway::{Gateway, GatewayError};
use crate::listener::Shutdown;
use crate::metrics::ReloadResult;

/// The gateway state new requests use.
pub type Live = ArcSwap<Gateway>;

/// What asked for a reload, for logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Signal,
    Admin,
    FileChanged,
}

impl Trigger {
    pub const fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::Admin => "POST /reload",
            Trigger::FileChanged => "file changed",
        }
    }
}

/// A reload that applied.
#[derive(Clone, Debug, Serialize)]
pub struct ReloadReport {
    /// SHA-256 of the file now deciding new requests.
    pub sha256: String,
    /// SHA-256 of the config it replaced.
    pub previous_sha256: String,
    /// Upstreams whose running client (connections, health) was kept: unchanged.
    pub upstreams_kept: Vec<String>,
    /// Upstreams built anew from changed (or new) settings.
    pub upstreams_rebuilt: Vec<String>,
    /// Settings that differ from the running ones but only apply after a restart.
    pub restart_required: Vec<String>,
}

/// A reload that did not apply: the running config is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("this gateway was not started from a config file, so there is nothing to reload")]
    NoFile,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the new config could not start: {0}")]
    Start(#[from] GatewayError),
}

/// Reloads the config file into the live state, one reload at a time.
pub struct Reloader {
    live: Arc<Live>,
    /// The TLS listener's certificate and key, swapped on reload (certificate rotation).
    tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    path: Option<PathBuf>,
    /// The settings the process has bound; reloads run one after another under this lock,
    /// never on the request path.
    bound: tokio::sync::Mutex<Bound>,
}

impl Reloader {
    pub fn new(live: Arc<Live>, tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>) -> Reloader {
        let current = live.load();
        let bound = Bound::of(&current);
        let path = current.config.source.path.clone();
        Reloader {
            live,
            tls,
            path,
            bound: tokio::sync::Mutex::new(bound),
        }
    }

    /// The config file, if the gateway was started from one.
    pub fn path(&self) -> Option<&PathBuf> {
        self.path.as_ref()
    }

    /// Load the file, build its state and swap it in. Counted in
    /// `switchyard_config_reloads_total` and logged either way.
    pub async fn reload(&self, trigger: Trigger) -> Result<ReloadReport, ReloadError> {
        let mut bound = self.bound.lock().await;
        let metrics = self.live.load().metrics.clone();
        let result = self.apply(&mut bound).await;
        match &result {
            Ok(report) => {
                metrics.config.reload(ReloadResult::Success);
                tracing::info!(
                    trigger = trigger.as_str(),
                    sha256 = %report.sha256,
                    previous = %report.previous_sha256,
                    kept = ?report.upstreams_kept,
                    rebuilt = ?report.upstreams_rebuilt,
                    "config reloaded"
                );
                for setting in &report.restart_required {
                    tracing::warn!(
                        trigger = trigger.as_str(),
                        setting = %setting,
                        "config change needs a restart to apply; the rest of the file is live"
                    );
                }
            }
            Err(e) => {
                metrics.config.reload(ReloadResult::Error);
                tracing::error!(
                    trigger = trigger.as_str(),
                    error = %e,
                    "config reload failed; the running config is unchanged"
                );
            }
        }
        result
    }

    async fn apply(&self, bound: &mut Bound) -> Result<ReloadReport, ReloadError> {
        let path = self.path.as_ref().ok_or(ReloadError::NoFile)?;
        // Reading the file is blocking I/O, but small and rare: off the request path anyway.
        let mut config = Config::load(path)?;
        let restart_required = bound.differences(&config);
        // Upstream clients keep one pool per running worker thread, however many the file
        // asks for (that takes a restart, reported above).
        config.server.workers = bound.config.server.workers;
        let previous = self.live.load_full();
        let created: Vec<(String, String)> = config
            .upstreams
            .iter()
            .flat_map(|u| u.endpoints.iter().map(|e| (u.name.clone(), e.name.clone())))
            .collect();
        let next = match previous.next(config).await {
            Ok(next) => next,
            Err(e) => {
                // Building the new clients registered their endpoints' series: take back
                // those the running config does not have, and put the running ones right.
                forget_unless_live(&previous, &created);
                return Err(e.into());
            }
        };
        if bound.affinity.is_none() {
            if let Some(_table) = &next.affinity {
                bound.affinity =
                    Some((next.config.affinity.store.clone(), next.config.affinity.ttl));
            }
        }
        let (kept, rebuilt) = upstream_changes(&previous, &next);
        if let (Some(cell), Some(tls)) = (&self.tls, &next.config.server.tls) {
            cell.store(tls.config.clone());
        }
        let report = ReloadReport {
            sha256: next.config.source.sha256.to_string(),
            previous_sha256: previous.config.source.sha256.to_string(),
            upstreams_kept: kept,
            upstreams_rebuilt: rebuilt,
            restart_required,
        };
        let metrics = next.metrics.clone();
        forget_removed_endpoints(&previous, &next);
        self.live.store(Arc::new(next));
        metrics.config.active(&report.sha256, unix_now());
        metrics
            .config
            .restart_required(!report.restart_required.is_empty());
        Ok(report)
    }

    /// Poll the file every `interval` and reload when its content changes. A content that
    /// failed once is not retried until it changes again (one error per edit, not one per
    /// poll). Ends when shutdown begins.
    pub(crate) async fn watch(self: Arc<Self>, interval: Duration, mut shutdown: Shutdown) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut failed: Option<String> = None;
        let mut unreadable = false;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.wait_for(|draining| draining.is_some()) => return,
            }
            let bytes = match tokio::fs::read(&path).await {
                Ok(bytes) => {
                    unreadable = false;
                    bytes
                }
                Err(e) => {
                    // A ConfigMap update swaps a symlink: a read may fail for an instant.
                    if !unreadable {
                        tracing::warn!(path = %path.display(), error = %e, "cannot read the config file to watch it");
                    }
                    unreadable = true;
                    continue;
                }
            };
            let sha = sha256_hex(&bytes);
            let active = self.live.load().config.source.sha256.clone();
            if *active == *sha || failed.as_deref() == Some(sha.as_str()) {
                continue;
            }
            match self.reload(Trigger::FileChanged).await {
                Ok(_) => failed = None,
                // A file that does not validate stays bad until it changes: try it once. (It
                // may have changed again while it was read; the next poll sees that.)
                Err(ReloadError::Config(_)) => failed = Some(sha),
                // A start failure (a credential not there yet) may heal: try again next poll.
                Err(_) => failed = None,
            }
        }
    }
}

/// The settings a running process cannot change: bound at startup (or, for the affinity
/// table, when it was first connected).
struct Bound {
    config: Config,
    /// The affinity store and TTL the running table was connected with; `None` while no
    /// table is connected (a config without pools), when the next one that has pools still
    /// chooses them.
    affinity: Option<(AffinityStore, Duration)>,
}

impl Bound {
    fn of(gateway: &Gateway) -> Bound {
        let config = &gateway.config;
        Bound {
            affinity: gateway
                .affinity
                .as_ref()
                .map(|_| (config.affinity.store.clone(), config.affinity.ttl)),
            config: config.clone(),
        }
    }

    /// Each restart-only setting `next` changes, as `key: running …, file says …`. Values
    /// that may hold secrets (a Redis URL's password, the audit key) are never shown.
    fn differences(&self, next: &Config) -> Vec<String> {
        let was = &self.config;
        let mut out = Vec::new();
        let mut differ = |key: &str, running: String, file: String| {
            if running != file {
                out.push(format!("{key}: running {running}, file says {file}"));
            }
        };
        let addr =
            |a: Option<std::net::SocketAddr>| a.map_or("(none)".to_owned(), |a| a.to_string());
        differ(
            "server.listen",
            addr(was.server.listen),
            addr(next.server.listen),
        );
        differ(
            "server.tls.listen",
            addr(was.server.tls.as_ref().map(|t| t.listen)),
            addr(next.server.tls.as_ref().map(|t| t.listen)),
        );
        differ(
            "server.workers",
            was.server.workers.to_string(),
            next.server.workers.to_string(),
        );
        differ(
            "admin.listen",
            was.admin.listen.to_string(),
            next.admin.listen.to_string(),
        );
        let (wl, nl) = (&was.limits, &next.limits);
        differ(
            "limits.max_header_bytes",
            wl.max_header_bytes.to_string(),
            nl.max_header_bytes.to_string(),
        );
        // Every limit but the body size is built into the listeners and their connections.
        let limit = |l: &crate::config::Limits| {
            [
                (
                    "limits.header_read_timeout",
                    format!("{:?}", l.header_read_timeout),
                ),
                ("limits.max_headers", l.max_headers.to_string()),
                ("limits.max_connections", l.max_connections.to_string()),
                (
                    "limits.max_requests_per_connection",
                    l.max_requests_per_connection.to_string(),
                ),
                (
                    "limits.keepalive_timeout",
                    format!("{:?}", l.keepalive_timeout),
                ),
                ("limits.send_timeout", format!("{:?}", l.send_timeout)),
                (
                    "limits.send_buffer",
                    l.send_buffer
                        .map_or_else(|| "unset".to_string(), |n| n.to_string()),
                ),
                (
                    "limits.unsent_buffer",
                    l.unsent_buffer.unwrap_or(0).to_string(),
                ),
                (
                    "limits.h2_max_concurrent_streams",
                    l.h2.max_concurrent_streams.to_string(),
                ),
                (
                    "limits.h2_max_pending_resets",
                    l.h2.max_pending_resets.to_string(),
                ),
                ("limits.h2_stream_window", l.h2.stream_window.to_string()),
                (
                    "limits.h2_connection_window",
                    l.h2.connection_window.to_string(),
                ),
                ("limits.h2_send_buffer", l.h2.send_buffer.to_string()),
            ]
        };
        for ((key, running), (_, file)) in limit(wl).into_iter().zip(limit(nl)) {
            differ(key, running, file);
        }
        differ(
            "log.format",
            format!("{:?}", was.log.format),
            format!("{:?}", next.log.format),
        );
        differ("log.level", was.log.level.clone(), next.log.level.clone());
        if let Some((store, ttl)) = &self.affinity {
            if *store != next.affinity.store {
                out.push(format!(
                    "affinity.store: running {}, file says {}",
                    describe_store(store),
                    describe_store(&next.affinity.store)
                ));
            }
            if *ttl != next.affinity.ttl {
                out.push(format!(
                    "affinity.ttl: running {ttl:?}, file says {:?}",
                    next.affinity.ttl
                ));
            }
        }
        if was.audit != next.audit {
            out.push(format!(
                "audit: running {}, file says {}",
                describe_audit(was.audit.as_ref()),
                describe_audit(next.audit.as_ref())
            ));
        }
        if was.reload != next.reload {
            out.push(format!(
                "reload: running {:?}, file says {:?}",
                was.reload, next.reload
            ));
        }
        out
    }
}

/// An affinity store for a report: its kind and where, never a password.
fn describe_store(store: &AffinityStore) -> String {
    match store {
        AffinityStore::Memory { capacity } => format!("memory (capacity {capacity})"),
        AffinityStore::Redis {
            url,
            key_prefix,
            timeout,
            local_capacity,
        } => format!(
            "redis {} (prefix {key_prefix:?}, timeout {timeout:?}, local capacity {local_capacity})",
            crate::affinity::redact_url(url)
        ),
    }
}

/// An audit setting for a report: never the key itself.
fn describe_audit(audit: Option<&crate::config::Audit>) -> String {
    match audit {
        None => "(none)".to_owned(),
        Some(a) => format!(
            "{} (max_file_bytes {}, max_files {}, queue {}, on_full {:?}, {})",
            a.path.display(),
            a.max_file_bytes,
            a.max_files,
            a.queue,
            a.on_full,
            match &a.key {
                None => "no key".to_owned(),
                Some(key) => format!("key {}", &sha256_hex(&key.0)[..8]),
            }
        ),
    }
}

/// Which upstreams of `next` kept `previous`'s client and which were built anew.
fn upstream_changes(previous: &Gateway, next: &Gateway) -> (Vec<String>, Vec<String>) {
    let mut kept = Vec::new();
    let mut rebuilt = Vec::new();
    for (_, client) in next.policy.upstreams() {
        let reused = previous
            .policy
            .upstreams()
            .iter()
            .any(|(_, old)| Arc::ptr_eq(old, client));
        let name = client.name().to_owned();
        if reused {
            kept.push(name);
        } else {
            rebuilt.push(name);
        }
    }
    (kept, rebuilt)
}

/// After a failed reload: remove the series of `created` endpoints the running config does
/// not have, and bring the running endpoints' series back to their state.
fn forget_unless_live(live: &Gateway, created: &[(String, String)]) {
    let running: HashSet<(&str, &str)> = live
        .policy
        .upstreams()
        .into_iter()
        .flat_map(|(_, u)| {
            u.pool()
                .endpoints()
                .iter()
                .map(move |e| (u.name(), &*e.name))
        })
        .collect();
    for (upstream, endpoint) in created {
        if !running.contains(&(upstream.as_str(), endpoint.as_str())) {
            live.metrics.pool.forget_endpoint(upstream, endpoint);
        }
    }
    for (_, upstream) in live.policy.upstreams() {
        upstream.pool().refresh_up_gauges();
    }
}

/// Drop the `endpoint_up` series of endpoints `next` no longer has.
fn forget_removed_endpoints(previous: &Gateway, next: &Gateway) {
    let current: HashSet<(&str, &str)> = next
        .policy
        .upstreams()
        .into_iter()
        .flat_map(|(_, u)| {
            u.pool()
                .endpoints()
                .iter()
                .map(move |e| (u.name(), &*e.name))
        })
        .collect();
    for (_, upstream) in previous.policy.upstreams() {
        for endpoint in upstream.pool().endpoints() {
            if !current.contains(&(upstream.name(), &*endpoint.name)) {
                next.metrics
                    .pool
                    .forget_endpoint(upstream.name(), &endpoint.name);
            }
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
