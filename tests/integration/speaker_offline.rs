//! `ferrolb speaker` run from a manifest directory against frr-agent and a real ToR: edits to
//! the manifests reach the ToR; an invalid edit never reaches FRR (the last valid configuration
//! keeps deciding) until it is fixed.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::agent_process::AgentProcess;
use crate::bgp_lab::Lab;
use crate::fabric::Running;
use crate::frr_lab::{Frr, wait_for};

pub const SETUP: &str = "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: pool}
spec: {addresses: [198.51.100.0/28]}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: tor}
spec: {myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.1, holdTime: 9s, keepaliveTime: 3s, connectTime: 1s, routerID: 192.0.2.11}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: ad}
";

pub fn service(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{type: LoadBalancer}}\n"
    )
}

/// `ferrolb speaker` for node1 reading a manifest directory of the node's (holding `files`) and
/// driving `agent`; stopped when dropped.
pub struct OfflineSpeaker {
    _process: Running,
    pub dir: PathBuf,
    log: PathBuf,
}

impl OfflineSpeaker {
    pub fn start(
        node: &Frr,
        agent: &AgentProcess,
        files: &[(String, String)],
        args: &[&str],
    ) -> OfflineSpeaker {
        let dir = node.dir().join("manifests");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let log = node.dir().join("speaker.log");
        let process = Running(
            Command::new(crate::ferrolb_bin())
                .args(["speaker", "--node", "node1", "-f"])
                .arg(&dir)
                .arg("--frr-agent-socket")
                .arg(&agent.socket)
                .args(args)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        OfflineSpeaker { _process: process, dir, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

#[test]
fn manifest_edits_reach_the_tor_and_invalid_ones_never_reach_frr() {
    require_frr!();
    let lab = Lab::start();
    let agent = AgentProcess::start(&lab.node, "agent");
    let mut files = vec![("00-setup.yaml".to_string(), SETUP.to_string())];
    files.extend(["a", "b", "c"].map(|name| (format!("svc-{name}.yaml"), service(name))));
    let speaker = OfflineSpeaker::start(&lab.node, &agent, &files, &["--rescan-ms", "50"]);
    let dir = speaker.dir.clone();
    let log_text = || speaker.log();
    assert!(wait_for(Duration::from_secs(30), || lab.received() == 3).is_some(), "{}", log_text());

    let t = Instant::now();
    std::fs::write(dir.join("svc-d.yaml"), service("d")).unwrap();
    assert!(wait_for(Duration::from_secs(10), || lab.received() == 4).is_some(), "{}", log_text());
    println!("new Service file to prefix at the ToR: {:?}", t.elapsed());

    // A peer naming a BFD profile that does not exist: the configuration is invalid, so the
    // speaker decides with the last valid one. Nothing of the bad edit reaches FRR; a new
    // Service is still served from the last good pool, as the controller would in a cluster.
    let broken = SETUP.replace("routerID: 192.0.2.11", "routerID: 192.0.2.11, bfdProfile: missing");
    std::fs::write(dir.join("00-setup.yaml"), &broken).unwrap();
    std::fs::write(dir.join("svc-e.yaml"), service("e")).unwrap();
    let complained = wait_for(Duration::from_secs(10), || log_text().contains("configuration invalid"));
    assert!(complained.is_some(), "{}", log_text());
    assert!(wait_for(Duration::from_secs(10), || lab.received() == 5).is_some(), "{}", log_text());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lab.received(), 5);
    assert!(!lab.node.running_config().contains("profile missing"), "{}", lab.node.running_config());
    assert!(log_text().contains("missing"), "{}", log_text());

    // Fixed: the pending change goes through, and a removal withdraws; the ToR ends up with
    // exactly what `plan` says for the directory.
    std::fs::write(dir.join("00-setup.yaml"), SETUP).unwrap();
    std::fs::remove_file(dir.join("svc-a.yaml")).unwrap();
    let inputs = ferrolb::manifests::read(std::slice::from_ref(&dir), false, "metallb-system").unwrap();
    let plan = ferrolb::plan::plan(&inputs, &Default::default());
    let mut want: Vec<String> =
        plan.allocations.iter().flat_map(|a| a.ips.iter().map(|ip| format!("{ip}/32"))).collect();
    want.sort();
    assert_eq!(want.len(), 4);
    let settled = wait_for(Duration::from_secs(10), || lab.tor_prefixes() == want);
    assert!(settled.is_some(), "ToR {:?}, plan {want:?}\n{}", lab.tor_prefixes(), log_text());
}
