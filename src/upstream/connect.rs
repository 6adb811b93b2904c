//! The upstream connector: TCP (hyper-util), then TLS for `https://` (hyper-rustls), the two
//! together bounded by the upstream's connect timeout. hyper-util's own timeout covers TCP
//! only, so an upstream that accepts and then stalls the handshake would otherwise hold the
//! request until its deadline.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `HttpsConnector` with one deadline for connect plus handshake.
#[derive(Clone)]
pub struct Connector {
    inner: HttpsConnector<HttpConnector>,
    timeout: Duration,
}

impl Connector {
    pub fn new(inner: HttpsConnector<HttpConnector>, timeout: Duration) -> Connector {
        Connector { inner, timeout }
    }
}

impl tower::Service<Uri> for Connector {
    type Response = MaybeHttpsStream<TokioIo<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(result) => result,
                // `TimedOut` is what `classify_error` reports as a connect timeout.
                Err(_) => Err(Box::new(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting (TCP and TLS handshake) took longer than {timeout:?}"),
                )) as BoxError),
            }
        })
    }
}
