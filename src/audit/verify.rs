//! `switchyard audit verify`: recompute every line's hash, check every link, and name the
//! first line that breaks the chain.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::chain::{read_line, Hash, Hasher, Malformed};
use super::files;

/// Why a line breaks the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The last line has no newline: cut short.
    Truncated,
    /// Not a JSON object ending in `"hash":"<64 hex>"}` with the chain's fields.
    NotARecord,
    /// The line ends in `\r\n`; the writer never writes a CR.
    CarriageReturn,
    /// The line's hash is not the hash of its bytes. `hint` explains a wrong or missing key.
    HashMismatch { hint: &'static str },
    /// `prev` is not the hash of the line before it in the chain.
    BrokenLink {
        /// The line before, as `file:line` (or `line N` in the same file).
        before: String,
        before_seq: u64,
        seq: u64,
    },
    /// `prev` links, but `seq` does not step by one.
    SeqGap { before_seq: u64, seq: u64 },
    /// The first record (seq 1) does not start from the genesis value.
    BadGenesis,
    /// The first record is not seq 1, and no `--from-seq` says where the chain should start:
    /// records were cut from the top, or earlier files were not given.
    Unanchored { first_seq: u64 },
    /// The first record is not the seq `--from-seq` expects.
    NotFromSeq { expected: u64, first_seq: u64 },
    /// A `start` line says the log was (or was not) keyed, and verification used the other.
    KeyMismatch { keyed: bool },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Truncated => {
                f.write_str("not a complete JSON record: no newline at its end (truncated?)")
            }
            Problem::NotARecord => f.write_str("not a complete JSON record (truncated or edited?)"),
            Problem::CarriageReturn => f.write_str(
                "the line ends in CR LF, and the writer never writes a CR (edited, or converted \
                 to CRLF line endings?)",
            ),
            Problem::HashMismatch { hint } => {
                write!(f, "hash does not match its content (edited?{hint})")
            }
            Problem::BrokenLink {
                before,
                before_seq,
                seq,
            } => write!(
                f,
                "prev does not match {before}'s hash (record removed, inserted or reordered?); \
                 seq {seq} follows seq {before_seq}"
            ),
            Problem::SeqGap { before_seq, seq } => write!(
                f,
                "seq {seq} follows seq {before_seq} (records renumbered?)"
            ),
            Problem::BadGenesis => {
                f.write_str("seq 1 does not start from the genesis value (prev is not 64 zeros)")
            }
            Problem::Unanchored { first_seq } => write!(
                f,
                "the chain starts at seq {first_seq}: earlier records are missing (removed, or \
                 in files not given)"
            ),
            Problem::NotFromSeq {
                expected,
                first_seq,
            } if first_seq > expected => write!(
                f,
                "the chain starts at seq {first_seq}, not at seq {expected} (--from-seq): \
                 records {expected}..{} are missing (removed, or in files not given)",
                first_seq - 1
            ),
            Problem::NotFromSeq {
                expected,
                first_seq,
            } => write!(
                f,
                "the chain starts at seq {first_seq}, not at seq {expected} (--from-seq)"
            ),
            Problem::KeyMismatch { keyed: true } => {
                f.write_str("this log was written with a key (HMAC-SHA256): pass --key-env VAR")
            }
            Problem::KeyMismatch { keyed: false } => f.write_str(
                "this log was written without a key (SHA-256): verify it without --key-env",
            ),
        }
    }
}

/// Why a set of files does not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("no audit files given")]
    NoFiles,
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}:{line}: {problem}", path.display())]
    Bad {
        path: PathBuf,
        line: u64,
        problem: Problem,
    },
}

/// How the chain ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sealed {
    /// The last line is a `seal` written when the log was closed.
    Closed,
    /// The last line is a `seal` written before rotation: the files after it (the current
    /// file at least) are missing or were not given. Reported like [`Sealed::No`]: whole files
    /// removed from the end would not show.
    Rotated,
    /// The gateway is still writing, or stopped without closing the log; lines removed
    /// from the end would not show.
    No,
}

/// One file of a verified chain.
#[derive(Clone, Debug, Serialize)]
pub struct FileSummary {
    pub path: PathBuf,
    pub lines: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
}

/// A chain that verified.
#[derive(Clone, Debug, Serialize)]
pub struct VerifySummary {
    /// In chain order.
    pub files: Vec<FileSummary>,
    pub records: u64,
    pub requests: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// HMAC-SHA256 (a key was given) rather than SHA-256.
    pub keyed: bool,
    /// The chain starts at seq 1. Otherwise it verified only because `--from-seq`
    /// ([`VerifyOptions::from_seq`]) said where it starts, and records before it (and the
    /// first record's link to them) were not checked.
    pub anchored: bool,
    pub sealed: Sealed,
    /// Records the writer could not write, from `dropped` lines.
    pub dropped: u64,
    /// `start` lines after a stop without a clean close.
    pub unclean_starts: u64,
}

