//! frr-agent's gRPC service and the speaker's BGP backend against real FRR: Apply outcomes,
//! Status from vtysh, restoring by itself after bgpd restarts, coalescing bursts, and waiting
//! out an agent that is not there yet.

use std::time::{Duration, Instant};

use ferrolb::speaker::bgp_backend::{BackendSettings, BgpBackend};
use frr_sidecar::proto::{ApplyRequest, StatusRequest, apply_reply::Outcome};
use tokio_stream::StreamExt;

use crate::agent_process::AgentProcess;
use crate::bgp_lab::{Lab, node_config};
use crate::frr_lab::wait_for;
use crate::runtime;

#[test]
fn apply_status_watch_and_restore_after_a_bgpd_restart() {
    require_frr!();
    let lab = Lab::start();
    let agent = AgentProcess::start(&lab.node, "agent");
    let rt = runtime();
    let _context = rt.enter();
    let mut client = agent.client();
    let apply = |client: &mut _, config: String, generation| {
        rt.block_on(frr_sidecar::proto::frr_agent_client::FrrAgentClient::apply(
            client,
            ApplyRequest { config, generation },
        ))
        .unwrap()
        .into_inner()
    };
    let good = node_config(5, "64500:100");
    let r = apply(&mut client, good.clone(), 1);
    assert_eq!((r.outcome(), r.running_generation, r.error.as_str()), (Outcome::Applied, 1, ""));
    assert!(r.lines_added > 0 && r.took_micros > 0);
    assert_eq!(apply(&mut client, good.clone(), 1).outcome(), Outcome::Unchanged);

    // Status: the session comes up and reports what it sends.
    let mut watch = rt.block_on(client.watch_status(StatusRequest {})).unwrap().into_inner();
    let deadline = Instant::now() + Duration::from_secs(30);
    let up = loop {
        let s = rt.block_on(tokio::time::timeout(Duration::from_secs(30), watch.next()));
        let s = s.expect("status stream went quiet").expect("stream ended").unwrap();
        if s.neighbors.iter().any(|n| n.peer == "192.0.2.1" && n.established && n.prefixes_sent == 5) {
            break s;
        }
        assert!(Instant::now() < deadline, "session never reported up: {s:?}");
    };
    assert!(up.frr_reachable);
    assert_eq!(up.running_generation, 1);
    assert_eq!(up.frr_version, lab.node.install().label(), "the version the agent learnt");
    let n = &up.neighbors[0];
    assert_eq!((n.remote_as, n.local_as, n.connections_established), (64500, 64512, 1));

    // A bad configuration: FRR's own words come back, the good one keeps running.
    let bad = good.replace("remote-as 64500", "remote-as banana");
    let r = apply(&mut client, bad, 2);
    assert_eq!(r.outcome(), Outcome::Rejected);
    assert!(r.error.contains("banana") || r.error.contains("remote-as"), "{}", r.error);
    assert_eq!(r.running_generation, 1);
    assert!(lab.node_matches(&good));

    // bgpd dies and comes back empty: the agent notices and restores the configuration itself.
    lab.node.restart_daemon("bgpd").unwrap();
    let restored = wait_for(Duration::from_secs(30), || {
        let s = rt.block_on(client.status(StatusRequest {})).unwrap().into_inner();
        s.restores >= 1 && lab.received() == 5
    });
    assert!(restored.is_some(), "not restored: {:?}", lab.node_drift(&good));
    assert!(lab.node_matches(&good));
    println!(
        "bgpd restart: configuration restored and 5 prefixes back at the ToR {restored:?} after bgpd came back"
    );

    // bgpd away (as while a new pod's FRR starts): an Apply is refused, since vtysh would drop
    // bgpd's lines without a word, and nothing is sent; once bgpd is up the agent restores the
    // configuration to it by itself and the retried Apply goes through.
    lab.node.stop_daemon("bgpd").unwrap();
    let fewer = node_config(3, "64500:100");
    let r = apply(&mut client, fewer.clone(), 3);
    assert_eq!((r.outcome(), r.running_generation), (Outcome::Failed, 1), "{}", r.error);
    assert!(r.error.contains("FRR is not up yet: bgpd"), "{}", r.error);
    lab.node.start_daemon("bgpd").unwrap();
    let retried = wait_for(Duration::from_secs(30), || {
        let r = apply(&mut client, fewer.clone(), 3);
        r.outcome() != Outcome::Failed && lab.received() == 3 && lab.node_matches(&fewer)
    });
    assert!(retried.is_some(), "not applied after bgpd came back: {:?}", lab.node_drift(&fewer));
    let s = rt.block_on(client.status(StatusRequest {})).unwrap().into_inner();
    assert!(s.restores >= 2, "the new bgpd was not restored to: {s:?}");
}

