//! `[upstreams.NAME]`: URL, kind, credentials, model maps and TLS, validated into `Upstream`.
//!
//! Which keys a kind accepts is decided here, once: an `api_version` on a Bedrock upstream or
//! a `region` on an Azure one is an error naming the key, never silently ignored.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use http::uri::{Authority, Scheme};
use http::{HeaderName, HeaderValue, Uri};

use super::pool;
use super::raw::RawUpstream;
use super::validate::{from_tls, invalid, opt_duration, quote, timeouts, Lookup};
use super::{
    defaults, env, AzureClassic, ConfigError, Endpoint, ModelMap, SecretValue, SigV4Settings,
    Timeouts, Upstream, UpstreamAuth, UpstreamKind, UpstreamUrl,
};
use crate::tls;

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

pub(super) fn upstream(
    name: &str,
    raw: &RawUpstream,
    global: Timeouts,
    lookup: Lookup<'_>,
) -> Result<Upstream, ConfigError> {
    let prefix = format!("upstreams.{name}");
    let key = |k: &str| format!("{prefix}.{k}");
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
    let kind = kind(&key("kind"), raw.kind.as_deref())?;
    let specs = pool::endpoints(&prefix, raw, lookup, upstream_url)?;
    let mut endpoints = Vec::with_capacity(specs.len());
    for spec in specs {
        endpoints.push(Endpoint {
            // SigV4 signs for the region of each endpoint's own host.
            auth: auth(&prefix, kind, raw, &spec.url, lookup)?,
            name: spec.name,
            url: spec.url,
            weight: spec.weight,
        });
    }
    let (url, auth) = match endpoints.first() {
        Some(first) => (first.url.clone(), first.auth.clone()),
        None => {
            return Err(invalid(
                &key("endpoints"),
                "[]",
                "list at least one endpoint",
            ))
        }
    };
    let mut azure = None;
    for (i, ep) in endpoints.iter().enumerate() {
        let url_key = match raw.endpoints {
            Some(_) => key(&format!("endpoints[{i}].url")),
            None => key("url"),
        };
        azure = azure_classic(&prefix, &url_key, kind, raw, &ep.url)?;
    }

    let set_headers = set_headers(&prefix, &raw.set_headers, lookup)?;
    let sets_credentials = set_headers
        .iter()
        .find(|(n, _)| crate::upstream::CREDENTIAL_HEADERS.contains(&n.as_str()));
    if let (Some((header, _)), Some(source)) = (sets_credentials, auth_source(raw)) {
        return Err(invalid(
            &key(&format!("set_headers.{header}")),
            &quote(header.as_str()),
            &format!("conflicts with {source}: the gateway sets this upstream's credentials"),
        ));
    }
    if matches!(auth, UpstreamAuth::SigV4(_)) {
        if let Some((header, _)) = set_headers
            .iter()
            .find(|(n, _)| n == http::header::AUTHORIZATION || n.as_str().starts_with("x-amz-"))
        {
            return Err(invalid(
                &key(&format!("set_headers.{header}")),
                &quote(header.as_str()),
                "is written by SigV4 signing and cannot be set",
            ));
        }
    }
    let forward_client_credentials = match raw.forward_client_credentials {
        Some(true) if kind == UpstreamKind::Bedrock => {
            return Err(invalid(
                &key("forward_client_credentials"),
                "true",
                "a bedrock upstream never receives the client's credentials",
            ))
        }
        Some(true) if !matches!(auth, UpstreamAuth::None) => {
            return Err(invalid(
                &key("forward_client_credentials"),
                "true",
                "cannot forward the client's credentials to an upstream that gets its own",
            ))
        }
        Some(forward) => forward,
        None => {
            sets_credentials.is_none()
                && matches!(auth, UpstreamAuth::None)
                && kind != UpstreamKind::Bedrock
        }
    };
    let pool_max_idle_per_host = match raw.pool_max_idle_per_host {
        None => defaults::POOL_MAX_IDLE_PER_HOST,
        Some(n) => usize::try_from(n).map_err(|_| {
            invalid(
                &key("pool_max_idle_per_host"),
                &n.to_string(),
                "must be zero or a positive number of connections",
            )
        })?,
    };
    let http2_max_streams = match raw.http2_max_streams {
        None => defaults::HTTP2_MAX_STREAMS,
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| (1..=defaults::HTTP2_MAX_STREAMS_LIMIT).contains(n))
            .ok_or_else(|| {
                invalid(
                    &key("http2_max_streams"),
                    &n.to_string(),
                    &format!(
                        "must be between 1 and {} streams (at most the upstream's SETTINGS_MAX_CONCURRENT_STREAMS)",
                        defaults::HTTP2_MAX_STREAMS_LIMIT
                    ),
                )
            })?,
    };
    let (tls, danger_accept_invalid_certs) = upstream_tls(&prefix, raw, &url)?;
    Ok(Upstream {
        name: name.to_owned(),
        kind,
        url: url.clone(),
        endpoints,
        balance: pool::balance(&prefix, raw)?,
        retries: pool::retries(&prefix, raw)?,
        health: pool::health(&prefix, raw.health.as_ref())?,
        tls,
        danger_accept_invalid_certs,
        auth,
        models: model_map(&key("models"), &raw.models, ModelValue::Model)?,
        azure_classic: azure,
        http2: raw.http2.unwrap_or(false),
        http2_max_streams,
        set_headers,
        forward_client_credentials,
        timeouts: timeouts(&key("timeouts"), &raw.timeouts, Some(global))?,
        pool_idle_timeout: opt_duration(
            &key("pool_idle_timeout"),
            raw.pool_idle_timeout.as_deref(),
            defaults::POOL_IDLE_TIMEOUT,
        )?,
        pool_max_idle_per_host,
        // Set by `validate` from the section as written.
        fingerprint: [0; 32],
    })
}

