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
