//! The `ferrolb.io/Announced` condition on each Service (pure): whether its IPs are reachable
//! from outside and, when they are not, the one reason a user should act on.
//!
//! Written by the controller, the single writer of Service status, from what the speakers
//! report (ServiceL2Status, ServiceBGPStatus, BGPPeer session entries) and what it knows
//! itself (allocation, advertisements, endpoints).

use std::collections::BTreeMap;

pub const TYPE: &str = "ferrolb.io/Announced";

/// The reason when every node elected for a Service cannot announce it (the speakers' Event
/// is MetalLB's `announceFailed`).
pub const ANNOUNCE_FAILED_REASON: &str = "AnnounceFailed";
const ANNOUNCE_FAILED: &str = "announce failed";

#[derive(Debug, Clone, Default)]
pub struct ServiceFacts {
    pub ips: Vec<String>,
    /// Why it has no IP, when it has none.
    pub pending: Option<String>,
    pub pool: Option<String>,
    /// Some L2Advertisement or BGPAdvertisement selects its pool.
    pub advertised: bool,
    /// Some endpoint is ready to serve.
    pub serving: bool,
    /// Nodes answering ARP/NDP for it.
    pub l2_nodes: Vec<String>,
    /// Nodes sending it over BGP, each with the peers it goes to.
    pub bgp_nodes: Vec<(String, Vec<String>)>,
    /// Nodes elected to announce it that cannot: (node, what fails and why).
    pub failed: Vec<(String, String)>,
}

/// (peer, node) -> (FRR state, established)
pub type Sessions = BTreeMap<(String, String), (String, bool)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

pub fn announced(f: &ServiceFacts, sessions: &Sessions) -> Announced {
    let no = |reason, message: String| Announced { status: false, reason, message };
    if f.ips.is_empty() {
        return no("NotAllocated", f.pending.clone().unwrap_or_else(|| "no IP allocated yet".into()));
    }
    let mut up = Vec::new();
    let mut down = Vec::new();
    for (node, peers) in &f.bgp_nodes {
        for peer in peers {
            match sessions.get(&(peer.clone(), node.clone())) {
                Some((_, true)) => up.push(format!("{node}->{peer}")),
                Some((state, false)) => down.push(format!("{node}->{peer} {state}")),
                None => down.push(format!("{node}->{peer} unreported")),
            }
        }
    }
    let mut parts = Vec::new();
    if !f.l2_nodes.is_empty() {
        parts.push(format!("layer 2 from {}", f.l2_nodes.join(", ")));
    }
    if !up.is_empty() {
        parts.push(format!("BGP over {}", up.join(", ")));
    }
    let failed: Vec<String> = f.failed.iter().map(|(node, why)| format!("{node}: {why}")).collect();
    if !parts.is_empty() {
        if !down.is_empty() {
            parts.push(format!("sessions down: {}", down.join(", ")));
        }
        if !failed.is_empty() {
            parts.push(format!("{ANNOUNCE_FAILED} on {}", failed.join("; ")));
        }
        return Announced { status: true, reason: "Announced", message: parts.join("; ") };
    }
    // Said before sessions: a node that cannot announce is the cause to fix first.
    if !failed.is_empty() {
        return no(ANNOUNCE_FAILED_REASON, format!("elected, but cannot announce it: {}", failed.join("; ")));
    }
    if !down.is_empty() {
        return no(
            "PeerDown",
            format!("announced, but no BGP session carrying it is established: {}", down.join(", ")),
        );
    }
    if !f.advertised {
        let pool = f.pool.as_deref().unwrap_or("?");
        return no("NotAdvertised", format!("no L2Advertisement or BGPAdvertisement selects pool {pool:?}"));
    }
    if !f.serving {
        return no("NoServingEndpoint", "no endpoint is ready, so no node announces it".into());
    }
    no(
        "NoEligibleNode",
        "no speaker announces it: no node is both selected by its advertisements and eligible \
         (speaker running, not excluded, endpoint there for externalTrafficPolicy Local)"
            .into(),
    )
}

