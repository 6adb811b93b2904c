//! The admin listener: exact counters after a known mix of traffic, bounded labels, and the
//! health endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use common::{metric, Harness, Scrape};
use http::{Method, StatusCode};
use serde_json::json;

const CHAT: &str = "/v1/chat/completions";
const RESPONSES: &str = "/v1/responses";
const RESPONSE_ID: &str = "/v1/responses/{id}";

fn total(s: &Scrape, name: &str) -> f64 {
    metric(name).sum_in(s).unwrap_or(0.0)
}

#[tokio::test]
async fn counters_after_a_known_mix_of_traffic() {
    let mut h = Harness::with_config(
        r#"
        [limits]
        max_body_bytes = "1 KiB"
        [upstreams.secondary]
        pool_max_idle_per_host = 0
        "#,
    )
    .await;
    // (class, rule) of every decision, as the gateway announced it.
    let mut decisions: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut note = |reply: &common::Reply| {
        let class = reply.header("x-switchyard-class").unwrap().to_owned();
        let rule = reply.header("x-switchyard-rule").unwrap().to_owned();
        *decisions.entry((class, rule)).or_default() += 1.0;
    };

    // 3 stateless chat completions.
    let mut chat_request_bytes = 0usize;
    let mut chat_response_bytes = 0usize;
    for i in 0..3 {
        let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": format!("hello {i}")}]})
            .to_string();
        chat_request_bytes += body.len();
        let reply = h.post_json_with(CHAT, &[], body).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("x-switchyard-class"), Some("stateless"));
        chat_response_bytes += reply.body.len();
        note(&reply);
    }
    // 2 stateful Responses calls: a stored create and a retrieve by id.
    let create = json!({"model": "gpt-4o", "input": "hi"}).to_string();
    let reply = h.post_json_with(RESPONSES, &[], create.clone()).await;
    assert_eq!(reply.header("x-switchyard-class"), Some("stateful"));
    let responses_response_bytes = reply.body.len();
    note(&reply);
    let reply = h.get("/v1/responses/resp_abc").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-switchyard-class"), Some("stateful"));
    note(&reply);

    // One 413, refused before routing.
    let reply = h
        .post_json_with(CHAT, &[], Bytes::from(vec![b' '; 2048]))
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);

    // One body that cannot be classified, and one ambiguous path: both 400, never routed.
    let reply = h.post_json_with(RESPONSES, &[], "{oops").await;
    assert_eq!(reply.error_code(), "invalid_json");
    let reply = h
        .client
        .call(Method::GET, "/v1/files/../responses/resp_abc", &[], "")
        .await;
    assert_eq!(reply.error_code(), "ambiguous_path");

    // One 502: the stateful upstream goes away.
    h.stop_upstream("secondary").await;
    let reply = h.get("/v1/responses/resp_gone").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    assert_eq!(reply.error_code(), "upstream_unavailable");
    note(&reply);

    let s = h
        .scrape_when(|s| {
            total(s, "switchyard_requests_total") == 9.0
                && total(s, "switchyard_requests_in_flight") == 0.0
        })
        .await;

    // switchyard_requests_total, by route template, class, upstream and status.
    let requests = |route: &str, class: &str, upstream: &str, status: &str| {
        metric("switchyard_requests_total")
            .label("route", route)
            .label("class", class)
            .label("upstream", upstream)
            .label("status", status)
    };
    requests(CHAT, "stateless", "primary", "200").assert_value(&s, 3.0);
    requests(RESPONSES, "stateful", "secondary", "200").assert_value(&s, 1.0);
    requests(RESPONSE_ID, "stateful", "secondary", "200").assert_value(&s, 1.0);
    requests(RESPONSE_ID, "stateful", "secondary", "502").assert_value(&s, 1.0);
    requests(CHAT, "none", "none", "413").assert_value(&s, 1.0);
    requests(RESPONSES, "none", "none", "400").assert_value(&s, 1.0);
    requests("other", "none", "none", "400").assert_value(&s, 1.0);
    metric("switchyard_requests_total").assert_value(&s, 9.0);
    metric("switchyard_requests_total")
        .label("upstream", "primary")
        .assert_value(&s, 3.0);
    for sample in s.named("switchyard_requests_total") {
        let route = &sample.labels["route"];
        assert!(
            !route.contains("resp_"),
            "route labels are templates, not raw paths: {}",
            sample.line
        );
    }

    // switchyard_decisions_total: one per routed request, by the rule that decided.
    metric("switchyard_decisions_total").assert_value(&s, 6.0);
    metric("switchyard_decisions_total")
        .label("class", "stateless")
        .assert_value(&s, 3.0);
    metric("switchyard_decisions_total")
        .label("class", "stateful")
        .assert_value(&s, 3.0);
    for (class, rule, n) in [
        ("stateless", "chat.stateless", 3.0),
        ("stateful", "responses.store", 1.0),
        ("stateful", "responses.stored_object", 2.0),
    ] {
        metric("switchyard_decisions_total")
            .label("class", class)
            .label("rule", rule)
            .assert_value(&s, n);
    }
    // The response headers told the same story.
    assert_eq!(decisions.values().sum::<f64>(), 6.0);
    for ((class, rule), n) in &decisions {
        metric("switchyard_decisions_total")
            .label("class", class)
            .label("rule", rule)
            .assert_value(&s, *n);
    }

    // switchyard_rejections_total, by reason; every reason is exported from the start.
    metric("switchyard_rejections_total")
        .label("reason", "body_too_large")
        .assert_value(&s, 1.0);
    metric("switchyard_rejections_total")
        .label("reason", "upstream_unavailable")
        .assert_value(&s, 1.0);
    metric("switchyard_rejections_total")
        .label("reason", "unclassifiable")
        .assert_value(&s, 1.0);
    metric("switchyard_rejections_total")
        .label("reason", "ambiguous_path")
        .assert_value(&s, 1.0);
    metric("switchyard_rejections_total").assert_value(&s, 4.0);
    for reason in ["client_body", "timeout", "upstream_protocol"] {
        metric("switchyard_rejections_total")
            .label("reason", reason)
            .assert_value(&s, 0.0);
    }

    // switchyard_upstream_errors_total.
    metric("switchyard_upstream_errors_total")
        .label("upstream", "secondary")
        .label("kind", "connect")
        .assert_value(&s, 1.0);
    metric("switchyard_upstream_errors_total").assert_value(&s, 1.0);
    metric("switchyard_upstream_errors_total")
        .label("upstream", "primary")
        .label("kind", "idle_timeout")
        .assert_value(&s, 0.0);

    // Bytes: exactly what went through.
    metric("switchyard_request_bytes_total")
        .label("route", CHAT)
        .label("upstream", "primary")
        .assert_value(&s, chat_request_bytes as f64);
    metric("switchyard_request_bytes_total")
        .label("route", RESPONSES)
        .label("upstream", "secondary")
        .assert_value(&s, create.len() as f64);
    metric("switchyard_response_bytes_total")
        .label("route", CHAT)
        .label("upstream", "primary")
        .assert_value(&s, chat_response_bytes as f64);
    metric("switchyard_response_bytes_total")
        .label("route", RESPONSES)
        .label("upstream", "secondary")
        .assert_value(&s, responses_response_bytes as f64);
    metric("switchyard_response_bytes_total")
        .label("route", RESPONSE_ID)
        .assert_above(&s, 0.0);

    // Nothing in flight.
    for up in ["primary", "secondary"] {
        metric("switchyard_requests_in_flight")
            .label("upstream", up)
            .assert_value(&s, 0.0);
    }

    // Histograms: one observation per finished request.
    let duration = |route: &str, class: &str, upstream: &str| {
        metric("switchyard_request_duration_seconds_count")
            .label("route", route)
            .label("class", class)
            .label("upstream", upstream)
    };
    duration(CHAT, "stateless", "primary").assert_value(&s, 3.0);
    duration(RESPONSES, "stateful", "secondary").assert_value(&s, 1.0);
    duration(RESPONSE_ID, "stateful", "secondary").assert_value(&s, 2.0);
    duration(CHAT, "none", "none").assert_value(&s, 1.0);
    duration(RESPONSES, "none", "none").assert_value(&s, 1.0);
    metric("switchyard_request_duration_seconds_bucket")
        .label("route", CHAT)
        .label("class", "stateless")
        .label("le", "+Inf")
        .assert_value(&s, 3.0);
    metric("switchyard_request_duration_seconds_sum")
        .label("route", CHAT)
        .label("class", "stateless")
        .assert_above(&s, 0.0);
    let first_byte = |route: &str, upstream: &str| {
        metric("switchyard_upstream_first_byte_seconds_count")
            .label("route", route)
            .label("upstream", upstream)
    };
    first_byte(CHAT, "primary").assert_value(&s, 3.0);
    first_byte(RESPONSES, "secondary").assert_value(&s, 1.0);
    first_byte(RESPONSE_ID, "secondary").assert_value(
        &s, 1.0, // the 502 never got a first byte
    );

    metric("switchyard_build_info")
        .label("version", env!("CARGO_PKG_VERSION"))
        .assert_value(&s, 1.0);
    h.shutdown().await;
}