#[test]
fn the_backend_waits_for_the_agent_coalesces_bursts_and_resends_to_a_new_agent() {
    require_frr!();
    let lab = Lab::start();
    let rt = crate::threaded_runtime();
    let socket = lab.node.dir().join("agent.sock");
    let mut settings = BackendSettings::new(&socket);
    settings.max_backoff = Duration::from_millis(400);
    let backend = rt.block_on(async { BgpBackend::start(settings) });
    let report = backend.report();

    // No agent yet: the backend keeps trying and says why.
    backend.set(node_config(1, "64500:100"), None);
    let waiting = wait_for(Duration::from_secs(5), || {
        let r = report.borrow();
        r.behind && !r.agent_reachable && !r.last_error.is_empty()
    });
    assert!(waiting.is_some(), "{:?}", *report.borrow());

    let agent = AgentProcess::start(&lab.node, "agent");
    assert!(wait_for(Duration::from_secs(30), || lab.received() == 1).is_some(), "{:?}", *report.borrow());
    assert!(report.borrow().applied_generation.is_some() && report.borrow().last_error.is_empty());

    // 200 desired configurations in a burst become a handful of Applies.
    let configs: Vec<String> = (1..=200).map(|n| node_config(n, "64500:100")).collect();
    let before = report.borrow().applies;
    let started = Instant::now();
    for config in configs {
        backend.set(config, None);
    }
    let planned = started.elapsed();
    let seen = wait_for(Duration::from_secs(30), || lab.received() == 200);
    assert!(seen.is_some(), "ToR has {}", lab.received());
    let applies = report.borrow().applies - before;
    println!(
        "burst of 200 configurations (handed over in {planned:?}): {applies} Applies, ToR complete after {seen:?}"
    );
    assert!(applies <= 5, "{applies} Applies for one burst");

    // A new agent runs nothing: the backend notices on its status stream and sends again.
    drop(agent);
    lab.node.configure("no router bgp 64512\n");
    assert!(wait_for(Duration::from_secs(30), || lab.received() == 0).is_some());
    let _agent = AgentProcess::start(&lab.node, "agent");
    let back = wait_for(Duration::from_secs(30), || lab.received() == 200);
    assert!(back.is_some(), "{:?}", *report.borrow());
    assert!(lab.node_matches(&node_config(200, "64500:100")));
    println!("new agent: configuration back at the ToR after {back:?}");
    drop(backend);
}

