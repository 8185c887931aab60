//! The controller's decisions as sequences of inputs, answered as the API server would.

use std::time::Duration;

use super::effect::{Effect, Input, Log, Metric, Signal};
use super::fixtures::*;
use crate::plan::incremental::Dirty;
use crate::plan::kube_proxy::{Finding, IPVS_WITHOUT_STRICT_ARP, STRICT_ARP};
use crate::plan::writeback::Change;

fn assign(service: &str, ip: &str, pool: &str) -> Change {
    Change::Assign { service: service.into(), ips: vec![ip.into()], pool: pool.into() }
}

fn logs(effects: &[Effect]) -> Vec<&Log> {
    effects.iter().filter_map(|e| if let Effect::Log(l) = e { Some(l) } else { None }).collect()
}

fn metrics(effects: &[Effect]) -> Vec<&Metric> {
    effects.iter().filter_map(|e| if let Effect::Metric(m) = e { Some(m) } else { None }).collect()
}

/// A Service in `shop` that holds `ip` already.
fn service_holding(name: &str, ip: &str) -> String {
    format!("{}status: {{loadBalancer: {{ingress: [{{ip: {ip}}}]}}}}\n", service(name))
}

#[test]
fn the_last_good_configuration_decides_while_an_object_is_invalid() {
    let (mut lab, first) = Lab::start(&manifest(&[pool("a", &["192.0.2.0/30"]), service("web")]));
    assert_eq!(writes(&first), [assign("shop/web", "192.0.2.0", "a")]);
    lab.settle();

    let broken = lab.change(&pool("b", &["nope"]));
    assert!(writes(&broken).is_empty(), "nothing held changes: {broken:#?}");
    assert!(metrics(&broken).contains(&&Metric::Configuration { loaded: true, stale: true }));
    assert!(matches!(logs(&broken)[..], [Log::Invalid { stale: true, .. }]), "{broken:#?}");
    assert_eq!(events(&broken), [("InvalidConfiguration", "b".to_string())]);
    assert!(reports(&broken)[0].errors.as_deref().is_some_and(|e| e.contains("nope")));
    // Still served, from the configuration that was valid last.
    let new = lab.change(&service("new"));
    assert_eq!(writes(&new), [assign("shop/new", "192.0.2.1", "a")]);
    assert!(events(&lab.settle()).is_empty(), "the invalid pool is told once");
}

#[test]
fn a_configuration_valid_again_replaces_the_last_good_one() {
    let (mut lab, _) = Lab::start(&manifest(&[pool("a", &["192.0.2.0/30"]), pool("b", &["nope"])]));
    let fixed = lab.change(&pool("b", &["198.51.100.0/30"]));
    assert!(metrics(&fixed).contains(&&Metric::Configuration { loaded: true, stale: false }));
    assert_eq!(reports(&fixed)[0].errors, None);
    // Broken by another object: pool b, which only the fixed configuration has, still serves.
    lab.change(&pool("c", &["nope"]));
    let late = lab.change(&service_from("late", "b"));
    assert_eq!(writes(&late), [assign("shop/late", "198.51.100.0", "b")]);
}

#[test]
fn with_no_valid_configuration_ever_nothing_is_written() {
    let (_, first) = Lab::start(&manifest(&[pool("a", &["nope"]), service_holding("web", "192.0.2.9")]));
    assert!(writes(&first).is_empty(), "{first:#?}");
    assert!(matches!(
        logs(&first)[..],
        [Log::Leading, Log::Listing, Log::Listed, Log::Invalid { stale: false, .. }]
    ));
    assert!(metrics(&first).contains(&&Metric::Configuration { loaded: false, stale: true }));
    assert!(conditions(&first).is_empty(), "what the conditions said still holds");
}

