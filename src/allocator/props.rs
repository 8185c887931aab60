//! Properties over random operation sequences: no unlawful double use, every IP in a pool the
//! Service may use, and a restart in any order changes no valid IP.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::fixtures::*;
use super::*;
use crate::service::Protocol::{Tcp, Udp};

#[derive(Debug, Clone)]
enum Op {
    Upsert(usize, Spec),
    Delete(usize),
    Pools(usize),
}

#[derive(Debug, Clone)]
struct Spec {
    ns: usize,
    family: usize,
    share: Option<u8>,
    local: Option<u8>,
    port: u16,
    udp: bool,
    pool: Option<usize>,
    want: Option<u8>,
}

const POOL_SETS: usize = 3;

/// Small pools so that exhaustion, sharing and shrinking all happen often.
fn pool_set(i: usize) -> BTreeMap<String, Pool> {
    match i {
        0 => pools(vec![
            pool("a", &["192.0.2.0/29", "2001:db8::/125"]),
            pool("b", &["198.51.100.0/30"]).for_namespace("ns1"),
        ]),
        1 => pools(vec![
            pool("a", &["192.0.2.2-192.0.2.5", "2001:db8::/126"]),
            pool("c", &["203.0.113.0/30"]).priority(1).for_namespace("ns0"),
        ]),
        _ => pools(vec![
            pool("a", &["192.0.2.0/28", "2001:db8::/124"]).avoid_buggy(),
            pool("m", &["198.51.100.8/30"]).manual(),
        ]),
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0..2usize,
        0..4usize,
        prop::option::of(0..2u8),
        prop::option::of(0..2u8),
        1..4u16,
        any::<bool>(),
        prop::option::of(0..3usize),
        prop::option::of(0..16u8),
    )
        .prop_map(|(ns, family, share, local, port, udp, pool, want)| Spec {
            ns,
            family,
            share,
            local,
            port,
            udp,
            pool,
            want,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..12usize, spec()).prop_map(|(i, s)| Op::Upsert(i, s)),
        2 => (0..12usize).prop_map(Op::Delete),
        1 => (0..POOL_SETS).prop_map(Op::Pools),
    ]
}

fn request(i: usize, s: &Spec) -> Request {
    let mut r = svc(&format!("ns{}/s{i}", s.ns)).ports(&[(if s.udp { Udp } else { Tcp }, s.port)]);
    r = match s.family {
        0 => r,
        1 => r.v6(),
        2 => r.require_dual(),
        _ => r.prefer_dual(),
    };
    if let Some(k) = s.share {
        r = r.share(&format!("k{k}"));
    }
    if let Some(l) = s.local {
        r = r.local(&format!("app={l}"));
    }
    if let Some(p) = s.pool {
        r = r.from_pool(["a", "b", "m"][p]);
    }
    if let (Some(w), 0) = (s.want, s.family) {
        r = r.wants(&[&format!("192.0.2.{w}")]);
    }
    r
}

