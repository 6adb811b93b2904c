//! `upstreams.NAME.{url | endpoints, balance, retries, health}`: an upstream's endpoint pool.
//!
//! An upstream is one cloud; its endpoints are regions, deployments or accounts of that cloud.
//! Nothing here can make two upstreams share an endpoint (checked in `validate.rs::routing`).

use super::raw::{RawHealth, RawUpstream};
use super::validate::{invalid, opt_duration, quote, Lookup};
use super::{defaults, env, ActiveHealth, Balance, ConfigError, Health, UpstreamUrl};

/// Most endpoints one upstream may list.
const MAX_ENDPOINTS: usize = 64;
/// Largest endpoint weight.
const MAX_WEIGHT: i64 = 100;
/// Most retries per request.
const MAX_RETRIES: i64 = 5;

/// An endpoint before credentials: name, URL, weight.
pub(super) struct EndpointSpec {
    /// The dotted key of its URL, for later errors (`upstreams.a.endpoints[1].url`).
    pub key: String,
    pub name: String,
    pub url: UpstreamUrl,
    pub weight: u32,
}

/// The endpoints of `[upstreams.NAME]`: the single `url`, or the `endpoints` list.
pub(super) fn endpoints(
    prefix: &str,
    raw: &RawUpstream,
    lookup: Lookup<'_>,
    parse_url: impl Fn(&str, &str, &str) -> Result<UpstreamUrl, ConfigError>,
) -> Result<Vec<EndpointSpec>, ConfigError> {
    let key = |k: &str| format!("{prefix}.{k}");
    let specs = match (&raw.url, &raw.endpoints) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                &key("endpoints"),
                "[...]",
                "set either url (one endpoint) or endpoints (a pool), not both",
            ))
        }
        (None, None) => {
            return Err(invalid(
                &key("url"),
                "(missing)",
                "set the upstream's url, such as \"https://contoso.openai.azure.com/openai/v1\", or an endpoints list",
            ))
        }
        (Some(url), None) => {
            let k = key("url");
            let text = env::expand(&k, url, lookup)?;
            // Errors show the URL as written: an expanded ${VAR} may hold a secret.
            let url = parse_url(&k, &text, url)?;
            vec![EndpointSpec {
                key: k,
                name: default_name(&url),
                url,
                weight: 1,
            }]
        }
        (None, Some(list)) => {
            if list.is_empty() || list.len() > MAX_ENDPOINTS {
                return Err(invalid(
                    &key("endpoints"),
                    &format!("{} entries", list.len()),
                    &format!("list between 1 and {MAX_ENDPOINTS} endpoints"),
                ));
            }
            let mut specs = Vec::with_capacity(list.len());
            for (i, ep) in list.iter().enumerate() {
                let at = format!("{prefix}.endpoints[{i}]");
                let k = format!("{at}.url");
                let text = env::expand(&k, &ep.url, lookup)?;
                let url = parse_url(&k, &text, &ep.url)?;
                let name = match &ep.name {
                    Some(name) => endpoint_name(&format!("{at}.name"), name)?,
                    None => default_name(&url),
                };
                let weight = match ep.weight {
                    None => 1,
                    Some(w) if (1..=MAX_WEIGHT).contains(&w) => w as u32,
                    Some(w) => {
                        return Err(invalid(
                            &format!("{at}.weight"),
                            &w.to_string(),
                            &format!("must be between 1 and {MAX_WEIGHT}"),
                        ))
                    }
                };
                specs.push(EndpointSpec {
                    key: k,
                    name,
                    url,
                    weight,
                });
            }
            specs
        }
    };
    for (i, spec) in specs.iter().enumerate() {
        let Some(earlier) = specs[..i].iter().find(|e| e.name == spec.name) else {
            continue;
        };
        let why = if earlier.url == spec.url {
            format!("the same url is listed twice ({})", spec.url)
        } else {
            format!(
                "endpoint names must be unique within an upstream; {} already has it (set name = \"…\")",
                earlier.key
            )
        };
        return Err(invalid(&spec.key, &quote(&spec.url.to_string()), &why));
    }
    if let Some(other) = specs.iter().find(|e| e.url.scheme != specs[0].url.scheme) {
        return Err(invalid(
            &other.key,
            &quote(&other.url.to_string()),
            &format!(
                "all endpoints of an upstream use one scheme ({} here); TLS settings apply to all of them",
                specs[0].url.scheme
            ),
        ));
    }
    Ok(specs)
}

