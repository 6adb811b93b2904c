//! Configuration: the TOML file parsed once into a typed, validated `Config`.
//!
//! `raw.rs` mirrors the file (unknown keys are errors), `env.rs` expands `${VAR}` secrets,
//! `validate.rs` turns the mirror into the types below, `rules.rs` the operator rules.
//! Nothing downstream re-checks strings.

mod affinity;
mod env;
mod operations;
mod pool;
mod raw;
mod rules;
mod upstream;
mod validate;

pub use operations::{parse_sha256, sha256_hex, Audit, AuditKey, AuditOnFull, Reload};
pub use upstream::bedrock_endpoint;

#[cfg(test)]
mod operations_tests;
#[cfg(test)]
mod pool_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod upstream_tests;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    /// `[affinity]`: learned id -> endpoint table and session hashing.
    pub affinity: Affinity,
    /// `[accounting]`: token usage from responses.
    pub accounting: Accounting,
    /// `[reload]`: watching the file for changes.
    pub reload: Reload,
    /// `[audit]`: the hash-chained audit trail, when configured.
    pub audit: Option<Audit>,
    /// `[shadow]`: a rule set evaluated on every request and never enforced.
    pub shadow: Option<ClassifierSettings>,
    /// Where this config came from and its SHA-256.
    pub source: Source,
    /// `[[clients]]`: when any is defined, every request must come from one of them.
    pub clients: Vec<Client>,
}

/// One `[[clients]]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Client {
    /// A metric label: `[a-z0-9_-]`, 1-64 bytes.
    pub name: String,
    /// SHA-256 of its API key (sent as `Authorization: Bearer`, `x-api-key` or `api-key`).
    pub api_key_sha256: Option<[u8; 32]>,
    /// SHA-256 of its TLS client certificate (DER), on a listener with `client_ca`.
    pub cert_sha256: Option<[u8; 32]>,
    /// Token bucket: sustained requests per second and burst; `None` is unlimited.
    pub rate: Option<Rate>,
}

/// A token bucket's refill rate and size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

/// The file a config was read from (if any) and the SHA-256 of its bytes, which names the
/// config in `switchyard_config_info`, the audit trail and `x-switchyard-config`.
#[derive(Clone, Debug)]
pub struct Source {
    /// `None` for a config built from text (tests, the demo): it cannot be reloaded.
    pub path: Option<PathBuf>,
    /// Lowercase hex.
    pub sha256: Arc<str>,
}

/// `[server]`: the client-facing listeners.
#[derive(Clone, Debug)]
pub struct Server {
    /// The plain-HTTP listener; `None` when clients are served over TLS only.
    pub listen: Option<SocketAddr>,
    /// `[server.tls]`: the TLS listener, beside or instead of the plain one.
    pub tls: Option<ServerTls>,
    /// Client-facing API base path, normalised: starts with `/`, no trailing `/`; `""` is root.
    pub base_path: String,
    /// Add `x-switchyard-class`, `-upstream` and `-rule` to every response.
    pub decision_headers: bool,
    /// Threads serving clients, each with its own event loop and upstream connection pools.
    pub workers: usize,
    /// How long in-flight requests and streams get to finish after SIGTERM.
    pub drain_timeout: Duration,
}

