//! The id -> endpoint affinity table: size, lookups, learned ids, store errors (issue #4).
//!
//! Per-upstream handles are resolved once, at construction, into a map that is never written
//! again: recording a lookup or a learned id is a map read plus an atomic add. An upstream
//! that was not named at construction still works (through the label vector), it just takes
//! the slower path.

use std::collections::HashMap;

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::gauge_vec;

use crate::affinity::{Lookup, StoreOp};

/// The series of one upstream, resolved once.
struct PerUpstream {
    entries: IntGauge,
    learned: IntCounter,
    hit: IntCounter,
    miss: IntCounter,
    error: IntCounter,
}

impl PerUpstream {
    fn new(
        upstream: &str,
        entries: &IntGaugeVec,
        learned: &IntCounterVec,
        lookups: &IntCounterVec,
    ) -> PerUpstream {
        let lookup = |result: &Lookup| lookups.with_label_values(&[upstream, result.as_str()]);
        PerUpstream {
            entries: entries.with_label_values(&[upstream]),
            learned: learned.with_label_values(&[upstream]),
            hit: lookup(&Lookup::Hit("".into())),
            miss: lookup(&Lookup::Miss),
            error: lookup(&Lookup::Error),
        }
    }

    fn lookup(&self, result: &Lookup) -> &IntCounter {
        match result {
            Lookup::Hit(_) => &self.hit,
            Lookup::Miss => &self.miss,
            Lookup::Error => &self.error,
        }
    }
}

/// Metrics of the affinity table (`crate::affinity::AffinityTable`).
pub struct AffinityMetrics {
    entries: IntGaugeVec,
    learned: IntCounterVec,
    lookups: IntCounterVec,
    store_errors: IntCounterVec,
    dropped_writes: IntCounter,
    known: HashMap<String, PerUpstream>,
}

impl AffinityMetrics {
    /// Register the affinity metrics; `upstreams` get every per-upstream series at zero.
    pub fn new(
        registry: &Registry,
        upstreams: &[&str],
    ) -> Result<AffinityMetrics, prometheus::Error> {
        let entries = gauge_vec(
            registry,
            "switchyard_affinity_entries",
            "Learned ids held by this replica, per upstream: the whole table with the memory \
             store, the local cache in front of Redis with the redis store. Approximate: an \
             expired or evicted entry counts until the cache's housekeeping removes it.",
            &["upstream"],
        )?;
        let learned = IntCounterVec::new(
            Opts::new(
                "switchyard_affinity_learned_total",
                "Ids learned from responses (id -> endpoint), per upstream.",
            ),
            &["upstream"],
        )?;
        registry.register(Box::new(learned.clone()))?;
        let lookups = IntCounterVec::new(
            Opts::new(
                "switchyard_affinity_lookups_total",
                "Affinity lookups of an id, per upstream and result (hit, miss, error: the store \
                 did not answer in time).",
            ),
            &["upstream", "result"],
        )?;
        registry.register(Box::new(lookups.clone()))?;
        let store_errors = IntCounterVec::new(
            Opts::new(
                "switchyard_affinity_store_errors_total",
                "Failed or timed-out operations on the shared affinity store (Redis), by operation.",
            ),
            &["op"],
        )?;
        registry.register(Box::new(store_errors.clone()))?;
        let dropped_writes = IntCounter::new(
            "switchyard_affinity_dropped_writes_total",
            "Learned ids not written to the shared store because too many writes were already \
             outstanding (the store is slow or down); they stay in the local cache.",
        )?;
        registry.register(Box::new(dropped_writes.clone()))?;

        for op in StoreOp::ALL {
            store_errors.with_label_values(&[op.as_str()]);
        }
        let known = upstreams
            .iter()
            .map(|up| {
                let series = PerUpstream::new(up, &entries, &learned, &lookups);
                ((*up).to_owned(), series)
            })
            .collect();
        Ok(AffinityMetrics {
            entries,
            learned,
            lookups,
            store_errors,
            dropped_writes,
            known,
        })
    }

    /// A lookup of an id on `upstream` ended with `result`.
    pub fn lookup(&self, upstream: &str, result: &Lookup) {
        match self.known.get(upstream) {
            Some(series) => series.lookup(result).inc(),
            None => self
                .lookups
                .with_label_values(&[upstream, result.as_str()])
                .inc(),
        }
    }

    /// An id of `upstream` was learned.
    pub fn learned(&self, upstream: &str) {
        match self.known.get(upstream) {
            Some(series) => series.learned.inc(),
            None => self.learned.with_label_values(&[upstream]).inc(),
        }
    }

    /// The table gained (`delta` = 1) or lost (`delta` = -1) an entry of `upstream`.
    pub fn entries_add(&self, upstream: &str, delta: i64) {
        match self.known.get(upstream) {
            Some(series) => series.entries.add(delta),
            None => self.entries.with_label_values(&[upstream]).add(delta),
        }
    }

    /// An operation on the shared store failed or timed out.
    pub fn store_error(&self, op: StoreOp) {
        self.store_errors.with_label_values(&[op.as_str()]).inc();
    }

    /// A learned id was not written to the shared store (too many writes outstanding).
    pub fn dropped_write(&self) {
        self.dropped_writes.inc();
    }
}

#[cfg(test)]
mod tests {
    use prometheus::Encoder;

    use super::*;

    #[test]
    fn series_exist_at_zero_and_count() {
        let registry = Registry::new();
        let m = AffinityMetrics::new(&registry, &["a", "b"]).unwrap();
        let text = |registry: &Registry| {
            let mut out = Vec::new();
            prometheus::TextEncoder::new()
                .encode(&registry.gather(), &mut out)
                .unwrap();
            String::from_utf8(out).unwrap()
        };
        let before = text(&registry);
        for line in [
            "switchyard_affinity_entries{upstream=\"b\"} 0",
            "switchyard_affinity_learned_total{upstream=\"a\"} 0",
            "switchyard_affinity_lookups_total{result=\"error\",upstream=\"b\"} 0",
            "switchyard_affinity_store_errors_total{op=\"set\"} 0",
            "switchyard_affinity_dropped_writes_total 0",
        ] {
            assert!(before.contains(line), "missing {line} in\n{before}");
        }
        m.lookup("a", &Lookup::Hit("e1".into()));
        m.lookup("other", &Lookup::Miss);
        m.learned("a");
        m.entries_add("a", 1);
        m.store_error(StoreOp::Get);
        m.dropped_write();
        let after = text(&registry);
        for line in [
            "switchyard_affinity_lookups_total{result=\"hit\",upstream=\"a\"} 1",
            "switchyard_affinity_lookups_total{result=\"miss\",upstream=\"other\"} 1",
            "switchyard_affinity_learned_total{upstream=\"a\"} 1",
            "switchyard_affinity_entries{upstream=\"a\"} 1",
            "switchyard_affinity_store_errors_total{op=\"get\"} 1",
            "switchyard_affinity_dropped_writes_total 1",
        ] {
            assert!(after.contains(line), "missing {line} in\n{after}");
        }
    }
}
