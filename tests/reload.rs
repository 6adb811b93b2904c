//! Hot reload: `POST /reload` (and the file watch) swap in a new config atomically; requests
//! in flight finish under the config that decided them; a bad file changes nothing; settings
//! bound at startup are reported as needing a restart; unchanged upstreams keep their client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{full, metric, HttpClient, Reply, SOON};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard::config::{sha256_hex, Config};
use switchyard::mock::{MockOptions, MockProvider};
use switchyard::server::ServerHandle;

/// Two mocks and a gateway started from a config file in a temporary directory.
struct FileGateway {
    primary: MockProvider,
    secondary: MockProvider,
    gateway: ServerHandle,
    client: HttpClient,
    admin: SocketAddr,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

/// What every config of these tests sets beside the harness template: two worker threads
/// (so that a reload to three is a restart-only change).
const WORKERS: &str = "[server]\nworkers = 2";

/// An operator rule named `name` deciding `class` for requests carrying `x-probe`.
fn probe_rule(name: &str, class: &str) -> String {
    format!(
        r#"
[[rules]]
name = "{name}"
class = "{class}"
header_present = ["x-probe"]
"#
    )
}

impl FileGateway {
    async fn start(extra: &str) -> FileGateway {
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let primary = MockProvider::start(local, MockOptions::new("primary"))
            .await
            .unwrap();
        let secondary = MockProvider::start(local, MockOptions::new("secondary"))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchyard.toml");
        let text = common::config_text(primary.addr(), secondary.addr(), &[WORKERS, extra]);
        std::fs::write(&path, text).unwrap();
        let config = Config::load(&path).unwrap();
        let gateway = switchyard::server::start(config).await.unwrap();
        FileGateway {
            client: HttpClient::http1(gateway.proxy_addr),
            admin: gateway.admin_addr,
            primary,
            secondary,
            gateway,
            path,
            _dir: dir,
        }
    }

    /// Write `text` as the config file; returns its SHA-256.
    fn write(&self, text: &str) -> String {
        write_atomically(&self.path, text);
        sha256_hex(text.as_bytes())
    }

    /// The config text with `extra` merged over the template, for this gateway's mocks.
    fn text(&self, extra: &str) -> String {
        self.text_with(&[extra])
    }

    /// The config text with each of `overrides` merged over the template in turn.
    fn text_with(&self, overrides: &[&str]) -> String {
        let mut all = vec![WORKERS];
        all.extend_from_slice(overrides);
        common::config_text(self.primary.addr(), self.secondary.addr(), &all)
    }

    async fn post_reload(&self) -> (StatusCode, Value) {
        let reply = HttpClient::http1(self.admin)
            .call(Method::POST, "/reload", &[], Bytes::new())
            .await;
        let body: Value = serde_json::from_slice(&reply.body)
            .unwrap_or_else(|e| panic!("POST /reload answered non-JSON ({e}): {}", reply.text()));
        (reply.status, body)
    }

    async fn probe(&self) -> Reply {
        self.client
            .post_json_with(
                "/v1/chat/completions",
                &[("x-probe", "1")],
                json!({"model": "m", "messages": []}).to_string(),
            )
            .await
    }

    async fn stop(self) {
        self.gateway.shutdown().await;
        self.primary.shutdown().await;
        self.secondary.shutdown().await;
    }
}

/// Replace the file in one rename, as editors and ConfigMap updates do: a reader never sees
/// half a file.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn short(sha: &str) -> &str {
    &sha[..12]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_reloads_under_load_fail_no_request_and_each_is_decided_by_one_config() {
    let gw = FileGateway::start(&probe_rule("gen-a", "stateless")).await;
    let text_a = gw.text(&probe_rule("gen-a", "stateless"));
    let text_b = gw.text(&probe_rule("gen-b", "stateful"));
    let sha_a = sha256_hex(text_a.as_bytes());
    let sha_b = sha256_hex(text_b.as_bytes());
    assert_eq!(
        gw.probe().await.header("x-switchyard-config"),
        Some(short(&sha_a))
    );

    // Continuous load: four clients, each request checked against the config it names.
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let mut load = Vec::new();
    for _ in 0..4 {
        let client = gw.client.clone();
        let stop = stop.clone();
        let counts = counts.clone();
        let (a, b) = (short(&sha_a).to_owned(), short(&sha_b).to_owned());
        load.push(tokio::spawn(async move {
            let mut sent = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let req = client
                    .request(Method::POST, "/v1/chat/completions")
                    .header("content-type", "application/json")
                    .header("x-probe", "1")
                    .body(full(json!({"model": "m", "messages": []}).to_string()))
                    .unwrap();
                let reply = client.send(req).await;
                assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
                let config = reply.header("x-switchyard-config").unwrap().to_owned();
                let rule = reply.header("x-switchyard-rule").unwrap();
                let provider = reply.header("x-mock-provider").unwrap();
                // Decided by exactly one config: its rule, its class, its upstream.
                if config == a {
                    assert_eq!((rule, provider), ("gen-a", "primary"));
                    counts[0].fetch_add(1, Ordering::Relaxed);
                } else if config == b {
                    assert_eq!((rule, provider), ("gen-b", "secondary"));
                    counts[1].fetch_add(1, Ordering::Relaxed);
                } else {
                    panic!("a response names config {config}, neither {a} nor {b}");
                }
                sent += 1;
            }
            sent
        }));
    }

