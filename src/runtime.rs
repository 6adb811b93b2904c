//! Worker threads: each client-serving thread runs its own single-threaded tokio runtime.
//!
//! This is nginx's worker model in one process. A request's client connection, the upstream
//! connection it is forwarded on and every wakeup between them stay on one thread: no
//! work-stealing, no cross-thread wakeups (futex and eventfd writes), no cache lines moving
//! between cores. An acceptor on the control runtime hands each new connection to the
//! least-loaded worker (`listener::distribute`). Workers share everything read-only (the
//! gateway, the policy; metrics are atomics); each has its own upstream connection pools,
//! chosen by [`slot`].
//!
//! Measured before the change with `benches/load/run.sh` and `perf stat` on the gateway
//! process: the multi-threaded runtime made ~8,700 context switches and spent 35 µs of CPU
//! per proxied request; a single-threaded one 1,200 and 27 µs.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

thread_local! {
    /// This thread's slot: `1..=workers` on worker threads, 0 on any other thread.
    static SLOT: Cell<usize> = const { Cell::new(0) };
}

/// The current thread's slot among per-worker resources: `1..=workers` on a worker thread,
/// 0 on any other thread (the control runtime: admin listener, health checks, tests).
pub fn slot() -> usize {
    SLOT.with(Cell::get)
}

/// Running worker threads.
pub struct Workers {
    threads: Vec<(JoinHandle<()>, oneshot::Receiver<()>)>,
}

impl Workers {
    /// Start one thread per job, each running `run(job)` to completion on its own
    /// single-threaded runtime. Runtimes are built before any thread starts, so that failing
    /// to build one (out of file descriptors, say) starts nothing. If starting a thread
    /// fails, the error is returned; threads already started end once their jobs do (a
    /// worker's job ends when the server's shutdown channel closes).
    pub fn spawn<T, F, Fut>(jobs: Vec<T>, run: F) -> io::Result<Workers>
    where
        T: Send + 'static,
        F: Fn(T) -> Fut + Send + Clone + 'static,
        Fut: Future<Output = ()>,
    {
        let runtimes = jobs
            .iter()
            .map(|_| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            })
            .collect::<io::Result<Vec<_>>>()?;
        // Workers log where the thread that started them logs (the global subscriber, or a
        // scoped one such as a test's).
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        let mut threads = Vec::with_capacity(jobs.len());
        for (index, (job, runtime)) in jobs.into_iter().zip(runtimes).enumerate() {
            let run = run.clone();
            let dispatch = dispatch.clone();
            let (done, finished) = oneshot::channel();
            let thread = std::thread::Builder::new()
                .name(format!("switchyard-worker-{}", index + 1))
                .spawn(move || {
                    let _logging = tracing::dispatcher::set_default(&dispatch);
                    SLOT.with(|slot| slot.set(index + 1));
                    runtime.block_on(run(job));
                    // Ends the worker's remaining tasks (idle upstream connections).
                    drop(runtime);
                    let _ = done.send(());
                })?;
            threads.push((thread, finished));
        }
        Ok(Workers { threads })
    }

    /// How many workers were started.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// Whether no worker was started.
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// Wait until every worker has finished (its jobs returned and its runtime shut down).
    pub async fn wait(self) {
        for (thread, finished) in self.threads {
            // An error means the thread ended without finishing: it panicked.
            let _ = finished.await;
            let name = thread.thread().name().unwrap_or("worker").to_owned();
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!(worker = %name, "worker thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn every_job_runs_on_its_own_numbered_worker() {
        assert_eq!(slot(), 0, "the test thread is not a worker");
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..3).map(|i| (i, seen.clone(), count.clone())).collect();
        let workers = Workers::spawn(
            jobs,
            |(i, seen, count): (usize, _, Arc<AtomicUsize>)| async move {
                // A task spawned from the job runs on the same worker.
                let inner = tokio::spawn(async { (slot(), std::thread::current().id()) })
                    .await
                    .unwrap();
                assert_eq!(inner, (slot(), std::thread::current().id()));
                seen.lock().unwrap().push((i, slot()));
                count.fetch_add(1, Ordering::SeqCst);
            },
        )
        .unwrap();
        assert_eq!(workers.len(), 3);
        workers.wait().await;
        assert_eq!(count.load(Ordering::SeqCst), 3);
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        assert_eq!(seen, vec![(0, 1), (1, 2), (2, 3)]);
    }
}
