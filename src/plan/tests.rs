use super::*;

fn inputs(yaml: &str) -> Inputs {
    let mut i = Inputs::new("metallb-system");
    i.add_yaml("test", yaml).unwrap();
    i
}

#[test]
fn legacy_bgp_configuration_becomes_crs() {
    let i = inputs(
        "peers:\n- {peer-address: 192.0.2.1, peer-asn: 64501, my-asn: 64500, node-selectors: [{match-labels: {rack: a}}]}\n\
         bgp-communities: {vpn-only: '1234:1'}\n\
         address-pools:\n- name: pub\n  protocol: bgp\n  addresses: [198.51.100.0/24]\n  bgp-advertisements:\n  - {aggregation-length: 32, localpref: 100, communities: [vpn-only]}\n  - {aggregation-length: 24}\n",
    );
    let o = &i.objects;
    assert_eq!((o.peers.len(), o.pools.len(), o.bgp_advertisements.len(), o.communities.len()), (1, 1, 2, 1));
    let config = crate::config::parse(o).result.expect("converted config is valid");
    assert_eq!(config.bgp_advertisements.iter().map(|a| a.aggregation_length).collect::<Vec<_>>(), [32, 24]);
    assert_eq!(config.peers["peer1"].node_selectors.len(), 1);
}

#[test]
fn legacy_typos_are_errors_with_a_path() {
    let mut i = Inputs::new("metallb-system");
    let err = i
        .add_yaml("t", "address-pools:\n- name: a\n  protocol: layer2\n  adresses: [192.0.2.0/24]\n")
        .unwrap_err();
    assert!(err.to_string().contains("adresses"), "{err}");
}

#[test]
fn wrong_types_name_the_object_and_field() {
    let i = inputs(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [192.0.2.0/24], autoAssign: maybe}\n",
    );
    let e = &i.decode_errors[0];
    assert_eq!(
        (e.kind.as_str(), e.name.as_str(), e.field.as_str()),
        ("IPAddressPool", "p", "spec.autoAssign")
    );
    let p = plan(&i, &Options::default());
    assert!(!p.is_valid());
}

#[test]
fn invalid_configuration_leaves_every_service_pending_with_the_reason() {
    let i = inputs(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [nope]}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec: {type: LoadBalancer}\n",
    );
    let p = plan(&i, &Options::default());
    assert!(p.allocations.is_empty());
    assert_eq!(p.pending.len(), 1);
    assert!(p.pending[0].reason.contains("configuration is invalid"));
}

#[test]
fn ignores_other_classes_and_types_and_keeps_live_ips() {
    let i = inputs(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [192.0.2.0/29]}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: other, namespace: a}\nspec: {type: LoadBalancer, loadBalancerClass: example.com/lb}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: cip, namespace: a}\nspec: {type: ClusterIP}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: live, namespace: a}\nspec: {type: LoadBalancer}\nstatus: {loadBalancer: {ingress: [{ip: 192.0.2.5}]}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: new, namespace: a}\nspec: {type: LoadBalancer}\n",
    );
    let p = plan(&i, &Options::default());
    let got: Vec<(String, String)> =
        p.allocations.iter().map(|a| (a.service.clone(), a.ips.join(","))).collect();
    assert_eq!(got, [("a/live".to_string(), "192.0.2.5".to_string()), ("a/new".into(), "192.0.2.0".into())]);
    let classed = plan(&i, &Options { lb_class: Some("example.com/lb".into()), ..Default::default() });
    assert_eq!(classed.allocations.iter().map(|a| a.service.as_str()).collect::<Vec<_>>(), ["a/other"]);
}

#[test]
fn json_output_has_the_contract_shape() {
    let i = inputs(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [192.0.2.0/32]}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: shop}\nspec: {type: LoadBalancer}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: b, namespace: shop}\nspec: {type: LoadBalancer}\n",
    );
    let v: serde_json::Value =
        serde_json::from_str(&render(&plan(&i, &Options::default()), Format::Json)).unwrap();
    assert_eq!(
        v["allocations"],
        serde_json::json!([{"service": "shop/a", "ips": ["192.0.2.0"], "pool": "p"}])
    );
    assert_eq!(v["pending"][0]["service"], "shop/b");
    assert!(v["pending"][0]["reason"].as_str().unwrap().contains("no available IPs"));
    assert_eq!(v["errors"], serde_json::json!([]));
    let y: serde_json::Value =
        serde_saphyr::from_str(&render(&plan(&i, &Options::default()), Format::Yaml)).unwrap();
    assert_eq!(y["allocations"], v["allocations"]);
}

