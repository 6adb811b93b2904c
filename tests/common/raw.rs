//! Raw sockets, for what a well-behaved HTTP library will not send or answer: upstreams
//! with fixed (possibly broken) responses, and reading a response off a bare connection.

use std::net::SocketAddr;

use super::SOON;

/// The HTTP/2 connection preface (RFC 9113 §3.4) followed by an empty SETTINGS frame: what an
/// h2 client with prior knowledge sends first.
#[allow(dead_code)]
pub const H2_PREFACE_AND_SETTINGS: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

/// Read the first frame header the server sends on `stream` and assert it is SETTINGS, as
/// an HTTP/2 server's first frame must be.
#[allow(dead_code)]
pub async fn expect_h2_settings(stream: &mut (impl tokio::io::AsyncRead + Unpin)) {
    use tokio::io::AsyncReadExt;
    let mut frame = [0u8; 9];
    tokio::time::timeout(SOON, stream.read_exact(&mut frame))
        .await
        .expect("the server's first frame in time")
        .unwrap();
    assert_eq!(
        frame[3], 4,
        "the server's first frame is SETTINGS: {frame:?}"
    );
}

/// A slow client: send `parts` on a fresh connection to `addr`, `gap` apart, then read until
/// the server closes (send `connection: close`) and return the raw response as text.
/// Write errors are ignored: a server may answer and close before the last part.
pub async fn trickle(addr: SocketAddr, parts: &[String], gap: std::time::Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    for part in parts {
        let _ = stream.write_all(part.as_bytes()).await;
        tokio::time::sleep(gap).await;
    }
    let mut out = Vec::new();
    tokio::time::timeout(SOON, stream.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// `chunks` as HTTP/1.1 chunked-encoding parts, the terminating chunk included.
pub fn chunked_parts(chunks: &[&str]) -> Vec<String> {
    chunks
        .iter()
        .map(|c| format!("{:x}\r\n{c}\r\n", c.len()))
        .chain(std::iter::once("0\r\n\r\n".to_owned()))
        .collect()
}

/// A minimal HTTP/1.1 upstream: it reads each request (head plus a `content-length` body)
/// and answers with `response` verbatim. With `close`, it closes the connection after
/// writing, which truncates a response that promised more.
pub async fn raw_upstream(response: &'static [u8], close: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut buf = Vec::new();
                while read_request(&mut stream, &mut buf).await {
                    if stream.write_all(response).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Read one request (head plus `content-length` body) off `stream`, consuming it from `buf`.
async fn read_request(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> bool {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let len = content_length(&buf[..end]);
            if buf.len() >= end + 4 + len {
                buf.drain(..end + 4 + len);
                return true;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn content_length(head: &[u8]) -> usize {
    String::from_utf8_lossy(head)
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}

/// A raw HTTP/1.1 response: status line + headers as text, and the body bytes.
#[derive(Debug)]
pub struct RawResponse {
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn status(&self) -> u16 {
        self.head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Read one response with a `content-length` body (or none) from `stream`; `None` if the
/// connection ends first or nothing arrives within [`SOON`].
pub async fn read_raw_response(stream: &mut tokio::net::TcpStream) -> Option<RawResponse> {
    use tokio::io::AsyncReadExt;
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let len = content_length(&buf[..end]);
                if buf.len() >= end + 4 + len {
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    let body = buf[end + 4..end + 4 + len].to_vec();
                    return Some(RawResponse { head, body });
                }
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(SOON, read).await.ok().flatten()
}
