//! `ferrolb controller` against a real kube-apiserver: every example's Services get exactly the
//! IPs `ferrolb plan` predicts, with the pool annotation and an IPAllocated event.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::kube_lab::KubeLab;

struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = crate::repo_root().join("crds");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for doc in serde_saphyr::from_multiple::<CustomResourceDefinition>(&text).unwrap() {
            names.push(doc.metadata.name.clone().unwrap());
            api.create(&PostParams::default(), &doc).await.unwrap();
        }
    }
    for name in names {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let crd = api.get(&name).await.unwrap();
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Established" && c.status == "True"));
            if established {
                break;
            }
            assert!(Instant::now() < deadline, "CRD {name} never established");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn create_all<K>(client: &Client, objects: &[K])
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

#[test]
fn every_example_gets_the_ips_plan_predicted() {
    require_kube!();
    let lab = KubeLab::start();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let client = lab.client().await;
        install_crds(&client).await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let log = lab.dir.join("controller.log");
        let _controller = Controller(
            Command::new(crate::ferrolb_bin())
                .args(["controller", "--kubeconfig"])
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
            let inputs = ferrolb::cli::read_manifests(std::slice::from_ref(&dir), false, "metallb-system").unwrap();
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
            create_all(&client, &inputs.services).await;

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
                    .map(|s| {
                        let key = format!(
                            "{}/{}",
                            s.metadata.namespace.clone().unwrap(),
                            s.metadata.name.clone().unwrap()
                        );
                        let pool = s
                            .metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get("metallb.io/ip-allocated-from-pool"))
                            .cloned()
                            .unwrap_or_default();
                        (key, (ips_of(s), pool))
                    })
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
            // Every allocated Service has its IPAllocated event.
            let events: Api<Event> = Api::all(client.clone());
            let events = events.list(&ListParams::default()).await.unwrap().items;
            for service in want.keys() {
                let (ns, svc) = service.split_once('/').unwrap();
                let found = events.iter().any(|e| {
                    e.reason.as_deref() == Some("IPAllocated")
                        && e.regarding.as_ref().is_some_and(|r| {
                            r.name.as_deref() == Some(svc) && r.namespace.as_deref() == Some(ns)
                        })
                });
                assert!(found, "{name}: no IPAllocated event for {service}");
            }
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
