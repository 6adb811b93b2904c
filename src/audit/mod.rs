//! The audit trail (issue #6): one hash-chained JSON line per request, appended by a writer
//! thread behind a bounded queue; `verify` detects tampering, `report` summarises a log.
//!
//! # Line format
//!
//! Every line is one JSON object whose fields always come in the same order, ending with
//! `prev` and `hash`:
//!
//! ```text
//! {"seq":42,"type":"request","time":"2025-05-01T09:30:12.345Z","request_id":"…","method":"POST",
//!  "route":"/v1/responses","class":"stateful","rule":"builtin:responses","marker":"…",
//!  "upstream":"azure","endpoint":"eastus","status":200,"outcome":"completed",
//!  "request_bytes":812,"response_bytes":5120,"duration_ms":934.112,
//!  "upstream_request_id":"…","config_sha256":"…","prev":"<64 hex>","hash":"<64 hex>"}
//! ```
//!
//! (one line in the file; wrapped here). `type` is one of
//!
//! - `start`: the writer opened the log (`version`, `keyed`, and `previous`: `none` for a new
//!   chain, `sealed` after a clean close, `not_sealed` after a crash or kill, `partial_line`
//!   when the last line was cut mid-write);
//! - `request`: one request, the fields of [`AuditRecord`]; bodies, headers and credentials
//!   are never written;
//! - `dropped`: `count` records were not written (`reason`: `queue_full` in `on_full = "drop"`
//!   mode, `write_error` when the disk failed at shutdown), so a gap is itself on record;
//! - `seal`: the writer closed the file cleanly (`reason`: `close` at shutdown, `rotate`
//!   before the file was rotated).
//!
//! # The chain
//!
//! `seq` counts from 1 and never restarts (not across rotations, not across restarts).
//! `prev` is the previous line's `hash` (64 zeros before seq 1). `hash` is SHA-256, or
//! HMAC-SHA256 when `audit.key` is set, over the line's exact bytes up to, and not including,
//! `,"hash":"` — those bytes include `seq` and `prev`. [`verify`] recomputes every hash and
//! checks that `prev` links and `seq` steps by one, so an edited, removed, duplicated or
//! reordered line, and a line cut short, are each reported with the first bad `file:line`.
//! Lines end in `\n` alone: a line ending in `\r\n` (an editor's save, a CRLF conversion) is
//! a bad line, since the writer never writes a CR.
//!
//! Lines removed from the *top* leave a chain that starts after seq 1. That is an error
//! (`the chain starts at seq N: earlier records are missing`) unless the operator says where
//! the chain is expected to start ([`VerifyOptions::from_seq`], `--from-seq N`: after
//! `max_files` deleted old files, or after archiving them); the first record must then have
//! exactly that seq, and only its `prev` — the link to the records deleted — goes unchecked.
//! The expected seq has to come from outside the files (one more than the last seq archived
//! or verified before), or the check proves nothing.
//!
//! What a chain cannot show by itself is lines removed from the *end*: the writer therefore
//! ends each file with a `seal`, and `verify` warns (exit 0) when the last line is not one —
//! the gateway may still be running, or it stopped without closing the log. A `start` line
//! with `previous: "not_sealed"` records such a stop for good. Only a `close` seal counts: a
//! set of files whose last line is a `rotate` seal is missing the files after it (the current
//! one at least), and is reported as not sealed.
//!
//! # What the key protects against
//!
//! Without a key anyone who can write the files can recompute a whole chain after editing
//! it: the chain then proves only that the files are internally consistent (and catches
//! damage and careless edits). With `audit.key`, a forger also needs the key. But the key is
//! in the gateway's environment (its config, `${VAR}`), so it protects the trail only from
//! writers who cannot read the gateway's process or its environment: another uid on the
//! host, whoever later gets a copy of the files (a backup, an archive, a log shipper's
//! destination), a log shipper or sidecar that can write the directory. It does *not*
//! protect against the gateway's own uid (or root): whoever can read
//! `/proc/<pid>/environ`, the config or the secret it comes from can rewrite the chain and
//! recompute every HMAC. Against them, ship the lines off the host as they are written, to
//! storage the gateway's uid cannot rewrite, and verify the copies there: what was shipped
//! before an edit on the host stays as it was.
//!
//! # Files
//!
//! When a line would take the current file past `max_file_bytes`, the writer seals it,
//! fsyncs it and renames it to `<stem>.<first seq, 16 digits>.<ext>` (`audit.jsonl` →
//! `audit.0000000000000001.jsonl`), so `ls` lists rotated files in chain order, and the
//! chain continues in a fresh file. Rotated files beyond `max_files` (0 keeps all) are
//! deleted, oldest first. `verify` and `report` take files in any order and sort them by
//! their first `seq`; a set that does not begin at seq 1 is an error unless `--from-seq`
//! names its first seq (above).
//!
//! On open, an existing log is resumed from its last complete line. If the file ends in a
//! partial line (a crash mid-write), nothing is appended after it: the file is rotated aside
//! as it is (verify will flag its partial line) and the chain continues in a fresh file.
//!
//! One writer per log: [`AuditLog::open`] takes an exclusive advisory lock
//! (`flock(LOCK_EX | LOCK_NB)`) on `<path>.lock` before it reads or moves anything, and fails
//! with [`AuditError::InUse`] if another writer holds it (a restart overlapping the old
//! process, two pods on one volume) — two writers would fork the chain. The lock is released
//! when the writer thread ends (after the seal and fsync); the kernel releases it if the
//! process dies. A clean close removes the lock file; a crash leaves it, unlocked, and the
//! next writer reuses it. The lock is advisory: it keeps gateways apart, not other programs.
//!
//! # Durability
//!
//! The writer is a dedicated thread: requests only take a place in the queue
//! ([`AuditLog::reserve`]) and hand a record over ([`AuditSlot::write`]). Each batch of
//! queued records is written with one `write` (so it reaches the OS, and survives a crash of
//! the gateway, within milliseconds); the file is fsynced at most once a second while records
//! arrive, one second after the last one, before a rotation and on close. A failed write is
//! counted and logged, the file is cut back to its last whole line, and the batch is retried
//! every second; meanwhile the queue fills and `on_full` decides.
//!
//! [`AuditLog::close`] waits for the writer however long it takes; [`AuditLog::close_within`]
//! gives up after a limit (a write or fsync hung on a stuck disk or NFS server), logs how
//! many records may be lost, and lets shutdown go on: that run's log is then not sealed.

