//! The announcement rules, one behaviour per test, on configs written as YAML.

use std::collections::BTreeSet;

use super::announce::*;
use crate::config::{self, Config};
use crate::plan::Inputs;
use crate::topology::{Endpoints, NodeInfo, ServiceState};

const BASE: &str = "
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: pool}
spec: {addresses: [198.51.100.0/24, '2001:db8:20::/120']}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: tor}
spec: {myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.1}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: tor6}
spec: {myASN: 64512, peerASN: 64500, peerAddress: '2001:db8:10::1'}
";

fn config(extra: &str) -> Config {
    let mut i = Inputs::new("metallb-system");
    i.add_yaml("t", &format!("{BASE}---\n{extra}")).unwrap();
    config::parse(&i.objects).result.expect("valid test config")
}

fn node(labels: &[(&str, &str)]) -> NodeInfo {
    let mut n = NodeInfo::named("node1");
    n.labels.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    n
}

fn svc(ips: &[&str]) -> ServiceState {
    ServiceState {
        key: "shop/web".into(),
        ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
        labels: [("app".to_string(), "web".to_string())].into(),
        local_traffic: false,
        shares_ip: false,
    }
}

fn prefixes(p: &NodePlan) -> Vec<(String, Vec<String>)> {
    p.announcements.iter().map(|a| (a.prefix.to_string(), a.peers.iter().cloned().collect())).collect()
}

const AD: &str = "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: ad}\n";

#[test]
fn each_family_goes_to_the_sessions_that_carry_it() {
    let p = plan_node(
        &config(AD),
        &node(&[]),
        &[svc(&["198.51.100.1", "2001:db8:20::1"])],
        &Endpoints::assume_everywhere(),
    );
    assert_eq!(
        prefixes(&p),
        [("198.51.100.1/32".into(), vec!["tor".into()]), ("2001:db8:20::1/128".into(), vec!["tor6".into()])]
    );
}

#[test]
fn aggregation_masks_the_ip() {
    let cfg = config(&format!("{AD}spec: {{aggregationLength: 24, aggregationLengthV6: 120}}\n"));
    let p = plan_node(
        &cfg,
        &node(&[]),
        &[svc(&["198.51.100.77", "2001:db8:20::9"])],
        &Endpoints::assume_everywhere(),
    );
    assert_eq!(p.announcements[0].prefix.to_string(), "198.51.100.0/24");
    assert_eq!(p.announcements[1].prefix.to_string(), "2001:db8:20::/120");
}

#[test]
fn advertisements_pick_nodes_services_and_peers() {
    let cfg = config(&format!("{AD}spec: {{nodeSelectors: [{{matchLabels: {{rack: a}}}}]}}\n"));
    let p = plan_node(&cfg, &node(&[]), &[svc(&["198.51.100.1"])], &Endpoints::assume_everywhere());
    assert!(p.withheld["shop/web"].contains("selects node node1"));
    assert_eq!(
        plan_node(&cfg, &node(&[("rack", "a")]), &[svc(&["198.51.100.1"])], &Endpoints::assume_everywhere())
            .announcements
            .len(),
        1
    );

    let cfg = config(&format!("{AD}spec: {{serviceSelectors: [{{matchLabels: {{app: db}}}}]}}\n"));
    let p = plan_node(&cfg, &node(&[]), &[svc(&["198.51.100.1"])], &Endpoints::assume_everywhere());
    assert!(p.withheld["shop/web"].contains("selects this Service"));

    let cfg = config(&format!("{AD}spec: {{peers: [tor6]}}\n"));
    let p = plan_node(&cfg, &node(&[]), &[svc(&["198.51.100.1"])], &Endpoints::assume_everywhere());
    assert!(p.withheld["shop/web"].contains("carries its IP family"), "{:?}", p.withheld);
}

#[test]
fn communities_union_and_attributes_split_by_peer() {
    let cfg = config(&format!(
        "{AD}spec: {{communities: ['64500:1'], peers: [tor]}}\n---\n{}spec: {{communities: ['64500:2']}}\n",
        AD.replace("name: ad", "name: ad2")
    ));
    let p = plan_node(&cfg, &node(&[]), &[svc(&["198.51.100.1"])], &Endpoints::assume_everywhere());
    let communities: BTreeSet<String> =
        p.announcements[0].communities.iter().map(|c| c.to_string()).collect();
    assert_eq!(communities, ["64500:1".to_string(), "64500:2".into()].into());
}