fn check_invariants(
    a: &Allocator,
    live: &BTreeMap<usize, Request>,
    pools: &BTreeMap<String, Pool>,
) -> Result<(), TestCaseError> {
    let by_key: BTreeMap<&str, &Request> = live.values().map(|r| (r.key.as_str(), r)).collect();
    let mut holders: BTreeMap<IpAddr, Vec<&str>> = BTreeMap::new();
    for (key, alloc) in a.allocations() {
        let req = by_key.get(key.as_str()).copied();
        prop_assert!(req.is_some(), "{key} holds IPs but was deleted");
        let req = req.unwrap();
        let pool = &pools[&alloc.pool];
        prop_assert!(pool.admits(&req.namespace, &req.labels), "{key} in pool {} it may not use", pool.name);
        let fams: BTreeSet<Family> = alloc.ips.iter().map(Family::of).collect();
        let want: BTreeSet<Family> = req.families.iter().copied().collect();
        prop_assert!(
            fams == want || (req.prefer_dual_stack && fams.len() == 1),
            "{key} families {fams:?} vs {want:?}"
        );
        for ip in &alloc.ips {
            prop_assert!(
                pool.ranges.iter().any(|r| r.contains(*ip)),
                "{key}: {ip} outside pool {}",
                pool.name
            );
            prop_assert!(
                !(pool.avoid_buggy_ips && is_buggy(Family::of(ip), to_u128(*ip))),
                "{key}: buggy {ip}"
            );
            holders.entry(*ip).or_default().push(key);
        }
    }
    for (ip, keys) in &holders {
        if keys.len() < 2 {
            continue;
        }
        let reqs: Vec<&Request> = keys.iter().map(|k| by_key[k]).collect();
        let first = reqs[0].sharing();
        prop_assert!(first.is_some(), "{ip} held by {keys:?} without a sharing key");
        for (i, r) in reqs.iter().enumerate() {
            prop_assert_eq!(&r.sharing(), &first, "{} shares {} under another key", r.key, ip);
            for other in &reqs[i + 1..] {
                prop_assert!(
                    r.ports.is_disjoint(&other.ports),
                    "{} and {} clash on {}",
                    r.key,
                    other.key,
                    ip
                );
            }
        }
    }
    for name in pools.keys() {
        let s = a.stats(name).unwrap();
        let distinct = |f: Family| {
            holders.keys().filter(|ip| Family::of(ip) == f && a.pool_of(**ip) == Some(name)).count() as u128
        };
        prop_assert_eq!(s.assigned_v4, distinct(Family::V4));
        prop_assert_eq!(s.assigned_v6, distinct(Family::V6));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_allocations_lawful_and_restarts_stable(
        ops in prop::collection::vec(op(), 1..60),
        seed in any::<u64>(),
    ) {
        let mut pool_idx = 0;
        let mut a = Allocator::new(&pool_set(0));
        let mut live: BTreeMap<usize, Request> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Upsert(i, s) => {
                    let req = request(i, &s);
                    if let Some(old) = live.get(&i).filter(|old| old.key != req.key) {
                        let old_key = old.key.clone();
                        a.release(&old_key);
                    }
                    converge(&mut a, &req, Mode::Full);
                    live.insert(i, req);
                }
                Op::Delete(i) => {
                    if let Some(r) = live.remove(&i) {
                        a.release(&r.key);
                    }
                }
                Op::Pools(p) => {
                    pool_idx = p;
                    a.set_pools(&pool_set(p));
                }
            }
            // The controller re-converges everyone after any change; pending ones may now fit.
            for req in live.values() {
                converge(&mut a, req, Mode::Full);
            }
            check_invariants(&a, &live, &pool_set(pool_idx))?;
        }

        // Restart: Services come back with what they hold, in a scrambled order.
        let before: BTreeMap<String, Vec<IpAddr>> = a.allocations().map(|(k, v)| (k.clone(), v.ips.clone())).collect();
        let mut reqs: Vec<Request> = live
            .values()
            .map(|r| Request { current_ips: before.get(&r.key).cloned().unwrap_or_default(), ..r.clone() })
            .collect();
        let mut x = seed | 1;
        for i in (1..reqs.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            reqs.swap(i, (x % (i as u64 + 1)) as usize);
        }
        // Any claim order of held IPs succeeds ...
        let mut fresh = Allocator::new(&pool_set(pool_idx));
        for r in reqs.iter().filter(|r| !r.current_ips.is_empty()) {
            let out = converge(&mut fresh, r, Mode::KeepOnly);
            prop_assert_eq!(out.allocation.map(|x| x.ips), Some(r.current_ips.clone()), "{} lost its IP", r.key);
        }
        // ... and the full replay, pending Services included, moves nobody.
        let mut replay = Allocator::new(&pool_set(pool_idx));
        let out = rebuild(&mut replay, &reqs);
        for (key, ips) in &before {
            prop_assert_eq!(out[key].allocation.as_ref().map(|x| &x.ips), Some(ips), "{} moved on restart", key);
        }
        check_invariants(&replay, &live, &pool_set(pool_idx))?;
    }
}
