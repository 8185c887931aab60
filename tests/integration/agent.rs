//! frr-agent's applier against real FRR: a ToR and a node in two namespaces, the node's FRR
//! driven only through diffs. The ToR must see every change and the session must never reset.

use std::time::Duration;

use frr_sidecar::apply::{Applied, ApplyError};

use crate::bgp_lab::{Lab, node_config};
use crate::frr_lab::wait_for;

#[test]
fn a_thousand_prefixes_come_and_go_without_touching_the_session() {
    require_frr!();
    let mut lab = Lab::start();
    let first = node_config(1, "64500:100");
    assert!(matches!(lab.applier.apply(&first, 1), Ok(Applied::Changed { .. })));
    let up = wait_for(Duration::from_secs(30), || lab.received() == 1);
    assert!(
        up.is_some(),
        "session or first prefix never arrived: {:?}",
        lab.tor.json("show bgp summary json")
    );
    let counters = lab.session_counters();
    assert_eq!(counters, (1, 0));

    let steps =
        [(1000, "64500:100"), (1000, "64500:200"), (1, "64500:200"), (0, "64500:200"), (1000, "64500:300")];
    for (generation, (n, community)) in steps.iter().enumerate() {
        let conf = node_config(*n, community);
        let t = std::time::Instant::now();
        let applied = lab.applier.apply(&conf, generation as u64 + 2).unwrap();
        let apply_took = t.elapsed();
        let drift = lab.node_drift(&conf);
        assert!(
            drift.is_empty(),
            "step {generation}: node's running config differs from what was applied:\n{drift}"
        );
        let seen = wait_for(Duration::from_secs(20), || {
            lab.received() == *n as u64 && (*n == 0 || lab.community_at_tor("198.18.0.0/32") == *community)
        });
        assert!(
            seen.is_some(),
            "step {generation}: ToR has {} prefixes, community {:?}",
            lab.received(),
            lab.community_at_tor("198.18.0.0/32")
        );
        println!(
            "step {generation}: {n} prefixes, {community}: {applied:?} in {apply_took:?}, at the ToR after {:?}",
            seen.unwrap()
        );
        assert_eq!(lab.session_counters(), counters, "step {generation}: the session was reset");
    }
    // The same generation twice does nothing.
    assert_eq!(lab.applier.apply("garbage that is never read", 6), Ok(Applied::Unchanged));
}

#[test]
fn invalid_configuration_is_rejected_and_the_last_good_one_keeps_running() {
    require_frr!();
    let mut lab = Lab::start();
    let good = node_config(3, "64500:100");
    lab.applier.apply(&good, 1).unwrap();
    let bad = good.replace("remote-as 64500", "remote-as banana");
    match lab.applier.apply(&bad, 2) {
        Err(ApplyError::Rejected(text)) => assert!(!text.is_empty()),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(lab.node_matches(&good));
    assert_eq!(lab.applier.generation(), Some(1));
    assert!(wait_for(Duration::from_secs(30), || lab.received() == 3).is_some());
}

#[test]
fn after_bgpd_restarts_reconcile_restores_the_desired_config() {
    require_frr!();
    let mut lab = Lab::start();
    let conf = node_config(5, "64500:100");
    lab.applier.apply(&conf, 1).unwrap();
    assert!(wait_for(Duration::from_secs(30), || lab.received() == 5).is_some());
    lab.node.restart_daemon("bgpd").unwrap();
    assert!(!lab.node_matches(&conf), "a restarted bgpd should have lost its config");
    let outcome = lab.applier.reconcile();
    assert!(matches!(outcome, Ok(Applied::Changed { .. })), "{outcome:?}");
    let drift = lab.node_drift(&conf);
    assert!(drift.is_empty(), "after reconcile the node still differs:\n{drift}");
    assert!(
        wait_for(Duration::from_secs(30), || lab.received() == 5).is_some(),
        "ToR never got the prefixes back"
    );
}
