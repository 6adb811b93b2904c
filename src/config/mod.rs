//! Configuration: the TOML file parsed once into a typed, validated `Config`.
//!
//! `raw.rs` mirrors the file (unknown keys are errors), `env.rs` expands `${VAR}` secrets,
//! `validate.rs` turns the mirror into the types below, `rules.rs` the operator rules.
//! Nothing downstream re-checks strings.

mod env;
mod raw;
mod rules;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{HeaderName, HeaderValue};

use crate::classify::{Class, ClassifierSettings};

/// The whole, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub server: Server,
    pub admin: Admin,
    pub limits: Limits,
    /// `[timeouts]`: the defaults every upstream inherits unless it sets its own.
    pub timeouts: Timeouts,
    pub upstreams: Vec<Upstream>,
    pub routing: Routing,
    pub classifier: ClassifierSettings,
    pub log: Log,
}

/// `[server]`: the client-facing listener.
#[derive(Clone, Debug)]
pub struct Server {
    pub listen: SocketAddr,
    /// Client-facing API base path, normalised: starts with `/`, no trailing `/`; `""` is root.
    pub base_path: String,
    /// Add `x-switchyard-class`, `-upstream` and `-rule` to every response.
    pub decision_headers: bool,
}

/// `[admin]`: the listener for `/metrics`, `/healthz`, `/readyz`.
#[derive(Clone, Debug)]
pub struct Admin {
    pub listen: SocketAddr,
}

/// `[limits]`: what a client may send.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body, in bytes; larger ones get 413 before any upstream is contacted.
    pub max_body_bytes: u64,
    /// Largest request head (request line plus headers), in bytes; larger ones get 431.
    pub max_header_bytes: usize,
    /// Deadline for a client to send the whole request head.
    pub header_read_timeout: Duration,
}

/// Upstream timeouts (`[timeouts]`, overridable per upstream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect to the upstream.
    pub connect: Duration,
    /// From sending the request to receiving the response head.
    pub first_byte: Duration,
    /// Longest silence between two response body chunks (streams included).
    pub idle: Duration,
    /// The whole exchange, from the request arriving to the last response byte.
    pub request: Duration,
}

/// One `[upstreams.NAME]` entry.
#[derive(Clone, Debug)]
pub struct Upstream {
    pub name: String,
    pub url: UpstreamUrl,
    /// Speak HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1.
    pub http2: bool,
    /// Headers set on every request to this upstream, replacing what the client sent.
    pub set_headers: Vec<(HeaderName, SecretValue)>,
    /// Forward the client's `authorization`, `api-key` and `x-api-key` headers. Defaults to
    /// true unless `set_headers` sets one of them.
    pub forward_client_credentials: bool,
    pub timeouts: Timeouts,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
}

/// An upstream base URL: scheme, authority and a path prefix without a trailing `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub scheme: Scheme,
    pub authority: Authority,
    pub path: String,
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)
    }
}

/// A header value that may hold a secret: never printed by `Debug`.
#[derive(Clone)]
pub struct SecretValue(pub HeaderValue);

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `[routing]`: which upstream serves each class, by index into `Config::upstreams`.
/// Only `policy::Policy` turns a class into an upstream.
#[derive(Clone, Copy, Debug)]
pub struct Routing {
    pub stateless: usize,
    pub stateful: usize,
    pub unclassifiable: Unclassifiable,
}

/// What to do with a body-inspected request whose body cannot be classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unclassifiable {
    /// Answer 400 and contact no upstream (the default).
    Reject,
    /// Treat it as this class.
    As(Class),
}

/// `[log]`.
#[derive(Clone, Debug)]
pub struct Log {
    pub format: LogFormat,
    /// A `tracing` filter directive such as `info` or `switchyard=debug`.
    pub level: String,
    /// One line per request at `info` on target `switchyard::access`.
    pub access_log: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// Named defaults, each with its unit.
pub mod defaults {
    use std::time::Duration;

    /// Client-facing API base path.
    pub const BASE_PATH: &str = "/v1";
    /// Admin listener address.
    pub const ADMIN_LISTEN: &str = "127.0.0.1:9901";
    /// 32 MiB, in bytes.
    pub const MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;
    /// 64 KiB, in bytes.
    pub const MAX_HEADER_BYTES: usize = 64 * 1024;
    /// Smallest allowed `max_header_bytes` (hyper's read buffer floor), in bytes.
    pub const MIN_HEADER_BYTES: usize = 8 * 1024;
    pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Non-streaming reasoning calls can think for minutes before the head arrives.
    pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(300);
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(1800);
    pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
    /// Idle keep-alive connections kept per upstream host.
    pub const POOL_MAX_IDLE_PER_HOST: usize = 256;
    pub const LOG_LEVEL: &str = "info";
    /// Longest accepted duration for any timeout: 7 days.
    pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
}

/// A configuration that could not be loaded. Every message names the dotted key, the value
/// and the rule it broke.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Syntax(String),
    #[error("{key} = {value}: {rule}")]
    Invalid {
        key: String,
        value: String,
        rule: String,
    },
    #[error("{key}: environment variable {var} is not set")]
    MissingEnv { key: String, var: String },
}

impl Config {
    /// Read and validate the file at `path`; `${VAR}` secrets come from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text)
    }

    /// Validate TOML text; `${VAR}` secrets come from the process environment.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        Self::from_toml_str_with_env(text, &|name| std::env::var(name).ok())
    }

    /// Validate TOML text, resolving `${VAR}` with `lookup` (tests pass a fixed map).
    pub fn from_toml_str_with_env(
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw: raw::RawConfig = toml::from_str(text).map_err(|e| {
            ConfigError::Syntax(format!("invalid config: {}", e.to_string().trim_end()))
        })?;
        validate::validate(raw, lookup)
    }
}
