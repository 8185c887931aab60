//! The speaker's decisions, apart from its I/O: a [`Speaker`] takes what the driver observed
//! ([`Input`]) with the time, and answers with what to do ([`Effect`]). It keeps everything a
//! decision needs from earlier ones: the last valid configuration, the node's announcements per
//! Service, the fencing state, what FRR and the interfaces last said, what was last told.
//!
//! Its log lines are effects too ([`Log`]): which ones are said and how often is a decision
//! like the others (said once, said again when it changes), and tests check it so. The one
//! clock it reads is the stopwatch timing a decision for `plan_seconds`: that measures the
//! step's own work, which no input can give, and decides nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use super::assigned;
use super::bgp_backend::fingerprint;
use super::effect::{Effect, Log, Metric};
use super::failures::Failures;
use super::fencing::{Fencing, Known};
use super::input::{Cluster, Input, Now, Observed, Settings};
use super::telling::Telling;
use crate::config::Config;
use crate::l2::quorum::Quorum;
use crate::l2::reach::Announced;
use crate::l2::restart_hold::RestartHold;
use crate::plan::incremental::{Dirty, NodeAnnouncements};
use crate::plan::{self, Options, Plan, PlannedAnnouncement};

/// What was last said at info, so that the same is not said on every pass.
#[derive(Debug, Default)]
struct Said {
    l2: Option<(usize, bool, Option<BTreeSet<String>>)>,
    held: BTreeSet<String>,
    frr: Option<u64>,
    extras: Vec<String>,
    unfit: BTreeMap<String, String>,
}

/// A decision, with what it was made from when that was not the step's objects.
struct Decision {
    plan: Plan,
    /// Every Service, when the decision went over all of them after a partial snapshot.
    all: Option<plan::Inputs>,
    /// Over every Service.
    whole: bool,
}

pub struct Speaker {
    settings: Settings,
    /// None offline: the objects come from manifests then.
    cluster: Option<Box<dyn Cluster>>,
    /// The manifests' objects (offline).
    manifests: Option<plan::Inputs>,
    /// Something a decision reads changed since the last one.
    replan: bool,
    /// Services changed since the last decision.
    dirty: Dirty,
    node_state: NodeAnnouncements,
    /// The last valid configuration: a bad object never takes announcements away.
    last_good: Option<Arc<Config>>,
    seen: Observed,
    fencing: Fencing,
    /// When membership's view changed, until a decision uses it: takeovers are timed from it.
    view_changed: Option<std::time::Instant>,
    /// When a node's Ready settle time ends: decide again then.
    ready_recheck_at: Option<SystemTime>,
    /// Speakers being replaced whose layer 2 IPs stay where they are meanwhile.
    restart_hold: RestartHold,
    /// When the next of those holds ends: decide again then.
    hold_ends_at: Option<SystemTime>,
    /// The layer 2 IPs answered for.
    answering: Announced,
    failures: Failures,
    telling: Telling,
    said: Said,
    /// A report was given: failures found between decisions amend it.
    reported: bool,
}

impl Speaker {
    pub fn new(settings: Settings, cluster: Option<Box<dyn Cluster>>, seen: Observed, now: Now) -> Speaker {
        let mut restart_hold = RestartHold::default();
        if let Some(view) = &seen.view {
            restart_hold.view(&view.live, now.wall);
        }
        Speaker {
            settings,
            cluster,
            manifests: None,
            replan: true,
            dirty: Dirty::everything(),
            node_state: NodeAnnouncements::default(),
            last_good: None,
            seen,
            fencing: Fencing::default(),
            view_changed: None,
            ready_recheck_at: None,
            restart_hold,
            hold_ends_at: None,
            answering: Announced::new(),
            failures: Failures::default(),
            telling: Telling::new(now.at),
            said: Said::default(),
            reported: false,
        }
    }

    /// When to step with [`Input::Timer`]: a starting speaker will count, a node's Ready
    /// settle time ends, or a restarting speaker's IPs are held no longer.
    pub fn deadline(&self) -> Option<SystemTime> {
        [self.fencing.recount_at, self.ready_recheck_at, self.hold_ends_at].into_iter().flatten().min()
    }

