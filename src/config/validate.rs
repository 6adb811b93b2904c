//! Turns the raw TOML mirror into the typed `Config`, rule by rule (operator `[[rules]]`
//! and `[classifier]` are in `rules.rs`).
//!
//! Every error names the dotted key, the value as written, and the rule it broke; the tests in
//! `tests.rs` pin the exact texts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use super::raw::{RawConfig, RawLog, RawServer, RawSize, RawTimeouts};
use super::{
    defaults, operations, Admin, Config, ConfigError, H2Limits, Limits, Log, LogFormat, Routing,
    Server, ServerTls, Source, Timeouts, Unclassifiable, Upstream,
};
use crate::classify::Class;
use crate::tls;

pub(super) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Largest accepted `max_body_bytes`: 2 GiB.
const MAX_BODY_LIMIT: u64 = 2 * 1024 * 1024 * 1024;
/// Largest accepted `max_header_bytes`: 1 MiB.
const MAX_HEADER_LIMIT: usize = 1024 * 1024;

pub(super) fn validate(
    raw: RawConfig,
    lookup: Lookup<'_>,
    source: Source,
) -> Result<Config, ConfigError> {
    let server = server(&raw.server)?;
    let admin_listen = raw
        .admin
        .listen
        .as_deref()
        .unwrap_or(defaults::ADMIN_LISTEN);
    let admin = Admin {
        listen: socket_addr("admin.listen", admin_listen)?,
    };
    let listeners = [
        ("server.listen", server.listen),
        ("server.tls.listen", server.tls.as_ref().map(|t| t.listen)),
    ];
    for (key, addr) in listeners {
        if addr.is_some_and(|a| a == admin.listen && a.port() != 0) {
            return Err(invalid(
                "admin.listen",
                &quote(admin_listen),
                &format!("must differ from {key}"),
            ));
        }
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
        let mut upstream = super::upstream::upstream(name, up, global, lookup)?;
        upstream.fingerprint = operations::upstream_fingerprint(up, &raw.timeouts);
        upstreams.push(upstream);
    }
    let routing = routing(&raw, &upstreams)?;
    let classifier = super::rules::classifier(&raw, &server.base_path)?;
    let log = log(&raw.log)?;
    let affinity = super::affinity::affinity(raw.affinity.as_ref(), lookup)?;
    let accounting = super::affinity::accounting(&raw.accounting);
    let reload = operations::reload(&raw.reload)?;
    let audit = operations::audit(raw.audit.as_ref(), lookup)?;
    let clients = operations::clients(&raw.clients, &upstreams)?;
    let shadow = raw
        .shadow
        .as_ref()
        .map(|s| super::rules::shadow(s, &server.base_path))
        .transpose()?;
    Ok(Config {
        clients,
        reload,
        audit,
        shadow,
        source,
        affinity,
        accounting,
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

/// `[server]`: a plain listener, a TLS one, or both. `[server.tls]` without its own `listen`
/// turns `server.listen` into the TLS listener.
fn server(raw: &RawServer) -> Result<Server, ConfigError> {
    let plain = raw
        .listen
        .as_deref()
        .map(|l| socket_addr("server.listen", l))
        .transpose()?;
    let (listen, tls) = match &raw.tls {
        None => {
            let listen = plain.ok_or_else(|| {
                invalid(
                    "server.listen",
                    "(missing)",
                    "set the address clients connect to, such as \"127.0.0.1:8080\"",
                )
            })?;
            (Some(listen), None)
        }
        Some(t) => {
            let (listen, tls_listen, listen_key) = match (plain, t.listen.as_deref()) {
                (plain, Some(l)) => (
                    plain,
                    socket_addr("server.tls.listen", l)?,
                    "server.tls.listen",
                ),
                (Some(plain), None) => (None, plain, "server.listen"),
                (None, None) => return Err(invalid(
                    "server.tls.listen",
                    "(missing)",
                    "set server.listen or server.tls.listen to the address TLS clients connect to",
                )),
            };
            if listen.is_some_and(|l| l == tls_listen && l.port() != 0) {
                return Err(invalid(
                    "server.tls.listen",
                    &quote(&tls_listen.to_string()),
                    "must differ from server.listen (plain and TLS listeners need their own ports)",
                ));
            }
            if let (Some(_), Some(ca)) = (listen, &t.client_ca) {
                if !t.allow_plain.unwrap_or(false) {
                    return Err(invalid(
                        "server.tls.client_ca",
                        &quote(ca),
                        "clients could skip their certificates on the plain listener (server.listen); drop server.listen to serve TLS only, or set server.tls.allow_plain = true if that is intended",
                    ));
                }
            }
            let files = tls::ServerTlsFiles {
                cert: Path::new(&t.cert),
                key: Path::new(&t.key),
                client_ca: t.client_ca.as_deref().map(Path::new),
            };
            let config = tls::server_config(&files).map_err(from_tls)?;
            let tls = ServerTls {
                listen: tls_listen,
                listen_key,
                config,
                client_auth: t.client_ca.is_some(),
                cert: PathBuf::from(&t.cert),
            };
            (listen, Some(tls))
        }
    };
    Ok(Server {
        listen,
        tls,
        base_path: base_path(raw.base_path.as_deref())?,
        decision_headers: raw.decision_headers.unwrap_or(true),
        workers: workers(raw.workers)?,
        drain_timeout: operations::drain_timeout(raw.drain_timeout.as_deref())?,
    })
}

/// `server.workers`: 1 to [`defaults::MAX_WORKERS`]; by default one per CPU the process may
/// use.
fn workers(raw: Option<i64>) -> Result<usize, ConfigError> {
    let Some(n) = raw else {
        return Ok(std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(defaults::MAX_WORKERS));
    };
    usize::try_from(n)
        .ok()
        .filter(|n| (1..=defaults::MAX_WORKERS).contains(n))
        .ok_or_else(|| {
            invalid(
                "server.workers",
                &n.to_string(),
                &format!(
                    "must be a whole number from 1 to {} (omit it for one per CPU)",
                    defaults::MAX_WORKERS
                ),
            )
        })
}

/// A TLS file problem as a config error: the key, the file, the problem.
pub(super) fn from_tls(e: tls::TlsError) -> ConfigError {
    invalid(&e.key, &quote(&e.path), &e.problem)
}

pub(super) fn socket_addr(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
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

pub(super) fn opt_duration(
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
        max_headers: count(
            "limits.max_headers",
            l.max_headers,
            defaults::MAX_HEADERS as u64,
            1..=10_000,
        )? as usize,
        max_connections: count(
            "limits.max_connections",
            l.max_connections,
            defaults::MAX_CONNECTIONS as u64,
            0..=10_000_000,
        )? as usize,
        max_requests_per_connection: count(
            "limits.max_requests_per_connection",
            l.max_requests_per_connection,
            defaults::MAX_REQUESTS_PER_CONNECTION,
            0..=u64::from(u32::MAX),
        )?,
        keepalive_timeout: opt_duration(
            "limits.keepalive_timeout",
            l.keepalive_timeout.as_deref(),
            defaults::KEEPALIVE_TIMEOUT,
        )?,
        send_timeout: opt_duration(
            "limits.send_timeout",
            l.send_timeout.as_deref(),
            defaults::SEND_TIMEOUT,
        )?,
        send_buffer: l
            .send_buffer
            .as_ref()
            .map(|v| send_buffer("limits.send_buffer", v))
            .transpose()?,
        unsent_buffer: unsent_buffer("limits.unsent_buffer", l.unsent_buffer.as_ref())?,
        h2: H2Limits {
            max_concurrent_streams: count(
                "limits.h2_max_concurrent_streams",
                l.h2_max_concurrent_streams,
                u64::from(defaults::H2_MAX_CONCURRENT_STREAMS),
                1..=10_000,
            )? as u32,
            max_pending_resets: count(
                "limits.h2_max_pending_resets",
                l.h2_max_pending_resets,
                defaults::H2_MAX_PENDING_RESETS as u64,
                1..=10_000,
            )? as usize,
            stream_window: window(
                "limits.h2_stream_window",
                l.h2_stream_window.as_ref(),
                defaults::H2_STREAM_WINDOW,
            )?,
            connection_window: window(
                "limits.h2_connection_window",
                l.h2_connection_window.as_ref(),
                defaults::H2_CONNECTION_WINDOW,
            )?,
            send_buffer: h2_send_buffer("limits.h2_send_buffer", l.h2_send_buffer.as_ref())?,
        },
    })
}

/// A whole number in `range`, or `default` when absent.
fn count(
    key: &str,
    value: Option<i64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let Some(n) = value else { return Ok(default) };
    u64::try_from(n)
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            invalid(
                key,
                &n.to_string(),
                &format!(
                    "must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )
        })
}

/// A client socket's send buffer size: 4 KiB to 64 MiB.
fn send_buffer(key: &str, value: &RawSize) -> Result<usize, ConfigError> {
    let bytes = size(key, value)?;
    usize::try_from(bytes)
        .ok()
        .filter(|n| (4096..=64 * 1024 * 1024).contains(n))
        .ok_or_else(|| {
            invalid(
                key,
                &bytes.to_string(),
                "must be between 4096 bytes (4 KiB) and 64 MiB",
            )
        })
}

/// TCP_NOTSENT_LOWAT of client sockets: 0 (the kernel's setting) or 4 KiB to 64 MiB.
fn unsent_buffer(key: &str, value: Option<&RawSize>) -> Result<Option<u32>, ConfigError> {
    const RULE: &str =
        "must be 0 (the kernel's net.ipv4.tcp_notsent_lowat) or between 4096 bytes (4 KiB) and 64 MiB";
    let Some(value) = value else {
        return Ok(Some(defaults::UNSENT_BUFFER));
    };
    let (bytes, shown) = match value {
        RawSize::Bytes(n) => (u64::try_from(*n).ok(), n.to_string()),
        RawSize::Text(text) => (
            bytesize::ByteSize::from_str(text).ok().map(|b| b.as_u64()),
            quote(text),
        ),
    };
    match bytes {
        Some(0) => Ok(None),
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| (4096..=64 * 1024 * 1024).contains(n))
            .map(Some)
            .ok_or_else(|| invalid(key, &n.to_string(), RULE)),
        None => Err(invalid(key, &shown, RULE)),
    }
}

/// What an HTTP/2 stream may queue for its client: 16 KiB (one frame at the protocol's default
/// size) to 16 MiB.
fn h2_send_buffer(key: &str, value: Option<&RawSize>) -> Result<usize, ConfigError> {
    let Some(value) = value else {
        return Ok(defaults::H2_SEND_BUFFER);
    };
    let bytes = size(key, value)?;
    usize::try_from(bytes)
        .ok()
        .filter(|n| (16 * 1024..=16 * 1024 * 1024).contains(n))
        .ok_or_else(|| {
            invalid(
                key,
                &bytes.to_string(),
                "must be between 16 KiB (16384) and 16 MiB",
            )
        })
}

/// An HTTP/2 flow-control window: 64 KiB (the protocol's initial window) to 16 MiB.
fn window(key: &str, value: Option<&RawSize>, default: u32) -> Result<u32, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    let bytes = size(key, value)?;
    u32::try_from(bytes)
        .ok()
        .filter(|n| (65_535..=16 * 1024 * 1024).contains(n))
        .ok_or_else(|| {
            invalid(
                key,
                &bytes.to_string(),
                "must be between 65535 bytes (64 KiB) and 16 MiB",
            )
        })
}

/// Timeouts at `prefix`; missing ones come from `base` (the global section) or the defaults.
pub(super) fn timeouts(
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
        // No endpoint may serve both classes: that would cross the boundary by the back door.
        let shared = a
            .endpoints
            .iter()
            .find_map(|ea| b.endpoints.iter().find(|eb| eb.url == ea.url));
        if let Some(ep) = shared {
            return Err(invalid(
                "routing.stateful",
                &quote(&raw.routing.stateful),
                &format!(
                    "upstreams.{} and upstreams.{} have the same url {}; stateless and stateful traffic must reach different endpoints",
                    a.name, b.name, ep.url
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
