//! Whether a layer 2 speaker may answer: the fencing decision, apart from the membership that
//! feeds it.
//!
//! The quorum base is the set of speakers that *should* exist (the speaker pods the DaemonSet
//! runs, or the `--members` list offline), not every speaker ever seen: a cluster scaled down
//! from five nodes to two must not keep counting the three that are gone, or the two left would
//! fence themselves forever.
//!
//! Only expected speakers count towards the majority. A live speaker that is not expected (its
//! pod deleted but the process not yet stopped, a node taken out of the DaemonSet, a stray
//! speaker with the same secret) could otherwise help a cut-off minority believe it is the
//! majority. This speaker always counts itself as expected: it runs, so it exists, and a
//! terminating pod stops answering on SIGTERM anyway.
//!
//! A speaker whose pod has only just started counts once membership has seen it, or
//! [`JOIN_GRACE`] after it started: until it joins it holds no IP, so it cannot be the cut-off
//! owner fencing guards against, and counting it at once would fence a cluster that is merely
//! growing (two nodes scaled to five). One that never joins counts after the grace, so a speaker
//! restarted on the wrong side of a partition still finds itself in the minority.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

/// How long a starting speaker may take to join before it counts anyway.
pub const JOIN_GRACE: Duration = Duration::from_secs(30);

/// The speakers that should exist: node -> when its speaker started, where that matters
/// (None: it counts at once).
pub type Expected = BTreeMap<String, Option<SystemTime>>;

/// The fencing decision for one speaker, with what it was made from (for logs, metrics and the
/// speaker's ConfigurationState).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum {
    /// The speakers that should exist and count, this one included.
    pub expected: BTreeSet<String>,
    /// The expected speakers membership sees alive, this one included.
    pub live_expected: BTreeSet<String>,
    /// Speakers that should exist but do not count yet: started recently, never seen alive.
    pub starting: BTreeSet<String>,
    /// Whether the live expected speakers are a strict majority of the expected ones (always
    /// true below three expected speakers: a majority of two cannot survive any failure).
    pub majority: bool,
    /// Whether fencing is turned on (`--fence`).
    pub fencing: bool,
}

impl Quorum {
    /// Whether this speaker must stop answering ARP/NDP.
    pub fn fenced(&self) -> bool {
        self.fencing && !self.majority
    }

    /// One line for people: how many expected speakers are seen, and what follows.
    pub fn describe(&self) -> String {
        let seen = format!("sees {} of {} expected speakers", self.live_expected.len(), self.expected.len());
        let list =
            |s: &mut dyn Iterator<Item = &String>| s.map(String::as_str).collect::<Vec<_>>().join(", ");
        let mut notes = Vec::new();
        if self.expected.len() > self.live_expected.len() {
            notes.push(format!("not seen: {}", list(&mut self.expected.difference(&self.live_expected))));
        }
        if !self.starting.is_empty() {
            notes.push(format!("starting: {}", list(&mut self.starting.iter())));
        }
        let notes = if notes.is_empty() { String::new() } else { format!(" ({})", notes.join("; ")) };
        let outcome = match (self.majority, self.fencing) {
            (true, _) => "answering",
            (false, true) => "no majority: fenced, not answering ARP/NDP",
            (false, false) => "no majority, but fencing is off: answering",
        };
        format!("{seen}{notes}; {outcome}")
    }
}

