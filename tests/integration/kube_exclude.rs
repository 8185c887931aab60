//! `node.kubernetes.io/exclude-from-external-load-balancers` on a real API server: a labelled
//! node stops answering ARP (another node takes the IP, and the ServiceL2Status read back says
//! which) and withdraws its BGP routes from the ToR; speakers started with
//! `--ignore-exclude-lb` (chart `speaker.ignoreExcludeLB`) announce from it again.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};

use crate::agent_process::AgentProcess;
use crate::bgp_lab::Lab;
use crate::fabric::Running;
use crate::frr_lab::wait_for;
use crate::kube_lab::KubeLab;
use crate::kube_speaker::{bgp_cluster, create_served, route_at_tor};
use crate::l2_lab::{L2Lab, answering, mac_index};
use crate::l2_lab_kube::{l2_objects, l2_on_kube, speaker_with};
use crate::l2_lab_members::all_live;

const EXCLUDE: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

async fn exclude(client: &Client, node: &str) {
    let label = serde_json::json!({"metadata": {"labels": {EXCLUDE: ""}}});
    Api::<Node>::all(client.clone())
        .patch(node, &PatchParams::default(), &Patch::Merge(label))
        .await
        .unwrap();
}

fn owner(lab: &L2Lab, ip: &str) -> Option<usize> {
    match answering(lab, ip).as_slice() {
        [one] => mac_index(one),
        _ => None,
    }
}

/// The nodes the ServiceL2Status objects of shop/web name.
pub async fn l2_status_nodes(client: &Client) -> Vec<String> {
    let api: Api<ferrolb::api::ServiceL2Status> = Api::namespaced(client.clone(), "metallb-system");
    let list = api.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
    list.into_iter()
        .filter_map(|o| o.status)
        .filter(|s| {
            s.service_name.as_deref() == Some("web") && s.service_namespace.as_deref() == Some("shop")
        })
        .filter_map(|s| s.node)
        .collect()
}

#[test]
fn an_excluded_node_stops_answering_unless_the_speakers_ignore_the_label() {
    if let Some(why) = crate::l2_lab::unavailable() {
        println!("skipped: {why}");
        return;
    }
    require_kube!();
    let ip = "192.0.2.200";
    let (lab, kube, _forwards) = l2_on_kube(3);
    let rt = crate::threaded_runtime();
    let client = rt.block_on(async {
        let client = l2_objects(&kube, 3).await;
        let services = Api::<Service>::namespaced(client.clone(), "shop");
        let slices = Api::<EndpointSlice>::namespaced(client.clone(), "shop");
        create_served(&services, &slices, "web", "203.0.113.50").await;
        client
    });
    let controller = ["controller", "--webhook-port", "0", "--metrics-bind", "127.0.0.1:0"];
    let _controller: Running = kube.run_ferrolb(&controller, "controller.log");
    let mut speakers: Vec<Running> = (0..3).map(|i| speaker_with(&lab, &kube, i, &[])).collect();
    let converged = wait_for(Duration::from_secs(40), || {
        (0..3).all(|i| lab.log(i).contains(&all_live(3))) && owner(&lab, ip).is_some()
    });
    assert!(converged.is_some(), "{}\n{}", lab.logs(), kube.log("controller.log"));
    let first = owner(&lab, ip).unwrap();
    let named = |n: usize| format!("node{}", n + 1);
    let said = wait_for(Duration::from_secs(10), || rt.block_on(l2_status_nodes(&client)) == [named(first)]);
    assert!(
        said.is_some(),
        "ServiceL2Status {:?}, answering node{}",
        rt.block_on(l2_status_nodes(&client)),
        first + 1
    );

    rt.block_on(exclude(&client, &named(first)));
    let moved = wait_for(Duration::from_secs(10), || owner(&lab, ip).is_some_and(|o| o != first));
    assert!(moved.is_some(), "node{} still answers once labelled\n{}", first + 1, lab.logs());
    let second = owner(&lab, ip).unwrap();
    let said = wait_for(Duration::from_secs(10), || rt.block_on(l2_status_nodes(&client)) == [named(second)]);
    assert!(
        said.is_some(),
        "ServiceL2Status {:?}, answering node{}",
        rt.block_on(l2_status_nodes(&client)),
        second + 1
    );
    println!("node{} labelled: node{} answers, and its ServiceL2Status says so", first + 1, second + 1);

    // The same speakers told to ignore the label: the election is back to its first winner.
    speakers.clear();
    let _speakers: Vec<Running> =
        (0..3).map(|i| speaker_with(&lab, &kube, i, &["--ignore-exclude-lb"])).collect();
    let back = wait_for(Duration::from_secs(40), || owner(&lab, ip) == Some(first));
    assert!(back.is_some(), "node{} does not answer with --ignore-exclude-lb\n{}", first + 1, lab.logs());
}

#[test]
fn an_excluded_node_withdraws_its_routes_unless_its_speaker_ignores_the_label() {
    require_frr!();
    require_kube!();
    let lab = Lab::start();
    let agent = AgentProcess::start(&lab.node, "agent");
    let kube = KubeLab::start();
    let rt = crate::threaded_runtime();
    let client = rt.block_on(bgp_cluster(&kube));
    let controller =
        ["controller", "--webhook-port", "0", "--leader-elect", "false", "--metrics-bind", "127.0.0.1:0"];
    let _controller = kube.run_ferrolb(&controller, "controller.log");
    let socket = agent.socket.display().to_string();
    let speaker =
        ["speaker", "--node", "node1", "--metrics-bind", "127.0.0.1:0", "--frr-agent-socket", &socket];
    let mut first = Some(kube.run_ferrolb(&speaker, "speaker.log"));
    let services = Api::<Service>::namespaced(client.clone(), "shop");
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), "shop");
    rt.block_on(create_served(&services, &slices, "web", "203.0.113.50"));
    let ip = || {
        let svc = rt.block_on(services.get("web")).ok()?;
        ferrolb::plan::writeback::current_ips(&svc).first().cloned()
    };
    let at_tor = wait_for(Duration::from_secs(40), || ip().is_some_and(|ip| route_at_tor(&lab, &ip)));
    assert!(at_tor.is_some(), "{:?} never reached the ToR\n{}", ip(), kube.log("speaker.log"));
    let ip = ip().unwrap();

    rt.block_on(exclude(&client, "node1"));
    let gone = wait_for(Duration::from_secs(10), || !route_at_tor(&lab, &ip));
    assert!(gone.is_some(), "the ToR still routes {ip} via the labelled node\n{}", kube.log("speaker.log"));
    println!("node1 labelled: {ip} withdrawn from the ToR {gone:?} later");

    drop(first.take());
    let _ignoring =
        kube.run_ferrolb(&[&speaker[..], &["--ignore-exclude-lb"]].concat(), "speaker-ignoring.log");
    let back = wait_for(Duration::from_secs(40), || route_at_tor(&lab, &ip));
    assert!(
        back.is_some(),
        "{ip} not announced with --ignore-exclude-lb\n{}",
        kube.log("speaker-ignoring.log")
    );
}
