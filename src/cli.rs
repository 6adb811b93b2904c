//! Commands: serve, check, explain, demo, certs dev.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::classify::Classifier;
use crate::config::{Config, ConfigError};
use crate::policy::Policy;
use crate::proxy::error::ProxyError;

/// Default config file for `serve`, `check` and `explain`.
pub const DEFAULT_CONFIG: &str = "config/switchyard.toml";

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Policy-enforcing gateway for LLM API traffic: stateless calls to one cloud, stateful calls to another, never crossing."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(ConfigArg),
    /// Validate a config file: exit 0 if it is valid, else print the error and exit 1.
    Check(ConfigArg),
    /// Classify one request and print the decision, without forwarding anything.
    Explain(ExplainArgs),
    /// Run the gateway in front of two built-in mock providers on loopback.
    Demo(DemoArgs),
    /// Generate certificates.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Check or summarise hash-chained audit logs (`[audit]`).
    #[command(subcommand)]
    Audit(crate::audit::AuditCommand),
    /// GET a plain-HTTP URL (e.g. the admin listener's /readyz): exit 0 on a 2xx answer, 1
    /// otherwise. For container health checks in images without curl.
    Probe(ProbeArgs),
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The URL, such as http://127.0.0.1:9901/readyz.
    pub url: String,
    /// Deadline for each of connect, send and receive, such as "2s".
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Write a throwaway CA, a server certificate for localhost and a client certificate
    /// (development only).
    Dev(CertsDevArgs),
}

