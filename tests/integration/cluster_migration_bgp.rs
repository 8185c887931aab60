//! The BGP side of migrating from MetalLB, on the cluster lab. MetalLB's images are not
//! available offline, so each node's MetalLB speaker is played by Debian's FRR run in the node's
//! network namespace with the configuration MetalLB's FRR mode renders for the cluster's BGPPeer
//! and BGPAdvertisement (router, neighbour session, the `-in`/`-out` route-maps over the
//! `-allowed-ipv4/6` prefix-lists, one `network` per Service IP). The ToR (real FRR) learns every
//! Service /32 from both nodes (ECMP). Then the README's procedure: MetalLB's speakers go (their
//! FRR daemons get SIGTERM, as a deleted pod's FRR container's do), `helm install` ferrolb with
//! FRR. The ToR's kernel table is sampled every 50 ms or less and a client behind the ToR fetches
//! every 50 ms: how long each prefix had no route, how long until both nodes are next hops again,
//! and the longest stretch without a page; without and with graceful restart.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cluster_e2e::pods_ready;
use crate::cluster_e2e_bgp::{sessions_up, show, tor_config};
use crate::cluster_e2e_l2::{WEB_DEPLOYMENT, ingress_ip, reachable};
use crate::cluster_helm::{self, lab_values};
use crate::cluster_lab::{ClusterLab, TOR_IP, node_ip};
use crate::cluster_node::wait_until;
use crate::fabric::{kernel_next_hops, sh};
use crate::frr_lab::Frr;

const IPS: [&str; 2] = ["198.51.100.10", "198.51.100.20"];

/// MetalLB's objects as a BGP user has them; the BGPPeer's enableGracefulRestart is fixed at
/// creation (MetalLB's CRD rejects a change), so it is what the cluster had all along.
fn metallb_config(graceful: bool) -> String {
    format!(
        "apiVersion: v1
kind: Namespace
metadata: {{name: metallb-system}}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: routed, namespace: metallb-system}}
spec: {{addresses: [198.51.100.0/24]}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: tor, namespace: metallb-system}}
spec: {{myASN: 64512, peerASN: 64500, peerAddress: {TOR_IP}, holdTime: 9s, keepaliveTime: 3s, connectTime: 1s, enableGracefulRestart: {graceful}}}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: routed, namespace: metallb-system}}
spec: {{ipAddressPools: [routed]}}
"
    )
}

/// What MetalLB's FRR mode renders on a node for the objects above with IPS assigned (its
/// frr.tmpl and neighbour templates; the log lines and hostname left to the lab harness).
fn metallb_frr(graceful: bool) -> String {
    let p = TOR_IP;
    let mut c =
        format!("ip nht resolve-via-default\nipv6 nht resolve-via-default\nroute-map {p}-in deny 20\n");
    for (i, ip) in IPS.iter().enumerate() {
        c.push_str(&format!("ip prefix-list {p}-allowed-ipv4 seq {} permit {ip}/32\n", i + 1));
    }
    c.push_str(&format!(
        "ipv6 prefix-list {p}-allowed-ipv6 seq 1 deny any\n\
         route-map {p}-out permit 1\n match ip address prefix-list {p}-allowed-ipv4\nexit\n\
         route-map {p}-out permit 2\n match ipv6 address prefix-list {p}-allowed-ipv6\nexit\n\
         router bgp 64512\n no bgp ebgp-requires-policy\n no bgp network import-check\n \
         no bgp default ipv4-unicast\n bgp graceful-restart preserve-fw-state\n \
         neighbor {p} remote-as 64500\n neighbor {p} port 179\n neighbor {p} timers 3 9\n \
         neighbor {p} timers connect 1\n"
    ));
    if graceful {
        c.push_str(&format!(" neighbor {p} graceful-restart\n"));
    }
    c.push_str(&format!(
        " address-family ipv4 unicast\n  neighbor {p} activate\n  neighbor {p} route-map {p}-in in\n  \
         neighbor {p} route-map {p}-out out\n exit-address-family\n address-family ipv4 unicast\n"
    ));
    for ip in IPS {
        c.push_str(&format!("  network {ip}/32\n"));
    }
    c.push_str(" exit-address-family\nexit\n");
    c
}

/// How a MetalLB speaker's FRR goes away.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// The pod deleted: its FRR container stops the daemons with SIGTERM.
    Term,
    /// The pod lost abruptly (`--grace-period=0 --force`, a dead node): no daemon says anything.
    Kill,
}

