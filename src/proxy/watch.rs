//! Phase 4 helper: what the gateway learns from a response as it streams past, without
//! holding back a byte (except a frame carrying a new state id while a shared affinity store
//! acknowledges it): token usage, time to first token, the stream's outcome, and ids of
//! provider-held state for affinity.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::header;
use http::response::Parts;
use tokio::time::Instant;

use super::record::Outcome;
use crate::affinity::AffinityTable;
use crate::classify::{Class, Decision};
use crate::gateway::Gateway;
use crate::metrics::{RouteStreamMetrics, StreamOutcome, TokenKind};
use crate::observe::{Format, Observer, Want};
use crate::upstream::UpstreamClient;

/// Waits for a learned id to reach a shared store before the frame carrying it is released.
pub type Hold = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where learned ids go.
struct Learn {
    table: Arc<AffinityTable>,
    upstream: Arc<str>,
    endpoint: Arc<str>,
}

/// Observes one response body.
pub struct Watch {
    observer: Observer,
    /// An SSE stream (counted in `switchyard_streams_total`).
    stream: bool,
    metrics: Arc<RouteStreamMetrics>,
    learn: Option<Learn>,
    start: Instant,
}

impl Watch {
    /// A watch for this response, or `None` when there is nothing to learn from it.
    pub fn new(
        gw: &Gateway,
        decision: &Decision,
        upstream: &UpstreamClient,
        endpoint: &Arc<str>,
        head: &Parts,
        start: Instant,
    ) -> Option<Box<Watch>> {
        // Compressed bytes carry nothing readable: such bodies are relayed unobserved.
        let encoded = head
            .headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        let format = if encoded {
            Format::Other
        } else {
            Format::from_content_type(head.headers.get(header::CONTENT_TYPE))
        };
        let stream = matches!(format, Format::Sse);
        let usage = gw.config.accounting.tokens && !matches!(format, Format::Other);
        let learn = match &gw.affinity {
            Some(table)
                if decision.class == Class::Stateful
                    && upstream.pool().is_pool()
                    && head.status.is_success()
                    && !matches!(format, Format::Other) =>
            {
                Some(Learn {
                    table: table.clone(),
                    upstream: Arc::from(upstream.name()),
                    endpoint: endpoint.clone(),
                })
            }
            _ => None,
        };
        if !stream && !usage && learn.is_none() {
            return None;
        }
        let want = Want {
            usage,
            ids: learn.is_some(),
            first_token: stream,
        };
        Some(Box::new(Watch {
            observer: Observer::new(format, want),
            stream,
            metrics: gw
                .route_metrics(decision.route, decision.class)
                .streams(stream),
            learn,
            start,
        }))
    }

    /// Look at the next frame's bytes. Returns a future to wait for before the frame is
    /// released when it carried a new id that a shared store must acknowledge first.
    pub fn feed(&mut self, data: &[u8]) -> Option<Hold> {
        let seen = self.observer.feed(data);
        if seen.first_token {
            self.metrics
                .ttft
                .observe(self.start.elapsed().as_secs_f64());
        }
        let learn = self.learn.as_ref()?;
        let mut holds: Vec<Hold> = Vec::new();
        for id in seen.ids {
            if let Some(hold) = learn
                .table
                .learn(&learn.upstream, &id.value, &learn.endpoint)
            {
                holds.push(hold);
            }
        }
        match holds.len() {
            0 => None,
            1 => holds.pop(),
            _ => Some(Box::pin(async move {
                futures_util::future::join_all(holds).await;
            })),
        }
    }

    /// The response ended: count its tokens and, for a stream, how it ended.
    pub fn finish(&self, outcome: Outcome) {
        if let Some(usage) = self.observer.usage() {
            self.metrics.tokens(TokenKind::Input, usage.input);
            self.metrics.tokens(TokenKind::Output, usage.output);
            self.metrics.tokens(TokenKind::Cached, usage.cached);
            self.metrics.tokens(TokenKind::Reasoning, usage.reasoning);
        }
        if self.stream {
            let outcome = match outcome {
                Outcome::Completed => StreamOutcome::Completed,
                Outcome::ClientClosed => StreamOutcome::ClientClosed,
                Outcome::UpstreamError(_) | Outcome::Rejected(_) => StreamOutcome::UpstreamError,
            };
            self.metrics.stream_done(outcome);
        }
    }
}
