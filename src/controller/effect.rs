//! What the controller's decisions take in and give out: [`Input`] is what the driver observed,
//! [`Effect`] what it must do. Plain data, so a test can feed a sequence of inputs and read the
//! decisions without a cluster.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::allocator::EventType;
use crate::api::IPAddressPoolStatus;
use crate::k8s::config_state::ExtraCondition;
use crate::plan::condition::Announced;
use crate::plan::incremental::Dirty;
use crate::plan::kube_proxy::Finding;
use crate::plan::writeback::Change;
use crate::service::ServiceKey;

#[derive(Debug)]
pub enum Input {
    /// The cache saw changes; what they touched, as the cache tracked it.
    Changed(Dirty),
    /// Every watch of the cache has listed once: the cluster as seen is the real one.
    Listed,
    /// What is known of kube-proxy's ARP behaviour now.
    KubeProxy(Option<Finding>),
    /// This replica holds the leader lease (or runs without election).
    Elected,
    /// The lease could not be renewed in time: another replica may be allocating already.
    LeaseLost,
    /// The election (or, once leading, the renewal) stopped without a word: it panicked or
    /// ended. Nothing renews the lease any more, or nothing will ever win it.
    LeadershipEnded,
    /// A time [`super::state::Controller::deadline`] asked for has come.
    Tick,
    /// One Service write of the batch came back, failed if `error` says why.
    Written {
        change: Change,
        error: Option<String>,
    },
    /// Every write of the batch came back.
    WritesDone,
    /// The pool counts and the ConfigurationState of the pass went out (a failure was logged
    /// by whoever wrote them: the next pass writes what still differs).
    Reported,
    Signal(Signal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM, as the kubelet stops a pod.
    Terminate,
    /// Ctrl-C, run by hand.
    Interrupt,
}

#[derive(Debug)]
pub enum Effect {
    /// Give these Services their IPs and pool annotation (or clear them), concurrently; each
    /// answers with [`Input::Written`], then the batch with [`Input::WritesDone`].
    WriteServices(Vec<ServiceWrite>),
    /// Queue an Event; Events wait behind IP writes in flight.
    Publish(Publish),
    /// Queue the `Announced` condition of a Service, replacing what waits for it.
    SetCondition(ServiceKey, ConditionWrite),
    /// The Service holds the condition it should: drop what waits for it.
    CancelCondition(ServiceKey),
    /// Write the pass's pool counts and ConfigurationState; answered by [`Input::Reported`].
    Report(Report),
    Metric(Metric),
    Log(Log),
    /// This replica leads from now on: start what only the leader runs.
    Lead,
    /// A pass over everything left its working set freed, not returned to the system.
    GiveBackMemory,
    /// Readiness says the process is shutting down.
    Terminating,
    /// Give the leader lease up so a standby takes over at once.
    ReleaseLease,
    /// Stop the role, with this result.
    Exit(Result<(), String>),
}

impl Effect {
    /// A Warning Event about `about`.
    pub fn warning(about: About, reason: &'static str, note: String) -> Effect {
        Effect::Publish(Publish { about, type_: EventType::Warning, reason, note })
    }
}

/// One Service write, with the cache's object it is about.
#[derive(Debug, Clone)]
pub struct ServiceWrite {
    pub change: Change,
    pub service: Arc<Service>,
}

/// What an Event is about. A Service is the cache's own copy, shared: 10,000 Events wait after
/// a cold start, and each built up front (kube's `Event` and an `ObjectReference`, ~0.8 KB)
/// was ~8 MiB of the controller until they were written.
#[derive(Debug, Clone)]
pub enum About {
    Service(Arc<Service>),
    Object(ObjectReference),
}

#[derive(Debug, Clone)]
pub struct Publish {
    pub about: About,
    pub type_: EventType,
    pub reason: &'static str,
    pub note: String,
}

/// The `Announced` condition for one Service, as its patch needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionWrite {
    pub ns: String,
    pub name: String,
    pub want: Announced,
    /// The transition time it keeps; None: the status flips, so the time of the write.
    pub since: Option<Time>,
    pub generation: Option<i64>,
}

/// What a pass says besides Service status, written after its IPs.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The pools whose counts differ from what their status holds.
    pub pools: Vec<(String, IPAddressPoolStatus)>,
    /// The configuration's errors, one per line; None when valid.
    pub errors: Option<String>,
    /// kube-proxy's ARP behaviour, once layer 2 is in use.
    pub extra: Vec<ExtraCondition>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// A pass decided every Service.
    FullPass,
    /// Whether some configuration decides, and whether it is not the objects' own.
    Configuration {
        loaded: bool,
        stale: bool,
    },
    /// A pool's address counts.
    Pool(String, IPAddressPoolStatus),
    /// The step that gave this decided a pass: its duration is the decision's.
    Decided,
    Updated,
    UpdateFailed,
    /// From the wake that led to it to an IP written.
    Allocated(std::time::Duration),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Log {
    Leading,
    Listing,
    Listed,
    /// A configuration error; `stale`: a last valid configuration decides meanwhile.
    Invalid {
        error: String,
        stale: bool,
    },
    Written(Change),
    WriteFailed(String),
    Terminating,
}
