//! The shadow policy (`[shadow]`, issue #6): a second rule set evaluated on every request and
//! never enforced. Its disagreements with the enforced rules are counted by label and logged
//! with the request id; requests still go where the enforced rules send them, byte for byte.
//!
//! Every test runs on a current-thread runtime with a thread-local `tracing` subscriber that
//! captures `switchyard::shadow` (worker threads log where the thread that started them does).
//! Every test installs one, not only those that read it: `tracing` caches whether a log
//! statement is wanted when it first runs, and when only one subscriber is registered it asks
//! only the current thread's. A gateway of a test without a subscriber could then switch the
//! shadow log line off for the whole test binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::logs::Captured;
use common::{chunked, metric, Harness, Reply, SOON};
use http::{Method, StatusCode};
use serde_json::{json, Value};

/// Shadow rules that try two changes: requests with an `x-tenant-session` header become
/// stateful, and `store: true` no longer makes a chat completion stateful.
const TENANT_SHADOW: &str = r#"
[shadow]
disable = ["chat.store"]

[[shadow.rules]]
name = "tenant-session"
class = "stateful"
header_present = ["x-tenant-session"]
"#;

const DISAGREEMENTS: &str = "switchyard_shadow_disagreements_total";
const EVALUATIONS: &str = "switchyard_shadow_evaluations_total";
/// The log filter every test installs (see the module comment).
const SHADOW_LOG: &str = "switchyard::shadow=info";

/// The captured `switchyard::shadow` lines.
fn shadow_lines(log: &Captured) -> Vec<Value> {
    log.all_lines()
        .into_iter()
        .filter(|l| l["target"] == "switchyard::shadow")
        .collect()
}

fn chat(extra: Value) -> String {
    let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body.to_string()
}

/// One request of the mix, and where the enforced rules must send it.
struct Case {
    what: &'static str,
    method: Method,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: String,
    /// `Some(class)` for a request forwarded to that class's upstream; `None` for a refusal.
    enforced: Option<&'static str>,
}

fn case(
    what: &'static str,
    method: Method,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: String,
    enforced: Option<&'static str>,
) -> Case {
    Case {
        what,
        method,
        path,
        headers,
        body,
        enforced,
    }
}

async fn send(h: &Harness, c: &Case) -> Reply {
    let mut headers = vec![("content-type", "application/json")];
    headers.extend_from_slice(c.headers);
    h.client
        .call(c.method.clone(), c.path, &headers, c.body.clone())
        .await
}

