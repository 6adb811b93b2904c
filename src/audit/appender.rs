//! The file side of the writer: resuming a chain on open, appending batches of lines,
//! rotation, fsync, and cutting a failed write back to the last whole line.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::chain::{self, ChainState, Entry, Hash, Hasher};
use super::files::{self, LogFiles, Tail};
use super::lock::WriterLock;
use super::{AuditError, AuditRecord, AuditSettings};
use crate::metrics::Metrics;

/// Room kept for the `seal` line that ends a rotated file (a seal line is about 240 bytes).
const SEAL_ROOM: u64 = 256;
/// After a failed rename, keep writing to the current file this long before trying again.
const ROTATE_BACKOFF: Duration = Duration::from_secs(10);
/// fsync at most this often while records arrive.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Why records were not written, as a `dropped` line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    QueueFull,
    WriteError,
}

impl DropReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::WriteError => "write_error",
        }
    }
}

/// A line waiting to be written.
#[derive(Debug)]
pub enum Held {
    Start { previous: &'static str },
    Record(Box<AuditRecord>),
    Dropped { count: u64, reason: DropReason },
    Seal { reason: &'static str },
}

impl Held {
    fn line(&self, hasher: &Hasher, state: &ChainState) -> (Vec<u8>, Hash) {
        let now = SystemTime::now();
        match self {
            Held::Start { previous } => chain::line(
                hasher,
                state,
                now,
                &Entry::Start {
                    keyed: hasher.is_keyed(),
                    previous,
                },
            ),
            Held::Record(r) => chain::line(hasher, state, r.time, &Entry::Request(r)),
            Held::Dropped { count, reason } => chain::line(
                hasher,
                state,
                now,
                &Entry::Dropped {
                    count: *count,
                    reason: reason.as_str(),
                },
            ),
            Held::Seal { reason } => chain::line(hasher, state, now, &Entry::Seal { reason }),
        }
    }
}

/// Lines serialised but not yet written.
struct Batch {
    buf: Vec<u8>,
    start: ChainState,
    state: ChainState,
    entries: usize,
    requests: u64,
}

impl Batch {
    fn new(state: ChainState) -> Batch {
        Batch {
            buf: Vec::new(),
            start: state,
            state,
            entries: 0,
            requests: 0,
        }
    }

    fn push(&mut self, (line, hash): (Vec<u8>, Hash), request: bool) {
        self.buf.extend_from_slice(&line);
        self.state = ChainState {
            next_seq: self.state.next_seq.saturating_add(1),
            prev: hash,
        };
        self.entries += 1;
        self.requests += u64::from(request);
    }
}

/// Owns the current file and the chain's committed state.
pub struct Appender {
    files: LogFiles,
    max_file_bytes: u64,
    max_files: usize,
    hasher: Hasher,
    metrics: Arc<Metrics>,
    file: Option<File>,
    /// Bytes of whole lines in the current file.
    file_len: u64,
    /// The seq of the current file's first line, once it has one.
    first_seq: Option<u64>,
    /// The chain after the last line that reached the file.
    state: ChainState,
    /// The current file may end in a partial line: move it aside before appending.
    aside_on_open: bool,
    rotate_not_before: Option<Instant>,
    unsynced: bool,
    last_sync: Instant,
    /// This writer's exclusive hold on the log, released when the appender is dropped (after
    /// the file above is closed).
    _lock: WriterLock,
}

impl Appender {
    /// Open the log, continue its chain, and write a `start` line.
    pub fn open(settings: &AuditSettings, metrics: Arc<Metrics>) -> Result<Appender, AuditError> {
        let path = &settings.path;
        if path.is_dir() {
            return Err(AuditError::NotAFile(path.clone()));
        }
        let files = LogFiles::new(path);
        fs::create_dir_all(files.dir()).map_err(|e| AuditError::io(files.dir(), e))?;
        // Before anything is read or moved: resuming and rotating assume one writer.
        let lock = WriterLock::acquire(path)?;
        let mut appender = Appender {
            files,
            max_file_bytes: settings.max_file_bytes,
            max_files: settings.max_files,
            hasher: Hasher::new(settings.key.as_deref()),
            metrics,
            file: None,
            file_len: 0,
            first_seq: None,
            state: ChainState::NEW,
            aside_on_open: false,
            rotate_not_before: None,
            unsynced: false,
            last_sync: Instant::now(),
            _lock: lock,
        };
        let previous = appender.resume().map_err(|e| AuditError::io(path, e))?;
        let (_, written) = appender.append(&[Held::Start { previous }]);
        written.map_err(|e| AuditError::io(path, e))?;
        appender.sync();
        Ok(appender)
    }

    /// Continue the chain from the last complete record on disk; returns how the previous
    /// writer left the log (the `start` line's `previous`).
    fn resume(&mut self) -> io::Result<&'static str> {
        let current = self.files.current().to_owned();
        match files::tail(&current)? {
            Some(Tail {
                last: Some(last),
                clean: true,
                ..
            }) => {
                self.state = last.next();
                self.first_seq = files::first_seq(&current)?;
                Ok(if last.closed { "sealed" } else { "not_sealed" })
            }
            Some(Tail {
                last: Some(last), ..
            }) => {
                self.state = last.next();
                self.move_aside()?;
                Ok("partial_line")
            }
            Some(Tail {
                last: None,
                clean: false,
                ..
            }) => {
                self.resume_from_rotated()?;
                self.move_aside()?;
                Ok("partial_line")
            }
            None
            | Some(Tail {
                last: None,
                clean: true,
                ..
            }) => self.resume_from_rotated(),
        }
    }

    /// The current file is missing or empty: continue from the newest rotated file.
    fn resume_from_rotated(&mut self) -> io::Result<&'static str> {
        for rotated in self.files.rotated()?.iter().rev() {
            if let Some(Tail {
                last: Some(last),
                clean,
                ..
            }) = files::tail(&rotated.path)?
            {
                self.state = last.next();
                return Ok(match (clean, last.closed) {
                    (false, _) => "partial_line",
                    (true, true) => "sealed",
                    (true, false) => "not_sealed",
                });
            }
        }
        Ok("none")
    }