fn kind(key: &str, value: Option<&str>) -> Result<UpstreamKind, ConfigError> {
    match value {
        None | Some("openai") => Ok(UpstreamKind::OpenAi),
        Some("azure_openai") => Ok(UpstreamKind::AzureOpenAi),
        Some("bedrock") => Ok(UpstreamKind::Bedrock),
        Some(other) => Err(invalid(
            key,
            &quote(other),
            "must be one of \"openai\", \"azure_openai\", \"bedrock\"",
        )),
    }
}

fn set_headers(
    prefix: &str,
    raw: &BTreeMap<String, String>,
    lookup: Lookup<'_>,
) -> Result<Vec<(HeaderName, SecretValue)>, ConfigError> {
    let mut out = Vec::with_capacity(raw.len());
    for (header, value) in raw {
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
        out.push((name, secret(&key, &expanded)?));
    }
    Ok(out)
}

/// A secret as a sensitive header value; errors never show it.
fn secret(key: &str, value: &str) -> Result<SecretValue, ConfigError> {
    let mut value = HeaderValue::from_str(value).map_err(|_| {
        invalid(
            key,
            "<redacted>",
            "is not a valid header value (visible ASCII, spaces and tabs only)",
        )
    })?;
    value.set_sensitive(true);
    Ok(SecretValue(value))
}

fn bearer(key: &str, token: &str) -> Result<SecretValue, ConfigError> {
    if token.trim().is_empty() {
        return Err(invalid(key, "<redacted>", "must not be empty"));
    }
    secret(key, &format!("Bearer {}", token.trim()))
}

/// The key that gives this upstream its credentials, if any (for conflict messages).
fn auth_source(raw: &RawUpstream) -> Option<&'static str> {
    if raw.api_key.is_some() {
        Some("api_key")
    } else if raw.bearer_token.is_some() {
        Some("bearer_token")
    } else if raw.bearer_token_file.is_some() {
        Some("bearer_token_file")
    } else if raw.auth.is_some() {
        Some("auth")
    } else {
        None
    }
}

