//! Reload speed against real FRR: ferrolb's applier versus `frr-reload.py --reload` (MetalLB's
//! method) on the same node and the same files, in one run; and Apply -> route at the ToR.
//!
//!     cargo bench --bench reload            # 1, 100, 1,000, 10,000 prefixes (needs root + frr)
//!     cargo bench --bench reload -- --quick # 1 and 100
//!
//! Prints one line per case, `frr=<version> <case> ferrolb=<s> frr-reload=<s> ratio=<x>`, then
//! `frr=<version> apply_to_tor p50=<ms> p99=<ms>`, for the host's FRR or the root filesystem
//! `FERROLB_FRR_ROOT` names (whose own frr-reload.py is the comparison). frr-reload.py gets
//! FERROLB_FRR_RELOAD_LIMIT seconds per run (default 300); past that it is stopped and the line
//! says `>=`. FERROLB_RELOAD_CASES (e.g. `1000,10000`) picks the cases.

#[allow(dead_code)]
#[path = "../tests/integration/bgp_lab.rs"]
mod bgp_lab;
#[allow(dead_code)]
#[path = "../tests/integration/frr_lab.rs"]
mod frr_lab;
#[allow(dead_code)]
#[path = "../tests/integration/frr_root.rs"]
mod frr_root;

use std::process::Command;
use std::time::{Duration, Instant};

use bgp_lab::{Lab, node_config};
use frr_lab::wait_for;
use frr_sidecar::diff;

fn established(lab: &Lab) -> bool {
    lab.tor.json("show bgp neighbors 192.0.2.11 json")["192.0.2.11"]["bgpState"] == "Established"
}