    /// Rename the current file aside as it is: it ends in a partial or foreign line.
    fn move_aside(&mut self) -> io::Result<()> {
        self.file = None;
        let current = self.files.current().to_owned();
        let first = files::first_seq(&current)?.unwrap_or(self.state.next_seq);
        let aside = self.files.free_name(first);
        fs::rename(&current, &aside).inspect_err(|_| self.metrics.audit.rotate_failed())?;
        self.metrics.audit.rotated();
        tracing::warn!(
            file = %current.display(),
            moved_to = %aside.display(),
            "audit: the log ends in a partial line (a crash mid-write?); moved aside as it is, \
             the chain continues in a fresh file"
        );
        self.first_seq = None;
        self.file_len = 0;
        Ok(())
    }

    fn ensure_open(&mut self) -> io::Result<()> {
        if self.file.is_some() {
            return Ok(());
        }
        if self.aside_on_open {
            self.move_aside()?;
            self.aside_on_open = false;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.files.current())
            .and_then(|f| f.metadata().map(|m| (f, m.len())));
        let (file, len) = file.inspect_err(|_| self.metrics.audit.open_failed())?;
        self.file_len = len;
        if len == 0 {
            self.first_seq = None;
        }
        self.file = Some(file);
        Ok(())
    }

    /// Write `entries` in order, rotating when a line would take the file past its limit.
    /// Returns how many entries reached the file, and the error that stopped the rest.
    pub fn append(&mut self, entries: &[Held]) -> (usize, io::Result<()>) {
        let mut batch = Batch::new(self.state);
        let mut done = 0;
        for entry in entries {
            let mut line = entry.line(&self.hasher, &batch.state);
            if self.should_rotate(batch.buf.len() as u64, line.0.len() as u64) {
                match self.commit(&mut batch) {
                    Ok(n) => done += n,
                    Err(e) => return (done, Err(e)),
                }
                if let Err(e) = self.rotate() {
                    return (done, Err(e));
                }
                batch = Batch::new(self.state);
                line = entry.line(&self.hasher, &batch.state);
            }
            batch.push(line, matches!(entry, Held::Record(_)));
        }
        match self.commit(&mut batch) {
            Ok(n) => (done + n, Ok(())),
            Err(e) => (done, Err(e)),
        }
    }

