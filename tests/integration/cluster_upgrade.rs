//! An upgrade between two builds on the cluster lab, as a user runs one: an older build of this
//! repository (its images tagged with its own chart's appVersion, its chart) installed with
//! Helm, Services served over layer 2 and over BGP with graceful restart, then `helm upgrade`
//! to this build while a client in the lab fetches every Service every 50 ms and asks for every
//! layer 2 IP every 50 ms (all the answers, so two nodes answering at once shows), and the ToR's
//! next hops for every BGP prefix are sampled. Old and new speakers run side by side for the
//! whole DaemonSet rollout, old and new controllers hand the lease over.
//!
//! `scripts/bench-upgrade` builds the older builds (a `git worktree` of each commit through
//! `scripts/images`) and runs this test once per build with `FERROLB_UPGRADE_FROM` naming its
//! directory; without it the test has nothing to upgrade from, so it is ignored in the normal run
//! (CI's 90 minutes cannot hold two more image builds).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cluster_client::ClientWatch;
use crate::cluster_e2e::pods_ready;
use crate::cluster_e2e_bgp::{CONFIG, session_counters, sessions_up, show, tor_config};
use crate::cluster_e2e_install::{POOL, assert_ferrolb_ready};
use crate::cluster_e2e_l2::{WEB_DEPLOYMENT, ingress_ip, lb_service, reachable};
use crate::cluster_helm::{self, NAMESPACE, lab_values};
use crate::cluster_lab::{ClusterLab, node_ip};
use crate::cluster_node::wait_until;
use crate::fabric::kernel_next_hops;

/// The directory `scripts/bench-upgrade` made for an older build: `ferrolb.tar`,
/// `ferrolb-frr.tar`, `chart/` and `commit`.
pub fn older_build_dir() -> Option<PathBuf> {
    std::env::var_os("FERROLB_UPGRADE_FROM").map(PathBuf::from)
}

const L2_IPS: [&str; 3] = ["192.0.2.201", "192.0.2.202", "192.0.2.203"];
const BGP_IPS: [&str; 2] = ["198.51.100.11", "198.51.100.12"];

/// The older build named by `FERROLB_UPGRADE_FROM`: its chart, commit and appVersion.
struct Older {
    chart: PathBuf,
    commit: String,
    app_version: String,
    /// Its speakers keep a replaced speaker's layer 2 IPs on its node (its chart has the
    /// setting): then no layer 2 IP moves during the rollout.
    holds_restarts: bool,
}

fn older() -> Result<Older, String> {
    let dir = older_build_dir().ok_or("FERROLB_UPGRADE_FROM is not set (scripts/bench-upgrade sets it)")?;
    for f in ["ferrolb.tar", "ferrolb-frr.tar", "chart/Chart.yaml", "commit"] {
        if !dir.join(f).exists() {
            return Err(format!("no {} (scripts/bench-upgrade makes it)", dir.join(f).display()));
        }
    }
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).map_err(|e| format!("{f}: {e}"));
    let chart = read("chart/Chart.yaml")?;
    let app_version = chart
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"').to_string())
        .ok_or("no appVersion in the older chart")?;
    let holds_restarts = read("chart/values.yaml")?.contains("layer2RestartHoldSeconds");
    let commit = read("commit")?.trim().to_string();
    Ok(Older { chart: dir.join("chart"), commit, app_version, holds_restarts })
}

/// Every ferrolb pod's first container image and whether the pod is Ready, by pod name.
fn ferrolb_images(lab: &ClusterLab) -> BTreeMap<String, (String, bool)> {
    let pods = lab.get_json(&["get", "pods", "-n", NAMESPACE]).unwrap_or_default();
    pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let name = p["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let image = p["spec"]["containers"][0]["image"].as_str().unwrap_or_default().to_string();
            (name, (image, crate::cluster_lab::is_ready(p)))
        })
        .collect()
}

