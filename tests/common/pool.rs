//! Endpoint pools: N recording mocks behind the stateless upstream ("primary", mocks named
//! "primary-0", "primary-1", ...) and M behind the stateful one ("secondary", "secondary-0",
//! ...), and a gateway whose upstreams list them as `endpoints` (endpoint name = mock name).
//!
//! A mock can be stopped (its port refuses connections) and restarted on the same port.
//! Active health checks are recorded by the mocks like any request; the helpers that count
//! "API" requests leave them out (they carry `user-agent: switchyard-health/…`).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::Value;
use switchyard::config::Config;
use switchyard::mock::{MockOptions, MockProvider, RecordedRequest};
use switchyard::server::ServerHandle;

use super::{merge, metric, HttpClient, Reply, Scrape, SOON};

/// The stateless upstream's name.
pub const PRIMARY: &str = "primary";
/// The stateful upstream's name.
pub const SECONDARY: &str = "secondary";

/// Everything but the upstreams' endpoints.
const BASE: &str = r#"
[server]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[routing]
stateless = "primary"
stateful = "secondary"

[log]
access_log = false
"#;

/// One endpoint of a pool: its mock (while running), address and weight.
pub struct PoolEndpoint {
    /// The endpoint's name in the config and the mock's name (`x-mock-provider`).
    pub name: String,
    pub addr: SocketAddr,
    pub weight: Option<u32>,
    /// `None` while stopped.
    pub mock: Option<MockProvider>,
}

/// A running gateway and clients for its two listeners.
pub struct Gateway {
    pub handle: ServerHandle,
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub client: HttpClient,
}

impl Gateway {
    /// Start a gateway with this configuration text.
    pub async fn start(config_text: &str) -> Gateway {
        let config = Config::from_toml_str(config_text)
            .unwrap_or_else(|e| panic!("config rejected: {e}\n{config_text}"));
        let handle = switchyard::server::start(config)
            .await
            .unwrap_or_else(|e| panic!("gateway did not start: {e}\n{config_text}"));
        Gateway {
            proxy_addr: handle.proxy_addr,
            admin_addr: handle.admin_addr,
            client: HttpClient::http1(handle.proxy_addr),
            handle,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        self.client.call(method, path, headers, body).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, &[], Bytes::new()).await
    }

    /// POST a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.post_json_with(path, &[], body.to_string()).await
    }

    /// POST `body` with `content-type: application/json` plus `headers`.
    pub async fn post_json_with(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        self.client.post_json_with(path, headers, body).await
    }

    /// Scrape the admin listener's `/metrics`.
    pub async fn scrape(&self) -> Scrape {
        super::metrics::scrape(self.admin_addr).await
    }

    /// Scrape until `done` holds (every 10 ms, up to [`SOON`]); the last scrape either way.
    pub async fn scrape_when(&self, done: impl Fn(&Scrape) -> bool) -> Scrape {
        self.scrape_within(SOON, done).await
    }

    /// Scrape until `done` holds (every 10 ms, up to `timeout`); the last scrape either way.
    pub async fn scrape_within(&self, timeout: Duration, done: impl Fn(&Scrape) -> bool) -> Scrape {
        super::metrics::scrape_within(self.admin_addr, timeout, done).await
    }

    pub async fn shutdown(self) {
        self.handle.shutdown().await;
    }
}

/// Builds a [`PoolHarness`].
pub struct PoolBuilder {
    stateless: usize,
    stateful: usize,
    stateless_weights: Vec<Option<u32>>,
    stateful_weights: Vec<Option<u32>>,
    overrides: Vec<String>,
}

impl PoolBuilder {
    /// Number of endpoints (mocks) of the stateless upstream "primary".
    pub fn stateless(mut self, n: usize) -> Self {
        self.stateless = n;
        self
    }

    /// Number of endpoints (mocks) of the stateful upstream "secondary".
    pub fn stateful(mut self, n: usize) -> Self {
        self.stateful = n;
        self
    }

    /// Weights of the stateless endpoints (also sets their number).
    pub fn stateless_weights(mut self, weights: &[u32]) -> Self {
        self.stateless = weights.len();
        self.stateless_weights = weights.iter().copied().map(Some).collect();
        self
    }

    /// Weights of the stateful endpoints (also sets their number).
    pub fn stateful_weights(mut self, weights: &[u32]) -> Self {
        self.stateful = weights.len();
        self.stateful_weights = weights.iter().copied().map(Some).collect();
        self
    }

