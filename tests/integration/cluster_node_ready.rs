//! A node that cannot serve stops answering although its speaker runs (MetalLB #3116), on the
//! cluster lab with a kubelet really stopped: containerd, kube-proxy and the speaker pod keep
//! running, kube-controller-manager's node lifecycle controller writes NotReady once the kubelet
//! has been silent for its grace period, and the client's ARP answer moves to the other node.
//! Started again, the node gets the IP back only after the settle time; a kubelet that keeps
//! dying moves the IP away once and back once, however often its Ready condition flaps.
//!
//! Prints, one line each: kubelet stopped → NotReady → the client answered by the other node;
//! Ready → back; the flapping's Ready windows and every move of the IP.

use std::io::BufReader;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use crate::cluster_e2e::pods_ready;
use crate::cluster_e2e_install::{POOL, assert_ferrolb_ready};
use crate::cluster_e2e_l2::{WEB_DEPLOYMENT, ingress_ip, lb_service, reachable};
use crate::cluster_helm::{self, lab_values};
use crate::cluster_lab::{ClusterLab, bin_dir};
use crate::cluster_node::wait_until;
use crate::fabric::Running;

/// The settle time the chart is given. Longer than a dying kubelet's Ready window in the API
/// (the time it runs, plus the grace period, plus up to one monitor period), so such a node
/// never wins back in between; see the flapping below.
const SETTLE_S: u64 = 20;
/// kube-controller-manager: NotReady after 10 s without a status (the default, 50 s, would
/// make every cycle here a minute), checked every second (default 5 s).
const GRACE_S: u64 = 10;
const CONTROLLER_MANAGER: [&str; 2] = ["--node-monitor-grace-period=10s", "--node-monitor-period=1s"];
/// How long a flapping kubelet runs once its node is Ready again.
const FLAP_UP: Duration = Duration::from_secs(2);
const FLAPS: usize = 3;

const L2: &str = "apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: front, namespace: metallb-system}
spec: {ipAddressPools: [front]}
";

/// The Node's Ready condition as `kubectl get --watch` reports it, each change with the moment
/// the test saw it.
struct ReadyWatch {
    seen: Arc<Mutex<Vec<(Instant, String)>>>,
    _kubectl: Running,
}

fn ready_condition(node: &serde_json::Value) -> Option<&serde_json::Value> {
    node["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Ready")
}

impl ReadyWatch {
    fn start(lab: &ClusterLab, node: &str) -> ReadyWatch {
        let mut child = Command::new(bin_dir().join("kubectl"))
            .arg("--kubeconfig")
            .arg(&lab.kubeconfig)
            .args(["get", "node", node, "--watch", "-o", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        std::thread::spawn(move || {
            let objects = serde_json::Deserializer::from_reader(BufReader::new(out));
            for object in objects.into_iter::<serde_json::Value>() {
                let Ok(object) = object else { break };
                let status =
                    ready_condition(&object).and_then(|c| c["status"].as_str()).unwrap_or("none").to_string();
                let mut seen = into.lock().unwrap();
                if seen.last().is_none_or(|(_, s)| *s != status) {
                    seen.push((Instant::now(), status));
                }
            }
        });
        ReadyWatch { seen, _kubectl: Running(child) }
    }

    fn now(&self) -> Option<String> {
        self.seen.lock().unwrap().last().map(|(_, s)| s.clone())
    }

    /// When the condition last became `ready` (True) or not, at or after `after`.
    fn became(&self, ready: bool, after: Instant) -> Option<Instant> {
        let seen = self.seen.lock().unwrap();
        seen.iter().rev().find(|(t, s)| *t >= after && (s == "True") == ready).map(|(t, _)| *t)
    }
}

/// Every ARP answer the client got, and from which nodes.
struct Arp {
    client: String,
    ip: String,
    macs: Vec<String>,
    samples: Vec<(Instant, Vec<usize>)>,
}

impl Arp {
    fn new(lab: &ClusterLab, ip: &str) -> Arp {
        let macs = (0..lab.nodes.len()).map(|i| lab.node_mac(i)).collect();
        Arp { client: lab.client_ns().to_string(), ip: ip.to_string(), macs, samples: Vec::new() }
    }

    /// One ARP request from the client, every answer within 100 ms (a probe takes ~170 ms).
    fn probe(&mut self) -> Vec<usize> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.client, "arping", "-r", "-c", "1", "-i", "eth0", "-w", "0.1"])
            .arg(&self.ip)
            .output()
            .unwrap();
        let mut nodes: Vec<usize> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let mac = l.trim().to_lowercase();
                self.macs.iter().position(|m| *m == mac).unwrap_or_else(|| panic!("{mac} is no node's"))
            })
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        assert!(nodes.len() < 2, "{} answered by {nodes:?} at once", self.ip);
        self.samples.push((Instant::now(), nodes.clone()));
        nodes
    }

    /// Probes until `done` (given the answering node); when it was.
    fn until(&mut self, limit: Duration, mut done: impl FnMut(Option<usize>) -> bool) -> Option<Instant> {
        let t = Instant::now();
        while t.elapsed() < limit {
            let answer = self.probe().first().copied();
            if done(answer) {
                return Some(Instant::now());
            }
        }
        None
    }

    /// Probes for `span`.
    fn watch(&mut self, span: Duration) {
        let t = Instant::now();
        while t.elapsed() < span {
            self.probe();
        }
    }

    /// Each change of the answering node since `from` (no answer counts as none), with when.
    fn moves(&self, from: Instant) -> Vec<(Instant, usize)> {
        let mut out: Vec<(Instant, usize)> = Vec::new();
        for (t, nodes) in self.samples.iter().filter(|(t, _)| *t >= from) {
            if let Some(&n) = nodes.first()
                && out.last().is_none_or(|(_, last)| *last != n)
            {
                out.push((*t, n));
            }
        }
        out
    }
}

