//! The shared id -> endpoint table in Redis or Valkey, for many gateway replicas.
//!
//! Keys are `{key_prefix}{upstream}:{id}`, values the endpoint name, written with `SET … EX ttl`.
//! One multiplexed [`ConnectionManager`] carries every command (a clone per call is an `Arc`
//! clone; commands from many tasks are pipelined on one connection). A local moka cache sits in
//! front: an id never moves, so what was once found or learned is answered without Redis.
//!
//! When Redis fails at runtime:
//! - every GET and SET is given up after `timeout` (ours, around the whole call, including a
//!   wait for a reconnection in progress): a lookup answers `Lookup::Error`, a learn future
//!   completes; both count `switchyard_affinity_store_errors_total{op}`;
//! - after [`OPEN_AFTER`] failures in a row Redis is skipped: lookups answer `Lookup::Error`
//!   and learns return `None` at once (both still counted as store errors) instead of each
//!   request paying `timeout`, and every [`PROBE_EVERY`] one operation goes through to find out
//!   whether Redis is back; its success closes the breaker for everyone;
//! - failures are logged at most once per [`LOG_EVERY`] (with the number left unlogged), and
//!   once more when Redis answers again;
//! - the manager reconnects by itself: a dropped connection starts a reconnection with a short
//!   backoff, and after a failed one the next command starts another, so the gateway is back
//!   on Redis within about one command of Redis coming back;
//! - at most [`MAX_PENDING_WRITES`] SETs are outstanding; learning beyond that keeps the id in
//!   the local cache only and counts `switchyard_affinity_dropped_writes_total`, so a dead
//!   Redis cannot pile up tasks or hold response frames.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{AsyncConnectionConfig, Client};
use tokio::runtime::Handle;

use super::memory::LocalTable;
use super::{redact_url, AffinityError, LearnFuture, Lookup, StoreOp};
use crate::metrics::Metrics;

/// The start-up PING may take this long even when the per-operation `timeout` is shorter:
/// nothing waits on it, and a slow first connection should not fail the gateway's start.
const STARTUP_MIN: Duration = Duration::from_secs(2);
/// Connection attempts (in the background, never awaited longer than `timeout` by a request)
/// may take this long, so that a short `timeout` cannot make reconnecting impossible.
const CONNECT_MIN: Duration = Duration::from_secs(2);
/// Reconnection backoff: first delay, longest delay, attempts per reconnection.
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);
const RECONNECT_RETRIES: usize = 3;
/// Most SETs in flight at once.
pub const MAX_PENDING_WRITES: usize = 1024;
/// At most one warning per this interval while Redis fails.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// Consecutive failures after which operations skip Redis (fail at once) between probes.
pub const OPEN_AFTER: u32 = 3;
/// While skipping Redis, one operation per this interval still tries it.
pub const PROBE_EVERY: Duration = Duration::from_millis(250);

