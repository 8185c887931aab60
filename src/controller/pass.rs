//! One pass of the controller: decide, have the IPs written, then say what follows from them.
//!
//! observe (a cache of the cluster, complete before the first decision, so a restart never
//! moves an IP) -> decide (`plan`, the same pure function `ferrolb plan` runs, then
//! `writeback::changes`) -> act (status, annotation, Events).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Service;

use super::effect::{About, Effect, Log, Metric, Publish, Report, ServiceWrite};
use super::state::{Cluster, Controller, POOL_COUNTS_EVERY, Pass, Phase, RETRY_AFTER};
use super::status;
use crate::plan::incremental::Dirty;
use crate::plan::writeback::{self, Change, key};
use crate::plan::{self, Inputs, Plan};

impl<C: Cluster> Controller<C> {
    /// Decides what changed and asks for the writes that make the cluster say it.
    pub(super) fn pass(&mut self, out: &mut Vec<Effect>) {
        let dirty = std::mem::take(&mut self.dirty);
        let (inputs, decided, whole) = self.decide(&dirty);
        if whole {
            out.push(Effect::Metric(Metric::FullPass));
        }
        if decided.is_valid() {
            self.kept.last_good = decided.config.clone();
        }
        out.extend(plan_metrics(&decided).into_iter().map(Effect::Metric));
        for e in &decided.errors {
            out.push(Effect::Log(Log::Invalid { error: e.to_string(), stale: decided.stale }));
        }
        for w in self.kept.config_warnings.update(&inputs.objects, &decided.errors) {
            out.push(Effect::warning(About::Object(w.object), "InvalidConfiguration", w.message));
        }
        let changes = writeback::changes(&inputs.services, &decided);
        out.push(Effect::Metric(Metric::Decided));
        let by_key: HashMap<String, Arc<Service>> =
            inputs.services.iter().map(|s| (key(s), s.clone())).collect();
        let writes = changes
            .into_iter()
            .filter_map(|change| {
                let service = by_key.get(service_of(&change))?.clone();
                Some(ServiceWrite { change, service })
            })
            .collect();
        out.push(Effect::WriteServices(writes));
        let pass = Pass { inputs, decided, whole, by_key, failed: BTreeSet::new() };
        self.phase = Phase::Writing(Box::new(pass));
    }

    /// The Services in `dirty` alone when the last decision was kept and only Services
    /// changed, else everything: (what was read, the plan, whether it was everything).
    fn decide(&mut self, dirty: &Dirty) -> (Inputs, Plan, bool) {
        let options = &self.settings.options;
        if !dirty.everything {
            let changed = self.cluster.inputs_for(&dirty.services);
            if let Some(decided) = self.kept.allocations.decide_changed(&changed, options, &dirty.services) {
                // Services that waited for an address may have been decided too: the
                // write-back needs their objects, fetched only when there are such.
                let waited: BTreeSet<String> =
                    decided.decided_services().into_iter().filter(|k| !dirty.services.contains(k)).collect();
                let inputs = if waited.is_empty() {
                    changed
                } else {
                    self.cluster
                        .inputs_for(&waited.into_iter().chain(dirty.services.iter().cloned()).collect())
                };
                return (inputs, decided, false);
            }
        }
        let inputs = self.cluster.inputs();
        let decided = self.kept.allocations.decide_all(&inputs, options, self.kept.last_good.as_ref());
        (inputs, decided, true)
    }

    /// One Service write came back: its Events go out once it holds what they say.
    pub(super) fn written(
        &mut self,
        change: Change,
        error: Option<String>,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let Phase::Writing(pass) = &mut self.phase else { return };
        let service = service_of(&change).to_string();
        if let Some(error) = error {
            out.push(Effect::Metric(Metric::UpdateFailed));
            out.push(Effect::Log(Log::WriteFailed(error)));
            pass.failed.insert(service);
            return;
        }
        out.push(Effect::Metric(Metric::Updated));
        if matches!(change, Change::Assign { .. }) {
            out.push(Effect::Metric(Metric::Allocated(now.saturating_duration_since(self.woke))));
        }
        out.push(Effect::Log(Log::Written(change)));
        if let Some(svc) = pass.by_key.get(&service) {
            out.extend(service_events(&pass.decided, &service, svc));
        }
        self.kept.warned.remove(&service);
    }

