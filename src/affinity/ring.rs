//! Consistent hashing of session keys (`Mcp-Session-Id`, AgentCore session ids) onto the
//! endpoints of one upstream, so that every replica sends a session to the same endpoint
//! without sharing any state.
//!
//! The ring is pingora-ketama's `Continuum` (nginx-compatible ketama: 160 points per unit of
//! weight, crc32 of the key). Its nodes are `SocketAddr`s, so each endpoint *name* is given a
//! synthetic address: the name's FNV-1a-128 hash read as an IPv6 address (port 0). Both
//! hashes are fixed functions of bytes (no `std` hasher, no random seed), and the buckets are
//! handed to the continuum sorted by that address, so **the same set of names and weights
//! yields the same ring on every replica, whatever the order of the endpoints in the config**;
//! a key's owner changes only when the set or the weights change, and removing an endpoint
//! moves only the keys it owned.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use pingora_ketama::{Bucket, Continuum};

/// Weights are clamped to `1..=MAX_WEIGHT` (ketama gives 160 points per unit of weight; the
/// config allows at most 100).
pub const MAX_WEIGHT: u32 = 1000;

/// A consistent-hash ring over the endpoints of one upstream.
pub struct Ring {
    continuum: Continuum,
    /// One entry per distinct endpoint name, sorted by synthetic address: the address and the
    /// endpoint's index in the slice given to [`Ring::new`].
    nodes: Vec<(SocketAddr, usize)>,
    /// Points on the ring (an upper bound: ketama drops colliding points); one full turn.
    points: usize,
}

impl Ring {
    /// A ring over `endpoints` (name, weight). A weight of 0 counts as 1 and weights above
    /// [`MAX_WEIGHT`] count as `MAX_WEIGHT`; a name listed twice counts once (its first entry).
    pub fn new(endpoints: &[(&str, u32)]) -> Ring {
        let mut nodes: Vec<(SocketAddr, usize, u32)> = endpoints
            .iter()
            .enumerate()
            .map(|(index, (name, weight))| {
                (synthetic_addr(name), index, (*weight).clamp(1, MAX_WEIGHT))
            })
            .collect();
        // Sorting by address makes the continuum independent of the config's order; the index
        // breaks ties so that a duplicate name keeps its first entry.
        nodes.sort_by_key(|&(addr, index, _)| (addr, index));
        nodes.dedup_by_key(|node| node.0);
        let buckets: Vec<Bucket> = nodes
            .iter()
            .map(|&(addr, _, weight)| Bucket::new(addr, weight))
            .collect();
        let points = nodes
            .iter()
            .map(|&(_, _, weight)| {
                weight as usize * pingora_ketama::DEFAULT_POINT_MULTIPLE as usize
            })
            .sum();
        Ring {
            continuum: Continuum::new(&buckets),
            nodes: nodes
                .into_iter()
                .map(|(addr, index, _)| (addr, index))
                .collect(),
            points,
        }
    }

    /// Endpoint indexes (into the slice given to [`Ring::new`]) in ring order for `key`: the
    /// first is the key's owner, then the endpoints met walking the ring onwards, each once,
    /// until every endpoint has been given. Empty for an empty ring.
    pub fn candidates(&self, key: &[u8]) -> impl Iterator<Item = usize> + '_ {
        Candidates {
            ring: self,
            walk: self.continuum.node_iter(key),
            steps_left: self.points,
            seen: Seen::new(self.nodes.len()),
            given: 0,
            rest: 0,
        }
    }

    /// Position of `addr` in `nodes`.
    fn position(&self, addr: &SocketAddr) -> Option<usize> {
        self.nodes.binary_search_by_key(addr, |&(a, _)| a).ok()
    }
}

/// The synthetic node address of an endpoint name: FNV-1a-128 of its bytes as an IPv6
/// address, port 0. Stable across builds, platforms and Rust versions.
fn synthetic_addr(name: &str) -> SocketAddr {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let hash = name
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u128::from(b)).wrapping_mul(PRIME));
    SocketAddr::new(IpAddr::V6(Ipv6Addr::from(hash)), 0)
}

/// Which endpoints (positions in `Ring::nodes`) a walk has already given.
enum Seen {
    Small(u128),
    Large(Vec<bool>),
}

impl Seen {
    fn new(n: usize) -> Seen {
        if n <= 128 {
            Seen::Small(0)
        } else {
            Seen::Large(vec![false; n])
        }
    }

    /// Mark `pos`; true if it was not marked before.
    fn insert(&mut self, pos: usize) -> bool {
        match self {
            Seen::Small(bits) => {
                let bit = 1u128 << pos;
                let fresh = *bits & bit == 0;
                *bits |= bit;
                fresh
            }
            Seen::Large(marks) => match marks.get_mut(pos) {
                Some(mark) => !std::mem::replace(mark, true),
                None => false,
            },
        }
    }
}

