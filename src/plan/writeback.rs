//! What the controller must write back to make the cluster say what the plan decided: per
//! Service, the ingress IPs in its status and the pool in its annotation. Pure: it compares the
//! plan with the Services as observed.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;

use super::Plan;
use crate::service::ServiceKey;

pub const POOL_ANNOTATION: &str = "metallb.io/ip-allocated-from-pool";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Write these IPs into the status and the pool into the annotation.
    Assign { service: ServiceKey, ips: Vec<String>, pool: String },
    /// The Service holds IPs it must give up (why: the plan's reason).
    Clear { service: ServiceKey, reason: String },
}

/// `namespace/name`, as the plan names Services.
pub fn key(svc: &Service) -> ServiceKey {
    format!(
        "{}/{}",
        svc.metadata.namespace.as_deref().unwrap_or("default"),
        svc.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The ingress IPs a Service's status shows now.
pub fn current_ips(svc: &Service) -> Vec<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ingress| ingress.iter().filter_map(|i| i.ip.clone()).collect())
        .unwrap_or_default()
}

/// The pool the annotation says the Service's IPs came from.
pub fn current_pool(svc: &Service) -> Option<&str> {
    svc.metadata.annotations.as_ref()?.get(POOL_ANNOTATION).map(String::as_str)
}

/// Every write needed, Services in name order. Services the plan does not mention (another
/// load balancer class, not LoadBalancer) are left alone.
///
/// An invalid plan (bad objects; at best decided with the last good configuration) touches
/// no Service that holds IPs: it never clears, moves or re-annotates one, it only gives IPs
/// to Services that have none. Whatever the invalid objects are, they cannot take an IP away.
pub fn changes(services: &[Arc<Service>], plan: &Plan) -> Vec<Change> {
    // Indexed once: the controller runs this on every change with thousands of Services.
    let allocations: HashMap<&str, _> = plan.allocations.iter().map(|a| (a.service.as_str(), a)).collect();
    let pending: HashMap<&str, _> = plan.pending.iter().map(|p| (p.service.as_str(), p)).collect();
    let mut out = Vec::new();
    let mut sorted: Vec<(ServiceKey, &Service)> = services.iter().map(|s| (key(s), &**s)).collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, svc) in sorted {
        if !plan.is_valid() && !current_ips(svc).is_empty() {
            continue;
        }
        if let Some(a) = allocations.get(k.as_str()) {
            if current_ips(svc) != a.ips || current_pool(svc) != Some(a.pool.as_str()) {
                out.push(Change::Assign { service: k, ips: a.ips.clone(), pool: a.pool.clone() });
            }
        } else if let Some(p) = pending.get(k.as_str())
            && !current_ips(svc).is_empty()
        {
            out.push(Change::Clear { service: k, reason: p.reason.clone() });
        }
    }
    out
}

#[cfg(test)]
mod tests;
