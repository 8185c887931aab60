//! Every rejection rule, as (manifest, expected kind/name/field/reason) rows.

use super::*;
use crate::plan::Inputs;

fn objects(yaml: &str) -> ClusterObjects {
    let mut inputs = Inputs::new("metallb-system");
    inputs.add_yaml("test", yaml).expect("test YAML parses");
    assert!(inputs.decode_errors.is_empty(), "{:?}", inputs.decode_errors);
    inputs.objects
}

fn errors(yaml: &str) -> Vec<ConfigError> {
    match parse(&objects(yaml)).result {
        Ok(_) => Vec::new(),
        Err(e) => e.0,
    }
}

const POOL: &str = "
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: pool, labels: {tier: front}}
spec: {addresses: [192.0.2.0/24, 2001:db8::/120]}
";

fn peer(name: &str, spec: &str) -> String {
    format!("---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: {name}}}\nspec: {spec}\n")
}

fn ad(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: {name}}}\nspec: {spec}\n"
    )
}

/// (what, manifest, kind, field, words the message must contain)
fn rejection_cases() -> Vec<(&'static str, String, &'static str, &'static str, &'static str)> {
    let pool_doc = |name: &str, spec: &str| {
        format!(
            "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: {name}}}\nspec: {spec}\n"
        )
    };
    let bfd = |name: &str, spec: &str| {
        format!(
            "---\napiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {{name: {name}}}\nspec: {spec}\n"
        )
    };
    let p = "myASN: 64500, peerASN: 64501, peerAddress: 192.0.2.254";
    vec![
        // Pools
        ("empty pool", pool_doc("a", "{addresses: []}"), "IPAddressPool", "spec.addresses", "at least one"),
        ("bad cidr", pool_doc("a", "{addresses: [192.0.2.0/40]}"), "IPAddressPool", "spec.addresses[0]", "not a valid CIDR"),
        ("reversed range", pool_doc("a", "{addresses: [192.0.2.9-192.0.2.1]}"), "IPAddressPool", "spec.addresses[0]", "starts after it ends"),
        ("whole v6 space", pool_doc("a", "{addresses: ['::/0']}"), "IPAddressPool", "spec.addresses[0]", "unspecified"),
        ("overlap across pools", format!("{POOL}{}", pool_doc("b", "{addresses: [192.0.2.128/25]}")), "IPAddressPool", "spec.addresses[0]", "overlaps"),
        ("overlap within a pool", pool_doc("a", "{addresses: [192.0.2.0/24, 192.0.2.10-192.0.2.20]}"), "IPAddressPool", "spec.addresses[1]", "overlaps"),
        ("duplicate namespaces", pool_doc("a", "{addresses: [192.0.2.0/24], serviceAllocation: {namespaces: [x, x]}}"), "IPAddressPool", "spec.serviceAllocation.namespaces[1]", "listed twice"),
        ("duplicate selectors", pool_doc("a", "{addresses: [192.0.2.0/24], serviceAllocation: {serviceSelectors: [{matchLabels: {a: b}}, {matchLabels: {a: b}}]}}"), "IPAddressPool", "spec.serviceAllocation.serviceSelectors[1]", "duplicate"),
        ("bad selector operator", pool_doc("a", "{addresses: [192.0.2.0/24], serviceAllocation: {namespaceSelectors: [{matchExpressions: [{key: a, operator: Near, values: [b]}]}]}}"), "IPAddressPool", "spec.serviceAllocation.namespaceSelectors[0]", "unknown operator"),
        ("negative priority", pool_doc("a", "{addresses: [192.0.2.0/24], serviceAllocation: {priority: -1}}"), "IPAddressPool", "spec.serviceAllocation.priority", "negative"),
        ("wrong namespace", "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a, namespace: default}\nspec: {addresses: [192.0.2.0/24]}\n".into(), "IPAddressPool", "metadata.namespace", "metallb-system"),
        ("duplicate name", format!("{POOL}{}", pool_doc("pool", "{addresses: [198.51.100.0/24]}")), "IPAddressPool", "metadata.name", "more than one"),
        // Peers
        ("myASN 0", peer("p", "{myASN: 0, peerASN: 1, peerAddress: 192.0.2.254}"), "BGPPeer", "spec.myASN", "missing local ASN"),
        ("no peer ASN", peer("p", "{myASN: 1, peerAddress: 192.0.2.254}"), "BGPPeer", "spec.peerASN", "one of peerASN or dynamicASN"),
        ("both ASNs", peer("p", "{myASN: 1, peerASN: 2, dynamicASN: external, peerAddress: 192.0.2.254}"), "BGPPeer", "spec.peerASN", "not both"),
        ("multihop iBGP", peer("p", "{myASN: 1, peerASN: 1, ebgpMultiHop: true, peerAddress: 192.0.2.254}"), "BGPPeer", "spec.ebgpMultiHop", "iBGP"),
        ("multihop dynamic internal", peer("p", "{myASN: 1, dynamicASN: internal, ebgpMultiHop: true, peerAddress: 192.0.2.254}"), "BGPPeer", "spec.ebgpMultiHop", "iBGP"),
        ("no address", peer("p", "{myASN: 1, peerASN: 2}"), "BGPPeer", "spec.peerAddress", "one of peerAddress or interface"),
        ("address and interface", peer("p", "{myASN: 1, peerASN: 2, peerAddress: 192.0.2.254, interface: eth0}"), "BGPPeer", "spec.interface", "not both"),
        ("bad address", peer("p", "{myASN: 1, peerASN: 2, peerAddress: 192.0.2.999}"), "BGPPeer", "spec.peerAddress", "not an IP"),
        ("bad source", peer("p", &format!("{{{p}, sourceAddress: nope}}")), "BGPPeer", "spec.sourceAddress", "not an IP"),
        ("v6 router id", peer("p", &format!("{{{p}, routerID: '2001:db8::1'}}")), "BGPPeer", "spec.routerID", "IPv4"),
        ("hold under 3s", peer("p", &format!("{{{p}, holdTime: 2s}}")), "BGPPeer", "spec.holdTime", "at least 3s"),
        ("keepalive over hold", peer("p", &format!("{{{p}, holdTime: 9s, keepaliveTime: 10s}}")), "BGPPeer", "spec.keepaliveTime", "longer than the hold"),
        ("bad duration", peer("p", &format!("{{{p}, holdTime: soon}}")), "BGPPeer", "spec.holdTime", "not a duration"),
        ("fractional connect", peer("p", &format!("{{{p}, connectTime: 1500ms}}")), "BGPPeer", "spec.connectTime", "whole seconds"),
        ("connect too long", peer("p", &format!("{{{p}, connectTime: 70000s}}")), "BGPPeer", "spec.connectTime", "outside 1s to 65535s"),
        ("port 0", peer("p", &format!("{{{p}, peerPort: 0}}")), "BGPPeer", "spec.peerPort", "not valid"),
        ("password twice", peer("p", &format!("{{{p}, password: x, passwordSecret: {{name: s}}}}")), "BGPPeer", "spec.passwordSecret", "not both"),
        ("secret wrong type", format!("{}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s, namespace: metallb-system}}\nstringData: {{password: x}}\n", peer("p", &format!("{{{p}, passwordSecret: {{name: s}}}}"))), "BGPPeer", "spec.passwordSecret", "basic-auth"),
        ("secret no key", format!("{}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s, namespace: metallb-system}}\ntype: kubernetes.io/basic-auth\nstringData: {{username: x}}\n", peer("p", &format!("{{{p}, passwordSecret: {{name: s}}}}"))), "BGPPeer", "spec.passwordSecret", "no \"password\" key"),
        ("secret elsewhere", peer("p", &format!("{{{p}, passwordSecret: {{name: s, namespace: default}}}}")), "BGPPeer", "spec.passwordSecret.namespace", "must be in"),
        ("secret missing", peer("p", &format!("{{{p}, passwordSecret: {{name: s}}}}")), "BGPPeer", "spec.passwordSecret", "does not exist"),
        ("bfd missing", peer("p", &format!("{{{p}, bfdProfile: fast}}")), "BGPPeer", "spec.bfdProfile", "does not exist"),
        ("duplicate node selectors", peer("p", &format!("{{{p}, nodeSelectors: [{{matchLabels: {{a: b}}}}, {{matchLabels: {{a: b}}}}]}}")), "BGPPeer", "spec.nodeSelectors[1]", "duplicate"),
        ("identical peers", format!("{}{}", peer("p", &format!("{{{p}}}")), peer("q", &format!("{{{p}}}"))), "BGPPeer", "spec", "identical"),
        // Per-node FRR rules (no Nodes known: every pair is assumed to meet)
        ("router ids differ", format!("{}{}", peer("p", "{myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, routerID: 10.0.0.1}"), peer("q", "{myASN: 1, peerASN: 3, peerAddress: 192.0.2.2, routerID: 10.0.0.2}")), "BGPPeer", "spec.routerID", "one router ID"),
        ("same address", format!("{}{}", peer("p", "{myASN: 1, peerASN: 2, peerAddress: 192.0.2.1}"), peer("q", "{myASN: 1, peerASN: 3, peerAddress: 192.0.2.1}")), "BGPPeer", "spec.peerAddress", "same address"),
        ("myASN differs", format!("{}{}", peer("p", "{myASN: 1, peerASN: 2, peerAddress: 192.0.2.1}"), peer("q", "{myASN: 5, peerASN: 3, peerAddress: 192.0.2.2}")), "BGPPeer", "spec.myASN", "differs"),
        ("echo with v6", format!("{POOL}{}{}{}", ad("all", "{}"), bfd("echo", "{echoMode: true}"), peer("p", "{myASN: 1, peerASN: 2, peerAddress: '2001:db8::ff', bfdProfile: echo}")), "BGPPeer", "spec.bfdProfile", "echo mode"),
        // BFD
        ("bfd interval", bfd("b", "{receiveInterval: 5}"), "BFDProfile", "spec.receiveInterval", "outside 10 to 60000"),
        ("bfd multiplier", bfd("b", "{detectMultiplier: 1}"), "BFDProfile", "spec.detectMultiplier", "outside 2 to 255"),
        ("bfd ttl", bfd("b", "{minimumTtl: 255}"), "BFDProfile", "spec.minimumTtl", "outside 1 to 254"),
        // Communities
        ("community overflow", "apiVersion: metallb.io/v1beta1\nkind: Community\nmetadata: {name: c}\nspec: {communities: [{name: x, value: '99999999:1'}]}\n".into(), "Community", "spec.communities[0].value", "not a community"),
        ("large marker", "apiVersion: metallb.io/v1beta1\nkind: Community\nmetadata: {name: c}\nspec: {communities: [{name: x, value: 'lar:1:2:3'}]}\n".into(), "Community", "spec.communities[0].value", "not a community"),
        ("alias twice", "apiVersion: metallb.io/v1beta1\nkind: Community\nmetadata: {name: c}\nspec: {communities: [{name: x, value: '1:1'}]}\n---\napiVersion: metallb.io/v1beta1\nkind: Community\nmetadata: {name: d}\nspec: {communities: [{name: x, value: '1:2'}]}\n".into(), "Community", "spec.communities[0].name", "already defined"),
        // BGP advertisements
        ("aggregation too wide", format!("{POOL}{}", ad("a", "{aggregationLength: 16}")), "BGPAdvertisement", "spec.aggregationLength", "wider than"),
        ("aggregation v6 too wide", format!("{POOL}{}", ad("a", "{aggregationLengthV6: 64}")), "BGPAdvertisement", "spec.aggregationLengthV6", "wider than"),
        ("aggregation over 32", format!("{POOL}{}", ad("a", "{aggregationLength: 33}")), "BGPAdvertisement", "spec.aggregationLength", "outside 1 to 32"),
        ("selectors with aggregation", format!("{POOL}{}", ad("a", "{aggregationLength: 28, serviceSelectors: [{matchLabels: {a: b}}]}")), "BGPAdvertisement", "spec.serviceSelectors", "non-default"),
        ("bad community", format!("{POOL}{}", ad("a", "{communities: ['1:99999']}")), "BGPAdvertisement", "spec.communities[0]", "not a community"),
        ("unknown alias", format!("{POOL}{}", ad("a", "{communities: [vpn-only]}")), "BGPAdvertisement", "spec.communities[0]", "alias"),
        ("community twice", format!("{POOL}{}", ad("a", "{communities: ['1:1', '1:1']}")), "BGPAdvertisement", "spec.communities[1]", "twice"),
        ("peer twice", format!("{POOL}{}", ad("a", "{peers: [x, x]}")), "BGPAdvertisement", "spec.peers[1]", "twice"),
        ("pool twice", format!("{POOL}{}", ad("a", "{ipAddressPools: [pool, pool]}")), "BGPAdvertisement", "spec.ipAddressPools[1]", "twice"),
        ("identical ads", format!("{POOL}{}{}", ad("a", "{communities: ['1:1']}"), ad("b", "{communities: ['1:1']}")), "BGPAdvertisement", "spec", "identical"),
        ("local pref conflict", format!("{POOL}{}{}", ad("a", "{localPref: 100}"), ad("b", "{localPref: 200}")), "BGPAdvertisement", "spec.localPref", "conflicts"),
        // L2 advertisements
        ("l2 weight", "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l}\nspec: {preferredNodeSelectors: [{weight: 0, preference: {matchLabels: {a: b}}}]}\n".into(), "L2Advertisement", "spec.preferredNodeSelectors[0].weight", "outside 1 to 100"),
        ("l2 interface twice", "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l}\nspec: {interfaces: [eth0, eth0]}\n".into(), "L2Advertisement", "spec.interfaces[1]", "twice"),
    ]
}