    for i in 0..100 {
        let (text, sha) = if i % 2 == 0 {
            (&text_b, &sha_b)
        } else {
            (&text_a, &sha_a)
        };
        gw.write(text);
        let (status, body) = gw.post_reload().await;
        assert_eq!(status, StatusCode::OK, "reload {i}: {body}");
        assert_eq!(body["sha256"], json!(sha), "reload {i}");
        // The upstream sections never change: their clients (connections, health) are kept.
        assert_eq!(
            body["upstreams_kept"],
            json!(["primary", "secondary"]),
            "{body}"
        );
        assert_eq!(body["restart_required"], json!([]), "{body}");
        // Let some traffic through under this config.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for task in load {
        total += task.await.expect("no request failed");
    }
    let (a, b) = (
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
    );
    assert_eq!(a + b, total);
    assert!(
        a > 0 && b > 0,
        "traffic saw both configs: {a} under A, {b} under B"
    );

    let scrape = common::metrics::scrape(gw.admin).await;
    metric("switchyard_config_reloads_total")
        .label("result", "success")
        .assert_value(&scrape, 100.0);
    metric("switchyard_config_reloads_total")
        .label("result", "error")
        .assert_value(&scrape, 0.0);
    // The 100th reload (i = 99) wrote config A.
    metric("switchyard_config_info")
        .label("sha256", &sha_a)
        .assert_value(&scrape, 1.0);
    assert_eq!(metric("switchyard_config_info").find(&scrape).len(), 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_file_changes_nothing_and_says_why() {
    let gw = FileGateway::start(&probe_rule("gen-a", "stateless")).await;
    let sha_a = sha256_hex(gw.text(&probe_rule("gen-a", "stateless")).as_bytes());

    // A file that parses but breaks a rule.
    let bad = gw.text_with(&[
        &probe_rule("gen-b", "stateful"),
        "[routing]\nstateless = \"nope\"",
    ]);
    gw.write(&bad);
    let (status, body) = gw.post_reload().await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["status"], "error");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("routing.stateless") && error.contains("\"nope\""),
        "the error names the key and the value: {error}"
    );

