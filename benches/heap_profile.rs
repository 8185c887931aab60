//! Where a role's heap goes at N Services, by structure, without an API server: the objects
//! the caches keep (realistic API-server objects passed through the caches' trims, held in
//! kube reflector stores), the indexes beside them, then the decision state each role keeps
//! between passes. A counting global allocator measures the live bytes after each layer; the
//! difference divided by N is the layer's cost per Service.
//!
//!     cargo bench --bench heap_profile              # 10,000 Services, layer 2 and BGP
//!     cargo bench --bench heap_profile -- 1000      # another count
//!     cargo bench --bench heap_profile -- bare      # objects as the scale test creates them
//!
//! "requested" is what the program asked for; "malloc" adds what glibc spends on each block
//! (its usable size plus an 8-byte header): what the heap really costs in RSS, before
//! fragmentation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use serde_json::json;

use ferrolb::api;
use ferrolb::k8s::trim;
use ferrolb::plan::incremental::{Allocations, NodeAnnouncements};
use ferrolb::plan::{self, Inputs, Options, condition, node_status, writeback};
use ferrolb::topology::SliceEndpoints;

struct Counting;

static REQUESTED: AtomicUsize = AtomicUsize::new(0);
static MALLOC: AtomicUsize = AtomicUsize::new(0);
static BLOCKS: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// `bare`: objects shaped as the scale test creates them (no labels, no selector, a slice with
/// only its service-name label and no owner).
static BARE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What glibc spends on a block: its usable size and the chunk header.
fn footprint(p: *mut u8) -> usize {
    // SAFETY: `p` is a live block of the system allocator.
    unsafe { libc::malloc_usable_size(p.cast()) + 8 }
}

fn added(p: *mut u8, size: usize) {
    REQUESTED.fetch_add(size, Relaxed);
    let now = MALLOC.fetch_add(footprint(p), Relaxed) + footprint(p);
    BLOCKS.fetch_add(1, Relaxed);
    PEAK.fetch_max(now, Relaxed);
}

fn removed(p: *mut u8, size: usize) {
    REQUESTED.fetch_sub(size, Relaxed);
    MALLOC.fetch_sub(footprint(p), Relaxed);
    BLOCKS.fetch_sub(1, Relaxed);
}

// SAFETY: every call goes to System unchanged; the counters only observe.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: as GlobalAlloc::alloc.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            added(p, l.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: as GlobalAlloc::alloc_zeroed.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            added(p, l.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        removed(p, l.size());
        // SAFETY: as GlobalAlloc::dealloc.
        unsafe { System.dealloc(p, l) }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let before = footprint(p);
        // SAFETY: as GlobalAlloc::realloc.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            REQUESTED.fetch_add(new, Relaxed);
            REQUESTED.fetch_sub(l.size(), Relaxed);
            let now = MALLOC.fetch_add(footprint(q), Relaxed) + footprint(q);
            MALLOC.fetch_sub(before, Relaxed);
            PEAK.fetch_max(now - before, Relaxed);
        }
        q
    }
}

#[global_allocator]
static A: Counting = Counting;

#[derive(Clone, Copy)]
struct Meter {
    requested: usize,
    malloc: usize,
    blocks: usize,
}

fn now() -> Meter {
    Meter { requested: REQUESTED.load(Relaxed), malloc: MALLOC.load(Relaxed), blocks: BLOCKS.load(Relaxed) }
}

/// One table of layers, each measured as the change since the previous mark.
struct Table {
    n: usize,
    mark: Meter,
    total: (f64, f64),
}

impl Table {
    fn new(title: &str, n: usize) -> Table {
        println!("\n{title} (N = {n})");
        println!(
            "  {:<62} {:>10} {:>10} {:>8} {:>10}",
            "layer", "req B/svc", "malloc B/svc", "blk/svc", "malloc MiB"
        );
        Table { n, mark: now(), total: (0.0, 0.0) }
    }

