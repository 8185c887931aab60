//! A node that cannot serve stops answering although its speaker runs (MetalLB #3116): three
//! layer 2 speakers in namespaces on a real API server; the owner's Node goes NotReady (written
//! as the node lifecycle controller writes it once the kubelet is silent for its grace period)
//! and the client's ARP answer moves to another node; Ready again, it comes back only after the
//! settle time; flapping Ready/NotReady faster than that moves the IP once, not on every flap;
//! the out-of-service taint moves it too.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{Patch, PatchParams};

use crate::fabric::Running;
use crate::frr_lab::wait_for;
use crate::l2_lab::{L2Lab, answering, mac_index};
use crate::l2_lab_kube::{l2_objects, l2_on_kube, speaker_with};
use crate::l2_lab_members::all_live;

const IP: &str = "192.0.2.200";
const SETTLE_S: u64 = 6;

/// The node (index) answering ARP for the IP, if exactly one does.
fn owner(lab: &L2Lab) -> Option<usize> {
    match answering(lab, IP).as_slice() {
        [one] => mac_index(one),
        _ => None,
    }
}

async fn set_ready(nodes: &Api<Node>, n: usize, ready: bool) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let (status, reason) = if ready { ("True", "KubeletReady") } else { ("Unknown", "NodeStatusUnknown") };
    let patch = serde_json::json!({"status": {"conditions": [{
        "type": "Ready", "status": status, "reason": reason, "message": "set by the test",
        "lastHeartbeatTime": now, "lastTransitionTime": now
    }]}});
    nodes
        .patch_status(&format!("node{}", n + 1), &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
}

#[test]
fn a_notready_or_out_of_service_node_stops_answering_and_a_flapping_one_moves_the_ip_once() {
    if let Some(why) = crate::l2_lab::unavailable() {
        println!("skipped: {why}");
        return;
    }
    require_kube!();
    let (lab, kube, _forwards) = l2_on_kube(3);
    let rt = crate::threaded_runtime();
    let client = rt.block_on(async {
        let client = l2_objects(&kube, 3).await;
        let services = Api::<Service>::namespaced(client.clone(), "shop");
        let slices = Api::<EndpointSlice>::namespaced(client.clone(), "shop");
        crate::kube_speaker::create_served(&services, &slices, "web", "203.0.113.50").await;
        client
    });
    let nodes: Api<Node> = Api::all(client.clone());
    // Ready long enough ago that the settle time is over.
    rt.block_on(async {
        for n in 0..3 {
            set_ready(&nodes, n, true).await;
        }
    });
    std::thread::sleep(Duration::from_secs(SETTLE_S));
    let controller = ["controller", "--webhook-port", "0", "--metrics-bind", "127.0.0.1:0"];
    let _controller: Running = kube.run_ferrolb(&controller, "controller.log");
    let settle = SETTLE_S.to_string();
    let _speakers: Vec<Running> =
        (0..3).map(|i| speaker_with(&lab, &kube, i, &["--layer2-ready-settle-seconds", &settle])).collect();
    let converged = wait_for(Duration::from_secs(40), || {
        (0..3).all(|i| lab.log(i).contains(&all_live(3))) && owner(&lab).is_some()
    });
    assert!(converged.is_some(), "{}\n{}", lab.logs(), kube.log("controller.log"));
    let first = owner(&lab).unwrap();

    // NotReady: the IP leaves at once.
    let t = Instant::now();
    rt.block_on(set_ready(&nodes, first, false));
    let moved = wait_for(Duration::from_secs(10), || owner(&lab).is_some_and(|o| o != first));
    let away = t.elapsed();
    assert!(moved.is_some(), "node{} still answers while NotReady\n{}", first + 1, lab.logs());
    let second = owner(&lab).unwrap();
    println!("node{} NotReady: node{} answered ARP {away:?} later", first + 1, second + 1);

    // Ready again: back (the election prefers it) only once the settle time is over.
    let t = Instant::now();
    rt.block_on(set_ready(&nodes, first, true));
    let early = wait_for(Duration::from_secs(SETTLE_S - 2), || owner(&lab) != Some(second));
    assert!(
        early.is_none(),
        "the IP moved {early:?} after Ready, before the {SETTLE_S} s settle time\n{}",
        lab.logs()
    );
    let back = wait_for(Duration::from_secs(10), || owner(&lab) == Some(first));
    assert!(back.is_some(), "node{} never took it back\n{}", first + 1, lab.logs());
    println!("node{} Ready again: back {:?} later (settle {SETTLE_S} s)", first + 1, t.elapsed());

    // Flapping every 2 s for 12 s: the IP moves away once and stays away until it settles.
    let t = Instant::now();
    let mut owners = Vec::new();
    let mut ready = false;
    while t.elapsed() < Duration::from_secs(12) {
        rt.block_on(set_ready(&nodes, first, ready));
        ready = !ready;
        let flip = Instant::now();
        while flip.elapsed() < Duration::from_secs(2) {
            if let Some(o) = owner(&lab)
                && owners.last() != Some(&o)
            {
                owners.push(o);
            }
        }
    }
    rt.block_on(set_ready(&nodes, first, true));
    println!(
        "flapping every 2 s for 12 s: owners in turn {:?}",
        owners.iter().map(|o| o + 1).collect::<Vec<_>>()
    );
    assert_eq!(owners, [second], "the IP bounced with the flapping\n{}", lab.logs());

    // Out of service: the operator's word moves it at once, Ready or not.
    let back = wait_for(Duration::from_secs(SETTLE_S + 10), || owner(&lab) == Some(first));
    assert!(back.is_some(), "{}", lab.logs());
    let taint = serde_json::json!({"spec": {"taints": [{"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute"}]}});
    let t = Instant::now();
    rt.block_on(async {
        nodes
            .patch(&format!("node{}", first + 1), &PatchParams::default(), &Patch::Merge(taint))
            .await
            .unwrap();
    });
    let moved = wait_for(Duration::from_secs(10), || owner(&lab).is_some_and(|o| o != first));
    assert!(moved.is_some(), "{}", lab.logs());
    println!("node{} tainted out-of-service: moved {:?} later", first + 1, t.elapsed());
}
