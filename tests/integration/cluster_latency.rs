//! Service create -> reachable, stage by stage, on the cluster lab (`scripts/bench-latency`;
//! ignored in the normal run: it needs the images and ~5 minutes). For each Service, created one
//! at a time on a quiet API server (in BGP mode beside a resident Service, then as the first of
//! its announcement class), then all at once in a burst, the wall-clock time from the create
//! request (a POST on a kept-alive API connection) to: the call returning; the IP in the status
//! (a `kubectl get -w` watch); the speaker's decision and frr-agent's Apply returning (the speakers' log lines);
//! the route in the ToR's kernel (`ip monitor route`, netlink) or the first ARP answer at the
//! client; kube-proxy's rule for the IP on every node (iptables polled every ~10 ms); the first
//! TCP handshake from the client (a connect every 10 ms, 50 ms limit). Prints p50/p99 per stage
//! and mode.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ListParams, PostParams};

use crate::cluster_e2e_bgp::{CONFIG, lab_with_frr, tor_config};
use crate::cluster_e2e_install::POOL;
use crate::cluster_e2e_l2::lb_service;
use crate::cluster_lab::{CLIENT_IP, ClusterLab, bin_dir};
use crate::cluster_node::wait_until;
use crate::fabric::Running;

const SERVICES: usize = 50;

/// Seconds since the epoch: every stage is stamped on this machine's one clock, the speakers'
/// log lines included.
fn now() -> f64 {
    Timestamp::now().duration_since(Timestamp::UNIX_EPOCH).as_secs_f64()
}

/// Creates the Services through one API connection kept alive from the first call on, so each
/// create is timed from its request: not from a `kubectl` that first starts, reads its
/// kubeconfig and discovers the API (30-50 ms on this machine, more than half of what the API
/// server and ferrolb's controller take together), none of which a user's controller or CI
/// pipeline pays per object.
struct Creator {
    rt: tokio::runtime::Runtime,
    services: Api<Service>,
}

impl Creator {
    fn new(lab: &ClusterLab) -> Creator {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let client = rt.block_on(ferrolb::k8s::client(Some(&lab.kubeconfig))).expect("the lab's kubeconfig");
        let services: Api<Service> = Api::namespaced(client, "default");
        // The connection (TCP, TLS) is made here, before anything is timed.
        rt.block_on(services.list(&ListParams::default().limit(1))).expect("the API server answers");
        Creator { rt, services }
    }

    /// Creates one LoadBalancer Service per (name, IP), one request after the other; when the
    /// first request went and when the last answer came.
    fn create(&self, services: &[(String, String)]) -> (f64, f64) {
        let objects: Vec<Service> = services.iter().map(|(name, ip)| lb_object(name, ip)).collect();
        let started = now();
        self.rt.block_on(async {
            for object in &objects {
                self.services.create(&PostParams::default(), object).await.expect("the Service is created");
            }
        });
        (started, now())
    }
}

/// The Service `lb_service` writes, as an object for the API.
fn lb_object(name: &str, ip: &str) -> Service {
    serde_saphyr::from_str(&lb_service(name, "Cluster", &format!(", loadBalancerIP: {ip}")))
        .expect("a Service")
}

/// When each key was first seen, filled by the watchers.
type FirstSeen = Arc<Mutex<BTreeMap<String, f64>>>;

fn note(seen: &FirstSeen, key: &str, at: f64) {
    seen.lock().unwrap().entry(key.to_string()).or_insert(at);
}

/// Starts `command`; a thread hands each line of its output to `on_line` as it comes, until the
/// command is killed (when the returned process is dropped).
fn watch_lines(command: &mut Command, mut on_line: impl FnMut(&str, f64) + Send + 'static) -> Running {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("watcher starts");
    let out = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            on_line(&line, now());
        }
    });
    Running(child)
}

