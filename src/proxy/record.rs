//! The record phase: one request's metrics and access-log line, written once when it ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderValue, Method, StatusCode};
use tokio::time::Instant;

use crate::audit::{AuditRecord, AuditSlot};
use crate::classify::{Decision, RouteId};
use crate::gateway::Gateway;
use crate::metrics::{Rejection, UpstreamErrorKind, NONE};

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The whole response reached the client.
    Completed,
    /// The client went away before the response ended.
    ClientClosed,
    /// The upstream's response broke off or timed out after the head was sent.
    UpstreamError(UpstreamErrorKind),
    /// The gateway answered with an error of its own.
    Rejected(Rejection),
}

impl Outcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::ClientClosed => "client_closed",
            Outcome::UpstreamError(kind) => kind.as_str(),
            Outcome::Rejected(reason) => reason.as_str(),
        }
    }
}

/// Status recorded for a request whose client went away before any response (nginx's 499).
pub fn client_closed_status() -> StatusCode {
    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
}

/// Holds a request's `Record` while the request is in the gateway's hands. If the request
/// future is dropped (the client went away while its body was read or the upstream was
/// awaited), the record is written on drop with status 499 and outcome `client_closed`, so
/// every request is recorded exactly once.
pub struct Pending(Option<Record>);

impl Pending {
    pub fn new(record: Record) -> Self {
        Pending(Some(record))
    }

    /// What the classifier decided, once it has.
    pub fn update(&mut self, route: RouteId, decision: Option<Decision>) {
        if let Some(record) = &mut self.0 {
            record.route = route;
            record.decision = decision;
        }
    }

    /// The endpoint an attempt goes to.
    pub fn endpoint(&mut self, endpoint: Arc<str>) {
        if let Some(record) = &mut self.0 {
            record.endpoint = Some(endpoint);
        }
    }

    /// The request's place in the audit queue, once it has one.
    pub fn audit(&mut self, slot: AuditSlot) {
        if let Some(record) = &mut self.0 {
            record.request_bytes = Some(Arc::new(AtomicU64::new(0)));
            record.audit = Some(slot);
        }
    }

    /// The counter of request body bytes sent upstream, when the audit trail wants it.
    pub fn request_bytes(&self) -> Option<Arc<AtomicU64>> {
        self.0.as_ref().and_then(|r| r.request_bytes.clone())
    }

    /// The provider's own id for the request, from the response head.
    pub fn upstream_request_id(&mut self, id: Option<HeaderValue>) {
        if let Some(record) = &mut self.0 {
            record.upstream_request_id = id;
        }
    }

    /// Hand the record over to whoever answers; `status` is the status they answer with.
    pub fn into_record(mut self, status: StatusCode) -> Option<Record> {
        let mut record = self.0.take()?;
        record.status = status;
        Some(record)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(record) = self.0.take() {
            record.finish(Outcome::ClientClosed, 0);
        }
    }
}

/// What is known about a request by the time its response starts.
pub struct Record {
    pub gw: Arc<Gateway>,
    pub start: Instant,
    pub method: Method,
    pub request_id: Option<HeaderValue>,
    /// `apim-request-id`, `x-ms-request-id`, `x-amzn-requestid` or `x-request-id` from the
    /// upstream's response.
    pub upstream_request_id: Option<HeaderValue>,
    pub route: RouteId,
    pub decision: Option<Decision>,
    /// The endpoint of the upstream's pool that served (or last failed) the request.
    pub endpoint: Option<Arc<str>>,
    pub status: StatusCode,
    /// The request's place in the audit queue, when `[audit]` is on.
    pub audit: Option<AuditSlot>,
    /// Request body bytes sent upstream, counted for the audit record (only when it is on).
    pub request_bytes: Option<Arc<AtomicU64>>,
}

impl Record {
    /// Count the request, write its access-log line and hand its audit record to the writer.
    pub fn finish(mut self, outcome: Outcome, response_bytes: u64) {
        let elapsed = self.start.elapsed();
        let gw = &self.gw;
        let route = gw.classifier.route_label(self.route);
        let (class, upstream, rule) = match &self.decision {
            Some(d) => (
                d.class.as_str(),
                gw.policy.upstream_for(d.class).name(),
                &*d.rule,
            ),
            None => (NONE, NONE, NONE),
        };
        if let Outcome::UpstreamError(kind) = outcome {
            gw.metrics.upstream_error(upstream, kind);
        }
        match &self.decision {
            Some(d) => gw
                .route_metrics(self.route, d.class)
                .done(self.status, elapsed.as_secs_f64()),
            None => gw.metrics.request_done(
                route,
                class,
                upstream,
                self.status.as_str(),
                elapsed.as_secs_f64(),
            ),
        }
        if gw.config.log.access_log {
            let request_id = self
                .request_id
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            let upstream_request_id = self
                .upstream_request_id
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            let marker = self.decision.as_ref().map(|d| &d.marker);
            tracing::info!(
                target: "switchyard::access",
                request_id,
                method = %self.method,
                route,
                class,
                rule,
                marker = marker.map(tracing::field::display),
                upstream,
                endpoint = self.endpoint.as_deref().unwrap_or("-"),
                upstream_request_id,
                status = self.status.as_u16(),
                outcome = outcome.as_str(),
                response_bytes,
                duration_ms = elapsed.as_micros() as f64 / 1000.0,
            );
        }
        if let Some(slot) = self.audit.take() {
            slot.write(self.audit_record(outcome, response_bytes, elapsed));
        }
    }

    /// What the audit trail keeps of this request: the decision and where it went, never a
    /// body or a credential.
    fn audit_record(
        &self,
        outcome: Outcome,
        response_bytes: u64,
        elapsed: Duration,
    ) -> AuditRecord {
        let gw = &self.gw;
        let text = |v: &Option<HeaderValue>| {
            v.as_ref()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let decision = self.decision.as_ref();
        AuditRecord {
            time: SystemTime::now()
                .checked_sub(elapsed)
                .unwrap_or(SystemTime::UNIX_EPOCH),
            request_id: text(&self.request_id),
            method: self.method.as_str().to_owned(),
            route: gw.classifier.route_label(self.route).to_owned(),
            class: decision.map(|d| d.class.as_str()),
            rule: decision.map(|d| d.rule.to_string()),
            marker: decision.map(|d| d.marker.to_string()),
            upstream: decision.map(|d| gw.policy.upstream_for(d.class).name().to_owned()),
            endpoint: self.endpoint.as_deref().map(str::to_owned),
            status: self.status.as_u16(),
            outcome: outcome.as_str(),
            request_bytes: self
                .request_bytes
                .as_ref()
                .map_or(0, |n| n.load(Ordering::Relaxed)),
            response_bytes,
            duration: elapsed,
            upstream_request_id: text(&self.upstream_request_id),
            config_sha256: gw.config.source.sha256.clone(),
        }
    }

    /// Where a request body's bytes are counted for the audit record (`None`: not counted).
    pub fn request_bytes(&self) -> Option<&Arc<AtomicU64>> {
        self.request_bytes.as_ref()
    }
}
