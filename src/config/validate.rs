//! Turns the raw TOML mirror into the typed `Config`, rule by rule (operator `[[rules]]`
//! and `[classifier]` are in `rules.rs`).
//!
//! Every error names the dotted key, the value as written, and the rule it broke; the tests in
//! `tests.rs` pin the exact texts.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use http::uri::Scheme;
use http::{HeaderName, HeaderValue, Uri};

use super::raw::{RawConfig, RawLog, RawSize, RawTimeouts, RawUpstream};
use super::{
    defaults, env, Admin, Config, ConfigError, Limits, Log, LogFormat, Routing, SecretValue,
    Server, Timeouts, Unclassifiable, Upstream, UpstreamUrl,
};
use crate::classify::Class;

type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Largest accepted `max_body_bytes`: 2 GiB.
const MAX_BODY_LIMIT: u64 = 2 * 1024 * 1024 * 1024;
/// Largest accepted `max_header_bytes`: 1 MiB.
const MAX_HEADER_LIMIT: usize = 1024 * 1024;
/// Request headers the gateway owns on the way upstream; `set_headers` may not touch them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "content-encoding",
];

pub(super) fn validate(raw: RawConfig, lookup: Lookup<'_>) -> Result<Config, ConfigError> {
    let server = Server {
        listen: socket_addr("server.listen", &raw.server.listen)?,
        base_path: base_path(raw.server.base_path.as_deref())?,
        decision_headers: raw.server.decision_headers.unwrap_or(true),
    };
    let admin_listen = raw
        .admin
        .listen
        .as_deref()
        .unwrap_or(defaults::ADMIN_LISTEN);
    let admin = Admin {
        listen: socket_addr("admin.listen", admin_listen)?,
    };
    if admin.listen == server.listen && admin.listen.port() != 0 {
        return Err(invalid(
            "admin.listen",
            &quote(admin_listen),
            "must differ from server.listen",
        ));
    }
    let limits = limits(&raw)?;
    let global = timeouts("timeouts", &raw.timeouts, None)?;

    if raw.upstreams.is_empty() {
        return Err(invalid(
            "upstreams",
            "{}",
            "define at least two upstreams, one per class, e.g. [upstreams.primary]",
        ));
    }
    let mut upstreams = Vec::with_capacity(raw.upstreams.len());
    for (name, up) in &raw.upstreams {
        upstreams.push(upstream(name, up, global, lookup)?);
    }
    let routing = routing(&raw, &upstreams)?;
    let classifier = super::rules::classifier(&raw, &server.base_path)?;
    let log = log(&raw.log)?;
    Ok(Config {
        server,
        admin,
        limits,
        timeouts: global,
        upstreams,
        routing,
        classifier,
        log,
    })
}

pub(super) fn invalid(key: &str, value: &str, rule: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        value: value.to_owned(),
        rule: rule.to_owned(),
    }
}

pub(super) fn quote(s: &str) -> String {
    format!("{s:?}")
}

fn socket_addr(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    SocketAddr::from_str(value).map_err(|_| {
        invalid(
            key,
            &quote(value),
            "must be an IP address and port, such as \"127.0.0.1:8080\" or \"[::1]:8080\"",
        )
    })
}

fn base_path(value: Option<&str>) -> Result<String, ConfigError> {
    let Some(value) = value else {
        return Ok(defaults::BASE_PATH.to_owned());
    };
    let ok = value.starts_with('/')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b))
        && !value.contains("//")
        && !value.split('/').any(|seg| seg == "." || seg == "..");
    if !ok {
        return Err(invalid(
            "server.base_path",
            &quote(value),
            "must be an absolute path of plain segments (letters, digits, '-', '_', '.', '~'), such as \"/v1\"",
        ));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

fn size(key: &str, value: &RawSize) -> Result<u64, ConfigError> {
    match value {
        RawSize::Bytes(n) => u64::try_from(*n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| invalid(key, &n.to_string(), "must be a positive number of bytes")),
        RawSize::Text(text) => bytesize::ByteSize::from_str(text)
            .ok()
            .map(|b| b.as_u64())
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                invalid(
                    key,
                    &quote(text),
                    "must be a positive size such as 1048576, \"512 KiB\" or \"32 MiB\"",
                )
            }),
    }
}

fn duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    let parsed = humantime::parse_duration(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            invalid(
                key,
                &quote(value),
                "must be a positive duration such as \"500ms\", \"30s\" or \"5m\"",
            )
        })?;
    if parsed > defaults::MAX_DURATION {
        return Err(invalid(key, &quote(value), "must be at most 7 days"));
    }
    Ok(parsed)
}

