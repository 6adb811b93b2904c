//! Endpoint pools (issue #4): balancing within an upstream (p2c, round robin, weights),
//! passive ejection and its end, active health checks, no usable endpoint, and retries that
//! stay inside the upstream that the policy chose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::pool::{value, PoolHarness, PRIMARY, SECONDARY};
use common::{metric, Reply, SOON};
use http::StatusCode;
use serde_json::json;

fn chat() -> serde_json::Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
}

fn new_response() -> serde_json::Value {
    json!({"model": "m", "input": "hi"})
}

async fn chat_ok(h: &PoolHarness) -> Reply {
    let reply = h.post_json("/v1/chat/completions", &chat()).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "stateless chat completion: {}",
        reply.text()
    );
    assert_eq!(reply.header("x-switchyard-upstream"), Some(PRIMARY));
    reply
}

/// Send `n` stateless chat completions one after another; each must succeed.
async fn chats(h: &PoolHarness, n: usize) {
    for _ in 0..n {
        chat_ok(h).await;
    }
}

fn retries(scrape: &common::Scrape, upstream: &str, reason: &str) -> f64 {
    value(
        scrape,
        &metric("switchyard_retries_total")
            .label("upstream", upstream)
            .label("reason", reason),
    )
}

// ---------------------------------------------------------------------------------------
// 1. Balancing
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn p2c_spreads_stateless_traffic_over_the_stateless_pool_only() {
    let h = PoolHarness::builder()
        .stateless(3)
        .stateful(2)
        .config("[upstreams.primary]\nbalance = \"p2c\"")
        .start()
        .await;
    chats(&h, 300).await;
    let counts = h.counts(PRIMARY);
    assert_eq!(counts.iter().sum::<usize>(), 300, "{counts:?}");
    assert!(
        counts.iter().all(|&c| c >= 50),
        "every endpoint gets a fair share of 300 requests: {counts:?}"
    );
    assert_eq!(
        h.total(SECONDARY),
        0,
        "stateless requests reached the stateful upstream: {:?}",
        h.summary(SECONDARY)
    );
    let scrape = h.scrape().await;
    for (i, &c) in counts.iter().enumerate() {
        assert_eq!(
            h.endpoint_value(&scrape, "switchyard_endpoint_requests_total", PRIMARY, i),
            c as f64,
            "switchyard_endpoint_requests_total of {} = what its mock received",
            h.name(PRIMARY, i)
        );
        assert_eq!(
            h.endpoint_value(&scrape, "switchyard_endpoint_up", PRIMARY, i),
            1.0
        );
    }
    metric("switchyard_endpoint_requests_total")
        .label("upstream", SECONDARY)
        .assert_absent_or_zero(&scrape);
    h.shutdown().await;
}

#[tokio::test]
async fn round_robin_is_exact() {
    let h = PoolHarness::builder()
        .stateless(3)
        .stateful(1)
        .config("[upstreams.primary]\nbalance = \"round_robin\"")
        .start()
        .await;
    chats(&h, 300).await;
    assert_eq!(h.counts(PRIMARY), vec![100, 100, 100]);
    assert_eq!(h.total(SECONDARY), 0, "{:?}", h.summary(SECONDARY));
    h.shutdown().await;
}