/// Asks for `ips` (ARP, when `arp`) and connects to port 80 of each every 10 ms until each has
/// answered; prints "arp IP T" and "tcp IP T" (seconds since the epoch) the first time.
const PROBE: &str = r#"
import ipaddress, select, socket, struct, sys, time
iface, me, arp, ips = sys.argv[1], sys.argv[2], sys.argv[3] == 'arp', sys.argv[4].split(',')
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind((iface, 0))
s.setblocking(False)
mac, src = s.getsockname()[4][:6], ipaddress.IPv4Address(me).packed
want_arp = {ipaddress.IPv4Address(ip).packed: ip for ip in ips} if arp else {}
want_tcp, pending, end = set(ips), {}, time.time() + 30
while (want_arp or want_tcp) and time.time() < end:
    t = time.time()
    for target in want_arp:
        s.send(b'\xff' * 6 + mac + b'\x08\x06' + struct.pack('!HHBBH', 1, 0x0800, 6, 4, 1) + mac + src + bytes(6) + target)
    for ip in want_tcp:
        if ip not in pending:
            c = socket.socket(); c.setblocking(False)
            c.connect_ex((ip, 80)); pending[ip] = (c, time.time())
    while time.time() < t + 0.01:
        r, w, _ = select.select([s], [c for c, _ in pending.values()], [], max(0, t + 0.01 - time.time()))
        for _ in r:
            try:
                while True:
                    f = s.recv(128)
                    if len(f) >= 42 and f[12:14] == b'\x08\x06' and f[21] == 2 and f[28:32] in want_arp:
                        print('arp', want_arp.pop(f[28:32]), '%.6f' % time.time(), flush=True)
            except BlockingIOError:
                pass
        for ip, (c, since) in list(pending.items()):
            if c in w:
                if c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    print('tcp', ip, '%.6f' % time.time(), flush=True); want_tcp.discard(ip)
                c.close(); del pending[ip]
    for ip, (c, since) in list(pending.items()):
        if time.time() - since > 0.05:
            c.close(); del pending[ip]
"#;

/// One Service's stages, seconds after its create call started.
#[derive(Default, Debug)]
struct Stages(BTreeMap<&'static str, f64>);

impl Stages {
    /// The spans between stages: ferrolb's part from the IP in the status, and the BGP path.
    fn derive(&mut self) {
        for (name, from, to) in [
            ("status -> ARP answer", "IP in status", "first ARP answer"),
            ("status -> ToR FIB", "IP in status", "route in ToR FIB"),
            ("decided -> applied", "speaker decided", "FRR applied"),
            ("applied -> ToR FIB", "FRR applied", "route in ToR FIB"),
        ] {
            if let (Some(a), Some(b)) = (self.0.get(from), self.0.get(to)) {
                self.0.insert(name, b - a);
            }
        }
    }
}

/// What one run of a mode measured: per Service, its stages.
struct Run {
    mode: String,
    services: Vec<Stages>,
}

impl Run {
    fn print(&self) {
        let names = [
            "call returned",
            "controller wrote status",
            "IP in status",
            "speaker decided",
            "FRR applied",
            "route in ToR FIB",
            "first ARP answer",
            "kube-proxy rule (first node)",
            "kube-proxy rule (all nodes)",
            "first TCP handshake",
            "status -> ARP answer",
            "status -> ToR FIB",
            "decided -> applied",
            "Apply call (agent)",
            "applied -> ToR FIB",
        ];
        for name in names {
            let mut v: Vec<f64> = self.services.iter().filter_map(|s| s.0.get(name).copied()).collect();
            if v.is_empty() {
                continue;
            }
            v.sort_by(f64::total_cmp);
            let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize] * 1000.0;
            println!(
                "latency {:<14} {:<28} p50 {:>7.1} ms  p99 {:>7.1} ms  (n = {})",
                self.mode,
                name,
                p(0.5),
                p(0.99),
                v.len()
            );
        }
    }
}

/// The log of `container` in each pod of that component.
fn pod_logs(lab: &ClusterLab, component: &str, container: &str) -> Vec<String> {
    let selector = format!("app.kubernetes.io/component={component}");
    let pods = lab.get_json(&["get", "pods", "-n", "metallb-system", "-l", &selector]).unwrap_or_default();
    let names = pods["items"].as_array().into_iter().flatten().filter_map(|p| p["metadata"]["name"].as_str());
    names
        .map(|name| lab.kubectl(&["logs", "-n", "metallb-system", name, "-c", container]).unwrap_or_default())
        .collect()
}