    /// One input alone.
    #[cfg(test)]
    pub fn step(&mut self, input: Input, now: Now) -> Vec<Effect> {
        self.steps([input], now)
    }

    /// Inputs observed together: each is taken in, then one pass decides from all of them, so
    /// that no decision reads a value another of them already replaced. A terminate ends the
    /// step where it comes.
    pub fn steps(&mut self, inputs: impl IntoIterator<Item = Input>, now: Now) -> Vec<Effect> {
        let mut out = Vec::new();
        for input in inputs {
            if let Input::Terminate { sigterm, leaving } = input {
                out.extend(self.stop(sigterm, leaving));
                return out;
            }
            self.take(input, now, &mut out);
        }
        if self.replan {
            self.pass(now, &mut out);
        }
        out
    }

    /// What an input changes before a decision.
    fn take(&mut self, input: Input, now: Now, out: &mut Vec<Effect>) {
        match input {
            Input::ClusterChanged => self.replan = true,
            Input::Manifests(Ok(inputs)) => {
                self.manifests = Some(inputs);
                self.replan = true;
            }
            Input::Manifests(Err(e)) => out.push(Log::ManifestsUnreadable(e).into()),
            Input::View(view) => {
                self.restart_hold.view(&view.live, now.wall);
                self.seen.view = Some(view);
                self.view_changed = Some(now.at);
                self.replan = true;
            }
            Input::Peers(peers) => {
                out.push(Log::Expected(peers.expected.keys().cloned().collect()).into());
                out.push(Effect::Seeds(peers.seeds));
                self.seen.expected = Some(peers.expected);
                self.seen.other_format = peers.other_format;
                self.seen.replacing = peers.replacing;
                self.replan = true;
            }
            Input::Timer => {
                self.fencing.recount_at = self.fencing.recount_at.filter(|at| *at > now.wall);
                self.ready_recheck_at = self.ready_recheck_at.filter(|at| *at > now.wall);
                self.hold_ends_at = self.hold_ends_at.filter(|at| *at > now.wall);
                self.replan = true;
            }
            Input::Frr(report) => {
                if !report.last_error.is_empty() {
                    let (error, reachable) = (report.last_error.clone(), report.agent_reachable);
                    out.push(Log::FrrBehind { error, reachable }.into());
                }
                self.seen.frr = Some(report);
                self.rejudge(now, out);
            }
            Input::Interfaces(interfaces) => {
                self.seen.interfaces = interfaces;
                self.rejudge(now, out);
            }
            // Taken by `steps`.
            Input::Terminate { .. } => {}
        }
    }

    /// Stop answering first, then tell the others, so the next owner never overlaps with this
    /// one. Replaced (a rollout, a deleted pod), FRR's configuration is left alone: the speaker
    /// must not withdraw what its successor announces, and with graceful restart the peers keep
    /// the routes until the successor's FRR is back. Leaving for good, FRR withdraws them last,
    /// or the peers would keep them for the restart time.
    fn stop(&mut self, sigterm: bool, leaving: bool) -> Vec<Effect> {
        let mut out = Vec::new();
        if sigterm {
            out.push(Log::Sigterm { leaving }.into());
        }
        if self.settings.layer2 {
            out.push(Effect::Layer2(Announced::new()));
        }
        if self.settings.membership_keys.is_some() {
            out.push(Effect::Leave);
        }
        if leaving && self.settings.bgp {
            out.push(Effect::Withdraw);
        }
        out
    }

    /// The objects to decide from: in a cluster only the Services that changed, when nothing
    /// else did (plan::incremental).
    fn snapshot(&mut self) -> Option<plan::Inputs> {
        let Some(cluster) = &self.cluster else { return self.manifests.take() };
        self.dirty.merge(cluster.take_dirty());
        Some(announced_by_controller(match self.dirty.everything {
            true => cluster.inputs(),
            false => cluster.inputs_for(&self.dirty.services),
        }))
    }