fn opt_duration(
    key: &str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    value.map_or(Ok(default), |v| duration(key, v))
}

fn limits(raw: &RawConfig) -> Result<Limits, ConfigError> {
    let l = &raw.limits;
    let max_body_bytes = match &l.max_body_bytes {
        Some(v) => size("limits.max_body_bytes", v)?,
        None => defaults::MAX_BODY_BYTES,
    };
    if max_body_bytes > MAX_BODY_LIMIT {
        return Err(invalid(
            "limits.max_body_bytes",
            &max_body_bytes.to_string(),
            "must be at most 2 GiB (2147483648)",
        ));
    }
    let max_header_bytes = match &l.max_header_bytes {
        Some(v) => size("limits.max_header_bytes", v)?,
        None => defaults::MAX_HEADER_BYTES as u64,
    };
    let max_header_bytes = usize::try_from(max_header_bytes)
        .ok()
        .filter(|n| (defaults::MIN_HEADER_BYTES..=MAX_HEADER_LIMIT).contains(n))
        .ok_or_else(|| {
            invalid(
                "limits.max_header_bytes",
                &max_header_bytes.to_string(),
                "must be between 8 KiB (8192) and 1 MiB (1048576)",
            )
        })?;
    Ok(Limits {
        max_body_bytes,
        max_header_bytes,
        header_read_timeout: opt_duration(
            "limits.header_read_timeout",
            l.header_read_timeout.as_deref(),
            defaults::HEADER_READ_TIMEOUT,
        )?,
    })
}

/// Timeouts at `prefix`; missing ones come from `base` (the global section) or the defaults.
fn timeouts(
    prefix: &str,
    raw: &RawTimeouts,
    base: Option<Timeouts>,
) -> Result<Timeouts, ConfigError> {
    let base = base.unwrap_or(Timeouts {
        connect: defaults::CONNECT_TIMEOUT,
        first_byte: defaults::FIRST_BYTE_TIMEOUT,
        idle: defaults::IDLE_TIMEOUT,
        request: defaults::REQUEST_TIMEOUT,
    });
    let key = |k: &str| format!("{prefix}.{k}");
    Ok(Timeouts {
        connect: opt_duration(&key("connect"), raw.connect.as_deref(), base.connect)?,
        first_byte: opt_duration(
            &key("first_byte"),
            raw.first_byte.as_deref(),
            base.first_byte,
        )?,
        idle: opt_duration(&key("idle"), raw.idle.as_deref(), base.idle)?,
        request: opt_duration(&key("request"), raw.request.as_deref(), base.request)?,
    })
}

fn upstream(
    name: &str,
    raw: &RawUpstream,
    global: Timeouts,
    lookup: Lookup<'_>,
) -> Result<Upstream, ConfigError> {
    let prefix = format!("upstreams.{name}");
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && name != "none";
    if !name_ok {
        return Err(invalid(
            &prefix,
            &quote(name),
            "an upstream name is 1-64 lowercase letters, digits, '_' or '-' (and not \"none\"); it becomes a metric label",
        ));
    }
    let url_key = format!("{prefix}.url");
    let url_text = env::expand(&url_key, &raw.url, lookup)?;
    // Errors show the URL as written: an expanded ${VAR} may hold a secret.
    let url = upstream_url(&url_key, &url_text, &raw.url)?;

    let mut set_headers = Vec::with_capacity(raw.set_headers.len());
    for (header, value) in &raw.set_headers {
        let key = format!("{prefix}.set_headers.{header}");
        let name = HeaderName::from_str(header)
            .map_err(|_| invalid(&key, &quote(header), "is not a valid HTTP header name"))?;
        if RESERVED_HEADERS.contains(&name.as_str()) {
            return Err(invalid(
                &key,
                &quote(header),
                "is managed by the gateway and cannot be set",
            ));
        }
        let expanded = env::expand(&key, value, lookup)?;
        let mut value = HeaderValue::from_str(&expanded).map_err(|_| {
            invalid(
                &key,
                "<redacted>",
                "is not a valid header value (visible ASCII, spaces and tabs only)",
            )
        })?;
        value.set_sensitive(true);
        set_headers.push((name, SecretValue(value)));
    }
    let sets_credentials = set_headers
        .iter()
        .any(|(n, _)| crate::upstream::CREDENTIAL_HEADERS.contains(&n.as_str()));

    let pool_max_idle_per_host = match raw.pool_max_idle_per_host {
        None => defaults::POOL_MAX_IDLE_PER_HOST,
        Some(n) => usize::try_from(n).map_err(|_| {
            invalid(
                &format!("{prefix}.pool_max_idle_per_host"),
                &n.to_string(),
                "must be zero or a positive number of connections",
            )
        })?,
    };
    Ok(Upstream {
        name: name.to_owned(),
        url,
        http2: raw.http2.unwrap_or(false),
        set_headers,
        forward_client_credentials: raw.forward_client_credentials.unwrap_or(!sets_credentials),
        timeouts: timeouts(&format!("{prefix}.timeouts"), &raw.timeouts, Some(global))?,
        pool_idle_timeout: opt_duration(
            &format!("{prefix}.pool_idle_timeout"),
            raw.pool_idle_timeout.as_deref(),
            defaults::POOL_IDLE_TIMEOUT,
        )?,
        pool_max_idle_per_host,
    })
}

