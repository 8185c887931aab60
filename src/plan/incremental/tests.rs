//! A partial decision must equal a full one: random histories of Services created, changed
//! and deleted in small pools, each step decided incrementally and written back the way the
//! controller writes (the writes come back as changes, as through a watch); after every step
//! the cluster must be a fixed point of a full decision — it would write nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;

use super::*;
use crate::plan::writeback::{self, Change, POOL_ANNOTATION};
use crate::plan::{Inputs, plan};

const POOLS: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a, namespace: metallb-system}\nspec: {addresses: [192.0.2.0/29, '2001:db8::/125']}\n---\n\
apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: b, namespace: metallb-system}\nspec: {addresses: [198.51.100.0/30]}\n";

/// xorshift: the histories are the same on every run, and a failure names its seed.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn random_service(rng: &mut Rng, name: &str) -> Service {
    let pool = ["", ", metallb.io/address-pool: a", ", metallb.io/address-pool: b"][rng.below(3) as usize];
    let share = if rng.below(4) == 0 { ", metallb.io/allow-shared-ip: k" } else { "" };
    let ip = if rng.below(6) == 0 {
        format!(", metallb.io/loadBalancerIPs: 192.0.2.{}", rng.below(8))
    } else {
        String::new()
    };
    let families = [
        "ipFamilies: [IPv4]",
        "ipFamilies: [IPv6]",
        "ipFamilyPolicy: PreferDualStack, ipFamilies: [IPv4, IPv6]",
    ][rng.below(3) as usize];
    let kind = if rng.below(10) == 0 { "ClusterIP" } else { "LoadBalancer" };
    let yaml = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop, creationTimestamp: '2026-01-01T00:00:{:02}Z', annotations: {{x: y{pool}{share}{ip}}}}}\n\
         spec: {{type: {kind}, {families}, ports: [{{port: {}}}]}}\n",
        rng.below(60),
        80 + rng.below(3)
    );
    serde_saphyr::from_str(&yaml).unwrap()
}

/// What the controller's writes do to a Service.
fn apply(svc: &mut Service, change: &Change) {
    let (ips, pool) = match change {
        Change::Assign { ips, pool, .. } => (ips.clone(), Some(pool.clone())),
        Change::Clear { .. } => (Vec::new(), None),
    };
    let ingress: Vec<_> = ips.iter().map(|ip| serde_json::json!({"ip": ip})).collect();
    svc.status = serde_json::from_value(serde_json::json!({"loadBalancer": {"ingress": ingress}})).ok();
    let annotations = svc.metadata.annotations.get_or_insert_default();
    match pool {
        Some(p) => annotations.insert(POOL_ANNOTATION.into(), p),
        None => annotations.remove(POOL_ANNOTATION),
    };
}

fn inputs(objects: &Inputs, services: &BTreeMap<String, Service>, only: Option<&BTreeSet<String>>) -> Inputs {
    let mut i = Inputs { objects: objects.objects.clone(), ..Default::default() };
    i.services = services
        .iter()
        .filter(|(k, _)| only.is_none_or(|o| o.contains(*k)))
        .map(|(_, s)| Arc::new(s.clone()))
        .collect();
    i
}

