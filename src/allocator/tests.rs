use super::fixtures::*;
use super::*;
use crate::service::Protocol::{Tcp, Udp};

fn got(alloc: &mut Allocator, req: &Request) -> Result<Vec<String>, String> {
    let out = converge(alloc, req, Mode::Full);
    match out.allocation {
        Some(a) => Ok(a.ips.iter().map(|ip| ip.to_string()).collect()),
        None => Err(out.pending.unwrap_or_default()),
    }
}

fn ok(alloc: &mut Allocator, req: &Request) -> Vec<String> {
    got(alloc, req).unwrap_or_else(|e| panic!("{} pending: {e}", req.key))
}

fn err(alloc: &mut Allocator, req: &Request) -> String {
    match got(alloc, req) {
        Ok(ips) => panic!("{} unexpectedly got {ips:?}", req.key),
        Err(e) => e,
    }
}

#[test]
fn fills_entries_in_listed_order_from_their_first_address() {
    let mut a = Allocator::new(&pools(vec![pool("p", &["192.0.2.10-192.0.2.11", "192.0.2.0/31"])]));
    let order: Vec<String> = (0..4).flat_map(|i| ok(&mut a, &svc(&format!("ns/s{i}")))).collect();
    assert_eq!(order, ["192.0.2.10", "192.0.2.11", "192.0.2.0", "192.0.2.1"]);
    assert!(err(&mut a, &svc("ns/s4")).contains("no available IPs"));
}

#[test]
fn avoid_buggy_ips_skips_and_refuses_dot_zero_and_dot_255() {
    let mut a =
        Allocator::new(&pools(vec![pool("p", &["192.0.2.255-192.0.3.1", "198.51.100.0/24"]).avoid_buggy()]));
    assert_eq!(ok(&mut a, &svc("ns/a")), ["192.0.3.1"]);
    assert_eq!(ok(&mut a, &svc("ns/b")), ["198.51.100.1"]);
    assert!(err(&mut a, &svc("ns/c").wants(&["198.51.100.255"])).contains("avoidBuggyIPs"));
    let s = a.stats("p").unwrap();
    // 3 + 256 addresses, 4 of them buggy, 2 used.
    assert_eq!((s.assigned_v4, s.available_v4), (2, 253));
}

#[test]
fn manual_pools_serve_only_by_annotation_or_request() {
    let mut a = Allocator::new(&pools(vec![pool("manual", &["192.0.2.0/30"]).manual()]));
    assert!(err(&mut a, &svc("ns/auto")).contains("autoAssign"));
    assert_eq!(ok(&mut a, &svc("ns/ann").from_pool("manual")), ["192.0.2.0"]);
    assert_eq!(ok(&mut a, &svc("ns/req").wants(&["192.0.2.3"])), ["192.0.2.3"]);
}

