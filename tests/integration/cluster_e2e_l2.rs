//! Layer 2 on the cluster lab, as a user sees it: after `helm install`, the client on the switch
//! resolves a LoadBalancer Service's IP to one node and fetches the page through kube-proxy;
//! replacing that node's speaker pod keeps the IP on the node (no request lost), killing its
//! speaker or draining the node moves the IP to the other node in under a second. Prints `helm
//! install` → first Service reachable and Service create → reachable (p50/p99 of 20).

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::cluster_client::ClientWatch;
use crate::cluster_e2e::pods_ready;
use crate::cluster_e2e_install::{POOL, assert_ferrolb_ready};
use crate::cluster_helm::{self, NAMESPACE, lab_values};
use crate::cluster_lab::ClusterLab;
use crate::cluster_node::wait_until;

const L2: &str = "apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: front, namespace: metallb-system}
spec: {ipAddressPools: [front]}
";

/// Two web servers, spread over the nodes while both take pods.
pub const WEB_DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: web}}}
      containers:
      - name: web
        image: localhost/ferrolb-web:e2e
        imagePullPolicy: Never
        # httpd as pid 1 would ignore SIGTERM and hold its endpoint (serving while terminating)
        # for the whole grace period.
        command: [/bin/busybox, sh, -c, \"trap 'exit 0' TERM; /bin/busybox httpd -f -p 80 -h /www & wait\"]
        ports: [{containerPort: 80}]
        readinessProbe: {tcpSocket: {port: 80}, periodSeconds: 1}
";

pub fn lb_service(name: &str, policy: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
         spec: {{type: LoadBalancer, externalTrafficPolicy: {policy}, selector: {{app: web}}, ports: [{{port: 80}}]{extra_spec}}}\n"
    )
}

/// The Service's first ingress IP, once it has one (10 s at most).
pub fn ingress_ip(lab: &ClusterLab, name: &str) -> Option<String> {
    let mut ip = None;
    wait_until(Duration::from_secs(10), || {
        ip = lab
            .get_json(&["get", "svc", name])
            .ok()
            .and_then(|v| v["status"]["loadBalancer"]["ingress"][0]["ip"].as_str().map(str::to_string));
        ip.is_some()
    });
    ip
}

