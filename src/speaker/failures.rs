//! Announcements this node was elected for and cannot make (pure): a layer 2 IP that no
//! interface here can answer for (`l2::reach`), or a Service that reached FRR only in a
//! configuration FRR refused or frr-agent never took. They are said in the node's
//! ConfigurationState, which the controller turns into the Service's `ferrolb.io/Announced`
//! condition, and as MetalLB's `announceFailed` Warning Event: once when a failure starts or
//! its reason changes, not on every pass. A failure that ends clears itself from both.
//!
//! Only announcements are judged: a withdrawal FRR did not take leaves a route out longer, and
//! the session and route views already say so.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::bgp_backend::BackendReport;
use crate::api::AnnounceFailure;
use crate::l2::L2Announcement;
use crate::l2::reach::{Announced, Interfaces, unanswerable};
use crate::service::ServiceKey;

/// MetalLB's Event reason.
pub const REASON: &str = "announceFailed";

/// Failed Applies of a configuration in a row before its new Services count as failing, unless
/// FRR refused its text: FRR's daemons starting beside a new speaker fail the first ones.
pub const RETRIES: u32 = 3;

/// Desired configurations remembered until confirmed; older ones were coalesced away.
const UNCONFIRMED: usize = 8;

/// The latest decision's announcements and what FRR confirmed, to judge them against.
#[derive(Debug, Default)]
pub struct Failures {
    /// Layer 2: each Service's IPs with the interfaces each may use.
    l2: BTreeMap<ServiceKey, Announced>,
    /// BGP: the Services of the latest desired FRR configuration, and its fingerprint.
    bgp: BTreeSet<ServiceKey>,
    desired: Option<u64>,
    /// Desired configurations not confirmed yet, oldest first, each with its Services: a
    /// confirmation may come for one the speaker has already moved on from.
    unconfirmed: VecDeque<(u64, BTreeSet<ServiceKey>)>,
    /// The Services of the last configuration FRR confirmed running.
    bgp_applied: BTreeSet<ServiceKey>,
    /// What was found last, and of it the layer 2 IPs no interface answers, per Service.
    current: Vec<AnnounceFailure>,
    l2_failed: BTreeMap<ServiceKey, usize>,
}

/// What [`Failures::judge`] found when it changed.
#[derive(Debug, PartialEq, Eq)]
pub struct Found {
    /// Every failure now, sorted.
    pub all: Vec<AnnounceFailure>,
    /// Those that started, or whose reason changed: the Events to send.
    pub started: Vec<AnnounceFailure>,
    /// Layer 2 Services no interface answered for that one answers for now.
    pub answered_again: Vec<ServiceKey>,
}

impl Failures {
    /// A new decision: this node announces `l2` and, in the FRR configuration with fingerprint
    /// `desired`, the Services `bgp`.
    pub fn planned(&mut self, l2: &[L2Announcement], bgp: BTreeSet<ServiceKey>, desired: Option<u64>) {
        self.l2.clear();
        for a in l2 {
            self.l2.entry(a.service.clone()).or_default().insert(a.ip, a.interfaces.clone());
        }
        if let Some(d) = desired
            && self.unconfirmed.back().is_none_or(|(last, _)| *last != d)
        {
            if self.unconfirmed.len() == UNCONFIRMED {
                self.unconfirmed.pop_front();
            }
            self.unconfirmed.push_back((d, bgp.clone()));
        }
        self.bgp = bgp;
        self.desired = desired;
    }

    /// Judges the announcements against the node's interfaces (None: no responder, or not
    /// scanned yet) and FRR's state (None: no BGP here); `Some` only when the failures changed.
    pub fn judge(&mut self, interfaces: Option<&Interfaces>, frr: Option<&BackendReport>) -> Option<Found> {
        let mut all = Vec::new();
        let unanswered_before = self.unanswered();
        self.l2_failed.clear();
        if let Some(interfaces) = interfaces {
            for (service, ips) in &self.l2 {
                let failed = unanswerable(ips, interfaces);
                if !failed.is_empty() {
                    self.l2_failed.insert(service.clone(), failed.len());
                    let each: Vec<String> = failed.iter().map(|(ip, why)| format!("{ip}: {why}")).collect();
                    all.push(failure(service, "layer2", each.join("; ")));
                }
            }
        }
        if let Some(frr) = frr {
            all.extend(self.bgp_failures(frr));
        }
        all.sort();
        if all == self.current {
            return None;
        }
        let started = all.iter().filter(|f| !self.current.contains(f)).cloned().collect();
        self.current = all.clone();
        let answered_again = unanswered_before
            .into_iter()
            .filter(|s| self.l2.contains_key(s) && !self.unanswered_service(s))
            .collect();
        Some(Found { all, started, answered_again })
    }

    fn bgp_failures(&mut self, frr: &BackendReport) -> Vec<AnnounceFailure> {
        if let Some(applied) = frr.applied_config
            && let Some(at) = self.unconfirmed.iter().position(|(c, _)| *c == applied)
        {
            // FRR runs that one: its Services are out, and nothing older will be confirmed.
            let (_, services) = self.unconfirmed.drain(..=at).next_back().unwrap_or_default();
            self.bgp_applied = services;
        }
        // Only a failure of what is wanted now counts (a silent frr-agent fails whatever is
        // wanted, so a new decision does not clear it only to find it again), and only once it
        // is more than the first tries of a starting FRR.
        let Some(failing) = frr.failing.as_ref().filter(|f| {
            (Some(f.config) == self.desired || !frr.agent_reachable) && (f.rejected || f.attempts >= RETRIES)
        }) else {
            return Vec::new();
        };
        let e = &frr.last_error;
        let why = match (frr.agent_reachable, failing.rejected) {
            (false, _) => format!("frr-agent does not answer, so FRR was not given it: {e}"),
            (true, true) => format!("FRR refused the configuration that announces it: {e}"),
            (true, false) => format!(
                "FRR has not taken the configuration that announces it ({} tries): {e}",
                failing.attempts
            ),
        };
        self.bgp.difference(&self.bgp_applied).map(|s| failure(s, "bgp", why.clone())).collect()
    }

    /// Every failure found last, sorted.
    pub fn current(&self) -> &[AnnounceFailure] {
        &self.current
    }

    /// The Services elected here over layer 2 that no interface answers for on any of their
    /// IPs: no nodeAssigned Event and no ServiceL2Status say this node announces them, as
    /// MetalLB's speaker says neither when its announcement fails. (Over BGP the Service stays
    /// in ServiceBGPStatus, which lists the peers it is configured for, not what FRR runs.)
    pub fn unanswered(&self) -> BTreeSet<ServiceKey> {
        self.l2_failed.keys().filter(|s| self.unanswered_service(s)).cloned().collect()
    }

    /// Whether no interface answers for any IP of `service` elected here over layer 2.
    pub fn unanswered_service(&self, service: &str) -> bool {
        self.l2.get(service).is_some_and(|ips| self.l2_failed.get(service) == Some(&ips.len()))
    }
}

fn failure(service: &str, protocol: &str, reason: String) -> AnnounceFailure {
    AnnounceFailure { service: service.to_string(), protocol: protocol.to_string(), reason }
}

/// The Event's words: MetalLB's reason, with the node and what failed.
pub fn message(node: &str, f: &AnnounceFailure) -> String {
    format!("node {node:?} cannot announce it over {}: {}", f.over(), f.reason)
}

#[cfg(test)]
mod tests;
