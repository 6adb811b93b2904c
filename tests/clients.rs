//! `[[clients]]`: gateway API keys (kept as SHA-256 digests) and client certificates decide
//! who may call; unknown callers get 401 and reach no upstream; a client over its rate gets
//! 429 with `Retry-After`; the key never reaches a provider; metrics carry the client name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::tls::{client_config, toml_path, Alpn, TestCerts, TlsClient};
use common::{metric, Harness};
use http::StatusCode;
use serde_json::json;
use switchyard::config::sha256_hex;

const KEY_A: &str = "sk-gw-app-a-0123456789";
const KEY_B: &str = "sk-gw-app-b-0123456789";

/// Both upstreams without client credentials (a gateway key must never be forwarded), and
/// two clients: `app-a` unlimited, `app-b` at 2 requests per second with a burst of 2.
fn clients_config() -> String {
    format!(
        r#"
[upstreams.primary]
forward_client_credentials = false
[upstreams.secondary]
forward_client_credentials = false

[[clients]]
name = "app-a"
api_key_sha256 = "{a}"

[[clients]]
name = "app-b"
api_key_sha256 = "{b}"
rate_per_second = 2
burst = 2
"#,
        a = sha256_hex(KEY_A.as_bytes()),
        b = sha256_hex(KEY_B.as_bytes()),
    )
}

