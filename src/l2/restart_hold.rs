//! Holding a restarting speaker's layer 2 IPs on its node instead of moving them.
//!
//! When a speaker pod is replaced (a rollout, `kubectl delete pod`: the DaemonSet makes a new
//! one on the same node), the node, its kube-proxy and the Services' endpoints stay; only the
//! answering of ARP/NDP pauses. Moving its IPs to another node and back when the successor joins
//! costs every connection in flight at each move: the clients' next packets reach a node
//! without their conntrack entries, which resets them. Clients (routers above all) keep the
//! node's MAC in their neighbour caches for far longer than a restart takes, so their traffic
//! goes on reaching the node while nobody answers for a few seconds; the cost is that a client
//! resolving the IP for the first time meanwhile waits for the successor.
//!
//! So a speaker that leaves while its pod is being replaced stays a candidate of the layer 2
//! elections (nobody answers for the IPs it wins) until a speaker on its node joins again, or
//! for `bound` at most: a successor that never comes (an image that cannot be pulled, a node
//! going away) must not leave its IPs unanswered for long. Only a departure seen while the pod
//! was known to be replaced (or had been, within `bound`: a departure found by failure
//! detection may come after the old pod left the API) holds: learning it a moment later would
//! take the IPs away from the node that just took them over, which moves nothing back and
//! leaves new clients unanswered.
//! A speaker that fails (its pod not deleted) is taken over at once, as ever.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RestartHold {
    /// Node -> when its speaker left while being replaced.
    since: BTreeMap<String, SystemTime>,
    /// Speakers that left since the last decision, and when: judged held or not by the pods
    /// known at that decision, so the order in which the pod's deletion and the departure were
    /// taken in does not matter.
    left: BTreeMap<String, SystemTime>,
    /// Nodes whose pods were last seen being replaced, and when.
    replaced: BTreeMap<String, SystemTime>,
    /// Nodes whose speaker came back while their old pod is still listed as being replaced
    /// (the DaemonSet makes the new pod before the old one is gone from the API): that listing
    /// is about the speaker that left, not the one that came back.
    returned: BTreeSet<String>,
    /// Nodes whose speaker left and has not come back.
    departed: BTreeSet<String>,
    /// The nodes membership last saw alive.
    live: BTreeSet<String>,
}

impl RestartHold {
    /// Takes membership's view at `now`: who left since the last one; who is alive again is no
    /// longer held.
    pub fn view(&mut self, live: &BTreeSet<String>, now: SystemTime) {
        for gone in self.live.difference(live) {
            self.left.entry(gone.clone()).or_insert(now);
            self.departed.insert(gone.clone());
        }
        // A node whose speaker came back was replaced: its next departure is news of its own.
        for back in live.difference(&self.live) {
            if self.departed.remove(back) {
                self.replaced.remove(back);
                self.returned.insert(back.clone());
            }
        }
        self.since.retain(|node, _| !live.contains(node));
        self.left.retain(|node, _| !live.contains(node));
        self.live.clone_from(live);
    }

    /// The nodes held at `now`: those that left while their pods were being `replacing` (as
    /// known now), for `bound` at most; and when the next hold ends.
    pub fn held(
        &mut self,
        replacing: &BTreeSet<String>,
        now: SystemTime,
        bound: Duration,
    ) -> (BTreeSet<String>, Option<SystemTime>) {
        self.returned.retain(|n| replacing.contains(n));
        let current = replacing.iter().filter(|n| !self.returned.contains(*n));
        self.replaced.extend(current.map(|n| (n.clone(), now)));
        self.replaced.retain(|_, seen| now < *seen + bound);
        for (node, left) in std::mem::take(&mut self.left) {
            if self.replaced.contains_key(&node) {
                self.since.insert(node, left);
            }
        }
        self.since.retain(|_, since| now < *since + bound);
        let ends = self.since.values().map(|since| *since + bound).min();
        (self.since.keys().cloned().collect(), ends)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
    }

    const BOUND: Duration = Duration::from_secs(10);

    #[test]
    fn a_replaced_speaker_is_held_until_its_successor_joins() {
        let mut hold = RestartHold::default();
        hold.view(&nodes(&["n1", "n2", "n3"]), at(0));
        assert_eq!(hold.held(&nodes(&[]), at(0), BOUND), (nodes(&[]), None));
        // n1's speaker leaves; its pod is being replaced (taken in the same step, either order).
        hold.view(&nodes(&["n2", "n3"]), at(1_000));
        assert_eq!(hold.held(&nodes(&["n1"]), at(1_000), BOUND), (nodes(&["n1"]), Some(at(11_000))));
        // Its old pod is gone from the API meanwhile: still held.
        assert_eq!(hold.held(&nodes(&[]), at(4_000), BOUND).0, nodes(&["n1"]));
        // The successor joins: it answers, nobody is held.
        hold.view(&nodes(&["n1", "n2", "n3"]), at(4_500));
        assert_eq!(hold.held(&nodes(&[]), at(4_500), BOUND), (nodes(&[]), None));
        // Its next failure is taken over at once.
        hold.view(&nodes(&["n2", "n3"]), at(9_000));
        assert!(hold.held(&nodes(&[]), at(9_000), BOUND).0.is_empty());
    }