#[test]
fn yaml_booleans_in_string_fields_get_a_hint() {
    let i = inputs(
        "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: no}\nspec: {type: LoadBalancer}\n",
    );
    assert!(i.decode_errors[0].message.contains("quote the value"), "{:?}", i.decode_errors);
}

#[test]
fn reads_manifests_with_thousands_of_documents() {
    let mut yaml = String::from(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [198.18.0.0/16]}\n",
    );
    for i in 0..2000 {
        yaml.push_str(&format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: shop}}\nspec: {{type: LoadBalancer}}\n"));
    }
    let p = plan(&inputs(&yaml), &Options::default());
    assert_eq!(p.allocations.len(), 2000);
}

#[test]
fn alias_bombs_are_still_refused() {
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    let mut i = Inputs::new("metallb-system");
    assert!(i.add_yaml("bomb", bomb).is_err());
}

#[test]
fn an_excluded_node_announces_only_when_told_to_ignore_the_label() {
    let yaml = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [192.0.2.0/29]}\n---\n\
         apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2}\n---\n\
         apiVersion: metallb.io/v1beta1\nkind: BGPPeer\nmetadata: {name: tor}\nspec: {peerAddress: 192.0.2.254, peerASN: 64501, myASN: 64500}\n---\n\
         apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: bgp}\n---\n\
         apiVersion: v1\nkind: Node\nmetadata: {name: n1, labels: {node.kubernetes.io/exclude-from-external-load-balancers: ''}}\n---\n\
         apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: a}\nspec: {type: LoadBalancer}\n";
    let i = inputs(yaml);
    let protocols = |ignore: bool| -> Vec<&'static str> {
        let options = Options { node: Some("n1".into()), ignore_exclude_lb: ignore, ..Default::default() };
        let p = plan(&i, &options);
        assert!(p.is_valid(), "{:?}", p.errors);
        let mut got: Vec<&str> = p.announcements.iter().flatten().map(|a| a.protocol).collect();
        got.sort();
        got
    };
    assert_eq!(protocols(false), Vec::<&str>::new());
    assert_eq!(protocols(true), ["bgp", "layer2"]);
}

#[test]
fn bgpextras_end_the_nodes_frr_configuration_and_unmanaged_lines_are_warned_about() {
    let setup = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [198.51.100.0/28]}\n\
        ---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: tor}\nspec: {myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.1, routerID: 192.0.2.11}\n";
    let map = |ns: &str, extras: &str| {
        format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: bgpextras, namespace: {ns}}}\ndata: {{extras: {extras:?}}}\n"
        )
    };
    let node = Options { node: Some("node1".into()), ..Default::default() };
    let extras = "ip prefix-list x seq 5 permit 203.0.113.0/24\nip route 203.0.113.0/24 192.0.2.1\n";
    let p = plan(&inputs(&format!("{setup}{}", map("metallb-system", extras))), &node);
    let conf = p.frr_config.unwrap();
    assert!(conf.ends_with(extras) && conf.contains("router bgp 64512"), "{conf}");
    assert_eq!(p.frr_extras.as_deref(), Some(extras));
    let w: Vec<String> = p.warnings.iter().map(ToString::to_string).collect();
    assert!(
        w.iter().any(|w| w.starts_with("ConfigMap \"bgpextras\": data.extras: never applied")
            && w.ends_with("ip route 203.0.113.0/24 192.0.2.1")),
        "{w:?}"
    );
    // Read from ferrolb's namespace only.
    let elsewhere = inputs(&format!("{setup}{}", map("default", extras)));
    assert_eq!(elsewhere.bgp_extras, None);
    assert!(elsewhere.notes.iter().any(|n| n.contains("bgpextras is read from namespace metallb-system")));
    let p = plan(&elsewhere, &node);
    assert!(!p.frr_config.unwrap().contains("203.0.113.0/24"));
}