/// `[server.tls]`: a TLS listener (HTTP/1.1 and h2 by ALPN), optionally requiring client
/// certificates.
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub listen: SocketAddr,
    /// The key the address came from (`server.tls.listen`, or `server.listen` for TLS only).
    pub listen_key: &'static str,
    /// Built from the certificate chain, key and optional client CA while validating.
    pub config: Arc<rustls::ServerConfig>,
    /// Clients must present a certificate issued by `client_ca`.
    pub client_auth: bool,
    /// The certificate file, for startup logging.
    pub cert: PathBuf,
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
    /// Deadline for a client to send the whole request head (on HTTP/1.1 it also bounds the
    /// idle time between requests: hyper starts it when it waits for the next head).
    pub header_read_timeout: Duration,
    /// Most request header lines (HTTP/1.1); more get 431.
    pub max_headers: usize,
    /// Most client connections open at once, all listeners together; 0 is no limit.
    pub max_connections: usize,
    /// Requests served on one connection before it is closed politely; 0 is no limit.
    pub max_requests_per_connection: u64,
    /// A connection with no request in flight for this long is closed politely.
    pub keepalive_timeout: Duration,
    /// A write to a client that stays blocked this long (the client reads nothing) ends the
    /// connection (nginx's `send_timeout`).
    pub send_timeout: Duration,
    /// SO_SNDBUF of every client socket, in bytes; `None` leaves the kernel's autotuning.
    pub send_buffer: Option<usize>,
    /// TCP_NOTSENT_LOWAT of every client socket, in bytes: how much written but not yet sent
    /// data the kernel takes for a client before the gateway's writes wait. `None` leaves the
    /// kernel's setting (`net.ipv4.tcp_notsent_lowat`, unlimited by default).
    pub unsent_buffer: Option<u32>,
    /// HTTP/2 limits.
    pub h2: H2Limits,
}

/// `limits.h2_*`: what one HTTP/2 client connection may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct H2Limits {
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub max_concurrent_streams: u32,
    /// Streams a client may open and reset before the gateway accepts them (the rapid-reset
    /// attack, CVE-2023-44487); past it the connection ends with GOAWAY.
    pub max_pending_resets: usize,
    /// Flow-control window per stream, in bytes: what one request body may have in flight.
    pub stream_window: u32,
    /// Flow-control window per connection, in bytes.
    pub connection_window: u32,
    /// Response bytes one stream may have queued for a client that reads slowly, in bytes.
    pub send_buffer: usize,
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
    /// What kind of provider this is: decides authentication and path mapping.
    pub kind: UpstreamKind,
    /// The first endpoint's URL (the only one for the `url = …` form).
    pub url: UpstreamUrl,
    /// Every endpoint (one for the `url = …` form), in config order, names unique.
    pub endpoints: Vec<Endpoint>,
    /// How stateless (and not yet pinned) requests are spread over healthy endpoints.
    pub balance: Balance,
    /// Extra attempts on other endpoints of this upstream, only when nothing was sent yet or
    /// the request is idempotent.
    pub retries: u32,
    pub health: Health,
    /// The connector's rustls config (trust anchors, client certificate); unused for http.
    pub tls: Arc<rustls::ClientConfig>,
    /// `danger_accept_invalid_certs`: the server certificate is not verified. Testing only.
    pub danger_accept_invalid_certs: bool,
    /// Credentials the gateway adds to every request (the first endpoint's; SigV4's region
    /// is per endpoint, see `Endpoint::auth`).
    pub auth: UpstreamAuth,
    /// `models`: the model name a client sends -> the provider's model or deployment id.
    pub models: ModelMap,
    /// Azure OpenAI classic deployments API (`api_version`, `deployments`).
    pub azure_classic: Option<AzureClassic>,
    /// Speak HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1.
    pub http2: bool,
    /// Streams the gateway opens on one HTTP/2 connection to this upstream before it opens
    /// another (by ALPN or `http2`).
    pub http2_max_streams: u32,
    /// Headers set on every request to this upstream, replacing what the client sent.
    pub set_headers: Vec<(HeaderName, SecretValue)>,
    /// Forward the client's `authorization`, `api-key` and `x-api-key` headers. Defaults to
    /// true unless `set_headers` sets one of them.
    pub forward_client_credentials: bool,
    pub timeouts: Timeouts,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    /// SHA-256 of the section as written, the global timeouts and the certificate files it
    /// reads: a reload keeps the running client when this is unchanged.
    pub fingerprint: [u8; 32],
}

