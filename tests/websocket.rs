//! WebSockets through the gateway: handshakes routed by class and relayed (HTTP/1.1 upgrade
//! and HTTP/2 extended CONNECT), echo of small, large and fragmented messages, the close
//! handshake, refusals passed back, upgrades that must never be relayed, and the metrics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::websocket::{close, connect, connect_h2, echo, next, send_fragmented};
use common::{metric, summary, Harness, SOON};
use http::{Method, StatusCode, Version};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const REALTIME: &str = "/v1/realtime?model=gpt-realtime";

/// `n` bytes of a pattern that is not all one value.
fn pattern(n: usize) -> Bytes {
    #[allow(clippy::cast_possible_truncation)]
    let bytes: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    Bytes::from(bytes)
}

#[tokio::test]
async fn echo_through_the_stateful_upstream_with_metrics() {
    let h = Harness::start().await;
    let mut opened = connect(h.proxy_addr, REALTIME, &[("x-request-id", "ws-1")])
        .await
        .unwrap_or_else(|r| panic!("handshake refused: {r:?}"));
    // The 101 says what was decided, like any response.
    assert_eq!(opened.headers["x-switchyard-class"], "stateful");
    assert_eq!(opened.headers["x-switchyard-upstream"], "secondary");
    assert_eq!(opened.headers["x-switchyard-rule"], "websocket.upgrade");
    assert_eq!(opened.headers["x-request-id"], "ws-1");
    assert_eq!(opened.headers["x-mock-provider"], "secondary");
    let key = opened.key.clone();
    let ws = &mut opened.ws;

    let text = echo(ws, Message::text("hello, realtime")).await;
    assert_eq!(text, Message::text("hello, realtime"));

    let large = pattern(4 * 1024 * 1024 + 17);
    match echo(ws, Message::binary(large.clone())).await {
        Message::Binary(got) => assert!(got == large, "the 4 MiB echo differs"),
        other => panic!("expected the binary echo, got {other:?}"),
    }

    send_fragmented(ws, &["frag", "men", "ted"]).await;
    assert_eq!(next(ws).await, Message::text("fragmented"));

    let pong = echo(ws, Message::Ping(Bytes::from_static(b"are you there"))).await;
    assert_eq!(pong, Message::Pong(Bytes::from_static(b"are you there")));
    let sent = ("hello, realtime".len() + large.len() + "fragmented".len()) as f64;

    // While the session is open: counted once, not in flight.
    let open = metric("switchyard_websocket_sessions_open").label("upstream", "secondary");
    let scrape = h.scrape_when(|s| open.sum_in(s) == Some(1.0)).await;
    open.assert_value(&scrape, 1.0);
    metric("switchyard_requests_in_flight")
        .label("upstream", "secondary")
        .assert_value(&scrape, 0.0);
    metric("switchyard_requests_total")
        .label("route", "/v1/realtime")
        .label("upstream", "secondary")
        .label("status", "101")
        .assert_value(&scrape, 1.0);

    close(ws).await;
    drop(opened);

    // The handshake reached the stateful mock with what a handshake needs, and only it.
    let seen = h
        .secondary
        .wait_until(SOON, |reqs| reqs.first().is_some_and(|r| r.finished))
        .await;
    assert_eq!(seen.len(), 1, "secondary saw {:?}", summary(&seen));
    let r = &seen[0];
    assert_eq!(r.method, Method::GET);
    assert_eq!(r.path_and_query, REALTIME);
    assert_eq!(r.version, Version::HTTP_11);
    assert_eq!(r.header("upgrade"), Some("websocket"));
    assert_eq!(r.header("connection"), Some("upgrade"));
    assert_eq!(r.header("sec-websocket-version"), Some("13"));
    assert_eq!(r.header("sec-websocket-key"), Some(key.as_str()));
    assert!(r.completed, "the mock's echo session did not end cleanly");
    assert!(
        h.primary.requests().is_empty(),
        "the stateless mock saw {:?}",
        summary(&h.primary.requests())
    );

    let done = |s: &common::Scrape| open.sum_in(s) == Some(0.0);
    let scrape = h.scrape_when(done).await;
    open.assert_value(&scrape, 0.0);
    let upgrades = metric("switchyard_websocket_upgrades_total")
        .label("route", "/v1/realtime")
        .label("upstream", "secondary");
    upgrades
        .clone()
        .label("result", "ok")
        .assert_value(&scrape, 1.0);
    upgrades
        .clone()
        .label("result", "refused")
        .assert_absent_or_zero(&scrape);
    upgrades
        .label("result", "error")
        .assert_absent_or_zero(&scrape);
    let bytes = metric("switchyard_websocket_bytes_total").label("upstream", "secondary");
    bytes
        .clone()
        .label("direction", "client_to_upstream")
        .assert_above(&scrape, sent);
    bytes
        .clone()
        .label("direction", "upstream_to_client")
        .assert_above(&scrape, sent);
    metric("switchyard_websocket_bytes_total")
        .label("upstream", "primary")
        .assert_value(&scrape, 0.0);
    metric("switchyard_websocket_sessions_open")
        .label("upstream", "primary")
        .assert_value(&scrape, 0.0);
    h.shutdown().await;
}

