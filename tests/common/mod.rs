//! Shared integration-test harness: two recording mock providers plus the gateway on
//! ephemeral ports (this file), HTTP/1.1 and h2c clients (`client.rs`), raw sockets
//! (`raw.rs`) and a small Prometheus text matcher (`metrics.rs`).
//!
//! Nothing here sleeps to synchronise: waiting is always on a condition with a deadline
//! (`MockProvider::wait_until`, [`eventually`]).
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod client;
pub mod faults;
pub mod logs;
pub mod metrics;
pub mod pool;
pub mod process;
pub mod providers;
pub mod raw;
pub mod redis;
pub mod tls;
pub mod websocket;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::Value;
use switchyard::config::Config;
use switchyard::mock::{MockOptions, MockProvider, RecordedRequest};
use switchyard::server::ServerHandle;

#[allow(unused_imports)]
pub use self::client::{
    chunked, full, sse_events, H2Connection, HttpClient, Next, Reply, ReqBody, Streaming,
};
#[allow(unused_imports)]
pub use self::metrics::{metric, Scrape};
#[allow(unused_imports)]
pub use self::raw::{
    chunked_parts, expect_h2_settings, raw_upstream, read_raw_response, trickle, RawResponse,
    H2_PREFACE_AND_SETTINGS,
};

/// Upper bound for any single exchange in a test; a hang becomes a clear failure.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for something that should happen "soon" (metrics, cancellation).
pub const SOON: Duration = Duration::from_secs(5);

/// The configuration every harness starts from. `{primary}` / `{secondary}` become the
/// mock providers' `host:port`.
pub const TEMPLATE: &str = r#"
[server]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[upstreams.primary]
url = "http://{primary}/v1"

[upstreams.secondary]
url = "http://{secondary}/v1"

[routing]
stateless = "primary"
stateful = "secondary"

[log]
access_log = false
"#;

/// A `host:port` on loopback where nothing listens (bound, then released). On 127.0.0.2, not
/// 127.0.0.1: the released port may be handed straight to the next mock bound on 127.0.0.1:0,
/// which then answered where nothing should (seen in CI: both upstreams got the same URL).
pub async fn dead_addr() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// Two recording mocks and a gateway between them.
pub struct Harness {
    /// The stateless upstream (named "primary").
    pub primary: MockProvider,
    /// The stateful upstream (named "secondary").
    pub secondary: MockProvider,
    pub gateway: ServerHandle,
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// An HTTP/1.1 client.
    pub client: HttpClient,
    /// The TOML the gateway was started with.
    pub config_text: String,
}

/// Builds a [`Harness`]: the template, deep-merged with TOML overrides.
#[derive(Default)]
pub struct HarnessBuilder {
    overrides: Vec<String>,
    env: HashMap<String, String>,
}

impl HarnessBuilder {
    /// Merge this TOML over the template (tables merge key by key; other values, arrays
    /// included, replace). `{primary}` and `{secondary}` are substituted first.
    pub fn config(mut self, toml: &str) -> Self {
        self.overrides.push(toml.to_owned());
        self
    }

    /// A variable visible to `${NAME}` references in the config.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.insert(name.to_owned(), value.to_owned());
        self
    }

    pub async fn start(self) -> Harness {
        let primary = MockProvider::start(local0(), MockOptions::new("primary"))
            .await
            .unwrap();
        let secondary = MockProvider::start(local0(), MockOptions::new("secondary"))
            .await
            .unwrap();
        let overrides: Vec<&str> = self.overrides.iter().map(String::as_str).collect();
        let config_text = config_text(primary.addr(), secondary.addr(), &overrides);
        let env = self.env;
        let config = Config::from_toml_str_with_env(&config_text, &|name| env.get(name).cloned())
            .unwrap_or_else(|e| panic!("config rejected: {e}\n{config_text}"));
        let gateway = switchyard::server::start(config)
            .await
            .unwrap_or_else(|e| panic!("gateway did not start: {e}"));
        Harness {
            proxy_addr: gateway.proxy_addr,
            admin_addr: gateway.admin_addr,
            client: HttpClient::http1(gateway.proxy_addr),
            primary,
            secondary,
            gateway,
            config_text,
        }
    }
}

