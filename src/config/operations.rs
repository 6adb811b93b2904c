//! Operating settings (issue #6): `server.drain_timeout`, `[reload]`, `[audit]`, `[shadow]`,
//! and the fingerprints a reload compares (the file's SHA-256, each upstream's).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::raw::{RawAudit, RawReload, RawSize, RawTimeouts, RawUpstream};
use super::validate::{invalid, opt_duration, quote, Lookup};
use super::{defaults, env, ConfigError};

/// `[reload]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reload {
    /// Poll the config file and reload when its content changes.
    pub watch: bool,
    /// How often the file is polled.
    pub watch_interval: Duration,
}

/// `[audit]`: the hash-chained, append-only audit trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audit {
    pub path: PathBuf,
    /// Rotate when the current file would pass this size, in bytes.
    pub max_file_bytes: u64,
    /// Rotated files kept besides the current one; 0 keeps all.
    pub max_files: usize,
    /// Records waiting for the writer, at most.
    pub queue: usize,
    pub on_full: AuditOnFull,
    /// Keys the chain (HMAC-SHA256) so that it cannot be recomputed without the key.
    pub key: Option<AuditKey>,
}

/// What a request does when the audit queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditOnFull {
    /// Wait for room: nothing is lost (the default).
    Block,
    /// Go on without a record, counted in `switchyard_audit_dropped_total`.
    Drop,
}

/// The audit chain's HMAC key: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AuditKey(pub Vec<u8>);

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The SHA-256 of some bytes, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// 64 hex digits as the 32 bytes of a SHA-256 digest.
pub fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

pub(super) fn drain_timeout(value: Option<&str>) -> Result<Duration, ConfigError> {
    opt_duration("server.drain_timeout", value, defaults::DRAIN_TIMEOUT)
}

pub(super) fn reload(raw: &RawReload) -> Result<Reload, ConfigError> {
    let watch_interval = opt_duration(
        "reload.watch_interval",
        raw.watch_interval.as_deref(),
        defaults::RELOAD_WATCH_INTERVAL,
    )?;
    if watch_interval < defaults::MIN_RELOAD_WATCH_INTERVAL {
        return Err(invalid(
            "reload.watch_interval",
            &quote(raw.watch_interval.as_deref().unwrap_or_default()),
            "must be at least 100ms",
        ));
    }
    Ok(Reload {
        watch: raw.watch.unwrap_or(false),
        watch_interval,
    })
}

pub(super) fn audit(
    raw: Option<&RawAudit>,
    lookup: Lookup<'_>,
) -> Result<Option<Audit>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.path.trim().is_empty() {
        return Err(invalid(
            "audit.path",
            &quote(&raw.path),
            "must name the audit file, such as \"/var/log/switchyard/audit.jsonl\"",
        ));
    }
    let max_file_bytes = match &raw.max_file_bytes {
        None => defaults::AUDIT_MAX_FILE_BYTES,
        Some(size) => {
            let bytes = match size {
                RawSize::Bytes(n) => u64::try_from(*n).ok(),
                RawSize::Text(text) => bytesize::ByteSize::from_str(text).ok().map(|b| b.as_u64()),
            };
            let shown = match size {
                RawSize::Bytes(n) => n.to_string(),
                RawSize::Text(text) => quote(text),
            };
            bytes
                .filter(|n| *n >= defaults::AUDIT_MIN_FILE_BYTES)
                .ok_or_else(|| {
                    invalid(
                        "audit.max_file_bytes",
                        &shown,
                        "must be a size of at least 64 KiB, such as \"100 MiB\"",
                    )
                })?
        }
    };
    let max_files = match raw.max_files {
        None => 0,
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| *n <= 100_000)
            .ok_or_else(|| {
                invalid(
                    "audit.max_files",
                    &n.to_string(),
                    "must be from 0 (keep every rotated file) to 100000",
                )
            })?,
    };
    let queue = match raw.queue {
        None => defaults::AUDIT_QUEUE,
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| (1..=10_000_000).contains(n))
            .ok_or_else(|| {
                invalid(
                    "audit.queue",
                    &n.to_string(),
                    "must be from 1 to 10000000 records",
                )
            })?,
    };
    let on_full = match raw.on_full.as_deref() {
        None | Some("block") => AuditOnFull::Block,
        Some("drop") => AuditOnFull::Drop,
        Some(other) => {
            return Err(invalid(
                "audit.on_full",
                &quote(other),
                "must be \"block\" (wait, lose nothing) or \"drop\" (count and go on)",
            ))
        }
    };
    let key = match &raw.key {
        None => None,
        Some(text) => {
            let key = env::expand("audit.key", text, lookup)?;
            if key.len() < 16 {
                // Never echo the key itself.
                return Err(invalid(
                    "audit.key",
                    "(secret)",
                    "must be at least 16 bytes; use a random secret such as `openssl rand -hex 32`",
                ));
            }
            Some(AuditKey(key.into_bytes()))
        }
    };
    Ok(Some(Audit {
        path: PathBuf::from(&raw.path),
        max_file_bytes,
        max_files,
        queue,
        on_full,
        key,
    }))
}