/// A speaker leaving for good: its backend has FRR withdraw every route (the ToR keeps the
/// session and loses the routes), and `frr-agent wait-speaker`, the FRR containers' preStop,
/// waits while the speaker follows the agent and returns once it has gone.
#[test]
fn a_speaker_leaving_withdraws_its_routes_and_the_frr_containers_wait_for_it() {
    require_frr!();
    let lab = Lab::start();
    let agent = AgentProcess::start(&lab.node, "agent");
    let rt = crate::threaded_runtime();
    let backend = rt.block_on(async { BgpBackend::start(BackendSettings::new(&agent.socket)) });
    backend.set(node_config(5, "64500:100"), None);
    assert!(
        wait_for(Duration::from_secs(30), || lab.received() == 5).is_some(),
        "ToR has {}",
        lab.received()
    );

    let agent_bin = crate::ferrolb_bin().with_file_name("frr-agent");
    let wait_speaker = |timeout_ms: u64| {
        let started = Instant::now();
        let out = std::process::Command::new(&agent_bin)
            .args(["wait-speaker", &format!("--socket={}", agent.socket.display())])
            .arg(format!("--timeout-ms={timeout_ms}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        (String::from_utf8_lossy(&out.stdout).into_owned(), started.elapsed())
    };
    let (said, took) = wait_speaker(300);
    assert!(said.contains("still follows") && took >= Duration::from_millis(300), "{said} ({took:?})");

    // A speaker leaving has sessions up for long. (On a session up for ~1 s, FRR 8.4 as the node
    // never sent these withdrawals, 60 s watched; 10.3 and 10.7 did within 40 ms.)
    let up_for =
        || lab.tor.json("show bgp neighbors 192.0.2.11 json")["192.0.2.11"]["bgpTimerUpMsec"].as_u64();
    assert!(wait_for(Duration::from_secs(20), || up_for().unwrap_or(0) >= 5000).is_some(), "{:?}", up_for());
    let started = Instant::now();
    assert!(
        rt.block_on(backend.withdraw(Duration::from_secs(3))),
        "withdrawal not seen: ToR has {}",
        lab.received()
    );
    let withdrawn = started.elapsed();
    assert_eq!(lab.received(), 0, "the ToR still has routes");
    let session = &lab.tor.json("show bgp neighbors 192.0.2.11 json")["192.0.2.11"];
    assert_eq!(session["bgpState"], "Established", "the session went down: {session}");

    drop(backend);
    let (said, took) = wait_speaker(5000);
    assert!(said.contains("no speaker follows"), "{said}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    println!(
        "leaving: every route withdrawn at the ToR {withdrawn:?} after it was asked; wait-speaker returned {took:?} after the speaker went"
    );
}

/// FRR 9.0 to 10.3's mgmtd forgets a commit in flight whenever any vty on it closes (FRR issue
/// #18541): a status read or readiness probe that opened and closed one during an Apply left
/// mgmtd's running configuration (zebra's prefix-lists and route-maps) at the old lines for
/// good. The agent polls every 5 ms here, so its reads run beside nearly every commit; FRR must
/// end up running exactly what was applied last. FRR 8.4 has no mgmtd, 10.4 on is fixed: there
/// the test only shows the agent changes nothing else.
#[test]
fn status_polls_beside_applies_never_make_mgmtd_forget_a_change() {
    require_frr!();
    let lab = Lab::start();
    let agent =
        AgentProcess::start_with(&lab.node, "agent", lab.node.agent_vtysh(), Duration::from_millis(5));
    let rt = runtime();
    let _context = rt.enter();
    let mut client = agent.client();
    let base = node_config(1, "64500:100");
    let with_filter = |i: usize| {
        format!(
            "{base}ip prefix-list t-{i} seq 5 permit 203.0.113.0/24\nroute-map t-{i} permit 10\n match ip address prefix-list t-{i}\nexit\n"
        )
    };
    let mut generation = 0;
    let mut apply = |config: String| {
        generation += 1;
        let r = rt.block_on(client.apply(ApplyRequest { config, generation })).unwrap().into_inner();
        assert_eq!((r.outcome(), r.error.as_str()), (Outcome::Applied, ""), "generation {generation}");
    };
    apply(base.clone());
    let started = Instant::now();
    for i in 0..50 {
        apply(with_filter(i));
        apply(base.clone());
    }
    let took = started.elapsed();
    // Read once every Apply has returned: nothing of this test touched FRR meanwhile.
    let running = lab.node.running_config();
    let left: Vec<&str> = running.lines().filter(|l| l.contains(" t-")).collect();
    assert!(
        left.is_empty(),
        "FRR {} still runs filters it was told to remove: {left:?}",
        lab.node.install().label()
    );
    println!(
        "FRR {}: 100 Applies beside status reads every 5 ms in {took:?}, nothing left behind",
        lab.node.install().label()
    );
}
