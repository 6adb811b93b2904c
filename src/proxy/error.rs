//! Errors the gateway answers itself: one enum, one mapping to status, OpenAI-style JSON
//! body, and a bounded metric label.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::classify::{Class, Unclassifiable, UnclassifiableReason};
use crate::metrics::{Rejection, UpstreamErrorKind};
use crate::upstream::UpstreamError;

/// A request the gateway refuses or cannot complete.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("{0}; the gateway cannot tell whether this call is stateless or stateful")]
    Unclassifiable(Unclassifiable),
    #[error("reading the request body failed: {0}")]
    ClientBody(String),
    #[error("the request body did not arrive within the request timeout")]
    ClientBodyTimeout,
    #[error("{error}; this {class} request is served only by upstream {upstream} and was not sent anywhere else")]
    Upstream {
        error: UpstreamError,
        class: Class,
        upstream: String,
    },
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::Unclassifiable(_) | ProxyError::ClientBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::ClientBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Upstream { error, .. } => match error {
                UpstreamError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                UpstreamError::ClientBody { .. } => StatusCode::BAD_REQUEST,
                UpstreamError::ConnectTimeout { .. }
                | UpstreamError::FirstByteTimeout { .. }
                | UpstreamError::RequestTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
                UpstreamError::Connect { .. } | UpstreamError::Protocol { .. } => {
                    StatusCode::BAD_GATEWAY
                }
            },
        }
    }

    /// The bounded reason label for `switchyard_rejections_total`.
    pub fn rejection(&self) -> Rejection {
        match self {
            ProxyError::BodyTooLarge { .. } => Rejection::BodyTooLarge,
            ProxyError::Unclassifiable(u) => match u.reason {
                UnclassifiableReason::AmbiguousPath => Rejection::AmbiguousPath,
                _ => Rejection::Unclassifiable,
            },
            ProxyError::ClientBody(_) => Rejection::ClientBody,
            ProxyError::ClientBodyTimeout => Rejection::Timeout,
            ProxyError::Upstream { error, .. } => match error {
                UpstreamError::BodyTooLarge { .. } => Rejection::BodyTooLarge,
                UpstreamError::ClientBody { .. } => Rejection::ClientBody,
                UpstreamError::ConnectTimeout { .. }
                | UpstreamError::FirstByteTimeout { .. }
                | UpstreamError::RequestTimeout { .. } => Rejection::Timeout,
                UpstreamError::Connect { .. } => Rejection::UpstreamUnavailable,
                UpstreamError::Protocol { .. } => Rejection::UpstreamProtocol,
            },
        }
    }

    /// The upstream failure kind, when the upstream is at fault.
    pub fn upstream_kind(&self) -> Option<UpstreamErrorKind> {
        match self {
            ProxyError::Upstream { error, .. } => match error {
                UpstreamError::Connect { .. } => Some(UpstreamErrorKind::Connect),
                UpstreamError::ConnectTimeout { .. } => Some(UpstreamErrorKind::ConnectTimeout),
                UpstreamError::FirstByteTimeout { .. } => Some(UpstreamErrorKind::FirstByteTimeout),
                UpstreamError::RequestTimeout { .. } => Some(UpstreamErrorKind::RequestTimeout),
                UpstreamError::Protocol { .. } => Some(UpstreamErrorKind::Protocol),
                UpstreamError::BodyTooLarge { .. } | UpstreamError::ClientBody { .. } => None,
            },
            _ => None,
        }
    }

    /// The machine-readable `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::Unclassifiable(u) => u.reason.code(),
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
        resp
    }
}
