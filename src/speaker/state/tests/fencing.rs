//! Layer 2 fencing: the quorum from membership's view and the speakers that should exist.

use std::time::Duration;

use super::*;

fn all_seen() -> Observed {
    Observed { view: Some(view(&NODES)), expected: Some(expected(&NODES)), ..Default::default() }
}

fn quorum_said(effects: &[Effect]) -> Vec<(Option<bool>, String)> {
    logs(effects)
        .into_iter()
        .filter_map(|l| match l {
            Log::Quorum { quorum, turned } => Some((*turned, quorum.describe())),
            _ => None,
        })
        .collect()
}

#[test]
fn without_a_majority_the_speaker_stops_answering_and_answers_again_with_one() {
    let mut lab = Lab::new(layer2_settings(), &layer2_world(&[], 8), all_seen());
    let first = lab.step(0, Input::ClusterChanged);
    let mine = answered(&first).unwrap();
    assert!(!mine.is_empty(), "node1 wins none of 8: pick another fixture");
    assert_eq!(quorum_said(&first), [(None, "sees 3 of 3 expected speakers; answering".to_string())]);
    let fencing = report(&first).and_then(|r| r.fencing.clone()).unwrap();
    assert_eq!((fencing.0.status, fencing.0.reason), (false, "Quorum"));

    let cut = lab.step(1, Input::View(view(&["node1"])));
    assert_eq!(answered(&cut), Some(BTreeSet::new()), "fenced: nothing answered");
    assert!(metrics(&cut).contains(&&Metric::Fencing { fenced: true, expected: 3, live: 1 }));
    let said =
        "sees 1 of 3 expected speakers (not seen: node2, node3); no majority: fenced, not answering ARP/NDP";
    assert_eq!(quorum_said(&cut), [(Some(true), said.to_string())]);
    let fencing = report(&cut).and_then(|r| r.fencing.clone()).unwrap();
    assert_eq!((fencing.0.status, fencing.0.reason), (true, "NoQuorum"));
    assert!(report(&cut).unwrap().l2.is_empty(), "a fenced node reports no layer 2 announcement");

    // Nothing changed: nothing said again.
    assert!(quorum_said(&lab.step(2, Input::ClusterChanged)).is_empty());

    let back = lab.step(3, Input::View(view(&["node1", "node2"])));
    assert_eq!(quorum_said(&back)[0].0, Some(false), "lifted");
    assert!(metrics(&back).contains(&&Metric::Fencing { fenced: false, expected: 3, live: 2 }));
    let now = answered(&back).unwrap();
    assert!(now.is_superset(&mine), "node1 takes node3's share besides its own: {now:?}");
}

#[test]
fn with_fencing_off_a_minority_keeps_answering_and_says_so() {
    let settings = Settings { fence: false, ..layer2_settings() };
    let mut lab = Lab::new(settings, &layer2_world(&[], 8), all_seen());
    lab.step(0, Input::ClusterChanged);
    let alone = lab.step(1, Input::View(view(&["node1"])));
    assert_eq!(answered(&alone).map(|ips| ips.len()), Some(8), "alone, node1 answers for every IP");
    let said =
        "sees 1 of 3 expected speakers (not seen: node2, node3); no majority, but fencing is off: answering";
    assert_eq!(quorum_said(&alone), [(None, said.to_string())]);
    assert!(metrics(&alone).contains(&&Metric::Fencing { fenced: false, expected: 3, live: 1 }));
    let fencing = report(&alone).and_then(|r| r.fencing.clone()).unwrap();
    assert_eq!((fencing.0.status, fencing.0.reason), (false, "FencingDisabled"));
}

