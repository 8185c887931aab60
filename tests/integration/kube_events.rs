//! The speakers' `nodeAssigned` Events against a real kube-apiserver: recorded on the Service
//! when a node starts announcing it and when announcing moves to another node, and rate-limited
//! so an endpoint flapping at 1 Hz for a minute costs a handful of Events, not sixty.
//!
//! The speakers announce over BGP with no frr-agent behind their socket: what they decide to
//! announce (and so the Events) does not depend on FRR taking it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};

use crate::fabric::Running;
use crate::kube_lab::{KubeLab, eventually};
use crate::kube_speaker::{bgp_cluster, create_served};

/// (node named in the note, occurrences) of each nodeAssigned Event on `shop/<service>`.
pub async fn assigned(client: &Client, service: &str) -> Vec<(String, i32)> {
    let events: Api<Event> = Api::namespaced(client.clone(), "shop");
    let list = events.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
    list.iter()
        .filter(|e| e.reason.as_deref() == Some("nodeAssigned"))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(service))
        .map(|e| {
            let note = e.note.clone().unwrap_or_default();
            let count = e.series.as_ref().map_or(1, |s| s.count);
            (note, count)
        })
        .collect()
}

fn total(events: &[(String, i32)]) -> i32 {
    events.iter().map(|(_, n)| n).sum()
}

fn speaker(kube: &KubeLab, node: &str) -> Running {
    let socket = kube.dir.join(format!("{node}-no-agent.sock"));
    Running(
        Command::new(crate::ferrolb_bin())
            .args(["speaker", "--node", node, "--metrics-bind", "127.0.0.1:0", "--frr-agent-socket"])
            .arg(&socket)
            .arg("--kubeconfig")
            .arg(kube.kubeconfig())
            .env("RUST_LOG", "info,ferrolb::speaker=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(kube.dir.join(format!("speaker-{node}.log"))).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// A Service with local traffic from the start and its one ready endpoint on node1. Made with
/// the default policy and patched after, both speakers could announce it (and say so) for the
/// moment in between: the Event counts below would depend on how long that moment lasted.
async fn create_local(services: &Api<Service>, slices: &Api<EndpointSlice>, name: &str) {
    let slice: EndpointSlice = serde_saphyr::from_str(&format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, namespace: shop, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nendpoints: [{{addresses: [203.0.113.7], nodeName: node1, conditions: {{ready: true}}}}]\nports: [{{port: 80}}]\n"
    ))
    .unwrap();
    let svc: Service = serde_saphyr::from_str(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\n\
         spec: {{type: LoadBalancer, externalTrafficPolicy: Local, ports: [{{port: 80}}]}}\n"
    ))
    .unwrap();
    slices.create(&PostParams::default(), &slice).await.unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
}

/// Points the one endpoint of `name` at `node`, ready or not.
async fn endpoint(slices: &Api<EndpointSlice>, name: &str, node: &str, ready: bool) {
    let patch = serde_json::json!({"endpoints": [{"addresses": ["203.0.113.7"], "nodeName": node, "conditions": {"ready": ready}}]});
    slices.patch(&format!("{name}-1"), &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
}

#[test]
fn node_assigned_events_say_where_announcing_starts_and_moves_and_a_flap_cannot_flood() {
    require_kube!();
    let kube = KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        let client = bgp_cluster(&kube).await;
        let node2: Node = serde_saphyr::from_str("apiVersion: v1\nkind: Node\nmetadata: {name: node2}\n").unwrap();
        Api::<Node>::all(client.clone()).create(&PostParams::default(), &node2).await.unwrap();
        let _controller = kube.run_ferrolb(
            &["controller", "--webhook-port", "0", "--leader-elect", "false", "--metrics-bind", "127.0.0.1:0"],
            "controller.log",
        );
        let (_s1, _s2) = (speaker(&kube, "node1"), speaker(&kube, "node2"));
        let services: Api<Service> = Api::namespaced(client.clone(), "shop");
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "shop");
        let logs = || format!("{}\n{}", kube.log("speaker-node1.log"), kube.log("speaker-node2.log"));

        // Local traffic: only the node with the endpoint announces, so announcing can move.
        create_local(&services, &slices, "mover").await;
        let from = |node: &str| format!("announcing from node \"{node}\" with protocol \"bgp\"");
        let r = eventually("node1 starts announcing mover", || async {
            let e = assigned(&client, "mover").await;
            if e.iter().any(|(n, _)| *n == from("node1")) { Ok(()) } else { Err(format!("{e:?}")) }
        })
        .await;
        assert!(r.is_ok(), "{r:?}\n{}", logs());
        let t = Instant::now();
        endpoint(&slices, "mover", "node2", true).await;
        let r = eventually("announcing moves to node2", || async {
            let e = assigned(&client, "mover").await;
            if e.iter().any(|(n, _)| *n == from("node2")) { Ok(()) } else { Err(format!("{e:?}")) }
        })
        .await;
        assert!(r.is_ok(), "{r:?}\n{}", logs());
        println!("announcing moved: node2's nodeAssigned Event after {:?}", t.elapsed());
        let e = assigned(&client, "mover").await;
        assert_eq!(total(&e), 2, "one Event per start, none per pass: {e:?}");

        // The flap: the endpoint ready for half a second, then not, for a minute.
        create_local(&services, &slices, "flappy").await;
        let r = eventually("flappy announced", || async {
            let e = assigned(&client, "flappy").await;
            if total(&e) == 1 { Ok(()) } else { Err(format!("not one Event: {e:?}")) }
        })
        .await;
        assert!(r.is_ok(), "{r:?}\n{}", logs());
        let seconds: u64 = std::env::var("FERROLB_FLAP_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
        let start = Instant::now();
        let mut flips = 0;
        let mut steady_seen = None;
        while start.elapsed() < Duration::from_secs(seconds) {
            flips += 1;
            endpoint(&slices, "flappy", "node1", flips % 2 == 0).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            // A Service created mid-flap is still told at once.
            if flips == 20 {
                create_served(&services, &slices, "steady", "203.0.113.8").await;
            }
            if flips > 20 && steady_seen.is_none() && total(&assigned(&client, "steady").await) > 0 {
                steady_seen = Some(flips);
            }
        }
        endpoint(&slices, "flappy", "node1", true).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let during = total(&assigned(&client, "flappy").await) - 1;
        let starts = flips / 2;
        let minutes = start.elapsed().as_secs_f64() / 60.0;
        let dropped = std::fs::read_to_string(kube.dir.join("speaker-node1.log"))
            .unwrap_or_default()
            .matches("nodeAssigned event not sent")
            .count();
        println!(
            "1 Hz endpoint flap for {:.0} s: the node started announcing {starts} times; {during} nodeAssigned Events \
             ({:.1} a minute, unlimited: {:.0} a minute)",
            start.elapsed().as_secs_f64(),
            during as f64 / minutes,
            starts as f64 / minutes
        );
        assert!(steady_seen.is_some(), "a Service created during the flap got no Event\n{}", logs());
        assert!(during >= 2, "the flap was not seen: {during} Events\n{}", logs());
        // The burst (two tokens left after the first Event) and one a minute after it.
        let allowed = 2.0 + (minutes * 60.0 / 60.0).ceil();
        assert!(during as f64 <= allowed, "{during} Events in {minutes:.1} min\n{}", logs());
        assert!(dropped > 0, "the limiter never dropped an Event\n{}", logs());
    });
}