/// Signals every daemon of every stand-in at once (a DaemonSet deleted: its pods go together;
/// bgpd first, as frrinit.sh stop orders them) and waits until they are gone; their pid files go
/// too, so the harness's drop signals nothing reused.
fn stop_speakers(speakers: &[Frr], how: Stop) {
    let signal = match how {
        Stop::Term => "TERM",
        Stop::Kill => "KILL",
    };
    let mut pids = Vec::new();
    for daemon in ["bgpd", "staticd", "bfdd", "zebra", "mgmtd"] {
        for frr in speakers {
            let file = frr.dir().join(format!("run/{daemon}.pid"));
            if let Ok(pid) = std::fs::read_to_string(&file) {
                sh(&format!("kill -{signal} {} 2>/dev/null || true", pid.trim()));
                pids.push((pid.trim().to_string(), file));
            }
        }
    }
    let gone = wait_until(Duration::from_secs(10), || {
        pids.iter().all(|(pid, _)| !std::path::Path::new(&format!("/proc/{pid}")).exists())
    });
    assert!(gone.is_some(), "MetalLB's stand-in FRR did not stop");
    for (_, file) in pids {
        let _ = std::fs::remove_file(file);
    }
}

/// Per prefix, what the ToR's kernel table showed from the stop on.
#[derive(Default, Clone)]
struct RouteWatch {
    longest_missing: Duration,
    fewest_hops: usize,
    /// When the ECMP group was last seen incomplete (from the stop).
    last_incomplete: Option<Duration>,
    changes: Vec<String>,
}

struct Figures {
    routes: Vec<RouteWatch>,
    pages: Vec<Duration>,
    install: Duration,
    /// From the stop until both sessions are ferrolb's and no path at the ToR is stale.
    fresh: Option<Duration>,
    /// From the stop until every path at the ToR was marked stale (kept by graceful restart).
    all_stale: Option<Duration>,
}

/// Every Service prefix at the ToR has a path from every node, all of them `stale` or none.
fn paths_all(lab: &ClusterLab, stale: bool) -> bool {
    IPS.iter().all(|ip| {
        let v = lab.tor().json(&format!("show bgp ipv4 unicast {ip}/32 json"));
        let paths = v["paths"].as_array().cloned().unwrap_or_default();
        paths.len() == lab.nodes.len() && paths.iter().all(|p| (p["stale"] == true) == stale)
    })
}

