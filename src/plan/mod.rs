//! `ferrolb plan`: what the controller would do with a set of objects, computed offline.
//!
//! Pure: manifests in ([`manifest::Inputs`]), a [`Plan`] out. The same config parser and the
//! same allocator replay the controller uses at start-up, so what `plan` shows is what happens.

mod legacy;
pub mod manifest;
mod render;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::allocator::{self, Allocator, Event, PoolStats};
use crate::config::{self, ConfigError};
use crate::service::{self, Intake, ServiceKey};
pub use manifest::Inputs;
pub use render::{Format, render};

#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub allocations: Vec<PlannedAllocation>,
    pub pending: Vec<PendingService>,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
    pub pools: Vec<PoolUsage>,
    /// Events the controller would record, per Service (table output only).
    #[serde(skip)]
    pub events: BTreeMap<ServiceKey, Vec<Event>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedAllocation {
    pub service: ServiceKey,
    pub ips: Vec<String>,
    pub pool: String,
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
}

impl Plan {
    /// Valid means the configuration parsed; pending Services do not make a plan invalid.
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
}

pub fn plan(inputs: &Inputs, options: &Options) -> Plan {
    let parsed = config::parse(&inputs.objects);
    let mut plan = Plan { warnings: parsed.warnings, ..Default::default() };
    plan.errors.extend(inputs.decode_errors.iter().cloned());
    let config = match parsed.result {
        Ok(c) if plan.errors.is_empty() => Some(c),
        Ok(_) => None,
        Err(e) => {
            plan.errors.extend(e.0);
            None
        }
    };
    plan.errors.sort();

    let mut requests = Vec::new();
    for svc in &inputs.services {
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

    let Some(config) = config else {
        for r in &requests {
            plan.pending.push(PendingService {
                service: r.key.clone(),
                reason: "the configuration is invalid (see errors); nothing is allocated until it is fixed"
                    .into(),
            });
        }
        plan.pending.sort_by(|a, b| a.service.cmp(&b.service));
        return plan;
    };

    let mut alloc = Allocator::new(&config.pools);
    for (key, outcome) in allocator::rebuild(&mut alloc, &requests) {
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
    plan.pools = config
        .pools
        .keys()
        .filter_map(|name| alloc.stats(name).map(|s| PoolUsage { pool: name.clone(), stats: s }))
        .collect();
    plan
}

#[cfg(test)]
mod tests;
