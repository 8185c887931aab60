//! Deciding again after a few Services changed, at the cost of those Services.
//!
//! A long-lived controller sees one Service change at a time among thousands; replaying the
//! whole cluster through the allocator on every change made each decision cost O(all) (over
//! 100 ms at 10,000 Services). [`Allocations`] keeps the allocator of the last decision and
//! re-converges only the Services named as changed, with the same two phases a full replay
//! runs (held IPs re-claimed first, then allocation by name), so a partial decision equals a
//! full one (tested below against [`super::plan`] after every step of random histories). A
//! change to anything but Services (configuration, Nodes, Namespaces) makes the caller decide
//! everything again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::{
    Inputs, Kept, Options, Plan, decide_all, election_nodes, finish_node, intake, node_decisions, pool_usage,
    record_outcomes, services_as_allocated,
};
use crate::allocator::{self, Allocator};
use crate::bgp;
use crate::config::{self, Config};
use crate::l2::L2Announcement;
use crate::service::{Request, ServiceKey};
use crate::topology::{Endpoints, NodeInfo};

/// What changed since the last decision, as a watch of the cluster saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dirty {
    /// Something other than a Service did (or the watch relisted): decide everything.
    pub everything: bool,
    /// Services whose object, EndpointSlices or speaker reports changed.
    pub services: BTreeSet<ServiceKey>,
}

impl Dirty {
    pub fn everything() -> Dirty {
        Dirty { everything: true, ..Default::default() }
    }

    pub fn merge(&mut self, other: Dirty) {
        self.everything |= other.everything;
        self.services.extend(other.services);
    }
}

/// The parts of a full plan that only a change of configuration changes: what a partial
/// decision starts from.
fn head_of(plan: &Plan) -> Plan {
    Plan {
        errors: plan.errors.clone(),
        warnings: plan.warnings.clone(),
        advertised_pools: plan.advertised_pools.clone(),
        config: plan.config.clone(),
        stale: plan.stale,
        ..Default::default()
    }
}

/// The controller's decisions kept between passes.
#[derive(Default)]
pub struct Allocations {
    last: Option<Last>,
}

struct Last {
    /// The plan's parts that only a change of configuration changes.
    head: Plan,
    config: Arc<Config>,
    alloc: Allocator,
    /// The Services served, as last decided.
    requests: HashMap<ServiceKey, Request>,
    /// Those of them without IPs.
    pending: BTreeSet<ServiceKey>,
}

impl Allocations {
    /// Decides every Service, as [`super::plan_with_last_good`] does, and keeps what a partial
    /// decision needs next.
    pub fn decide_all(
        &mut self,
        inputs: &Inputs,
        options: &Options,
        last_good: Option<&Arc<Config>>,
    ) -> Plan {
        let (plan, kept) = decide_all(inputs, options, last_good);
        self.last = match (kept, &plan.config) {
            (Some(Kept { alloc, requests }), Some(config)) => Some(Last {
                head: head_of(&plan),
                config: config.clone(),
                pending: plan.pending.iter().map(|p| p.service.clone()).collect(),
                requests: requests.into_iter().map(|r| (r.key.clone(), r)).collect(),
                alloc,
            }),
            _ => None,
        };
        plan
    }

    /// Decides only the Services in `changed`; `inputs` holds those of them that still exist
    /// (and the configuration objects, unchanged since the last decision). The plan names
    /// only Services whose decision was made again; its pool usage covers every pool. `None`
    /// when no decision with a configuration was kept: decide everything then.
    pub fn decide_changed(
        &mut self,
        inputs: &Inputs,
        options: &Options,
        changed: &BTreeSet<ServiceKey>,
    ) -> Option<Plan> {
        let last = self.last.as_mut()?;
        let mut plan = last.head.clone();
        let served = intake(&mut plan, &inputs.services, options);
        let served: BTreeMap<ServiceKey, Request> = served.into_iter().map(|r| (r.key.clone(), r)).collect();
        // Gone, no longer LoadBalancer, another class or now invalid: what they held is free.
        for key in changed.iter().filter(|k| !served.contains_key(*k)) {
            last.alloc.release(key);
            last.requests.remove(key);
            last.pending.remove(key);
        }
        let mut outcomes = allocator::reconverge(&mut last.alloc, served.values());
        // Any change may have made room for a Service that waits: addresses freed, or ports
        // or a sharing key that now let it share. They get their chance in the order a full
        // replay would give it to them. Waiting Services are few, unless a pool is exhausted.
        let waiting: Vec<&Request> = last
            .pending
            .iter()
            .filter(|k| !served.contains_key(*k))
            .filter_map(|k| last.requests.get(k))
            .collect();
        outcomes.extend(allocator::reconverge(&mut last.alloc, waiting));
        for (key, outcome) in &outcomes {
            if outcome.allocation.is_some() {
                last.pending.remove(key);
            } else {
                last.pending.insert(key.clone());
            }
        }
        last.requests.extend(served);
        record_outcomes(&mut plan, outcomes);
        plan.pools = pool_usage(&last.config, &last.alloc);
        Some(plan)
    }
}