    /// The change since the last mark, as a row; kept in the total when `retained`.
    fn row(&mut self, name: &str, retained: bool) {
        let m = now();
        self.print(name, self.mark, m, retained);
        self.mark = m;
    }

    fn print(&mut self, name: &str, a: Meter, b: Meter, retained: bool) {
        let d = |x: usize, y: usize| y as f64 - x as f64;
        let (r, m, k) = (d(a.requested, b.requested), d(a.malloc, b.malloc), d(a.blocks, b.blocks));
        let n = self.n as f64;
        if retained {
            self.total.0 += r;
            self.total.1 += m;
        }
        let name = if retained { name.to_string() } else { format!("({name})") };
        println!("  {name:<62} {:>10.0} {:>10.0} {:>8.1} {:>10.2}", r / n, m / n, k / n, m / 1048576.0);
    }

    /// A row for something built and dropped inside `f` (its size while it lived), not kept.
    fn sub<T>(&mut self, name: &str, f: impl FnOnce() -> T) {
        let a = now();
        let t = f();
        let b = now();
        drop(t);
        self.print(name, a, b, false);
        self.mark = now();
    }

    /// The peak of `f` above the live bytes before it.
    fn peak<T>(&mut self, name: &str, f: impl FnOnce() -> T) -> T {
        let a = now();
        PEAK.store(a.malloc, Relaxed);
        let t = f();
        let p = PEAK.load(Relaxed);
        println!(
            "  {:<62} {:>10} {:>10.0} {:>8} {:>10.2}",
            format!("(peak of {name})"),
            "",
            (p - a.malloc) as f64 / self.n as f64,
            "",
            (p - a.malloc) as f64 / 1048576.0
        );
        self.mark = now();
        t
    }

    fn end(&self) {
        let n = self.n as f64;
        println!(
            "  {:<62} {:>10.0} {:>10.0} {:>8} {:>10.2}",
            "retained total",
            self.total.0 / n,
            self.total.1 / n,
            "",
            self.total.1 / 1048576.0
        );
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// The scale benchmark's configuration: an L2Advertisement.
    Layer2,
    /// One BGPPeer and one BGPAdvertisement.
    Bgp,
}

const POOLS: &str = include_str!("scale-pools.yaml");

const L2: &str = "---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: all, namespace: metallb-system}
";

const BGP: &str = "---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: tor, namespace: metallb-system}
spec: {myASN: 64500, peerASN: 64501, peerAddress: 192.0.2.254}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: all, namespace: metallb-system}
";

fn uid(i: usize, salt: u32) -> String {
    format!("{salt:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", i % 65536, i % 4096, (i / 7) % 4096, i * 2654435761)
}

fn time(i: usize) -> String {
    format!("2026-01-01T{:02}:{:02}:{:02}Z", i / 3600 % 24, i / 60 % 60, i % 60)
}

