//! Real FRR instances for tests: each in a network namespace of its own, with its own socket,
//! config and log directories, removed (daemons, namespace, files) when dropped, even when the
//! test fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use crate::frr_root::{FrrInstall, install};
use frr_sidecar::apply::Vtysh;

const FRR_LIB: &str = "/usr/lib/frr";

/// Returns from the calling test, printing `skipped: <why>`, when FRR tests cannot run here.
#[allow(unused_macros)]
macro_rules! require_frr {
    () => {
        if let Some(why) = $crate::frr_lab::unavailable() {
            println!("skipped: {why}");
            return;
        }
    };
}

/// Why FRR tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if uid.as_deref() != Some("0") {
        return Some("needs root for network namespaces".into());
    }
    let frr = match install() {
        Ok(frr) => frr,
        Err(why) => return Some(why),
    };
    for d in frr.daemons() {
        if !frr.path(&format!("{FRR_LIB}/{d}")).exists() {
            return Some(format!("{FRR_LIB}/{d} missing (apt-get install frr)"));
        }
    }
    for tool in ["vtysh", "ip", "unshare"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map_or(true, |o| !o.status.success())
        {
            return Some(format!("{tool} missing"));
        }
    }
    None
}

pub struct Frr {
    pub ns: String,
    hostname: String,
    dir: PathBuf,
    frr: &'static FrrInstall,
    /// Runs a program of a root filesystem's FRR for this instance (see frr_root.rs).
    wrapper: Option<PathBuf>,
    /// zebra treats other network namespaces as VRFs (`-n`): this kernel may lack VRF devices.
    netns_vrfs: bool,
    /// The namespace was made for this instance (else it is a cluster node's, which outlives it).
    owns_ns: bool,
}

impl Frr {
    /// Starts zebra, bfdd, bgpd and staticd in a new namespace whose hostname is `hostname`.
    pub fn start(hostname: &str) -> Result<Frr, String> {
        Frr::start_with(hostname, false)
    }

    /// Like [`Frr::start`], with zebra in netns-VRF mode: every network namespace is a VRF.
    pub fn start_with_netns_vrfs(hostname: &str) -> Result<Frr, String> {
        Frr::start_with(hostname, true)
    }

    /// Like [`Frr::start`], in the existing namespace `ns` (a cluster node's: a router running
    /// beside the node's other processes); dropping it stops its daemons and leaves `ns` alone.
    pub fn start_in(hostname: &str, ns: &str) -> Result<Frr, String> {
        Frr::start_at(hostname, ns.to_string(), false, false)
    }

    fn start_with(hostname: &str, netns_vrfs: bool) -> Result<Frr, String> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let ns = format!("flb{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        Frr::start_at(hostname, ns, netns_vrfs, true)
    }

