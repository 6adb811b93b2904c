//! The files of one log: rotated names, listing and pruning them, and finding where a file's
//! chain ends (its last complete record) so that a restart continues it.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::chain::{read_line, ChainState, Hash};

/// Digits of the first seq in a rotated file's name: lexical order is chain order.
const SEQ_DIGITS: usize = 16;
/// First read from a file's end when looking for its last line; grows ×4 until a line fits.
const TAIL_CHUNK: u64 = 64 * 1024;
/// A first line longer than this is not one the writer wrote.
const MAX_LINE: u64 = 16 * 1024 * 1024;

/// The current file and the names its rotated files take.
#[derive(Clone, Debug)]
pub struct LogFiles {
    current: PathBuf,
    dir: PathBuf,
    stem: String,
    /// `.jsonl` (with its dot), or empty.
    ext: String,
}

/// A rotated file found on disk.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rotated {
    pub first_seq: u64,
    /// 0, or the `-N` that made the name unique.
    pub dup: u64,
    pub path: PathBuf,
}

impl LogFiles {
    pub fn new(current: &Path) -> LogFiles {
        let dir = match current.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let stem = current
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = current
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        LogFiles {
            current: current.to_owned(),
            dir,
            stem,
            ext,
        }
    }

    pub fn current(&self) -> &Path {
        &self.current
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn name(&self, first_seq: u64, dup: u64) -> PathBuf {
        let dup = if dup == 0 {
            String::new()
        } else {
            format!("-{dup}")
        };
        self.dir.join(format!(
            "{}.{first_seq:0width$}{dup}{}",
            self.stem,
            self.ext,
            width = SEQ_DIGITS
        ))
    }

    /// A name for the file whose first record is `first_seq`, not taken yet.
    pub fn free_name(&self, first_seq: u64) -> PathBuf {
        let mut dup = 0;
        loop {
            let candidate = self.name(first_seq, dup);
            if !candidate.exists() {
                return candidate;
            }
            dup += 1;
        }
    }

    /// `(first_seq, dup)` if `name` is one of our rotated names.
    fn parse_name(&self, name: &str) -> Option<(u64, u64)> {
        let middle = name
            .strip_prefix(self.stem.as_str())?
            .strip_prefix('.')?
            .strip_suffix(self.ext.as_str())?;
        let (seq, dup) = match middle.split_once('-') {
            Some((seq, dup)) => (seq, dup.parse().ok()?),
            None => (middle, 0),
        };
        if seq.len() != SEQ_DIGITS || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((seq.parse().ok()?, dup))
    }

    /// Rotated files next to the current one, oldest (lowest first seq) first.
    pub fn rotated(&self) -> io::Result<Vec<Rotated>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some((first_seq, dup)) = self.parse_name(name) {
                out.push(Rotated {
                    first_seq,
                    dup,
                    path: entry.path(),
                });
            }
        }
        out.sort();
        Ok(out)
    }

    /// Delete the oldest rotated files so that at most `keep` remain (0 keeps all).
    /// Returns the files deleted.
    pub fn prune(&self, keep: usize) -> io::Result<Vec<PathBuf>> {
        if keep == 0 {
            return Ok(Vec::new());
        }
        let rotated = self.rotated()?;
        let excess = rotated.len().saturating_sub(keep);
        let mut deleted = Vec::with_capacity(excess);
        for old in rotated.into_iter().take(excess) {
            fs::remove_file(&old.path)?;
            deleted.push(old.path);
        }
        Ok(deleted)
    }
}

/// The last complete record of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastRecord {
    pub seq: u64,
    pub hash: Hash,
    /// A `seal` line with reason `close`: the writer closed the log after it.
    pub closed: bool,
}

impl LastRecord {
    /// Where the chain goes on after this record.
    pub fn next(&self) -> ChainState {
        ChainState {
            next_seq: self.seq.saturating_add(1),
            prev: self.hash,
        }
    }
}

/// How a file ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tail {
    pub len: u64,
    /// The last line that reads as a record.
    pub last: Option<LastRecord>,
    /// Nothing follows `last` (no partial or foreign line): records may be appended.
    pub clean: bool,
}