/// A cluster migrated from MetalLB-style speakers (stopped `how`) to ferrolb, and the figures.
fn migrate(graceful: bool, how: Stop) -> (ClusterLab, Figures) {
    let lab = ClusterLab::start(2);
    lab.tor().configure(&tor_config(lab.nodes.len()));
    lab.apply(WEB_DEPLOYMENT).unwrap();
    assert!(wait_until(Duration::from_secs(60), || pods_ready(&lab, "default", "app=web", 2)).is_some());
    let crds = crate::repo_root().join("crds");
    lab.kubectl(&["apply", "--server-side", "-f", crds.to_str().unwrap()]).unwrap();
    let config = metallb_config(graceful);
    assert!(
        wait_until(Duration::from_secs(20), || lab.apply(&config).is_ok()).is_some(),
        "{:?}",
        lab.apply(&config)
    );
    for (i, ip) in IPS.iter().enumerate() {
        crate::cluster_migration::held_by_metallb(&lab, &format!("old{i}"), "routed", ip);
    }
    let speakers: Vec<Frr> = lab
        .nodes
        .iter()
        .map(|n| {
            let frr = Frr::start_in(&format!("metallb-{}", n.name), &n.netns.0).unwrap();
            frr.configure(&metallb_frr(graceful));
            frr
        })
        .collect();
    let all: Vec<String> = (0..lab.nodes.len()).map(node_ip).collect();
    for ip in IPS {
        let prefix = format!("{ip}/32");
        let ecmp = wait_until(Duration::from_secs(30), || kernel_next_hops(lab.tor(), &prefix) == all);
        assert!(
            ecmp.is_some(),
            "{prefix} not learnt from every MetalLB speaker: {:?}\n{}",
            kernel_next_hops(lab.tor(), &prefix),
            show(&lab, "show bgp ipv4 unicast")
        );
        assert!(reachable(&lab, ip, Instant::now(), Duration::from_secs(20)).is_some(), "{ip} not served");
    }
    let neighbors = lab.tor().json("show bgp neighbors json");
    for i in 0..lab.nodes.len() {
        let mode = &neighbors[node_ip(i)]["gracefulRestartInfo"]["remoteGrMode"];
        assert_eq!(mode == "Restart", graceful, "MetalLB's speaker offered graceful restart: {mode}");
    }

    let stop = AtomicBool::new(false);
    let routes = Mutex::new(vec![RouteWatch { fewest_hops: usize::MAX, ..Default::default() }; IPS.len()]);
    let pages = Mutex::new(vec![Duration::ZERO; IPS.len()]);
    let stopped: Mutex<Option<Instant>> = Mutex::new(None);
    let (installed, back, fresh, install, all_stale) = std::thread::scope(|s| {
        for (i, ip) in IPS.iter().enumerate() {
            let (lab, stop, pages) = (&lab, &stop, &pages);
            s.spawn(move || {
                let mut last_page = Instant::now();
                while !stop.load(Ordering::SeqCst) {
                    let t = Instant::now();
                    if lab.fetch(ip, 200).is_some_and(|p| p.contains("ferrolb e2e")) {
                        last_page = Instant::now();
                    } else {
                        let mut g = pages.lock().unwrap();
                        g[i] = g[i].max(last_page.elapsed());
                    }
                    std::thread::sleep(Duration::from_millis(50).saturating_sub(t.elapsed()));
                }
            });
        }
        {
            let (lab, stop, routes, stopped, all) = (&lab, &stop, &routes, &stopped, &all);
            s.spawn(move || {
                let mut missing_since: Vec<Option<Instant>> = vec![None; IPS.len()];
                let mut last: Vec<Option<Vec<String>>> = vec![None; IPS.len()];
                while !stop.load(Ordering::SeqCst) {
                    let t = Instant::now();
                    let since = *stopped.lock().unwrap();
                    for (i, ip) in IPS.iter().enumerate() {
                        let hops = kernel_next_hops(lab.tor(), &format!("{ip}/32"));
                        let mut w = routes.lock().unwrap();
                        let w = &mut w[i];
                        if hops.is_empty() {
                            let from = *missing_since[i].get_or_insert_with(Instant::now);
                            w.longest_missing = w.longest_missing.max(from.elapsed());
                        } else {
                            missing_since[i] = None;
                        }
                        if let Some(since) = since {
                            w.fewest_hops = w.fewest_hops.min(hops.len());
                            if hops != *all {
                                w.last_incomplete = Some(since.elapsed());
                            }
                            if last[i].as_ref() != Some(&hops) {
                                w.changes.push(format!("{:.2} s {hops:?}", since.elapsed().as_secs_f64()));
                            }
                        }
                        last[i] = Some(hops);
                    }
                    // Two `ip route` calls take ~10 ms: the period stays under 50 ms.
                    std::thread::sleep(Duration::from_millis(40).saturating_sub(t.elapsed()));
                }
            });
        }
        std::thread::sleep(Duration::from_millis(500));
        // The procedure: MetalLB's speakers go, ferrolb (with FRR) is installed.
        let t = Instant::now();
        *stopped.lock().unwrap() = Some(t);
        stop_speakers(&speakers, how);
        // Proof the old sessions are gone (not a test that watched nothing happen): with
        // graceful restart the ToR marks their paths stale at once.
        let all_stale = if graceful {
            wait_until(Duration::from_secs(5), || paths_all(&lab, true)).map(|_| t.elapsed())
        } else {
            None
        };
        let installed = cluster_helm::install(&lab, lab_values(json!({"frr": {"enabled": true}})));
        let install = t.elapsed();
        let back = wait_until(Duration::from_secs(90), || {
            IPS.iter().all(|ip| kernel_next_hops(lab.tor(), &format!("{ip}/32")) == all)
        });
        let fresh = wait_until(Duration::from_secs(90), || sessions_up(&lab) && paths_all(&lab, false))
            .map(|_| t.elapsed());
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::SeqCst);
        (installed, back, fresh, install, all_stale)
    });
    drop(speakers);
    installed.unwrap_or_else(|e| panic!("{e}\n{}", lab.ferrolb_logs()));
    assert!(
        back.is_some(),
        "a prefix never came back from every node:\n{}\n{}",
        show(&lab, "show bgp ipv4 unicast"),
        lab.ferrolb_logs()
    );
    assert!(
        fresh.is_some(),
        "ferrolb's sessions or fresh paths never came:\n{}\n{}",
        show(&lab, "show bgp summary"),
        show(&lab, "show bgp ipv4 unicast")
    );
    for (i, ip) in IPS.iter().enumerate() {
        assert_eq!(ingress_ip(&lab, &format!("old{i}")).as_deref(), Some(*ip), "old{i} lost its IP");
        let paths = lab.tor().json(&format!("show bgp ipv4 unicast {ip}/32 json"))["paths"].clone();
        let from: BTreeMap<String, bool> = paths
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| (p["peer"]["peerId"].as_str().unwrap_or_default().to_string(), p["stale"] == true))
            .collect();
        assert_eq!(from.len(), lab.nodes.len(), "{ip} at the ToR from {from:?}");
    }
    let figures = Figures {
        routes: routes.into_inner().unwrap(),
        pages: pages.into_inner().unwrap(),
        install,
        fresh,
        all_stale,
    };
    let label = format!(
        "BGP migration from MetalLB ({}graceful restart, speakers stopped with SIG{})",
        if graceful { "" } else { "no " },
        match how {
            Stop::Term => "TERM",
            Stop::Kill => "KILL",
        }
    );
    for (i, ip) in IPS.iter().enumerate() {
        let w = &figures.routes[i];
        println!(
            "{label}: {ip}/32 without a route at the ToR for {:.2} s at most, fewest next hops {}, both nodes next hops again {} after the stop; changes: {}",
            w.longest_missing.as_secs_f64(),
            w.fewest_hops,
            w.last_incomplete
                .map_or("throughout (never fewer)".into(), |d| format!("{:.2} s", d.as_secs_f64())),
            w.changes.join("; ")
        );
        println!(
            "{label}: {ip} longest time without a page at a client fetching every 50 ms: {:.2} s",
            figures.pages[i].as_secs_f64()
        );
    }
    println!(
        "{label}: stop to every path stale at the ToR {}; to helm install done {:.1} s; to ferrolb's sessions up with no stale path {:.1} s",
        figures.all_stale.map_or("(not kept)".into(), |d| format!("{:.2} s", d.as_secs_f64())),
        figures.install.as_secs_f64(),
        figures.fresh.unwrap_or_default().as_secs_f64()
    );
    (lab, figures)
}