fn pool_of(i: usize) -> (&'static str, &'static [&'static str], &'static str) {
    match i % 5 {
        0 => ("v6", &["IPv6"], "SingleStack"),
        1 => ("dual", &["IPv4", "IPv6"], "RequireDualStack"),
        _ => ("v4", &["IPv4"], "SingleStack"),
    }
}

/// Service `i` as the API server returns it after `kubectl apply` and the controller's writes
/// (`ips`, the pool annotation and an Announced condition saying `announced`).
fn service(
    i: usize,
    ips: &[String],
    pool: Option<&str>,
    announced: Option<&condition::Announced>,
) -> Service {
    let (want_pool, families, policy) = pool_of(i);
    let name = format!("s{i}");
    let cluster_ips: Vec<String> = families
        .iter()
        .map(|f| {
            if *f == "IPv4" {
                format!("10.96.{}.{}", i / 250, i % 250 + 1)
            } else {
                format!("fd00:10:96::{i:x}")
            }
        })
        .collect();
    let mut annotations = serde_json::Map::new();
    annotations.insert("metallb.io/address-pool".into(), want_pool.into());
    if i % 20 == 2 || i % 20 == 3 {
        annotations.insert("metallb.io/allow-shared-ip".into(), format!("k{}", i / 20).into());
    }
    let port = 80 + i % 20;
    let applied = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "bulk", "labels": {"app": name, "app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "bulk"}, "annotations": annotations.clone()},
        "spec": {"type": "LoadBalancer", "selector": {"app": name}, "ipFamilies": families, "ipFamilyPolicy": policy, "ports": [{"name": "http", "port": port, "targetPort": 8080, "protocol": "TCP"}]}
    });
    annotations
        .insert("kubectl.kubernetes.io/last-applied-configuration".into(), format!("{applied}\n").into());
    if let Some(p) = pool {
        annotations.insert(writeback::POOL_ANNOTATION.into(), p.into());
    }
    let ingress: Vec<_> = ips.iter().map(|ip| json!({"ip": ip, "ipMode": "VIP"})).collect();
    let conditions: Vec<_> = announced
        .iter()
        .map(|a| {
            json!({"type": condition::TYPE, "status": if a.status { "True" } else { "False" }, "reason": a.reason,
                   "message": a.message, "lastTransitionTime": time(i)})
        })
        .collect();
    let v = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": name, "namespace": "bulk", "uid": uid(i, 0x5e41), "resourceVersion": (1_000_000 + i).to_string(),
            "creationTimestamp": time(i),
            "labels": {"app": name, "app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "bulk"},
            "annotations": annotations,
            "managedFields": [
                {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1", "time": time(i), "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}, "f:metallb.io/address-pool": {}}, "f:labels": {".": {}, "f:app": {}, "f:app.kubernetes.io/name": {}, "f:app.kubernetes.io/part-of": {}}},
                              "f:spec": {"f:allocateLoadBalancerNodePorts": {}, "f:externalTrafficPolicy": {}, "f:internalTrafficPolicy": {}, "f:ipFamilies": {}, "f:ipFamilyPolicy": {}, "f:ports": {".": {}, "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {}}}, "f:selector": {}, "f:sessionAffinity": {}, "f:type": {}}}},
                {"manager": "ferrolb-controller", "operation": "Update", "apiVersion": "v1", "time": time(i), "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:annotations": {"f:metallb.io/ip-allocated-from-pool": {}}}}},
                {"manager": "ferrolb-controller", "operation": "Update", "apiVersion": "v1", "time": time(i), "fieldsType": "FieldsV1", "subresource": "status",
                 "fieldsV1": {"f:status": {"f:conditions": {".": {}, "k:{\"type\":\"ferrolb.io/Announced\"}": {".": {}, "f:lastTransitionTime": {}, "f:message": {}, "f:reason": {}, "f:status": {}, "f:type": {}}}, "f:loadBalancer": {"f:ingress": {}}}}}
            ]
        },
        "spec": {
            "type": "LoadBalancer", "selector": {"app": name},
            "ports": [{"name": "http", "protocol": "TCP", "port": port, "targetPort": 8080, "nodePort": 30000 + i % 2700}],
            "clusterIP": cluster_ips[0], "clusterIPs": cluster_ips, "ipFamilies": families, "ipFamilyPolicy": policy,
            "sessionAffinity": "None", "externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster",
            "allocateLoadBalancerNodePorts": true
        },
        "status": {"loadBalancer": {"ingress": ingress}, "conditions": conditions}
    });
    let mut s: Service = serde_json::from_value(v).expect("a Service");
    if BARE.load(Relaxed) {
        s.metadata.labels = None;
        if let Some(spec) = s.spec.as_mut() {
            spec.selector = None;
        }
    }
    s
}