/// The ToR's next hops for each BGP prefix, sampled until `stop`: the fewest seen and each change.
fn watch_tor(lab: &ClusterLab, stop: &AtomicBool, start: Instant) -> Vec<(usize, Vec<String>)> {
    let mut out = vec![(usize::MAX, Vec::new()); BGP_IPS.len()];
    let mut last: Vec<Option<Vec<String>>> = vec![None; BGP_IPS.len()];
    while !stop.load(Ordering::SeqCst) {
        let t = Instant::now();
        for (i, ip) in BGP_IPS.iter().enumerate() {
            let hops = kernel_next_hops(lab.tor(), &format!("{ip}/32"));
            out[i].0 = out[i].0.min(hops.len());
            if last[i].as_ref() != Some(&hops) {
                out[i].1.push(format!("{:.2} s {}", start.elapsed().as_secs_f64(), hops.len()));
                last[i] = Some(hops);
            }
        }
        std::thread::sleep(Duration::from_millis(50).saturating_sub(t.elapsed()));
    }
    out
}

/// Follows ferrolb's pods (`kubectl get -w`) until the returned child is killed: one line per
/// change of a pod's state (created, Ready, not Ready, deleting, gone), with when.
fn watch_pods(
    lab: &ClusterLab,
    start: Instant,
) -> (std::process::Child, std::thread::JoinHandle<Vec<String>>) {
    let mut child = Command::new(crate::cluster_lab::bin_dir().join("kubectl"))
        .arg("--kubeconfig")
        .arg(&lab.kubeconfig)
        .args(["get", "pods", "-n", NAMESPACE, "-w", "--output-watch-events", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut last: BTreeMap<String, String> = BTreeMap::new();
        let mut lines = Vec::new();
        for event in serde_json::Deserializer::from_reader(stdout).into_iter::<serde_json::Value>() {
            let Ok(event) = event else { break };
            let pod = &event["object"];
            let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let state = match () {
                _ if event["type"] == "DELETED" => "gone",
                _ if !pod["metadata"]["deletionTimestamp"].is_null() => "deleting",
                _ if crate::cluster_lab::is_ready(pod) => "Ready",
                _ => "not Ready",
            };
            if last.get(&name).map(String::as_str) != Some(state) {
                let node = pod["spec"]["nodeName"].as_str().unwrap_or("-");
                lines.push(format!("{:.2} s {name} ({node}) {state}", start.elapsed().as_secs_f64()));
                last.insert(name, state.to_string());
            }
        }
        lines
    });
    (child, reader)
}

/// What this build's speakers said about layer 2 while the upgrade ran.
fn speaker_decisions(lab: &ClusterLab) -> String {
    let mut out = String::new();
    for (pod, (image, _)) in ferrolb_images(lab) {
        if !pod.contains("speaker") {
            continue;
        }
        let log = lab.kubectl(&["logs", "-n", NAMESPACE, &pod, "-c", "speaker"]).unwrap_or_else(|e| e);
        let said: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains("fencing") || l.contains("quorum") || l.contains("layer 2 announcements planned")
            })
            .collect();
        out.push_str(&format!("--- {pod} ({image})\n{}\n", said.join("\n")));
    }
    out
}

