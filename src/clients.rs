//! Who may call the gateway, and how often (`[[clients]]`): API keys kept as SHA-256
//! digests and compared in constant time, or TLS client certificates by their SHA-256; a
//! token bucket per client (GCRA on one atomic, no lock).
//!
//! When `[[clients]]` is configured, a request that names no known client gets 401 and
//! reaches no upstream; one over its client's rate gets 429 with `Retry-After`. The client's
//! name is a metric label, bounded by the config.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderMap, HeaderName};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::config::{Client, Rate};

/// The SHA-256 of the TLS client certificate (DER) a connection presented; put on each of
/// its requests by the listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientCert(pub [u8; 32]);

/// Headers a gateway API key may come in, in the order they are looked at.
const KEY_HEADERS: [HeaderName; 3] = [
    header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("api-key"),
];

/// The outcome of [`Clients::check`].
#[derive(Debug, PartialEq)]
pub enum Verdict<'a> {
    /// A known client within its rate.
    Allowed(&'a str),
    /// No known key or certificate.
    Unauthenticated,
    /// A known client over its rate; it may try again after this long.
    RateLimited {
        client: &'a str,
        retry_after: Duration,
    },
}

/// The configured clients.
pub struct Clients {
    entries: Box<[Entry]>,
}

struct Entry {
    name: String,
    key: Option<[u8; 32]>,
    cert: Option<[u8; 32]>,
    rate: Option<Rate>,
    bucket: Option<Arc<Bucket>>,
}

impl Clients {
    /// `None` when no client is configured (anyone may call). Buckets of `previous` (the
    /// running config, on reload) carry over for clients whose rate is unchanged, so a reload
    /// never hands out a fresh burst.
    pub fn new(config: &[Client], previous: Option<&Clients>) -> Option<Clients> {
        if config.is_empty() {
            return None;
        }
        let entries = config
            .iter()
            .map(|c| {
                let kept = previous.and_then(|p| {
                    p.entries
                        .iter()
                        .find(|e| e.name == c.name && e.rate == c.rate)
                        .and_then(|e| e.bucket.clone())
                });
                Entry {
                    name: c.name.clone(),
                    key: c.api_key_sha256,
                    cert: c.cert_sha256,
                    rate: c.rate,
                    bucket: kept.or_else(|| c.rate.map(|r| Arc::new(Bucket::new(r)))),
                }
            })
            .collect();
        Some(Clients { entries })
    }

    /// The client names, for metrics.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// Identify the caller by its certificate, else by an API key in `headers` (which is
    /// then removed: a gateway key never goes further), and take one token from its bucket.
    pub fn check(&self, headers: &mut HeaderMap, cert: Option<&ClientCert>) -> Verdict<'_> {
        let entry = cert
            .and_then(|cert| self.find(|e| e.cert.as_ref(), &cert.0))
            .or_else(|| {
                let presented = presented_key(headers)?;
                self.find(|e| e.key.as_ref(), &presented)
            });
        for name in KEY_HEADERS {
            headers.remove(name);
        }
        let Some(entry) = entry else {
            return Verdict::Unauthenticated;
        };
        match entry.bucket.as_deref().map(Bucket::take) {
            Some(Err(retry_after)) => Verdict::RateLimited {
                client: &entry.name,
                retry_after,
            },
            _ => Verdict::Allowed(&entry.name),
        }
    }

    /// The entry whose digest (`which`) equals `digest`. Every entry is compared, each in
    /// constant time, so the time taken says nothing about which (or how much) matched.
    fn find(
        &self,
        which: impl Fn(&Entry) -> Option<&[u8; 32]>,
        digest: &[u8; 32],
    ) -> Option<&Entry> {
        let mut found = None;
        for entry in self.entries.iter() {
            if let Some(stored) = which(entry) {
                if constant_time_eq(stored, digest) && found.is_none() {
                    found = Some(entry);
                }
            }
        }
        found
    }
}

