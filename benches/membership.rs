//! Layer 2 membership at 100 nodes: N real `Membership` instances (foca, sealed with a shared
//! key as with `speaker.memberlist.secretName`, real UDP sockets, every other speaker as a seed
//! as the speaker pods give them) in one process, inside a network namespace this benchmark
//! creates, 25 and 100 of them in the same run. It measures how long they take to all see each
//! other; the steady membership traffic per speaker and any speaker declared down while alive;
//! then kills speakers one at a time (dropped: a crash, nothing said; or a clean leave) and times,
//! on every survivor, until the killed one leaves its live set, and until the runner-up of the
//! layer 2 election for the killed speaker's IP sees itself elected.
//!
//!     cargo bench --bench membership             # 25 and 100 speakers, 18 kills each (needs root)
//!     cargo bench --bench membership -- --quick  # 10 and 25 speakers, 4 kills each
//!
//! `FERROLB_MEMBERS=3,25,100` picks the sizes; `FERROLB_MEMBERS_VERBOSE=1` prints each kill and
//! which other speakers any survivor saw go. Prints one `membership speakers=…` line per size
//! (failover: until the last survivor stops seeing the killed speaker; takeover: until its
//! runner-up for the followed IP does; packets and UDP payload bytes each speaker sends per
//! second while nobody comes or goes; false downs: live speakers some survivor saw go) and
//! `membership scaling …`, the traffic of the largest size over the smallest.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ferrolb::config::{self, Config};
use ferrolb::l2::election::elect;
use ferrolb::l2::membership::{Membership, MembershipSettings, Traffic};
use ferrolb::plan::Inputs;
use ferrolb::topology::{Endpoints, NodeInfo, ServiceState};

const PORT: u16 = 7946;
const SECRET: &[u8] = b"membership benchmark shared secret";
/// Service IPs whose layer 2 owners the benchmark follows.
const SERVICES: usize = 32;

/// Moves this process into a network namespace of its own with its loopback up and
/// 198.18.0.0/16 local on it. Called before any other thread exists: threads inherit the
/// namespace of the thread that starts them, so every socket the benchmark opens lives there,
/// and the namespace goes with the process.
fn private_network() -> Result<(), String> {
    let host = std::fs::read_link("/proc/self/ns/net").map_err(|e| format!("/proc/self/ns/net: {e}"))?;
    // SAFETY: unshare takes no pointers; it changes only this (so far the only) thread's namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error()));
    }
    let ours = std::fs::read_link("/proc/thread-self/ns/net").map_err(|e| e.to_string())?;
    if ours == host {
        return Err("still in the host's network namespace after unshare".into());
    }
    for args in [&["link", "set", "lo", "up"][..], &["addr", "add", "198.18.0.1/16", "dev", "lo"]] {
        let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
        if !out.status.success() {
            return Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)));
        }
    }
    Ok(())
}

fn node(i: usize) -> String {
    format!("node-{i:03}")
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, (i / 250) as u8, (i % 250 + 1) as u8)), PORT)
}

fn settings(i: usize, n: usize) -> MembershipSettings {
    let mut s = MembershipSettings::new(node(i), addr(i));
    s.seeds = (0..n).filter(|&j| j != i).map(|j| (node(j), addr(j))).collect();
    s.keys = vec![SECRET.to_vec()];
    s
}

