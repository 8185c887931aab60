//! What the speaker tells the cluster about its announcements, as Events on the Services:
//! MetalLB's `nodeAssigned` when this node starts announcing one, `announceFailed` when it
//! cannot make one it was elected for. Each kind has its own rate limit (a failing interface
//! must not use up the tokens that say where announcing moves), and what was last said to be
//! announced is kept, so only what starts is news. Without a cluster nothing is told but the
//! failures' log lines.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use k8s_openapi::api::core::v1::Service;
use kube::Resource;

use super::effect::{Effect, Log, Told};
use super::input::Cluster;
use super::{assigned, failures};
use crate::plan;
use crate::service::ServiceKey;

pub struct Telling {
    assigned: assigned::Limiter,
    failed: assigned::Limiter,
    /// What this node was last said to announce.
    announcing: assigned::Announcing,
}

impl Telling {
    pub fn new(now: Instant) -> Telling {
        Telling {
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
        cluster: Option<&dyn Cluster>,
        at: Instant,
        out: &mut Vec<Effect>,
    ) {
        let Some(cluster) = cluster else {
            self.announcing = now;
            return;
        };
        let starts: Vec<(ServiceKey, &'static str)> =
            assigned::started(&self.announcing, &now).cloned().collect();
        let started: BTreeSet<ServiceKey> = starts.iter().map(|(s, _)| s.clone()).collect();
        let found = match started.is_empty() {
            false => cluster.inputs_for(&started),
            true => plan::Inputs::default(),
        };
        let known = if found.services.is_empty() { inputs } else { &found };
        self.say_assigned(&starts, known, at, out);
        self.announcing = now;
    }

    /// The failures changed: each new one is said, and on its Service, and a layer 2 Service
    /// an interface answers for again is news as a start would be.
    pub fn failures(
        &mut self,
        found: &failures::Found,
        cluster: Option<&dyn Cluster>,
        at: Instant,
        out: &mut Vec<Effect>,
    ) {
        out.extend(found.started.iter().map(|f| Log::CannotAnnounce(f.clone()).into()));
        out.extend(found.answered_again.iter().map(|s| Log::AnsweringAgain(s.clone()).into()));
        let Some(cluster) = cluster else { return };
        let keys: BTreeSet<ServiceKey> = found
            .started
            .iter()
            .map(|f| f.service.clone())
            .chain(found.answered_again.iter().cloned())
            .collect();
        if keys.is_empty() {
            return;
        }
        let inputs = cluster.inputs_for(&keys);
        let services = by_key(&inputs);
        for f in &found.started {
            let Some(svc) = services.get(&f.service) else { continue };
            match self.failed.admit(&f.service, at) {
                true => {
                    out.push(Effect::Event { service: svc.object_ref(&()), told: Told::Failed(f.clone()) })
                }
                false => out.push(Log::FailedHeldBack { service: f.service.clone() }.into()),
            }
        }
        let again: Vec<(ServiceKey, &'static str)> = found
            .answered_again
            .iter()
            .map(|s| (s.clone(), "layer2"))
            .filter(|a| !self.announcing.contains(a))
            .collect();
        self.say_assigned(&again, &inputs, at, out);
        self.announcing.extend(again);
    }

    /// A `nodeAssigned` Event on each of `starts`, as the limiter allows.
    fn say_assigned(
        &mut self,
        starts: &[(ServiceKey, &'static str)],
        inputs: &plan::Inputs,
        at: Instant,
        out: &mut Vec<Effect>,
    ) {
        if starts.is_empty() {
            return;
        }
        let services = by_key(inputs);
        for &(ref service, protocol) in starts {
            let Some(svc) = services.get(service) else { continue };
            if self.assigned.admit(service, at) {
                out.push(Effect::Event { service: svc.object_ref(&()), told: Told::Assigned(protocol) });
            } else {
                let dropped = self.assigned.dropped;
                out.push(Log::AssignedHeldBack { service: service.clone(), protocol, dropped }.into());
            }
        }
        self.assigned.forget_idle(at);
    }
}

fn by_key(inputs: &plan::Inputs) -> HashMap<ServiceKey, &Service> {
    inputs.services.iter().map(|s| (plan::writeback::key(s), &**s)).collect()
}
