//! The words of the speaker's log lines: what to say and when is decided in `state`.

use super::effect::Log;

pub fn say(log: Log) {
    match log {
        Log::ManifestsUnreadable(e) => {
            tracing::error!(error = %e, "reading manifests; keeping the last configuration")
        }
        Log::Unfit(unfit) => {
            tracing::info!(?unfit, "layer 2: nodes that win an IP only where no other can")
        }
        Log::Extras(warning) => tracing::warn!(%warning, "bgpextras"),
        Log::Invalid { errors, stale } => tracing::error!(
            ?errors,
            stale,
            "configuration invalid; announcing what the last valid one decided"
        ),
        Log::NoConfig => tracing::error!("no valid configuration yet; FRR keeps what it runs"),
        Log::Quorum { quorum: q, turned } => {
            let (text, expected, live) = (q.describe(), &q.expected, &q.live_expected);
            match turned {
                Some(true) => {
                    tracing::warn!(fenced = true, ?expected, ?live, "layer 2 fencing: {text}")
                }
                Some(false) => {
                    tracing::warn!(fenced = false, ?expected, ?live, "layer 2 fencing lifted: {text}")
                }
                None => tracing::info!(fenced = q.fenced(), ?expected, ?live, "layer 2 quorum: {text}"),
            }
        }
        Log::Layer2Planned { ips, fenced, live, news: true } => {
            tracing::info!(ips, fenced, ?live, "layer 2 announcements planned")
        }
        Log::Layer2Planned { ips, fenced, news: false, .. } => {
            tracing::debug!(ips, fenced, "layer 2 announcements planned, unchanged")
        }
        Log::FrrPlanned { announcements, news: true } => {
            tracing::info!(announcements, "desired FRR configuration planned")
        }
        Log::FrrPlanned { announcements, news: false } => {
            tracing::debug!(announcements, "desired FRR configuration planned, unchanged")
        }
        Log::CannotAnnounce(f) => {
            tracing::warn!(service = %f.service, protocol = %f.protocol, reason = %f.reason, "cannot announce")
        }
        Log::AnsweringAgain(service) => tracing::info!(%service, "layer 2: answering again"),
        Log::AssignedHeldBack { service, protocol, dropped } => {
            tracing::debug!(%service, protocol, dropped, "nodeAssigned event not sent (rate limit)")
        }
        Log::FailedHeldBack { service } => {
            tracing::debug!(%service, "announceFailed event not sent (rate limit)")
        }
        Log::FrrBehind { error, reachable } => {
            tracing::warn!(%error, reachable, "FRR not up to date")
        }
        Log::Held { nodes, bound } if nodes.is_empty() => {
            tracing::info!(bound = ?bound, "layer 2: no restarting speaker's IPs held")
        }
        Log::Held { nodes, bound } => tracing::info!(
            held = ?nodes,
            "layer 2: speakers being replaced; their IPs stay on their nodes until a successor joins ({} s at most)",
            bound.as_secs()
        ),
        Log::Expected(expected) => tracing::info!(?expected, "speakers that should exist changed"),
        Log::Sigterm { leaving: false } => {
            tracing::info!("SIGTERM: leaving the layer 2 membership; FRR keeps its configuration")
        }
        Log::Sigterm { leaving: true } => tracing::info!(
            "SIGTERM with the speakers' DaemonSet deleted: leaving the layer 2 membership, withdrawing every BGP route"
        ),
    }
}