/// The condition of every Service the plan allocated or left pending, from the speakers'
/// reports in the cluster.
pub fn conditions(
    plan: &super::Plan,
    inputs: &super::Inputs,
    l2: &[std::sync::Arc<crate::api::ServiceL2Status>],
    bgp: &[std::sync::Arc<crate::api::ServiceBGPStatus>],
    speakers: &[std::sync::Arc<crate::api::ConfigurationState>],
) -> BTreeMap<String, Announced> {
    // With no configuration at all nothing was decided and nothing moved: what the conditions
    // said still holds. Decided with the last good one, held IPs stay as they are (the
    // writeback touches none), so only Services whose plan is what they hold are judged.
    let Some(config) = plan.config.as_deref() else { return BTreeMap::new() };
    let held: BTreeMap<String, Vec<String>> = inputs
        .services
        .iter()
        .map(|s| (super::writeback::key(s), super::writeback::current_ips(s)))
        .filter(|(_, ips)| !ips.is_empty())
        .collect();
    let endpoints = crate::topology::Endpoints::from_slices(inputs.endpoint_slices.iter().map(|s| &**s));
    let mut sessions = Sessions::new();
    for p in &inputs.objects.peers {
        let name = p.metadata.name.clone().unwrap_or_default();
        for s in p.status.iter().flat_map(|s| &s.sessions) {
            sessions.insert((name.clone(), s.node.clone()), (s.state.clone(), s.established));
        }
    }
    let key = |ns: &Option<String>, name: &Option<String>| {
        format!("{}/{}", ns.as_deref().unwrap_or(""), name.as_deref().unwrap_or(""))
    };
    let (mut failed, bgp_failed) = speaker_failures(speakers, inputs);
    let mut l2_nodes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in l2.iter().filter_map(|o| o.status.as_ref()) {
        if let Some(node) = &s.node {
            l2_nodes.entry(key(&s.service_namespace, &s.service_name)).or_default().push(node.clone());
        }
    }
    let mut bgp_nodes: BTreeMap<String, Vec<(String, Vec<String>)>> = BTreeMap::new();
    for s in bgp.iter().filter_map(|o| o.status.as_ref()) {
        if let Some(node) = &s.node
            && !bgp_failed.contains(&(key(&s.service_namespace, &s.service_name), node.clone()))
        {
            bgp_nodes
                .entry(key(&s.service_namespace, &s.service_name))
                .or_default()
                .push((node.clone(), s.peers.clone()));
        }
    }
    let mut out = BTreeMap::new();
    for a in &plan.allocations {
        if !plan.is_valid() && held.get(&a.service).is_some_and(|ips| *ips != a.ips) {
            continue;
        }
        let mut facts = ServiceFacts {
            ips: a.ips.clone(),
            pending: None,
            pool: Some(a.pool.clone()),
            advertised: plan.advertised_pools.contains(&a.pool),
            serving: endpoints.served_anywhere(&a.service),
            l2_nodes: l2_nodes.remove(&a.service).unwrap_or_default(),
            bgp_nodes: bgp_nodes.remove(&a.service).unwrap_or_default(),
            failed: failed.remove(&a.service).unwrap_or_default(),
        };
        facts.l2_nodes.sort();
        facts.bgp_nodes.sort();
        out.insert(a.service.clone(), announced(&facts, &sessions));
    }
    for p in &plan.pending {
        if !plan.is_valid() && held.contains_key(&p.service) {
            continue;
        }
        let facts = ServiceFacts { pending: Some(p.reason.clone()), ..Default::default() };
        out.insert(p.service.clone(), announced(&facts, &sessions));
    }
    // Decided with the last good configuration, a Service may keep an IP none of its pools
    // contains (a valid plan would move it): no speaker announces that, so say it.
    if !plan.is_valid() {
        let ours = plan.allocations.iter().map(|a| &a.service).chain(plan.pending.iter().map(|p| &p.service));
        for service in ours {
            let Some(ips) = held.get(service) else { continue };
            let outside: Vec<&str> = ips
                .iter()
                .filter(|ip| ip.parse().map_or(true, |ip| config.pool_of(ip).is_err()))
                .map(String::as_str)
                .collect();
            if !outside.is_empty() {
                out.insert(service.clone(), outside_pools(&outside));
            }
        }
    }
    out
}

/// Per Service, the nodes that cannot announce it, each with what fails and why.
type Failed = BTreeMap<String, Vec<(String, String)>>;

/// What the speakers say they cannot announce: per Service (node, what fails and why), and
/// the (Service, node) pairs whose BGP announcement failed. A node's ServiceBGPStatus lists the
/// peers it is configured for, so such a node must not count as sending the Service.
fn speaker_failures(
    speakers: &[std::sync::Arc<crate::api::ConfigurationState>],
    inputs: &super::Inputs,
) -> (Failed, std::collections::BTreeSet<(String, String)>) {
    let mut failed = Failed::new();
    let mut bgp_failed = std::collections::BTreeSet::new();
    let nodes: std::collections::BTreeSet<&str> =
        inputs.objects.nodes.iter().filter_map(|n| n.metadata.name.as_deref()).collect();
    for state in speakers {
        let name = state.metadata.name.as_deref().unwrap_or_default();
        let node = name.strip_prefix("speaker-").unwrap_or(name);
        // A speaker whose Node is gone says nothing any more about what it cannot do.
        if !nodes.contains(node) {
            continue;
        }
        for f in state.status.iter().flat_map(|s| &s.announce_failures) {
            if f.protocol == "bgp" {
                bgp_failed.insert((f.service.clone(), node.to_string()));
            }
            let what = format!("{}: {}", f.over(), f.reason);
            failed.entry(f.service.clone()).or_default().push((node.to_string(), what));
        }
    }
    (failed, bgp_failed)
}

