//! The in-process id -> endpoint table: a moka cache bounded in entries, each entry expiring
//! `ttl` after it was learned. It is the whole table with the memory store, and the local
//! cache in front of Redis with the redis store (an id never moves, so a cached answer never
//! goes stale).
//!
//! Keys are `{prefix}{upstream}:{id}` (upstream names have no `:`), so that the Redis store
//! builds one string per operation and uses it for both the cache and Redis. The entries gauge
//! is kept by counting inserts and moka's removal notifications (replaced, expired, evicted).

use std::sync::Arc;
use std::time::Duration;

use moka::notification::RemovalCause;
use moka::sync::Cache;

use crate::metrics::Metrics;

/// moka refuses a time-to-live above 1000 years; ids are not kept anywhere near that long.
const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A bounded, expiring map of `{prefix}{upstream}:{id}` to endpoint name.
pub(super) struct LocalTable {
    cache: Cache<String, Arc<str>>,
    capacity: u64,
    prefix: Arc<str>,
    metrics: Arc<Metrics>,
}

impl LocalTable {
    pub(super) fn new(prefix: &str, capacity: u64, ttl: Duration, metrics: Arc<Metrics>) -> Self {
        let prefix: Arc<str> = prefix.into();
        let listener = {
            let prefix = prefix.clone();
            let metrics = metrics.clone();
            move |key: Arc<String>, _endpoint: Arc<str>, _cause: RemovalCause| {
                if let Some(upstream) = upstream_of(&key, &prefix) {
                    metrics.affinity.entries_add(upstream, -1);
                }
            }
        };
        let cache = Cache::builder()
            .max_capacity(capacity)
            .time_to_live(ttl.min(MAX_TTL))
            .eviction_listener(listener)
            .build();
        LocalTable {
            cache,
            capacity,
            prefix,
            metrics,
        }
    }

    /// Most entries held.
    pub(super) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The key of `id` on `upstream`.
    pub(super) fn key(&self, upstream: &str, id: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len() + upstream.len() + 1 + id.len());
        key.push_str(&self.prefix);
        key.push_str(upstream);
        key.push(':');
        key.push_str(id);
        key
    }

    pub(super) fn get(&self, key: &str) -> Option<Arc<str>> {
        self.cache.get(key)
    }

    /// Remember `key` (of `upstream`) -> `endpoint`.
    pub(super) fn insert(&self, key: String, upstream: &str, endpoint: Arc<str>) {
        self.metrics.affinity.entries_add(upstream, 1);
        self.cache.insert(key, endpoint);
    }

    /// Entries held (approximate until [`LocalTable::run_pending_tasks`]).
    #[cfg(test)]
    pub(super) fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Let moka finish its housekeeping (evictions, expirations, notifications).
    #[cfg(test)]
    pub(super) fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }
}

/// The upstream part of a key.
fn upstream_of<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    key.strip_prefix(prefix)?.split_once(':').map(|(up, _)| up)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::affinity::{AffinitySettings, AffinityTable, Lookup, StoreSettings};

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::new(&["azure", "bedrock"]).unwrap())
    }

    async fn table(capacity: u64, ttl: Duration, metrics: Arc<Metrics>) -> AffinityTable {
        let settings = AffinitySettings {
            store: StoreSettings::Memory { capacity },
            ttl,
        };
        AffinityTable::connect(&settings, metrics).await.unwrap()
    }

    fn scrape(metrics: &Metrics) -> String {
        String::from_utf8(metrics.render()).unwrap()
    }

    #[tokio::test]
    async fn hit_and_miss_per_upstream() {
        let m = metrics();
        let t = table(100, Duration::from_secs(60), m.clone()).await;
        assert_eq!(t.lookup("azure", "resp_1").await, Lookup::Miss);
        let ep: Arc<str> = "eastus".into();
        assert!(t.learn("azure", "resp_1", &ep).is_none());
        assert_eq!(t.lookup("azure", "resp_1").await, Lookup::Hit(ep.clone()));
        // The same id on another upstream is another entry.
        assert_eq!(t.lookup("bedrock", "resp_1").await, Lookup::Miss);
        let text = scrape(&m);
        for line in [
            "switchyard_affinity_lookups_total{result=\"hit\",upstream=\"azure\"} 1",
            "switchyard_affinity_lookups_total{result=\"miss\",upstream=\"azure\"} 1",
            "switchyard_affinity_lookups_total{result=\"miss\",upstream=\"bedrock\"} 1",
            "switchyard_affinity_learned_total{upstream=\"azure\"} 1",
            "switchyard_affinity_entries{upstream=\"azure\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert_eq!(t.describe(), "memory (capacity 100, ttl 1m)");
    }

    #[tokio::test]
    async fn relearning_an_id_keeps_one_entry() {
        let m = metrics();
        let settings_ttl = Duration::from_secs(60);
        let local = LocalTable::new("", 10, settings_ttl, m.clone());
        for _ in 0..3 {
            local.insert(local.key("azure", "resp_1"), "azure", "eastus".into());
        }
        local.run_pending_tasks();
        assert_eq!(local.entry_count(), 1);
        assert!(scrape(&m).contains("switchyard_affinity_entries{upstream=\"azure\"} 1"));
    }

    #[tokio::test]
    async fn entries_expire_after_ttl() {
        // moka's clock cannot be mocked from outside, so this uses real time: a 150 ms TTL,
        // a hit asserted only if it was read before the TTL passed, and a miss after 3x the TTL.
        let ttl = Duration::from_millis(150);
        let m = metrics();
        let t = table(100, ttl, m.clone()).await;
        let ep: Arc<str> = "eastus".into();
        let learned_at = Instant::now();
        t.learn("azure", "resp_1", &ep);
        let first = t.lookup("azure", "resp_1").await;
        if learned_at.elapsed() < ttl {
            assert_eq!(first, Lookup::Hit(ep));
        }
        tokio::time::sleep(ttl * 3).await;
        assert_eq!(t.lookup("azure", "resp_1").await, Lookup::Miss);
    }

    #[tokio::test]
    async fn capacity_bounds_the_table_and_the_gauge() {
        let m = metrics();
        let local = LocalTable::new("", 50, Duration::from_secs(60), m.clone());
        for i in 0..500 {
            local.insert(
                local.key("azure", &format!("resp_{i}")),
                "azure",
                "eastus".into(),
            );
        }
        local.run_pending_tasks();
        let count = local.entry_count();
        assert!(count <= 50, "{count} entries in a table of capacity 50");
        let text = scrape(&m);
        let line = format!("switchyard_affinity_entries{{upstream=\"azure\"}} {count}");
        assert!(text.contains(&line), "missing {line} in\n{text}");
    }

    #[test]
    fn keys_name_their_upstream() {
        assert_eq!(upstream_of("p:azure:resp_1:x", "p:"), Some("azure"));
        assert_eq!(upstream_of("azure:resp_1", ""), Some("azure"));
        assert_eq!(upstream_of("other", "p:"), None);
    }
}
