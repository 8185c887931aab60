//! `ferrolb controller` against a real kube-apiserver: every example's Services get exactly the
//! IPs `ferrolb plan` predicts, with the pool annotation and an IPAllocated event.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::fabric::Running;
use crate::kube_lab::KubeLab;

pub async fn create_all<K>(client: &Client, objects: &[K])
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    for o in objects {
        let ns = o.meta().namespace.clone().unwrap_or_else(|| "default".into());
        let mut o = o.clone();
        o.meta_mut().resource_version = None;
        let api: Api<K> = Api::namespaced(client.clone(), &ns);
        api.create(&PostParams::default(), &o).await.unwrap_or_else(|e| panic!("creating {o:?}: {e}"));
    }
}

async fn delete_all<K>(client: &Client, namespaces: &[String])
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    for ns in namespaces {
        let api: Api<K> = Api::namespaced(client.clone(), ns);
        let _ = api.delete_collection(&DeleteParams::default(), &ListParams::default()).await;
    }
}

fn ips_of(svc: &Service) -> Vec<String> {
    ferrolb::plan::writeback::current_ips(svc)
}

/// `namespace/name` -> (IPs in its status, the pool its annotation names).
pub fn holding(s: &Service) -> (String, (Vec<String>, String)) {
    let key = format!(
        "{}/{}",
        s.metadata.namespace.as_deref().unwrap_or_default(),
        s.metadata.name.as_deref().unwrap_or_default()
    );
    let pool = ferrolb::plan::writeback::current_pool(s).unwrap_or_default().to_string();
    (key, (ips_of(s), pool))
}