impl VerifySummary {
    /// What verified but deserves attention.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.records == 0 {
            out.push("no records".to_owned());
        }
        if let (false, Some(first)) = (self.anchored, self.first_seq) {
            out.push(format!(
                "the chain starts at seq {first} (--from-seq): records before it, and its link \
                 to them, were not checked"
            ));
        }
        if self.sealed == Sealed::Rotated {
            out.push(
                "the last file ends with a rotation seal: the files after it are missing, or \
                 were not given"
                    .to_owned(),
            );
        }
        if self.sealed == Sealed::No && self.records > 0 {
            out.push(
                "not sealed: the last record is not a seal, so the gateway is still writing \
                 this log or stopped without closing it; records removed from the end would \
                 not show"
                    .to_owned(),
            );
        }
        if self.dropped > 0 {
            out.push(format!(
                "{} record(s) were not written (see the `dropped` lines)",
                self.dropped
            ));
        }
        if self.unclean_starts > 0 {
            out.push(format!(
                "the gateway stopped {} time(s) without closing the log (`start` lines with \
                 previous = not_sealed or partial_line): records just before each stop may be \
                 missing",
                self.unclean_starts
            ));
        }
        out
    }
}

impl VerifySummary {
    /// One line: records, files, seq range, hash, seal.
    pub fn headline(&self) -> String {
        let seqs = match (self.first_seq, self.last_seq) {
            (Some(a), Some(b)) => format!(", seq {a}..{b}"),
            _ => String::new(),
        };
        format!(
            "{} records ({} requests) in {} file(s){seqs}, {} chain{}",
            self.records,
            self.requests,
            self.files.len(),
            if self.keyed { "HMAC-SHA256" } else { "SHA-256" },
            match self.sealed {
                Sealed::Closed => ", sealed",
                Sealed::Rotated => ", ends with a rotation seal",
                Sealed::No => "",
            }
        )
    }
}

impl fmt::Display for VerifySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "ok: {}", self.headline())?;
        for file in &self.files {
            match (file.first_seq, file.last_seq) {
                (Some(a), Some(b)) => writeln!(
                    f,
                    "  {}: {} lines, seq {a}..{b}",
                    file.path.display(),
                    file.lines
                )?,
                _ => writeln!(f, "  {}: empty", file.path.display())?,
            }
        }
        for warning in self.warnings() {
            writeln!(f, "warning: {warning}")?;
        }
        Ok(())
    }
}

/// The line before, for links across files.
struct Previous {
    file: usize,
    line: u64,
    seq: u64,
    hash: Hash,
}

/// How to verify a set of files.
#[derive(Clone, Copy, Default)]
pub struct VerifyOptions<'a> {
    /// The log's HMAC key (`audit.key`), if it has one.
    pub key: Option<&'a [u8]>,
    /// The seq the chain is expected to start at, when that is not 1: the records before it
    /// were deleted legitimately (`audit.max_files`, archiving). The first record must then
    /// have exactly this seq; its `prev` (the link to the deleted records) is not checked.
    /// `None`: the chain must start at seq 1.
    pub from_seq: Option<u64>,
}

impl fmt::Debug for VerifyOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key itself.
        f.debug_struct("VerifyOptions")
            .field("keyed", &self.key.is_some())
            .field("from_seq", &self.from_seq)
            .finish()
    }
}

/// Verify `paths` as one chain that starts at seq 1 (see [`verify_with`]). `key`: the log's
/// HMAC key, if it has one.
pub fn verify(paths: &[PathBuf], key: Option<&[u8]>) -> Result<VerifySummary, VerifyError> {
    verify_with(
        paths,
        &VerifyOptions {
            key,
            from_seq: None,
        },
    )
}

