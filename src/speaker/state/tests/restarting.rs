//! A speaker being replaced keeps its layer 2 IPs on its node until its successor joins.

use std::time::Duration;

use super::*;
use crate::speaker::peers::Peers;

fn holding_settings() -> Settings {
    Settings { restart_hold: Duration::from_secs(10), ..layer2_settings() }
}

fn all_seen() -> Observed {
    Observed { view: Some(view(&NODES)), expected: Some(expected(&NODES)), ..Default::default() }
}

/// node3's speaker pod is being deleted by its DaemonSet (or not): node1 and node2 remain.
fn node3_going(replaced: bool) -> Peers {
    let replacing = if replaced { set(&["node3"]) } else { set(&[]) };
    Peers { expected: expected(&["node1", "node2"]), replacing, ..Default::default() }
}

fn held_said(effects: &[Effect]) -> Vec<BTreeSet<String>> {
    logs(effects)
        .into_iter()
        .filter_map(|l| if let Log::Held { nodes, .. } = l { Some(nodes.clone()) } else { None })
        .collect()
}

/// What node1 answers once node3 is gone and taken over at once.
fn after_takeover() -> BTreeSet<IpAddr> {
    let mut lab = Lab::new(holding_settings(), &layer2_world(&[], 8), all_seen());
    lab.step(0, Input::ClusterChanged);
    answered(&lab.steps(1, [Input::View(view(&["node1", "node2"])), Input::Peers(node3_going(false))]))
        .unwrap()
}

#[test]
fn a_replaced_speakers_ips_stay_until_its_successor_joins() {
    let mut lab = Lab::new(holding_settings(), &layer2_world(&[], 8), all_seen());
    let mine = answered(&lab.step(0, Input::ClusterChanged)).unwrap();
    let takeover = after_takeover();
    assert!(takeover.len() > mine.len(), "node1 takes none of node3's IPs: pick another fixture");

    // The departure and the pod's deletion taken in together, the departure first.
    let gone = lab.steps(1, [Input::View(view(&["node1", "node2"])), Input::Peers(node3_going(true))]);
    assert_eq!(answered(&gone), Some(mine.clone()), "node3's IPs stay with node3");
    assert_eq!(held_said(&gone), [set(&["node3"])]);
    assert_eq!(lab.speaker.deadline(), Some(lab.wall + Duration::from_secs(11)));
    // Its old pod leaves the API: nothing moves.
    let deleted = lab.step(3, Input::Peers(node3_going(false)));
    assert!(answered(&deleted).is_none_or(|ips| ips == mine));

    let back = lab.step(4, Input::View(view(&NODES)));
    assert!(answered(&back).is_none_or(|ips| ips == mine), "the successor answers for its IPs");
    assert_eq!(held_said(&back), [set(&[])]);
    assert_eq!(lab.speaker.deadline(), None);
}

#[test]
fn a_successor_that_does_not_come_within_the_bound_is_taken_over() {
    let mut lab = Lab::new(holding_settings(), &layer2_world(&[], 8), all_seen());
    let mine = answered(&lab.step(0, Input::ClusterChanged)).unwrap();
    let gone = lab.steps(1, [Input::Peers(node3_going(true)), Input::View(view(&["node1", "node2"]))]);
    assert_eq!(answered(&gone), Some(mine.clone()));
    assert!(answered(&lab.step(10, Input::ClusterChanged)).is_none_or(|ips| ips == mine));
    let let_go = lab.step(11, Input::Timer);
    assert_eq!(answered(&let_go), Some(after_takeover()));
    assert_eq!(held_said(&let_go), [set(&[])]);
}

#[test]
fn a_failed_speaker_or_one_learnt_replaced_too_late_is_taken_over_at_once() {
    let mut lab = Lab::new(holding_settings(), &layer2_world(&[], 8), all_seen());
    lab.step(0, Input::ClusterChanged);
    let failed = lab.step(1, Input::View(view(&["node1", "node2"])));
    assert_eq!(answered(&failed), Some(after_takeover()));
    // Its pod's deletion seen after the takeover: taking the IPs back from node1 now would
    // leave new clients unanswered and move nothing back.
    let late = lab.step(1, Input::Peers(node3_going(true)));
    assert!(answered(&late).is_none_or(|ips| ips == after_takeover()));
    assert!(held_said(&late).is_empty());
    // With the hold off, a replaced speaker is taken over at once too.
    let settings = Settings { restart_hold: Duration::ZERO, ..layer2_settings() };
    let mut off = Lab::new(settings, &layer2_world(&[], 8), all_seen());
    off.step(0, Input::ClusterChanged);
    let gone = off.steps(1, [Input::View(view(&["node1", "node2"])), Input::Peers(node3_going(true))]);
    assert_eq!(answered(&gone), Some(after_takeover()));
}

#[test]
fn a_node_going_away_is_not_held() {
    // node3 cordoned (or deleted, or tainted by an autoscaler): its speaker is not coming back.
    let cordoned = "metadata: {name: node3}\nspec: {unschedulable: true}\n";
    let world = layer2_world(&[], 8).replace("metadata: {name: node3}\n", cordoned);
    assert!(world.contains("unschedulable"));
    let mut lab = Lab::new(holding_settings(), &world, all_seen());
    lab.step(0, Input::ClusterChanged);
    let gone = lab.steps(1, [Input::View(view(&["node1", "node2"])), Input::Peers(node3_going(true))]);
    assert_eq!(answered(&gone), Some(after_takeover()));
    assert!(held_said(&gone).is_empty());
}
