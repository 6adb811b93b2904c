//! The admin listener: `/metrics` (Prometheus text), `/healthz`, `/readyz`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;

use crate::metrics::Metrics;

/// Brings gauges that change by the passage of time (an ejection ending) up to date.
pub type Refresh = Arc<dyn Fn() + Send + Sync>;

#[derive(Clone)]
pub struct AdminState {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    refresh: Option<Refresh>,
}

impl AdminState {
    pub fn new(metrics: Arc<Metrics>, ready: Arc<AtomicBool>) -> Self {
        AdminState {
            metrics,
            ready,
            refresh: None,
        }
    }

    /// Run `refresh` before every scrape.
    pub fn with_refresh(mut self, refresh: Refresh) -> Self {
        self.refresh = Some(refresh);
        self
    }
}

pub fn handle<B>(state: &AdminState, req: Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    match req.uri().path() {
        "/metrics" => {
            if let Some(refresh) = &state.refresh {
                refresh();
            }
            let mut resp = Response::new(Full::new(Bytes::from(state.metrics.render())));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if state.ready.load(Ordering::SeqCst) => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n",
        ),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