/// A speaker's decisions for its node, kept between passes: its announcements per Service.
/// A pass after some Services changed decides those alone while the rest of what the
/// decisions read (configuration, Nodes, live speakers) is as it was; the announcements are
/// then put together from the kept ones. Services with no announcement here are not listed
/// in `not_announced` by a partial pass (the speaker does not read it; `ferrolb plan` decides
/// everything).
#[derive(Default)]
pub struct NodeAnnouncements {
    last: Option<NodeLast>,
}

struct NodeLast {
    world: World,
    head: Plan,
    node: NodeInfo,
    bgp: BTreeMap<ServiceKey, Vec<bgp::Announcement>>,
    l2: BTreeMap<ServiceKey, Vec<L2Announcement>>,
}

/// Everything a node's decision reads besides the Services and their endpoints.
#[derive(PartialEq)]
struct World {
    parsed: Result<Config, Vec<config::ConfigError>>,
    nodes: Vec<NodeInfo>,
    live: BTreeSet<String>,
    options: (Option<String>, Option<String>, bool, bool, Option<String>),
    /// No EndpointSlice at all: every Service counted as served everywhere.
    assumed_everywhere: bool,
    bgp_extras: Option<String>,
}

impl World {
    fn of(inputs: &Inputs, options: &Options, assumed_everywhere: bool) -> World {
        let node = options.node.clone().unwrap_or_default();
        let (nodes, live) = election_nodes(inputs, &node, options);
        let mut errors = inputs.decode_errors.clone();
        let parsed = match config::parse(&inputs.objects).result {
            Ok(c) if errors.is_empty() => Ok(c),
            Ok(_) => Err(errors),
            Err(e) => {
                errors.extend(e.0);
                Err(errors)
            }
        };
        World {
            parsed,
            nodes,
            live,
            options: (
                options.lb_class.clone(),
                options.node.clone(),
                options.show_secrets,
                options.ignore_exclude_lb,
                options.frr_log_level.clone(),
            ),
            assumed_everywhere,
            bgp_extras: inputs.bgp_extras.clone(),
        }
    }
}

impl NodeAnnouncements {
    /// Decides every Service, as [`super::plan_with_last_good`] does for `options.node`.
    pub fn decide_all(
        &mut self,
        inputs: &Inputs,
        options: &Options,
        last_good: Option<&Arc<Config>>,
    ) -> Plan {
        let (plan, _) = decide_all(inputs, options, last_good);
        self.last = options.node.as_ref().zip(plan.config.as_ref()).map(|(node, _)| {
            let mut bgp: BTreeMap<ServiceKey, Vec<bgp::Announcement>> = BTreeMap::new();
            for a in plan.bgp_announcements.iter().flatten() {
                bgp.entry(a.service.clone()).or_default().push(a.clone());
            }
            let mut l2: BTreeMap<ServiceKey, Vec<L2Announcement>> = BTreeMap::new();
            for a in plan.layer2.iter().flatten() {
                l2.entry(a.service.clone()).or_default().push(a.clone());
            }
            let node =
                inputs.objects.nodes.iter().find(|n| n.metadata.name.as_deref() == Some(node)).map_or_else(
                    || NodeInfo::named(node),
                    |n| NodeInfo::from_node(n, options.ignore_exclude_lb),
                );
            NodeLast {
                world: World::of(inputs, options, inputs.endpoint_slices.is_empty()),
                head: head_of(&plan),
                node,
                bgp,
                l2,
            }
        });
        plan
    }

    /// Decides only the Services in `changed` (`inputs` holds those of them that exist, with
    /// IPs in their status, and every configuration object); `None` when anything else the
    /// decision reads changed, or nothing was kept: decide everything then.
    pub fn decide_changed(
        &mut self,
        inputs: &Inputs,
        options: &Options,
        changed: &BTreeSet<ServiceKey>,
    ) -> Option<Plan> {
        let last = self.last.as_mut()?;
        let assumed = last.world.assumed_everywhere;
        if (assumed && !inputs.endpoint_slices.is_empty())
            || World::of(inputs, options, assumed) != last.world
        {
            return None;
        }
        let config = last.head.config.clone()?;
        let mut plan = last.head.clone();
        let requests = intake(&mut plan, &inputs.services, options);
        let (services, refused) = services_as_allocated(&config, &requests);
        let endpoints = if assumed {
            Endpoints::assume_everywhere()
        } else {
            Endpoints::from_slices(inputs.endpoint_slices.iter().map(|s| &**s))
        };
        let node = last.node.name.clone();
        let decided = node_decisions(inputs, &config, &services, &endpoints, &node, options);
        for key in changed {
            last.bgp.remove(key);
            last.l2.remove(key);
        }
        for a in decided.bgp.announcements {
            last.bgp.entry(a.service.clone()).or_default().push(a);
        }
        for a in decided.l2.announcements {
            last.l2.entry(a.service.clone()).or_default().push(a);
        }
        let bgp_all: Vec<bgp::Announcement> = last.bgp.values().flatten().cloned().collect();
        let l2_all: Vec<L2Announcement> = last.l2.values().flatten().cloned().collect();
        finish_node(&mut plan, &config, &last.node, &bgp_all, l2_all, inputs.bgp_extras.as_deref(), options);
        // Said by the full decision already (the extras are part of the world).
        plan.warnings = last.head.warnings.clone();
        plan.not_announced = Some(refused);
        Some(plan)
    }
}

#[cfg(test)]
mod tests;
