use std::net::IpAddr;

use super::*;
use crate::l2::reach::InterfaceHealth;
use crate::speaker::bgp_backend::ApplyFailure;

fn l2(service: &str, ip: &str, only: Option<&[&str]>) -> L2Announcement {
    L2Announcement {
        service: service.into(),
        ip: ip.parse::<IpAddr>().unwrap(),
        interfaces: only.map(|o| o.iter().map(|n| n.to_string()).collect()),
    }
}

fn interfaces(names: &[(&str, bool)]) -> Interfaces {
    names
        .iter()
        .map(|(n, v6)| {
            let ndp_error = (!v6).then(|| "no IPv6 link-local address on it, so no NDP".to_string());
            (n.to_string(), InterfaceHealth { serial: 0, arp_error: None, ndp_error })
        })
        .collect()
}

#[test]
fn a_layer2_ip_fails_while_no_interface_can_answer_and_clears_when_one_comes() {
    let mut f = Failures::default();
    f.planned(
        &[l2("shop/web", "192.0.2.10", Some(&["eth9"])), l2("shop/db", "192.0.2.11", None)],
        BTreeSet::new(),
        None,
    );
    // Not scanned yet: nothing is judged.
    assert_eq!(f.judge(None, None), None);
    let found = f.judge(Some(&interfaces(&[("eth0", false)])), None).unwrap();
    assert_eq!(found.all.len(), 1);
    assert_eq!(found.started, found.all);
    let web = &found.all[0];
    assert_eq!((web.service.as_str(), web.protocol.as_str()), ("shop/web", "layer2"));
    assert!(
        web.reason.starts_with("192.0.2.10: none of the interfaces its L2Advertisements name (eth9)"),
        "{}",
        web.reason
    );
    assert_eq!(f.unanswered(), BTreeSet::from(["shop/web".to_string()]));
    // The same again: nothing new to say or write.
    assert_eq!(f.judge(Some(&interfaces(&[("eth0", false)])), None), None);
    // eth9 appears: the failure is gone.
    let found = f.judge(Some(&interfaces(&[("eth0", false), ("eth9", false)])), None).unwrap();
    assert_eq!(found, Found { all: vec![], started: vec![], answered_again: vec!["shop/web".into()] });
    assert!(f.unanswered().is_empty());
}

#[test]
fn a_dual_stack_service_is_whole_only_when_both_ips_fail() {
    let mut f = Failures::default();
    f.planned(
        &[l2("shop/web", "192.0.2.10", None), l2("shop/web", "2001:db8::10", None)],
        BTreeSet::new(),
        None,
    );
    let found = f.judge(Some(&interfaces(&[("eth0", false)])), None).unwrap();
    assert_eq!(found.all.len(), 1);
    assert!(
        found.all[0].reason.starts_with("2001:db8::10: no interface can answer for it"),
        "{}",
        found.all[0].reason
    );
    assert!(!f.unanswered_service("shop/web"), "IPv4 is still answered");
    let found = f.judge(Some(&Interfaces::new()), None).unwrap();
    assert!(found.all[0].reason.contains("192.0.2.10: ") && found.all[0].reason.contains("2001:db8::10: "));
    assert_eq!(found.started, found.all, "a changed reason is said again");
    assert!(f.unanswered_service("shop/web"));
}

fn failing(config: u64, attempts: u32, rejected: bool) -> Option<ApplyFailure> {
    Some(ApplyFailure { config, attempts, rejected })
}

fn set(s: &[&str]) -> BTreeSet<String> {
    s.iter().map(|s| s.to_string()).collect()
}

#[test]
fn bgp_services_fail_when_frr_does_not_take_the_configuration_that_first_carries_them() {
    let mut f = Failures::default();
    f.planned(&[], set(&["shop/web"]), Some(1));
    let mut frr = BackendReport::default();
    // On its way: no error yet.
    assert_eq!(f.judge(None, Some(&frr)), None);
    // The first tries fail (a starting frr-agent): not yet a failure.
    frr.last_error = "frr-agent: connection refused".into();
    frr.failing = failing(1, RETRIES - 1, false);
    assert_eq!(f.judge(None, Some(&frr)), None);
    frr.failing = failing(1, RETRIES, false);
    let found = f.judge(None, Some(&frr)).unwrap();
    assert_eq!(found.all.len(), 1);
    assert_eq!(
        found.all[0].reason,
        "frr-agent does not answer, so FRR was not given it: frr-agent: connection refused"
    );
    assert!(f.unanswered().is_empty(), "over BGP a Service stays in its status object");
    // A new decision while frr-agent stays silent: still failing, the new Service with it, not
    // cleared in between (no Event and status write per decision).
    f.planned(&[], set(&["shop/web", "shop/new"]), Some(9));
    let found = f.judge(None, Some(&frr)).unwrap();
    assert_eq!(found.all.iter().map(|f| f.service.as_str()).collect::<Vec<_>>(), ["shop/new", "shop/web"]);
    assert_eq!(found.started.iter().map(|f| f.service.as_str()).collect::<Vec<_>>(), ["shop/new"]);
    f.planned(&[], set(&["shop/web"]), Some(1));
    // Applied: cleared, and shop/web counts as running in FRR from now on.
    frr = BackendReport { applied_config: Some(1), agent_reachable: true, ..Default::default() };
    assert_eq!(f.judge(None, Some(&frr)).unwrap().all, vec![]);
    // A new Service in a configuration FRR rejects: only it fails; FRR still runs shop/web.
    f.planned(&[], set(&["shop/web", "shop/db"]), Some(2));
    frr.last_error = "line 12: % Unknown command".into();
    frr.failing = failing(2, 1, true);
    let found = f.judge(None, Some(&frr)).unwrap();
    assert_eq!(found.all.iter().map(|f| f.service.as_str()).collect::<Vec<_>>(), ["shop/db"]);
    assert_eq!(
        found.all[0].reason,
        "FRR refused the configuration that announces it: line 12: % Unknown command"
    );
    // A newer configuration is wanted: the refusal of the older one no longer speaks for it.
    f.planned(&[], set(&["shop/web", "shop/db", "shop/new"]), Some(3));
    assert_eq!(f.judge(None, Some(&frr)).unwrap().all, vec![]);
    // Refused bgpextras left out, the configuration itself applied: nothing failed.
    frr = BackendReport { applied_config: Some(3), last_error: "bgpextras refused by FRR: x".into(), ..frr };
    frr.failing = None;
    assert_eq!(f.judge(None, Some(&frr)), None);
}

#[test]
fn a_late_confirmation_still_counts_for_the_services_it_carried() {
    let mut f = Failures::default();
    f.planned(&[], set(&["shop/a"]), Some(4));
    f.planned(&[], set(&["shop/a", "shop/b"]), Some(5));
    // 4 is confirmed after 5 was wanted, then 5 is refused: shop/a runs, shop/b does not.
    let frr = BackendReport {
        applied_config: Some(4),
        agent_reachable: true,
        last_error: "refused".into(),
        failing: failing(5, 1, true),
        ..Default::default()
    };
    let found = f.judge(None, Some(&frr)).unwrap();
    assert_eq!(found.all.iter().map(|f| f.service.as_str()).collect::<Vec<_>>(), ["shop/b"]);
}

#[test]
fn the_event_names_the_node_and_the_protocol() {
    let f = AnnounceFailure {
        service: "shop/web".into(),
        protocol: "layer2".into(),
        reason: "192.0.2.10: x".into(),
    };
    assert_eq!(message("node1", &f), "node \"node1\" cannot announce it over layer 2: 192.0.2.10: x");
}
