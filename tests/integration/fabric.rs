//! Lab plumbing. A switched LAN for lab routers: one namespace holding a bridge, each router attached by a
//! veth whose switch side can be taken down to cut that router off without it noticing a carrier
//! change (as a failed switch port or cable behind a switch would). Removed when dropped.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use ferrolb::plan::{self, Inputs, Options};

use crate::frr_lab::Frr;

pub struct Lan {
    ns: String,
}

static N: AtomicUsize = AtomicUsize::new(0);

fn unique() -> String {
    format!("{}{}", std::process::id() % 100000, N.fetch_add(1, Ordering::SeqCst))
}

pub fn sh(cmd: &str) {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Lan {
    pub fn new() -> Lan {
        let ns = format!("flblan{}", unique());
        sh(&format!(
            "ip netns add {ns} && ip -n {ns} link set lo up && ip -n {ns} link add br0 type bridge && ip -n {ns} link set br0 up"
        ));
        Lan { ns }
    }

    /// Plugs namespace `host` into the switch as `ifname` with `addrs`; returns the switch
    /// port's name.
    pub fn attach(&self, host: &str, ifname: &str, addrs: &[&str]) -> String {
        let (port, veth) = (format!("sw{}", unique()), format!("h{}", unique()));
        let mut cmds = vec![
            format!("ip link add {veth} type veth peer name {port}"),
            format!("ip link set {port} netns {} ", self.ns),
            format!("ip -n {} link set {port} master br0 up", self.ns),
            format!("ip link set {veth} netns {host} name {ifname}"),
        ];
        cmds.extend(configure_interface(host, ifname, addrs));
        for c in cmds {
            sh(&c);
        }
        port
    }

    pub fn set_port(&self, port: &str, up: bool) {
        sh(&format!("ip -n {} link set {port} {}", self.ns, if up { "up" } else { "down" }));
    }
}

/// Commands that address an interface and bring it up; no DAD, so v6 addresses work at once.
pub fn configure_interface(ns: &str, ifname: &str, addrs: &[&str]) -> Vec<String> {
    let mut cmds = vec![format!(
        "ip netns exec {ns} sysctl -qw net.ipv6.conf.{ifname}.accept_dad=0 net.ipv6.conf.{ifname}.keep_addr_on_down=1"
    )];
    for a in addrs {
        cmds.push(format!(
            "ip -n {ns} addr add {a} dev {ifname}{}",
            if a.contains(':') { " nodad" } else { "" }
        ));
    }
    cmds.push(format!("ip -n {ns} link set {ifname} up"));
    cmds
}

/// A point-to-point link `a_if` — `b_if` between two namespaces.
pub fn wire(a: &str, a_if: &str, a_addrs: &[&str], b: &str, b_if: &str, b_addrs: &[&str]) {
    let (x, y) = (format!("wa{}", unique()), format!("wb{}", unique()));
    sh(&format!("ip link add {x} type veth peer name {y}"));
    sh(&format!("ip link set {x} netns {a} name {a_if}"));
    sh(&format!("ip link set {y} netns {b} name {b_if}"));
    for c in configure_interface(a, a_if, a_addrs).into_iter().chain(configure_interface(b, b_if, b_addrs)) {
        sh(&c);
    }
}

/// A process a test started (a speaker, a controller): killed and reaped when dropped, even when
/// the test fails.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A bare network namespace (an FRR netns-backed VRF), deleted when dropped.
pub struct Netns(pub String);

impl Netns {
    pub fn new(prefix: &str) -> Netns {
        let name = format!("{prefix}{}", unique());
        sh(&format!("ip netns add {name} && ip -n {name} link set lo up"));
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// What `ferrolb plan --node NODE` decides for a manifest: that node's frr.conf (passwords
/// included) and each Service's IPs.
pub struct NodePlan {
    pub frr: String,
    pub ips: Vec<(String, Vec<String>)>,
}

pub fn plan_node(yaml: &str, node: &str) -> NodePlan {
    let mut inputs = Inputs::new("metallb-system");
    inputs.add_yaml("lab", yaml).unwrap();
    let p =
        plan::plan(&inputs, &Options { node: Some(node.into()), show_secrets: true, ..Default::default() });
    assert!(p.errors.is_empty() && p.pending.is_empty(), "{:?} {:?}", p.errors, p.pending);
    let ips = p.allocations.iter().map(|a| (a.service.to_string(), a.ips.clone())).collect();
    NodePlan { frr: p.frr_config.unwrap(), ips }
}

impl NodePlan {
    pub fn ips_of(&self, service: &str) -> Vec<String> {
        self.ips.iter().find(|(s, _)| s == service).map(|(_, ips)| ips.clone()).unwrap_or_default()
    }
}

/// Next hops of the kernel route to `prefix` in `router`'s namespace (one per ECMP member).
pub fn kernel_next_hops(router: &Frr, prefix: &str) -> Vec<String> {
    let v6 = if prefix.contains(':') { "-6" } else { "-4" };
    let out =
        Command::new("ip").args(["-n", &router.ns, v6, "-j", "route", "show", prefix]).output().unwrap();
    let routes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut hops = Vec::new();
    for r in routes.as_array().into_iter().flatten() {
        if let Some(list) = r["nexthops"].as_array() {
            hops.extend(list.iter().filter_map(|h| h["gateway"].as_str().map(String::from)));
        } else if let Some(g) = r["gateway"].as_str() {
            hops.push(g.to_string());
        }
    }
    hops.sort();
    hops
}
