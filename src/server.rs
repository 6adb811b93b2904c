//! Startup and shutdown: bind the client listeners (plain HTTP/1.1 + h2c, TLS with ALPN,
//! optionally mTLS) and the admin listener, build the request path, drain on shutdown.
//! The accept loops themselves live in `listener.rs`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceBuilder;
use tower_http::request_id::SetRequestIdLayer;

use crate::admin::{self, AdminState};
use crate::config::Config;
use crate::gateway::Gateway;
use crate::gateway::GatewayError;
use crate::listener::{self, Handoff, OpenCount, Source};
use crate::metrics::Metrics;
use crate::proxy::headers::MakeRequestId;
use crate::proxy::ProxyService;
use crate::runtime::Workers;

/// Connections the kernel queues for a listener before the gateway accepts them (capped by
/// `net.core.somaxconn`). `TcpListener::bind` uses 128, like the standard library: a burst of
/// more connects than that overflows the queue and each extra client waits for a SYN
/// retransmit (1 s), which the load harness's 10,000-stream test showed.
pub const LISTEN_BACKLOG: u32 = 4096;

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
    Gateway(#[from] GatewayError),
    #[error("no client listener: set server.listen or [server.tls]")]
    NoListener,
    #[error("cannot start the worker threads (server.workers): {0}")]
    Workers(std::io::Error),
}

/// A running gateway: its bound addresses and the means to stop it.
pub struct ServerHandle {
    /// The plain-HTTP client listener if there is one, else the TLS one.
    pub proxy_addr: SocketAddr,
    /// The TLS client listener, if `[server.tls]` is configured.
    pub tls_addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    gateway: Arc<Gateway>,
    ready: Arc<AtomicBool>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    workers: Workers,
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
        self.workers.wait().await;
    }
}

/// Bind every listener and start serving. Returns once all are accepting.
pub async fn start(config: Config) -> Result<ServerHandle, StartupError> {
    let names: Vec<&str> = config.upstreams.iter().map(|u| u.name.as_str()).collect();
    let metrics = Arc::new(Metrics::new(&names)?);
    // Loads every upstream's credentials (token files, AWS keys) and starts their refresh.
    let gateway = Arc::new(Gateway::start(config, metrics.clone()).await?);
    let cfg = &gateway.config;

    let plain = match cfg.server.listen {
        Some(addr) => Some(Bound::new("server.listen", addr).await?),
        None => None,
    };
    let tls = match &cfg.server.tls {
        Some(t) => Some((Bound::new(t.listen_key, t.listen).await?, t)),
        None => None,
    };
    let admin = Bound::new("admin.listen", cfg.admin.listen).await?;
    let tls_addr = tls.as_ref().map(|(bound, _)| bound.addr);
    let proxy_addr = match (&plain, tls_addr) {
        (Some(bound), _) => bound.addr,
        (None, Some(addr)) => addr,
        // Validation guarantees at least one client listener.
        (None, None) => return Err(StartupError::NoListener),
    };
    let admin_addr = admin.addr;

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
        .layer(SetRequestIdLayer::x_request_id(MakeRequestId))
        // classify → decide → forward → record (see proxy/mod.rs).
        .service(ProxyService::new(gateway.clone()));
    let proxy_service = TowerToHyperService::new(proxy_service);

    let ready = Arc::new(AtomicBool::new(false));
    let weak = Arc::downgrade(&gateway);
    let admin_state =
        AdminState::new(metrics.clone(), ready.clone()).with_refresh(Arc::new(move || {
            if let Some(gw) = weak.upgrade() {
                for (_, upstream) in gw.policy.upstreams() {
                    upstream.pool().refresh_up_gauges();
                }
            }
        }));
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
    // The client listeners, served by every worker thread (see runtime.rs).
    let tls_settings = match &tls {
        Some((bound, t)) => {
            tracing::info!(
                listener = "tls",
                addr = %bound.addr,
                protocols = "HTTP/1.1, h2 (ALPN)",
                mtls = if t.client_auth { "on (client certificate required)" } else { "off" },
                cert = %t.cert.display(),
                "serving clients"
            );
            Some(listener::TlsSettings {
                acceptor: TlsAcceptor::from(t.config.clone()),
                handshake_timeout: cfg.limits.header_read_timeout,
                metrics: metrics.clone(),
            })
        }
        None => None,
    };
    if let Some(bound) = &plain {
        tracing::info!(listener = "plain", addr = %bound.addr, protocols = "HTTP/1.1, h2c", "serving clients");
    }
    // One acceptor per client listener (on this, the control runtime) hands connections to
    // the worker with the fewest open ones (listener::distribute).
    let mut jobs = Vec::with_capacity(cfg.server.workers);
    let mut plain_workers = Vec::new();
    let mut tls_workers = Vec::new();
    for worker in 1..=cfg.server.workers {
        let open = OpenCount::new(metrics.worker_connections(worker));
        let plain_rx = plain.as_ref().map(|_| {
            let (tx, rx) = mpsc::unbounded_channel();
            plain_workers.push((tx, open.clone()));
            rx
        });
        let tls_rx = match &tls_settings {
            Some(settings) => {
                let (tx, rx) = mpsc::unbounded_channel();
                tls_workers.push((tx, open.clone()));
                Some((rx, settings.clone()))
            }
            None => None,
        };
        jobs.push(WorkerJob {
            plain: plain_rx,
            tls: tls_rx,
            builder: proxy_builder.clone(),
            service: proxy_service.clone(),
            shutdown: rx.clone(),
        });
    }
    let workers = Workers::spawn(jobs, serve_worker).map_err(StartupError::Workers)?;
    tracing::info!(workers = workers.len(), "worker threads started");
    let mut tasks = JoinSet::new();
    if let Some(bound) = plain {
        tasks.spawn(listener::distribute(
            "proxy",
            bound.listener,
            plain_workers,
            rx.clone(),
        ));
    }
    if let Some((bound, _)) = tls {
        tasks.spawn(listener::distribute(
            "proxy-tls",
            bound.listener,
            tls_workers,
            rx.clone(),
        ));
    }
    tasks.spawn(listener::accept_loop(
        "admin",
        Source::Listener(admin.listener),
        None,
        admin_builder,
        admin_service,
        rx,
    ));
    ready.store(true, Ordering::SeqCst);
    tracing::info!(
        %proxy_addr,
        tls_addr = tls_addr.map(|a| a.to_string()),
        %admin_addr,
        "switchyard listening"
    );
    for (class, upstream) in gateway.policy.upstreams() {
        tracing::info!(
            class = class.as_str(),
            upstream = upstream.name(),
            endpoints = %upstream
                .pool()
                .endpoints()
                .iter()
                .map(|e| format!("{}={}", e.name, e.url))
                .collect::<Vec<_>>()
                .join(","),
            kind = upstream.kind().as_str(),
            auth = upstream.auth_description(),
            "route"
        );
    }
    Ok(ServerHandle {
        proxy_addr,
        tls_addr,
        admin_addr,
        gateway,
        ready,
        shutdown,
        tasks,
        workers,
    })
}

