//! Migrating from MetalLB, on the cluster lab: a cluster whose metallb.io CRDs and objects exist
//! and whose LoadBalancer Services hold the IPs MetalLB gave them (status and the
//! `metallb.io/ip-allocated-from-pool` annotation as MetalLB writes them). MetalLB's images are
//! not available offline, so its speaker is played by the node that answered for the IP: the
//! address on node1's loopback, so node1's kernel answers ARP for it and kube-proxy serves it.
//! The README's procedure follows: MetalLB goes (here: that address), `helm install` ferrolb.
//! The Services keep their IPs and stay reachable; the longest stretch during which a client
//! fetching every 50 ms got no page, and the longest with no ARP answer at all, are measured.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cluster_e2e::pods_ready;
use crate::cluster_e2e_l2::{WEB_DEPLOYMENT, ingress_ip, lb_service, reachable};
use crate::cluster_helm::{self, lab_values};
use crate::cluster_lab::ClusterLab;
use crate::cluster_node::wait_until;
use crate::fabric::sh;

const METALLB_CONFIG: &str = "apiVersion: v1
kind: Namespace
metadata: {name: metallb-system}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: front, namespace: metallb-system}
spec: {addresses: [192.0.2.200-192.0.2.220]}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: front, namespace: metallb-system}
spec: {ipAddressPools: [front]}
";

const IPS: [&str; 2] = ["192.0.2.207", "192.0.2.212"];

/// A LoadBalancer Service `name` holding `ip` from `pool` as MetalLB leaves it: the IP in its
/// status and the `metallb.io/ip-allocated-from-pool` annotation.
pub fn held_by_metallb(lab: &ClusterLab, name: &str, pool: &str, ip: &str) {
    lab.apply(&lb_service(name, "Cluster", "")).unwrap();
    lab.kubectl(&["annotate", "svc", name, &format!("metallb.io/ip-allocated-from-pool={pool}")]).unwrap();
    let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}});
    lab.kubectl(&["patch", "svc", name, "--subresource=status", "--type=merge", "-p", &status.to_string()])
        .unwrap();
}

#[test]
fn services_keep_their_metallb_ips_and_the_gap_is_measured() {
    require_cluster!();
    let lab = ClusterLab::start(2);
    lab.apply(WEB_DEPLOYMENT).unwrap();
    assert!(wait_until(Duration::from_secs(60), || pods_ready(&lab, "default", "app=web", 2)).is_some());
    // What MetalLB leaves in a cluster: its CRDs (ferrolb's are the same API), its objects, and
    // Services whose status it wrote.
    let crds = crate::repo_root().join("crds");
    lab.kubectl(&["apply", "--server-side", "-f", crds.to_str().unwrap()]).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || lab.apply(METALLB_CONFIG).is_ok()).is_some(),
        "{:?}",
        lab.apply(METALLB_CONFIG)
    );
    let node1 = &lab.nodes[0].netns.0;
    for (i, ip) in IPS.iter().enumerate() {
        held_by_metallb(&lab, &format!("old{i}"), "front", ip);
        sh(&format!("ip -n {node1} addr add {ip}/32 dev lo"));
    }
    for ip in IPS {
        assert!(
            reachable(&lab, ip, Instant::now(), Duration::from_secs(20)).is_some(),
            "{ip} not served before the migration"
        );
    }

    // Per IP, two watchers: the client fetching every 50 ms (its ARP cache warm, as a busy
    // client's is), and ARP alone (what a client with a cold cache gets). Each keeps the longest
    // run of misses.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let gaps = Mutex::new(vec![Duration::ZERO; IPS.len() * 2]);
    let took = std::thread::scope(|s| {
        for (i, ip) in IPS.iter().enumerate() {
            for arp in [false, true] {
                let (lab, stop, gaps) = (&lab, &stop, &gaps);
                s.spawn(move || {
                    let slot = i * 2 + usize::from(arp);
                    let mut since_last: Option<Instant> = None;
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        let t = Instant::now();
                        let ok = if arp {
                            lab.arping_within(ip, 0.1).is_some()
                        } else {
                            lab.fetch(ip, 200).is_some_and(|p| p.contains("ferrolb e2e"))
                        };
                        match (ok, since_last) {
                            (true, _) => since_last = Some(Instant::now()),
                            (false, Some(last)) => {
                                let mut g = gaps.lock().unwrap();
                                g[slot] = g[slot].max(last.elapsed());
                            }
                            (false, None) => {}
                        }
                        std::thread::sleep(Duration::from_millis(50).saturating_sub(t.elapsed()));
                    }
                });
            }
        }
        std::thread::sleep(Duration::from_millis(500));
        // The procedure: MetalLB stops answering, ferrolb is installed.
        let t = Instant::now();
        for ip in IPS {
            sh(&format!("ip -n {node1} addr del {ip}/32 dev lo"));
        }
        let installed = cluster_helm::install(&lab, lab_values(json!({})));
        let back =
            IPS.iter().all(|ip| reachable(&lab, ip, Instant::now(), Duration::from_secs(60)).is_some());
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        (installed, back, t.elapsed())
    });
    took.0.unwrap_or_else(|e| panic!("{e}\n{}", lab.ferrolb_logs()));
    assert!(took.1, "a migrated Service never came back\n{}", lab.ferrolb_logs());
    for (i, ip) in IPS.iter().enumerate() {
        assert_eq!(ingress_ip(&lab, &format!("old{i}")).as_deref(), Some(*ip), "old{i} lost its IP");
    }
    let gaps = gaps.into_inner().unwrap();
    let fmt =
        |g: &[Duration]| g.iter().map(|g| format!("{:.2} s", g.as_secs_f64())).collect::<Vec<_>>().join(", ");
    let (http, arp): (Vec<Duration>, Vec<Duration>) =
        (gaps.iter().step_by(2).copied().collect(), gaps.iter().skip(1).step_by(2).copied().collect());
    println!(
        "migration from MetalLB: longest time without a page at a busy client {} ({}); without any ARP answer {} ({}); install to all served {:.1} s",
        fmt(&[*http.iter().max().unwrap()]),
        fmt(&http),
        fmt(&[*arp.iter().max().unwrap()]),
        fmt(&arp),
        took.2.as_secs_f64()
    );
}
