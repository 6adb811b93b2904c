//! The first-byte clock starts when the request body has been sent: a slow streamed upload is
//! not a slow upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use switchyard::config::Config;
use switchyard::mock::{MockOptions, MockProvider};
use switchyard::server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_streamed_upload_is_not_a_first_byte_timeout() {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let primary = MockProvider::start(any, MockOptions::new("primary"))
        .await
        .unwrap();
    let secondary = MockProvider::start(any, MockOptions::new("secondary"))
        .await
        .unwrap();
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[timeouts]
first_byte = "300ms"
[upstreams.primary]
url = "http://{}/v1"
[upstreams.secondary]
url = "http://{}/v1"
[routing]
stateless = "primary"
stateful = "secondary"
[log]
access_log = false
"#,
        primary.addr(),
        secondary.addr()
    );
    let handle = server::start(Config::from_toml_str(&text).unwrap())
        .await
        .unwrap();
    let addr = handle.proxy_addr;
    // A chunked upload to a streamed (stateful) route, spread over ~1 s: three times the
    // first-byte timeout. The upstream answers at once when the body is complete.
    let response = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "POST /v1/files HTTP/1.1\r\nhost: gw\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        for part in ["hello ", "slow ", "world"] {
            write!(s, "{:x}\r\n{part}\r\n", part.len()).unwrap();
            s.flush().unwrap();
            std::thread::sleep(Duration::from_millis(350));
        }
        write!(s, "0\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("x-mock-provider: secondary"),
        "{response}"
    );
    let seen = secondary
        .wait_until(Duration::from_secs(5), |r| {
            r.first().is_some_and(|r| r.body_complete)
        })
        .await;
    assert_eq!(&seen[0].body[..], b"hello slow world");
    assert_eq!(primary.request_count(), 0);

    // The first-byte timeout still applies once the body is sent.
    let slow = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let body = "abc";
        write!(
            s,
            "POST /v1/files HTTP/1.1\r\nhost: gw\r\nx-mock-delay-ms: 5000\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(slow.starts_with("HTTP/1.1 504"), "{slow}");
    assert!(slow.contains("\"code\":\"timeout\""), "{slow}");
    handle.shutdown().await;
}
