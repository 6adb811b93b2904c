//! Endpoint health: passive ejection after consecutive connect failures, active checks, and
//! the lock-free state both write and every request reads.
//!
//! An endpoint is *usable* when its active checks (if any) say it is up and it is not ejected.
//! Ejection lasts `eject_for`, doubling with each ejection that follows without a success in
//! between, up to `defaults::EJECT_MAX`; it ends by itself (the next request may try the
//! endpoint again) and any successful exchange resets the count.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Weak;
use std::time::Duration;

use http::{header, HeaderMap, Method, Request, Uri};
use tokio::time::Instant;

use super::pool::Pool;
use crate::config::{defaults, ActiveHealth, Health};
use crate::proxy::body::UpstreamBody;

/// Most bytes of a probe's response body read so that its connection can be reused.
const HEALTH_BODY_LIMIT: usize = 16 * 1024;

/// Health state of one endpoint. Written by requests (passive) and the checker (active),
/// read by every pick; all atomics, no locks.
#[derive(Debug)]
pub struct EndpointState {
    /// Active checks say up (always true without active checks).
    active_up: AtomicBool,
    /// Consecutive connect failures since the last success.
    failures: AtomicU32,
    /// Ejections in a row without a success between them (the backoff exponent).
    ejections: AtomicU32,
    /// Ejected until this many milliseconds after the pool's epoch; 0 = not ejected.
    ejected_until: AtomicU64,
}

/// What a connect failure did to the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Passive {
    /// Counted; the endpoint stays in.
    Counted,
    /// This failure ejected the endpoint for the given time.
    Ejected(Duration),
}

impl EndpointState {
    pub fn new() -> EndpointState {
        EndpointState {
            active_up: AtomicBool::new(true),
            failures: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
        }
    }

    /// Usable at `now_ms` (milliseconds since the pool's epoch).
    pub fn usable(&self, now_ms: u64) -> bool {
        self.active_up.load(Ordering::Relaxed)
            && self.ejected_until.load(Ordering::Relaxed) <= now_ms
    }

    pub fn active_up(&self) -> bool {
        self.active_up.load(Ordering::Relaxed)
    }

    pub fn ejected(&self, now_ms: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now_ms
    }

    /// An exchange with the endpoint worked (a response head arrived).
    pub fn success(&self) {
        // Loads first: the common case writes nothing, so endpoints' cache lines stay shared.
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
        if self.ejections.load(Ordering::Relaxed) != 0 {
            self.ejections.store(0, Ordering::Relaxed);
        }
    }

    /// A connection to the endpoint failed (refused, timed out, TLS). Ejects it after
    /// `health.eject_after` in a row.
    pub fn connect_failure(&self, health: &Health, now_ms: u64) -> Passive {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < health.eject_after {
            return Passive::Counted;
        }
        self.failures.store(0, Ordering::Relaxed);
        let round = self.ejections.fetch_add(1, Ordering::Relaxed).min(16);
        let time = health
            .eject_for
            .saturating_mul(1u32 << round.min(10))
            .min(defaults::EJECT_MAX.max(health.eject_for));
        let until = now_ms.saturating_add(time.as_millis() as u64);
        self.ejected_until.store(until, Ordering::Relaxed);
        Passive::Ejected(time)
    }

    fn set_active(&self, up: bool) {
        self.active_up.store(up, Ordering::Relaxed);
    }
}

impl Default for EndpointState {
    fn default() -> Self {
        EndpointState::new()
    }
}

/// Consecutive results of one endpoint's active checks (owned by the checker task).
#[derive(Default, Clone, Copy)]
struct Streak {
    passes: u32,
    fails: u32,
}

/// Start the active checker of `pool` if it has one configured. The task holds the pool
/// weakly and ends when the gateway that owns it is dropped.
pub fn spawn_checker(pool: Weak<Pool>, active: ActiveHealth) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(active.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut streaks: Vec<Streak> = Vec::new();
        loop {
            ticker.tick().await;
            let Some(pool) = pool.upgrade() else { return };
            streaks.resize(pool.endpoints().len(), Streak::default());
            let checks = pool
                .endpoints()
                .iter()
                .enumerate()
                .map(|(i, _)| check(&pool, i, &active));
            let results = futures_util::future::join_all(checks).await;
            for (i, result) in results.into_iter().enumerate() {
                let (Some(streak), Some(endpoint)) = (streaks.get_mut(i), pool.endpoints().get(i))
                else {
                    continue;
                };
                pool.metrics(i).health_check(result.is_ok());
                match result {
                    Ok(()) => {
                        streak.passes = streak.passes.saturating_add(1);
                        streak.fails = 0;
                        if !endpoint.state.active_up() && streak.passes >= active.healthy_threshold
                        {
                            endpoint.state.set_active(true);
                            pool.metrics(i).set_up(true);
                            tracing::info!(upstream = %pool.upstream(), endpoint = %endpoint.name, "health check passing again: endpoint back in the pool");
                        }
                    }
                    Err(why) => {
                        streak.fails = streak.fails.saturating_add(1);
                        streak.passes = 0;
                        if endpoint.state.active_up() && streak.fails >= active.unhealthy_threshold
                        {
                            endpoint.state.set_active(false);
                            pool.metrics(i).set_up(false);
                            tracing::warn!(upstream = %pool.upstream(), endpoint = %endpoint.name, reason = %why, "health check failing: endpoint taken out of the pool");
                        }
                    }
                }
            }
            // Passive ejections end by themselves; keep the gauge honest between checks.
            pool.refresh_up_gauges();
        }
    });
}