    /// Whether `line` bytes after `batch` bytes not yet written would take a non-empty file
    /// past its limit (with room for the seal).
    fn should_rotate(&self, batch: u64, line: u64) -> bool {
        let used = self.file_len.saturating_add(batch);
        used > 0
            && used.saturating_add(line).saturating_add(SEAL_ROOM) > self.max_file_bytes
            && self.rotate_not_before.is_none_or(|t| Instant::now() >= t)
    }

    /// Write a batch with one `write`; on failure cut the file back to its last whole line.
    fn commit(&mut self, batch: &mut Batch) -> io::Result<usize> {
        if batch.entries == 0 {
            return Ok(0);
        }
        self.ensure_open()?;
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("the audit file is not open"));
        };
        if let Err(e) = file.write_all(&batch.buf) {
            self.metrics.audit.write_failed();
            if file.set_len(self.file_len).is_err() {
                // Cannot remove the partial line: never append after it.
                self.file = None;
                self.aside_on_open = true;
            }
            return Err(e);
        }
        self.file_len += batch.buf.len() as u64;
        if self.first_seq.is_none() {
            self.first_seq = Some(batch.start.next_seq);
        }
        self.state = batch.state;
        self.unsynced = true;
        self.metrics.audit.written(batch.requests);
        let n = batch.entries;
        *batch = Batch::new(self.state);
        Ok(n)
    }

    /// Seal the current file, fsync it, rename it aside and prune old rotated files. The
    /// next commit opens a fresh file. A failed rename leaves the sealed file in place and
    /// writing goes on in it (retried after `ROTATE_BACKOFF`).
    fn rotate(&mut self) -> io::Result<()> {
        let mut seal = Batch::new(self.state);
        seal.push(
            Held::Seal { reason: "rotate" }.line(&self.hasher, &self.state),
            false,
        );
        self.commit(&mut seal)?;
        self.sync();
        self.file = None;
        let current = self.files.current().to_owned();
        let aside = self
            .files
            .free_name(self.first_seq.unwrap_or(self.state.next_seq));
        if let Err(e) = fs::rename(&current, &aside) {
            self.metrics.audit.rotate_failed();
            tracing::error!(file = %current.display(), error = %e,
                "audit: cannot rotate the log; writing on in the current file");
            self.rotate_not_before = Some(Instant::now() + ROTATE_BACKOFF);
            return Ok(());
        }
        self.rotate_not_before = None;
        self.metrics.audit.rotated();
        self.first_seq = None;
        self.file_len = 0;
        // The rename itself is made durable by syncing the directory.
        if let Err(e) = File::open(self.files.dir()).and_then(|d| d.sync_all()) {
            self.metrics.audit.sync_failed();
            tracing::warn!(error = %e, "audit: cannot fsync the log's directory");
        }
        match self.files.prune(self.max_files) {
            Ok(deleted) => {
                for path in deleted {
                    tracing::info!(file = %path.display(), "audit: deleted (audit.max_files)");
                }
            }
            Err(e) => {
                self.metrics.audit.rotate_failed();
                tracing::error!(error = %e, "audit: cannot delete old rotated files");
            }
        }
        Ok(())
    }

    /// fsync the current file (errors are counted and logged, never fatal).
    pub fn sync(&mut self) {
        if let Some(file) = &self.file {
            if let Err(e) = file.sync_data() {
                self.metrics.audit.sync_failed();
                tracing::error!(error = %e, "audit: fsync failed");
            }
        }
        self.unsynced = false;
        self.last_sync = Instant::now();
    }

    /// Lines have reached the OS since the last fsync.
    pub fn unsynced(&self) -> bool {
        self.unsynced
    }

    /// Unsynced lines, and the last fsync was `SYNC_INTERVAL` ago.
    pub fn sync_due(&self) -> bool {
        self.unsynced && self.last_sync.elapsed() >= SYNC_INTERVAL
    }

    #[cfg(test)]
    pub(super) fn replace_file(&mut self, file: File) -> Option<File> {
        self.file.replace(file)
    }
}
