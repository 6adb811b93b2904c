//! Bedrock upstreams on real sockets: SigV4 (the real binary, its environment scrubbed, in
//! front of recording mocks; every recorded request's signature recomputed with aws-sigv4 from
//! the bytes the mock received) and the Bedrock API key (in-process harness).
//!
//! SigV4 tests run `switchyard serve` as a child process because the AWS credential chain
//! reads the process environment: each child gets only the variables its test sets, and
//! `AWS_CONFIG_FILE` / `AWS_SHARED_CREDENTIALS_FILE` point into a temp dir, so nothing from
//! this machine leaks in and no test mutates this process's environment. Instance metadata
//! is disabled so that a chain that finds nothing never leaves loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4::SigningParams;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::{Method, StatusCode};
use switchyard::mock::{MockOptions, MockProvider, RecordedRequest};

use common::{Harness, HttpClient, CALL_TIMEOUT};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

// Test-only keys (the AWS documentation's examples, valid nowhere).
const KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const TOKEN: &str = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN/with+slash=";

// ---------------------------------------------------------------------------------------
// The gateway as a child process
// ---------------------------------------------------------------------------------------

/// A running `switchyard serve`, killed when dropped.
struct Gateway {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// What it logged up to and including "switchyard listening".
    startup: Vec<String>,
    proxy: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a gateway child is started with: its config and its entire environment.
struct Setup {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Setup {
    /// A temp dir holding empty AWS config and credentials files, and an environment that
    /// points the AWS chain at them and disables instance metadata.
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let empty = write(dir.path(), "empty", "");
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let env = vec![
            ("HOME".to_owned(), home.display().to_string()),
            ("AWS_EC2_METADATA_DISABLED".to_owned(), "true".to_owned()),
            ("AWS_CONFIG_FILE".to_owned(), empty.clone()),
            ("AWS_SHARED_CREDENTIALS_FILE".to_owned(), empty),
        ];
        Setup { dir, env }
    }

    fn env(mut self, name: &str, value: &str) -> Setup {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Write `contents` to a file in the temp dir; returns its path.
    fn file(&self, name: &str, contents: &str) -> String {
        write(self.dir.path(), name, contents)
    }

    fn command(&self, config: &str) -> Command {
        let path = self.file("switchyard.toml", config);
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config", &path])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        cmd
    }

    /// Start the gateway and wait until it listens.
    fn serve(self, config: &str) -> Gateway {
        let mut child = self
            .command(config)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut gateway = Gateway {
            child,
            lines,
            startup: Vec::new(),
            proxy: "127.0.0.1:1".parse().unwrap(),
            _dir: self.dir,
        };
        let listening = gateway.wait_for_line("switchyard listening");
        let v: serde_json::Value = serde_json::from_str(&listening).unwrap();
        gateway.proxy = v["proxy_addr"].as_str().unwrap().parse().unwrap();
        gateway
    }

    /// Run the gateway expecting it to refuse to start; returns (exit code, stderr).
    fn fail_to_serve(self, config: &str) -> (i32, String) {
        let out = self.command(config).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Gateway {
    /// Wait (up to 20 s) for a log line containing `needle`.
    fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => {
                    self.startup.push(line.clone());
                    return line;
                }
                Ok(line) => self.startup.push(line),
                Err(e) => panic!("no log line containing {needle:?}: {e}"),
            }
        }
    }

    fn client(&self) -> HttpClient {
        HttpClient::http1(self.proxy)
    }
}

fn write(dir: &Path, name: &str, contents: &str) -> String {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(contents.as_bytes()).unwrap();
    path.display().to_string()
}

async fn mock(name: &str) -> MockProvider {
    MockProvider::start("127.0.0.1:0".parse().unwrap(), MockOptions::new(name))
        .await
        .unwrap()
}

/// Two upstreams: a plain stateless one and a SigV4 Bedrock one; `extra` lines go into the
/// bedrock table.
fn sigv4_config(primary: &MockProvider, bedrock: &MockProvider, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[upstreams.primary]
url = "http://{primary}/v1"
[upstreams.bedrock]
kind = "bedrock"
auth = "sigv4"
url = "http://{bedrock}/openai/v1"
region = "us-east-1"
service = "bedrock"
{extra}
[routing]
stateless = "primary"
stateful = "bedrock"
[log]
format = "json"
access_log = false
"#,
        primary = primary.addr(),
        bedrock = bedrock.addr(),
    )
}

/// Env credentials for a gateway child.
fn env_credentials() -> Setup {
    Setup::new()
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_SESSION_TOKEN", TOKEN)
}

