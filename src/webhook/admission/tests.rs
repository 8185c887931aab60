use serde_json::json;

use super::*;

fn pool(name: &str, addresses: &[&str]) -> ConfigObject {
    ConfigObject::decode(
        "IPAddressPool",
        json!({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
               "metadata": {"name": name, "namespace": "metallb-system"},
               "spec": {"addresses": addresses}}),
    )
    .unwrap()
}

fn peer(name: &str, spec: Value) -> ConfigObject {
    ConfigObject::decode(
        "BGPPeer",
        json!({"apiVersion": "metallb.io/v1beta2", "kind": "BGPPeer",
               "metadata": {"name": name, "namespace": "metallb-system"}, "spec": spec}),
    )
    .unwrap()
}

fn bfd(name: &str) -> ConfigObject {
    ConfigObject::decode(
        "BFDProfile",
        json!({"apiVersion": "metallb.io/v1beta1", "kind": "BFDProfile",
               "metadata": {"name": name, "namespace": "metallb-system"}, "spec": {}}),
    )
    .unwrap()
}

fn cluster(objects: &[ConfigObject]) -> ClusterObjects {
    let mut c = ClusterObjects::new("metallb-system");
    for o in objects {
        o.merge_into(&mut c);
    }
    c
}

fn denied(v: Verdict) -> String {
    match v {
        Verdict::Deny { reason } => reason,
        Verdict::Allow { .. } => panic!("expected a denial"),
    }
}

#[test]
fn an_overlapping_pool_is_refused_naming_object_and_field() {
    let current = cluster(&[pool("front", &["192.0.2.0/24"])]);
    let reason = denied(admit(&current, Operation::Create, &pool("back", &["192.0.2.128/25"])));
    assert!(reason.contains("IPAddressPool") && reason.contains("spec.addresses[0]"), "{reason}");
    assert!(reason.contains("overlaps"), "{reason}");
    assert_eq!(
        admit(&current, Operation::Create, &pool("back", &["198.51.100.0/24"])),
        Verdict::Allow { warnings: vec![] }
    );
}

#[test]
fn an_update_replaces_the_stored_object_instead_of_conflicting_with_it() {
    let current = cluster(&[pool("front", &["192.0.2.0/24"])]);
    // The same pool, grown: overlapping its old self is not a conflict.
    let v = admit(&current, Operation::Update, &pool("front", &["192.0.2.0/23"]));
    assert_eq!(v, Verdict::Allow { warnings: vec![] });
}

#[test]
fn the_wrong_namespace_is_refused() {
    let mut p = pool("front", &["192.0.2.0/24"]);
    if let ConfigObject::Pool(o) = &mut p {
        o.metadata.namespace = Some("default".into());
    }
    let reason = denied(admit(&cluster(&[]), Operation::Create, &p));
    assert!(reason.contains("metadata.namespace") && reason.contains("metallb-system"), "{reason}");
}

#[test]
fn references_to_objects_not_yet_created_do_not_refuse() {
    let p = peer(
        "tor",
        json!({"myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.254", "bfdProfile": "later"}),
    );
    assert_eq!(admit(&cluster(&[]), Operation::Create, &p), Verdict::Allow { warnings: vec![] });
}

#[test]
fn problems_already_in_the_cluster_do_not_block_other_changes_or_their_fix() {
    // Two overlapping pools got in before the webhook was installed.
    let current = cluster(&[pool("a", &["192.0.2.0/24"]), pool("b", &["192.0.2.0/25"])]);
    assert_eq!(
        admit(&current, Operation::Create, &pool("c", &["203.0.113.0/24"])),
        Verdict::Allow { warnings: vec![] }
    );
    assert_eq!(
        admit(&current, Operation::Update, &pool("b", &["198.51.100.0/24"])),
        Verdict::Allow { warnings: vec![] }
    );
    // A new problem is still refused.
    let reason = denied(admit(&current, Operation::Create, &pool("d", &["203.0.113.0/24", "192.0.2.7/32"])));
    assert!(reason.contains("IPAddressPool \"d\""), "{reason}");
}

#[test]
fn peer_rules_are_the_parsers_rules() {
    let p = peer(
        "tor",
        json!({"myASN": 64500, "peerASN": 64500, "peerAddress": "192.0.2.254", "ebgpMultiHop": true}),
    );
    let reason = denied(admit(&cluster(&[]), Operation::Create, &p));
    assert!(reason.contains("BGPPeer \"tor\"") && reason.contains("spec.ebgpMultiHop"), "{reason}");
}

#[test]
fn deprecated_fields_are_allowed_with_a_warning() {
    let p = peer(
        "tor",
        json!({"myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.254", "disableMP": true}),
    );
    match admit(&cluster(&[]), Operation::Create, &p) {
        Verdict::Allow { warnings } => {
            assert!(warnings.iter().any(|w| w.contains("disableMP")), "{warnings:?}")
        }
        v => panic!("{v:?}"),
    }
}

#[test]
fn a_bfd_profile_in_use_cannot_be_deleted() {
    let users = |n: &str| {
        peer(n, json!({"myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.254", "bfdProfile": "fast"}))
    };
    let current = cluster(&[bfd("fast"), bfd("idle"), users("tor-a")]);
    let reason = denied(admit(&current, Operation::Delete, &bfd("fast")));
    assert!(reason.contains("BFDProfile \"fast\"") && reason.contains("BGPPeer \"tor-a\""), "{reason}");
    assert_eq!(admit(&current, Operation::Delete, &bfd("idle")), Verdict::Allow { warnings: vec![] });
    // Any other deletion is free, even of a pool in use.
    assert_eq!(
        admit(&current, Operation::Delete, &pool("front", &["192.0.2.0/24"])),
        Verdict::Allow { warnings: vec![] }
    );
}

#[test]
fn undecodable_objects_name_the_field() {
    let e = ConfigObject::decode(
        "IPAddressPool",
        json!({"metadata": {"name": "front"}, "spec": {"addresses": "192.0.2.0/24"}}),
    )
    .unwrap_err();
    assert!(e.contains("IPAddressPool \"front\"") && e.contains("spec.addresses"), "{e}");
    assert!(ConfigObject::decode("Service", json!({})).is_err());
}
