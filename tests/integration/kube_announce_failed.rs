//! An announcement that fails says so, on a real API server: a layer 2 IP elected to a node
//! where no interface may answer for it, and Services a speaker's FRR was never given (no
//! frr-agent answers), each get MetalLB's `announceFailed` Warning Event and the reason in
//! their `ferrolb.io/Announced` condition; both clear once the node can announce (the
//! interface appears, frr-agent starts), and the client's ARP cache and the ToR's table show
//! the announcement then, and not before.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};

use crate::agent_process::AgentProcess;
use crate::bgp_lab::Lab;
use crate::fabric::Running;
use crate::frr_lab::wait_for;
use crate::kube_lab::{KubeLab, eventually, free_port};
use crate::kube_speaker::{announced, bgp_cluster, create_served, route_at_tor};
use crate::l2_lab::{answering, mac_index};
use crate::l2_lab_kube::{l2_objects, l2_on_kube, speaker_with};

/// The notes of the `announceFailed` Warnings on `shop/<service>`.
async fn failed_events(client: &Client, service: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), "shop");
    let list = events.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
    list.into_iter()
        .filter(|e| e.reason.as_deref() == Some("announceFailed") && e.type_.as_deref() == Some("Warning"))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(service))
        .filter_map(|e| e.note)
        .collect()
}

/// The `announceFailures` of node1's speaker's ConfigurationState.
async fn node1_failures(client: &Client) -> Vec<ferrolb::api::AnnounceFailure> {
    let api: Api<ferrolb::api::ConfigurationState> = Api::namespaced(client.clone(), "metallb-system");
    let state = api.get_opt("speaker-node1").await.ok().flatten();
    state.and_then(|s| s.status).map(|s| s.announce_failures).unwrap_or_default()
}

