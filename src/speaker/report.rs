//! Keeps the cluster told what this node announces and how its BGP sessions are doing, apart
//! from the announcing loop: a slow or absent API server never delays an announcement.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::sync::watch;

use super::bgp_backend::BackendReport;
use crate::api::AnnounceFailure;
use crate::k8s::config_state::ExtraCondition;
use crate::k8s::node_status::NodeReporter;
use crate::l2::quorum::Quorum;
use crate::plan::node_status::{self, PlannedSession, SessionFact};
use crate::service::ServiceKey;

/// What the latest plan says this node reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeReport {
    pub bgp: BTreeMap<ServiceKey, Vec<String>>,
    pub l2: BTreeMap<ServiceKey, Vec<String>>,
    /// The configuration's problems, None when it is valid.
    pub errors: Option<String>,
    /// None when this speaker does not run BGP (no frr-agent).
    pub sessions: Option<Vec<PlannedSession>>,
    /// None without layer 2 membership.
    pub fencing: Option<Fencing>,
    /// The `membershipSealed` condition; None without layer 2 membership.
    pub sealed: Option<ExtraCondition>,
    /// The announcements this node cannot make (see `failures`).
    pub failures: Vec<AnnounceFailure>,
    /// Services of `l2` no interface here answers for: no ServiceL2Status says this node
    /// announces them.
    pub unanswered: BTreeSet<ServiceKey>,
}

/// What [`NodeReport::written`] compares.
type Written<'a> = (
    &'a BTreeMap<ServiceKey, Vec<String>>,
    &'a BTreeMap<ServiceKey, Vec<String>>,
    &'a Option<String>,
    &'a Option<Fencing>,
    &'a Option<ExtraCondition>,
    &'a Vec<AnnounceFailure>,
    &'a BTreeSet<ServiceKey>,
);

impl NodeReport {
    /// Everything the status objects and the ConfigurationState say (the sessions aside).
    fn written(&self) -> Written<'_> {
        (&self.bgp, &self.l2, &self.errors, &self.fencing, &self.sealed, &self.failures, &self.unanswered)
    }

    /// The Services this node really answers for over layer 2.
    fn l2_answered(&self) -> std::borrow::Cow<'_, BTreeMap<ServiceKey, Vec<String>>> {
        if self.unanswered.is_empty() {
            return std::borrow::Cow::Borrowed(&self.l2);
        }
        let mut l2 = self.l2.clone();
        l2.retain(|service, _| !self.unanswered.contains(service));
        std::borrow::Cow::Owned(l2)
    }
}

/// The `membershipSealed` condition: whether a stranger on the node network could take part in
/// the elections (an explicit opt-out when not).
pub fn sealed(keys: usize) -> ExtraCondition {
    match keys {
        0 => ExtraCondition {
            type_: "membershipSealed",
            status: false,
            reason: "NoKey",
            message: "membership traffic is neither encrypted nor authenticated: any host on the node network can take part in layer 2 elections (give the speakers a key: the chart's speaker.memberlist.secretName)".into(),
        },
        n => ExtraCondition {
            type_: "membershipSealed",
            status: true,
            reason: "SharedKey",
            message: format!("membership traffic is encrypted, authenticated and replay-protected ({n} key(s) open it)"),
        },
    }
}

/// The `layer2Fenced` condition of the speaker's ConfigurationState.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fencing(pub ExtraCondition);

impl From<&Quorum> for Fencing {
    fn from(q: &Quorum) -> Fencing {
        let reason = match (q.majority, q.fencing) {
            _ if !q.joining.is_empty() => "Joining",
            _ if q.deferring => "OtherBuildAnswers",
            (true, _) => "Quorum",
            (false, true) => "NoQuorum",
            (false, false) => "FencingDisabled",
        };
        Fencing(ExtraCondition { type_: "layer2Fenced", status: q.fenced(), reason, message: q.describe() })
    }
}

pub fn start(
    mut reporter: NodeReporter,
    mut desired: watch::Receiver<Option<NodeReport>>,
    mut backend: Option<watch::Receiver<BackendReport>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut services_done: Option<NodeReport> = None;
        loop {
            let want = desired.borrow_and_update().clone();
            let agent = backend.as_mut().map(|b| b.borrow_and_update().clone());
            let mut ok = true;
            if let Some(want) = &want {
                if services_done.as_ref().map(NodeReport::written) != Some(want.written()) {
                    let done = async {
                        let extra = want
                            .fencing
                            .clone()
                            .map(|f| f.0)
                            .into_iter()
                            .chain(want.sealed.clone())
                            .collect();
                        reporter.sync_config_state(want.errors.clone(), extra).await?;
                        reporter.sync_failures(&want.failures).await?;
                        // An invalid configuration changes no announcement, so no status either.
                        if want.errors.is_none() {
                            reporter.sync_services(&want.bgp, &want.l2_answered()).await?;
                        }
                        Ok::<_, crate::k8s::K8sError>(())
                    };
                    match done.await {
                        Ok(()) => services_done = Some(want.clone()),
                        Err(e) => {
                            ok = false;
                            tracing::warn!(error = %e, "reporting announcements; retrying");
                        }
                    }
                }
                if let (Some(planned), Some(agent)) = (&want.sessions, &agent) {
                    let reports = node_status::session_reports(planned, facts(agent).as_deref());
                    if let Err(e) = reporter.sync_sessions(reports).await {
                        ok = false;
                        tracing::warn!(error = %e, "reporting BGP sessions; retrying");
                    }
                }
            }
            let retry = async {
                if ok {
                    std::future::pending().await
                } else {
                    tokio::time::sleep(Duration::from_secs(1)).await
                }
            };
            tokio::select! {
                r = desired.changed() => if r.is_err() { return },
                r = async { match backend.as_mut() { Some(b) => b.changed().await, None => std::future::pending().await } } => {
                    if r.is_err() { backend = None; }
                }
                _ = retry => {}
            }
        }
    })
}

/// The agent's sessions, or None while it cannot be asked.
fn facts(report: &BackendReport) -> Option<Vec<SessionFact>> {
    let agent = report.agent.as_ref().filter(|_| report.agent_reachable)?;
    Some(
        agent
            .neighbors
            .iter()
            .map(|n| SessionFact {
                vrf: n.vrf.clone(),
                neighbor: n.peer.clone(),
                state: n.state.clone(),
                established: n.established,
                last_reset: n.last_reset.clone(),
                last_notification: n.last_notification.clone(),
                bfd_status: n.bfd_status.clone(),
            })
            .collect(),
    )
}
