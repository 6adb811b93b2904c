//! TLS everywhere (issue #3), on loopback with certificates generated into a tempdir by
//! `switchyard::certs`: the client-facing TLS listener (HTTP/1.1 and h2 by ALPN, beside or
//! instead of the plain one, mTLS), handshake-failure metrics, TLS config errors, HTTPS
//! upstreams (trust anchors, verification failures, upstream mTLS, ALPN) and the
//! `switchyard certs dev` command.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use common::tls::{
    client_config_for, handshake_error, server_config, toml_path, Alpn, TestCerts, TlsClient,
};
use common::{metric, summary, Harness, Reply, CALL_TIMEOUT, SOON};
use http::{Method, StatusCode, Version};
use serde_json::json;
use switchyard::certs::DevCerts;
use switchyard::config::Config;
use switchyard::mock::{MockOptions, MockProvider};

const HANDSHAKE_ERRORS: &str = "switchyard_tls_handshake_errors_total";
const H2_AND_HTTP1: &[&[u8]] = &[b"h2", b"http/1.1"];
const HTTP1_ONLY: &[&[u8]] = &[b"http/1.1"];

/// `[server.tls]` with `certs`' server certificate; `listen` adds its own address (beside
/// the plain listener), `client_ca` requires client certificates.
fn server_tls(certs: &DevCerts, listen: Option<&str>, client_ca: Option<&Path>) -> String {
    let mut out = format!(
        "[server.tls]\ncert = {}\nkey = {}\n",
        toml_path(&certs.server_cert),
        toml_path(&certs.server_key)
    );
    if let Some(listen) = listen {
        out.push_str(&format!("listen = {listen:?}\n"));
    }
    if let Some(ca) = client_ca {
        out.push_str(&format!("client_ca = {}\n", toml_path(ca)));
    }
    out
}

fn chat() -> serde_json::Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
}

/// A stateless call lands on primary and a stateful one on secondary, through `client`.
async fn assert_routes_both_classes(h: &Harness, client: &TlsClient, version: Version) {
    h.clear();
    let reply = client.post_json("/v1/chat/completions", &chat()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.version, version);
    assert_eq!(reply.header("x-switchyard-class"), Some("stateless"));
    assert_eq!(reply.header("x-switchyard-upstream"), Some("primary"));
    assert_eq!(reply.header("x-mock-provider"), Some("primary"));
    assert_eq!(
        reply.json()["object"],
        "chat.completion",
        "{}",
        reply.text()
    );

    let reply = client
        .call(Method::GET, "/v1/responses/resp_tls", &[], Bytes::new())
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.version, version);
    assert_eq!(reply.header("x-switchyard-class"), Some("stateful"));
    assert_eq!(reply.header("x-switchyard-upstream"), Some("secondary"));
    assert_eq!(reply.json()["id"], "resp_tls", "{}", reply.text());

    let primary = h.primary.requests();
    let secondary = h.secondary.requests();
    assert_eq!(summary(&primary), ["POST /v1/chat/completions"]);
    assert_eq!(summary(&secondary), ["GET /v1/responses/resp_tls"]);
    assert_eq!(primary[0].body, Bytes::from(chat().to_string()));
}

// ---------------------------------------------------------------------------------------
// The client-facing TLS listener
// ---------------------------------------------------------------------------------------

/// `[server.tls]` without its own `listen` turns `server.listen` into a TLS-only listener;
/// clients get the right mock's answer over HTTP/1.1 and over h2 negotiated by ALPN.
#[tokio::test]
async fn tls_only_listener_serves_http1_and_h2_and_routes_each_class() {
    let certs = TestCerts::new();
    let h = Harness::with_config(&server_tls(&certs.trusted, None, None)).await;
    assert_eq!(h.gateway.tls_addr, Some(h.proxy_addr));
    assert!(h.gateway.gateway().config.server.listen.is_none());

    let trust = || client_config_for(&certs.trusted, None);
    let http1 = TlsClient::new(h.proxy_addr, trust(), Alpn::Http1);
    assert_routes_both_classes(&h, &http1, Version::HTTP_11).await;
    let h2 = TlsClient::new(h.proxy_addr, trust(), Alpn::H2);
    assert_routes_both_classes(&h, &h2, Version::HTTP_2).await;
    h.shutdown().await;
}

