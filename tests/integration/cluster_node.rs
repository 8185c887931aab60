//! One node of the cluster lab: a network namespace on the lab's switch and a mount namespace of
//! its own (held by a `sleep` process), in which its containerd, kubelet and kube-proxy run with
//! their own directories, CNI configuration, cgroup root and pod log directory. Dropping it kills
//! everything that runs in its namespaces or cgroups (by pid), then removes the cgroups, the
//! namespace and the files.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::fabric::{Netns, Running, sh};
pub use crate::frr_lab::wait_for as wait_until;

/// What kubelet writes into these three host sysctls at start; inside the node's mount namespace
/// they are files holding those values, so the machine's own settings stay as they are.
const KUBELET_SYSCTLS: [(&str, &str); 3] =
    [("vm/overcommit_memory", "1"), ("kernel/panic", "10"), ("kernel/panic_on_oops", "1")];

/// cgroup v1 hierarchies kubelet and runc use here (hybrid mode: v1 controllers + unified).
const HIERARCHIES: [&str; 10] =
    ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd", "unified"];

pub struct NodeSpec {
    pub name: String,
    pub ip: String,
    pub pod_cidr: String,
    pub ip6: String,
    pub pod_cidr6: String,
    pub pause_image: String,
}

pub struct Node {
    pub name: String,
    pub ip: String,
    pub pod_cidr: String,
    pub ip6: String,
    pub pod_cidr6: String,
    pub dir: PathBuf,
    cgroup: String,
    kube_proxy: Option<Running>,
    kubelet: Option<Running>,
    containerd: Option<Running>,
    holder: Option<Running>,
    /// Last field: deleted after every process in it is gone.
    pub netns: Netns,
}

fn log(dir: &Path, name: &str) -> std::fs::File {
    std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name)).unwrap()
}

impl Node {
    /// Creates the namespaces and files; [`Node::start`] starts the daemons.
    pub fn new(spec: &NodeSpec, lab_dir: &Path, netns: Netns) -> Node {
        let dir = lab_dir.join(&spec.name);
        for sub in [
            "sysctl",
            "pod-logs",
            "cni/net.d",
            "cni/ipam",
            "kubelet",
            "containerd/root",
            "containerd/state",
            "runc",
        ] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let cgroup = format!("/{}-{}", netns.0, spec.name);
        let node = Node {
            name: spec.name.clone(),
            ip: spec.ip.clone(),
            pod_cidr: spec.pod_cidr.clone(),
            ip6: spec.ip6.clone(),
            pod_cidr6: spec.pod_cidr6.clone(),
            dir,
            cgroup,
            kube_proxy: None,
            kubelet: None,
            containerd: None,
            holder: None,
            netns,
        };
        node.write_configs(spec);
        node
    }

    fn write_configs(&self, spec: &NodeSpec) {
        let d = |s: &str| self.dir.join(s).display().to_string();
        for (key, value) in KUBELET_SYSCTLS {
            std::fs::write(self.dir.join("sysctl").join(key.replace('/', "-")), format!("{value}\n"))
                .unwrap();
        }
        std::fs::write(
            self.dir.join("cni/net.d/10-lab.conflist"),
            format!(
                r#"{{"cniVersion": "0.4.0", "name": "lab", "plugins": [
  {{"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {{"type": "host-local", "dataDir": "{ipam}", "ranges": [[{{"subnet": "{cidr}"}}], [{{"subnet": "{cidr6}"}}]],
            "routes": [{{"dst": "0.0.0.0/0"}}, {{"dst": "::/0"}}]}}}},
  {{"type": "portmap", "capabilities": {{"portMappings": true}}}}]}}