async fn chat(h: &Harness, headers: &[(&str, &str)]) -> common::Reply {
    h.post_json_with(
        "/v1/chat/completions",
        headers,
        json!({"model": "m", "messages": []}).to_string(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_caller_gets_401_and_reaches_no_upstream() {
    let h = Harness::with_config(&clients_config()).await;
    for headers in [
        vec![],
        vec![("authorization", "Bearer sk-wrong")],
        vec![("x-api-key", "sk-gw-app-a-012345678")],
        vec![("authorization", "Basic c2stZ3c=")],
    ] {
        let reply = chat(&h, &headers).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(reply.error_code(), "unauthenticated");
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Bearer realm=\"switchyard\"")
        );
    }
    h.assert_no_upstream_contacted("unauthenticated callers");
    let scrape = h.scrape().await;
    metric("switchyard_client_requests_total")
        .label("client", "unknown")
        .label("result", "unauthenticated")
        .assert_value(&scrape, 4.0);
    metric("switchyard_rejections_total")
        .label("reason", "unauthenticated")
        .assert_value(&scrape, 4.0);
    h.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_key_is_admitted_and_never_forwarded() {
    let h = Harness::with_config(&clients_config()).await;
    let bearer = format!("Bearer {KEY_A}");
    for headers in [
        vec![("authorization", bearer.as_str())],
        vec![("x-api-key", KEY_A)],
        vec![("api-key", KEY_A)],
    ] {
        let reply = chat(&h, &headers).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{headers:?}: {}",
            reply.text()
        );
    }
    for request in h.primary.requests() {
        for name in ["authorization", "x-api-key", "api-key"] {
            assert!(
                request.headers.get(name).is_none(),
                "{name} reached the provider"
            );
        }
    }
    assert_eq!(h.primary.request_count(), 3);
    let scrape = h.scrape().await;
    metric("switchyard_client_requests_total")
        .label("client", "app-a")
        .label("result", "allowed")
        .assert_value(&scrape, 3.0);
    h.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_gets_429_with_retry_after() {
    let h = Harness::with_config(&clients_config()).await;
    let headers = [("x-api-key", KEY_B)];
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let reply = chat(&h, &headers).await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            retry_after = reply.header("retry-after").map(str::to_owned);
            assert_eq!(reply.error_code(), "rate_limited");
            assert!(reply.error_message().contains("app-b"), "{}", reply.text());
        }
        statuses.push(reply.status.as_u16());
    }
    // The burst of 2 passes; the rest, within well under half a second, do not.
    assert_eq!(&statuses[..2], &[200, 200], "{statuses:?}");
    assert!(statuses[2..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(h.primary.request_count(), 2);
    // Another client is not held back by app-b's bucket.
    assert_eq!(
        chat(&h, &[("x-api-key", KEY_A)]).await.status,
        StatusCode::OK
    );
    let scrape = h.scrape().await;
    metric("switchyard_client_requests_total")
        .label("client", "app-b")
        .label("result", "rate_limited")
        .assert_value(&scrape, 3.0);
    h.gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_identifies_a_client() {
    let certs = TestCerts::new();
    let cert_der = {
        use rustls::pki_types::pem::PemObject;
        let cert =
            rustls::pki_types::CertificateDer::from_pem_file(&certs.trusted.client_cert).unwrap();
        cert.as_ref().to_vec()
    };
    let config = format!(
        r#"
[server.tls]
listen = "127.0.0.1:0"
cert = {cert}
key = {key}
client_ca = {ca}
allow_plain = true

[upstreams.primary]
forward_client_credentials = false
[upstreams.secondary]
forward_client_credentials = false

[[clients]]
name = "by-cert"
cert_sha256 = "{digest}"
"#,
        cert = toml_path(&certs.trusted.server_cert),
        key = toml_path(&certs.trusted.server_key),
        ca = toml_path(&certs.trusted.ca_cert),
        digest = sha256_hex(&cert_der),
    );
    let h = Harness::with_config(&config).await;
    let tls = TlsClient::new(
        h.gateway.tls_addr.unwrap(),
        client_config(
            &certs.trusted.ca_cert,
            Some((&certs.trusted.client_cert, &certs.trusted.client_key)),
        ),
        Alpn::H2,
    );
    let reply = tls
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "m", "messages": []}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    // The plain listener has no certificate to show: refused.
    assert_eq!(chat(&h, &[]).await.status, StatusCode::UNAUTHORIZED);
    let scrape = h.scrape().await;
    metric("switchyard_client_requests_total")
        .label("client", "by-cert")
        .label("result", "allowed")
        .assert_value(&scrape, 1.0);
    h.gateway.shutdown().await;
}

#[test]
fn client_config_errors_name_key_value_and_rule() {
    let base = common::config_text(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
        &["[upstreams.primary]\nforward_client_credentials = false\n[upstreams.secondary]\nforward_client_credentials = false"],
    );
    let digest = sha256_hex(b"k");
    let cases = [
        (
            format!("[[clients]]\nname = \"A\"\napi_key_sha256 = \"{digest}\""),
            r#"clients[0].name = "A": a client name is 1-64 lowercase letters, digits, '_' or '-' (and not "unknown"); it becomes a metric label"#.to_owned(),
        ),
        (
            "[[clients]]\nname = \"a\"\napi_key_sha256 = \"abc\"".to_owned(),
            r#"clients[0].api_key_sha256 = "abc": must be 64 hex digits: the SHA-256 of the secret, e.g. `printf %s "$KEY" | sha256sum`"#.to_owned(),
        ),
        (
            "[[clients]]\nname = \"a\"".to_owned(),
            r#"clients[0].name = "a": set api_key_sha256 or cert_sha256 (or both): how this client proves who it is"#.to_owned(),
        ),
        (
            format!("[[clients]]\nname = \"a\"\napi_key_sha256 = \"{digest}\"\n[[clients]]\nname = \"b\"\napi_key_sha256 = \"{digest}\""),
            "clients[1].api_key_sha256 = (digest): is already another client's: each secret names one client".to_owned(),
        ),
        (
            format!("[[clients]]\nname = \"a\"\napi_key_sha256 = \"{digest}\"\nrate_per_second = 0"),
            "clients[0].rate_per_second = 0: must be a number of requests per second above 0, at most 1000000".to_owned(),
        ),
    ];
    for (extra, expected) in cases {
        let text = format!("{base}\n{extra}\n");
        let error = switchyard::config::Config::from_toml_str(&text)
            .unwrap_err()
            .to_string();
        assert_eq!(error, expected, "{extra}");
    }
    // A gateway key must not be forwarded: an upstream passing client credentials is refused.
    let forwarding = common::config_text(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
        &[],
    );
    let text = format!("{forwarding}\n[[clients]]\nname = \"a\"\napi_key_sha256 = \"{digest}\"\n");
    let error = switchyard::config::Config::from_toml_str(&text)
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("upstreams.primary.forward_client_credentials = true: clients authenticate with gateway API keys"),
        "{error}"
    );
}
