//! `switchyard certs dev`: a throwaway development CA, a server certificate for loopback and a
//! client certificate, written as PEM files. For development and tests only.
//!
//! Keys are ECDSA P-256 (PKCS#8 PEM), certificates are valid from an hour ago for
//! [`VALIDITY`]. The server certificate names `localhost`, `127.0.0.1` and `::1` and may only
//! authenticate servers; the client certificate may only authenticate clients.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The directory `switchyard certs dev` writes to unless told otherwise (git-ignored).
pub const DEFAULT_DIR: &str = "certs/dev";
/// How long the generated certificates stay valid: one year.
pub const VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Common name of the development CA.
pub const DEV_CA_NAME: &str = "Switchyard Development CA";
/// Common name of the client certificate.
pub const CLIENT_NAME: &str = "switchyard-dev-client";
/// Names in the server certificate.
pub const SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Where the generated files are.
#[derive(Clone, Debug)]
pub struct DevCerts {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl DevCerts {
    fn in_dir(dir: &Path) -> DevCerts {
        let file = |name: &str| dir.join(name);
        DevCerts {
            dir: dir.to_path_buf(),
            ca_cert: file("ca.crt"),
            ca_key: file("ca.key"),
            server_cert: file("server.crt"),
            server_key: file("server.key"),
            client_cert: file("client.crt"),
            client_key: file("client.key"),
        }
    }

    /// Every file with what it holds, in the order written.
    pub fn files(&self) -> [(&Path, &'static str); 6] {
        [
            (
                &self.ca_cert,
                "CA certificate: what clients and the gateway trust",
            ),
            (
                &self.ca_key,
                "CA private key: anyone holding it can mint trusted certificates",
            ),
            (
                &self.server_cert,
                "server certificate for localhost, 127.0.0.1 and ::1",
            ),
            (&self.server_key, "the server certificate's private key"),
            (
                &self.client_cert,
                "client certificate, CN=switchyard-dev-client",
            ),
            (&self.client_key, "the client certificate's private key"),
        ]
        .map(|(path, what)| (path.as_path(), what))
    }
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct DevSpec {
    /// Common name of the CA; a different name makes a second, unrelated CA easy to tell
    /// apart in error messages.
    pub ca_name: String,
    /// Replace files that already exist.
    pub overwrite: bool,
}

/// Certificates could not be generated or written.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("{} already exists; pass --force to overwrite the development certificates", .path.display())]
    Exists { path: PathBuf },
    #[error("cannot create the directory {}: {source}", .path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate the {what}: {source}")]
    Generate {
        what: &'static str,
        source: rcgen::Error,
    },
}

/// Write a development CA, server and client certificate into `dir` (created if missing).
/// Refuses to replace any existing file unless `overwrite`.
pub fn generate_dev(dir: &Path, overwrite: bool) -> Result<DevCerts, CertsError> {
    generate(
        dir,
        &DevSpec {
            ca_name: DEV_CA_NAME.to_owned(),
            overwrite,
        },
    )
}

/// Like [`generate_dev`], but with a CA named "Switchyard Untrusted Test CA": a second,
/// unrelated set whose certificates the first set's CA does not vouch for.
pub fn generate_untrusted(dir: &Path) -> Result<DevCerts, CertsError> {
    generate(
        dir,
        &DevSpec {
            ca_name: "Switchyard Untrusted Test CA".to_owned(),
            overwrite: false,
        },
    )
}

/// Generate everything in memory, then write the six files.
pub fn generate(dir: &Path, spec: &DevSpec) -> Result<DevCerts, CertsError> {
    let certs = DevCerts::in_dir(dir);
    if !spec.overwrite {
        if let Some((path, _)) = certs.files().into_iter().find(|(p, _)| p.exists()) {
            return Err(CertsError::Exists {
                path: path.to_path_buf(),
            });
        }
    }
    let pems = build(spec)?;
    std::fs::create_dir_all(dir).map_err(|source| CertsError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    for ((path, _), (pem, secret)) in certs.files().into_iter().zip(pems) {
        write(path, pem.as_bytes(), secret, spec.overwrite)?;
    }
    Ok(certs)
}

/// The PEM text of each file in [`DevCerts::files`] order, and whether it is a private key.
fn build(spec: &DevSpec) -> Result<[(String, bool); 6], CertsError> {
    let generate = |what| move |source| CertsError::Generate { what, source };
    let not_before = SystemTime::now() - Duration::from_secs(3600);
    let not_after = SystemTime::now() + VALIDITY;

    let ca_key = KeyPair::generate().map_err(generate("CA key"))?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, spec.ca_name.as_str());
    ca.distinguished_name
        .push(DnType::OrganizationName, "Switchyard development");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = not_before.into();
    ca.not_after = not_after.into();
    let ca_cert = ca
        .self_signed(&ca_key)
        .map_err(generate("CA certificate"))?;
    let issuer = Issuer::new(ca, ca_key);

    let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
        let mut params = CertificateParams::new(names).map_err(generate("certificate names"))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        let key = KeyPair::generate().map_err(generate("key"))?;
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(generate("certificate"))?;
        Ok::<_, CertsError>((cert.pem(), key.serialize_pem()))
    };
    let (server_cert, server_key) = leaf(
        SERVER_NAMES.iter().map(|n| (*n).to_owned()).collect(),
        "localhost",
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let (client_cert, client_key) =
        leaf(Vec::new(), CLIENT_NAME, ExtendedKeyUsagePurpose::ClientAuth)?;
    Ok([
        (ca_cert.pem(), false),
        (issuer.key().serialize_pem(), true),
        (server_cert, false),
        (server_key, true),
        (client_cert, false),
        (client_key, true),
    ])
}

/// Write one file; private keys are readable by their owner only (mode 0600 on unix).
fn write(path: &Path, contents: &[u8], secret: bool, overwrite: bool) -> Result<(), CertsError> {
    let error = |source| CertsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut options = OpenOptions::new();
    options.write(true);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        // Checked above too; this closes the gap between the check and the write.
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options.open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => CertsError::Exists {
            path: path.to_path_buf(),
        },
        _ => error(source),
    })?;
    // A replaced file keeps its old mode: tighten it before the key goes in.
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(error)?;
    }
    file.write_all(contents).map_err(error)?;
    file.sync_all().map_err(error)
}