/// The speaker pod on `node`: its uid and its containers' restart counts.
fn speaker_pod(lab: &ClusterLab, node: &str) -> (String, Vec<u64>) {
    let pods = lab
        .get_json(&[
            "get",
            "pods",
            "-n",
            crate::cluster_helm::NAMESPACE,
            "-l",
            "app.kubernetes.io/component=speaker",
            "--field-selector",
            &format!("spec.nodeName={node}"),
        ])
        .unwrap();
    let pod = &pods["items"][0];
    let restarts = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["restartCount"].as_u64().unwrap_or_default())
        .collect();
    (pod["metadata"]["uid"].as_str().expect("no speaker pod").to_string(), restarts)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Waits until every node has been Ready for longer than the settle time.
fn settled(lab: &ClusterLab) {
    let nodes = lab.get_json(&["get", "nodes"]).unwrap();
    let latest = nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| ready_condition(n)?["lastTransitionTime"].as_str()?.parse::<Timestamp>().ok())
        .max()
        .expect("no Ready condition");
    let since = Timestamp::now().duration_since(latest).as_secs_f64();
    let left = SETTLE_S as f64 + 1.0 - since;
    if left > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(left));
    }
}

#[test]
fn a_node_whose_kubelet_stops_loses_its_layer2_ip_and_a_flapping_one_gets_it_back_once() {
    require_cluster!();
    let mut lab = ClusterLab::start_with(2, &CONTROLLER_MANAGER);
    lab.apply(WEB_DEPLOYMENT).unwrap();
    assert!(wait_until(Duration::from_secs(60), || pods_ready(&lab, "default", "app=web", 2)).is_some());
    cluster_helm::install(&lab, lab_values(json!({"speaker": {"layer2ReadySettleSeconds": SETTLE_S}})))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.ferrolb_logs()));
    assert_ferrolb_ready(&lab, 1);
    assert!(wait_until(Duration::from_secs(30), || lab.apply(&format!("{POOL}---\n{L2}")).is_ok()).is_some());
    lab.apply(&lb_service("web", "Cluster", "")).unwrap();
    let ip = ingress_ip(&lab, "web").unwrap_or_else(|| panic!("no IP\n{}", lab.ferrolb_logs()));
    reachable(&lab, &ip, Instant::now(), Duration::from_secs(30))
        .unwrap_or_else(|| panic!("{ip} never reachable\n{}", lab.ferrolb_logs()));
    settled(&lab);

    let mut arp = Arp::new(&lab, &ip);
    // The owner the election prefers with both nodes settled: the one that gets the IP back.
    let mut last = None;
    let steady = arp.until(Duration::from_secs(10), |n| {
        let same = n.is_some() && n == last;
        last = n;
        same
    });
    assert!(steady.is_some(), "no steady answer for {ip}\n{}", lab.ferrolb_logs());
    let first = last.unwrap();
    let other = 1 - first;
    let (name, other_name) = (lab.nodes[first].name.clone(), lab.nodes[other].name.clone());
    let speaker = speaker_pod(&lab, &name);
    let watch = ReadyWatch::start(&lab, &name);
    assert!(wait_until(Duration::from_secs(10), || watch.now().as_deref() == Some("True")).is_some());

    // The kubelet stops; nothing else on the node does.
    let t0 = Instant::now();
    let t0_api = Timestamp::now();
    assert!(lab.nodes[first].stop_kubelet(), "{name}: no kubelet");
    let limit = Duration::from_secs(GRACE_S + 30);
    let t2 = arp.until(limit, |n| n == Some(other));
    let t1 = watch.became(false, t0);
    let (Some(t1), Some(t2)) = (t1, t2) else {
        panic!("{name}: NotReady at {t1:?}, moved at {t2:?}\n{}\n{}", lab.ferrolb_logs(), lab.diagnostics())
    };
    assert!(
        arp.samples.iter().filter(|(t, _)| *t < t1).all(|(_, n)| *n == [first]),
        "the IP left {name} before it was NotReady (or went unanswered)"
    );
    println!(
        "{name}'s kubelet stopped -> NotReady {:.1} s -> {other_name} answers the client's ARP {:.2} s later: {:.1} s in all (grace period {GRACE_S} s)",
        secs(t1 - t0),
        secs(t2.saturating_duration_since(t1)),
        secs(t2 - t0)
    );
    assert!(t2 + Duration::from_millis(300) >= t1, "moved {:?} before NotReady", t1 - t2);
    assert!(t2 - t1 < Duration::from_secs(3), "{:?} from NotReady to the move", t2 - t1);
    // A node that stays NotReady stays without the IP.
    arp.watch(Duration::from_secs(3));
    assert!(arp.samples.iter().filter(|(t, _)| *t >= t2).all(|(_, n)| *n == [other]), "{:?}", arp.moves(t2));

    // Ready again: back on `first`, the election's choice, only once it has settled.
    let restart = Instant::now();
    lab.nodes[first].start_kubelet(&bin_dir());
    let t4 = arp.until(Duration::from_secs(SETTLE_S + 30), |n| n == Some(first));
    let t3 = watch.became(true, restart);
    let (Some(t3), Some(t4)) = (t3, t4) else {
        panic!("{name}: Ready at {t3:?}, back at {t4:?}\n{}\n{}", lab.ferrolb_logs(), lab.diagnostics())
    };
    println!(
        "{name}'s kubelet started -> Ready {:.1} s -> the client's ARP back on {name} {:.1} s later (settle {SETTLE_S} s)",
        secs(t3 - restart),
        secs(t4 - t3)
    );
    // lastTransitionTime has whole seconds: the settle may end up to 1 s before the test sees it.
    assert!(t4 - t3 >= Duration::from_secs(SETTLE_S - 1), "back {:?} after Ready", t4 - t3);
    assert!(t4 - t3 < Duration::from_secs(SETTLE_S + 4), "back {:?} after Ready", t4 - t3);
    assert_eq!(arp.moves(restart).len(), 2, "the IP moved more than once: {:?}", arp.moves(restart));

    // Flapping: the kubelet dies FLAP_UP after each Ready, FLAPS times.
    let flapping = Instant::now();
    let mut ready_at = Vec::new();
    for _ in 0..FLAPS {
        let stop = Instant::now();
        lab.nodes[first].stop_kubelet();
        let down = arp.until(Duration::from_secs(GRACE_S + 30), |_| watch.became(false, stop).is_some());
        assert!(down.is_some(), "{name} never NotReady\n{}", lab.diagnostics());
        let start = Instant::now();
        lab.nodes[first].start_kubelet(&bin_dir());
        let up = arp.until(Duration::from_secs(30), |_| watch.became(true, start).is_some());
        assert!(up.is_some(), "{name} never Ready\n{}", lab.diagnostics());
        ready_at.push(watch.became(true, start).unwrap());
        arp.until(FLAP_UP, |_| false);
    }
    // After the last flap the kubelet keeps running: the IP comes back once it has settled.
    let last_ready = *ready_at.last().unwrap();
    let back = arp.until(Duration::from_secs(SETTLE_S + 30), |n| n == Some(first));
    let back = back.unwrap_or_else(|| panic!("never back on {name}\n{}", lab.ferrolb_logs()));
    let seen = watch.seen.lock().unwrap().clone();
    let notready: Vec<Instant> =
        seen.iter().filter(|(t, s)| *t >= flapping && s != "True").map(|(t, _)| *t).collect();
    // Ready in the API from each restart until the lifecycle controller's next NotReady.
    let window_s: Vec<String> = ready_at
        .iter()
        .zip(notready.iter().skip(1))
        .map(|(up, down)| format!("{:.1}", secs(*down - *up)))
        .collect();
    let moves = arp.moves(flapping);
    let shown: Vec<String> = moves
        .iter()
        .map(|(t, n)| format!("{} from +{:.1} s", lab.nodes[*n].name, secs(*t - flapping)))
        .collect();
    println!(
        "{name} flapping ({FLAPS} kubelet stops, each {} s after Ready; Ready windows in the API {} s): the client's ARP answer {}; back {:.1} s after the last Ready (settle {SETTLE_S} s)",
        secs(FLAP_UP),
        window_s.join(", "),
        shown.join(", "),
        secs(back - last_ready)
    );
    let owners: Vec<usize> = moves.iter().map(|(_, n)| *n).collect();
    assert_eq!(owners, [first, other, first], "the IP bounced with the flapping");
    assert!(
        back - last_ready >= Duration::from_secs(SETTLE_S - 1),
        "back {:?} after Ready",
        back - last_ready
    );
    assert!(moves[2].0 - moves[1].0 >= Duration::from_secs(SETTLE_S), "{:?}", moves);
    // Dead but running: the node's speaker was the same container all along.
    assert_eq!(speaker_pod(&lab, &name), speaker, "{name}'s speaker pod was replaced or restarted");
    // The shortened grace period did not make the healthy node flap on a busy machine.
    let healthy = lab.get_json(&["get", "node", &other_name]).unwrap();
    let condition = ready_condition(&healthy).unwrap();
    let since: Timestamp = condition["lastTransitionTime"].as_str().unwrap().parse().unwrap();
    assert!(condition["status"] == "True" && since < t0_api, "{other_name} flapped: {condition}");
}