fn upstream_url(key: &str, text: &str, as_written: &str) -> Result<UpstreamUrl, ConfigError> {
    let bad = |rule: &str| invalid(key, &quote(as_written), rule);
    let uri = Uri::from_str(text).map_err(|_| bad("is not a valid URL"))?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or_else(|| bad("must be an absolute URL such as \"http://127.0.0.1:18081/v1\""))?;
    if scheme == Scheme::HTTPS {
        return Err(bad(
            "https upstreams are not supported by this build yet; use http:// (TLS to upstreams is planned)",
        ));
    }
    if scheme != Scheme::HTTP {
        return Err(bad("scheme must be http"));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| bad("must name a host"))?;
    if authority.as_str().contains('@') {
        return Err(bad(
            "must not carry credentials; use set_headers with ${ENV_VAR} instead",
        ));
    }
    if authority.host().is_empty() {
        return Err(bad("must name a host"));
    }
    if uri.query().is_some() || text.contains('#') {
        return Err(bad("must not have a query or fragment"));
    }
    let path = uri.path().trim_end_matches('/').to_owned();
    Ok(UpstreamUrl {
        scheme,
        authority,
        path,
    })
}

fn routing(raw: &RawConfig, upstreams: &[Upstream]) -> Result<Routing, ConfigError> {
    let known = || {
        upstreams
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let find = |key: &str, name: &str| {
        upstreams
            .iter()
            .position(|u| u.name == name)
            .ok_or_else(|| {
                invalid(
                    key,
                    &quote(name),
                    &format!("no upstream has this name (defined: {})", known()),
                )
            })
    };
    let stateless = find("routing.stateless", &raw.routing.stateless)?;
    let stateful = find("routing.stateful", &raw.routing.stateful)?;
    if stateless == stateful {
        return Err(invalid(
            "routing.stateful",
            &quote(&raw.routing.stateful),
            "must name a different upstream than routing.stateless: each class has its own upstream",
        ));
    }
    if let (Some(a), Some(b)) = (upstreams.get(stateless), upstreams.get(stateful)) {
        if a.url == b.url {
            return Err(invalid(
                "routing.stateful",
                &quote(&raw.routing.stateful),
                &format!(
                    "upstreams.{} and upstreams.{} have the same url {}; stateless and stateful traffic must reach different endpoints",
                    a.name, b.name, a.url
                ),
            ));
        }
    }
    let unclassifiable = match raw.routing.unclassifiable.as_deref() {
        None | Some("reject") => Unclassifiable::Reject,
        Some("stateless") => Unclassifiable::As(Class::Stateless),
        Some("stateful") => Unclassifiable::As(Class::Stateful),
        Some(other) => {
            return Err(invalid(
                "routing.unclassifiable",
                &quote(other),
                "must be one of \"reject\", \"stateless\", \"stateful\"",
            ))
        }
    };
    Ok(Routing {
        stateless,
        stateful,
        unclassifiable,
    })
}

fn log(raw: &RawLog) -> Result<Log, ConfigError> {
    let format = match raw.format.as_deref() {
        None | Some("human") => LogFormat::Human,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return Err(invalid(
                "log.format",
                &quote(other),
                "must be \"human\" or \"json\"",
            ))
        }
    };
    let level = raw
        .level
        .clone()
        .unwrap_or_else(|| defaults::LOG_LEVEL.to_owned());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        return Err(invalid(
            "log.level",
            &quote(&level),
            "must be a tracing filter such as \"info\" or \"switchyard=debug,warn\"",
        ));
    }
    Ok(Log {
        format,
        level,
        access_log: raw.access_log.unwrap_or(true),
    })
}