#[test]
fn every_rejection_rule_names_object_field_and_reason() {
    for (what, yaml, kind, field, words) in rejection_cases() {
        let errs = errors(&yaml);
        assert!(
            errs.iter().any(|e| e.kind == kind && e.field == field && e.message.contains(words)),
            "{what}: expected {kind} {field} ~ {words:?}, got {errs:#?}"
        );
    }
}

#[test]
fn reports_every_error_not_just_the_first() {
    let yaml = format!(
        "{}{}{}",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\nspec: {addresses: [nope, 192.0.2.9-192.0.2.1]}\n",
        peer("p", "{myASN: 0, peerASN: 1, peerAddress: bad}"),
        "---\napiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: b}\nspec: {receiveInterval: 1}\n",
    );
    let errs = errors(&yaml);
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    for f in
        ["spec.addresses[0]", "spec.addresses[1]", "spec.myASN", "spec.peerAddress", "spec.receiveInterval"]
    {
        assert!(fields.contains(&f), "missing {f} in {fields:?}");
    }
}

#[test]
fn missing_references_are_transient_and_everything_else_is_not() {
    let p = "myASN: 64500, peerASN: 64501, peerAddress: 192.0.2.254";
    let errs = errors(&peer("p", &format!("{{{p}, bfdProfile: fast, passwordSecret: {{name: s}}}}")));
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs.iter().all(|e| e.transient));
    assert!(
        errors(&peer("p", "{myASN: 0, peerASN: 1, peerAddress: 192.0.2.1}")).iter().all(|e| !e.transient)
    );
}

