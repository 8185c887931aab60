//! `ferrolb plan`: what the controller would do with a set of objects, computed offline.
//!
//! Pure: manifests in ([`manifest::Inputs`]), a [`Plan`] out. The same config parser and the
//! same allocator replay the controller uses at start-up, so what `plan` shows is what happens.

pub mod condition;
#[doc(hidden)]
pub mod hostile;
pub mod incremental;
pub mod invalid_objects;
pub mod kube_proxy;
mod legacy;
pub mod manifest;
pub mod node_status;
mod render;
pub mod writeback;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::allocator::{self, Allocator, Event, PoolStats};
use crate::bgp::{self, Secrets};
use crate::config::{self, ConfigError};
use crate::l2;
use crate::service::{self, Intake, ServiceKey};
use crate::topology::{Endpoints, NodeInfo, ServiceState};
pub use manifest::Inputs;
pub use render::{Format, render};

#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub allocations: Vec<PlannedAllocation>,
    pub pending: Vec<PendingService>,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
    pub pools: Vec<PoolUsage>,
    /// With `--node`: what that node announces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announcements: Option<Vec<PlannedAnnouncement>>,
    /// With `--node`: Services with IPs that node does not announce, and why.
    #[serde(rename = "notAnnounced", skip_serializing_if = "Option::is_none")]
    pub not_announced: Option<Vec<NotAnnounced>>,
    /// With `--node`: the BGP sessions that node should have.
    #[serde(skip)]
    pub sessions: Option<Vec<node_status::PlannedSession>>,
    /// With `--node`: that node's FRR configuration (`bgpextras` included).
    #[serde(skip)]
    pub frr_config: Option<String>,
    /// With `--node`: its BGP announcements as the FRR configuration was built from them.
    #[serde(skip)]
    pub bgp_announcements: Option<Vec<bgp::Announcement>>,
    /// With `--node`: the `bgpextras` at the end of `frr_config`, if any.
    #[serde(skip)]
    pub frr_extras: Option<String>,
    /// With `--node`: the IPs that node answers ARP/NDP for, as the responder takes them.
    #[serde(skip)]
    pub layer2: Option<Vec<l2::L2Announcement>>,
    /// Pools some L2Advertisement or BGPAdvertisement selects (the Announced condition).
    #[serde(skip)]
    pub advertised_pools: std::collections::BTreeSet<String>,
    /// Notes about assumptions `plan` made (printed on stderr).
    #[serde(skip)]
    pub notes: Vec<String>,
    /// Events the controller would record, per Service (table output only).
    #[serde(skip)]
    pub events: BTreeMap<ServiceKey, Vec<Event>>,
    /// The configuration this plan decided with: the objects' own when they are valid, else
    /// the last good one it was given (then `stale`), else none (nothing decided).
    #[serde(skip)]
    pub config: Option<Arc<config::Config>>,
    /// The objects are invalid and the plan decided with the last good configuration.
    #[serde(skip)]
    pub stale: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedAllocation {
    pub service: ServiceKey,
    pub ips: Vec<String>,
    pub pool: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedAnnouncement {
    pub service: ServiceKey,
    pub ip: String,
    pub prefix: String,
    pub protocol: &'static str,
    pub peers: Vec<String>,
    pub communities: Vec<String>,
    pub local_pref: Option<u32>,
    /// Layer 2 only: the interfaces answered on; empty means every eligible interface.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotAnnounced {
    pub service: ServiceKey,
    pub protocol: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingService {
    pub service: ServiceKey,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolUsage {
    pub pool: String,
    #[serde(flatten)]
    pub stats: PoolStats,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The `loadBalancerClass` ferrolb answers to (`--lb-class`); `None` = class-less Services.
    pub lb_class: Option<String>,
    /// Plan this node's announcements too.
    pub node: Option<String>,
    /// Put real BGP passwords in the rendered FRR configuration.
    pub show_secrets: bool,
    /// Nodes whose speakers are alive (layer 2 elections); `None`: every known node.
    pub live_nodes: Option<std::collections::BTreeSet<String>>,
    /// Nodes that should not serve layer 2 traffic now, with why (see
    /// `topology::readiness`): they win an IP only where no other candidate is left.
    pub layer2_unfit: BTreeMap<String, String>,
    /// Announce each Service's IPs exactly as its status holds them instead of allocating:
    /// in a cluster the controller decides IPs, and a speaker that predicted them could
    /// announce an IP the controller never gave (a pool shrinking, a changed request).
    /// Nothing is allocated then (at 10,000 Services the replay was most of a speaker's pass):
    /// the plan's allocations, pending list and pool usage stay empty.
    pub ips_from_status: bool,
    /// Let nodes labelled `node.kubernetes.io/exclude-from-external-load-balancers` announce
    /// (MetalLB's `--ignore-exclude-lb`); every speaker must be given the same, as layer 2
    /// elections must see the same candidates everywhere.
    pub ignore_exclude_lb: bool,
    /// FRR's `log` level, as `bgp::frr::frr_log_level` reads it; None: informational.
    pub frr_log_level: Option<String>,
}

impl Plan {
    /// Valid means the configuration parsed; pending Services do not make a plan invalid.
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    /// The Services this plan decides (given IPs or left pending).
    pub fn decided_services(&self) -> std::collections::BTreeSet<ServiceKey> {
        self.allocations
            .iter()
            .map(|a| a.service.clone())
            .chain(self.pending.iter().map(|p| p.service.clone()))
            .collect()
    }

    /// Every error, one per line (a ConfigurationState's errorSummary); None when valid.
    pub fn error_summary(&self) -> Option<String> {
        (!self.is_valid()).then(|| self.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
    }
}

pub fn plan(inputs: &Inputs, options: &Options) -> Plan {
    plan_with_last_good(inputs, options, None)
}

/// [`plan`] for the long-lived roles: while the objects do not form a valid configuration, the
/// plan decides with `last_good` (the one the role last saw valid), so a bad object never
/// takes away what was working; the errors are still reported and the plan is not valid.
/// Pass the `config` of a valid plan back in as the next `last_good`.
pub fn plan_with_last_good(
    inputs: &Inputs,
    options: &Options,
    last_good: Option<&Arc<config::Config>>,
) -> Plan {
    decide_all(inputs, options, last_good).0
}

/// What a full decision leaves for deciding the next changes alone ([`incremental`]).
struct Kept {
    alloc: Allocator,
    requests: Vec<service::Request>,
}

fn decide_all(
    inputs: &Inputs,
    options: &Options,
    last_good: Option<&Arc<config::Config>>,
) -> (Plan, Option<Kept>) {
    let parsed = config::parse(&inputs.objects);
    let mut plan = Plan { warnings: parsed.warnings, ..Default::default() };
    plan.errors.extend(inputs.decode_errors.iter().cloned());
    let config = match parsed.result {
        Ok(c) if plan.errors.is_empty() => Some(Arc::new(c)),
        Ok(_) => None,
        Err(e) => {
            plan.errors.extend(e.0);
            None
        }
    };
    plan.errors.sort();
    let config = config.or_else(|| {
        plan.stale = last_good.is_some();
        last_good.cloned()
    });
    plan.config = config.clone();

    let requests = intake(&mut plan, &inputs.services, options);

    let Some(config) = config else {
        for r in &requests {
            plan.pending.push(PendingService {
                service: r.key.clone(),
                reason: "the configuration is invalid (see errors); nothing is allocated until it is fixed"
                    .into(),
            });
        }
        plan.pending.sort_by(|a, b| a.service.cmp(&b.service));
        return (plan, None);
    };
    let config = config.as_ref();

    plan.advertised_pools = config
        .l2_advertisements
        .iter()
        .flat_map(|a| a.pools.iter().cloned())
        .chain(config.bgp_advertisements.iter().flat_map(|a| a.pools.iter().cloned()))
        .collect();
    if options.ips_from_status {
        if let Some(node) = &options.node {
            let (services, refused) = services_as_allocated(config, &requests);
            plan_node(&mut plan, inputs, config, &services, node, options);
            plan.not_announced.get_or_insert_default().extend(refused);
        }
        return (plan, None);
    }
    let mut alloc = Allocator::new(&config.pools);
    let outcomes = allocator::rebuild(&mut alloc, &requests);
    if let Some(node) = &options.node {
        plan_node(&mut plan, inputs, config, &services_as_planned(&requests, &outcomes), node, options);
    }
    record_outcomes(&mut plan, outcomes);
    plan.pools = pool_usage(config, &alloc);
    (plan, Some(Kept { alloc, requests }))
}

/// The requests of the Services ferrolb serves; the others are skipped, and the invalid ones
/// go to `plan.pending` with a Warning Event.
fn intake(
    plan: &mut Plan,
    services: &[Arc<k8s_openapi::api::core::v1::Service>],
    options: &Options,
) -> Vec<service::Request> {
    let mut requests = Vec::new();
    for svc in services {
        let key = service::key_of(svc);
        match service::intake(svc, options.lb_class.as_deref()) {
            Intake::NotLoadBalancer | Intake::OtherClass(_) => {}
            Intake::Invalid(reason) => {
                plan.events.entry(key.clone()).or_default().push(Event {
                    type_: allocator::EventType::Warning,
                    reason: "LoadBalancerFailed",
                    message: reason.clone(),
                });
                plan.pending.push(PendingService { service: key, reason });
            }
            Intake::Serve(req) => {
                if !req.legacy_annotations.is_empty() {
                    plan.events.entry(key).or_default().push(Event {
                        type_: allocator::EventType::Warning,
                        reason: "deprecatedAnnotation",
                        message: format!(
                            "{} is deprecated, use the {} prefix",
                            req.legacy_annotations.join(", "),
                            service::ANNOTATION_PREFIX
                        ),
                    });
                }
                requests.push(*req);
            }
        }
    }
    requests
}

/// The allocator's outcomes as the plan says them: allocations, pending Services, Events.
fn record_outcomes(plan: &mut Plan, outcomes: BTreeMap<ServiceKey, allocator::Outcome>) {
    for (key, outcome) in outcomes {
        plan.events.entry(key.clone()).or_default().extend(outcome.events);
        match (outcome.allocation, outcome.pending) {
            (Some(a), _) => plan.allocations.push(PlannedAllocation {
                service: key,
                ips: a.ips.iter().map(ToString::to_string).collect(),
                pool: a.pool,
            }),
            (None, reason) => plan
                .pending
                .push(PendingService { service: key, reason: reason.unwrap_or_else(|| "no IP".into()) }),
        }
    }
    plan.pending.sort_by(|a, b| a.service.cmp(&b.service));
    plan.events.retain(|_, v| !v.is_empty());
}

fn pool_usage(config: &config::Config, alloc: &Allocator) -> Vec<PoolUsage> {
    config
        .pools
        .keys()
        .filter_map(|name| alloc.stats(name).map(|s| PoolUsage { pool: name.clone(), stats: s }))
        .collect()
}

/// The Services to announce as the allocations just planned give them IPs.
fn services_as_planned(
    requests: &[service::Request],
    outcomes: &BTreeMap<ServiceKey, allocator::Outcome>,
) -> Vec<ServiceState> {
    requests
        .iter()
        .filter_map(|r| {
            let a = outcomes.get(&r.key)?.allocation.as_ref()?;
            Some(service_state(r, a.ips.clone()))
        })
        .collect()
}

/// The Services to announce with the IPs their status holds, each IP only when it lies in a
/// pool of `config` (a speaker must never announce an address no pool grants), and the
/// others as not announced, with the reason.
fn services_as_allocated(
    config: &config::Config,
    requests: &[service::Request],
) -> (Vec<ServiceState>, Vec<NotAnnounced>) {
    let mut out = Vec::new();
    let mut refused = Vec::new();
    for r in requests.iter().filter(|r| !r.current_ips.is_empty()) {
        let (inside, outside): (Vec<_>, Vec<_>) =
            r.current_ips.iter().partition(|ip| config.pool_of(**ip).is_ok());
        for ip in outside {
            refused.push(NotAnnounced {
                service: r.key.clone(),
                protocol: "any",
                reason: format!("{ip} is in no IPAddressPool, so no node announces it"),
            });
        }
        if !inside.is_empty() {
            out.push(service_state(r, inside.into_iter().copied().collect()));
        }
    }
    (out, refused)
}

fn service_state(r: &service::Request, ips: Vec<std::net::IpAddr>) -> ServiceState {
    ServiceState {
        key: r.key.clone(),
        ips,
        labels: r.labels.clone(),
        local_traffic: r.local_traffic,
        shares_ip: r.sharing_key.is_some(),
    }
}

/// A node's BGP announcements and FRR configuration, for `services` as they hold their IPs.
fn plan_node(
    plan: &mut Plan,
    inputs: &Inputs,
    config: &config::Config,
    services: &[ServiceState],
    node_name: &str,
    options: &Options,
) {
    let endpoints = if inputs.endpoint_slices.is_empty() {
        plan.notes.push(
            "no EndpointSlices in the manifests: assuming every Service is served on every node".into(),
        );
        Endpoints::assume_everywhere()
    } else {
        Endpoints::from_slices(inputs.endpoint_slices.iter().map(|s| &**s))
    };
    let decided = node_decisions(inputs, config, services, &endpoints, node_name, options);
    plan.notes.extend(decided.notes.iter().cloned());
    plan.not_announced = Some(
        decided
            .bgp
            .withheld
            .iter()
            .map(|(service, reason)| NotAnnounced {
                service: service.clone(),
                protocol: "bgp",
                reason: reason.clone(),
            })
            .chain(decided.l2.withheld.iter().map(|(service, reason)| NotAnnounced {
                service: service.clone(),
                protocol: "layer2",
                reason: reason.clone(),
            }))
            .collect(),
    );
    finish_node(
        plan,
        config,
        &decided.node,
        &decided.bgp.announcements,
        decided.l2.announcements,
        inputs.bgp_extras.as_deref(),
        options,
    );
}

/// What one node decides for `services`: BGP and layer 2 announcements, and why not.
struct NodeDecisions {
    node: NodeInfo,
    bgp: bgp::NodePlan,
    l2: l2::L2NodePlan,
    notes: Vec<String>,
}

fn node_decisions(
    inputs: &Inputs,
    config: &config::Config,
    services: &[ServiceState],
    endpoints: &Endpoints,
    node_name: &str,
    options: &Options,
) -> NodeDecisions {
    let mut notes = Vec::new();
    let node = match inputs.objects.nodes.iter().find(|n| n.metadata.name.as_deref() == Some(node_name)) {
        Some(n) => NodeInfo::from_node(n, options.ignore_exclude_lb),
        None => {
            notes.push(format!(
                "no Node {node_name:?} in the manifests: assuming it has only its hostname label"
            ));
            NodeInfo::named(node_name)
        }
    };
    let bgp = bgp::plan_node(config, &node, services, endpoints);
    let l2 = plan_layer2(inputs, config, services, endpoints, node_name, options);
    NodeDecisions { node, bgp, l2, notes }
}

/// The plan's node parts from the node's announcements: sessions, announcements, layer 2
/// IPs, FRR configuration.
fn finish_node(
    plan: &mut Plan,
    config: &config::Config,
    node: &NodeInfo,
    bgp_announcements: &[bgp::Announcement],
    l2_announcements: Vec<l2::L2Announcement>,
    extras: Option<&str>,
    options: &Options,
) {
    plan.sessions = Some(
        bgp::announce::node_peers(config, node)
            .into_iter()
            .map(|p| node_status::PlannedSession {
                peer: p.name.clone(),
                vrf: p.vrf.clone(),
                neighbor: match &p.endpoint {
                    config::PeerEndpoint::Address(ip) => ip.to_string(),
                    config::PeerEndpoint::Interface(i) => i.clone(),
                },
            })
            .collect(),
    );
    let mut announcements: Vec<PlannedAnnouncement> = bgp_announcements
        .iter()
        .map(|a| PlannedAnnouncement {
            service: a.service.clone(),
            ip: a.ip.to_string(),
            prefix: a.prefix.to_string(),
            protocol: "bgp",
            peers: a.peers.iter().cloned().collect(),
            communities: a.communities.iter().map(ToString::to_string).collect(),
            local_pref: a.local_pref,
            interfaces: None,
        })
        .collect();
    announcements.extend(l2_announcements.iter().map(|a| PlannedAnnouncement {
        service: a.service.clone(),
        ip: a.ip.to_string(),
        prefix: ipnet::IpNet::from(a.ip).to_string(),
        protocol: "layer2",
        peers: Vec::new(),
        communities: Vec::new(),
        local_pref: None,
        interfaces: Some(a.interfaces.iter().flatten().cloned().collect()),
    }));
    plan.announcements = Some(announcements);
    plan.layer2 = Some(l2_announcements);
    plan.bgp_announcements = Some(bgp_announcements.to_vec());
    let secrets = if options.show_secrets { Secrets::Show } else { Secrets::Hide };
    let level = options.frr_log_level.as_deref().unwrap_or("info");
    let view = bgp::frr::build(config, node, bgp_announcements, level, secrets);
    match bgp::render(&view) {
        Ok(text) => plan.frr_config = Some(with_extras(plan, text, extras)),
        Err(e) => plan.notes.push(format!("could not render the FRR configuration: {e}")),
    }
}

/// The rendered configuration with the operator's `bgpextras` after it (FRR alone judges them),
/// warning about lines frr-agent would never apply.
fn with_extras(plan: &mut Plan, rendered: String, extras: Option<&str>) -> String {
    let Some(extras) = extras.filter(|e| !e.trim().is_empty()) else { return rendered };
    let warn = |message: String| ConfigError {
        kind: "ConfigMap".into(),
        name: bgp::extras::CONFIG_MAP.into(),
        field: format!("data.{}", bgp::extras::KEY),
        message,
        transient: false,
    };
    match bgp::extras::unmanaged(extras) {
        Ok(lines) if lines.is_empty() => {}
        Ok(lines) => plan.warnings.push(warn(format!(
            "never applied (frr-agent manages only routers, route-maps, prefix, community, as-path and access lists and BFD): {}",
            lines.join("; ")
        ))),
        Err(e) => plan.warnings.push(warn(format!("not a readable FRR configuration: {e}"))),
    }
    plan.frr_extras = Some(extras.to_string());
    bgp::extras::append(&rendered, extras)
}

/// The node's layer 2 announcements. Offline every known node counts as a live speaker; without
/// Node objects only this node is known, so it wins every election it is eligible for.
fn plan_layer2(
    inputs: &Inputs,
    config: &config::Config,
    services: &[ServiceState],
    endpoints: &Endpoints,
    node_name: &str,
    options: &Options,
) -> l2::L2NodePlan {
    let (nodes, live) = election_nodes(inputs, node_name, options);
    l2::plan_node(config, node_name, services, &nodes, &live, endpoints)
}

/// The candidates of layer 2 elections, and the live ones among them.
fn election_nodes(
    inputs: &Inputs,
    node_name: &str,
    options: &Options,
) -> (Vec<NodeInfo>, std::collections::BTreeSet<String>) {
    let live = options.live_nodes.as_ref();
    let mut nodes: Vec<NodeInfo> =
        inputs.objects.nodes.iter().map(|n| NodeInfo::from_node(n, options.ignore_exclude_lb)).collect();
    for n in &mut nodes {
        n.l2_unfit = options.layer2_unfit.get(&n.name).cloned();
    }
    // Every speaker must run the election over the same candidates: nodes known only because a
    // speaker runs there (no Node object in the manifests) count as plain named nodes, on every
    // speaker alike.
    let extra: std::collections::BTreeSet<String> = live
        .into_iter()
        .flatten()
        .map(String::as_str)
        .chain([node_name])
        .filter(|n| !nodes.iter().any(|known| known.name == *n))
        .map(str::to_string)
        .collect();
    nodes.extend(extra.iter().map(|n| NodeInfo::named(n)));
    let live = live.cloned().unwrap_or_else(|| nodes.iter().map(|n| n.name.clone()).collect());
    (nodes, live)
}

#[cfg(test)]
mod tests;
