//! Which pool a Service gets, decided by the controller against a real kube-apiserver: the
//! pools' `serviceAllocation` (priority, namespaces, namespace selectors, Service selectors),
//! the controller's `--lb-class`, IP sharing under `externalTrafficPolicy: Local`, and a
//! Service waiting on a full pool taking the address another Service gives back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};

use crate::fabric::Running;
use crate::kube_controller::create_all;
use crate::kube_lab::{KubeLab, eventually};

fn pools(yaml: &str) -> Vec<ferrolb::api::IPAddressPool> {
    let mut inputs = ferrolb::plan::Inputs::new("metallb-system");
    inputs.add_yaml("pools", yaml).expect("the test's pools parse");
    inputs.objects.pools.clone()
}

fn service(yaml: &str) -> Service {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

async fn namespace(client: &Client, name: &str, labels: &[(&str, &str)]) {
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
}

/// `namespace/name` -> (IPs in the status, the pool annotation) for every LoadBalancer Service.
async fn held(client: &Client) -> BTreeMap<String, (Vec<String>, String)> {
    let list =
        Api::<Service>::all(client.clone()).list(&ListParams::default()).await.expect("Services listed");
    list.items
        .iter()
        .filter(|s| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer"))
        .map(crate::kube_controller::holding)
        .collect()
}

/// Notes of the Events with `reason` on Service `ns/name`.
async fn events(client: &Client, ns: &str, name: &str, reason: &str) -> Vec<String> {
    let list = Api::<Event>::namespaced(client.clone(), ns).list(&ListParams::default()).await;
    list.map(|l| l.items)
        .unwrap_or_default()
        .iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| e.note.clone().unwrap_or_default())
        .collect()
}

/// Waits until the controller said why `ns/name` got nothing (an AllocationFailed Event), so a
/// Service still without an IP is one the controller refused, not one it has not reached yet.
async fn refused(client: &Client, ns: &str, name: &str) -> Vec<String> {
    let t = Instant::now();
    loop {
        let notes = events(client, ns, name, "AllocationFailed").await;
        if !notes.is_empty() {
            return notes;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no AllocationFailed for {ns}/{name}: {:?}",
            held(client).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn controller(lab: &KubeLab, extra: &[&str], log: &str) -> Running {
    let mut args =
        vec!["controller", "--webhook-port", "0", "--leader-elect", "false", "--metrics-bind", "127.0.0.1:0"];
    args.extend(extra);
    lab.run_ferrolb(&args, log)
}

/// Waits until every Service named in `want` holds exactly those IPs from that pool.
async fn settles(
    client: &Client,
    lab: &KubeLab,
    log: &str,
    want: &[(&str, &str)],
) -> BTreeMap<String, (Vec<String>, String)> {
    let t = Instant::now();
    loop {
        let now = held(client).await;
        let done =
            want.iter().all(|(svc, pool)| now.get(*svc).is_some_and(|(ips, p)| !ips.is_empty() && p == pool));
        if done {
            return now;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "want {want:?}\nhave {now:#?}\n{}", lab.log(log));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const SELECTION_POOLS: &str = "
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: aa-second, namespace: metallb-system}
spec: {addresses: [198.51.100.16/30], serviceAllocation: {priority: 20, namespaces: [team-a]}}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: zz-first, namespace: metallb-system}
spec: {addresses: [198.51.100.0/30], serviceAllocation: {priority: 10, namespaces: [team-a]}}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: gold, namespace: metallb-system}
spec:
  addresses: [198.51.100.32/30]
  serviceAllocation: {namespaceSelectors: [{matchLabels: {tier: gold}}]}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: databases, namespace: metallb-system}
spec:
  addresses: [198.51.100.48/30]
  serviceAllocation: {serviceSelectors: [{matchExpressions: [{key: app, operator: In, values: [db]}]}]}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: aaa-open, namespace: metallb-system}
spec: {addresses: [198.51.100.64/28]}
";

fn lb(ns: &str, name: &str, meta_extra: &str, spec_extra: &str) -> Service {
    service(&format!(
        "metadata: {{name: {name}, namespace: {ns}{meta_extra}}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]{spec_extra}}}\n"
    ))
}

#[test]
fn service_allocation_decides_the_pool_by_priority_namespace_and_labels() {
    require_kube!();
    let lab = KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        let client = lab.prepared(&["metallb-system"]).await;
        namespace(&client, "team-a", &[]).await;
        namespace(&client, "team-b", &[("tier", "gold")]).await;
        namespace(&client, "team-c", &[]).await;
        create_all(&client, &pools(SELECTION_POOLS)).await;
        let _c = controller(&lab, &[], "controller.log");
        let t = Instant::now();
        // team-a's pools hold 4 + 4: the fifth Service spills from priority 10 into priority 20
        // (whose name sorts first, so name order alone would fill it first).
        let mut made = Vec::new();
        for i in 0..5 {
            made.push(lb("team-a", &format!("a{i}"), "", ""));
        }
        made.push(lb("team-b", "web", "", ""));
        made.push(lb("team-c", "db", ", labels: {app: db}", ""));
        made.push(lb("team-c", "web", "", ""));
        // Asking for a pool by name still needs its namespaces to admit the Service.
        made.push(lb("team-c", "wants-first", ", annotations: {metallb.io/address-pool: zz-first}", ""));
        create_all(&client, &made).await;
        let now = settles(
            &client,
            &lab,
            "controller.log",
            &[("team-b/web", "gold"), ("team-c/db", "databases"), ("team-c/web", "aaa-open")],
        )
        .await;
        let a_pools: Vec<&str> = (0..5).filter_map(|i| now.get(&format!("team-a/a{i}")).map(|(_, p)| p.as_str())).collect();
        let r = eventually("team-a's Services", || async {
            let now = held(&client).await;
            let mut per_pool = BTreeMap::new();
            for i in 0..5 {
                let p = now.get(&format!("team-a/a{i}")).map(|(_, p)| p.clone()).unwrap_or_default();
                *per_pool.entry(p).or_insert(0) += 1;
            }
            let want = BTreeMap::from([("aa-second".to_string(), 1), ("zz-first".to_string(), 4)]);
            if per_pool == want { Ok(()) } else { Err(format!("{per_pool:?}")) }
        })
        .await;
        assert!(r.is_ok(), "{r:?} (first look {a_pools:?})\n{}", lab.log("controller.log"));
        let notes = refused(&client, "team-c", "wants-first").await;
        assert!(notes.iter().any(|n| n.contains("zz-first")), "{notes:?}");
        assert!(held(&client).await["team-c/wants-first"].0.is_empty());
        println!("5 team-a Services: 4 from priority 10, 1 from priority 20; gold namespace, db label and the rest each from their pool ({:?})", t.elapsed());

        // A namespace labelled later is admitted to the gold pool: its next Service lands there.
        let patch = Patch::Merge(serde_json::json!({"metadata": {"labels": {"tier": "gold"}}}));
        Api::<Namespace>::all(client.clone()).patch("team-c", &PatchParams::default(), &patch).await.expect("labelled");
        create_all(&client, &[lb("team-c", "late", "", "")]).await;
        settles(&client, &lab, "controller.log", &[("team-c/late", "gold")]).await;
        // ... and the Services it already had keep their addresses.
        let after = held(&client).await;
        assert_eq!(after["team-c/web"], now["team-c/web"]);
        assert_eq!(after["team-c/db"], now["team-c/db"]);
    });
}

