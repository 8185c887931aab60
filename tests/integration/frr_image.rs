//! The FRR sidecar image's entrypoint (`frr-sidecar/image/docker-start`) on Debian's FRR (the
//! host's, or the root filesystem `FERROLB_FRR_ROOT` names, chrooted into as the image's own
//! root), in a network and mount namespace of its own standing in for the container: the
//! daemons come up under watchfrr, nothing listens beyond loopback, frr-agent applies through
//! them, a killed bgpd comes back, and SIGTERM stops everything.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::fabric::{Netns, Running};
use crate::frr_lab::wait_for;

/// Runs `args` inside the namespaces (and root directory) of process `pid`.
fn inside(pid: u32, args: &[&str]) -> std::process::Output {
    Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "-n", "-r", "-w", "--"])
        .args(args)
        .output()
        .unwrap()
}

/// The shell lines that turn a fresh mount namespace into the container's filesystem: the
/// image's root (the host's, or a root filesystem with the host's kernel views and the work
/// tree at their paths) with private /etc/frr, /var/run/frr and /var/lib/frr, as emptyDir
/// volumes give them. Returns them and the prefix that runs a program from that root.
fn container_filesystem(root: Option<&std::path::Path>) -> (String, String) {
    let Some(r) = root else {
        // The host has no /var/lib/frr, and creating one there would outlive the test: the
        // container gets a /var/lib of its own instead (nothing it runs reads the host's).
        let mounts = "mount -t tmpfs tmpfs /etc/frr && mount -t tmpfs tmpfs /var/run/frr && \
                      mount -t tmpfs tmpfs /var/lib && mkdir -p /var/lib/frr";
        return (mounts.to_string(), String::new());
    };
    let (r, repo) = (r.display(), crate::repo_root().display().to_string());
    let mounts = format!(
        "mount --bind {r} {r} && for d in /proc /sys /dev /tmp; do mount --rbind $d {r}$d; done && \
         mkdir -p {r}{repo} && mount --bind {repo} {r}{repo} && mount -t tmpfs tmpfs {r}/run && \
         mkdir -p {r}/run/frr {r}/etc/frr {r}/var/lib/frr && mount -t tmpfs tmpfs {r}/etc/frr && \
         mount -t tmpfs tmpfs {r}/var/lib/frr"
    );
    (mounts, format!("chroot {r} "))
}

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

struct Reaper(String);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ =
            Command::new("sh").args(["-c", &format!("ip netns pids {} | xargs -r kill -9", self.0)]).status();
    }
}