/// An endpoint's default name: its `host[:port]`, which is unique unless a URL repeats.
fn default_name(url: &UpstreamUrl) -> String {
    url.authority.as_str().to_owned()
}

fn endpoint_name(key: &str, name: &str) -> Result<String, ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if !ok {
        return Err(invalid(
            key,
            &quote(name),
            "an endpoint name is 1-64 letters, digits, '_', '-', '.' or ':'; it becomes a metric label",
        ));
    }
    Ok(name.to_owned())
}

pub(super) fn balance(prefix: &str, raw: &RawUpstream) -> Result<Balance, ConfigError> {
    match raw.balance.as_deref() {
        None | Some("p2c") => Ok(Balance::P2c),
        Some("round_robin") => Ok(Balance::RoundRobin),
        Some(other) => Err(invalid(
            &format!("{prefix}.balance"),
            &quote(other),
            "must be \"p2c\" (power of two choices on in-flight requests) or \"round_robin\"",
        )),
    }
}

pub(super) fn retries(prefix: &str, raw: &RawUpstream) -> Result<u32, ConfigError> {
    match raw.retries {
        None => Ok(defaults::RETRIES),
        Some(n) if (0..=MAX_RETRIES).contains(&n) => Ok(n as u32),
        Some(n) => Err(invalid(
            &format!("{prefix}.retries"),
            &n.to_string(),
            &format!("must be between 0 and {MAX_RETRIES}"),
        )),
    }
}

pub(super) fn health(prefix: &str, raw: Option<&RawHealth>) -> Result<Health, ConfigError> {
    let default = RawHealth::default();
    let raw = raw.unwrap_or(&default);
    let key = |k: &str| format!("{prefix}.health.{k}");
    let count = |k: &str, value: Option<i64>, default: u32| -> Result<u32, ConfigError> {
        match value {
            None => Ok(default),
            Some(n) if (1..=100).contains(&n) => Ok(n as u32),
            Some(n) => Err(invalid(
                &key(k),
                &n.to_string(),
                "must be between 1 and 100",
            )),
        }
    };
    let active = match &raw.path {
        None => {
            for (k, set) in [
                ("interval", raw.interval.is_some()),
                ("timeout", raw.timeout.is_some()),
                ("healthy_threshold", raw.healthy_threshold.is_some()),
                ("unhealthy_threshold", raw.unhealthy_threshold.is_some()),
            ] {
                if set {
                    return Err(invalid(
                        &key(k),
                        "(set)",
                        "applies to active health checks; set health.path too, such as \"/openai/v1/models\"",
                    ));
                }
            }
            None
        }
        Some(path) => {
            let valid = path.starts_with('/')
                && !path.contains('#')
                && http::uri::PathAndQuery::try_from(path.as_str()).is_ok();
            if !valid {
                return Err(invalid(
                    &key("path"),
                    &quote(path),
                    "must be an absolute path on the endpoint's host, such as \"/openai/v1/models\"",
                ));
            }
            let interval = opt_duration(
                &key("interval"),
                raw.interval.as_deref(),
                defaults::HEALTH_INTERVAL,
            )?;
            let timeout = opt_duration(
                &key("timeout"),
                raw.timeout.as_deref(),
                defaults::HEALTH_TIMEOUT,
            )?;
            if timeout > interval {
                return Err(invalid(
                    &key("timeout"),
                    &quote(raw.timeout.as_deref().unwrap_or_default()),
                    "must not be longer than health.interval",
                ));
            }
            Some(ActiveHealth {
                path: path.clone(),
                interval,
                timeout,
                healthy_threshold: count(
                    "healthy_threshold",
                    raw.healthy_threshold,
                    defaults::HEALTHY_THRESHOLD,
                )?,
                unhealthy_threshold: count(
                    "unhealthy_threshold",
                    raw.unhealthy_threshold,
                    defaults::UNHEALTHY_THRESHOLD,
                )?,
            })
        }
    };
    Ok(Health {
        active,
        eject_after: count("eject_after", raw.eject_after, defaults::EJECT_AFTER)?,
        eject_for: opt_duration(
            &key("eject_for"),
            raw.eject_for.as_deref(),
            defaults::EJECT_FOR,
        )?,
    })
}
