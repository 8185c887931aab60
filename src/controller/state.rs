//! The controller's decisions as a state machine: [`Controller::step`] takes what the driver
//! observed and the time, and returns what to do. It reads the cluster as the cache holds it
//! ([`Cluster`]) but does no I/O, so every decision runs the same in a unit test.
//!
//! A pass decides (`plan`, then `writeback::changes`), has the IPs written, then says what
//! follows from them (Events, conditions, pool counts, the ConfigurationState). One pass runs
//! at a time: what changes meanwhile is decided by the next, so a burst is decided together.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;

use super::effect::{Effect, Input, Log, Signal};
use crate::api::ConfigurationState;
use crate::config::Config;
use crate::k8s::cache::Reports;
use crate::plan::incremental::{Allocations, Dirty};
use crate::plan::invalid_objects::{Said, Warned};
use crate::plan::kube_proxy::Finding;
use crate::plan::{Inputs, Options, Plan};
use crate::service::ServiceKey;

/// What a pass reads of the cluster: the cache, or a test's fixture.
pub trait Cluster {
    /// Every Service and configuration object, as `plan` takes them.
    fn inputs(&self) -> Inputs;
    /// [`Cluster::inputs`] with only `services` (those that exist) and their slices.
    fn inputs_for(&self, services: &BTreeSet<ServiceKey>) -> Inputs;
    /// The speakers' reports, about `services` alone when given.
    fn reports(&self, services: Option<&BTreeSet<ServiceKey>>) -> Reports;
    /// The speakers' ConfigurationStates, for the announcements they cannot make.
    fn speaker_states(&self) -> Vec<Arc<ConfigurationState>>;
}

/// How a failed Service write is retried: decided again after this.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How often pool counts are written at most.
pub const POOL_COUNTS_EVERY: Duration = Duration::from_secs(1);

pub struct Settings {
    pub options: Options,
    /// Wait this long after a wake before deciding, to decide a burst together.
    pub settle: Duration,
}

pub struct Controller<C> {
    pub(super) cluster: C,
    pub(super) settings: Settings,
    leading: bool,
    listed: bool,
    /// Deciding has begun (leading, and the cluster listed).
    begun: bool,
    /// A signal or the lost lease ended the role: nothing more is decided or written.
    stopped: bool,
    pub(super) phase: Phase,
    /// What changed since the last pass began (everything, at first).
    pub(super) dirty: Dirty,
    pub(super) kube_proxy: Option<Finding>,
    /// When the next pass begins; None: nothing asked for one.
    due: Option<Instant>,
    /// Something asked for a pass while one ran: it begins once that one is done.
    again: bool,
    /// A pass asked to be decided again then: failed writes, pool counts held back.
    pub(super) retry_at: Option<Instant>,
    /// When the wake that led to the current pass came (allocation latency counts from it).
    pub(super) woke: Instant,
    pub(super) kept: Kept,
}

/// Where the current pass is.
pub(super) enum Phase {
    Idle,
    /// Its Service writes are in flight.
    Writing(Box<Pass>),
    /// Its pool counts and ConfigurationState are being written.
    Reporting,
}

/// A pass whose Service writes are in flight.
pub(super) struct Pass {
    pub inputs: Inputs,
    pub decided: Plan,
    /// It decided every Service (else only those that changed).
    pub whole: bool,
    pub by_key: HashMap<ServiceKey, Arc<Service>>,
    /// Services whose write failed: decided again on the retry.
    pub failed: BTreeSet<ServiceKey>,
}

/// What the decisions keep from one pass to the next.
#[derive(Default)]
pub(super) struct Kept {
    /// The last configuration that was valid: while objects make it invalid, new Services are
    /// still served from it and nothing held changes (see writeback::changes).
    pub last_good: Option<Arc<Config>>,
    /// The allocator of the last decision: a pass after a few Services changed decides those
    /// alone (plan::incremental); anything else changing decides everything again.
    pub allocations: Allocations,
    pub config_warnings: Warned,
    /// The IP outside every pool each Service was told of: the condition carries it after.
    pub outside_warned: Said<String>,
    /// The unsafe kube-proxy finding last warned about: warned again when it changes or comes
    /// back.
    pub kube_proxy_said: Said<()>,
    /// The reason each pending Service was last warned of.
    pub warned: HashMap<ServiceKey, String>,
    pub pools_written: Option<Instant>,
}

impl<C: Cluster> Controller<C> {
    /// A replica that neither leads nor has listed the cluster yet; `now` starts its clock.
    pub fn new(cluster: C, settings: Settings, now: Instant) -> Controller<C> {
        Controller {
            cluster,
            settings,
            leading: false,
            listed: false,
            begun: false,
            stopped: false,
            phase: Phase::Idle,
            dirty: Dirty::everything(),
            kube_proxy: None,
            due: None,
            again: false,
            retry_at: None,
            woke: now,
            kept: Kept::default(),
        }
    }

