//! What the BGP objects' finer fields do, seen from real FRR routers that peer with nodes driven
//! by frr-agent from `plan`'s output: which nodes open which sessions and which peer learns
//! which prefix (selectors, `peers`), aggregation, the timers the ToR ends up with, dynamic and
//! local ASNs, the address families carried, the routes a ToR sends being refused, and an MD5
//! key read from a Secret.

use std::time::{Duration, Instant};

use crate::agent_process::AgentProcess;
use crate::bgp_sessions::apply;
use crate::fabric::{Lan, kernel_next_hops, plan_node};
use crate::frr_lab::{Frr, wait_for};

/// A LAN with routers (`(name, address, config)`) and nodes node1.. at 192.0.2.11.. and
/// 2001:db8:10::11.., each node's FRR configured by its agent from `plan --node` of `manifest`.
struct Fabric {
    routers: Vec<Frr>,
    nodes: Vec<(Frr, AgentProcess)>,
    _lan: Lan,
}

fn fabric(routers: &[(&str, &str, &str)], nodes: usize, manifest: &str) -> Fabric {
    let lan = Lan::new();
    let routers: Vec<Frr> = routers
        .iter()
        .map(|(name, addr, config)| {
            let r = Frr::start(name).expect("router FRR starts");
            let v6 = format!("2001:db8:10::{}/64", addr.rsplit('.').next().unwrap_or("1"));
            lan.attach(&r.ns, "eth0", &[&format!("{addr}/24"), &v6]);
            if !config.is_empty() {
                r.configure(config);
            }
            r
        })
        .collect();
    let nodes = (0..nodes)
        .map(|i| {
            let name = format!("node{}", i + 1);
            let frr = Frr::start(&name).expect("node FRR starts");
            lan.attach(
                &frr.ns,
                "eth0",
                &[&format!("192.0.2.{}/24", 11 + i), &format!("2001:db8:10::{}/64", 11 + i)],
            );
            let agent = AgentProcess::start(&frr, "agent");
            apply(&agent, &plan_node(manifest, &name).frr, 1);
            (frr, agent)
        })
        .collect();
    Fabric { routers, nodes, _lan: lan }
}

fn neighbor(router: &Frr, peer: &str) -> serde_json::Value {
    router.json(&format!("show bgp neighbors {peer} json"))[peer].clone()
}

fn established(router: &Frr, peer: &str) -> bool {
    neighbor(router, peer)["bgpState"] == "Established"
}

/// The prefixes in `router`'s table for `afi` (ipv4/ipv6) learned from `peer`.
fn learned_from(router: &Frr, afi: &str, peer: &str) -> Vec<String> {
    let v = router.json(&format!("show bgp {afi} unicast neighbors {peer} routes json"));
    let mut out: Vec<String> =
        v["routes"].as_object().map(|r| r.keys().cloned().collect()).unwrap_or_default();
    out.sort();
    out
}

/// Every prefix in `router`'s table for `afi`.
fn table(router: &Frr, afi: &str) -> Vec<String> {
    let v = router.json(&format!("show bgp {afi} unicast json"));
    let mut out: Vec<String> =
        v["routes"].as_object().map(|r| r.keys().cloned().collect()).unwrap_or_default();
    out.sort();
    out
}

const POOL: &str = "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: pool}
spec: {addresses: [198.51.100.0/28, '2001:db8:20::/124']}
";

fn tor_for(asn_of_nodes: u32, nodes: &[&str], extra: &str) -> String {
    let mut c = "router bgp 64500\n bgp router-id 192.0.2.1\n no bgp ebgp-requires-policy\n".to_string();
    for n in nodes {
        c.push_str(&format!(" neighbor {n} remote-as {asn_of_nodes}\n neighbor {n} timers 3 9\n neighbor {n} timers connect 1\n"));
    }
    c.push_str(extra);
    c.push_str("exit\n");
    c
}

