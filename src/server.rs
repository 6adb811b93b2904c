//! Listeners: accept TCP connections, serve HTTP/1.1 and HTTP/2 (h2c), drain on shutdown.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, SetRequestIdLayer};

use crate::admin::{self, AdminState};
use crate::config::Config;
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::policy::MissingUpstream;
use crate::proxy::ProxyService;

/// How long in-flight requests get to finish after shutdown begins.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {key} = {addr}: {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Policy(#[from] MissingUpstream),
}

/// A running gateway: its bound addresses and the means to stop it.
pub struct ServerHandle {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    gateway: Arc<Gateway>,
    ready: Arc<AtomicBool>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl ServerHandle {
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Stop accepting, let in-flight requests finish (up to the drain timeout), then return.
    pub async fn shutdown(mut self) {
        self.ready.store(false, Ordering::SeqCst);
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Bind both listeners and start serving. Returns once both are accepting.
pub async fn start(config: Config) -> Result<ServerHandle, StartupError> {
    let names: Vec<&str> = config.upstreams.iter().map(|u| u.name.as_str()).collect();
    let metrics = Arc::new(Metrics::new(&names)?);
    let gateway = Arc::new(Gateway::new(config, metrics.clone())?);
    let cfg = &gateway.config;

    let proxy_listener = bind("server.listen", cfg.server.listen).await?;
    let admin_listener = bind("admin.listen", cfg.admin.listen).await?;
    let proxy_addr = local_addr("server.listen", cfg.server.listen, &proxy_listener)?;
    let admin_addr = local_addr("admin.listen", cfg.admin.listen, &admin_listener)?;

    let mut proxy_builder = auto::Builder::new(TokioExecutor::new());
    proxy_builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.limits.header_read_timeout)
        .max_buf_size(cfg.limits.max_header_bytes)
        .keep_alive(true);
    proxy_builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(cfg.limits.max_header_bytes).unwrap_or(u32::MAX));

    // The request path, outermost layer first.
    let proxy_service = ServiceBuilder::new()
        // Every request gets an id before anything logs or forwards it; a client's own
        // `x-request-id` is kept so that its traces line up with ours. The proxy puts it on
        // every response (over a provider's own), so no propagation layer is needed.
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        // classify → decide → forward → record (see proxy/mod.rs).
        .service(ProxyService::new(gateway.clone()));

    let ready = Arc::new(AtomicBool::new(false));
    let admin_state = AdminState::new(metrics, ready.clone());
    let admin_service = hyper::service::service_fn(move |req| {
        let state = admin_state.clone();
        async move { Ok::<_, std::convert::Infallible>(admin::handle(&state, req)) }
    });
    let mut admin_builder = auto::Builder::new(TokioExecutor::new());
    admin_builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));

    let (shutdown, rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tasks.spawn(accept_loop(
        "proxy",
        proxy_listener,
        proxy_builder,
        TowerToHyperService::new(proxy_service),
        rx.clone(),
    ));
    tasks.spawn(accept_loop(
        "admin",
        admin_listener,
        admin_builder,
        admin_service,
        rx,
    ));
    ready.store(true, Ordering::SeqCst);
    tracing::info!(%proxy_addr, %admin_addr, "switchyard listening");
    for (class, upstream) in gateway.policy.upstreams() {
        tracing::info!(class = class.as_str(), upstream = upstream.name(), url = %upstream.url(), "route");
    }
    Ok(ServerHandle {
        proxy_addr,
        admin_addr,
        gateway,
        ready,
        shutdown,
        tasks,
    })
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { key, addr, source })
}

fn local_addr(
    key: &'static str,
    addr: SocketAddr,
    listener: &TcpListener,
) -> Result<SocketAddr, StartupError> {
    listener
        .local_addr()
        .map_err(|source| StartupError::Bind { key, addr, source })
}

/// Accept connections until shutdown, then drain them gracefully.
async fn accept_loop<S, B>(
    name: &'static str,
    listener: TcpListener,
    builder: auto::Builder<TokioExecutor>,
    service: S,
    mut shutdown: watch::Receiver<bool>,
) where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    // Connection tasks, so that any still running after the drain timeout can be ended.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            // Reap finished connections so the set stays as large as the open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(listener = name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let conn = builder
                    .serve_connection(TokioIo::new(stream), service.clone())
                    .into_owned();
                let conn = graceful.watch(conn);
                connections.spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            open = connections.len(),
            "drain timeout passed; closing remaining connections"
        );
    }
    connections.shutdown().await;
}
