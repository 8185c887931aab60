//! In a cluster the speaker announces what the controller decided, never its own guess: with
//! the controller stopped, a pool shrinking under held IPs and a Service asking for another
//! IP, the ToR keeps exactly the status IPs still inside a pool; once the controller moves them,
//! the ToR follows. Sampled every 50 ms throughout: no prefix ever reaches the ToR before it
//! is in some Service's status. A Service of another loadBalancerClass is left alone, whatever
//! its status holds, unless the speaker runs for that class.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};

use crate::agent_process::AgentProcess;
use crate::bgp_lab::Lab;
use crate::fabric::Running;
use crate::frr_lab::wait_for;
use crate::kube_lab::{KubeLab, eventually};
use crate::kube_speaker::{bgp_cluster, create_served};

/// Every IP in the status of a Service in `shop` right now.
async fn status_ips(services: &Api<Service>) -> BTreeSet<String> {
    services
        .list(&ListParams::default())
        .await
        .map(|l| l.items.iter().flat_map(ferrolb::plan::writeback::current_ips).collect())
        .unwrap_or_default()
}

fn controller(kube: &KubeLab, n: usize) -> Running {
    let args =
        ["controller", "--webhook-port", "0", "--leader-elect", "false", "--metrics-bind", "127.0.0.1:0"];
    kube.run_ferrolb(&args, &format!("controller-{n}.log"))
}

#[test]
fn the_speaker_announces_only_what_the_status_holds() {
    require_frr!();
    require_kube!();
    let lab = Lab::start();
    let agent = AgentProcess::start(&lab.node, "agent");
    let kube = KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        let client = bgp_cluster(&kube).await;
        let mut ctl = Some(controller(&kube, 0));
        let socket = agent.socket.display().to_string();
        let args = ["speaker", "--node", "node1", "--metrics-bind", "127.0.0.1:0", "--frr-agent-socket", &socket];
        let _speaker = kube.run_ferrolb(&args, "speaker.log");
        let speaker_log = || kube.log("speaker.log");
        let services: Api<Service> = Api::namespaced(client.clone(), "shop");
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "shop");
        // Four from the start of the pool, two asked at its far end.
        for i in 0..6 {
            create_served(&services, &slices, &format!("s{i}"), &format!("203.0.113.{}", 10 + i)).await;
            if i >= 4 {
                let ask = serde_json::json!({"metadata": {"annotations": {"metallb.io/loadBalancerIPs": format!("198.51.100.{}", 16 + i)}}});
                services.patch(&format!("s{i}"), &PatchParams::default(), &Patch::Merge(ask)).await.unwrap();
            }
        }
        let r = eventually("six at the ToR", || async {
            let want = status_ips(&services).await;
            let have: BTreeSet<String> = lab.tor_prefixes().iter().map(|p| p.trim_end_matches("/32").to_string()).collect();
            if want.len() == 6 && have == want { Ok(()) } else { Err(format!("status {want:?}, ToR {have:?}")) }
        })
        .await;
        assert!(r.is_ok(), "{r:?}\n{}", speaker_log());

        // The sampler: the ToR first, then the status, so an IP at the ToR must already be in
        // the set of every status IP seen so far.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let violations = Arc::new(Mutex::new(Vec::<String>::new()));
        let samples = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sampler = {
            let (stop, violations, samples, services) = (stop.clone(), violations.clone(), samples.clone(), services.clone());
            let tor = lab.tor.ns.clone();
            tokio::spawn(async move {
                let mut ever: BTreeSet<String> = status_ips(&services).await;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let out = Command::new("ip").args(["-n", &tor, "-j", "route", "show", "proto", "bgp"]).output().unwrap();
                    let routes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                    ever.extend(status_ips(&services).await);
                    for r in routes.as_array().into_iter().flatten() {
                        let dst = r["dst"].as_str().unwrap_or_default().to_string();
                        if !ever.contains(&dst) {
                            violations.lock().unwrap().push(format!("{dst} at the ToR, never in a status"));
                        }
                    }
                    samples.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };

        // The controller goes away; the pool shrinks to a /29 under s4 and s5, and s1 asks for
        // .6: nothing may change hands, and what left every pool is withdrawn.
        drop(ctl.take());
        let held = status_ips(&services).await;
        let pools: Api<ferrolb::api::IPAddressPool> = Api::namespaced(client.clone(), "metallb-system");
        let shrink = serde_json::json!({"spec": {"addresses": ["198.51.100.0/29"]}});
        pools.patch("lab", &PatchParams::default(), &Patch::Merge(shrink)).await.unwrap();
        let ask = serde_json::json!({"metadata": {"annotations": {"metallb.io/loadBalancerIPs": "198.51.100.6"}}});
        services.patch("s1", &PatchParams::default(), &Patch::Merge(ask)).await.unwrap();
        // s4 and s5 stop asking for their (now outside) IPs, so the controller can renumber them.
        let unpin = serde_json::json!({"metadata": {"annotations": {"metallb.io/loadBalancerIPs": null}}});
        for s in ["s4", "s5"] {
            services.patch(s, &PatchParams::default(), &Patch::Merge(&unpin)).await.unwrap();
        }
        let inside: BTreeSet<String> =
            held.iter().filter(|ip| ip.rsplit('.').next().unwrap().parse::<u8>().unwrap() < 8).cloned().collect();
        assert_eq!(inside.len(), 4, "{held:?}");
        let t = Instant::now();
        let withdrawn = wait_for(Duration::from_secs(10), || {
            lab.tor_prefixes().iter().map(|p| p.trim_end_matches("/32").to_string()).collect::<BTreeSet<_>>() == inside
        });
        assert!(withdrawn.is_some(), "ToR {:?}, want {inside:?}\n{}", lab.tor_prefixes(), speaker_log());
        println!("pool shrunk with no controller: the IPs outside it left the ToR in {:?}, nothing else changed", t.elapsed());
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(status_ips(&services).await, held, "nobody wrote a status");

        // The controller back: it moves s1 to .6 and gives s4, s5 new addresses of the /29;
        // the ToR follows the status.
        let _ctl = controller(&kube, 1);
        let t = Instant::now();
        let r = eventually("the ToR follows the controller", || async {
            let want = status_ips(&services).await;
            let have: BTreeSet<String> = lab.tor_prefixes().iter().map(|p| p.trim_end_matches("/32").to_string()).collect();
            if want.len() == 6 && want.contains("198.51.100.6") && have == want { Ok(()) } else { Err(format!("status {want:?}, ToR {have:?}")) }
        })
        .await;
        assert!(r.is_ok(), "{r:?}\n{}\n{}", speaker_log(), kube.log("controller-1.log"));
        println!("controller back: the ToR carried the new status {:?} later", t.elapsed());
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        sampler.await.unwrap();
        let v = violations.lock().unwrap();
        let n = samples.load(std::sync::atomic::Ordering::SeqCst);
        assert!(n > 20, "only {n} samples");
        assert!(v.is_empty(), "{} of {n} samples saw an IP no status held: {:?}\n{}", v.len(), &v[..v.len().min(5)], speaker_log());
        println!("{n} samples of the ToR every 50 ms: never an IP outside the status");
    });
}

