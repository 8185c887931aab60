//! Keeps the speaker's copy of frr-agent's status for MetalLB's BGP and BFD metrics.
//!
//! The agent's status stream only speaks when something other than a clock or a counter
//! changes, so counters would go stale on it; the copy is asked for on a fixed period instead.
//! The agent answers from what it last read (no vtysh call), so the period costs nothing in
//! FRR and a scrape is never slower for it.

use std::path::PathBuf;
use std::time::Duration;

use frr_sidecar::proto::StatusRequest;

/// How often the copy is refreshed: the agent itself reads FRR once a second by default.
pub const EVERY: Duration = Duration::from_secs(1);

/// The agent answers from memory; one that takes longer than this is stuck.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

pub fn start(socket: PathBuf, every: Duration) {
    crate::metrics::frr::enable();
    tokio::spawn(async move {
        let mut client = frr_sidecar::server::client(&socket);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // A stuck agent must not leave old values looking current.
            let asked = tokio::time::timeout(ANSWER_WITHIN, client.status(StatusRequest {})).await;
            let status = match asked {
                // An agent that cannot reach FRR knows nothing of the sessions now.
                Ok(Ok(r)) => Some(r.into_inner()).filter(|s| s.frr_reachable),
                Ok(Err(_)) | Err(_) => None,
            };
            crate::metrics::frr::set(status);
        }
    });
}