#[tokio::test]
async fn weighted_round_robin_follows_the_weights() {
    let h = PoolHarness::builder()
        .stateless_weights(&[1, 1, 2])
        .stateful(1)
        .config("[upstreams.primary]\nbalance = \"round_robin\"")
        .start()
        .await;
    chats(&h, 300).await;
    assert_eq!(h.counts(PRIMARY), vec![75, 75, 150]);
    assert_eq!(h.total(SECONDARY), 0, "{:?}", h.summary(SECONDARY));
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 2. Ejection, restoration, active checks
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_dead_endpoint_is_retried_around_ejected_and_restored() {
    const EJECT_FOR: Duration = Duration::from_secs(1);
    let mut h = PoolHarness::builder()
        .stateless(3)
        .stateful(1)
        .config(
            r#"
            [upstreams.primary]
            balance = "p2c"
            retries = 1
            [upstreams.primary.health]
            eject_after = 2
            eject_for = "1s"
            "#,
        )
        .start()
        .await;
    // Warm up: every endpoint works.
    chats(&h, 30).await;
    assert!(
        h.counts(PRIMARY).iter().all(|&c| c > 0),
        "{:?}",
        h.counts(PRIMARY)
    );
    h.stop(PRIMARY, 1).await;

    // Every request still succeeds (a connect failure is retried on another endpoint) until
    // the dead one has failed twice and is ejected.
    let mut ejected = None;
    for sent in 1..=300 {
        chat_ok(&h).await;
        if sent % 5 == 0 {
            let scrape = h.scrape().await;
            if h.endpoint_value(&scrape, "switchyard_endpoint_ejections_total", PRIMARY, 1) >= 1.0 {
                ejected = Some(scrape);
                break;
            }
        }
    }
    let scrape = ejected.expect("primary-1 was not ejected after up to 300 requests");
    let ejected_at = tokio::time::Instant::now();
    assert!(
        retries(&scrape, PRIMARY, "connect") > 0.0,
        "connect failures were retried\n{}",
        metric("switchyard_retries_total").similar(&scrape)
    );
    assert_eq!(
        h.endpoint_value(&scrape, "switchyard_endpoint_up", PRIMARY, 1),
        0.0,
        "an ejected endpoint is reported down\n{}",
        metric("switchyard_endpoint_up").similar(&scrape)
    );
    for i in [0, 2] {
        assert_eq!(
            h.endpoint_value(&scrape, "switchyard_endpoint_up", PRIMARY, i),
            1.0
        );
        assert_eq!(
            h.endpoint_value(&scrape, "switchyard_endpoint_ejections_total", PRIMARY, i),
            0.0
        );
    }
    assert_eq!(retries(&scrape, SECONDARY, "connect"), 0.0);

    // While ejected, nothing is sent to it (checked only while surely inside the ejection).
    let attempts_before =
        h.endpoint_value(&scrape, "switchyard_endpoint_requests_total", PRIMARY, 1);
    let retries_before = retries(&scrape, PRIMARY, "connect");
    chats(&h, 20).await;
    if ejected_at.elapsed() < EJECT_FOR / 2 {
        let scrape = h.scrape().await;
        assert_eq!(
            h.endpoint_value(&scrape, "switchyard_endpoint_requests_total", PRIMARY, 1),
            attempts_before,
            "requests were sent to an ejected endpoint"
        );
        assert_eq!(retries(&scrape, PRIMARY, "connect"), retries_before);
    }

    // Back on the same port: once the ejection has run out it gets traffic again.
    h.restart(PRIMARY, 1).await;
    let deadline = tokio::time::Instant::now() + EJECT_FOR + SOON;
    while h.api_requests(PRIMARY, 1).is_empty() && tokio::time::Instant::now() < deadline {
        chat_ok(&h).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !h.api_requests(PRIMARY, 1).is_empty(),
        "the restarted endpoint got no traffic within {:?} of its ejection",
        EJECT_FOR + SOON
    );
    // More traffic: it takes its share again, and is reported up.
    chats(&h, 60).await;
    assert!(
        h.api_requests(PRIMARY, 1).len() >= 5,
        "{:?}",
        h.counts(PRIMARY)
    );
    let scrape = h
        .scrape_when(|s| h.endpoint_value(s, "switchyard_endpoint_up", PRIMARY, 1) == 1.0)
        .await;
    assert_eq!(
        h.endpoint_value(&scrape, "switchyard_endpoint_up", PRIMARY, 1),
        1.0,
        "primary-1 takes traffic again but switchyard_endpoint_up still says 0\n{}",
        metric("switchyard_endpoint_up").similar(&scrape)
    );
    assert_eq!(h.total(SECONDARY), 0, "{:?}", h.summary(SECONDARY));
    h.shutdown().await;
}

#[tokio::test]
async fn active_health_checks_take_an_endpoint_out_and_back_in() {
    let mut h = PoolHarness::builder()
        .stateless(3)
        .stateful(1)
        .config(
            r#"
            [upstreams.primary.health]
            path = "/v1/models"
            interval = "100ms"
            timeout = "100ms"
            healthy_threshold = 1
            unhealthy_threshold = 1
            "#,
        )
        .start()
        .await;
    // The checks run: a GET on the path on every endpoint.
    let scrape = h
        .scrape_when(|s| {
            (0..3).all(|i| {
                value(
                    s,
                    &metric("switchyard_health_checks_total")
                        .label("upstream", PRIMARY)
                        .label("endpoint", h.name(PRIMARY, i))
                        .label("result", "ok"),
                ) > 0.0
            })
        })
        .await;
    metric("switchyard_health_checks_total")
        .label("upstream", PRIMARY)
        .label("result", "ok")
        .assert_above(&scrape, 2.0);
    let checks = h.mock(PRIMARY, 0).requests();
    let check = checks
        .iter()
        .find(|r| common::pool::is_health_check(r))
        .expect("primary-0 received a health check");
    assert_eq!(check.method, http::Method::GET);
    assert_eq!(check.path(), "/v1/models");

    h.stop(PRIMARY, 2).await;
    let scrape = h
        .scrape_when(|s| h.endpoint_value(s, "switchyard_endpoint_up", PRIMARY, 2) == 0.0)
        .await;
    assert_eq!(
        h.endpoint_value(&scrape, "switchyard_endpoint_up", PRIMARY, 2),
        0.0,
        "a stopped endpoint is reported down by the checks\n{}",
        metric("switchyard_endpoint_up").similar(&scrape)
    );
    assert!(
        value(
            &scrape,
            &metric("switchyard_health_checks_total")
                .label("endpoint", h.name(PRIMARY, 2))
                .label("result", "failed")
        ) >= 1.0
    );
    let attempts_before =
        h.endpoint_value(&scrape, "switchyard_endpoint_requests_total", PRIMARY, 2);
    chats(&h, 40).await;
    let scrape = h.scrape().await;
    assert_eq!(
        h.endpoint_value(&scrape, "switchyard_endpoint_requests_total", PRIMARY, 2),
        attempts_before,
        "a request was sent to an endpoint failing its checks"
    );
    assert_eq!(
        retries(&scrape, PRIMARY, "connect"),
        0.0,
        "nothing needed a retry: the down endpoint was never tried"
    );
    let counts = h.counts(PRIMARY);
    assert!(counts[0] > 0 && counts[1] > 0, "{counts:?}");

    h.restart(PRIMARY, 2).await;
    let scrape = h
        .scrape_when(|s| h.endpoint_value(s, "switchyard_endpoint_up", PRIMARY, 2) == 1.0)
        .await;
    assert_eq!(
        h.endpoint_value(&scrape, "switchyard_endpoint_up", PRIMARY, 2),
        1.0,
        "the restarted endpoint passes its checks again\n{}",
        metric("switchyard_endpoint_up").similar(&scrape)
    );
    chats(&h, 60).await;
    assert!(
        h.api_requests(PRIMARY, 2).len() >= 5,
        "the restored endpoint takes its share again: {:?}",
        h.counts(PRIMARY)
    );
    assert_eq!(h.total(SECONDARY), 0, "{:?}", h.summary(SECONDARY));
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 3, 4. Nothing usable; no retry; never the other upstream
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_stateful_pool_with_every_endpoint_dead_answers_503_and_never_crosses_over() {
    let mut h = PoolHarness::builder()
        .stateless(2)
        .stateful(2)
        .config(
            r#"
            [upstreams.secondary]
            retries = 1
            [upstreams.secondary.health]
            eject_after = 1
            eject_for = "30s"
            "#,
        )
        .start()
        .await;
    h.stop(SECONDARY, 0).await;
    h.stop(SECONDARY, 1).await;

    // The first attempts fail to connect (and eject); then nothing is usable.
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..5 {
        let reply = h.post_json("/v1/responses", &new_response()).await;
        statuses.push(reply.status);
        assert!(
            reply.status == StatusCode::BAD_GATEWAY
                || reply.status == StatusCode::SERVICE_UNAVAILABLE,
            "a stateful request to a dead pool: {} {}",
            reply.status,
            reply.text()
        );
        assert_eq!(reply.header("x-switchyard-class"), Some("stateful"));
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            refused = Some(reply);
            break;
        }
    }
    let reply = refused.unwrap_or_else(|| panic!("never 503 after ejection: {statuses:?}"));
    assert_eq!(
        reply.error_code(),
        "no_healthy_endpoint",
        "{}",
        reply.text()
    );
    let message = reply.error_message();
    assert!(message.contains(SECONDARY), "{message}");

    // Later requests too, without any attempt.
    let scrape = h.scrape().await;
    let attempts: f64 = (0..2)
        .map(|i| h.endpoint_value(&scrape, "switchyard_endpoint_requests_total", SECONDARY, i))
        .sum();
    for _ in 0..3 {
        let reply = h.post_json("/v1/responses", &new_response()).await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            reply.text()
        );
        assert_eq!(reply.error_code(), "no_healthy_endpoint");
    }
    let scrape = h.scrape().await;
    let after: f64 = (0..2)
        .map(|i| h.endpoint_value(&scrape, "switchyard_endpoint_requests_total", SECONDARY, i))
        .sum();
    assert_eq!(
        after, attempts,
        "no attempt while every endpoint is ejected"
    );
    assert!(
        value(
            &scrape,
            &metric("switchyard_rejections_total").label("reason", "no_healthy_endpoint")
        ) >= 4.0,
        "{}",
        metric("switchyard_rejections_total").similar(&scrape)
    );
    for i in 0..2 {
        assert_eq!(
            h.endpoint_value(&scrape, "switchyard_endpoint_up", SECONDARY, i),
            0.0
        );
    }
    assert_eq!(
        h.total(PRIMARY),
        0,
        "stateful requests crossed to the stateless upstream: {:?}",
        h.summary(PRIMARY)
    );
    metric("switchyard_endpoint_requests_total")
        .label("upstream", PRIMARY)
        .assert_absent_or_zero(&scrape);

    // Stateless traffic is unaffected.
    chats(&h, 4).await;
    assert_eq!(h.total(PRIMARY), 4);
    h.shutdown().await;
}

