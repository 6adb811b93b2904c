//! Switchyard: a policy-enforcing reverse proxy for LLM API traffic.
//!
//! Every request is classified *stateless* or *stateful* and forwarded to the one upstream
//! that serves its class; it never crosses to the other, not even to fail over.
//!
//! One request's path through the modules:
//!
//! ```text
//!  server ──accept──▶ hyper connection ──▶ proxy::ProxyService
//!                       │  takes the live gateway state (reload::Live, swapped by reloads)
//!                       │  once; with [audit], a place in audit::AuditLog's queue
//!                       ├─ classify   classify::Classifier::inspect(method, path, headers)
//!                       │             └─ body needed? buffer ≤ max_body_bytes, then
//!                       │                PendingBody::finish(&bytes); [shadow] rules
//!                       │                evaluated beside, never enforced (proxy/shadow.rs)
//!                       ├─ decide     policy::Policy::settle / Policy::upstream_for(class):
//!                       │             the only place that picks an upstream; no failover
//!                       ├─ forward    upstream::UpstreamClient::{needs_body, adapt,
//!                       │             prepare_headers, send} + upstream::auth::Auth::apply:
//!                       │             the body read whole only if SigV4 or a model map needs
//!                       │             it, path mapped (Azure deployment), model renamed,
//!                       │             hop-by-hop headers stripped, credentials added (SigV4
//!                       │             signs last, over the exact bytes sent)
//!                       └─ record     proxy::body::ObservedBody streams the answer back and,
//!                                     when it ends, proxy::record::Record writes metrics and
//!                                     the access-log line and the audit record (exactly
//!                                     once, even if the client leaves)
//!  admin ── /metrics (metrics::Metrics), /healthz, /readyz, POST /reload (reload::Reloader)
//!
//!  "accept" is listener::accept_loop: TCP, then on a TLS listener the rustls handshake in the
//!  connection's own task (ALPN picks HTTP/1.1 or h2), then hyper; drained on shutdown.
//! ```
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod admin;
pub mod affinity;
pub mod audit;
pub mod certs;
pub mod classify;
pub mod cli;
pub mod clients;
pub mod config;
mod connection;
pub mod demo;
pub mod gateway;
mod listener;
pub mod logging;
pub mod metrics;
pub mod mock;
pub mod observe;
pub mod policy;
pub mod probe;
pub mod proxy;
pub mod reload;
pub mod runtime;
mod send_deadline;
mod served;
pub mod server;
pub mod tls;
pub mod upstream;
