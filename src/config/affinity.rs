//! `[affinity]` (where learned id -> endpoint entries live, session headers, what happens when
//! the endpoint holding state is down) and `[accounting]` (token usage).

use std::time::Duration;

use http::HeaderName;

use super::raw::{RawAccounting, RawAffinity};
use super::validate::{invalid, quote, Lookup};
use super::{defaults, env, Accounting, Affinity, AffinityStore, ConfigError, OnEndpointDown};

/// Longest accepted `affinity.ttl`: a year.
const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Bounds of `affinity.capacity` and `affinity.redis_local_capacity`.
const MAX_CAPACITY: i64 = 100_000_000;

pub(super) fn affinity(
    raw: Option<&RawAffinity>,
    lookup: Lookup<'_>,
) -> Result<Affinity, ConfigError> {
    let default = RawAffinity::default();
    let raw = raw.unwrap_or(&default);
    let capacity = |k: &str, value: Option<i64>| -> Result<u64, ConfigError> {
        match value {
            None => Ok(defaults::AFFINITY_CAPACITY),
            Some(n) if (1..=MAX_CAPACITY).contains(&n) => Ok(n as u64),
            Some(n) => Err(invalid(
                &format!("affinity.{k}"),
                &n.to_string(),
                &format!("must be between 1 and {MAX_CAPACITY} entries"),
            )),
        }
    };
    let redis_only = [
        ("redis_url", raw.redis_url.is_some()),
        ("redis_key_prefix", raw.redis_key_prefix.is_some()),
        ("redis_timeout", raw.redis_timeout.is_some()),
        ("redis_local_capacity", raw.redis_local_capacity.is_some()),
    ];
    let store = match raw.store.as_deref() {
        None | Some("memory") => {
            if let Some((k, _)) = redis_only.iter().find(|(_, set)| *set) {
                return Err(invalid(
                    &format!("affinity.{k}"),
                    "(set)",
                    "applies to store = \"redis\"",
                ));
            }
            AffinityStore::Memory {
                capacity: capacity("capacity", raw.capacity)?,
            }
        }
        Some("redis") => {
            if raw.capacity.is_some() {
                return Err(invalid(
                    "affinity.capacity",
                    "(set)",
                    "applies to store = \"memory\"; the local cache in front of Redis is redis_local_capacity",
                ));
            }
            let Some(url) = &raw.redis_url else {
                return Err(invalid(
                    "affinity.redis_url",
                    "(missing)",
                    "store = \"redis\" needs the server's URL, such as \"redis://127.0.0.1:6379/0\" or \"${REDIS_URL}\"",
                ));
            };
            let text = env::expand("affinity.redis_url", url, lookup)?;
            let scheme_ok = [
                "redis://",
                "rediss://",
                "redis+unix://",
                "unix://",
                "valkey://",
            ]
            .iter()
            .any(|s| text.starts_with(s));
            if !scheme_ok {
                return Err(invalid(
                    "affinity.redis_url",
                    &quote(url),
                    "must be a redis://, rediss://, redis+unix:// or unix:// URL",
                ));
            }
            let key_prefix = raw
                .redis_key_prefix
                .clone()
                .unwrap_or_else(|| defaults::REDIS_KEY_PREFIX.to_owned());
            if key_prefix
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            {
                return Err(invalid(
                    "affinity.redis_key_prefix",
                    &quote(&key_prefix),
                    "must not contain spaces or control characters",
                ));
            }
            let timeout = match raw.redis_timeout.as_deref() {
                None => defaults::REDIS_TIMEOUT,
                Some(t) => short_duration("affinity.redis_timeout", t)?,
            };
            AffinityStore::Redis {
                url: text,
                key_prefix,
                timeout,
                local_capacity: capacity("redis_local_capacity", raw.redis_local_capacity)?,
            }
        }
        Some(other) => {
            return Err(invalid(
                "affinity.store",
                &quote(other),
                "must be \"memory\" or \"redis\"",
            ))
        }
    };
    let ttl = match raw.ttl.as_deref() {
        None => defaults::AFFINITY_TTL,
        Some(t) => humantime::parse_duration(t)
            .ok()
            .filter(|d| !d.is_zero() && *d <= MAX_TTL)
            .ok_or_else(|| {
                invalid(
                    "affinity.ttl",
                    &quote(t),
                    "must be a positive duration of at most a year, such as \"30d\" or \"12h\"",
                )
            })?,
    };
    let on_endpoint_down = match raw.on_endpoint_down.as_deref() {
        None | Some("fail") => OnEndpointDown::Fail,
        Some("rebalance") => OnEndpointDown::Rebalance,
        Some(other) => {
            return Err(invalid(
                "affinity.on_endpoint_down",
                &quote(other),
                "must be \"fail\" (answer 503: the state is on that endpoint) or \"rebalance\"",
            ))
        }
    };
    let mut session_headers: Vec<HeaderName> = defaults::SESSION_HEADERS
        .iter()
        .map(|h| HeaderName::from_static(h))
        .collect();
    for (i, name) in raw.session_headers.iter().enumerate() {
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            invalid(
                &format!("affinity.session_headers[{i}]"),
                &quote(name),
                "is not a valid header name",
            )
        })?;
        if !session_headers.contains(&header) {
            session_headers.push(header);
        }
    }
    Ok(Affinity {
        store,
        ttl,
        on_endpoint_down,
        session_headers,
    })
}

/// A store timeout: positive and at most 10 s (it is spent on the request path).
fn short_duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value)
        .ok()
        .filter(|d| !d.is_zero() && *d <= Duration::from_secs(10))
        .ok_or_else(|| {
            invalid(
                key,
                &quote(value),
                "must be a positive duration of at most 10s, such as \"100ms\"",
            )
        })
}

pub(super) fn accounting(raw: &RawAccounting) -> Accounting {
    Accounting {
        tokens: raw.tokens.unwrap_or(true),
        inject_include_usage: raw.inject_include_usage.unwrap_or(false),
    }
}
