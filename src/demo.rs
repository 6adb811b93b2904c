//! `switchyard demo`: the gateway in front of two built-in mock providers on loopback.

use std::net::SocketAddr;

use crate::config::{Config, ConfigError};
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

/// The demo's config file, `config/demo.toml` (CI runs it through `switchyard check`).
pub const CONFIG: &str = include_str!("../config/demo.toml");

/// The demo configuration with the given listeners and mock provider addresses.
pub fn config(
    listen: SocketAddr,
    admin: SocketAddr,
    primary: SocketAddr,
    secondary: SocketAddr,
) -> Result<Config, DemoError> {
    let mut table: toml::Table = toml::from_str(CONFIG)
        .map_err(|e| ConfigError::Syntax(format!("invalid demo config: {e}")))?;
    for (section, addr) in [("server", listen), ("admin", admin)] {
        if let Some(toml::Value::Table(t)) = table.get_mut(section) {
            t.insert("listen".to_owned(), toml::Value::String(addr.to_string()));
        }
    }
    let text = toml::to_string(&table)
        .map_err(|e| ConfigError::Syntax(format!("invalid demo config: {e}")))?;
    let (primary, secondary) = (primary.to_string(), secondary.to_string());
    let lookup = |name: &str| match name {
        "DEMO_PRIMARY" => Some(primary.clone()),
        "DEMO_SECONDARY" => Some(secondary.clone()),
        _ => None,
    };
    Ok(Config::from_toml_str_with_env(&text, &lookup)?)
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
    let config = config(
        loopback(port),
        loopback(admin_port),
        primary.addr(),
        secondary.addr(),
    )?;
    let server = server::start(config).await?;
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
  gateway   http://{gw}/v1   (stateless -> "Azure OpenAI" mock at {p}, stateful -> "Bedrock" mock at {s})
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{UpstreamAuth, UpstreamKind};

    #[test]
    fn the_demo_file_is_the_demo_config() {
        let addr = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let c = config(addr(1), addr(2), addr(3), addr(4)).unwrap();
        assert_eq!(c.server.listen, Some(addr(1)));
        assert_eq!(c.admin.listen, addr(2));
        let primary = &c.upstreams[c.routing.stateless];
        let secondary = &c.upstreams[c.routing.stateful];
        assert_eq!(primary.url.to_string(), "http://127.0.0.1:3/openai/v1");
        assert_eq!(primary.kind, UpstreamKind::AzureOpenAi);
        assert!(matches!(primary.auth, UpstreamAuth::ApiKeyHeader(_)));
        assert_eq!(secondary.url.to_string(), "http://127.0.0.1:4/openai/v1");
        assert_eq!(secondary.kind, UpstreamKind::Bedrock);
        assert!(matches!(secondary.auth, UpstreamAuth::Bearer(_)));
    }
}
