//! What the controller must write back to make the cluster say what the plan decided: per
//! Service, the ingress IPs in its status and the pool in its annotation. Pure: it compares the
//! plan with the Services as observed.

use std::collections::HashMap;

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

fn current_pool(svc: &Service) -> Option<&str> {
    svc.metadata.annotations.as_ref()?.get(POOL_ANNOTATION).map(String::as_str)
}

/// Every write needed, Services in name order. Services the plan does not mention (another
/// load balancer class, not LoadBalancer) are left alone.
pub fn changes(services: &[Service], plan: &Plan) -> Vec<Change> {
    // Indexed once: the controller runs this on every change with thousands of Services.
    let allocations: HashMap<&str, _> = plan.allocations.iter().map(|a| (a.service.as_str(), a)).collect();
    let pending: HashMap<&str, _> = plan.pending.iter().map(|p| (p.service.as_str(), p)).collect();
    let mut out = Vec::new();
    let mut sorted: Vec<(ServiceKey, &Service)> = services.iter().map(|s| (key(s), s)).collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, svc) in sorted {
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
mod tests {
    use super::*;
    use crate::plan::{Inputs, Options, plan};

    const POOL: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p, namespace: metallb-system}\nspec: {addresses: [192.0.2.0/30]}\n";

    fn svc(name: &str, status_ip: Option<&str>, pool: Option<&str>) -> String {
        let mut s = format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop");
        if let Some(p) = pool {
            s.push_str(&format!(", annotations: {{{POOL_ANNOTATION}: {p}}}"));
        }
        s.push_str("}\nspec: {type: LoadBalancer}\n");
        if let Some(ip) = status_ip {
            s.push_str(&format!("status: {{loadBalancer: {{ingress: [{{ip: {ip}}}]}}}}\n"));
        }
        s
    }

    fn run(yaml: &str) -> Vec<Change> {
        let mut i = Inputs::new("metallb-system");
        i.add_yaml("t", yaml).unwrap();
        let p = plan(&i, &Options::default());
        changes(&i.services, &p)
    }

    #[test]
    fn new_services_are_assigned_and_settled_ones_left_alone() {
        let changes =
            run(&format!("{POOL}{}{}", svc("a", Some("192.0.2.0"), Some("p")), svc("b", None, None)));
        assert_eq!(
            changes,
            vec![Change::Assign {
                service: "shop/b".into(),
                ips: vec!["192.0.2.1".into()],
                pool: "p".into()
            }]
        );
    }

    #[test]
    fn a_missing_annotation_is_written_even_when_the_ip_is_right() {
        let changes = run(&format!("{POOL}{}", svc("a", Some("192.0.2.0"), None)));
        assert_eq!(
            changes,
            vec![Change::Assign {
                service: "shop/a".into(),
                ips: vec!["192.0.2.0".into()],
                pool: "p".into()
            }]
        );
    }

    #[test]
    fn a_service_whose_ip_left_every_pool_is_cleared_with_the_reason() {
        let changes = run(&format!("{POOL}{}", svc("a", Some("198.51.100.7"), Some("gone"))));
        // The IP is outside every pool: the plan gives it a new one from the pool.
        assert!(
            matches!(&changes[..], [Change::Assign { ips, .. }] if ips == &vec!["192.0.2.0".to_string()])
        );
        let full = format!(
            "{POOL}{}{}{}{}{}",
            svc("a", None, None),
            svc("b", None, None),
            svc("c", None, None),
            svc("d", None, None),
            svc("e", Some("198.51.100.7"), None)
        );
        let changes = run(&full);
        let cleared: Vec<_> = changes.iter().filter(|c| matches!(c, Change::Clear { .. })).collect();
        assert_eq!(cleared.len(), 1, "{changes:?}");
        assert!(
            matches!(cleared[0], Change::Clear { service, reason } if service == "shop/e" && !reason.is_empty())
        );
    }
}
