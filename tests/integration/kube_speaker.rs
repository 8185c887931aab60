//! The whole path in a cluster: a real kube-apiserver, `ferrolb controller`, and `ferrolb
//! speaker` for node1 driving frr-agent on node1's FRR, peering with a ToR. Creating a Service
//! puts its prefix in the ToR's routing table; deleting it takes it out.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, PostParams};

use crate::agent_process::AgentProcess;
use crate::bgp_lab::Lab;
use crate::fabric::Running;
use crate::frr_lab::wait_for;
use crate::kube_lab::{KubeLab, eventually};

/// The `ferrolb.io/Announced` condition of `svc`: (status, reason, message).
pub fn announced(svc: &Service) -> Option<(String, String, String)> {
    let c = svc.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "ferrolb.io/Announced")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// A Service with a ready endpoint on node1, as the tests create them.
pub async fn create_served(services: &Api<Service>, slices: &Api<EndpointSlice>, name: &str, endpoint: &str) {
    let svc: Service = serde_saphyr::from_str(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"
    ))
    .unwrap();
    let slice: EndpointSlice = serde_saphyr::from_str(&format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, namespace: shop, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nendpoints: [{{addresses: [{endpoint}], nodeName: node1, conditions: {{ready: true}}}}]\nports: [{{port: 80}}]\n"
    ))
    .unwrap();
    slices.create(&PostParams::default(), &slice).await.unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
}

