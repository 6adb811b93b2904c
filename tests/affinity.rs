//! Endpoint affinity (issue #4): stateful requests that refer to provider-held state
//! (`previous_response_id`, a conversation, an id in the path) go to the endpoint that
//! created it, learned from earlier responses (JSON `id`, SSE `response.created`); session
//! headers hash to one endpoint on every replica; a holder that is down fails the request
//! (or rebalances it, when configured); a Redis store shares what replicas learned.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::pool::{value, Gateway, PoolHarness, PRIMARY, SECONDARY};
use common::redis::RedisServer;
use common::{metric, sse_events, Reply};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use switchyard::mock::RecordedRequest;

fn new_response() -> Value {
    json!({"model": "m", "input": "hi"})
}

fn follow_up(previous: &str) -> Value {
    json!({"model": "m", "input": "hi", "previous_response_id": previous})
}

/// A successful stateful answer from the stateful upstream; returns its JSON.
fn stateful_ok(reply: &Reply, what: &str) -> Value {
    assert_eq!(reply.status, StatusCode::OK, "{what}: {}", reply.text());
    assert_eq!(
        reply.header("x-switchyard-class"),
        Some("stateful"),
        "{what}: class"
    );
    assert_eq!(
        reply.header("x-switchyard-upstream"),
        Some(SECONDARY),
        "{what}: upstream"
    );
    reply.json()
}

fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_owned()
}

/// Whether a recorded request's body or path mentions `needle`.
fn mentions(needle: &str) -> impl Fn(&RecordedRequest) -> bool + '_ {
    move |r| r.path_and_query.contains(needle) || String::from_utf8_lossy(&r.body).contains(needle)
}

/// The one stateful endpoint that received a request mentioning `needle`.
fn sole_receiver(h: &PoolHarness, needle: &str) -> usize {
    let got = h.receivers(SECONDARY, mentions(needle));
    assert_eq!(
        got.len(),
        1,
        "exactly one stateful endpoint should have received {needle}: {:?}\n{:?}",
        got,
        h.summary(SECONDARY)
    );
    got[0]
}

/// The stateful endpoint that answered: the mock's `x-mock-provider`, as an index.
fn answered_by(h: &PoolHarness, reply: &Reply) -> usize {
    let name = reply
        .header("x-mock-provider")
        .unwrap_or_else(|| panic!("no x-mock-provider in the answer"));
    (0..h.secondary.len())
        .find(|&i| h.name(SECONDARY, i) == name)
        .unwrap_or_else(|| panic!("answered by {name}, not a stateful endpoint"))
}

/// Create a response (non-streaming) and return its id and the endpoint that created it.
async fn create(gw: &Gateway, h: &PoolHarness) -> (String, usize) {
    let reply = gw.post_json("/v1/responses", &new_response()).await;
    let id = id_of(&stateful_ok(&reply, "new response"));
    assert!(id.starts_with("resp_"), "{id}");
    (id, answered_by(h, &reply))
}