/// What identifies an upstream's client across reloads: its section as written, the global
/// `[timeouts]` it inherits, and the content of the certificate files it reads. A reload
/// keeps the running client (its connections, health and ejections) when this is unchanged.
pub(super) fn upstream_fingerprint(raw: &RawUpstream, global: &RawTimeouts) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(format!("{raw:?}\n{global:?}\n").as_bytes());
    for file in [&raw.ca, &raw.client_cert, &raw.client_key]
        .into_iter()
        .flatten()
    {
        match std::fs::read(file) {
            Ok(bytes) => hash.update(&bytes),
            // Unreadable files fail validation anyway; hash the error so it differs.
            Err(e) => hash.update(e.to_string().as_bytes()),
        }
    }
    hash.finalize().into()
}

pub(super) fn clients(
    raw: &[super::raw::RawClient],
    upstreams: &[super::Upstream],
) -> Result<Vec<super::Client>, ConfigError> {
    let mut out: Vec<super::Client> = Vec::with_capacity(raw.len());
    for (i, c) in raw.iter().enumerate() {
        let key = |k: &str| format!("clients[{i}].{k}");
        let name_ok = !c.name.is_empty()
            && c.name.len() <= 64
            && c.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            && c.name != "unknown";
        if !name_ok {
            return Err(invalid(
                &key("name"),
                &quote(&c.name),
                "a client name is 1-64 lowercase letters, digits, '_' or '-' (and not \"unknown\"); it becomes a metric label",
            ));
        }
        if out.iter().any(|o| o.name == c.name) {
            return Err(invalid(
                &key("name"),
                &quote(&c.name),
                "is already used by another client",
            ));
        }
        let digest = |k: &str, v: &Option<String>| -> Result<Option<[u8; 32]>, ConfigError> {
            v.as_deref()
                .map(|text| {
                    parse_sha256(text).ok_or_else(|| {
                        invalid(
                            &key(k),
                            &quote(text),
                            "must be 64 hex digits: the SHA-256 of the secret, e.g. `printf %s \"$KEY\" | sha256sum`",
                        )
                    })
                })
                .transpose()
        };
        let api_key_sha256 = digest("api_key_sha256", &c.api_key_sha256)?;
        let cert_sha256 = digest("cert_sha256", &c.cert_sha256)?;
        if api_key_sha256.is_none() && cert_sha256.is_none() {
            return Err(invalid(
                &key("name"),
                &quote(&c.name),
                "set api_key_sha256 or cert_sha256 (or both): how this client proves who it is",
            ));
        }
        for (k, d) in [
            ("api_key_sha256", api_key_sha256),
            ("cert_sha256", cert_sha256),
        ] {
            let taken = out
                .iter()
                .any(|o| d.is_some() && (o.api_key_sha256 == d || o.cert_sha256 == d));
            if taken {
                return Err(invalid(
                    &key(k),
                    "(digest)",
                    "is already another client's: each secret names one client",
                ));
            }
        }
        let rate = match (c.rate_per_second, c.burst) {
            (None, None) => None,
            (Some(per_second), burst) => {
                if !(per_second.is_finite() && per_second > 0.0 && per_second <= 1_000_000.0) {
                    return Err(invalid(
                        &key("rate_per_second"),
                        &per_second.to_string(),
                        "must be a number of requests per second above 0, at most 1000000",
                    ));
                }
                let burst = match burst {
                    None => (per_second.ceil() as u32).max(1),
                    Some(b) => u32::try_from(b)
                        .ok()
                        .filter(|b| (1..=1_000_000).contains(b))
                        .ok_or_else(|| {
                            invalid(
                                &key("burst"),
                                &b.to_string(),
                                "must be a whole number of requests from 1 to 1000000",
                            )
                        })?,
                };
                Some(super::Rate { per_second, burst })
            }
            (None, Some(b)) => {
                return Err(invalid(
                    &key("burst"),
                    &b.to_string(),
                    "applies with rate_per_second",
                ))
            }
        };
        out.push(super::Client {
            name: c.name.clone(),
            api_key_sha256,
            cert_sha256,
            rate,
        });
    }
    // A gateway API key arrives in a credential header; forwarding client credentials would
    // hand it to a provider.
    if out.iter().any(|c| c.api_key_sha256.is_some()) {
        if let Some(u) = upstreams.iter().find(|u| u.forward_client_credentials) {
            return Err(invalid(
                &format!("upstreams.{}.forward_client_credentials", u.name),
                "true",
                "clients authenticate with gateway API keys ([[clients]] api_key_sha256), which must never reach a provider: give this upstream its own credentials (api_key, bearer_token, auth) or set forward_client_credentials = false",
            ));
        }
    }
    Ok(out)
}