/// A plain and a TLS listener on one gateway: both serve, each on its own port.
#[tokio::test]
async fn plain_and_tls_listeners_side_by_side() {
    let certs = TestCerts::new();
    let h = Harness::with_config(&server_tls(&certs.trusted, Some("127.0.0.1:0"), None)).await;
    let tls_addr = h.gateway.tls_addr.expect("a TLS listener");
    assert_ne!(tls_addr, h.proxy_addr);

    // Plain HTTP/1.1 and h2c on the plain port.
    let reply = h.post_json("/v1/chat/completions", &chat()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("x-switchyard-upstream"), Some("primary"));
    let reply = h
        .h2c_client()
        .call(Method::GET, "/v1/responses/resp_1", &[], Bytes::new())
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.version, Version::HTTP_2);
    assert_eq!(reply.header("x-switchyard-upstream"), Some("secondary"));

    // HTTPS on the TLS port.
    let https = TlsClient::new(tls_addr, client_config_for(&certs.trusted, None), Alpn::H2);
    assert_routes_both_classes(&h, &https, Version::HTTP_2).await;
    h.shutdown().await;
}

/// With `client_ca`, a client certificate from that CA is required: a trusted one gets
/// through, none or one from another CA fails the handshake, no upstream is contacted and
/// each failure is counted by reason.
#[tokio::test]
async fn mtls_requires_a_client_certificate_from_the_configured_ca() {
    let certs = TestCerts::new();
    let tls = server_tls(&certs.trusted, None, Some(&certs.trusted.ca_cert));
    let h = Harness::with_config(&tls).await;
    let addr = h.proxy_addr;

    let with_cert = client_config_for(&certs.trusted, Some(&certs.trusted));
    for alpn in [Alpn::Http1, Alpn::H2] {
        let client = TlsClient::new(addr, with_cert.clone(), alpn);
        let version = match alpn {
            Alpn::Http1 => Version::HTTP_11,
            Alpn::H2 => Version::HTTP_2,
        };
        assert_routes_both_classes(&h, &client, version).await;
    }
    h.clear();

    // No client certificate: rustls answers with the TLS 1.3 `certificate_required` alert.
    let error = handshake_error(addr, client_config_for(&certs.trusted, None)).await;
    assert!(error.contains("CertificateRequired"), "{error}");
    // Through an HTTP client the request fails too; nothing reaches a mock.
    let client = TlsClient::new(addr, client_config_for(&certs.trusted, None), Alpn::Http1);
    let failed = client
        .try_call(
            Method::POST,
            "/v1/chat/completions",
            &[],
            chat().to_string(),
        )
        .await;
    assert!(
        failed.is_err(),
        "a request without a client certificate was served: {failed:?}"
    );

    // A client certificate from an untrusted CA: `unknown_ca`.
    let error = handshake_error(
        addr,
        client_config_for(&certs.trusted, Some(&certs.untrusted)),
    )
    .await;
    assert!(error.contains("UnknownCA"), "{error}");
    h.assert_no_upstream_contacted("after refused handshakes");

    let scrape = h
        .scrape_when(|s| {
            metric(HANDSHAKE_ERRORS)
                .label("reason", "no_client_cert")
                .sum_in(s)
                == Some(2.0)
                && metric(HANDSHAKE_ERRORS)
                    .label("reason", "bad_certificate")
                    .sum_in(s)
                    == Some(1.0)
        })
        .await;
    metric(HANDSHAKE_ERRORS)
        .label("reason", "no_client_cert")
        .assert_value(&scrape, 2.0);
    metric(HANDSHAKE_ERRORS)
        .label("reason", "bad_certificate")
        .assert_value(&scrape, 1.0);
    metric(HANDSHAKE_ERRORS)
        .label("reason", "protocol")
        .assert_value(&scrape, 0.0);
    h.shutdown().await;
}