#[test]
fn a_service_that_cannot_get_an_ip_is_told_why_once_per_reason() {
    let yaml = manifest(&[pool("a", &["192.0.2.0/32"]), service("one"), service("two")]);
    let (mut lab, first) = Lab::start(&yaml);
    assert_eq!(writes(&first), [assign("shop/one", "192.0.2.0", "a")]);
    assert_eq!(
        events(&first),
        [("IPAllocated", "shop/one".to_string()), ("AllocationFailed", "shop/two".to_string())]
    );
    let why = first.iter().find_map(|e| match e {
        Effect::SetCondition(s, c) if s == "shop/two" => Some(c.want.clone()),
        _ => None,
    });
    let why = why.expect("a condition for two");
    assert_eq!((why.status, why.reason), (false, "NotAllocated"));
    assert!(why.message.contains("192.0.2.0") || why.message.contains("no available"), "{}", why.message);
    assert!(events(&lab.settle()).is_empty());
    assert!(events(&lab.change(&service("two"))).is_empty(), "the same reason is not said again");

    // Another reason is.
    let other = lab.change(&service_from("two", "nowhere"));
    assert_eq!(events(&other), [("AllocationFailed", "shop/two".to_string())]);
    // Room made: it gets the address.
    let dirty = lab.world().delete_service("shop/one");
    let step = lab.step(Input::Changed(dirty));
    lab.answer(step);
    let freed = lab.change(&service("two"));
    assert_eq!(writes(&freed), [assign("shop/two", "192.0.2.0", "a")]);
    assert_eq!(events(&freed), [("IPAllocated", "shop/two".to_string())]);
}

#[test]
fn a_failed_write_is_retried_a_second_later() {
    let (mut lab, _) = Lab::start(&pool("a", &["192.0.2.0/30"]));
    lab.failing.insert("shop/web".into());
    let failed = lab.change(&service("web"));
    assert_eq!(writes(&failed), [assign("shop/web", "192.0.2.0", "a")]);
    assert!(events(&failed).is_empty(), "{failed:#?}");
    assert!(matches!(logs(&failed)[..], [Log::WriteFailed(_)]));
    assert!(metrics(&failed).contains(&&Metric::UpdateFailed));
    assert_eq!(lab.ctl.deadline(), Some(lab.now + Duration::from_secs(1)));
    assert!(lab.after(Duration::from_millis(500)).is_empty());
    lab.failing.clear();
    let retried = lab.after(Duration::from_millis(500));
    assert_eq!(writes(&retried), [assign("shop/web", "192.0.2.0", "a")]);
    // The allocator kept the IP through the failure, so the retry decides nothing new and has
    // no Event of its own: the first decision's IPAllocated is never said (as before the
    // decisions were a state machine).
    assert!(events(&retried).is_empty(), "{retried:#?}");
    assert!(events(&lab.settle()).is_empty());
}

#[test]
fn each_event_goes_out_once_its_write_landed() {
    let (mut lab, _) = Lab::start(&pool("a", &["192.0.2.0/30"]));
    let dirty = lab.world().apply(&service("web"));
    let step = lab.step(Input::Changed(dirty));
    let before = events(&step);
    assert!(before.is_empty(), "not before the write: {before:?}");
    let landed = lab.answer(step);
    assert_eq!(events(&landed), [("IPAllocated", "shop/web".to_string())]);
    assert!(events(&lab.settle()).is_empty(), "said once");
}

#[test]
fn an_ip_outside_every_pool_is_said_once() {
    let (mut lab, _) = Lab::start(&pool("a", &["192.0.2.0/30"]));
    lab.change(&pool("bad", &["nope"]));
    let far = lab.change(&service_holding("far", "203.0.113.1"));
    assert!(writes(&far).is_empty(), "decided with the last good configuration: held IPs stay");
    assert_eq!(events(&far), [("IPOutsidePools", "shop/far".to_string())]);
    assert_eq!(conditions(&far), [("shop/far".to_string(), "IPOutsidePools")]);
    assert!(events(&lab.settle()).is_empty());
    assert!(events(&lab.change(&service_holding("far", "203.0.113.1"))).is_empty());
}