/// One endpoint of an upstream's pool.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Unique within the upstream; a metric label and the value stored in the affinity table.
    pub name: String,
    pub url: UpstreamUrl,
    /// Relative share of balanced traffic (1-100).
    pub weight: u32,
    /// The credentials for this endpoint (SigV4 signs for the endpoint's own region).
    pub auth: UpstreamAuth,
}

/// `upstreams.NAME.balance`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balance {
    /// Power of two choices on in-flight requests per unit of weight (the default).
    P2c,
    /// Weighted round robin.
    RoundRobin,
}

/// `[upstreams.NAME.health]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// Active checks, when `path` is set.
    pub active: Option<ActiveHealth>,
    /// Consecutive connect failures (refused, timed out, TLS) that eject an endpoint of a pool.
    pub eject_after: u32,
    /// How long the first ejection lasts; repeated ejections double it, up to 5 minutes.
    pub eject_for: Duration,
}

/// Active health checks: `GET path` on every endpoint every `interval`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveHealth {
    /// Absolute path (and query) requested on each endpoint's host, with its credentials.
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive passing checks that bring an unhealthy endpoint back.
    pub healthy_threshold: u32,
    /// Consecutive failing checks that take a healthy endpoint out.
    pub unhealthy_threshold: u32,
}

/// `[affinity]`.
#[derive(Clone, Debug)]
pub struct Affinity {
    pub store: AffinityStore,
    /// How long a learned id is remembered.
    pub ttl: Duration,
    pub on_endpoint_down: OnEndpointDown,
    /// Headers whose value is hashed onto an endpoint: the built-in session headers plus
    /// `session_headers`.
    pub session_headers: Vec<HeaderName>,
}

/// Where learned ids live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AffinityStore {
    /// In this process, at most `capacity` entries.
    Memory { capacity: u64 },
    /// In Redis or Valkey, shared by every replica; a local cache of `local_capacity` entries
    /// in front (an id never moves).
    Redis {
        url: String,
        key_prefix: String,
        timeout: Duration,
        local_capacity: u64,
    },
}

/// What happens when the endpoint that holds a request's state is unavailable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnEndpointDown {
    /// Answer 503: the state is there and nowhere else (the default).
    Fail,
    /// Send it to another healthy endpoint of the same upstream.
    Rebalance,
}

/// `[accounting]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accounting {
    /// Read token usage from JSON and SSE responses.
    pub tokens: bool,
    /// Add `stream_options.include_usage = true` to streaming chat requests without it.
    pub inject_include_usage: bool,
}

/// `kind` of an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamKind {
    /// Any OpenAI-compatible HTTP API (the default).
    OpenAi,
    /// Azure OpenAI: `api-key` or bearer auth, v1 or classic deployments API.
    AzureOpenAi,
    /// Amazon Bedrock (runtime, Mantle, AgentCore): bearer API key or SigV4.
    Bedrock,
}

impl UpstreamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamKind::OpenAi => "openai",
            UpstreamKind::AzureOpenAi => "azure_openai",
            UpstreamKind::Bedrock => "bedrock",
        }
    }
}

/// The credentials an upstream gets from the gateway.
#[derive(Clone, Debug)]
pub enum UpstreamAuth {
    /// None added; the client's own credentials pass if `forward_client_credentials`.
    None,
    /// `api-key: KEY` (Azure OpenAI `api_key`).
    ApiKeyHeader(SecretValue),
    /// `authorization: Bearer TOKEN` (OpenAI `api_key`, Azure `bearer_token`, Bedrock API key).
    Bearer(SecretValue),
    /// `authorization: Bearer TOKEN` with the token read from a file and re-read when the
    /// file changes (workload identity).
    BearerFile(PathBuf),
    /// AWS Signature Version 4 over the exact bytes sent.
    SigV4(SigV4Settings),
}

