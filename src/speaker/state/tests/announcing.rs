//! What goes out: the layer 2 IPs (takeovers timed), what is said about them, and how much
//! a change costs to decide.

use super::*;

fn takeovers(effects: &[Effect]) -> Vec<Instant> {
    metrics(effects)
        .into_iter()
        .filter_map(|m| if let Metric::Takeover { since } = m { Some(*since) } else { None })
        .collect()
}

#[test]
fn a_takeover_is_timed_from_the_membership_change_that_caused_it() {
    let seen = Observed { view: Some(view(&["node1", "node2"])), ..Default::default() };
    let mut lab = Lab::new(layer2_settings(), &layer2_world(&[], 8), seen);
    let first = lab.step(0, Input::ClusterChanged);
    let mine = answered(&first).unwrap();
    assert!(mine.len() < 8, "node2 wins none of 8: pick another fixture");
    assert!(takeovers(&first).is_empty(), "starting is no takeover");

    let gone = lab.step(5, Input::View(view(&["node1"])));
    assert_eq!(answered(&gone).map(|ips| ips.len()), Some(8), "node1 takes node2's IPs");
    assert_eq!(takeovers(&gone), [lab.at(5).at]);
    assert_eq!(report(&gone).unwrap().l2.len(), 8);

    // A decision later, or a change that gains nothing, is no takeover.
    assert!(takeovers(&lab.step(6, Input::ClusterChanged)).is_empty());
    let back = lab.step(7, Input::View(view(&["node1", "node2"])));
    assert_eq!(answered(&back).as_ref(), Some(&mine));
    assert!(takeovers(&back).is_empty());
    // That change was used up, though it gained nothing: a gain for another reason (more
    // Services) is not timed from it.
    lab.cluster.change(&layer2_world(&[], 14), None);
    let more = lab.step(9, Input::ClusterChanged);
    let now = answered(&more).unwrap();
    assert!(!now.is_subset(&mine), "node1 wins none of 6 more: pick another fixture");
    assert!(takeovers(&more).is_empty());
}

#[test]
fn what_was_planned_is_said_at_info_only_when_it_changes() {
    let settings = Settings { bgp: true, live_nodes: Some(set(&["node1"])), ..layer2_settings() };
    let mut lab = Lab::new(settings, &layer2_world(&[], 3), Observed::default());
    let news = |effects: &[Effect]| -> Vec<bool> {
        logs(effects)
            .into_iter()
            .filter_map(|l| match l {
                Log::Layer2Planned { news, .. } | Log::FrrPlanned { news, .. } => Some(*news),
                _ => None,
            })
            .collect()
    };
    assert_eq!(news(&lab.step(0, Input::ClusterChanged)), [true, true]);
    lab.cluster.change(&layer2_world(&[], 3), Some(&["shop/web1"]));
    assert_eq!(news(&lab.step(1, Input::ClusterChanged)), [false, false]);
    lab.cluster.change(&layer2_world(&[], 4), Some(&["shop/web4"]));
    assert_eq!(news(&lab.step(2, Input::ClusterChanged)), [true, false], "one more IP; FRR's the same");
}

#[test]
fn a_changed_service_is_decided_alone_and_anything_else_decides_them_all() {
    let settings = Settings { live_nodes: Some(set(&["node1"])), ..layer2_settings() };
    let mut lab = Lab::new(settings, &layer2_world(&[], 3), Observed::default());
    let whole = |effects: &[Effect]| {
        let full = metrics(effects).contains(&&Metric::FullPass);
        assert_eq!(full, effects.contains(&Effect::GiveBackMemory), "a whole decision gives memory back");
        full
    };
    assert!(whole(&lab.step(0, Input::ClusterChanged)));
    lab.cluster.change(&layer2_world(&[], 4), Some(&["shop/web4"]));
    let one = lab.step(1, Input::ClusterChanged);
    assert!(!whole(&one));
    assert_eq!(answered(&one).map(|ips| ips.len()), Some(4), "alone, but with the others kept");
    // The cache says only a Service changed, yet the L2Advertisement did: all are decided.
    lab.cluster.change(&layer2_world(&["eth0"], 4), Some(&["shop/web1"]));
    let config = lab.step(2, Input::ClusterChanged);
    assert!(whole(&config));
    assert_eq!(report(&config).unwrap().l2.values().next(), Some(&vec!["eth0".to_string()]));
    lab.cluster.change(&layer2_world(&["eth0"], 4), None);
    assert!(whole(&lab.step(3, Input::ClusterChanged)));
}

#[test]
fn a_node_ready_again_is_a_full_candidate_after_the_settle_time() {
    let ready = "---\napiVersion: v1\nkind: Node\nmetadata: {name: node2}\n\
        status: {conditions: [{type: Ready, status: 'True', lastTransitionTime: '2025-12-31T23:59:50Z'}]}\n";
    let world = format!("{}{ready}", layer2_world(&[], 2)).replacen(
        "metadata: {name: node2}\n",
        "metadata: {name: nodeX}\n",
        1,
    );
    let mut lab = Lab::new(layer2_settings(), &world, Observed::default());
    let first = lab.step(0, Input::ClusterChanged);
    let unfit: Vec<_> = logs(&first).into_iter().filter(|l| matches!(l, Log::Unfit(_))).collect();
    let Log::Unfit(nodes) = unfit[0] else { unreachable!() };
    assert_eq!(nodes.keys().collect::<Vec<_>>(), ["node2"]);
    assert_eq!(lab.speaker.deadline(), Some(lab.wall + Duration::from_secs(50)));
    // Said once.
    assert!(!logs(&lab.step(10, Input::ClusterChanged)).iter().any(|l| matches!(l, Log::Unfit(_))));
    let settled = lab.step(50, Input::Timer);
    assert!(logs(&settled).contains(&&Log::Unfit(Default::default())));
    assert_eq!(lab.speaker.deadline(), None);
}