/// The SHA-256 of the API key the request presents, if any.
fn presented_key(headers: &HeaderMap) -> Option<[u8; 32]> {
    KEY_HEADERS.iter().find_map(|name| {
        let value = headers.get(name)?.as_bytes();
        let key = if *name == header::AUTHORIZATION {
            let (scheme, rest) = value.split_at(value.len().min(7));
            if !scheme.eq_ignore_ascii_case(b"bearer ") {
                return None;
            }
            rest
        } else {
            value
        };
        let key = key.trim_ascii();
        (!key.is_empty()).then(|| Sha256::digest(key).into())
    })
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A token bucket as GCRA: the "theoretical arrival time" of the next request, in ns since
/// `epoch`, moved forward by one emission interval per request taken.
struct Bucket {
    tat: AtomicU64,
    interval_ns: u64,
    /// How far ahead of now the TAT may run: `burst` intervals.
    capacity_ns: u64,
    epoch: Instant,
}

impl Bucket {
    fn new(rate: Rate) -> Bucket {
        let interval_ns = (1e9 / rate.per_second).max(1.0) as u64;
        Bucket {
            tat: AtomicU64::new(0),
            interval_ns,
            capacity_ns: interval_ns.saturating_mul(u64::from(rate.burst)),
            epoch: Instant::now(),
        }
    }

    /// Take one token, or say how long until one is there.
    fn take(&self) -> Result<(), Duration> {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now).saturating_add(self.interval_ns);
            let ahead = next - now;
            if ahead > self.capacity_ns {
                return Err(Duration::from_nanos(ahead - self.capacity_ns));
            }
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn client(name: &str, key: Option<&str>, rate: Option<Rate>) -> Client {
        Client {
            name: name.to_owned(),
            api_key_sha256: key.map(|k| Sha256::digest(k.as_bytes()).into()),
            cert_sha256: None,
            rate,
        }
    }

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn keys_are_found_in_each_header_and_removed() {
        let clients = Clients::new(&[client("app", Some("sk-gw-1"), None)], None).unwrap();
        for (name, value) in [
            ("authorization", "Bearer sk-gw-1"),
            ("authorization", "bearer   sk-gw-1 "),
            ("x-api-key", "sk-gw-1"),
            ("api-key", "sk-gw-1"),
        ] {
            let mut h = headers(name, value);
            assert_eq!(
                clients.check(&mut h, None),
                Verdict::Allowed("app"),
                "{name}: {value}"
            );
            assert!(h.is_empty(), "the key is not forwarded");
        }
        for (name, value) in [
            ("authorization", "Bearer sk-gw-2"),
            ("authorization", "Basic sk-gw-1"),
            ("authorization", "Bearer "),
            ("x-other", "sk-gw-1"),
        ] {
            let mut h = headers(name, value);
            assert_eq!(
                clients.check(&mut h, None),
                Verdict::Unauthenticated,
                "{name}: {value}"
            );
        }
    }

    #[test]
    fn a_certificate_identifies_before_a_key() {
        let mut by_cert = client("by-cert", None, None);
        by_cert.cert_sha256 = Some([7; 32]);
        let clients = Clients::new(&[client("by-key", Some("k"), None), by_cert], None).unwrap();
        let mut h = headers("authorization", "Bearer k");
        assert_eq!(
            clients.check(&mut h, Some(&ClientCert([7; 32]))),
            Verdict::Allowed("by-cert")
        );
        let mut h = HeaderMap::new();
        assert_eq!(
            clients.check(&mut h, Some(&ClientCert([8; 32]))),
            Verdict::Unauthenticated
        );
    }

    #[test]
    fn the_bucket_allows_the_burst_then_says_when_to_retry() {
        let rate = Rate {
            per_second: 10.0,
            burst: 3,
        };
        let clients = Clients::new(&[client("app", Some("k"), Some(rate))], None).unwrap();
        let take = || clients.check(&mut headers("x-api-key", "k"), None);
        for _ in 0..3 {
            assert_eq!(take(), Verdict::Allowed("app"));
        }
        match take() {
            Verdict::RateLimited {
                client,
                retry_after,
            } => {
                assert_eq!(client, "app");
                assert!(retry_after <= Duration::from_millis(100), "{retry_after:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_reload_keeps_the_bucket_of_an_unchanged_client() {
        let rate = Rate {
            per_second: 1.0,
            burst: 1,
        };
        let config = [client("app", Some("k"), Some(rate))];
        let first = Clients::new(&config, None).unwrap();
        assert_eq!(
            first.check(&mut headers("x-api-key", "k"), None),
            Verdict::Allowed("app")
        );
        let second = Clients::new(&config, Some(&first)).unwrap();
        assert!(matches!(
            second.check(&mut headers("x-api-key", "k"), None),
            Verdict::RateLimited { .. }
        ));
        let faster = [client(
            "app",
            Some("k"),
            Some(Rate {
                per_second: 5.0,
                burst: 1,
            }),
        )];
        let third = Clients::new(&faster, Some(&second)).unwrap();
        assert_eq!(
            third.check(&mut headers("x-api-key", "k"), None),
            Verdict::Allowed("app")
        );
    }
}
