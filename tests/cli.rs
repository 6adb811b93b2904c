//! The real binary: `check`, `explain`, `serve` (started, used and stopped with SIGTERM) and `demo`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use switchyard::mock::{MockOptions, MockProvider};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn config_text(primary: SocketAddr, secondary: SocketAddr) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[upstreams.primary]
url = "http://{primary}/v1"
[upstreams.secondary]
url = "http://{secondary}/v1"
[routing]
stateless = "primary"
stateful = "secondary"
[log]
format = "json"
"#
    )
}

const UNREACHABLE: &str = "127.0.0.1:9";

fn run(args: &[&str], stdin: Option<&[u8]>) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_a_valid_file_and_names_the_routes() {
    let addr: SocketAddr = UNREACHABLE.parse().unwrap();
    let other: SocketAddr = "127.0.0.1:10".parse().unwrap();
    let f = config_file(&config_text(addr, other));
    let (code, out, err) = run(&["check", "--config", f.path().to_str().unwrap()], None);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.contains(": ok"), "{out}");
    assert!(
        out.contains(
            "stateless -> primary (http://127.0.0.1:9/v1, openai, client credentials pass)"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "stateful  -> secondary (http://127.0.0.1:10/v1, openai, client credentials pass)"
        ),
        "{out}"
    );
}

#[test]
fn check_rejects_a_bad_file_with_the_key_value_and_rule() {
    let text = config_text(
        UNREACHABLE.parse().unwrap(),
        "127.0.0.1:10".parse().unwrap(),
    )
    .replace("stateful = \"secondary\"", "stateful = \"bedrock\"");
    let f = config_file(&text);
    let (code, out, err) = run(&["check", "--config", f.path().to_str().unwrap()], None);
    assert_eq!(code, 1, "stdout: {out}");
    assert_eq!(
        err.trim(),
        r#"error: routing.stateful = "bedrock": no upstream has this name (defined: primary, secondary)"#
    );
    let (code, _, err) = run(&["check", "--config", "/nonexistent.toml"], None);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: cannot read config file /nonexistent.toml"),
        "{err}"
    );
}

#[test]
fn explain_prints_the_decision_without_forwarding() {
    let f = config_file(&config_text(
        UNREACHABLE.parse().unwrap(),
        "127.0.0.1:10".parse().unwrap(),
    ));
    let cfg = f.path().to_str().unwrap();
    let body = br#"{"model":"gpt-4o","input":"hi","previous_response_id":"resp_1"}"#;
    let (code, out, err) = run(
        &[
            "explain",
            "--config",
            cfg,
            "--path",
            "/v1/responses",
            "--body",
            "-",
        ],
        Some(body),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("class:    stateful"), "{out}");
    assert!(
        out.contains("marker:   body:/previous_response_id"),
        "{out}"
    );
    assert!(
        out.contains("upstream: secondary (http://127.0.0.1:10/v1)"),
        "{out}"
    );
    assert!(
        out.contains("forward:  POST http://127.0.0.1:10/v1/responses"),
        "{out}"
    );

    let (code, out, _) = run(
        &[
            "explain",
            "--config",
            cfg,
            "--path",
            "/v1/chat/completions?x=1",
            "--json",
            "--body",
            "-",
        ],
        Some(br#"{"model":"gpt-4o","messages":[]}"#),
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["class"], "stateless");
    assert_eq!(v["upstream"], "primary");
    assert_eq!(v["route"], "/v1/chat/completions");
    assert_eq!(
        v["forward"],
        "POST http://127.0.0.1:9/v1/chat/completions?x=1"
    );

    let (code, out, _) = run(
        &[
            "explain",
            "--config",
            cfg,
            "-X",
            "GET",
            "--path",
            "/v1/models",
            "-H",
            "Mcp-Session-Id: abc",
        ],
        None,
    );
    assert_eq!(code, 0);
    assert!(out.contains("marker:   header:mcp-session-id"), "{out}");

    let (code, out, _) = run(
        &[
            "explain",
            "--config",
            cfg,
            "--path",
            "/v1/responses",
            "--body",
            "-",
        ],
        Some(b"{not json"),
    );
    assert_eq!(code, 0);
    assert!(
        out.starts_with("refused:  400 Bad Request\ncode:     invalid_json"),
        "{out}"
    );
    assert!(out.contains("forward:  nothing"), "{out}");

    let (code, _, err) = run(&["explain", "--config", cfg, "--path", "v1"], None);
    assert_eq!(code, 1);
    assert!(
        err.contains("--path \"v1\" must be an absolute path"),
        "{err}"
    );
}

/// `explain` runs the upstream's adapter: the Azure deployment path and api-version, a
/// renamed model, and the refusals the gateway would answer (unmapped model, a path that
/// means more upstream than here).
#[test]
fn explain_shows_what_the_adapter_does() {
    let f = config_file(
        r#"
[server]
listen = "127.0.0.1:0"
[upstreams.azure]
kind = "azure_openai"
url = "https://contoso.openai.azure.com/openai"
api_key = "not-a-secret"
api_version = "2024-10-21"
deployments = { "gpt-4o" = "gpt4o-prod" }
[upstreams.bedrock]
kind = "bedrock"
url = "https://bedrock-runtime.us-east-1.amazonaws.com/openai/v1"
auth = "api_key"
api_key = "not-a-secret-either"
models = { "gpt-4o" = "openai.gpt-oss-120b-1:0" }
[routing]
stateless = "azure"
stateful = "bedrock"
"#,
    );
    let cfg = f.path().to_str().unwrap();
    let explain = |path: &str, body: &[u8]| {
        run(
            &["explain", "--config", cfg, "--path", path, "--body", "-"],
            Some(body),
        )
    };
    let (code, out, err) = explain(
        "/v1/chat/completions",
        br#"{"model":"gpt-4o","messages":[]}"#,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("forward:  POST https://contoso.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21"),
        "{out}"
    );
    assert!(!out.contains("\nbody:"), "{out}");

    let (code, out, err) = explain("/v1/responses", br#"{"model":"gpt-4o","store":true}"#);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            "forward:  POST https://bedrock-runtime.us-east-1.amazonaws.com/openai/v1/responses"
        ),
        "{out}"
    );
    assert!(
        out.contains("body:     model renamed (upstreams.bedrock.models)"),
        "{out}"
    );

    let (code, out, err) = explain(
        "/v1/chat/completions",
        br#"{"model":"gpt-5","messages":[]}"#,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("code:     model_not_mapped"), "{out}");
    assert!(out.contains("forward:  nothing"), "{out}");

    let (code, out, err) = explain(
        "/v1/deployments/x/chat/completions",
        br#"{"model":"gpt-4o","store":true}"#,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("code:     ambiguous_path"), "{out}");
    assert!(out.contains("forward:  nothing"), "{out}");
}

/// Read lines from a child's stdout on a thread, handing them over a channel.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Wait for a line containing `needle`, up to 20 s.
fn wait_for_line(rx: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("no line containing {needle:?}: {e}"),
        }
    }
}