fn auth(
    prefix: &str,
    kind: UpstreamKind,
    raw: &RawUpstream,
    url: &UpstreamUrl,
    lookup: Lookup<'_>,
) -> Result<UpstreamAuth, ConfigError> {
    let key = |k: &str| format!("{prefix}.{k}");
    let not_for = |k: &str, value: &str, hint: &str| {
        invalid(
            &key(k),
            &quote(value),
            &format!("is not a setting of kind = \"{}\"{hint}", kind.as_str()),
        )
    };
    if kind != UpstreamKind::Bedrock {
        for (k, v) in [
            ("auth", &raw.auth),
            ("region", &raw.region),
            ("service", &raw.service),
            ("profile", &raw.profile),
        ] {
            if let Some(v) = v {
                return Err(not_for(k, v, " (it belongs to kind = \"bedrock\")"));
            }
        }
    }
    match kind {
        UpstreamKind::OpenAi | UpstreamKind::AzureOpenAi => {
            let given: Vec<&str> = [
                ("api_key", raw.api_key.is_some()),
                ("bearer_token", raw.bearer_token.is_some()),
                ("bearer_token_file", raw.bearer_token_file.is_some()),
            ]
            .into_iter()
            .filter_map(|(k, set)| set.then_some(k))
            .collect();
            if let [_, second, ..] = given.as_slice() {
                return Err(invalid(
                    &key(second),
                    "<redacted>",
                    &format!("set only one of {}", given.join(", ")),
                ));
            }
            if let Some(api_key) = &raw.api_key {
                let k = key("api_key");
                let value = env::expand(&k, api_key, lookup)?;
                if value.trim().is_empty() {
                    return Err(invalid(&k, "<redacted>", "must not be empty"));
                }
                return Ok(match kind {
                    UpstreamKind::AzureOpenAi => UpstreamAuth::ApiKeyHeader(secret(&k, &value)?),
                    _ => UpstreamAuth::Bearer(bearer(&k, &value)?),
                });
            }
            if let Some(token) = &raw.bearer_token {
                let k = key("bearer_token");
                let value = env::expand(&k, token, lookup)?;
                return Ok(UpstreamAuth::Bearer(bearer(&k, &value)?));
            }
            if let Some(file) = &raw.bearer_token_file {
                if file.trim().is_empty() {
                    return Err(invalid(
                        &key("bearer_token_file"),
                        &quote(file),
                        "must be the path of a file holding the token",
                    ));
                }
                return Ok(UpstreamAuth::BearerFile(PathBuf::from(file)));
            }
            Ok(UpstreamAuth::None)
        }
        UpstreamKind::Bedrock => bedrock_auth(prefix, raw, url, lookup),
    }
}

fn bedrock_auth(
    prefix: &str,
    raw: &RawUpstream,
    url: &UpstreamUrl,
    lookup: Lookup<'_>,
) -> Result<UpstreamAuth, ConfigError> {
    let key = |k: &str| format!("{prefix}.{k}");
    for (k, v) in [
        ("bearer_token", &raw.bearer_token),
        ("bearer_token_file", &raw.bearer_token_file),
    ] {
        if v.is_some() {
            return Err(invalid(
                &key(k),
                "<redacted>",
                "is not a setting of a bedrock upstream (use auth = \"api_key\" with api_key)",
            ));
        }
    }
    match raw.auth.as_deref() {
        Some("api_key") => {
            for (k, v) in [
                ("region", &raw.region),
                ("service", &raw.service),
                ("profile", &raw.profile),
            ] {
                if let Some(v) = v {
                    return Err(invalid(
                        &key(k),
                        &quote(v),
                        "only applies with auth = \"sigv4\"",
                    ));
                }
            }
            let k = key("api_key");
            let token = match &raw.api_key {
                Some(text) => env::expand(&k, text, lookup)?,
                None => lookup(defaults::BEDROCK_API_KEY_ENV).ok_or_else(|| {
                    ConfigError::MissingEnv {
                        key: k.clone(),
                        var: defaults::BEDROCK_API_KEY_ENV.to_owned(),
                    }
                })?,
            };
            Ok(UpstreamAuth::Bearer(bearer(&k, &token)?))
        }
        Some("sigv4") => {
            if raw.api_key.is_some() {
                return Err(invalid(
                    &key("api_key"),
                    "<redacted>",
                    "only applies with auth = \"api_key\"; SigV4 reads AWS credentials from the environment or the shared credentials file",
                ));
            }
            let derived = bedrock_endpoint(url.authority.host());
            let region = match (&raw.region, &derived) {
                (Some(r), _) => r.clone(),
                (None, Some((_, region))) => region.clone(),
                (None, None) => {
                    return Err(invalid(
                        &key("region"),
                        "(missing)",
                        &format!(
                        "cannot be derived from the host {}; set it, e.g. region = \"us-east-1\"",
                        url.authority.host()
                    ),
                    ))
                }
            };
            let region_ok = !region.is_empty()
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !region_ok {
                return Err(invalid(
                    &key("region"),
                    &quote(&region),
                    "must be an AWS region such as \"us-east-1\"",
                ));
            }
            let service = match (&raw.service, &derived) {
                (Some(s), _) => s.clone(),
                (None, Some((service, _))) => (*service).to_owned(),
                (None, None) => {
                    return Err(invalid(
                        &key("service"),
                        "(missing)",
                        &format!(
                            "cannot be derived from the host {}; set the signing name: \"bedrock\", \"bedrock-mantle\" or \"bedrock-agentcore\"",
                            url.authority.host()
                        ),
                    ))
                }
            };
            let service_ok = !service.is_empty()
                && service
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !service_ok {
                return Err(invalid(
                    &key("service"),
                    &quote(&service),
                    "must be a SigV4 signing name such as \"bedrock\", \"bedrock-mantle\" or \"bedrock-agentcore\"",
                ));
            }
            if raw.profile.as_deref().is_some_and(|p| p.trim().is_empty()) {
                return Err(invalid(&key("profile"), "\"\"", "must not be empty"));
            }
            Ok(UpstreamAuth::SigV4(SigV4Settings {
                region,
                service,
                profile: raw.profile.clone(),
            }))
        }
        Some(other) => Err(invalid(
            &key("auth"),
            &quote(other),
            "must be \"api_key\" (a Bedrock API key sent as a bearer token) or \"sigv4\"",
        )),
        None => Err(invalid(
            &key("auth"),
            "(missing)",
            "a bedrock upstream needs auth = \"api_key\" or auth = \"sigv4\"",
        )),
    }
}

