//! What a LoadBalancer Service asks of ferrolb, read from its spec and annotations.
//!
//! Pure: turns a `Service` object into a [`Request`] the allocator understands, or says why the
//! Service is not ours or cannot be served.

use std::collections::BTreeSet;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;

use crate::config::{Family, Labels};

pub const ANNOTATION_PREFIX: &str = "metallb.io/";
/// Still honoured; the `metallb.io/` spelling wins when both are present.
pub const LEGACY_PREFIX: &str = "metallb.universe.tf/";
pub const ADDRESS_POOL: &str = "address-pool";
pub const LOAD_BALANCER_IPS: &str = "loadBalancerIPs";
pub const ALLOW_SHARED_IP: &str = "allow-shared-ip";
pub const ALLOCATED_FROM_POOL: &str = "ip-allocated-from-pool";

/// `namespace/name`.
pub type ServiceKey = String;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

pub type Port = (Protocol, u16);

/// Everything the allocator needs to know about one Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub key: ServiceKey,
    pub namespace: String,
    pub labels: Labels,
    /// Families of the Service's cluster IPs, primary first (one or two).
    pub families: Vec<Family>,
    /// PreferDualStack: a dual-stack Service may settle for one family.
    pub prefer_dual_stack: bool,
    /// From `metallb.io/loadBalancerIPs` or `spec.loadBalancerIP`.
    pub requested_ips: Vec<IpAddr>,
    /// From `metallb.io/address-pool`.
    pub pool: Option<String>,
    /// From `metallb.io/allow-shared-ip`.
    pub sharing_key: Option<String>,
    /// Services may share an IP only with the same backend key: empty for
    /// externalTrafficPolicy Cluster, the pod selector for Local.
    pub backend_key: String,
    /// externalTrafficPolicy: Local.
    pub local_traffic: bool,
    pub ports: BTreeSet<Port>,
    /// Addresses already in `status.loadBalancer.ingress`.
    pub current_ips: Vec<IpAddr>,
    /// Used only to order restarts deterministically (older first).
    pub created: Option<String>,
    /// Legacy annotations this Service uses, to warn about.
    pub legacy_annotations: Vec<String>,
}

impl Request {
    pub fn is_dual_stack(&self) -> bool {
        self.families.len() == 2
    }

    /// The sharing identity, if the Service allows sharing at all.
    pub fn sharing(&self) -> Option<(String, String)> {
        self.sharing_key.clone().map(|k| (k, self.backend_key.clone()))
    }
}

/// How ferrolb treats one Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intake {
    /// Not `type: LoadBalancer`: any allocation it had is released.
    NotLoadBalancer,
    /// Another load balancer implementation's `loadBalancerClass`.
    OtherClass(String),
    /// Ours, but asks for something impossible (reason for a Warning event).
    Invalid(String),
    Serve(Box<Request>),
}

pub fn key_of(svc: &Service) -> ServiceKey {
    format!(
        "{}/{}",
        svc.metadata.namespace.as_deref().unwrap_or("default"),
        svc.metadata.name.as_deref().unwrap_or("")
    )
}

fn annotation<'a>(svc: &'a Service, suffix: &str, legacy_used: &mut Vec<String>) -> Option<&'a str> {
    let ann = svc.metadata.annotations.as_ref()?;
    if let Some(v) = ann.get(&format!("{ANNOTATION_PREFIX}{suffix}")) {
        return Some(v.as_str());
    }
    let legacy = format!("{LEGACY_PREFIX}{suffix}");
    let v = ann.get(&legacy)?;
    legacy_used.push(legacy);
    Some(v.as_str())
}