#[test]
fn conflicting_local_pref_for_one_service_withholds_it() {
    let cfg = config(&format!(
        "{AD}spec: {{localPref: 100, serviceSelectors: [{{matchLabels: {{app: web}}}}]}}\n---\n{}spec: {{localPref: 200, serviceSelectors: [{{matchLabels: {{app: web}}}}]}}\n",
        AD.replace("name: ad", "name: ad2")
    ));
    let p = plan_node(&cfg, &node(&[]), &[svc(&["198.51.100.1"])], &Endpoints::assume_everywhere());
    assert!(p.withheld["shop/web"].contains("different localPref"), "{:?}", p.withheld);
}

#[test]
fn endpoints_and_node_eligibility_decide() {
    let cfg = config(AD);
    let none = Endpoints::from_slices(&[]);
    let p = plan_node(&cfg, &node(&[]), &[svc(&["198.51.100.1"])], &none);
    assert!(p.withheld["shop/web"].contains("no serving endpoint"));

    let slice: k8s_openapi::api::discovery::v1::EndpointSlice = serde_saphyr::from_str(
        "metadata: {name: s, namespace: shop, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints: [{addresses: [10.0.0.1], nodeName: node2}]\n",
    )
    .unwrap();
    let on_node2 = Endpoints::from_slices(&[crate::topology::SliceEndpoints::of(&slice)]);
    let mut local = svc(&["198.51.100.1"]);
    assert_eq!(plan_node(&cfg, &node(&[]), std::slice::from_ref(&local), &on_node2).announcements.len(), 1);
    local.local_traffic = true;
    let p = plan_node(&cfg, &node(&[]), &[local], &on_node2);
    assert!(p.withheld["shop/web"].contains("Local"));

    let mut excluded = node(&[]);
    excluded.ineligible = Some("excluded for the test".into());
    let p = plan_node(&cfg, &excluded, &[svc(&["198.51.100.1"])], &Endpoints::assume_everywhere());
    assert_eq!(p.withheld["shop/web"], "excluded for the test");
}

#[test]
fn pools_without_bgp_advertisements_are_not_announced() {
    let p = plan_node(
        &config("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n"),
        &node(&[]),
        &[svc(&["198.51.100.1"])],
        &Endpoints::assume_everywhere(),
    );
    assert!(p.withheld["shop/web"].contains("no BGPAdvertisement"));
}

#[test]
fn the_router_id_falls_back_to_the_nodes_internal_ip() {
    let k8s_node: k8s_openapi::api::core::v1::Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "node1"},
        "status": {"addresses": [
            {"type": "Hostname", "address": "node1"},
            {"type": "InternalIP", "address": "2001:db8::11"},
            {"type": "InternalIP", "address": "192.0.2.11"}
        ]}
    }))
    .unwrap();
    let n = NodeInfo::from_node(&k8s_node, false);
    assert_eq!(n.router_id, Some("192.0.2.11".parse().unwrap()));
    let view = super::frr::build(&config(AD), &n, &[], "info", super::Secrets::Show);
    assert_eq!(view.routers[0].router_id.as_deref(), Some("192.0.2.11"));
    // A routerID in the BGPPeers wins.
    let with_id = "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: tor}\nspec: {myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.1, routerID: 198.51.100.254}\n";
    let mut i = Inputs::new("metallb-system");
    i.add_yaml("t", &format!("{BASE}---\n{with_id}")).unwrap();
    i.objects.peers.retain(|p| p.metadata.name.as_deref() == Some("tor") && p.spec.router_id.is_some());
    let c = config::parse(&i.objects).result.expect("valid");
    let view = super::frr::build(&c, &n, &[], "info", super::Secrets::Show);
    assert_eq!(view.routers[0].router_id.as_deref(), Some("198.51.100.254"));
}

#[test]
fn the_frr_log_level_reaches_the_rendered_log_line() {
    let n = NodeInfo::from_node(
        &serde_json::from_value(serde_json::json!({"metadata": {"name": "n1"}})).unwrap(),
        false,
    );
    for (given, frr) in [("info", "informational"), ("error", "errors"), ("warnings", "warnings")] {
        let view = super::frr::build(&config(AD), &n, &[], given, super::Secrets::Show);
        let text = super::render(&view).unwrap();
        assert!(text.contains(&format!("log stdout {frr}\n")), "{given}: {text}");
    }
    // FRR prints a log target's default level (debugging) as the bare command.
    let view = super::frr::build(&config(AD), &n, &[], "debug", super::Secrets::Show);
    assert!(super::render(&view).unwrap().contains("log stdout\nlog timestamp"));
    assert_eq!(super::frr::frr_log_level("loud"), None);
    assert!(super::frr::parse_log_level("loud").unwrap_err().contains("emergencies"));
}

