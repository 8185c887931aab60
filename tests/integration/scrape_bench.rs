//! What a scrape of MetalLB's BGP and BFD metrics costs with many peers: the speaker formats
//! its copy of frr-agent's status, so scrapes never run vtysh (counted through a wrapper) and
//! their latency does not depend on FRR. The agent's own reading of FRR is timed beside it.
//! `cargo test --test integration -- --ignored scrape_bench` gives the figures for 100 peers.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use frr_sidecar::status;

use crate::agent_process::AgentProcess;
use crate::bgp_lab::Lab;
use crate::frr_lab::wait_for;
use crate::speaker_offline::OfflineSpeaker;

/// The ToR, and `peers - 1` neighbors on the link that never answer, all with BFD.
fn manifests(peers: usize) -> String {
    let mut yaml = String::from(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: pool}\nspec: {addresses: [198.51.100.0/28]}\n\
         ---\napiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: slow}\nspec: {receiveInterval: 1000, transmitInterval: 1000}\n\
         ---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: ad}\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {type: LoadBalancer}\n",
    );
    for i in 0..peers {
        // 192.0.2.1 is the ToR; 192.0.2.100.. are on the link and silent.
        let address = if i == 0 { "192.0.2.1".to_string() } else { format!("192.0.2.{}", 99 + i) };
        yaml.push_str(&format!(
            "---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: p{i}}}\n\
             spec: {{myASN: 64512, peerASN: 64500, peerAddress: {address}, connectTime: 5s, routerID: 192.0.2.11, bfdProfile: slow}}\n"
        ));
    }
    yaml
}

/// One GET /metrics over a fresh connection: (seconds, body length).
fn scrape_once(at: &str) -> (f64, usize) {
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(at).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut body = Vec::new();
    s.read_to_end(&mut body).unwrap();
    (t.elapsed().as_secs_f64(), body.len())
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn calls(file: &std::path::Path) -> usize {
    std::fs::read_to_string(file).map(|t| t.lines().count()).unwrap_or(0)
}

fn run(peers: usize, scrapes: usize) {
    let lab = Lab::start();
    // The ToR answers BFD too: FRR 10.3 holds a BGP session down while its BFD session is.
    lab.tor.configure(crate::speaker_metrics::TOR_BFD);
    // Every vtysh call the agent makes leaves a line in `counted`.
    let counted = lab.node.dir().join("vtysh-calls");
    let vtysh = lab.node.wrapped_vtysh("counting-vtysh", &format!("echo \"$*\" >> {}", counted.display()));
    let poll = Duration::from_secs(1);
    let agent = AgentProcess::start_with(&lab.node, "agent", vtysh, poll);
    let at = format!("127.0.0.1:{}", crate::kube_lab::free_port());
    let files = [("all.yaml".to_string(), manifests(peers))];
    let speaker = OfflineSpeaker::start(&lab.node, &agent, &files, &["--metrics-bind", &at]);
    let text = || crate::speaker_metrics::scrape(&at);
    let known = wait_for(Duration::from_secs(60), || {
        let t = text();
        t.matches("\nmetallb_bgp_session_up{").count() == peers
            && t.matches("\nmetallb_bfd_session_up{").count() == peers
            && t.contains("\nmetallb_bgp_session_up{peer=\"192.0.2.1:179\",vrf=\"default\"} 1\n")
    });
    let sample = text();
    assert!(known.is_some(), "not every session in the metrics:\n{sample}\n{}", speaker.log());

    // The agent's vtysh calls while idle, then while scraped as fast as one client can.
    let window = Duration::from_secs(5);
    let before = calls(&counted);
    std::thread::sleep(window);
    let idle = calls(&counted) - before;
    let before = calls(&counted);
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut size = 0;
    while latencies.len() < scrapes || started.elapsed() < window {
        let (s, n) = scrape_once(&at);
        latencies.push(s);
        size = n;
    }
    let busy_for = started.elapsed();
    let busy = calls(&counted) - before;
    // The agent polls at most once a period (it sleeps a period after each read), three
    // commands each in one VRF; a scrape that asked FRR would add thousands.
    let bound = 3 * (busy_for.as_secs_f64() / poll.as_secs_f64()).ceil() as usize + 3;
    assert!(
        busy <= bound,
        "{busy} vtysh calls during {} scrapes in {busy_for:?} (polls allow {bound}); {idle} in {window:?} idle",
        latencies.len()
    );

    // What the agent's poll costs FRR with this many sessions: the three commands it runs.
    let mut reads = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        for c in [
            status::NEIGHBORS_COMMAND.to_string(),
            status::bfd_command("default"),
            status::bfd_counters_command("default"),
        ] {
            lab.node.vtysh(&["-c", &c]).unwrap();
        }
        reads.push(t.elapsed().as_secs_f64());
    }
    // Of a scrape, the part that formats the FRR families, from the agent's real status.
    let status = crate::runtime().block_on(async {
        agent.client().status(frr_sidecar::proto::StatusRequest {}).await.unwrap().into_inner()
    });
    let mut formatting = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let mut out = String::new();
        ferrolb::metrics::frr::write(Some(&status), &mut out);
        formatting.push(t.elapsed().as_secs_f64());
    }
    let n = latencies.len();
    let established =
        sample.lines().filter(|l| l.starts_with("metallb_bgp_session_up{") && l.ends_with(" 1")).count();
    println!(
        "{peers} BGP peers + {peers} BFD sessions ({} established): {n} scrapes of {size} bytes, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
         vtysh calls: {idle} in {window:?} idle, {busy} in {busy_for:.1?} of back-to-back scrapes (none from scrapes); \
         formatting the FRR families p50 {:.2} ms; the agent's read of FRR (3 vtysh calls) p50 {:.0} ms, max {:.0} ms",
        established,
        pct(&mut latencies, 0.5) * 1000.0,
        pct(&mut latencies, 0.99) * 1000.0,
        pct(&mut latencies, 1.0) * 1000.0,
        pct(&mut formatting, 0.5) * 1000.0,
        pct(&mut reads, 0.5) * 1000.0,
        pct(&mut reads, 1.0) * 1000.0,
    );
}

#[test]
fn scrapes_never_run_vtysh() {
    require_frr!();
    run(10, 200);
}

#[test]
#[ignore = "the figures: 100 peers, 2,000 scrapes (about a minute)"]
fn scrape_bench() {
    require_frr!();
    run(100, 2000);
}