/// A minimal HTTP/1.1 exchange with `Connection: close`: status line, headers and body text.
fn http(addr: &str, method: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn json_field(line: &str, key: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v[key].as_str().unwrap().to_owned()
}

fn terminate(child: &mut Child) -> i32 {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap().code().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_routes_logs_and_stops_on_sigterm() {
    let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let primary = MockProvider::start(loopback, MockOptions::new("primary"))
        .await
        .unwrap();
    let secondary = MockProvider::start(loopback, MockOptions::new("secondary"))
        .await
        .unwrap();
    let f = config_file(&config_text(primary.addr(), secondary.addr()));
    let mut child = Command::new(BIN)
        .args(["serve", "--config", f.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let rx = lines(&mut child);
    let listening = wait_for_line(&rx, "switchyard listening");
    let proxy = json_field(&listening, "proxy_addr");
    let admin = json_field(&listening, "admin_addr");

    let resp = tokio::task::spawn_blocking({
        let proxy = proxy.clone();
        move || {
            http(
                &proxy,
                "POST",
                "/v1/responses",
                r#"{"model":"m","input":"x","store":false}"#,
            )
        }
    })
    .await
    .unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("x-switchyard-upstream: primary"), "{resp}");
    assert_eq!(primary.request_count(), 1);
    assert_eq!(secondary.request_count(), 0);

    let access = wait_for_line(&rx, "\"switchyard::access\"");
    let v: serde_json::Value = serde_json::from_str(&access).unwrap();
    assert_eq!(v["route"], "/v1/responses");
    assert_eq!(v["class"], "stateless");
    assert_eq!(v["rule"], "responses.stateless");
    assert_eq!(v["upstream"], "primary");
    assert_eq!(v["status"], 200);
    assert_eq!(v["outcome"], "completed");
    assert!(v["request_id"].as_str().unwrap().len() >= 32, "{access}");

    let metrics = tokio::task::spawn_blocking(move || http(&admin, "GET", "/metrics", ""))
        .await
        .unwrap();
    assert!(
        metrics.contains("switchyard_build_info{version="),
        "{metrics}"
    );

    assert_eq!(terminate(&mut child), 0, "serve exits 0 after SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_both_classes_on_builtin_mocks() {
    let mut child = Command::new(BIN)
        .args(["demo", "--port", "0", "--admin-port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let rx = lines(&mut child);
    let gateway_line = wait_for_line(&rx, "gateway   http://");
    let addr = gateway_line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split('/').next())
        .unwrap()
        .to_owned();
    wait_for_line(&rx, "Press Ctrl-C to stop.");
    let (stateless, stateful) = tokio::task::spawn_blocking(move || {
        (
            http(
                &addr,
                "POST",
                "/v1/chat/completions",
                r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
            ),
            http(
                &addr,
                "POST",
                "/v1/responses",
                r#"{"model":"gpt-4o","input":"hi","previous_response_id":"resp_123"}"#,
            ),
        )
    })
    .await
    .unwrap();
    assert!(
        stateless.contains("x-mock-provider: primary"),
        "{stateless}"
    );
    assert!(
        stateless.contains("x-switchyard-class: stateless"),
        "{stateless}"
    );
    assert!(
        stateful.contains("x-mock-provider: secondary"),
        "{stateful}"
    );
    assert!(
        stateful.contains("x-switchyard-rule: responses.previous_response_id"),
        "{stateful}"
    );
    assert_eq!(terminate(&mut child), 0);
}