/// The EndpointSlice of Service `i` as the endpointslice controller writes it: one endpoint.
fn endpoint_slice(i: usize) -> EndpointSlice {
    let name = format!("s{i}");
    let v = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{name}-x7k2p"), "generateName": format!("{name}-"), "namespace": "bulk",
            "uid": uid(i, 0xe5), "resourceVersion": (2_000_000 + i).to_string(), "generation": 1, "creationTimestamp": time(i),
            "labels": {"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                       "app": name, "app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "bulk"},
            "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": time(i)},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name, "uid": uid(i, 0x5e41), "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "discovery.k8s.io/v1", "time": time(i), "fieldsType": "FieldsV1",
                "fieldsV1": {"f:addressType": {}, "f:endpoints": {}, "f:metadata": {"f:annotations": {}, "f:generateName": {}, "f:labels": {}, "f:ownerReferences": {}}, "f:ports": {}}}]
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [format!("10.244.{}.{}", i / 250, i % 250 + 1)], "conditions": {"ready": true, "serving": true, "terminating": false},
                       "nodeName": format!("node{:03}", i % 100), "zone": "zone-a",
                       "targetRef": {"kind": "Pod", "namespace": "bulk", "name": format!("{name}-6d4f9c8b7-q2w4e"), "uid": uid(i, 0x9d)}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    });
    let mut e: EndpointSlice = serde_json::from_value(v).expect("an EndpointSlice");
    if BARE.load(Relaxed) {
        e.metadata.labels = Some(BTreeMap::from([("kubernetes.io/service-name".into(), name)]));
        e.metadata.owner_references = None;
        for ep in &mut e.endpoints {
            ep.target_ref = None;
            ep.zone = None;
        }
    }
    e
}

fn node(i: usize) -> Node {
    let name = format!("node{i:03}");
    let v = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "uid": uid(i, 0x40de), "resourceVersion": "1",
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "topology.kubernetes.io/zone": "zone-a"},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": {"podCIDR": format!("10.244.{i}.0/24"), "podCIDRs": [format!("10.244.{i}.0/24")]},
        "status": {"addresses": [{"type": "InternalIP", "address": format!("192.0.2.{}", i + 10)}, {"type": "Hostname", "address": name}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": time(i), "lastTransitionTime": time(i)}],
            "images": [{"names": ["registry.k8s.io/pause:3.9"], "sizeBytes": 321520}]}
    });
    serde_json::from_value(v).expect("a Node")
}

fn store_of<K>(objects: impl IntoIterator<Item = K>) -> (Store<K>, reflector::store::Writer<K>)
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(o));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    (store, writer)
}

/// The index `ClusterCache` keeps beside an indexed store (`changes::Tracker`, same types).
#[derive(Default)]
struct Tracker {
    by_service: HashMap<String, Vec<(String, String)>>,
    about: HashMap<(String, String), String>,
}

impl Tracker {
    fn index(&mut self, ns: &str, name: &str, service: String) {
        let name = (ns.to_string(), name.to_string());
        self.by_service.entry(service.clone()).or_default().push(name.clone());
        self.about.insert(name, service);
    }
}

fn config_objects(mode: Mode) -> Inputs {
    let mut inputs = Inputs::new("metallb-system");
    let extra = if mode == Mode::Layer2 { L2 } else { BGP };
    inputs.add_yaml("config", &format!("{POOLS}{extra}")).expect("config parses");
    inputs.objects.nodes = (0..100)
        .map(|i| {
            let mut n = node(i);
            trim::node(&mut n);
            n
        })
        .collect();
    inputs
}

/// What the cluster looks like once the controller decided: every Service's IPs, pool and
/// condition as the controller wrote them.
struct World {
    ips: Vec<Vec<String>>,
    pools: Vec<Option<String>>,
    announced: BTreeMap<String, condition::Announced>,
    reports_l2: Vec<Arc<api::ServiceL2Status>>,
    reports_bgp: Vec<Arc<api::ServiceBGPStatus>>,
}

