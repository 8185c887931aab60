use super::*;
use crate::plan::{Inputs, Options, plan};

const POOL: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p, namespace: metallb-system}\nspec: {addresses: [192.0.2.0/30]}\n";

fn svc(name: &str, status_ip: Option<&str>, pool: Option<&str>) -> String {
    let mut s = format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop");
    if let Some(p) = pool {
        s.push_str(&format!(", annotations: {{{POOL_ANNOTATION}: {p}}}"));
    }
    s.push_str("}\nspec: {type: LoadBalancer}\n");
    if let Some(ip) = status_ip {
        s.push_str(&format!("status: {{loadBalancer: {{ingress: [{{ip: {ip}}}]}}}}\n"));
    }
    s
}

fn run(yaml: &str) -> Vec<Change> {
    let mut i = Inputs::new("metallb-system");
    i.add_yaml("t", yaml).unwrap();
    let p = plan(&i, &Options::default());
    changes(&i.services, &p)
}

#[test]
fn new_services_are_assigned_and_settled_ones_left_alone() {
    let changes = run(&format!("{POOL}{}{}", svc("a", Some("192.0.2.0"), Some("p")), svc("b", None, None)));
    assert_eq!(
        changes,
        vec![Change::Assign { service: "shop/b".into(), ips: vec!["192.0.2.1".into()], pool: "p".into() }]
    );
}

#[test]
fn a_missing_annotation_is_written_even_when_the_ip_is_right() {
    let changes = run(&format!("{POOL}{}", svc("a", Some("192.0.2.0"), None)));
    assert_eq!(
        changes,
        vec![Change::Assign { service: "shop/a".into(), ips: vec!["192.0.2.0".into()], pool: "p".into() }]
    );
}

#[test]
fn a_service_whose_ip_left_every_pool_is_cleared_with_the_reason() {
    let changes = run(&format!("{POOL}{}", svc("a", Some("198.51.100.7"), Some("gone"))));
    // The IP is outside every pool: the plan gives it a new one from the pool.
    assert!(matches!(&changes[..], [Change::Assign { ips, .. }] if ips == &vec!["192.0.2.0".to_string()]));
    let full = format!(
        "{POOL}{}{}{}{}{}",
        svc("a", None, None),
        svc("b", None, None),
        svc("c", None, None),
        svc("d", None, None),
        svc("e", Some("198.51.100.7"), None)
    );
    let changes = run(&full);
    let cleared: Vec<_> = changes.iter().filter(|c| matches!(c, Change::Clear { .. })).collect();
    assert_eq!(cleared.len(), 1, "{changes:?}");
    assert!(
        matches!(cleared[0], Change::Clear { service, reason } if service == "shop/e" && !reason.is_empty())
    );
}

/// Objects that each make the configuration invalid, as a new user could get them into a
/// cluster (references to objects not created yet pass the webhook; the rest with it down).
const BAD_OBJECTS: &[(&str, &str)] = &[
    (
        "missing BFDProfile",
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: tor, namespace: metallb-system}\nspec: {myASN: 64500, peerASN: 64501, peerAddress: 192.0.2.254, bfdProfile: fast}\n",
    ),
    (
        "missing Secret",
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: tor, namespace: metallb-system}\nspec: {myASN: 64500, peerASN: 64501, peerAddress: 192.0.2.254, passwordSecret: {name: tor-password}}\n",
    ),
    (
        "missing Community alias",
        "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: ads, namespace: metallb-system}\nspec: {communities: [no-such-alias]}\n",
    ),
    (
        "overlapping pools",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: q, namespace: metallb-system}\nspec: {addresses: [192.0.2.2/31]}\n",
    ),
    (
        "a node with two router IDs",
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: a, namespace: metallb-system}\nspec: {myASN: 64500, peerASN: 64501, peerAddress: 192.0.2.253, routerID: 10.0.0.1}\n---\n\
         apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: b, namespace: metallb-system}\nspec: {myASN: 64500, peerASN: 64501, peerAddress: 192.0.2.254, routerID: 10.0.0.2}\n",
    ),
    (
        "a malformed pool",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: q, namespace: metallb-system}\nspec: {addresses: [192.0.2.0/33]}\n",
    ),
    (
        "a field of the wrong type",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: q, namespace: metallb-system}\nspec: {addresses: [198.51.100.0/24], autoAssign: maybe}\n",
    ),
];

