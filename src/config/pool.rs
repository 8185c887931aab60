use std::collections::{BTreeMap, BTreeSet};

use super::ClusterObjects;
use super::address::{AddrRange, Family};
use super::error::Report;
use super::selector::{Labels, Selector};
use crate::api::IPAddressPool;

/// A validated pool. `ranges` keep the order the user listed them in: allocation scans them in
/// that order, so the first listed entry fills first.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub name: String,
    pub labels: Labels,
    pub ranges: Vec<AddrRange>,
    pub auto_assign: bool,
    pub avoid_buggy_ips: bool,
    pub allocation: Option<PoolAllocation>,
}

/// `spec.serviceAllocation` with namespace selectors already resolved against the Namespaces.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolAllocation {
    pub priority: i32,
    /// Namespaces listed plus namespaces matched by a selector. Empty with `restricts_namespaces`
    /// false means any namespace.
    pub namespaces: BTreeSet<String>,
    pub restricts_namespaces: bool,
    pub service_selectors: Vec<Selector>,
}

impl Pool {
    pub fn has_family(&self, family: Family) -> bool {
        self.ranges.iter().any(|r| r.family == family)
    }

    pub fn families(&self) -> BTreeSet<Family> {
        self.ranges.iter().map(|r| r.family).collect()
    }

    /// Whether a Service in `namespace` with `labels` may take addresses from this pool.
    pub fn admits(&self, namespace: &str, labels: &Labels) -> bool {
        match &self.allocation {
            None => true,
            Some(a) => {
                (!a.restricts_namespaces || a.namespaces.contains(namespace))
                    && (a.service_selectors.is_empty()
                        || a.service_selectors.iter().any(|s| s.matches(labels)))
            }
        }
    }
}

pub(super) fn parse_pools(objects: &ClusterObjects, report: &mut Report) -> BTreeMap<String, Pool> {
    let mut pools = BTreeMap::new();
    // (range, pool name, entry index) of every accepted entry, for the overlap check.
    let mut all_ranges: Vec<(AddrRange, String, usize)> = Vec::new();
    for obj in &objects.pools {
        let name = obj.metadata.name.clone().unwrap_or_default();
        if let Some(pool) = parse_pool(obj, &name, objects, report) {
            for (i, r) in pool.ranges.iter().enumerate() {
                all_ranges.push((*r, name.clone(), i));
            }
            pools.insert(name, pool);
        }
    }
    // Sorting by start makes every overlap show up between neighbours-in-a-run: O(n log n).
    all_ranges.sort();
    for (i, (a, pool_a, idx_a)) in all_ranges.iter().enumerate() {
        for (b, pool_b, idx_b) in &all_ranges[i + 1..] {
            if b.family != a.family || b.first > a.last {
                break;
            }
            let (first, second) = ((pool_a, idx_a, a), (pool_b, idx_b, b));
            report.on("IPAddressPool", second.0).error(
                format!("spec.addresses[{}]", second.1),
                format!(
                    "{} overlaps {} (IPAddressPool {:?}, spec.addresses[{}])",
                    second.2, first.2, first.0, first.1
                ),
            );
        }
    }
    pools
}

fn parse_pool(
    obj: &IPAddressPool,
    name: &str,
    objects: &ClusterObjects,
    report: &mut Report,
) -> Option<Pool> {
    let mut r = report.on("IPAddressPool", name);
    let spec = &obj.spec;
    let errors_before = r.error_count();
    if spec.addresses.is_empty() {
        r.error("spec.addresses", "a pool needs at least one CIDR or range");
    }
    let mut ranges = Vec::with_capacity(spec.addresses.len());
    for (i, entry) in spec.addresses.iter().enumerate() {
        match AddrRange::parse(entry) {
            Ok(range) => ranges.push(range),
            Err(e) => r.error(format!("spec.addresses[{i}]"), e.to_string()),
        }
    }
    let allocation = spec.service_allocation.as_ref().map(|sa| {
        let mut namespaces = BTreeSet::new();
        for (i, ns) in sa.namespaces.iter().enumerate() {
            if !namespaces.insert(ns.clone()) {
                r.error(
                    format!("spec.serviceAllocation.namespaces[{i}]"),
                    format!("namespace {ns:?} is listed twice"),
                );
            }
        }
        let ns_selectors = match Selector::parse_list(&sa.namespace_selectors) {
            Ok(s) => s,
            Err((i, e)) => {
                r.error(format!("spec.serviceAllocation.namespaceSelectors[{i}]"), e);
                Vec::new()
            }
        };
        for ns in &objects.namespaces {
            let labels = ns.metadata.labels.clone().unwrap_or_default();
            if ns_selectors.iter().any(|s| s.matches(&labels)) {
                namespaces.extend(ns.metadata.name.clone());
            }
        }
        let service_selectors = match Selector::parse_list(&sa.service_selectors) {
            Ok(s) => s,
            Err((i, e)) => {
                r.error(format!("spec.serviceAllocation.serviceSelectors[{i}]"), e);
                Vec::new()
            }
        };
        PoolAllocation {
            priority: sa.priority,
            restricts_namespaces: !sa.namespaces.is_empty() || !sa.namespace_selectors.is_empty(),
            namespaces,
            service_selectors,
        }
    });
    if let Some(a) = &allocation
        && a.priority < 0
    {
        r.error(
            "spec.serviceAllocation.priority",
            "priority must not be negative (1 is tried first, 0 means none)",
        );
    }
    if r.error_count() > errors_before {
        return None;
    }
    Some(Pool {
        name: name.to_string(),
        labels: obj.metadata.labels.clone().unwrap_or_default(),
        ranges,
        auto_assign: spec.auto_assign.unwrap_or(true),
        avoid_buggy_ips: spec.avoid_buggy_ips,
        allocation,
    })
}