fn report_meta(i: usize, node: &str, prefix: &str) -> kube::api::ObjectMeta {
    serde_json::from_value(json!({
        "name": format!("{prefix}{}", uid(i, 0x11).split('-').next_back().unwrap_or_default()),
        "generateName": prefix, "namespace": "metallb-system", "uid": uid(i, 0x22), "resourceVersion": (3_000_000 + i).to_string(),
        "generation": 1, "creationTimestamp": time(i),
        "labels": {"metallb.io/node": node, "metallb.io/service-name": format!("s{i}"), "metallb.io/service-namespace": "bulk"},
        "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": format!("speaker-{node}"), "uid": uid(i % 100, 0x33), "controller": true}]
    }))
    .expect("metadata")
}

fn world(n: usize, mode: Mode, config: &Inputs) -> World {
    let mut inputs = Inputs { objects: config.objects.clone(), ..Default::default() };
    inputs.services = (0..n).map(|i| Arc::new(service(i, &[], None, None))).collect();
    for s in &mut inputs.services {
        trim::service(Arc::make_mut(s));
    }
    inputs.endpoint_slices = (0..n).map(|i| Arc::new(slice_endpoints(i))).collect();
    let p = plan::plan(&inputs, &Options::default());
    let by_key: HashMap<_, _> = p.allocations.iter().map(|a| (a.service.clone(), a)).collect();
    let mut ips: Vec<Vec<String>> = Vec::new();
    let mut pools = Vec::new();
    for i in 0..n {
        let a = by_key.get(&format!("bulk/s{i}"));
        ips.push(a.map(|a| a.ips.iter().map(ToString::to_string).collect()).unwrap_or_default());
        pools.push(a.map(|a| a.pool.clone()));
    }
    // Layer 2: the elected node of each Service reports it; BGP: node000 reports them all (one
    // speaker's reports: every speaker that runs FRR adds as many).
    let (mut reports_l2, mut reports_bgp) = (Vec::new(), Vec::new());
    for i in 0..n {
        match mode {
            Mode::Layer2 => {
                let node = format!("node{:03}", i % 100);
                let status = api::ServiceL2StatusStatus {
                    node: Some(node.clone()),
                    service_name: Some(format!("s{i}")),
                    service_namespace: Some("bulk".into()),
                    interfaces: Vec::new(),
                };
                let mut r = api::ServiceL2Status::new("x", Default::default());
                r.metadata = report_meta(i, &node, "l2-");
                r.status = Some(status);
                reports_l2.push(Arc::new(r));
            }
            Mode::Bgp => {
                let status = api::ServiceBGPStatusStatus {
                    node: Some("node000".into()),
                    service_name: Some(format!("s{i}")),
                    service_namespace: Some("bulk".into()),
                    peers: vec!["tor".into()],
                };
                let mut r = api::ServiceBGPStatus::new("x", Default::default());
                r.metadata = report_meta(i, "node000", "bgp-");
                r.status = Some(status);
                reports_bgp.push(Arc::new(r));
            }
        }
    }
    for s in &mut inputs.services {
        let i: usize = s.metadata.name.as_deref().unwrap_or_default()[1..].parse().unwrap_or_default();
        *s = Arc::new(service(i, &ips[i], pools[i].as_deref(), None));
        trim::service(Arc::make_mut(s));
    }
    let announced = condition::conditions(&p, &inputs, &reports_l2, &reports_bgp, &[]);
    World { ips, pools, announced, reports_l2, reports_bgp }
}

fn trimmed_service(i: usize, w: &World, trim: fn(&mut Service)) -> Service {
    let mut s = service(i, &w.ips[i], w.pools[i].as_deref(), w.announced.get(&format!("bulk/s{i}")));
    trim(&mut s);
    s
}

/// What the caches keep of slice `i`.
fn slice_endpoints(i: usize) -> SliceEndpoints {
    SliceEndpoints::of(&endpoint_slice(i))
}