/// Without graceful restart, bgpd's Cease NOTIFICATION on SIGTERM makes the ToR withdraw at
/// once: every prefix is gone until ferrolb's speakers announce it.
#[test]
fn bgp_migration_without_graceful_restart_loses_the_prefixes_until_ferrolb_announces() {
    require_cluster!(images: true);
    let (_lab, f) = migrate(false, Stop::Term);
    for (i, w) in f.routes.iter().enumerate() {
        assert!(w.longest_missing > Duration::ZERO && w.fewest_hops == 0, "{} never left the ToR", IPS[i]);
    }
}

/// With graceful restart on MetalLB's BGPPeer (and so on ferrolb's, the same object) and the
/// ToR a helper, SIGTERM lets bgpd go without a NOTIFICATION: the ToR keeps both nodes' paths
/// as stale until ferrolb's sessions replace them, and no prefix or page is ever missing.
#[test]
fn bgp_migration_with_graceful_restart_keeps_every_prefix() {
    require_cluster!(images: true);
    let (_lab, f) = migrate(true, Stop::Term);
    assert!(f.all_stale.is_some(), "the ToR never held MetalLB's paths as stale: were the sessions stopped?");
    for (i, w) in f.routes.iter().enumerate() {
        assert_eq!(w.longest_missing, Duration::ZERO, "{} left the ToR: {:?}", IPS[i], w.changes);
        assert_eq!(w.fewest_hops, 2, "{}'s ECMP group shrank: {:?}", IPS[i], w.changes);
        assert!(f.pages[i] < Duration::from_millis(300), "{}: {:?} without a page", IPS[i], f.pages[i]);
    }
}

/// Without graceful restart, stopping MetalLB's speakers abruptly (`kubectl delete pod
/// --grace-period=0 --force`, no NOTIFICATION) does not help: the ToR drops the routes as soon as
/// the TCP connection closes.
#[test]
fn bgp_migration_without_graceful_restart_gains_nothing_from_an_abrupt_stop() {
    require_cluster!(images: true);
    let (_lab, f) = migrate(false, Stop::Kill);
    for (i, w) in f.routes.iter().enumerate() {
        assert!(w.longest_missing > Duration::ZERO && w.fewest_hops == 0, "{} never left the ToR", IPS[i]);
    }
}