#[test]
fn a_bfd_peer_without_timers_gets_frrs_own_defaults_written_out() {
    let n = node(&[]);
    let bfd = "apiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: fast}\n---\n";
    let peer = |name: &str, fields: &str| {
        format!(
            "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: {name}}}\n\
             spec: {{myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.{}{fields}}}\n---\n",
            10 + name.len()
        )
    };
    let objects = [
        peer("bfd", ", bfdProfile: fast"),
        peer("bfdheld", ", bfdProfile: fast, holdTime: 9s"),
        peer("plain123", ""),
    ]
    .concat();
    let c = config(&format!("{bfd}{objects}{AD}"));
    let text = super::render(&super::frr::build(&c, &n, &[], "info", super::Secrets::Show)).unwrap();
    let timers = |addr: &str| {
        text.lines().filter(|l| l.starts_with(&format!(" neighbor {addr} timers"))).collect::<Vec<_>>()
    };
    // No timers in the BGPPeer: FRR's traditional defaults, explicitly.
    assert_eq!(timers("192.0.2.13"), [" neighbor 192.0.2.13 timers 60 180"], "{text}");
    // The BGPPeer's own timers win.
    assert_eq!(timers("192.0.2.17"), [" neighbor 192.0.2.17 timers 3 9"], "{text}");
    // Without BFD nothing changes: FRR's defaults stay implicit.
    assert!(timers("192.0.2.18").is_empty(), "{text}");
}

/// Every string the template lays out, one at a time, replaced by text that would leave its
/// slot: the renderer refuses each, naming the slot, whatever validation let through.
#[test]
fn the_renderer_refuses_hostile_text_in_every_slot_of_the_template() {
    let c = config(
        "apiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: fast}\nspec: {receiveInterval: 100, echoMode: true}\n---\n\
         apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: red}\n\
         spec: {myASN: 64512, peerASN: 64501, peerAddress: 192.0.2.9, vrf: red, password: k, bfdProfile: fast, holdTime: 9s}\n---\n\
         apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: link}\nspec: {myASN: 64512, dynamicASN: external, interface: eth1}\n---\n\
         apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: adv}\nspec: {communities: [65000:1, 'large:1:2:3'], localPref: 50}\n",
    );
    let mut n = node(&[]);
    n.router_id = Some("192.0.2.11".parse().unwrap());
    let a = plan_node(&c, &n, &[svc(&["198.51.100.7", "2001:db8:20::7"])], &Endpoints::assume_everywhere());
    let view = super::frr::build(&c, &n, &a.announcements, "info", super::Secrets::Show);
    let benign = serde_json::to_value(&view).unwrap();
    assert!(super::lay_out(&benign).is_ok());
    let mut slots = Vec::new();
    string_paths(&benign, &mut Vec::new(), &mut slots);
    assert!(slots.len() > 40, "the fixture fills every kind of slot: {}", slots.len());
    for path in slots {
        for hostile in ["x\n neighbor 198.51.100.66 remote-as 65666", "a\rb", "exit\nline vty", "é"] {
            let mut v = benign.clone();
            *path.iter().fold(&mut v, |v, key| match key {
                Ok(i) => &mut v[*i],
                Err(k) => &mut v[k.as_str()],
            }) = hostile.into();
            match super::lay_out(&v) {
                Err(super::RenderError::Unsafe(e)) => assert!(!e.contains("198.51.100.66"), "{e}"),
                other => panic!("{path:?} = {hostile:?}: {other:?}"),
            }
        }
    }
}

/// Paths (array index or object key) of every string in `v`.
fn string_paths(
    v: &serde_json::Value,
    at: &mut Vec<Result<usize, String>>,
    out: &mut Vec<Vec<Result<usize, String>>>,
) {
    match v {
        serde_json::Value::String(_) => out.push(at.clone()),
        serde_json::Value::Array(items) => items.iter().enumerate().for_each(|(i, item)| {
            at.push(Ok(i));
            string_paths(item, at, out);
            at.pop();
        }),
        serde_json::Value::Object(fields) => fields.iter().for_each(|(k, item)| {
            at.push(Err(k.clone()));
            string_paths(item, at, out);
            at.pop();
        }),
        _ => {}
    }
}

#[test]
fn a_withdrawn_configuration_keeps_everything_but_the_networks() {
    let config = "router bgp 64512\n neighbor 192.0.2.1 remote-as 64500\n !\n address-family ipv4 unicast\n  \
                  network 198.51.100.10/32 route-map ferrolb-class-7\n  neighbor 192.0.2.1 activate\n \
                  exit-address-family\nexit\n";
    let out = super::withdrawn(config);
    assert_eq!(out, config.replace("  network 198.51.100.10/32 route-map ferrolb-class-7\n", ""));
    assert!(super::guard::check(&out).is_ok());
}