/// The caches both roles keep: Services, EndpointSlices with their index, Nodes and the
/// configuration; with a breakdown of one Service's parts.
fn caches(
    t: &mut Table,
    n: usize,
    w: &World,
    config: &Inputs,
    trim: fn(&mut Service),
) -> (Store<Service>, Store<SliceEndpoints>, Tracker) {
    t.sub("one Service as listed, untrimmed (transient)", || {
        (0..n)
            .map(|i| service(i, &w.ips[i], w.pools[i].as_deref(), w.announced.get(&format!("bulk/s{i}"))))
            .collect::<Vec<_>>()
    });
    let sample: Vec<Service> = (0..n).map(|i| trimmed_service(i, w, trim)).collect();
    t.mark = now();
    let part = |t: &mut Table, name: &str, f: &dyn Fn(&Service) -> Box<dyn std::any::Any>| {
        t.sub(name, || sample.iter().map(f).collect::<Vec<_>>());
    };
    println!("  -- a trimmed Service, by part (each a clone, inline size included):");
    t.sub("  Arc<Service> (whole object)", || sample.iter().cloned().map(Arc::new).collect::<Vec<_>>());
    part(t, "  metadata (ObjectMeta)", &|s| Box::new(s.metadata.clone()));
    part(t, "    metadata.labels", &|s| Box::new(s.metadata.labels.clone()));
    part(t, "    metadata.annotations (ours only)", &|s| Box::new(s.metadata.annotations.clone()));
    part(t, "    metadata.name+namespace", &|s| {
        Box::new((s.metadata.name.clone(), s.metadata.namespace.clone()))
    });
    part(t, "    metadata.uid+resourceVersion+creationTimestamp", &|s| {
        Box::new((
            s.metadata.uid.clone(),
            s.metadata.resource_version.clone(),
            s.metadata.creation_timestamp.clone(),
        ))
    });
    part(t, "  spec (ServiceSpec)", &|s| Box::new(s.spec.clone()));
    part(t, "    spec.ports", &|s| Box::new(s.spec.as_ref().and_then(|s| s.ports.clone())));
    part(t, "    spec.selector", &|s| Box::new(s.spec.as_ref().and_then(|s| s.selector.clone())));
    part(t, "    spec.clusterIP+clusterIPs", &|s| {
        Box::new(s.spec.as_ref().map(|s| (s.cluster_ip.clone(), s.cluster_ips.clone())))
    });
    part(t, "  status (ServiceStatus)", &|s| Box::new(s.status.clone()));
    part(t, "    status.conditions", &|s| Box::new(s.status.as_ref().and_then(|s| s.conditions.clone())));
    part(t, "  ObjectRef<Service> (the store's key)", &|s| Box::new(ObjectRef::from_obj(s)));
    println!(
        "  -- inline sizes: Service {} B, ObjectMeta {} B, ServiceSpec {} B, ServiceStatus {} B, ObjectRef {} B",
        size_of::<Service>(),
        size_of::<kube::api::ObjectMeta>(),
        size_of::<k8s_openapi::api::core::v1::ServiceSpec>(),
        size_of::<k8s_openapi::api::core::v1::ServiceStatus>(),
        size_of::<ObjectRef<Service>>()
    );
    drop(sample);
    t.mark = now();
    let (services, w1) = store_of((0..n).map(|i| trimmed_service(i, w, trim)));
    drop(w1);
    t.row("Service store (reflector: ObjectRef key + Arc<Service>)", true);
    t.sub("one EndpointSlice as listed, untrimmed (transient)", || {
        (0..n).map(endpoint_slice).collect::<Vec<_>>()
    });
    let (slices, w2) = store_of((0..n).map(slice_endpoints));
    drop(w2);
    t.row("EndpointSlice store (SliceEndpoints: Service, usable, nodes)", true);
    let mut tracker = Tracker::default();
    for s in slices.state() {
        tracker.index(&s.namespace, &s.name, s.service_key().unwrap_or_default());
    }
    t.row("EndpointSlice tracker (by_service + about)", true);
    let cfg = config.objects.clone();
    t.row("config + 100 trimmed Nodes (ClusterObjects, not per Service)", true);
    std::mem::forget(cfg);
    (services, slices, tracker)
}