#[test]
fn kube_proxy_without_strict_arp_is_warned_of_once_per_finding() {
    let yaml = manifest(&[pool("a", &["192.0.2.0/30"]), l2_advertisement("one"), l2_advertisement("two")]);
    let (mut lab, first) = Lab::start(&yaml);
    assert!(reports(&first)[0].extra.is_empty(), "nothing known of kube-proxy yet");
    let finding = |safe: bool, message: &str| Finding {
        safe,
        reason: if safe { STRICT_ARP } else { IPVS_WITHOUT_STRICT_ARP },
        message: message.into(),
    };
    let step = lab.step(Input::KubeProxy(Some(finding(false, "IPVS without strictARP"))));
    let unsafe_ = lab.answer(step);
    let warned = [(IPVS_WITHOUT_STRICT_ARP, "one".to_string()), (IPVS_WITHOUT_STRICT_ARP, "two".to_string())];
    assert_eq!(events(&unsafe_), warned);
    let extra = &reports(&unsafe_)[0].extra;
    assert_eq!((extra[0].type_, extra[0].status), ("kubeProxyStrictARP", false));
    let step = lab.step(Input::KubeProxy(Some(finding(false, "IPVS without strictARP"))));
    assert!(events(&lab.answer(step)).is_empty(), "the same finding again");
    let step = lab.step(Input::KubeProxy(Some(finding(true, "strictARP is on"))));
    let safe = lab.answer(step);
    assert!(events(&safe).is_empty());
    assert!(reports(&safe)[0].extra[0].status);
    let step = lab.step(Input::KubeProxy(Some(finding(false, "IPVS without strictARP"))));
    assert_eq!(events(&lab.answer(step)), warned, "said again once it comes back");
}

#[test]
fn pool_counts_are_written_when_they_change_at_most_once_a_second() {
    let (mut lab, first) = Lab::start(&manifest(&[pool("a", &["192.0.2.0/30"]), service("web")]));
    let counts = &reports(&first)[0].pools;
    assert_eq!(counts.len(), 1);
    assert_eq!((counts[0].0.as_str(), counts[0].1.assigned_ipv4), ("a", 1));
    lab.settle();
    let api = lab.change(&service("api"));
    assert_eq!(writes(&api).len(), 1);
    assert!(reports(&api)[0].pools.is_empty(), "held back within the second");
    assert_eq!(lab.ctl.deadline(), Some(lab.now + Duration::from_secs(1)));
    let later = lab.after(Duration::from_secs(1));
    let counts = &reports(&later)[0].pools;
    assert_eq!((counts[0].0.as_str(), counts[0].1.assigned_ipv4), ("a", 2));
    lab.settle();
    let quiet = lab.after(Duration::from_secs(1));
    assert!(reports(&quiet)[0].pools.is_empty(), "the pool holds its counts already");
    assert!(lab.after(Duration::from_secs(5)).is_empty(), "a quiet cluster costs no pass");
}

#[test]
fn announce_failures_reach_the_condition() {
    let yaml =
        manifest(&[pool("a", &["192.0.2.0/30"]), l2_advertisement("l2"), node("node1"), service("web")]);
    let (mut lab, first) = Lab::start(&yaml);
    assert_eq!(conditions(&first), [("shop/web".to_string(), "NoServingEndpoint")]);
    lab.settle();
    let failure = announce_failure("node1", "shop/web", "192.0.2.0: none of the interfaces");
    lab.world().speakers = vec![failure];
    let step = lab.step(Input::Changed(Dirty::everything()));
    let failed = lab.answer(step);
    let said = failed.iter().find_map(|e| match e {
        Effect::SetCondition(s, c) if s == "shop/web" => Some(c.want.clone()),
        _ => None,
    });
    let said = said.expect("a new condition");
    assert_eq!((said.status, said.reason), (false, "AnnounceFailed"));
    assert!(said.message.contains("node1: layer 2: 192.0.2.0: none of the interfaces"), "{}", said.message);
    assert!(conditions(&lab.settle()).is_empty(), "written once");
    lab.world().speakers.clear();
    let step = lab.step(Input::Changed(Dirty::everything()));
    assert_eq!(conditions(&lab.answer(step)), [("shop/web".to_string(), "NoServingEndpoint")]);
}

#[test]
fn a_condition_that_holds_is_not_queued_and_keeps_its_transition_time() {
    let (mut lab, first) = Lab::start(&manifest(&[pool("a", &["192.0.2.0/30"]), service("web")]));
    assert_eq!(conditions(&first), [("shop/web".to_string(), "NotAdvertised")]);
    let again = lab.settle();
    assert!(conditions(&again).is_empty());
    assert!(again.iter().any(|e| matches!(e, Effect::CancelCondition(s) if s == "shop/web")));
    let advertised = lab.change(&l2_advertisement("l2"));
    let kept = advertised.iter().find_map(|e| match e {
        Effect::SetCondition(_, c) => Some(c),
        _ => None,
    });
    let kept = kept.expect("the reason changed");
    assert_eq!(kept.want.reason, "NoServingEndpoint");
    assert!(kept.since.is_some(), "still False: the transition time stays");
}

