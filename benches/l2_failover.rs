//! Layer 2 failover against the kernel's own ARP client: three nodes and a client on one
//! switch, speakers with membership. Each trial SIGKILLs the speaker answering for the Service
//! IP and times how long the client's neighbour entry takes to point at another node; the
//! killed speaker is then restarted for the next trial.
//!
//!     cargo bench --bench l2_failover            # 20 trials (needs root, arping)
//!     cargo bench --bench l2_failover -- --quick # 5 trials
//!
//! Prints `l2_failover p50=<ms> p99=<ms>` and `l2_reply_latency p50=<µs>` (ferrolb's ARP
//! answer as arping times it, beside the kernel's own answer for a node address in the same run).

#[allow(dead_code)]
#[path = "../tests/integration/fabric.rs"]
mod fabric;
#[allow(dead_code)]
#[path = "../tests/integration/frr_lab.rs"]
mod frr_lab;
#[allow(dead_code)]
#[path = "../tests/integration/frr_root.rs"]
mod frr_root;
#[allow(dead_code, unused_imports, unused_macros)]
#[path = "../tests/integration/l2_lab.rs"]
mod l2_lab;

use std::process::Command;
use std::time::{Duration, Instant};

use frr_lab::wait_for;
use l2_lab::{ALL, L2Lab, mac_index};

pub fn ferrolb_bin() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_ferrolb"))
}

const IP: &str = "192.0.2.200";

/// The live set in a speaker's latest plan line.
fn latest_live(log: &str) -> Option<&str> {
    log.lines().rev().find_map(|l| l.split("live=").nth(1))
}

fn settled(lab: &L2Lab) -> bool {
    let all = "Some({\"node1\", \"node2\", \"node3\"})";
    (0..3).all(|i| latest_live(&lab.log(i)) == Some(all))
        && lab.arping(IP).is_some_and(|m| m.lines().count() == 1)
}

/// arping's round-trip times for `ip`, in microseconds.
fn reply_times(lab: &L2Lab, ip: &str, count: usize) -> Vec<f64> {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.client.0, "arping", "-c", &count.to_string(), "-i", "eth0", ip])
        .output()
        .expect("arping runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let t = l.split("time=").nth(1)?;
            let (value, unit) = t.split_once(' ')?;
            let v: f64 = value.parse().ok()?;
            Some(if unit.starts_with("msec") { v * 1000.0 } else { v })
        })
        .collect()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    if let Some(why) = frr_lab::unavailable().filter(|w| w.contains("root")) {
        println!("skipped: {why}");
        return;
    }
    if !Command::new("sh").args(["-c", "command -v arping"]).output().is_ok_and(|o| o.status.success()) {
        println!("skipped: arping missing (apt-get install arping)");
        return;
    }
    let trials = if std::env::args().any(|a| a == "--quick") { 5 } else { 20 };
    let lab = L2Lab::start(ALL, 3, false);
    let mut speakers: Vec<_> = (0..3).map(|i| Some(lab.member(i, &[]))).collect();
    assert!(wait_for(Duration::from_secs(30), || settled(&lab)).is_some(), "{}", lab.log(0));

    let mut ours = reply_times(&lab, IP, 30);
    let mut kernel = reply_times(&lab, "192.0.2.11", 30);
    assert!(!ours.is_empty() && !kernel.is_empty(), "no arping times");

    let mut failovers = Vec::new();
    for trial in 0..trials {
        let owner = mac_index(&lab.arping(IP).expect("an owner")).expect("a lab MAC");
        lab.resolve(IP);
        // The kernel ignores ARP updates within a second of its last one (locktime).
        std::thread::sleep(Duration::from_millis(1100));
        let before = lab.neighbour(IP).expect("the client resolved the IP");
        let killed = Instant::now();
        drop(speakers[owner].take());
        let moved = wait_for(Duration::from_secs(10), || lab.neighbour(IP).is_some_and(|m| m != before));
        assert!(moved.is_some(), "trial {trial}: the neighbour entry never moved");
        failovers.push(killed.elapsed().as_secs_f64() * 1000.0);
        speakers[owner] = Some(lab.member(owner, &[]));
        assert!(
            wait_for(Duration::from_secs(30), || settled(&lab)).is_some(),
            "trial {trial}: never settled"
        );
    }
    let (p50, p99) = (pct(&mut failovers, 0.5), pct(&mut failovers, 0.99));
    println!(
        "l2_failover p50={p50:.0}ms p99={p99:.0}ms (n={trials}, SIGKILL of the answering speaker -> client's neighbour entry moved)"
    );
    println!(
        "l2_reply_latency p50={:.0}µs (the kernel answering for a node address, same run: p50={:.0}µs)",
        pct(&mut ours, 0.5),
        pct(&mut kernel, 0.5)
    );
}
