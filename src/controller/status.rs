//! What the controller says besides IPs: the `ferrolb.io/Announced` condition on Services, the
//! address counts on IPAddressPools, and kube-proxy's finding. Each is asked for only when it
//! differs from what the cluster holds, so a quiet cluster costs no writes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::effect::{About, ConditionWrite, Effect};
use crate::api::IPAddressPoolStatus;
use crate::k8s::config_state::ExtraCondition;
use crate::plan::condition::{self, Announced};
use crate::plan::invalid_objects::Said;
use crate::plan::kube_proxy::{Finding, IPVS_WITHOUT_STRICT_ARP};
use crate::plan::{Inputs, Plan};

/// The conditions that changed, to queue (and, for those that hold theirs, what waits for
/// them dropped).
pub fn queue_conditions(
    services: &HashMap<String, Arc<Service>>,
    wanted: &BTreeMap<String, Announced>,
) -> Vec<Effect> {
    let mut out = Vec::new();
    for (key, want) in wanted {
        let Some(svc) = services.get(key) else { continue };
        let current = svc
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == condition::TYPE));
        let same = current.is_some_and(|c| {
            (c.status == "True") == want.status && c.reason == want.reason && c.message == want.message
        });
        if same {
            out.push(Effect::CancelCondition(key.clone()));
        } else {
            out.push(Effect::SetCondition(key.clone(), condition_write(svc, current, want)));
        }
    }
    out
}

fn condition_write(svc: &Service, previous: Option<&Condition>, want: &Announced) -> ConditionWrite {
    // The transition time moves only when the status flips, as the condition convention asks.
    let since = match previous {
        Some(p) if (p.status == "True") == want.status => Some(p.last_transition_time.clone()),
        _ => None,
    };
    ConditionWrite {
        ns: svc.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
        name: svc.metadata.name.clone().unwrap_or_default(),
        want: want.clone(),
        since,
        generation: svc.metadata.generation,
    }
}

/// A pool's counts as its status (and MetalLB's gauges) carry them: signed 64-bit, so an IPv6
/// range beyond that reads as i64::MAX, as MetalLB's does.
pub fn pool_status(stats: &crate::allocator::PoolStats) -> IPAddressPoolStatus {
    let clamp = |v: u128| i64::try_from(v).unwrap_or(i64::MAX);
    IPAddressPoolStatus {
        assigned_ipv4: clamp(stats.assigned_v4),
        assigned_ipv6: clamp(stats.assigned_v6),
        available_ipv4: clamp(stats.available_v4),
        available_ipv6: clamp(stats.available_v6),
    }
}

/// Address counts for each pool whose status differs from the plan's.
pub fn changed_pools(inputs: &Inputs, plan: &Plan) -> Vec<(String, IPAddressPoolStatus)> {
    let mut out = Vec::new();
    for usage in &plan.pools {
        let want = pool_status(&usage.stats);
        let current = inputs.objects.pools.iter().find(|p| p.metadata.name.as_deref() == Some(&usage.pool));
        if current.and_then(|p| p.status.as_ref()) != Some(&want) {
            out.push((usage.pool.clone(), want));
        }
    }
    out
}

/// What kube-proxy's finding calls for on a pass.
pub struct KubeProxyCheck {
    /// A Warning on each L2Advertisement, when the unsafe finding is new.
    pub events: Vec<Effect>,
    /// The ConfigurationState's `kubeProxyStrictARP` condition, once layer 2 is in use.
    pub condition: Option<ExtraCondition>,
}

/// Whether kube-proxy leaves ARP to ferrolb, once layer 2 is in use.
pub fn kube_proxy_check(finding: Option<&Finding>, said: &mut Said<()>, inputs: &Inputs) -> KubeProxyCheck {
    let layer2 = &inputs.objects.l2_advertisements;
    let finding = finding.filter(|_| !layer2.is_empty());
    let unsafe_now = finding.filter(|f| !f.safe);
    let mut events = Vec::new();
    for ((), message) in said.update(unsafe_now.map(|f| ((), f.message.clone()))) {
        for ad in layer2 {
            let about = About::Object(kube::Resource::object_ref(ad, &()));
            events.push(Effect::warning(about, IPVS_WITHOUT_STRICT_ARP, message.clone()));
        }
    }
    let condition = finding.map(|f| ExtraCondition {
        type_: "kubeProxyStrictARP",
        status: f.safe,
        reason: f.reason,
        message: f.message.clone(),
    });
    KubeProxyCheck { events, condition }
}
