//! TLS test helpers: throwaway certificates in a tempdir (via `switchyard::certs`), rustls
//! configs for test clients and TLS mocks, an HTTPS client (HTTP/1.1 or h2 by ALPN, optional
//! client certificate) and a raw handshake probe that reports how a handshake ended.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use switchyard::certs::{self, DevCerts};
use tokio::io::AsyncReadExt;

use super::client::{chain, full, Reply, ReqBody};
use super::CALL_TIMEOUT;

/// Two unrelated certificate sets in one tempdir: `trusted` is what the gateway and the
/// clients are configured with, `untrusted` comes from a CA nobody trusts.
pub struct TestCerts {
    pub dir: tempfile::TempDir,
    pub trusted: DevCerts,
    pub untrusted: DevCerts,
}

impl TestCerts {
    pub fn new() -> TestCerts {
        let dir = tempfile::tempdir().unwrap();
        let trusted = certs::generate_dev(&dir.path().join("trusted"), false).unwrap();
        let untrusted = certs::generate_untrusted(&dir.path().join("untrusted")).unwrap();
        TestCerts {
            dir,
            trusted,
            untrusted,
        }
    }

    /// A path inside the tempdir (for files the test writes itself).
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// A path as a TOML string value (quoted and escaped).
pub fn toml_path(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

/// Which HTTP version a client offers by ALPN.
#[derive(Clone, Copy, Debug)]
pub enum Alpn {
    Http1,
    H2,
}

/// A rustls client config trusting only `ca`, presenting `client` (cert, key) if given.
pub fn client_config(ca: &Path, client: Option<(&Path, &Path)>) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(switchyard::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    }
}

/// The client config a test client uses with `certs`: trust its CA, optionally present its
/// client certificate.
pub fn client_config_for(trust: &DevCerts, present: Option<&DevCerts>) -> ClientConfig {
    client_config(
        &trust.ca_cert,
        present.map(|c| (c.client_cert.as_path(), c.client_key.as_path())),
    )
}

/// A server config from `certs`' server certificate, offering `alpn`, requiring a client
/// certificate issued by `client_ca` if given (for TLS mocks).
pub fn server_config(
    certs: &DevCerts,
    client_ca: Option<&Path>,
    alpn: &[&[u8]],
) -> Arc<ServerConfig> {
    let files = switchyard::tls::ServerTlsFiles {
        cert: &certs.server_cert,
        key: &certs.server_key,
        client_ca,
    };
    let config = switchyard::tls::server_config(&files).unwrap();
    let mut config = (*config).clone();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// An HTTPS client for one address (URLs use the IP, which the dev server certificate names).
#[derive(Clone)]
pub struct TlsClient {
    addr: SocketAddr,
    client: Client<HttpsConnector<HttpConnector>, ReqBody>,
}

impl TlsClient {
    /// Offers only `alpn` (so the server cannot pick the other version).
    pub fn new(addr: SocketAddr, config: ClientConfig, alpn: Alpn) -> TlsClient {
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only();
        let connector = match alpn {
            Alpn::Http1 => builder.enable_http1().build(),
            Alpn::H2 => builder.enable_http2().build(),
        };
        let client = Client::builder(TokioExecutor::new()).build(connector);
        TlsClient { addr, client }
    }

    /// Send; `Err` with the whole error chain if the exchange failed.
    pub async fn try_call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, String> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("https://{}{}", self.addr, path));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let req = builder.body(full(body)).unwrap();
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| chain(&e))?;
            let (head, body) = resp.into_parts();
            let body = body.collect().await.map_err(|e| chain(&e))?.to_bytes();
            Ok(Reply {
                status: head.status,
                version: head.version,
                headers: head.headers,
                body,
            })
        };
        tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err(format!("no complete answer within {CALL_TIMEOUT:?}")))
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let what = format!("{method} https://{}{path}", self.addr);
        self.try_call(method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> Reply {
        self.call(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await
    }
}

/// Connect and handshake, expecting the server to refuse: returns the error's text. With
/// TLS 1.3 a rejected client certificate shows up as an alert read after the client's side of
/// the handshake finished, so the probe reads (sending nothing) until the alert arrives.
/// Fails the test if the server accepted the handshake and answered or stayed quiet.
pub async fn handshake_error(addr: SocketAddr, config: ClientConfig) -> String {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::IpAddress(addr.ip().into());
    let probe = async {
        let mut tls = connector.connect(name, tcp).await.map_err(|e| chain(&e))?;
        let mut buf = [0u8; 64];
        match tls.read(&mut buf).await {
            Ok(0) => Ok("the server closed the connection without an alert".to_owned()),
            Ok(n) => Ok(format!(
                "the server sent data: {:?}",
                String::from_utf8_lossy(&buf[..n])
            )),
            Err(e) => Err(chain(&e)),
        }
    };
    match tokio::time::timeout(CALL_TIMEOUT, probe).await {
        Ok(Err(error)) => error,
        Ok(Ok(what)) => panic!("expected the handshake to fail, but {what}"),
        Err(_) => panic!("expected the handshake to fail, but the server accepted it"),
    }
}