    fn pass(&mut self, now: Now, out: &mut Vec<Effect>) {
        let Some(inputs) = self.snapshot() else { return };
        self.replan = false;
        let options = self.options(&inputs, now, out);
        let Decision { plan: p, all, whole } = self.decide(&inputs, &options, out);
        self.configuration(&p, out);
        let q = self.quorum(now);
        self.fencing.record(q.as_ref(), out);
        let fenced = q.as_ref().is_some_and(Quorum::fenced);
        // Only what this speaker really does: BGP with an agent, layer 2 with a responder that
        // is not fenced.
        let (bgp_here, l2_here) = (self.settings.bgp, self.settings.layer2 && !fenced);
        let done_here: Vec<&PlannedAnnouncement> = p
            .announcements
            .iter()
            .flatten()
            .filter(|a| match a.protocol {
                "bgp" => bgp_here,
                "layer2" => l2_here,
                _ => false,
            })
            .collect();
        // Decided: with the objects' configuration or the last good one.
        let decided = p.config.is_some();
        if decided {
            self.judge(&p, &done_here, l2_here, all.as_ref().unwrap_or(&inputs), now, out);
        }
        if self.cluster.is_some() {
            self.report(&p, &done_here, q.as_ref(), out);
        }
        if self.settings.layer2 && decided {
            self.layer2(&p, fenced, out);
        }
        self.frr(p, out);
        if whole {
            out.push(Effect::GiveBackMemory);
        }
        if self.cluster.is_none() {
            self.manifests = Some(inputs);
        }
    }

    fn options(&mut self, inputs: &plan::Inputs, now: Now, out: &mut Vec<Effect>) -> Options {
        let live = match self.seen.view.as_ref().map(|v| v.live.clone()) {
            Some(live) => Some(self.held(inputs, now, out).into_iter().chain(live).collect()),
            None => self.settings.live_nodes.clone(),
        };
        let wall = k8s_openapi::jiff::Timestamp::try_from(now.wall).unwrap_or_default();
        let unfit =
            crate::topology::readiness::unfit(&inputs.objects.nodes, wall, self.settings.ready_settle);
        self.ready_recheck_at = unfit.recheck_at.map(SystemTime::from);
        if unfit.nodes != self.said.unfit {
            out.push(Log::Unfit(unfit.nodes.clone()).into());
            self.said.unfit = unfit.nodes.clone();
        }
        Options {
            lb_class: self.settings.lb_class.clone(),
            node: Some(self.settings.node.clone()),
            show_secrets: true,
            live_nodes: live,
            layer2_unfit: unfit.nodes,
            ips_from_status: self.cluster.is_some(),
            ignore_exclude_lb: self.settings.ignore_exclude_lb,
            frr_log_level: Some(self.settings.frr_log_level.clone()),
        }
    }

    /// Speakers being replaced whose IPs stay with their nodes: they count as alive in the
    /// elections, so nobody answers for the IPs they win until their successors do. Only nodes
    /// the cluster has and keeps: a node deleted, cordoned or marked for removal by an
    /// autoscaler loses its speaker for good, not for a restart.
    fn held(&mut self, inputs: &plan::Inputs, now: Now, out: &mut Vec<Effect>) -> BTreeSet<String> {
        let bound = self.settings.restart_hold;
        let (mut held, ends) = self.restart_hold.held(&self.seen.replacing, now.wall, bound);
        self.hold_ends_at = ends;
        if self.cluster.is_some() {
            held.retain(|n| {
                inputs.objects.nodes.iter().any(|node| {
                    node.metadata.name.as_deref() == Some(n) && crate::topology::readiness::staying(node)
                })
            });
        }
        if held != self.said.held {
            out.push(Log::Held { nodes: held.clone(), bound }.into());
            self.said.held = held.clone();
        }
        held
    }

    /// Decides the Services that changed, or every Service when more than they changed.
    fn decide(&mut self, inputs: &plan::Inputs, options: &Options, out: &mut Vec<Effect>) -> Decision {
        let stopwatch = std::time::Instant::now();
        let partial = match &self.cluster {
            Some(_) if !self.dirty.everything => {
                self.node_state.decide_changed(inputs, options, &self.dirty.services)
            }
            _ => None,
        };
        let whole = partial.is_none();
        let mut all = None;
        let plan = match partial {
            Some(p) => p,
            None => {
                out.push(Metric::FullPass.into());
                // Something besides the Services changed after a partial snapshot: all of them.
                let every = match &self.cluster {
                    Some(cluster) if !self.dirty.everything => {
                        all.insert(announced_by_controller(cluster.inputs()))
                    }
                    _ => inputs,
                };
                self.node_state.decide_all(every, options, self.last_good.as_ref())
            }
        };
        self.dirty = Dirty::default();
        out.push(Metric::Planning(stopwatch.elapsed()).into());
        Decision { plan, all, whole }
    }

