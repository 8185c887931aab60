//! The soak's cluster: a real kube-apiserver, two controller replicas, and three nodes, each a
//! network namespace with FRR, frr-agent (a process, so it can be killed) and `ferrolb speaker`
//! (BGP through the agent, layer 2 on the node's own interface), all on one switch with a ToR
//! (FRR) and a client. Speakers reach the API server through a unix-socket relay (socat), so no
//! address is added to this machine's own namespace.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::fabric::{Lan, Netns, Running};
use crate::frr_lab::{Frr, wait_for};
use crate::kube_lab::KubeLab;

pub const NODES: usize = 3;

pub fn node_ip(i: usize) -> String {
    format!("192.0.2.{}", 11 + i)
}

pub const CONFIG: &str = "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: routed, namespace: metallb-system}
spec: {addresses: [198.51.100.0/24]}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan, namespace: metallb-system}
spec: {addresses: [192.0.2.200-192.0.2.220]}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: tor, namespace: metallb-system}
spec: {myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.1, holdTime: 9s, keepaliveTime: 3s, connectTime: 1s}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: routed, namespace: metallb-system}
spec: {ipAddressPools: [routed]}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: lan, namespace: metallb-system}
spec: {ipAddressPools: [lan]}
";

fn tor_config() -> String {
    let mut c = "router bgp 64500\n bgp router-id 192.0.2.1\n no bgp ebgp-requires-policy\n".to_string();
    for i in 0..NODES {
        let ip = node_ip(i);
        c.push_str(&format!(
            " neighbor {ip} remote-as 64512\n neighbor {ip} timers 3 9\n neighbor {ip} timers connect 1\n"
        ));
    }
    c.push_str(" address-family ipv4 unicast\n  maximum-paths 8\n");
    for i in 0..NODES {
        c.push_str(&format!("  neighbor {} activate\n", node_ip(i)));
    }
    c.push_str(" exit-address-family\nexit\n");
    c
}

/// A process that is started again when it is gone, as a kubelet would.
pub struct Supervised {
    pub name: String,
    start: Box<dyn Fn() -> Child>,
    child: Option<Running>,
    pub restarts: u32,
}

impl Supervised {
    fn new(name: String, start: Box<dyn Fn() -> Child>) -> Supervised {
        let child = Some(Running(start()));
        Supervised { name, start, child, restarts: 0 }
    }

    pub fn kill(&mut self) {
        drop(self.child.take());
    }

    /// Starts it again if it was killed or exited by itself (say, a controller that lost
    /// its lease); true when it did.
    pub fn revive(&mut self) -> bool {
        let alive = self.child.as_mut().is_some_and(|c| matches!(c.0.try_wait(), Ok(None)));
        if !alive {
            self.child = Some(Running((self.start)()));
            self.restarts += 1;
        }
        !alive
    }
}

pub struct Node {
    pub speaker: Supervised,
    pub agent: Supervised,
    pub frr: Frr,
    pub port: String,
    pub mac: String,
}

/// Fields drop in order: the processes first, the API server last.
pub struct SoakLab {
    pub controllers: Vec<Supervised>,
    pub nodes: Vec<Node>,
    _relays: Vec<Running>,
    pub tor: Frr,
    pub client: Netns,
    pub lan: Lan,
    pub kube: KubeLab,
}

fn log(dir: &std::path::Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name)).unwrap()
}