#[test]
fn a_standby_decides_nothing_until_it_leads() {
    let mut world = World::default();
    world.apply(&manifest(&[pool("a", &["192.0.2.0/30"]), service("web")]));
    let mut lab = Lab::standby(world, Duration::ZERO);
    assert!(lab.step(Input::Listed).is_empty());
    let dirty = lab.world().apply(&service("api"));
    assert!(lab.step(Input::Changed(dirty)).is_empty());
    assert_eq!(lab.ctl.deadline(), None);
    let leading = lab.step(Input::Elected);
    assert!(matches!(leading[..2], [Effect::Log(Log::Leading), Effect::Lead]));
    let written = lab.answer(leading);
    assert_eq!(
        writes(&written),
        [assign("shop/api", "192.0.2.0", "a"), assign("shop/web", "192.0.2.1", "a")]
    );
    assert!(metrics(&written).contains(&&Metric::FullPass), "the first pass decides everything");
}

/// A controller whose first pass's writes are in flight.
fn writing() -> (Lab, Vec<Effect>) {
    let mut world = World::default();
    world.apply(&manifest(&[pool("a", &["192.0.2.0/30"]), service("web")]));
    let mut lab = Lab::standby(world, Duration::ZERO);
    lab.step(Input::Elected);
    let first = lab.step(Input::Listed);
    assert_eq!(writes(&first).len(), 1);
    (lab, first)
}

#[test]
fn losing_the_lease_stops_every_write_at_once() {
    let (mut lab, _) = writing();
    assert!(matches!(&lab.step(Input::LeaseLost)[..], [Effect::Exit(Err(_))]));
    let late = Input::Written { change: assign("shop/web", "192.0.2.0", "a"), error: None };
    assert!(lab.step(late).is_empty(), "no Event for a write that came back after");
    assert!(lab.step(Input::WritesDone).is_empty());
    let dirty = lab.world().apply(&service("api"));
    assert!(lab.step(Input::Changed(dirty)).is_empty());
    assert_eq!(lab.ctl.deadline(), None);
}

#[test]
fn sigterm_cuts_into_a_pass_and_releases_the_lease() {
    let (mut lab, _) = writing();
    let stop = lab.step(Input::Signal(Signal::Terminate));
    assert!(matches!(
        &stop[..],
        [Effect::Log(Log::Terminating), Effect::Terminating, Effect::ReleaseLease, Effect::Exit(Ok(()))]
    ));
    assert!(lab.step(Input::WritesDone).is_empty());
}

#[test]
fn what_changes_during_a_pass_is_decided_by_the_next() {
    let (mut lab, first) = writing();
    let dirty = lab.world().apply(&service("api"));
    assert!(lab.step(Input::Changed(dirty)).is_empty(), "one pass at a time");
    let all = lab.answer(first);
    assert_eq!(writes(&all), [assign("shop/web", "192.0.2.0", "a"), assign("shop/api", "192.0.2.1", "a")]);
    assert_eq!(
        metrics(&all).iter().filter(|m| ***m == Metric::FullPass).count(),
        1,
        "the second pass is partial"
    );
}

#[test]
fn a_settle_time_decides_a_burst_together() {
    let (mut lab, _) = Lab::start_with(&pool("a", &["192.0.2.0/30"]), Duration::from_millis(20));
    assert!(lab.change(&service("one")).is_empty(), "waits out the settle time");
    lab.now += Duration::from_millis(10);
    assert!(lab.change(&service("two")).is_empty());
    let burst = lab.after(Duration::from_millis(10));
    assert_eq!(writes(&burst), [assign("shop/one", "192.0.2.0", "a"), assign("shop/two", "192.0.2.1", "a")]);
    let latency = Metric::Allocated(Duration::from_millis(20));
    assert!(metrics(&burst).contains(&&latency), "counted from the first wake");
}

