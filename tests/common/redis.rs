//! A throwaway `redis-server` for integration tests: its own process on a unix socket in a
//! temporary directory (no TCP port, nothing saved), killed when the guard is dropped.
//!
//! Several gateways (or `AffinityTable`s) can share one server through [`RedisServer::url`];
//! [`RedisServer::kill`] and [`RedisServer::restart`] simulate an outage on the same socket
//! path, [`RedisServer::pause`] and [`RedisServer::resume`] a hung server.
//! [`RedisServer::query`] talks to it directly (`TTL key`, `GET key`, ...).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a fresh server may take to answer PING.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// A running `redis-server`, killed on drop.
pub struct RedisServer {
    dir: TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Start `redis-server` (from PATH) and wait until it answers PING.
    pub fn start() -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("switchyard-redis-")
            .tempdir()
            .unwrap();
        let mut server = RedisServer { dir, child: None };
        server.spawn();
        server
    }

    /// The URL for the redis crate (and `affinity.store.url`): `redis+unix:///…/redis.sock`.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket_path().display())
    }

    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// Whether the server is running (started and not killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kill the server (SIGKILL) and wait for it; the socket path stays for [`Self::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freeze the server (SIGSTOP): connections stay open but nothing is answered, the way a
    /// hung or overloaded Redis behaves.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Undo [`Self::pause`] (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("redis-server is running");
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {}: {status}", child.id());
    }

    /// Start the server again on the same socket path (after [`Self::kill`]), empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Send one command and return the reply, e.g. `query::<i64>(&["TTL", "k"])`.
    pub fn query<T: ::redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let client = ::redis::Client::open(self.url()).unwrap();
        let mut conn = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.url()));
        let mut cmd = ::redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query(&mut conn)
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    fn spawn(&mut self) {
        let socket = self.socket_path();
        let log_path = self.dir.path().join("redis.log");
        let log = File::create(&log_path).unwrap();
        let child = Command::new("redis-server")
            .arg("--port")
            .arg("0")
            .arg("--unixsocket")
            .arg(&socket)
            .arg("--unixsocketperm")
            .arg("700")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--daemonize")
            .arg("no")
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server not found: `.ci/run` installs it (apt-get install redis-server)"
            ),
            Err(e) => panic!("starting redis-server: {e}"),
        };
        self.child = Some(child);
        self.wait_ready(&log_path);
    }

    /// Poll PING on the socket until it answers, or fail with the server's log.
    fn wait_ready(&mut self, log_path: &Path) {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if self.ping() {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "redis-server exited with {status} before answering:\n{}",
                        std::fs::read_to_string(log_path).unwrap_or_default()
                    );
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "redis-server did not answer PING on {} within {START_DEADLINE:?}:\n{}",
                    self.socket_path().display(),
                    std::fs::read_to_string(log_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn ping(&self) -> bool {
        let Ok(client) = ::redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(1)) else {
            return false;
        };
        ::redis::cmd("PING")
            .query::<String>(&mut conn)
            .is_ok_and(|pong| pong == "PONG")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