/// Polls the client until `ip` serves the page; how long that took from `since`.
pub fn reachable(lab: &ClusterLab, ip: &str, since: Instant, limit: Duration) -> Option<Duration> {
    while since.elapsed() < limit {
        if lab.fetch(ip, 300).is_some_and(|p| p.contains("ferrolb e2e")) {
            return Some(since.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Which node's MAC answers ARP for `ip` at the client (short waits, for timing).
fn answering_node(lab: &ClusterLab, macs: &[String], ip: &str) -> Option<usize> {
    let mac = lab.arping_within(ip, 0.1)?;
    macs.iter().position(|m| *m == mac)
}

/// Waits until a node other than `from` answers for `ip`; how long from `since`.
fn moved_away(lab: &ClusterLab, macs: &[String], ip: &str, from: usize, since: Instant) -> Option<Duration> {
    while since.elapsed() < Duration::from_secs(10) {
        if answering_node(lab, macs, ip).is_some_and(|n| n != from) {
            return Some(since.elapsed());
        }
    }
    None
}

/// The name of the speaker pod on `node` (the newest, if two).
fn speaker_pod(lab: &ClusterLab, node: &str) -> String {
    let selector = format!("spec.nodeName={node}");
    let args = ["get", "pods", "-n", NAMESPACE, "-l", SPEAKERS, "--field-selector", &selector];
    let pods = lab.get_json(&args).unwrap_or_default();
    let items = pods["items"].as_array().cloned().unwrap_or_default();
    let newest = items.iter().max_by_key(|p| p["metadata"]["creationTimestamp"].as_str().map(str::to_string));
    newest.and_then(|p| p["metadata"]["name"].as_str()).unwrap_or_default().to_string()
}

const SPEAKERS: &str = "app.kubernetes.io/component=speaker";

fn speaker_pods_ready(lab: &ClusterLab, count: usize) -> bool {
    pods_ready(lab, NAMESPACE, SPEAKERS, count)
}

/// The pid of the speaker process in node `i`'s network namespace (host network).
fn speaker_pid(lab: &ClusterLab, i: usize) -> Option<u32> {
    let out = Command::new("ip").args(["netns", "pids", &lab.nodes[i].netns.0]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse::<u32>().ok()).find(
        |pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.first().is_some_and(|a| a.ends_with(b"ferrolb")) && args.get(1) == Some(&&b"speaker"[..])
        },
    )
}

#[test]
fn layer2_answers_from_one_node_and_moves_in_under_a_second() {
    require_cluster!();
    let lab = ClusterLab::start(2);
    lab.apply(WEB_DEPLOYMENT).unwrap();
    assert!(wait_until(Duration::from_secs(60), || pods_ready(&lab, "default", "app=web", 2)).is_some());
    let installed = Instant::now();
    cluster_helm::install(&lab, lab_values(json!({})))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.ferrolb_logs()));
    assert_ferrolb_ready(&lab, 1);
    assert!(wait_until(Duration::from_secs(30), || lab.apply(&format!("{POOL}---\n{L2}")).is_ok()).is_some());
    lab.apply(&lb_service("web", "Local", "")).unwrap();
    let ip = ingress_ip(&lab, "web").unwrap_or_else(|| panic!("no IP\n{}", lab.ferrolb_logs()));
    let first = reachable(&lab, &ip, installed, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("{ip} never reachable\n{}", lab.ferrolb_logs()));
    println!("helm install -> first Service reachable (layer 2): {:.2} s", first.as_secs_f64());

    let macs: Vec<String> = (0..lab.nodes.len()).map(|i| lab.node_mac(i)).collect();
    let owner = answering_node(&lab, &macs, &ip)
        .or_else(|| answering_node(&lab, &macs, &ip))
        .expect("no node answers ARP");
    let node = lab.nodes[owner].name.clone();

    // The owner's speaker pod is replaced (deleted; the DaemonSet starts another on the node):
    // the IP stays on the node, nobody else answers, and the client's fetches (its neighbour
    // cache knows the node's MAC) go on through the node's kube-proxy.
    let pod = speaker_pod(&lab, &node);
    let client = ClientWatch::start(&lab, &[&ip], &[&ip]);
    std::thread::sleep(Duration::from_secs(1));
    let t = Instant::now();
    lab.kubectl(&["delete", "pod", "-n", NAMESPACE, &pod, "--wait=false"]).unwrap();
    let replaced = wait_until(Duration::from_secs(60), || {
        speaker_pods_ready(&lab, 2)
            && speaker_pod(&lab, &node) != pod
            && answering_node(&lab, &macs, &ip) == Some(owner)
    })
    .unwrap_or_else(|| {
        panic!("{node}'s speaker not replaced, or {ip} not answered again\n{}", lab.ferrolb_logs())
    });
    std::thread::sleep(Duration::from_secs(1));
    let seen = client.stop();
    let (requests, lost, when) = seen.fetches.get(&ip).cloned().unwrap_or_default();
    let (none, two, changes) = seen.arp.get(&ip).cloned().unwrap_or_default();
    let answers: Vec<String> = changes.iter().map(|(at, who)| format!("{at:.2} s {who}")).collect();
    println!(
        "layer 2: {node}'s speaker pod replaced -> answered by its successor {:.2} s after the delete; \
         no node answering {none:.2} s, another node {} times; {lost} of {requests} requests lost; answers: {}",
        replaced.as_secs_f64(),
        seen.moves(&ip).len(),
        answers.join("; ")
    );
    assert!(seen.moves(&ip).is_empty(), "{ip} moved: {answers:?}\n{}", lab.ferrolb_logs());
    assert_eq!(two, 0.0, "two nodes answered: {answers:?}");
    assert!(requests > 20, "the client fetched only {requests} times");
    assert_eq!(lost, 0, "requests lost while the speaker was replaced: {when:?}\n{}", lab.ferrolb_logs());
    assert!(t.elapsed() < Duration::from_secs(60));

    // The owner's speaker dies (killed; the kubelet restarts it in the same pod): a failure, not
    // a replacement, so the other node takes over at once.
    let pid = speaker_pid(&lab, owner).unwrap_or_else(|| panic!("no speaker process on {node}"));
    let t = Instant::now();
    let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    let moved = moved_away(&lab, &macs, &ip, owner, t)
        .unwrap_or_else(|| panic!("{ip} stayed on {node}\n{}", lab.ferrolb_logs()));
    println!(
        "layer 2: {node}'s speaker killed -> {ip} answered by another node in {:.3} s",
        moved.as_secs_f64()
    );
    assert!(moved < Duration::from_secs(1), "took {moved:?}");
    assert!(
        reachable(&lab, &ip, Instant::now(), Duration::from_secs(10)).is_some(),
        "page gone after the move"
    );

    // Drain whichever node answers now: its web pod is evicted, so (Local) the other takes over
    // once that pod stops serving (timed from the eviction, after the cordon).
    assert!(wait_until(Duration::from_secs(60), || speaker_pods_ready(&lab, 2)).is_some());
    std::thread::sleep(Duration::from_secs(2));
    let owner = answering_node(&lab, &macs, &ip)
        .or_else(|| answering_node(&lab, &macs, &ip))
        .expect("no node answers ARP");
    let node = lab.nodes[owner].name.clone();
    lab.kubectl(&["cordon", &node]).unwrap();
    let pods = lab
        .get_json(&["get", "pods", "-l", "app=web", "--field-selector", &format!("spec.nodeName={node}")])
        .unwrap();
    let evicted: Vec<String> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(!evicted.is_empty(), "no web pod on {node}");
    let t = Instant::now();
    for pod in &evicted {
        lab.evict("default", pod).unwrap_or_else(|e| panic!("evict {pod}: {e}"));
    }
    let moved = moved_away(&lab, &macs, &ip, owner, t)
        .unwrap_or_else(|| panic!("{ip} stayed on drained {node}\n{}", lab.ferrolb_logs()));
    println!(
        "layer 2: drain {node} (cordon, evict) -> {ip} answered by another node in {:.3} s",
        moved.as_secs_f64()
    );
    assert!(moved < Duration::from_secs(1), "took {moved:?}");
    lab.kubectl(&["drain", &node, "--ignore-daemonsets", "--force", "--timeout=60s"])
        .unwrap_or_else(|e| panic!("drain {node}: {e}"));
    assert!(
        reachable(&lab, &ip, Instant::now(), Duration::from_secs(10)).is_some(),
        "page gone after the drain"
    );
    lab.kubectl(&["uncordon", &node]).unwrap();

    create_to_reachable(&lab, "layer 2", |_| String::new());
}

/// Service create -> page at the client, 20 Services one after the other (`extra_spec` for
/// each one's spec), each deleted once measured; prints p50/p99.
pub fn create_to_reachable(lab: &ClusterLab, mode: &str, extra_spec: impl Fn(usize) -> String) {
    let mut times = Vec::new();
    for i in 0..20 {
        let name = format!("lat{i}");
        let t = Instant::now();
        lab.apply(&lb_service(&name, "Cluster", &extra_spec(i))).unwrap();
        let ip = ingress_ip(lab, &name).expect("no IP");
        times.push(
            reachable(lab, &ip, t, Duration::from_secs(20))
                .unwrap_or_else(|| panic!("{name} {ip} unreachable")),
        );
        lab.kubectl(&["delete", "svc", &name]).unwrap();
    }
    times.sort();
    println!(
        "{mode}: Service create -> reachable at the client: p50 {:.3} s, p99 {:.3} s (n = {})",
        percentile(&times, 0.5).as_secs_f64(),
        percentile(&times, 0.99).as_secs_f64(),
        times.len()
    );
}