fn inputs_of(config: &Inputs, services: &Store<Service>, slices: &Store<SliceEndpoints>) -> Inputs {
    Inputs {
        objects: config.objects.clone(),
        services: services.state(),
        endpoint_slices: slices.state(),
        ..Default::default()
    }
}

fn speaker(n: usize, mode: Mode, w: &World, config: &Inputs) {
    let mut t =
        Table::new(&format!("speaker node000, {}", if mode == Mode::Layer2 { "layer 2" } else { "BGP" }), n);
    let (services, slices, tracker) = caches(&mut t, n, w, config, trim::service_for_speaker);
    let options = Options { node: Some("node000".into()), ips_from_status: true, ..Default::default() };
    let mut kept = NodeAnnouncements::default();
    let inputs = inputs_of(config, &services, &slices);
    t.row("Inputs snapshot (ClusterObjects copy + Vec<Arc> x2; per pass)", false);
    let start = now();
    let p = t.peak("the first full pass (decide_all)", || kept.decide_all(&inputs, &options, None));
    let with_plan = now();
    drop(p);
    let after = now();
    t.print("NodeAnnouncements (bgp/l2 maps + head + World)", start, after, true);
    t.print("Plan of a full pass (freed after the pass)", after, with_plan, false);
    let p = kept.decide_all(&inputs, &options, None);
    let done: Vec<&plan::PlannedAnnouncement> = p.announcements.iter().flatten().collect();
    t.mark = now();
    let report =
        (node_status::desired_bgp(done.iter().copied()), node_status::desired_l2(done.iter().copied()));
    let copy = report.clone();
    t.row("NodeReport bgp/l2 maps x2 (watch + services_done)", true);
    let announcing: BTreeMap<String, &str> = done.iter().map(|a| (a.service.clone(), a.protocol)).collect();
    t.row("Announcing (service -> protocol)", true);
    let frr = p.frr_config.clone();
    t.row("desired FRR configuration String (held by the backend)", true);
    t.end();
    println!(
        "  announcements on node000: {}, bgp {}, layer 2 {}; FRR config {} bytes",
        done.len(),
        report.0.len(),
        report.1.len(),
        frr.as_ref().map_or(0, String::len)
    );
    drop((copy, report, announcing, frr, done));
    drop((p, kept, inputs, tracker, slices, services));
}