#[test]
fn accepts_what_metallb_accepts() {
    let yaml = format!(
        "{POOL}{}{}{}{}{}{}",
        // Overlapping localPref is fine when the aggregation lengths differ.
        ad("fine", "{aggregationLength: 32, localPref: 100}"),
        ad("coarse", "{aggregationLength: 28, aggregationLengthV6: 124, localPref: 200}"),
        // Different peers, each with its own router: same address allowed in another VRF.
        peer("a", "{myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, holdTime: 90s}"),
        peer(
            "b",
            "{myASN: 9, peerASN: 2, peerAddress: 192.0.2.1, vrf: red, keepaliveTime: 10s, connectTime: 5s}"
        ),
        peer("u", "{myASN: 1, dynamicASN: external, interface: eth1, ebgpMultiHop: true}"),
        "---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2}\nspec: {ipAddressPoolSelectors: [{matchLabels: {tier: front}}]}\n",
    );
    let config = parse(&objects(&yaml)).result.expect("valid");
    assert_eq!(config.peers["a"].timers, Some((30, 90)));
    assert_eq!(config.peers["b"].timers, Some((10, 30)));
    assert_eq!(config.peers["b"].connect_time, Some(5));
    assert_eq!(config.l2_advertisements[0].pools, ["pool".to_string()].into());
    assert_eq!(config.bgp_advertisements.len(), 2);
}

