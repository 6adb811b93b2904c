//! Client connections at the edge (issue #7): refused at the connection limit, closed by a
//! limit, and ended by a client error hyper detected before any request reached the proxy.

use std::error::Error as StdError;

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// Why the gateway closed a client connection politely.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionClose {
    /// `limits.max_requests_per_connection` requests were served.
    MaxRequests,
    /// Nothing was in flight for `limits.keepalive_timeout`.
    KeepaliveTimeout,
}

impl ConnectionClose {
    pub const ALL: [ConnectionClose; 2] = [
        ConnectionClose::MaxRequests,
        ConnectionClose::KeepaliveTimeout,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ConnectionClose::MaxRequests => "max_requests",
            ConnectionClose::KeepaliveTimeout => "keepalive_timeout",
        }
    }
}

/// How a client broke a connection, as hyper (or h2) reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientConnectionError {
    /// The request head did not arrive within `limits.header_read_timeout`.
    HeaderTimeout,
    /// The head was larger than `limits.max_header_bytes` or had more than
    /// `limits.max_headers` lines (431).
    HeaderTooLarge,
    /// The head did not parse (400): bad request line, invalid header, bad framing.
    BadRequest,
    /// HTTP/2 flood protection ended the connection with GOAWAY (ENHANCE_YOUR_CALM): too
    /// many streams reset before being accepted (rapid reset), too many error resets, or a
    /// header block that would not end (CONTINUATION flood).
    H2Flood,
    /// Another HTTP/2 protocol violation (GOAWAY with PROTOCOL_ERROR and the like).
    H2Protocol,
    /// The client read nothing of its response for `limits.send_timeout` (a slow reader).
    SendTimeout,
    /// The connection broke: reset, closed mid-message.
    Io,
}

impl ClientConnectionError {
    pub const ALL: [ClientConnectionError; 7] = [
        ClientConnectionError::HeaderTimeout,
        ClientConnectionError::HeaderTooLarge,
        ClientConnectionError::BadRequest,
        ClientConnectionError::H2Flood,
        ClientConnectionError::H2Protocol,
        ClientConnectionError::SendTimeout,
        ClientConnectionError::Io,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ClientConnectionError::HeaderTimeout => "header_timeout",
            ClientConnectionError::HeaderTooLarge => "header_too_large",
            ClientConnectionError::BadRequest => "bad_request",
            ClientConnectionError::H2Flood => "h2_flood",
            ClientConnectionError::H2Protocol => "h2_protocol",
            ClientConnectionError::SendTimeout => "send_timeout",
            ClientConnectionError::Io => "io",
        }
    }

    /// The kind of a connection's error, from the chain hyper returned; `None` for errors
    /// that are not the client's (the service failing, the server shutting down).
    pub fn of(error: &(dyn StdError + 'static)) -> Option<ClientConnectionError> {
        let mut current: Option<&(dyn StdError + 'static)> = Some(error);
        while let Some(e) = current {
            if let Some(h2) = e.downcast_ref::<h2::Error>() {
                if h2.get_io().is_some_and(is_send_timeout) {
                    return Some(ClientConnectionError::SendTimeout);
                }
                return Some(match h2.reason() {
                    Some(h2::Reason::ENHANCE_YOUR_CALM) => ClientConnectionError::H2Flood,
                    Some(_) => ClientConnectionError::H2Protocol,
                    None => ClientConnectionError::Io,
                });
            }
            if let Some(hyper) = e.downcast_ref::<hyper::Error>() {
                if hyper.is_user() {
                    // The service or a response body failed (an upstream's error): not the
                    // client's doing.
                    return None;
                }
                if hyper.is_timeout() {
                    return Some(ClientConnectionError::HeaderTimeout);
                }
                if hyper.is_parse_too_large() {
                    return Some(ClientConnectionError::HeaderTooLarge);
                }
                if hyper.is_parse() {
                    return Some(ClientConnectionError::BadRequest);
                }
                if hyper.is_incomplete_message() {
                    return Some(ClientConnectionError::Io);
                }
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                // The kind identifies it on both protocols: HTTP/1.1 keeps the `SendTimeout`
                // itself (made with kind `TimedOut`); an h2 I/O error keeps only the kind, and
                // hyper hands it on as its own I/O error, without the h2 error around it.
                if is_send_timeout(io) {
                    return Some(ClientConnectionError::SendTimeout);
                }
                return Some(ClientConnectionError::Io);
            }
            current = e.source();
        }
        None
    }
}

/// A client socket's write that failed on `limits.send_timeout`. h2 keeps only an I/O error's
/// kind and message, so the kind is what identifies it; a kernel-level TCP timeout (the client
/// acknowledging nothing) has the same kind and the same meaning.
fn is_send_timeout(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::TimedOut
}

pub struct ConnectionMetrics {
    refused: IntCounter,
    closed: IntCounterVec,
    errors: IntCounterVec,
}

impl ConnectionMetrics {
    pub fn new(registry: &Registry) -> Result<ConnectionMetrics, prometheus::Error> {
        let refused = IntCounter::with_opts(Opts::new(
            "switchyard_connections_refused_total",
            "Client connections refused because limits.max_connections were open.",
        ))?;
        registry.register(Box::new(refused.clone()))?;
        let closed = IntCounterVec::new(
            Opts::new(
                "switchyard_connections_closed_total",
                "Client connections the gateway closed politely, by reason: max_requests \
                 (limits.max_requests_per_connection), keepalive_timeout.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(closed.clone()))?;
        for reason in ConnectionClose::ALL {
            closed.with_label_values(&[reason.as_str()]);
        }
        let errors = IntCounterVec::new(
            Opts::new(
                "switchyard_client_errors_total",
                "Client connections ended by a client error before or between requests: \
                 header_timeout, header_too_large (431), bad_request (400), h2_flood \
                 (GOAWAY ENHANCE_YOUR_CALM), h2_protocol, send_timeout (a client that \
                 stopped reading), io.",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(errors.clone()))?;
        for kind in ClientConnectionError::ALL {
            errors.with_label_values(&[kind.as_str()]);
        }
        Ok(ConnectionMetrics {
            refused,
            closed,
            errors,
        })
    }

    pub fn refused(&self) {
        self.refused.inc();
    }

    pub fn closed(&self, reason: ConnectionClose) {
        self.closed.with_label_values(&[reason.as_str()]).inc();
    }

    pub fn error(&self, kind: ClientConnectionError) {
        self.errors.with_label_values(&[kind.as_str()]).inc();
    }
}