/// [`TEMPLATE`] for mocks at `primary` and `secondary`, with each of `overrides` merged over
/// it in turn (tables merge key by key; other values, arrays included, replace), as TOML text.
/// `{primary}` and `{secondary}` in the overrides are substituted too.
pub fn config_text(primary: SocketAddr, secondary: SocketAddr, overrides: &[&str]) -> String {
    let fill = |text: &str| {
        text.replace("{primary}", &primary.to_string())
            .replace("{secondary}", &secondary.to_string())
    };
    let mut table: toml::Table = fill(TEMPLATE).parse().unwrap();
    for over in overrides {
        let over: toml::Table = fill(over)
            .parse()
            .unwrap_or_else(|e| panic!("override is not TOML: {e}\n{over}"));
        merge(&mut table, over);
    }
    toml::to_string(&table).unwrap()
}

fn local0() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Deep-merge `over` into `base`: tables merge, everything else replaces.
pub fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

impl Harness {
    pub fn builder() -> HarnessBuilder {
        HarnessBuilder::default()
    }

    /// The template as is.
    pub async fn start() -> Harness {
        Self::builder().start().await
    }

    /// The template with one TOML override.
    pub async fn with_config(toml: &str) -> Harness {
        Self::builder().config(toml).start().await
    }

    /// A fresh h2c (prior knowledge) client for the proxy listener.
    pub fn h2c_client(&self) -> HttpClient {
        HttpClient::h2c(self.proxy_addr)
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.client.call(Method::GET, path, &[], Bytes::new()).await
    }

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
        metrics::scrape(self.admin_addr).await
    }

    /// Scrape until `done` holds for the scrape (every 10 ms, up to [`SOON`]); returns the
    /// last scrape either way, so that the caller's assertions explain what is missing.
    pub async fn scrape_when(&self, done: impl Fn(&Scrape) -> bool) -> Scrape {
        metrics::scrape_within(self.admin_addr, SOON, done).await
    }

    /// Stop the mock serving `upstream` for good: its port refuses connections from now on.
    /// (A fresh, unconfigured mock takes its place in the struct.)
    pub async fn stop_upstream(&mut self, upstream: &str) {
        let spare = MockProvider::start(local0(), MockOptions::new("spare"))
            .await
            .unwrap();
        let slot = match upstream {
            "primary" => &mut self.primary,
            "secondary" => &mut self.secondary,
            other => panic!("no mock named {other}"),
        };
        std::mem::replace(slot, spare).shutdown().await;
    }

    /// GET a path on the admin listener.
    pub async fn admin_get(&self, path: &str) -> Reply {
        HttpClient::http1(self.admin_addr)
            .call(Method::GET, path, &[], Bytes::new())
            .await
    }

    /// Forget what both mocks recorded.
    pub fn clear(&self) {
        self.primary.clear();
        self.secondary.clear();
    }

    /// The mock serving `upstream` ("primary" or "secondary").
    pub fn mock(&self, upstream: &str) -> &MockProvider {
        match upstream {
            "primary" => &self.primary,
            "secondary" => &self.secondary,
            other => panic!("no mock named {other}"),
        }
    }

    /// Assert that neither mock has seen a request.
    pub fn assert_no_upstream_contacted(&self, context: &str) {
        let p = self.primary.requests();
        let s = self.secondary.requests();
        assert!(
            p.is_empty() && s.is_empty(),
            "{context}: expected no upstream request, primary saw {:?}, secondary saw {:?}",
            summary(&p),
            summary(&s)
        );
    }

    pub async fn shutdown(self) {
        self.gateway.shutdown().await;
        self.primary.shutdown().await;
        self.secondary.shutdown().await;
    }
}

/// `METHOD path` of each recorded request, for messages.
pub fn summary(reqs: &[RecordedRequest]) -> Vec<String> {
    reqs.iter()
        .map(|r| format!("{} {}", r.method, r.path_and_query))
        .collect()
}

/// Check `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub async fn eventually<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