pub const OUTSIDE_POOLS: &str = "IPOutsidePools";

fn outside_pools(ips: &[&str]) -> Announced {
    Announced {
        status: false,
        reason: OUTSIDE_POOLS,
        message: format!(
            "{} in no IPAddressPool of the configuration in force, so no node announces it",
            if ips.len() == 1 { format!("{} is", ips[0]) } else { format!("{} are", ips.join(", ")) }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_configuration_rewrites_no_condition() {
        let yaml = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\nspec: {addresses: [192.0.2.0/24]}\n---\n\
                    apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: b}\nspec: {addresses: [192.0.2.0/25]}\n---\n\
                    apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {type: LoadBalancer}\n\
                    status: {loadBalancer: {ingress: [{ip: 192.0.2.1}]}}\n";
        let mut inputs = crate::plan::Inputs::new("metallb-system");
        inputs.add_yaml("t", yaml).unwrap();
        let p = crate::plan::plan(&inputs, &Default::default());
        assert!(!p.is_valid() && !p.pending.is_empty());
        assert!(conditions(&p, &inputs, &[], &[], &[]).is_empty());
    }

    #[test]
    fn decided_with_the_last_good_configuration_held_services_keep_their_word() {
        let pool = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\nspec: {addresses: [192.0.2.0/24]}\n";
        let svc = |name: &str, ip: Option<&str>| {
            let status = ip
                .map(|ip| format!("status: {{loadBalancer: {{ingress: [{{ip: {ip}}}]}}}}\n"))
                .unwrap_or_default();
            format!(
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{type: LoadBalancer}}\n{status}"
            )
        };
        let good = format!("{pool}{}{}", svc("web", Some("192.0.2.1")), svc("far", Some("203.0.113.1")));
        let mut inputs = crate::plan::Inputs::new("metallb-system");
        inputs.add_yaml("t", &good).unwrap();
        let last_good = crate::plan::plan(&inputs, &Default::default()).config.unwrap();
        let bad = "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: b}\nspec: {addresses: [192.0.2.0/25]}\n";
        let mut inputs = crate::plan::Inputs::new("metallb-system");
        inputs.add_yaml("t", &format!("{good}{bad}{}", svc("new", None))).unwrap();
        let p = crate::plan::plan_with_last_good(&inputs, &Default::default(), Some(&last_good));
        assert!(p.stale);
        let c = conditions(&p, &inputs, &[], &[], &[]);
        assert_eq!(c["shop/web"].reason, "NotAdvertised", "judged by the last good configuration");
        assert_eq!(c["shop/far"].reason, OUTSIDE_POOLS);
        assert!(
            c["shop/far"].message.starts_with("203.0.113.1 is in no IPAddressPool"),
            "{}",
            c["shop/far"].message
        );
        assert!(c.contains_key("shop/new"));
    }

    fn facts() -> ServiceFacts {
        ServiceFacts {
            ips: vec!["192.0.2.10".into()],
            pool: Some("front".into()),
            advertised: true,
            serving: true,
            ..Default::default()
        }
    }

    #[test]
    fn each_reason_in_the_order_a_user_would_fix_it() {
        let none = Sessions::new();
        let pending = ServiceFacts { ips: vec![], pending: Some("pool front is full".into()), ..facts() };
        assert_eq!(announced(&pending, &none).reason, "NotAllocated");
        assert_eq!(announced(&pending, &none).message, "pool front is full");
        assert_eq!(announced(&ServiceFacts { advertised: false, ..facts() }, &none).reason, "NotAdvertised");
        assert_eq!(announced(&ServiceFacts { serving: false, ..facts() }, &none).reason, "NoServingEndpoint");
        assert_eq!(announced(&facts(), &none).reason, "NoEligibleNode");
    }

    #[test]
    fn a_node_that_cannot_announce_is_the_reason_unless_another_announces() {
        let failed = vec![("node1".to_string(), "layer 2: 192.0.2.10: none of the interfaces".to_string())];
        let f = ServiceFacts { failed: failed.clone(), ..facts() };
        let a = announced(&f, &Sessions::new());
        assert_eq!((a.status, a.reason), (false, ANNOUNCE_FAILED_REASON));
        assert_eq!(
            a.message,
            "elected, but cannot announce it: node1: layer 2: 192.0.2.10: none of the interfaces"
        );
        // Before a session that is down: the node is what to fix first.
        let f = ServiceFacts { bgp_nodes: vec![("node2".into(), vec!["tor".into()])], ..f };
        assert_eq!(announced(&f, &Sessions::new()).reason, ANNOUNCE_FAILED_REASON);
        // Announced elsewhere: reachable, and the failure still said.
        let mut sessions = Sessions::new();
        sessions.insert(("tor".into(), "node2".into()), ("Established".into(), true));
        let a = announced(&f, &sessions);
        assert_eq!((a.status, a.reason), (true, "Announced"));
        assert_eq!(
            a.message,
            "BGP over node2->tor; announce failed on node1: layer 2: 192.0.2.10: none of the interfaces"
        );
    }

    #[test]
    fn the_speakers_failures_reach_the_services_they_name() {
        let yaml = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a}\nspec: {addresses: [192.0.2.0/24]}\n---\n\
                    apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2}\n---\n\
                    apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {type: LoadBalancer}\n\
                    status: {loadBalancer: {ingress: [{ip: 192.0.2.1}]}}\n---\n\
                    apiVersion: v1\nkind: Node\nmetadata: {name: node1}\n";
        let mut inputs = crate::plan::Inputs::new("metallb-system");
        inputs.add_yaml("t", yaml).unwrap();
        let p = crate::plan::plan(&inputs, &Default::default());
        let state = |protocol: &str| {
            std::sync::Arc::new(crate::api::ConfigurationState {
                metadata: kube::api::ObjectMeta { name: Some("speaker-node1".into()), ..Default::default() },
                spec: Default::default(),
                status: Some(crate::api::ConfigurationStateStatus {
                    announce_failures: vec![crate::api::AnnounceFailure {
                        service: "shop/web".into(),
                        protocol: protocol.into(),
                        reason: "192.0.2.1: this node has no interface".into(),
                    }],
                    ..Default::default()
                }),
            })
        };
        let c = conditions(&p, &inputs, &[], &[], &[state("layer2")]);
        assert_eq!(c["shop/web"].reason, ANNOUNCE_FAILED_REASON);
        let said = &c["shop/web"].message;
        assert!(said.contains("node1: layer 2: 192.0.2.1: this node has no interface"), "{said}");

        // Over BGP node1's ServiceBGPStatus still lists the peer, and its session is up (FRR
        // runs an older configuration): not announced all the same, as FRR does not send it.
        let bgp: crate::api::ServiceBGPStatus = serde_saphyr::from_str(
            "metadata: {name: bgp-1, namespace: metallb-system}\nspec: {}\n\
             status: {node: node1, serviceName: web, serviceNamespace: shop, peers: [tor]}\n",
        )
        .unwrap();
        let mut peer: crate::api::BGPPeer = serde_saphyr::from_str(
            "metadata: {name: tor, namespace: metallb-system}\n\
             spec: {myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.254}\n",
        )
        .unwrap();
        let up =
            serde_json::json!({"sessions": [{"node": "node1", "state": "Established", "established": true}]});
        peer.status = serde_json::from_value(up).unwrap();
        let mut inputs = inputs.clone();
        inputs.objects.peers.push(peer);
        let bgp = [std::sync::Arc::new(bgp)];
        let c = conditions(&p, &inputs, &[], &bgp, &[]);
        assert_eq!(c["shop/web"].reason, "Announced", "the control: up without the failure");
        let c = conditions(&p, &inputs, &[], &bgp, &[state("bgp")]);
        assert_eq!((c["shop/web"].status, c["shop/web"].reason), (false, ANNOUNCE_FAILED_REASON));

        // The Node is gone: its speaker's leftover failures are not said.
        inputs.objects.nodes.clear();
        let c = conditions(&p, &inputs, &[], &bgp, &[state("bgp")]);
        assert_eq!(c["shop/web"].reason, "Announced");
    }

    #[test]
    fn bgp_counts_only_with_an_established_session() {
        let f = ServiceFacts { bgp_nodes: vec![("node1".into(), vec!["tor".into()])], ..facts() };
        let mut sessions = Sessions::new();
        sessions.insert(("tor".into(), "node1".into()), ("Active".into(), false));
        let a = announced(&f, &sessions);
        assert_eq!((a.status, a.reason), (false, "PeerDown"));
        assert!(a.message.contains("node1->tor Active"), "{}", a.message);
        sessions.insert(("tor".into(), "node1".into()), ("Established".into(), true));
        let a = announced(&f, &sessions);
        assert_eq!((a.status, a.reason), (true, "Announced"));
        assert_eq!(a.message, "BGP over node1->tor");
    }

    #[test]
    fn layer_2_and_partial_bgp_are_both_said() {
        let f = ServiceFacts {
            l2_nodes: vec!["node2".into()],
            bgp_nodes: vec![("node1".into(), vec!["tor".into()])],
            ..facts()
        };
        let a = announced(&f, &Sessions::new());
        assert!(a.status);
        assert_eq!(a.message, "layer 2 from node2; sessions down: node1->tor unreported");
    }
}
