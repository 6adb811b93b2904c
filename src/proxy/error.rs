//! Errors the gateway answers itself: one enum, one mapping to status, OpenAI-style JSON
//! body, and a bounded metric label.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;

use crate::classify::{Class, Unclassifiable, UnclassifiableReason};
use crate::metrics::{Rejection, UpstreamErrorKind};
use crate::upstream::auth::AuthError;
use crate::upstream::{AdaptError, PickError, SendError, UpstreamError};

/// A request the gateway refuses or cannot complete.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("method {0} is not supported by this gateway")]
    MethodNotAllowed(Method),
    #[error("request target must be an absolute path such as /v1/chat/completions")]
    BadTarget,
    #[error("{0}")]
    BadHost(&'static str),
    #[error("transfer-encoding {0:?} is not accepted: a request body may only be chunked, once")]
    BadFraming(String),
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("request body exceeds the limit of {limit} bytes; its upload to upstream {upstream} was aborted")]
    StreamedBodyTooLarge { limit: u64, upstream: String },
    #[error("{}{}", .0, unclassifiable_suffix(.0))]
    Unclassifiable(Unclassifiable),
    #[error("reading the request body failed: {0}")]
    ClientBody(String),
    #[error("the request body did not arrive in time")]
    ClientBodyTimeout,
    #[error("{error}; this {class} request was not sent to any other upstream")]
    Upstream { error: UpstreamError, class: Class },
    #[error("{0}")]
    Adapt(AdaptError),
    #[error("this path is not one the gateway knows, but the upstream would read it as {path} ({route}); send the request to the API's own path instead")]
    UpstreamPathAmbiguous { path: String, route: String },
    #[error("{0}; the request was not sent")]
    UpstreamAuth(AuthError),
    #[error("the audit trail could not take this request's record within the request timeout (audit.on_full = \"block\" and its queue stayed full); the request was not sent")]
    AuditUnavailable,
    #[error("this gateway requires a client API key (Authorization: Bearer, x-api-key or api-key) or a known client certificate")]
    Unauthenticated,
    #[error("client {client} is over its rate limit; retry after {} s", retry_after_secs(*.retry_after))]
    RateLimited {
        client: String,
        retry_after: std::time::Duration,
    },
    #[error("{}", pool_message(.upstream, *.class, .error, .holder.as_deref()))]
    Pool {
        upstream: String,
        class: Class,
        error: PickError,
        /// What tied the request to its endpoint (`previous_response_id resp_…`, a session
        /// header), for `HolderDown`.
        holder: Option<String>,
    },
}

fn pool_message(upstream: &str, class: Class, error: &PickError, holder: Option<&str>) -> String {
    match error {
        PickError::NoneUsable {
            total,
            down,
            ejected,
        } => format!(
            "upstream {upstream} has no healthy endpoint ({total} configured: {down} failing health checks, {ejected} ejected after connect failures); this {class} request was not sent to any other upstream"
        ),
        PickError::HolderDown { endpoint } => format!(
            "endpoint {endpoint} of upstream {upstream} holds the state this request refers to ({}) and is unavailable; it was not sent to another endpoint (affinity.on_endpoint_down = \"fail\")",
            holder.unwrap_or("learned earlier")
        ),
    }
}

/// Whole seconds to wait, rounded up (at least 1), for `Retry-After`.
fn retry_after_secs(wait: std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// Body refusals say why they matter; a path refusal's reason already does.
fn unclassifiable_suffix(u: &Unclassifiable) -> &'static str {
    match u.reason {
        UnclassifiableReason::AmbiguousPath => "",
        _ => "; the gateway cannot tell whether this call is stateless or stateful",
    }
}

impl ProxyError {
    /// A failed send to the upstream serving `class`, attributed to whoever caused it.
    pub fn from_send(error: SendError, class: Class, upstream: &str) -> ProxyError {
        match error {
            SendError::Upstream(error) => ProxyError::Upstream { error, class },
            SendError::BodyTooLarge { limit } => ProxyError::StreamedBodyTooLarge {
                limit,
                upstream: upstream.to_owned(),
            },
            SendError::ClientBody { detail } => ProxyError::ClientBody(detail),
            SendError::UploadTimeout => ProxyError::ClientBodyTimeout,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::BodyTooLarge { .. } | ProxyError::StreamedBodyTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ProxyError::BadTarget
            | ProxyError::BadHost(_)
            | ProxyError::BadFraming(_)
            | ProxyError::Unclassifiable(_)
            | ProxyError::ClientBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::ClientBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Adapt(AdaptError::Uri(_)) | ProxyError::UpstreamAuth(_) => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::Adapt(_) | ProxyError::UpstreamPathAmbiguous { .. } => {
                StatusCode::BAD_REQUEST
            }
            ProxyError::Pool { .. } | ProxyError::AuditUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ProxyError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::Upstream { error, .. } => match error {
                UpstreamError::ConnectTimeout { .. }
                | UpstreamError::FirstByteTimeout { .. }
                | UpstreamError::RequestTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                UpstreamError::Connect { .. }
                | UpstreamError::Tls { .. }
                | UpstreamError::Protocol { .. } => StatusCode::BAD_GATEWAY,
            },
        }
    }