impl SoakLab {
    pub fn start(kube: KubeLab) -> SoakLab {
        let dir = kube.dir.clone();
        let lan = Lan::new();
        let tor = Frr::start("tor").unwrap();
        lan.attach(&tor.ns, "eth0", &["192.0.2.1/24"]);
        tor.configure(&tor_config());
        let client = Netns::new("flbc");
        lan.attach(&client.0, "eth0", &["192.0.2.100/24"]);
        let api_port = kube.url.rsplit(':').next().unwrap().to_string();
        let relay_socket = dir.join("apiserver.sock");
        let mut relays = vec![Running(
            Command::new("socat")
                .arg(format!("UNIX-LISTEN:{},fork", relay_socket.display()))
                .arg(format!("TCP:127.0.0.1:{api_port}"))
                .stderr(log(&dir, "relay.log"))
                .spawn()
                .unwrap(),
        )];
        let mut nodes = Vec::new();
        for i in 0..NODES {
            let name = format!("node{}", i + 1);
            let frr = Frr::start(&name).unwrap();
            let port = lan.attach(&frr.ns, "eth0", &[&format!("{}/24", node_ip(i))]);
            // The API server's address inside the node: the same URL as on the host, relayed.
            relays.push(Running(
                Command::new("ip")
                    .args(["netns", "exec", &frr.ns, "socat"])
                    .arg(format!("TCP-LISTEN:{api_port},bind=127.0.0.1,fork,reuseaddr"))
                    .arg(format!("UNIX-CONNECT:{}", relay_socket.display()))
                    .stderr(log(&dir, "relay.log"))
                    .spawn()
                    .unwrap(),
            ));
            let mac = {
                let out =
                    Command::new("ip").args(["-n", &frr.ns, "-j", "link", "show", "eth0"]).output().unwrap();
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                v[0]["address"].as_str().unwrap().to_string()
            };
            let socket = frr.dir().join("agent.sock");
            let agent = {
                let (bin, dir, run, etc, socket) = (
                    crate::ferrolb_bin().with_file_name("frr-agent"),
                    dir.clone(),
                    frr.dir().join("run"),
                    frr.dir().join("etc"),
                    socket.clone(),
                );
                let state = frr.dir().join("agent-state");
                let log_name = format!("agent-{name}.log");
                Supervised::new(
                    format!("frr-agent on {name}"),
                    Box::new(move || {
                        let _ = std::fs::remove_file(&socket);
                        Command::new(&bin)
                            .arg("serve")
                            .arg("--socket")
                            .arg(&socket)
                            .arg("--vty-socket")
                            .arg(&run)
                            .arg("--config-dir")
                            .arg(&etc)
                            .arg("--state-dir")
                            .arg(&state)
                            .args(["--poll-ms", "200"])
                            .stdout(Stdio::null())
                            .stderr(log(&dir, &log_name))
                            .spawn()
                            .unwrap()
                    }),
                )
            };
            assert!(wait_for(Duration::from_secs(10), || socket.exists()).is_some(), "frr-agent on {name}");
            let members: Vec<String> =
                (0..NODES).map(|j| format!("node{}={}:7946", j + 1, node_ip(j))).collect();
            let speaker = {
                let (ns, dir, kubeconfig, node, ip, members, socket) = (
                    frr.ns.clone(),
                    dir.clone(),
                    kube.kubeconfig(),
                    name.clone(),
                    node_ip(i),
                    members.join(","),
                    socket.clone(),
                );
                Supervised::new(
                    format!("speaker on {name}"),
                    Box::new(move || {
                        Command::new("ip")
                            .args(["netns", "exec", &ns])
                            .arg(crate::ferrolb_bin())
                            .args(["speaker", "--node", &node, "--layer2", "--members", &members])
                            .arg(format!("--membership-bind={ip}:7946"))
                            .args(["--membership-probe-ms", "200", "--kubeconfig"])
                            .arg(&kubeconfig)
                            .arg("--frr-agent-socket")
                            .arg(&socket)
                            .stdout(Stdio::null())
                            .stderr(log(&dir, &format!("speaker-{node}.log")))
                            .spawn()
                            .unwrap()
                    }),
                )
            };
            nodes.push(Node { speaker, agent, frr, port, mac });
        }
        let controllers = (0..2)
            .map(|r| {
                let (dir, kubeconfig) = (dir.clone(), kube.kubeconfig());
                Supervised::new(
                    format!("controller replica-{r}"),
                    Box::new(move || {
                        Command::new(crate::ferrolb_bin())
                            .args(["controller", "--webhook-port", "0", "--metrics-bind", "127.0.0.1:0"])
                            .args(["--identity", &format!("replica-{r}"), "--kubeconfig"])
                            .arg(&kubeconfig)
                            .stdout(Stdio::null())
                            .stderr(log(&dir, &format!("controller-{r}.log")))
                            .spawn()
                            .unwrap()
                    }),
                )
            })
            .collect();
        SoakLab { controllers, nodes, _relays: relays, tor, client, lan, kube }
    }

    /// The ToR's established-session counter per node.
    pub fn established(&self) -> Vec<u64> {
        let v = self.tor.json("show bgp neighbors json");
        (0..NODES).map(|i| v[node_ip(i)]["connectionsEstablished"].as_u64().unwrap_or(0)).collect()
    }

    /// The routed prefixes in the ToR's BGP table.
    pub fn tor_prefixes(&self) -> std::collections::BTreeSet<String> {
        let v = self.tor.json("show bgp ipv4 unicast json");
        v["routes"]
            .as_object()
            .map(|r| {
                r.keys()
                    .filter(|k| k.starts_with("198.51.100."))
                    .map(|k| k.trim_end_matches("/32").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The MAC answering ARP for `ip` at the client, if any.
    pub fn arping(&self, ip: &str) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.client.0, "arping", "-r", "-c", "1", "-w", "1", "-i", "eth0", ip])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_lowercase();
        text.lines().next().map(str::to_string)
    }

    /// Brings back whatever is down; the names of what was restarted.
    pub fn revive_all(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for p in self
            .controllers
            .iter_mut()
            .chain(self.nodes.iter_mut().flat_map(|n| [&mut n.agent, &mut n.speaker]))
        {
            if p.revive() {
                out.push(p.name.clone());
            }
        }
        out
    }
}
