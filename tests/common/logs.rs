//! Captured `tracing` output: a thread-local JSON subscriber whose lines tests can read
//! (access-log lines, warnings from background tasks).

use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::{eventually, SOON};

/// Captured JSON log lines.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Install a JSON subscriber for this thread; keep the guard alive for the test.
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        self.install_with("switchyard::access=info")
    }

    /// Install a JSON subscriber with this filter for this thread.
    pub fn install_with(&self, filter: &str) -> tracing::subscriber::DefaultGuard {
        let sink = self.0.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(move || CaptureWriter(sink.clone()))
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    /// Every captured line.
    pub fn all_lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect()
    }

    /// Every access-log line.
    pub fn lines(&self) -> Vec<Value> {
        self.all_lines()
            .into_iter()
            .filter(|v| v["target"] == "switchyard::access")
            .collect()
    }

    /// The one line of the request with this id, waiting for it up to [`SOON`].
    pub async fn line(&self, request_id: &str) -> Value {
        let found = eventually(SOON, || async {
            self.lines().iter().any(|l| l["request_id"] == request_id)
        })
        .await;
        let lines = self.lines();
        assert!(
            found,
            "no access-log line for {request_id}; lines: {lines:#?}"
        );
        let mine: Vec<&Value> = lines
            .iter()
            .filter(|l| l["request_id"] == request_id)
            .collect();
        assert_eq!(mine.len(), 1, "exactly one line per request: {mine:#?}");
        mine[0].clone()
    }
}