/// Starts speaker `i`, retrying while the socket of the instance it replaces is still closing.
async fn start(i: usize, n: usize) -> Membership {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Membership::start(settings(i, n)).await {
            Ok(m) => {
                if verbose() {
                    tokio::spawn(monitor(m.view()));
                }
                return m;
            }
            Err(e) if Instant::now() > deadline => panic!("{e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The layer 2 setup whose election the benchmark follows: one pool, one L2Advertisement,
/// `SERVICES` Services, every node eligible.
struct Election {
    config: Config,
    services: Vec<ServiceState>,
    nodes: Vec<NodeInfo>,
    endpoints: Endpoints,
}

impl Election {
    fn new(n: usize) -> Election {
        let yaml = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: lan}\n\
                    spec: {addresses: [198.51.100.0/24]}\n---\n\
                    apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: lan}\n";
        let mut inputs = Inputs::new("metallb-system");
        inputs.add_yaml("bench", yaml).expect("the benchmark's manifest parses");
        let config = config::parse(&inputs.objects).result.expect("the benchmark's configuration is valid");
        let services = (0..SERVICES)
            .map(|k| ServiceState {
                key: format!("bench/svc-{k}"),
                ips: vec![IpAddr::V4(Ipv4Addr::new(198, 51, 100, k as u8 + 1))],
                labels: Default::default(),
                local_traffic: false,
                shares_ip: false,
            })
            .collect();
        let nodes = (0..n).map(|i| NodeInfo::named(&node(i))).collect();
        Election { config, services, nodes, endpoints: Endpoints::assume_everywhere() }
    }

    /// Candidates for Service `k`, best first, as a speaker seeing `live` computes them.
    fn order(&self, k: usize, live: &BTreeSet<String>) -> Vec<String> {
        elect(&self.config, &self.services[k], &self.nodes, live, &self.endpoints).unwrap_or_default()
    }

    fn winners(&self, live: &BTreeSet<String>) -> Vec<String> {
        (0..SERVICES).map(|k| self.order(k, live).swap_remove(0)).collect()
    }
}

struct Cluster {
    n: usize,
    speakers: Vec<Option<Membership>>,
}

impl Cluster {
    fn live(&self, i: usize) -> BTreeSet<String> {
        self.speakers[i].as_ref().map(|m| m.view().borrow().live.clone()).unwrap_or_default()
    }

    fn traffic(&self) -> Vec<Arc<Traffic>> {
        self.speakers.iter().flatten().map(Membership::traffic).collect()
    }

    /// Speakers declared down, summed over the running speakers other than `except`.
    fn downs(&self, except: Option<usize>) -> u64 {
        let running = self.speakers.iter().enumerate().filter(|(i, _)| Some(*i) != except);
        running.filter_map(|(_, m)| m.as_ref()).map(|m| m.traffic().downs.load(Ordering::Relaxed)).sum()
    }

    /// Waits until every running speaker sees all `n`; how long that took.
    async fn converged(&self, within: Duration) -> Option<Duration> {
        let since = Instant::now();
        while since.elapsed() < within {
            let whole =
                |m: &Option<Membership>| m.as_ref().is_some_and(|m| m.view().borrow().live.len() == self.n);
            if self.speakers.iter().all(whole) {
                return Some(since.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }
}

/// Counters of every speaker, `(packets sent, bytes sent, packets received)`.
fn sample(traffic: &[Arc<Traffic>]) -> Vec<(u64, u64, u64)> {
    traffic
        .iter()
        .map(|t| {
            (
                t.packets_sent.load(Ordering::Relaxed),
                t.bytes_sent.load(Ordering::Relaxed),
                t.packets_received.load(Ordering::Relaxed),
            )
        })
        .collect()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// How long after `since` the survivor whose view this is stops seeing `victim` (None: not
/// within 10 s).
async fn gone(
    mut view: tokio::sync::watch::Receiver<ferrolb::l2::membership::View>,
    victim: String,
    since: Instant,
) -> Option<Duration> {
    let deadline = since + Duration::from_secs(10);
    loop {
        if !view.borrow_and_update().live.contains(&victim) {
            return Some(since.elapsed());
        }
        match tokio::time::timeout_at(deadline.into(), view.changed()).await {
            Ok(Ok(())) => {}
            _ => return None,
        }
    }
}

/// Speakers that left some live set, and when: (when, node).
static DOWNS: std::sync::Mutex<Vec<(Instant, String)>> = std::sync::Mutex::new(Vec::new());

async fn monitor(mut view: tokio::sync::watch::Receiver<ferrolb::l2::membership::View>) {
    let mut last = view.borrow_and_update().live.clone();
    while view.changed().await.is_ok() {
        let now = view.borrow_and_update().live.clone();
        let mut downs = DOWNS.lock().unwrap();
        downs.extend(last.difference(&now).map(|n| (Instant::now(), n.clone())));
        last = now;
    }
}

/// The speakers other than `victim` that left a live set since `since`: node -> (how many
/// times, first after).
fn others_down(since: Instant, victim: &str) -> std::collections::BTreeMap<String, (usize, Duration)> {
    let mut out = std::collections::BTreeMap::new();
    for (at, node) in DOWNS.lock().unwrap().iter().filter(|(at, n)| *at >= since && n != victim) {
        let e = out.entry(node.clone()).or_insert((0, at.duration_since(since)));
        e.0 += 1;
    }
    out
}

/// `FERROLB_MEMBERS_VERBOSE=1`: one line per kill on stderr.
fn verbose() -> bool {
    std::env::var_os("FERROLB_MEMBERS_VERBOSE").is_some()
}

struct Figures {
    n: usize,
    converge_s: f64,
    join_packets: f64,
    packets_p50: f64,
    packets_p99: f64,
    bytes_p50: f64,
    received_p50: f64,
    false_downs: u64,
    join_false_downs: u64,
    trial_false_downs: i64,
    crash: Vec<f64>,
    leave: Vec<f64>,
    takeover: Vec<f64>,
    rejoin: Vec<f64>,
    /// Kills after which the survivors did not all elect the same owners, the runner-up for the
    /// killed speaker's IP.
    disagreements: usize,
}

async fn measure(n: usize, quick: bool) -> Figures {
    let election = Election::new(n);
    let started = Instant::now();
    let mut cluster = Cluster { n, speakers: Vec::new() };
    for i in 0..n {
        cluster.speakers.push(Some(start(i, n).await));
    }
    let converged = cluster.converged(Duration::from_secs(60)).await;
    let converge_s =
        converged.map(|_| started.elapsed().as_secs_f64()).expect("the speakers never all saw each other");
    let join = sample(&cluster.traffic());
    let join_packets = join.iter().map(|s| s.0 as f64).sum::<f64>() / n as f64;

    // Steady state: no speaker comes or goes. Let the join's news run out first (each update is
    // sent a bounded number of times).
    tokio::time::sleep(Duration::from_secs(if quick { 2 } else { 4 })).await;
    let window = Duration::from_secs(if quick { 3 } else { 10 });
    // Every speaker is starting: any down so far was a live speaker's.
    let join_false_downs = cluster.downs(None);
    let (downs, before, at) = (cluster.downs(None), sample(&cluster.traffic()), Instant::now());
    tokio::time::sleep(window).await;
    let (after, secs) = (sample(&cluster.traffic()), at.elapsed().as_secs_f64());
    if verbose() {
        eprintln!("  steady: downs {:?}", others_down(at, ""));
    }
    let false_downs = cluster.downs(None) - downs;
    let rate = |f: fn(&(u64, u64, u64)) -> u64| -> Vec<f64> {
        before.iter().zip(&after).map(|(b, a)| (f(a) - f(b)) as f64 / secs).collect()
    };
    let mut packets = rate(|s| s.0);
    let mut bytes = rate(|s| s.1);
    let mut received = rate(|s| s.2);

    let (crashes, leaves) = if quick { (2, 2) } else { (12, 6) };
    let mut figures = Figures {
        n,
        converge_s,
        join_packets,
        packets_p50: pct(&mut packets, 0.5),
        packets_p99: pct(&mut packets, 0.99),
        bytes_p50: pct(&mut bytes, 0.5),
        received_p50: pct(&mut received, 0.5),
        false_downs,
        join_false_downs,
        trial_false_downs: 0,
        crash: Vec::new(),
        leave: Vec::new(),
        takeover: Vec::new(),
        rejoin: Vec::new(),
        disagreements: 0,
    };
    for trial in 0..crashes + leaves {
        // The owner of one Service IP goes; its runner-up takes the IP over.
        let everyone = cluster.live(0);
        assert_eq!(everyone.len(), n, "trial {trial} started before the cluster was whole");
        let order = election.order(trial % SERVICES, &everyone);
        let (victim, heir) = (order[0].clone(), order[1].clone());
        let v: usize = victim[5..].parse().expect("a benchmark node name");
        let h: usize = heir[5..].parse().expect("a benchmark node name");
        let downs = cluster.downs(Some(v));
        let watchers: Vec<_> = (0..n)
            .filter(|&i| i != v)
            .map(|i| {
                let view = cluster.speakers[i].as_ref().map(Membership::view).expect("running");
                (i, view)
            })
            .collect();
        let since = Instant::now();
        let tasks: Vec<_> = watchers
            .into_iter()
            .map(|(i, view)| (i, tokio::spawn(gone(view, victim.clone(), since))))
            .collect();
        let killed = cluster.speakers[v].take().expect("running");
        let crash = trial < crashes;
        if crash {
            drop(killed);
        } else {
            killed.leave().await;
        }
        let mut slowest = Duration::ZERO;
        let mut each = Vec::new();
        for (i, task) in tasks {
            let took = task.await.expect("watcher").unwrap_or_else(|| {
                panic!("trial {trial}: {} still sees {victim} 10 s after it went", node(i))
            });
            slowest = slowest.max(took);
            each.push(took.as_secs_f64() * 1000.0);
            if i == h {
                figures.takeover.push(took.as_secs_f64() * 1000.0);
            }
        }
        (if crash { &mut figures.crash } else { &mut figures.leave }).push(slowest.as_secs_f64() * 1000.0);
        // Every survivor elects the same owners, the runner-up among them, none of them the
        // killed speaker.
        let views: BTreeSet<BTreeSet<String>> = (0..n).filter(|&i| i != v).map(|i| cluster.live(i)).collect();
        let winners: BTreeSet<Vec<String>> = views.iter().map(|live| election.winners(live)).collect();
        let agreed =
            winners.len() == 1 && winners.iter().all(|w| w[trial % SERVICES] == heir && !w.contains(&victim));
        figures.disagreements += usize::from(!agreed);
        // Every survivor saw it go once; any other down is a live speaker declared down.
        let extra = (cluster.downs(Some(v)) - downs) as i64 - (n as i64 - 1);
        figures.trial_false_downs += extra;
        if verbose() {
            eprintln!(
                "  trial {trial} {} {victim}: survivors saw it go after first={:.0}ms p50={:.0}ms p90={:.0}ms last={:.0}ms, {extra} other downs {:?}",
                if crash { "crash" } else { "leave" },
                pct(&mut each, 0.0),
                pct(&mut each, 0.5),
                pct(&mut each, 0.9),
                pct(&mut each, 1.0),
                others_down(since, &victim),
            );
        }

        let back = Instant::now();
        cluster.speakers[v] = Some(start(v, n).await);
        cluster
            .converged(Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("trial {trial}: {victim} never rejoined"));
        figures.rejoin.push(back.elapsed().as_secs_f64());
        tokio::time::sleep(Duration::from_millis(if quick { 500 } else { 1000 })).await;
    }
    figures
}

fn main() {
    if let Err(why) = private_network() {
        println!("skipped: the membership benchmark needs a network namespace of its own (root): {why}");
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes: Vec<usize> = match std::env::var("FERROLB_MEMBERS") {
        Ok(v) => v
            .split(',')
            .map(|s| s.trim().parse().expect("FERROLB_MEMBERS: comma-separated numbers"))
            .collect(),
        Err(_) if quick => vec![10, 25],
        Err(_) => vec![25, 100],
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let mut all = Vec::new();
    for &n in &sizes {
        let f = runtime.block_on(measure(n, quick));
        let mut failover: Vec<f64> = f.crash.iter().chain(&f.leave).copied().collect();
        let (mut crash, mut leave, mut takeover, mut rejoin) =
            (f.crash.clone(), f.leave.clone(), f.takeover.clone(), f.rejoin.clone());
        println!(
            "membership speakers={n} converge_s={:.2} failover_p50_ms={:.0} failover_p99_ms={:.0} (n={}: crash p50={:.0} p99={:.0}, leave p50={:.0} p99={:.0}) \
             takeover_p50_ms={:.0} takeover_p99_ms={:.0} packets_per_s_per_speaker_p50={:.1} p99={:.1} \
             received_p50={:.1} bytes_per_s_per_speaker={:.0} join_packets_per_speaker={:.0} rejoin_p50_s={:.2} \
             false_downs={} false_downs_during_kills={} false_downs_while_joining={} election_disagreements={} load1={}",
            f.converge_s,
            pct(&mut failover, 0.5),
            pct(&mut failover, 0.99),
            failover.len(),
            pct(&mut crash, 0.5),
            pct(&mut crash, 0.99),
            pct(&mut leave, 0.5),
            pct(&mut leave, 0.99),
            pct(&mut takeover, 0.5),
            pct(&mut takeover, 0.99),
            f.packets_p50,
            f.packets_p99,
            f.received_p50,
            f.bytes_p50,
            f.join_packets,
            pct(&mut rejoin, 0.5),
            f.false_downs,
            f.trial_false_downs,
            f.join_false_downs,
            f.disagreements,
            std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split(' ').next().unwrap_or("?"),
        );
        all.push(f);
    }
    if let (Some(small), Some(large)) = (all.first(), all.last())
        && small.n != large.n
    {
        println!(
            "membership scaling speakers={}->{} packets_per_s_per_speaker x{:.2} bytes_per_s_per_speaker x{:.2} join_packets_per_speaker x{:.2}",
            small.n,
            large.n,
            large.packets_p50 / small.packets_p50,
            large.bytes_p50 / small.bytes_p50,
            large.join_packets / small.join_packets,
        );
    }
}
