//! `switchyard probe URL`: one plain-HTTP GET for container health checks (`HEALTHCHECK`,
//! exec probes) where the runtime image has no curl. Exit 0 on a 2xx answer, 1 otherwise.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0:?} is not an http:// URL with a host, such as http://127.0.0.1:9901/readyz")]
    Url(String),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("cannot reach {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0} did not answer with an HTTP status line")]
    Garbled(String),
    #[error("{url} answered {status}")]
    Status { url: String, status: String },
}

/// GET `url` with `timeout` for each of connect, write and read; `Ok` with the status line
/// when it is 2xx.
pub fn probe(url: &str, timeout: Duration) -> Result<String, ProbeError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ProbeError::Url(url.to_owned()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || path.contains(['\r', '\n', ' ']) {
        return Err(ProbeError::Url(url.to_owned()));
    }
    let with_port = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let addr: SocketAddr = with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| ProbeError::Resolve(authority.to_owned()))?;
    let io = |source| ProbeError::Io {
        addr: addr.to_string(),
        source,
    };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;
    // The status line fits in the first read of any sane server; read at most 1 KiB.
    let mut head = [0u8; 1024];
    let mut len = 0;
    while len < head.len() {
        let n = stream.read(&mut head[len..]).map_err(io)?;
        if n == 0 {
            break;
        }
        len += n;
        if head[..len].contains(&b'\n') {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head[..len]);
    let line = text.lines().next().unwrap_or_default().trim().to_owned();
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .ok_or_else(|| ProbeError::Garbled(url.to_owned()))?;
    if status.starts_with('2') {
        Ok(line)
    } else {
        Err(ProbeError::Status {
            url: url.to_owned(),
            status: line,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_that_are_not_plain_http_are_refused() {
        for url in [
            "https://127.0.0.1/",
            "127.0.0.1:9901",
            "http://",
            "http:///readyz",
        ] {
            assert!(
                matches!(
                    probe(url, Duration::from_millis(100)),
                    Err(ProbeError::Url(_))
                ),
                "{url}"
            );
        }
    }

    #[test]
    fn a_closed_port_is_an_io_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let result = probe(
            &format!("http://127.0.0.1:{port}/readyz"),
            Duration::from_millis(500),
        );
        assert!(matches!(result, Err(ProbeError::Io { .. })), "{result:?}");
    }
}