    /// Decides what `input`, observed at `now`, calls for.
    pub fn step(&mut self, input: Input, now: Instant) -> Vec<Effect> {
        if self.stopped {
            return Vec::new();
        }
        let mut out = Vec::new();
        match input {
            Input::Changed(dirty) => {
                self.dirty.merge(dirty);
                self.wake(now);
            }
            // Its condition is written on the pass this wakes.
            Input::KubeProxy(finding) => {
                self.kube_proxy = finding;
                self.wake(now);
            }
            Input::Listed => {
                self.listed = true;
                self.begin(now, &mut out);
            }
            Input::Elected => {
                self.leading = true;
                out.extend([Effect::Log(Log::Leading), Effect::Lead]);
                if !self.listed {
                    out.push(Effect::Log(Log::Listing));
                }
                self.begin(now, &mut out);
            }
            Input::LeaseLost => {
                // Someone else may be allocating already: stop at once; the Deployment
                // restarts us.
                self.stopped = true;
                return vec![Effect::Exit(Err("lost the leader lease".into()))];
            }
            Input::LeadershipEnded => {
                self.stopped = true;
                // A leader whose renewals stopped loses the lease without knowing it, and
                // would keep writing beside the next leader: as lost as LeaseLost (before the
                // decisions were a state machine, any end of the renewal was). A standby whose
                // election stopped would never lead: it fails, as the election did when it ran
                // inline, and is restarted.
                let why = if self.leading {
                    "lost the leader lease: its renewal stopped"
                } else {
                    "the leader election stopped"
                };
                return vec![Effect::Exit(Err(why.into()))];
            }
            Input::Tick => {}
            Input::Written { change, error } => self.written(change, error, now, &mut out),
            Input::WritesDone => self.writes_done(now, &mut out),
            // Only a pass that is reporting ends with its report: one said at another time
            // would end a pass whose writes are still in flight.
            Input::Reported if matches!(self.phase, Phase::Reporting) => {
                self.phase = Phase::Idle;
                if std::mem::take(&mut self.again) {
                    self.wake(now);
                }
            }
            Input::Reported => {}
            Input::Signal(signal) => return self.stop(signal),
        }
        self.poll(now, &mut out);
        out
    }

    /// When the driver should come back with [`Input::Tick`] if nothing else happens first.
    pub fn deadline(&self) -> Option<Instant> {
        if self.stopped || !self.begun || !matches!(self.phase, Phase::Idle) {
            return None;
        }
        match (self.due, self.retry_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn begin(&mut self, now: Instant, out: &mut Vec<Effect>) {
        if self.begun || !self.leading || !self.listed {
            return;
        }
        self.begun = true;
        // The listing's pages are parsed and gone; what the cache keeps is a fraction of them.
        out.extend([Effect::GiveBackMemory, Effect::Log(Log::Listed)]);
        self.woke = now;
        self.due = Some(now);
    }

    /// Something changed: a pass is due once the settle time passed (after the running one).
    fn wake(&mut self, now: Instant) {
        if !self.begun {
            return;
        }
        if !matches!(self.phase, Phase::Idle) {
            self.again = true;
            return;
        }
        if self.due.is_none() {
            self.woke = now;
            // A settle time past what the clock can say (an absurd --settle-ms) waits for
            // ever, as asked, rather than panic on the first change.
            self.due = now.checked_add(self.settings.settle);
        }
    }

    /// Begins the pass that is due, if one is and none runs.
    fn poll(&mut self, now: Instant, out: &mut Vec<Effect>) {
        if !self.begun || !matches!(self.phase, Phase::Idle) {
            return;
        }
        if self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
            self.wake(now);
        }
        if self.due.is_some_and(|at| at <= now) {
            self.due = None;
            self.retry_at = None;
            self.pass(out);
        }
    }

    fn stop(&mut self, signal: Signal) -> Vec<Effect> {
        self.stopped = true;
        let mut out = Vec::new();
        if signal == Signal::Terminate {
            out.push(Effect::Log(Log::Terminating));
        }
        // Whatever is in flight is left: the lease goes now, not after the writes.
        out.extend([Effect::Terminating, Effect::ReleaseLease, Effect::Exit(Ok(()))]);
        out
    }

    /// The cluster this controller reads (a test changes its fixture through it).
    #[cfg(test)]
    pub fn cluster_mut(&mut self) -> &mut C {
        &mut self.cluster
    }
}