#[test]
fn echo_mode_is_fine_where_no_ipv6_is_sent() {
    let bfd = "---\napiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: echo}\nspec: {echoMode: true}\n";
    let v4_only = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: v4}\nspec: {addresses: [192.0.2.0/24]}\n";
    let v6_peer = peer("p", "{myASN: 1, peerASN: 2, peerAddress: '2001:db8::ff', bfdProfile: echo}");
    assert_eq!(errors(&format!("{v4_only}{}{bfd}{v6_peer}", ad("all", "{}"))), Vec::new());
    // The same peer with a dual-stack pool advertised to someone else only.
    assert_eq!(errors(&format!("{POOL}{}{bfd}{v6_peer}", ad("other", "{peers: [q]}"))), Vec::new());
}

#[test]
fn node_rules_only_bind_peers_that_share_a_node() {
    let nodes = "---\napiVersion: v1\nkind: Node\nmetadata: {name: n1, labels: {rack: a}}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: n2, labels: {rack: b}}\n";
    let yaml = format!(
        "{nodes}{}{}",
        peer(
            "p",
            "{myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, routerID: 10.0.0.1, nodeSelectors: [{matchLabels: {rack: a}}]}"
        ),
        peer(
            "q",
            "{myASN: 7, peerASN: 2, peerAddress: 192.0.2.1, routerID: 10.0.0.2, nodeSelectors: [{matchLabels: {rack: b}}]}"
        ),
    );
    assert_eq!(errors(&yaml), Vec::new());
}