#[test]
fn stopping_stops_answering_first_then_leaves_and_leaves_frr_alone() {
    let settings = Settings { bgp: true, membership_keys: Some(1), ..layer2_settings() };
    let mut lab = Lab::new(settings, &layer2_world(&[], 2), Observed::default());
    lab.step(0, Input::ClusterChanged);
    let stop = lab.step(1, Input::Terminate { sigterm: true, leaving: false });
    assert_eq!(
        stop,
        [Effect::Log(Log::Sigterm { leaving: false }), Effect::Layer2(Default::default()), Effect::Leave]
    );
    let interrupted = lab.step(1, Input::Terminate { sigterm: false, leaving: false });
    assert_eq!(interrupted, [Effect::Layer2(Default::default()), Effect::Leave]);
    let mut bgp_only = Lab::new(bgp_settings(), &bgp_world("198.51.100.0/28", 1, None), Observed::default());
    assert_eq!(bgp_only.step(0, Input::Terminate { sigterm: false, leaving: false }), []);
}

/// Leaving for good (the DaemonSet deleted: `helm uninstall`), a BGP speaker has FRR withdraw
/// its routes before it exits; a layer 2 only speaker has nothing to withdraw.
#[test]
fn leaving_for_good_withdraws_the_routes_last() {
    let mut bgp_only = Lab::new(bgp_settings(), &bgp_world("198.51.100.0/28", 1, None), Observed::default());
    bgp_only.step(0, Input::ClusterChanged);
    let stop = bgp_only.step(1, Input::Terminate { sigterm: true, leaving: true });
    assert_eq!(stop, [Effect::Log(Log::Sigterm { leaving: true }), Effect::Withdraw]);
    let mut layer2 = Lab::new(layer2_settings(), &layer2_world(&[], 2), Observed::default());
    layer2.step(0, Input::ClusterChanged);
    let stop = layer2.step(1, Input::Terminate { sigterm: true, leaving: true });
    assert!(!stop.contains(&Effect::Withdraw), "{stop:?}");
}

/// The prefixes an FRR configuration announces (`network` lines), with how many
/// announcements the effect says were planned.
fn announced_prefixes(effects: &[Effect]) -> Option<(BTreeSet<String>, usize)> {
    effects.iter().find_map(|e| match e {
        Effect::Frr { config, announcements, .. } => {
            let prefixes = config
                .lines()
                .filter_map(|l| l.trim().strip_prefix("network "))
                .filter_map(|l| l.split_whitespace().next())
                .map(String::from)
                .collect();
            Some((prefixes, *announcements))
        }
        _ => None,
    })
}

fn prefixes(last: &[u8]) -> BTreeSet<String> {
    last.iter().map(|i| format!("198.51.100.{i}/32")).collect()
}

#[test]
fn a_bgp_service_leaving_its_pool_leaves_frr_through_a_partial_pass_and_stays_out() {
    let mut lab = Lab::new(bgp_settings(), &bgp_world("198.51.100.0/28", 6, None), Observed::default());
    let first = lab.step(0, Input::ClusterChanged);
    assert_eq!(announced_prefixes(&first), Some((prefixes(&[1, 2, 3, 4, 5, 6]), 6)));

    // The pool shrinks to a /30 under web4..web6; the cache names only a Service (the changes
    // came together): decided in full all the same, and what left the pool leaves FRR.
    let shrunk = bgp_world("198.51.100.0/30", 6, None);
    lab.cluster.change(&shrunk, Some(&["shop/web5"]));
    let full = lab.step(1, Input::ClusterChanged);
    assert!(metrics(&full).contains(&&Metric::FullPass));
    assert_eq!(announced_prefixes(&full), Some((prefixes(&[1, 2, 3]), 3)));
    assert_eq!(report(&full).unwrap().bgp.len(), 3);

    // A Service outside the pool changes (its status the same): a partial pass, which keeps
    // it out.
    lab.cluster.change(&shrunk, Some(&["shop/web4"]));
    let partial = lab.step(2, Input::ClusterChanged);
    assert!(!metrics(&partial).contains(&&Metric::FullPass), "a partial pass");
    assert_eq!(announced_prefixes(&partial), Some((prefixes(&[1, 2, 3]), 3)));

    // web3's status moves out of the pool: it leaves FRR in a partial pass.
    let moved = shrunk.replace("{ip: 198.51.100.3}", "{ip: 198.51.100.9}");
    assert_ne!(moved, shrunk, "web3's status not found: the fixture changed");
    lab.cluster.change(&moved, Some(&["shop/web3"]));
    let left = lab.step(3, Input::ClusterChanged);
    assert!(!metrics(&left).contains(&&Metric::FullPass), "a partial pass");
    assert_eq!(announced_prefixes(&left), Some((prefixes(&[1, 2]), 2)));
    assert!(logs(&left).contains(&&Log::FrrPlanned { announcements: 2, news: true }));
    assert_eq!(report(&left).unwrap().bgp.len(), 2);
}
