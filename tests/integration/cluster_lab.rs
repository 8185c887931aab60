//! A real Kubernetes cluster in a box: etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler in a control-plane namespace, and NODES nodes (see cluster_node.rs), all on one
//! lab switch with a ToR (real FRR) and a client. Nothing is added to this machine's own network
//! namespace: the tests reach the API server through a unix-socket relay (socat) on loopback.
//!
//! Addresses (documentation and benchmark ranges): ToR 192.0.2.1, control plane 192.0.2.5, nodes
//! 192.0.2.11.., client 192.0.2.100 on the switch and 203.0.113.100 behind the ToR; pods
//! 198.18.64.0/24 per node upwards, Services 198.18.0.0/24; IPv6 beside each: the switch
//! 2001:db8:10::/64 (ToR ::1, nodes ::11..), behind the ToR 2001:db8:20::/64, pods
//! 2001:db8:64:<n>::/64, Services 2001:db8:ffff::/112.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::cluster_control::{kubeconfig, make_pki};
use crate::cluster_images;
use crate::cluster_node::{Node, NodeSpec, wait_until};
use crate::fabric::{Lan, Netns, Running, sh, wire};
use crate::frr_lab::Frr;

pub const CP_IP: &str = "192.0.2.5";
pub const TOR_IP: &str = "192.0.2.1";
pub const CLIENT_IP: &str = "192.0.2.100";
pub const SERVICE_CIDR: &str = "198.18.0.0/24,2001:db8:ffff::/112";
pub(crate) const TOKEN: &str = "ferrolb-cluster-admin-token";

pub fn node_ip(i: usize) -> String {
    format!("192.0.2.{}", 11 + i)
}

pub fn node_ip6(i: usize) -> String {
    format!("2001:db8:10::{}", 11 + i)
}

pub(crate) fn bin_dir() -> PathBuf {
    std::env::var_os("FERROLB_KUBE_BIN_DIR")
        .map_or_else(|| PathBuf::from("/opt/ferrolb-kube/bin"), PathBuf::from)
}

fn on_path(tool: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success())
}

/// Why the cluster tests cannot run here, if they cannot (ferrolb's images aside).
pub fn unavailable() -> Option<String> {
    if let Some(why) = crate::frr_lab::unavailable().or_else(crate::chart::unavailable) {
        return Some(why);
    }
    for b in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubelet",
        "kube-proxy",
        "kubectl",
        "pause",
    ] {
        if !bin_dir().join(b).is_file() {
            return Some(format!("no {b} in {} (set FERROLB_KUBE_BIN_DIR)", bin_dir().display()));
        }
    }
    for tool in
        ["containerd", "runc", "ctr", "buildah", "nsenter", "socat", "openssl", "curl", "arping", "iptables"]
    {
        if !on_path(tool) {
            return Some(format!("no {tool} (apt-get install containerd runc buildah socat arping)"));
        }
    }
    for plugin in ["bridge", "host-local", "portmap", "loopback"] {
        if !Path::new("/usr/lib/cni").join(plugin).is_file() {
            return Some(format!("no /usr/lib/cni/{plugin} (apt-get install containernetworking-plugins)"));
        }
    }
    if !Path::new("/bin/busybox").is_file() {
        return Some("no /bin/busybox for the web image (apt-get install busybox-static)".into());
    }
    None
}

/// Skips the calling test unless a cluster and ferrolb's images (the FRR sidecar's too with
/// `frr`) are at hand.
macro_rules! require_cluster {
    () => {
        require_cluster!(images: false)
    };
    (images: $frr:expr) => {
        if let Some(why) = $crate::cluster_lab::unavailable() {
            println!("skipped: {why}");
            return;
        }
        if let Err(why) = $crate::cluster_images::ferrolb_archives($frr) {
            println!("skipped: {why}");
            return;
        }
    };
}

/// One cluster at a time in this test binary: two would fight over the machine's two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub struct ClusterLab {
    pub nodes: Vec<Node>,
    pub(crate) control: Vec<Running>,
    pub(crate) relays: Vec<Running>,
    pub tor: Option<Frr>,
    pub client: Option<Netns>,
    pub(crate) cp: Option<Netns>,
    lan: Option<Lan>,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub api_port: u16,
    /// From the first command to every node Ready.
    pub up: Duration,
    _turn: MutexGuard<'static, ()>,
}

/// Where labs keep their files: memory (/dev/shm) when there is one, since every node unpacks
/// its own copy of the images and the disk is shared with others; FERROLB_CLUSTER_TMP overrides.
fn base_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FERROLB_CLUSTER_TMP") {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() }
}

pub(crate) fn log(dir: &Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name)).unwrap()
}

pub(crate) fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

