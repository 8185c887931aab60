//! A bad object in a real cluster takes nothing away: for each kind of invalid configuration a
//! user can get past (or around) the webhook, the controller keeps every IP it gave, still
//! serves new Services from the last good configuration, and says what is wrong (its
//! ConfigurationState, a Warning Event on the object, `metallb_k8s_client_config_stale_bool`).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::ApiResource;
use kube::{Api, Client};

use crate::fabric::Running;
use crate::kube_lab::{KubeLab, eventually};

/// (what, objects): each makes the configuration invalid beside the lab's pool.
const BAD: &[(&str, &str)] = &[
    (
        "missing BFDProfile",
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: bad-tor}\nspec: {myASN: 64500, peerASN: 64501, peerAddress: 192.0.2.254, bfdProfile: not-yet}\n",
    ),
    (
        "missing Secret",
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: bad-tor}\nspec: {myASN: 64500, peerASN: 64501, peerAddress: 192.0.2.254, passwordSecret: {name: not-yet}}\n",
    ),
    (
        "missing Community alias",
        "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: bad-ads}\nspec: {communities: [not-yet]}\n",
    ),
    (
        "overlapping pools",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: bad-pool}\nspec: {addresses: [198.51.100.128/25]}\n",
    ),
    (
        "a node with two router IDs",
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: bad-a}\nspec: {myASN: 64500, peerASN: 64501, peerAddress: 192.0.2.253, routerID: 192.0.2.1}\n---\n\
         apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: bad-b}\nspec: {myASN: 64500, peerASN: 64501, peerAddress: 192.0.2.254, routerID: 192.0.2.2}\n",
    ),
    (
        "a Secret whose password would add FRR configuration",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: smuggling-pw}\ntype: kubernetes.io/basic-auth\n\
         stringData: {password: \"x\\n neighbor 198.51.100.66 remote-as 65666\"}\n---\n\
         apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: bad-md5}\nspec: {myASN: 64500, peerASN: 64501, peerAddress: 192.0.2.254, passwordSecret: {name: smuggling-pw}}\n",
    ),
    (
        "a malformed object (the webhook would refuse it)",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: bad-pool}\nspec: {addresses: [198.51.100.0/33]}\n",
    ),
];

fn service(name: &str) -> Service {
    serde_saphyr::from_str(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"
    ))
    .unwrap()
}

/// name -> (IPs, pool annotation) of every Service in `shop`.
async fn held(client: &Client) -> BTreeMap<String, (Vec<String>, Option<String>)> {
    let api: Api<Service> = Api::namespaced(client.clone(), "shop");
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| {
            let pool = s
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("metallb.io/ip-allocated-from-pool"))
                .cloned();
            (s.metadata.name.clone().unwrap(), (ferrolb::plan::writeback::current_ips(s), pool))
        })
        .collect()
}

/// The bad objects as dynamic objects in metallb-system: created as written, nothing checks them.
fn objects(yaml: &str) -> Vec<(ApiResource, DynamicObject)> {
    yaml.split("\n---\n")
        .map(|doc| {
            let mut o: DynamicObject = serde_saphyr::from_str(doc).unwrap();
            o.metadata.namespace = Some("metallb-system".into());
            let types = o.types.clone().unwrap();
            let (group, version) = types.api_version.split_once('/').unwrap_or(("", &types.api_version));
            let gvk = kube::api::GroupVersionKind::gvk(group, version, &types.kind);
            let plural = format!("{}s", types.kind.to_lowercase());
            (ApiResource::from_gvk_with_plural(&gvk, &plural), o)
        })
        .collect()
}

