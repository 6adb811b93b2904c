//! AWS SigV4 signing for Bedrock upstreams: AWS's signer (`aws-sigv4`) over the exact bytes
//! sent, with credentials from AWS's own chain (`aws-config`, see `chain.rs`).
//!
//! Credentials are loaded once by `start`, before the gateway serves; credentials that expire
//! (STS, SSO, web identity, ECS, IMDS) are refreshed by a background task a few minutes before
//! they do. Requests read the current credentials lock-free (`arc-swap`) and never wait on a
//! refresh: a refresh that fails keeps the old credentials until they expire, and a request
//! signed after that gets `AuthError::Credentials`. Nothing here reads the environment per
//! request; the chain runs at start and refresh only.
//!
//! **What is signed.** Every header that reaches the wire as it is, except the ones an
//! intermediary may legitimately add, drop or rewrite (`UNSIGNED_HEADERS`), plus `host`.
//! `host` is never taken from the request headers: it is derived from the upstream URI the way
//! hyper derives the HTTP/1.1 `Host` header (the host, plus the port unless it is the scheme's
//! default), which is also the HTTP/2 `:authority` hyper sends for a URI without an explicit
//! default port. The client's own `authorization`, `x-amz-date`, `x-amz-security-token` and
//! `x-amz-content-sha256` are removed first: the client's credentials never reach AWS.

mod chain;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4::SigningParams;
use aws_smithy_runtime_api::client::identity::Identity;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Uri};
use tokio::sync::oneshot;

use super::auth::AuthError;
use super::error_chain;
use crate::config::SigV4Settings;

/// Refresh expiring credentials this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// After a failed refresh, try again this much later (the old credentials stay in use).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// Shortest wait between two refreshes, so that credentials with a very short lifetime (or a
/// provider that keeps handing back the same expiring ones) cannot spin the task.
const MIN_REFRESH_WAIT: Duration = Duration::from_secs(1);
/// Longest time one run of the credential chain may take (IMDS and STS are network calls).
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Headers set by the client that carry or imitate SigV4 credentials; removed before signing.
const CLIENT_SIGNING_HEADERS: &[&str] = &[
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
];

/// Headers sent but never signed: hop-by-hop and framing headers that the HTTP layer owns
/// (the payload hash binds the body, so `content-length` adds nothing), and the ones AWS's
/// own signers leave out because proxies and tracing sidecars rewrite them (botocore's
/// `SIGNED_HEADERS_BLACKLIST`: `user-agent`, `x-amzn-trace-id`, W3C trace context).
const UNSIGNED_HEADERS: &[&str] = &[
    "authorization",
    "baggage",
    "connection",
    "content-length",
    "expect",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "traceparent",
    "tracestate",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "x-amzn-trace-id",
];

/// Signs requests for one upstream with credentials from the AWS default chain.
pub struct SigV4Signer {
    upstream: String,
    settings: SigV4Settings,
    state: Arc<State>,
    /// Dropped with the signer; the refresh task, waiting on the other end, then exits.
    stop: OnceLock<oneshot::Sender<()>>,
}

/// What the refresh task shares with the signer (it holds only a `Weak` to it).
struct State {
    upstream: String,
    current: ArcSwapOption<Loaded>,
}

/// One set of credentials, ready to sign with.
struct Loaded {
    identity: Identity,
    expiry: Option<SystemTime>,
}

impl Loaded {
    fn new(credentials: Credentials) -> Loaded {
        let expiry = credentials.expiry();
        Loaded {
            identity: credentials.into(),
            expiry,
        }
    }

    fn expired_at(&self, now: SystemTime) -> bool {
        self.expiry.is_some_and(|expiry| expiry <= now)
    }
}

impl SigV4Signer {
    pub fn new(upstream: &str, settings: &SigV4Settings) -> SigV4Signer {
        SigV4Signer {
            upstream: upstream.to_owned(),
            settings: settings.clone(),
            state: Arc::new(State {
                upstream: upstream.to_owned(),
                current: ArcSwapOption::empty(),
            }),
            stop: OnceLock::new(),
        }
    }

