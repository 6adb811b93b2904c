//! The Redis affinity store against a real `redis-server` (started per test on a unix socket):
//! two tables sharing one server, key layout and TTL, behaviour while Redis is down and after
//! it comes back, and start-up errors naming the URL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::redis::RedisServer;
use common::{eventually, metric, Scrape};
use switchyard::affinity::{AffinitySettings, AffinityTable, Lookup, StoreSettings};
use switchyard::metrics::Metrics;

const PREFIX: &str = "test:affinity:";
const TTL: Duration = Duration::from_secs(3600);

fn settings(url: &str, timeout: Duration) -> AffinitySettings {
    AffinitySettings {
        store: StoreSettings::Redis {
            url: url.to_owned(),
            key_prefix: PREFIX.to_owned(),
            timeout,
            local_capacity: 1000,
        },
        ttl: TTL,
    }
}

fn metrics() -> Arc<Metrics> {
    Arc::new(Metrics::new(&["azure", "bedrock"]).unwrap())
}

async fn table(url: &str, timeout: Duration, metrics: Arc<Metrics>) -> AffinityTable {
    AffinityTable::connect(&settings(url, timeout), metrics)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

fn scrape(metrics: &Metrics) -> Scrape {
    Scrape::parse(&String::from_utf8(metrics.render()).unwrap())
}

/// Learn `id` and wait for the write; panics if there was none to wait for.
async fn learn(table: &AffinityTable, upstream: &str, id: &str, endpoint: &str) {
    assert!(
        learn_maybe(table, upstream, id, endpoint).await,
        "the redis store returns a write to wait for"
    );
}

/// Learn `id` and wait for the write, if any (none while Redis is being skipped); whether
/// there was one.
async fn learn_maybe(table: &AffinityTable, upstream: &str, id: &str, endpoint: &str) -> bool {
    let endpoint: Arc<str> = endpoint.into();
    let Some(write) = table.learn(upstream, id, &endpoint) else {
        return false;
    };
    tokio::time::timeout(Duration::from_secs(5), write)
        .await
        .expect("the learn future completes within its timeout");
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learned_id_is_found_by_another_replica() {
    let redis = RedisServer::start();
    let (m_a, m_b) = (metrics(), metrics());
    let a = table(&redis.url(), Duration::from_millis(500), m_a.clone()).await;
    let b = table(&redis.url(), Duration::from_millis(500), m_b.clone()).await;

    assert_eq!(b.lookup("azure", "resp_1").await, Lookup::Miss);
    learn(&a, "azure", "resp_1", "eastus").await;
    assert_eq!(
        b.lookup("azure", "resp_1").await,
        Lookup::Hit("eastus".into())
    );
    // Per upstream: the same id on another upstream is unknown.
    assert_eq!(b.lookup("bedrock", "resp_1").await, Lookup::Miss);

    // Key layout `{prefix}{upstream}:{id}`, value the endpoint, and an expiry of `ttl`.
    let key = format!("{PREFIX}azure:resp_1");
    assert_eq!(redis.query::<String>(&["GET", &key]), "eastus");
    let ttl: i64 = redis.query(&["TTL", &key]);
    assert!(ttl > 0 && ttl <= TTL.as_secs() as i64, "TTL {key} = {ttl}");

    let sa = scrape(&m_a);
    metric("switchyard_affinity_learned_total")
        .label("upstream", "azure")
        .assert_value(&sa, 1.0);
    metric("switchyard_affinity_entries")
        .label("upstream", "azure")
        .assert_value(&sa, 1.0);
    let sb = scrape(&m_b);
    for (upstream, result, value) in [
        ("azure", "miss", 1.0),
        ("azure", "hit", 1.0),
        ("bedrock", "miss", 1.0),
        ("azure", "error", 0.0),
    ] {
        metric("switchyard_affinity_lookups_total")
            .label("upstream", upstream)
            .label("result", result)
            .assert_value(&sb, value);
    }
    metric("switchyard_affinity_store_errors_total").assert_value(&sb, 0.0);

    assert!(
        a.describe().starts_with("redis at redis+unix://"),
        "{}",
        a.describe()
    );
    assert!(
        a.describe()
            .ends_with("(ttl 1h, timeout 500ms, local cache 1000)"),
        "{}",
        a.describe()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_fast_and_recovers_when_it_is_back() {
    let mut redis = RedisServer::start();
    let timeout = Duration::from_millis(200);
    let m = metrics();
    let t = table(&redis.url(), timeout, m.clone()).await;
    learn(&t, "azure", "resp_known", "eastus").await;

    redis.kill();

    // Lookups of unknown ids answer Error within about `timeout`, and are counted.
    for i in 0..3 {
        let started = Instant::now();
        let result = t.lookup("azure", &format!("resp_unknown_{i}")).await;
        let took = started.elapsed();
        assert_eq!(result, Lookup::Error, "lookup {i} while Redis is down");
        assert!(
            took < timeout + Duration::from_millis(500),
            "lookup {i} took {took:?}"
        );
    }
    // What this replica learned or found before is still answered from its local cache.
    assert_eq!(
        t.lookup("azure", "resp_known").await,
        Lookup::Hit("eastus".into())
    );

    // After a few failures in a row Redis is skipped: lookups fail at once, but for one probe
    // per interval.
    let mut fast = 0;
    for i in 0..20 {
        let started = Instant::now();
        assert_eq!(
            t.lookup("azure", &format!("resp_skip_{i}")).await,
            Lookup::Error
        );
        if started.elapsed() < timeout / 2 {
            fast += 1;
        }
    }
    assert!(
        fast >= 15,
        "only {fast} of 20 lookups skipped a Redis known to be down"
    );

    // A learn returns at once or completes within about `timeout`; the failed (or skipped)
    // write is counted.
    let started = Instant::now();
    learn_maybe(&t, "azure", "resp_during_outage", "westus").await;
    let took = started.elapsed();
    assert!(
        took < timeout + Duration::from_millis(500),
        "learn took {took:?}"
    );
    assert_eq!(
        t.lookup("azure", "resp_during_outage").await,
        Lookup::Hit("westus".into()),
        "kept in the local cache"
    );

    let s = scrape(&m);
    metric("switchyard_affinity_store_errors_total")
        .label("op", "get")
        .assert_value(&s, 23.0);
    metric("switchyard_affinity_store_errors_total")
        .label("op", "set")
        .assert_value(&s, 1.0);
    metric("switchyard_affinity_lookups_total")
        .label("upstream", "azure")
        .label("result", "error")
        .assert_value(&s, 23.0);

    // Back on the same socket (empty): lookups recover without reconnecting by hand.
    redis.restart();
    let recovered = eventually(Duration::from_secs(10), || async {
        t.lookup("azure", "resp_after").await == Lookup::Miss
    })
    .await;
    assert!(recovered, "lookups still fail 10 s after Redis came back");
    learn(&t, "azure", "resp_after", "eastus").await;
    assert_eq!(
        redis.query::<String>(&["GET", &format!("{PREFIX}azure:resp_after")]),
        "eastus"
    );
    let other = table(&redis.url(), timeout, metrics()).await;
    assert_eq!(
        other.lookup("azure", "resp_after").await,
        Lookup::Hit("eastus".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_costs_at_most_the_timeout_and_bounds_pending_writes() {
    let redis = RedisServer::start();
    let timeout = Duration::from_millis(200);
    let m = metrics();
    let t = table(&redis.url(), timeout, m.clone()).await;
    learn(&t, "azure", "resp_warm", "eastus").await;

    redis.pause();
    let started = Instant::now();
    assert_eq!(t.lookup("azure", "resp_unknown").await, Lookup::Error);
    let took = started.elapsed();
    assert!(
        took >= timeout && took < timeout + Duration::from_millis(500),
        "lookup against a hung Redis took {took:?}"
    );

    // More learns than writes may be outstanding: the extra ones are dropped (and counted)
    // instead of queueing behind a Redis that does not answer; every write still ends.
    let endpoint: Arc<str> = "eastus".into();
    let started = Instant::now();
    let writes: Vec<_> = (0..1100)
        .filter_map(|i| t.learn("azure", &format!("resp_burst_{i}"), &endpoint))
        .collect();
    assert!(writes.len() < 1100, "no write was dropped");
    let waited = writes.len();
    // The writes run in their own tasks, so waiting for them one by one takes as long as
    // the slowest.
    tokio::time::timeout(Duration::from_secs(5), async {
        for write in writes {
            write.await;
        }
    })
    .await
    .expect("every learn future completes");
    let took = started.elapsed();
    assert!(
        took < timeout + Duration::from_secs(1),
        "{waited} writes took {took:?}"
    );
    let s = scrape(&m);
    metric("switchyard_affinity_dropped_writes_total").assert_value(&s, (1100 - waited) as f64);
    metric("switchyard_affinity_store_errors_total")
        .label("op", "set")
        .assert_value(&s, waited as f64);
    // The dropped ones are still known here.
    assert_eq!(
        t.lookup("azure", "resp_burst_1099").await,
        Lookup::Hit(endpoint.clone())
    );

    redis.resume();
    let recovered = eventually(Duration::from_secs(10), || async {
        t.lookup("azure", "resp_unknown").await == Lookup::Miss
    })
    .await;
    assert!(recovered, "lookups still fail 10 s after Redis resumed");
}

#[tokio::test]
async fn a_wrong_url_fails_connect_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("redis+unix://{}/nothing.sock", dir.path().display());
    let err = AffinityTable::connect(&settings(&missing, Duration::from_millis(100)), metrics())
        .await
        .err()
        .expect("no server on that socket");
    let text = err.to_string();
    assert!(text.contains(&missing), "{text}");
    assert!(
        text.starts_with("affinity store: cannot reach Redis at"),
        "{text}"
    );

    // A refused TCP port; the password is not shown.
    let port = common::dead_addr().await.port();
    let url = format!("redis://user:s3cret@127.0.0.1:{port}/");
    let err = AffinityTable::connect(&settings(&url, Duration::from_millis(100)), metrics())
        .await
        .err()
        .expect("nothing listens there");
    let text = err.to_string();
    assert!(
        text.contains(&format!("redis://user:***@127.0.0.1:{port}/")),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");

    // Not a Redis URL at all.
    let err = AffinityTable::connect(
        &settings("http://example/", Duration::from_millis(100)),
        metrics(),
    )
    .await
    .err()
    .expect("http is not a Redis scheme");
    let text = err.to_string();
    assert!(
        text.starts_with("affinity store: http://example/ is not a usable Redis URL"),
        "{text}"
    );
}
