//! What the speaker tells the cluster about its announcements, as Events on the Services:
//! MetalLB's `nodeAssigned` when this node starts announcing one, `announceFailed` when it
//! cannot make one it was elected for. Each kind has its own rate limit (a failing interface
//! must not use up the tokens that say where announcing moves), and what was last said to be
//! announced is kept, so only what starts is news.

use std::collections::BTreeSet;

use kube::Resource;

use super::{assigned, events::SpeakerEvents, failures};
use crate::k8s::cache::ClusterCache;
use crate::plan;
use crate::service::ServiceKey;

pub struct Telling {
    /// None without a cluster: then failures are only logged.
    events: Option<SpeakerEvents>,
    assigned: assigned::Limiter,
    failed: assigned::Limiter,
    /// What this node was last said to announce.
    announcing: assigned::Announcing,
}

impl Telling {
    pub fn new(events: Option<SpeakerEvents>) -> Telling {
        let now = std::time::Instant::now();
        Telling {
            events,
            assigned: assigned::Limiter::new(now),
            failed: assigned::Limiter::new(now),
            announcing: assigned::Announcing::new(),
        }
    }

    /// A decision: this node now announces `now`. `inputs` holds the Services it decided;
    /// others that start (a takeover, fencing lifted) are looked up in `cluster`.
    pub fn decided(
        &mut self,
        now: assigned::Announcing,
        inputs: &plan::Inputs,
        cluster: Option<&ClusterCache>,
    ) {
        let starts: Vec<(ServiceKey, &'static str)> =
            assigned::started(&self.announcing, &now).cloned().collect();
        let started: BTreeSet<ServiceKey> = starts.iter().map(|(s, _)| s.clone()).collect();
        let found = match cluster {
            Some(cache) if !started.is_empty() => cache.inputs_for(&started),
            _ => plan::Inputs::default(),
        };
        let known = if found.services.is_empty() { inputs } else { &found };
        self.say_assigned(&starts, known);
        self.announcing = now;
    }

    /// The failures changed: each new one is logged and said on its Service, and a layer 2
    /// Service an interface answers for again is news as a start would be.
    pub fn failures(&mut self, found: &failures::Found, cluster: Option<&ClusterCache>) {
        for f in &found.started {
            tracing::warn!(service = %f.service, protocol = %f.protocol, reason = %f.reason, "cannot announce");
        }
        for s in &found.answered_again {
            tracing::info!(service = %s, "layer 2: answering again");
        }
        let Some(cache) = cluster else { return };
        let keys: BTreeSet<ServiceKey> = found
            .started
            .iter()
            .map(|f| f.service.clone())
            .chain(found.answered_again.iter().cloned())
            .collect();
        if keys.is_empty() {
            return;
        }
        let inputs = cache.inputs_for(&keys);
        let at = std::time::Instant::now();
        if let Some(events) = &self.events {
            for f in &found.started {
                let Some(svc) = inputs.services.iter().find(|s| plan::writeback::key(s) == f.service) else {
                    continue;
                };
                if !self.failed.admit(&f.service, at) || !events.announce_failed(svc.object_ref(&()), f) {
                    tracing::debug!(service = %f.service, "announceFailed event not sent (rate limit)");
                }
            }
        }
        let again: Vec<(ServiceKey, &'static str)> = found
            .answered_again
            .iter()
            .map(|s| (s.clone(), "layer2"))
            .filter(|a| !self.announcing.contains(a))
            .collect();
        self.say_assigned(&again, &inputs);
        self.announcing.extend(again);
    }

    /// A `nodeAssigned` Event on each of `starts`, as the limiter allows.
    fn say_assigned(&mut self, starts: &[(ServiceKey, &'static str)], inputs: &plan::Inputs) {
        let Some(events) = &self.events else { return };
        if starts.is_empty() {
            return;
        }
        let at = std::time::Instant::now();
        let services: std::collections::HashMap<String, &k8s_openapi::api::core::v1::Service> =
            inputs.services.iter().map(|s| (plan::writeback::key(s), &**s)).collect();
        for (service, protocol) in starts {
            let Some(svc) = services.get(service) else { continue };
            if !self.assigned.admit(service, at) || !events.assigned(svc.object_ref(&()), protocol) {
                let dropped = self.assigned.dropped;
                tracing::debug!(%service, protocol, dropped, "nodeAssigned event not sent (rate limit)");
            }
        }
        self.assigned.forget_idle(at);
    }
}