/// Every log line of `container` in the pods of that component, with its time.
fn logs(lab: &ClusterLab, component: &str, container: &str) -> Vec<(f64, String)> {
    let logs = pod_logs(lab, component, container);
    let lines = logs.iter().flat_map(|log| log.lines());
    lines.filter_map(|l| Some((l.split_whitespace().next().and_then(epoch)?, l.to_string()))).collect()
}

/// The speakers' FRR versions, as frr-agent logs them ("FRR version read version=10.3").
fn frr_versions(lab: &ClusterLab) -> BTreeSet<String> {
    let logs = pod_logs(lab, "speaker", "frr-agent");
    let lines = logs.iter().flat_map(|log| log.lines()).filter(|l| l.contains("FRR version read"));
    lines.filter_map(|l| l.split_once("version=")?.1.split_whitespace().next().map(str::to_string)).collect()
}

/// The log lines that stamp a stage: the controller's status write ("written … Assign"), the
/// speakers' decisions and Applies: (seconds since the epoch, which stage, how long the Apply
/// call took in seconds).
fn logged_stages(lab: &ClusterLab) -> Vec<(f64, &'static str, f64)> {
    let mut out = Vec::new();
    for (at, line) in logs(lab, "controller", "controller") {
        if line.contains(" written") && line.contains("Assign") {
            out.push((at, "controller wrote status", 0.0));
        }
    }
    for (at, line) in logs(lab, "speaker", "speaker") {
        let decided = (line.contains("layer 2 announcements planned ips=") && !line.contains("ips=0 "))
            || line.contains("desired FRR configuration planned");
        let what = if decided {
            "speaker decided"
        } else if line.contains("FRR configuration applied") {
            "FRR applied"
        } else {
            continue;
        };
        let took = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("took_ms=")?.parse::<f64>().ok())
            .map_or(0.0, |ms| ms / 1000.0);
        out.push((at, what, took));
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// A log line's RFC 3339 stamp as seconds since the epoch.
fn epoch(stamp: &str) -> Option<f64> {
    Some(stamp.parse::<Timestamp>().ok()?.duration_since(Timestamp::UNIX_EPOCH).as_secs_f64())
}

/// The watchers every mode shares: IPs in the status, routes in the ToR's kernel, kube-proxy's
/// rules on each node.
struct Watch {
    status: FirstSeen,
    fib: FirstSeen,
    rules: Vec<FirstSeen>,
    _watchers: Vec<Running>,
    stop_polls: Arc<AtomicBool>,
}

impl Watch {
    fn start(lab: &ClusterLab, ips: &[String]) -> Watch {
        let status: FirstSeen = Arc::default();
        let fib: FirstSeen = Arc::default();
        let s = status.clone();
        let columns = "custom-columns=NAME:.metadata.name,IP:.status.loadBalancer.ingress[0].ip";
        let status_watch = watch_lines(
            Command::new(bin_dir().join("kubectl")).arg("--kubeconfig").arg(&lab.kubeconfig).args([
                "get",
                "svc",
                "-w",
                "--no-headers",
                "-o",
                columns,
            ]),
            move |line, at| {
                if let [_, ip] = line.split_whitespace().collect::<Vec<_>>()[..]
                    && ip != "<none>"
                {
                    note(&s, ip, at);
                }
            },
        );
        let f = fib.clone();
        let fib_watch = watch_lines(
            Command::new("ip").args(["-n", &lab.tor().ns, "monitor", "route"]),
            move |line, at| {
                if let Some(ip) = line.split_whitespace().next()
                    && !line.starts_with("Deleted")
                {
                    note(&f, ip.trim_end_matches("/32"), at);
                }
            },
        );
        let stop_polls = Arc::new(AtomicBool::new(false));
        let mut rules = Vec::new();
        for node in &lab.nodes {
            let seen: FirstSeen = Arc::default();
            let (ns, ips, stop, seen2) =
                (node.netns.0.clone(), ips.to_vec(), stop_polls.clone(), seen.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let out = Command::new("ip")
                        .args(["netns", "exec", &ns, "iptables", "-t", "nat", "-S", "KUBE-SERVICES"])
                        .output();
                    let at = now();
                    let text =
                        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
                    for ip in ips.iter().filter(|ip| text.contains(&format!("-d {ip}/32"))) {
                        note(&seen2, ip, at);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
            rules.push(seen);
        }
        Watch { status, fib, rules, _watchers: vec![status_watch, fib_watch], stop_polls }
    }

    /// Forgets what was seen of `ips` (a Service of that IP again).
    fn forget(&self, ips: &[String]) {
        for map in [&self.status, &self.fib].into_iter().chain(&self.rules) {
            let mut m = map.lock().unwrap();
            for ip in ips {
                m.remove(ip);
            }
        }
    }

    fn stages(
        &self,
        ip: &str,
        started: f64,
        returned: f64,
        probe: &BTreeMap<(String, String), f64>,
    ) -> Stages {
        let mut s = Stages::default();
        s.0.insert("call returned", returned - started);
        let get = |m: &FirstSeen| m.lock().unwrap().get(ip).copied();
        if let Some(t) = get(&self.status) {
            s.0.insert("IP in status", t - started);
        }
        if let Some(t) = get(&self.fib) {
            s.0.insert("route in ToR FIB", t - started);
        }
        let rules: Vec<Option<f64>> = self.rules.iter().map(get).collect();
        if let Some(t) = rules.iter().flatten().copied().reduce(f64::min) {
            s.0.insert("kube-proxy rule (first node)", t - started);
        }
        if let Some(t) =
            rules.iter().copied().collect::<Option<Vec<f64>>>().and_then(|v| v.into_iter().reduce(f64::max))
        {
            s.0.insert("kube-proxy rule (all nodes)", t - started);
        }
        for (kind, name) in [("arp", "first ARP answer"), ("tcp", "first TCP handshake")] {
            if let Some(t) = probe.get(&(kind.to_string(), ip.to_string())) {
                s.0.insert(name, t - started);
            }
        }
        s
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop_polls.store(true, Ordering::Relaxed);
    }
}

/// Runs the client's probe for `ips` until each answered (or 30 s); (kind, IP) -> when.
fn probe(lab: &ClusterLab, arp: bool, ips: &[String]) -> Child {
    let _ = Command::new("ip").args(["-n", lab.client_ns(), "neigh", "flush", "all"]).status();
    Command::new("ip")
        .args(["netns", "exec", lab.client_ns(), "python3", "-c", PROBE, "eth0", CLIENT_IP])
        .args([if arp { "arp" } else { "none" }, &ips.join(",")])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 in the client's namespace")
}

fn probed(child: Child) -> BTreeMap<(String, String), f64> {
    let out =
        child.wait_with_output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    out.lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [kind, ip, at] => Some(((kind.to_string(), ip.to_string()), at.parse().ok()?)),
            _ => None,
        })
        .collect()
}

/// The decision and Apply stages from the speakers' logs: the first of each kind at or after
/// each Service's start, before the next Service's.
fn add_speaker_stages(lab: &ClusterLab, starts: &[f64], services: &mut [Stages]) {
    let events = logged_stages(lab);
    for (i, s) in services.iter_mut().enumerate() {
        let (from, to) = (starts[i], starts.get(i + 1).copied().unwrap_or(f64::MAX));
        for what in ["controller wrote status", "speaker decided", "FRR applied"] {
            if let Some((at, _, took)) =
                events.iter().find(|(at, w, _)| *w == what && *at >= from && *at < to)
            {
                s.0.insert(what, at - from);
                if what == "FRR applied" {
                    s.0.insert("Apply call (agent)", *took);
                }
            }
        }
        s.derive();
    }
}

fn one_at_a_time(lab: &ClusterLab, creator: &Creator, watch: &Watch, mode: &str, ips: &[String]) -> Run {
    let mut services = Vec::new();
    let mut starts = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let name = format!("lat{i}");
        watch.forget(std::slice::from_ref(ip));
        let client = probe(lab, mode == "layer2", std::slice::from_ref(ip));
        std::thread::sleep(Duration::from_millis(200));
        let (started, returned) = creator.create(&[(name.clone(), ip.clone())]);
        let seen = probed(client);
        // kube-proxy's rules on every node, before the Service goes (3 s at most).
        wait_until(Duration::from_secs(3), || watch.rules.iter().all(|r| r.lock().unwrap().contains_key(ip)));
        services.push(watch.stages(ip, started, returned, &seen));
        starts.push(started);
        lab.kubectl(&["delete", "svc", &name]).unwrap();
        // Past kube-proxy's minSyncPeriod (1 s) after the deletion's sync: each Service comes
        // to a quiet cluster, kube-proxy included.
        std::thread::sleep(Duration::from_millis(1200));
    }
    add_speaker_stages(lab, &starts, &mut services);
    Run { mode: format!("{mode} 1-by-1"), services }
}

