//! Startup and shutdown: bind the client listeners (plain HTTP/1.1 + h2c, TLS with ALPN,
//! optionally mTLS) and the admin listener, build the request path, drain on shutdown.
//! The accept loops themselves live in `listener.rs`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use arc_swap::ArcSwap;

use crate::admin::{self, AdminState};
use crate::audit::{AuditLog, AuditSettings, OnFull};
use crate::config::Config;
use crate::connection::ConnectionLimits;
use crate::gateway::Gateway;
use crate::gateway::GatewayError;
use crate::listener::{self, Handoff, OpenCount, Source};
use crate::metrics::Metrics;
use crate::proxy::ProxyService;
use crate::reload::{Live, ReloadError, ReloadReport, Reloader, Trigger};
use crate::runtime::Workers;
use crate::served::{Http1Settings, Http2Settings, Protocols};

/// Connections the kernel queues for a listener before the gateway accepts them (capped by
/// `net.core.somaxconn`). `TcpListener::bind` uses 128, like the standard library: a burst of
/// more connects than that overflows the queue and each extra client waits for a SYN
/// retransmit (1 s), which the load harness's 10,000-stream test showed.
pub const LISTEN_BACKLOG: u32 = 4096;

/// How long shutdown waits for the audit log to be written out, sealed and fsynced.
const AUDIT_CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// How long an admin request in progress (a scrape) gets to finish once the drain is over.
const ADMIN_CLOSE_GRACE: Duration = Duration::from_secs(1);

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
    #[error("cannot open the audit trail (audit.path): {0}")]
    Audit(#[from] crate::audit::AuditError),
}

/// A running gateway: its bound addresses and the means to stop it.
pub struct ServerHandle {
    /// The plain-HTTP client listener if there is one, else the TLS one.
    pub proxy_addr: SocketAddr,
    /// The TLS client listener, if `[server.tls]` is configured.
    pub tls_addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    live: Arc<Live>,
    reloader: Arc<Reloader>,
    ready: Arc<AtomicBool>,
    shutdown: watch::Sender<Option<Instant>>,
    admin_shutdown: watch::Sender<Option<Instant>>,
    admin_task: tokio::task::JoinHandle<()>,
    tasks: JoinSet<()>,
    workers: Workers,
}

impl ServerHandle {
    /// The state new requests use (the latest config).
    pub fn gateway(&self) -> Arc<Gateway> {
        self.live.load_full()
    }

    /// The reloader, for callers that reload in a task of their own (SIGHUP).
    pub fn reloader(&self) -> Arc<Reloader> {
        self.reloader.clone()
    }

    /// Reload the config file (what SIGHUP and `POST /reload` do).
    pub async fn reload(&self, trigger: Trigger) -> Result<ReloadReport, ReloadError> {
        self.reloader.reload(trigger).await
    }

    /// Drain and stop: `/readyz` answers 503 at once, the listeners stop accepting, idle
    /// keep-alive connections are closed (HTTP/1.1 `Connection: close` on their next
    /// response, HTTP/2 GOAWAY), and requests and streams in flight get until
    /// `server.drain_timeout` to finish; what is left then is cut. Returns when every
    /// connection is closed and the audit trail is written out.
    pub async fn shutdown(mut self) {
        let gateway = self.live.load_full();
        let drain = gateway.config.server.drain_timeout;
        self.ready.store(false, Ordering::SeqCst);
        gateway.metrics.config.draining(true);
        tracing::info!(drain_timeout = ?drain, "draining: no new connections, in-flight requests may finish");
        let _ = self.shutdown.send(Some(Instant::now() + drain));
        while self.tasks.join_next().await.is_some() {}
        self.workers.wait().await;
        if let Some(audit) = &gateway.audit {
            // A hung disk must not hold the exit forever; close_within logs what may be lost.
            audit.close_within(AUDIT_CLOSE_LIMIT).await;
        }
        tracing::info!("drained");
        // Scrapes and probes were answered throughout; now the admin listener goes too.
        let _ = self
            .admin_shutdown
            .send(Some(Instant::now() + ADMIN_CLOSE_GRACE));
        let _ = self.admin_task.await;
    }
}

