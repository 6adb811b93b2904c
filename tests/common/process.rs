//! The real binary as a child process: `switchyard serve` on a temporary config file, its
//! JSON log lines (stdout) collected on a thread, signals sent with `kill`, and its exit
//! awaited with a deadline.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `switchyard` binary Cargo built for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// A temporary `.toml` file holding `text`.
pub fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.flush().unwrap();
    f
}

/// Every line the child has written to stdout so far; appended to by a reader thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<(Mutex<LinesState>, Condvar)>);

#[derive(Default)]
struct LinesState {
    lines: Vec<String>,
    closed: bool,
}

impl Lines {
    /// Every line so far.
    pub fn all(&self) -> Vec<String> {
        self.0 .0.lock().unwrap().lines.clone()
    }

    /// Every line so far that is a JSON object.
    pub fn json(&self) -> Vec<Value> {
        self.all()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect()
    }

    /// The first JSON line (from the start of the output) for which `matches` holds, waiting
    /// for it up to `timeout`; `None` if none came (or stdout closed first).
    pub fn wait_json(&self, timeout: Duration, matches: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.0;
        let mut state = lock.lock().unwrap();
        let mut seen = 0;
        loop {
            for line in &state.lines[seen..] {
                if let Ok(v) = serde_json::from_str::<Value>(line) {
                    if matches(&v) {
                        return Some(v);
                    }
                }
            }
            seen = state.lines.len();
            let left = deadline.saturating_duration_since(Instant::now());
            if state.closed || left.is_zero() {
                return None;
            }
            state = cvar.wait_timeout(state, left).unwrap().0;
        }
    }

    /// As [`Lines::wait_json`], for a line whose `message` is `message`; panics with the
    /// output so far if none comes.
    pub fn wait_message(&self, message: &str, timeout: Duration) -> Value {
        self.wait_json(timeout, |v| v["message"] == message)
            .unwrap_or_else(|| {
                panic!(
                    "no log line {message:?} within {timeout:?}; output so far:\n{}",
                    self.all().join("\n")
                )
            })
    }

    fn push(&self, line: String) {
        let (lock, cvar) = &*self.0;
        lock.lock().unwrap().lines.push(line);
        cvar.notify_all();
    }

    fn close(&self) {
        let (lock, cvar) = &*self.0;
        lock.lock().unwrap().closed = true;
        cvar.notify_all();
    }
}

/// A running `switchyard serve`. Killed on drop if it is still running, so that a failed
/// test leaves no process behind.
pub struct Gateway {
    child: Child,
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub lines: Lines,
}

impl Gateway {
    /// Start `switchyard serve --config <path>` (the config must set `[log] format =
    /// "json"`) and wait for its "switchyard listening" line, which names the bound
    /// addresses.
    pub fn serve(config: &Path) -> Gateway {
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Lines::default();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.push(line);
            }
            sink.close();
        });
        let mut gateway = Gateway {
            child,
            proxy_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            admin_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            lines,
        };
        let listening = gateway
            .lines
            .wait_message("switchyard listening", Duration::from_secs(20));
        let addr = |key: &str| -> SocketAddr {
            listening[key]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {listening}"))
        };
        gateway.proxy_addr = addr("proxy_addr");
        gateway.admin_addr = addr("admin_addr");
        gateway
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send `signal` ("TERM", "HUP", "INT") with `kill`.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {} failed", self.pid());
    }

    /// The exit status if the process has ended, without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Wait for the process to end, checking every 10 ms up to `timeout`; `None` if it is
    /// still running then.
    pub async fn exit_within(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