/// The SigV4 signing name and region of a Bedrock endpoint host, such as
/// `bedrock-runtime.us-east-1.amazonaws.com` or `bedrock-mantle.eu-west-1.api.aws`
/// (VPC endpoint names included). `None` for hosts that are not AWS endpoints.
pub fn bedrock_endpoint(host: &str) -> Option<(&'static str, String)> {
    let host = host.to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let aws = host.ends_with(".amazonaws.com")
        || host.ends_with(".amazonaws.com.cn")
        || host.ends_with(".api.aws");
    if !aws {
        return None;
    }
    let at = labels.iter().position(|l| l.starts_with("bedrock"))?;
    let service = match labels.get(at)? {
        l if l.starts_with("bedrock-mantle") => "bedrock-mantle",
        l if l.starts_with("bedrock-agentcore") => "bedrock-agentcore",
        _ => "bedrock",
    };
    let region = labels.get(at + 1)?;
    let looks_like_region = region.contains('-')
        && region.bytes().last().is_some_and(|b| b.is_ascii_digit())
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    looks_like_region.then(|| (service, (*region).to_owned()))
}

#[derive(Clone, Copy)]
enum ModelValue {
    Model,
    Deployment,
}

fn model_map(
    prefix: &str,
    raw: &BTreeMap<String, String>,
    what: ModelValue,
) -> Result<ModelMap, ConfigError> {
    let mut map = HashMap::with_capacity(raw.len());
    for (from, to) in raw {
        let key = format!("{prefix}.{from:?}");
        if from.is_empty() || from.chars().any(char::is_control) {
            return Err(invalid(
                prefix,
                &quote(from),
                "a model name must be non-empty text without control characters",
            ));
        }
        let ok = match what {
            ModelValue::Model => !to.is_empty() && !to.chars().any(char::is_control),
            ModelValue::Deployment => {
                !to.is_empty()
                    && to != "."
                    && to != ".."
                    && to
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            }
        };
        if !ok {
            let rule = match what {
                ModelValue::Model => {
                    "must be the provider's model name: non-empty text without control characters"
                }
                ModelValue::Deployment => {
                    "must be an Azure deployment name: letters, digits, '-', '_' and '.'"
                }
            };
            return Err(invalid(&key, &quote(to), rule));
        }
        map.insert(from.clone(), to.clone());
    }
    Ok(ModelMap(map))
}

fn azure_classic(
    prefix: &str,
    url_key: &str,
    kind: UpstreamKind,
    raw: &RawUpstream,
    url: &UpstreamUrl,
) -> Result<Option<AzureClassic>, ConfigError> {
    let key = |k: &str| format!("{prefix}.{k}");
    if kind != UpstreamKind::AzureOpenAi {
        if let Some(v) = &raw.api_version {
            return Err(invalid(
                &key("api_version"),
                &quote(v),
                "only applies to kind = \"azure_openai\"",
            ));
        }
        if !raw.deployments.is_empty() {
            return Err(invalid(
                &key("deployments"),
                "{...}",
                "only applies to kind = \"azure_openai\" (use models to rename models)",
            ));
        }
        return Ok(None);
    }
    let Some(api_version) = &raw.api_version else {
        if !raw.deployments.is_empty() {
            return Err(invalid(
                &key("deployments"),
                "{...}",
                "the classic deployments API needs api_version, e.g. api_version = \"2024-10-21\"",
            ));
        }
        return Ok(None);
    };
    let version_ok = !api_version.is_empty()
        && api_version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !version_ok {
        return Err(invalid(
            &key("api_version"),
            &quote(api_version),
            "must be an Azure OpenAI API version such as \"2024-10-21\" or \"2025-04-01-preview\"",
        ));
    }
    if url.path.ends_with("/v1") {
        return Err(invalid(
            url_key,
            &quote(&url.to_string()),
            "with api_version (the classic deployments API) the url is the /openai base, e.g. \"https://contoso.openai.azure.com/openai\"; the v1 API needs no api_version",
        ));
    }
    Ok(Some(AzureClassic {
        api_version: api_version.clone(),
        deployments: model_map(
            &key("deployments"),
            &raw.deployments,
            ModelValue::Deployment,
        )?,
    }))
}

