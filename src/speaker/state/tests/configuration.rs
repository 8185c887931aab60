//! An invalid configuration, and bgpextras FRR refuses: what was good keeps being announced.

use super::*;
use crate::speaker::bgp_backend::{BackendReport, Desired, fingerprint};
use crate::speaker::extras_guard::{ExtrasGuard, Sent};

const GOOD: &str = "198.51.100.0/28";
const BAD: &str = "198.51.100.0/99";

fn invalid_said(effects: &[Effect]) -> bool {
    logs(effects).iter().any(|l| matches!(l, Log::Invalid { stale: true, .. }))
}

#[test]
fn an_invalid_configuration_keeps_the_last_good_one_announced_until_a_valid_one_comes() {
    let mut lab = Lab::new(bgp_settings(), &bgp_world(GOOD, 1, None), Observed::default());
    let first = lab.step(0, Input::ClusterChanged);
    assert!(frr(&first).unwrap().0.contains("198.51.100.1/32"));
    assert!(metrics(&first).contains(&&Metric::Config { loaded: true, stale: false }));
    assert_eq!(report(&first).unwrap().errors, None);

    lab.cluster.change(&bgp_world(BAD, 1, None), None);
    let broken = lab.step(1, Input::ClusterChanged);
    assert!(invalid_said(&broken));
    assert!(metrics(&broken).contains(&&Metric::Config { loaded: true, stale: true }));
    assert_eq!(frr(&broken), frr(&first), "the last good configuration's announcements");
    assert!(report(&broken).unwrap().errors.as_deref().is_some_and(|e| e.contains("99")));

    lab.cluster.change(&bgp_world(GOOD, 2, None), None);
    let fixed = lab.step(2, Input::ClusterChanged);
    assert!(!invalid_said(&fixed));
    assert!(metrics(&fixed).contains(&&Metric::Config { loaded: true, stale: false }));
    let (config, _) = frr(&fixed).unwrap();
    assert!(config.contains("198.51.100.1/32") && config.contains("198.51.100.2/32"), "{config}");
    assert_eq!(report(&fixed).unwrap().bgp.len(), 2);
}

#[test]
fn without_any_valid_configuration_nothing_is_announced_and_frr_keeps_what_it_runs() {
    let settings = Settings { layer2: true, ..bgp_settings() };
    let mut lab = Lab::new(settings, &bgp_world(BAD, 1, None), Observed::default());
    let first = lab.step(0, Input::ClusterChanged);
    assert!(logs(&first).contains(&&Log::NoConfig));
    assert_eq!((frr(&first), answered(&first)), (None, None));
    assert!(metrics(&first).contains(&&Metric::Config { loaded: false, stale: true }));
    assert!(told(&first).is_empty());
}

#[test]
fn unreadable_manifests_are_said_and_the_last_read_ones_stay() {
    let now = Lab::new(bgp_settings(), "", Observed::default()).at(0);
    let mut speaker = Speaker::new(bgp_settings(), None, Observed::default(), now);
    // Nothing read yet: nothing to decide from.
    assert_eq!(speaker.step(Input::ClusterChanged, now), []);
    let read = speaker.step(Input::Manifests(Ok(inputs(&bgp_world(GOOD, 1, None)))), now);
    let config = frr(&read).unwrap().0.to_string();
    let unreadable = speaker.step(Input::Manifests(Err("web.yaml: line 3: bad".into())), now);
    assert_eq!(unreadable, [Effect::Log(Log::ManifestsUnreadable("web.yaml: line 3: bad".into()))]);
    let again = speaker.step(Input::Timer, now);
    assert_eq!(frr(&again).map(|(c, _)| c.to_string()), Some(config));
    assert_eq!(report(&again), None, "offline: no cluster to report to");
}

fn extras_said(effects: &[Effect]) -> Vec<&str> {
    logs(effects)
        .into_iter()
        .filter_map(|l| if let Log::Extras(w) = l { Some(w.as_str()) } else { None })
        .collect()
}

#[test]
fn bgpextras_refused_by_frr_fall_back_to_the_last_accepted_and_the_services_stay_announced() {
    let accepted = "ip prefix-list x seq 5 permit 203.0.113.0/24\nip route 203.0.113.0/24 192.0.2.1\n";
    let mut lab = Lab::new(bgp_settings(), &bgp_world(GOOD, 1, Some(accepted)), Observed::default());
    let first = lab.step(0, Input::ClusterChanged);
    let (config, extras) = frr(&first).unwrap();
    assert_eq!(extras, Some(accepted));
    assert!(config.ends_with(accepted));
    // The line FRR runs but ferrolb never removes is warned about, once.
    assert!(extras_said(&first).iter().any(|w| w.contains("never applied")), "{:?}", extras_said(&first));
    lab.cluster.change(&bgp_world(GOOD, 2, Some(accepted)), Some(&["shop/web2"]));
    assert!(extras_said(&lab.step(1, Input::ClusterChanged)).is_empty());
    // What frr-agent's backend does with each configuration handed over.
    let mut guard = ExtrasGuard::default();
    let handed = |effects: &[Effect]| {
        let (config, extras) = frr(effects).unwrap();
        Desired { config: config.to_string(), extras: extras.map(str::to_string) }
    };
    let good = handed(&lab.step(2, Input::ClusterChanged));
    let (_, sent) = guard.text(&good);
    guard.applied(&good, sent);

    let refused = "ip prefix-list x seq 5 permit 999.0.0.0/8\n";
    lab.cluster.change(&bgp_world(GOOD, 2, Some(refused)), None);
    let bad = handed(&lab.step(3, Input::ClusterChanged));
    let (_, sent) = guard.text(&bad);
    assert!(guard.refused(&bad, sent), "new extras are to blame");
    let (text, sent) = guard.text(&bad);
    assert_eq!(sent, Sent::Fallback);
    assert!(text.ends_with(accepted) && text.contains("198.51.100.2/32"), "{text}");
    // FRR runs the fallback: the desired configuration counts as applied, so nothing fails.
    let report = BackendReport {
        applied_config: Some(fingerprint(&bad.config)),
        agent_reachable: true,
        last_error: "bgpextras refused by FRR: line 1: bad prefix".into(),
        ..Default::default()
    };
    let ran = lab.step(4, Input::Frr(report));
    assert_eq!(
        logs(&ran),
        [&Log::FrrBehind { error: "bgpextras refused by FRR: line 1: bad prefix".into(), reachable: true }]
    );
    assert!(!ran.iter().any(|e| matches!(e, Effect::Failures { .. } | Effect::Event { .. })), "{ran:?}");
}
