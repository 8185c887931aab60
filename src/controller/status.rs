//! What the controller says besides IPs: the `ferrolb.io/Announced` condition on Services, the
//! address counts on IPAddressPools, and its ConfigurationState. Each is written only when it
//! differs from what the cluster holds, so a quiet cluster costs no writes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use crate::api::{IPAddressPool, IPAddressPoolStatus};
use crate::plan::condition::{self, Announced};
use crate::plan::{Inputs, Plan};

/// Queues the conditions that changed (and drops what waits for those that hold theirs).
pub fn queue_conditions(
    queue: &super::background::Conditions,
    services: &HashMap<String, &Arc<Service>>,
    wanted: &BTreeMap<String, Announced>,
) {
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
            queue.cancel(key);
            continue;
        }
        queue.set(key.clone(), pending(svc, current, want));
    }
}

fn pending(
    svc: &Service,
    previous: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    want: &Announced,
) -> super::background::Pending {
    // The transition time moves only when the status flips, as the condition convention asks.
    let since = match previous {
        Some(p) if (p.status == "True") == want.status => p.last_transition_time.clone(),
        _ => Time(k8s_openapi::jiff::Timestamp::now()),
    };
    super::background::Pending {
        ns: svc.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
        name: svc.metadata.name.clone().unwrap_or_default(),
        want: want.clone(),
        since,
        generation: svc.metadata.generation,
    }
}

/// A pool's counts as its status (and MetalLB's gauges) carry them: signed 64-bit, so an IPv6
/// range beyond that reads as i64::MAX, as MetalLB's does.
pub(super) fn pool_status(stats: &crate::allocator::PoolStats) -> IPAddressPoolStatus {
    let clamp = |v: u128| i64::try_from(v).unwrap_or(i64::MAX);
    IPAddressPoolStatus {
        assigned_ipv4: clamp(stats.assigned_v4),
        assigned_ipv6: clamp(stats.assigned_v6),
        available_ipv4: clamp(stats.available_v4),
        available_ipv6: clamp(stats.available_v6),
    }
}

/// Address counts for each pool whose status differs from the plan's.
pub async fn write_pool_counts(client: &Client, ns: &str, inputs: &Inputs, plan: &Plan) {
    for usage in &plan.pools {
        let want = pool_status(&usage.stats);
        let current = inputs.objects.pools.iter().find(|p| p.metadata.name.as_deref() == Some(&usage.pool));
        if current.and_then(|p| p.status.as_ref()) == Some(&want) {
            continue;
        }
        let api: Api<IPAddressPool> = Api::namespaced(client.clone(), ns);
        if let Err(e) = api
            .patch_status(&usage.pool, &PatchParams::default(), &Patch::Merge(json!({"status": want})))
            .await
        {
            tracing::warn!(pool = %usage.pool, error = %e, "writing pool counts");
        }
    }
}
