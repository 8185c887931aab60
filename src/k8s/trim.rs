//! What the roles never read is dropped before an object enters a cache: a cluster's objects
//! carry managedFields, `kubectl.kubernetes.io/last-applied-configuration`, every image a node
//! has pulled, none of which ferrolb decides with. At 10,000 Services that is most of a role's
//! memory, on every node for the speaker. (EndpointSlices are not kept at all, only what
//! [`crate::topology::SliceEndpoints`] reads of them.)

use k8s_openapi::api::core::v1::{Node, Service};
use kube::Resource;

use crate::api;

/// Annotations ferrolb reads: its own and MetalLB's (current and legacy prefixes).
fn ours(key: &str) -> bool {
    key.starts_with(crate::service::ANNOTATION_PREFIX)
        || key.starts_with(crate::service::LEGACY_PREFIX)
        || key.starts_with("ferrolb.io/")
}

/// The annotations a speaker's decision reads (sharing, and requested IPs a status must match).
fn speaker_reads(key: &str) -> bool {
    use crate::service::{ALLOW_SHARED_IP, LOAD_BALANCER_IPS};
    let suffix = key
        .strip_prefix(crate::service::ANNOTATION_PREFIX)
        .or_else(|| key.strip_prefix(crate::service::LEGACY_PREFIX));
    matches!(suffix, Some(s) if s == ALLOW_SHARED_IP || s == LOAD_BALANCER_IPS)
}

/// managedFields alone, for kinds that are small already.
pub fn meta<K: Resource>(o: &mut K) {
    o.meta_mut().managed_fields = None;
}

/// Name and namespace are what a store keys on; a report's labels, owner, uid and the rest
/// are for people and the garbage collector (~0.6 KB a Service in the controller).
fn only_name<K: Resource>(o: &mut K) {
    let m = o.meta_mut();
    *m = kube::api::ObjectMeta { name: m.name.take(), namespace: m.namespace.take(), ..Default::default() };
}

/// A speaker's report as the controller reads it: which node, about which Service, to which
/// peers (plan::condition).
pub fn l2_report(r: &mut api::ServiceL2Status) {
    only_name(r);
    if let Some(st) = r.status.as_mut() {
        st.interfaces = Vec::new();
    }
}

pub fn bgp_report(r: &mut api::ServiceBGPStatus) {
    only_name(r);
}

/// A speaker's ConfigurationState as the controller reads it: the announcements it cannot
/// make (plan::condition), under its name (`speaker-<node>`).
pub fn speaker_state(r: &mut api::ConfigurationState) {
    only_name(r);
    if let Some(st) = r.status.as_mut() {
        *st = api::ConfigurationStateStatus {
            announce_failures: std::mem::take(&mut st.announce_failures),
            ..Default::default()
        };
    }
}

/// The controller's view of a Service: what allocation and conditions read.
pub fn service(s: &mut Service) {
    meta(s);
    // Nothing reads it: watches track their own resourceVersion, status writes are patches.
    s.metadata.resource_version = None;
    if let Some(a) = s.metadata.annotations.as_mut() {
        a.retain(|k, _| ours(k));
    }
    if let Some(spec) = s.spec.as_mut() {
        spec.session_affinity = None;
        spec.session_affinity_config = None;
        spec.external_ips = None;
        spec.external_name = None;
        spec.load_balancer_source_ranges = None;
        spec.internal_traffic_policy = None;
        spec.health_check_node_port = None;
        spec.publish_not_ready_addresses = None;
        spec.allocate_load_balancer_node_ports = None;
        spec.traffic_distribution = None;
        // Families are read from the cluster IPs when there are any (an API server always
        // assigns them); `clusterIP` repeats the first and `ipFamilies` restates them.
        if spec.cluster_ips.as_ref().is_some_and(|ips| !ips.is_empty()) {
            spec.cluster_ip = None;
            spec.ip_families = None;
        }
        // The pod selector tells local-traffic Services that may share an IP apart, and nothing
        // else (~0.7 KB a Service, benches/heap_profile). Every event brings the whole object,
        // so a Service turned local brings its selector back.
        if spec.external_traffic_policy.as_deref() != Some("Local") {
            spec.selector = None;
        }
        // Ports matter (IP sharing); their names and targets do not.
        for p in spec.ports.iter_mut().flatten() {
            p.name = None;
            p.node_port = None;
            p.target_port = None;
            p.app_protocol = None;
        }
    }
    // Only the addresses are read (the IPs a Service holds); the API server adds ipMode.
    for i in s.status.iter_mut().flat_map(|st| &mut st.load_balancer).flat_map(|lb| &mut lb.ingress).flatten()
    {
        i.ip_mode = None;
        i.ports = None;
    }
}