pub(super) struct RedisStore {
    manager: ConnectionManager,
    local: LocalTable,
    local_capacity: u64,
    /// The URL as configured, password hidden.
    url: String,
    timeout: Duration,
    /// `EX` of every SET, at least 1.
    ttl_secs: u64,
    /// The runtime the learn writes are spawned on (`learn` runs in `poll_frame`).
    runtime: Handle,
    pending: Arc<AtomicUsize>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

impl RedisStore {
    pub(super) async fn connect(
        url: &str,
        key_prefix: &str,
        timeout: Duration,
        local_capacity: u64,
        ttl: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<RedisStore, AffinityError> {
        let shown = redact_url(url);
        let runtime = Handle::try_current().map_err(|_| AffinityError::NoRuntime)?;
        let client = Client::open(url).map_err(|source| AffinityError::InvalidUrl {
            url: shown.clone(),
            source,
        })?;

        // A plain connection and a PING first, so that a wrong URL, a refused connection or a
        // refused password fails now with Redis's own error (the manager would retry instead).
        let startup = timeout.max(STARTUP_MIN);
        let probe_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(startup))
            .set_response_timeout(Some(startup));
        let probe = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&probe_config)
                .await?;
            ::redis::cmd("PING").query_async::<String>(&mut conn).await
        };
        match tokio::time::timeout(startup, probe).await {
            Ok(Ok(_)) => {}
            Ok(Err(source)) => return Err(AffinityError::Connect { url: shown, source }),
            Err(_) => {
                return Err(AffinityError::Timeout {
                    url: shown,
                    timeout: startup,
                })
            }
        }

        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout.max(CONNECT_MIN)))
            .set_response_timeout(Some(timeout))
            .set_min_delay(RECONNECT_MIN_DELAY)
            .set_max_delay(RECONNECT_MAX_DELAY)
            .set_number_of_retries(RECONNECT_RETRIES);
        let manager = ConnectionManager::new_with_config(client, config);
        let manager = match tokio::time::timeout(startup, manager).await {
            Ok(Ok(manager)) => manager,
            Ok(Err(source)) => return Err(AffinityError::Connect { url: shown, source }),
            Err(_) => {
                return Err(AffinityError::Timeout {
                    url: shown,
                    timeout: startup,
                })
            }
        };
        Ok(RedisStore {
            manager,
            local: LocalTable::new(key_prefix, local_capacity, ttl, metrics.clone()),
            local_capacity,
            health: Arc::new(Health::new(shown.clone())),
            url: shown,
            timeout,
            ttl_secs: ttl.as_secs().max(1),
            runtime,
            pending: Arc::new(AtomicUsize::new(0)),
            metrics,
        })
    }

    pub(super) fn url(&self) -> &str {
        &self.url
    }

    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    pub(super) fn local_capacity(&self) -> u64 {
        self.local_capacity
    }

    pub(super) async fn lookup(&self, upstream: &str, id: &str) -> Lookup {
        let key = self.local.key(upstream, id);
        if let Some(endpoint) = self.local.get(&key) {
            return Lookup::Hit(endpoint);
        }
        if !self.health.admit() {
            self.metrics.affinity.store_error(StoreOp::Get);
            self.health.skipped();
            return Lookup::Error;
        }
        let mut conn = self.manager.clone();
        let mut get = ::redis::cmd("GET");
        get.arg(&key);
        let outcome =
            tokio::time::timeout(self.timeout, get.query_async::<Option<String>>(&mut conn)).await;
        match outcome {
            Ok(Ok(Some(endpoint))) => {
                self.health.success();
                let endpoint: Arc<str> = endpoint.into();
                self.local.insert(key, upstream, endpoint.clone());
                Lookup::Hit(endpoint)
            }
            Ok(Ok(None)) => {
                self.health.success();
                Lookup::Miss
            }
            Ok(Err(e)) => {
                self.metrics.affinity.store_error(StoreOp::Get);
                self.health.failure(StoreOp::Get, &e);
                Lookup::Error
            }
            Err(_) => {
                self.metrics.affinity.store_error(StoreOp::Get);
                self.health.failure(StoreOp::Get, &TimedOut(self.timeout));
                Lookup::Error
            }
        }
    }

    pub(super) fn learn(
        &self,
        upstream: &str,
        id: &str,
        endpoint: &Arc<str>,
    ) -> Option<LearnFuture> {
        let key = self.local.key(upstream, id);
        self.local.insert(key.clone(), upstream, endpoint.clone());
        if !self.health.admit() {
            self.metrics.affinity.store_error(StoreOp::Set);
            self.health.skipped();
            return None;
        }
        let Some(permit) = Permit::acquire(&self.pending) else {
            self.metrics.affinity.dropped_write();
            self.health.dropped();
            return None;
        };
        let mut conn = self.manager.clone();
        let mut set = ::redis::cmd("SET");
        set.arg(key)
            .arg(endpoint.as_ref())
            .arg("EX")
            .arg(self.ttl_secs);
        let timeout = self.timeout;
        let health = self.health.clone();
        let metrics = self.metrics.clone();
        let write = self.runtime.spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(timeout, set.query_async::<()>(&mut conn)).await {
                Ok(Ok(())) => health.success(),
                Ok(Err(e)) => {
                    metrics.affinity.store_error(StoreOp::Set);
                    health.failure(StoreOp::Set, &e);
                }
                Err(_) => {
                    metrics.affinity.store_error(StoreOp::Set);
                    health.failure(StoreOp::Set, &TimedOut(timeout));
                }
            }
        });
        Some(Box::pin(async move {
            // The task ends within `timeout`; a JoinError means the runtime is shutting down.
            let _ = write.await;
        }))
    }
}

/// One slot of [`MAX_PENDING_WRITES`], given back when dropped (even if the task is cancelled).
struct Permit(Arc<AtomicUsize>);

impl Permit {
    fn acquire(pending: &Arc<AtomicUsize>) -> Option<Permit> {
        if pending.fetch_add(1, Ordering::AcqRel) >= MAX_PENDING_WRITES {
            pending.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Permit(pending.clone()))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whole milliseconds of `d`, saturating.
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// "timed out after 100ms", for the log line.
struct TimedOut(Duration);

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no answer within {}", super::fmt_duration(self.0))
    }
}

/// The store's health, without locks: a breaker that skips Redis after repeated failures,
/// and rate-limited logging.
struct Health {
    url: String,
    start: Instant,
    /// Failures in a row (reset by any success).
    consecutive: AtomicU32,
    /// While `consecutive >= OPEN_AFTER`: milliseconds since `start` before which operations
    /// skip Redis; the first operation after it claims the probe by moving it forward.
    skip_until_ms: AtomicU64,
    /// Milliseconds since `start` before which nothing more is logged.
    next_log_ms: AtomicU64,
    /// Failures (and dropped writes) not logged since the last line.
    unlogged: AtomicU64,
    failing: AtomicBool,
}