#[test]
fn only_services_of_the_controllers_class_get_an_address() {
    require_kube!();
    let lab = KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        let client = lab.prepared(&["metallb-system", "shop"]).await;
        let yaml = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: lan, namespace: metallb-system}\nspec: {addresses: [203.0.113.0/28]}\n\
                    ---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: classed, namespace: metallb-system}\nspec: {addresses: [203.0.113.16/28], autoAssign: false}\n";
        create_all(&client, &pools(yaml)).await;
        create_all(
            &client,
            &[
                lb("shop", "ours", ", annotations: {metallb.io/address-pool: classed}", ", loadBalancerClass: example.com/ferrolb"),
                lb("shop", "theirs", "", ", loadBalancerClass: example.com/other"),
                lb("shop", "classless", "", ""),
            ],
        )
        .await;
        let classed = controller(&lab, &["--lb-class", "example.com/ferrolb"], "classed.log");
        let first = settles(&client, &lab, "classed.log", &[("shop/ours", "classed")]).await;
        // Give it time to have touched the others, had it wanted to.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = held(&client).await;
        assert!(now["shop/theirs"].0.is_empty() && now["shop/classless"].0.is_empty(), "{now:#?}");
        assert!(events(&client, "shop", "theirs", "AllocationFailed").await.is_empty());
        drop(classed);

        // Without --lb-class: only the class-less Service is served; the classed ones are left as
        // they are (another controller's business), not cleared. Each class's controller counts
        // only its own Services, so the classed one's pool is kept out of automatic use.
        let _plain = controller(&lab, &[], "plain.log");
        settles(&client, &lab, "plain.log", &[("shop/classless", "lan")]).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = held(&client).await;
        assert!(now["shop/theirs"].0.is_empty(), "{now:#?}");
        assert_eq!(now["shop/ours"], first["shop/ours"]);
        println!("--lb-class example.com/ferrolb served only its class; without it only the class-less Service");
    });
}

