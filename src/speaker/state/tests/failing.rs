//! Announcements this node cannot make, judged at each decision and between them, flowing to
//! the node's report, the log and the Services' Events.

use super::*;
use crate::speaker::bgp_backend::{ApplyFailure, BackendReport, fingerprint};

/// node1 the only live node: it wins every layer 2 IP.
fn alone() -> Settings {
    Settings { live_nodes: Some(set(&["node1"])), ..layer2_settings() }
}

#[test]
fn a_layer2_ip_no_interface_answers_fails_and_is_told_when_answered_again() {
    let seen = Observed { interfaces: Some(interfaces(&["eth0"])), ..Default::default() };
    let mut lab = Lab::new(alone(), &layer2_world(&["eth9"], 2), seen);
    let first = lab.step(0, Input::ClusterChanged);
    let r = report(&first).unwrap();
    assert_eq!(r.failures.iter().map(|f| f.service.as_str()).collect::<Vec<_>>(), ["shop/web1", "shop/web2"]);
    assert!(r.failures[0].reason.contains("eth9"), "{}", r.failures[0].reason);
    assert_eq!(r.unanswered, set(&["shop/web1", "shop/web2"]));
    assert_eq!(told(&first), ["announceFailed web1", "announceFailed web2"], "and no nodeAssigned");
    assert_eq!(logs(&first).iter().filter(|l| matches!(l, Log::CannotAnnounce(_))).count(), 2);
    // Still asked to answer: the responder knows which interfaces it may use.
    assert_eq!(answered(&first).map(|ips| ips.len()), Some(2));

    // Nothing new: nothing said, nothing written.
    let same = lab.step(1, Input::Interfaces(Some(interfaces(&["eth0", "eth1"]))));
    assert_eq!(same, []);

    let came = lab.step(2, Input::Interfaces(Some(interfaces(&["eth0", "eth9"]))));
    assert_eq!(came[0], Effect::Failures { failures: vec![], unanswered: BTreeSet::new() });
    assert_eq!(told(&came), ["nodeAssigned web1", "nodeAssigned web2"]);
    assert!(logs(&came).contains(&&Log::AnsweringAgain("shop/web1".into())));
    // Announced now: a decision later tells nothing new.
    assert!(told(&lab.step(3, Input::ClusterChanged)).is_empty());
}

#[test]
fn failures_found_before_any_report_wait_for_the_first_one() {
    let mut lab = Lab::new(alone(), &layer2_world(&["eth9"], 1), Observed::default());
    // Not scanned yet: nothing is judged.
    let first = lab.step(0, Input::ClusterChanged);
    assert!(report(&first).unwrap().failures.is_empty());
    assert_eq!(told(&first), ["nodeAssigned web1"]);
    let scanned = lab.step(1, Input::Interfaces(Some(interfaces(&["eth0"]))));
    assert!(matches!(&scanned[0], Effect::Failures { failures, .. } if failures.len() == 1));
    assert_eq!(told(&scanned), ["announceFailed web1"]);
}

#[test]
fn a_configuration_frr_refuses_fails_its_services_until_one_runs() {
    let seen = Observed { frr: Some(BackendReport::default()), ..Default::default() };
    let mut lab = Lab::new(bgp_settings(), &bgp_world("198.51.100.0/28", 1, None), seen);
    let first = lab.step(0, Input::ClusterChanged);
    let desired = fingerprint(frr(&first).unwrap().0);
    assert_eq!(told(&first), ["nodeAssigned web1"]);
    let refusal = BackendReport {
        agent_reachable: true,
        failing: Some(ApplyFailure { config: desired, attempts: 1, rejected: true }),
        last_error: "line 7: unknown command".into(),
        ..Default::default()
    };
    let refused = lab.step(1, Input::Frr(refusal));
    let Some(Effect::Failures { failures, .. }) =
        refused.iter().find(|e| matches!(e, Effect::Failures { .. }))
    else {
        panic!("no failures: {refused:?}")
    };
    assert_eq!(failures[0].protocol, "bgp");
    assert_eq!(
        failures[0].reason,
        "FRR refused the configuration that announces it: line 7: unknown command"
    );
    assert_eq!(told(&refused), ["announceFailed web1"]);

    // FRR runs it after all (the agent applied a corrected text): the failure clears.
    let running =
        BackendReport { agent_reachable: true, applied_config: Some(desired), ..Default::default() };
    let ran = lab.step(2, Input::Frr(running));
    assert_eq!(ran, [Effect::Failures { failures: vec![], unanswered: BTreeSet::new() }]);
}

#[test]
fn a_starting_frr_gets_its_first_tries_before_anything_fails() {
    let mut lab = Lab::new(bgp_settings(), &bgp_world("198.51.100.0/28", 1, None), Observed::default());
    let desired = fingerprint(frr(&lab.step(0, Input::ClusterChanged)).unwrap().0);
    let tried = |attempts| BackendReport {
        agent_reachable: true,
        failing: Some(ApplyFailure { config: desired, attempts, rejected: false }),
        ..Default::default()
    };
    assert_eq!(lab.step(1, Input::Frr(tried(2))), []);
    let third = lab.step(2, Input::Frr(tried(3)));
    assert!(third.iter().any(|e| matches!(e, Effect::Failures { failures, .. } if failures.len() == 1)));
}