/// A client that does not trust the gateway's certificate, plain HTTP sent to the TLS port
/// and a client that never starts the handshake are each refused and counted by reason; the
/// silent one is cut off after `limits.header_read_timeout`.
#[tokio::test]
async fn failed_handshakes_are_counted_by_reason() {
    let certs = TestCerts::new();
    let mut config = server_tls(&certs.trusted, None, None);
    config.push_str("[limits]\nheader_read_timeout = \"300ms\"\n");
    let h = Harness::with_config(&config).await;
    let addr = h.proxy_addr;

    // The client trusts another CA: it aborts the handshake with an alert.
    let error = handshake_error(addr, client_config_for(&certs.untrusted, None)).await;
    assert!(error.contains("UnknownIssuer"), "{error}");

    // Plain HTTP to the TLS port: no HTTP answer, the connection is closed.
    let answer = read_until_closed(addr, b"GET /v1/models HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP was answered: {answer:?}"
    );

    // Silence: the handshake deadline closes the connection.
    let answer = read_until_closed(addr, b"").await;
    assert!(answer.is_empty(), "{answer:?}");
    h.assert_no_upstream_contacted("after failed handshakes");

    let want = [("client_alert", 1.0), ("protocol", 1.0), ("timeout", 1.0)];
    let scrape = h
        .scrape_when(|s| {
            want.iter().all(|(reason, n)| {
                metric(HANDSHAKE_ERRORS).label("reason", reason).sum_in(s) == Some(*n)
            })
        })
        .await;
    for (reason, n) in want {
        metric(HANDSHAKE_ERRORS)
            .label("reason", reason)
            .assert_value(&scrape, n);
    }
    h.shutdown().await;
}

/// Send `bytes` on a fresh TCP connection and read until the server closes it.
async fn read_until_closed(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let read = tcp.read_to_end(&mut out);
    match tokio::time::timeout(CALL_TIMEOUT, read).await {
        Ok(Ok(_)) => {}
        // A reset is a close too.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(Err(e)) => panic!("reading from {addr}: {e}"),
        Err(_) => panic!("{addr} kept the connection open for {CALL_TIMEOUT:?}"),
    }
    out
}

/// Shutdown drains a request in flight on a TLS connection, does not wait for a client stuck
/// before its handshake (the handshake deadline here is the default 30 s), and closes the
/// TLS port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_tls_connections_and_drops_pending_handshakes() {
    let certs = TestCerts::new();
    let h = Harness::with_config(&server_tls(&certs.trusted, None, None)).await;
    let addr = h.proxy_addr;
    let Harness {
        primary,
        secondary,
        gateway,
        ..
    } = h;

    let stuck = tokio::net::TcpStream::connect(addr).await.unwrap();
    let client = TlsClient::new(addr, client_config_for(&certs.trusted, None), Alpn::H2);
    let slow = tokio::spawn(async move {
        client
            .call(
                Method::POST,
                "/v1/chat/completions",
                &[
                    ("content-type", "application/json"),
                    ("x-mock-delay-ms", "400"),
                ],
                chat().to_string(),
            )
            .await
    });
    let seen = primary.wait_for_requests(1, SOON).await;
    assert_eq!(seen.len(), 1, "the slow request reached the upstream");

    let started = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), gateway.shutdown())
        .await
        .expect("shutdown drained within 10 s");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let reply = slow.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.version, Version::HTTP_2);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the TLS port still accepts"
    );
    drop(stuck);
    primary.shutdown().await;
    secondary.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Config errors
// ---------------------------------------------------------------------------------------

const BASE: &str = r#"
[server]
listen = "127.0.0.1:0"
[upstreams.primary]
url = "http://127.0.0.1:1/v1"
[upstreams.secondary]
url = "http://127.0.0.1:2/v1"
[routing]
stateless = "primary"
stateful = "secondary"
"#;