#[derive(Debug, Args)]
pub struct CertsDevArgs {
    /// Directory to write ca.crt, ca.key, server.crt, server.key, client.crt, client.key into.
    #[arg(long, default_value = crate::certs::DEFAULT_DIR)]
    pub out: PathBuf,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Path to the TOML config file.
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[arg(long, short, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// HTTP method.
    #[arg(long, short = 'X', default_value = "POST")]
    pub method: String,
    /// Request path and query, as the client sends it (e.g. /v1/responses).
    #[arg(long, short)]
    pub path: String,
    /// A request header, `Name: value`; repeatable.
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// File holding the request body; `-` reads standard input.
    #[arg(long, short)]
    pub body: Option<PathBuf>,
    /// Print the decision as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Port of the gateway's client listener on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Port of the admin listener (/metrics) on 127.0.0.1.
    #[arg(long, default_value_t = 9901)]
    pub admin_port: u16,
}

/// Errors of the explain command.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("--method {0:?} is not an HTTP method")]
    Method(String),
    #[error("--path {0:?} must be an absolute path such as /v1/responses")]
    Path(String),
    #[error("--header {0:?} must look like 'Name: value'")]
    Header(String),
    #[error("cannot read the body from {path}: {source}")]
    Body {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Gateway(#[from] crate::gateway::GatewayError),
    #[error("cannot start a runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot build metrics: {0}")]
    Metrics(prometheus::Error),
}

/// `switchyard certs dev`: write the files, then say what was written.
pub fn certs_dev(args: &CertsDevArgs) -> Result<String, crate::certs::CertsError> {
    let certs = crate::certs::generate_dev(&args.out, args.force)?;
    Ok(crate::certs::summary(&certs))
}

/// `switchyard check`: the message to print on success.
pub fn check(path: &Path) -> Result<String, ConfigError> {
    let config = Config::load(path)?;
    let mut out = format!("{}: ok\n", path.display());
    for (class, up) in [
        ("stateless", config.routing.stateless),
        ("stateful", config.routing.stateful),
    ] {
        if let Some(u) = config.upstreams.get(up) {
            out.push_str(&format!(
                "  {class:<9} -> {} ({}, {}, {})\n",
                u.name,
                match u.endpoints.len() {
                    1 => u.url.to_string(),
                    n => format!(
                        "{} endpoints: {}",
                        n,
                        u.endpoints
                            .iter()
                            .map(|e| format!("{} = {}", e.name, e.url))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                },
                u.kind.as_str(),
                u.auth.describe()
            ));
        }
    }
    if let Some(tls) = &config.server.tls {
        out.push_str(&format!(
            "  TLS on {}{}\n",
            tls.listen,
            if tls.client_auth {
                ", client certificates required"
            } else {
                ""
            }
        ));
    }
    out.push_str(&format!(
        "  {} operator rule(s), built-in rules {}\n",
        config.classifier.rules.len(),
        if config.classifier.builtins {
            "on"
        } else {
            "off"
        }
    ));
    Ok(out)
}

/// `switchyard explain`: the text (or JSON) to print.
pub fn explain(args: &ExplainArgs) -> Result<String, ExplainError> {
    let config = Config::load(&args.config)?;
    let method = Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| ExplainError::Method(args.method.clone()))?;
    let pq: http::uri::PathAndQuery = args
        .path
        .parse()
        .ok()
        .filter(|_| args.path.starts_with('/'))
        .ok_or_else(|| ExplainError::Path(args.path.clone()))?;
    let mut headers = HeaderMap::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| ExplainError::Header(h.clone()))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| ExplainError::Header(h.clone()))?;
        let value =
            HeaderValue::from_str(value.trim()).map_err(|_| ExplainError::Header(h.clone()))?;
        headers.append(name, value);
    }
    let body = match &args.body {
        None => Vec::new(),
        Some(p) if p.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|source| ExplainError::Body {
                    path: p.clone(),
                    source,
                })?;
            buf
        }
        Some(p) => std::fs::read(p).map_err(|source| ExplainError::Body {
            path: p.clone(),
            source,
        })?,
    };
    let classifier = Classifier::new(config.classifier.clone());
    // Explain builds the clients without serving: its metrics are thrown away.
    let metrics = crate::metrics::Metrics::new(&[]).map_err(ExplainError::Metrics)?;
    let policy = Policy::new(&config, &metrics).map_err(crate::gateway::GatewayError::from)?;
    let limit = config.limits.max_body_bytes;
    let outcome = classifier.classify(&method, pq.path(), &headers, &body);
    let route = match &outcome {
        Ok(d) => d.route,
        Err(u) => u.route,
    };
    let route = classifier.route_label(route).to_owned();
    if body.len() as u64 > limit {
        return Ok(refused(
            &ProxyError::BodyTooLarge { limit },
            &route,
            args.json,
        ));
    }
    Ok(match policy.settle(outcome) {
        Ok(d) => {
            let upstream = policy.upstream_for(d.class);
            // A pool's endpoints differ in host at most: show the first.
            let endpoint = &upstream.pool().endpoints()[0];
            // The upstream's adapter: path mapping, Azure deployment, model renaming.
            let body = bytes::Bytes::from(body);
            let adapted = tokio::runtime::Builder::new_current_thread()
                .build()
                .map_err(ExplainError::Runtime)?
                .block_on(upstream.adapt(
                    endpoint,
                    &config.server.base_path,
                    &method,
                    &pq,
                    &headers,
                    Some(&body),
                ));
            let adapted = match adapted {
                Ok(adapted) => adapted,
                Err(e) => return Ok(refused(&ProxyError::Adapt(e), &route, args.json)),
            };
            if d.route == crate::classify::RouteId::OTHER {
                let same = crate::proxy::same_meaning_upstream(
                    &classifier,
                    &method,
                    &adapted.uri,
                    &headers,
                );
                if let Err(e) = same {
                    return Ok(refused(&e, &route, args.json));
                }
            }
            let target = adapted.uri;
            let renamed = adapted.body.is_some();
            if args.json {
                serde_json::json!({
                    "class": d.class.as_str(), "rule": &*d.rule, "marker": d.marker.to_string(),
                    "route": route, "upstream": upstream.name(), "forward": format!("{method} {target}"),
                    "model_renamed": renamed,
                })
                .to_string()
                    + "\n"
            } else {
                let mut out = format!(
                    "class:    {}\nrule:     {}\nmarker:   {}\nroute:    {}\nupstream: {} ({})\nforward:  {} {}\n",
                    d.class,
                    d.rule,
                    d.marker,
                    route,
                    upstream.name(),
                    pool_summary(upstream),
                    method,
                    target
                );
                if renamed {
                    out.push_str(&format!(
                        "body:     model renamed (upstreams.{}.models)\n",
                        upstream.name()
                    ));
                }
                out
            }
        }
        Err(u) => refused(&ProxyError::Unclassifiable(u), &route, args.json),
    })
}

/// The first endpoint's URL, and how many more the pool has.
fn pool_summary(upstream: &crate::upstream::UpstreamClient) -> String {
    let endpoints = upstream.pool().endpoints();
    match endpoints {
        [] => String::new(),
        [one] => one.url.to_string(),
        [first, rest @ ..] => format!("{}, and {} more endpoints", first.url, rest.len()),
    }
}

/// How `explain` shows a request the gateway would refuse without contacting any upstream.
fn refused(error: &ProxyError, route: &str, json: bool) -> String {
    if json {
        serde_json::json!({
            "refused": error.status().as_u16(), "code": error.code(),
            "message": error.to_string(), "route": route,
        })
        .to_string()
            + "\n"
    } else {
        format!(
            "refused:  {} {}\ncode:     {}\nmessage:  {}\nroute:    {}\nforward:  nothing (no upstream is contacted)\n",
            error.status().as_u16(),
            error.status().canonical_reason().unwrap_or(""),
            error.code(),
            error,
            route
        )
    }
}