#[test]
fn local_traffic_services_share_an_ip_only_with_the_same_selector() {
    require_kube!();
    let lab = KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        let client = lab.prepared(&["metallb-system", "dns"]).await;
        let yaml = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: lan, namespace: metallb-system}\nspec: {addresses: [203.0.113.0/29]}\n";
        create_all(&client, &pools(yaml)).await;
        let shared = |name: &str, policy: &str, app: &str, port: &str| {
            service(&format!(
                "metadata: {{name: {name}, namespace: dns, annotations: {{metallb.io/allow-shared-ip: k}}}}\n\
                 spec: {{type: LoadBalancer, externalTrafficPolicy: {policy}, selector: {{app: {app}}}, ports: [{port}]}}\n"
            ))
        };
        let _c = controller(&lab, &[], "controller.log");
        create_all(&client, &[shared("tcp", "Local", "dns", "{port: 53, protocol: TCP}")]).await;
        let first = settles(&client, &lab, "controller.log", &[("dns/tcp", "lan")]).await;
        let ip = first["dns/tcp"].0.clone();
        create_all(
            &client,
            &[
                shared("udp", "Local", "dns", "{port: 53, protocol: UDP}"),
                shared("other-pods", "Local", "other", "{port: 54}"),
                shared("cluster", "Cluster", "dns", "{port: 55}"),
            ],
        )
        .await;
        let now = settles(
            &client,
            &lab,
            "controller.log",
            &[("dns/udp", "lan"), ("dns/other-pods", "lan"), ("dns/cluster", "lan")],
        )
        .await;
        assert_eq!(now["dns/udp"].0, ip, "same key, same selector, both Local: one IP");
        // Free addresses remain, so these two not sharing is the selector and policy speaking.
        assert_ne!(now["dns/other-pods"].0, ip, "Local with another selector shared");
        assert_ne!(now["dns/cluster"].0, ip, "Cluster shared with Local");
        assert_ne!(now["dns/cluster"].0, now["dns/other-pods"].0);

        // Asked for the shared IP outright, another selector is refused it.
        let ask = format!(", metallb.io/loadBalancerIPs: '{}'", ip[0]);
        let wants = service(&format!(
            "metadata: {{name: wants, namespace: dns, annotations: {{metallb.io/allow-shared-ip: k{ask}}}}}\n\
             spec: {{type: LoadBalancer, externalTrafficPolicy: Local, selector: {{app: other}}, ports: [{{port: 57}}]}}\n"
        ));
        create_all(&client, &[wants]).await;
        let notes = refused(&client, "dns", "wants").await;
        assert!(held(&client).await["dns/wants"].0.is_empty(), "{notes:?}");
        println!("Local sharing: same selector shared {}, another selector and Cluster did not ({notes:?})", ip[0]);
    });
}

#[test]
fn a_waiting_service_gets_the_address_the_moment_it_is_released() {
    require_kube!();
    let lab = KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        let client = lab.prepared(&["metallb-system", "shop"]).await;
        let yaml = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: one, namespace: metallb-system}\nspec: {addresses: [203.0.113.10/32]}\n";
        create_all(&client, &pools(yaml)).await;
        let _c = controller(&lab, &[], "controller.log");
        create_all(&client, &[lb("shop", "first", "", "")]).await;
        settles(&client, &lab, "controller.log", &[("shop/first", "one")]).await;
        create_all(&client, &[lb("shop", "second", "", "")]).await;
        let notes = refused(&client, "shop", "second").await;
        assert!(held(&client).await["shop/second"].0.is_empty(), "{notes:?}");

        let released = Instant::now();
        Api::<Service>::namespaced(client.clone(), "shop")
            .delete("first", &DeleteParams::default())
            .await
            .expect("first deleted");
        let now = settles(&client, &lab, "controller.log", &[("shop/second", "one")]).await;
        let took = released.elapsed();
        assert_eq!(now["shop/second"].0, ["203.0.113.10"]);
        // The deletion itself wakes the waiting Service: nothing else changes in the cluster.
        assert!(took < Duration::from_secs(5), "took {took:?}");
        println!("the waiting Service got 203.0.113.10 {took:?} after the holder was deleted ({notes:?})");
    });
}