fn config_error(extra: &str) -> String {
    match Config::from_toml_str(&format!("{BASE}{extra}")) {
        Ok(_) => panic!("config accepted:\n{extra}"),
        Err(e) => e.to_string(),
    }
}

fn tls_files(cert: &str, key: &str, client_ca: Option<&str>) -> String {
    let quote = |p: &str| toml_path(Path::new(p));
    let mut out = format!(
        "[server.tls]\ncert = {}\nkey = {}\n",
        quote(cert),
        quote(key)
    );
    if let Some(ca) = client_ca {
        out.push_str(&format!("client_ca = {}\n", quote(ca)));
    }
    out
}

/// Missing, garbage and mismatched files are config errors naming the key and the file.
#[test]
fn bad_tls_files_are_config_errors_naming_the_key_and_the_file() {
    let certs = TestCerts::new();
    let t = &certs.trusted;
    let cert = t.server_cert.display().to_string();
    let key = t.server_key.display().to_string();
    let missing = certs.path("missing.pem");
    let garbage = certs.path("garbage.pem");
    std::fs::write(&garbage, "this is not PEM\n").unwrap();

    let cases = [
        (
            tls_files(&missing, &key, None),
            format!(
                "server.tls.cert = {missing:?}: cannot read the file: No such file or directory (os error 2)"
            ),
        ),
        (
            tls_files(&garbage, &key, None),
            format!(
                "server.tls.cert = {garbage:?}: contains no PEM certificate (expected -----BEGIN CERTIFICATE-----)"
            ),
        ),
        (
            tls_files(&cert, &missing, None),
            format!(
                "server.tls.key = {missing:?}: cannot read the file: No such file or directory (os error 2)"
            ),
        ),
        (
            tls_files(&cert, &garbage, None),
            format!(
                "server.tls.key = {garbage:?}: contains no PEM private key (expected -----BEGIN PRIVATE KEY-----)"
            ),
        ),
        (
            // The client certificate's key does not belong to the server certificate.
            tls_files(&cert, &t.client_key.display().to_string(), None),
            format!(
                "server.tls.key = {:?}: the private key does not belong to the certificate (server.tls.cert)",
                t.client_key.display().to_string(),
            ),
        ),
        (
            tls_files(&cert, &key, Some(&missing)),
            format!(
                "server.tls.client_ca = {missing:?}: cannot read the file: No such file or directory (os error 2)"
            ),
        ),
        (
            tls_files(&cert, &key, Some(&garbage)),
            format!(
                "server.tls.client_ca = {garbage:?}: contains no PEM certificate (expected -----BEGIN CERTIFICATE-----)"
            ),
        ),
    ];
    for (extra, want) in cases {
        assert_eq!(config_error(&extra), want, "config:\n{extra}");
    }

    // A plain listener beside an mTLS one would let clients skip their certificates.
    let ca = t.ca_cert.display().to_string();
    let both = format!(
        "{}listen = \"127.0.0.1:0\"\n",
        tls_files(&cert, &key, Some(&ca))
    );
    assert_eq!(
        config_error(&both),
        format!(
            "server.tls.client_ca = {ca:?}: clients could skip their certificates on the plain listener (server.listen); drop server.listen to serve TLS only, or set server.tls.allow_plain = true if that is intended"
        )
    );
    let allowed = format!("{both}allow_plain = true\n");
    let c = Config::from_toml_str(&format!("{BASE}{allowed}")).unwrap();
    assert!(c.server.listen.is_some() && c.server.tls.is_some());
}

