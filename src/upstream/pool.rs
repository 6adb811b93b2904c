//! An upstream's endpoint pool: the endpoints, their health, and which one serves a request.
//!
//! Every endpoint belongs to the same upstream, hence the same cloud and class: choosing
//! among them never crosses the policy boundary. A request is sent to
//! - the endpoint that holds its state when the affinity table knows it (`Target::Pinned`),
//! - the owner of its session key on the consistent-hash ring (`Target::Session`),
//! - otherwise the balancer's pick among usable endpoints (`Target::Balanced`).
//!
//! When the pinned or owning endpoint is unusable, `affinity.on_endpoint_down` decides:
//! fail (the default: the state is there and nowhere else) or rebalance.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Version};
use tokio::time::Instant;

use super::auth::Auth;
use super::balance::{Balancer, Candidate};
use super::conns::Conns;
use super::health::{EndpointState, Passive};
use crate::affinity::Ring;
use crate::config::{Health, OnEndpointDown, Upstream, UpstreamUrl};
use crate::metrics::{EndpointMetrics, Metrics};

/// One endpoint of a pool.
pub struct Endpoint {
    pub name: Arc<str>,
    pub url: UpstreamUrl,
    pub weight: u32,
    pub auth: Auth,
    pub state: EndpointState,
    /// The `Host` header of HTTP/1.1 requests to a cleartext endpoint, made once (hyper
    /// would format it for every request); `None` for TLS endpoints.
    pub host: Option<HeaderValue>,
    /// Requests sent and not yet finished (their response body has not ended).
    load: Arc<AtomicU32>,
    metrics: EndpointMetrics,
}

impl Candidate for Endpoint {
    fn weight(&self) -> u32 {
        self.weight
    }

    fn in_flight(&self) -> u32 {
        self.load.load(Ordering::Relaxed)
    }
}

/// Counts a request against its endpoint's load until dropped (when the response ends).
pub struct Load(Arc<AtomicU32>);

impl Drop for Load {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where a request should go within the pool.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// Anywhere usable: the balancer picks.
    Balanced,
    /// To this endpoint: the affinity table says it holds the request's state.
    Pinned(usize),
    /// To the ring owner of this session key.
    Session(&'a [u8]),
}

/// No endpoint can take the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PickError {
    /// Every endpoint is down (failing health checks) or ejected.
    NoneUsable {
        total: usize,
        down: usize,
        ejected: usize,
    },
    /// The endpoint holding the request's state (or owning its session) is unusable and
    /// `on_endpoint_down = "fail"`.
    HolderDown { endpoint: Arc<str> },
}

pub struct Pool {
    upstream: String,
    endpoints: Box<[Endpoint]>,
    balancer: Balancer,
    /// Consistent hashing of session keys; `None` for a single endpoint.
    ring: Option<Ring>,
    health: Health,
    epoch: Instant,
    /// The upstream's connections, kept per thread slot (`runtime::slot`).
    conns: Conns,
    set_headers: Vec<(HeaderName, HeaderValue)>,
    version: Version,
}

impl Pool {
    pub fn new(
        cfg: &Upstream,
        conns: Conns,
        set_headers: Vec<(HeaderName, HeaderValue)>,
        version: Version,
        metrics: &Metrics,
    ) -> Pool {
        let endpoints: Box<[Endpoint]> = cfg
            .endpoints
            .iter()
            .map(|ep| Endpoint {
                name: Arc::from(ep.name.as_str()),
                url: ep.url.clone(),
                weight: ep.weight,
                auth: Auth::new(&cfg.name, &ep.auth),
                state: EndpointState::new(),
                host: host_header(&ep.url),
                load: Arc::new(AtomicU32::new(0)),
                metrics: metrics.pool.endpoint(&cfg.name, &ep.name),
            })
            .collect();
        let weights: Vec<u32> = endpoints.iter().map(|e| e.weight).collect();
        let ring = (endpoints.len() > 1).then(|| {
            let nodes: Vec<(&str, u32)> = endpoints.iter().map(|e| (&*e.name, e.weight)).collect();
            Ring::new(&nodes)
        });
        Pool {
            upstream: cfg.name.clone(),
            balancer: Balancer::new(cfg.balance, &weights),
            endpoints,
            ring,
            health: cfg.health.clone(),
            epoch: Instant::now(),
            conns,
            set_headers,
            version,
        }
    }

    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// More than one endpoint: affinity and balancing matter.
    pub fn is_pool(&self) -> bool {
        self.endpoints.len() > 1
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.endpoints.iter().position(|e| &*e.name == name)
    }

    pub(super) fn metrics(&self, index: usize) -> &EndpointMetrics {
        // Indexes come from this pool; the first endpoint always exists.
        &self.endpoints[index.min(self.endpoints.len() - 1)].metrics
    }

    /// The upstream's connections (each thread uses its own).
    pub(super) fn conns(&self) -> &Conns {
        &self.conns
    }