impl UpstreamAuth {
    /// What the gateway sends, for `check` and startup logs (never the secret).
    pub fn describe(&self) -> String {
        match self {
            UpstreamAuth::None => "client credentials pass".to_owned(),
            UpstreamAuth::ApiKeyHeader(_) => "api-key header".to_owned(),
            UpstreamAuth::Bearer(_) => "bearer token".to_owned(),
            UpstreamAuth::BearerFile(path) => format!("bearer token from {}", path.display()),
            UpstreamAuth::SigV4(s) => {
                let source = match &s.profile {
                    Some(profile) => format!("profile {profile:?}"),
                    None => "the AWS default credential chain".to_owned(),
                };
                format!(
                    "SigV4 ({} in {}, credentials from {source})",
                    s.service, s.region
                )
            }
        }
    }
}

/// SigV4 signing for a Bedrock upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigV4Settings {
    pub region: String,
    /// The signing name: `bedrock`, `bedrock-mantle` or `bedrock-agentcore`.
    pub service: String,
    /// Shared config/credentials profile; `None` means `AWS_PROFILE` or `default`.
    pub profile: Option<String>,
}

/// Client model name -> provider model name, applied by rewriting the body's `model`.
#[derive(Clone, Debug, Default)]
pub struct ModelMap(pub std::collections::HashMap<String, String>);

impl ModelMap {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, model: &str) -> Option<&str> {
        self.0.get(model).map(String::as_str)
    }
}