/// What `switchyard certs dev` prints after writing the files.
pub fn summary(certs: &DevCerts) -> String {
    let mut out = format!(
        "wrote development certificates to {}:\n",
        certs.dir.display()
    );
    for (path, what) in certs.files() {
        out.push_str(&format!("  {:<40} {what}\n", path.display()));
    }
    let show = |p: &Path| p.display().to_string();
    out.push_str(&format!(
        "\nserve TLS with them:\n\n  [server.tls]\n  listen = \"127.0.0.1:8443\"\n  cert = \"{}\"\n  key = \"{}\"\n  client_ca = \"{}\"   # optional: require client certificates\n\n  curl --cacert {} --cert {} --key {} https://localhost:8443/v1/models\n",
        show(&certs.server_cert),
        show(&certs.server_key),
        show(&certs.ca_cert),
        show(&certs.ca_cert),
        show(&certs.client_cert),
        show(&certs.client_key),
    ));
    out.push_str(
        "\nWARNING: development only. These certificates come from a throwaway CA whose key sits \
         next to them; never trust this CA outside your own machine or use these files in \
         production.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    #[test]
    fn writes_six_files_that_rustls_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let certs = generate_dev(dir.path(), false).unwrap();
        for (path, _) in certs.files() {
            assert!(path.is_file(), "{} missing", path.display());
        }
        let chain = CertificateDer::pem_file_iter(&certs.server_cert)
            .unwrap()
            .count();
        assert_eq!(chain, 1, "server.crt holds the leaf only");
        let files = crate::tls::ServerTlsFiles {
            cert: &certs.server_cert,
            key: &certs.server_key,
            client_ca: Some(&certs.ca_cert),
        };
        crate::tls::server_config(&files).unwrap();
    }

    #[test]
    fn refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        generate_dev(dir.path(), false).unwrap();
        let before = std::fs::read(dir.path().join("ca.crt")).unwrap();
        let err = generate_dev(dir.path(), false).unwrap_err();
        assert!(matches!(err, CertsError::Exists { .. }), "{err}");
        assert_eq!(std::fs::read(dir.path().join("ca.crt")).unwrap(), before);
        generate_dev(dir.path(), true).unwrap();
        assert_ne!(std::fs::read(dir.path().join("ca.crt")).unwrap(), before);
    }
}