#[test]
fn node_selectors_peers_and_service_selectors_decide_who_learns_what() {
    require_frr!();
    // node1 (rack a) peers with the ToR and the reflector; node2 (rack b) with the ToR only.
    // Prefixes for the ToR: Services labelled app=web, from rack b. For the reflector: all.
    let manifest = format!(
        "{POOL}---
apiVersion: v1
kind: Node
metadata: {{name: node1, labels: {{rack: a}}}}
---
apiVersion: v1
kind: Node
metadata: {{name: node2, labels: {{rack: b}}}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: tor}}
spec: {{myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.1, holdTime: 9s, keepaliveTime: 3s, connectTime: 1s}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: rr}}
spec: {{myASN: 64512, peerASN: 64512, peerAddress: 192.0.2.2, connectTime: 1s, nodeSelectors: [{{matchLabels: {{rack: a}}}}]}}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: to-tor}}
spec:
  peers: [tor]
  serviceSelectors: [{{matchLabels: {{app: web}}}}]
  nodeSelectors: [{{matchExpressions: [{{key: rack, operator: In, values: [b]}}]}}]
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: to-rr}}
spec: {{peers: [rr]}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop, labels: {{app: web}}}}
spec: {{type: LoadBalancer}}
---
apiVersion: v1
kind: Service
metadata: {{name: api, namespace: shop}}
spec: {{type: LoadBalancer}}
"
    );
    let plan = plan_node(&manifest, "node1");
    let web = format!("{}/32", plan.ips_of("shop/web")[0]);
    let api = format!("{}/32", plan.ips_of("shop/api")[0]);
    let tor = tor_for(64512, &["192.0.2.11", "192.0.2.12"], "");
    let rr = "router bgp 64512\n bgp router-id 192.0.2.2\n neighbor 192.0.2.11 remote-as 64512\n neighbor 192.0.2.12 remote-as 64512\n \
              neighbor 192.0.2.11 timers connect 1\n neighbor 192.0.2.12 timers connect 1\nexit\n";
    let t = Instant::now();
    let lab = fabric(&[("tor", "192.0.2.1", &tor), ("rr", "192.0.2.2", rr)], 2, &manifest);
    let (tor, rr) = (&lab.routers[0], &lab.routers[1]);
    let story = || {
        format!(
            "ToR: {:?} via {:?}; reflector: {:?}; rr sees node2 {}",
            table(tor, "ipv4"),
            kernel_next_hops(tor, &web),
            table(rr, "ipv4"),
            neighbor(rr, "192.0.2.12")["bgpState"]
        )
    };
    let up = wait_for(Duration::from_secs(40), || {
        established(tor, "192.0.2.11")
            && established(tor, "192.0.2.12")
            && established(rr, "192.0.2.11")
            && kernel_next_hops(tor, &web) == ["192.0.2.12"]
            && learned_from(rr, "ipv4", "192.0.2.11").len() == 2
    });
    assert!(up.is_some(), "{}", story());
    // Both sessions to the ToR are up, so what is missing there was never sent. Let anything
    // wrong have time to arrive.
    std::thread::sleep(Duration::from_secs(3));
    // BGPAdvertisement nodeSelectors: node1 has a session with the ToR but sends it nothing.
    assert_eq!(learned_from(tor, "ipv4", "192.0.2.11"), Vec::<String>::new(), "{}", story());
    // serviceSelectors: api is not app=web; `peers`: the reflector's advertisement (which
    // holds api) is not for the ToR.
    assert_eq!(learned_from(tor, "ipv4", "192.0.2.12"), std::slice::from_ref(&web), "{}", story());
    assert!(!table(tor, "ipv4").contains(&api), "{}", story());
    assert_eq!(learned_from(rr, "ipv4", "192.0.2.11"), {
        let mut v = vec![api.clone(), web.clone()];
        v.sort();
        v
    });
    // BGPPeer nodeSelectors: node2 never opened a session with the reflector.
    let node2 = neighbor(rr, "192.0.2.12");
    assert_eq!(node2["connectionsEstablished"].as_u64().unwrap_or(0), 0, "{node2:#}");
    assert!(!lab.nodes[1].0.running_config().contains("192.0.2.2"), "node2 configured the reflector");
    println!(
        "ToR learned only {web} and only from node2; reflector learned both from node1 only ({:?})",
        t.elapsed()
    );
}

#[test]
fn aggregation_lengths_reach_the_tor_as_aggregates() {
    require_frr!();
    let manifest = format!(
        "{POOL}---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: tor4}}
spec: {{myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.1, connectTime: 1s}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: tor6}}
spec: {{myASN: 64512, peerASN: 64500, peerAddress: '2001:db8:10::1', connectTime: 1s}}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: summarised}}
spec: {{aggregationLength: 28, aggregationLengthV6: 124}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec: {{type: LoadBalancer, ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4, IPv6]}}
---
apiVersion: v1
kind: Service
metadata: {{name: api, namespace: shop}}
spec: {{type: LoadBalancer}}
"
    );
    let tor = tor_for(
        64512,
        &["192.0.2.11", "2001:db8:10::11"],
        " address-family ipv6 unicast\n  neighbor 2001:db8:10::11 activate\n exit-address-family\n",
    );
    let t = Instant::now();
    let lab = fabric(&[("tor", "192.0.2.1", &tor)], 1, &manifest);
    let tor = &lab.routers[0];
    let got = wait_for(Duration::from_secs(40), || {
        table(tor, "ipv4") == ["198.51.100.0/28"] && table(tor, "ipv6") == ["2001:db8:20::/124"]
    });
    assert!(got.is_some(), "ToR holds {:?} {:?}", table(tor, "ipv4"), table(tor, "ipv6"));
    // Two v4 Services, one route: the /32s themselves never went out.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(table(tor, "ipv4"), ["198.51.100.0/28"]);
    assert_eq!(kernel_next_hops(tor, "198.51.100.0/28"), ["192.0.2.11"]);
    println!("ToR holds 198.51.100.0/28 and 2001:db8:20::/124 only, {:?} after start", t.elapsed());
}