"#,
                ipam = d("cni/ipam"),
                cidr = spec.pod_cidr,
                cidr6 = spec.pod_cidr6,
            ),
        )
        .unwrap();
        let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
        std::fs::write(
            self.dir.join("containerd.toml"),
            format!(
                r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
[{cri}]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  disable_hugetlb_controller = true
  tolerate_missing_hugetlb_controller = true
  netns_mounts_under_state_dir = true
  [{cri}.containerd]
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{runc}"
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"#,
                root = d("containerd/root"),
                state = d("containerd/state"),
                sock = d("containerd.sock"),
                opt = d("containerd/opt"),
                pause = spec.pause_image,
                runc = d("runc"),
                cni = d("cni/net.d"),
            ),
        )
        .unwrap();
        std::fs::write(
            self.dir.join("kubelet.yaml"),
            format!(
                "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: {cgroup}
cgroupsPerQOS: true
failSwapOn: false
containerRuntimeEndpoint: unix://{sock}
podLogsDir: {logs}
address: {ip}
readOnlyPort: 0
authentication:
  anonymous: {{enabled: true}}
  webhook: {{enabled: false}}
authorization: {{mode: AlwaysAllow}}
evictionHard: {{memory.available: 1Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
resolvConf: /etc/resolv.conf
nodeStatusUpdateFrequency: 2s
",
                cgroup = self.cgroup,
                sock = d("containerd.sock"),
                logs = d("pod-logs"),
                ip = spec.ip,
            ),
        )
        .unwrap();
        std::fs::write(
            self.dir.join("kube-proxy.yaml"),
            format!(
                "apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
hostnameOverride: {name}
clientConnection: {{kubeconfig: {kc}}}
clusterCIDR: 198.18.64.0/20,2001:db8:64::/56
healthzBindAddress: {ip}:10256
metricsBindAddress: 127.0.0.1:10249
# Conntrack limits are the machine's, shared by every node: leave them alone.
conntrack: {{maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}}
",
                name = spec.name,
                kc = self.dir.parent().unwrap().join("node.kubeconfig").display(),
                ip = spec.ip,
            ),
        )
        .unwrap();
    }

    /// `nsenter` into this node's network and mount namespaces, running `sh -c script`.
    fn enter(&self, script: &str) -> Command {
        let holder = self.holder.as_ref().expect("node namespaces held").0.id();
        let mut c = Command::new("nsenter");
        c.arg(format!("--mount=/proc/{holder}/ns/mnt"))
            .arg(format!("--net=/run/netns/{}", self.netns.0))
            .args(["--", "sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        c
    }

    /// Runs `script` in the node's namespaces and waits for it; its output.
    pub fn run(&self, script: &str) -> std::process::Output {
        self.enter(script).stdout(Stdio::piped()).stderr(Stdio::piped()).output().unwrap()
    }

    /// Mount namespace, cgroups, then containerd; kubelet and kube-proxy once `images` are in.
    pub fn start(&mut self, bin: &Path, images: &[PathBuf]) -> Result<(), String> {
        sh(&format!(
            "ip netns exec {ns} sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 net.bridge.bridge-nf-call-iptables=1",
            ns = self.netns.0
        ));
        for h in HIERARCHIES {
            let path = format!("/sys/fs/cgroup/{h}{}", self.cgroup);
            let _ = std::fs::create_dir_all(&path);
            if h == "cpuset" {
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let parent =
                        std::fs::read_to_string(format!("/sys/fs/cgroup/cpuset/{f}")).unwrap_or_default();
                    let _ = std::fs::write(format!("{path}/{f}"), parent.trim());
                }
            }
        }
        // The holder's mount namespace (a slave of the machine's): a sysfs of the node's network
        // namespace with the machine's cgroup mounts carried over, and the sysctl files bound
        // over /proc/sys; the shims' sockets (always under /run/containerd) in a tmpfs that goes
        // with the namespace.
        let cg = self.dir.join("cg").display().to_string();
        let binds: String = KUBELET_SYSCTLS
            .iter()
            .map(|(key, _)| {
                format!(
                    "mount --bind {}/{} /proc/sys/{key} && ",
                    self.dir.join("sysctl").display(),
                    key.replace('/', "-")
                )
            })
            .collect();
        self.holder = Some(Running(
            Command::new("nsenter")
                .arg(format!("--net=/run/netns/{}", self.netns.0))
                .args(["unshare", "--mount", "--propagation", "slave", "sh", "-c"])
                .arg(format!(
                    "mkdir -p {cg} && mount --rbind /sys/fs/cgroup {cg} && mount -t sysfs sysfs /sys && \
                     mount --rbind {cg} /sys/fs/cgroup && umount -l {cg} && mkdir -p /run/containerd && \
                     mount -t tmpfs -o mode=0700 shims /run/containerd && {binds} touch {ready} && exec sleep infinity",
                    ready = self.dir.join("held").display()
                ))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log(&self.dir, "holder.log"))
                .spawn()
                .unwrap(),
        ));
        let held = self.dir.join("held");
        wait_until(Duration::from_secs(10), || held.exists()).ok_or_else(|| {
            format!("{}: mount namespace not ready: {}", self.name, self.tail("holder.log"))
        })?;
        self.containerd = Some(Running(
            self.enter(&format!("exec containerd --config {}", self.dir.join("containerd.toml").display()))
                .stderr(log(&self.dir, "containerd.log"))
                .spawn()
                .unwrap(),
        ));
        wait_until(Duration::from_secs(20), || self.ctr("version").status.success())
            .ok_or_else(|| format!("{}: containerd not up: {}", self.name, self.tail("containerd.log")))?;
        for image in images {
            let out = self.ctr(&format!("images import {}", image.display()));
            if !out.status.success() {
                return Err(format!(
                    "{}: ctr import {}: {}",
                    self.name,
                    image.display(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        self.start_kubelet(bin);
        self.kube_proxy = Some(Running(
            self.enter(&format!(
                "exec {bin}/kube-proxy --config {cfg} --v=1",
                bin = bin.display(),
                cfg = self.dir.join("kube-proxy.yaml").display()
            ))
            .stderr(log(&self.dir, "kube-proxy.log"))
            .spawn()
            .unwrap(),
        ));
        Ok(())
    }

    /// Starts this node's kubelet (again: same root dir and log, so it finds its pods).
    pub fn start_kubelet(&mut self, bin: &Path) {
        assert!(self.kubelet.is_none(), "{}: kubelet already runs", self.name);
        self.kubelet = Some(Running(
            self.enter(&format!(
                "exec {bin}/kubelet --config {cfg} --kubeconfig {kc} --root-dir {root} --hostname-override {name} --node-ip {ip},{ip6} --v=1",
                bin = bin.display(),
                cfg = self.dir.join("kubelet.yaml").display(),
                kc = self.dir.parent().unwrap().join("node.kubeconfig").display(),
                root = self.dir.join("kubelet").display(),
                name = self.name,
                ip = self.ip,
                ip6 = self.ip6,
            ))
            .stderr(log(&self.dir, "kubelet.log"))
            .spawn()
            .unwrap(),
        ));
    }

    /// Stops only the kubelet, as `systemctl stop kubelet` does (SIGTERM, SIGKILL after 10 s):
    /// containerd, kube-proxy and the pods keep running. Whether it ran.
    pub fn stop_kubelet(&mut self) -> bool {
        let Some(mut kubelet) = self.kubelet.take() else { return false };
        let pid = kubelet.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).stderr(Stdio::null()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if kubelet.0.try_wait().is_ok_and(|s| s.is_some()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(kubelet);
        true
    }

    /// `ctr -n k8s.io ARGS` against this node's containerd.
    pub fn ctr(&self, args: &str) -> std::process::Output {
        self.run(&format!(
            "exec ctr --address {} -n k8s.io {args}",
            self.dir.join("containerd.sock").display()
        ))
    }

    /// The last lines of one of this node's logs.
    pub fn tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(25)..].join("\n")
    }

    /// Pids of every process in this node's cgroups and network namespace (our daemons, the
    /// shims, the containers), deepest cgroups first.
    fn pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for h in ["pids", "memory", "freezer"] {
            let root = PathBuf::from(format!("/sys/fs/cgroup/{h}{}", self.cgroup));
            for dir in cgroup_dirs(&root) {
                let text = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
        }
        let out = Command::new("ip").args(["netns", "pids", &self.netns.0]).output();
        if let Ok(out) = out {
            pids.extend(
                String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse::<u32>().ok()),
            );
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Stops everything of this node; true when nothing was left running.
    pub fn stop(&mut self) -> bool {
        drop(self.kube_proxy.take());
        drop(self.kubelet.take());
        drop(self.containerd.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        let holder = self.holder.as_ref().map(|h| h.0.id());
        loop {
            let left: Vec<u32> = self.pids().into_iter().filter(|p| Some(*p) != holder).collect();
            if left.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                drop(self.holder.take());
                return false;
            }
            for pid in left {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).stderr(Stdio::null()).status();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(self.holder.take());
        for h in HIERARCHIES {
            let root = PathBuf::from(format!("/sys/fs/cgroup/{h}{}", self.cgroup));
            let mut dirs = cgroup_dirs(&root);
            dirs.reverse();
            for d in dirs {
                let _ = std::fs::remove_dir(d);
            }
        }
        true
    }
}

/// `root` and every cgroup below it, parents before children.
fn cgroup_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        if !d.is_dir() {
            continue;
        }
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        out.push(d);
    }
    out.sort_by_key(|p| p.components().count());
    out
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}