// ---------------------------------------------------------------------------------------
// Checking a recorded request's signature
// ---------------------------------------------------------------------------------------

/// The parts of `authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
struct Authorization {
    scope: String,
    signed_headers: String,
    signature: String,
}

fn parse_authorization(value: &str) -> Authorization {
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256 Credential=")
        .unwrap_or_else(|| panic!("not SigV4: {value}"));
    let parts: Vec<&str> = rest.split(", ").collect();
    assert_eq!(parts.len(), 3, "{value}");
    Authorization {
        scope: parts[0].to_owned(),
        signed_headers: parts[1].strip_prefix("SignedHeaders=").unwrap().to_owned(),
        signature: parts[2].strip_prefix("Signature=").unwrap().to_owned(),
    }
}

/// `20261127T175138Z` → the instant.
fn amz_date(value: &str) -> SystemTime {
    assert_eq!(value.len(), 16, "{value}");
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &value[0..4],
        &value[4..6],
        &value[6..8],
        &value[9..11],
        &value[11..13],
        &value[13..15]
    );
    humantime::parse_rfc3339(&rfc3339).unwrap()
}

/// Recompute the signature of `req` as an AWS endpoint would, from what was received: the
/// method, path and query, the headers named in SignedHeaders (with `host`, which for an h2
/// request is the `:authority`, passed as `host`), x-amz-date and the exact body bytes.
/// Returns (SignedHeaders, signature) as recomputed.
fn recompute(
    req: &RecordedRequest,
    host: &str,
    key: &str,
    secret: &str,
    token: &str,
) -> (String, String) {
    let auth = parse_authorization(req.header("authorization").unwrap());
    let mut headers: Vec<(&str, &str)> = Vec::new();
    for name in auth.signed_headers.split(';') {
        if name == "host" {
            headers.push(("host", host));
            continue;
        }
        let values: Vec<&str> = req
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert!(!values.is_empty(), "signed header {name} was not received");
        headers.extend(values.into_iter().map(|v| (name, v)));
    }
    let identity: Identity =
        Credentials::new(key, secret, Some(token.to_owned()), None, "test").into();
    let mut settings = SigningSettings::default();
    settings.excluded_headers = None;
    let params = SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("bedrock")
        .time(amz_date(req.header("x-amz-date").unwrap()))
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let uri = format!("http://{host}{}", req.path_and_query);
    let signable = SignableRequest::new(
        req.method.as_str(),
        uri,
        headers.into_iter(),
        SignableBody::Bytes(&req.body),
    )
    .unwrap();
    let (instructions, signature) = sign(signable, &params).unwrap().into_parts();
    let recomputed = instructions
        .headers()
        .find(|(name, _)| *name == "authorization")
        .map(|(_, value)| parse_authorization(value).signed_headers)
        .unwrap();
    (recomputed, signature)
}

/// Every SigV4 promise about one recorded request: scope, date, token, no client
/// credentials, and a signature that verifies over the received bytes.
fn assert_signed(req: &RecordedRequest, host: &str, key: &str, secret: &str, token: &str) {
    let what = format!("{} {}", req.method, req.path_and_query);
    let auth = parse_authorization(req.header("authorization").unwrap());
    let date = req
        .header("x-amz-date")
        .unwrap_or_else(|| panic!("{what}: no x-amz-date"));
    assert_eq!(
        auth.scope,
        format!("{key}/{}/us-east-1/bedrock/aws4_request", &date[..8]),
        "{what}"
    );
    let age = SystemTime::now()
        .duration_since(amz_date(date))
        .unwrap_or(Duration::ZERO);
    assert!(
        age < Duration::from_secs(300),
        "{what}: x-amz-date {date} is stale"
    );
    assert_eq!(req.header("x-amz-security-token"), Some(token), "{what}");
    for signed in ["host", "x-amz-date", "x-amz-security-token"] {
        assert!(
            auth.signed_headers.split(';').any(|h| h == signed),
            "{what}: {signed} not signed in {}",
            auth.signed_headers
        );
    }
    assert_eq!(
        req.headers.get_all("authorization").iter().count(),
        1,
        "{what}"
    );
    for (name, value) in &req.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(
            !value.contains("client-secret") && !value.contains("client-token"),
            "{what}: the client's credential reached the upstream in {name}: {value}"
        );
    }
    let (signed_headers, signature) = recompute(req, host, key, secret, token);
    assert_eq!(signed_headers, auth.signed_headers, "{what}");
    assert_eq!(
        signature, auth.signature,
        "{what}: the signature does not verify"
    );
}

