//! frr-agent's applier against real FRR: a ToR and a node in two namespaces, the node's FRR
//! driven only through diffs. The ToR must see every change and the session must never reset.

use std::time::Duration;

use frr_sidecar::apply::{Applied, Applier, ApplyError};

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
        Err(ApplyError::Rejected(text)) => assert!(text.contains("banana"), "{text}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    // Checked by the dry run started after the first Apply, as every change after the first.
    assert_eq!(lab.applier.checked_ahead(), 1);
    assert!(lab.node_matches(&good));
    assert_eq!(lab.applier.generation(), Some(1));
    // And the next good change goes through the one started after the rejection.
    lab.applier.apply(&node_config(4, "64500:100"), 3).unwrap();
    assert_eq!(lab.applier.checked_ahead(), 2);
    assert!(wait_for(Duration::from_secs(30), || lab.received() == 4).is_some());
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

/// A change that passes FRR's check (`vtysh -C` only parses) but that bgpd refuses half way:
/// undone, the previous configuration running. And when the undo fails too, FRR runs part of
/// the change: the next configuration must be diffed against what FRR runs, not against what
/// the agent last applied, or what the failed change left behind stays for good.
#[test]
fn a_change_refused_half_way_is_undone_and_a_failed_undo_does_not_stick() {
    require_frr!();
    let mut lab = Lab::start();
    let good = format!("{}ip prefix-list kept-pl seq 5 permit 203.0.113.0/24\n", node_config(3, "64500:100"));
    // A new filter, and a peer-group that does not exist: parsed fine, refused by bgpd.
    let refused = format!(
        "{good}ip prefix-list new-pl seq 5 permit 192.0.2.128/25\nrouter bgp 64512\n neighbor 192.0.2.99 peer-group nope\nexit\n"
    );
    lab.applier.apply(&good, 1).unwrap();
    assert!(wait_for(Duration::from_secs(30), || lab.received() == 3).is_some());
    let counters = lab.session_counters();

    match lab.applier.apply(&refused, 2) {
        Err(ApplyError::RolledBack(text)) => {
            println!("refused half way, undone: {}", text.replace('\n', " / "))
        }
        other => panic!("expected a rollback, got {other:?}"),
    }
    let drift = lab.node_drift(&good);
    assert!(drift.is_empty(), "the undo left FRR differing from the last good configuration:\n{drift}");

    // The same through a vtysh that fails every undo: FRR is left with the new filter.
    let vtysh = lab.node.wrapped_vtysh(
        "vtysh-no-undo",
        "case \"$*\" in *undo.conf*) echo 'undo refused by the test'; exit 1;; esac",
    );
    let mut applier = Applier::new(vtysh, lab.node.dir());
    applier.apply(&good, 1).unwrap();
    match applier.apply(&refused, 2) {
        Err(ApplyError::Inconsistent(_)) => {}
        other => panic!("expected a failed undo, got {other:?}"),
    }
    assert!(lab.node.running_config().contains("new-pl"), "{}", lab.node.running_config());
    // The last good configuration again: FRR must end up running exactly it.
    applier.apply(&good, 3).unwrap();
    let drift = lab.node_drift(&good);
    assert!(drift.is_empty(), "after a failed undo the next apply left FRR differing:\n{drift}");
    assert_eq!(lab.session_counters(), counters, "the session was reset: {}", lab.session_story());
}

/// A Service coming or going changes lines only bgpd reads: they go straight to bgpd's vty, no
/// vtysh started, and the ToR sees them as any change. A batch bgpd refuses half way there (a
/// new neighbour taken, then a line naming a peer-group that does not exist) is undone whole.
#[test]
fn bgpd_only_changes_go_straight_to_bgpd_and_a_refusal_there_is_undone() {
    require_frr!();
    let mut lab = Lab::start();
    lab.applier.apply(&node_config(3, "64500:100"), 1).unwrap();
    assert!(wait_for(Duration::from_secs(30), || lab.received() == 3).is_some());
    let counters = lab.session_counters();
    let before = lab.applier.sent_to_bgpd();

    let more = node_config(5, "64500:100");
    assert!(matches!(lab.applier.apply(&more, 2), Ok(Applied::Changed { added: 2, removed: 0, .. })));
    assert_eq!(lab.applier.sent_to_bgpd(), before + 1, "two new Services' lines did not go straight to bgpd");
    assert!(wait_for(Duration::from_secs(30), || lab.received() == 5).is_some(), "the ToR never got them");
    let fewer = node_config(4, "64500:100");
    lab.applier.apply(&fewer, 3).unwrap();
    assert_eq!(lab.applier.sent_to_bgpd(), before + 2);
    assert!(
        wait_for(Duration::from_secs(30), || lab.received() == 4).is_some(),
        "the ToR kept the withdrawn one"
    );
    assert!(lab.node_drift(&fewer).is_empty(), "{}", lab.node_drift(&fewer));

    let refused = format!(
        "{}router bgp 64512\n neighbor 192.0.2.99 remote-as 64999\n neighbor 192.0.2.99 peer-group nope\nexit\n",
        node_config(6, "64500:100")
    );
    match lab.applier.apply(&refused, 4) {
        Err(ApplyError::RolledBack(text)) => {
            assert!(text.contains("peer-group nope"), "{text}");
            println!("refused by bgpd, undone: {}", text.replace('\n', " / "));
        }
        other => panic!("expected a rollback, got {other:?}"),
    }
    assert_eq!(
        lab.applier.sent_to_bgpd(),
        before + 4,
        "the batch and its undo did not both go straight to bgpd"
    );
    let drift = lab.node_drift(&fewer);
    assert!(drift.is_empty(), "the undo left FRR differing from the last good configuration:\n{drift}");
    assert_eq!(lab.received(), 4);
    assert_eq!(lab.session_counters(), counters, "the session was reset: {}", lab.session_story());
}