#[test]
fn a_starting_speaker_counts_once_its_grace_is_over_and_the_timer_says_when() {
    let mut lab = Lab::new(layer2_settings(), &layer2_world(&[], 4), Observed::default());
    // node3's speaker started 10 s ago and has not joined: it does not count for 20 s more.
    let mut starting = expected(&NODES);
    starting.insert("node3".into(), Some(lab.wall - Duration::from_secs(10)));
    let peers = crate::speaker::peers::Peers { expected: starting, seeds: Vec::new(), ..Default::default() };
    let first = lab.steps(0, [Input::View(view(&["node1"])), Input::Peers(peers), Input::ClusterChanged]);
    assert_eq!(quorum_said(&first)[0].0, None, "two counted: no majority needed");
    assert!(!answered(&first).unwrap().is_empty());
    assert_eq!(lab.speaker.deadline(), Some(lab.wall + Duration::from_secs(20)));

    let counted = lab.step(20, Input::Timer);
    assert_eq!(quorum_said(&counted)[0].0, Some(true), "three counted, one seen: fenced");
    assert_eq!(answered(&counted), Some(BTreeSet::new()));
    assert_eq!(lab.speaker.deadline(), None);
}

#[test]
fn the_speakers_that_should_exist_seed_membership_and_are_the_quorum_base() {
    let mut lab = Lab::new(layer2_settings(), &layer2_world(&[], 4), all_seen());
    lab.step(0, Input::View(view(&["node1", "node2"])));
    // Scaled down to two nodes: node3 no longer counts, so nothing fences.
    let seeds = vec![("node2".to_string(), "192.0.2.12:7946".parse().unwrap())];
    let peers = crate::speaker::peers::Peers {
        expected: expected(&["node1", "node2"]),
        seeds: seeds.clone(),
        ..Default::default()
    };
    let shrunk = lab.step(1, Input::Peers(peers));
    assert_eq!(logs(&shrunk)[0], &Log::Expected(vec!["node1".into(), "node2".into()]));
    assert!(shrunk.contains(&Effect::Seeds(seeds)));
    assert!(metrics(&shrunk).contains(&&Metric::Fencing { fenced: false, expected: 2, live: 2 }));
}

#[test]
fn changes_observed_together_are_decided_once_from_all_of_them() {
    let mut lab = Lab::new(layer2_settings(), &layer2_world(&[], 8), all_seen());
    lab.step(0, Input::ClusterChanged);
    // Scaled down to node1 alone: membership saw the others go as the list lost them. Taken
    // one by one, the view alone would fence (1 of 3) before the list lifted it.
    let alone = crate::speaker::peers::Peers {
        expected: expected(&["node1"]),
        seeds: Vec::new(),
        ..Default::default()
    };
    let both = lab.steps(1, [Input::View(view(&["node1"])), Input::Peers(alone)]);
    assert_eq!(quorum_said(&both), [(None, "sees 1 of 1 expected speakers; answering".to_string())]);
    assert_eq!(answered(&both).map(|ips| ips.len()), Some(8), "node1 answers for every IP");
    let passes = both.iter().filter(|e| matches!(e, Effect::Report(_))).count();
    assert_eq!(passes, 1, "one decision");
    assert_eq!(both.iter().filter(|e| matches!(e, Effect::Layer2(_))).count(), 1);
}

#[test]
fn a_terminate_among_inputs_stops_there() {
    let settings = Settings { membership_keys: Some(1), ..layer2_settings() };
    let mut lab = Lab::new(settings, &layer2_world(&[], 2), all_seen());
    lab.step(0, Input::ClusterChanged);
    let stop = lab.steps(1, [Input::Terminate { sigterm: false, leaving: false }, Input::ClusterChanged]);
    assert_eq!(stop, [Effect::Layer2(Default::default()), Effect::Leave], "no decision after it");
}

#[test]
fn without_membership_there_is_no_fencing_and_live_nodes_are_as_given() {
    let settings = Settings { live_nodes: Some(set(&["node1"])), ..layer2_settings() };
    let mut lab = Lab::new(settings, &layer2_world(&[], 4), Observed::default());
    let first = lab.step(0, Input::ClusterChanged);
    assert_eq!(answered(&first).map(|ips| ips.len()), Some(4), "node1 the only live node");
    assert!(quorum_said(&first).is_empty());
    assert_eq!(report(&first).unwrap().fencing, None);
}