/// Bind every listener and start serving. Returns once all are accepting.
pub async fn start(config: Config) -> Result<ServerHandle, StartupError> {
    let names: Vec<&str> = config.upstreams.iter().map(|u| u.name.as_str()).collect();
    let metrics = Arc::new(Metrics::new(&names)?);
    // Loads every upstream's credentials (token files, AWS keys) and starts their refresh.
    let mut gateway = Gateway::start(config, metrics.clone()).await?;
    // The listeners are bound from a copy: the gateway is completed (audit) before it is shared.
    let bind = gateway.config.clone();
    let cfg = &bind;

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
    // Opened once every listener is bound, so that a start that fails to bind leaves no
    // unsealed run in the trail.
    if let Some(settings) = &cfg.audit {
        let log = AuditLog::open(audit_settings(settings), metrics.clone())?;
        tracing::info!(path = %settings.path.display(), "audit trail open");
        gateway.audit = Some(log);
    }
    metrics
        .config
        .active(&gateway.config.source.sha256, crate::reload::unix_now());
    let gateway = Arc::new(gateway);
    let live: Arc<Live> = Arc::new(ArcSwap::new(gateway.clone()));
    let cfg = &gateway.config;

    let limits = &cfg.limits;
    let protocols = Protocols::new(
        Http1Settings {
            // Also the keep-alive idle limit on HTTP/1.1: hyper starts it when it waits for the
            // next request head.
            header_read_timeout: limits.header_read_timeout,
            max_buf_size: Some(limits.max_header_bytes),
            // Any other count makes hyper allocate the header array per request (hyper's docs:
            // about 5% slower), so its own default of 100 is left alone.
            max_headers: (limits.max_headers != crate::config::defaults::MAX_HEADERS)
                .then_some(limits.max_headers),
        },
        Some(Http2Settings {
            max_header_list_size: u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX),
            max_concurrent_streams: limits.h2.max_concurrent_streams,
            max_pending_accept_reset_streams: limits.h2.max_pending_resets,
            stream_window: limits.h2.stream_window,
            connection_window: limits.h2.connection_window,
            send_buffer: limits.h2.send_buffer,
        }),
    );
    let connection_limits = ConnectionLimits {
        max_requests: limits.max_requests_per_connection,
        keepalive: Some(limits.keepalive_timeout),
        first_request: Some(limits.header_read_timeout),
        send_timeout: Some(limits.send_timeout),
        send_buffer: limits.send_buffer,
        unsent_buffer: limits.unsent_buffer,
    };

    // The request path: classify → decide → forward → record (see proxy/mod.rs), which also
    // gives each request its id.
    let proxy_service = ProxyService::new(live.clone());

    let tls_cell = cfg
        .server
        .tls
        .as_ref()
        .map(|t| Arc::new(ArcSwap::new(t.config.clone())));
    let reloader = Arc::new(Reloader::new(live.clone(), tls_cell.clone()));
    let ready = Arc::new(AtomicBool::new(false));
    let weak = Arc::downgrade(&live);
    let admin_state = AdminState::new(metrics.clone(), ready.clone())
        .with_refresh(Arc::new(move || {
            if let Some(live) = weak.upgrade() {
                for (_, upstream) in live.load().policy.upstreams() {
                    upstream.pool().refresh_up_gauges();
                }
            }
        }))
        .with_reloader(reloader.clone());
    let admin_service = hyper::service::service_fn(move |req| {
        let state = admin_state.clone();
        async move { Ok::<_, std::convert::Infallible>(admin::handle(&state, req).await) }
    });
    let admin_protocols = Protocols::new(
        Http1Settings {
            header_read_timeout: Duration::from_secs(10),
            max_buf_size: None,
            max_headers: None,
        },
        None,
    );

    let (shutdown, rx) = watch::channel(None);
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
                config: tls_cell
                    .clone()
                    .unwrap_or_else(|| Arc::new(ArcSwap::new(t.config.clone()))),
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
            protocols: protocols.clone(),
            limits: connection_limits,
            metrics: metrics.clone(),
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
            listener::ConnectionCap {
                max: cfg.limits.max_connections,
                plain: true,
                metrics: metrics.clone(),
            },
            rx.clone(),
        ));
    }
    if let Some((bound, _)) = tls {
        tasks.spawn(listener::distribute(
            "proxy-tls",
            bound.listener,
            tls_workers,
            listener::ConnectionCap {
                max: cfg.limits.max_connections,
                plain: false,
                metrics: metrics.clone(),
            },
            rx.clone(),
        ));
    }
    // The admin listener has a shutdown of its own: it keeps answering (`/readyz` 503,
    // `/metrics` with `switchyard_draining`) until the client connections are drained.
    let (admin_shutdown, admin_rx) = watch::channel(None);
    let admin_task = tokio::spawn(listener::accept_loop(
        "admin",
        Source::Listener(admin.listener),
        None,
        listener::Serving {
            protocols: admin_protocols,
            limits: ConnectionLimits::NONE,
            metrics: metrics.clone(),
        },
        admin_service,
        admin_rx,
    ));
    if cfg.reload.watch {
        if let Some(path) = reloader.path() {
            tracing::info!(path = %path.display(), interval = ?cfg.reload.watch_interval, "watching the config file for changes");
        }
        tasks.spawn(
            reloader
                .clone()
                .watch(cfg.reload.watch_interval, rx.clone()),
        );
    }
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
        live,
        reloader,
        ready,
        shutdown,
        admin_shutdown,
        admin_task,
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
    protocols: Protocols,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    service: S,
    shutdown: listener::Shutdown,
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
            listener::Serving {
                protocols: job.protocols.clone(),
                limits: job.limits,
                metrics: job.metrics.clone(),
            },
            job.service.clone(),
            job.shutdown.clone(),
        )
    });
    let tls = job.tls.map(|(rx, settings)| {
        listener::accept_loop(
            "proxy-tls",
            Source::Handoff(rx),
            Some(settings),
            listener::Serving {
                protocols: job.protocols,
                limits: job.limits,
                metrics: job.metrics,
            },
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

/// The audit writer's settings from `[audit]`.
fn audit_settings(cfg: &crate::config::Audit) -> AuditSettings {
    AuditSettings {
        path: cfg.path.clone(),
        max_file_bytes: cfg.max_file_bytes,
        max_files: cfg.max_files,
        queue: cfg.queue,
        on_full: match cfg.on_full {
            crate::config::AuditOnFull::Block => OnFull::Block,
            crate::config::AuditOnFull::Drop => OnFull::Drop,
        },
        key: cfg.key.as_ref().map(|k| k.0.clone()),
    }
}
