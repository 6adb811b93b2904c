//! `switchyard audit report`: per class and upstream, how many requests went where, with
//! status families, outcomes, time span and the configs that decided — after verifying.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use serde::Serialize;

use super::chain::{read_line, Parsed};
use super::verify::{verify_with, VerifyError, VerifyOptions, VerifySummary};
use super::AuditError;

/// Shown where a request has no class or upstream (refused before routing).
const NONE: &str = "none";

/// The report over a set of audit files.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub files: Vec<PathBuf>,
    /// The chain verified (warnings aside).
    pub verified: bool,
    /// The first bad line, when it did not.
    pub verify_error: Option<String>,
    /// What verification found, when the chain verified.
    pub chain: Option<VerifySummary>,
    pub warnings: Vec<String>,
    /// Request lines counted (whether or not the chain verified).
    pub requests: u64,
    /// Lines that are not records (cut short or foreign), skipped.
    pub unreadable_lines: u64,
    pub first_time: Option<String>,
    pub last_time: Option<String>,
    /// Per (class, upstream), sorted.
    pub groups: Vec<GroupReport>,
    /// Per config SHA-256, sorted by first use.
    pub configs: Vec<ConfigReport>,
    /// Records not written, from `dropped` lines, by reason.
    pub dropped: BTreeMap<String, u64>,
}

/// Requests of one class that went to one upstream.
#[derive(Clone, Debug, Serialize)]
pub struct GroupReport {
    pub class: String,
    pub upstream: String,
    pub requests: u64,
    /// `2xx`, `4xx`, ... → requests.
    pub status: BTreeMap<String, u64>,
    /// `completed`, `client_closed`, rejection reasons, upstream error kinds → requests.
    pub outcomes: BTreeMap<String, u64>,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub first_time: String,
    pub last_time: String,
    /// Distinct configs that decided these requests.
    pub configs: u64,
}

/// One config, by its SHA-256.
#[derive(Clone, Debug, Serialize)]
pub struct ConfigReport {
    pub sha256: String,
    pub requests: u64,
    pub first_time: String,
    pub last_time: String,
}

#[derive(Default)]
struct Group {
    requests: u64,
    status: BTreeMap<String, u64>,
    outcomes: BTreeMap<String, u64>,
    request_bytes: u64,
    response_bytes: u64,
    first_time: Option<String>,
    last_time: Option<String>,
    configs: BTreeMap<String, ()>,
}

/// Keep the earliest and latest of RFC 3339 UTC times (they sort as text).
fn span(first: &mut Option<String>, last: &mut Option<String>, time: &str) {
    if first.as_deref().is_none_or(|f| time < f) {
        *first = Some(time.to_owned());
    }
    if last.as_deref().is_none_or(|l| time > l) {
        *last = Some(time.to_owned());
    }
}

fn status_family(status: Option<u16>) -> String {
    match status {
        Some(s @ 100..=599) => format!("{}xx", s / 100),
        _ => "other".to_owned(),
    }
}

/// Read `paths` and summarise their requests; verify the chain too (`key`: its HMAC key),
/// as one that starts at seq 1 (see [`report_with`]).
pub fn report(paths: &[PathBuf], key: Option<&[u8]>) -> Result<Report, AuditError> {
    report_with(
        paths,
        &VerifyOptions {
            key,
            from_seq: None,
        },
    )
}