// ---------------------------------------------------------------------------------------
// 5. previous_response_id chains
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_previous_response_id_chain_stays_on_the_creating_endpoint() {
    let h = PoolHarness::builder()
        .stateless(2)
        .stateful(3)
        .start()
        .await;
    let (first, holder) = create(&h, &h).await;
    assert_eq!(sole_receiver(&h, "\"input\""), holder);

    let mut previous = first.clone();
    let mut chain = vec![first];
    for step in 1..5 {
        let reply = h.post_json("/v1/responses", &follow_up(&previous)).await;
        let v = stateful_ok(&reply, &format!("follow-up {step}"));
        assert_eq!(v["previous_response_id"], json!(previous));
        previous = id_of(&v);
        chain.push(previous.clone());
    }
    // Each follow-up (which names the previous id in its body) reached the creator.
    for id in &chain[..4] {
        assert_eq!(
            h.receivers(SECONDARY, mentions(id)),
            vec![holder],
            "the call naming {id} went elsewhere: {:?}",
            h.summary(SECONDARY)
        );
    }
    assert_eq!(h.api_requests(SECONDARY, holder).len(), 5);

    // Meanwhile new responses are spread over every endpoint.
    for _ in 0..60 {
        let reply = h.post_json("/v1/responses", &new_response()).await;
        stateful_ok(&reply, "another new response");
    }
    let mut counts = h.counts(SECONDARY);
    counts[holder] -= 5;
    assert_eq!(counts.iter().sum::<usize>(), 60);
    assert!(
        counts.iter().all(|&c| c >= 5),
        "new responses without ids are balanced: {counts:?}"
    );
    assert_eq!(h.total(PRIMARY), 0, "{:?}", h.summary(PRIMARY));

    let scrape = h.scrape().await;
    metric("switchyard_affinity_lookups_total")
        .label("upstream", SECONDARY)
        .label("result", "hit")
        .assert_value(&scrape, 4.0);
    metric("switchyard_affinity_lookups_total")
        .label("upstream", SECONDARY)
        .label("result", "miss")
        .assert_absent_or_zero(&scrape);
    assert!(
        value(
            &scrape,
            &metric("switchyard_affinity_learned_total").label("upstream", SECONDARY)
        ) >= 65.0,
        "{}",
        metric("switchyard_affinity_learned_total").similar(&scrape)
    );
    metric("switchyard_affinity_learned_total")
        .label("upstream", PRIMARY)
        .assert_absent_or_zero(&scrape);
    h.shutdown().await;
}