    fn start_at(hostname: &str, ns: String, netns_vrfs: bool, owns_ns: bool) -> Result<Frr, String> {
        let dir = if owns_ns {
            std::env::temp_dir().join(format!("ferrolb-frr-{ns}"))
        } else {
            std::env::temp_dir().join(format!("ferrolb-frr-{ns}-{hostname}"))
        };
        let install = install()?;
        for sub in ["run", "etc", "log"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| e.to_string())?;
        }
        let wrapper = install.write_wrapper(&dir, &dir.join("run"))?;
        let frr = Frr {
            ns: ns.clone(),
            hostname: hostname.to_string(),
            dir: dir.clone(),
            frr: install,
            wrapper,
            netns_vrfs,
            owns_ns,
        };
        // vtysh insists on the integrated config; the hostname line keeps show output stable.
        std::fs::write(
            dir.join("etc/vtysh.conf"),
            format!("service integrated-vtysh-config\nhostname {hostname}\n"),
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(dir.join("etc/frr.conf"), "").map_err(|e| e.to_string())?;
        sh(&format!("chown -R {} {}", install.frr_owner(), dir.display()))?;
        if owns_ns {
            sh(&format!("ip netns add {ns} && ip -n {ns} link set lo up"))?;
        }
        for d in install.daemons() {
            frr.spawn(d)?;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while frr.vtysh(&["-c", "show version"]).map(|o| !o.status.success()).unwrap_or(true) {
            if Instant::now() > deadline {
                return Err(format!("FRR in {ns} did not answer vtysh within 10s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(frr)
    }

    pub fn vtysh(&self, args: &[&str]) -> Result<Output, String> {
        let v = self.agent_vtysh();
        Command::new(&v.program)
            .args(&v.args)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("vtysh: {e}"))
    }

    /// The FRR this instance runs.
    pub fn install(&self) -> &'static FrrInstall {
        self.frr
    }

    /// How frr-agent (and anything else) runs this instance's vtysh.
    pub fn agent_vtysh(&self) -> Vtysh {
        let d = |s: &str| self.dir.join(s).display().to_string();
        let mut args = vec!["--vty_socket".into(), d("run"), "--config_dir".into(), d("etc")];
        match &self.wrapper {
            Some(w) => {
                args.insert(0, "/usr/bin/vtysh".into());
                Vtysh { program: w.clone(), args }
            }
            None => Vtysh { program: "vtysh".into(), args },
        }
    }

    /// This instance's vtysh behind a shell script `name` that runs `shell` first (the command
    /// line in "$@"; it may exit instead): for counting the agent's calls or failing some.
    pub fn wrapped_vtysh(&self, name: &str, shell: &str) -> Vtysh {
        use std::os::unix::fs::PermissionsExt;
        let real = self.agent_vtysh();
        let script = format!("#!/bin/sh\n{shell}\nexec {} \"$@\"\n", real.program.display());
        let path = self.file(name, &script);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Vtysh { program: path, args: real.args }
    }

    /// The command line prefix that runs one of this FRR's programs for this instance.
    pub fn exec_prefix(&self) -> String {
        self.wrapper.as_ref().map(|w| format!("{} ", w.display())).unwrap_or_default()
    }

    /// Kills one daemon and starts it again with no configuration, as a crash would leave it.
    pub fn restart_daemon(&self, daemon: &str) -> Result<(), String> {
        let run = self.dir.join("run");
        let pid = std::fs::read_to_string(run.join(format!("{daemon}.pid"))).map_err(|e| e.to_string())?;
        sh(&format!("kill -9 {}", pid.trim()))?;
        std::thread::sleep(Duration::from_millis(200));
        self.spawn(daemon)?;
        wait_for(Duration::from_secs(10), || {
            self.vtysh(&["-c", "show bgp summary"]).is_ok_and(|o| o.status.success())
        })
        .map(|_| ())
        .ok_or_else(|| format!("{daemon} did not come back"))
    }

    /// Kills one daemon, as a crash would, and leaves it down.
    pub fn stop_daemon(&self, daemon: &str) -> Result<(), String> {
        let file = self.dir.join("run").join(format!("{daemon}.pid"));
        let pid = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
        sh(&format!("kill -9 {}", pid.trim()))?;
        let gone = wait_for(Duration::from_secs(10), || {
            !std::path::Path::new(&format!("/proc/{}", pid.trim())).exists()
        });
        let _ = std::fs::remove_file(file);
        gone.map(|_| ()).ok_or_else(|| format!("{daemon} did not stop"))
    }

    /// Starts a daemon stopped with [`Frr::stop_daemon`], with no configuration.
    pub fn start_daemon(&self, daemon: &str) -> Result<(), String> {
        self.spawn(daemon)
    }

    fn spawn(&self, daemon: &str) -> Result<(), String> {
        let run = self.dir.join("run");
        let log = self.dir.join("log");
        let mut extra = Vec::new();
        // Options differ by version (FRR 10: no --bfdctl, staticd and mgmtd take no -f): pass
        // only what this daemon lists.
        if self.frr.accepts(daemon, "--config_file") {
            extra.push("-f /dev/null".to_string());
        }
        if daemon == "bfdd" && self.frr.accepts(daemon, "--bfdctl") {
            extra.push(format!("--bfdctl {}/bfdd.sock", run.display()));
        }
        if daemon == "zebra" && self.netns_vrfs {
            extra.push("-n".into());
        }
        if daemon != "mgmtd" {
            extra.push(format!("-z {}/zserv.api", run.display()));
        }
        // A daemonized FRR 10 keeps the stdout and stderr it was given: hand it a file, never
        // the pipe this harness reads (it would wait for EOF for as long as the daemon lives).
        sh(&format!(
            "ip netns exec {ns} unshare --uts sh -c 'hostname {host}; exec {prefix}{FRR_LIB}/{daemon} -d -F traditional \
             -A 127.0.0.1 -P 0 --vty_socket {run} -i {run}/{daemon}.pid --log file:{log}/{daemon}.log {extra}' \
             </dev/null >>{log}/{daemon}.out 2>&1 || {{ cat {log}/{daemon}.out >&2; exit 1; }}",
            ns = self.ns,
            host = self.hostname,
            prefix = self.exec_prefix(),
            run = run.display(),
            log = log.display(),
            extra = extra.join(" "),
        ))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs a show command and parses its JSON.
    /// A show command's JSON, asked of the one daemon that answers it where that is clear
    /// (BGP, BFD): tests poll while frr-agent applies, and a vtysh that also connects to FRR
    /// 9.0-10.3's mgmtd makes it forget the commit in flight when it exits (see
    /// `frr_sidecar::apply::Vtysh::show_in`).
    pub fn json(&self, command: &str) -> serde_json::Value {
        let daemon = if command.starts_with("show bgp") || command.starts_with("show ip bgp") {
            Some("bgpd")
        } else if command.starts_with("show bfd") {
            Some("bfdd")
        } else {
            None
        };
        let out = match daemon {
            Some(d) => self.vtysh(&["-d", d, "-c", command]),
            None => self.vtysh(&["-c", command]),
        };
        serde_json::from_slice(&out.unwrap().stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Applies config lines with `vtysh -f` (for routers the test plays itself).
    pub fn configure(&self, text: &str) {
        let f = self.file("manual.conf", text);
        let out = self.vtysh(&["-f", f.to_str().unwrap()]).unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    }

    /// Writes `text` to a file in the instance's directory and returns its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `show running-config` without the banner, `!` separators and lines ferrolb never owns.
    /// Every daemon's part: read it once an Apply is over, not in a loop beside one
    /// ([`Frr::bgpd_config`]).
    pub fn running_config(&self) -> String {
        let out = self.vtysh(&["-c", "show running-config"]).unwrap();
        canonical(&String::from_utf8_lossy(&out.stdout))
    }

    /// bgpd's running configuration alone, as [`Frr::running_config`]: safe to poll while
    /// frr-agent applies (no vty on mgmtd, see [`Frr::json`]).
    pub fn bgpd_config(&self) -> String {
        let out = self.vtysh(&["-d", "bgpd", "-c", "show running-config"]).unwrap();
        canonical(&String::from_utf8_lossy(&out.stdout))
    }
}

/// Joins two instances with a veth pair named eth0 on both sides, with the given addresses.
pub fn link(a: &Frr, b: &Frr, a_addrs: &[&str], b_addrs: &[&str]) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let (va, vb) =
        (format!("fl{}a{n}", std::process::id() % 100000), format!("fl{}b{n}", std::process::id() % 100000));
    let mut cmds = vec![
        format!("ip link add {va} type veth peer name {vb}"),
        format!("ip link set {va} netns {} name eth0", a.ns),
        format!("ip link set {vb} netns {} name eth0", b.ns),
    ];
    for (ns, addrs) in [(&a.ns, a_addrs), (&b.ns, b_addrs)] {
        // No DAD and keep addresses on link down: bgpd needs its v6 address at once.
        cmds.push(format!("ip netns exec {ns} sysctl -qw net.ipv6.conf.eth0.accept_dad=0 net.ipv6.conf.eth0.keep_addr_on_down=1"));
        for addr in addrs.iter() {
            let nodad = if addr.contains(':') { " nodad" } else { "" };
            cmds.push(format!("ip -n {ns} addr add {addr} dev eth0{nodad}"));
        }
        cmds.push(format!("ip -n {ns} link set eth0 up"));
    }
    for c in cmds {
        sh(&c).unwrap();
    }
}

/// Polls `check` every 20 ms until it holds or `timeout` passes; returns how long it took.
pub fn wait_for(timeout: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Drops what `show running-config` adds around a configuration: the banner, separators and the
/// lines zebra and vtysh own (forwarding, integrated config).
pub fn canonical(text: &str) -> String {
    text.lines()
        .filter(|l| {
            let t = l.trim();
            !(t.is_empty()
                || t == "!"
                || t == "end"
                || t.starts_with("Building configuration")
                || t.starts_with("Current configuration")
                || t.starts_with("frr version")
                || t.ends_with("ip forwarding")
                || t.ends_with("ipv6 forwarding")
                || t == "service integrated-vtysh-config")
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

impl Drop for Frr {
    fn drop(&mut self) {
        let run = self.dir.join("run");
        for d in self.frr.daemons() {
            if let Ok(pid) = std::fs::read_to_string(run.join(format!("{d}.pid"))) {
                let _ = Command::new("kill").arg("-9").arg(pid.trim()).status();
            }
        }
        // Anything else left in the namespace, then the namespace and files.
        if self.owns_ns {
            let _ = sh(&format!(
                "ip netns pids {ns} 2>/dev/null | xargs -r kill -9; ip netns del {ns}",
                ns = self.ns
            ));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sh(cmd: &str) -> Result<(), String> {
    let out = Command::new("sh").args(["-c", cmd]).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}