/// Runs frr-reload.py of the node's FRR version on the node for `config`; (seconds, finished
/// within the limit).
fn frr_reload(lab: &Lab, config: &str, limit: Duration) -> (f64, bool) {
    let file = lab.node.file("reload.conf", config);
    let dir = lab.node.dir();
    let (etc, run) = (dir.join("etc"), dir.join("run"));
    let started = Instant::now();
    let prefix = lab.node.exec_prefix();
    let mut command = match prefix.trim() {
        "" => Command::new("/usr/bin/python3"),
        wrapper => {
            let mut c = Command::new(wrapper);
            c.arg("/usr/bin/python3");
            c
        }
    };
    let mut child = command
        .arg("/usr/lib/frr/frr-reload.py")
        .args(["--reload", "--overwrite", "--stdout", "--bindir", "/usr/bin"])
        .arg("--confdir")
        .arg(&etc)
        .arg("--rundir")
        .arg(&run)
        .arg("--vty_socket")
        .arg(&run)
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("frr-reload.py starts");
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return (started.elapsed().as_secs_f64(), true);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return (started.elapsed().as_secs_f64(), false);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn line(case: &str, ours: f64, theirs: (f64, bool)) {
    let ge = if theirs.1 { "" } else { ">=" };
    println!(
        "frr={} {case} ferrolb={ours:.3} frr-reload={ge}{:.3} ratio={ge}{:.0}x",
        version(),
        theirs.0,
        theirs.0 / ours
    );
}

/// The FRR version under test, as every line names it.
fn version() -> String {
    frr_lab::install().map(|f| f.label()).unwrap_or_default()
}

fn main() {
    if let Some(why) = frr_lab::unavailable() {
        println!("skipped: {why}");
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let limit = Duration::from_secs(
        std::env::var("FERROLB_FRR_RELOAD_LIMIT").ok().and_then(|v| v.parse().ok()).unwrap_or(300),
    );
    let cases: Vec<usize> = match std::env::var("FERROLB_RELOAD_CASES") {
        Ok(list) => list.split(',').filter_map(|c| c.trim().parse().ok()).collect(),
        Err(_) if quick => vec![1, 100],
        Err(_) => vec![1, 100, 1_000, 10_000],
    };
    let empty = node_config(0, "64500:100");
    for &n in &cases {
        let full = node_config(n, "64500:100");
        let mut lab = Lab::start();
        lab.applier.apply(&empty, 1).unwrap();
        assert!(wait_for(Duration::from_secs(30), || established(&lab)).is_some(), "session never came up");

        let t = Instant::now();
        lab.applier.apply(&full, 2).unwrap();
        let ours_add = t.elapsed().as_secs_f64();
        assert!(wait_for(Duration::from_secs(120), || lab.received() == n as u64).is_some());
        let t = Instant::now();
        lab.applier.apply(&empty, 3).unwrap();
        let ours_del = t.elapsed().as_secs_f64();
        assert!(wait_for(Duration::from_secs(120), || lab.received() == 0).is_some());

        // The same two transitions through frr-reload.py, on the same node.
        let theirs_add = frr_reload(&lab, &full, limit);
        let _ = wait_for(Duration::from_secs(120), || lab.received() == n as u64);
        let theirs_del = frr_reload(&lab, &empty, limit);
        line(&format!("add-{n}"), ours_add, theirs_add);
        line(&format!("withdraw-{n}"), ours_del, theirs_del);
    }

    // Apply -> the route in the ToR's kernel, one new prefix at a time on top of 100, measured
    // with `ip monitor` (no polling). Interleaved with the same step done by FRR alone (the
    // change script sent with one `vtysh -f`, no validation, no bookkeeping): the floor that
    // bgpd's fixed 50 ms route-processing hold on each of the two routers sets.
    let mut lab = Lab::start();
    lab.applier.apply(&node_config(100, "64500:100"), 1).unwrap();
    assert!(wait_for(Duration::from_secs(30), || lab.received() == 100).is_some());
    let fib = FibWatch::start(&lab.tor.ns);
    let (mut samples, mut apply_ms, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    let mut running = node_config(100, "64500:100");
    for i in 0..40u64 {
        let n = 101 + i as usize;
        let conf = node_config(n, "64500:100");
        if i % 2 == 0 {
            let t = Instant::now();
            lab.applier.apply(&conf, 2 + i).unwrap();
            apply_ms.push(ms(t.elapsed()));
            samples.push(ms(fib.wait(&format!("198.18.0.{}", n - 1), t)));
        } else {
            let script =
                diff::diff(&lab.applier.desired(&running).unwrap(), &lab.applier.desired(&conf).unwrap());
            let file = lab.node.file("floor.conf", &script.text);
            let t = Instant::now();
            let out = lab.node.vtysh(&["-f", file.to_str().unwrap()]).unwrap();
            assert!(out.status.success());
            floor.push(ms(fib.wait(&format!("198.18.0.{}", n - 1), t)));
            // Bring the applier's view along (it re-sends lines FRR already has: a no-op there),
            // then let it settle: the next sample must not start behind this call's vtysh runs
            // (nor the dry run it starts for the next change, which a change arriving this soon
            // after the last Apply would wait for).
            lab.applier.apply(&conf, 2 + i).unwrap();
            std::thread::sleep(Duration::from_millis(300));
        }
        running = conf;
    }
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    };
    let (p50, p99, a50, f50) =
        (pct(&mut samples, 0.5), pct(&mut samples, 0.99), pct(&mut apply_ms, 0.5), pct(&mut floor, 0.5));
    println!(
        "frr={} apply_to_tor p50={p50:.1}ms p99={p99:.1}ms (n={}; the Apply call p50={a50:.1}ms; FRR alone, vtysh -f to the ToR's FIB, p50={f50:.1}ms)",
        version(),
        samples.len()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Routes as the ToR's kernel learns them, from `ip monitor route`, each with when it arrived.
struct FibWatch {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<(Instant, String)>,
}

impl FibWatch {
    fn start(ns: &str) -> FibWatch {
        let mut child = Command::new("ip")
            .args(["-n", ns, "monitor", "route"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("ip monitor starts");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(out)).map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        // Let the monitor subscribe before anything changes.
        std::thread::sleep(Duration::from_millis(200));
        FibWatch { child, lines }
    }

    /// Time from `since` until the kernel got a route for `ip`.
    fn wait(&self, ip: &str, since: Instant) -> Duration {
        loop {
            let (at, line) =
                self.lines.recv_timeout(Duration::from_secs(10)).expect("route never reached the ToR");
            if line.starts_with(&format!("{ip} ")) {
                return at - since;
            }
        }
    }
}

impl Drop for FibWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