/// The iterator behind [`Ring::candidates`].
struct Candidates<'a> {
    ring: &'a Ring,
    walk: pingora_ketama::NodeIterator<'a>,
    /// Points still to visit before the walk has gone once round the ring.
    steps_left: usize,
    seen: Seen,
    /// Endpoints given so far.
    given: usize,
    /// After the walk: the next position in `nodes` to check for an endpoint never met
    /// (only possible if all of its points collided with others').
    rest: usize,
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let nodes = &self.ring.nodes;
        if self.given >= nodes.len() {
            return None;
        }
        while self.steps_left > 0 {
            self.steps_left -= 1;
            let Some(addr) = self.walk.next() else { break };
            if let Some(pos) = self.ring.position(addr) {
                if self.seen.insert(pos) {
                    self.given += 1;
                    return nodes.get(pos).map(|&(_, index)| index);
                }
            }
        }
        while self.rest < nodes.len() {
            let pos = self.rest;
            self.rest += 1;
            if self.seen.insert(pos) {
                self.given += 1;
                return nodes.get(pos).map(|&(_, index)| index);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn owner<'a>(ring: &Ring, endpoints: &[(&'a str, u32)], key: &str) -> &'a str {
        let index = ring.candidates(key.as_bytes()).next().unwrap();
        endpoints[index].0
    }

    fn keys(n: usize) -> impl Iterator<Item = String> {
        (0..n).map(|i| format!("mcp-session-{i:08}"))
    }

    #[test]
    fn same_owner_regardless_of_endpoint_order() {
        let a = [
            ("eastus", 1),
            ("westeurope", 2),
            ("japaneast", 1),
            ("uksouth", 3),
        ];
        let b = [
            ("uksouth", 3),
            ("japaneast", 1),
            ("eastus", 1),
            ("westeurope", 2),
        ];
        let ring_a = Ring::new(&a);
        let ring_b = Ring::new(&b);
        for key in keys(2000) {
            let names_a: Vec<&str> = ring_a.candidates(key.as_bytes()).map(|i| a[i].0).collect();
            let names_b: Vec<&str> = ring_b.candidates(key.as_bytes()).map(|i| b[i].0).collect();
            assert_eq!(names_a, names_b, "key {key}");
        }
    }

    #[test]
    fn the_ring_is_a_fixed_function_of_names_and_weights() {
        // Pinned values: a change here means replicas of different versions would disagree
        // on where a session lives.
        assert_eq!(
            synthetic_addr("a").to_string(),
            "[d228:cb69:6f1a:8caf:7891:2b70:4e4a:8964]:0"
        );
        let endpoints = [("a", 1), ("b", 1), ("c", 1)];
        let ring = Ring::new(&endpoints);
        let owners: Vec<&str> = ["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"]
            .iter()
            .map(|k| owner(&ring, &endpoints, k))
            .collect();
        assert_eq!(owners, vec!["b", "c", "a", "c", "a", "a", "a", "a"]);
    }

    #[test]
    fn weights_are_roughly_honoured() {
        let endpoints = [("one", 1), ("two", 2), ("three", 3), ("four", 4)];
        let ring = Ring::new(&endpoints);
        let mut counts: HashMap<&str, usize> = HashMap::new();
        let n = 10_000;
        for key in keys(n) {
            *counts.entry(owner(&ring, &endpoints, &key)).or_default() += 1;
        }
        let total_weight: u32 = endpoints.iter().map(|e| e.1).sum();
        for (name, weight) in endpoints {
            let expected = n as f64 * f64::from(weight) / f64::from(total_weight);
            let got = counts.get(name).copied().unwrap_or(0) as f64;
            assert!(
                (got - expected).abs() <= expected * 0.15,
                "{name} (weight {weight}) owns {got} of {n} keys, expected about {expected}: {counts:?}"
            );
        }
    }

    #[test]
    fn candidates_give_every_endpoint_once_owner_first() {
        let endpoints = [("a", 1), ("b", 5), ("c", 1), ("d", 2), ("e", 1)];
        let ring = Ring::new(&endpoints);
        for key in keys(500) {
            let all: Vec<usize> = ring.candidates(key.as_bytes()).collect();
            let mut sorted = all.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, vec![0, 1, 2, 3, 4], "key {key}: {all:?}");
            assert_eq!(all[0], ring.candidates(key.as_bytes()).next().unwrap());
        }
    }

    #[test]
    fn removing_an_endpoint_moves_only_its_keys() {
        let before = [("a", 1), ("b", 2), ("c", 1), ("d", 1)];
        let after = [("a", 1), ("b", 2), ("d", 1)];
        let ring_before = Ring::new(&before);
        let ring_after = Ring::new(&after);
        let mut moved = 0;
        for key in keys(10_000) {
            let old = owner(&ring_before, &before, &key);
            let new = owner(&ring_after, &after, &key);
            if old == "c" {
                moved += 1;
                // The new owner is the next endpoint on c's walk.
                let next = ring_before
                    .candidates(key.as_bytes())
                    .map(|i| before[i].0)
                    .nth(1)
                    .unwrap();
                assert_eq!(new, next, "key {key}");
            } else {
                assert_eq!(old, new, "key {key} moved from {old} to {new}");
            }
        }
        assert!(moved > 1000, "c owned only {moved} keys");
    }

    #[test]
    fn edge_cases_do_not_panic() {
        let empty = Ring::new(&[]);
        assert_eq!(empty.candidates(b"k").count(), 0);
        let single = Ring::new(&[("only", 0)]);
        assert_eq!(single.candidates(b"k").collect::<Vec<_>>(), vec![0]);
        let heavy = Ring::new(&[("a", u32::MAX), ("b", 1)]);
        assert_eq!(heavy.candidates(b"k").count(), 2);
        // A duplicate name counts once, under its first index.
        let dup = Ring::new(&[("a", 1), ("b", 1), ("a", 3)]);
        let mut all: Vec<usize> = dup.candidates(b"k").collect();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1]);
    }

    #[test]
    fn many_endpoints_use_the_large_seen_set() {
        let names: Vec<String> = (0..200).map(|i| format!("ep{i}")).collect();
        let endpoints: Vec<(&str, u32)> = names.iter().map(|n| (n.as_str(), 1)).collect();
        let ring = Ring::new(&endpoints);
        let mut all: Vec<usize> = ring.candidates(b"key").collect();
        all.sort_unstable();
        assert_eq!(all, (0..200).collect::<Vec<_>>());
    }
}
