//! Fault-injection soak: Services created, changed and deleted at a steady rate while faults
//! fire at random (the leading controller killed, a speaker killed, frr-agent killed, bgpd
//! killed, the API server restarted, a node's link cut and healed, an invalid object toggled),
//! with invariants checked all along: no Service's IP ever changes while it exists, no IP is
//! held twice, the ToR and ARP say what the Services' status says within a bound after each
//! fault, and no BGP session resets except on a node whose bgpd or link was hit.
//!
//! `FERROLB_SOAK_SECONDS` (default 60; `scripts/soak` runs 20 minutes), `FERROLB_SOAK_SEED`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};

use crate::kube_lab::KubeLab;
use crate::soak_lab::{NODES, SoakLab};

/// A small deterministic generator: a seed replays a run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What the invariant checker has seen of the Services.
#[derive(Default)]
struct Seen {
    /// uid -> the IPs it first got.
    first: BTreeMap<String, Vec<String>>,
    /// The latest listing: name -> (IPs, pool annotation).
    now: BTreeMap<String, (Vec<String>, String)>,
    ip_changes: Vec<String>,
    duplicates: Vec<String>,
}

impl Seen {
    fn observe(&mut self, listed: &[Service]) {
        let mut holders: BTreeMap<String, String> = BTreeMap::new();
        self.now.clear();
        for s in listed {
            let (name, uid) =
                (s.metadata.name.clone().unwrap_or_default(), s.metadata.uid.clone().unwrap_or_default());
            let ips = ferrolb::plan::writeback::current_ips(s);
            let pool =
                s.metadata.annotations.as_ref().and_then(|a| a.get("metallb.io/address-pool")).cloned();
            self.now.insert(name.clone(), (ips.clone(), pool.unwrap_or_default()));
            if ips.is_empty() {
                if self.first.contains_key(&uid) {
                    self.ip_changes.push(format!("{name}: lost its IPs {:?}", self.first[&uid]));
                }
                continue;
            }
            match self.first.get(&uid) {
                Some(was) if *was != ips => self.ip_changes.push(format!("{name}: {was:?} -> {ips:?}")),
                Some(_) => {}
                None => {
                    self.first.insert(uid, ips.clone());
                }
            }
            for ip in ips {
                if let Some(other) = holders.insert(ip.clone(), name.clone()) {
                    self.duplicates.push(format!("{ip} held by {other} and {name}"));
                }
            }
        }
    }

    /// (routed IPs, layer 2 IPs) the cluster should be announcing now.
    fn expected(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let mut routed = BTreeSet::new();
        let mut lan = BTreeSet::new();
        for (ips, pool) in self.now.values() {
            let set = if pool == "lan" { &mut lan } else { &mut routed };
            set.extend(ips.iter().cloned());
        }
        (routed, lan)
    }
}

fn service(name: &str, pool: &str) -> Service {
    serde_saphyr::from_str(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: soak, annotations: {{metallb.io/address-pool: {pool}}}}}\n\
         spec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"
    ))
    .unwrap()
}

fn slice(name: &str) -> EndpointSlice {
    serde_saphyr::from_str(&format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}, namespace: soak, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nendpoints: [{{addresses: [198.18.64.10], nodeName: node1, conditions: {{ready: true}}}}]\nports: [{{port: 80}}]\n"
    ))
    .unwrap()
}

