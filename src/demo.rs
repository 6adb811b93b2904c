//! `switchyard demo`: the gateway in front of two built-in mock providers on loopback.

use std::net::SocketAddr;

use crate::config::Config;
use crate::mock::{MockOptions, MockProvider};
use crate::server::{self, ServerHandle};

/// A running demo: two mock providers and the gateway in front of them.
pub struct Demo {
    pub primary: MockProvider,
    pub secondary: MockProvider,
    pub server: ServerHandle,
}

/// Errors starting the demo.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start a mock provider: {0}")]
    Mock(std::io::Error),
    #[error("demo config: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0} (is another gateway running? try --port and --admin-port)")]
    Start(#[from] server::StartupError),
}

/// The demo configuration for the given addresses.
pub fn config_text(
    listen: SocketAddr,
    admin: SocketAddr,
    primary: SocketAddr,
    secondary: SocketAddr,
) -> String {
    format!(
        r#"# Built-in demo: two mock providers on loopback.
[server]
listen = "{listen}"

[admin]
listen = "{admin}"

[upstreams.primary]
url = "http://{primary}/v1"

[upstreams.secondary]
url = "http://{secondary}/v1"

[routing]
stateless = "primary"
stateful = "secondary"
"#
    )
}

pub async fn start(port: u16, admin_port: u16) -> Result<Demo, DemoError> {
    let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let mut primary_opts = MockOptions::new("primary");
    primary_opts.record = false;
    let mut secondary_opts = MockOptions::new("secondary");
    secondary_opts.record = false;
    let primary = MockProvider::start(loopback(0), primary_opts)
        .await
        .map_err(DemoError::Mock)?;
    let secondary = MockProvider::start(loopback(0), secondary_opts)
        .await
        .map_err(DemoError::Mock)?;
    let text = config_text(
        loopback(port),
        loopback(admin_port),
        primary.addr(),
        secondary.addr(),
    );
    let server = server::start(Config::from_toml_str(&text)?).await?;
    Ok(Demo {
        primary,
        secondary,
        server,
    })
}

/// How to try the running demo.
pub fn instructions(demo: &Demo) -> String {
    let gw = demo.server.proxy_addr;
    let admin = demo.server.admin_addr;
    format!(
        r#"Switchyard demo is running.
  gateway   http://{gw}/v1   (stateless -> primary mock at {p}, stateful -> secondary mock at {s})
  metrics   http://{admin}/metrics

Try a stateless call (plain chat completion, lands on primary):
  curl -si http://{gw}/v1/chat/completions -H 'content-type: application/json' \
    -d '{{"model":"gpt-4o","messages":[{{"role":"user","content":"hi"}}]}}'

Try a stateful call (stored response chained to an earlier one, lands on secondary):
  curl -si http://{gw}/v1/responses -H 'content-type: application/json' \
    -d '{{"model":"gpt-4o","input":"hi","previous_response_id":"resp_123"}}'

Ask why, without sending anything:
  switchyard explain --config <file> --path /v1/responses --body request.json

Watch the x-switchyard-class / -upstream / -rule response headers, then:
  curl -s http://{admin}/metrics | grep switchyard_requests_total

Press Ctrl-C to stop.
"#,
        p = demo.primary.addr(),
        s = demo.secondary.addr(),
    )
}
