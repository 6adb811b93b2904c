//! The queue between requests and the file: `AuditLog::reserve` takes a place when a request
//! starts, `AuditSlot::write` hands the record over without blocking, and a dedicated thread
//! appends what arrives (`appender.rs`).

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::{self, OwnedPermit};
use tokio::sync::watch;

use super::appender::{Appender, DropReason, Held, SYNC_INTERVAL};
use super::{AuditError, AuditRecord, AuditSettings, OnFull};
use crate::metrics::Metrics;

/// Records written with one `write`, at most.
const MAX_BATCH: usize = 1024;
/// A failed write is retried after this long.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);
/// While closing, a write that keeps failing is given up after this many attempts.
const CLOSE_RETRIES: u32 = 3;

enum Msg {
    Record(Box<AuditRecord>),
    /// `close()` was called: take no more places, write what is queued, seal.
    Close,
}

/// What requests and the writer thread share.
struct Shared {
    closing: AtomicBool,
    /// Records given a place and not yet written (or given up on): in slots still held, in
    /// the queue, or held by the writer. What a close that does not finish in time may lose.
    unwritten: AtomicU64,
    /// Queue-full drops not yet written to the log as a `dropped` line.
    unlogged_drops: AtomicU64,
    metrics: Arc<Metrics>,
}

struct Inner {
    sender: mpsc::Sender<Msg>,
    /// `Msg::Close` is in the queue (or the writer is gone). A `close()` abandoned while
    /// waiting for a place for it (`close_within`) leaves this false for the next one.
    close_sent: AtomicBool,
    on_full: OnFull,
    shared: Arc<Shared>,
    done: watch::Receiver<bool>,
}

/// The audit log: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("on_full", &self.inner.on_full)
            .field(
                "closing",
                &self.inner.shared.closing.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

/// A place in the queue. Dropping it unused gives the place back.
pub struct AuditSlot {
    permit: Option<OwnedPermit<Msg>>,
    shared: Arc<Shared>,
}

impl fmt::Debug for AuditSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditSlot")
            .field("used", &self.permit.is_none())
            .finish()
    }
}

impl AuditSlot {
    /// Hand the record to the writer: never blocks, never fails.
    pub fn write(mut self, record: AuditRecord) {
        if let Some(permit) = self.permit.take() {
            // The writer takes the depth back down when it receives the record.
            permit.send(Msg::Record(Box::new(record)));
        }
    }
}

impl Drop for AuditSlot {
    fn drop(&mut self) {
        if self.permit.take().is_some() {
            self.shared.metrics.audit.queue_depth().dec();
            self.shared.unwritten.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl AuditLog {
    /// Open (or resume: continue seq and chain from the last complete record of an existing
    /// file) and start the writer thread. The `start` line is written before this returns, so
    /// an unwritable path fails here, at startup.
    pub fn open(settings: AuditSettings, metrics: Arc<Metrics>) -> Result<AuditLog, AuditError> {
        if settings.queue == 0 {
            return Err(AuditError::ZeroQueue);
        }
        let appender = Appender::open(&settings, metrics.clone())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(AuditError::Thread)?;
        let (sender, receiver) = mpsc::channel(settings.queue);
        let (done_tx, done) = watch::channel(false);
        let shared = Arc::new(Shared {
            closing: AtomicBool::new(false),
            unwritten: AtomicU64::new(0),
            unlogged_drops: AtomicU64::new(0),
            metrics,
        });
        let worker = Worker {
            appender,
            shared: shared.clone(),
            held: Vec::new(),
            lost: 0,
            gave_up: false,
        };
        std::thread::Builder::new()
            .name("switchyard-audit".to_owned())
            .spawn(move || {
                runtime.block_on(worker.run(receiver));
                let _ = done_tx.send(true);
            })
            .map_err(AuditError::Thread)?;
        Ok(AuditLog {
            inner: Arc::new(Inner {
                sender,
                close_sent: AtomicBool::new(false),
                on_full: settings.on_full,
                shared,
                done,
            }),
        })
    }

    /// A place in the queue, taken when a request starts. `Block` waits for room; `Drop`
    /// returns `None` at once when the queue is full (counted, and noted in the log as a
    /// `dropped` line). `None` too once the log is closing.
    pub async fn reserve(&self) -> Option<AuditSlot> {
        let shared = &self.inner.shared;
        let metrics = &shared.metrics.audit;
        if shared.closing.load(Ordering::Acquire) {
            metrics.dropped_closed();
            return None;
        }
        let sender = self.inner.sender.clone();
        let permit = match self.inner.on_full {
            OnFull::Block => sender.reserve_owned().await.ok(),
            OnFull::Drop => match sender.try_reserve_owned() {
                Ok(permit) => Some(permit),
                Err(TrySendError::Full(_)) => {
                    metrics.dropped_queue_full();
                    shared.unlogged_drops.fetch_add(1, Ordering::AcqRel);
                    return None;
                }
                Err(TrySendError::Closed(_)) => None,
            },
        };
        let Some(permit) = permit else {
            metrics.dropped_closed();
            return None;
        };
        metrics.queue_depth().inc();
        shared.unwritten.fetch_add(1, Ordering::AcqRel);
        Some(AuditSlot {
            permit: Some(permit),
            shared: shared.clone(),
        })
    }

    /// Stop taking records, write everything queued (and every record of a slot still held),
    /// seal, fsync, and return when the writer is done. Idempotent; unbounded (a hung disk
    /// keeps it waiting): see [`AuditLog::close_within`].
    pub async fn close(&self) {
        let inner = &self.inner;
        inner.shared.closing.store(true, Ordering::Release);
        if !inner.close_sent.load(Ordering::Acquire) {
            // Err: the writer is already gone. Two closes at once may both send it: the
            // second `Close` finds the queue closed, or is read as a no-op.
            let _ = inner.sender.send(Msg::Close).await;
            inner.close_sent.store(true, Ordering::Release);
        }
        let mut done = inner.done.clone();
        // Err: the writer thread ended without saying so; nothing left to wait for.
        let _ = done.wait_for(|done| *done).await;
    }

    /// [`AuditLog::close`], waiting at most `limit` (a write or fsync that hangs: a stuck
    /// disk, an NFS server gone). `true` if the writer finished (the log is sealed and
    /// fsynced); otherwise logs an error saying how many records may be lost, and returns
    /// `false` — the writer thread goes on trying until the process exits, and a later
    /// `close` or `close_within` waits for it again.
    pub async fn close_within(&self, limit: Duration) -> bool {
        if tokio::time::timeout(limit, self.close()).await.is_ok() {
            return true;
        }
        let records = self.inner.shared.unwritten.load(Ordering::Acquire);
        tracing::error!(
            limit = ?limit,
            records,
            "audit: the writer did not finish within {limit:?} (a write or fsync hanging?): \
             {records} record(s) not yet written may be lost, and the log is not sealed"
        );
        false
    }
}

/// The writer thread's state.
struct Worker {
    appender: Appender,
    shared: Arc<Shared>,
    /// Received, not yet written (kept across failed writes).
    held: Vec<Held>,
    /// Records given up on (write errors while closing), not yet noted in the log.
    lost: u64,
    /// While closing, the disk failed `CLOSE_RETRIES` times: give up on each failed batch.
    gave_up: bool,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut failures = 0u32;
        loop {
            if self.held.is_empty() {
                let msg = if self.appender.unsynced() {
                    match tokio::time::timeout(SYNC_INTERVAL, rx.recv()).await {
                        Ok(msg) => msg,
                        Err(_idle) => {
                            self.appender.sync();
                            continue;
                        }
                    }
                } else {
                    rx.recv().await
                };
                let Some(msg) = msg else { break };
                self.take(msg, &mut rx);
                while self.held.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(msg) => self.take(msg, &mut rx),
                        Err(_) => break,
                    }
                }
            }
            match self.write_held() {
                Ok(()) => {
                    failures = 0;
                    if self.appender.sync_due() {
                        self.appender.sync();
                    }
                }
                Err(e) => {
                    failures += 1;
                    let closing = self.shared.closing.load(Ordering::Acquire);
                    if closing && (self.gave_up || failures >= CLOSE_RETRIES) {
                        self.give_up(&e);
                        failures = 0;
                    } else {
                        tracing::error!(error = %e, attempt = failures, pending = self.held.len(),
                            "audit: cannot write the log; retrying every second");
                        tokio::time::sleep(RETRY_INTERVAL).await;
                    }
                }
            }
        }
        self.finish().await;
    }