#[tokio::test]
async fn an_id_learned_from_a_stream_pins_the_follow_ups() {
    let h = PoolHarness::builder()
        .stateless(1)
        .stateful(3)
        .start()
        .await;
    let body = json!({"model": "m", "input": "hi", "stream": true});
    let reply = h.post_json("/v1/responses", &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("x-switchyard-upstream"), Some(SECONDARY));
    assert_eq!(reply.header("content-type"), Some("text/event-stream"));
    let events = sse_events(&reply.body);
    let created = events
        .iter()
        .find(|e| e.starts_with("event: response.created"))
        .unwrap_or_else(|| panic!("no response.created in {events:?}"));
    let data: Value = serde_json::from_str(created.split_once("data: ").unwrap().1.trim()).unwrap();
    let first = data["response"]["id"].as_str().unwrap().to_owned();
    let holder = answered_by(&h, &reply);
    assert_eq!(h.counts(SECONDARY)[holder], 1);

    let mut previous = first;
    for step in 1..5 {
        // Alternate streaming and plain follow-ups.
        let mut body = follow_up(&previous);
        body["stream"] = json!(step % 2 == 0);
        let reply = h.post_json("/v1/responses", &body).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(
            h.receivers(SECONDARY, mentions(&previous)),
            vec![holder],
            "follow-up {step} of a streamed response went elsewhere: {:?}",
            h.summary(SECONDARY)
        );
        previous = if step % 2 == 0 {
            let events = sse_events(&reply.body);
            let created = events
                .iter()
                .find(|e| e.starts_with("event: response.created"))
                .unwrap();
            let data: Value =
                serde_json::from_str(created.split_once("data: ").unwrap().1.trim()).unwrap();
            data["response"]["id"].as_str().unwrap().to_owned()
        } else {
            id_of(&reply.json())
        };
    }
    assert_eq!(h.api_requests(SECONDARY, holder).len(), 5);
    assert_eq!(h.total(SECONDARY), 5, "{:?}", h.summary(SECONDARY));
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 6. Conversations
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_conversation_stays_on_the_endpoint_that_created_it() {
    let h = PoolHarness::builder()
        .stateless(1)
        .stateful(3)
        .start()
        .await;
    let reply = h
        .post_json("/v1/conversations", &json!({"metadata": {"topic": "t"}}))
        .await;
    let conv = id_of(&stateful_ok(&reply, "create conversation"));
    assert!(conv.starts_with("conv_"), "{conv}");
    let holder = answered_by(&h, &reply);

    // Several times over, so that a balanced pick could not land there by chance.
    for round in 0..3 {
        let reply = h
            .post_json(
                "/v1/responses",
                &json!({"model": "m", "input": "hi", "conversation": conv}),
            )
            .await;
        let v = stateful_ok(&reply, "response in a conversation (string)");
        assert_eq!(v["conversation"]["id"], json!(conv));
        assert_eq!(answered_by(&h, &reply), holder, "round {round}: string");

        let reply = h.get(&format!("/v1/conversations/{conv}/items")).await;
        stateful_ok(&reply, "list items");
        assert_eq!(answered_by(&h, &reply), holder, "round {round}: items");

        let reply = h
            .post_json(
                "/v1/responses",
                &json!({"model": "m", "input": "hi", "conversation": {"id": conv}}),
            )
            .await;
        stateful_ok(&reply, "response in a conversation (object)");
        assert_eq!(answered_by(&h, &reply), holder, "round {round}: object");
    }
    // What the mocks saw agrees.
    assert_eq!(h.receivers(SECONDARY, mentions(&conv)), vec![holder]);
    assert_eq!(h.api_requests(SECONDARY, holder).len(), 10);
    assert_eq!(h.total(SECONDARY), 10, "{:?}", h.summary(SECONDARY));
    let items = h
        .api_requests(SECONDARY, holder)
        .into_iter()
        .filter(|r| r.method == Method::GET)
        .count();
    assert_eq!(items, 3);
    assert_eq!(h.total(PRIMARY), 0, "{:?}", h.summary(PRIMARY));
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 7. Session headers
// ---------------------------------------------------------------------------------------

fn chat() -> String {
    json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string()
}

#[tokio::test]
async fn a_session_header_sticks_to_one_endpoint_on_every_replica() {
    let h = PoolHarness::builder()
        .stateless(2)
        .stateful(3)
        .config("[affinity]\nsession_headers = [\"x-session-id\"]")
        .start()
        .await;
    for _ in 0..20 {
        let reply = h
            .post_json_with("/v1/chat/completions", &[("mcp-session-id", "s1")], chat())
            .await;
        stateful_ok(&reply, "chat with mcp-session-id");
    }
    let counts = h.counts(SECONDARY);
    assert_eq!(counts.iter().sum::<usize>(), 20);
    assert_eq!(
        counts.iter().filter(|&&c| c > 0).count(),
        1,
        "one session, one endpoint: {counts:?}"
    );
    let s1_owner = counts.iter().position(|&c| c == 20).unwrap();
    assert_eq!(h.total(PRIMARY), 0, "{:?}", h.summary(PRIMARY));

    // A configured session header on a stateful request without ids: same stickiness.
    h.clear();
    for _ in 0..10 {
        let reply = h
            .post_json_with(
                "/v1/responses",
                &[("x-session-id", "abc")],
                new_response().to_string(),
            )
            .await;
        stateful_ok(&reply, "new response with x-session-id");
    }
    let counts = h.counts(SECONDARY);
    assert_eq!(
        counts.iter().filter(|&&c| c > 0).count(),
        1,
        "x-session-id: one endpoint: {counts:?}"
    );

    // A second replica, endpoints listed in the opposite order, agrees on every session.
    let other = Gateway::start(&h.config_with_order(&[1, 0], &[2, 1, 0])).await;
    let mut owners = BTreeSet::new();
    for n in 1..=12 {
        let session = format!("s{n}");
        let mut seen = Vec::new();
        for gw in [&h.gw, &other] {
            h.clear();
            let reply = gw
                .post_json_with(
                    "/v1/chat/completions",
                    &[("mcp-session-id", session.as_str())],
                    chat(),
                )
                .await;
            stateful_ok(&reply, "chat with mcp-session-id");
            seen.push(answered_by(&h, &reply));
            assert_eq!(h.total(SECONDARY), 1);
        }
        assert_eq!(
            seen[0],
            seen[1],
            "session {session}: replica A sent it to {}, replica B to {}",
            h.name(SECONDARY, seen[0]),
            h.name(SECONDARY, seen[1])
        );
        if n == 1 {
            assert_eq!(seen[0], s1_owner);
        }
        owners.insert(seen[0]);
    }
    assert!(
        owners.len() >= 2,
        "12 sessions all hashed to one of 3 endpoints: {owners:?}"
    );
    assert_eq!(h.total(PRIMARY), 0, "{:?}", h.summary(PRIMARY));
    other.shutdown().await;
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 8. The holder is down
// ---------------------------------------------------------------------------------------

const ACTIVE_CHECKS: &str = r#"
[upstreams.secondary.health]
path = "/v1/models"
interval = "100ms"
timeout = "100ms"
healthy_threshold = 1
unhealthy_threshold = 1
"#;

/// Learn an id, stop its endpoint and wait until the checks report it down.
async fn learn_then_stop_holder(h: &mut PoolHarness) -> (String, usize) {
    let (id, holder) = create(&h.gw, h).await;
    h.stop(SECONDARY, holder).await;
    let scrape = h
        .scrape_when(|s| h.endpoint_value(s, "switchyard_endpoint_up", SECONDARY, holder) == 0.0)
        .await;
    assert_eq!(
        h.endpoint_value(&scrape, "switchyard_endpoint_up", SECONDARY, holder),
        0.0,
        "the stopped holder is not reported down\n{}",
        metric("switchyard_endpoint_up").similar(&scrape)
    );
    h.clear();
    (id, holder)
}

#[tokio::test]
async fn a_follow_up_to_a_down_holder_fails_without_reaching_anyone() {
    let mut h = PoolHarness::builder()
        .stateless(2)
        .stateful(3)
        .config(ACTIVE_CHECKS)
        .config("[affinity]\non_endpoint_down = \"fail\"")
        .start()
        .await;
    let (id, holder) = learn_then_stop_holder(&mut h).await;

    let reply = h.post_json("/v1/responses", &follow_up(&id)).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text()
    );
    assert_eq!(reply.error_code(), "affinity_endpoint_unavailable");
    let message = reply.error_message();
    assert!(
        message.contains(&h.name(SECONDARY, holder)),
        "the message names the endpoint: {message}"
    );
    // Paths with the id too.
    let reply = h.get(&format!("/v1/responses/{id}")).await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.text()
    );
    assert_eq!(reply.error_code(), "affinity_endpoint_unavailable");

    assert_eq!(
        h.total(SECONDARY),
        0,
        "other stateful endpoints got the follow-up: {:?}",
        h.summary(SECONDARY)
    );
    assert_eq!(h.total(PRIMARY), 0, "{:?}", h.summary(PRIMARY));
    let scrape = h.scrape().await;
    metric("switchyard_rejections_total")
        .label("reason", "affinity_endpoint_unavailable")
        .assert_value(&scrape, 2.0);
    metric("switchyard_affinity_lookups_total")
        .label("upstream", SECONDARY)
        .label("result", "hit")
        .assert_value(&scrape, 2.0);

    // Requests without state still work on the remaining endpoints.
    let (_, other) = create(&h.gw, &h).await;
    assert_ne!(other, holder);
    h.shutdown().await;
}

#[tokio::test]
async fn a_follow_up_to_a_dead_holder_is_never_retried_elsewhere() {
    // No active checks: the holder is found dead by connecting, then ejected.
    let mut h = PoolHarness::builder()
        .stateless(1)
        .stateful(3)
        .config(
            r#"
            [upstreams.secondary]
            retries = 2
            [upstreams.secondary.health]
            eject_after = 2
            eject_for = "30s"
            "#,
        )
        .start()
        .await;
    let (id, holder) = create(&h.gw, &h).await;
    h.stop(SECONDARY, holder).await;
    h.clear();
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..5 {
        let reply = h.post_json("/v1/responses", &follow_up(&id)).await;
        statuses.push(reply.status);
        assert!(
            reply.status == StatusCode::BAD_GATEWAY
                || reply.status == StatusCode::SERVICE_UNAVAILABLE,
            "follow-up to a dead holder: {} {}",
            reply.status,
            reply.text()
        );
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            refused = Some(reply);
            break;
        }
    }
    let reply = refused.unwrap_or_else(|| panic!("never 503 once ejected: {statuses:?}"));
    assert_eq!(reply.error_code(), "affinity_endpoint_unavailable");
    assert_eq!(
        h.total(SECONDARY),
        0,
        "a follow-up was retried on an endpoint without its state: {:?}",
        h.summary(SECONDARY)
    );
    assert_eq!(h.total(PRIMARY), 0, "{:?}", h.summary(PRIMARY));
    let scrape = h.scrape().await;
    assert_eq!(
        h.endpoint_value(
            &scrape,
            "switchyard_endpoint_ejections_total",
            SECONDARY,
            holder
        ),
        1.0
    );
    metric("switchyard_retries_total")
        .label("upstream", SECONDARY)
        .assert_absent_or_zero(&scrape);
    h.shutdown().await;
}