    /// Load the credentials through the AWS chain and, if they expire, start refreshing them
    /// in the background. An error names the upstream and where the chain looked.
    pub async fn start(&self) -> Result<(), AuthError> {
        let provider = chain::provider(&self.settings).await;
        self.start_with(provider, chain::looked_in(&self.settings))
            .await
    }

    /// `start` with a given provider; `looked_in` says where it looks, for errors.
    async fn start_with(
        &self,
        provider: SharedCredentialsProvider,
        looked_in: String,
    ) -> Result<(), AuthError> {
        let credentials = fetch(&provider).await.map_err(|e| AuthError::Credentials {
            upstream: self.upstream.clone(),
            detail: format!("{e}; looked in {looked_in}"),
        })?;
        let loaded = Loaded::new(credentials);
        if let Some(expiry) = loaded
            .expiry
            .filter(|_| loaded.expired_at(SystemTime::now()))
        {
            return Err(AuthError::Credentials {
                upstream: self.upstream.clone(),
                detail: format!(
                    "the credentials found expired at {}; looked in {looked_in}",
                    rfc3339(expiry)
                ),
            });
        }
        let expiry = loaded.expiry;
        self.state.current.store(Some(Arc::new(loaded)));
        tracing::info!(
            upstream = %self.upstream,
            service = %self.settings.service,
            region = %self.settings.region,
            expires = expiry.map(rfc3339),
            "AWS credentials loaded"
        );
        if expiry.is_some() {
            let (stop, stopped) = oneshot::channel();
            // A second start keeps the task that is already running.
            if self.stop.set(stop).is_ok() {
                tokio::spawn(refresh(Arc::downgrade(&self.state), provider, stopped));
            }
        }
        Ok(())
    }

    /// Sign a request that is otherwise final with the current credentials. Never waits.
    pub fn sign(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &mut HeaderMap,
        body: &[u8],
    ) -> Result<(), AuthError> {
        let current = self.state.current.load();
        let Some(loaded) = current.as_deref() else {
            return Err(AuthError::Credentials {
                upstream: self.upstream.clone(),
                detail: "no credentials were loaded (the upstream was not started)".to_owned(),
            });
        };
        let now = SystemTime::now();
        if let Some(expiry) = loaded.expiry.filter(|_| loaded.expired_at(now)) {
            return Err(AuthError::Credentials {
                upstream: self.upstream.clone(),
                detail: format!(
                    "the credentials expired at {} and could not be refreshed",
                    rfc3339(expiry)
                ),
            });
        }
        let request = Request { method, uri, body };
        sign_request(&loaded.identity, &self.settings, now, &request, headers).map_err(|detail| {
            AuthError::Signing {
                upstream: self.upstream.clone(),
                detail,
            }
        })
    }
}

/// The parts of a request that are signed besides its headers.
struct Request<'a> {
    method: &'a Method,
    uri: &'a Uri,
    body: &'a [u8],
}

/// Sign `request` with `identity` at `time`: remove the client's signing headers and any
/// `host` (the URI decides it), then add `authorization`, `x-amz-date` and, for temporary
/// credentials, `x-amz-security-token` to `headers`. Returns the error text on failure.
fn sign_request(
    identity: &Identity,
    settings: &SigV4Settings,
    time: SystemTime,
    request: &Request<'_>,
    headers: &mut HeaderMap,
) -> Result<(), String> {
    for name in CLIENT_SIGNING_HEADERS {
        headers.remove(*name);
    }
    headers.remove(header::HOST);
    if request.uri.scheme().is_none() || request.uri.host().is_none() {
        // aws-sigv4 derives `host` from the URI and would panic without one.
        return Err(format!("the upstream URI {} is not absolute", request.uri));
    }
    let instructions = {
        let mut signing = SigningSettings::default();
        signing.excluded_headers =
            Some(UNSIGNED_HEADERS.iter().map(|h| Cow::Borrowed(*h)).collect());
        let params = SigningParams::builder()
            .identity(identity)
            .region(&settings.region)
            .name(&settings.service)
            .time(time)
            .settings(signing)
            .build()
            .map_err(|e| format!("invalid signing parameters: {e}"))?
            .into();
        // A value that is not visible ASCII cannot be canonicalised the same way by both
        // ends; its header (every value of it: a name is signed whole or not at all) is sent
        // unsigned rather than signed in a form AWS might not reproduce.
        let readable =
            |name: &header::HeaderName| headers.get_all(name).iter().all(|v| v.to_str().is_ok());
        let signed = headers
            .iter()
            .filter(|(name, _)| !UNSIGNED_HEADERS.contains(&name.as_str()) && readable(name))
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
        let signable = SignableRequest::new(
            request.method.as_str(),
            request.uri.to_string(),
            signed,
            SignableBody::Bytes(request.body),
        )
        .map_err(|e| error_chain(&e))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| error_chain(&e))?
            .into_parts();
        instructions
    };
    let (new_headers, _query) = instructions.into_parts();
    for h in new_headers {
        let mut value = HeaderValue::from_str(h.value())
            .map_err(|_| format!("the signature's {} header is not a header value", h.name()))?;
        value.set_sensitive(true);
        headers.insert(h.name(), value);
    }
    Ok(())
}

