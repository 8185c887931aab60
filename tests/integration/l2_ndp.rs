//! Every neighbour solicitation for a Service IP reaches its owner and is answered: multicast and
//! unicast, with and without the asker's link-layer address option, and duplicate address
//! detection defended. Routers and switches confirm a neighbour with unicast solicitations
//! (RFC 4861 §7.2.2); a Linux client does too, so its entry must go STALE → DELAY → PROBE →
//! REACHABLE and never FAILED (MetalLB #2920).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fabric::{Running, sh};
use crate::frr_lab::wait_for;
use crate::l2_lab::{ALL, L2Lab};
use crate::l2_wire::{Seen, client_mac, probe};

const IP6: &str = "2001:db8:10::200";
const NODE_MACS: [&str; 2] = ["02:00:00:00:00:11", "02:00:00:00:00:12"];

fn skip() -> bool {
    let why = crate::l2_lab::unavailable();
    if let Some(why) = &why {
        println!("skipped: {why}");
    }
    why.is_some()
}

fn logs(lab: &L2Lab) -> String {
    (0..lab.nodes.len()).map(|i| format!("--- node{}\n{}", i + 1, lab.log(i))).collect()
}

/// Two nodes' speakers answering for the lab's dual-stack Service, and the owner's MAC once
/// ndisc6 (a multicast solicitation) gets an answer.
fn started() -> (L2Lab, Vec<Running>, String) {
    let lab = L2Lab::start(ALL, 2, false);
    let speakers = (0..2).map(|i| lab.speaker_with(i, &["--live-nodes", "node1,node2"])).collect();
    let answered = wait_for(Duration::from_secs(15), || lab.ndisc6(IP6).is_some());
    assert!(answered.is_some(), "no NDP answer\n{}", logs(&lab));
    let owner = lab.ndisc6(IP6).unwrap_or_default();
    assert!(NODE_MACS.contains(&owner.as_str()), "answered by {owner}");
    // The takeover's unsolicited advertisements (up to 4.4 s after the IP was gained) would
    // otherwise pass for answers.
    std::thread::sleep(Duration::from_secs(5));
    (lab, speakers, owner)
}

/// What every answer must say: the owner speaks for the Service IP, from it, on-link.
fn check_answer(kind: &str, na: &Seen, owner: &str, client: &str) {
    let (eth_dst, ip_dst, solicited) = match kind {
        "dad" => ("33:33:00:00:00:01", "ff02::1", "0"),
        _ => (client, "2001:db8:10::100", "1"),
    };
    let want = [
        ("eth_src", owner),
        ("tlla", owner),
        ("ip_src", IP6),
        ("hop", "255"),
        ("o", "1"),
        ("eth_dst", eth_dst),
        ("ip_dst", ip_dst),
        ("s", solicited),
    ];
    for (key, value) in want {
        assert_eq!(na.get(key), value, "{kind}: {key} of {na:?}");
    }
}

#[test]
fn every_kind_of_neighbour_solicitation_is_answered_by_the_owner() {
    if skip() {
        return;
    }
    let (lab, _speakers, owner) = started();
    let client = client_mac(&lab);
    let mut figures = Vec::new();
    for kind in ["multicast", "unicast", "unicast-no-slla", "dad"] {
        let seen = probe(&lab, kind, IP6, &owner, 1.0);
        assert_eq!(seen.len(), 1, "{kind} solicitation: answers {seen:?}\n{}", logs(&lab));
        check_answer(kind, &seen[0], &owner, &client);
        figures.push(format!("{kind} {:.1} ms", seen[0].at * 1000.0));
    }
    // A unicast solicitation for another node's MAC is not ours to answer, whoever asks; nor is
    // an address of the pool no Service holds.
    let other = NODE_MACS.iter().find(|m| **m != owner).copied().unwrap_or_default();
    assert_eq!(probe(&lab, "unicast", IP6, other, 0.5).len(), 0, "answered at another node's MAC");
    assert_eq!(probe(&lab, "multicast", "2001:db8:10::201", &owner, 0.5).len(), 0);
    println!("solicitations for {IP6} answered by {owner}, once each: {}", figures.join(", "));
}

