//! The FRR sidecar image's entrypoint (`frr-sidecar/image/docker-start`) on Debian's FRR, in a
//! network and mount namespace of its own standing in for the container: the daemons come up
//! under watchfrr, frr-agent applies through them, a killed bgpd comes back, and SIGTERM stops
//! everything.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::fabric::{Netns, Running};
use crate::frr_lab::wait_for;

/// Runs `args` inside the namespaces of process `pid`.
fn inside(pid: u32, args: &[&str]) -> std::process::Output {
    Command::new("nsenter").args(["-t", &pid.to_string(), "-m", "-n", "--"]).args(args).output().unwrap()
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

#[test]
fn the_sidecar_entrypoint_runs_frr_for_the_agent() {
    require_frr!();
    let agent_bin = crate::ferrolb_bin().with_file_name("frr-agent");
    if !agent_bin.exists() || Command::new("nsenter").arg("--version").output().is_err() {
        println!("skipped: needs nsenter and frr-agent built beside ferrolb (cargo build --workspace)");
        return;
    }
    let ns = Netns::new("img");
    // Dropped before `ns`: whatever still runs in the namespace (the daemons watchfrr forked,
    // when the test fails half-way) is killed before the namespace goes.
    let _reaper = Reaper(ns.0.clone());
    let script = crate::repo_root().join("frr-sidecar/image/docker-start");
    // The container's private /etc/frr, /var/run/frr and state, as emptyDir volumes give it.
    let boot = format!(
        "mount -t tmpfs tmpfs /etc/frr && mount -t tmpfs tmpfs /var/run/frr && mkdir -p /var/lib/frr && \
         mount -t tmpfs tmpfs /var/lib/frr && exec ip netns exec {} {}",
        ns.0,
        script.display()
    );
    let mut container = Running(
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &boot])
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

    // frr-agent beside it, with the chart's arguments, applying a configuration.
    let state = "/var/lib/frr/agent";
    let agent = Running(
        Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-m", "-n", "--"])
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
    let conf = "frr defaults datacenter\nrouter bgp 64512\n bgp router-id 192.0.2.11\n neighbor 192.0.2.1 remote-as 64500\n!\n";
    let file = "/var/lib/frr/desired.conf";
    let _ = inside(pid, &["mkdir", "-p", state]);
    let wrote = inside(pid, &["sh", "-c", &format!("printf '{}' > {file}", conf.replace('\n', "\\n"))]);
    assert!(wrote.status.success(), "{}", text(&wrote));
    let applied = wait_for(Duration::from_secs(10), || {
        let o =
            inside(pid, &[agent_bin.to_str().unwrap(), "apply", file, "--socket=/var/run/frr/agent.sock"]);
        o.status.success()
    });
    assert!(applied.is_some(), "Apply failed");
    let running = text(&inside(pid, &["vtysh", "-c", "show running-config"]));
    assert!(
        running.contains("router bgp 64512") && running.contains("neighbor 192.0.2.1 remote-as 64500"),
        "{running}"
    );

    // watchfrr brings a dead bgpd back, and the agent restores the configuration into it.
    let killed = inside(pid, &["sh", "-c", "kill -9 $(cat /var/run/frr/bgpd.pid)"]);
    assert!(killed.status.success(), "{}", text(&killed));
    let restored = wait_for(Duration::from_secs(30), || {
        text(&inside(pid, &["vtysh", "-c", "show running-config"])).contains("router bgp 64512")
    });
    assert!(restored.is_some(), "bgpd was not restarted and restored");

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
        .filter(|c| ["zebra", "bgpd", "bfdd", "staticd", "watchfrr"].contains(&c.as_str()))
        .collect();
    assert!(daemons.is_empty(), "FRR daemons left running after SIGTERM: {daemons:?}");
}
