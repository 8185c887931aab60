//! What the speaker's decisions ask of the world. [`super::state::Speaker::steps`] returns them
//! in the order they are to be carried out; the driver carries them out with the modules that
//! talk to FRR, the network and the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;

use super::report::NodeReport;
use crate::api::AnnounceFailure;
use crate::l2::quorum::Quorum;
use crate::l2::reach::Announced;
use crate::metrics::AnnouncedLabels;
use crate::service::ServiceKey;

#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Answer ARP/NDP for exactly these IPs.
    Layer2(Announced),
    /// Have FRR run `config`, which ends with `extras` (the `bgpextras` ConfigMap's lines,
    /// named apart so that a refusal of them alone can be told from one of ferrolb's own).
    /// `announcements`: how many the decision planned, for the log.
    Frr {
        config: String,
        extras: Option<String>,
        announcements: usize,
    },
    /// What the node's ConfigurationState and status objects say now.
    Report(NodeReport),
    /// Only the announce failures changed since the last [`Effect::Report`].
    Failures {
        failures: Vec<AnnounceFailure>,
        unanswered: BTreeSet<ServiceKey>,
    },
    /// An Event on a Service.
    Event {
        service: ObjectReference,
        told: Told,
    },
    /// The membership's seeds: the other speakers and where to reach them.
    Seeds(Vec<(String, SocketAddr)>),
    Metric(Metric),
    Log(Log),
    /// A decision over every Service is done: its working set can go back to the system.
    GiveBackMemory,
    /// Stopping: leave the layer 2 membership (the answering stopped just before).
    Leave,
    /// Leaving for good: have FRR withdraw every route before the pod's FRR stops.
    Withdraw,
}

/// What an Event on a Service tells.
#[derive(Debug, Clone, PartialEq)]
pub enum Told {
    /// MetalLB's `nodeAssigned`: this node started announcing it over the protocol.
    Assigned(&'static str),
    /// MetalLB's `announceFailed`: this node cannot make the announcement it was elected for.
    Failed(AnnounceFailure),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// A takeover: this node gained IPs because membership changed at `since` (the time is
    /// observed once the responder has them).
    Takeover { since: Instant },
    /// How long a decision took: measured, the one clock the decisions read (see `state`).
    Planning(Duration),
    /// A decision over every Service rather than the changed ones.
    FullPass,
    /// MetalLB's `config_loaded` and `config_stale`.
    Config { loaded: bool, stale: bool },
    /// The layer 2 fencing gauges.
    Fencing { fenced: bool, expected: usize, live: usize },
    /// `metallb_speaker_announced`: exactly these series.
    Announced(Vec<AnnouncedLabels>),
}

/// What the speaker says in its log. Which lines are said, and how often, is decided with
/// the rest (a pass runs on every watch event, and logs filled with the same lines when every
/// pass said everything); the driver only words them.
#[derive(Debug, Clone, PartialEq)]
pub enum Log {
    ManifestsUnreadable(String),
    /// The nodes that win a layer 2 IP only where no other can, with why.
    Unfit(BTreeMap<String, String>),
    /// A warning about the `bgpextras` ConfigMap, said once.
    Extras(String),
    Invalid {
        errors: Vec<String>,
        stale: bool,
    },
    /// No valid configuration has been seen yet: FRR keeps what it runs.
    NoConfig,
    /// The fencing decision changed; `turned` is `Some(true)` when fenced now, `Some(false)`
    /// when lifted, None when only what it was made from changed.
    Quorum {
        quorum: Quorum,
        turned: Option<bool>,
    },
    /// `news` when it differs from the last one said at info.
    Layer2Planned {
        ips: usize,
        fenced: bool,
        live: Option<BTreeSet<String>>,
        news: bool,
    },
    FrrPlanned {
        announcements: usize,
        news: bool,
    },
    CannotAnnounce(AnnounceFailure),
    AnsweringAgain(ServiceKey),
    /// An Event the rate limit kept back.
    AssignedHeldBack {
        service: ServiceKey,
        protocol: &'static str,
        dropped: u64,
    },
    FailedHeldBack {
        service: ServiceKey,
    },
    /// frr-agent's report carries a complaint.
    FrrBehind {
        error: String,
        reachable: bool,
    },
    /// The speakers that should exist changed.
    Expected(Vec<String>),
    /// The nodes whose speakers are being replaced and whose layer 2 IPs stay with them
    /// meanwhile (for `bound` at most) changed.
    Held {
        nodes: BTreeSet<String>,
        bound: Duration,
    },
    /// `leaving`: for good, not to be replaced.
    Sigterm {
        leaving: bool,
    },
}

impl From<Log> for Effect {
    fn from(log: Log) -> Effect {
        Effect::Log(log)
    }
}

impl From<Metric> for Effect {
    fn from(metric: Metric) -> Effect {
        Effect::Metric(metric)
    }
}