#[test]
fn timers_are_what_the_tor_negotiates_and_connect_time_paces_the_retries() {
    require_frr!();
    let manifest = format!(
        "{POOL}---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: tor}}
spec: {{myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.1, holdTime: 30s, keepaliveTime: 1s, connectTime: 1s}}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: all}}
"
    );
    // The ToR keeps FRR's defaults (hold 180 s, keepalive 60 s, connect 120 s) and never
    // connects itself: the node's timers alone decide the hold time and when a session starts.
    let lab = fabric(&[("tor", "192.0.2.1", "")], 1, &manifest);
    let tor = &lab.routers[0];
    // The node has been knocking meanwhile; the ToR listens from now on.
    std::thread::sleep(Duration::from_secs(4));
    let configured = Instant::now();
    tor.configure(
        "router bgp 64500\n bgp router-id 192.0.2.1\n no bgp ebgp-requires-policy\n neighbor 192.0.2.11 remote-as 64512\n \
         neighbor 192.0.2.11 passive\nexit\n",
    );
    let up = wait_for(Duration::from_secs(30), || established(tor, "192.0.2.11"));
    assert!(up.is_some(), "{:#}", neighbor(tor, "192.0.2.11"));
    let took = configured.elapsed();
    let n = neighbor(tor, "192.0.2.11");
    assert_eq!(n["bgpTimerHoldTimeMsecs"].as_u64(), Some(30_000), "{n:#}");
    // Keepalives the node sends: one a second, against one in ten with keepalive derived from
    // the hold time.
    let count = || neighbor(tor, "192.0.2.11")["messageStats"]["keepalivesRecv"].as_u64().unwrap_or(0);
    let before = count();
    std::thread::sleep(Duration::from_secs(5));
    let keepalives = count() - before;
    assert!((4..=7).contains(&keepalives), "{keepalives} keepalives in 5 s\n{n:#}");
    // A connect time of 1 s: the node's next try comes about a second after the ToR listens
    // (measured 2 s; FRR's default would wait up to two minutes).
    assert!(took < Duration::from_secs(10), "session up {took:?} after the ToR started listening");
    println!(
        "ToR negotiated hold 30 s, got {keepalives} keepalives in 5 s; session up {took:?} after it listened"
    );
}

#[test]
fn dynamic_and_local_asns_are_what_the_routers_see() {
    require_frr!();
    // The ToR (AS 64500) is reached with dynamicASN; the edge router (AS 64501) knows the node
    // as AS 64600, its localASN.
    let manifest = format!(
        "{POOL}---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: tor}}
spec: {{myASN: 64512, dynamicASN: external, peerAddress: 192.0.2.1, connectTime: 1s}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: edge}}
spec: {{myASN: 64512, peerASN: 64501, localASN: 64600, peerAddress: 192.0.2.3, connectTime: 1s}}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: all}}
---
apiVersion: v1
kind: Service
metadata: {{name: api, namespace: shop}}
spec: {{type: LoadBalancer}}
"
    );
    let plan = plan_node(&manifest, "node1");
    let api = format!("{}/32", plan.ips_of("shop/api")[0]);
    let tor = tor_for(64512, &["192.0.2.11"], "");
    let edge = "router bgp 64501\n bgp router-id 192.0.2.3\n no bgp ebgp-requires-policy\n neighbor 192.0.2.11 remote-as 64600\n \
                neighbor 192.0.2.11 timers connect 1\nexit\n";
    let lab = fabric(&[("tor", "192.0.2.1", &tor), ("edge", "192.0.2.3", edge)], 1, &manifest);
    let (tor, edge) = (&lab.routers[0], &lab.routers[1]);
    let aspath = |r: &Frr| {
        r.json(&format!("show bgp ipv4 unicast {api} json"))["paths"][0]["aspath"]["string"].clone()
    };
    let up = wait_for(Duration::from_secs(40), || aspath(tor).is_string() && aspath(edge).is_string());
    assert!(up.is_some(), "ToR {:#}\nedge {:#}", neighbor(tor, "192.0.2.11"), neighbor(edge, "192.0.2.11"));
    assert_eq!(aspath(tor), "64512");
    // replace-as, no-prepend: the edge never sees the real AS.
    assert_eq!(aspath(edge), "64600");
    assert_eq!(neighbor(edge, "192.0.2.11")["remoteAs"], 64600);
    println!("dynamicASN external peered with AS 64500; localASN 64600 is all the edge router saw");
}

