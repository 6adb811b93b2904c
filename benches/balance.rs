//! Endpoint balancing: p2c (in-flight per weight) against weighted round robin.
//!
//! Two parts: the cost of one pick (criterion), and a deterministic queueing simulation of
//! three endpoints where one is five times slower (a congested region), printing mean and p99
//! latency for each strategy. The simulation is what chose p2c as the default.
//!
//! `cargo bench --bench balance`

use std::cell::Cell;
use std::collections::VecDeque;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use switchyard::config::Balance;
use switchyard::upstream::balance::{Balancer, Candidate};

struct Ep {
    weight: u32,
    in_flight: Cell<u32>,
}

impl Candidate for Ep {
    fn weight(&self) -> u32 {
        self.weight
    }
    fn in_flight(&self) -> u32 {
        self.in_flight.get()
    }
}

fn pick_cost(c: &mut Criterion) {
    let eps: Vec<Ep> = (0..3)
        .map(|i| Ep {
            weight: 1,
            in_flight: Cell::new(i),
        })
        .collect();
    for (name, kind) in [("p2c", Balance::P2c), ("round_robin", Balance::RoundRobin)] {
        let b = Balancer::new(kind, &[1, 1, 1]);
        c.bench_function(&format!("pick/{name}/3 endpoints"), |bench| {
            bench.iter(|| b.pick(black_box(&eps), |_| true))
        });
    }
}

/// Each endpoint serves up to `slots` requests at once, each taking `service_ms`; arrivals
/// are evenly spaced at `load` of the pool's total capacity. Returns (mean, p99) latency in ms.
fn simulate(kind: Balance, service_ms: &[f64], slots: usize, load: f64, n: usize) -> (f64, f64) {
    let capacity: f64 = service_ms.iter().map(|s| slots as f64 / s).sum();
    let gap = 1.0 / (capacity * load);
    let eps: Vec<Ep> = service_ms
        .iter()
        .map(|_| Ep {
            weight: 1,
            in_flight: Cell::new(0),
        })
        .collect();
    let b = Balancer::new(kind, &vec![1; service_ms.len()]);
    // Per endpoint: finish times of its requests (in order of start), and slot free times.
    let mut finishing: Vec<VecDeque<f64>> = vec![VecDeque::new(); eps.len()];
    let mut slots_free: Vec<Vec<f64>> = vec![vec![0.0; slots]; eps.len()];
    let mut latencies = Vec::with_capacity(n);
    for k in 0..n {
        let now = k as f64 * gap;
        for (i, f) in finishing.iter_mut().enumerate() {
            f.retain(|&t| t > now);
            eps[i].in_flight.set(f.len() as u32);
        }
        let Some(i) = b.pick(&eps, |_| true) else {
            continue;
        };
        let Some(slot) = slots_free[i].iter_mut().min_by(|a, b| a.total_cmp(b)) else {
            continue;
        };
        let start = now.max(*slot);
        let done = start + service_ms[i];
        *slot = done;
        finishing[i].push_back(done);
        latencies.push(done - now);
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    let mean = latencies.iter().sum::<f64>() / latencies.len() as f64;
    let p99 = latencies[latencies.len() * 99 / 100];
    (mean, p99)
}

fn simulation(_c: &mut Criterion) {
    println!("\nsimulated pool: 3 endpoints x 8 slots, service 100/100/500 ms (one slow region)");
    println!("| load | strategy | mean ms | p99 ms |\n|---|---|---|---|");
    for load in [0.5, 0.7, 0.9] {
        for (name, kind) in [("p2c", Balance::P2c), ("round_robin", Balance::RoundRobin)] {
            let (mean, p99) = simulate(kind, &[100.0, 100.0, 500.0], 8, load, 200_000);
            println!("| {load:.1} | {name} | {mean:.0} | {p99:.0} |");
        }
    }
    println!("\nsimulated pool: 3 equal endpoints x 8 slots, service 100 ms");
    println!("| load | strategy | mean ms | p99 ms |\n|---|---|---|---|");
    for load in [0.7, 0.9] {
        for (name, kind) in [("p2c", Balance::P2c), ("round_robin", Balance::RoundRobin)] {
            let (mean, p99) = simulate(kind, &[100.0, 100.0, 100.0], 8, load, 200_000);
            println!("| {load:.1} | {name} | {mean:.0} | {p99:.0} |");
        }
    }
}

criterion_group!(benches, pick_cost, simulation);
criterion_main!(benches);