/// A Node or Pod object whose Ready condition is True.
pub fn is_ready(object: &serde_json::Value) -> bool {
    object["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

impl ClusterLab {
    /// Brings up a cluster of `count` nodes with ferrolb's images (and the lab's) on every node.
    pub fn start(count: usize) -> ClusterLab {
        ClusterLab::start_with(count, &[])
    }

    /// As [`ClusterLab::start`], with `controller_manager_flags` added to kube-controller-manager's
    /// (a node lifecycle test shortens `--node-monitor-grace-period`; the others keep the default,
    /// which a busy machine cannot trip by accident).
    pub fn start_with(count: usize, controller_manager_flags: &[&str]) -> ClusterLab {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let t = Instant::now();
        let bin = bin_dir();
        let lan = Lan::new();
        let cp = Netns::new("flbcp");
        let dir = base_dir().join(format!("ferrolb-cluster-{}", cp.0));
        std::fs::create_dir_all(&dir).unwrap();
        let mut lab = ClusterLab {
            nodes: Vec::new(),
            control: Vec::new(),
            relays: Vec::new(),
            tor: None,
            client: None,
            cp: None,
            lan: None,
            dir: dir.clone(),
            kubeconfig: dir.join("kubeconfig"),
            api_port: crate::kube_lab::free_port(),
            up: Duration::ZERO,
            _turn: turn,
        };
        lan.attach(&cp.0, "eth0", &[&format!("{CP_IP}/24")]);
        let tor = Frr::start("tor").unwrap();
        lan.attach(&tor.ns, "eth0", &[&format!("{TOR_IP}/24"), "2001:db8:10::1/64"]);
        sh(&format!(
            "ip netns exec {} sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 net.ipv4.conf.all.send_redirects=0",
            tor.ns
        ));
        let client = Netns::new("flbcl");
        lan.attach(&client.0, "eth0", &[&format!("{CLIENT_IP}/24"), "2001:db8:10::100/64"]);
        wire(
            &tor.ns,
            "eth1",
            &["203.0.113.1/24", "2001:db8:20::1/64"],
            &client.0,
            "eth1",
            &["203.0.113.100/24", "2001:db8:20::100/64"],
        );
        // Routed Service IPs are reached through the ToR; the switch's own subnet directly.
        sh(&format!("ip -n {} route add default via 203.0.113.1", client.0));
        sh(&format!("ip -n {} -6 route add default via 2001:db8:20::1", client.0));
        make_pki(&dir);
        std::fs::write(&lab.kubeconfig, kubeconfig(&dir, &format!("https://127.0.0.1:{}", lab.api_port)))
            .unwrap();
        std::fs::write(dir.join("node.kubeconfig"), kubeconfig(&dir, &format!("https://{CP_IP}:6443")))
            .unwrap();
        let specs: Vec<NodeSpec> = (0..count)
            .map(|i| NodeSpec {
                name: format!("node{}", i + 1),
                ip: node_ip(i),
                pod_cidr: format!("198.18.{}.0/24", 64 + i),
                ip6: node_ip6(i),
                pod_cidr6: format!("2001:db8:64:{}::/64", i + 1),
                pause_image: cluster_images::PAUSE_IMAGE.into(),
            })
            .collect();
        for spec in &specs {
            let ns = Netns::new("flbnd");
            lan.attach(&ns.0, "eth0", &[&format!("{}/24", spec.ip), &format!("{}/64", spec.ip6)]);
            sh(&format!("ip -n {} route add default via {TOR_IP}", ns.0));
            sh(&format!("ip -n {} -6 route add default via 2001:db8:10::1", ns.0));
            sh(&format!("ip -n {} route add {} via {}", cp.0, spec.pod_cidr, spec.ip));
            lab.nodes.push(Node::new(spec, &dir, ns));
        }
        for node in &lab.nodes {
            for other in lab.nodes.iter().filter(|o| o.name != node.name) {
                sh(&format!("ip -n {} route add {} via {}", node.netns.0, other.pod_cidr, other.ip));
                sh(&format!("ip -n {} -6 route add {} via {}", node.netns.0, other.pod_cidr6, other.ip6));
            }
        }
        lab.cp = Some(cp);
        lab.tor = Some(tor);
        lab.client = Some(client);
        lab.lan = Some(lan);
        lab.start_control_plane(&bin, controller_manager_flags);
        let mut images = cluster_images::build_lab_images(&dir, &bin).unwrap();
        images.extend(cluster_images::present_archives());
        for node in &mut lab.nodes {
            if let Err(e) = node.start(&bin, &images) {
                panic!("{e}");
            }
        }
        lab.wait_nodes_ready();
        lab.up = t.elapsed();
        println!("cluster of {count} nodes up in {:.1} s", lab.up.as_secs_f64());
        lab
    }

    fn wait_nodes_ready(&self) {
        let want = self.nodes.len();
        let ready = wait_until(Duration::from_secs(90), || {
            self.kubectl(&["get", "nodes", "-o", "json"]).is_ok_and(|text| {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                let items = v["items"].as_array().cloned().unwrap_or_default();
                items.len() == want && items.iter().all(is_ready)
            })
        });
        if ready.is_none() {
            let logs: Vec<String> =
                self.nodes.iter().map(|n| format!("{}:\n{}", n.name, n.tail("kubelet.log"))).collect();
            panic!("nodes not Ready:\n{}", logs.join("\n"));
        }
    }

    /// `kubectl ARGS` as the admin; stdout, or stderr as the error.
    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(bin_dir().join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `kubectl apply -f -` of `yaml`.
    pub fn apply(&self, yaml: &str) -> Result<String, String> {
        use std::io::Write;
        let mut child = Command::new(bin_dir().join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["apply", "--server-side", "--force-conflicts", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        child.stdin.take().unwrap().write_all(yaml.as_bytes()).map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Evicts a pod as `kubectl drain` does (the Eviction subresource), with curl: no kubectl
    /// start-up in the way when the eviction is timed.
    pub fn evict(&self, ns: &str, pod: &str) -> Result<(), String> {
        let body = serde_json::json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": ns}});
        let out = Command::new("curl")
            .args(["-sf", "--cacert"])
            .arg(self.dir.join("ca.crt"))
            .args([
                "-H",
                &format!("Authorization: Bearer {TOKEN}"),
                "-H",
                "Content-Type: application/json",
                "-d",
            ])
            .arg(body.to_string())
            .arg(format!("https://127.0.0.1:{}/api/v1/namespaces/{ns}/pods/{pod}/eviction", self.api_port))
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stdout).into_owned()) }
    }

    /// `kubectl get KIND ... -o json` parsed.
    pub fn get_json(&self, args: &[&str]) -> Result<serde_json::Value, String> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let text = self.kubectl(&all)?;
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }

    /// The client's namespace.
    pub fn client_ns(&self) -> &str {
        &self.client.as_ref().unwrap().0
    }

    pub fn tor(&self) -> &Frr {
        self.tor.as_ref().unwrap()
    }

    /// The client fetches `http://ip/` once (timeout `ms`); the page, if one came back.
    pub fn fetch(&self, ip: &str, ms: u64) -> Option<String> {
        let host = if ip.contains(':') { format!("[{ip}]") } else { ip.to_string() };
        let out = Command::new("ip")
            .args(["netns", "exec", self.client_ns(), "curl", "-s", "-g", "--max-time"])
            .arg(format!("{:.3}", ms as f64 / 1000.0))
            .arg(format!("http://{host}/"))
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The MAC that answers the client's ARP request for `ip` on the switch within `secs`.
    pub fn arping_within(&self, ip: &str, secs: f64) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", self.client_ns(), "arping", "-r", "-c", "1", "-i", "eth0", "-w"])
            .arg(secs.to_string())
            .arg(ip)
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_lowercase();
        text.lines().next().map(str::to_string)
    }

    /// The MAC of node `i`'s eth0.
    pub fn node_mac(&self, i: usize) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.nodes[i].netns.0, "-j", "link", "show", "eth0"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v[0]["address"].as_str().unwrap_or_default().to_string()
    }

    /// The last lines of every ferrolb container's log, and the namespace's events.
    pub fn ferrolb_logs(&self) -> String {
        let mut out = String::new();
        let pods = self.get_json(&["get", "pods", "-n", "metallb-system"]).unwrap_or_default();
        for pod in pods["items"].as_array().into_iter().flatten() {
            let name = pod["metadata"]["name"].as_str().unwrap_or_default();
            for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
                let c = c["name"].as_str().unwrap_or_default();
                let log = self
                    .kubectl(&["logs", "-n", "metallb-system", name, "-c", c, "--tail=15"])
                    .unwrap_or_else(|e| e);
                out.push_str(&format!("--- {name}/{c}\n{log}\n"));
            }
        }
        let events = self.kubectl(&["get", "events", "-n", "metallb-system"]).unwrap_or_else(|e| e);
        out.push_str(&format!("--- events\n{events}"));
        out
    }

    /// Logs of every control-plane daemon and node, for a failing test's message.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for name in ["kube-apiserver.log", "kube-controller-manager.log", "kube-scheduler.log"] {
            out.push_str(&format!("--- {name}\n{}\n", tail(&self.dir.join(name))));
        }
        for n in &self.nodes {
            out.push_str(&format!("--- {} kubelet\n{}\n", n.name, n.tail("kubelet.log")));
        }
        out
    }
}

impl Drop for ClusterLab {
    fn drop(&mut self) {
        let t = Instant::now();
        let mut phases = Vec::new();
        // Clients first (nodes, controllers), so the API server has no watches to wait for.
        let mut clean = true;
        for node in &mut self.nodes {
            clean &= node.stop();
            phases.push(format!("{} {:.1} s", node.name, t.elapsed().as_secs_f64()));
        }
        self.nodes.clear();
        while let Some(p) = self.control.pop() {
            drop(p);
        }
        self.relays.clear();
        phases.push(format!("control plane {:.1} s", t.elapsed().as_secs_f64()));
        self.client.take();
        self.tor.take();
        self.cp.take();
        self.lan.take();
        phases.push(format!("namespaces {:.1} s", t.elapsed().as_secs_f64()));
        if clean && std::env::var_os("FERROLB_KEEP_CLUSTER_DIR").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        phases.push(format!("files {:.1} s", t.elapsed().as_secs_f64()));
        println!(
            "cluster down in {:.1} s ({}){}",
            t.elapsed().as_secs_f64(),
            phases.join(", "),
            if clean { "" } else { " (processes left!)" }
        );
    }
}
