//! The layer 2 election, one behaviour per test, on configs written as YAML.

use std::collections::BTreeSet;

use super::election::*;
use crate::config::{self, Config};
use crate::plan::Inputs;
use crate::topology::{Endpoints, NodeInfo, ServiceState};

const POOL: &str = "
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: pool}
spec: {addresses: [192.0.2.0/24, '2001:db8:20::/120']}
";

fn config(extra: &str) -> Config {
    let mut i = Inputs::new("metallb-system");
    i.add_yaml("t", &format!("{POOL}---\n{extra}")).unwrap();
    config::parse(&i.objects).result.expect("valid test config")
}

fn nodes(names: &[&str]) -> Vec<NodeInfo> {
    names
        .iter()
        .map(|n| {
            let mut info = NodeInfo::named(n);
            let zone = if n.ends_with('1') || n.ends_with('3') { "a" } else { "b" };
            info.labels.insert("zone".into(), zone.into());
            info
        })
        .collect()
}

fn live(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn svc(key: &str, ips: &[&str]) -> ServiceState {
    ServiceState {
        key: key.into(),
        ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
        labels: [("app".to_string(), "web".to_string())].into(),
        local_traffic: false,
        shares_ip: false,
    }
}

const ALL: &str = "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: all}\n";
const NAMES: [&str; 4] = ["node1", "node2", "node3", "node4"];

#[test]
fn every_speaker_computes_the_same_order_from_the_same_inputs() {
    let c = config(ALL);
    let s = svc("shop/web", &["192.0.2.10"]);
    let order = elect(&c, &s, &nodes(&NAMES), &live(&NAMES), &Endpoints::assume_everywhere()).unwrap();
    assert_eq!(order.len(), 4);
    // Same inputs in another order give the same result.
    let mut shuffled = nodes(&NAMES);
    shuffled.reverse();
    assert_eq!(elect(&c, &s, &shuffled, &live(&NAMES), &Endpoints::assume_everywhere()).unwrap(), order);
    // The order is sha256("node#ip"), ascending, computed independently here.
    use sha2::{Digest, Sha256};
    let mut by_hash: Vec<_> =
        NAMES.iter().map(|n| (Sha256::digest(format!("{n}#192.0.2.10")).to_vec(), n.to_string())).collect();
    by_hash.sort();
    assert_eq!(order, by_hash.into_iter().map(|(_, n)| n).collect::<Vec<_>>());
}

#[test]
fn losing_a_node_that_does_not_announce_moves_nothing() {
    let c = config(ALL);
    let s = svc("shop/web", &["192.0.2.10"]);
    let e = Endpoints::assume_everywhere();
    let order = elect(&c, &s, &nodes(&NAMES), &live(&NAMES), &e).unwrap();
    let loser = order.last().unwrap().as_str();
    let fewer: Vec<&str> = NAMES.iter().copied().filter(|n| *n != loser).collect();
    assert_eq!(elect(&c, &s, &nodes(&NAMES), &live(&fewer), &e).unwrap()[0], order[0]);
    // Losing the winner hands the IP to the runner-up.
    let without_winner: Vec<&str> = NAMES.iter().copied().filter(|n| *n != order[0]).collect();
    assert_eq!(elect(&c, &s, &nodes(&NAMES), &live(&without_winner), &e).unwrap()[0], order[1]);
}

#[test]
fn dual_stack_and_shared_ips_follow_the_first_ip() {
    let c = config(ALL);
    let e = Endpoints::assume_everywhere();
    let dual = svc("shop/web", &["192.0.2.10", "2001:db8:20::10"]);
    let v4 = svc("shop/dns-tcp", &["192.0.2.10"]);
    let a = elect(&c, &dual, &nodes(&NAMES), &live(&NAMES), &e).unwrap();
    let b = elect(&c, &v4, &nodes(&NAMES), &live(&NAMES), &e).unwrap();
    assert_eq!(a, b);
    let plan = plan_node(&c, &a[0], &[dual], &nodes(&NAMES), &live(&NAMES), &e);
    assert_eq!(plan.announcements.len(), 2);
}

#[test]
fn preferred_node_selectors_outweigh_the_hash() {
    let e = Endpoints::assume_everywhere();
    let s = svc("shop/web", &["192.0.2.10"]);
    let plain = elect(&config(ALL), &s, &nodes(&NAMES), &live(&NAMES), &e).unwrap();
    // Prefer zone b strongly, and node4 a little more: node4 first, then node2.
    let c = config(
        "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: prefer}\n\
         spec: {preferredNodeSelectors: [{weight: 50, preference: {matchLabels: {zone: b}}}, \
         {weight: 10, preference: {matchLabels: {kubernetes.io/hostname: node4}}}]}\n",
    );
    let order = elect(&c, &s, &nodes(&NAMES), &live(&NAMES), &e).unwrap();
    assert_eq!(&order[..2], ["node4", "node2"]);
    // The rest keep the hash order among themselves.
    let rest: Vec<_> =
        plain.iter().filter(|n| n.as_str() != "node4" && n.as_str() != "node2").cloned().collect();
    assert_eq!(order[2..], rest[..]);
}

#[test]
fn node_selectors_exclusions_and_liveness_filter_candidates() {
    let e = Endpoints::assume_everywhere();
    let s = svc("shop/web", &["192.0.2.10"]);
    let c = config(
        "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: zone-a}\n\
         spec: {nodeSelectors: [{matchLabels: {zone: a}}]}\n",
    );
    let order = elect(&c, &s, &nodes(&NAMES), &live(&NAMES), &e).unwrap();
    assert_eq!(order.iter().cloned().collect::<BTreeSet<_>>(), live(&["node1", "node3"]));
    let mut ns = nodes(&NAMES);
    ns[0].ineligible = Some("excluded".into());
    assert_eq!(elect(&c, &s, &ns, &live(&NAMES), &e).unwrap(), ["node3"]);
    let err = elect(&c, &s, &ns, &live(&["node1", "node2"]), &e).unwrap_err();
    assert!(err.contains("no live, eligible node"), "{err}");
    // A node a selector leaves out says who announces instead.
    let plan = plan_node(&c, "node2", &[s], &nodes(&NAMES), &live(&NAMES), &e);
    assert!(plan.announcements.is_empty());
    assert!(plan.withheld["shop/web"].contains("announces it"), "{:?}", plan.withheld);
}

#[test]
fn an_unfit_node_wins_only_where_no_other_candidate_is_left() {
    let e = Endpoints::assume_everywhere();
    let s = svc("shop/web", &["192.0.2.10"]);
    let c = config(ALL);
    let plain = elect(&c, &s, &nodes(&NAMES), &live(&NAMES), &e).unwrap();
    let mut ns = nodes(&NAMES);
    let owner = ns.iter_mut().find(|n| n.name == plain[0]).unwrap();
    owner.l2_unfit = Some("NotReady".into());
    // The owner goes last; everyone else keeps their order.
    let demoted = elect(&c, &s, &ns, &live(&NAMES), &e).unwrap();
    assert_eq!(demoted[..], [&plain[1..], &plain[..1]].concat()[..]);
    // Every candidate unfit (a control plane that marks every node NotReady): the order is
    // the plain one, so nothing moves and something still answers.
    for n in &mut ns {
        n.l2_unfit = Some("NotReady".into());
    }
    assert_eq!(elect(&c, &s, &ns, &live(&NAMES), &e).unwrap(), plain);
}

#[test]
fn local_traffic_needs_a_local_endpoint_and_any_service_needs_one_somewhere() {
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};
    let slice = EndpointSlice {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            namespace: Some("shop".into()),
            labels: Some([("kubernetes.io/service-name".to_string(), "web".to_string())].into()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: vec![Endpoint {
            addresses: vec!["10.0.0.1".into()],
            node_name: Some("node3".into()),
            conditions: Some(EndpointConditions { ready: Some(true), ..Default::default() }),
            ..Default::default()
        }],
        ports: None,
    };
    let e = Endpoints::from_slices(&[crate::topology::SliceEndpoints::of(&slice)]);
    let c = config(ALL);
    let mut s = svc("shop/web", &["192.0.2.10"]);
    s.local_traffic = true;
    assert_eq!(elect(&c, &s, &nodes(&NAMES), &live(&NAMES), &e).unwrap(), ["node3"]);
    let unserved = svc("shop/other", &["192.0.2.11"]);
    assert_eq!(
        elect(&c, &unserved, &nodes(&NAMES), &live(&NAMES), &e).unwrap_err(),
        "the Service has no serving endpoint"
    );
}

#[test]
fn interfaces_are_the_union_of_this_nodes_advertisements_or_all() {
    let e = Endpoints::assume_everywhere();
    let s = svc("shop/web", &["192.0.2.10"]);
    let two = "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: a}\nspec: {interfaces: [eth0]}\n\
               ---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: b}\nspec: {interfaces: [eth1]}\n";
    let c = config(two);
    let winner = elect(&c, &s, &nodes(&NAMES), &live(&NAMES), &e).unwrap()[0].clone();
    let plan = plan_node(&c, &winner, std::slice::from_ref(&s), &nodes(&NAMES), &live(&NAMES), &e);
    let want: BTreeSet<String> = ["eth0".to_string(), "eth1".to_string()].into();
    assert_eq!(plan.announcements[0].interfaces, Some(want));
    let c = config(&format!("{two}---\n{ALL}"));
    let plan = plan_node(&c, &winner, &[s], &nodes(&NAMES), &live(&NAMES), &e);
    assert_eq!(plan.announcements[0].interfaces, None);
}

#[test]
fn shared_ips_and_service_selectors_do_not_mix() {
    let e = Endpoints::assume_everywhere();
    let c = config(
        "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: web-only}\n\
         spec: {serviceSelectors: [{matchLabels: {app: web}}]}\n",
    );
    let mut s = svc("shop/web", &["192.0.2.10"]);
    assert!(elect(&c, &s, &nodes(&NAMES), &live(&NAMES), &e).is_ok());
    s.shares_ip = true;
    assert!(elect(&c, &s, &nodes(&NAMES), &live(&NAMES), &e).unwrap_err().contains("shares its IP"));
    s.shares_ip = false;
    s.labels.insert("app".into(), "db".into());
    assert!(elect(&c, &s, &nodes(&NAMES), &live(&NAMES), &e).unwrap_err().contains("selects this Service"));
    // A pool with no L2Advertisement is not layer 2 at all: the node plan stays silent.
    let plan = plan_node(
        &config("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n"),
        "node1",
        &[svc("shop/web", &["192.0.2.10"])],
        &nodes(&NAMES),
        &live(&NAMES),
        &e,
    );
    assert!(plan.withheld.is_empty() && plan.announcements.is_empty());
}

#[test]
fn the_winner_alone_is_the_head_of_the_full_order_and_keeps_metallbs_hash() {
    let c = config(ALL);
    let e = Endpoints::assume_everywhere();
    for i in 0..200 {
        let ip = if i % 2 == 0 { format!("192.0.2.{i}") } else { format!("2001:db8:20::{i:x}") };
        let s = svc("shop/web", &[&ip]);
        let order = elect(&c, &s, &nodes(&NAMES), &live(&NAMES), &e).unwrap();
        assert_eq!(winner(&c, &s, &nodes(&NAMES), &live(&NAMES), &e).unwrap(), order[0], "{ip}");
    }
    // The hash is sha256 of "node#ip", as MetalLB ranks: computed here the long way.
    let s = svc("shop/web", &["192.0.2.10"]);
    let mut by_hash: Vec<(Vec<u8>, &str)> = NAMES
        .iter()
        .map(|n| (<sha2::Sha256 as sha2::Digest>::digest(format!("{n}#192.0.2.10").as_bytes()).to_vec(), *n))
        .collect();
    by_hash.sort();
    assert_eq!(winner(&c, &s, &nodes(&NAMES), &live(&NAMES), &e).unwrap(), by_hash[0].1);
}