#[test]
fn pinned_pools_by_priority_then_name_then_open_pools() {
    let p = pools(vec![
        pool("open", &["203.0.113.0/30"]),
        pool("zero", &["198.51.100.0/30"]).for_namespace("team"),
        pool("second", &["192.0.2.8/30"]).priority(2).for_namespace("team"),
        pool("first-b", &["192.0.2.4/31"]).priority(1).for_namespace("team"),
        pool("first-a", &["192.0.2.0/31"]).priority(1).for_namespace("team"),
    ]);
    let mut a = Allocator::new(&p);
    let pools_used: Vec<String> = (0..12)
        .map(|i| {
            converge(&mut a, &svc(&format!("team/s{i:02}")), Mode::Full)
                .allocation
                .map(|x| x.pool)
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        pools_used,
        [
            "first-a", "first-a", "first-b", "first-b", "second", "second", "second", "second", "zero",
            "zero", "zero", "zero"
        ]
    );
    // Other namespaces never touch pinned pools.
    assert_eq!(converge(&mut a, &svc("other/x"), Mode::Full).allocation.unwrap().pool, "open");
}

#[test]
fn service_allocation_restricts_who_may_use_a_pool() {
    let p = pools(vec![pool("web", &["192.0.2.0/30"]).for_label("tier", "web")]);
    let mut a = Allocator::new(&p);
    assert!(err(&mut a, &svc("ns/db").label("tier", "db")).contains("may serve"));
    assert!(err(&mut a, &svc("ns/db2").label("tier", "db").from_pool("web")).contains("not allowed"));
    assert!(err(&mut a, &svc("ns/db3").wants(&["192.0.2.1"])).contains("not allowed"));
    assert_eq!(ok(&mut a, &svc("ns/web").label("tier", "web")), ["192.0.2.0"]);
}

#[test]
fn requested_ips_are_checked_against_pools_and_holders() {
    let p = pools(vec![pool("a", &["192.0.2.0/30", "2001:db8::/126"]), pool("b", &["198.51.100.0/30"])]);
    let mut a = Allocator::new(&p);
    assert_eq!(ok(&mut a, &svc("ns/one").wants(&["192.0.2.2"])), ["192.0.2.2"]);
    assert!(err(&mut a, &svc("ns/two").wants(&["192.0.2.2"])).contains("already used by ns/one"));
    assert!(err(&mut a, &svc("ns/three").wants(&["203.0.113.1"])).contains("not in any IPAddressPool"));
    assert!(
        err(&mut a, &svc("ns/four").wants(&["192.0.2.3"]).from_pool("b"))
            .contains("not in the requested pool")
    );
    let dual = svc("ns/five").require_dual().wants(&["198.51.100.1", "2001:db8::1"]);
    assert!(err(&mut a, &dual).contains("different pools"));
    assert!(err(&mut a, &svc("ns/six").from_pool("nope")).contains("does not exist"));
}

#[test]
fn dual_stack_takes_both_families_from_one_pool() {
    let p = pools(vec![
        pool("a-v4", &["192.0.2.0/30"]),
        pool("b-dual", &["198.51.100.0/30", "2001:db8::/126"]),
        pool("c-v6", &["2001:db8:1::/126"]),
    ]);
    let mut a = Allocator::new(&p);
    assert_eq!(ok(&mut a, &svc("ns/req").require_dual()), ["198.51.100.0", "2001:db8::"]);
    assert_eq!(ok(&mut a, &svc("ns/v6").v6()), ["2001:db8::1"]);
    assert_eq!(ok(&mut a, &svc("ns/v6-first").require_dual().v6_first()), ["2001:db8::2", "198.51.100.1"]);
    // Exhaust the dual pool's v6: Require must wait, Prefer falls back to the primary family.
    ok(&mut a, &svc("ns/fill").v6().from_pool("b-dual"));
    assert!(err(&mut a, &svc("ns/require").require_dual()).contains("both IPv4 and IPv6"));
    assert_eq!(ok(&mut a, &svc("ns/prefer").prefer_dual()), ["192.0.2.0"]);
    assert_eq!(ok(&mut a, &svc("ns/prefer6").prefer_dual().v6_first()), ["2001:db8:1::"]);
}

#[test]
fn prefer_dual_stack_gains_the_missing_family_later_from_the_same_pool() {
    let mut a = Allocator::new(&pools(vec![pool("p", &["192.0.2.0/30"])]));
    let req = svc("ns/s").prefer_dual();
    assert_eq!(ok(&mut a, &req), ["192.0.2.0"]);
    a.set_pools(&pools(vec![pool("p", &["192.0.2.0/30", "2001:db8::/126"])]));
    let out = converge(&mut a, &req, Mode::Full);
    assert_eq!(out.allocation.unwrap().ips, ips(&["192.0.2.0", "2001:db8::"]));
    assert!(out.events.iter().any(|e| e.message.contains("additional")));
}

#[test]
fn sharing_needs_one_key_one_backend_and_distinct_ports() {
    let mut a = Allocator::new(&pools(vec![pool("p", &["192.0.2.0/29"])]));
    let tcp = svc("ns/dns-tcp").share("k").ports(&[(Tcp, 53)]).wants(&["192.0.2.4"]);
    let udp = svc("ns/dns-udp").share("k").ports(&[(Udp, 53)]).wants(&["192.0.2.4"]);
    assert_eq!(ok(&mut a, &tcp), ["192.0.2.4"]);
    assert_eq!(ok(&mut a, &udp), ["192.0.2.4"]);
    let clash = svc("ns/clash").share("k").ports(&[(Tcp, 53)]).wants(&["192.0.2.4"]);
    assert!(err(&mut a, &clash).contains("same TCP port"));
    assert!(
        err(&mut a, &svc("ns/other-key").share("j").ports(&[(Tcp, 99)]).wants(&["192.0.2.4"]))
            .contains("different allow-shared-ip key")
    );
    assert!(
        err(&mut a, &svc("ns/no-key").ports(&[(Tcp, 99)]).wants(&["192.0.2.4"]))
            .contains("no allow-shared-ip key")
    );
    assert!(
        err(&mut a, &svc("ns/local").share("k").local("app=dns").ports(&[(Tcp, 99)]).wants(&["192.0.2.4"]))
            .contains("externalTrafficPolicy")
    );
    // Automatic allocation with a key reuses a compatible shared IP before lower free ones? No:
    // the lowest of (first free, first shareable) wins, as in MetalLB's scan.
    assert_eq!(ok(&mut a, &svc("ns/web").share("k").ports(&[(Tcp, 80)])), ["192.0.2.0"]);
    assert_eq!(ok(&mut a, &svc("ns/web2").share("k").ports(&[(Tcp, 443)])), ["192.0.2.0"]);
}

#[test]
fn local_policy_shares_only_with_identical_selectors() {
    let mut a = Allocator::new(&pools(vec![pool("p", &["192.0.2.0/30"])]));
    ok(&mut a, &svc("ns/a").share("k").local("app=x").ports(&[(Tcp, 80)]));
    assert_eq!(ok(&mut a, &svc("ns/b").share("k").local("app=x").ports(&[(Tcp, 81)])), ["192.0.2.0"]);
    assert_eq!(ok(&mut a, &svc("ns/c").share("k").local("app=y").ports(&[(Tcp, 82)])), ["192.0.2.1"]);
}

#[test]
fn a_sole_holder_may_change_its_sharing_key_in_place() {
    let mut a = Allocator::new(&pools(vec![pool("p", &["192.0.2.0/30"])]));
    ok(&mut a, &svc("ns/a").share("old"));
    assert_eq!(ok(&mut a, &svc("ns/a").share("new")), ["192.0.2.0"]);
    assert_eq!(ok(&mut a, &svc("ns/b").share("new").ports(&[(Tcp, 443)])), ["192.0.2.0"]);
}

#[test]
fn release_frees_ips_for_pending_services() {
    let mut a = Allocator::new(&pools(vec![pool("p", &["192.0.2.0/32"])]));
    ok(&mut a, &svc("ns/a"));
    assert!(err(&mut a, &svc("ns/b")).contains("no available IPs"));
    a.release("ns/a");
    assert_eq!(ok(&mut a, &svc("ns/b")), ["192.0.2.0"]);
    assert_eq!(a.stats("p").unwrap().assigned_v4, 1);
}

#[test]
fn shrinking_a_pool_clears_ips_outside_it() {
    let mut a = Allocator::new(&pools(vec![pool("p", &["192.0.2.0/30"])]));
    ok(&mut a, &svc("ns/a"));
    ok(&mut a, &svc("ns/b"));
    let dropped = a.set_pools(&pools(vec![pool("p", &["192.0.2.1-192.0.2.3"])]));
    assert_eq!(dropped, ["ns/a"]);
    let out = converge(&mut a, &svc("ns/a").holding(&["192.0.2.0"]), Mode::Full);
    assert_eq!(out.allocation.unwrap().ips, ips(&["192.0.2.2"]));
    assert!(out.events.iter().any(|e| e.reason == "ClearAssignment" && e.message.contains("not in any")));
    assert!(a.set_pools(&BTreeMap::new()).len() == 2);
    assert!(err(&mut a, &svc("ns/b")).contains("no IPAddressPool"));
}

#[test]
fn held_ips_are_cleared_when_the_service_asks_for_something_else() {
    let p = pools(vec![pool("a", &["192.0.2.0/30"]), pool("b", &["198.51.100.0/30", "2001:db8::/126"])]);
    let mut a = Allocator::new(&p);
    let cases = [
        (svc("ns/x").holding(&["192.0.2.1"]).from_pool("b"), "198.51.100.0", "asks for pool"),
        (svc("ns/y").holding(&["192.0.2.2"]).wants(&["192.0.2.3"]), "192.0.2.3", "now requests"),
        (svc("ns/z").holding(&["192.0.2.0"]).v6(), "2001:db8::", "families changed"),
    ];
    for (req, want_ip, why) in cases {
        let out = converge(&mut a, &req, Mode::Full);
        assert_eq!(out.allocation.unwrap().ips[0].to_string(), want_ip, "{}", req.key);
        assert!(
            out.events.iter().any(|e| e.reason == "ClearAssignment" && e.message.contains(why)),
            "{:?}",
            out.events
        );
    }
}

#[test]
fn restart_keeps_every_valid_ip_and_pending_services_cannot_steal() {
    let p = pools(vec![pool("p", &["192.0.2.0/30"])]);
    // Before the restart "ns/late" held .0 and "ns/early" held .1; "ns/aaa" was pending.
    let reqs =
        [svc("ns/aaa"), svc("ns/late").holding(&["192.0.2.0"]), svc("ns/early").holding(&["192.0.2.1"])];
    for order in [[0, 1, 2], [2, 1, 0], [1, 0, 2]] {
        let mut a = Allocator::new(&p);
        let shuffled: Vec<Request> = order.iter().map(|i| reqs[*i].clone()).collect();
        let out = rebuild(&mut a, &shuffled);
        assert_eq!(out["ns/late"].allocation.as_ref().unwrap().ips, ips(&["192.0.2.0"]));
        assert_eq!(out["ns/early"].allocation.as_ref().unwrap().ips, ips(&["192.0.2.1"]));
        assert_eq!(out["ns/aaa"].allocation.as_ref().unwrap().ips, ips(&["192.0.2.2"]));
    }
}

#[test]
fn stats_count_distinct_ips_per_family() {
    let mut a = Allocator::new(&pools(vec![pool("p", &["192.0.2.0/24", "2001:db8::/64"]).avoid_buggy()]));
    ok(&mut a, &svc("ns/a").share("k").ports(&[(Tcp, 1)]));
    ok(&mut a, &svc("ns/b").share("k").ports(&[(Tcp, 2)]));
    ok(&mut a, &svc("ns/c").v6());
    let s = a.stats("p").unwrap();
    assert_eq!((s.assigned_v4, s.available_v4), (1, 253));
    assert_eq!((s.assigned_v6, s.available_v6), (1, (1u128 << 64) - 1));
}

#[test]
fn counts_buggy_addresses_exactly() {
    for (first, last) in [(0u128, 255u128), (255, 256), (1, 254), (0, 0), (510, 1024), (7, 7)] {
        let brute = (first..=last).filter(|v| is_buggy(Family::V4, *v)).count() as u128;
        assert_eq!(count_buggy(Family::V4, first, last), brute, "{first}..={last}");
    }
}