/// Decides from the speakers that should exist, the ones membership ever saw alive (`seen`) and
/// the ones it sees alive now. Also says when a starting speaker will count, to decide again.
pub fn decide(
    me: &str,
    expected: &Expected,
    seen: &BTreeSet<String>,
    live: &BTreeSet<String>,
    now: SystemTime,
    fencing: bool,
) -> (Quorum, Option<SystemTime>) {
    let mut counted = BTreeSet::new();
    let mut starting = BTreeSet::new();
    let mut next = None::<SystemTime>;
    for (node, started) in expected {
        let joined = seen.contains(node) || live.contains(node) || node == me;
        match started.map(|t| t + JOIN_GRACE) {
            Some(at) if at > now && !joined => {
                starting.insert(node.clone());
                next = Some(next.map_or(at, |n| n.min(at)));
            }
            _ => {
                counted.insert(node.clone());
            }
        }
    }
    counted.insert(me.to_string());
    let mut live_expected: BTreeSet<String> = live.intersection(&counted).cloned().collect();
    live_expected.insert(me.to_string());
    let majority = counted.len() < 3 || live_expected.len() * 2 > counted.len();
    (Quorum { expected: counted, live_expected, starting, majority, fencing }, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)
    }

    /// Without starting speakers: every expected one counts.
    fn quorum(me: &str, expected: &[&str], live: &[&str], fencing: bool) -> Quorum {
        let expected: Expected = expected.iter().map(|s| (s.to_string(), None)).collect();
        decide(me, &expected, &set(live), &set(live), now(), fencing).0
    }

    fn fenced(expected: &[&str], live: &[&str]) -> bool {
        quorum("a", expected, live, true).fenced()
    }

    #[test]
    fn a_speaker_answers_only_while_it_sees_a_majority_of_the_expected_ones() {
        let three = ["a", "b", "c"];
        assert!(!fenced(&three, &["a", "b", "c"]));
        assert!(!fenced(&three, &["a", "b"]));
        assert!(fenced(&three, &["a"]));
        let four = ["a", "b", "c", "d"];
        assert!(fenced(&four, &["a", "b"]), "a tie is not a majority");
        assert!(!fenced(&four, &["a", "b", "c"]));
        // Two speakers cannot keep a majority through any failure: no fencing there.
        assert!(!fenced(&["a", "b"], &["a"]));
        assert!(!fenced(&["a"], &["a"]));
    }

    #[test]
    fn scaling_down_shrinks_the_base_so_the_remaining_speakers_keep_answering() {
        let five = ["a", "b", "c", "d", "e"];
        // Three of five gone while the cluster still expects them: that is a partition.
        assert!(fenced(&five, &["a", "b"]));
        // The DaemonSet shrank to the two that are left: they are the whole cluster.
        assert!(!fenced(&["a", "b"], &["a", "b"]));
        // Down to three expected, two of them seen: still a majority.
        assert!(!fenced(&["a", "b", "c"], &["a", "b"]));
    }

    #[test]
    fn live_speakers_that_are_not_expected_do_not_make_a_majority() {
        // "a" is cut off from b, c, d, e but sees two leftovers of a decommissioned pool.
        let q = quorum("a", &["a", "b", "c", "d", "e"], &["a", "old1", "old2"], true);
        assert!(q.fenced());
        assert_eq!(q.live_expected, set(&["a"]));
    }

    #[test]
    fn this_speaker_always_counts_itself() {
        // Its pod is not listed (yet, or any more): it still exists while it runs.
        let q = quorum("a", &["b", "c"], &["b", "c"], true);
        assert_eq!(q.expected, set(&["a", "b", "c"]));
        assert_eq!(q.live_expected, set(&["a", "b", "c"]));
        assert!(!q.fenced());
    }

    #[test]
    fn fencing_off_keeps_answering_and_says_so() {
        let q = quorum("a", &["a", "b", "c"], &["a"], false);
        assert!(!q.majority);
        assert!(!q.fenced());
        assert_eq!(
            q.describe(),
            "sees 1 of 3 expected speakers (not seen: b, c); no majority, but fencing is off: answering"
        );
        let q = quorum("a", &["a", "b", "c"], &["a"], true);
        assert_eq!(
            q.describe(),
            "sees 1 of 3 expected speakers (not seen: b, c); no majority: fenced, not answering ARP/NDP"
        );
        let q = quorum("a", &["a", "b"], &["a", "b"], true);
        assert_eq!(q.describe(), "sees 2 of 2 expected speakers; answering");
    }

    #[test]
    fn a_growing_cluster_does_not_fence_while_new_speakers_start() {
        // Two nodes scaled to five: the three new pods started a second ago, not joined yet.
        let just = Some(now() - Duration::from_secs(1));
        let expected: Expected = [("a", None), ("b", None), ("c", just), ("d", just), ("e", just)]
            .into_iter()
            .map(|(n, t)| (n.to_string(), t))
            .collect();
        let (q, next) = decide("a", &expected, &set(&["a", "b"]), &set(&["a", "b"]), now(), true);
        assert!(!q.fenced());
        assert_eq!(q.starting, set(&["c", "d", "e"]));
        assert_eq!(next, Some(now() + JOIN_GRACE - Duration::from_secs(1)), "decide again when they count");
        assert_eq!(q.describe(), "sees 2 of 2 expected speakers (starting: c, d, e); answering");
        // One joined: it counts from then on, even once it is gone again.
        let (q, _) = decide("a", &expected, &set(&["a", "b", "c"]), &set(&["a", "b"]), now(), true);
        assert_eq!(q.expected, set(&["a", "b", "c"]));
        assert!(!q.fenced());
        // Never joined within the grace: they count, so a real partition still fences.
        let later = now() + JOIN_GRACE;
        let (q, next) = decide("a", &expected, &set(&["a", "b"]), &set(&["a", "b"]), later, true);
        assert_eq!((q.fenced(), next), (true, None));
    }
}
