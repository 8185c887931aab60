//! Periodic gratuitous ARP and unsolicited NA (`--layer2-refresh-seconds`), for switches that
//! age a MAC out of their tables while routers still use it: off by default (only the takeover's
//! announcements), and at 1 s the client sees both repeat every second from the owner alone,
//! counted in `metallb_layer2_gratuitous_sent`.

use std::time::{Duration, Instant};

use crate::fabric::Running;
use crate::frr_lab::wait_for;
use crate::l2_lab::{ALL, L2Lab, mac_index};
use crate::l2_wire::{Seen, unsolicited};

const IP4: &str = "192.0.2.200";
const IP6: &str = "2001:db8:10::200";

fn sent(lab: &L2Lab, node: usize, ip: &str) -> f64 {
    lab.metric(node, &format!("metallb_layer2_gratuitous_sent{{ip=\"{ip}\"}}")).unwrap_or(0.0)
}

/// Both nodes' speakers with `extra`; the owner once it answers ARP, after its takeover
/// announcements (the last 4.4 s after gaining the IP) are over.
fn announcing(lab: &L2Lab, extra: &[&str]) -> (Vec<Running>, usize) {
    let mut args = vec!["--live-nodes", "node1,node2"];
    args.extend_from_slice(extra);
    let speakers = (0..2).map(|i| lab.speaker_with(i, &args)).collect();
    let answered = wait_for(Duration::from_secs(15), || lab.arping(IP4).is_some());
    assert!(answered.is_some(), "no ARP answer\n{}", lab.logs());
    let owner = lab.arping(IP4).as_deref().and_then(mac_index).expect("a lab MAC answers");
    std::thread::sleep(Duration::from_secs(5));
    (speakers, owner)
}

/// When each announcement of `kind` (ARP requests, or advertisements) reached the client.
fn times(seen: &[Seen], kind: &str) -> Vec<f64> {
    let arp_request = |s: &Seen| s.kind == "arp" && s.get("op") == "1";
    seen.iter()
        .filter(|s| if kind == "arp" { arp_request(s) } else { s.kind == kind })
        .map(|s| s.at)
        .collect()
}

fn intervals(at: &[f64]) -> Vec<f64> {
    at.windows(2).map(|w| w[1] - w[0]).collect()
}

#[test]
fn layer2_refresh_repeats_gratuitous_arp_and_na_every_period_and_is_off_by_default() {
    if let Some(why) = crate::l2_lab::unavailable() {
        println!("skipped: {why}");
        return;
    }
    let lab = L2Lab::start(ALL, 2, false);
    let (speakers, owner) = announcing(&lab, &[]);
    let before = (sent(&lab, owner, IP4), sent(&lab, owner, IP6));
    let quiet = unsolicited(&lab, IP4, IP6, 4.0);
    assert!(quiet.is_empty(), "announced without a refresh: {quiet:?}");
    assert_eq!((sent(&lab, owner, IP4), sent(&lab, owner, IP6)), before);
    drop(speakers);

    let (_speakers, owner) = announcing(&lab, &["--layer2-refresh-seconds", "1"]);
    let before = (sent(&lab, owner, IP4), sent(&lab, owner, IP6));
    let started = Instant::now();
    let seen = unsolicited(&lab, IP4, IP6, 6.0);
    let took = started.elapsed().as_secs_f64();
    let grew = (sent(&lab, owner, IP4) - before.0, sent(&lab, owner, IP6) - before.1);
    let owner_mac = format!("02:00:00:00:00:{:02x}", 0x11 + owner);
    assert!(seen.iter().all(|s| s.get("eth_src") == owner_mac), "not only {owner_mac}: {seen:?}");
    let mut figures = Vec::new();
    for (kind, count) in [("arp", grew.0), ("na", grew.1)] {
        let at = times(&seen, kind);
        let gaps = intervals(&at);
        assert!(at.len() >= 5, "{kind}: only {at:?} in 6 s\n{}", lab.logs());
        assert!(gaps.iter().all(|g| (0.8..=1.25).contains(g)), "{kind} intervals {gaps:?}");
        // The counter moves with what went out: about one a second, as captured.
        assert!(
            count >= at.len() as f64 - 1.0 && count <= took + 1.0,
            "{kind}: counter grew {count} in {took:.1} s"
        );
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let (lo, hi) = gaps.iter().fold((f64::MAX, 0.0f64), |(lo, hi), g| (lo.min(*g), hi.max(*g)));
        figures.push(format!(
            "{kind}: {} in 6 s, every {mean:.3} s ({lo:.3}-{hi:.3}), counter +{count}",
            at.len()
        ));
    }
    println!(
        "without a refresh: no announcement in 4 s after the takeover's; --layer2-refresh-seconds 1: {}",
        figures.join("; ")
    );
}