/// The connector's TLS config, and whether verification is off.
fn upstream_tls(
    prefix: &str,
    raw: &RawUpstream,
    url: &UpstreamUrl,
) -> Result<(std::sync::Arc<rustls::ClientConfig>, bool), ConfigError> {
    let key = |k: &str| format!("{prefix}.{k}");
    let danger = raw.danger_accept_invalid_certs.unwrap_or(false);
    if url.scheme != Scheme::HTTPS {
        let tls_keys = [
            ("ca", raw.ca.is_some()),
            ("client_cert", raw.client_cert.is_some()),
            ("client_key", raw.client_key.is_some()),
            (
                "danger_accept_invalid_certs",
                raw.danger_accept_invalid_certs.is_some(),
            ),
        ];
        if let Some((k, _)) = tls_keys.iter().find(|(_, set)| *set) {
            return Err(invalid(
                &key(k),
                "(set)",
                &format!("only applies to https:// upstreams; the url is {url}"),
            ));
        }
        let config = tls::unused_client_config(prefix).map_err(from_tls)?;
        return Ok((config, false));
    }
    if danger && raw.ca.is_some() {
        return Err(invalid(
            &key("ca"),
            &quote(raw.ca.as_deref().unwrap_or_default()),
            "has no effect with danger_accept_invalid_certs = true; remove one of them",
        ));
    }
    let client_cert = match (&raw.client_cert, &raw.client_key) {
        (Some(cert), Some(k)) => Some((Path::new(cert.as_str()), Path::new(k.as_str()))),
        (None, None) => None,
        (Some(cert), None) => {
            return Err(invalid(
                &key("client_cert"),
                &quote(cert),
                "needs client_key, the certificate's private key",
            ))
        }
        (None, Some(k)) => {
            return Err(invalid(
                &key("client_key"),
                &quote(k),
                "needs client_cert, the certificate it belongs to",
            ))
        }
    };
    let files = tls::UpstreamTlsFiles {
        prefix,
        ca: raw.ca.as_deref().map(Path::new),
        client_cert,
        danger_accept_invalid_certs: danger,
    };
    let config = tls::client_config(&files).map_err(from_tls)?;
    Ok((config, danger))
}

fn upstream_url(key: &str, text: &str, as_written: &str) -> Result<UpstreamUrl, ConfigError> {
    let bad = |rule: &str| invalid(key, &quote(as_written), rule);
    let uri = Uri::from_str(text).map_err(|_| bad("is not a valid URL"))?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or_else(|| bad("must be an absolute URL such as \"http://127.0.0.1:18081/v1\""))?;
    if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
        return Err(bad("scheme must be http or https"));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| bad("must name a host"))?;
    if authority.as_str().contains('@') {
        return Err(bad(
            "must not carry credentials; use api_key or set_headers with ${ENV_VAR} instead",
        ));
    }
    if authority.host().is_empty() {
        return Err(bad("must name a host"));
    }
    if uri.query().is_some() || text.contains('#') {
        return Err(bad("must not have a query or fragment"));
    }
    let path = uri.path().trim_end_matches('/').to_owned();
    // `https://host:443` is `https://host`: one spelling for HTTP/2's `:authority`, the
    // HTTP/1.1 `Host` and the host SigV4 signs.
    let default_port = if scheme == Scheme::HTTPS { 443 } else { 80 };
    let authority = if authority.port_u16() == Some(default_port) {
        let host = authority
            .as_str()
            .rsplit_once(':')
            .map_or(authority.as_str(), |(h, _)| h);
        Authority::from_str(host).map_err(|_| bad("must name a host"))?
    } else {
        authority
    };
    Ok(UpstreamUrl {
        scheme,
        authority,
        path,
    })
}
