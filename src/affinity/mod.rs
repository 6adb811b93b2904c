//! Endpoint affinity: which endpoint of an upstream holds a stateful object, and which one a
//! session belongs to.
//!
//! Stateful provider objects (`resp_…` responses, `conv_…` conversations, stored
//! `chatcmpl-…` completions) live on the endpoint (region, account) that created them. The
//! gateway learns `id -> endpoint` from responses ([`AffinityTable::learn`]) and routes
//! follow-ups there ([`AffinityTable::lookup`]). With one replica the table lives in memory
//! ([`StoreSettings::Memory`]); with many it lives in Redis or Valkey
//! ([`StoreSettings::Redis`]) behind a small local cache, so that a follow-up reaching another
//! replica still finds its endpoint.
//!
//! Session headers need no table: [`Ring`] hashes the session key onto the endpoints, and every
//! replica with the same endpoint names and weights computes the same owner.
//!
//! When Redis fails at runtime nothing waits longer than `timeout`: a lookup answers
//! [`Lookup::Error`] (the caller decides what that means for the request), a learn future
//! completes anyway, errors are counted (`switchyard_affinity_store_errors_total`) and logged
//! at most once every few seconds, and the connection manager reconnects on its own. After a
//! few failures in a row Redis is skipped (errors at once) but for one probe every 250 ms,
//! so an outage does not add `timeout` to every request; see `redis.rs`.

mod memory;
mod redis;
mod ring;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::metrics::Metrics;

pub use ring::{Ring, MAX_WEIGHT};

use self::memory::LocalTable;
use self::redis::RedisStore;

/// How the affinity table is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AffinitySettings {
    pub store: StoreSettings,
    /// How long a learned id is remembered (memory entries, local cache entries, Redis `EX`).
    pub ttl: Duration,
}

/// Where learned ids live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreSettings {
    /// In this process, at most `capacity` entries.
    Memory { capacity: u64 },
    /// In Redis or Valkey, shared by every replica, under `{key_prefix}{upstream}:{id}`; every
    /// operation is given up after `timeout`. `local_capacity` entries are cached in front.
    Redis {
        /// `redis://[user:pass@]host[:port][/db]`, `redis+unix:///path` or `unix:///path`.
        url: String,
        key_prefix: String,
        timeout: Duration,
        local_capacity: u64,
    },
}

/// Why the affinity table could not be set up. URLs are shown without their password.
#[derive(Debug, thiserror::Error)]
pub enum AffinityError {
    #[error("affinity store: {url} is not a usable Redis URL: {source}")]
    InvalidUrl {
        url: String,
        #[source]
        source: ::redis::RedisError,
    },
    #[error("affinity store: cannot reach Redis at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: ::redis::RedisError,
    },
    #[error("affinity store: Redis at {url} did not answer PING within {}", fmt_duration(*.timeout))]
    Timeout { url: String, timeout: Duration },
    #[error("affinity store: Redis needs a tokio runtime, and connect was called outside one")]
    NoRuntime,
}

/// The answer to "which endpoint holds this id?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The name of the endpoint that holds the id.
    Hit(Arc<str>),
    /// The id was never learned (or has expired).
    Miss,
    /// The shared store did not answer in time or failed; the id may well be known.
    Error,
}

impl Lookup {
    /// The `result` label of `switchyard_affinity_lookups_total`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Lookup::Hit(_) => "hit",
            Lookup::Miss => "miss",
            Lookup::Error => "error",
        }
    }
}

/// An operation on the shared store (the `op` label of
/// `switchyard_affinity_store_errors_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreOp {
    Get,
    Set,
}

impl StoreOp {
    pub const ALL: [StoreOp; 2] = [StoreOp::Get, StoreOp::Set];

    pub const fn as_str(self) -> &'static str {
        match self {
            StoreOp::Get => "get",
            StoreOp::Set => "set",
        }
    }
}

/// A future that completes when a learned id is safely stored (or the store gave up).
pub type LearnFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

enum Store {
    Memory(LocalTable),
    Redis(RedisStore),
}

/// The id -> endpoint table of every upstream. `Send + Sync`; the gateway holds it in an `Arc`.
pub struct AffinityTable {
    store: Store,
    ttl: Duration,
    metrics: Arc<Metrics>,
}

impl AffinityTable {
    /// Memory: builds the cache (`capacity` entries, each kept `ttl`). Redis: parses the URL,
    /// connects and PINGs (allowing at least 2 s however short `timeout` is, since nothing waits
    /// on start-up), so that a wrong URL fails the gateway's start with an error naming it.
    pub async fn connect(
        settings: &AffinitySettings,
        metrics: Arc<Metrics>,
    ) -> Result<AffinityTable, AffinityError> {
        let store = match &settings.store {
            StoreSettings::Memory { capacity } => Store::Memory(LocalTable::new(
                "",
                *capacity,
                settings.ttl,
                metrics.clone(),
            )),
            StoreSettings::Redis {
                url,
                key_prefix,
                timeout,
                local_capacity,
            } => Store::Redis(
                RedisStore::connect(
                    url,
                    key_prefix,
                    *timeout,
                    *local_capacity,
                    settings.ttl,
                    metrics.clone(),
                )
                .await?,
            ),
        };
        Ok(AffinityTable {
            store,
            ttl: settings.ttl,
            metrics,
        })
    }