/// The IP the controller gave `name`, once it has one.
async fn ip_of(services: &Api<Service>, name: &str) -> String {
    let t = Instant::now();
    loop {
        if let Ok(s) = services.get(name).await
            && let Some(ip) = ferrolb::plan::writeback::current_ips(&s).first().cloned()
        {
            return ip;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{name} got no IP");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// With the API server gone the speaker keeps announcing what it has, without touching the
/// session; when it is back the speaker catches up with what changed meanwhile.
async fn survives_the_api_server_going_away(
    kube: &KubeLab,
    lab: &Lab,
    services: &Api<Service>,
    slices: &Api<EndpointSlice>,
    speaker_log: &dyn Fn() -> String,
) {
    create_served(services, slices, "steady", "203.0.113.120").await;
    let steady = ip_of(services, "steady").await;
    assert!(wait_for(Duration::from_secs(10), || route_at_tor(lab, &steady)).is_some(), "{}", speaker_log());
    // The IP may be the one "idle" just gave back: let its withdrawal and this announcement
    // both land before watching the route stay.
    std::thread::sleep(Duration::from_secs(1));
    assert!(wait_for(Duration::from_secs(10), || route_at_tor(lab, &steady)).is_some(), "{}", speaker_log());
    let established =
        || lab.tor.json("show bgp neighbors 192.0.2.11 json")["192.0.2.11"]["connectionsEstablished"].clone();
    let sessions_before = established();
    kube.stop_apiserver();
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(5) {
        if !route_at_tor(lab, &steady) {
            let tor = Command::new("ip").args(["-n", &lab.tor.ns, "route"]).output().unwrap();
            panic!(
                "{steady} withdrawn while the API server was away after {:?}\nToR routes:\n{}\nToR BGP: {}\n{}",
                down.elapsed(),
                String::from_utf8_lossy(&tor.stdout),
                lab.tor.json("show bgp ipv4 unicast json"),
                speaker_log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    kube.restart_apiserver();
    println!("API server away for {:.1}s: the prefix stayed at the ToR", down.elapsed().as_secs_f64());
    // Changes made once it is back reach the ToR: the watches resumed.
    create_served(services, slices, "after", "203.0.113.121").await;
    let after = ip_of(services, "after").await;
    assert!(wait_for(Duration::from_secs(20), || route_at_tor(lab, &after)).is_some(), "{}", speaker_log());
    services.delete("steady", &DeleteParams::default()).await.unwrap();
    assert!(wait_for(Duration::from_secs(20), || !route_at_tor(lab, &steady)).is_some(), "{}", speaker_log());
    assert_eq!(established(), sessions_before, "the BGP session was reset");
}

fn scrape(at: &str) -> String {
    let out = Command::new("curl").args(["-sf", &format!("http://{at}/metrics")]).output().unwrap();
    assert!(out.status.success(), "scraping {at}");
    String::from_utf8(out.stdout).unwrap()
}

/// The value of the first sample whose line starts with `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(series))?.rsplit(' ').next()?.parse().ok()
}

/// MetalLB's metric names with what just happened in them, and ferrolb's latency histograms.
fn metrics_say_so(controller: &str, speaker: &str) {
    let c = scrape(controller);
    assert_eq!(sample(&c, "metallb_k8s_client_config_stale_bool"), Some(0.0), "{c}");
    assert_eq!(sample(&c, "metallb_allocator_addresses_total{pool=\"lab\"}"), Some(256.0), "{c}");
    let allocations = sample(&c, "ferrolb_allocation_seconds_count").unwrap_or(0.0);
    assert!(allocations >= 20.0, "{c}");
    let problems = crate::metallb_metrics::check(
        &c,
        "controller",
        &["metallb_allocator_addresses_total", "metallb_k8s_client_updates_total"],
    );
    assert!(problems.is_empty(), "controller: {problems:#?}\n{c}");
    // Each Service's allocation written counts.
    assert!(sample(&c, "metallb_k8s_client_updates_total").unwrap_or(0.0) >= 20.0, "{c}");
    // The agent reads FRR every 100 ms here and the speaker asks it every second.
    let sessions_known = wait_for(Duration::from_secs(5), || {
        sample(&scrape(speaker), "metallb_bgp_session_up{peer=\"192.0.2.99:179\"").is_some()
    });
    assert!(sessions_known.is_some(), "{}", scrape(speaker));
    let s = scrape(speaker);
    let problems = crate::metallb_metrics::check(
        &s,
        "speaker",
        &["metallb_bgp_session_up", "metallb_bgp_updates_total", "metallb_bgp_keepalives_received"],
    );
    assert!(problems.is_empty(), "speaker: {problems:#?}\n{s}");
    // MetalLB's FRR-mode labels: the neighbor as address:port, and its VRF.
    let tor = "{peer=\"192.0.2.1:179\",vrf=\"default\"}";
    assert_eq!(sample(&s, &format!("metallb_bgp_session_up{tor}")), Some(1.0), "{s}");
    assert!(sample(&s, &format!("metallb_bgp_updates_total{tor}")).unwrap_or(0.0) >= 20.0, "{s}");
    assert_eq!(
        sample(&s, "metallb_bgp_session_up{peer=\"192.0.2.99:179\",vrf=\"default\"}"),
        Some(0.0),
        "{s}"
    );
    let applies = sample(&s, "ferrolb_frr_apply_seconds_count").unwrap_or(0.0);
    assert!(applies >= 1.0, "{s}");
    println!(
        "metrics: {allocations} allocations, mean {:.1} ms from change seen to IP written; {applies} Applies, mean {:.1} ms",
        sample(&c, "ferrolb_allocation_seconds_sum").unwrap_or(0.0) / allocations * 1000.0,
        sample(&s, "ferrolb_frr_apply_seconds_sum").unwrap_or(0.0) / applies * 1000.0,
    );
}

/// The ConfigMap `bgpextras` is watched: its raw FRR lines reach node1's FRR, without a
/// session reset; a ConfigMap of another name is never read.
async fn extras_reach_frr(client: &kube::Client, lab: &Lab, speaker_log: &dyn Fn() -> String) {
    use k8s_openapi::api::core::v1::ConfigMap;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "metallb-system");
    let map = |name: &str, line: &str| -> ConfigMap {
        serde_saphyr::from_str(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: metallb-system}}\ndata: {{extras: '{line}'}}\n"
        ))
        .unwrap()
    };
    let sessions = lab.settled_session_counters();
    maps.create(&PostParams::default(), &map("other", "ip prefix-list not-mine seq 5 permit 203.0.113.0/24"))
        .await
        .unwrap();
    maps.create(
        &PostParams::default(),
        &map("bgpextras", "ip prefix-list from-extras seq 5 permit 203.0.113.0/24"),
    )
    .await
    .unwrap();
    // Generous waits: a slow machine (CI) must not fail this on time; the latencies are
    // measured elsewhere.
    // bgpd's part, polled beside the agent's Applies (see `Frr::json`).
    let applied = wait_for(Duration::from_secs(30), || lab.node.bgpd_config().contains("from-extras"));
    assert!(applied.is_some(), "{}\n{}", lab.node.bgpd_config(), speaker_log());
    assert!(!lab.node.bgpd_config().contains("not-mine"));
    maps.delete("bgpextras", &DeleteParams::default()).await.unwrap();
    let gone = wait_for(Duration::from_secs(30), || !lab.node.bgpd_config().contains("from-extras"));
    assert!(gone.is_some(), "{}", lab.node.bgpd_config());
    assert_eq!(lab.session_counters(), sessions, "bgpextras reset the session: {}", lab.session_story());
}

/// The Service condition, ServiceBGPStatus, the peer's session list and the ConfigurationStates
/// say what happens, and why when it does not.
async fn reports_say_where_and_why(
    client: &kube::Client,
    services: &Api<Service>,
    slices: &Api<EndpointSlice>,
    speaker_log: &dyn Fn() -> String,
) {
    use ferrolb::api::{BGPPeer, ConfigurationState, ServiceBGPStatus};
    let statuses: Api<ServiceBGPStatus> = Api::namespaced(client.clone(), "metallb-system");
    let peers: Api<BGPPeer> = Api::namespaced(client.clone(), "metallb-system");
    let states: Api<ConfigurationState> = Api::namespaced(client.clone(), "metallb-system");
    // A Service without a ready endpoint: allocated, not announced, and it says why.
    let svc = |name: &str| -> Service {
        serde_saphyr::from_str(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"
        ))
        .unwrap()
    };
    services.create(&PostParams::default(), &svc("idle")).await.unwrap();
    let r = eventually("idle's condition", || async {
        match services.get("idle").await.ok().as_ref().and_then(announced) {
            Some((s, r, _)) if s == "False" && r == "NoServingEndpoint" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(r.is_ok(), "{r:?}\n{}", speaker_log());
    // Given an endpoint on node1, it is sent to the ToR, and everything says so.
    let slice: EndpointSlice = serde_saphyr::from_str(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: idle-1, namespace: shop, labels: {kubernetes.io/service-name: idle}}\n\
         addressType: IPv4\nendpoints: [{addresses: [203.0.113.99], nodeName: node1, conditions: {ready: true}}]\nports: [{port: 80}]\n",
    )
    .unwrap();
    slices.create(&PostParams::default(), &slice).await.unwrap();
    let r = eventually("idle announced", || async {
        match services.get("idle").await.ok().as_ref().and_then(announced) {
            Some((s, r, m)) if s == "True" && r == "Announced" && m.contains("node1->tor") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(r.is_ok(), "{r:?}\n{}", speaker_log());
    let list = statuses.list(&Default::default()).await.unwrap().items;
    let mine: Vec<_> = list
        .iter()
        .filter_map(|o| o.status.as_ref())
        .filter(|s| s.service_name.as_deref() == Some("idle"))
        .collect();
    assert_eq!(mine.len(), 1, "{list:?}");
    assert_eq!((mine[0].node.as_deref(), mine[0].peers.clone()), (Some("node1"), vec!["tor".to_string()]));
    let tor = peers.get("tor").await.unwrap();
    let sessions = tor.status.unwrap().sessions;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(
        (sessions[0].node.as_str(), sessions[0].state.as_str(), sessions[0].established),
        ("node1", "Established", true)
    );
    for name in ["controller", "speaker-node1"] {
        let state = states.get(name).await.unwrap().status.unwrap();
        assert_eq!(state.result, Some(ferrolb::api::ConfigurationResult::Valid), "{name}");
    }
    // The pool counts what it gave out: "idle" holds one address of the /24.
    let pools: Api<ferrolb::api::IPAddressPool> = Api::namespaced(client.clone(), "metallb-system");
    let r = eventually("pool counts", || async {
        let st = pools.get("lab").await.map_err(|e| e.to_string())?.status.unwrap_or_default();
        if (st.assigned_ipv4, st.available_ipv4) == (1, 255) { Ok(()) } else { Err(format!("{st:?}")) }
    })
    .await;
    assert!(r.is_ok(), "{r:?}");
    // An invalid object that got past no webhook (none runs here): both roles say so, naming it,
    // and keep the last good configuration; removing it makes them Valid again.
    let overlap: ferrolb::api::IPAddressPool = serde_saphyr::from_str(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: overlap, namespace: metallb-system}\nspec: {addresses: [198.51.100.128/25]}\n",
    )
    .unwrap();
    pools.create(&PostParams::default(), &overlap).await.unwrap();
    for name in ["controller", "speaker-node1"] {
        let r = eventually("Invalid reported", || async {
            let st = states.get(name).await.map_err(|e| e.to_string())?.status.unwrap_or_default();
            let summary = st.error_summary.unwrap_or_default();
            match st.result {
                Some(ferrolb::api::ConfigurationResult::Invalid)
                    if summary.contains("IPAddressPool \"overlap\"") =>
                {
                    Ok(())
                }
                other => Err(format!("{other:?} {summary}")),
            }
        })
        .await;
        assert!(r.is_ok(), "{name}: {r:?}");
    }
    // Meanwhile "idle" keeps its IP and stays announced, and its condition says so.
    let still = services.get("idle").await.ok().as_ref().and_then(announced);
    assert!(still.as_ref().is_some_and(|(s, r, _)| s == "True" && r == "Announced"), "{still:?}");
    pools.delete("overlap", &DeleteParams::default()).await.unwrap();
    for name in ["controller", "speaker-node1"] {
        let r = eventually("Valid again", || async {
            let st = states.get(name).await.map_err(|e| e.to_string())?.status.unwrap_or_default();
            match st.result {
                Some(ferrolb::api::ConfigurationResult::Valid) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        assert!(r.is_ok(), "{name}: {r:?}");
    }
    // A peer nobody answers for: its session says so on the peer, and on the Service.
    let mut inputs = ferrolb::plan::Inputs::new("metallb-system");
    inputs.add_yaml(
        "silent",
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: silent, namespace: metallb-system}\n\
         spec: {myASN: 64512, peerASN: 64501, peerAddress: 192.0.2.99, connectTime: 1s, routerID: 192.0.2.11}\n",
    )
    .unwrap();
    crate::kube_controller::create_all(client, &inputs.objects.peers).await;
    let r = eventually("the silent peer reported", || async {
        let p = peers.get("silent").await.map_err(|e| e.to_string())?;
        let s = p.status.map(|s| s.sessions).unwrap_or_default();
        match s.first() {
            Some(s) if !s.established && s.state != "Unknown" && s.state != "NotConfigured" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(r.is_ok(), "{r:?}\n{}", speaker_log());
    let r = eventually("idle names the silent peer", || async {
        match services.get("idle").await.ok().as_ref().and_then(announced) {
            Some((s, _, m)) if s == "True" && m.contains("sessions down: node1->silent") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(r.is_ok(), "{r:?}");
    // Deleted: the node's status object goes with it.
    services.delete("idle", &DeleteParams::default()).await.unwrap();
    let r = eventually("idle's ServiceBGPStatus removed", || async {
        let list = statuses.list(&Default::default()).await.map_err(|e| e.to_string())?.items;
        let left = list
            .iter()
            .filter_map(|o| o.status.as_ref())
            .filter(|s| s.service_name.as_deref() == Some("idle"))
            .count();
        if left == 0 { Ok(()) } else { Err(format!("{left} left")) }
    })
    .await;
    assert!(r.is_ok(), "{r:?}");
}

pub const CONFIG: &str = "
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lab, namespace: metallb-system}
spec: {addresses: [198.51.100.0/24]}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: tor, namespace: metallb-system}
spec: {myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.1, holdTime: 9s, keepaliveTime: 3s, connectTime: 1s, routerID: 192.0.2.11}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: lab, namespace: metallb-system}
";

/// node1 and the BGP configuration (one pool, the ToR as peer, one advertisement).
pub async fn bgp_cluster(kube: &KubeLab) -> kube::Client {
    let client = kube.prepared(&["metallb-system", "shop"]).await;
    let node: Node = serde_saphyr::from_str("apiVersion: v1\nkind: Node\nmetadata: {name: node1}\n").unwrap();
    Api::<Node>::all(client.clone()).create(&PostParams::default(), &node).await.unwrap();
    let mut inputs = ferrolb::plan::Inputs::new("metallb-system");
    inputs.add_yaml("config", CONFIG).unwrap();
    crate::kube_controller::create_all(&client, &inputs.objects.pools).await;
    crate::kube_controller::create_all(&client, &inputs.objects.peers).await;
    crate::kube_controller::create_all(&client, &inputs.objects.bgp_advertisements).await;
    client
}

pub fn route_at_tor(lab: &Lab, ip: &str) -> bool {
    let out = Command::new("ip").args(["-n", &lab.tor.ns, "route", "show", ip]).output().unwrap();
    !out.stdout.is_empty()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[test]
fn a_new_service_reaches_the_tor_and_a_deleted_one_leaves_it() {
    require_frr!();
    require_kube!();
    let lab = Lab::start();
    let agent = AgentProcess::start(&lab.node, "agent");
    let kube = KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        let client = bgp_cluster(&kube).await;

        let log = |name: &str| std::fs::File::create(kube.dir.join(name)).unwrap();
        let controller_metrics = format!("127.0.0.1:{}", crate::kube_lab::free_port());
        let speaker_metrics = format!("127.0.0.1:{}", crate::kube_lab::free_port());
        let _controller = Running(
            Command::new(crate::ferrolb_bin())
                // No leader election: the test stops the API server for longer than a lease, and a
                // leader that cannot renew steps down (a Deployment would restart it).
                .args(["controller", "--webhook-port", "0", "--leader-elect", "false"])
                .args(["--metrics-bind", &controller_metrics, "--kubeconfig"])
                .arg(kube.kubeconfig())
                .stdout(Stdio::null())
                .stderr(log("controller.log"))
                .spawn()
                .unwrap(),
        );
        let _speaker = Running(
            Command::new(crate::ferrolb_bin())
                .args(["speaker", "--node", "node1", "--metrics-bind", &speaker_metrics, "--kubeconfig"])
                .arg(kube.kubeconfig())
                .arg("--frr-agent-socket")
                .arg(&agent.socket)
                .stdout(Stdio::null())
                .stderr(log("speaker.log"))
                .spawn()
                .unwrap(),
        );
        let speaker_log = || std::fs::read_to_string(kube.dir.join("speaker.log")).unwrap_or_default();
        let session = wait_for(Duration::from_secs(30), || {
            lab.tor.json("show bgp neighbors 192.0.2.11 json")["192.0.2.11"]["bgpState"] == "Established"
        });
        assert!(session.is_some(), "no session\n{}", speaker_log());

        let services: Api<Service> = Api::namespaced(client.clone(), "shop");
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "shop");
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for i in 0..20 {
            let svc: Service = serde_saphyr::from_str(&format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: web{i}, namespace: shop}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"
            ))
            .unwrap();
            // A serving endpoint on node1, as the EndpointSlice controller would publish for a
            // ready pod (none runs here); without one nothing is announced, as in MetalLB.
            let slice: EndpointSlice = serde_saphyr::from_str(&format!(
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web{i}-1, namespace: shop, labels: {{kubernetes.io/service-name: web{i}}}}}\n\
                 addressType: IPv4\nendpoints: [{{addresses: [203.0.113.{}], nodeName: node1, conditions: {{ready: true}}}}]\nports: [{{port: 80}}]\n",
                10 + i
            ))
            .unwrap();
            slices.create(&PostParams::default(), &slice).await.unwrap();
            let t = Instant::now();
            services.create(&PostParams::default(), &svc).await.unwrap();
            let ip = loop {
                let s = services.get(&format!("web{i}")).await.unwrap();
                if let Some(ip) = ferrolb::plan::writeback::current_ips(&s).first().cloned() {
                    break ip;
                }
                assert!(t.elapsed() < Duration::from_secs(10), "web{i} got no IP");
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            while !route_at_tor(&lab, &ip) {
                assert!(t.elapsed() < Duration::from_secs(10), "{ip} never reached the ToR\n{}", speaker_log());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            up.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            services.delete(&format!("web{i}"), &DeleteParams::default()).await.unwrap();
            while route_at_tor(&lab, &ip) {
                assert!(t.elapsed() < Duration::from_secs(10), "{ip} never left the ToR");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            down.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        reports_say_where_and_why(&client, &services, &slices, &speaker_log).await;
        metrics_say_so(&controller_metrics, &speaker_metrics);
        extras_reach_frr(&client, &lab, &speaker_log).await;
        survives_the_api_server_going_away(&kube, &lab, &services, &slices, &speaker_log).await;
        let slowest = up.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i);
        println!("slowest create was Service #{slowest} (0 = the first after the session came up)");
        println!(
            "Service created -> prefix in the ToR's routing table: p50={:.0}ms p99={:.0}ms; deleted -> gone: p50={:.0}ms p99={:.0}ms (n=20)",
            pct(&mut up, 0.5),
            pct(&mut up, 0.99),
            pct(&mut down, 0.5),
            pct(&mut down, 0.99)
        );
    });
}
