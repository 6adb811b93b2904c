//! The admin listener: `/metrics` (Prometheus text), `/healthz`, `/readyz`, and
//! `POST /reload` (reload the config file; answers what changed as JSON).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;

use crate::metrics::Metrics;
use crate::reload::{ReloadError, Reloader, Trigger};

/// Brings gauges that change by the passage of time (an ejection ending) up to date.
pub type Refresh = Arc<dyn Fn() + Send + Sync>;

#[derive(Clone)]
pub struct AdminState {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    refresh: Option<Refresh>,
    reloader: Option<Arc<Reloader>>,
}

impl AdminState {
    pub fn new(metrics: Arc<Metrics>, ready: Arc<AtomicBool>) -> Self {
        AdminState {
            metrics,
            ready,
            refresh: None,
            reloader: None,
        }
    }

    /// Serve `POST /reload` with `reloader`.
    pub fn with_reloader(mut self, reloader: Arc<Reloader>) -> Self {
        self.reloader = Some(reloader);
        self
    }

    /// Run `refresh` before every scrape.
    pub fn with_refresh(mut self, refresh: Refresh) -> Self {
        self.refresh = Some(refresh);
        self
    }
}

pub async fn handle<B>(state: &AdminState, req: Request<B>) -> Response<Full<Bytes>> {
    if req.uri().path() == "/reload" {
        if req.method() != Method::POST {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use POST /reload\n");
        }
        return reload(state).await;
    }
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
            "not found: try /metrics, /healthz, /readyz or POST /reload\n",
        ),
    }
}

/// `POST /reload`: 200 with the report when the new config applied; 400 when the file does
/// not load (the running config is unchanged); 500 when it loaded but could not start (a
/// credential); 409 when there is no file to reload.
async fn reload(state: &AdminState) -> Response<Full<Bytes>> {
    let Some(reloader) = &state.reloader else {
        return json(
            StatusCode::CONFLICT,
            serde_json::json!({"status": "error", "error": ReloadError::NoFile.to_string()}),
        );
    };
    match reloader.reload(Trigger::Admin).await {
        Ok(report) => json(
            StatusCode::OK,
            serde_json::json!({
                "status": "ok",
                "sha256": report.sha256,
                "previous_sha256": report.previous_sha256,
                "upstreams_kept": report.upstreams_kept,
                "upstreams_rebuilt": report.upstreams_rebuilt,
                "restart_required": report.restart_required,
            }),
        ),
        Err(e) => {
            let status = match e {
                ReloadError::NoFile => StatusCode::CONFLICT,
                ReloadError::Config(_) => StatusCode::BAD_REQUEST,
                ReloadError::Start(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            json(
                status,
                serde_json::json!({"status": "error", "error": e.to_string()}),
            )
        }
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut text = body.to_string();
    text.push('\n');
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
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