    // Not TOML at all.
    gw.write("[server\nlisten = ");
    let (status, body) = gw.post_reload().await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // No file.
    std::fs::remove_file(&gw.path).unwrap();
    let (status, body) = gw.post_reload().await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("cannot read config file"),
        "{body}"
    );

    // The old config still decides.
    let reply = gw.probe().await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-switchyard-rule"), Some("gen-a"));
    assert_eq!(reply.header("x-switchyard-config"), Some(short(&sha_a)));
    let scrape = common::metrics::scrape(gw.admin).await;
    metric("switchyard_config_reloads_total")
        .label("result", "error")
        .assert_value(&scrape, 3.0);
    metric("switchyard_config_reloads_total")
        .label("result", "success")
        .assert_value(&scrape, 0.0);
    metric("switchyard_config_info")
        .label("sha256", &sha_a)
        .assert_value(&scrape, 1.0);
    // GET is not a reload.
    let reply = HttpClient::http1(gw.admin)
        .call(Method::GET, "/reload", &[], Bytes::new())
        .await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_only_settings_are_reported_and_the_rest_applies() {
    let gw = FileGateway::start("").await;
    let changed = gw.text_with(&[
        &probe_rule("gen-b", "stateful"),
        "[server]\nworkers = 3",
        "[log]\nlevel = \"debug\"",
        // Connection limits are built into the listeners; the body limit is per request.
        "[limits]\nsend_timeout = \"5s\"\nunsent_buffer = 0\nmax_body_bytes = \"1 MiB\"",
    ]);
    gw.write(&changed);
    let (status, body) = gw.post_reload().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let pending: Vec<String> = serde_json::from_value(body["restart_required"].clone()).unwrap();
    assert_eq!(pending.len(), 4, "{pending:?}");
    assert!(
        pending[0].starts_with("server.workers: running 2, file says 3"),
        "{pending:?}"
    );
    assert_eq!(
        pending[1], "limits.send_timeout: running 60s, file says 5s",
        "{pending:?}"
    );
    assert_eq!(
        pending[2], "limits.unsent_buffer: running 16384, file says 0",
        "{pending:?}"
    );
    assert!(pending[3].starts_with("log.level:"), "{pending:?}");
    // The new rule is live all the same.
    let reply = gw.probe().await;
    assert_eq!(reply.header("x-switchyard-rule"), Some("gen-b"));
    assert_eq!(reply.header("x-mock-provider"), Some("secondary"));
    let scrape = common::metrics::scrape(gw.admin).await;
    metric("switchyard_config_restart_required").assert_value(&scrape, 1.0);

    // Back to what is running: nothing waits for a restart any more.
    gw.write(&gw.text(""));
    let (status, body) = gw.post_reload().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["restart_required"], json!([]));
    let scrape = common::metrics::scrape(gw.admin).await;
    metric("switchyard_config_restart_required").assert_value(&scrape, 0.0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_upstream_is_rebuilt_and_requests_in_flight_finish_under_their_config() {
    let gw = FileGateway::start("").await;
    let sha_old = sha256_hex(gw.text("").as_bytes());
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let third = MockProvider::start(local, MockOptions::new("third"))
        .await
        .unwrap();

    // A slow request is in flight when the reload lands.
    let slow = {
        let client = gw.client.clone();
        tokio::spawn(async move {
            client
                .post_json_with(
                    "/v1/chat/completions",
                    &[("x-mock-delay-ms", "600")],
                    json!({"model": "m", "messages": []}).to_string(),
                )
                .await
        })
    };
    gw.primary.wait_for_requests(1, SOON).await;

    let moved = gw.text(&format!(
        "[upstreams.primary]\nurl = \"http://{}/v1\"",
        third.addr()
    ));
    let sha_new = gw.write(&moved);
    let (status, body) = gw.post_reload().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["upstreams_rebuilt"], json!(["primary"]), "{body}");
    assert_eq!(body["upstreams_kept"], json!(["secondary"]), "{body}");

    // New requests go to the new endpoint under the new config...
    let reply = gw
        .client
        .post_json_with(
            "/v1/chat/completions",
            &[],
            json!({"model": "m", "messages": []}).to_string(),
        )
        .await;
    assert_eq!(reply.header("x-mock-provider"), Some("third"));
    assert_eq!(reply.header("x-switchyard-config"), Some(short(&sha_new)));
    // ...while the one in flight finished where it started, under the old one.
    let reply = slow.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-mock-provider"), Some("primary"));
    assert_eq!(reply.header("x-switchyard-config"), Some(short(&sha_old)));
    assert_eq!(gw.primary.request_count(), 1);
    third.shutdown().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_watch_reloads_when_the_content_changes() {
    let watch = "\n[reload]\nwatch = true\nwatch_interval = \"100ms\"\n";
    let gw = FileGateway::start(watch).await;
    let extra = format!("{watch}{}", probe_rule("gen-b", "stateful"));
    let sha = gw.write(&gw.text(&extra));
    let scrape = common::metrics::scrape_within(gw.admin, SOON, |s| {
        metric("switchyard_config_info")
            .label("sha256", &sha)
            .sum_in(s)
            == Some(1.0)
    })
    .await;
    metric("switchyard_config_info")
        .label("sha256", &sha)
        .assert_value(&scrape, 1.0);
    let reply = gw.probe().await;
    assert_eq!(reply.header("x-switchyard-rule"), Some("gen-b"));

    // A bad edit is tried once, not on every poll.
    gw.write("not = [toml");
    let scrape = common::metrics::scrape_within(gw.admin, SOON, |s| {
        metric("switchyard_config_reloads_total")
            .label("result", "error")
            .sum_in(s)
            == Some(1.0)
    })
    .await;
    metric("switchyard_config_reloads_total")
        .label("result", "error")
        .assert_value(&scrape, 1.0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let scrape = common::metrics::scrape(gw.admin).await;
    metric("switchyard_config_reloads_total")
        .label("result", "error")
        .assert_value(&scrape, 1.0);
    assert_eq!(gw.probe().await.header("x-switchyard-rule"), Some("gen-b"));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_started_from_text_has_nothing_to_reload() {
    let h = common::Harness::start().await;
    let reply = HttpClient::http1(h.admin_addr)
        .call(Method::POST, "/reload", &[], Bytes::new())
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT, "{}", reply.text());
    assert!(reply.text().contains("not started from a config file"));
    h.gateway.shutdown().await;
}

/// Certificate rotation: the files are replaced in place and a reload makes the next
/// handshakes present the new certificate; the TOML itself did not change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_rotates_the_listener_certificate() {
    use common::tls::{client_config_for, handshake_error, toml_path, Alpn, TestCerts, TlsClient};
    let certs = TestCerts::new();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("server.crt");
    let key = dir.path().join("server.key");
    std::fs::copy(&certs.trusted.server_cert, &cert).unwrap();
    std::fs::copy(&certs.trusted.server_key, &key).unwrap();
    let tls = format!(
        "\n[server.tls]\nlisten = \"127.0.0.1:0\"\ncert = {}\nkey = {}\n",
        toml_path(&cert),
        toml_path(&key)
    );
    let gw = FileGateway::start(&tls).await;
    let tls_addr = gw.gateway.tls_addr.unwrap();
    let old_ca = client_config_for(&certs.trusted, None);
    let new_ca = client_config_for(&certs.untrusted, None);
    let reply = TlsClient::new(tls_addr, old_ca.clone(), Alpn::Http1)
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "m", "messages": []}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);

    // The new certificate and key replace the old files; then a reload.
    std::fs::copy(&certs.untrusted.server_cert, &cert).unwrap();
    std::fs::copy(&certs.untrusted.server_key, &key).unwrap();
    let (status, body) = gw.post_reload().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["restart_required"], json!([]), "{body}");

    let reply = TlsClient::new(tls_addr, new_ca, Alpn::H2)
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "m", "messages": []}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let error = handshake_error(tls_addr, old_ca).await;
    assert!(
        error.contains("UnknownIssuer") || error.contains("certificate"),
        "a client trusting only the old CA is refused: {error}"
    );
    gw.stop().await;
}

