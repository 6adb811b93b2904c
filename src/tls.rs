//! TLS material and rustls configurations: PEM files in, `ServerConfig` / `ClientConfig` out.
//!
//! Both sides use rustls with the ring provider and accept TLS 1.3 and 1.2 only. Files are
//! read while the config is validated, so a missing or malformed certificate is a config
//! error that names the key, the file and the problem (`switchyard check` catches it).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// ALPN protocols the client-facing listener offers, most preferred first.
pub const SERVER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// TLS versions accepted on both sides.
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A TLS file or setting that cannot be used; `key` is the dotted config key.
#[derive(Debug, thiserror::Error)]
#[error("{key} = {path:?}: {problem}")]
pub struct TlsError {
    pub key: String,
    pub path: String,
    pub problem: String,
}

fn tls_error(key: &str, path: &Path, problem: impl Into<String>) -> TlsError {
    TlsError {
        key: key.to_owned(),
        path: path.display().to_string(),
        problem: problem.into(),
    }
}

/// rustls's words for a key that is not the certificate's, in plain words.
fn key_mismatch(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InconsistentKeys(_) => {
            "the private key does not belong to the certificate".to_owned()
        }
        other => format!("cannot be used with the certificate: {other}"),
    }
}

/// The crypto provider every config is built with.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file, in order (a chain starts with the leaf).
pub fn load_certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(key, path, format!("not a valid PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error(
            key,
            path,
            "contains no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(key, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => tls_error(
            key,
            path,
            "contains no PEM private key (expected -----BEGIN PRIVATE KEY-----)",
        ),
        other => tls_error(key, path, format!("not a valid PEM private key: {other}")),
    })
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| tls_error(key, path, format!("cannot read the file: {e}")))
}

/// Trust anchors from a PEM bundle; every certificate in it must parse as one.
fn roots_from(key: &str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(key, path)? {
        roots
            .add(cert)
            .map_err(|e| tls_error(key, path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// Where the client-facing listener's TLS material comes from (`[server.tls]`).
pub struct ServerTlsFiles<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    pub client_ca: Option<&'a Path>,
}

/// The listener's rustls config: the certificate chain and key, ALPN h2 and http/1.1, and,
/// with `client_ca`, a required client certificate issued by that CA.
pub fn server_config(files: &ServerTlsFiles<'_>) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = load_certs("server.tls.cert", files.cert)?;
    let key = load_key("server.tls.key", files.key)?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| tls_error("server.tls", files.cert, e.to_string()))?;
    let builder = match files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = roots_from("server.tls.client_ca", ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| tls_error("server.tls.client_ca", ca, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        tls_error(
            "server.tls.key",
            files.key,
            format!("{} (server.tls.cert)", key_mismatch(&e)),
        )
    })?;
    config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// How an upstream's server certificate is checked, and what the gateway presents to it.
pub struct UpstreamTlsFiles<'a> {
    /// Dotted key prefix for errors, e.g. `upstreams.azure`.
    pub prefix: &'a str,
    /// Extra trust anchors, added to the platform and webpki roots.
    pub ca: Option<&'a Path>,
    /// Client certificate chain and key for upstream mTLS.
    pub client_cert: Option<(&'a Path, &'a Path)>,
    /// Accept any server certificate. For local testing only; the gateway logs a warning.
    pub danger_accept_invalid_certs: bool,
}

/// The upstream connector's rustls config. Hostname verification and SNI are always on unless
/// `danger_accept_invalid_certs`; ALPN is set by the connector (h2 when enabled, http/1.1).
pub fn client_config(files: &UpstreamTlsFiles<'_>) -> Result<Arc<ClientConfig>, TlsError> {
    let key = |k: &str| format!("{}.{k}", files.prefix);
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| tls_error(files.prefix, Path::new(""), e.to_string()))?;
    let builder = if files.danger_accept_invalid_certs {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider }))
    } else {
        let mut roots = default_roots();
        if let Some(ca) = files.ca {
            let extra = roots_from(&key("ca"), ca)?;
            roots.roots.extend(extra.roots);
        }
        builder.with_root_certificates(roots)
    };
    let config = match files.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key_path)) => {
            let chain = load_certs(&key("client_cert"), cert)?;
            let private = load_key(&key("client_key"), key_path)?;
            builder.with_client_auth_cert(chain, private).map_err(|e| {
                tls_error(
                    &key("client_key"),
                    key_path,
                    format!("{} (client_cert)", key_mismatch(&e)),
                )
            })?
        }
    };
    Ok(Arc::new(config))
}

/// A config for plain-HTTP upstreams: the connector needs one, it is never used.
pub fn unused_client_config(prefix: &str) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| tls_error(prefix, Path::new(""), e.to_string()))?
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Mozilla's roots (webpki-roots, always present) plus whatever the platform store holds.
fn default_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let native = rustls_native_certs::load_native_certs();
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(
        added,
        ignored,
        errors = native.errors.len(),
        "platform trust anchors loaded"
    );
    roots
}

/// `danger_accept_invalid_certs`: signatures are still checked (the handshake stays sound),
/// the certificate chain and name are not.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