/// Read `paths` and summarise their requests; verify the chain too, with `options` (see
/// [`verify_with`](super::verify_with)). The counts are made even when the chain does not
/// verify, and say so.
pub fn report_with(paths: &[PathBuf], options: &VerifyOptions<'_>) -> Result<Report, AuditError> {
    let verification = match verify_with(paths, options) {
        Ok(summary) => Ok(summary),
        Err(VerifyError::NoFiles) => return Err(AuditError::NoFiles),
        Err(VerifyError::Io { path, source }) => return Err(AuditError::Io { path, source }),
        Err(bad @ VerifyError::Bad { .. }) => Err(bad),
    };
    let mut report = Report {
        files: paths.to_vec(),
        verified: verification.is_ok(),
        verify_error: verification.as_ref().err().map(ToString::to_string),
        warnings: verification
            .as_ref()
            .map(VerifySummary::warnings)
            .unwrap_or_default(),
        chain: verification.as_ref().ok().cloned(),
        requests: 0,
        unreadable_lines: 0,
        first_time: None,
        last_time: None,
        groups: Vec::new(),
        configs: Vec::new(),
        dropped: BTreeMap::new(),
    };
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    let mut configs: BTreeMap<String, (u64, Option<String>, Option<String>)> = BTreeMap::new();
    let mut text = Vec::new();
    for path in paths {
        let file = File::open(path).map_err(|e| AuditError::io(path, e))?;
        let mut reader = BufReader::new(file);
        loop {
            text.clear();
            let n = reader
                .read_until(b'\n', &mut text)
                .map_err(|e| AuditError::io(path, e))?;
            if n == 0 {
                break;
            }
            let Ok(line) = read_line(&text) else {
                report.unreadable_lines += 1;
                continue;
            };
            let r: &Parsed = &line.parsed;
            match r.kind.as_str() {
                "request" => {}
                "dropped" => {
                    let reason = r.reason.clone().unwrap_or_else(|| "unknown".to_owned());
                    *report.dropped.entry(reason).or_default() += r.count.unwrap_or(0);
                    continue;
                }
                _ => continue,
            }
            report.requests += 1;
            span(&mut report.first_time, &mut report.last_time, &r.time);
            let key = (
                r.class.clone().unwrap_or_else(|| NONE.to_owned()),
                r.upstream.clone().unwrap_or_else(|| NONE.to_owned()),
            );
            let g = groups.entry(key).or_default();
            g.requests += 1;
            *g.status.entry(status_family(r.status)).or_default() += 1;
            let outcome = r.outcome.clone().unwrap_or_else(|| "unknown".to_owned());
            *g.outcomes.entry(outcome).or_default() += 1;
            g.request_bytes += r.request_bytes.unwrap_or(0);
            g.response_bytes += r.response_bytes.unwrap_or(0);
            span(&mut g.first_time, &mut g.last_time, &r.time);
            let config = r.config_sha256.clone().unwrap_or_else(|| NONE.to_owned());
            g.configs.insert(config.clone(), ());
            let c = configs.entry(config).or_default();
            c.0 += 1;
            span(&mut c.1, &mut c.2, &r.time);
        }
    }
    report.groups = groups
        .into_iter()
        .map(|((class, upstream), g)| GroupReport {
            class,
            upstream,
            requests: g.requests,
            status: g.status,
            outcomes: g.outcomes,
            request_bytes: g.request_bytes,
            response_bytes: g.response_bytes,
            first_time: g.first_time.unwrap_or_default(),
            last_time: g.last_time.unwrap_or_default(),
            configs: g.configs.len() as u64,
        })
        .collect();
    report.configs = configs
        .into_iter()
        .map(|(sha256, (requests, first, last))| ConfigReport {
            sha256,
            requests,
            first_time: first.unwrap_or_default(),
            last_time: last.unwrap_or_default(),
        })
        .collect();
    report
        .configs
        .sort_by(|a, b| a.first_time.cmp(&b.first_time));
    Ok(report)
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.verify_error, &self.chain) {
            (None, Some(chain)) => writeln!(f, "chain: verified: {}", chain.headline())?,
            (None, None) => writeln!(f, "chain: verified")?,
            (Some(e), _) => {
                writeln!(f, "!!! CHAIN NOT VERIFIED: {e}")?;
                writeln!(
                    f,
                    "!!! The log has been altered or damaged: the counts below cannot be trusted."
                )?;
            }
        }
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        let span = match (&self.first_time, &self.last_time) {
            (Some(a), Some(b)) => format!(", {a} .. {b}"),
            _ => String::new(),
        };
        writeln!(
            f,
            "{} requests in {} file(s){span}",
            self.requests,
            self.files.len()
        )?;
        if self.unreadable_lines > 0 {
            writeln!(f, "{} unreadable line(s) skipped", self.unreadable_lines)?;
        }
        for (reason, count) in &self.dropped {
            writeln!(f, "{count} record(s) not written ({reason})")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<10} {:<16} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7}  {:<24}  last",
            "class", "upstream", "requests", "2xx", "3xx", "4xx", "5xx", "other", "first"
        )?;
        for g in &self.groups {
            let n = |k: &str| g.status.get(k).copied().unwrap_or(0);
            let other = g
                .requests
                .saturating_sub(n("2xx") + n("3xx") + n("4xx") + n("5xx"));
            writeln!(
                f,
                "{:<10} {:<16} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7}  {:<24}  {}",
                g.class,
                g.upstream,
                g.requests,
                n("2xx"),
                n("3xx"),
                n("4xx"),
                n("5xx"),
                other,
                g.first_time,
                g.last_time
            )?;
            let outcomes: Vec<String> =
                g.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
            writeln!(
                f,
                "{:<10} outcomes: {}; bytes: {} in, {} out; {} config(s)",
                "",
                outcomes.join(", "),
                g.request_bytes,
                g.response_bytes,
                g.configs
            )?;
        }
        if !self.configs.is_empty() {
            writeln!(f)?;
            writeln!(f, "configs (SHA-256) that decided:")?;
            for c in &self.configs {
                writeln!(
                    f,
                    "  {}  {} requests, {} .. {}",
                    c.sha256, c.requests, c.first_time, c.last_time
                )?;
            }
        }
        Ok(())
    }
}