#[test]
fn resolves_secrets_aliases_and_namespace_selectors() {
    let yaml = format!(
        "{}{}{}{}{}",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: metallb-system}\ntype: kubernetes.io/basic-auth\ndata: {password: c2VjcmV0}\n",
        peer("p", "{myASN: 1, peerASN: 2, peerAddress: 192.0.2.1, passwordSecret: {name: s}}"),
        "---\napiVersion: metallb.io/v1beta1\nkind: Community\nmetadata: {name: c}\nspec: {communities: [{name: vpn-only, value: '1234:1'}]}\n",
        "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: team-a, labels: {team: a}}\n---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: pool}\nspec: {addresses: [192.0.2.0/24], serviceAllocation: {namespaceSelectors: [{matchLabels: {team: a}}]}}\n",
        ad("a", "{communities: [vpn-only, 'large:1:2:3']}"),
    );
    let config = parse(&objects(&yaml)).result.expect("valid");
    assert_eq!(config.peers["p"].password.as_deref(), Some("secret"));
    let communities: Vec<String> =
        config.bgp_advertisements[0].communities.iter().map(|c| c.to_string()).collect();
    assert_eq!(communities, ["large:1:2:3", "1234:1"]);
    let alloc = config.pools["pool"].allocation.as_ref().unwrap();
    assert!(alloc.namespaces.contains("team-a") && alloc.restricts_namespaces);
}

#[test]
fn disable_mp_is_validated_and_warned_not_skipped() {
    let parsed =
        parse(&objects(&peer("p", "{myASN: 0, peerASN: 1, peerAddress: 192.0.2.1, disableMP: true}")));
    assert!(parsed.result.is_err(), "upstream skips validation when disableMP is set; we must not");
    assert!(parsed.warnings.iter().any(|w| w.field == "spec.disableMP"));
}