/// Verify `paths` as one chain. Files are put in chain order by their first record's seq,
/// whatever order they are given in. The chain must start at seq 1, or at
/// `options.from_seq` when that is given.
pub fn verify_with(
    paths: &[PathBuf],
    options: &VerifyOptions<'_>,
) -> Result<VerifySummary, VerifyError> {
    if paths.is_empty() {
        return Err(VerifyError::NoFiles);
    }
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| VerifyError::Io { path, source }
    };
    let mut ordered = Vec::with_capacity(paths.len());
    for (i, path) in paths.iter().enumerate() {
        // A file whose first line is not a record sorts first, and fails at its line 1.
        let first = files::first_seq(path).map_err(io(path))?;
        ordered.push((first.is_some(), first, i, path));
    }
    ordered.sort();
    let hasher = Hasher::new(options.key);
    let mut summary = VerifySummary {
        files: Vec::new(),
        records: 0,
        requests: 0,
        first_seq: None,
        last_seq: None,
        keyed: hasher.is_keyed(),
        anchored: false,
        sealed: Sealed::No,
        dropped: 0,
        unclean_starts: 0,
    };
    let mut previous: Option<Previous> = None;
    for (_, _, _, path) in ordered {
        let file = File::open(path).map_err(io(path))?;
        let mut reader = BufReader::new(file);
        let mut text = Vec::new();
        let mut line_no = 0u64;
        let mut file_summary = FileSummary {
            path: path.clone(),
            lines: 0,
            first_seq: None,
            last_seq: None,
        };
        let file_index = summary.files.len();
        loop {
            text.clear();
            if reader.read_until(b'\n', &mut text).map_err(io(path))? == 0 {
                break;
            }
            line_no += 1;
            let bad = |problem| VerifyError::Bad {
                path: path.clone(),
                line: line_no,
                problem,
            };
            let line = read_line(&text).map_err(|m| {
                bad(match m {
                    Malformed::Unterminated => Problem::Truncated,
                    Malformed::NotARecord => Problem::NotARecord,
                    Malformed::CarriageReturn => Problem::CarriageReturn,
                })
            })?;
            let record = &line.parsed;
            if record.kind == "start" {
                if let Some(keyed) = record.keyed.filter(|k| *k != hasher.is_keyed()) {
                    return Err(bad(Problem::KeyMismatch { keyed }));
                }
            }
            if hasher.hash(line.hashed) != line.hash {
                let hint = match (summary.records, hasher.is_keyed()) {
                    (0, false) => ", or written with a key: pass --key-env VAR",
                    (0, true) => ", or written without a key or with another key",
                    _ => "",
                };
                return Err(bad(Problem::HashMismatch { hint }));
            }
            match &previous {
                // The first record: the chain starts at seq 1 (from the genesis value), or
                // exactly where the operator says it does.
                None => match options.from_seq {
                    Some(expected) if record.seq != expected => {
                        return Err(bad(Problem::NotFromSeq {
                            expected,
                            first_seq: record.seq,
                        }));
                    }
                    None if record.seq != 1 => {
                        return Err(bad(Problem::Unanchored {
                            first_seq: record.seq,
                        }));
                    }
                    _ if record.seq == 1 && line.prev != Hash::GENESIS => {
                        return Err(bad(Problem::BadGenesis));
                    }
                    _ => summary.anchored = record.seq == 1,
                },
                Some(p) if line.prev != p.hash => {
                    let before = if p.file == file_index {
                        format!("line {}", p.line)
                    } else {
                        let other = summary.files.get(p.file).map(|f| f.path.display());
                        match other {
                            Some(other) => format!("{other}:{}", p.line),
                            None => format!("line {}", p.line),
                        }
                    };
                    return Err(bad(Problem::BrokenLink {
                        before,
                        before_seq: p.seq,
                        seq: record.seq,
                    }));
                }
                Some(p) if Some(record.seq) != p.seq.checked_add(1) => {
                    return Err(bad(Problem::SeqGap {
                        before_seq: p.seq,
                        seq: record.seq,
                    }));
                }
                Some(_) => {}
            }
            summary.records += 1;
            match record.kind.as_str() {
                "request" => summary.requests += 1,
                "dropped" => summary.dropped += record.count.unwrap_or(0),
                "start" => {
                    if matches!(
                        record.previous.as_deref(),
                        Some("not_sealed" | "partial_line")
                    ) {
                        summary.unclean_starts += 1;
                    }
                }
                _ => {}
            }
            summary.sealed = match (record.kind.as_str(), record.reason.as_deref()) {
                ("seal", Some("close")) => Sealed::Closed,
                ("seal", _) => Sealed::Rotated,
                _ => Sealed::No,
            };
            summary.first_seq.get_or_insert(record.seq);
            summary.last_seq = Some(record.seq);
            file_summary.first_seq.get_or_insert(record.seq);
            file_summary.last_seq = Some(record.seq);
            file_summary.lines = line_no;
            previous = Some(Previous {
                file: file_index,
                line: line_no,
                seq: record.seq,
                hash: line.hash,
            });
        }
        summary.files.push(file_summary);
    }
    Ok(summary)
}