fn burst(lab: &ClusterLab, creator: &Creator, watch: &Watch, mode: &str, ips: &[String]) -> Run {
    watch.forget(ips);
    let client = probe(lab, mode == "layer2", ips);
    std::thread::sleep(Duration::from_millis(300));
    let services: Vec<(String, String)> =
        ips.iter().enumerate().map(|(i, ip)| (format!("burst{i}"), ip.clone())).collect();
    let (started, returned) = creator.create(&services);
    let seen = probed(client);
    wait_until(Duration::from_secs(5), || {
        watch.rules.iter().all(|r| ips.iter().all(|ip| r.lock().unwrap().contains_key(ip)))
    });
    let services = ips
        .iter()
        .map(|ip| {
            let mut s = watch.stages(ip, started, returned, &seen);
            s.derive();
            s
        })
        .collect();
    for i in 0..ips.len() {
        lab.kubectl(&["delete", "svc", &format!("burst{i}"), "--wait=false"]).unwrap();
    }
    std::thread::sleep(Duration::from_secs(3));
    Run { mode: format!("{mode} burst"), services }
}

#[test]
#[ignore = "a benchmark: scripts/bench-latency"]
fn service_create_to_reachable_stage_by_stage() {
    require_cluster!(images: true);
    let lab = lab_with_frr(2, tor_config);
    let config = CONFIG.replace(", enableGracefulRestart: true", "");
    let applied = wait_until(Duration::from_secs(30), || lab.apply(&format!("{POOL}---\n{config}")).is_ok());
    assert!(applied.is_some(), "{:?}", lab.apply(&format!("{POOL}---\n{config}")));
    let l2: Vec<String> = (0..21).map(|i| format!("192.0.2.{}", 200 + i)).collect();
    let bgp: Vec<String> = (0..SERVICES).map(|i| format!("198.51.100.{}", 100 + i)).collect();
    let watch = Watch::start(&lab, &[l2.clone(), bgp.clone()].concat());
    // A first BGP Service brings the sessions up; it is not counted. It stays while the BGP
    // Services come one at a time, as a cluster's existing Services do: each new one then adds
    // a `network` line and nothing else.
    lab.apply(&lb_service("resident", "Cluster", ", loadBalancerIP: 198.51.100.99")).unwrap();
    assert!(
        wait_until(Duration::from_secs(60), || watch.fib.lock().unwrap().contains_key("198.51.100.99"))
            .is_some()
    );

    let l2_cycle: Vec<String> = (0..SERVICES).map(|i| l2[i % l2.len()].clone()).collect();
    println!("latency FRR {:?} in the speakers", frr_versions(&lab));
    let creator = Creator::new(&lab);
    let mut runs = vec![
        one_at_a_time(&lab, &creator, &watch, "layer2", &l2_cycle),
        one_at_a_time(&lab, &creator, &watch, "bgp", &bgp),
    ];
    // Without it, each Service is the first of its announcement class: its change also writes
    // the class's route-maps, which reach zebra too, so it goes through vtysh.
    lab.kubectl(&["delete", "svc", "resident"]).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    runs.push(one_at_a_time(&lab, &creator, &watch, "bgp-first", &bgp[..20]));
    runs.push(burst(&lab, &creator, &watch, "layer2", &l2));
    runs.push(burst(&lab, &creator, &watch, "bgp", &bgp));
    for run in &runs {
        run.print();
        let reached = run.services.iter().filter(|s| s.0.contains_key("first TCP handshake")).count();
        assert_eq!(
            reached,
            run.services.len(),
            "{}: some Services never answered: {:?}",
            run.mode,
            run.services
        );
    }
}