#[test]
fn an_ip_cleared_is_written_with_its_reason() {
    let (mut lab, _) = Lab::start(&manifest(&[pool("a", &["192.0.2.0/30"]), service("web")]));
    lab.settle();
    let held = service_from("web", "nowhere")
        .replace("spec:", "status: {loadBalancer: {ingress: [{ip: 192.0.2.0}]}}\nspec:");
    let cleared = lab.change(&held);
    let why = "IPAddressPool \"nowhere\" does not exist".to_string();
    assert_eq!(writes(&cleared), [Change::Clear { service: "shop/web".into(), reason: why }]);
    // Said twice, as before the decisions were a state machine: with the write, then again as
    // the warning of a Service left pending, whose reason it had not been told. A known
    // repeat, kept so that behaviour did not change.
    let told = [("ClearAssignment", "shop/web".to_string()), ("AllocationFailed", "shop/web".to_string())];
    assert_eq!(events(&cleared), [told.clone(), told].concat());
    assert!(events(&lab.settle()).is_empty(), "and not again");
}

#[test]
fn a_service_change_decides_that_service_and_a_configuration_change_everything() {
    let (mut lab, _) = Lab::start(&manifest(&[pool("a", &["192.0.2.0/30"]), service("web")]));
    lab.settle();
    let one = lab.change(&service("api"));
    assert_eq!(writes(&one), [assign("shop/api", "192.0.2.1", "a")]);
    assert!(!metrics(&one).contains(&&Metric::FullPass));
    assert!(!one.iter().any(|e| matches!(e, Effect::GiveBackMemory)));
    let all = lab.change(&pool("b", &["198.51.100.0/30"]));
    assert!(writes(&all).is_empty(), "nothing moves");
    assert!(metrics(&all).contains(&&Metric::FullPass));
    assert!(all.iter().any(|e| matches!(e, Effect::GiveBackMemory)), "a whole pass gives its memory back");
}

#[test]
fn a_leader_whose_renewal_stopped_stops_as_if_it_lost_the_lease() {
    let (mut lab, _) = writing();
    let ended = lab.step(Input::LeadershipEnded);
    assert!(
        matches!(&ended[..], [Effect::Exit(Err(why))] if why.contains("lost the leader lease")),
        "{ended:#?}"
    );
    let late = Input::Written { change: assign("shop/web", "192.0.2.0", "a"), error: None };
    assert!(lab.step(late).is_empty(), "nothing more is said or written");
    assert!(lab.step(Input::WritesDone).is_empty());
    assert_eq!(lab.ctl.deadline(), None);
}

#[test]
fn a_standby_whose_election_stopped_fails() {
    let mut world = World::default();
    world.apply(&manifest(&[pool("a", &["192.0.2.0/30"]), service("web")]));
    let mut lab = Lab::standby(world, Duration::ZERO);
    assert!(lab.step(Input::Listed).is_empty());
    let ended = lab.step(Input::LeadershipEnded);
    assert!(matches!(&ended[..], [Effect::Exit(Err(why))] if why.contains("election")), "{ended:#?}");
    assert!(lab.step(Input::Elected).is_empty(), "a stopped role never leads");
}

#[test]
fn a_standby_that_takes_over_knows_kube_proxy_already() {
    let mut world = World::default();
    world.apply(&manifest(&[pool("a", &["192.0.2.0/30"]), l2_advertisement("l2")]));
    let mut lab = Lab::standby(world, Duration::ZERO);
    assert!(lab.step(Input::Listed).is_empty());
    let safe = Finding { safe: true, reason: STRICT_ARP, message: "strictARP is on".into() };
    assert!(lab.step(Input::KubeProxy(Some(safe))).is_empty(), "a standby decides nothing");
    let step = lab.step(Input::Elected);
    let first = lab.answer(step);
    let extra = &reports(&first)[0].extra;
    assert_eq!(extra.len(), 1, "the first report keeps the condition: {first:#?}");
    assert_eq!((extra[0].type_, extra[0].status), ("kubeProxyStrictARP", true));
}

#[test]
fn a_stray_writes_done_or_report_changes_nothing() {
    let (mut lab, _) = Lab::start(&manifest(&[pool("a", &["192.0.2.0/30"]), service("web")]));
    lab.settle();
    assert!(lab.step(Input::WritesDone).is_empty());
    assert!(lab.step(Input::Reported).is_empty());
    let api = lab.change(&service("api"));
    assert_eq!(writes(&api), [assign("shop/api", "192.0.2.1", "a")], "not wedged");
    assert_eq!(reports(&api).len(), 1);

    // A report said while the writes are in flight does not end their pass.
    let (mut lab, first) = writing();
    assert!(lab.step(Input::Reported).is_empty());
    let dirty = lab.world().apply(&service("api"));
    assert!(lab.step(Input::Changed(dirty)).is_empty(), "still one pass at a time");
    let all = lab.answer(first);
    assert_eq!(writes(&all), [assign("shop/web", "192.0.2.0", "a"), assign("shop/api", "192.0.2.1", "a")]);
}