/// The older build installed with Helm, serving three layer 2 and two BGP Services (graceful
/// restart on the peer) on three nodes, so fencing is on.
fn older_lab(older: &Older) -> (ClusterLab, serde_json::Value, Vec<(String, &'static str)>) {
    let lab = ClusterLab::start(3);
    lab.tor().configure(&tor_config(lab.nodes.len()));
    lab.apply(WEB_DEPLOYMENT).unwrap();
    assert!(wait_until(Duration::from_secs(60), || pods_ready(&lab, "default", "app=web", 2)).is_some());
    let values = lab_values(json!({"frr": {"enabled": true}}));
    cluster_helm::install_chart(&lab, &older.chart, values.clone())
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.ferrolb_logs()));
    assert_ferrolb_ready(&lab, 3);
    let config = format!("{POOL}---\n{CONFIG}");
    assert!(
        wait_until(Duration::from_secs(30), || lab.apply(&config).is_ok()).is_some(),
        "{:?}",
        lab.apply(&config)
    );
    let named = |prefix: &str, ips: &[&'static str]| -> Vec<(String, &'static str)> {
        ips.iter().enumerate().map(|(i, ip)| (format!("{prefix}-{i}"), *ip)).collect()
    };
    let services = [named("l2", &L2_IPS), named("bgp", &BGP_IPS)].concat();
    for (name, ip) in &services {
        lab.apply(&lb_service(name, "Cluster", &format!(", loadBalancerIP: {ip}"))).unwrap();
    }
    for (name, ip) in &services {
        assert_eq!(ingress_ip(&lab, name).as_deref(), Some(*ip), "{name}\n{}", lab.ferrolb_logs());
        assert!(reachable(&lab, ip, Instant::now(), Duration::from_secs(60)).is_some(), "{ip} not served");
    }
    let all: Vec<String> = (0..lab.nodes.len()).map(node_ip).collect();
    let whole = wait_until(Duration::from_secs(60), || {
        sessions_up(&lab) && BGP_IPS.iter().all(|ip| kernel_next_hops(lab.tor(), &format!("{ip}/32")) == all)
    });
    assert!(whole.is_some(), "BGP not whole before the upgrade:\n{}", show(&lab, "show bgp ipv4 unicast"));
    (lab, values, services)
}

