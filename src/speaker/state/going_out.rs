//! What a decision goes out as: the node's report, the layer 2 IPs answered for, FRR's
//! configuration.

use super::Speaker;
use crate::l2::quorum::Quorum;
use crate::l2::reach::Announced;
use crate::metrics::AnnouncedLabels;
use crate::plan::{self, Plan, PlannedAnnouncement};
use crate::speaker::bgp_backend::fingerprint;
use crate::speaker::effect::{Effect, Log, Metric};
use crate::speaker::report::{self, NodeReport};

impl Speaker {
    pub(super) fn report(
        &mut self,
        p: &Plan,
        done_here: &[&PlannedAnnouncement],
        q: Option<&Quorum>,
        out: &mut Vec<Effect>,
    ) {
        let layer2 = self.settings.layer2;
        out.push(Effect::Report(NodeReport {
            bgp: plan::node_status::desired_bgp(done_here.iter().copied()),
            l2: plan::node_status::desired_l2(done_here.iter().copied()),
            errors: p.error_summary(),
            sessions: p.sessions.clone().filter(|_| self.settings.bgp),
            fencing: q.filter(|_| layer2).map(report::Fencing::from),
            sealed: self.settings.membership_keys.filter(|_| layer2).map(report::sealed),
            failures: self.failures.current().to_vec(),
            unanswered: self.failures.unanswered(),
        }));
        self.reported = true;
    }

    pub(super) fn layer2(&mut self, p: &Plan, fenced: bool, out: &mut Vec<Effect>) {
        let l2: Announced = match fenced {
            true => Announced::new(),
            false => p.layer2.iter().flatten().map(|a| (a.ip, a.interfaces.clone())).collect(),
        };
        // A takeover: the membership changed and this node gained IPs because of it.
        if let Some(since) = self.view_changed.take()
            && l2.keys().any(|ip| !self.answering.contains_key(ip))
        {
            out.push(Metric::Takeover { since }.into());
        }
        let live = self.seen.view.as_ref().map(|v| v.live.clone());
        let summary = Some((l2.len(), fenced, live.clone()));
        let news = summary != self.said.l2;
        if news {
            self.said.l2 = summary;
        }
        out.push(Log::Layer2Planned { ips: l2.len(), fenced, live, news }.into());
        self.answering = l2.clone();
        out.push(Effect::Layer2(l2));
    }

    pub(super) fn frr(&mut self, p: Plan, out: &mut Vec<Effect>) {
        let Some(config) = p.frr_config else {
            out.push(Log::NoConfig.into());
            return;
        };
        // A fingerprint, not a copy: the configuration is ~30 bytes a Service.
        let print = fingerprint(&config);
        let news = self.said.frr != Some(print);
        if news {
            self.said.frr = Some(print);
        }
        let announcements = p.announcements.as_ref().map_or(0, Vec::len);
        out.push(Log::FrrPlanned { announcements, news }.into());
        if self.settings.bgp {
            out.push(Effect::Frr { config, extras: p.frr_extras, announcements });
        }
    }
}

/// `metallb_speaker_announced`: one series per IP this node really announces.
pub(super) fn announced(done_here: &[&PlannedAnnouncement], node: &str) -> Vec<AnnouncedLabels> {
    done_here
        .iter()
        .map(|a| AnnouncedLabels {
            ip: a.ip.clone(),
            node: node.to_string(),
            protocol: a.protocol.to_string(),
            service: a.service.clone(),
        })
        .collect()
}