#[tokio::test]
async fn route_labels_stay_bounded_for_unknown_paths() {
    let h = Harness::start().await;
    let mut paths = Vec::new();
    for i in 0..50 {
        let id = uuid::Uuid::new_v4().simple().to_string();
        paths.push(match i % 5 {
            0 => format!("/v1/unknown-{id}"),
            1 => format!("/v1/{id}/deeper/{i}"),
            2 => format!("/{id}"),
            3 => format!("/api/{id}/x?q={id}"),
            _ => format!("/v2/chat/completions/{id}"),
        });
    }
    for p in &paths {
        let reply = h.client.call(Method::GET, p, &[], "").await;
        assert_eq!(reply.header("x-mock-provider"), Some("primary"), "{p}");
        assert_eq!(reply.header("x-switchyard-class"), Some("stateless"), "{p}");
    }
    let s = h
        .scrape_when(|s| total(s, "switchyard_requests_total") == 50.0)
        .await;
    let routes: BTreeSet<&str> = s
        .named("switchyard_requests_total")
        .map(|x| x.labels["route"].as_str())
        .collect();
    assert_eq!(
        routes,
        BTreeSet::from(["other"]),
        "unknown paths share one route label\n{}",
        metric("switchyard_requests_total").similar(&s)
    );
    metric("switchyard_requests_total")
        .label("route", "other")
        .label("class", "stateless")
        .label("upstream", "primary")
        .label("status", "200")
        .assert_value(&s, 50.0);
    for name in [
        "switchyard_request_bytes_total",
        "switchyard_response_bytes_total",
        "switchyard_request_duration_seconds_count",
        "switchyard_upstream_first_byte_seconds_count",
    ] {
        let labels: BTreeSet<&str> = s.named(name).map(|x| x.labels["route"].as_str()).collect();
        assert_eq!(labels, BTreeSet::from(["other"]), "{name}");
    }
    // Templated prefixes stay bounded too: every Azure deployment shares one label.
    for i in 0..10 {
        let path = format!("/openai/deployments/deployment-{i}/embeddings?api-version=2024-10-21");
        let reply = h.client.call(Method::POST, &path, &[], "{}").await;
        assert_eq!(reply.header("x-mock-provider"), Some("primary"));
    }
    let s = h
        .scrape_when(|s| total(s, "switchyard_requests_total") == 60.0)
        .await;
    metric("switchyard_requests_total")
        .label("route", "/openai/deployments/{deployment}/embeddings")
        .label("status", "200")
        .assert_value(&s, 10.0);
    let routes: BTreeSet<&str> = s
        .named("switchyard_requests_total")
        .map(|x| x.labels["route"].as_str())
        .collect();
    assert_eq!(routes.len(), 2, "{routes:?}");

    let rules: BTreeSet<&str> = s
        .named("switchyard_decisions_total")
        .filter(|x| x.labels["rule"] != "stateless.endpoints")
        .map(|x| x.labels["rule"].as_str())
        .collect();
    assert_eq!(
        rules,
        BTreeSet::from(["default"]),
        "one rule decides unknown paths"
    );
    assert!(
        s.samples.len() < 400,
        "the exposition stays small: {} samples",
        s.samples.len()
    );
    h.shutdown().await;
}