#[tokio::test]
async fn with_rebalance_a_follow_up_to_a_down_holder_goes_to_another_endpoint() {
    let mut h = PoolHarness::builder()
        .stateless(1)
        .stateful(3)
        .config(ACTIVE_CHECKS)
        .config("[affinity]\non_endpoint_down = \"rebalance\"")
        .start()
        .await;
    let (id, holder) = learn_then_stop_holder(&mut h).await;
    let reply = h.post_json("/v1/responses", &follow_up(&id)).await;
    let v = stateful_ok(&reply, "rebalanced follow-up");
    assert_eq!(v["previous_response_id"], json!(id));
    let got = answered_by(&h, &reply);
    assert_ne!(got, holder);
    assert_eq!(h.receivers(SECONDARY, mentions(&id)), vec![got]);
    assert_eq!(h.total(SECONDARY), 1, "{:?}", h.summary(SECONDARY));
    assert_eq!(h.total(PRIMARY), 0, "{:?}", h.summary(PRIMARY));
    let scrape = h.scrape().await;
    metric("switchyard_rejections_total")
        .label("reason", "affinity_endpoint_unavailable")
        .assert_absent_or_zero(&scrape);
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 9. A Redis store shared by two replicas
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_redis_keep_a_chain_on_its_endpoint() {
    let redis = RedisServer::start();
    let h = PoolHarness::builder()
        .stateless(1)
        .stateful(3)
        .config(&format!(
            "[affinity]\nstore = \"redis\"\nredis_url = \"{}\"\nredis_timeout = \"2s\"",
            redis.url()
        ))
        .start()
        .await;
    let b = h.another_gateway().await;
    let replicas = [&h.gw, &b];

    let (first, holder) = create(replicas[0], &h).await;
    let mut previous = first;
    for step in 1..5 {
        let gw = replicas[step % 2];
        let reply = gw.post_json("/v1/responses", &follow_up(&previous)).await;
        let v = stateful_ok(
            &reply,
            &format!("follow-up {step} via replica {}", step % 2),
        );
        assert_eq!(
            answered_by(&h, &reply),
            holder,
            "follow-up {step} (replica {}) left the creating endpoint",
            step % 2
        );
        previous = id_of(&v);
    }
    assert_eq!(h.api_requests(SECONDARY, holder).len(), 5);
    assert_eq!(h.total(SECONDARY), 5, "{:?}", h.summary(SECONDARY));

    // Replica B found ids it never saw answered: in Redis.
    let scrape = b.scrape().await;
    metric("switchyard_affinity_lookups_total")
        .label("upstream", SECONDARY)
        .label("result", "hit")
        .assert_value(&scrape, 2.0);
    let keys: Vec<String> = redis.query(&["KEYS", "*"]);
    assert!(
        keys.iter().filter(|k| k.contains("resp_")).count() >= 5,
        "learned ids in Redis: {keys:?}"
    );
    b.shutdown().await;
    h.shutdown().await;
}