impl Health {
    fn new(url: String) -> Health {
        Health {
            url,
            start: Instant::now(),
            consecutive: AtomicU32::new(0),
            skip_until_ms: AtomicU64::new(0),
            next_log_ms: AtomicU64::new(0),
            unlogged: AtomicU64::new(0),
            failing: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether an operation may try Redis now: always while it answers; after
    /// [`OPEN_AFTER`] failures in a row, one operation per [`PROBE_EVERY`].
    fn admit(&self) -> bool {
        if self.consecutive.load(Ordering::Relaxed) < OPEN_AFTER {
            return true;
        }
        let now = self.now_ms();
        let until = self.skip_until_ms.load(Ordering::Relaxed);
        now >= until
            && self
                .skip_until_ms
                .compare_exchange(
                    until,
                    now.saturating_add(ms(PROBE_EVERY)),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    /// True (once) if a line may be logged now.
    fn may_log(&self) -> bool {
        let now = self.now_ms();
        let next = self.next_log_ms.load(Ordering::Relaxed);
        now >= next
            && self
                .next_log_ms
                .compare_exchange(
                    next,
                    now.saturating_add(ms(LOG_EVERY)),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }

    fn failure(&self, op: StoreOp, error: &dyn std::fmt::Display) {
        self.failing.store(true, Ordering::Relaxed);
        if self.consecutive.fetch_add(1, Ordering::Relaxed) + 1 >= OPEN_AFTER {
            self.skip_until_ms.store(
                self.now_ms().saturating_add(ms(PROBE_EVERY)),
                Ordering::Relaxed,
            );
        }
        if self.may_log() {
            let unlogged = self.unlogged.swap(0, Ordering::Relaxed);
            tracing::warn!(
                url = %self.url,
                op = op.as_str(),
                error = %error,
                unlogged,
                "affinity store (Redis) failed; ids are routed as unknown until it answers \
                 (further failures logged at most every {}s)",
                LOG_EVERY.as_secs()
            );
        } else {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn dropped(&self) {
        if self.may_log() {
            let unlogged = self.unlogged.swap(0, Ordering::Relaxed);
            tracing::warn!(
                url = %self.url,
                unlogged,
                "affinity store (Redis): {MAX_PENDING_WRITES} writes outstanding, new ids are \
                 kept in this replica only"
            );
        } else {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An operation skipped Redis (the breaker is open); logged with the failures.
    fn skipped(&self) {
        self.unlogged.fetch_add(1, Ordering::Relaxed);
    }

    fn success(&self) {
        if self.consecutive.load(Ordering::Relaxed) != 0 {
            self.consecutive.store(0, Ordering::Relaxed);
        }
        if self.failing.load(Ordering::Relaxed) && self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!(url = %self.url, "affinity store (Redis) answers again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_bounded_and_given_back() {
        let pending = Arc::new(AtomicUsize::new(0));
        let permits: Vec<Permit> = (0..MAX_PENDING_WRITES)
            .map(|_| Permit::acquire(&pending).unwrap())
            .collect();
        assert!(Permit::acquire(&pending).is_none());
        assert_eq!(pending.load(Ordering::Relaxed), MAX_PENDING_WRITES);
        drop(permits);
        assert_eq!(pending.load(Ordering::Relaxed), 0);
        assert!(Permit::acquire(&pending).is_some());
    }

    #[test]
    fn failures_are_logged_at_most_once_per_interval() {
        let health = Health::new("redis://x/".into());
        assert!(health.may_log());
        assert!(!health.may_log());
        health.failure(StoreOp::Get, &"boom");
        health.failure(StoreOp::Set, &"boom");
        assert_eq!(health.unlogged.load(Ordering::Relaxed), 2);
        assert!(health.failing.load(Ordering::Relaxed));
        health.success();
        assert!(!health.failing.load(Ordering::Relaxed));
    }

    #[test]
    fn repeated_failures_skip_redis_but_for_one_probe_per_interval() {
        let health = Health::new("redis://x/".into());
        for _ in 0..OPEN_AFTER - 1 {
            health.failure(StoreOp::Get, &"boom");
            assert!(health.admit(), "a few failures do not open the breaker");
        }
        health.failure(StoreOp::Get, &"boom");
        assert!(!health.admit(), "open after {OPEN_AFTER} failures in a row");
        assert!(!health.admit());
        // The window passes: exactly one operation is let through as a probe.
        health.skip_until_ms.store(0, Ordering::Relaxed);
        assert!(health.admit());
        assert!(!health.admit());
        // The probe succeeds: everyone goes to Redis again.
        health.success();
        assert!(health.admit());
        assert!(health.admit());
    }
}