#[test]
fn partial_decisions_leave_the_cluster_as_a_full_decision_would() {
    let mut config = Inputs::new("metallb-system");
    config.add_yaml("pools", POOLS).unwrap();
    let options = Options::default();
    for seed in 1..=40u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut world: BTreeMap<String, Service> = BTreeMap::new();
        let mut state = Allocations::default();
        let first = state.decide_all(&inputs(&config, &world, None), &options, None);
        assert!(first.is_valid());
        for step in 0..60 {
            let name = format!("s{}", rng.below(14));
            let key = format!("shop/{name}");
            if rng.below(4) == 0 {
                world.remove(&key);
            } else {
                let mut svc = random_service(&mut rng, &name);
                // A changed Service keeps what its status said, as in a cluster.
                if let Some(old) = world.get(&key) {
                    svc.status = old.status.clone();
                    if let Some(p) = old.metadata.annotations.as_ref().and_then(|a| a.get(POOL_ANNOTATION)) {
                        svc.metadata
                            .annotations
                            .get_or_insert_default()
                            .insert(POOL_ANNOTATION.into(), p.clone());
                    }
                }
                world.insert(key.clone(), svc);
            }
            // Decide the change; the writes come back as changes until nothing is written.
            let mut changed: BTreeSet<String> = [key].into();
            for _ in 0..5 {
                if changed.is_empty() {
                    break;
                }
                let partial = inputs(&config, &world, Some(&changed));
                let p = state.decide_changed(&partial, &options, &changed).expect("a decision was kept");
                // Waiting Services may have been decided too: the write-back needs them all.
                let decided = inputs(&config, &world, Some(&p.decided_services()));
                let writes = writeback::changes(&decided.services, &p);
                changed = BTreeSet::new();
                for w in writes {
                    let k = match &w {
                        Change::Assign { service, .. } | Change::Clear { service, .. } => service.clone(),
                    };
                    if let Some(svc) = world.get_mut(&k) {
                        apply(svc, &w);
                        changed.insert(k);
                    }
                }
            }
            let all = inputs(&config, &world, None);
            let full = plan(&all, &options);
            let left = writeback::changes(&all.services, &full);
            if !left.is_empty() {
                let held: Vec<_> = state
                    .last
                    .as_ref()
                    .unwrap()
                    .alloc
                    .allocations()
                    .map(|(k, a)| format!("{k}={:?}", a.ips))
                    .collect();
                let status: Vec<_> = world
                    .iter()
                    .map(|(k, s)| {
                        format!(
                            "{k}={:?} {:?}",
                            writeback::current_ips(s),
                            s.spec.as_ref().map(|x| x.type_.clone())
                        )
                    })
                    .collect();
                let pend = &state.last.as_ref().unwrap().pending;
                eprintln!(
                    "held {held:?}\nstatus {status:?}\npending {pend:?}\nfull pending {:?}",
                    full.pending
                );
            }
            assert!(left.is_empty(), "seed {seed} step {step}: a full decision would still write {left:?}");
            let usage = state.decide_changed(
                &inputs(&config, &world, Some(&BTreeSet::new())),
                &options,
                &BTreeSet::new(),
            );
            assert_eq!(usage.unwrap().pools, full.pools, "seed {seed} step {step}: pool usage");
        }
    }
}

#[test]
fn without_a_kept_decision_the_caller_decides_everything() {
    let mut state = Allocations::default();
    assert!(
        state.decide_changed(&Inputs::new("metallb-system"), &Options::default(), &BTreeSet::new()).is_none()
    );
    // Invalid objects and no last good configuration: nothing was decided, nothing is kept.
    let mut bad = Inputs::new("metallb-system");
    bad.add_yaml(
        "pools",
        &format!("{POOLS}---\n{}", POOLS.replace("name: a", "name: c").replace("name: b", "name: d")),
    )
    .unwrap();
    assert!(!state.decide_all(&bad, &Options::default(), None).is_valid());
    assert!(
        state.decide_changed(&Inputs::new("metallb-system"), &Options::default(), &BTreeSet::new()).is_none()
    );
}

const NODE_CONFIG: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: l2, namespace: metallb-system}\nspec: {addresses: [192.0.2.0/28]}\n---\n\
apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: routed, namespace: metallb-system}\nspec: {addresses: [198.51.100.0/28]}\n---\n\
apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2, namespace: metallb-system}\nspec: {ipAddressPools: [l2]}\n---\n\
apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: routed, namespace: metallb-system}\nspec: {ipAddressPools: [routed]}\n---\n\
apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: tor, namespace: metallb-system}\nspec: {myASN: 64512, peerASN: 64513, peerAddress: 192.0.2.254}\n---\n\
apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: n2}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: n3}\n";