#[test]
fn every_example_gets_the_ips_plan_predicted() {
    require_kube!();
    let lab = KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        let client = lab.prepared(&[]).await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let log = lab.dir.join("controller.log");
        let _controller = Running(
            Command::new(crate::ferrolb_bin())
                .args(["controller", "--webhook-port", "0", "--kubeconfig"])
                .arg(lab.kubeconfig())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        let mut dirs: Vec<_> = std::fs::read_dir(crate::repo_root().join("examples"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for dir in dirs {
            let name = dir.file_name().unwrap().to_string_lossy().to_string();
            // Pre-0.13 ConfigMaps are read by `plan` but, as in MetalLB, not by the controller.
            if name == "legacy-configmap" {
                continue;
            }
            let inputs =
                ferrolb::manifests::read(std::slice::from_ref(&dir), false, "metallb-system").unwrap();
            let predicted = ferrolb::plan::plan(&inputs, &Default::default());
            let mut ns_names: Vec<String> = inputs
                .services
                .iter()
                .filter_map(|s| s.metadata.namespace.clone())
                .chain(["metallb-system".to_string(), "default".to_string()])
                .collect();
            ns_names.sort();
            ns_names.dedup();
            for ns in &ns_names {
                let object = Namespace {
                    metadata: kube::api::ObjectMeta { name: Some(ns.clone()), ..Default::default() },
                    ..Default::default()
                };
                let _ = namespaces.create(&PostParams::default(), &object).await;
            }
            let o = &inputs.objects;
            create_all(&client, &o.bfd_profiles).await;
            create_all(&client, &o.communities).await;
            create_all(&client, &o.pools).await;
            create_all(&client, &o.peers).await;
            create_all(&client, &o.l2_advertisements).await;
            create_all(&client, &o.bgp_advertisements).await;
            let started = Instant::now();
            let services: Vec<Service> = inputs.services.iter().map(|s| (**s).clone()).collect();
            create_all(&client, &services).await;

            let want: BTreeMap<String, (Vec<String>, String)> = predicted
                .allocations
                .iter()
                .map(|a| (a.service.clone(), (a.ips.clone(), a.pool.clone())))
                .collect();
            let services: Api<Service> = Api::all(client.clone());
            let mut got = BTreeMap::new();
            while started.elapsed() < Duration::from_secs(30) {
                got = services
                    .list(&ListParams::default())
                    .await
                    .unwrap()
                    .items
                    .iter()
                    .filter(|s| {
                        s.metadata.namespace.as_deref() != Some("default")
                            || s.metadata.name.as_deref() != Some("kubernetes")
                    })
                    .filter(|s| !ips_of(s).is_empty())
                    .map(holding)
                    .collect();
                if got == want {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(
                got,
                want,
                "{name}: the cluster disagrees with plan\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            println!("{name}: {} Services allocated as planned in {:?}", want.len(), started.elapsed());
            // Every allocated Service has its IPAllocated event (recorded right after the write).
            let events: Api<Event> = Api::all(client.clone());
            let t = Instant::now();
            let missing = loop {
                let listed = events.list(&ListParams::default()).await.unwrap().items;
                let missing: Vec<&String> = want
                    .keys()
                    .filter(|service| {
                        let (ns, svc) = service.split_once('/').unwrap();
                        !listed.iter().any(|e| {
                            e.reason.as_deref() == Some("IPAllocated")
                                && e.regarding.as_ref().is_some_and(|r| {
                                    r.name.as_deref() == Some(svc) && r.namespace.as_deref() == Some(ns)
                                })
                        })
                    })
                    .collect();
                if missing.is_empty() || t.elapsed() > Duration::from_secs(10) {
                    break missing;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            assert!(missing.is_empty(), "{name}: no IPAllocated event for {missing:?}");
            delete_all::<Service>(&client, &ns_names).await;
            let ms = vec!["metallb-system".to_string()];
            delete_all::<ferrolb::api::L2Advertisement>(&client, &ms).await;
            delete_all::<ferrolb::api::BGPAdvertisement>(&client, &ms).await;
            delete_all::<ferrolb::api::BGPPeer>(&client, &ms).await;
            delete_all::<ferrolb::api::IPAddressPool>(&client, &ms).await;
            delete_all::<ferrolb::api::Community>(&client, &ms).await;
            delete_all::<ferrolb::api::BFDProfile>(&client, &ms).await;
            let gone = Instant::now();
            while services.list(&ListParams::default()).await.unwrap().items.len() > 1
                && gone.elapsed() < Duration::from_secs(20)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
}

fn service(name: &str, pool: Option<&str>) -> Service {
    let mut meta = kube::api::ObjectMeta {
        name: Some(name.into()),
        namespace: Some("bulk".into()),
        ..Default::default()
    };
    if let Some(p) = pool {
        meta.annotations = Some([("metallb.io/address-pool".to_string(), p.to_string())].into());
    }
    Service {
        metadata: meta,
        spec: Some(k8s_openapi::api::core::v1::ServiceSpec {
            type_: Some("LoadBalancer".into()),
            ports: Some(vec![k8s_openapi::api::core::v1::ServicePort { port: 80, ..Default::default() }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pool(name: &str, addresses: &[&str]) -> ferrolb::api::IPAddressPool {
    let yaml = format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: {name}, namespace: metallb-system}}\nspec: {{addresses: [{}]}}\n",
        addresses.join(", ")
    );
    serde_saphyr::from_str(&yaml).unwrap()
}

/// service -> IPs, for every Service in `bulk` holding IPs.
async fn allocations(client: &Client) -> BTreeMap<String, Vec<String>> {
    let api: Api<Service> = Api::namespaced(client.clone(), "bulk");
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|s| !ips_of(s).is_empty())
        .map(|s| (s.metadata.name.clone().unwrap(), ips_of(s)))
        .collect()
}

/// Controller run `n` (its log file), as replica `replica` (its lease identity, as a pod name).
fn start_replica(lab: &KubeLab, n: usize, replica: usize) -> Running {
    let log = std::fs::File::create(lab.dir.join(format!("controller-{n}.log"))).unwrap();
    Running(
        Command::new(crate::ferrolb_bin())
            .args([
                "controller",
                "--webhook-port",
                "0",
                "--identity",
                &format!("replica-{replica}"),
                "--kubeconfig",
            ])
            .arg(lab.kubeconfig())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

#[test]
fn twenty_controller_restarts_move_no_ip_and_duplicate_none() {
    use futures::StreamExt;
    require_kube!();
    let lab = KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        let client = lab.prepared(&["metallb-system", "bulk"]).await;
        // 1,000 Services in a /22; five more ask for a pool of two addresses, so three wait.
        create_all(&client, &[pool("bulk", &["198.51.100.0/22"]), pool("tiny", &["203.0.113.10-203.0.113.11"])]).await;
        let mut services: Vec<Service> = (0..1000).map(|i| service(&format!("s{i:04}"), Some("bulk"))).collect();
        services.extend((0..5).map(|i| service(&format!("tiny{i}"), Some("tiny"))));
        let api: Api<Service> = Api::namespaced(client.clone(), "bulk");
        futures::stream::iter(services)
            .for_each_concurrent(16, |s| {
                let api = api.clone();
                async move {
                    api.create(&PostParams::default(), &s).await.unwrap();
                }
            })
            .await;
        // One replica restarting in place, as a crashed container does: it keeps its identity.
        let mut controller = start_replica(&lab, 0, 0);
        let t = Instant::now();
        let mut first = BTreeMap::new();
        while t.elapsed() < Duration::from_secs(60) {
            first = allocations(&client).await;
            if first.len() == 1002 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(first.len(), 1002, "{}", lab.log("controller-0.log"));
        println!("1,000 + 2 Services allocated {:?} after the controller started", t.elapsed());

        let mut settled_after = Vec::new();
        for restart in 1..=20 {
            drop(controller);
            // Pools change while no controller runs: a pool appears, the tiny one grows by one
            // address every fifth restart (a waiting Service may then get it).
            if restart % 5 == 0 {
                let extra = format!("203.0.113.{}", 11 + restart / 5);
                let pools: Api<ferrolb::api::IPAddressPool> = Api::namespaced(client.clone(), "metallb-system");
                let mut tiny = pools.get("tiny").await.unwrap();
                tiny.spec.addresses.push(format!("{extra}/32"));
                pools.replace("tiny", &PostParams::default(), &tiny).await.unwrap();
            }
            if restart == 10 {
                create_all(&client, &[pool("spare", &["198.18.200.0/24"])]).await;
            }
            controller = start_replica(&lab, restart, 0);
            let t = Instant::now();
            let log = lab.dir.join(format!("controller-{restart}.log"));
            while !std::fs::read_to_string(&log).unwrap_or_default().contains("cluster listed") {
                assert!(t.elapsed() < Duration::from_secs(30), "controller {restart} never listed the cluster");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // Let it act on what it saw, then compare.
            tokio::time::sleep(Duration::from_millis(300)).await;
            settled_after.push(t.elapsed());
            let now = allocations(&client).await;
            for (svc, ips) in &first {
                assert_eq!(now.get(svc), Some(ips), "restart {restart}: {svc} moved");
            }
            let mut seen = std::collections::BTreeSet::new();
            for (svc, ips) in &now {
                for ip in ips {
                    assert!(seen.insert(ip.clone()), "restart {restart}: {ip} given twice (again to {svc})");
                }
            }
            // Newly waiting Services that got an address keep it from now on.
            first = now;
        }
        drop(controller);
        assert_eq!(first.len(), 1005, "all three waiting Services got one of the added addresses");
        println!("20 restarts (pools changing between them): no IP moved, none given twice; each settled within {:?}", settled_after.iter().max().unwrap());
    });
}

#[test]
fn two_replicas_one_leads_and_the_other_takes_over_without_moving_an_ip() {
    use k8s_openapi::api::coordination::v1::Lease;
    require_kube!();
    let lab = KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        let client = lab.prepared(&["metallb-system", "bulk"]).await;
        create_all(&client, &[pool("bulk", &["198.51.100.0/24"])]).await;
        create_all(&client, &(0..50).map(|i| service(&format!("s{i:02}"), None)).collect::<Vec<_>>()).await;
        let mut replicas = vec![Some(start_replica(&lab, 0, 0)), Some(start_replica(&lab, 1, 1))];
        let t = Instant::now();
        let mut before = BTreeMap::new();
        while t.elapsed() < Duration::from_secs(30) && before.len() < 50 {
            before = allocations(&client).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(before.len(), 50);
        let leases: Api<Lease> = Api::namespaced(client.clone(), "metallb-system");
        let holder = leases.get("ferrolb-controller").await.unwrap().spec.unwrap().holder_identity.unwrap();
        let leader: usize = holder.trim_start_matches("replica-").parse().unwrap();
        // The standby allocated nothing: it never got past the lease.
        let standby_log = std::fs::read_to_string(lab.dir.join(format!("controller-{}.log", 1 - leader))).unwrap();
        assert!(!standby_log.contains("written"), "the standby wrote:\n{standby_log}");

        // The leader dies without releasing its lease; new Services arrive meanwhile.
        let killed = Instant::now();
        drop(replicas[leader].take());
        create_all(&client, &(50..55).map(|i| service(&format!("s{i:02}"), None)).collect::<Vec<_>>()).await;
        let mut after = BTreeMap::new();
        while killed.elapsed() < Duration::from_secs(30) && after.len() < 55 {
            after = allocations(&client).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let took = killed.elapsed();
        assert_eq!(after.len(), 55, "{}", std::fs::read_to_string(lab.dir.join(format!("controller-{}.log", 1 - leader))).unwrap());
        for (svc, ips) in &before {
            assert_eq!(after.get(svc), Some(ips), "{svc} moved in the takeover");
        }
        let holder = leases.get("ferrolb-controller").await.unwrap().spec.unwrap().holder_identity.unwrap();
        assert_eq!(holder, format!("replica-{}", 1 - leader));
        println!("leader killed: the standby took over and served new Services {took:?} later (lease 6 s); no IP moved");
        drop(replicas);
    });
}