/// The state of the client's entry for `ip` (the last word `ip neigh` prints), if it has one.
fn state(lab: &L2Lab, ip: &str) -> Option<String> {
    let out = Command::new("ip")
        .args(["-n", &lab.client.0, "-6", "neigh", "show", ip, "dev", "eth0"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).split_whitespace().last().map(String::from)
}

/// The client's entry for `ip`, STALE at `since`, sampled until it is REACHABLE again after
/// leaving STALE (or has FAILED, or 10 s passed): each state with when it was first seen.
fn follow(lab: &L2Lab, ip: &str, since: Instant) -> Vec<(Duration, String)> {
    let mut states = vec![(Duration::ZERO, "STALE".to_string())];
    while since.elapsed() < Duration::from_secs(10) {
        let now = state(lab, ip).unwrap_or_else(|| "NONE".into());
        if states.last().is_none_or(|(_, s)| *s != now) {
            states.push((since.elapsed(), now.clone()));
        }
        let left_stale = states.iter().any(|(_, s)| s == "DELAY" || s == "PROBE");
        if now == "FAILED" || (left_stale && now == "REACHABLE") {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    states
}

/// `[time] … STATE` lines of `ip -ts monitor neigh`, as (seconds of the day, state).
fn events(text: &str, ip: &str) -> Vec<(f64, String)> {
    let seconds = |stamp: &str| -> Option<f64> {
        let clock = stamp.trim_start_matches('[').trim_end_matches(']').split('T').nth(1)?;
        clock.split(':').try_fold(0.0, |acc, part| Some(acc * 60.0 + part.parse::<f64>().ok()?))
    };
    text.lines()
        .filter(|l| l.contains(&format!(" {ip} ")))
        .filter_map(|l| {
            Some((seconds(l.split_whitespace().next()?)?, l.split_whitespace().last()?.to_string()))
        })
        .collect()
}

#[test]
fn a_linux_clients_stale_entry_goes_through_probe_to_reachable_and_never_fails() {
    if skip() {
        return;
    }
    let (lab, _speakers, owner) = started();
    let ns = lab.client.0.clone();
    // The 5 s default only makes the test longer: DELAY then PROBE happen all the same.
    sh(&format!("ip netns exec {ns} sysctl -qw net.ipv6.neigh.eth0.delay_first_probe_time=1"));
    lab.resolve(IP6);
    assert_eq!(lab.neighbour(IP6).as_deref(), Some(owner.as_str()), "{}", logs(&lab));
    let log = lab.dir.join("monitor.txt");
    let file = std::fs::File::create(&log).unwrap();
    let mut monitor = Running(
        Command::new("ip").args(["-n", &ns, "-ts", "monitor", "neigh"]).stdout(file).spawn().unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    sh(&format!("ip -n {ns} -6 neigh change {IP6} dev eth0 lladdr {owner} nud stale"));
    // Read before the ping: it moves the entry on within milliseconds.
    assert_eq!(state(&lab, IP6).as_deref(), Some("STALE"));
    let since = Instant::now();
    // Nobody answers the echo itself, so nothing but a solicited advertisement confirms the entry.
    let _ping = Running(
        Command::new("ip")
            .args(["netns", "exec", &ns, "ping", "-c", "1", "-W", "1", IP6])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let polled = follow(&lab, IP6, since);
    std::thread::sleep(Duration::from_millis(200));
    let _ = monitor.0.kill();
    let _ = monitor.0.wait();
    let seen = events(&std::fs::read_to_string(&log).unwrap_or_default(), IP6);
    let names: Vec<&str> = polled.iter().map(|(_, s)| s.as_str()).collect();
    let context = format!("polled {polled:?}\nmonitor {seen:?}\n{}", logs(&lab));
    assert!(!seen.iter().any(|(_, s)| s == "FAILED" || s == "INCOMPLETE"), "{context}");
    assert!(names.contains(&"DELAY"), "{context}");
    assert_eq!(names.last(), Some(&"REACHABLE"), "{context}");
    assert!(!names.contains(&"FAILED") && !names.contains(&"INCOMPLETE"), "{context}");
    let probe_at = seen.iter().find(|(_, s)| s == "PROBE").map(|(t, _)| *t);
    let reachable_at = seen.iter().rev().find(|(_, s)| s == "REACHABLE").map(|(t, _)| *t);
    let (Some(probe_at), Some(reachable_at)) = (probe_at, reachable_at) else {
        panic!("the monitor saw no PROBE then REACHABLE: {context}");
    };
    assert!(reachable_at >= probe_at, "{context}");
    assert_eq!(lab.neighbour(IP6).as_deref(), Some(owner.as_str()));
    let reachable = polled.last().map(|(t, _)| *t).unwrap_or_default();
    let events: Vec<&str> = seen.iter().map(|(_, s)| s.as_str()).collect();
    println!(
        "client entry for {IP6}, polled: {} (REACHABLE {reachable:?} after the ping); netlink \
         events: {}; the unicast probe answered {:.0} µs after PROBE began",
        names.join(" -> "),
        events.join(" -> "),
        (reachable_at - probe_at) * 1e6
    );
}