    fn take(&mut self, msg: Msg, rx: &mut mpsc::Receiver<Msg>) {
        match msg {
            Msg::Record(record) => {
                self.shared.metrics.audit.queue_depth().dec();
                self.held.push(Held::Record(record));
            }
            // Outstanding slots can still send; `recv` returns `None` once they are done.
            Msg::Close => rx.close(),
        }
    }

    /// Write what is held, after a `dropped` line for any records lost since the last one.
    fn write_held(&mut self) -> io::Result<()> {
        let queue_full = self.shared.unlogged_drops.swap(0, Ordering::AcqRel);
        if queue_full > 0 {
            self.held.insert(
                0,
                Held::Dropped {
                    count: queue_full,
                    reason: DropReason::QueueFull,
                },
            );
        }
        if self.lost > 0 {
            self.held.insert(
                0,
                Held::Dropped {
                    count: self.lost,
                    reason: DropReason::WriteError,
                },
            );
            self.lost = 0;
        }
        let (done, result) = self.appender.append(&self.held);
        let written = self
            .held
            .drain(..done.min(self.held.len()))
            .filter(|held| matches!(held, Held::Record(_)))
            .count() as u64;
        self.shared.unwritten.fetch_sub(written, Ordering::AcqRel);
        result
    }

    /// Closing, and the disk keeps failing: drop what is held so that close() returns.
    fn give_up(&mut self, error: &io::Error) {
        let mut records = 0;
        for held in self.held.drain(..) {
            match held {
                Held::Record(_) => records += 1,
                Held::Dropped {
                    count,
                    reason: DropReason::QueueFull,
                } => {
                    self.shared
                        .unlogged_drops
                        .fetch_add(count, Ordering::AcqRel);
                }
                Held::Dropped {
                    count,
                    reason: DropReason::WriteError,
                } => self.lost += count,
                Held::Start { .. } | Held::Seal { .. } => {}
            }
        }
        self.lost += records;
        self.shared.unwritten.fetch_sub(records, Ordering::AcqRel);
        self.gave_up = true;
        self.shared.metrics.audit.dropped_on_write_error(records);
        tracing::error!(error = %error, records,
            "audit: closing, and the log cannot be written: records lost");
    }

    /// The queue is closed and empty: seal the file and fsync it.
    async fn finish(&mut self) {
        self.held.push(Held::Seal { reason: "close" });
        for attempt in 1..=CLOSE_RETRIES {
            match self.write_held() {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(error = %e, attempt, "audit: cannot seal the log");
                    if attempt < CLOSE_RETRIES {
                        tokio::time::sleep(RETRY_INTERVAL).await;
                    }
                }
            }
        }
        self.appender.sync();
    }
}
