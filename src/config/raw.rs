//! The TOML file as written: a serde mirror of the config file that denies unknown keys.
//!
//! Nothing here is trusted yet; `validate.rs` turns it into the typed `Config`. Values stay
//! strings where the typed form needs a rule of its own (addresses, URLs, durations, sizes),
//! so an error can name the dotted key and the value exactly as the operator wrote it.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub server: RawServer,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub upstreams: BTreeMap<String, RawUpstream>,
    pub routing: RawRouting,
    #[serde(default)]
    pub classifier: RawClassifier,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    #[serde(default)]
    pub log: RawLog,
    pub affinity: Option<RawAffinity>,
    #[serde(default)]
    pub accounting: RawAccounting,
    #[serde(default)]
    pub reload: RawReload,
    pub audit: Option<RawAudit>,
    pub shadow: Option<RawShadow>,
    #[serde(default)]
    pub clients: Vec<RawClient>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub listen: Option<String>,
    pub base_path: Option<String>,
    pub decision_headers: Option<bool>,
    pub workers: Option<i64>,
    pub drain_timeout: Option<String>,
    pub tls: Option<RawServerTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServerTls {
    pub listen: Option<String>,
    pub cert: String,
    pub key: String,
    pub client_ca: Option<String>,
    pub allow_plain: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub listen: Option<String>,
}

/// A size: either a whole number of bytes or a string such as `"32 MiB"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum RawSize {
    Bytes(i64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub max_body_bytes: Option<RawSize>,
    pub max_header_bytes: Option<RawSize>,
    pub header_read_timeout: Option<String>,
    pub max_headers: Option<i64>,
    pub max_connections: Option<i64>,
    pub max_requests_per_connection: Option<i64>,
    pub keepalive_timeout: Option<String>,
    pub send_timeout: Option<String>,
    pub send_buffer: Option<RawSize>,
    pub unsent_buffer: Option<RawSize>,
    pub h2_max_concurrent_streams: Option<i64>,
    pub h2_max_pending_resets: Option<i64>,
    pub h2_stream_window: Option<RawSize>,
    pub h2_connection_window: Option<RawSize>,
    pub h2_send_buffer: Option<RawSize>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimeouts {
    pub connect: Option<String>,
    pub first_byte: Option<String>,
    pub idle: Option<String>,
    pub request: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub kind: Option<String>,
    /// One endpoint; `endpoints` lists several instead.
    pub url: Option<String>,
    // Endpoint pools (issue #4).
    pub endpoints: Option<Vec<RawEndpoint>>,
    pub balance: Option<String>,
    pub retries: Option<i64>,
    pub health: Option<RawHealth>,
    pub http2: Option<bool>,
    pub http2_max_streams: Option<i64>,
    #[serde(default)]
    pub set_headers: BTreeMap<String, String>,
    pub forward_client_credentials: Option<bool>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    pub pool_idle_timeout: Option<String>,
    pub pool_max_idle_per_host: Option<i64>,
    // Credentials the gateway adds (issue #3).
    pub api_key: Option<String>,
    pub bearer_token: Option<String>,
    pub bearer_token_file: Option<String>,
    pub auth: Option<String>,
    pub region: Option<String>,
    pub service: Option<String>,
    pub profile: Option<String>,
    // Azure OpenAI classic deployments API.
    pub api_version: Option<String>,
    #[serde(default)]
    pub deployments: BTreeMap<String, String>,
    // Model aliasing: the client's model name -> the provider's.
    #[serde(default)]
    pub models: BTreeMap<String, String>,
    // TLS to the upstream.
    pub ca: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
    pub danger_accept_invalid_certs: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouting {
    pub stateless: String,
    pub stateful: String,
    pub unclassifiable: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClassifier {
    pub builtins: Option<bool>,
    #[serde(default)]
    pub disable: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub name: String,
    pub class: String,
    #[serde(default)]
    pub methods: Vec<String>,
    pub path: Option<String>,
    #[serde(default)]
    pub header_present: Vec<String>,
    #[serde(default)]
    pub header_equals: BTreeMap<String, String>,
    #[serde(default)]
    pub body_present: Vec<String>,
    #[serde(default)]
    pub body_absent: Vec<String>,
    #[serde(default)]
    pub body_equals: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
    pub access_log: Option<bool>,
}

/// One entry of `upstreams.NAME.endpoints`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEndpoint {
    pub url: String,
    pub name: Option<String>,
    pub weight: Option<i64>,
}

/// `[upstreams.NAME.health]`: active checks (with `path`) and passive ejection.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub healthy_threshold: Option<i64>,
    pub unhealthy_threshold: Option<i64>,
    pub eject_after: Option<i64>,
    pub eject_for: Option<String>,
}

/// `[affinity]`: where learned id -> endpoint entries live, and what happens when the
/// endpoint holding a request's state is down.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAffinity {
    pub store: Option<String>,
    pub capacity: Option<i64>,
    pub ttl: Option<String>,
    pub on_endpoint_down: Option<String>,
    #[serde(default)]
    pub session_headers: Vec<String>,
    pub redis_url: Option<String>,
    pub redis_key_prefix: Option<String>,
    pub redis_timeout: Option<String>,
    pub redis_local_capacity: Option<i64>,
}

/// `[accounting]`: token usage read from responses.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccounting {
    pub tokens: Option<bool>,
    pub inject_include_usage: Option<bool>,
}

/// `[reload]`: reloading the config when its file changes (SIGHUP and `POST /reload` always
/// work).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReload {
    pub watch: Option<bool>,
    pub watch_interval: Option<String>,
}

/// `[audit]`: the hash-chained audit trail.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    pub path: String,
    pub max_file_bytes: Option<RawSize>,
    pub max_files: Option<i64>,
    pub queue: Option<i64>,
    pub on_full: Option<String>,
    pub key: Option<String>,
}

/// `[shadow]`: a second rule set, evaluated on every request and never enforced.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShadow {
    pub builtins: Option<bool>,
    #[serde(default)]
    pub disable: Vec<String>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

/// One `[[clients]]` entry: a caller of the gateway, how it proves who it is, its rate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    pub name: String,
    pub api_key_sha256: Option<String>,
    pub cert_sha256: Option<String>,
    pub rate_per_second: Option<f64>,
    pub burst: Option<i64>,
}