/// The upstream side: `ca`, `client_cert` and `client_key` files are checked the same way.
#[test]
fn bad_upstream_tls_files_are_config_errors_naming_the_key_and_the_file() {
    let certs = TestCerts::new();
    let t = &certs.trusted;
    let missing = certs.path("missing.pem");
    let garbage = certs.path("garbage.pem");
    std::fs::write(&garbage, "this is not PEM\n").unwrap();
    let cases = [
        (
            format!("ca = {}\n", toml_path(Path::new(&missing))),
            format!(
                "upstreams.primary.ca = {missing:?}: cannot read the file: No such file or directory (os error 2)"
            ),
        ),
        (
            format!("ca = {}\n", toml_path(Path::new(&garbage))),
            format!(
                "upstreams.primary.ca = {garbage:?}: contains no PEM certificate (expected -----BEGIN CERTIFICATE-----)"
            ),
        ),
        (
            format!(
                "client_cert = {}\nclient_key = {}\n",
                toml_path(&t.client_cert),
                toml_path(&t.server_key)
            ),
            format!(
                "upstreams.primary.client_key = {:?}: the private key does not belong to the certificate (client_cert)",
                t.server_key.display().to_string(),
            ),
        ),
    ];
    for (extra, want) in cases {
        // The keys go into the primary upstream's table, its URL made https.
        let text = BASE.replace(
            "url = \"http://127.0.0.1:1/v1\"\n",
            &format!("url = \"https://127.0.0.1:1/v1\"\n{extra}"),
        );
        let got = match Config::from_toml_str(&text) {
            Ok(_) => panic!("config accepted:\n{text}"),
            Err(e) => e.to_string(),
        };
        assert_eq!(got, want, "config:\n{text}");
    }
}

// ---------------------------------------------------------------------------------------
// HTTPS upstreams
// ---------------------------------------------------------------------------------------

/// A TLS mock provider named "primary" serving `certs`' server certificate.
async fn tls_mock(certs: &DevCerts, client_ca: Option<&Path>, alpn: &[&[u8]]) -> MockProvider {
    let options = MockOptions::new("primary").with_tls(server_config(certs, client_ca, alpn));
    let mock = MockProvider::start(([127, 0, 0, 1], 0).into(), options)
        .await
        .unwrap();
    assert!(mock.base_url().starts_with("https://127.0.0.1:"));
    mock
}

/// A gateway whose primary upstream is `mock` (over https) with `extra` keys; the harness's
/// own plain primary mock stays unused.
async fn via_https_upstream(mock: &MockProvider, extra: &str) -> Harness {
    Harness::with_config(&format!(
        "[upstreams.primary]\nurl = {:?}\n{extra}",
        mock.base_url()
    ))
    .await
}

async fn post_chat(h: &Harness) -> Reply {
    h.post_json("/v1/chat/completions", &chat()).await
}

/// With the mock's CA configured as `ca`, requests arrive over TLS; the gateway speaks h2
/// when the upstream offers it by ALPN, HTTP/1.1 when it offers only that.
#[tokio::test]
async fn https_upstream_with_configured_ca_gets_h2_or_http1_by_alpn() {
    let certs = TestCerts::new();
    let ca = format!("ca = {}\n", toml_path(&certs.trusted.ca_cert));
    for (alpn, version) in [
        (H2_AND_HTTP1, Version::HTTP_2),
        (HTTP1_ONLY, Version::HTTP_11),
    ] {
        let mock = tls_mock(&certs.trusted, None, alpn).await;
        let h = via_https_upstream(&mock, &ca).await;
        let reply = post_chat(&h).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.header("x-mock-provider"), Some("primary"));
        let seen = mock.requests();
        assert_eq!(summary(&seen), ["POST /v1/chat/completions"]);
        assert_eq!(seen[0].version, version, "ALPN offered {alpn:?}");
        assert_eq!(seen[0].body, Bytes::from(chat().to_string()));
        assert!(h.primary.requests().is_empty());
        h.shutdown().await;
        mock.shutdown().await;
    }
}