/// How `path` ends, or `None` if it does not exist.
pub fn tail(path: &Path) -> io::Result<Option<Tail>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let mut chunk = TAIL_CHUNK;
    loop {
        let start = len.saturating_sub(chunk);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        (&mut file).take(len - start).read_to_end(&mut buf)?;
        let mut lines: Vec<&[u8]> = buf.split_inclusive(|b| *b == b'\n').collect();
        if start > 0 && !lines.is_empty() {
            // The first piece may be the end of a longer line.
            lines.remove(0);
        }
        let mut clean = true;
        for piece in lines.iter().rev() {
            match read_line(piece) {
                Ok(line) => {
                    let closed = line.parsed.kind == "seal"
                        && line.parsed.reason.as_deref() == Some("close");
                    return Ok(Some(Tail {
                        len,
                        last: Some(LastRecord {
                            seq: line.parsed.seq,
                            hash: line.hash,
                            closed,
                        }),
                        clean,
                    }));
                }
                Err(_) => clean = false,
            }
        }
        if start == 0 {
            return Ok(Some(Tail {
                len,
                last: None,
                clean: len == 0,
            }));
        }
        chunk = chunk.saturating_mul(4);
    }
}

/// The seq of a file's first line, if it reads as a record.
pub fn first_seq(path: &Path) -> io::Result<Option<u64>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut line = Vec::new();
    BufReader::new(file.take(MAX_LINE)).read_until(b'\n', &mut line)?;
    Ok(read_line(&line).ok().map(|l| l.parsed.seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_sort_in_chain_order_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let files = LogFiles::new(&dir.path().join("audit.jsonl"));
        let a = files.free_name(1);
        assert_eq!(
            a.file_name().unwrap().to_str().unwrap(),
            "audit.0000000000000001.jsonl"
        );
        fs::write(&a, b"").unwrap();
        let b = files.free_name(1);
        assert_eq!(
            b.file_name().unwrap().to_str().unwrap(),
            "audit.0000000000000001-1.jsonl"
        );
        fs::write(&b, b"").unwrap();
        let c = files.free_name(120);
        fs::write(&c, b"").unwrap();
        fs::write(dir.path().join("audit.jsonl"), b"").unwrap();
        fs::write(dir.path().join("audit.12.jsonl"), b"").unwrap();
        fs::write(dir.path().join("other.0000000000000005.jsonl"), b"").unwrap();
        let found = files.rotated().unwrap();
        let seqs: Vec<(u64, u64)> = found.iter().map(|r| (r.first_seq, r.dup)).collect();
        assert_eq!(seqs, vec![(1, 0), (1, 1), (120, 0)]);

        let deleted = files.prune(1).unwrap();
        assert_eq!(deleted, vec![a, b]);
        assert_eq!(files.rotated().unwrap().len(), 1);
        assert!(files.prune(0).unwrap().is_empty());
    }

    #[test]
    fn a_name_without_extension_gets_the_seq_at_its_end() {
        let files = LogFiles::new(Path::new("/var/log/audit"));
        assert_eq!(
            files.name(7, 0),
            PathBuf::from("/var/log/audit.0000000000000007")
        );
        assert_eq!(files.parse_name("audit.0000000000000007"), Some((7, 0)));
        assert_eq!(files.parse_name("audit.0000000000000007-2"), Some((7, 2)));
        assert_eq!(files.parse_name("audit"), None);
    }

    #[test]
    fn a_missing_or_empty_file_has_no_tail_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        assert_eq!(tail(&path).unwrap(), None);
        fs::write(&path, b"").unwrap();
        let t = tail(&path).unwrap().unwrap();
        assert_eq!((t.len, t.last, t.clean), (0, None, true));
        fs::write(&path, b"garbage").unwrap();
        let t = tail(&path).unwrap().unwrap();
        assert_eq!((t.last, t.clean), (None, false));
        assert_eq!(first_seq(&path).unwrap(), None);
    }
}