fn controller(n: usize, mode: Mode, w: &World, config: &Inputs) {
    let mut t =
        Table::new(&format!("controller, {}", if mode == Mode::Layer2 { "layer 2" } else { "BGP" }), n);
    let (services, slices, tracker) = caches(&mut t, n, w, config, trim::service);
    let (l2, w1) = store_of(w.reports_l2.iter().map(|o| {
        let mut o = (**o).clone();
        trim::l2_report(&mut o);
        o
    }));
    let (bgp, w2) = store_of(w.reports_bgp.iter().map(|o| {
        let mut o = (**o).clone();
        trim::bgp_report(&mut o);
        o
    }));
    drop((w1, w2));
    t.row("speakers' reports store (one per Service: L2 owner / one BGP node)", true);
    let mut reports = Tracker::default();
    for s in l2.state().iter().filter_map(|o| o.status.clone()).chain(bgp.state().iter().filter_map(|o| {
        o.status.as_ref().map(|s| api::ServiceL2StatusStatus {
            node: s.node.clone(),
            service_name: s.service_name.clone(),
            service_namespace: s.service_namespace.clone(),
            interfaces: Vec::new(),
        })
    })) {
        let key =
            format!("{}/{}", s.service_namespace.unwrap_or_default(), s.service_name.unwrap_or_default());
        reports.index("metallb-system", &format!("r-{key}"), key);
    }
    t.row("reports tracker (by_service + about)", true);
    let options = Options::default();
    let mut allocations = Allocations::default();
    let inputs = inputs_of(config, &services, &slices);
    t.row("Inputs snapshot (ClusterObjects copy + Vec<Arc> x2; per pass)", false);
    t.sub("  of Allocations: service::Request x N (as kept in `requests`)", || {
        inputs
            .services
            .iter()
            .filter_map(|s| match ferrolb::service::intake(s, None) {
                ferrolb::service::Intake::Serve(r) => Some((r.key.clone(), *r)),
                _ => None,
            })
            .collect::<HashMap<_, _>>()
    });
    t.sub("    of Request: labels (a copy of the Service's)", || {
        inputs.services.iter().map(|s| s.metadata.labels.clone()).collect::<Vec<_>>()
    });
    let start = now();
    let p = t.peak("the first full pass (decide_all)", || allocations.decide_all(&inputs, &options, None));
    let with_plan = now();
    drop(p);
    let kept = now();
    t.print("Allocations (allocator + requests + pending + head)", start, kept, true);
    t.print("Plan of a full pass (freed after the pass)", kept, with_plan, false);
    t.mark = now();
    let p = allocations.decide_all(&inputs, &options, None);
    t.mark = now();
    let (rl2, rbgp) = (l2.state(), bgp.state());
    t.row("cache.reports() (shared with the store; per full pass)", false);
    t.sub("writeback::changes (per full pass)", || writeback::changes(&inputs.services, &p));
    let wanted = condition::conditions(&p, &inputs, &rl2, &rbgp, &[]);
    t.row("conditions wanted map (per full pass)", false);
    drop((rl2, rbgp));
    t.mark = now();
    // A cold start's backlog: every Service waits for its condition (background::Pending).
    let backlog: BTreeMap<String, (String, String, condition::Announced, String, Option<i64>)> = wanted
        .iter()
        .map(|(k, a)| {
            let (ns, name) = k.split_once('/').unwrap_or_default();
            (k.clone(), (ns.to_string(), name.to_string(), a.clone(), time(0), None))
        })
        .collect();
    t.row("condition backlog after a cold start (Pending x N; drains)", false);
    drop(backlog);
    t.mark = now();
    t.end();
    drop((wanted, p, allocations, inputs, reports, l2, bgp, tracker, slices, services));
}

fn main() {
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10_000);
    BARE.store(std::env::args().any(|a| a == "bare"), Relaxed);
    let mut t = Table::new("collections of one entry, per entry (k8s-openapi keeps maps as BTreeMap)", n);
    let pair = |i: usize| (format!("app.kubernetes.io/name{}", i % 10), format!("s{i}"));
    t.sub("BTreeMap<String, String>, 1 entry", || {
        (0..n).map(|i| BTreeMap::from([pair(i)])).collect::<Vec<_>>()
    });
    t.sub("BTreeMap<String, String>, 3 entries", || {
        (0..n).map(|i| BTreeMap::from([pair(i), pair(i + 1), pair(i + 2)])).collect::<Vec<_>>()
    });
    t.sub("Vec<(String, String)>, 1 entry", || (0..n).map(|i| vec![pair(i)]).collect::<Vec<_>>());
    t.sub("BTreeSet<(String, String)>, 1 entry", || {
        (0..n).map(|i| BTreeSet::from([pair(i)])).collect::<Vec<_>>()
    });
    t.sub("the two Strings alone", || (0..n).map(pair).collect::<Vec<_>>());
    for mode in [Mode::Layer2, Mode::Bgp] {
        let config = config_objects(mode);
        let w = world(n, mode, &config);
        speaker(n, mode, &w, &config);
        controller(n, mode, &w, &config);
    }
}