/// A Service of another loadBalancerClass is another implementation's, even with an address of
/// ferrolb's pool in its status: the speaker announces it only when started for that class.
#[test]
fn the_speaker_announces_only_its_own_class() {
    require_frr!();
    require_kube!();
    let lab = Lab::start();
    let agent = AgentProcess::start(&lab.node, "agent");
    let kube = KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        let client = bgp_cluster(&kube).await;
        let _ctl = controller(&kube, 0);
        let socket = agent.socket.display().to_string();
        let speaker = |class: Option<&str>, log: &str| {
            let mut args = vec![
                "speaker",
                "--node",
                "node1",
                "--metrics-bind",
                "127.0.0.1:0",
                "--frr-agent-socket",
                &socket,
            ];
            if let Some(c) = class {
                args.extend(["--lb-class", c]);
            }
            kube.run_ferrolb(&args, log)
        };
        let services: Api<Service> = Api::namespaced(client.clone(), "shop");
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "shop");
        create_served(&services, &slices, "ours", "203.0.113.10").await;
        let theirs: Service = serde_saphyr::from_str(
            "apiVersion: v1\nkind: Service\nmetadata: {name: theirs, namespace: shop}\n\
             spec: {type: LoadBalancer, loadBalancerClass: example.com/other, ports: [{port: 80}]}\n",
        )
        .expect("Service parses");
        services.create(&Default::default(), &theirs).await.expect("theirs created");
        let slice: EndpointSlice = serde_saphyr::from_str(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: theirs-1, namespace: shop, labels: {kubernetes.io/service-name: theirs}}\n\
             addressType: IPv4\nendpoints: [{addresses: [203.0.113.11], nodeName: node1, conditions: {ready: true}}]\nports: [{port: 80}]\n",
        )
        .expect("EndpointSlice parses");
        slices.create(&Default::default(), &slice).await.expect("theirs' endpoints created");
        // What the other implementation wrote: an address inside ferrolb's pool.
        let status = serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.200"}]}}});
        services
            .patch_status("theirs", &PatchParams::default(), &Patch::Merge(status))
            .await
            .expect("status written");
        let asked = Instant::now();
        let ours = loop {
            assert!(asked.elapsed() < Duration::from_secs(30), "{}", kube.log("controller-0.log"));
            if let Some(ip) = status_ips(&services).await.into_iter().find(|ip| ip != "198.51.100.200") {
                break ip;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };

        let plain = speaker(None, "speaker.log");
        let up = wait_for(Duration::from_secs(30), || lab.tor_prefixes() == [format!("{ours}/32")]);
        assert!(up.is_some(), "ToR {:?}\n{}", lab.tor_prefixes(), kube.log("speaker.log"));
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(lab.tor_prefixes(), [format!("{ours}/32")], "another class's IP was announced");
        drop(plain);

        let _classed = speaker(Some("example.com/other"), "speaker-other.log");
        let moved = wait_for(Duration::from_secs(30), || lab.tor_prefixes() == ["198.51.100.200/32"]);
        assert!(moved.is_some(), "ToR {:?}\n{}", lab.tor_prefixes(), kube.log("speaker-other.log"));
        println!(
            "class-less speaker announced {ours} only; with --lb-class example.com/other only 198.51.100.200"
        );
    });
}
