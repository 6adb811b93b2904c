//! Token accounting and streams: tokens by kind, time to first token, stream outcomes.
//!
//! Handles for one (route, upstream) are resolved once per response that is observed
//! ([`StreamMetrics::for_route`]), so frames never touch a label lookup.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

/// Seconds to the first token: from tens of milliseconds to minutes of reasoning.
const TTFT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Which tokens a count is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Input,
    Output,
    /// Input tokens served from the provider's prompt cache (a subset of input).
    Cached,
    /// Output tokens spent on reasoning (a subset of output).
    Reasoning,
}

impl TokenKind {
    pub const ALL: [TokenKind; 4] = [
        TokenKind::Input,
        TokenKind::Output,
        TokenKind::Cached,
        TokenKind::Reasoning,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            TokenKind::Input => "input",
            TokenKind::Output => "output",
            TokenKind::Cached => "cached",
            TokenKind::Reasoning => "reasoning",
        }
    }
}

/// How a streamed (SSE) response ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamOutcome {
    Completed,
    ClientClosed,
    UpstreamError,
}

impl StreamOutcome {
    pub const ALL: [StreamOutcome; 3] = [
        StreamOutcome::Completed,
        StreamOutcome::ClientClosed,
        StreamOutcome::UpstreamError,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            StreamOutcome::Completed => "completed",
            StreamOutcome::ClientClosed => "client_closed",
            StreamOutcome::UpstreamError => "upstream_error",
        }
    }
}

pub struct StreamMetrics {
    tokens: IntCounterVec,
    ttft: HistogramVec,
    streams: IntCounterVec,
}

/// One (route, upstream)'s handles.
pub struct RouteStreamMetrics {
    tokens: [IntCounter; 4],
    pub ttft: Histogram,
    /// Outcome counters, in `StreamOutcome::ALL` order; resolved for streams only.
    streams: Option<[IntCounter; 3]>,
}

impl RouteStreamMetrics {
    pub fn tokens(&self, kind: TokenKind, n: u64) {
        if n > 0 {
            self.tokens[kind as usize].inc_by(n);
        }
    }

    pub fn stream_done(&self, outcome: StreamOutcome) {
        if let Some(streams) = &self.streams {
            streams[outcome as usize].inc();
        }
    }
}

impl StreamMetrics {
    pub fn new(
        registry: &Registry,
        _upstreams: &[&str],
    ) -> Result<StreamMetrics, prometheus::Error> {
        let tokens = IntCounterVec::new(
            Opts::new(
                "switchyard_tokens_total",
                "Tokens reported in responses' usage, by kind (input, output, cached, reasoning).",
            ),
            &["route", "upstream", "kind"],
        )?;
        registry.register(Box::new(tokens.clone()))?;
        let ttft = HistogramVec::new(
            HistogramOpts::new(
                "switchyard_time_to_first_token_seconds",
                "Time from the request arriving to the first generated token of a streamed response.",
            )
            .buckets(TTFT_BUCKETS.to_vec()),
            &["route", "upstream"],
        )?;
        registry.register(Box::new(ttft.clone()))?;
        let streams = IntCounterVec::new(
            Opts::new(
                "switchyard_streams_total",
                "Streamed (SSE) responses, by how they ended.",
            ),
            &["route", "upstream", "outcome"],
        )?;
        registry.register(Box::new(streams.clone()))?;
        Ok(StreamMetrics {
            tokens,
            ttft,
            streams,
        })
    }

    /// Handles for one response; `stream` also resolves the stream-outcome counters.
    pub fn for_route(&self, route: &str, upstream: &str, stream: bool) -> RouteStreamMetrics {
        let tokens = TokenKind::ALL.map(|k| {
            self.tokens
                .with_label_values(&[route, upstream, k.as_str()])
        });
        RouteStreamMetrics {
            tokens,
            ttft: self.ttft.with_label_values(&[route, upstream]),
            streams: stream.then(|| {
                StreamOutcome::ALL.map(|o| {
                    self.streams
                        .with_label_values(&[route, upstream, o.as_str()])
                })
            }),
        }
    }
}