#[tokio::test]
async fn health_and_readiness_endpoints() {
    let h = Harness::start().await;
    let health = h.admin_get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = h.admin_get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK, "ready while serving");
    let metrics = h.admin_get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("text/plain")),
        "{:?}",
        metrics.header("content-type")
    );
    let s = Scrape::parse(&metrics.text());
    metric("switchyard_build_info").assert_value(&s, 1.0);
    for reason in ["body_too_large", "unclassifiable", "upstream_unavailable"] {
        metric("switchyard_rejections_total")
            .label("reason", reason)
            .assert_value(&s, 0.0);
    }
    for up in ["primary", "secondary"] {
        metric("switchyard_requests_in_flight")
            .label("upstream", up)
            .assert_value(&s, 0.0);
    }
    let missing = h.admin_get("/nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    // The admin listener is not the proxy: nothing reached an upstream.
    h.assert_no_upstream_contacted("admin requests");
    h.shutdown().await;
}

#[test]
fn the_matcher_parses_labels_escapes_and_special_values() {
    let s = Scrape::parse(
        "# HELP x y\n# TYPE x counter\nx{a=\"1\",b=\"q\\\"uote\"} 3\nx{a=\"2\"} 4\ny 1.5\nh_bucket{le=\"+Inf\"} 2\n",
    );
    assert_eq!(metric("x").sum_in(&s), Some(7.0));
    assert_eq!(metric("x").label("a", 1).sum_in(&s), Some(3.0));
    assert_eq!(metric("x").label("b", "q\"uote").sum_in(&s), Some(3.0));
    assert_eq!(metric("y").sum_in(&s), Some(1.5));
    assert_eq!(metric("h_bucket").label("le", "+Inf").sum_in(&s), Some(2.0));
    assert_eq!(metric("x").label("a", 3).sum_in(&s), None);
    let missing = std::panic::catch_unwind(|| metric("x").label("a", 1).assert_value(&s, 4.0));
    assert!(missing.is_err(), "a wrong value fails the assertion");
}
