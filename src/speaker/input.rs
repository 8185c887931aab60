//! What the speaker's driver observes and hands to [`super::state::Speaker::steps`].

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use super::bgp_backend::BackendReport;
use super::peers::Peers;
use crate::l2::membership::View;
use crate::l2::quorum::Expected;
use crate::l2::reach::Interfaces;
use crate::plan::{self, incremental::Dirty};
use crate::service::ServiceKey;

/// What the speaker was started with.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The node this speaker runs on.
    pub node: String,
    pub lb_class: Option<String>,
    /// Who counts as alive in layer 2 elections without membership (`--live-nodes`).
    pub live_nodes: Option<BTreeSet<String>>,
    /// Stop answering without a majority (`--fence`).
    pub fence: bool,
    /// How long a node Ready again waits to be a full layer 2 candidate.
    pub ready_settle: Duration,
    pub ignore_exclude_lb: bool,
    pub frr_log_level: String,
    /// An frr-agent to announce over BGP through.
    pub bgp: bool,
    /// A responder answering ARP/NDP.
    pub layer2: bool,
    /// How many keys open membership traffic; None without membership.
    pub membership_keys: Option<usize>,
    /// When this process started: a speaker waits to hear the others for a moment after it
    /// ([`crate::l2::quorum::JOIN_WINDOW`]). None: no such wait (decisions tested alone).
    pub started: Option<SystemTime>,
    /// How long a speaker being replaced keeps its layer 2 IPs on its node while nobody answers
    /// for them ([`crate::l2::restart_hold`]); zero: taken over at once.
    pub restart_hold: Duration,
}

/// What the driver saw before the first step, where it matters from the first decision on.
#[derive(Debug, Default)]
pub struct Observed {
    /// None without membership.
    pub view: Option<View>,
    /// None without a list of the speakers that should exist.
    pub expected: Option<Expected>,
    /// Speakers of another membership format, mid-rollout ([`Peers::other_format`]).
    pub other_format: BTreeSet<String>,
    /// Nodes whose speaker pods are being replaced ([`Peers::replacing`]).
    pub replacing: BTreeSet<String>,
    pub interfaces: Option<Interfaces>,
    /// None without frr-agent.
    pub frr: Option<BackendReport>,
}

#[derive(Debug)]
pub enum Input {
    /// Objects in the cluster changed ([`Cluster::take_dirty`] says which Services).
    ClusterChanged,
    /// The manifests were read again: their objects, or why they could not be read.
    Manifests(Result<plan::Inputs, String>),
    /// Membership sees these speakers alive now.
    View(View),
    /// The speakers that should exist changed, or where to reach them.
    Peers(Peers),
    /// The time [`super::state::Speaker::deadline`] named has come.
    Timer,
    /// frr-agent's report changed.
    Frr(BackendReport),
    /// The responder's interfaces changed (None: not scanned yet).
    Interfaces(Option<Interfaces>),
    /// SIGTERM (`sigterm`) or an interrupt: stop. `leaving`: for good (the speakers' DaemonSet
    /// is gone or going), not to be replaced.
    Terminate { sigterm: bool, leaving: bool },
}

/// The time of a step, both ways the decisions read it: `at` to measure spans (a takeover, a
/// rate limit), `wall` to compare with times written in objects (a pod's start, a node's
/// Ready transition).
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub at: Instant,
    pub wall: SystemTime,
}

/// The cluster's objects as the speaker reads them. A cache kept by watches, read in place
/// during a step: handing every step a snapshot would copy every object at every event, while
/// a decision after one Service changed reads that Service alone.
pub trait Cluster {
    /// The Services that changed since the last call (everything, the first time).
    fn take_dirty(&self) -> Dirty;
    /// Every object a decision reads.
    fn inputs(&self) -> plan::Inputs;
    /// [`Cluster::inputs`] with only `services` among the Services (those that exist).
    fn inputs_for(&self, services: &BTreeSet<ServiceKey>) -> plan::Inputs;
}