/// Azure OpenAI's classic API: deployment-scoped paths and a required `api-version`.
#[derive(Clone, Debug)]
pub struct AzureClassic {
    /// Sent as `?api-version=` on every request to this upstream.
    pub api_version: String,
    /// The request's `model` -> deployment name, for the deployment-scoped endpoints.
    pub deployments: ModelMap,
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
    /// Most worker threads `server.workers` may ask for (the default is one per CPU).
    pub const MAX_WORKERS: usize = 256;
    /// Admin listener address.
    pub const ADMIN_LISTEN: &str = "127.0.0.1:9901";
    /// 32 MiB, in bytes.
    pub const MAX_BODY_BYTES: u64 = 32 * 1024 * 1024;
    /// 64 KiB, in bytes.
    pub const MAX_HEADER_BYTES: usize = 64 * 1024;
    /// Smallest allowed `max_header_bytes` (hyper's read buffer floor), in bytes.
    pub const MIN_HEADER_BYTES: usize = 8 * 1024;
    pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
    /// Request header lines (hyper's own default).
    pub const MAX_HEADERS: usize = 100;
    /// Client connections open at once, all listeners together.
    pub const MAX_CONNECTIONS: usize = 20_000;
    /// Requests per connection before it is recycled (nginx's `keepalive_requests` is 1,000).
    pub const MAX_REQUESTS_PER_CONNECTION: u64 = 10_000;
    /// Idle time before a client connection is closed (nginx's `keepalive_timeout`).
    pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
    /// How long a blocked write to a client may wait (nginx's `send_timeout` default).
    pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);
    /// HTTP/2 concurrent streams per connection (hyper's default, made explicit).
    pub const H2_MAX_CONCURRENT_STREAMS: u32 = 200;
    /// HTTP/2 streams reset before being accepted, per connection (hyper's default).
    pub const H2_MAX_PENDING_RESETS: usize = 20;
    /// 1 MiB, in bytes: the HTTP/2 stream flow-control window.
    pub const H2_STREAM_WINDOW: u32 = 1024 * 1024;
    /// 2 MiB, in bytes: the HTTP/2 connection flow-control window.
    pub const H2_CONNECTION_WINDOW: u32 = 2 * 1024 * 1024;
    /// 64 KiB, in bytes: response bytes an HTTP/2 stream may have queued for its client (as
    /// much as an HTTP/1.1 response at the default `max_header_bytes`; hyper's own is ~400 KB).
    pub const H2_SEND_BUFFER: usize = 64 * 1024;
    /// 16 KiB, in bytes: written but unsent data the kernel may hold for a client socket
    /// (the `net.ipv4.tcp_notsent_lowat` Cloudflare recommends for HTTP/2 servers). Without
    /// it, a client that reads nothing gets a 1 MiB answer queued whole in the gateway's
    /// autotuned send buffer on loopback.
    pub const UNSENT_BUFFER: u32 = 16 * 1024;
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Non-streaming reasoning calls can think for minutes before the head arrives.
    pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(300);
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(1800);
    pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
    /// Idle keep-alive connections kept per upstream host.
    pub const POOL_MAX_IDLE_PER_HOST: usize = 256;
    /// Streams per HTTP/2 upstream connection: what most servers allow at least (nginx 128,
    /// HAProxy and Apache 100, hyper 200, Go 250); RFC 9113 recommends no fewer than 100.
    pub const HTTP2_MAX_STREAMS: u32 = 100;
    /// The most `http2_max_streams` may be: its connection window (this many stream windows)
    /// must stay within HTTP/2's 2^31-1.
    pub const HTTP2_MAX_STREAMS_LIMIT: u32 = 1000;
    pub const LOG_LEVEL: &str = "info";
    /// How often a `bearer_token_file` is checked for a new token.
    pub const TOKEN_FILE_POLL: Duration = Duration::from_secs(5);
    /// The environment variable a Bedrock `auth = "api_key"` upstream reads by default.
    pub const BEDROCK_API_KEY_ENV: &str = "AWS_BEARER_TOKEN_BEDROCK";
    /// Health checks and passive ejection.
    pub const HEALTH_INTERVAL: Duration = Duration::from_secs(10);
    pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
    pub const HEALTHY_THRESHOLD: u32 = 2;
    pub const UNHEALTHY_THRESHOLD: u32 = 3;
    pub const EJECT_AFTER: u32 = 3;
    pub const EJECT_FOR: Duration = Duration::from_secs(10);
    /// Longest ejection after repeated ejections.
    pub const EJECT_MAX: Duration = Duration::from_secs(300);
    /// Extra attempts on other endpoints of the same upstream.
    pub const RETRIES: u32 = 1;
    /// Learned ids kept in memory.
    pub const AFFINITY_CAPACITY: u64 = 100_000;
    /// How long a learned id is remembered (OpenAI keeps stored responses 30 days).
    pub const AFFINITY_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
    pub const REDIS_KEY_PREFIX: &str = "switchyard:affinity:";
    pub const REDIS_TIMEOUT: Duration = Duration::from_millis(100);
    /// Session headers hashed onto an endpoint without configuration.
    pub const SESSION_HEADERS: &[&str] = &[
        "mcp-session-id",
        "x-amzn-bedrock-agentcore-runtime-session-id",
    ];
    /// How long in-flight requests get to finish after SIGTERM.
    pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
    /// How often `[reload] watch` polls the file.
    pub const RELOAD_WATCH_INTERVAL: Duration = Duration::from_secs(5);
    pub const MIN_RELOAD_WATCH_INTERVAL: Duration = Duration::from_millis(100);
    /// 100 MiB, in bytes: the audit file is rotated past this.
    pub const AUDIT_MAX_FILE_BYTES: u64 = 100 * 1024 * 1024;
    /// 64 KiB, in bytes: the smallest `audit.max_file_bytes`.
    pub const AUDIT_MIN_FILE_BYTES: u64 = 64 * 1024;
    /// Audit records waiting for the writer, at most.
    pub const AUDIT_QUEUE: usize = 65_536;
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
        let mut config = Self::from_toml_str(&text)?;
        config.source.path = Some(path.to_path_buf());
        Ok(config)
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
        let sha256 = Arc::from(sha256_hex(text.as_bytes()));
        validate::validate(raw, lookup, Source { path: None, sha256 })
    }
}