    /// TOML merged over the generated config (tables merge key by key, so
    /// `[upstreams.primary] balance = "round_robin"` keeps the endpoints).
    pub fn config(mut self, toml: &str) -> Self {
        self.overrides.push(toml.to_owned());
        self
    }

    pub async fn start(self) -> PoolHarness {
        let primary = start_mocks(PRIMARY, self.stateless, &self.stateless_weights).await;
        let secondary = start_mocks(SECONDARY, self.stateful, &self.stateful_weights).await;
        let config_text = render(
            &primary,
            &secondary,
            &identity(primary.len()),
            &identity(secondary.len()),
            &self.overrides,
        );
        let gw = Gateway::start(&config_text).await;
        PoolHarness {
            primary,
            secondary,
            gw,
            config_text,
            overrides: self.overrides,
        }
    }
}

async fn start_mocks(upstream: &str, n: usize, weights: &[Option<u32>]) -> Vec<PoolEndpoint> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("{upstream}-{i}");
        let mock = MockProvider::start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            MockOptions::new(name.clone()),
        )
        .await
        .unwrap();
        out.push(PoolEndpoint {
            name,
            addr: mock.addr(),
            weight: weights.get(i).copied().flatten(),
            mock: Some(mock),
        });
    }
    out
}

fn identity(n: usize) -> Vec<usize> {
    (0..n).collect()
}

fn endpoints_value(endpoints: &[PoolEndpoint], order: &[usize]) -> toml::Value {
    let list = order
        .iter()
        .map(|&i| {
            let ep = &endpoints[i];
            let mut t = toml::Table::new();
            t.insert(
                "url".into(),
                toml::Value::String(format!("http://{}/v1", ep.addr)),
            );
            t.insert("name".into(), toml::Value::String(ep.name.clone()));
            if let Some(w) = ep.weight {
                t.insert("weight".into(), toml::Value::Integer(i64::from(w)));
            }
            toml::Value::Table(t)
        })
        .collect();
    toml::Value::Array(list)
}

/// The config: [`BASE`], both upstreams' endpoints in the given orders, then the overrides.
fn render(
    primary: &[PoolEndpoint],
    secondary: &[PoolEndpoint],
    primary_order: &[usize],
    secondary_order: &[usize],
    overrides: &[String],
) -> String {
    let mut table: toml::Table = BASE.parse().unwrap();
    let mut upstreams = toml::Table::new();
    for (name, eps, order) in [
        (PRIMARY, primary, primary_order),
        (SECONDARY, secondary, secondary_order),
    ] {
        let mut up = toml::Table::new();
        up.insert("endpoints".into(), endpoints_value(eps, order));
        upstreams.insert(name.into(), toml::Value::Table(up));
    }
    table.insert("upstreams".into(), toml::Value::Table(upstreams));
    for over in overrides {
        let over: toml::Table = over
            .parse()
            .unwrap_or_else(|e| panic!("override is not TOML: {e}\n{over}"));
        merge(&mut table, over);
    }
    toml::to_string(&table).unwrap()
}

/// Whether a recorded request is one of the gateway's active health checks.
pub fn is_health_check(r: &RecordedRequest) -> bool {
    r.header("user-agent")
        .is_some_and(|ua| ua.starts_with("switchyard-health/"))
}

/// Pools of mocks behind both upstreams and a gateway in front.
pub struct PoolHarness {
    pub primary: Vec<PoolEndpoint>,
    pub secondary: Vec<PoolEndpoint>,
    /// The gateway started with [`PoolHarness::config_text`].
    pub gw: Gateway,
    pub config_text: String,
    overrides: Vec<String>,
}

impl std::ops::Deref for PoolHarness {
    type Target = Gateway;

    fn deref(&self) -> &Gateway {
        &self.gw
    }
}