    /// The bounded reason label for `switchyard_rejections_total`.
    pub fn rejection(&self) -> Rejection {
        match self {
            ProxyError::MethodNotAllowed(_) => Rejection::MethodNotAllowed,
            ProxyError::BadTarget | ProxyError::BadHost(_) | ProxyError::BadFraming(_) => {
                Rejection::BadRequest
            }
            ProxyError::BodyTooLarge { .. } | ProxyError::StreamedBodyTooLarge { .. } => {
                Rejection::BodyTooLarge
            }
            ProxyError::Unclassifiable(u) => match u.reason {
                UnclassifiableReason::AmbiguousPath => Rejection::AmbiguousPath,
                _ => Rejection::Unclassifiable,
            },
            ProxyError::ClientBody(_) => Rejection::ClientBody,
            ProxyError::ClientBodyTimeout => Rejection::ClientTimeout,
            ProxyError::Adapt(
                AdaptError::ModelNotMapped { .. } | AdaptError::DeploymentNotConfigured { .. },
            ) => Rejection::ModelNotMapped,
            ProxyError::Adapt(AdaptError::Uri(_)) => Rejection::UpstreamProtocol,
            ProxyError::Adapt(_) => Rejection::BadRequest,
            ProxyError::UpstreamPathAmbiguous { .. } => Rejection::AmbiguousPath,
            ProxyError::UpstreamAuth(_) => Rejection::UpstreamAuth,
            ProxyError::AuditUnavailable => Rejection::AuditUnavailable,
            ProxyError::Unauthenticated => Rejection::Unauthenticated,
            ProxyError::RateLimited { .. } => Rejection::RateLimited,
            ProxyError::Pool { error, .. } => match error {
                PickError::NoneUsable { .. } => Rejection::NoHealthyEndpoint,
                PickError::HolderDown { .. } => Rejection::AffinityEndpointDown,
            },
            ProxyError::Upstream { error, .. } => match error {
                UpstreamError::ConnectTimeout { .. }
                | UpstreamError::FirstByteTimeout { .. }
                | UpstreamError::RequestTimeout { .. } => Rejection::Timeout,
                UpstreamError::Connect { .. } | UpstreamError::Tls { .. } => {
                    Rejection::UpstreamUnavailable
                }
                UpstreamError::Protocol { .. } => Rejection::UpstreamProtocol,
            },
        }
    }

    /// The upstream failure kind, when the upstream is at fault.
    pub fn upstream_kind(&self) -> Option<UpstreamErrorKind> {
        let ProxyError::Upstream { error, .. } = self else {
            return None;
        };
        Some(match error {
            UpstreamError::Connect { .. } => UpstreamErrorKind::Connect,
            UpstreamError::Tls { .. } => UpstreamErrorKind::Tls,
            UpstreamError::ConnectTimeout { .. } => UpstreamErrorKind::ConnectTimeout,
            UpstreamError::FirstByteTimeout { .. } => UpstreamErrorKind::FirstByteTimeout,
            UpstreamError::RequestTimeout { .. } => UpstreamErrorKind::RequestTimeout,
            UpstreamError::Protocol { .. } => UpstreamErrorKind::Protocol,
        })
    }

    /// The machine-readable `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::Unclassifiable(u) => u.reason.code(),
            ProxyError::BadHost(_) => "bad_host",
            ProxyError::BadFraming(_) => "bad_framing",
            ProxyError::Adapt(AdaptError::ModelRequired { .. }) => "missing_model",
            ProxyError::Adapt(AdaptError::Ambiguous { .. }) => "duplicate_model",
            ProxyError::Adapt(AdaptError::DeploymentNotConfigured { .. }) => {
                "deployment_not_configured"
            }
            other => other.rejection().as_str(),
        }
    }

    fn error_type(&self) -> &'static str {
        if self.status().is_client_error() {
            "invalid_request_error"
        } else {
            "gateway_error"
        }
    }

    /// `{"error": {"message", "type", "param", "code"}}` with the right status.
    pub fn to_response(&self) -> Response<Full<Bytes>> {
        let body = serde_json::json!({
            "error": {
                "message": self.to_string(),
                "type": self.error_type(),
                "param": null,
                "code": self.code(),
            }
        });
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = Response::new(Full::new(Bytes::from(bytes)));
        *resp.status_mut() = self.status();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match self {
            ProxyError::MethodNotAllowed(_) => {
                resp.headers_mut().insert(
                    header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
                );
            }
            ProxyError::BadFraming(_) => {
                // The body's framing is in doubt: nothing more is read from this connection.
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            ProxyError::Unauthenticated => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"switchyard\""),
                );
            }
            ProxyError::RateLimited { retry_after, .. } => {
                resp.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(*retry_after)),
                );
            }
            _ => {}
        }
        resp
    }
}
