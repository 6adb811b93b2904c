//! Upstream clients: one pooled hyper client per upstream, URI mapping and request headers.
//!
//! An `UpstreamClient` knows how to reach exactly one upstream. It never chooses which
//! upstream serves a request (that is `policy.rs`) and never retries elsewhere: a failure is
//! returned to the caller as an `UpstreamError` and becomes a gateway error.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::config::{Timeouts, Upstream, UpstreamUrl};
use crate::proxy::body::{BodyLimitExceeded, ClientBodyError, UpstreamBody};

/// Client credential headers; removed on the way to an upstream that sets its own.
pub const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "api-key",
    "x-api-key",
    "ocp-apim-subscription-key",
    "x-amz-security-token",
];

/// Why an upstream failed to answer, before any response byte came back.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("could not connect to upstream {upstream}: {detail}")]
    Connect { upstream: String, detail: String },
    #[error("upstream {upstream} did not connect within {timeout:?}")]
    ConnectTimeout { upstream: String, timeout: Duration },
    #[error("upstream {upstream} sent no response head within {timeout:?}")]
    FirstByteTimeout { upstream: String, timeout: Duration },
    #[error("upstream {upstream} did not answer within the request timeout")]
    RequestTimeout { upstream: String },
    #[error("upstream {upstream} failed before answering: {detail}")]
    Protocol { upstream: String, detail: String },
}

/// Why sending a request failed: the upstream's fault, or the client's while its body was
/// being streamed through (the upload to the upstream is then aborted).
#[derive(Debug)]
pub enum SendError {
    Upstream(UpstreamError),
    BodyTooLarge { limit: u64 },
    ClientBody { detail: String },
    UploadTimeout,
}

/// A pooled client for one upstream plus everything needed to address it.
pub struct UpstreamClient {
    name: String,
    name_header: HeaderValue,
    url: UpstreamUrl,
    version: Version,
    set_headers: Vec<(HeaderName, HeaderValue)>,
    forward_client_credentials: bool,
    timeouts: Timeouts,
    client: Client<HttpConnector, UpstreamBody>,
}

impl UpstreamClient {
    pub fn new(cfg: &Upstream) -> UpstreamClient {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(cfg.timeouts.connect));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
            .http2_only(cfg.http2)
            .build(connector);
        let name_header = HeaderValue::from_str(&cfg.name)
            .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        UpstreamClient {
            name: cfg.name.clone(),
            name_header,
            url: cfg.url.clone(),
            version: if cfg.http2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            },
            set_headers: cfg
                .set_headers
                .iter()
                .map(|(n, v)| (n.clone(), v.0.clone()))
                .collect(),
            forward_client_credentials: cfg.forward_client_credentials,
            timeouts: cfg.timeouts,
            client,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The upstream name as a header value, for `x-switchyard-upstream`.
    pub fn name_header(&self) -> &HeaderValue {
        &self.name_header
    }

    pub fn url(&self) -> &UpstreamUrl {
        &self.url
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Map a client path-and-query onto this upstream: the client-facing `base_path` prefix
    /// is replaced by the upstream URL's path; other paths are kept as they are.
    pub fn map_uri(&self, base_path: &str, pq: &PathAndQuery) -> Result<Uri, http::Error> {
        let path = pq.path();
        let rest = if base_path.is_empty() {
            Some(path)
        } else {
            path.strip_prefix(base_path)
                .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        let mut target = String::with_capacity(self.url.path.len() + pq.as_str().len());
        match rest {
            Some(rest) => {
                target.push_str(&self.url.path);
                target.push_str(rest);
            }
            None => target.push_str(path),
        }
        if target.is_empty() {
            target.push('/');
        }
        if let Some(q) = pq.query() {
            target.push('?');
            target.push_str(q);
        }
        Uri::builder()
            .scheme(self.url.scheme.clone())
            .authority(self.url.authority.clone())
            .path_and_query(target)
            .build()
    }

    /// Rewrite the client's headers for this upstream. The proxy has already removed the
    /// hop-by-hop headers (before classifying) except `upgrade`, which the classifier reads
    /// and which goes now, with `host` and `expect`; client credentials are removed when the
    /// upstream sets its own; configured headers are set.
    pub fn prepare_headers(&self, headers: &mut HeaderMap) {
        headers.remove(header::UPGRADE);
        headers.remove(header::HOST);
        headers.remove(header::EXPECT);
        if !self.forward_client_credentials {
            for name in CREDENTIAL_HEADERS {
                headers.remove(*name);
            }
        }
        for (name, value) in &self.set_headers {
            headers.insert(name.clone(), value.clone());
        }
    }

    /// Send `req` (already mapped and prepared) and wait for the response head. The
    /// first-byte clock starts when the request body has been sent (`uploaded` fires, or is
    /// `None` for a body that is already complete); until then only `deadline` applies, and
    /// running out of it then is the client's slow upload, not the upstream's fault.
    /// Returns the response and the instant the first-byte clock started.
    /// Nothing here retries on another upstream.
    pub async fn send(
        &self,
        mut req: Request<UpstreamBody>,
        uploaded: Option<oneshot::Receiver<()>>,
        deadline: Instant,
    ) -> Result<(Response<Incoming>, Instant), SendError> {
        *req.version_mut() = self.version;
        let response = self.client.request(req);
        tokio::pin!(response);
        if let Some(uploaded) = uploaded {
            tokio::select! {
                result = &mut response => {
                    // The upstream answered before the upload ended (an early error, say).
                    return result
                        .map(|r| (r, Instant::now()))
                        .map_err(|e| self.classify_error(&e));
                }
                // Sent, or the body was dropped because the exchange failed: either way the
                // response future now settles on its own terms.
                _ = uploaded => {}
                _ = tokio::time::sleep_until(deadline) => return Err(SendError::UploadTimeout),
            }
        }
        let sent = Instant::now();
        let budget = self.timeouts.first_byte;
        let by_budget = sent + budget;
        match tokio::time::timeout_at(by_budget.min(deadline), &mut response).await {
            Ok(Ok(resp)) => Ok((resp, sent)),
            Ok(Err(e)) => Err(self.classify_error(&e)),
            Err(_) if deadline < by_budget => {
                Err(SendError::Upstream(UpstreamError::RequestTimeout {
                    upstream: self.name.clone(),
                }))
            }
            Err(_) => Err(SendError::Upstream(UpstreamError::FirstByteTimeout {
                upstream: self.name.clone(),
                timeout: budget,
            })),
        }
    }

    fn classify_error(&self, e: &hyper_util::client::legacy::Error) -> SendError {
        use std::error::Error as _;
        let mut source = e.source();
        while let Some(err) = source {
            if let Some(limit) = err.downcast_ref::<BodyLimitExceeded>() {
                return SendError::BodyTooLarge { limit: limit.limit };
            }
            if let Some(client) = err.downcast_ref::<ClientBodyError>() {
                return SendError::ClientBody {
                    detail: client.0.to_string(),
                };
            }
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::TimedOut && e.is_connect() {
                    return SendError::Upstream(UpstreamError::ConnectTimeout {
                        upstream: self.name.clone(),
                        timeout: self.timeouts.connect,
                    });
                }
            }
            source = err.source();
        }
        let upstream = self.name.clone();
        let detail = error_chain(e);
        SendError::Upstream(if e.is_connect() {
            UpstreamError::Connect { upstream, detail }
        } else {
            UpstreamError::Protocol { upstream, detail }
        })
    }
}

/// The error and its sources on one line (hyper's top-level messages are terse).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(err) = source {
        let text = err.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = err.source();
    }
    out
}