/// Reads a Service. `lb_class` is the class ferrolb answers to: `None` means only Services
/// without a class, as MetalLB does without `--lb-class`.
pub fn intake(svc: &Service, lb_class: Option<&str>) -> Intake {
    let Some(spec) = svc.spec.as_ref() else { return Intake::NotLoadBalancer };
    if spec.type_.as_deref() != Some("LoadBalancer") {
        return Intake::NotLoadBalancer;
    }
    if spec.load_balancer_class.as_deref() != lb_class {
        return match &spec.load_balancer_class {
            Some(c) => Intake::OtherClass(c.clone()),
            None => Intake::OtherClass(String::new()),
        };
    }
    let mut legacy = Vec::new();
    let families = match families(svc) {
        Ok(f) => f,
        Err(e) => return Intake::Invalid(e),
    };
    let requested_ips = match requested_ips(svc, &mut legacy) {
        Ok(ips) => ips,
        Err(e) => return Intake::Invalid(e),
    };
    if !requested_ips.is_empty() {
        let want: BTreeSet<Family> = families.iter().copied().collect();
        let got: BTreeSet<Family> = requested_ips.iter().map(Family::of).collect();
        if want != got {
            return Intake::Invalid(format!(
                "requested IPs {} do not match the Service's IP families ({})",
                join(&requested_ips),
                families.iter().map(Family::to_string).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let pool = annotation(svc, ADDRESS_POOL, &mut legacy).map(str::to_string);
    let sharing_key = annotation(svc, ALLOW_SHARED_IP, &mut legacy).map(str::to_string);
    let local_traffic = spec.external_traffic_policy.as_deref() == Some("Local");
    let backend_key = if local_traffic {
        let sel = spec.selector.clone().unwrap_or_default();
        sel.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    } else {
        String::new()
    };
    let ports = spec
        .ports
        .iter()
        .flatten()
        .map(|p| {
            let proto = match p.protocol.as_deref() {
                Some("UDP") => Protocol::Udp,
                Some("SCTP") => Protocol::Sctp,
                _ => Protocol::Tcp,
            };
            (proto, p.port.clamp(0, u16::MAX as i32) as u16)
        })
        .collect();
    let current_ips = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|ing| ing.iter().filter_map(|i| i.ip.as_deref()?.parse().ok()).collect())
        .unwrap_or_default();
    Intake::Serve(Box::new(Request {
        key: key_of(svc),
        namespace: svc.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
        labels: svc.metadata.labels.clone().unwrap_or_default(),
        prefer_dual_stack: families.len() == 2 && spec.ip_family_policy.as_deref() == Some("PreferDualStack"),
        families,
        requested_ips,
        pool,
        sharing_key,
        backend_key,
        local_traffic,
        ports,
        current_ips,
        created: svc.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()),
        legacy_annotations: legacy,
    }))
}

/// Families follow the cluster IPs. Manifests that have not been through an API server carry
/// none, so `spec.ipFamilies` and then `spec.ipFamilyPolicy` stand in for what the API server
/// would assign (IPv4 first, as on a default dual-stack cluster).
fn families(svc: &Service) -> Result<Vec<Family>, String> {
    let spec = svc.spec.as_ref().expect("checked by caller");
    let mut ips: Vec<&str> = spec.cluster_ips.iter().flatten().map(String::as_str).collect();
    if ips.is_empty() {
        ips.extend(spec.cluster_ip.as_deref());
    }
    ips.retain(|ip| !ip.is_empty());
    if ips.contains(&"None") {
        return Err("a headless Service (clusterIP: None) cannot be a LoadBalancer".into());
    }
    let mut families: Vec<Family> = Vec::new();
    for ip in &ips {
        let parsed: IpAddr = ip.parse().map_err(|_| format!("cluster IP {ip:?} is not an IP address"))?;
        families.push(Family::of(&parsed));
    }
    let policy = spec.ip_family_policy.as_deref();
    if families.is_empty() {
        for f in spec.ip_families.iter().flatten() {
            families.push(match f.as_str() {
                "IPv4" => Family::V4,
                "IPv6" => Family::V6,
                other => return Err(format!("unknown IP family {other:?} in spec.ipFamilies")),
            });
        }
        if families.is_empty() {
            families.push(Family::V4);
        }
        if families.len() == 1 && matches!(policy, Some("RequireDualStack" | "PreferDualStack")) {
            families.push(families[0].other());
        }
    }
    if families.len() > 2 || (families.len() == 2 && families[0] == families[1]) {
        return Err("a Service has at most one cluster IP per family".into());
    }
    if policy == Some("RequireDualStack") && families.len() < 2 {
        return Err("RequireDualStack needs two cluster IPs, one per family".into());
    }
    Ok(families)
}

fn requested_ips(svc: &Service, legacy: &mut Vec<String>) -> Result<Vec<IpAddr>, String> {
    let from_spec = svc.spec.as_ref().and_then(|s| s.load_balancer_ip.as_deref()).filter(|s| !s.is_empty());
    let from_annotation = annotation(svc, LOAD_BALANCER_IPS, legacy).filter(|s| !s.trim().is_empty());
    let text = match (from_annotation, from_spec) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "both the {ANNOTATION_PREFIX}{LOAD_BALANCER_IPS} annotation and spec.loadBalancerIP are set; use one"
            ));
        }
        (Some(a), None) => a,
        (None, Some(s)) => s,
        (None, None) => return Ok(Vec::new()),
    };
    let mut ips = Vec::new();
    for part in text.split(',').map(str::trim) {
        ips.push(part.parse::<IpAddr>().map_err(|_| format!("requested IP {part:?} is not an IP address"))?);
    }
    match ips.as_slice() {
        [_] => Ok(ips),
        [a, b] if Family::of(a) != Family::of(b) => Ok(ips),
        [_, _] => Err(format!("requested IPs {} must be of different families", join(&ips))),
        _ => Err(format!("at most two requested IPs (one per family), got {}", ips.len())),
    }
}

pub fn join(ips: &[IpAddr]) -> String {
    ips.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests;