    pub(super) fn set_headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.set_headers
    }

    pub(super) fn version(&self) -> Version {
        self.version
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Choose the endpoint for an attempt. `tried` lists endpoints already tried for this
    /// request (retries go elsewhere).
    pub fn pick(
        &self,
        target: Target<'_>,
        on_down: OnEndpointDown,
        tried: &[usize],
    ) -> Result<usize, PickError> {
        let now = self.now_ms();
        let usable = |i: usize| {
            !tried.contains(&i) && self.endpoints.get(i).is_some_and(|e| e.state.usable(now))
        };
        let holder = match target {
            Target::Balanced => None,
            Target::Pinned(i) => Some(i),
            Target::Session(key) => self.ring.as_ref().and_then(|r| r.candidates(key).next()),
        };
        if let Some(holder) = holder {
            if usable(holder) {
                return Ok(holder);
            }
            if on_down == OnEndpointDown::Fail {
                let endpoint = self
                    .endpoints
                    .get(holder)
                    .map_or_else(|| Arc::from("?"), |e| e.name.clone());
                return Err(PickError::HolderDown { endpoint });
            }
            // Rebalance: a session walks on along the ring, so replicas still agree.
            if let (Target::Session(key), Some(ring)) = (target, &self.ring) {
                if let Some(next) = ring.candidates(key).find(|&i| usable(i)) {
                    return Ok(next);
                }
            }
        }
        self.balancer
            .pick(&self.endpoints, usable)
            .ok_or_else(|| self.none_usable(now))
    }

    fn none_usable(&self, now: u64) -> PickError {
        let down = self
            .endpoints
            .iter()
            .filter(|e| !e.state.active_up())
            .count();
        let ejected = self
            .endpoints
            .iter()
            .filter(|e| e.state.active_up() && e.state.ejected(now))
            .count();
        PickError::NoneUsable {
            total: self.endpoints.len(),
            down,
            ejected,
        }
    }

    /// An attempt is about to be sent to `index`: count it and hold its load.
    pub fn start(&self, index: usize) -> Option<Load> {
        let endpoint = self.endpoints.get(index)?;
        endpoint.metrics.requests.inc();
        endpoint.load.fetch_add(1, Ordering::Relaxed);
        Some(Load(endpoint.load.clone()))
    }

    /// The endpoint answered (a response head arrived).
    pub fn success(&self, index: usize) {
        if let Some(e) = self.endpoints.get(index) {
            e.state.success();
        }
    }

    /// Connecting to the endpoint failed. Only pools eject: a lone endpoint is always tried.
    pub fn connect_failure(&self, index: usize) {
        if !self.is_pool() {
            return;
        }
        let Some(e) = self.endpoints.get(index) else {
            return;
        };
        if let Passive::Ejected(time) = e.state.connect_failure(&self.health, self.now_ms()) {
            e.metrics.ejections.inc();
            e.metrics.set_up(false);
            tracing::warn!(
                upstream = %self.upstream,
                endpoint = %e.name,
                for_secs = time.as_secs_f64(),
                "endpoint ejected after consecutive connect failures"
            );
        }
    }

    /// Set `switchyard_endpoint_up` from the current state (ejections end by themselves).
    pub fn refresh_up_gauges(&self) {
        let now = self.now_ms();
        for e in self.endpoints.iter() {
            e.metrics.set_up(e.state.usable(now));
        }
    }
}

/// `Host` for a cleartext endpoint, as hyper derives it from an absolute URI: the host, and
/// the port unless it is 80. `None` for `https://`: ALPN may pick HTTP/2 there, which
/// carries the authority in `:authority` and must not get a second, possibly differently
/// spelled `host` (hyper adds `Host` itself on HTTP/1.1 connections).
fn host_header(url: &UpstreamUrl) -> Option<HeaderValue> {
    if url.scheme != http::uri::Scheme::HTTP {
        return None;
    }
    let host = url.authority.host();
    match url.authority.port_u16() {
        Some(port) if port != 80 => HeaderValue::from_str(&format!("{host}:{port}")).ok(),
        _ => HeaderValue::from_str(host).ok(),
    }
}

#[cfg(test)]
mod host_tests {
    use super::*;

    fn url(text: &str) -> UpstreamUrl {
        let uri: http::Uri = text.parse().unwrap();
        UpstreamUrl {
            scheme: uri.scheme().unwrap().clone(),
            authority: uri.authority().unwrap().clone(),
            path: uri.path().to_owned(),
        }
    }

    #[test]
    fn host_is_made_for_cleartext_endpoints_as_hyper_would() {
        let cases = [
            ("http://127.0.0.1:8080/v1", Some("127.0.0.1:8080")),
            ("http://example.com/v1", Some("example.com")),
            ("http://example.com:80/v1", Some("example.com")),
            ("http://[::1]:9000/v1", Some("[::1]:9000")),
            ("https://example.com/v1", None),
            ("https://example.com:8443/v1", None),
        ];
        for (text, expected) in cases {
            let host = host_header(&url(text));
            assert_eq!(
                host.as_ref().map(|h| h.to_str().unwrap()),
                expected,
                "{text}"
            );
        }
    }
}
