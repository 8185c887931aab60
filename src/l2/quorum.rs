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

use std::collections::BTreeSet;

/// The fencing decision for one speaker, with what it was made from (for logs, metrics and the
/// speaker's ConfigurationState).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum {
    /// The speakers that should exist, this one included.
    pub expected: BTreeSet<String>,
    /// The expected speakers membership sees alive, this one included.
    pub live_expected: BTreeSet<String>,
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
        let missing: Vec<&str> = self.expected.difference(&self.live_expected).map(String::as_str).collect();
        let missing =
            if missing.is_empty() { String::new() } else { format!(" (not seen: {})", missing.join(", ")) };
        let outcome = match (self.majority, self.fencing) {
            (true, _) => "answering",
            (false, true) => "no majority: fenced, not answering ARP/NDP",
            (false, false) => "no majority, but fencing is off: answering",
        };
        format!("{seen}{missing}; {outcome}")
    }
}

/// Decides from the speakers that should exist and the ones membership sees alive.
pub fn decide(me: &str, expected: &BTreeSet<String>, live: &BTreeSet<String>, fencing: bool) -> Quorum {
    let mut expected = expected.clone();
    expected.insert(me.to_string());
    let mut live_expected: BTreeSet<String> = live.intersection(&expected).cloned().collect();
    live_expected.insert(me.to_string());
    let majority = expected.len() < 3 || live_expected.len() * 2 > expected.len();
    Quorum { expected, live_expected, majority, fencing }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn fenced(expected: &[&str], live: &[&str]) -> bool {
        decide("a", &set(expected), &set(live), true).fenced()
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
        let q = decide("a", &set(&["a", "b", "c", "d", "e"]), &set(&["a", "old1", "old2"]), true);
        assert!(q.fenced());
        assert_eq!(q.live_expected, set(&["a"]));
    }

    #[test]
    fn this_speaker_always_counts_itself() {
        // Its pod is not listed (yet, or any more): it still exists while it runs.
        let q = decide("a", &set(&["b", "c"]), &set(&["b", "c"]), true);
        assert_eq!(q.expected, set(&["a", "b", "c"]));
        assert_eq!(q.live_expected, set(&["a", "b", "c"]));
        assert!(!q.fenced());
    }

    #[test]
    fn fencing_off_keeps_answering_and_says_so() {
        let q = decide("a", &set(&["a", "b", "c"]), &set(&["a"]), false);
        assert!(!q.majority);
        assert!(!q.fenced());
        assert_eq!(
            q.describe(),
            "sees 1 of 3 expected speakers (not seen: b, c); no majority, but fencing is off: answering"
        );
        let q = decide("a", &set(&["a", "b", "c"]), &set(&["a"]), true);
        assert_eq!(
            q.describe(),
            "sees 1 of 3 expected speakers (not seen: b, c); no majority: fenced, not answering ARP/NDP"
        );
        let q = decide("a", &set(&["a", "b"]), &set(&["a", "b"]), true);
        assert_eq!(q.describe(), "sees 2 of 2 expected speakers; answering");
    }
}