#[test]
fn a_settle_time_past_what_the_clock_can_say_waits_rather_than_panics() {
    let (mut lab, first) = Lab::start_with(&pool("a", &["192.0.2.0/30"]), Duration::MAX);
    assert_eq!(reports(&first).len(), 1, "the first pass does not settle");
    assert!(lab.change(&service("web")).is_empty());
    assert_eq!(lab.ctl.deadline(), None);
}

#[test]
fn a_partial_pass_reads_the_reports_of_its_services_alone() {
    let (mut lab, _) = Lab::start(&manifest(&[pool("a", &["192.0.2.0/30"]), service("web")]));
    assert_eq!(lab.world().take_reports_asked(), [None], "the first pass reads every report");
    lab.settle();
    lab.world().take_reports_asked();
    lab.change(&service("api"));
    assert_eq!(lab.world().take_reports_asked(), [Some(["shop/api".to_string()].into())]);
    lab.settle();
    lab.world().take_reports_asked();
    lab.change(&pool("b", &["198.51.100.0/30"]));
    assert_eq!(lab.world().take_reports_asked(), [None], "a whole pass reads every report");
}

/// A controller whose pass over a new Service is writing its report.
fn reporting() -> Lab {
    let (mut lab, _) = Lab::start(&pool("a", &["192.0.2.0/30"]));
    lab.hold_reports = true;
    let web = lab.change(&service("web"));
    assert_eq!(writes(&web), [assign("shop/web", "192.0.2.0", "a")]);
    assert_eq!(reports(&web).len(), 1);
    assert_eq!(lab.ctl.deadline(), None, "no pass begins while one reports");
    lab
}

#[test]
fn what_changes_while_a_pass_reports_is_decided_once_it_reported() {
    let mut lab = reporting();
    let dirty = lab.world().apply(&service("api"));
    assert!(lab.step(Input::Changed(dirty)).is_empty(), "one pass at a time");
    let step = lab.step(Input::Reported);
    let next = lab.answer(step);
    assert_eq!(writes(&next), [assign("shop/api", "192.0.2.1", "a")]);
    assert_eq!(reports(&next).len(), 1);
}

#[test]
fn losing_the_lease_while_a_pass_reports_stops_at_once() {
    let mut lab = reporting();
    assert!(matches!(&lab.step(Input::LeaseLost)[..], [Effect::Exit(Err(_))]));
    assert!(lab.step(Input::Reported).is_empty());
    let dirty = lab.world().apply(&service("api"));
    assert!(lab.step(Input::Changed(dirty)).is_empty());
    assert_eq!(lab.ctl.deadline(), None);
}

#[test]
fn sigterm_while_a_pass_reports_releases_the_lease() {
    let mut lab = reporting();
    let stop = lab.step(Input::Signal(Signal::Terminate));
    assert!(matches!(
        &stop[..],
        [Effect::Log(Log::Terminating), Effect::Terminating, Effect::ReleaseLease, Effect::Exit(Ok(()))]
    ));
    assert!(lab.step(Input::Reported).is_empty());
    assert_eq!(lab.ctl.deadline(), None);
}

/// The decisions are the controller's without its I/O: what would break that stays out of
/// their files (as tests/integration/purity.rs keeps it out of the pure modules).
#[test]
fn the_decisions_reach_for_no_cluster_socket_or_task() {
    let files = [
        ("state.rs", include_str!("state.rs")),
        ("pass.rs", include_str!("pass.rs")),
        ("status.rs", include_str!("status.rs")),
        ("effect.rs", include_str!("effect.rs")),
    ];
    let forbidden =
        ["tokio", "kube::Api", "kube::Client", "kube::runtime", "std::net", "std::fs", "std::process"];
    let mut hits = Vec::new();
    for (name, text) in files {
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim_start().starts_with("//")) {
            hits.extend(
                forbidden
                    .iter()
                    .filter(|bad| line.contains(**bad))
                    .map(|bad| format!("{name}:{}: {bad}", n + 1)),
            );
        }
    }
    assert!(hits.is_empty(), "I/O in the decisions:\n{}", hits.join("\n"));
}