mod appender;
mod chain;
mod command;
mod files;
mod lock;
mod report;
#[cfg(test)]
mod tests;
mod verify;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use command::{AuditCommand, AuditReportArgs, AuditVerifyArgs, CommandOutput};
pub use report::{report, report_with, ConfigReport, GroupReport, Report};
pub use verify::{
    verify, verify_with, FileSummary, Problem, Sealed, VerifyError, VerifyOptions, VerifySummary,
};
pub use writer::{AuditLog, AuditSlot};

/// How the audit log is written (`[audit]` in the config).
#[derive(Clone, Debug)]
pub struct AuditSettings {
    /// The current file; rotated files are written next to it.
    pub path: PathBuf,
    /// Rotate when the current file would exceed this many bytes.
    pub max_file_bytes: u64,
    /// Rotated files kept besides the current one (0 = keep all).
    pub max_files: usize,
    /// Records the queue holds (reserved or waiting for the writer), at most.
    pub queue: usize,
    /// What a request does when the queue is full.
    pub on_full: OnFull,
    /// HMAC-SHA256 key: when set, the chain cannot be recomputed without it (by writers who
    /// cannot read the gateway's process or environment: see the module docs).
    pub key: Option<Vec<u8>>,
}

/// What [`AuditLog::reserve`] does when the queue is full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnFull {
    /// Wait for room: nothing is lost, requests slow down with the disk.
    #[default]
    Block,
    /// Go on without a record; counted in `switchyard_audit_dropped_total{reason="queue_full"}`
    /// and written to the log as a `dropped` line.
    Drop,
}

/// One request, as the proxy's record phase saw it. Owned values: it crosses to the writer.
#[derive(Clone, Debug)]
pub struct AuditRecord {
    /// When the request arrived.
    pub time: SystemTime,
    pub request_id: Option<String>,
    pub method: String,
    /// The route template (`/v1/responses/{id}`), or `other`.
    pub route: String,
    /// `stateless` or `stateful`; `None` when refused before routing.
    pub class: Option<&'static str>,
    pub rule: Option<String>,
    pub marker: Option<String>,
    pub upstream: Option<String>,
    pub endpoint: Option<String>,
    pub status: u16,
    /// `completed`, `client_closed`, a rejection reason or an upstream error kind.
    pub outcome: &'static str,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub duration: Duration,
    /// The provider's own id (`apim-request-id`, `x-ms-request-id`, `x-amzn-requestid`).
    pub upstream_request_id: Option<String>,
    /// SHA-256 (hex) of the config that decided the request.
    pub config_sha256: Arc<str>,
}

/// Errors opening an audit log or reading one for `report`.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit.path {0}: names a directory, not a file")]
    NotAFile(PathBuf),
    /// Another writer (process, or `AuditLog` in this process) holds the log's lock.
    #[error(
        "audit.path {} is in use by another process (lock file {})",
        path.display(),
        lock.display()
    )]
    InUse { path: PathBuf, lock: PathBuf },
    #[error("audit.queue must be at least 1")]
    ZeroQueue,
    #[error("cannot start the audit writer thread: {0}")]
    Thread(std::io::Error),
    #[error("no audit files given")]
    NoFiles,
}

impl AuditError {
    fn io(path: &std::path::Path, source: std::io::Error) -> AuditError {
        AuditError::Io {
            path: path.to_owned(),
            source,
        }
    }
}