#[test]
#[ignore = "needs an older build's images and chart: scripts/bench-upgrade"]
fn an_upgrade_from_an_older_build_loses_no_request_and_moves_no_ip() {
    require_cluster!(images: true);
    let older = older().unwrap_or_else(|e| panic!("{e}"));
    let (lab, values, services) = older_lab(&older);
    let label = format!("upgrade from {} ({})", older.commit, older.app_version);
    let images = ferrolb_images(&lab);
    assert!(images.values().all(|(image, _)| image.ends_with(&older.app_version)), "{images:?}");
    let sessions_before = session_counters(&lab);
    let every_ip: Vec<&str> = services.iter().map(|(_, ip)| *ip).collect();
    let watch = ClientWatch::start(&lab, &L2_IPS, &every_ip);
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let (mut pods_watch, pod_timeline) = watch_pods(&lab, start);
    let (upgraded, rolled, tor) = std::thread::scope(|s| {
        let tor = s.spawn(|| watch_tor(&lab, &stop, start));
        std::thread::sleep(Duration::from_secs(2));
        let upgraded = cluster_helm::upgrade(&lab, values.clone()).map(|_| start.elapsed());
        // Every ferrolb pod on this build's images and Ready; then the last takeovers settle.
        let rolled = wait_until(Duration::from_secs(120), || {
            let now = ferrolb_images(&lab);
            now.len() >= lab.nodes.len() + 2
                && now.values().all(|(image, ready)| *ready && !image.ends_with(&older.app_version))
        })
        .map(|_| start.elapsed());
        std::thread::sleep(Duration::from_secs(5));
        stop.store(true, Ordering::SeqCst);
        (upgraded, rolled, tor.join().unwrap())
    });
    let seen = watch.stop();
    let _ = pods_watch.kill();
    let _ = pods_watch.wait();
    let timeline = pod_timeline.join().unwrap_or_default();
    let upgraded = upgraded.unwrap_or_else(|e| panic!("{e}\n{}", lab.ferrolb_logs()));
    let rolled = rolled.unwrap_or_else(|| panic!("not every pod upgraded: {:?}", ferrolb_images(&lab)));
    let sessions_after = session_counters(&lab);
    println!(
        "{label}: helm upgrade done {:.1} s, every ferrolb pod on the new build and Ready {:.1} s after the upgrade began",
        upgraded.as_secs_f64() - 2.0,
        rolled.as_secs_f64() - 2.0
    );
    let said = |changes: &[(f64, String)]| {
        changes.iter().map(|(at, who)| format!("{at:.2} s {who}")).collect::<Vec<_>>().join("; ")
    };
    for (ip, (none, two, changes)) in &seen.arp {
        println!(
            "{label}: layer 2 {ip}: moved {} times, no node answering {none:.2} s, two or more {two:.2} s; answers: {}",
            seen.moves(ip).len(),
            said(changes)
        );
    }
    for (i, ip) in BGP_IPS.iter().enumerate() {
        println!(
            "{label}: BGP {ip}/32: fewest next hops at the ToR {} of {}; changes: {}",
            tor[i].0,
            lab.nodes.len(),
            tor[i].1.join("; ")
        );
    }
    println!("{label}: pods: {}", timeline.join("; "));
    println!("{label}: the client's ARP rounds started at most {} ms late", seen.worst_lag_ms);
    println!("{label}: this build's speakers said:\n{}", speaker_decisions(&lab));
    let resets: Vec<u64> = sessions_before.iter().zip(&sessions_after).map(|(b, a)| a.1 - b.1).collect();
    println!("{label}: BGP sessions dropped per node during the upgrade: {resets:?}");
    // A layer 2 IP that moves resets the connections in flight through the node it left: the
    // client's next packets reach a node that has no state for them. Such a loss is the move's
    // (a figure), any other is the upgrade's fault.
    let at_a_move = |ip: &str, at: f64| seen.at_a_move(ip, at);
    let mut unexplained = Vec::new();
    for (ip, (requests, lost, when)) in &seen.fetches {
        let moves = when.iter().filter(|(at, _)| at_a_move(ip, *at)).count();
        let list = when.iter().map(|(at, why)| format!("{at:.2} s {why}")).collect::<Vec<_>>().join(", ");
        println!(
            "{label}: {ip}: {lost} of {requests} requests lost ({moves} in flight at a layer 2 move){}",
            if when.is_empty() { String::new() } else { format!(": {list}") }
        );
        unexplained.extend(
            when.iter()
                .filter(|(at, _)| !at_a_move(ip, *at))
                .map(|(at, why)| format!("{ip} {at:.2} s {why}")),
        );
    }
    let mut moved = Vec::new();
    for (name, ip) in &services {
        let now = ingress_ip(&lab, name);
        if now.as_deref() != Some(*ip) {
            moved.push(format!("{name}: {ip} -> {now:?}"));
        }
    }
    println!("{label}: IPs changed: {}", moved.len());
    assert!(moved.is_empty(), "{moved:?}");
    for ip in &every_ip {
        let requests = seen.fetches.get(*ip).map_or(0, |f| f.0);
        assert!(requests > 100, "{ip}: the client fetched only {requests} times");
    }
    assert!(
        unexplained.is_empty(),
        "requests lost, not at a layer 2 move: {unexplained:?}\n{}",
        lab.ferrolb_logs()
    );
    for ip in L2_IPS {
        let (none, two, changes) = seen.arp.get(ip).cloned().unwrap_or_default();
        assert!(!changes.is_empty(), "{ip}: no ARP sample");
        // An older build without the restart hold moves the IPs of its own speakers as they
        // stop; from one with it, nothing moves, so no connection is reset.
        if older.holds_restarts {
            assert!(seen.moves(ip).is_empty(), "{ip} moved: {}\n{}", said(&changes), speaker_decisions(&lab));
        }
        assert!(
            two < 0.25,
            "{ip}: two nodes answered for {two:.2} s: {}\n{}",
            said(&changes),
            speaker_decisions(&lab)
        );
        // Nobody answers while the node's speaker is replaced and its IPs held there (the
        // chart's layer2RestartHoldSeconds at most); the clients that know the node's MAC go on.
        assert!(
            none < 10.0,
            "{ip}: no node answered for {none:.2} s: {}\n{}",
            said(&changes),
            speaker_decisions(&lab)
        );
    }
}
