//! MetalLB's BGP and BFD metrics as `ferrolb speaker` serves them, from a real FRR through
//! frr-agent: a ToR peering with BFD, the node's link cut and restored; the values follow.

use std::process::Command;
use std::time::Duration;

use crate::agent_process::AgentProcess;
use crate::bgp_lab::Lab;
use crate::frr_lab::wait_for;
use crate::speaker_offline::OfflineSpeaker;

/// The offline speaker's setup with BFD on the ToR's session, and one Service.
fn setup() -> String {
    let bfd = "apiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: fast}\n\
               spec: {receiveInterval: 100, transmitInterval: 100, detectMultiplier: 3}\n---\n";
    let peers = crate::speaker_offline::SETUP
        .replace("routerID: 192.0.2.11}", "routerID: 192.0.2.11, bfdProfile: fast}");
    format!("{bfd}{peers}---\n{}", crate::speaker_offline::service("web"))
}

pub const TOR_BFD: &str = "router bgp 64500
 neighbor 192.0.2.11 bfd
exit
bfd
 peer 192.0.2.11
  receive-interval 100
  transmit-interval 100
 exit
exit
";

pub fn scrape(at: &str) -> String {
    let out = Command::new("curl").args(["-sf", &format!("http://{at}/metrics")]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of the sample written exactly `series`.
pub fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

const TOR: &str = "{peer=\"192.0.2.1:179\",vrf=\"default\"}";
const TOR_BFD_PEER: &str = "{peer=\"192.0.2.1\",vrf=\"default\"}";

#[test]
fn a_session_going_down_and_up_moves_metallbs_bgp_and_bfd_metrics() {
    require_frr!();
    let lab = Lab::start();
    lab.tor.configure(TOR_BFD);
    let agent = AgentProcess::start(&lab.node, "agent");
    let metrics = format!("127.0.0.1:{}", crate::kube_lab::free_port());
    let files = [("setup.yaml".to_string(), setup())];
    let speaker = OfflineSpeaker::start(&lab.node, &agent, &files, &["--metrics-bind", &metrics]);
    let log_text = || speaker.log();
    let series = |name: &str, labels: &str| value(&scrape(&metrics), &format!("{name}{labels}"));
    let up = wait_for(Duration::from_secs(60), || {
        series("metallb_bgp_session_up", TOR) == Some(1.0)
            && series("metallb_bfd_session_up", TOR_BFD_PEER) == Some(1.0)
            && series("metallb_bgp_announced_prefixes_total", TOR) == Some(1.0)
    });
    let text = scrape(&metrics);
    assert!(
        up.is_some(),
        "never up: {:?} {:?} {:?}\n{text}\n{}",
        value(&text, &format!("metallb_bgp_session_up{TOR}")),
        value(&text, &format!("metallb_bfd_session_up{TOR_BFD_PEER}")),
        value(&text, &format!("metallb_bgp_announced_prefixes_total{TOR}")),
        log_text()
    );
    println!("up after {up:?}");
    let problems = crate::metallb_metrics::check(
        &text,
        "speaker",
        &["metallb_bgp_session_up", "metallb_bgp_opens_sent", "metallb_bfd_session_up_events"],
    );
    assert!(problems.is_empty(), "{problems:#?}\n{text}");
    // Loaded and not stale, as MetalLB's alert rules expect of every speaker.
    assert_eq!(value(&text, "metallb_k8s_client_config_loaded_bool"), Some(1.0), "{text}");
    assert_eq!(value(&text, "metallb_k8s_client_config_stale_bool"), Some(0.0), "{text}");
    let before = |name: &str, labels: &str| value(&text, &format!("{name}{labels}")).unwrap_or(-1.0);
    let (downs, ups) = (
        before("metallb_bfd_session_down_events", TOR_BFD_PEER),
        before("metallb_bfd_session_up_events", TOR_BFD_PEER),
    );
    assert!(ups >= 1.0 && downs >= 0.0, "{text}");
    // Keepalives and BFD packets keep counting while nothing else changes.
    let (keepalives, packets) = (
        before("metallb_bgp_keepalives_received", TOR),
        before("metallb_bfd_control_packet_input", TOR_BFD_PEER),
    );
    let moving = wait_for(Duration::from_secs(10), || {
        series("metallb_bgp_keepalives_received", TOR).unwrap_or(0.0) > keepalives
            && series("metallb_bfd_control_packet_input", TOR_BFD_PEER).unwrap_or(0.0) > packets
    });
    assert!(moving.is_some(), "counters stood still:\n{}", scrape(&metrics));

    // The node's link dies.
    let link = |state: &str| {
        let ok = Command::new("ip").args(["-n", &lab.tor.ns, "link", "set", "eth0", state]).status().unwrap();
        assert!(ok.success());
    };
    link("down");
    let down = wait_for(Duration::from_secs(15), || {
        series("metallb_bgp_session_up", TOR) == Some(0.0)
            && series("metallb_bfd_session_up", TOR_BFD_PEER) == Some(0.0)
            && series("metallb_bfd_session_down_events", TOR_BFD_PEER).unwrap_or(0.0) > downs
    });
    assert!(down.is_some(), "still up after the link went down:\n{}", scrape(&metrics));
    println!("link down -> metallb_bgp_session_up 0 and a BFD down event in the scrape after {down:?}");

    link("up");
    let back = wait_for(Duration::from_secs(30), || {
        series("metallb_bgp_session_up", TOR) == Some(1.0)
            && series("metallb_bfd_session_up_events", TOR_BFD_PEER).unwrap_or(0.0) > ups
    });
    assert!(back.is_some(), "never back:\n{}\n{}", scrape(&metrics), log_text());
    let text = scrape(&metrics);
    assert!(
        before("metallb_bgp_opens_sent", TOR)
            < value(&text, &format!("metallb_bgp_opens_sent{TOR}")).unwrap()
    );
}