/// A bound listener and its real address (with the port the OS picked for port 0).
struct Bound {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Bound {
    async fn new(key: &'static str, addr: SocketAddr) -> Result<Bound, StartupError> {
        let error = |source| StartupError::Bind { key, addr, source };
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(error)?;
        // As `TcpListener::bind` does, so that a restarted gateway can bind at once.
        #[cfg(unix)]
        socket.set_reuseaddr(true).map_err(error)?;
        socket.bind(addr).map_err(error)?;
        let listener = socket.listen(LISTEN_BACKLOG).map_err(error)?;
        let addr = listener.local_addr().map_err(error)?;
        Ok(Bound { listener, addr })
    }
}

/// What one worker thread serves: the connections handed to it from each client listener.
struct WorkerJob<S> {
    plain: Option<mpsc::UnboundedReceiver<Handoff>>,
    tls: Option<(mpsc::UnboundedReceiver<Handoff>, listener::TlsSettings)>,
    builder: auto::Builder<TokioExecutor>,
    service: S,
    shutdown: watch::Receiver<bool>,
}

/// One worker: serve the connections handed to it until shutdown, then drain.
async fn serve_worker<S>(job: WorkerJob<S>)
where
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<crate::proxy::body::ProxyBody>,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let plain = job.plain.map(|rx| {
        listener::accept_loop(
            "proxy",
            Source::Handoff(rx),
            None,
            job.builder.clone(),
            job.service.clone(),
            job.shutdown.clone(),
        )
    });
    let tls = job.tls.map(|(rx, settings)| {
        listener::accept_loop(
            "proxy-tls",
            Source::Handoff(rx),
            Some(settings),
            job.builder,
            job.service,
            job.shutdown,
        )
    });
    match (plain, tls) {
        (Some(plain), Some(tls)) => {
            tokio::join!(plain, tls);
        }
        (Some(plain), None) => plain.await,
        (None, Some(tls)) => tls.await,
        (None, None) => {}
    }
}