#[test]
fn families_follow_the_peer_routes_from_the_tor_are_refused_and_the_md5_key_comes_from_a_secret() {
    require_frr!();
    let manifest = |dual: bool| {
        format!(
            "{POOL}---
apiVersion: v1
kind: Secret
metadata: {{name: tor-md5, namespace: metallb-system}}
type: kubernetes.io/basic-auth
data: {{password: c2VjcmV0LWZyb20tYS1zZWNyZXQ=}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: tor}}
spec:
  myASN: 64512
  peerASN: 64500
  peerAddress: 192.0.2.1
  connectTime: 1s
  passwordSecret: {{name: tor-md5, namespace: metallb-system}}
  dualStackAddressFamily: {dual}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: all}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: shop}}
spec: {{type: LoadBalancer, ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4, IPv6]}}
"
        )
    };
    let plan = plan_node(&manifest(false), "node1");
    let (web4, web6) =
        (format!("{}/32", plan.ips_of("shop/web")[0]), format!("{}/128", plan.ips_of("shop/web")[1]));
    // The ToR offers both families on the IPv4 session, and routes of its own in each.
    let tor = tor_for(
        64512,
        &["192.0.2.11"],
        " neighbor 192.0.2.11 password secret-from-a-secret\n neighbor 192.0.2.11 advertisement-interval 0\n no bgp network import-check\n \
         address-family ipv4 unicast\n  network 203.0.113.0/24\n exit-address-family\n \
         address-family ipv6 unicast\n  network 2001:db8:99::/48\n  neighbor 192.0.2.11 activate\n exit-address-family\n",
    );
    let lab = fabric(&[("tor", "192.0.2.1", &tor)], 1, &manifest(false));
    let (tor, (node, agent)) = (&lab.routers[0], &lab.nodes[0]);
    let up = wait_for(Duration::from_secs(40), || learned_from(tor, "ipv4", "192.0.2.11") == [web4.clone()]);
    assert!(up.is_some(), "{:#}", neighbor(tor, "192.0.2.11"));
    // The ToR did send its own route; the node took none of it.
    let sent = |afi: &str, prefix: &str| {
        let v = tor.json(&format!("show bgp {afi} unicast neighbors 192.0.2.11 advertised-routes json"));
        v["advertisedRoutes"].get(prefix).is_some()
    };
    let offered = wait_for(Duration::from_secs(20), || sent("ipv4", "203.0.113.0/24"));
    assert!(offered.is_some(), "ToR table {:?}", table(tor, "ipv4"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(table(node, "ipv4"), std::slice::from_ref(&web4), "the node kept a route of the ToR's");
    assert!(kernel_next_hops(node, "203.0.113.0/24").is_empty());
    // Refused by the rendered deny entry itself, not by FRR treating an undefined route-map as
    // deny-all (the agent once left entries without lines out).
    let running = node.running_config();
    assert!(running.contains("route-map 192.0.2.1-in deny 20\n"), "{running}");
    // Without dualStackAddressFamily the IPv4 session carries IPv4 only, though the ToR offers
    // IPv6 too.
    assert_eq!(learned_from(tor, "ipv6", "192.0.2.11"), Vec::<String>::new());
    assert!(
        neighbor(tor, "192.0.2.11")["addressFamilyInfo"]
            .get("ipv6Unicast")
            .is_none_or(|f| f["acceptedPrefixCounter"] == 0)
    );

    apply(agent, &plan_node(&manifest(true), "node1").frr, 2);
    let both =
        wait_for(Duration::from_secs(40), || learned_from(tor, "ipv6", "192.0.2.11") == [web6.clone()]);
    assert!(both.is_some(), "{:#}", neighbor(tor, "192.0.2.11"));
    let offered = wait_for(Duration::from_secs(20), || sent("ipv6", "2001:db8:99::/48"));
    assert!(offered.is_some(), "ToR table {:?}", table(tor, "ipv6"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(table(node, "ipv6"), std::slice::from_ref(&web6), "the node kept a route of the ToR's");
    println!(
        "MD5 key from the Secret; {web6} over the IPv4 session only with dualStackAddressFamily; the ToR's routes refused"
    );
}