#[tokio::test]
async fn without_retries_a_dead_endpoint_is_a_502_and_nothing_else_is_tried() {
    let mut h = PoolHarness::builder()
        .stateless(2)
        .stateful(2)
        .config(
            r#"
            [upstreams.secondary]
            balance = "round_robin"
            retries = 0
            [upstreams.secondary.health]
            eject_after = 100
            "#,
        )
        .start()
        .await;
    h.stop(SECONDARY, 1).await;
    let mut ok = 0;
    let mut bad_gateway = 0;
    for _ in 0..10 {
        let reply = h.post_json("/v1/responses", &new_response()).await;
        assert_eq!(reply.header("x-switchyard-class"), Some("stateful"));
        match reply.status {
            StatusCode::OK => {
                assert_eq!(reply.header("x-switchyard-upstream"), Some(SECONDARY));
                ok += 1;
            }
            StatusCode::BAD_GATEWAY => bad_gateway += 1,
            other => panic!("unexpected {other}: {}", reply.text()),
        }
    }
    // Round robin alternates; the dead endpoint's turns fail without a second attempt.
    assert_eq!((ok, bad_gateway), (5, 5));
    assert_eq!(h.counts(SECONDARY)[0], 5);
    let scrape = h.scrape().await;
    assert_eq!(
        h.endpoint_value(&scrape, "switchyard_endpoint_requests_total", SECONDARY, 1),
        5.0
    );
    assert_eq!(retries(&scrape, SECONDARY, "connect"), 0.0);
    assert_eq!(retries(&scrape, SECONDARY, "reset"), 0.0);
    assert_eq!(
        h.total(PRIMARY),
        0,
        "a failed stateful request went to the stateless upstream: {:?}",
        h.summary(PRIMARY)
    );
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// The access log names the endpoint
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_access_log_names_the_endpoint_that_served() {
    let log = common::logs::Captured::default();
    let _guard = log.install();
    let mut h = PoolHarness::builder()
        .stateless(3)
        .stateful(1)
        .config(
            r#"
            [log]
            access_log = true
            [upstreams.primary]
            balance = "round_robin"
            "#,
        )
        .start()
        .await;
    for n in 0..6 {
        let id = format!("ep-log-{n}");
        let reply = h
            .post_json_with(
                "/v1/chat/completions",
                &[("x-request-id", id.as_str())],
                chat().to_string(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let served = reply.header("x-mock-provider").unwrap().to_owned();
        let line = log.line(&id).await;
        assert_eq!(line["upstream"], PRIMARY, "{line}");
        assert_eq!(line["endpoint"], served.as_str(), "{line}");
    }
    // A request that failed on one endpoint and was retried is logged with the one that served.
    h.stop(PRIMARY, 0).await;
    for n in 0..3 {
        let id = format!("ep-log-retry-{n}");
        let reply = h
            .post_json_with(
                "/v1/chat/completions",
                &[("x-request-id", id.as_str())],
                chat().to_string(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let served = reply.header("x-mock-provider").unwrap().to_owned();
        assert_ne!(served, h.name(PRIMARY, 0));
        let line = log.line(&id).await;
        assert_eq!(line["endpoint"], served.as_str(), "{line}");
    }
    let scrape = h.scrape().await;
    assert!(retries(&scrape, PRIMARY, "connect") >= 1.0);
    h.shutdown().await;
}