    /// Which endpoint holds `id` on `upstream`. Redis: the local cache first, then a GET given
    /// up after `timeout` ([`Lookup::Error`], counted).
    pub async fn lookup(&self, upstream: &str, id: &str) -> Lookup {
        let result = match &self.store {
            Store::Memory(table) => match table.get(&table.key(upstream, id)) {
                Some(endpoint) => Lookup::Hit(endpoint),
                None => Lookup::Miss,
            },
            Store::Redis(store) => store.lookup(upstream, id).await,
        };
        self.metrics.affinity.lookup(upstream, &result);
        result
    }

    /// Remember that `endpoint` of `upstream` holds `id`. Synchronous (called from a response
    /// body's `poll_frame`). Memory: inserts and returns `None`. Redis: inserts into the local
    /// cache and returns a future that completes once Redis acknowledged the SET or `timeout`
    /// passed. The write runs in its own task, so it finishes even if the future is dropped.
    /// `None` when there is nothing to wait for: too many writes already outstanding (counted
    /// as a dropped write), or Redis being skipped after repeated failures (a store error).
    pub fn learn(&self, upstream: &str, id: &str, endpoint: &Arc<str>) -> Option<LearnFuture> {
        self.metrics.affinity.learned(upstream);
        match &self.store {
            Store::Memory(table) => {
                table.insert(table.key(upstream, id), upstream, endpoint.clone());
                None
            }
            Store::Redis(store) => store.learn(upstream, id, endpoint),
        }
    }

    /// For start-up logs: `memory (capacity 100000, ttl 30d)` or
    /// `redis at redis://host:6379/ (ttl 30d, timeout 100ms, local cache 10000)`; never a password.
    pub fn describe(&self) -> String {
        let ttl = fmt_duration(self.ttl);
        match &self.store {
            Store::Memory(table) => format!("memory (capacity {}, ttl {ttl})", table.capacity()),
            Store::Redis(store) => format!(
                "redis at {} (ttl {ttl}, timeout {}, local cache {})",
                store.url(),
                fmt_duration(store.timeout()),
                store.local_capacity()
            ),
        }
    }
}

/// `30d`, `12h`, `5m`, `90s`, `100ms`: the largest unit that divides the duration.
fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs.is_multiple_of(size) {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

/// `url` with any password replaced by `***`: the userinfo's password (`user:***@`, or
/// `***@` for a bare secret) and `pass`/`password` query parameters (unix URLs).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return match url.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => url.to_owned(),
        };
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("***@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, Some(f)),
                None => (query, None),
            };
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _))
                        if k.eq_ignore_ascii_case("pass") || k.eq_ignore_ascii_case("password") =>
                    {
                        format!("{k}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            match fragment {
                Some(f) => format!("{path}?{}#{f}", query.join("&")),
                None => format!("{path}?{}", query.join("&")),
            }
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_the_largest_whole_unit() {
        assert_eq!(fmt_duration(Duration::from_secs(30 * 86_400)), "30d");
        assert_eq!(fmt_duration(Duration::from_secs(7_200)), "2h");
        assert_eq!(fmt_duration(Duration::from_secs(300)), "5m");
        assert_eq!(fmt_duration(Duration::from_secs(90)), "90s");
        assert_eq!(fmt_duration(Duration::from_millis(100)), "100ms");
        assert_eq!(fmt_duration(Duration::from_millis(1_500)), "1500ms");
        assert_eq!(fmt_duration(Duration::ZERO), "0ms");
    }

    #[test]
    fn passwords_never_show() {
        for (url, shown) in [
            ("redis://127.0.0.1:6379/", "redis://127.0.0.1:6379/"),
            (
                "redis://user:s3cret@host:6379/0",
                "redis://user:***@host:6379/0",
            ),
            ("redis://:s3cret@host", "redis://:***@host"),
            ("redis://s3cret@host/", "redis://***@host/"),
            (
                "redis+unix:///run/redis.sock",
                "redis+unix:///run/redis.sock",
            ),
            (
                "redis+unix:///run/redis.sock?db=2&pass=s3cret",
                "redis+unix:///run/redis.sock?db=2&pass=***",
            ),
            (
                "unix:///r.sock?password=s3cret#x",
                "unix:///r.sock?password=***#x",
            ),
            ("host:s3cret@x", "***@x"),
            ("nonsense", "nonsense"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
            assert!(!redact_url(url).contains("s3cret"));
        }
    }

    #[test]
    fn the_table_is_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<AffinityTable>();
        check::<Ring>();
    }
}