impl PoolHarness {
    /// One endpoint per upstream until told otherwise.
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            stateless: 1,
            stateful: 1,
            stateless_weights: Vec::new(),
            stateful_weights: Vec::new(),
            overrides: Vec::new(),
        }
    }

    /// The same configuration with the endpoints listed in other orders (indexes into
    /// [`PoolHarness::primary`] / [`PoolHarness::secondary`]).
    pub fn config_with_order(&self, primary_order: &[usize], secondary_order: &[usize]) -> String {
        render(
            &self.primary,
            &self.secondary,
            primary_order,
            secondary_order,
            &self.overrides,
        )
    }

    /// Another gateway in front of the same mocks, with the same configuration.
    pub async fn another_gateway(&self) -> Gateway {
        Gateway::start(&self.config_text).await
    }

    fn pool(&self, upstream: &str) -> &[PoolEndpoint] {
        match upstream {
            PRIMARY => &self.primary,
            SECONDARY => &self.secondary,
            other => panic!("no upstream named {other}"),
        }
    }

    fn pool_mut(&mut self, upstream: &str) -> &mut Vec<PoolEndpoint> {
        match upstream {
            PRIMARY => &mut self.primary,
            SECONDARY => &mut self.secondary,
            other => panic!("no upstream named {other}"),
        }
    }

    /// The endpoint's name ("secondary-2").
    pub fn name(&self, upstream: &str, i: usize) -> String {
        self.pool(upstream)[i].name.clone()
    }

    /// The running mock of endpoint `i` (panics if it is stopped).
    pub fn mock(&self, upstream: &str, i: usize) -> &MockProvider {
        self.pool(upstream)[i]
            .mock
            .as_ref()
            .unwrap_or_else(|| panic!("{upstream}-{i} is stopped"))
    }

    /// What endpoint `i` received, active health checks left out (nothing while stopped).
    pub fn api_requests(&self, upstream: &str, i: usize) -> Vec<RecordedRequest> {
        self.pool(upstream)[i]
            .mock
            .as_ref()
            .map(|m| {
                m.requests()
                    .into_iter()
                    .filter(|r| !is_health_check(r))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// API requests received by each endpoint of `upstream`.
    pub fn counts(&self, upstream: &str) -> Vec<usize> {
        (0..self.pool(upstream).len())
            .map(|i| self.api_requests(upstream, i).len())
            .collect()
    }

    /// API requests received by all endpoints of `upstream`.
    pub fn total(&self, upstream: &str) -> usize {
        self.counts(upstream).iter().sum()
    }

    /// Every API request the endpoints of `upstream` received, as `name: METHOD path`.
    pub fn summary(&self, upstream: &str) -> Vec<String> {
        (0..self.pool(upstream).len())
            .flat_map(|i| {
                let name = self.name(upstream, i);
                self.api_requests(upstream, i)
                    .into_iter()
                    .map(move |r| format!("{name}: {} {}", r.method, r.path_and_query))
            })
            .collect()
    }

    /// The endpoints of `upstream` that received an API request matching `pred`.
    pub fn receivers(&self, upstream: &str, pred: impl Fn(&RecordedRequest) -> bool) -> Vec<usize> {
        (0..self.pool(upstream).len())
            .filter(|&i| self.api_requests(upstream, i).iter().any(&pred))
            .collect()
    }

    /// Forget what every running mock recorded.
    pub fn clear(&self) {
        for ep in self.primary.iter().chain(&self.secondary) {
            if let Some(mock) = &ep.mock {
                mock.clear();
            }
        }
    }

    /// Stop endpoint `i`'s mock: its port refuses connections until [`Self::restart`].
    pub async fn stop(&mut self, upstream: &str, i: usize) {
        let mock = self.pool_mut(upstream)[i]
            .mock
            .take()
            .unwrap_or_else(|| panic!("{upstream}-{i} is already stopped"));
        mock.shutdown().await;
    }

    /// Start a fresh mock (same name, nothing recorded) on endpoint `i`'s port.
    pub async fn restart(&mut self, upstream: &str, i: usize) {
        let ep = &mut self.pool_mut(upstream)[i];
        assert!(ep.mock.is_none(), "{} is running", ep.name);
        let deadline = tokio::time::Instant::now() + SOON;
        let mock = loop {
            match MockProvider::start(ep.addr, MockOptions::new(ep.name.clone())).await {
                Ok(mock) => break mock,
                // The port may not be free yet; try again shortly.
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("restarting {} on {}: {e}", ep.name, ep.addr),
            }
        };
        ep.mock = Some(mock);
    }

    /// The value of an endpoint-labelled metric for endpoint `i` (0 when absent).
    pub fn endpoint_value(&self, scrape: &Scrape, name: &str, upstream: &str, i: usize) -> f64 {
        metric(name)
            .label("upstream", upstream)
            .label("endpoint", self.name(upstream, i))
            .sum_in(scrape)
            .unwrap_or(0.0)
    }

    pub async fn shutdown(self) {
        self.gw.shutdown().await;
        for ep in self.primary.into_iter().chain(self.secondary) {
            if let Some(mock) = ep.mock {
                mock.shutdown().await;
            }
        }
    }
}

/// A value of a metric, 0 when absent.
pub fn value(scrape: &Scrape, m: &super::metrics::MetricMatch) -> f64 {
    m.sum_in(scrape).unwrap_or(0.0)
}