/// A speaker's view: the controller's, less what only the controller reads (the conditions it
/// writes, the creation time it orders allocations by, the pool asked for: a speaker takes
/// the IPs from the status and their pool from the configuration).
pub fn service_for_speaker(s: &mut Service) {
    service(s);
    s.metadata.creation_timestamp = None;
    if let Some(a) = s.metadata.annotations.as_mut() {
        a.retain(|k, _| speaker_reads(k));
    }
    // An empty map still costs a B-tree leaf once it held an entry (~0.5 KB).
    if s.metadata.annotations.as_ref().is_some_and(|a| a.is_empty()) {
        s.metadata.annotations = None;
    }
    if let Some(st) = s.status.as_mut() {
        st.conditions = None;
    }
}

pub fn node(n: &mut Node) {
    meta(n);
    n.metadata.annotations = None;
    // Of the spec, only the taint that takes a node out of layer 2 (topology::readiness).
    let out_of_service: Vec<_> = (n.spec.take().and_then(|s| s.taints).into_iter().flatten())
        .filter(|t| t.key == crate::topology::readiness::OUT_OF_SERVICE_TAINT)
        .collect();
    n.spec = (!out_of_service.is_empty())
        .then(|| k8s_openapi::api::core::v1::NodeSpec { taints: Some(out_of_service), ..Default::default() });
    if let Some(st) = n.status.as_mut() {
        st.images = None;
        st.node_info = None;
        st.capacity = None;
        st.allocatable = None;
        st.daemon_endpoints = None;
        st.volumes_attached = None;
        st.volumes_in_use = None;
        st.config = None;
        st.features = None;
        st.runtime_handlers = None;
        if let Some(cs) = st.conditions.as_mut() {
            cs.retain(|c| c.type_ == "NetworkUnavailable" || c.type_ == "Ready");
            // The kubelet refreshes heartbeats and messages every few minutes; a change of them
            // decides nothing. When Ready last changed does (topology::readiness).
            for c in cs {
                c.last_heartbeat_time = None;
                c.message = None;
                if c.type_ != "Ready" {
                    c.last_transition_time = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn keeps_what_decisions_read() {
        let mut s: Service = serde_saphyr::from_str(
            "metadata: {name: web, namespace: shop, labels: {app: web}, annotations: {metallb.io/address-pool: a, metallb.universe.tf/allow-shared-ip: k, kubectl.kubernetes.io/last-applied-configuration: '{}'}, managedFields: [{manager: kubectl}]}\n\
             spec: {type: LoadBalancer, selector: {app: web}, externalTrafficPolicy: Local, internalTrafficPolicy: Cluster, sessionAffinity: None, healthCheckNodePort: 30001, allocateLoadBalancerNodePorts: true, clusterIP: 198.18.0.10, clusterIPs: [198.18.0.10, '2001:db8:ffff::10'], ipFamilies: [IPv4, IPv6], ipFamilyPolicy: PreferDualStack, ports: [{name: http, port: 80, nodePort: 30080, targetPort: 8080, protocol: TCP}, {port: 53, protocol: UDP}]}\n\
             status: {loadBalancer: {ingress: [{ip: 192.0.2.1, ipMode: VIP}]}}\n",
        )
        .unwrap();
        let before = crate::service::intake(&s, None);
        assert!(
            matches!(&before, crate::service::Intake::Serve(r) if r.is_dual_stack() && r.ports.len() == 2)
        );
        service(&mut s);
        assert_eq!(crate::service::intake(&s, None), before, "the request read from it is unchanged");
        let spec = s.spec.as_ref().unwrap();
        assert!(
            spec.cluster_ip.is_none() && spec.ip_families.is_none() && spec.health_check_node_port.is_none()
        );
        assert!(spec.ports.iter().flatten().all(|p| p.name.is_none() && p.node_port.is_none()));
        let a = s.metadata.annotations.as_ref().unwrap();
        assert!(
            a.contains_key("metallb.io/address-pool")
                && a.contains_key("metallb.universe.tf/allow-shared-ip")
        );
        assert_eq!(a.len(), 2);
        assert!(s.metadata.managed_fields.is_none());
        assert_eq!(crate::plan::writeback::current_ips(&s), ["192.0.2.1"]);
        assert!(s.spec.as_ref().unwrap().selector.is_some(), "local traffic: the selector is read");
        let mut cluster = s.clone();
        cluster.spec.as_mut().unwrap().external_traffic_policy = Some("Cluster".into());
        let before = crate::service::intake(&cluster, None);
        service(&mut cluster);
        assert_eq!(crate::service::intake(&cluster, None), before);
        assert!(cluster.spec.as_ref().unwrap().selector.is_none());

        // The speaker plans from status IPs, never allocates: the creation time, the pool
        // asked for and the controller's conditions go; everything else it reads stays.
        let mut speaker = s.clone();
        service_for_speaker(&mut speaker);
        let (crate::service::Intake::Serve(a), crate::service::Intake::Serve(b)) =
            (crate::service::intake(&s, None), crate::service::intake(&speaker, None))
        else {
            panic!("both served")
        };
        let read = |r: &crate::service::Request| {
            let shape = (r.key.clone(), r.labels.clone(), r.families.clone(), r.requested_ips.clone());
            (shape, r.sharing(), r.local_traffic, r.ports.clone(), r.current_ips.clone())
        };
        assert_eq!(read(&a), read(&b));
        assert_eq!(b.sharing_key.as_deref(), Some("k"));
        let a = speaker.metadata.annotations.as_ref().unwrap();
        assert_eq!(a.keys().collect::<Vec<_>>(), ["metallb.universe.tf/allow-shared-ip"]);
        let mut unshared = speaker.clone();
        unshared.metadata.annotations.as_mut().unwrap().clear();
        service_for_speaker(&mut unshared);
        assert!(unshared.metadata.annotations.is_none(), "no empty map is kept");

        let mut r: api::ServiceL2Status = serde_saphyr::from_str(
            "metadata: {name: web-x1, generateName: web-, namespace: metallb-system, uid: u2, labels: {metallb.io/node: n1}, ownerReferences: [{apiVersion: v1, kind: Pod, name: speaker-a, uid: u3}]}\n\
             spec: {}\nstatus: {node: n1, serviceName: web, serviceNamespace: shop, interfaces: [{name: eth0}]}\n",
        )
        .unwrap();
        l2_report(&mut r);
        assert_eq!(
            r.metadata,
            kube::api::ObjectMeta {
                name: Some("web-x1".into()),
                namespace: Some("metallb-system".into()),
                ..Default::default()
            }
        );
        let st = r.status.as_ref().unwrap();
        assert_eq!(
            (st.node.as_deref(), st.service_name.as_deref(), st.service_namespace.as_deref()),
            (Some("n1"), Some("web"), Some("shop"))
        );

        let mut n: Node = serde_saphyr::from_str(
            "metadata: {name: n1, labels: {rack: a}}\nstatus: {addresses: [{type: InternalIP, address: 192.0.2.11}], images: [{names: [big]}], conditions: [{type: Ready, status: 'True'}, {type: NetworkUnavailable, status: 'True'}]}\n",
        )
        .unwrap();
        let before = crate::topology::NodeInfo::from_node(&n, false);
        node(&mut n);
        assert_eq!(crate::topology::NodeInfo::from_node(&n, false), before);
        assert!(n.status.as_ref().unwrap().images.is_none());

        // What decides layer 2 fitness stays: the out-of-service taint, Ready and its last
        // transition.
        let mut n: Node = serde_saphyr::from_str(
            "metadata: {name: n1}\nspec: {podCIDR: 198.18.0.0/24, taints: [{key: node.kubernetes.io/unschedulable, effect: NoSchedule}, {key: node.kubernetes.io/out-of-service, effect: NoExecute}]}\n\
             status: {conditions: [{type: Ready, status: 'True', reason: KubeletReady, message: posting, lastHeartbeatTime: '2026-12-06T10:00:09Z', lastTransitionTime: '2026-12-06T10:00:00Z'}, {type: MemoryPressure, status: 'False'}]}\n",
        )
        .unwrap();
        let readiness = |n: &Node, settle| {
            crate::topology::readiness::unfit(
                std::slice::from_ref(n),
                "2026-12-06T10:00:05Z".parse().unwrap(),
                settle,
            )
        };
        let (tainted, settling) = (readiness(&n, Duration::ZERO), readiness(&n, Duration::from_secs(30)));
        node(&mut n);
        assert_eq!(
            (readiness(&n, Duration::ZERO), readiness(&n, Duration::from_secs(30))),
            (tainted, settling)
        );
        assert_eq!(n.spec.as_ref().unwrap().taints.as_ref().unwrap().len(), 1);
        let cs = n.status.as_ref().unwrap().conditions.as_ref().unwrap();
        assert_eq!(cs.len(), 1);
        assert!(cs[0].last_heartbeat_time.is_none() && cs[0].message.is_none());
    }
}