/// Creates, changes (a label: the IP must not move) and deletes Services, one step every
/// 400 ms, the layer 2 ones kept (their ARP answers are checked); counts the creations.
async fn churn(
    client: Client,
    stop: Arc<std::sync::atomic::AtomicBool>,
    created: Arc<std::sync::atomic::AtomicU64>,
    seed: u64,
) {
    let services: Api<Service> = Api::namespaced(client.clone(), "soak");
    let slices: Api<EndpointSlice> = Api::namespaced(client, "soak");
    let mut rng = Rng(seed | 1);
    let mut live: Vec<String> = Vec::new();
    let mut n = 0u64;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let roll = rng.below(10);
        // The API server may be down (a fault): a failed step is simply not counted.
        if live.len() < 8 || (roll < 5 && live.len() < 40) {
            let name = format!("svc{n}");
            n += 1;
            let _ = slices.create(&PostParams::default(), &slice(&name)).await;
            if services.create(&PostParams::default(), &service(&name, "routed")).await.is_ok() {
                created.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                live.push(name);
            }
        } else if roll < 8 {
            let name = &live[rng.below(live.len() as u64) as usize];
            let patch = serde_json::json!({"metadata": {"labels": {"soak/step": n.to_string()}}});
            let _ = services.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await;
        } else {
            let name = live.swap_remove(rng.below(live.len() as u64) as usize);
            if services.delete(&name, &DeleteParams::default()).await.is_err() {
                live.push(name);
            } else {
                let _ = slices.delete(&name, &DeleteParams::default()).await;
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillLeader,
    KillSpeaker(usize),
    KillAgent(usize),
    KillBgpd(usize),
    RestartApiServer,
    CutLink(usize),
    InvalidObject,
}

fn pick(rng: &mut Rng) -> Fault {
    let node = rng.below(NODES as u64) as usize;
    match rng.below(7) {
        0 => Fault::KillLeader,
        1 => Fault::KillSpeaker(node),
        2 => Fault::KillAgent(node),
        3 => Fault::KillBgpd(node),
        4 => Fault::RestartApiServer,
        5 => Fault::CutLink(node),
        _ => Fault::InvalidObject,
    }
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(((v.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or(0.0)
}

#[test]
fn soak_under_faults_keeps_every_ip_and_announcement() {
    require_frr!();
    require_kube!();
    if std::process::Command::new("sh")
        .args(["-c", "command -v socat && command -v arping"])
        .output()
        .map_or(true, |o| !o.status.success())
    {
        println!("skipped: the soak needs socat and arping (apt-get install socat arping)");
        return;
    }
    let seconds: u64 = std::env::var("FERROLB_SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let seed: u64 =
        std::env::var("FERROLB_SOAK_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        });
    println!("soak: seed={seed} seconds={seconds}");
    let kube = KubeLab::start();
    let rt = crate::threaded_runtime();
    let client = rt.block_on(async {
        let client = kube.prepared(&["metallb-system", "soak"]).await;
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
        for i in 0..NODES {
            let node = serde_saphyr::from_str(&format!(
                "apiVersion: v1\nkind: Node\nmetadata: {{name: node{}}}\nstatus: {{addresses: [{{type: InternalIP, address: {}}}]}}\n",
                i + 1,
                crate::soak_lab::node_ip(i)
            ))
            .unwrap();
            let created = nodes.create(&PostParams::default(), &node).await.unwrap();
            // Status is a subresource: the addresses (router IDs) need their own write.
            let status = serde_json::json!({"status": {"addresses": [{"type": "InternalIP", "address": crate::soak_lab::node_ip(i)}]}});
            nodes.patch_status(created.metadata.name.as_deref().unwrap(), &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
        }
        let mut inputs = ferrolb::plan::Inputs::new("metallb-system");
        inputs.add_yaml("config", crate::soak_lab::CONFIG).unwrap();
        crate::kube_controller::create_all(&client, &inputs.objects.pools).await;
        crate::kube_controller::create_all(&client, &inputs.objects.peers).await;
        crate::kube_controller::create_all(&client, &inputs.objects.bgp_advertisements).await;
        crate::kube_controller::create_all(&client, &inputs.objects.l2_advertisements).await;
        let services: Api<Service> = Api::namespaced(client.clone(), "soak");
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "soak");
        for i in 0..4 {
            let name = format!("lan{i}");
            slices.create(&PostParams::default(), &slice(&name)).await.unwrap();
            services.create(&PostParams::default(), &service(&name, "lan")).await.unwrap();
        }
        client
    });
    let mut lab = SoakLab::start(kube);
    let logs = |lab: &SoakLab| {
        [
            "controller-0.log",
            "controller-1.log",
            "speaker-node1.log",
            "speaker-node2.log",
            "speaker-node3.log",
        ]
        .iter()
        .map(|f| format!("--- {f}\n{}", lab.kube.log(f)))
        .collect::<Vec<_>>()
        .join("\n")
    };

    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let created = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let watcher = {
        let (seen, stop, client) = (seen.clone(), stop.clone(), client.clone());
        rt.spawn(async move {
            let api: Api<Service> = Api::namespaced(client, "soak");
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(list) = api.list(&ListParams::default()).await {
                    seen.lock().unwrap().observe(&list.items);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // Converged: the ToR carries exactly the routed IPs and every layer 2 IP is answered by a
    // node; None when it never got there within the bound.
    let converge = |lab: &SoakLab, bound: Duration| -> Option<Duration> {
        let t = Instant::now();
        while t.elapsed() < bound {
            let (routed, lan) = seen.lock().unwrap().expected();
            if lab.tor_prefixes() == routed
                && lan.iter().all(|ip| lab.arping(ip).is_some_and(|m| lab.nodes.iter().any(|n| n.mac == m)))
            {
                return Some(t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    };
    let first = converge(&lab, Duration::from_secs(60));
    assert!(first.is_some(), "the cluster never converged at start\n{}", logs(&lab));
    let up = crate::frr_lab::wait_for(Duration::from_secs(30), || lab.established().iter().all(|&e| e >= 1));
    assert!(up.is_some(), "sessions {:?}\n{}", lab.established(), logs(&lab));
    let mut baseline = lab.established();

    let churner = rt.spawn(churn(client.clone(), stop.clone(), created.clone(), seed));
    let mut rng = Rng(seed.rotate_left(17) | 1);
    let mut faults: BTreeMap<&'static str, u32> = BTreeMap::new();
    let mut convergence = Vec::new();
    let mut unexpected_resets = Vec::new();
    let mut not_converged = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        let fault = pick(&mut rng);
        // Nodes whose sessions this fault may reset.
        let mut excused: BTreeSet<usize> = BTreeSet::new();
        let name = match fault {
            Fault::KillLeader => {
                let leader = rt.block_on(async {
                    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
                        Api::namespaced(client.clone(), "metallb-system");
                    leases.get("ferrolb-controller").await.ok()?.spec?.holder_identity
                });
                if let Some(r) = leader.and_then(|h| h.trim_start_matches("replica-").parse::<usize>().ok()) {
                    lab.controllers[r].kill();
                }
                "kill-leading-controller"
            }
            Fault::KillSpeaker(i) => {
                lab.nodes[i].speaker.kill();
                "kill-speaker"
            }
            Fault::KillAgent(i) => {
                lab.nodes[i].agent.kill();
                "kill-frr-agent"
            }
            Fault::KillBgpd(i) => {
                excused.insert(i);
                lab.nodes[i].frr.restart_daemon("bgpd").unwrap();
                "kill-bgpd"
            }
            Fault::RestartApiServer => {
                lab.kube.stop_apiserver();
                std::thread::sleep(Duration::from_secs(2));
                lab.kube.restart_apiserver();
                "restart-apiserver"
            }
            Fault::CutLink(i) => {
                excused.insert(i);
                lab.lan.set_port(&lab.nodes[i].port, false);
                std::thread::sleep(Duration::from_secs(3));
                lab.lan.set_port(&lab.nodes[i].port, true);
                "cut-node-link"
            }
            Fault::InvalidObject => {
                rt.block_on(async {
                    let peers: Api<ferrolb::api::BGPPeer> = Api::namespaced(client.clone(), "metallb-system");
                    let bad = serde_saphyr::from_str(
                        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: soak-bad, namespace: metallb-system}\nspec: {myASN: 64512, peerASN: 64501, peerAddress: 192.0.2.250, bfdProfile: not-yet}\n",
                    )
                    .unwrap();
                    let _ = peers.create(&PostParams::default(), &bad).await;
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    let _ = peers.delete("soak-bad", &DeleteParams::default()).await;
                });
                "invalid-object"
            }
        };
        *faults.entry(name).or_default() += 1;
        // What a kubelet would do: anything that died comes back (after a crash-loop-like pause).
        std::thread::sleep(Duration::from_millis(500));
        lab.revive_all();
        match converge(&lab, Duration::from_secs(60)) {
            Some(t) => convergence.push(t.as_secs_f64() * 1000.0),
            None => not_converged.push(format!("{name} ({fault:?})")),
        }
        // Let late session resets of this fault land before judging the counters.
        std::thread::sleep(Duration::from_secs(2));
        lab.revive_all();
        let now = lab.established();
        for i in 0..NODES {
            if now[i] != baseline[i] && !excused.contains(&i) {
                unexpected_resets.push(format!(
                    "node{} after {name} ({fault:?}): {} -> {}",
                    i + 1,
                    baseline[i],
                    now[i]
                ));
            }
        }
        baseline = now;
        let pause = 1 + rng.below(3);
        std::thread::sleep(Duration::from_secs(pause));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    rt.block_on(async {
        let _ = churner.await;
        let _ = watcher.await;
    });
    let seen = seen.lock().unwrap();
    let total: u32 = faults.values().sum();
    println!(
        "soak: faults by kind {faults:?}; restarts {:?}",
        lab.controllers
            .iter()
            .chain(lab.nodes.iter().flat_map(|n| [&n.agent, &n.speaker]))
            .map(|p| (p.name.clone(), p.restarts))
            .collect::<Vec<_>>()
    );
    println!(
        "soak: minutes={:.1} services_created={} faults={total} ip_changes={} duplicates={} convergence_p50={:.0}ms p99={:.0}ms unexpected_resets={} not_converged={}",
        started.elapsed().as_secs_f64() / 60.0,
        created.load(std::sync::atomic::Ordering::SeqCst),
        seen.ip_changes.len(),
        seen.duplicates.len(),
        pct(&convergence, 0.5),
        pct(&convergence, 0.99),
        unexpected_resets.len(),
        not_converged.len()
    );
    assert!(seen.ip_changes.is_empty(), "IPs changed: {:?}\n{}", seen.ip_changes, logs(&lab));
    assert!(seen.duplicates.is_empty(), "duplicates: {:?}", seen.duplicates);
    assert!(unexpected_resets.is_empty(), "unexpected resets: {unexpected_resets:?}\n{}", logs(&lab));
    assert!(not_converged.is_empty(), "not converged within 60 s after: {not_converged:?}\n{}", logs(&lab));
    assert!(total >= 1);
}