fn stale_metric(at: &str) -> Option<String> {
    let out = Command::new("curl").args(["-sf", &format!("http://{at}/metrics")]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find(|l| l.starts_with("metallb_k8s_client_config_stale_bool "))
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
}

fn start_controller(lab: &KubeLab, n: usize, metrics: &str) -> Running {
    lab.run_ferrolb(
        &["controller", "--webhook-port", "0", "--metrics-bind", metrics],
        &format!("controller-{n}.log"),
    )
}

#[test]
fn no_kind_of_invalid_object_takes_an_ip_away() {
    require_kube!();
    let lab = KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        let client = lab.prepared(&["metallb-system", "shop"]).await;
        let pools: Api<ferrolb::api::IPAddressPool> = Api::namespaced(client.clone(), "metallb-system");
        let pool = serde_saphyr::from_str(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: lab, namespace: metallb-system}\nspec: {addresses: [198.51.100.0/24]}\n",
        )
        .unwrap();
        pools.create(&PostParams::default(), &pool).await.unwrap();
        let services: Api<Service> = Api::namespaced(client.clone(), "shop");
        for i in 0..10 {
            services.create(&PostParams::default(), &service(&format!("s{i}"))).await.unwrap();
        }
        let metrics = format!("127.0.0.1:{}", crate::kube_lab::free_port());
        let mut controller = Some(start_controller(&lab, 0, &metrics));
        let r = eventually("10 Services allocated", || async {
            let h = held(&client).await;
            if h.values().filter(|(ips, _)| !ips.is_empty()).count() == 10 { Ok(()) } else { Err(format!("{h:?}")) }
        })
        .await;
        assert!(r.is_ok(), "{r:?}\n{}", lab.log("controller-0.log"));
        let states: Api<ferrolb::api::ConfigurationState> = Api::namespaced(client.clone(), "metallb-system");
        let events: Api<Event> = Api::namespaced(client.clone(), "metallb-system");

        for (n, (what, yaml)) in BAD.iter().enumerate() {
            let before = held(&client).await;
            let created = objects(yaml);
            for (ar, o) in &created {
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "metallb-system", ar);
                api.create(&PostParams::default(), o).await.unwrap_or_else(|e| panic!("{what}: creating: {e}"));
            }
            let first = created[created.len() - 1].1.metadata.name.clone().unwrap();
            let r = eventually("Invalid", || async {
                let st = states.get("controller").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
                let summary = st.error_summary.unwrap_or_default();
                match st.result {
                    Some(ferrolb::api::ConfigurationResult::Invalid) if summary.contains(&format!("{first:?}")) => {
                        Ok(())
                    }
                    other => Err(format!("{other:?} {summary}")),
                }
            })
            .await;
            assert!(r.is_ok(), "{what}: {r:?}");
            let r = eventually("a Warning Event on the object", || async {
                let listed = events.list(&ListParams::default()).await.map_err(|e| e.to_string())?.items;
                listed
                    .iter()
                    .find(|e| {
                        e.reason.as_deref() == Some("InvalidConfiguration")
                            && e.type_.as_deref() == Some("Warning")
                            && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(first.as_str())
                    })
                    .map(|_| ())
                    .ok_or_else(|| format!("{} events", listed.len()))
            })
            .await;
            assert!(r.is_ok(), "{what}: {r:?}");
            assert_eq!(stale_metric(&metrics).as_deref(), Some("1"), "{what}: config_stale_bool");
            // No secret reaches a status or an Event (the smuggling password's text included).
            let said = format!("{:?}{:?}", states.get("controller").await.map(|s| s.status), events.list(&ListParams::default()).await.map(|l| l.items));
            assert!(!said.contains("65666"), "{what}: a password reached a status or Event");

            // A new Service is served from the last good pool; for a second every Service holds
            // exactly what it held (sampled every 50 ms).
            let new = format!("new{n}");
            services.create(&PostParams::default(), &service(&new)).await.unwrap();
            let t = Instant::now();
            let mut served = false;
            while t.elapsed() < Duration::from_secs(1) || !served {
                assert!(t.elapsed() < Duration::from_secs(10), "{what}: {new} never got an IP");
                let now = held(&client).await;
                for (svc, was) in &before {
                    assert_eq!(now.get(svc), Some(was), "{what}: {svc} changed");
                }
                served = now.get(&new).is_some_and(|(ips, pool)| {
                    ips.len() == 1 && ips[0].starts_with("198.51.100.") && pool.as_deref() == Some("lab")
                });
                tokio::time::sleep(Duration::from_millis(50)).await;
            }

            // The controller restarting now has no last good configuration: it changes nothing.
            if n == 0 {
                drop(controller.take());
                let before = held(&client).await;
                controller = Some(start_controller(&lab, 1, &metrics));
                services.create(&PostParams::default(), &service("waits")).await.unwrap();
                let log = lab.dir.join("controller-1.log");
                let r = eventually("listed", || async {
                    let l = std::fs::read_to_string(&log).unwrap_or_default();
                    if l.contains("cluster listed") { Ok(()) } else { Err(l) }
                })
                .await;
                assert!(r.is_ok(), "{r:?}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                let now = held(&client).await;
                for (svc, was) in &before {
                    assert_eq!(now.get(svc), Some(was), "{what}, restarted: {svc} changed");
                }
                assert_eq!(now.get("waits").map(|(ips, _)| ips.len()), Some(0), "nothing decided without a valid configuration");
                assert_eq!(stale_metric(&metrics).as_deref(), Some("1"));
            }

            for (ar, o) in &created {
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "metallb-system", ar);
                api.delete(o.metadata.name.as_deref().unwrap(), &DeleteParams::default()).await.unwrap();
            }
            let r = eventually("Valid again", || async {
                let st = states.get("controller").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
                match (st.result, stale_metric(&metrics).as_deref()) {
                    (Some(ferrolb::api::ConfigurationResult::Valid), Some("0")) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            })
            .await;
            assert!(r.is_ok(), "{what}: {r:?}");
            println!("{what}: Invalid reported with a Warning Event on {first:?}; no IP moved; a new Service was served");
        }
        // Valid again, the one that waited through the restart gets its IP too.
        let r = eventually("waits served", || async {
            match held(&client).await.get("waits") {
                Some((ips, _)) if ips.len() == 1 => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        assert!(r.is_ok(), "{r:?}");
        drop(controller);
    });
}