/// `/v1/responses` is a WebSocket route too (the Responses API's WebSocket mode).
#[tokio::test]
async fn responses_websocket_mode_is_relayed() {
    let h = Harness::start().await;
    let mut opened = connect(h.proxy_addr, "/v1/responses", &[])
        .await
        .unwrap_or_else(|r| panic!("handshake refused: {r:?}"));
    let got = echo(
        &mut opened.ws,
        Message::text(r#"{"type":"response.create"}"#),
    )
    .await;
    assert_eq!(got, Message::text(r#"{"type":"response.create"}"#));
    close(&mut opened.ws).await;
    drop(opened);
    assert_eq!(h.secondary.request_count(), 1);
    assert_eq!(h.primary.request_count(), 0);
    h.shutdown().await;
}

/// An upstream reached over HTTP/2 (`http2 = true`, or ALPN picking h2 for https) still gets
/// the handshake over HTTP/1.1: an upgrade does not exist in h2.
#[tokio::test]
async fn a_handshake_to_an_http2_upstream_goes_over_http1() {
    let h = Harness::with_config("[upstreams.secondary]\nhttp2 = true").await;
    // Plain requests to this upstream do speak h2.
    let reply = h.post_json("/v1/conversations", &json!({})).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(h.secondary.requests()[0].version, Version::HTTP_2);
    let mut opened = connect(h.proxy_addr, REALTIME, &[])
        .await
        .unwrap_or_else(|r| panic!("handshake refused: {r:?}"));
    let got = echo(&mut opened.ws, Message::text("over h1")).await;
    assert_eq!(got, Message::text("over h1"));
    close(&mut opened.ws).await;
    drop(opened);
    let seen = h.secondary.requests();
    assert_eq!(seen.len(), 2, "{:?}", summary(&seen));
    assert_eq!(seen[1].version, Version::HTTP_11);
    h.shutdown().await;
}

/// Operator rules decide the class of a handshake like any request: relayed to their upstream.
#[tokio::test]
async fn an_operator_rule_sends_a_handshake_to_the_stateless_upstream() {
    let h = Harness::with_config(
        r#"
        [[rules]]
        name = "realtime-stateless"
        class = "stateless"
        methods = ["GET"]
        path = "/v1/realtime"
        "#,
    )
    .await;
    let mut opened = connect(h.proxy_addr, REALTIME, &[])
        .await
        .unwrap_or_else(|r| panic!("handshake refused: {r:?}"));
    assert_eq!(opened.headers["x-switchyard-rule"], "realtime-stateless");
    assert_eq!(opened.headers["x-mock-provider"], "primary");
    assert_eq!(
        echo(&mut opened.ws, Message::text("hi")).await,
        Message::text("hi")
    );
    close(&mut opened.ws).await;
    drop(opened);
    assert_eq!(h.primary.request_count(), 1);
    assert_eq!(h.secondary.request_count(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn an_upstream_refusing_the_upgrade_is_passed_back_and_counted() {
    let h = Harness::start().await;
    // The mock serves WebSockets on /realtime and /responses only: 400 here.
    let refused = match connect(h.proxy_addr, "/v1/realtime/sessions", &[]).await {
        Err(refused) => refused,
        Ok(_) => panic!("the mock accepted a handshake it does not serve"),
    };
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert_eq!(refused.headers["x-mock-provider"], "secondary");
    assert!(
        refused.body.contains("websocket_refused"),
        "{}",
        refused.body
    );
    // And an error status the upstream chose.
    let refused = match connect(h.proxy_addr, REALTIME, &[("x-mock-status", "403")]).await {
        Err(refused) => refused,
        Ok(_) => panic!("the mock accepted a handshake it was told to refuse"),
    };
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert_eq!(h.secondary.request_count(), 2);
    assert_eq!(h.primary.request_count(), 0);

    let scrape = h.scrape().await;
    let upgrades = metric("switchyard_websocket_upgrades_total").label("upstream", "secondary");
    upgrades
        .clone()
        .label("route", "/v1/realtime/sessions")
        .label("result", "refused")
        .assert_value(&scrape, 1.0);
    upgrades
        .clone()
        .label("route", "/v1/realtime")
        .label("result", "refused")
        .assert_value(&scrape, 1.0);
    upgrades
        .label("result", "ok")
        .assert_absent_or_zero(&scrape);
    metric("switchyard_websocket_sessions_open")
        .label("upstream", "secondary")
        .assert_value(&scrape, 0.0);
    metric("switchyard_requests_in_flight")
        .label("upstream", "secondary")
        .assert_value(&scrape, 0.0);
    h.shutdown().await;
}

#[tokio::test]
async fn an_upstream_that_cannot_be_reached_counts_an_error() {
    let dead = common::dead_addr().await;
    let h = Harness::with_config(&format!(
        "[upstreams.secondary]\nurl = \"http://{dead}/v1\"\n"
    ))
    .await;
    let refused = match connect(h.proxy_addr, REALTIME, &[]).await {
        Err(refused) => refused,
        Ok(_) => panic!("a handshake to a dead upstream succeeded"),
    };
    assert_eq!(refused.status, StatusCode::BAD_GATEWAY, "{}", refused.body);
    let scrape = h.scrape().await;
    metric("switchyard_websocket_upgrades_total")
        .label("route", "/v1/realtime")
        .label("upstream", "secondary")
        .label("result", "error")
        .assert_value(&scrape, 1.0);
    h.shutdown().await;
}

/// `Upgrade` is relayed only on a handshake: a POST carrying it, or a GET on a route that is
/// not a WebSocket route, goes upstream as a plain request without it.
#[tokio::test]
async fn upgrade_on_anything_but_a_handshake_is_not_relayed() {
    let h = Harness::start().await;
    let ws_headers = [
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let body = json!({"model": "m", "input": "hi", "store": false}).to_string();
    let reply = h.post_json_with("/v1/responses", &ws_headers, body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(reply.header("upgrade").is_none());
    assert_eq!(reply.header("x-switchyard-class"), Some("stateless"));
    let seen = h.primary.requests();
    assert_eq!(seen.len(), 1, "primary saw {:?}", summary(&seen));
    assert_eq!(seen[0].method, Method::POST);
    assert!(seen[0].header("upgrade").is_none(), "{:?}", seen[0].headers);
    assert!(
        seen[0].header("connection").is_none(),
        "{:?}",
        seen[0].headers
    );

    h.clear();
    let reply = h
        .client
        .call(Method::GET, "/v1/models", &ws_headers, Bytes::new())
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let seen = h.primary.requests();
    assert_eq!(seen.len(), 1, "primary saw {:?}", summary(&seen));
    assert!(seen[0].header("upgrade").is_none(), "{:?}", seen[0].headers);

    let scrape = h.scrape().await;
    metric("switchyard_websocket_upgrades_total").assert_absent_or_zero(&scrape);
    h.shutdown().await;
}

#[tokio::test]
async fn http2_extended_connect_is_relayed_as_an_http1_upgrade() {
    let h = Harness::start().await;
    let mut opened = connect_h2(h.proxy_addr, REALTIME)
        .await
        .unwrap_or_else(|r| panic!("extended CONNECT refused: {r:?}"));
    assert_eq!(opened.headers["x-switchyard-class"], "stateful");
    assert!(opened.headers.get("sec-websocket-accept").is_none());
    let ws = &mut opened.ws;
    assert_eq!(
        echo(ws, Message::text("over h2")).await,
        Message::text("over h2")
    );
    let large = pattern(1024 * 1024);
    match echo(ws, Message::binary(large.clone())).await {
        Message::Binary(got) => assert!(got == large, "the 1 MiB echo differs"),
        other => panic!("expected the binary echo, got {other:?}"),
    }
    send_fragmented(ws, &["a", "b", "c"]).await;
    assert_eq!(next(ws).await, Message::text("abc"));
    close(ws).await;
    drop(opened);

    // Upstream, it was an HTTP/1.1 handshake with a key the gateway made (and checked).
    let seen = h
        .secondary
        .wait_until(SOON, |reqs| reqs.first().is_some_and(|r| r.finished))
        .await;
    assert_eq!(seen.len(), 1, "secondary saw {:?}", summary(&seen));
    let r = &seen[0];
    assert_eq!(
        (r.method.clone(), r.version),
        (Method::GET, Version::HTTP_11)
    );
    assert_eq!(r.path_and_query, REALTIME);
    assert_eq!(r.header("upgrade"), Some("websocket"));
    assert!(r.header("sec-websocket-key").is_some_and(|k| k.len() == 24));
    assert!(r.completed);

    let open = metric("switchyard_websocket_sessions_open").label("upstream", "secondary");
    let scrape = h.scrape_when(|s| open.sum_in(s) == Some(0.0)).await;
    open.assert_value(&scrape, 0.0);
    metric("switchyard_websocket_upgrades_total")
        .label("upstream", "secondary")
        .label("result", "ok")
        .assert_value(&scrape, 1.0);
    metric("switchyard_requests_total")
        .label("route", "/v1/realtime")
        .label("status", "200")
        .assert_value(&scrape, 1.0);
    h.shutdown().await;
}

/// Only a `:protocol websocket` CONNECT on a WebSocket route passes; any other CONNECT is
/// refused before an upstream is contacted.
#[tokio::test]
async fn other_http2_connects_stay_refused() {
    let h = Harness::start().await;
    let refused = match connect_h2(h.proxy_addr, "/v1/chat/completions").await {
        Err(refused) => refused,
        Ok(_) => panic!("an extended CONNECT on a non-WebSocket route was relayed"),
    };
    assert_eq!(
        refused.status,
        StatusCode::METHOD_NOT_ALLOWED,
        "{}",
        refused.body
    );
    h.assert_no_upstream_contacted("extended CONNECT on /v1/chat/completions");

    let conn = common::H2Connection::connect(h.proxy_addr).await;
    let req = http::Request::builder()
        .method(Method::CONNECT)
        .uri(h.proxy_addr.to_string())
        .body(common::full(Bytes::new()))
        .unwrap();
    let reply = conn.send(req).await;
    assert_eq!(
        reply.status,
        StatusCode::METHOD_NOT_ALLOWED,
        "{}",
        reply.text()
    );
    h.assert_no_upstream_contacted("plain CONNECT");
    h.shutdown().await;
}