/// Waits for shop/web's condition to have `reason` and a message containing `words`.
async fn condition_becomes(services: &Api<Service>, reason: &str, words: &str) -> Result<(), String> {
    eventually(&format!("condition {reason}"), || async {
        let svc = services.get("web").await.map_err(|e| e.to_string())?;
        match announced(&svc) {
            Some((_, r, m)) if r == reason && m.contains(words) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

#[test]
fn a_layer2_ip_no_interface_may_answer_is_said_and_clears_when_the_interface_comes() {
    if let Some(why) = crate::l2_lab::unavailable() {
        println!("skipped: {why}");
        return;
    }
    require_kube!();
    let (lab, kube, _forwards) = l2_on_kube(1);
    let rt = crate::threaded_runtime();
    let client = rt.block_on(async {
        let client = l2_objects(&kube, 1).await;
        // Answer on lan7 only, an interface node1 does not have (yet).
        let ads: Api<ferrolb::api::L2Advertisement> = Api::namespaced(client.clone(), "metallb-system");
        let only = serde_json::json!({"spec": {"interfaces": ["lan7"]}});
        ads.patch("all", &PatchParams::default(), &Patch::Merge(only)).await.unwrap();
        let services = Api::<Service>::namespaced(client.clone(), "shop");
        let slices = Api::<EndpointSlice>::namespaced(client.clone(), "shop");
        create_served(&services, &slices, "web", "203.0.113.50").await;
        client
    });
    let controller = ["controller", "--webhook-port", "0", "--metrics-bind", "127.0.0.1:0"];
    let _controller: Running = kube.run_ferrolb(&controller, "controller.log");
    let _speaker = speaker_with(&lab, &kube, 0, &[]);
    let logs = || format!("{}\n---\n{}", lab.logs(), kube.log("controller.log"));
    let services = Api::<Service>::namespaced(client.clone(), "shop");
    rt.block_on(async {
        let r = condition_becomes(
            &services,
            "AnnounceFailed",
            "node1: layer 2: 192.0.2.200: none of the interfaces its L2Advertisements name (lan7)",
        )
        .await;
        assert!(r.is_ok(), "{r:?}\n{}", logs());
        let r = eventually("an announceFailed Event", || async {
            let notes = failed_events(&client, "web").await;
            let want = "node \"node1\" cannot announce it over layer 2: 192.0.2.200: none of the interfaces";
            if notes.iter().any(|n| n.starts_with(want)) { Ok(()) } else { Err(format!("{notes:?}")) }
        })
        .await;
        assert!(r.is_ok(), "{r:?}\n{}", logs());
        let failures = node1_failures(&client).await;
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!((failures[0].service.as_str(), failures[0].protocol.as_str()), ("shop/web", "layer2"));
        // Failed, so nothing says node1 announces it: no ServiceL2Status, no nodeAssigned.
        assert_eq!(crate::kube_exclude::l2_status_nodes(&client).await, Vec::<String>::new());
        assert_eq!(crate::kube_events::assigned(&client, "web").await, vec![]);
    });
    assert_eq!(answering(&lab, "192.0.2.200"), Vec::<String>::new(), "answered without lan7\n{}", logs());

    // node1's link to the switch becomes lan7: the speaker answers on it, with no new decision.
    let ns = &lab.nodes[0].0;
    let t = Instant::now();
    crate::fabric::sh(&format!(
        "ip -n {ns} link set eth0 down && ip -n {ns} link set eth0 name lan7 && ip -n {ns} link set lan7 up"
    ));
    let answered = wait_for(
        Duration::from_secs(10),
        || matches!(answering(&lab, "192.0.2.200").as_slice(), [one] if mac_index(one) == Some(0)),
    );
    assert!(answered.is_some(), "node1 does not answer on lan7\n{}", logs());
    let arp = t.elapsed();
    rt.block_on(async {
        let r = condition_becomes(&services, "Announced", "layer 2 from node1").await;
        assert!(r.is_ok(), "{r:?}\n{}", logs());
        let cleared = t.elapsed();
        assert_eq!(crate::kube_exclude::l2_status_nodes(&client).await, ["node1"]);
        assert_eq!(node1_failures(&client).await, vec![]);
        // Answering now is news, as a start is: the nodeAssigned withheld while it failed.
        let r = eventually("a nodeAssigned Event once answered", || async {
            let events = crate::kube_events::assigned(&client, "web").await;
            let said = "announcing from node \"node1\" with protocol \"layer2\"";
            if events.iter().any(|(note, _)| note == said) { Ok(()) } else { Err(format!("{events:?}")) }
        })
        .await;
        assert!(r.is_ok(), "{r:?}\n{}", logs());
        println!(
            "interfaces: [lan7] on a node without lan7: announceFailed Event and condition AnnounceFailed, no \
             answer, no ServiceL2Status; lan7 appeared: ARP answered {arp:?} later, condition Announced {cleared:?}"
        );
    });
}

#[test]
fn services_frr_was_never_given_are_said_and_clear_once_frr_agent_applies_them() {
    require_frr!();
    require_kube!();
    let lab = Lab::start();
    let kube = KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        let client = bgp_cluster(&kube).await;
        let controller = ["controller", "--webhook-port", "0", "--leader-elect", "false", "--metrics-bind", "127.0.0.1:0"];
        let _controller = kube.run_ferrolb(&controller, "controller.log");
        // The speaker's agent socket, with no frr-agent behind it yet.
        let socket = lab.node.dir().join("agent.sock");
        let metrics = format!("127.0.0.1:{}", free_port());
        let args = ["speaker", "--node", "node1", "--metrics-bind", &metrics, "--frr-agent-socket"];
        let _speaker = kube.run_ferrolb(&[&args[..], &[socket.to_str().unwrap()]].concat(), "speaker.log");
        let logs = || format!("{}\n---\n{}", kube.log("speaker.log"), kube.log("controller.log"));
        let services = Api::<Service>::namespaced(client.clone(), "shop");
        let slices = Api::<EndpointSlice>::namespaced(client.clone(), "shop");
        create_served(&services, &slices, "web", "203.0.113.10").await;

        let r = condition_becomes(&services, "AnnounceFailed", "node1: BGP: frr-agent does not answer").await;
        assert!(r.is_ok(), "{r:?}\n{}", logs());
        let r = eventually("an announceFailed Event", || async {
            let notes = failed_events(&client, "web").await;
            let want = "node \"node1\" cannot announce it over BGP: frr-agent does not answer";
            if notes.iter().any(|n| n.starts_with(want)) { Ok(()) } else { Err(format!("{notes:?}")) }
        })
        .await;
        assert!(r.is_ok(), "{r:?}\n{}", logs());
        let ip = ferrolb::plan::writeback::current_ips(&services.get("web").await.unwrap()).remove(0);
        assert!(!route_at_tor(&lab, &ip), "{ip} at the ToR with no FRR configured");

        let t = Instant::now();
        let _agent = AgentProcess::start(&lab.node, "agent");
        let at_tor = wait_for(Duration::from_secs(30), || route_at_tor(&lab, &ip));
        assert!(at_tor.is_some(), "{ip} never reached the ToR\n{}", logs());
        let routed = t.elapsed();
        let r = condition_becomes(&services, "Announced", "BGP over node1->tor").await;
        assert!(r.is_ok(), "{r:?}\n{}", logs());
        assert_eq!(node1_failures(&client).await, vec![]);
        println!(
            "no frr-agent: announceFailed Event and condition AnnounceFailed; frr-agent started: {ip} at the ToR \
             {routed:?} later, condition Announced {:?}",
            t.elapsed()
        );
    });
}