/// One check: `GET path` on the endpoint's host with its credentials, 2xx within `timeout`.
async fn check(pool: &Pool, index: usize, active: &ActiveHealth) -> Result<(), String> {
    let Some(endpoint) = pool.endpoints().get(index) else {
        return Err("no such endpoint".to_owned());
    };
    let uri = Uri::builder()
        .scheme(endpoint.url.scheme.clone())
        .authority(endpoint.url.authority.clone())
        .path_and_query(active.path.as_str())
        .build()
        .map_err(|e| e.to_string())?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::USER_AGENT,
        http::HeaderValue::from_static(concat!("switchyard-health/", env!("CARGO_PKG_VERSION"))),
    );
    for (name, value) in pool.set_headers() {
        headers.insert(name.clone(), value.clone());
    }
    endpoint
        .auth
        .apply(&Method::GET, &uri, &mut headers, &[])
        .map_err(|e| e.to_string())?;
    let mut req = Request::new(UpstreamBody::buffered(bytes::Bytes::new()));
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    *req.version_mut() = pool.version();
    let deadline = Instant::now() + active.timeout;
    let (resp, lease) = match tokio::time::timeout_at(deadline, pool.conns().send(req)).await {
        Err(_) => return Err(format!("no answer within {:?}", active.timeout)),
        Ok(Err(e)) => return Err(super::error_chain(&e)),
        Ok(Ok(answer)) => answer,
    };
    let status = resp.status();
    // Read a small body to its end within the probe's time, so that the connection serves
    // the next probe; a large or slow one closes the connection instead. Either way the
    // status alone is the verdict.
    let body = http_body_util::Limited::new(resp.into_body(), HEALTH_BODY_LIMIT);
    let read = tokio::time::timeout_at(deadline, http_body_util::BodyExt::collect(body)).await;
    if let Ok(Ok(_)) = read {
        lease.release();
    }
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("status {}", status.as_u16()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(eject_after: u32, eject_for: Duration) -> Health {
        Health {
            active: None,
            eject_after,
            eject_for,
        }
    }

    #[test]
    fn ejects_after_consecutive_failures_and_backs_off() {
        let h = health(3, Duration::from_secs(10));
        let s = EndpointState::new();
        assert!(s.usable(0));
        assert_eq!(s.connect_failure(&h, 0), Passive::Counted);
        assert_eq!(s.connect_failure(&h, 0), Passive::Counted);
        assert_eq!(
            s.connect_failure(&h, 0),
            Passive::Ejected(Duration::from_secs(10))
        );
        assert!(!s.usable(9_999));
        assert!(s.usable(10_000));
        // Failing again right after coming back: twice as long.
        for _ in 0..2 {
            assert_eq!(s.connect_failure(&h, 10_000), Passive::Counted);
        }
        assert_eq!(
            s.connect_failure(&h, 10_000),
            Passive::Ejected(Duration::from_secs(20))
        );
        // A success resets both the count and the backoff.
        s.success();
        for _ in 0..2 {
            assert_eq!(s.connect_failure(&h, 40_000), Passive::Counted);
        }
        assert_eq!(
            s.connect_failure(&h, 40_000),
            Passive::Ejected(Duration::from_secs(10))
        );
    }

    #[test]
    fn backoff_is_capped() {
        let h = health(1, Duration::from_secs(10));
        let s = EndpointState::new();
        let mut last = Duration::ZERO;
        for _ in 0..20 {
            if let Passive::Ejected(t) = s.connect_failure(&h, 0) {
                last = t;
            }
        }
        assert_eq!(last, defaults::EJECT_MAX);
    }

    #[test]
    fn a_success_between_failures_keeps_the_endpoint_in() {
        let h = health(2, Duration::from_secs(10));
        let s = EndpointState::new();
        for _ in 0..10 {
            assert_eq!(s.connect_failure(&h, 0), Passive::Counted);
            s.success();
        }
        assert!(s.usable(0));
    }

    #[test]
    fn active_down_is_not_usable() {
        let s = EndpointState::new();
        s.set_active(false);
        assert!(!s.usable(0));
        s.set_active(true);
        assert!(s.usable(0));
    }
}
