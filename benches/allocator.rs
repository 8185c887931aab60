//! Allocator throughput and memory at 100,000 Services.
//!
//! For v4 /16 pools, a v6 /64 pool and a dual-stack pool, with one Service in ten sharing an IP
//! with its neighbour: allocate N Services, release them all, then replay them as a restart
//! would (every Service re-claiming what it held). Prints µs per operation, peak RSS, and how
//! per-operation cost grows from 10,000 to 100,000 Services (1.0 = linear total time).
//!
//!     cargo bench --bench allocator             # 10,000 and 100,000 Services
//!     cargo bench --bench allocator -- --quick  # 1,000 and 10,000: a smoke run for scripts/test

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use ferrolb::allocator::{Allocator, Mode, converge, rebuild};
use ferrolb::api::{IPAddressPool, IPAddressPoolSpec};
use ferrolb::config::{self, ClusterObjects, Family, Pool};
use ferrolb::service::{Protocol, Request};

fn pools(entries: &[(&str, &[&str])]) -> BTreeMap<String, Pool> {
    let mut objects = ClusterObjects::new("metallb-system");
    for (name, addrs) in entries {
        let spec = IPAddressPoolSpec {
            addresses: addrs.iter().map(|a| a.to_string()).collect(),
            ..Default::default()
        };
        objects.pools.push(IPAddressPool::new(name, spec));
    }
    config::parse(&objects).result.expect("bench pools are valid").pools
}

fn requests(n: usize, families: &[Family]) -> Vec<Request> {
    (0..n)
        .map(|i| {
            // Pairs (2k, 2k+1) for k % 5 == 0 share a key on different ports: 10% share.
            let shared = (i / 2) % 5 == 0;
            Request {
                key: format!("ns{}/svc{i}", i % 100),
                namespace: format!("ns{}", i % 100),
                labels: BTreeMap::new(),
                families: families.to_vec(),
                prefer_dual_stack: false,
                requested_ips: Vec::new(),
                pool: None,
                sharing_key: shared.then(|| format!("k{}", i / 2)),
                backend_key: String::new(),
                local_traffic: false,
                ports: [(Protocol::Tcp, if shared { 80 + (i % 2) as u16 } else { 80 })].into(),
                current_ips: Vec::new(),
                created: None,
                legacy_annotations: Vec::new(),
            }
        })
        .collect()
}

fn peak_rss_mib() -> f64 {
    status_mib("VmHWM:")
}

fn rss_mib() -> f64 {
    status_mib("VmRSS:")
}

fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    kib / 1024.0
}

struct Run {
    /// Resident memory the allocator's state added, per Service.
    state_bytes: f64,
    allocate_us: f64,
    release_us: f64,
    replan_us: f64,
}

fn run(pools: &BTreeMap<String, Pool>, reqs: &[Request]) -> Run {
    let n = reqs.len() as f64;
    let mut alloc = Allocator::new(pools);
    let rss_before = rss_mib();
    let t = Instant::now();
    for r in reqs {
        let out = converge(&mut alloc, r, Mode::Full);
        assert!(out.allocation.is_some(), "{}: {:?}", r.key, out.pending);
    }
    let allocate_us = t.elapsed().as_secs_f64() * 1e6 / n;
    let state_bytes = (rss_mib() - rss_before) * 1024.0 * 1024.0 / n;
    let held: Vec<Request> = reqs
        .iter()
        .map(|r| Request { current_ips: alloc.allocation(&r.key).unwrap().ips.clone(), ..r.clone() })
        .collect();
    let t = Instant::now();
    for r in reqs {
        black_box(alloc.release(&r.key));
    }
    let release_us = t.elapsed().as_secs_f64() * 1e6 / n;
    let mut fresh = Allocator::new(pools);
    let t = Instant::now();
    let outcomes = rebuild(&mut fresh, &held);
    let replan_us = t.elapsed().as_secs_f64() * 1e6 / n;
    for r in &held {
        assert_eq!(
            outcomes[&r.key].allocation.as_ref().map(|a| &a.ips),
            Some(&r.current_ips),
            "{} moved",
            r.key
        );
    }
    Run { state_bytes, allocate_us, release_us, replan_us }
}

fn main() {
    let scenarios: Vec<(&str, BTreeMap<String, Pool>, Vec<Family>)> = vec![
        ("v4-/16x2", pools(&[("a", &["10.0.0.0/16"]), ("b", &["10.1.0.0/16"])]), vec![Family::V4]),
        ("v6-/64", pools(&[("v6", &["2001:db8::/64"])]), vec![Family::V6]),
        (
            "dual-/16+/64",
            pools(&[("dual", &["10.2.0.0/15", "2001:db8:1::/64"])]),
            vec![Family::V4, Family::V6],
        ),
    ];
    println!(
        "{:<14} {:>8} {:>12} {:>11} {:>10} {:>12} {:>9}",
        "scenario", "services", "allocate_us", "release_us", "replan_us", "state_B/svc", "peak_mib"
    );
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes: [usize; 2] = if quick { [1_000, 10_000] } else { [10_000, 100_000] };
    let mut worst_largest: f64 = 0.0;
    for (name, pools, families) in &scenarios {
        let mut per_op = Vec::new();
        for n in sizes {
            let reqs = requests(n, families);
            let r = run(pools, &reqs);
            println!(
                "{name:<14} {n:>8} {:>12.2} {:>11.2} {:>10.2} {:>12.0} {:>9.1}",
                r.allocate_us,
                r.release_us,
                r.replan_us,
                r.state_bytes,
                peak_rss_mib()
            );
            per_op.push(r.allocate_us);
            if n == sizes[1] {
                worst_largest = worst_largest.max(r.allocate_us);
            }
        }
        println!(
            "{name:<14} scaling {}->{} per-allocation cost ratio={:.2} (1.00 = linear total time)",
            sizes[0],
            sizes[1],
            per_op[1] / per_op[0]
        );
    }
    let verdict = if worst_largest < 10.0 { "ok" } else { "MISSED" };
    println!("allocator worst_allocate_us_at_{}={worst_largest:.2} target<10 {verdict}", sizes[1]);
}