/// The entrypoint started in `ns` as a container runtime would start it, once its daemons are up.
fn start_container(ns: &Netns) -> Running {
    let script = crate::repo_root().join("frr-sidecar/image/docker-start");
    let frr = crate::frr_lab::install().expect("checked by require_frr");
    let (mounts, prefix) = container_filesystem(frr.root.as_deref());
    let boot = format!("{mounts} && exec {prefix}{}", script.display());
    // ip netns exec, unshare and sh all exec: the child's pid ends as the entrypoint's.
    let container = Running(
        Command::new("ip")
            .args(["netns", "exec", &ns.0, "unshare", "-m", "--propagation", "private", "sh", "-c", &boot])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = container.0.id();
    let up = wait_for(Duration::from_secs(20), || {
        let o = inside(pid, &["vtysh", "-c", "show daemons"]);
        let t = text(&o);
        o.status.success() && ["zebra", "bgpd", "bfdd", "staticd"].iter().all(|d| t.contains(d))
    });
    assert!(up.is_some(), "FRR never came up: {}", text(&inside(pid, &["vtysh", "-c", "show daemons"])));
    container
}

/// frr-agent in the container `pid` (as the chart runs it), with `conf` applied through it.
fn agent_applying(pid: u32, conf: &str) -> Running {
    let agent_bin = crate::ferrolb_bin().with_file_name("frr-agent");
    let state = "/var/lib/frr/agent";
    let _ = inside(pid, &["mkdir", "-p", state]);
    let agent = Running(
        Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-m", "-n", "-r", "-w", "--"])
            // Only the capability the chart grants the frr-agent container.
            .args(["setpriv", "--bounding-set=-all,+dac_override", "--inh-caps=-all", "--"])
            .arg(&agent_bin)
            .args([
                "serve",
                "--socket=/var/run/frr/agent.sock",
                "--vty-socket=/var/run/frr",
                "--config-dir=/etc/frr",
            ])
            .arg(format!("--state-dir={state}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let file = "/var/lib/frr/node.conf";
    let wrote = inside(pid, &["sh", "-c", &format!("cat > {file} <<'EOF'\n{conf}\nEOF")]);
    assert!(wrote.status.success(), "{}", text(&wrote));
    let mut said = String::new();
    let applied = wait_for(Duration::from_secs(20), || {
        let o =
            inside(pid, &[agent_bin.to_str().unwrap(), "apply", file, "--socket=/var/run/frr/agent.sock"]);
        said = text(&o);
        o.status.success()
    });
    assert!(applied.is_some(), "Apply failed: {said}");
    agent
}

fn missing_tools() -> bool {
    let agent_bin = crate::ferrolb_bin().with_file_name("frr-agent");
    let have = |tool: &str| Command::new(tool).arg("--version").output().is_ok();
    if !agent_bin.exists() || !have("nsenter") || !have("iptables") {
        println!(
            "skipped: needs nsenter, iptables and frr-agent built beside ferrolb (cargo build --workspace)"
        );
        return true;
    }
    false
}

#[test]
fn the_sidecar_entrypoint_runs_frr_for_the_agent() {
    require_frr!();
    if missing_tools() {
        return;
    }
    let agent_bin = crate::ferrolb_bin().with_file_name("frr-agent");
    let ns = Netns::new("img");
    // Dropped before `ns`: whatever still runs in the namespace (the daemons watchfrr forked,
    // when the test fails half-way) is killed before the namespace goes.
    let _reaper = Reaper(ns.0.clone());
    let frr = crate::frr_lab::install().expect("checked by require_frr");
    let mut container = start_container(&ns);
    let pid = container.0.id();
    println!("FRR {} from {:?}", frr.version, frr.root);

    // frr-agent beside it, with the chart's arguments, applying a configuration.
    let conf = "frr defaults datacenter\nrouter bgp 64512\n bgp router-id 192.0.2.11\n neighbor 192.0.2.1 remote-as 64500\n!\n";
    let agent = agent_applying(pid, conf);
    let running = text(&inside(pid, &["vtysh", "-c", "show running-config"]));
    assert!(
        running.contains("router bgp 64512") && running.contains("neighbor 192.0.2.1 remote-as 64500"),
        "{running}"
    );

    // Nothing FRR opens listens on the node's addresses (the speaker shares the host network):
    // no vty port, no mgmtd port, no BGP listener even with `router bgp` configured; sessions
    // are initiated by the node.
    let ss = inside(pid, &["ss", "-Hltnp"]);
    assert!(ss.status.success(), "ss: {}", text(&ss));
    let listening = text(&ss);
    let exposed: Vec<&str> = listening
        .lines()
        .filter(|l| ["zebra", "bgpd", "bfdd", "staticd", "mgmtd", "watchfrr"].iter().any(|d| l.contains(d)))
        .filter(|l| {
            let local = l.split_whitespace().nth(3).unwrap_or("");
            !(local.starts_with("127.0.0.1:") || local.starts_with("[::1]:"))
        })
        .collect();
    assert!(exposed.is_empty(), "FRR listens beyond loopback:\n{}", exposed.join("\n"));

    // The chart's probes: the FRR container's (by process, as it shares FRR's) and
    // frr-agent's (through the agent, which reaches the daemons by their vty sockets).
    let probe_bin = agent_bin.to_str().unwrap();
    for probe in [
        &["probe", "--frr"][..],
        &["probe", "--frr", "--ready"],
        &["probe", "--ready", "--socket=/var/run/frr/agent.sock"],
    ] {
        let mut ready = String::new();
        // The agent's view of the daemons is at most one poll (1 s) old.
        let ok = wait_for(Duration::from_secs(5), || {
            let o = inside(pid, &[&[probe_bin][..], probe].concat());
            ready = text(&o);
            o.status.success()
        });
        assert!(ok.is_some(), "frr-agent {probe:?} failed: {ready}");
    }

    // watchfrr brings a dead bgpd back, and the agent restores the configuration into it. Until
    // then the FRR container is not ready, naming bgpd (probed before watchfrr can restart it).
    let killed = inside(
        pid,
        &[
            "sh",
            "-c",
            &format!(
                "p=$(cat /var/run/frr/bgpd.pid) && kill -9 $p && while grep -qv ') Z' /proc/$p/stat 2>/dev/null; do :; done; {probe_bin} probe --frr --ready; echo exit=$?"
            ),
        ],
    );
    let said = text(&killed);
    assert!(said.contains("exit=1") && said.contains("bgpd: process "), "{said}");
    assert!(
        text(&inside(pid, &[probe_bin, "probe", "--frr"])).contains("watchfrr up"),
        "watchfrr died with bgpd"
    );
    // bgpd alone, polled while frr-agent restores: a vtysh on mgmtd exiting during the
    // restore's commit makes FRR 10.3's mgmtd forget it (see `Frr::json`).
    let restored = wait_for(Duration::from_secs(30), || {
        text(&inside(pid, &["vtysh", "-d", "bgpd", "-c", "show running-config"])).contains("router bgp 64512")
    });
    assert!(restored.is_some(), "bgpd was not restarted and restored");
    let back = wait_for(Duration::from_secs(10), || {
        inside(pid, &[probe_bin, "probe", "--frr", "--ready"]).status.success()
    });
    assert!(back.is_some(), "{}", text(&inside(pid, &[probe_bin, "probe", "--frr", "--ready"])));

    // SIGTERM stops every daemon and the entrypoint exits.
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let mut status = None;
    let _ = wait_for(Duration::from_secs(20), || {
        status = container.0.try_wait().ok().flatten();
        status.is_some()
    });
    assert!(status.is_some_and(|s| s.success()), "the entrypoint did not stop cleanly: {status:?}");
    drop(agent);
    let left = Command::new("ip").args(["netns", "pids", &ns.0]).output().unwrap();
    let daemons: Vec<String> = String::from_utf8_lossy(&left.stdout)
        .lines()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok())
        .map(|c| c.trim().to_string())
        .filter(|c| ["zebra", "bgpd", "bfdd", "staticd", "mgmtd", "watchfrr"].contains(&c.as_str()))
        .collect();
    assert!(daemons.is_empty(), "FRR daemons left running after SIGTERM: {daemons:?}");
}

/// A speaker pod replaced while its BGPPeer has graceful restart and BFD, three times. The
/// stop: the FRR container stops bgpd first, so the ToR sees the session close gracefully and
/// keeps the node's routes as stale; BFD going down afterwards no longer resets an established
/// session (stopping every daemon at once, frrinit.sh's way, lost the routes one stop in four).
/// The successor: the ToR keeps the routes until the successor's session has sent them again,
/// and never resets it. The successor's BGP
/// connection is held back (TCP port 179 dropped in the node's namespace) until the ToR sees
/// BFD up, the order in which FRR alone fails every time: bgpd registers BFD before it knows the
/// connection's source and interface, registers it again once connected, and bfdd takes the
/// first session down, saying Down to the ToR, which resets the fresh session hard (Cease/BFD
/// Down) and flushes the stale routes (FRR 8.4 to 10.7: `pcn_free` in bfdd/ptm_adapter.c).
/// ferrolb renders a `bfd` peer for the session and frr-agent writes the neighbor's `bfd` lines
/// once the session is established (frr-sidecar/src/bfd_hold.rs). Without them, this test
/// fails on the first stop, 4.1 s after the successor started.
#[test]
fn a_successor_container_takes_over_the_stale_routes_at_a_bfd_peer() {
    require_frr!();
    if missing_tools() {
        return;
    }
    bfd_graceful_restart_cycles();
}

/// The ToR's bgpd and bfdd logs, for a failure's message.
fn tor_logs(tor: &crate::frr_lab::Frr) -> String {
    ["bgpd", "bfdd"]
        .iter()
        .map(|d| std::fs::read_to_string(tor.dir().join(format!("log/{d}.log"))).unwrap_or_default())
        .collect()
}

/// Three stops of a container announcing web's IP with graceful restart and BFD, each with a
/// successor container.
fn bfd_graceful_restart_cycles() {
    use crate::graceful_restart::{TOR, at_tor, manifest};
    let plan = crate::fabric::plan_node(&manifest(true, true), "node1");
    let prefix = format!("{}/32", plan.ips_of("shop/web")[0]);
    for stop in 1..=3 {
        let tor = crate::frr_lab::Frr::start("tor").unwrap();
        let ns = Netns::new("imgr");
        let _reaper = Reaper(ns.0.clone());
        crate::fabric::wire(&ns.0, "eth0", &["192.0.2.11/24"], &tor.ns, "eth0", &["192.0.2.1/24"]);
        tor.configure(&format!("{TOR} neighbor 192.0.2.11 bfd\n bgp log-neighbor-changes\n"));
        let mut container = start_container(&ns);
        let pid = container.0.id();
        let agent = agent_applying(pid, &plan.frr);
        let bfd_up = || {
            tor.json("show bfd peers json").as_array().is_some_and(|p| p.iter().any(|p| p["status"] == "up"))
        };
        let up = wait_for(Duration::from_secs(30), || at_tor(&tor, &prefix) && bfd_up());
        assert!(up.is_some(), "{prefix} (and BFD) never up at the ToR:\n{}", plan.frr);

        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_secs(6) {
            assert!(
                at_tor(&tor, &prefix),
                "stop {stop}: the ToR dropped {prefix} after {:?} ({})\n{}",
                t.elapsed(),
                tor.json("show bgp neighbors 192.0.2.11 json")["192.0.2.11"]["lastResetDueTo"],
                tor_logs(&tor)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let path = &tor.json(&format!("show bgp ipv4 unicast {prefix} json"))["paths"][0];
        assert_eq!(path["stale"], true, "stop {stop}: the kept route is not stale: {path}");
        assert!(!bfd_up(), "BFD should be down with the node's FRR stopped");
        let exited = wait_for(Duration::from_secs(20), || container.0.try_wait().ok().flatten().is_some());
        assert!(exited.is_some(), "the entrypoint did not exit on SIGTERM");

        // The successor: a new container, the same configuration. The route stays all along
        // and is fresh (not stale) once the new session is up.
        drop(agent);
        let firewall = |op: &str| {
            for chain in ["OUTPUT", "INPUT"] {
                let port = if chain == "OUTPUT" { "--dport" } else { "--sport" };
                let ok = Command::new("ip")
                    .args([
                        "netns", "exec", &ns.0, "iptables", op, chain, "-p", "tcp", port, "179", "-j", "DROP",
                    ])
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "iptables {op} {chain} in {}", ns.0);
            }
        };
        firewall("-A");
        let container = start_container(&ns);
        let pid = container.0.id();
        let _agent = agent_applying(pid, &plan.frr);
        let t = std::time::Instant::now();
        let mut fresh = None;
        let mut held_back = true;
        while t.elapsed() < Duration::from_secs(16) {
            if held_back && (bfd_up() || t.elapsed() > Duration::from_secs(8)) {
                assert!(bfd_up(), "stop {stop}: BFD never came up with the successor's BGP held back");
                println!("stop {stop}: BFD up at the ToR {:?} after the successor started", t.elapsed());
                firewall("-D");
                held_back = false;
            }
            let n = &tor.json("show bgp neighbors 192.0.2.11 json")["192.0.2.11"];
            assert!(
                at_tor(&tor, &prefix),
                "stop {stop}: the ToR dropped {prefix} {:?} after the successor started ({} {})\n{}",
                t.elapsed(),
                n["bgpState"],
                n["lastResetDueTo"],
                tor_logs(&tor)
            );
            let path = &tor.json(&format!("show bgp ipv4 unicast {prefix} json"))["paths"][0];
            if fresh.is_none() && path["stale"] != true && n["bgpState"] == "Established" {
                fresh = Some(t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(fresh.is_some(), "stop {stop}: the successor's route never replaced the stale one");
        let tor_side = &tor.json("show bgp neighbors 192.0.2.11 json")["192.0.2.11"];
        assert_eq!(
            tor_side["peerBfdInfo"]["status"], "Up",
            "stop {stop}: BFD does not protect the session: {tor_side}"
        );
        let node_side =
            text(&inside(pid, &["vtysh", "-d", "bgpd", "-c", "show bgp neighbors 192.0.2.1 json"]));
        let node_side: serde_json::Value = serde_json::from_str(&node_side).unwrap();
        assert_eq!(
            node_side["192.0.2.1"]["peerBfdInfo"]["status"], "Up",
            "stop {stop}: the successor's bgpd never took BFD on: {node_side}"
        );
        println!("stop {stop}: the successor's route fresh at the ToR {fresh:?} after it started");
    }
    println!(
        "BFD + graceful restart: 3 of 3 container stops kept {prefix} (stale) at the ToR for the 6 s watched"
    );
}
