//! Per-(route, class) metric handles, resolved on a route's first request and then shared,
//! so that a proxied request touches atomics only, never a label lookup.
//!
//! A `MetricVec::with_label_values` hashes every label and takes a read lock; the request path
//! used to make eight of them per request (about 2% of the gateway's CPU at saturation in
//! `perf`). Routes are a bounded table (the classifier's templates) and a class always goes
//! to the same upstream, so `(route, class)` indexes a dense array of lazily filled cells.

use std::sync::{Arc, OnceLock};

use prometheus::{Histogram, IntCounter, IntGauge};

use super::streams::RouteStreamMetrics;
use super::Metrics;
use crate::classify::{Class, RouteId};

/// Everything one (route, class, upstream) records per request. Series that only some
/// requests touch (status 200, first byte, tokens) are resolved on first use, so that which
/// series exist is the same as when every request looked its labels up.
pub struct RouteMetrics {
    pub request_bytes: IntCounter,
    pub response_bytes: IntCounter,
    pub in_flight: IntGauge,
    duration: Histogram,
    first_byte: OnceLock<Histogram>,
    /// `switchyard_requests_total{status="200"}`: the status nearly every request ends with.
    ok: OnceLock<IntCounter>,
    labels: Labels,
    metrics: Arc<Metrics>,
    /// Token and first-token handles for any observed response of this route.
    observed: OnceLock<Arc<RouteStreamMetrics>>,
    /// The same plus the stream-outcome counters, for SSE responses (resolved on the first
    /// stream so that routes that never stream export no stream series).
    streamed: OnceLock<Arc<RouteStreamMetrics>>,
}

struct Labels {
    route: Arc<str>,
    class: &'static str,
    upstream: Arc<str>,
}

impl RouteMetrics {
    fn new(metrics: Arc<Metrics>, route: &str, class: Class, upstream: &str) -> RouteMetrics {
        let labels = Labels {
            route: Arc::from(route),
            class: class.as_str(),
            upstream: Arc::from(upstream),
        };
        let (request_bytes, response_bytes) = metrics.byte_counters(route, upstream);
        RouteMetrics {
            request_bytes,
            response_bytes,
            in_flight: metrics.in_flight(upstream),
            duration: metrics
                .duration
                .with_label_values(&[route, labels.class, upstream]),
            first_byte: OnceLock::new(),
            ok: OnceLock::new(),
            observed: OnceLock::new(),
            streamed: OnceLock::new(),
            labels,
            metrics,
        }
    }

    /// A finished request: its status count and its duration.
    pub fn done(&self, status: http::StatusCode, seconds: f64) {
        let l = &self.labels;
        let count = |status: &str| {
            self.metrics
                .requests
                .with_label_values(&[&l.route, l.class, &l.upstream, status])
        };
        if status == http::StatusCode::OK {
            self.ok.get_or_init(|| count("200")).inc();
        } else {
            count(status.as_str()).inc();
        }
        self.duration.observe(seconds);
    }

    /// Time from sending the request upstream to its response head.
    pub fn first_byte(&self, seconds: f64) {
        self.first_byte
            .get_or_init(|| {
                self.metrics
                    .first_byte
                    .with_label_values(&[&self.labels.route, &self.labels.upstream])
            })
            .observe(seconds);
    }

    /// Token, first-token and (for `stream`) stream-outcome handles for an observed response.
    pub fn streams(&self, stream: bool) -> Arc<RouteStreamMetrics> {
        if !stream {
            return self
                .observed
                .get_or_init(|| {
                    Arc::new(self.metrics.streams.for_route(
                        &self.labels.route,
                        &self.labels.upstream,
                        false,
                    ))
                })
                .clone();
        }
        self.streamed
            .get_or_init(|| {
                Arc::new(self.metrics.streams.for_route(
                    &self.labels.route,
                    &self.labels.upstream,
                    true,
                ))
            })
            .clone()
    }
}

/// The cells of every (route, class), filled on first use.
pub struct RouteMetricsTable {
    cells: Box<[OnceLock<RouteMetrics>]>,
}

impl RouteMetricsTable {
    /// A table for `routes` route ids (`Classifier::route_labels().count()`).
    pub fn new(routes: usize) -> RouteMetricsTable {
        let cells = (0..routes.max(1) * Class::ALL.len())
            .map(|_| OnceLock::new())
            .collect();
        RouteMetricsTable { cells }
    }

    /// The handles of `(route, class)`; `labels` names the route and the class's upstream
    /// the first time. Route ids come from the classifier the table was sized for; any
    /// other counts as `other` (id 0).
    pub fn get<'a>(
        &self,
        metrics: &Arc<Metrics>,
        route: RouteId,
        class: Class,
        labels: impl FnOnce(RouteId) -> (&'a str, &'a str),
    ) -> &RouteMetrics {
        let classes = Class::ALL.len();
        let (route, index) = match route.index() * classes + class as usize {
            index if index < self.cells.len() => (route, index),
            _ => (RouteId::OTHER, class as usize),
        };
        self.cells[index].get_or_init(|| {
            let (route, upstream) = labels(route);
            RouteMetrics::new(metrics.clone(), route, class, upstream)
        })
    }
}
