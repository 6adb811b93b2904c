//! Spreading balanced requests over an upstream's usable endpoints: power of two choices on
//! in-flight requests per unit of weight (default), or weighted round robin.
//!
//! Both are lock-free: p2c reads two atomics and draws from a thread-local generator
//! (fastrand); round robin walks a precomputed smooth-weighted schedule with one atomic
//! counter. `benches/balance.rs` compares them on simulated endpoints of unequal speed.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::Balance;

/// What the balancer needs to know about each endpoint.
pub trait Candidate {
    fn weight(&self) -> u32;
    fn in_flight(&self) -> u32;
}

/// Longest round-robin schedule (the sum of weights is capped by config: 64 × 100).
const MAX_SCHEDULE: usize = 64 * 100;

pub enum Balancer {
    P2c,
    RoundRobin {
        /// Endpoint indexes in smooth weighted round-robin order (nginx's algorithm).
        schedule: Box<[u16]>,
        next: AtomicUsize,
    },
}

impl Balancer {
    pub fn new(kind: Balance, weights: &[u32]) -> Balancer {
        match kind {
            Balance::P2c => Balancer::P2c,
            Balance::RoundRobin => Balancer::RoundRobin {
                schedule: smooth_schedule(weights),
                // Replicas start at different points so they do not move in lockstep.
                next: AtomicUsize::new(fastrand::usize(..MAX_SCHEDULE)),
            },
        }
    }

    /// An endpoint among those `eligible(i)` accepts, or `None` if there is none.
    pub fn pick<C: Candidate>(
        &self,
        endpoints: &[C],
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        match self {
            Balancer::P2c => p2c(endpoints, &eligible),
            Balancer::RoundRobin { schedule, next } => {
                let len = schedule.len();
                if len == 0 {
                    return None;
                }
                let start = next.fetch_add(1, Ordering::Relaxed);
                (0..len)
                    .map(|k| usize::from(schedule[(start + k) % len]))
                    .find(|&i| eligible(i))
            }
        }
    }
}

/// Two weighted random draws among the eligible; the one with fewer in-flight requests per
/// unit of weight wins.
fn p2c<C: Candidate>(endpoints: &[C], eligible: &impl Fn(usize) -> bool) -> Option<usize> {
    let first = weighted_draw(endpoints, eligible)?;
    let Some(second) = weighted_draw(endpoints, |i| i != first && eligible(i)) else {
        return Some(first);
    };
    let (a, b) = (&endpoints[first], &endpoints[second]);
    // in_flight(a) / weight(a) <= in_flight(b) / weight(b), without division.
    let load_a = u64::from(a.in_flight()) * u64::from(b.weight());
    let load_b = u64::from(b.in_flight()) * u64::from(a.weight());
    Some(if load_a <= load_b { first } else { second })
}

fn weighted_draw<C: Candidate>(endpoints: &[C], eligible: impl Fn(usize) -> bool) -> Option<usize> {
    let total: u64 = endpoints
        .iter()
        .enumerate()
        .filter(|(i, _)| eligible(*i))
        .map(|(_, e)| u64::from(e.weight().max(1)))
        .sum();
    if total == 0 {
        return None;
    }
    let mut point = fastrand::u64(..total);
    for (i, e) in endpoints.iter().enumerate() {
        if !eligible(i) {
            continue;
        }
        let w = u64::from(e.weight().max(1));
        if point < w {
            return Some(i);
        }
        point -= w;
    }
    None
}

/// nginx's smooth weighted round robin, unrolled into one cycle: weights 5,1,1 give
/// a a b a c a a rather than a a a a a b c.
fn smooth_schedule(weights: &[u32]) -> Box<[u16]> {
    let weights: Vec<i64> = weights.iter().map(|w| i64::from((*w).max(1))).collect();
    let total: i64 = weights.iter().sum();
    let len = usize::try_from(total).unwrap_or(0).min(MAX_SCHEDULE);
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += w;
        }
        let Some((best, _)) = current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, -(*i as i64)))
        else {
            break;
        };
        current[best] -= total;
        out.push(u16::try_from(best).unwrap_or(0));
    }
    out.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct E(u32, u32);
    impl Candidate for E {
        fn weight(&self) -> u32 {
            self.0
        }
        fn in_flight(&self) -> u32 {
            self.1
        }
    }

    fn counts(b: &Balancer, eps: &[E], n: usize, eligible: impl Fn(usize) -> bool) -> Vec<usize> {
        let mut counts = vec![0; eps.len()];
        for _ in 0..n {
            if let Some(i) = b.pick(eps, &eligible) {
                counts[i] += 1;
            }
        }
        counts
    }

    #[test]
    fn smooth_schedule_interleaves() {
        assert_eq!(&*smooth_schedule(&[5, 1, 1]), &[0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(&*smooth_schedule(&[1, 1, 1]), &[0, 1, 2]);
        assert_eq!(&*smooth_schedule(&[2, 1]), &[0, 1, 0]);
    }

    #[test]
    fn round_robin_is_exact_and_skips_ineligible() {
        let eps = [E(1, 0), E(2, 0), E(1, 0)];
        let b = Balancer::new(Balance::RoundRobin, &[1, 2, 1]);
        assert_eq!(counts(&b, &eps, 400, |_| true), vec![100, 200, 100]);
        let c = counts(&b, &eps, 300, |i| i != 1);
        assert_eq!(c[1], 0);
        assert_eq!(c[0] + c[2], 300);
    }

    #[test]
    fn p2c_with_equal_load_follows_weights() {
        let eps = [E(1, 0), E(1, 0), E(2, 0)];
        let c = counts(&Balancer::P2c, &eps, 40_000, |_| true);
        // Expected shares with ties going to the first draw: 1/4, 1/4, 1/2.
        assert!((8_000..12_000).contains(&c[0]), "{c:?}");
        assert!((8_000..12_000).contains(&c[1]), "{c:?}");
        assert!((18_000..22_000).contains(&c[2]), "{c:?}");
    }

    #[test]
    fn p2c_avoids_the_loaded_endpoint() {
        let eps = [E(1, 50), E(1, 0), E(1, 0)];
        let c = counts(&Balancer::P2c, &eps, 3_000, |_| true);
        // The loaded one only wins when drawn twice, which p2c never does: never.
        assert_eq!(c[0], 0, "{c:?}");
    }

    #[test]
    fn none_when_nothing_is_eligible() {
        let eps = [E(1, 0), E(1, 0)];
        assert_eq!(Balancer::P2c.pick(&eps, |_| false), None);
        let rr = Balancer::new(Balance::RoundRobin, &[1, 1]);
        assert_eq!(rr.pick(&eps, |_| false), None);
        assert_eq!(Balancer::P2c.pick(&eps, |i| i == 1), Some(1));
    }
}