    /// The pass's IPs are written: what follows from them, and its report.
    pub(super) fn writes_done(&mut self, now: Instant, out: &mut Vec<Effect>) {
        // Only the writes of the pass end it: a WritesDone at any other time changes nothing
        // (had it moved an idle controller to Reporting, no Reported would ever come and no
        // pass begin again).
        let pass = match std::mem::replace(&mut self.phase, Phase::Reporting) {
            Phase::Writing(pass) => pass,
            other => {
                self.phase = other;
                return;
            }
        };
        let Pass { inputs, decided, whole, by_key, failed } = *pass;
        // Decided again on the retry: a partial pass would otherwise wait for their next change.
        self.retry_at = (!failed.is_empty()).then(|| now + RETRY_AFTER);
        self.dirty.services.extend(failed);
        let decided_keys: BTreeSet<String> = inputs.services.iter().map(|s| key(s)).collect();
        let (l2, bgp) = self.cluster.reports((!whole).then_some(&decided_keys));
        let speakers = self.cluster.speaker_states();
        let wanted = plan::condition::conditions(&decided, &inputs, &l2, &bgp, &speakers);
        // Said once per Service and message: the condition carries it from then on.
        let outside = wanted.iter().filter(|(_, c)| c.reason == plan::condition::OUTSIDE_POOLS);
        let outside = outside.map(|(s, c)| (s.clone(), c.message.clone()));
        let said = if whole {
            self.kept.outside_warned.update(outside)
        } else {
            self.kept.outside_warned.update_within(&decided_keys, outside)
        };
        for (service, message) in said {
            if let Some(svc) = by_key.get(&service) {
                out.push(Effect::warning(
                    About::Service(svc.clone()),
                    plan::condition::OUTSIDE_POOLS,
                    message,
                ));
            }
        }
        out.extend(status::queue_conditions(&by_key, &wanted));
        let pools = self.pool_counts(now, &inputs, &decided);
        let kube_proxy =
            status::kube_proxy_check(self.kube_proxy.as_ref(), &mut self.kept.kube_proxy_said, &inputs);
        out.extend(kube_proxy.events);
        out.push(Effect::Report(Report {
            pools,
            errors: decided.error_summary(),
            extra: kube_proxy.condition.into_iter().collect(),
        }));
        self.pending_warnings(&decided, &by_key, out);
        // A pass over every Service leaves its working set freed, not returned.
        if whole {
            out.push(Effect::GiveBackMemory);
        }
    }

    /// Pool counts move with every allocation: written at most once a second, so churn does
    /// not queue a pool write behind every Service (they are for people and dashboards).
    fn pool_counts(
        &mut self,
        now: Instant,
        inputs: &Inputs,
        decided: &Plan,
    ) -> Vec<(String, crate::api::IPAddressPoolStatus)> {
        match self.kept.pools_written {
            Some(at) if now < at + POOL_COUNTS_EVERY => {
                let next = at + POOL_COUNTS_EVERY;
                self.retry_at = Some(self.retry_at.map_or(next, |r| r.min(next)));
                Vec::new()
            }
            _ => {
                self.kept.pools_written = Some(now);
                status::changed_pools(inputs, decided)
            }
        }
    }

    /// Pending Services with nothing to clear get their warning once per reason.
    fn pending_warnings(
        &mut self,
        decided: &Plan,
        by_key: &HashMap<String, Arc<Service>>,
        out: &mut Vec<Effect>,
    ) {
        for p in &decided.pending {
            if self.kept.warned.get(&p.service) == Some(&p.reason) {
                continue;
            }
            if let Some(svc) = by_key.get(&p.service) {
                out.extend(service_events(decided, &p.service, svc));
                self.kept.warned.insert(p.service.clone(), p.reason.clone());
            }
        }
    }
}

fn service_of(change: &Change) -> &str {
    match change {
        Change::Assign { service, .. } | Change::Clear { service, .. } => service,
    }
}

/// The Events the plan has for `service`.
fn service_events<'a>(
    decided: &'a Plan,
    service: &str,
    svc: &'a Arc<Service>,
) -> impl Iterator<Item = Effect> + 'a {
    decided.events.get(service).into_iter().flatten().map(|ev| {
        Effect::Publish(Publish {
            about: About::Service(svc.clone()),
            type_: ev.type_,
            reason: ev.reason,
            note: ev.message.clone(),
        })
    })
}

/// Pool usage and configuration health, as MetalLB's gauges report them.
fn plan_metrics(decided: &Plan) -> Vec<Metric> {
    // Loaded: some configuration decides (maybe the last good one); stale: it is not the
    // objects' own, or there is none.
    let mut out =
        vec![Metric::Configuration { loaded: decided.config.is_some(), stale: !decided.is_valid() }];
    out.extend(decided.pools.iter().map(|u| Metric::Pool(u.pool.clone(), status::pool_status(&u.stats))));
    out
}