fn inputs(yaml: &str) -> Inputs {
    let mut i = Inputs::new("metallb-system");
    i.add_yaml("t", yaml).unwrap();
    i
}

/// a holds an IP with its annotation, b holds one without it, gone holds one outside every
/// pool, c waits for one.
fn cluster() -> String {
    format!(
        "{POOL}{}{}{}{}",
        svc("a", Some("192.0.2.0"), Some("p")),
        svc("b", Some("192.0.2.1"), None),
        svc("gone", Some("203.0.113.9"), Some("old")),
        svc("c", None, None)
    )
}

#[test]
fn an_invalid_configuration_clears_moves_or_reannotates_nothing() {
    let good = plan(&inputs(&cluster()), &Options::default());
    assert!(good.is_valid() && !good.stale);
    let last_good = good.config.clone().expect("a valid plan carries its configuration");
    for (what, bad) in BAD_OBJECTS {
        let i = inputs(&format!("{}---\n{bad}", cluster()));
        let without = crate::plan::plan(&i, &Options::default());
        assert!(!without.is_valid(), "{what}: should be invalid");
        assert_eq!(changes(&i.services, &without), vec![], "{what}: no last good configuration, no change");

        let with = crate::plan::plan_with_last_good(&i, &Options::default(), Some(&last_good));
        assert!(!with.is_valid() && with.stale, "{what}");
        assert_eq!(with.config.as_deref(), Some(&*last_good), "{what}");
        // Only the waiting Service is written, from the last good pool, to a free IP.
        let got = changes(&i.services, &with);
        assert_eq!(got.len(), 1, "{what}: {got:?}");
        assert!(
            matches!(&got[0], Change::Assign { service, ips, pool }
                if service == "shop/c" && pool == "p" && (ips == &["192.0.2.2"] || ips == &["192.0.2.3"])),
            "{what}: {got:?}"
        );
    }
}

#[test]
fn a_valid_configuration_still_clears_and_moves() {
    // The guard is for invalid plans only: the same cluster, valid, fixes what is wrong.
    let got = run(&cluster());
    assert!(
        got.iter().any(|c| matches!(c, Change::Assign { service, .. } if service == "shop/b")),
        "{got:?}"
    );
    assert!(
        got.iter().any(|c| matches!(c, Change::Assign { service, .. } | Change::Clear { service, .. } if service == "shop/gone")),
        "{got:?}"
    );
}

#[test]
fn the_speaker_announces_only_status_ips_inside_a_pool() {
    let node = "apiVersion: v1\nkind: Node\nmetadata: {name: n1, labels: {kubernetes.io/hostname: n1}}\n";
    let l2 = "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2, namespace: metallb-system}\n";
    // d asks for an IP it does not hold yet: a predicting speaker would announce it.
    let d = "---\napiVersion: v1\nkind: Service\nmetadata: {name: d, namespace: shop, annotations: {metallb.io/loadBalancerIPs: 192.0.2.3}}\nspec: {type: LoadBalancer}\nstatus: {loadBalancer: {ingress: [{ip: 192.0.2.2}]}}\n";
    let i = inputs(&format!("{}{d}---\n{node}---\n{l2}", cluster()));
    let options = Options { node: Some("n1".into()), ips_from_status: true, ..Default::default() };
    let p = plan(&i, &options);
    let announced: Vec<(&str, &str)> =
        p.announcements.iter().flatten().map(|a| (a.service.as_str(), a.ip.as_str())).collect();
    assert_eq!(announced, [("shop/a", "192.0.2.0"), ("shop/b", "192.0.2.1"), ("shop/d", "192.0.2.2")]);
    let refused: Vec<_> = p.not_announced.iter().flatten().filter(|n| n.service == "shop/gone").collect();
    assert!(refused[0].reason.contains("203.0.113.9 is in no IPAddressPool"), "{refused:?}");
    // The default (plan as the controller would) announces its own prediction instead.
    let predicted = plan(&i, &Options { ips_from_status: false, ..options });
    assert!(predicted.announcements.iter().flatten().any(|a| a.ip == "192.0.2.3"));
}