fn held_service(rng: &mut Rng, name: &str) -> Service {
    let ip = if rng.below(2) == 0 {
        format!("192.0.2.{}", rng.below(16))
    } else {
        format!("198.51.100.{}", rng.below(16))
    };
    let local = if rng.below(3) == 0 { "Local" } else { "Cluster" };
    serde_saphyr::from_str(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\n\
         spec: {{type: LoadBalancer, externalTrafficPolicy: {local}, ports: [{{port: 80}}]}}\n\
         status: {{loadBalancer: {{ingress: [{{ip: '{ip}'}}]}}}}\n"
    ))
    .unwrap()
}

fn slice_of(rng: &mut Rng, name: &str) -> k8s_openapi::api::discovery::v1::EndpointSlice {
    let node = ["n1", "n2", "n3"][rng.below(3) as usize];
    let ready = rng.below(4) != 0;
    serde_saphyr::from_str(&format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, namespace: shop, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nendpoints: [{{addresses: [198.18.64.1], nodeName: {node}, conditions: {{ready: {ready}}}}}]\n"
    ))
    .unwrap()
}

#[test]
fn a_nodes_partial_decisions_announce_what_a_full_decision_announces() {
    let mut config = Inputs::new("metallb-system");
    config.add_yaml("config", NODE_CONFIG).unwrap();
    for seed in 1..=20u64 {
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let mut services: BTreeMap<String, Service> = BTreeMap::new();
        let mut slices: BTreeMap<String, k8s_openapi::api::discovery::v1::EndpointSlice> = BTreeMap::new();
        let live: BTreeSet<String> = ["n1", "n2", "n3"].iter().map(|s| s.to_string()).collect();
        let options = Options {
            node: Some("n2".into()),
            ips_from_status: true,
            live_nodes: Some(live),
            ..Default::default()
        };
        let snapshot = |services: &BTreeMap<String, Service>,
                        slices: &BTreeMap<String, _>,
                        only: Option<&BTreeSet<String>>| {
            let mut i = inputs(&config, services, only);
            i.endpoint_slices = slices
                .iter()
                .filter(|(k, _)| only.is_none_or(|o| o.contains(*k)))
                .map(|(_, s): (_, &k8s_openapi::api::discovery::v1::EndpointSlice)| {
                    Arc::new(crate::topology::SliceEndpoints::of(s))
                })
                .collect();
            i
        };
        // One slice that stays, so both decide from EndpointSlices (a cluster always has one:
        // the kubernetes Service's); the changes touch s1..s9.
        slices.insert("shop/s0".into(), slice_of(&mut rng, "s0"));
        let mut state = NodeAnnouncements::default();
        state.decide_all(&snapshot(&services, &slices, None), &options, None);
        for step in 0..60 {
            let name = format!("s{}", 1 + rng.below(9));
            let key = format!("shop/{name}");
            match rng.below(5) {
                0 => {
                    services.remove(&key);
                }
                1 => {
                    slices.insert(key.clone(), slice_of(&mut rng, &name));
                }
                2 => {
                    slices.remove(&key);
                }
                _ => {
                    services.insert(key.clone(), held_service(&mut rng, &name));
                }
            }
            let changed: BTreeSet<String> = [key].into();
            let partial = state
                .decide_changed(&snapshot(&services, &slices, Some(&changed)), &options, &changed)
                .expect("nothing but Services and slices changed");
            let full = plan(&snapshot(&services, &slices, None), &options);
            assert_eq!(partial.announcements, full.announcements, "seed {seed} step {step}");
            assert_eq!(partial.layer2, full.layer2, "seed {seed} step {step}");
            assert_eq!(partial.frr_config, full.frr_config, "seed {seed} step {step}");
        }
        // Another live set is another world: decided in full.
        let fewer = Options { live_nodes: Some(["n1".to_string()].into()), ..options.clone() };
        assert!(
            state
                .decide_changed(
                    &snapshot(&services, &slices, Some(&BTreeSet::new())),
                    &fewer,
                    &BTreeSet::new()
                )
                .is_none()
        );
    }
}
