//! `helm install` of charts/ferrolb on the cluster lab, as a user runs it: the controller's two
//! replicas and the speaker DaemonSet Ready, and the webhook, reached by the API server through
//! its Service, refusing an overlapping pool with the field named.

use std::time::Duration;

use serde_json::json;

use crate::cluster_e2e::pods_ready;
use crate::cluster_helm::{self, NAMESPACE, lab_values};
use crate::cluster_lab::ClusterLab;
use crate::cluster_node::wait_until;

/// Both controller replicas and a speaker per node Ready (the speaker with `containers` each).
pub fn assert_ferrolb_ready(lab: &ClusterLab, containers: usize) {
    let ok = wait_until(Duration::from_secs(60), || {
        pods_ready(lab, NAMESPACE, "app.kubernetes.io/component=controller", 2)
            && pods_ready(lab, NAMESPACE, "app.kubernetes.io/component=speaker", lab.nodes.len())
    });
    let pods = lab.kubectl(&["get", "pods", "-n", NAMESPACE, "-o", "wide"]).unwrap_or_default();
    assert!(ok.is_some(), "ferrolb not Ready:\n{pods}\n{}", lab.ferrolb_logs());
    let speakers =
        lab.get_json(&["get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=speaker"]).unwrap();
    for pod in speakers["items"].as_array().unwrap() {
        assert_eq!(pod["spec"]["containers"].as_array().unwrap().len(), containers, "{pod}");
    }
    let deployment = lab.get_json(&["get", "deployment", "-n", NAMESPACE, "ferrolb-controller"]).unwrap();
    assert_eq!(deployment["status"]["readyReplicas"], 2, "{deployment}");
}

pub const POOL: &str = "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: front, namespace: metallb-system}
spec: {addresses: [192.0.2.200-192.0.2.220]}
";

pub fn webhook_refuses_an_overlapping_pool(lab: &ClusterLab) {
    // The webhook's certificate and CA bundle may land a moment after the pods are Ready.
    let applied = wait_until(Duration::from_secs(30), || lab.apply(POOL).is_ok());
    assert!(applied.is_some(), "pool refused: {:?}\n{}", lab.apply(POOL), lab.ferrolb_logs());
    let overlapping = "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: back, namespace: metallb-system}
spec: {addresses: [192.0.2.210/31]}
";
    let why = lab.apply(overlapping).expect_err("an overlapping pool was admitted");
    assert!(
        why.contains("denied the request") && why.contains("spec.addresses[0]") && why.contains("overlaps"),
        "{why}"
    );
}

#[test]
fn helm_install_default_values_runs_ferrolb_and_its_webhook_refuses_an_overlap() {
    require_cluster!();
    let lab = ClusterLab::start(2);
    let took = cluster_helm::install(&lab, lab_values(json!({})))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.ferrolb_logs()));
    println!("helm install --wait (default values) took {:.1} s", took.as_secs_f64());
    assert_ferrolb_ready(&lab, 1);
    webhook_refuses_an_overlapping_pool(&lab);
    membership_is_sealed(&lab);
}

/// A default install seals membership with a key nobody made by hand: the controller made the
/// Secret, and each speaker says its traffic is sealed.
fn membership_is_sealed(lab: &ClusterLab) {
    let key = lab.kubectl(&[
        "-n",
        "metallb-system",
        "get",
        "secret",
        "ferrolb-memberlist",
        "-o",
        "jsonpath={.data.secretkey}",
    ]);
    assert!(key.as_ref().is_ok_and(|k| k.len() > 40), "{key:?}\n{}", lab.ferrolb_logs());
    for node in ["node1", "node2"] {
        let path = "jsonpath={.status.conditions[?(@.type=='membershipSealed')].status}";
        let state = format!("speaker-{node}");
        let sealed = crate::frr_lab::wait_for(std::time::Duration::from_secs(30), || {
            lab.kubectl(&["-n", "metallb-system", "get", "configurationstate", &state, "-o", path])
                .is_ok_and(|s| s.trim() == "True")
        });
        assert!(sealed.is_some(), "{state}: membership not sealed\n{}", lab.ferrolb_logs());
    }
}

#[test]
fn helm_install_with_frr_runs_the_sidecars_and_its_webhook_refuses_an_overlap() {
    require_cluster!(images: true);
    let lab = ClusterLab::start(2);
    let took = cluster_helm::install(&lab, lab_values(json!({"frr": {"enabled": true}})))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.ferrolb_logs()));
    println!("helm install --wait (frr.enabled) took {:.1} s", took.as_secs_f64());
    assert_ferrolb_ready(&lab, 3);
    webhook_refuses_an_overlapping_pool(&lab);
}

/// The FRR container's capabilities as rendered: FRR's entrypoint chowns its directories and
/// its daemons drop to user frr keeping their capabilities, so without these FRR never starts
/// in a pod (what the cluster's BGP test found). Needs only Helm, so CI runs it.
#[test]
fn the_frr_container_may_start_frr() {
    if let Some(why) = crate::chart::unavailable() {
        println!("skipped: {why}");
        return;
    }
    let (objects, _) = crate::chart::render(r#"{"frr": {"enabled": true}}"#);
    let speaker = crate::chart::find(&objects, "DaemonSet", "ferrolb-speaker");
    let frr = speaker["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "frr")
        .expect("no frr container");
    let caps = &frr["securityContext"]["capabilities"];
    assert_eq!(caps["drop"], json!(["ALL"]));
    for cap in
        ["NET_ADMIN", "NET_RAW", "SYS_ADMIN", "CHOWN", "FOWNER", "SETUID", "SETGID", "DAC_OVERRIDE", "KILL"]
    {
        assert!(caps["add"].as_array().unwrap().iter().any(|c| c == cap), "{cap} missing: {caps}");
    }
}
