//! Header hygiene in both directions: hop-by-hop removal, host, request ids, credentials,
//! decision headers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{raw_upstream, read_raw_response, Harness};
use http::{Method, StatusCode};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn chat() -> String {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).to_string()
}

#[tokio::test]
async fn request_hop_by_hop_headers_are_stripped_and_host_rewritten() {
    let h = Harness::start().await;
    let reply = h
        .post_json_with(
            "/v1/chat/completions",
            &[
                ("host", "client-facing.example:443"),
                ("connection", "keep-alive, x-secret-hop"),
                ("x-secret-hop", "must not pass"),
                ("keep-alive", "timeout=5"),
                ("te", "trailers"),
                ("proxy-authorization", "Basic dXNlcjpwYXNz"),
                ("proxy-connection", "keep-alive"),
                ("trailer", "x-checksum"),
                ("x-custom-header", "kept"),
                ("openai-organization", "org-1"),
                ("accept", "application/json"),
                ("user-agent", "switchyard-tests/1"),
            ],
            chat(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let got = h.primary.requests();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    for gone in [
        "connection",
        "x-secret-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "proxy-connection",
        "trailer",
        "upgrade",
        "transfer-encoding",
    ] {
        assert!(
            r.headers.get(gone).is_none(),
            "hop-by-hop header {gone} reached the upstream: {:?}",
            r.headers.get(gone)
        );
    }
    assert_eq!(
        r.header("host"),
        Some(h.primary.addr().to_string().as_str()),
        "host is the upstream's authority"
    );
    assert_eq!(r.headers.get_all("host").iter().count(), 1);
    assert_eq!(r.header("x-custom-header"), Some("kept"));
    assert_eq!(r.header("openai-organization"), Some("org-1"));
    assert_eq!(r.header("accept"), Some("application/json"));
    assert_eq!(r.header("user-agent"), Some("switchyard-tests/1"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.body.as_ref(), chat().as_bytes());
    h.shutdown().await;
}

#[tokio::test]
async fn repeated_headers_keep_their_values_and_order() {
    let h = Harness::start().await;
    let reply = h
        .client
        .call(
            Method::GET,
            "/v1/models",
            &[("x-multi", "one"), ("x-multi", "two"), ("x-multi", "three")],
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let r = &h.primary.requests()[0];
    let values: Vec<&str> = r
        .headers
        .get_all("x-multi")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(values, ["one", "two", "three"]);
    h.shutdown().await;
}

#[tokio::test]
async fn request_id_is_kept_or_generated_and_forwarded() {
    let h = Harness::start().await;
    // Kept.
    let reply = h
        .client
        .call(
            Method::GET,
            "/v1/responses/resp_1",
            &[("x-request-id", "client-chosen-id-42")],
            "",
        )
        .await;
    assert_eq!(reply.header("x-request-id"), Some("client-chosen-id-42"));
    assert_eq!(
        h.secondary.requests()[0].header("x-request-id"),
        Some("client-chosen-id-42"),
        "forwarded upstream"
    );
    assert_eq!(
        reply.headers.get_all("x-request-id").iter().count(),
        1,
        "one id on the response"
    );

    // Generated: a fresh uuid per request, the same one upstream and on the response.
    let mut seen = Vec::new();
    for _ in 0..2 {
        h.clear();
        let reply = h.get("/v1/models").await;
        let id = reply.header("x-request-id").unwrap_or_default().to_owned();
        assert!(is_uuid(&id), "generated id is a uuid: {id:?}");
        assert_eq!(
            h.primary.requests()[0].header("x-request-id"),
            Some(id.as_str())
        );
        seen.push(id);
    }
    assert_ne!(seen[0], seen[1], "ids are unique per request");

    // Gateway errors carry the id too, the client's or a fresh one.
    let bad = h
        .post_json_with("/v1/responses", &[("x-request-id", "bad-1")], "{")
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.header("x-request-id"), Some("bad-1"));
    let bad = h
        .client
        .call(Method::GET, "/v1/files/../models", &[], "")
        .await;
    assert!(is_uuid(bad.header("x-request-id").unwrap_or_default()));
    h.shutdown().await;
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

#[tokio::test]
async fn set_headers_replace_client_credentials() {
    let h = Harness::builder()
        .env("TEST_AZURE_KEY", "azure-secret-123")
        .env("TEST_ORG", "org-from-env")
        .config(
            r#"
            [upstreams.primary]
            set_headers = { api-key = "${TEST_AZURE_KEY}", x-org = "${TEST_ORG}" }
            "#,
        )
        .start()
        .await;
    let client_creds = [
        ("content-type", "application/json"),
        ("authorization", "Bearer client-token"),
        ("api-key", "client-api-key"),
        ("x-api-key", "client-x-api-key"),
        ("x-org", "client-org"),
    ];
    let reply = h
        .client
        .call(Method::POST, "/v1/chat/completions", &client_creds, chat())
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let r = &h.primary.requests()[0];
    assert_eq!(
        r.header("api-key"),
        Some("azure-secret-123"),
        "set from ${{ENV}}"
    );
    assert_eq!(
        r.headers.get_all("api-key").iter().count(),
        1,
        "replaced, not added"
    );
    assert_eq!(r.header("authorization"), None, "client credential dropped");
    assert_eq!(r.header("x-api-key"), None, "client credential dropped");
    assert_eq!(r.header("x-org"), Some("org-from-env"));
    assert_eq!(r.headers.get_all("x-org").iter().count(), 1);

    // The secondary sets nothing: the client's credentials pass through untouched.
    let reply = h
        .client
        .call(Method::POST, "/v1/responses", &client_creds, chat())
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let r = &h.secondary.requests()[0];
    assert_eq!(r.header("authorization"), Some("Bearer client-token"));
    assert_eq!(r.header("api-key"), Some("client-api-key"));
    assert_eq!(r.header("x-api-key"), Some("client-x-api-key"));
    assert_eq!(r.header("x-org"), Some("client-org"));
    h.shutdown().await;
}

#[tokio::test]
async fn forward_client_credentials_keeps_other_credentials() {
    let h = Harness::builder()
        .env("TEST_BEDROCK_KEY", "bedrock-key")
        .config(
            r#"
            [upstreams.secondary]
            set_headers = { authorization = "Bearer ${TEST_BEDROCK_KEY}" }
            forward_client_credentials = true
            "#,
        )
        .start()
        .await;
    let reply = h
        .client
        .call(
            Method::GET,
            "/v1/responses/resp_1",
            &[
                ("authorization", "Bearer client"),
                ("x-api-key", "client-x"),
            ],
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let r = &h.secondary.requests()[0];
    assert_eq!(
        r.header("authorization"),
        Some("Bearer bedrock-key"),
        "set_headers wins"
    );
    assert_eq!(r.headers.get_all("authorization").iter().count(), 1);
    assert_eq!(
        r.header("x-api-key"),
        Some("client-x"),
        "forwarded on request"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn decision_headers_are_present_on_every_answer() {
    let h = Harness::start().await;
    let reply = h
        .post_json_with(
            "/v1/responses",
            &[],
            json!({"model": "m", "input": "x", "previous_response_id": "resp_0", "store": false})
                .to_string(),
        )
        .await;
    assert_eq!(reply.header("x-switchyard-class"), Some("stateful"));
    assert_eq!(reply.header("x-switchyard-upstream"), Some("secondary"));
    assert!(reply
        .header("x-switchyard-rule")
        .is_some_and(|r| !r.is_empty()));
    let marker = reply.header("x-switchyard-marker").unwrap_or_default();
    assert!(
        marker.contains("previous_response_id"),
        "marker: {marker:?}"
    );
    // The upstream never sees the gateway's decision headers as request headers.
    let r = &h.secondary.requests()[0];
    assert!(r
        .headers
        .keys()
        .all(|k| !k.as_str().starts_with("x-switchyard-")));
    // The upstream's own headers come back.
    assert_eq!(reply.header("x-mock-provider"), Some("secondary"));
    assert!(reply.header("x-mock-request-id").is_some());
    h.shutdown().await;
}

#[tokio::test]
async fn response_hop_by_hop_headers_are_stripped() {
    let upstream = raw_upstream(
        b"HTTP/1.1 200 OK\r\n\
         content-type: application/json\r\n\
         connection: keep-alive, x-resp-hop\r\n\
         x-resp-hop: secret\r\n\
         keep-alive: timeout=5, max=100\r\n\
         proxy-authenticate: Basic realm=\"x\"\r\n\
         proxy-connection: keep-alive\r\n\
         upgrade: h2c\r\n\
         x-upstream-custom: kept\r\n\
         content-length: 11\r\n\
         \r\n\
         {\"ok\":true}",
        false,
    )
    .await;
    let h = Harness::with_config(&format!(
        "[upstreams.primary]\nurl = \"http://{upstream}/v1\"\n"
    ))
    .await;
    let reply = h.get("/v1/models").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body.as_ref(), b"{\"ok\":true}");
    for gone in [
        "x-resp-hop",
        "keep-alive",
        "proxy-authenticate",
        "proxy-connection",
        "upgrade",
    ] {
        assert!(
            reply.headers.get(gone).is_none(),
            "hop-by-hop response header {gone} reached the client: {:?}",
            reply.headers.get(gone)
        );
    }
    assert!(
        reply
            .headers
            .get_all("connection")
            .iter()
            .all(|v| !v.to_str().unwrap_or("").contains("x-resp-hop")),
        "the upstream's connection header is not relayed"
    );
    assert_eq!(reply.header("x-upstream-custom"), Some("kept"));
    assert_eq!(reply.header("x-switchyard-upstream"), Some("primary"));
    // A second request on the same client still works (the connection was not poisoned).
    let again = h.get("/v1/models").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(h.secondary.request_count(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn expect_100_continue_is_answered_by_the_gateway() {
    let h = Harness::start().await;
    for (path, mock) in [("/v1/responses", "secondary"), ("/v1/files", "secondary")] {
        h.clear();
        let body = json!({"model": "m", "input": "x"}).to_string();
        let mut stream = TcpStream::connect(h.proxy_addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nexpect: 100-continue\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let interim = read_raw_response(&mut stream)
            .await
            .unwrap_or_else(|| panic!("{path}: no 100 Continue before the body was sent"));
        assert_eq!(interim.status(), 100, "{path}: {}", interim.head);
        stream.write_all(body.as_bytes()).await.unwrap();
        let resp = read_raw_response(&mut stream)
            .await
            .unwrap_or_else(|| panic!("{path}: no final response"));
        assert_eq!(resp.status(), 200, "{path}: {}", resp.head);
        assert_eq!(resp.header("x-mock-provider"), Some(mock));
        let r = &h.mock(mock).requests()[0];
        assert_eq!(r.body.as_ref(), body.as_bytes(), "{path}");
        assert_eq!(
            r.header("expect"),
            None,
            "{path}: expect is the gateway's to answer"
        );
        assert_eq!(h.primary.request_count(), 0);
    }
    h.shutdown().await;
}

#[tokio::test]
async fn head_requests_pass_through() {
    let h = Harness::start().await;
    let reply = h.client.call(Method::HEAD, "/v1/models", &[], "").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.is_empty());
    assert_eq!(reply.header("x-mock-provider"), Some("primary"));
    assert_eq!(h.primary.requests()[0].method, Method::HEAD);
    // The connection is still usable afterwards.
    let again = h.get("/v1/models").await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(!again.body.is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn upstream_request_id_does_not_replace_the_gateways() {
    // Real providers answer with their own `x-request-id` (OpenAI: `req_…`); the client must
    // still see its own id, or the gateway's, which is the one in the access log.
    let upstream = raw_upstream(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
          x-request-id: req_from_provider\r\ncontent-length: 2\r\n\r\n{}",
        false,
    )
    .await;
    let h = Harness::with_config(&format!(
        "[upstreams.primary]\nurl = \"http://{upstream}/v1\"\n"
    ))
    .await;
    let reply = h
        .client
        .call(
            Method::GET,
            "/v1/models",
            &[("x-request-id", "client-7")],
            "",
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let ids: Vec<&str> = reply
        .headers
        .get_all("x-request-id")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["client-7"],
        "the client's id comes back, not the provider's"
    );
    assert_eq!(
        reply.header("x-upstream-request-id"),
        Some("req_from_provider"),
        "the provider's own id is kept under another name"
    );

    let reply = h.get("/v1/models").await;
    let id = reply.header("x-request-id").unwrap_or_default();
    assert!(
        is_uuid(id),
        "the gateway's generated id comes back, got {id:?}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn upstream_cannot_speak_for_the_gateway() {
    // An upstream's own x-switchyard-* headers never reach the client: replaced by the real
    // decision, or removed when decision headers are off.
    let upstream = raw_upstream(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
          x-switchyard-class: stateful\r\nx-switchyard-upstream: secondary\r\n\
          x-switchyard-rule: forged\r\nx-switchyard-marker: forged\r\ncontent-length: 2\r\n\r\n{}",
        false,
    )
    .await;
    for (decision_headers, want_class) in [(true, Some("stateless")), (false, None)] {
        let h = Harness::with_config(&format!(
            "[server]\ndecision_headers = {decision_headers}\n[upstreams.primary]\nurl = \"http://{upstream}/v1\"\n"
        ))
        .await;
        let reply = h.get("/v1/models").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("x-switchyard-class"), want_class);
        assert_ne!(reply.header("x-switchyard-rule"), Some("forged"));
        assert_ne!(reply.header("x-switchyard-marker"), Some("forged"));
        if !decision_headers {
            assert_eq!(reply.header("x-switchyard-upstream"), None);
        }
        h.shutdown().await;
    }
}

#[tokio::test]
async fn an_absolute_form_request_target_is_refused() {
    // Only a forward proxy takes `GET http://host/…`; the gateway is not one (issue #7).
    let h = Harness::start().await;
    let mut stream = TcpStream::connect(h.proxy_addr).await.unwrap();
    stream
        .write_all(
            b"GET http://elsewhere.example:8080/v1/models?x=1 HTTP/1.1\r\n\
              host: elsewhere.example:8080\r\n\r\n",
        )
        .await
        .unwrap();
    let resp = read_raw_response(&mut stream).await.unwrap();
    assert_eq!(resp.status(), 400, "{}", resp.head);
    h.assert_no_upstream_contacted("absolute-form target");
    h.shutdown().await;
}
