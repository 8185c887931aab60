//! `bgpextras` on a real FRR: the ConfigMap's raw configuration reaches FRR after ferrolb's own,
//! as `ferrolb plan --frr` shows it, without resetting a session it does not touch; one FRR
//! refuses is refused whole, in FRR's words, while the last accepted extras stay and new
//! Services are still announced.
//!
//! FRR is polled through bgpd alone while the agent applies, and read whole only once the
//! Apply that carried a change returned: on FRR 10.3 a vtysh on mgmtd that exits during a
//! commit makes mgmtd forget it (see `Frr::json`).

use std::process::Command;
use std::time::Duration;

use crate::agent_process::AgentProcess;
use crate::bgp_lab::Lab;
use crate::frr_lab::wait_for;
use crate::speaker_offline::{OfflineSpeaker, SETUP, service};

fn extras_map(extras: &str) -> String {
    let indented: String = extras.lines().map(|l| format!("    {l}\n")).collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: bgpextras, namespace: metallb-system}}\ndata:\n  extras: |\n{indented}"
    )
}

/// Written whole or not at all, so the speaker never reads a half-written file (which
/// would be a change of its own, Applied as such).
fn write(dir: &std::path::Path, name: &str, text: &str) {
    // Beside the directory, not in it: the speaker would see the new file come and go.
    let part = dir.parent().unwrap().join(format!("{name}.part"));
    std::fs::write(&part, text).unwrap();
    std::fs::rename(part, dir.join(name)).unwrap();
}

const GOOD: &str = "ip prefix-list extra-pl seq 5 permit 203.0.113.0/24
bgp community-list standard extra-cl seq 5 permit 64512:7
route-map extra-rm permit 10
 match ip address prefix-list extra-pl
exit";

#[test]
fn extras_reach_frr_untouched_sessions_stay_up_and_a_refused_extra_changes_nothing() {
    require_frr!();
    let lab = Lab::start();
    let agent = AgentProcess::start(&lab.node, "agent");
    let files = [("00-setup.yaml".to_string(), SETUP.to_string()), ("svc-a.yaml".to_string(), service("a"))];
    let speaker = OfflineSpeaker::start(&lab.node, &agent, &files, &["--rescan-ms", "50"]);
    let dir = speaker.dir.clone();
    let log_text = || speaker.log();
    let applies = || log_text().matches("FRR configuration applied").count();
    // Until bgpd shows what `seen` looks for and an Apply after `since` returned: then the
    // vtysh that carried the change is gone and FRR may be read whole.
    let settled = |since: usize, seen: &dyn Fn(&str) -> bool| {
        wait_for(Duration::from_secs(30), || seen(&lab.node.bgpd_config()) && applies() > since)
    };
    assert!(wait_for(Duration::from_secs(30), || lab.received() == 1).is_some(), "{}", log_text());
    let sessions = lab.settled_session_counters();

    let before = applies();
    write(&dir, "01-extras.yaml", &extras_map(GOOD));
    let applied =
        settled(before, &|bgpd| bgpd.contains("route-map extra-rm permit 10") && bgpd.contains("extra-cl"));
    assert!(applied.is_some(), "{}\n{}", lab.node.bgpd_config(), log_text());
    let running = lab.node.running_config();
    assert!(running.contains("route-map extra-rm permit 10") && running.contains("extra-cl"), "{running}");
    // What `plan --frr` shows for the same directory: ferrolb's configuration, then the extras.
    let plan = Command::new(crate::ferrolb_bin())
        .args(["plan", "--node", "node1", "--frr", "-f"])
        .arg(&dir)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&plan.stdout);
    assert!(plan.status.success(), "{shown}{}", String::from_utf8_lossy(&plan.stderr));
    assert!(shown.trim_end().ends_with(GOOD), "{shown}");
    assert!(shown.find("router bgp 64512") < shown.find("route-map extra-rm"), "{shown}");

    // A line FRR refuses: nothing of the change is applied, FRR's words are logged, and the
    // accepted extras stay while a new Service still reaches the ToR.
    let bad = GOOD.replace("203.0.113.0/24", "203.0.113.0/99");
    write(&dir, "01-extras.yaml", &extras_map(&bad));
    let refused = wait_for(Duration::from_secs(30), || log_text().contains("FRR refused the bgpextras"));
    assert!(refused.is_some(), "{}", log_text());
    let words = log_text().lines().find(|l| l.contains("FRR refused the bgpextras")).unwrap().to_string();
    println!("refused: {words}");
    assert!(words.contains("203.0.113.0/99"), "FRR's words should name the line: {words}");
    let before = applies();
    write(&dir, "svc-b.yaml", &service("b"));
    assert!(
        wait_for(Duration::from_secs(30), || lab.received() == 2 && applies() > before).is_some(),
        "{}",
        log_text()
    );
    let running = lab.node.running_config();
    assert!(running.contains("ip prefix-list extra-pl seq 5 permit 203.0.113.0/24"), "{running}");
    assert!(!running.contains("/99"), "{running}");

    // Fixed, then removed: FRR follows each time.
    let fixed = GOOD.replace("203.0.113.0/24", "192.0.2.128/25");
    let before = applies();
    write(&dir, "01-extras.yaml", &extras_map(&fixed));
    let now = settled(before, &|bgpd| bgpd.contains("192.0.2.128/25"));
    assert!(now.is_some(), "{}\n{}", lab.node.bgpd_config(), log_text());
    assert!(lab.node.running_config().contains("192.0.2.128/25"), "{}", lab.node.running_config());
    let before = applies();
    std::fs::remove_file(dir.join("01-extras.yaml")).unwrap();
    let gone = settled(before, &|bgpd| !bgpd.contains("extra-rm"));
    assert!(gone.is_some(), "{}\n{}", lab.node.bgpd_config(), log_text());
    let running = lab.node.running_config();
    assert!(!running.contains("extra-rm") && !running.contains("extra-pl"), "{running}\n{}", log_text());
    assert!(!running.contains("extra-cl"), "{running}\n{}", log_text());

    // A line frr-agent would never apply is said so, once, not silently dropped.
    write(&dir, "01-extras.yaml", &extras_map("ip route 203.0.113.0/24 192.0.2.1"));
    let warned = wait_for(Duration::from_secs(30), || log_text().contains("never applied"));
    assert!(warned.is_some(), "{}", log_text());
    assert!(log_text().contains("ip route 203.0.113.0/24 192.0.2.1"), "{}", log_text());
    std::fs::remove_file(dir.join("01-extras.yaml")).unwrap();

    // None of it touched the session.
    assert_eq!(lab.session_counters(), sessions, "the BGP session was reset: {}", lab.session_story());
    assert_eq!(lab.received(), 2);
}