#[tokio::test]
async fn shadow_disagreements_match_a_known_set_of_requests() {
    let log = Captured::default();
    let _guard = log.install_with(SHADOW_LOG);
    let h = Harness::with_config(TENANT_SHADOW).await;
    const TENANT: &[(&str, &str)] = &[("x-tenant-session", "t-1")];
    let post = || Method::POST;
    let mut cases = Vec::new();
    // Agree (8): both rule sets pick the same class, or both refuse.
    for _ in 0..3 {
        cases.push(case(
            "plain chat",
            post(),
            "/v1/chat/completions",
            &[],
            chat(json!({})),
            Some("stateless"),
        ));
    }
    cases.push(case(
        "stored response read",
        Method::GET,
        "/v1/responses/resp_1",
        &[],
        String::new(),
        Some("stateful"),
    ));
    cases.push(case(
        "embeddings",
        post(),
        "/v1/embeddings",
        &[],
        json!({"model": "m", "input": "x"}).to_string(),
        Some("stateless"),
    ));
    cases.push(case(
        "stateful response with the tenant header",
        post(),
        "/v1/responses",
        TENANT,
        json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}).to_string(),
        Some("stateful"),
    ));
    cases.push(case(
        "unstored response",
        post(),
        "/v1/responses",
        &[],
        json!({"model": "m", "input": "x", "store": false}).to_string(),
        Some("stateless"),
    ));
    cases.push(case(
        "unreadable body",
        post(),
        "/v1/responses",
        &[],
        "{not json".to_owned(),
        None,
    ));
    // Disagree (5): the shadow's tenant rule makes these stateful.
    for _ in 0..3 {
        cases.push(case(
            "chat with the tenant header",
            post(),
            "/v1/chat/completions",
            TENANT,
            chat(json!({})),
            Some("stateless"),
        ));
    }
    cases.push(case(
        "embeddings with the tenant header",
        post(),
        "/v1/embeddings",
        TENANT,
        json!({"model": "m", "input": "x"}).to_string(),
        Some("stateless"),
    ));
    cases.push(case(
        "models with the tenant header",
        Method::GET,
        "/v1/models",
        TENANT,
        String::new(),
        Some("stateless"),
    ));
    // Disagree (3): with chat.store off, the shadow sends stored chat completions stateless.
    for _ in 0..3 {
        cases.push(case(
            "stored chat",
            post(),
            "/v1/chat/completions",
            &[],
            chat(json!({"store": true})),
            Some("stateful"),
        ));
    }

    for c in &cases {
        let reply = send(&h, c).await;
        match c.enforced {
            Some(class) => {
                assert_eq!(reply.status, StatusCode::OK, "{}: {}", c.what, reply.text());
                assert_eq!(
                    reply.header("x-switchyard-class"),
                    Some(class),
                    "{}",
                    c.what
                );
                let upstream = if class == "stateless" {
                    "primary"
                } else {
                    "secondary"
                };
                assert_eq!(
                    reply.header("x-mock-provider"),
                    Some(upstream),
                    "{}",
                    c.what
                );
            }
            None => {
                assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", c.what);
                assert_eq!(reply.error_code(), "invalid_json", "{}", c.what);
            }
        }
    }
    let forwarded = |class| cases.iter().filter(|c| c.enforced == Some(class)).count();
    assert_eq!(h.primary.request_count(), forwarded("stateless"));
    assert_eq!(h.secondary.request_count(), forwarded("stateful"));
    assert_eq!((forwarded("stateless"), forwarded("stateful")), (10, 5));

    let scrape = h.scrape().await;
    metric(EVALUATIONS).assert_value(&scrape, cases.len() as f64);
    metric(DISAGREEMENTS)
        .label("enforced", "stateless")
        .label("shadow", "stateful")
        .label("rule", "tenant-session")
        .assert_value(&scrape, 5.0);
    metric(DISAGREEMENTS)
        .label("enforced", "stateful")
        .label("shadow", "stateless")
        .label("rule", "chat.stateless")
        .assert_value(&scrape, 3.0);
    // Nothing else: the two label sets above are every disagreement.
    metric(DISAGREEMENTS).assert_value(&scrape, 8.0);
    assert_eq!(
        metric(DISAGREEMENTS).find(&scrape).len(),
        2,
        "{}",
        metric(DISAGREEMENTS).similar(&scrape)
    );
    // One log line per disagreement.
    let found = common::eventually(SOON, || async { shadow_lines(&log).len() >= 8 }).await;
    let lines = shadow_lines(&log);
    assert!(found && lines.len() == 8, "8 shadow lines: {lines:#?}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_shadow_rule_that_needs_the_body_does_not_change_what_is_forwarded() {
    let log = Captured::default();
    let _guard = log.install_with(SHADOW_LOG);
    // The enforced rules decide /v1/embeddings from the path; the shadow rule reads the body.
    let h = Harness::with_config(
        r#"
        [shadow]
        builtins = false
        [[shadow.rules]]
        name = "session-metadata"
        class = "stateful"
        methods = ["POST"]
        body_present = ["/metadata/session"]
        "#,
    )
    .await;
    let with_marker: &[&[u8]] = &[
        b"{\"model\": \"m\",\n  \"input\": \"caf\xc3\xa9 ",
        b"\\u00e9\",  \"metadata\": {\"ses",
        b"sion\": \"s-1\"}  }\n",
    ];
    let big_input = "x".repeat(200 * 1024);
    let big = format!(r#"{{"model":"m","input":"{big_input}","metadata":{{"session":"s-2"}}}}"#);
    let big_frames: Vec<&[u8]> = big.as_bytes().chunks(16 * 1024).collect();
    let without_marker: &[&[u8]] = &[
        b"{\"model\":\"m\",",
        b"\"input\":\"no session\",\"metadata\":{\"user\":\"u\"}}",
    ];
    let bodies: [(&str, &[&[u8]], bool); 3] = [
        ("marker, odd spacing and escapes", with_marker, true),
        ("a 200 KiB body with the marker", &big_frames, true),
        ("no marker", without_marker, false),
    ];

    let mut disagreements = 0.0;
    for (i, (what, frames, marked)) in bodies.iter().enumerate() {
        let sent: Vec<u8> = frames.concat();
        let req = h
            .client
            .request(Method::POST, "/v1/embeddings")
            .header("content-type", "application/json")
            .body(chunked(
                frames.iter().map(|f| Bytes::copy_from_slice(f)).collect(),
            ))
            .unwrap();
        let reply = h.client.send(req).await;
        assert_eq!(reply.status, StatusCode::OK, "{what}: {}", reply.text());
        assert_eq!(
            reply.header("x-switchyard-class"),
            Some("stateless"),
            "{what}"
        );
        assert_eq!(
            reply.header("x-switchyard-rule"),
            Some("stateless.endpoints"),
            "{what}"
        );
        let reqs = h
            .primary
            .wait_until(SOON, |r| r.len() > i && r[i].body_complete)
            .await;
        assert!(
            reqs.len() > i && reqs[i].body_complete,
            "{what}: the body reached the upstream"
        );
        assert!(
            reqs[i].body == sent[..],
            "{what}: the upstream received other bytes ({} sent, {} received)",
            sent.len(),
            reqs[i].body.len()
        );

        if *marked {
            disagreements += 1.0;
        }
        let scrape = h.scrape().await;
        metric(EVALUATIONS).assert_value(&scrape, (i + 1) as f64);
        metric(DISAGREEMENTS)
            .label("enforced", "stateless")
            .label("shadow", "stateful")
            .label("rule", "session-metadata")
            .assert_value(&scrape, disagreements);
        metric(DISAGREEMENTS).assert_value(&scrape, disagreements);
    }

    // A body the shadow cannot read: it would refuse the request, the enforced rules (which
    // never look at the body here) forward it as it is.
    let garbage: &[u8] = b"{\"model\": \"m\", \"input\": ";
    let req = h
        .client
        .request(Method::POST, "/v1/embeddings")
        .header("content-type", "application/json")
        .body(chunked(vec![Bytes::from_static(garbage)]))
        .unwrap();
    let reply = h.client.send(req).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reqs = h
        .primary
        .wait_until(SOON, |r| r.len() == 4 && r[3].body_complete)
        .await;
    assert!(reqs.len() == 4 && reqs[3].body == garbage, "{reqs:?}");
    let scrape = h.scrape().await;
    metric(EVALUATIONS).assert_value(&scrape, 4.0);
    metric(DISAGREEMENTS)
        .label("enforced", "stateless")
        .label("shadow", "rejected")
        .label("rule", "invalid_json")
        .assert_value(&scrape, 1.0);
    metric(DISAGREEMENTS).assert_value(&scrape, disagreements + 1.0);

    assert_eq!(
        h.secondary.request_count(),
        0,
        "nothing crossed to the shadow's class"
    );
    let found = common::eventually(SOON, || async { shadow_lines(&log).len() >= 3 }).await;
    let lines = shadow_lines(&log);
    assert!(
        found && lines.len() == 3,
        "one line per disagreement: {lines:#?}"
    );
    for line in &lines[..2] {
        assert_eq!(line["shadow"], "stateful", "{line}");
        assert_eq!(line["shadow_rule"], "session-metadata", "{line}");
        assert_eq!(line["shadow_marker"], "body:/metadata/session", "{line}");
    }
    assert_eq!(lines[2]["shadow"], "rejected", "{}", lines[2]);
    assert_eq!(lines[2]["shadow_rule"], "invalid_json", "{}", lines[2]);
    h.shutdown().await;
}

#[tokio::test]
async fn a_shadow_disagreement_is_logged_with_the_request_id() {
    let log = Captured::default();
    let _guard = log.install_with(SHADOW_LOG);
    let h = Harness::with_config(TENANT_SHADOW).await;
    let shadow_lines = || shadow_lines(&log);

    // The client's request id, on a request the shadow would send elsewhere.
    let reply = h
        .post_json_with(
            "/v1/chat/completions",
            &[
                ("x-request-id", "shadow-log-1"),
                ("x-tenant-session", "t-1"),
            ],
            chat(json!({})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    // One the two agree on: not logged.
    h.post_json_with(
        "/v1/chat/completions",
        &[("x-request-id", "shadow-log-agree")],
        chat(json!({})),
    )
    .await;
    // The gateway's own request id, on a disagreement the other way.
    let generated = h
        .post_json_with("/v1/chat/completions", &[], chat(json!({"store": true})))
        .await;
    let generated_id = generated.header("x-request-id").unwrap().to_owned();

    let found = common::eventually(SOON, || async { shadow_lines().len() >= 2 }).await;
    let lines = shadow_lines();
    assert!(found, "two shadow lines: {lines:#?}");
    assert_eq!(
        lines.len(),
        2,
        "one line per disagreement, none for agreement: {lines:#?}"
    );
    let first = &lines[0];
    assert_eq!(first["message"], "shadow policy disagrees", "{first}");
    assert_eq!(first["level"], "INFO", "{first}");
    assert_eq!(first["request_id"], "shadow-log-1", "{first}");
    assert_eq!(first["enforced"], "stateless", "{first}");
    assert_eq!(first["shadow"], "stateful", "{first}");
    assert_eq!(first["shadow_rule"], "tenant-session", "{first}");
    assert_eq!(first["shadow_marker"], "header:x-tenant-session", "{first}");
    let second = &lines[1];
    assert_eq!(second["request_id"], generated_id.as_str(), "{second}");
    assert_eq!(second["enforced"], "stateful", "{second}");
    assert_eq!(second["shadow"], "stateless", "{second}");
    assert_eq!(second["shadow_rule"], "chat.stateless", "{second}");
    assert_eq!(second["shadow_marker"], "body:/store", "{second}");
    h.shutdown().await;
}

#[tokio::test]
async fn without_shadow_nothing_is_evaluated() {
    let log = Captured::default();
    let _guard = log.install_with(SHADOW_LOG);
    let h = Harness::start().await;
    let requests = [
        ("/v1/chat/completions", chat(json!({})), "primary"),
        (
            "/v1/chat/completions",
            chat(json!({"store": true})),
            "secondary",
        ),
        (
            "/v1/embeddings",
            json!({"model": "m", "input": "x"}).to_string(),
            "primary",
        ),
    ];
    for (path, body, upstream) in requests {
        let reply = h
            .post_json_with(path, &[("x-tenant-session", "t-1")], body)
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("x-mock-provider"), Some(upstream), "{path}");
    }
    let scrape = h.scrape().await;
    metric(EVALUATIONS).assert_value(&scrape, 0.0);
    metric(DISAGREEMENTS).assert_absent_or_zero(&scrape);
    let logged = shadow_lines(&log);
    assert!(logged.is_empty(), "{logged:#?}");
    h.shutdown().await;
}