/// Restart-only settings that hold secrets are reported without them: a Redis URL's password
/// and the audit key never reach the log or the `POST /reload` answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reports_never_show_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let audit = |key: &str| {
        format!(
            "[audit]\npath = {}\nkey = \"{key}\"\n",
            toml::Value::String(dir.path().join("audit.jsonl").display().to_string())
        )
    };
    // A pool, so that the affinity table is connected (memory) at startup.
    let pool = "[upstreams.pooled]\nendpoints = [{ url = \"http://127.0.0.1:10/v1\", name = \"a\" }, { url = \"http://127.0.0.1:12/v1\", name = \"b\" }]\n[routing]\nstateful = \"pooled\"\n";
    let first = audit("first-key-0123456789");
    let gw = FileGateway::start(&format!("{pool}\n{first}")).await;
    let moved = gw.text_with(&[
        pool,
        &audit("second-key-0123456789"),
        "[affinity]\nstore = \"redis\"\nredis_url = \"redis://:hunter2-secret@127.0.0.1:6390/0\"",
    ]);
    gw.write(&moved);
    let (status, body) = gw.post_reload().await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let text = body.to_string();
    assert!(!text.contains("hunter2-secret"), "{text}");
    assert!(!text.contains("second-key"), "{text}");
    let pending: Vec<String> = serde_json::from_value(body["restart_required"].clone()).unwrap();
    assert!(
        pending
            .iter()
            .any(|p| p.starts_with("affinity.store: running memory")),
        "{pending:?}"
    );
    assert!(
        pending.iter().any(|p| p.starts_with("audit: running")),
        "a changed audit key is reported: {pending:?}"
    );
    gw.stop().await;
}

/// A reload that fails after building its upstream clients leaves no series behind: an
/// endpoint that only the bad file had must not show as up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reload_leaves_no_phantom_endpoint_series() {
    let gw = FileGateway::start("").await;
    let bad = gw.text(
        "[upstreams.pooled]\nendpoints = [{ url = \"http://127.0.0.1:11/v1\", name = \"one\" }, { url = \"http://127.0.0.1:9/v1\", name = \"phantom\" }]\nbearer_token_file = \"/nonexistent/token\"\n[routing]\nstateless = \"pooled\"",
    );
    gw.write(&bad);
    let (status, body) = gw.post_reload().await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let scrape = common::metrics::scrape(gw.admin).await;
    for endpoint in ["one", "phantom"] {
        assert!(
            metric("switchyard_endpoint_up")
                .label("endpoint", endpoint)
                .find(&scrape)
                .is_empty(),
            "no series for {endpoint}: {}",
            metric("switchyard_endpoint_up").similar(&scrape)
        );
    }
    assert_eq!(gw.probe().await.status, StatusCode::OK);
    gw.stop().await;
}
