//! BGP over IPv6 and dual-stack on the cluster lab: a v4 and a v6 BGPPeer towards the ToR, a
//! dual-stack and an IPv6-only LoadBalancer Service; the ToR spreads each family's prefix over
//! both nodes (ECMP) and the client behind it fetches the page over both families.

use std::time::{Duration, Instant};

use crate::cluster_e2e_bgp::lab_with_frr;
use crate::cluster_e2e_l2::{lb_service, reachable};
use crate::cluster_lab::{ClusterLab, node_ip, node_ip6};
use crate::cluster_node::wait_until;
use crate::fabric::kernel_next_hops;

const CONFIG: &str = "apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: routed, namespace: metallb-system}
spec: {addresses: [198.51.100.0/24, '2001:db8:30::/120']}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: tor, namespace: metallb-system}
spec: {myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.1, holdTime: 9s, keepaliveTime: 3s, connectTime: 1s}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: tor6, namespace: metallb-system}
spec: {myASN: 64512, peerASN: 64500, peerAddress: '2001:db8:10::1', holdTime: 9s, keepaliveTime: 3s, connectTime: 1s}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: routed, namespace: metallb-system}
spec: {ipAddressPools: [routed]}
";

fn tor_config(nodes: usize) -> String {
    let mut c = "router bgp 64500\n bgp router-id 192.0.2.1\n no bgp ebgp-requires-policy\n".to_string();
    for group in ["nodes", "nodes6"] {
        c.push_str(&format!(
            " neighbor {group} peer-group\n neighbor {group} remote-as 64512\n neighbor {group} timers 3 9\n neighbor {group} timers connect 1\n"
        ));
    }
    for i in 0..nodes {
        c.push_str(&format!(
            " neighbor {} peer-group nodes\n neighbor {} peer-group nodes6\n",
            node_ip(i),
            node_ip6(i)
        ));
    }
    c.push_str(" address-family ipv4 unicast\n  maximum-paths 8\n exit-address-family\n");
    c.push_str(" address-family ipv6 unicast\n  neighbor nodes6 activate\n  maximum-paths 8\n exit-address-family\nexit\n");
    c
}

fn ingress_ips(lab: &ClusterLab, name: &str, count: usize) -> Vec<String> {
    let mut ips = Vec::new();
    wait_until(Duration::from_secs(20), || {
        let v = lab.get_json(&["get", "svc", name]).unwrap_or_default();
        ips = v["status"]["loadBalancer"]["ingress"]
            .as_array()
            .map(|a| a.iter().filter_map(|i| i["ip"].as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        ips.len() == count
    });
    ips
}

#[test]
fn bgp_ipv6_and_dual_stack_services_reach_the_client_over_both_families() {
    require_cluster!(images: true);
    let lab = lab_with_frr(2, tor_config);
    let applied = wait_until(Duration::from_secs(30), || lab.apply(CONFIG).is_ok());
    assert!(applied.is_some(), "{:?}", lab.apply(CONFIG));
    lab.apply(&lb_service("dual", "Cluster", ", ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4, IPv6]"))
        .unwrap();
    lab.apply(&lb_service("six", "Cluster", ", ipFamilyPolicy: SingleStack, ipFamilies: [IPv6]")).unwrap();
    let dual = ingress_ips(&lab, "dual", 2);
    let six = ingress_ips(&lab, "six", 1);
    assert_eq!(dual.len(), 2, "dual-stack Service got {dual:?}\n{}", lab.ferrolb_logs());
    assert_eq!(six.len(), 1, "IPv6 Service got {six:?}");
    assert!(dual.iter().any(|ip| ip.contains(':')) && dual.iter().any(|ip| !ip.contains(':')), "{dual:?}");
    for ip in dual.iter().chain(&six) {
        let prefix = if ip.contains(':') { format!("{ip}/128") } else { format!("{ip}/32") };
        let ecmp = wait_until(Duration::from_secs(60), || {
            kernel_next_hops(lab.tor(), &prefix).len() == lab.nodes.len()
        });
        assert!(
            ecmp.is_some(),
            "{prefix}: next hops {:?}\n{}",
            kernel_next_hops(lab.tor(), &prefix),
            lab.ferrolb_logs()
        );
        let t = Instant::now();
        let ok = reachable(&lab, ip, t, Duration::from_secs(20));
        assert!(ok.is_some(), "{ip} not reachable from the client");
        println!("{ip}: ECMP over {} nodes at the ToR, page fetched by the client", lab.nodes.len());
    }
}