/// An upstream whose certificate comes from a CA the gateway does not trust gets a 502 that
/// says so, and nothing is sent; `danger_accept_invalid_certs = true` lets the same
/// upstream through.
#[tokio::test]
async fn untrusted_upstream_certificate_is_a_502_unless_verification_is_off() {
    let certs = TestCerts::new();
    let mock = tls_mock(&certs.untrusted, None, H2_AND_HTTP1).await;
    let ca = format!("ca = {}\n", toml_path(&certs.trusted.ca_cert));
    let h = via_https_upstream(&mock, &ca).await;
    let reply = post_chat(&h).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    assert_eq!(
        reply.error_code(),
        "upstream_unavailable",
        "{}",
        reply.text()
    );
    let message = reply.error_message();
    assert!(
        message.contains("TLS handshake with upstream primary failed")
            && message.contains("invalid peer certificate")
            && message.contains("UnknownIssuer")
            && message.contains("set upstreams.primary.ca"),
        "{message}"
    );
    let tls_errors = metric("switchyard_upstream_errors_total")
        .label("upstream", "primary")
        .label("kind", "tls");
    let m = h.scrape_when(|m| tls_errors.sum_in(m) == Some(1.0)).await;
    tls_errors.assert_value(&m, 1.0);
    assert!(
        mock.requests().is_empty(),
        "{:?}",
        summary(&mock.requests())
    );
    assert!(mock.tls_handshake_failures() >= 1);
    h.shutdown().await;

    let h = via_https_upstream(&mock, "danger_accept_invalid_certs = true\n").await;
    let reply = post_chat(&h).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(summary(&mock.requests()), ["POST /v1/chat/completions"]);
    h.shutdown().await;
    mock.shutdown().await;
}

/// An upstream that requires client certificates accepts the gateway when `client_cert` /
/// `client_key` are configured, and refuses it (502, nothing served) when they are not.
#[tokio::test]
async fn upstream_mtls_presents_the_configured_client_certificate() {
    let certs = TestCerts::new();
    let t = &certs.trusted;
    let mock = tls_mock(t, Some(&t.ca_cert), H2_AND_HTTP1).await;
    let ca = format!("ca = {}\n", toml_path(&t.ca_cert));

    let with_cert = format!(
        "{ca}client_cert = {}\nclient_key = {}\n",
        toml_path(&t.client_cert),
        toml_path(&t.client_key)
    );
    let h = via_https_upstream(&mock, &with_cert).await;
    let reply = post_chat(&h).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(summary(&mock.requests()), ["POST /v1/chat/completions"]);
    h.shutdown().await;
    mock.clear();

    let h = via_https_upstream(&mock, &ca).await;
    let reply = post_chat(&h).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    assert_eq!(
        reply.error_code(),
        "upstream_unavailable",
        "{}",
        reply.text()
    );
    let message = reply.error_message();
    assert!(
        message.contains("CertificateRequired")
            && message.contains("did not accept the gateway's client certificate"),
        "{message}"
    );
    assert!(
        mock.requests().is_empty(),
        "{:?}",
        summary(&mock.requests())
    );
    assert!(mock.tls_handshake_failures() >= 1);
    h.shutdown().await;
    mock.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// `switchyard certs dev`
// ---------------------------------------------------------------------------------------

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const SIX: [&str; 6] = [
    "ca.crt",
    "ca.key",
    "server.crt",
    "server.key",
    "client.crt",
    "client.key",
];

fn certs_dev(out: &Path, force: bool) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["certs", "dev", "--out"]).arg(out);
    if force {
        cmd.arg("--force");
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The command writes the six files (keys 0600), says so with a development-only warning,
/// refuses to overwrite them, and replaces them with `--force`; the result is usable as
/// `[server.tls]`.
#[test]
fn certs_dev_writes_six_files_and_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    let (code, out, err) = certs_dev(&dir, false);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    for name in SIX {
        let path = dir.join(name);
        assert!(path.is_file(), "{name} missing");
        assert!(
            out.contains(&path.display().to_string()),
            "{name} not listed:\n{out}"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let header = if name.ends_with(".key") {
            "-----BEGIN PRIVATE KEY-----"
        } else {
            "-----BEGIN CERTIFICATE-----"
        };
        assert!(text.starts_with(header), "{name}: {text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            if name.ends_with(".key") {
                assert_eq!(mode, 0o600, "{name} mode {mode:o}");
            } else {
                assert_eq!(mode & 0o022, 0, "{name} mode {mode:o}");
            }
        }
    }
    assert!(out.contains("development only"), "{out}");

    let before = std::fs::read(dir.join("server.key")).unwrap();
    let (code, out, err) = certs_dev(&dir, false);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert_eq!(
        err.trim(),
        format!(
            "error: {} already exists; pass --force to overwrite the development certificates",
            dir.join("ca.crt").display()
        )
    );
    assert_eq!(std::fs::read(dir.join("server.key")).unwrap(), before);

    let (code, out, err) = certs_dev(&dir, true);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert_ne!(std::fs::read(dir.join("server.key")).unwrap(), before);

    // What it wrote is a valid `[server.tls]` with mTLS.
    let tls = format!(
        "[server.tls]\ncert = {}\nkey = {}\nclient_ca = {}\n",
        toml_path(&dir.join("server.crt")),
        toml_path(&dir.join("server.key")),
        toml_path(&dir.join("ca.crt"))
    );
    let config = Config::from_toml_str(&format!("{BASE}{tls}")).unwrap();
    assert!(config.server.tls.is_some_and(|t| t.client_auth));
}

