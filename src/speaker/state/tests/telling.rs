//! `nodeAssigned`: only starts are news, and a flapping Service is held to the limiter's pace.

use super::*;
use crate::speaker::assigned::{SERVICE_BURST, SERVICE_EVERY};

fn fencing_seen() -> Observed {
    Observed { view: Some(view(&NODES)), expected: Some(expected(&NODES)), ..Default::default() }
}

#[test]
fn only_what_starts_is_told_whatever_made_it_start() {
    let mut lab = Lab::new(layer2_settings(), &layer2_world(&[], 8), fencing_seen());
    let first = lab.step(0, Input::ClusterChanged);
    let mine = named(&answered(&first).unwrap());
    let assigned: Vec<String> = mine.iter().map(|s| format!("nodeAssigned {s}")).collect();
    assert_eq!(told(&first), assigned);
    assert!(first.iter().any(|e| matches!(e, Effect::Event { told: Told::Assigned("layer2"), .. })));
    // The same again: no news.
    assert!(told(&lab.step(1, Input::ClusterChanged)).is_empty());
    // Fenced and lifted: starting again, though only membership changed (a partial decision of
    // no Service).
    assert!(told(&lab.step(2, Input::View(view(&["node1"])))).is_empty());
    assert_eq!(told(&lab.step(3, Input::View(view(&NODES)))), assigned);
}

#[test]
fn a_flapping_service_is_told_a_burst_then_once_a_minute() {
    let mut lab = Lab::new(layer2_settings(), &layer2_world(&[], 8), fencing_seen());
    let first = lab.step(0, Input::ClusterChanged);
    let service = named(&answered(&first).unwrap())[0].clone();
    let of_it =
        |effects: &[Effect]| told(effects).iter().filter(|t| t.ends_with(&format!(" {service}"))).count();
    let held_back = |effects: &[Effect]| {
        logs(effects)
            .iter()
            .filter(|l| matches!(l, Log::AssignedHeldBack { service: s, .. } if s.ends_with(&format!("/{service}"))))
            .count()
    };
    let mut sent = of_it(&first);
    let mut held = 0;
    // Fencing flapping every second for 20 s: each lift is a start.
    for second in 1..=20 {
        let seen = if second % 2 == 1 { view(&["node1"]) } else { view(&NODES) };
        let effects = lab.step(second, Input::View(seen));
        sent += of_it(&effects);
        held += held_back(&effects);
    }
    assert_eq!(sent as f64, SERVICE_BURST, "the burst, then nothing within the minute");
    assert_eq!(held, 10 - 2, "ten starts, two of them told");
    // A minute on, one more.
    let later = SERVICE_EVERY.as_secs() + 1;
    lab.step(later, Input::View(view(&["node1"])));
    assert_eq!(of_it(&lab.step(later + 1, Input::View(view(&NODES)))), 1);
}

#[test]
fn offline_nothing_is_told() {
    let now = Lab::new(layer2_settings(), "", Observed::default()).at(0);
    let mut speaker = Speaker::new(layer2_settings(), None, Observed::default(), now);
    let decided = speaker.step(Input::Manifests(Ok(inputs(&layer2_world(&[], 8)))), now);
    assert!(answered(&decided).is_some_and(|ips| !ips.is_empty()));
    assert!(told(&decided).is_empty());
}