    /// What follows from the configuration being valid or not, and its bgpextras warnings.
    fn configuration(&mut self, p: &Plan, out: &mut Vec<Effect>) {
        let extras: Vec<String> = p
            .warnings
            .iter()
            .filter(|w| w.name == crate::bgp::extras::CONFIG_MAP && w.kind == "ConfigMap")
            .map(ToString::to_string)
            .collect();
        if extras != self.said.extras {
            out.extend(extras.iter().map(|w| Log::Extras(w.clone()).into()));
            self.said.extras = extras;
        }
        // MetalLB's speaker reports these too; its alert rules read them from every pod.
        out.push(Metric::Config { loaded: p.config.is_some(), stale: !p.is_valid() }.into());
        if p.is_valid() {
            self.last_good = p.config.clone();
        } else {
            let errors = p.errors.iter().map(ToString::to_string).collect();
            out.push(Log::Invalid { errors, stale: p.stale }.into());
        }
    }

    /// Fenced: a speaker that cannot see a majority of the speakers that should exist may be
    /// the one cut off, so it stops answering rather than risk answering beside the new owner.
    fn quorum(&mut self, now: Now) -> Option<Quorum> {
        let (view, expected) = self.seen.view.as_ref().zip(self.seen.expected.as_ref())?;
        let known =
            Known { view, expected, other_format: &self.seen.other_format, started: self.settings.started };
        Some(self.fencing.decide(&self.settings.node, known, now.wall, self.settings.fence))
    }

    /// Judges a decision's announcements against the interfaces and FRR, and tells what
    /// started.
    fn judge(
        &mut self,
        p: &Plan,
        done_here: &[&PlannedAnnouncement],
        l2_here: bool,
        inputs: &plan::Inputs,
        now: Now,
        out: &mut Vec<Effect>,
    ) {
        let l2_mine = p.layer2.as_deref().filter(|_| l2_here).unwrap_or_default();
        let bgp_mine = plan::node_status::desired_bgp(done_here.iter().copied()).into_keys().collect();
        self.failures.planned(l2_mine, bgp_mine, p.frr_config.as_deref().map(fingerprint));
        if let Some(found) = self.failures.judge(self.seen.interfaces.as_ref(), self.seen.frr.as_ref()) {
            self.telling.failures(&found, self.cluster.as_deref(), now.at, out);
        }
        out.push(Metric::Announced(going_out::announced(done_here, &self.settings.node)).into());
        // Only what really goes out is news: not a layer 2 Service no interface answers.
        let announcing: assigned::Announcing = done_here
            .iter()
            .map(|a| (a.service.clone(), a.protocol))
            .filter(|(s, protocol)| *protocol != "layer2" || !self.failures.unanswered_service(s))
            .collect();
        // A partial decision holds only the Services that changed; one can start being
        // announced for another reason (a takeover, fencing lifted).
        self.telling.decided(announcing, inputs, self.cluster.as_deref(), now.at, out);
    }

    /// Judges again between decisions (an interface came or went, FRR took or refused a
    /// configuration): what changed amends the report and is told.
    fn rejudge(&mut self, now: Now, out: &mut Vec<Effect>) {
        let Some(found) = self.failures.judge(self.seen.interfaces.as_ref(), self.seen.frr.as_ref()) else {
            return;
        };
        if self.reported {
            let unanswered = self.failures.unanswered();
            out.push(Effect::Failures { failures: found.all.clone(), unanswered });
        }
        self.telling.failures(&found, self.cluster.as_deref(), now.at, out);
    }
}

/// In a cluster the controller decides the IPs: only Services whose status carries them are
/// announced (with `ips_from_status`, exactly those IPs); the rest need not be planned.
fn announced_by_controller(mut inputs: plan::Inputs) -> plan::Inputs {
    inputs.services.retain(|s| !plan::writeback::current_ips(s).is_empty());
    inputs
}

mod going_out;

#[cfg(test)]
mod tests;