    #[test]
    fn a_successor_that_never_comes_is_let_go_after_the_bound() {
        let mut hold = RestartHold::default();
        hold.view(&nodes(&["n1", "n2"]), at(0));
        hold.view(&nodes(&["n2"]), at(1_000));
        assert_eq!(hold.held(&nodes(&["n1"]), at(1_000), BOUND).0, nodes(&["n1"]));
        assert_eq!(hold.held(&nodes(&["n1"]), at(10_999), BOUND).0, nodes(&["n1"]));
        assert_eq!(hold.held(&nodes(&["n1"]), at(11_000), BOUND), (nodes(&[]), None));
    }

    #[test]
    fn only_a_departure_known_replaced_at_its_decision_holds() {
        let mut hold = RestartHold::default();
        hold.view(&nodes(&["n1", "n2", "n3"]), at(0));
        // n1 left; its pod being replaced is learnt only after the decision: n2 took over, and
        // taking the IPs from it now would move nothing back.
        hold.view(&nodes(&["n2", "n3"]), at(1_000));
        assert!(hold.held(&nodes(&[]), at(1_000), BOUND).0.is_empty());
        assert!(hold.held(&nodes(&["n1"]), at(1_005), BOUND).0.is_empty());
        // A node never seen alive (this speaker just started) is nobody's to hold.
        let mut fresh = RestartHold::default();
        fresh.view(&nodes(&["n2"]), at(0));
        assert!(fresh.held(&nodes(&["n1"]), at(0), BOUND).0.is_empty());
    }

    #[test]
    fn a_replacement_seen_before_a_late_departure_still_holds_until_its_successor_returns() {
        let mut hold = RestartHold::default();
        hold.view(&nodes(&["n1", "n2", "n3"]), at(0));
        // n1's pod is being replaced while its speaker still runs; its leave is lost, so the
        // others find it gone by failure detection, after the old pod left the API.
        assert!(hold.held(&nodes(&["n1"]), at(1_000), BOUND).0.is_empty());
        hold.view(&nodes(&["n2", "n3"]), at(2_000));
        assert_eq!(hold.held(&nodes(&[]), at(2_000), BOUND).0, nodes(&["n1"]));
        // The successor joins; when it fails later, that is a failure: taken over at once.
        hold.view(&nodes(&["n1", "n2", "n3"]), at(3_000));
        assert!(hold.held(&nodes(&[]), at(3_000), BOUND).0.is_empty());
        hold.view(&nodes(&["n2", "n3"]), at(4_000));
        assert!(hold.held(&nodes(&[]), at(4_000), BOUND).0.is_empty());
        // A replacement seen longer than the bound ago is forgotten.
        let mut old = RestartHold::default();
        old.view(&nodes(&["n1", "n2"]), at(0));
        old.held(&nodes(&["n1"]), at(0), BOUND);
        old.view(&nodes(&["n2"]), at(10_000));
        assert!(old.held(&nodes(&[]), at(10_000), BOUND).0.is_empty());
    }

    #[test]
    fn the_old_pod_still_listed_after_the_successor_joined_is_not_the_successors_replacement() {
        let mut hold = RestartHold::default();
        hold.view(&nodes(&["n1", "n2"]), at(0));
        hold.held(&nodes(&["n1"]), at(1_000), BOUND);
        hold.view(&nodes(&["n2"]), at(1_500));
        assert_eq!(hold.held(&nodes(&["n1"]), at(1_500), BOUND).0, nodes(&["n1"]));
        // The successor joins while the old pod is still listed; then the successor dies.
        hold.view(&nodes(&["n1", "n2"]), at(2_000));
        assert!(hold.held(&nodes(&["n1"]), at(2_000), BOUND).0.is_empty());
        hold.view(&nodes(&["n2"]), at(2_500));
        assert!(hold.held(&nodes(&["n1"]), at(2_500), BOUND).0.is_empty(), "a failure: taken over");
        // Once the old pod is gone, a new replacement of the node holds again.
        hold.view(&nodes(&["n1", "n2"]), at(3_000));
        hold.held(&nodes(&[]), at(3_000), BOUND);
        hold.held(&nodes(&["n1"]), at(4_000), BOUND);
        hold.view(&nodes(&["n2"]), at(4_500));
        assert_eq!(hold.held(&nodes(&["n1"]), at(4_500), BOUND).0, nodes(&["n1"]));
    }

    #[test]
    fn holds_end_each_at_its_own_time() {
        let mut hold = RestartHold::default();
        hold.view(&nodes(&["n1", "n2", "n3"]), at(0));
        hold.view(&nodes(&["n2", "n3"]), at(1_000));
        hold.held(&nodes(&["n1"]), at(1_000), BOUND);
        hold.view(&nodes(&["n3"]), at(3_000));
        let replacing = nodes(&["n2"]);
        assert_eq!(hold.held(&replacing, at(3_000), BOUND), (nodes(&["n1", "n2"]), Some(at(11_000))));
        assert_eq!(hold.held(&replacing, at(11_000), BOUND), (nodes(&["n2"]), Some(at(13_000))));
        // A zero bound holds nothing.
        assert!(hold.held(&replacing, at(11_000), Duration::ZERO).0.is_empty());
    }
}