/// An upstream that accepts TCP and then never answers the TLS handshake is a connect
/// timeout (504, `connect_timeout`) within `timeouts.connect`: the handshake is part of
/// connecting, never blamed on the client's upload and never left to the request deadline.
#[tokio::test]
async fn a_stalled_upstream_tls_handshake_is_a_connect_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    let acceptor = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            keep.lock().unwrap().push(socket); // accepted, never a byte back
        }
    });
    let h = Harness::with_config(&format!(
        "[upstreams.primary]\nurl = \"https://{addr}/v1\"\ndanger_accept_invalid_certs = true\n\
         [upstreams.primary.timeouts]\nconnect = \"300ms\"\nfirst_byte = \"20s\"\nrequest = \"30s\"\n"
    ))
    .await;
    let started = std::time::Instant::now();
    // A streamed body (embeddings are decided from the head) and a buffered one (chat).
    let reply = h
        .post_json("/v1/embeddings", &json!({"model": "m", "input": "x"}))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        reply.text()
    );
    assert_eq!(reply.error_code(), "timeout", "{}", reply.text());
    let reply = post_chat(&h).await;
    assert_eq!(
        reply.status,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        reply.text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(!held.lock().unwrap().is_empty(), "the upstream was reached");
    let timeouts = metric("switchyard_upstream_errors_total")
        .label("upstream", "primary")
        .label("kind", "connect_timeout");
    let m = h.scrape_when(|m| timeouts.sum_in(m) == Some(2.0)).await;
    timeouts.assert_value(&m, 2.0);
    h.shutdown().await;
    acceptor.abort();
}

/// A TLS client that offers no ALPN protocol is served in what it speaks: HTTP/1.1, or HTTP/2
/// with prior knowledge (told from its first bytes, as on a plain listener).
#[tokio::test]
async fn tls_without_alpn_is_told_by_its_first_bytes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certs = TestCerts::new();
    let h = Harness::with_config(&server_tls(&certs.trusted, None, None)).await;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client_config_for(
        &certs.trusted,
        None,
    )));
    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(h.proxy_addr).await.unwrap();
        let name = rustls::pki_types::ServerName::IpAddress(h.proxy_addr.ip().into());
        let tls = connector.connect(name, tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), None, "no ALPN offered");
        tls
    };

    let body =
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let mut http1 = connect().await;
    http1
        .write_all(
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = Vec::new();
    // The gateway closes after `connection: close`; a missing close_notify is not the point.
    let _ = tokio::time::timeout(SOON, http1.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(h.primary.request_count(), 1);

    let mut h2 = connect().await;
    h2.write_all(common::H2_PREFACE_AND_SETTINGS).await.unwrap();
    common::expect_h2_settings(&mut h2).await;
    h.shutdown().await;
}