async fn call(
    client: &HttpClient,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> common::Reply {
    tokio::time::timeout(
        CALL_TIMEOUT,
        client.call(method.clone(), path, headers, body),
    )
    .await
    .unwrap_or_else(|_| panic!("{method} {path} timed out"))
}

// ---------------------------------------------------------------------------------------
// SigV4
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigv4_signs_exactly_what_the_upstream_receives() {
    let primary = mock("primary").await;
    let bedrock = mock("bedrock").await;
    let gateway = env_credentials().serve(&sigv4_config(&primary, &bedrock, ""));
    let client = gateway.client();
    let json = [("content-type", "application/json")];
    let unicode = r#"{"model":"gpt-4o","input":"héllo — 你好 🚀","store":true}"#;

    let reply = call(&client, Method::POST, "/v1/responses", &json, unicode).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("x-switchyard-upstream"), Some("bedrock"));
    let reply = call(
        &client,
        Method::GET,
        "/v1/responses/resp_123?include=x&limit=2",
        &[],
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = call(&client, Method::DELETE, "/v1/responses/resp_123", &[], "").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let with_client_credentials = [
        ("content-type", "application/json"),
        ("authorization", "Bearer client-secret"),
        ("x-api-key", "client-secret"),
        ("x-amz-security-token", "client-token"),
        ("x-amz-date", "19990101T000000Z"),
        ("user-agent", "OpenAI/Python 9.9"),
    ];
    let reply = call(
        &client,
        Method::POST,
        "/v1/responses",
        &with_client_credentials,
        r#"{"model":"m","input":"hi","store":true}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

    let seen = bedrock.wait_for_requests(4, CALL_TIMEOUT).await;
    assert_eq!(seen.len(), 4);
    assert_eq!(primary.request_count(), 0, "nothing stateless was sent");
    assert_eq!(seen[0].path_and_query, "/openai/v1/responses");
    assert_eq!(&seen[0].body[..], unicode.as_bytes(), "the exact bytes");
    assert_eq!(
        seen[1].path_and_query,
        "/openai/v1/responses/resp_123?include=x&limit=2"
    );
    assert_eq!(seen[2].method, Method::DELETE);
    let host = bedrock.addr().to_string();
    for req in &seen {
        assert_eq!(req.header("host"), Some(host.as_str()));
        assert_signed(req, &host, KEY, SECRET, TOKEN);
    }
    let last = parse_authorization(seen[3].header("authorization").unwrap());
    assert!(
        !last.signed_headers.contains("user-agent"),
        "user-agent is sent unsigned: {}",
        last.signed_headers
    );
    assert_eq!(seen[3].header("user-agent"), Some("OpenAI/Python 9.9"));
    assert!(seen[3].header("x-api-key").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigv4_over_h2_signs_the_authority_it_sends() {
    let primary = mock("primary").await;
    let bedrock = mock("bedrock").await;
    let gateway = env_credentials().serve(&sigv4_config(&primary, &bedrock, "http2 = true"));
    let reply = call(
        &gateway.client(),
        Method::POST,
        "/v1/responses",
        &[("content-type", "application/json")],
        r#"{"model":"m","input":"hi","store":true}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = bedrock.wait_for_requests(1, CALL_TIMEOUT).await;
    assert_eq!(seen[0].version, http::Version::HTTP_2);
    // h2 has no host header: the URI's authority (what hyper sends as :authority) is signed.
    assert_signed(&seen[0], &bedrock.addr().to_string(), KEY, SECRET, TOKEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigv4_profile_from_the_shared_credentials_file_wins_over_the_environment() {
    let primary = mock("primary").await;
    let bedrock = mock("bedrock").await;
    let setup = Setup::new()
        .env("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENTWRONG")
        .env("AWS_SECRET_ACCESS_KEY", "wrong");
    let credentials = setup.file(
        "credentials",
        &format!(
            "[default]\naws_access_key_id = AKIADEFAULTWRONGXXXX\naws_secret_access_key = wrong\n\n\
             [bedrock-test]\naws_access_key_id = AKIAPROFILEEXAMPLE01\naws_secret_access_key = {SECRET}\n\
             aws_session_token = {TOKEN}\n"
        ),
    );
    let gateway = setup
        .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
        .serve(&sigv4_config(
            &primary,
            &bedrock,
            r#"profile = "bedrock-test""#,
        ));
    let reply = call(
        &gateway.client(),
        Method::GET,
        "/v1/responses/resp_1",
        &[],
        "",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = bedrock.wait_for_requests(1, CALL_TIMEOUT).await;
    assert_signed(
        &seen[0],
        &bedrock.addr().to_string(),
        "AKIAPROFILEEXAMPLE01",
        SECRET,
        TOKEN,
    );
}

/// Temporary credentials with an expiry, from `credential_process` in the shared config file
/// (the path that SSO helpers and `aws configure export-credentials` use).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigv4_credential_process_with_expiring_credentials() {
    let primary = mock("primary").await;
    let bedrock = mock("bedrock").await;
    let setup = Setup::new().env("PATH", "/usr/bin:/bin");
    let expiry = humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(3600));
    let output = setup.file(
        "process.json",
        &format!(
            r#"{{"Version": 1, "AccessKeyId": "ASIAPROCESSEXAMPLE01", "SecretAccessKey": "{SECRET}", "SessionToken": "{TOKEN}", "Expiration": "{expiry}"}}"#
        ),
    );
    let config = setup.file(
        "config",
        &format!("[profile from-process]\ncredential_process = cat {output}\n"),
    );
    let gateway = setup
        .env("AWS_CONFIG_FILE", &config)
        .env("AWS_PROFILE", "from-process")
        .serve(&sigv4_config(&primary, &bedrock, ""));
    let loaded = gateway
        .startup
        .iter()
        .find(|l| l.contains("AWS credentials loaded"))
        .unwrap_or_else(|| panic!("no credentials log line in {:#?}", gateway.startup));
    assert!(loaded.contains(&expiry.to_string()), "{loaded}");
    let reply = call(
        &gateway.client(),
        Method::POST,
        "/v1/responses",
        &[("content-type", "application/json")],
        r#"{"model":"m","input":"hi","store":true}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = bedrock.wait_for_requests(1, CALL_TIMEOUT).await;
    assert_signed(
        &seen[0],
        &bedrock.addr().to_string(),
        "ASIAPROCESSEXAMPLE01",
        SECRET,
        TOKEN,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigv4_without_credentials_refuses_to_start_and_says_where_it_looked() {
    let primary = mock("primary").await;
    let bedrock = mock("bedrock").await;
    let setup = Setup::new();
    let (code, stderr) = setup.fail_to_serve(&sigv4_config(&primary, &bedrock, ""));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("upstream bedrock: no usable AWS credentials:"),
        "{stderr}"
    );
    assert!(stderr.contains("AWS_ACCESS_KEY_ID"), "{stderr}");
    assert!(
        stderr.contains("/empty"),
        "names the files it read: {stderr}"
    );

    let setup = Setup::new();
    let (code, stderr) =
        setup.fail_to_serve(&sigv4_config(&primary, &bedrock, r#"profile = "missing""#));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("profile \"missing\""), "{stderr}");
    assert_eq!(bedrock.request_count(), 0);
}

// ---------------------------------------------------------------------------------------
// Bedrock API key
// ---------------------------------------------------------------------------------------

async fn assert_bearer(h: &Harness, expected: &str) {
    let reply = h
        .post_json_with(
            "/v1/responses",
            &[
                ("authorization", "Bearer client-secret"),
                ("x-api-key", "client-secret"),
            ],
            r#"{"model":"m","input":"hi","store":true}"#,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = h.secondary.wait_for_requests(1, CALL_TIMEOUT).await;
    assert_eq!(seen[0].header("authorization"), Some(expected));
    assert_eq!(seen[0].headers.get_all("authorization").iter().count(), 1);
    assert!(seen[0].header("x-api-key").is_none());
    assert!(
        seen[0].header("x-amz-date").is_none(),
        "no SigV4 in api_key mode"
    );
}

#[tokio::test]
async fn bedrock_api_key_from_the_config_replaces_the_clients_bearer() {
    let h = Harness::builder()
        .config(
            r#"
            [upstreams.secondary]
            kind = "bedrock"
            auth = "api_key"
            api_key = "${BEDROCK_KEY}"
            "#,
        )
        .env("BEDROCK_KEY", "br-config-key")
        .start()
        .await;
    assert_bearer(&h, "Bearer br-config-key").await;
    h.shutdown().await;
}

#[tokio::test]
async fn bedrock_api_key_defaults_to_aws_bearer_token_bedrock() {
    let h = Harness::builder()
        .config(
            r#"
            [upstreams.secondary]
            kind = "bedrock"
            auth = "api_key"
            "#,
        )
        .env("AWS_BEARER_TOKEN_BEDROCK", "br-env-key")
        .start()
        .await;
    assert_bearer(&h, "Bearer br-env-key").await;
    h.shutdown().await;
}
