//! One writer per log: an exclusive advisory lock (`flock(LOCK_EX | LOCK_NB)`) on
//! `<audit.path>.lock`, held for as long as the writer runs. Two writers on one file (a restart
//! that overlaps the old process, two pods on one volume) would fork the chain; the second
//! one fails at open instead.
//!
//! The kernel drops the lock when the process dies, so a crash leaves no stale lock (only the
//! file, which the next writer reuses). A clean close removes the file, while still holding
//! the lock; a writer that opened the old file just before that finds, once it has the lock,
//! that the path no longer names the file it locked, and starts over.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use super::AuditError;

/// Tries when the lock file keeps being replaced under us (each try is a few syscalls).
const ATTEMPTS: u32 = 8;

/// The lock, held until dropped.
#[derive(Debug)]
pub struct WriterLock {
    path: PathBuf,
    file: File,
}

/// `<log>.lock`, next to the log.
pub fn lock_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl WriterLock {
    /// Take the lock for the log at `log`, or fail at once if another writer holds it.
    pub fn acquire(log: &Path) -> Result<WriterLock, AuditError> {
        let path = lock_path(log);
        for _ in 0..ATTEMPTS {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| AuditError::io(&path, e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(AuditError::InUse {
                        path: log.to_owned(),
                        lock: path,
                    })
                }
                Err(TryLockError::Error(e)) => return Err(AuditError::io(&path, e)),
            }
            if !names_file(&path, &file).map_err(|e| AuditError::io(&path, e))? {
                // Removed (or replaced) by the writer before us between our open and our lock.
                continue;
            }
            // For whoever looks: which process holds it. Not needed for the lock itself.
            let _ = file
                .set_len(0)
                .and_then(|()| writeln!(file, "{}", std::process::id()));
            return Ok(WriterLock { path, file });
        }
        Err(AuditError::io(
            &path,
            io::Error::other("the lock file keeps being replaced by another process"),
        ))
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        // Removed while still locked (the file closes, and unlocks, after this); only if the
        // path still names our file.
        if names_file(&self.path, &self.file).unwrap_or(false) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Whether `path` names the open `file` (and not another file, or none).
#[cfg(unix)]
fn names_file(path: &Path, file: &File) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt as _;
    let open = file.metadata()?;
    match fs::metadata(path) {
        Ok(named) => Ok(named.dev() == open.dev() && named.ino() == open.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Elsewhere: no inode to compare; the path existing is the best check there is.
#[cfg(not(unix))]
fn names_file(path: &Path, _file: &File) -> io::Result<bool> {
    match fs::metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_exclusive_and_its_file_goes_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let lock = lock_path(&log);
        assert_eq!(lock, dir.path().join("audit.jsonl.lock"));
        let held = WriterLock::acquire(&log).unwrap();
        assert_eq!(
            fs::read_to_string(&lock).unwrap(),
            format!("{}\n", std::process::id())
        );
        let err = WriterLock::acquire(&log).unwrap_err();
        assert!(matches!(err, AuditError::InUse { .. }), "{err}");
        drop(held);
        assert!(!lock.exists());
        let again = WriterLock::acquire(&log).unwrap();
        drop(again);
    }

    #[test]
    fn a_lock_file_left_by_a_crash_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        fs::write(lock_path(&log), b"12345\n").unwrap();
        let held = WriterLock::acquire(&log).unwrap();
        drop(held);
        assert!(!lock_path(&log).exists());
    }

    #[test]
    fn a_lock_whose_file_was_replaced_does_not_remove_the_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let held = WriterLock::acquire(&log).unwrap();
        // Someone removed the lock file by hand and another writer took a new one.
        fs::remove_file(lock_path(&log)).unwrap();
        let other = WriterLock::acquire(&log).unwrap();
        drop(held);
        assert!(
            lock_path(&log).exists(),
            "the other writer's lock file is kept"
        );
        assert!(matches!(
            WriterLock::acquire(&log),
            Err(AuditError::InUse { .. })
        ));
        drop(other);
        assert!(!lock_path(&log).exists());
    }
}
