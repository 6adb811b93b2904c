//! Upstream credentials: what the gateway adds to each request so the provider accepts it.
//!
//! Fixed headers (`api-key`, `authorization: Bearer`) are built once from the config. A
//! `bearer_token_file` is read at start and re-read in the background, so a rotated token
//! (workload identity) is picked up without a restart; SigV4 signing lives in `sigv4.rs`.
//! Requests read the current credential lock-free (`arc-swap`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use arc_swap::ArcSwapOption;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};

use super::sigv4::SigV4Signer;
use crate::config::{defaults, UpstreamAuth};

/// Credentials could not be loaded or applied.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("upstreams.{upstream}.bearer_token_file = {path:?}: {detail}")]
    TokenFile {
        upstream: String,
        path: PathBuf,
        detail: String,
    },
    #[error("upstream {upstream}: no usable AWS credentials: {detail}")]
    Credentials { upstream: String, detail: String },
    #[error("upstream {upstream}: cannot sign the request: {detail}")]
    Signing { upstream: String, detail: String },
}

/// How one upstream's requests are authenticated.
pub enum Auth {
    /// Nothing added by the gateway.
    None,
    /// One fixed header (`api-key: …` or `authorization: Bearer …`).
    Header(HeaderName, HeaderValue),
    /// `authorization: Bearer …` from a file, refreshed in the background.
    TokenFile(Arc<TokenFile>),
    /// AWS SigV4 over the exact bytes sent.
    SigV4(SigV4Signer),
}

impl Auth {
    pub fn new(upstream: &str, auth: &UpstreamAuth) -> Auth {
        match auth {
            UpstreamAuth::None => Auth::None,
            UpstreamAuth::ApiKeyHeader(v) => {
                Auth::Header(HeaderName::from_static("api-key"), v.0.clone())
            }
            UpstreamAuth::Bearer(v) => Auth::Header(header::AUTHORIZATION, v.0.clone()),
            UpstreamAuth::BearerFile(path) => Auth::TokenFile(Arc::new(TokenFile {
                upstream: upstream.to_owned(),
                path: path.clone(),
                current: ArcSwapOption::empty(),
            })),
            UpstreamAuth::SigV4(settings) => Auth::SigV4(SigV4Signer::new(upstream, settings)),
        }
    }

    /// Load what must be loaded before serving (the token file, AWS credentials) and start
    /// the background refresh. Called once, at gateway start.
    pub async fn start(&self) -> Result<(), AuthError> {
        match self {
            Auth::None | Auth::Header(..) => Ok(()),
            Auth::TokenFile(file) => {
                file.load().await?;
                TokenFile::watch(Arc::downgrade(file));
                Ok(())
            }
            Auth::SigV4(signer) => signer.start().await,
        }
    }

    /// Whether the whole body must be in hand before the request can be sent (SigV4 signs
    /// a hash of it).
    pub fn needs_body(&self) -> bool {
        matches!(self, Auth::SigV4(_))
    }

    /// Add the credentials to a request that is otherwise final: `uri` is the upstream URI,
    /// `headers` what will be sent, `body` the exact bytes (empty for a bodiless request).
    pub fn apply(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &mut HeaderMap,
        body: &[u8],
    ) -> Result<(), AuthError> {
        match self {
            Auth::None => Ok(()),
            Auth::Header(name, value) => {
                headers.insert(name.clone(), value.clone());
                Ok(())
            }
            Auth::TokenFile(file) => {
                if let Some(value) = file.current.load_full() {
                    headers.insert(header::AUTHORIZATION, (*value).clone());
                }
                Ok(())
            }
            Auth::SigV4(signer) => signer.sign(method, uri, headers, body),
        }
    }
}

/// A bearer token kept in a file that another process rewrites (workload identity).
pub struct TokenFile {
    upstream: String,
    path: PathBuf,
    current: ArcSwapOption<HeaderValue>,
}

impl TokenFile {
    /// Read the file and, if it holds a usable token different from the current one, make it
    /// current. Returns whether the token changed.
    async fn load(&self) -> Result<bool, AuthError> {
        let value = read_token(&self.path)
            .await
            .map_err(|detail| AuthError::TokenFile {
                upstream: self.upstream.clone(),
                path: self.path.clone(),
                detail,
            })?;
        let unchanged = self
            .current
            .load()
            .as_deref()
            .is_some_and(|current| *current == value);
        if !unchanged {
            self.current.store(Some(Arc::new(value)));
        }
        Ok(!unchanged)
    }

    /// Re-read the file every `TOKEN_FILE_POLL` until the upstream is dropped. A read that
    /// fails keeps the last good token and logs a warning.
    fn watch(file: Weak<TokenFile>) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(defaults::TOKEN_FILE_POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick is immediate; the file was just read
            loop {
                tick.tick().await;
                let Some(file) = file.upgrade() else { return };
                match file.load().await {
                    Ok(true) => tracing::info!(
                        upstream = %file.upstream,
                        path = %file.path.display(),
                        "bearer token file changed; using the new token"
                    ),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "keeping the previous bearer token"),
                }
            }
        });
    }
}

/// Longest accepted token file, in bytes (Entra ID access tokens are a few KiB).
const MAX_TOKEN_BYTES: u64 = 64 * 1024;

/// The token in `path` as an `authorization: Bearer …` value. Surrounding whitespace (a
/// trailing newline) is not part of the token.
async fn read_token(path: &Path) -> Result<HeaderValue, String> {
    use tokio::io::AsyncReadExt as _;
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("cannot read the token: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_TOKEN_BYTES + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| format!("cannot read the token: {e}"))?;
    if bytes.len() as u64 > MAX_TOKEN_BYTES {
        return Err(format!(
            "the file is larger than {MAX_TOKEN_BYTES} bytes; is this the token file?"
        ));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| "the token is not UTF-8".to_owned())?;
    let token = text.trim();
    if token.is_empty() {
        return Err("the file is empty".to_owned());
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "the token holds characters a header cannot carry".to_owned())?;
    value.set_sensitive(true);
    Ok(value)
}
