//! A built-in mock OpenAI-compatible LLM provider on loopback: used by `switchyard demo`, as a
//! recording upstream in the integration tests, and (with recording off) in load benchmarks.
//!
//! The mock serves HTTP/1.1 and HTTP/2 cleartext (prior knowledge), or, with
//! [`MockOptions::with_tls`], HTTPS with whatever ALPN protocols and client-certificate rule the
//! given rustls config sets. It answers the OpenAI routes
//! the gateway cares about (chat completions, responses, conversations, embeddings, files,
//! models) with shapes the official SDKs parse, including SSE streams. Everything else gets a
//! JSON echo; a WebSocket handshake on `/realtime` or `/responses` gets an echo session
//! (`websocket.rs`). Every request is recorded (method, path and query, version, headers,
//! exact body bytes) unless [`MockOptions::record`] is off.
//!
//! Test controls (request headers, all optional; bad values are ignored):
//!
//! | Header | Effect |
//! |---|---|
//! | `x-mock-status: <code>` | answer with that status (200..=599) and an OpenAI-style error body |
//! | `x-mock-delay-ms: <ms>` | wait before sending the response head |
//! | `x-mock-chunk-delay-ms: <ms>` | delay between SSE events (default [`MockOptions::stream_delay`]) |
//! | `x-mock-chunks: <n>` | number of content tokens (stream deltas), default 5, at most 10 000 |
//! | `x-mock-hold: 1` | send the head and the first body frame, then hold until the client goes away |
//! | `x-mock-response-bytes: <n>` | 200 with exactly `n` pattern bytes (`byte[i] = i % 256`), at most 64 MiB |
//!
//! Every response carries `x-mock-provider: <name>`, `x-mock-request-id: <uuid>` and, when the
//! request had one, `x-request-id` echoed.

mod body;
mod openai;
mod record;
mod routes;
mod server;
#[cfg(test)]
mod tests;
mod websocket;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use record::RecordedRequest;

use server::Shared;

/// Options for one mock provider.
#[derive(Clone, Debug)]
pub struct MockOptions {
    /// Name reported in `x-mock-provider` and in generated content ("primary", "secondary").
    pub name: String,
    /// Record every request (head, then body). Off for load benchmarks.
    pub record: bool,
    /// Default delay between SSE events when the request has no `x-mock-chunk-delay-ms`
    /// (zero for tests; the demo uses a few tens of milliseconds so streaming is visible).
    pub stream_delay: Duration,
    /// Serve HTTPS with this config instead of cleartext. Its ALPN list decides whether
    /// clients may pick h2; a client verifier in it makes client certificates required.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` advertised to HTTP/2 clients (default 1,000).
    pub h2_max_streams: u32,
}

impl MockOptions {
    /// Options with the given name, recording on, no stream delay.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            record: true,
            stream_delay: Duration::ZERO,
            tls: None,
            h2_max_streams: 1_000,
        }
    }

    /// Turn recording on or off.
    #[must_use]
    pub fn with_record(mut self, record: bool) -> Self {
        self.record = record;
        self
    }

    /// Serve HTTPS with this rustls config (TLS handshake, then HTTP/1.1 or h2 by ALPN).
    #[must_use]
    pub fn with_tls(mut self, config: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Advertise this many concurrent streams to HTTP/2 clients.
    #[must_use]
    pub fn with_h2_max_streams(mut self, streams: u32) -> Self {
        self.h2_max_streams = streams;
        self
    }

    /// Set the default delay between SSE events.
    #[must_use]
    pub fn with_stream_delay(mut self, delay: Duration) -> Self {
        self.stream_delay = delay;
        self
    }
}

impl Default for MockOptions {
    fn default() -> Self {
        Self::new("mock")
    }
}

/// A running mock provider. Dropping it (or calling [`MockProvider::shutdown`]) stops the
/// listener and ends every connection and stream task it started.
pub struct MockProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
}

impl MockProvider {
    /// Bind `addr` (port 0 picks a free port) and start serving.
    pub async fn start(addr: SocketAddr, opts: MockOptions) -> std::io::Result<MockProvider> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(&opts));
        let (cancel, cancel_rx) = watch::channel(false);
        let tls = opts.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let accept = tokio::spawn(server::accept_loop(
            listener,
            tls,
            Arc::clone(&shared),
            cancel_rx,
        ));
        tracing::debug!(name = %opts.name, %addr, "mock provider listening");
        Ok(MockProvider {
            addr,
            shared,
            cancel,
            accept: Some(accept),
        })
    }

    /// The bound address (with the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The provider's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Base URL for OpenAI clients, e.g. `http://127.0.0.1:41234/v1` (`https://` with TLS).
    pub fn base_url(&self) -> String {
        let scheme = if self.shared.tls { "https" } else { "http" };
        format!("{scheme}://{}/v1", self.addr)
    }

    /// TLS handshakes that failed (the client did not trust us, sent no certificate when one
    /// is required, ...): connections that never got to send a request.
    pub fn tls_handshake_failures(&self) -> u64 {
        self.shared.tls_failures.load(Ordering::Relaxed)
    }

    /// Snapshot of the recorded requests, in order of arrival of their heads.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.recorder.snapshot()
    }

    /// Number of recorded requests (`requests().len()`).
    pub fn request_count(&self) -> usize {
        self.shared.recorder.len()
    }

    /// Number of requests served since start, counted even when recording is off;
    /// not reset by [`MockProvider::clear`].
    pub fn served_count(&self) -> u64 {
        self.shared.served.load(Ordering::Relaxed)
    }

    /// Forget the recorded requests (requests still in flight keep updating nothing).
    pub fn clear(&self) {
        self.shared.recorder.clear();
    }

    /// Wait until at least `n` requests were recorded (their heads arrived), or `timeout`
    /// passed; returns the snapshot either way. A request's body is filled in once it has
    /// fully arrived; use [`MockProvider::wait_until`] to wait for that or for `finished`.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<RecordedRequest> {
        self.wait_until(timeout, |reqs| reqs.len() >= n).await
    }

    /// Wait until `done` holds for the recorded requests, or `timeout` passed; returns the
    /// snapshot either way. `done` runs under the recorder's lock at every change: keep it short.
    pub async fn wait_until<F>(&self, timeout: Duration, done: F) -> Vec<RecordedRequest>
    where
        F: Fn(&[RecordedRequest]) -> bool,
    {
        let recorder = &self.shared.recorder;
        let wait = async {
            loop {
                let notified = recorder.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(snapshot) = recorder.snapshot_if(&done) {
                    return snapshot;
                }
                notified.await;
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(snapshot) => snapshot,
            Err(_) => recorder.snapshot(),
        }
    }

    /// Stop accepting, end every connection and stream task, and wait for them to finish.
    pub async fn shutdown(mut self) {
        self.cancel.send_replace(true);
        if let Some(accept) = self.accept.take() {
            // The accept loop ends its connection tasks before it returns.
            let _ = accept.await;
        }
    }
}

impl std::fmt::Debug for MockProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockProvider")
            .field("name", &self.shared.name)
            .field("addr", &self.addr)
            .field("record", &self.shared.record)
            .finish_non_exhaustive()
    }
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        self.cancel.send_replace(true);
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
    }
}