/// Run the provider once, bounded by `LOAD_TIMEOUT`; the error is its whole chain of causes.
async fn fetch(provider: &SharedCredentialsProvider) -> Result<Credentials, String> {
    match tokio::time::timeout(LOAD_TIMEOUT, provider.provide_credentials()).await {
        Ok(Ok(credentials)) => Ok(credentials),
        Ok(Err(e)) => Err(error_chain(&e)),
        Err(_) => Err(format!(
            "the credential chain did not answer within {}",
            humantime::format_duration(LOAD_TIMEOUT)
        )),
    }
}

/// Keep the credentials fresh until the signer is dropped (`stopped` then fires) or the
/// credentials stop expiring. A refresh that fails keeps the current credentials (they are
/// used until they expire) and is retried `RETRY_AFTER_FAILURE` later.
async fn refresh(
    state: Weak<State>,
    provider: SharedCredentialsProvider,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut failed = false;
    loop {
        let wait = {
            let Some(state) = state.upgrade() else { return };
            let current = state.current.load();
            let Some(expiry) = current.as_deref().and_then(|l| l.expiry) else {
                return;
            };
            if failed {
                RETRY_AFTER_FAILURE
            } else {
                refresh_wait(expiry, SystemTime::now())
            }
        };
        tokio::select! {
            _ = &mut stopped => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let result = tokio::select! {
            _ = &mut stopped => return,
            result = fetch(&provider) => result,
        };
        let Some(state) = state.upgrade() else { return };
        let now = SystemTime::now();
        match result {
            Ok(credentials) => {
                let loaded = Loaded::new(credentials);
                if loaded.expired_at(now) {
                    failed = true;
                    tracing::warn!(
                        upstream = %state.upstream,
                        "refreshed AWS credentials are already expired; keeping the current ones until they expire"
                    );
                    continue;
                }
                failed = false;
                tracing::info!(
                    upstream = %state.upstream,
                    expires = loaded.expiry.map(rfc3339),
                    "AWS credentials refreshed"
                );
                state.current.store(Some(Arc::new(loaded)));
            }
            Err(e) => {
                failed = true;
                let current = state.current.load();
                let expires = current.as_deref().and_then(|l| l.expiry).map(rfc3339);
                tracing::warn!(
                    upstream = %state.upstream,
                    error = %e,
                    current_expires = expires,
                    retry_in = %humantime::format_duration(RETRY_AFTER_FAILURE),
                    "cannot refresh AWS credentials; keeping the current ones until they expire"
                );
            }
        }
    }
}

/// How long to wait before refreshing credentials that expire at `expiry`:
/// `REFRESH_BEFORE_EXPIRY` ahead, but never less than half the remaining lifetime (short-lived
/// credentials) nor less than `MIN_REFRESH_WAIT`.
fn refresh_wait(expiry: SystemTime, now: SystemTime) -> Duration {
    let remaining = expiry.duration_since(now).unwrap_or(Duration::ZERO);
    remaining
        .saturating_sub(REFRESH_BEFORE_EXPIRY)
        .max(remaining / 2)
        .max(MIN_REFRESH_WAIT)
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}
