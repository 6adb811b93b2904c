//! The floor under Switchyard's data plane: the least a hyper-based HTTP/1.1 reverse proxy
//! does, for `benches/load/floor.sh` to measure beside Switchyard and nginx.
//!
//! Each worker thread runs its own single-threaded tokio runtime with its own `SO_REUSEPORT`
//! listener (the kernel spreads connections over them, as nginx's `reuseport` does). Each
//! client connection gets one upstream connection of its own, opened when the client
//! connects and used for every request on it, so there is no pool, no lookup and no lock
//! contention. Requests go upstream as they came, head and body untouched and streamed, and
//! answers come back the same way: no classification, no header hygiene, no metrics, no
//! logs, no timeouts. That is what hyper's server and client connections and tokio cost per
//! request on their own; the distance from here to Switchyard is Switchyard's own work, and
//! the distance from here to nginx is the stack's.
//!
//! Usage: `hyper_floor LISTEN UPSTREAM [WORKERS]` (both socket addresses; 2 workers by
//! default); prints `listening on ADDR` once bound, then serves until killed.

use std::convert::Infallible;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};

/// Listen backlog: room for every connection a load generator opens at once.
const BACKLOG: i32 = 1024;

type Answer = Response<Either<Incoming, Empty<Bytes>>>;
type Upstream = Arc<Mutex<SendRequest<Incoming>>>;

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = || io::Error::other("usage: hyper_floor LISTEN UPSTREAM [WORKERS]");
    let listen: SocketAddr = parse(args.next().ok_or_else(usage)?)?;
    let upstream: SocketAddr = parse(args.next().ok_or_else(usage)?)?;
    let workers: usize = match args.next() {
        Some(n) => parse(n)?,
        None => 2,
    };
    // Every listener binds before any serves, so the first one can pick the port (`:0`).
    let first = bind(listen)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..workers.max(1) {
        listeners.push(bind(addr)?);
    }
    println!("listening on {addr}");
    let threads: Vec<_> = listeners
        .into_iter()
        .map(|listener| std::thread::spawn(move || worker(listener, upstream)))
        .collect();
    for thread in threads {
        thread
            .join()
            .map_err(|_| io::Error::other("a worker panicked"))??;
    }
    Ok(())
}

fn parse<T: std::str::FromStr>(text: String) -> io::Result<T> {
    text.parse()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("bad argument {text}")))
}

/// A non-blocking `SO_REUSEPORT` listener on `addr` (socket2: tokio's `TcpSocket::listen`
/// needs a runtime, and each worker's is not built yet).
fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// One worker: its own runtime, serving the connections its listener accepts.
fn worker(listener: std::net::TcpListener, upstream: SocketAddr) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener)?;
        loop {
            let (client, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                // Out of file descriptors and the like: try the next one.
                Err(_) => continue,
            };
            tokio::spawn(serve(client, upstream));
        }
    })
}

/// One client connection, over its own upstream connection.
async fn serve(client: TcpStream, upstream: SocketAddr) {
    let Ok(up) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let Ok((sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(up)).await else {
        return;
    };
    tokio::spawn(conn);
    let sender: Upstream = Arc::new(Mutex::new(sender));
    let service = service_fn(move |req| forward(sender.clone(), req));
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(client), service)
        .await;
}

/// Sends `req` upstream as it is and answers with what comes back (502 if nothing does).
async fn forward(sender: Upstream, req: Request<Incoming>) -> Result<Answer, Infallible> {
    let lock = || sender.lock().unwrap_or_else(PoisonError::into_inner);
    if poll_fn(|cx| lock().poll_ready(cx)).await.is_err() {
        return Ok(bad_gateway());
    }
    let sent = lock().send_request(req);
    Ok(match sent.await {
        Ok(response) => response.map(Either::Left),
        Err(_) => bad_gateway(),
    })
}

fn bad_gateway() -> Answer {
    let mut response = Response::new(Either::Right(Empty::new()));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}
