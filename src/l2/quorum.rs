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
//!
//! During a rollout between builds whose membership formats differ (the pods' label says which
//! format each speaks), the two sides cannot hear each other. Each would elect among its own
//! side only and answer beside the other, or fence itself for want of a majority, so nobody
//! answers. This speaker instead agrees with the other side without talking to it: it works out
//! what those speakers decide among themselves (they hear each other, and nobody of this side,
//! whose pods they count only after [`JOIN_GRACE`]) and stays quiet while they answer; once
//! they fence themselves or are gone, this side answers, counting them as alive towards its
//! majority (the kubelet says they run: they are not the cut-off minority fencing guards
//! against). The older build needs no new code for this, so it works from builds that predate it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

/// How long a starting speaker may take to join before it counts anyway.
pub const JOIN_GRACE: Duration = Duration::from_secs(30);

/// How long this speaker, once started, waits to hear the others before it answers anyway. Its
/// first view holds itself alone; answering from it would take every IP for a moment beside
/// their owners (where the others do not count yet: below three speakers, or their pods young,
/// as in a rollout). Hearing a speaker takes one round trip; a speaker that never answers is
/// waited for this long at most.
pub const JOIN_WINDOW: Duration = Duration::from_secs(1);

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
    /// Expected speakers of another membership format that membership never heard: another
    /// build, mid-rollout.
    pub other_build: BTreeSet<String>,
    /// Whether those speakers answer by their own decision, so this one stays quiet.
    pub deferring: bool,
    /// Expected speakers this one, started moments ago, has not heard yet: it stays quiet
    /// until it has, or [`JOIN_WINDOW`] has passed.
    pub joining: BTreeSet<String>,
}

impl Quorum {
    /// Whether this speaker must stop answering ARP/NDP.
    pub fn fenced(&self) -> bool {
        (self.fencing && !self.majority) || self.deferring || !self.joining.is_empty()
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
        if !self.other_build.is_empty() {
            notes.push(format!("another build, not heard: {}", list(&mut self.other_build.iter())));
        }
        let notes = if notes.is_empty() { String::new() } else { format!(" ({})", notes.join("; ")) };
        let outcome = match (self.majority, self.fencing) {
            _ if !self.joining.is_empty() => {
                return format!(
                    "joining: not heard yet: {}; not answering ARP/NDP",
                    list(&mut self.joining.iter())
                );
            }
            _ if self.deferring => "the other build answers: deferring to it, not answering ARP/NDP",
            (true, _) => "answering",
            (false, true) => "no majority: fenced, not answering ARP/NDP",
            (false, false) => "no majority, but fencing is off: answering",
        };
        format!("{seen}{notes}; {outcome}")
    }
}

/// What this speaker knows of the others.
#[derive(Debug, Clone, Copy)]
pub struct Sightings<'a> {
    /// The speakers that should exist.
    pub expected: &'a Expected,
    /// The ones membership ever saw alive.
    pub seen: &'a BTreeSet<String>,
    /// The ones membership sees alive now.
    pub live: &'a BTreeSet<String>,
    /// The ones whose pods say they speak another membership format than this build.
    pub other_format: &'a BTreeSet<String>,
    /// When this speaker started.
    pub started: SystemTime,
}

/// Decides from what this speaker knows of the others. Also says when a starting speaker will
/// count, to decide again.
pub fn decide(me: &str, known: Sightings, now: SystemTime, fencing: bool) -> (Quorum, Option<SystemTime>) {
    let (mut q, mut next) = count(me, known.expected, known.seen, known.live, now, fencing);
    let never_heard = |n: &&String| *n != me && !known.seen.contains(*n) && !known.live.contains(*n);
    // Heard once, a speaker speaks this format whatever its pod says (an older build of the
    // same format has no label); one that is gone since is an ordinary failure.
    let other_build: BTreeSet<String> = known
        .other_format
        .iter()
        .filter(|n| known.expected.contains_key(*n))
        .filter(never_heard)
        .cloned()
        .collect();
    if let Some(one) = other_build.first() {
        let (theirs, their_next) = count(one, known.expected, &other_build, &other_build, now, fencing);
        q.deferring = !theirs.fenced();
        next = [next, their_next].into_iter().flatten().min();
        let alive = q.live_expected.iter().chain(other_build.iter().filter(|n| q.expected.contains(*n)));
        q.majority = majority(alive.collect::<BTreeSet<_>>().len(), q.expected.len());
    }
    let join_until = known.started + JOIN_WINDOW;
    if now < join_until {
        q.joining = known
            .expected
            .keys()
            .filter(never_heard)
            .filter(|n| !other_build.contains(*n))
            .cloned()
            .collect();
        if !q.joining.is_empty() {
            next = [next, Some(join_until)].into_iter().flatten().min();
        }
    }
    q.other_build = other_build;
    (q, next)
}

fn majority(live: usize, expected: usize) -> bool {
    expected < 3 || live * 2 > expected
}

/// The decision among the speakers of one membership format.
fn count(
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
    let majority = majority(live_expected.len(), counted.len());
    let q = Quorum {
        expected: counted,
        live_expected,
        starting,
        majority,
        fencing,
        other_build: BTreeSet::new(),
        deferring: false,
        joining: BTreeSet::new(),
    };
    (q, next)
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

    /// What a speaker started long ago knows: no join wait left.
    fn known<'a>(
        expected: &'a Expected,
        seen: &'a BTreeSet<String>,
        live: &'a BTreeSet<String>,
        other_format: &'a BTreeSet<String>,
    ) -> Sightings<'a> {
        Sightings { expected, seen, live, other_format, started: SystemTime::UNIX_EPOCH }
    }

    /// Every speaker of this build's format.
    fn decide_one_build(
        me: &str,
        expected: &Expected,
        seen: &BTreeSet<String>,
        live: &BTreeSet<String>,
        now: SystemTime,
        fencing: bool,
    ) -> (Quorum, Option<SystemTime>) {
        decide(me, known(expected, seen, live, &BTreeSet::new()), now, fencing)
    }

    /// Without starting speakers: every expected one counts.
    fn quorum(me: &str, expected: &[&str], live: &[&str], fencing: bool) -> Quorum {
        let expected: Expected = expected.iter().map(|s| (s.to_string(), None)).collect();
        decide_one_build(me, &expected, &set(live), &set(live), now(), fencing).0
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
        let (q, next) = decide_one_build("a", &expected, &set(&["a", "b"]), &set(&["a", "b"]), now(), true);
        assert!(!q.fenced());
        assert_eq!(q.starting, set(&["c", "d", "e"]));
        assert_eq!(next, Some(now() + JOIN_GRACE - Duration::from_secs(1)), "decide again when they count");
        assert_eq!(q.describe(), "sees 2 of 2 expected speakers (starting: c, d, e); answering");
        // One joined: it counts from then on, even once it is gone again.
        let (q, _) = decide_one_build("a", &expected, &set(&["a", "b", "c"]), &set(&["a", "b"]), now(), true);
        assert_eq!(q.expected, set(&["a", "b", "c"]));
        assert!(!q.fenced());
        // Never joined within the grace: they count, so a real partition still fences.
        let later = now() + JOIN_GRACE;
        let (q, next) = decide_one_build("a", &expected, &set(&["a", "b"]), &set(&["a", "b"]), later, true);
        assert_eq!((q.fenced(), next), (true, None));
    }

    /// Speakers a, b, c, of which `new` run this build (started at the times given) and the
    /// others a build of another membership format that never talks to this one.
    fn rollout(me: &str, started: &[(&str, Option<SystemTime>)], new: &[&str], at: SystemTime) -> Quorum {
        let expected: Expected = started.iter().map(|(n, t)| (n.to_string(), *t)).collect();
        let heard = set(new);
        let other: BTreeSet<String> = expected.keys().filter(|n| !heard.contains(*n)).cloned().collect();
        decide(me, known(&expected, &heard, &heard, &other), at, true).0
    }

    #[test]
    fn mid_rollout_between_formats_one_side_answers_at_a_time_and_never_neither() {
        let t0 = now();
        // a restarts on the new build; b and c (old) hear nothing from it and count it only
        // after the join grace: either way they keep their majority and answer, so a defers.
        let a_new = Some(t0);
        let step1 = [("a", a_new), ("b", None), ("c", None)];
        for at in [t0, t0 + JOIN_GRACE + Duration::from_secs(1)] {
            let q = rollout("a", &step1, &["a"], at);
            assert!(q.deferring && q.fenced(), "{}", q.describe());
            assert_eq!(q.other_build, set(&["b", "c"]));
        }
        // b restarts on the new build at t1: c alone does not count b yet, so among a and c it
        // still has its majority (below three) and answers; a and b defer.
        let t1 = t0 + Duration::from_secs(100);
        let step2 = [("a", a_new), ("b", Some(t1)), ("c", None)];
        let (q, next) = {
            let expected: Expected = step2.iter().map(|(n, t)| (n.to_string(), *t)).collect();
            let (heard, other) = (set(&["a", "b"]), set(&["c"]));
            decide("a", known(&expected, &heard, &heard, &other), t1, true)
        };
        assert!(q.deferring, "{}", q.describe());
        assert_eq!(next, Some(t1 + JOIN_GRACE), "decide again when c counts b and fences itself");
        // Then c sees one of three and fences itself: a and b answer, counting c as alive.
        let q = rollout("a", &step2, &["a", "b"], t1 + JOIN_GRACE);
        assert!(!q.deferring && q.majority && !q.fenced(), "{}", q.describe());
        assert_eq!(
            q.describe(),
            "sees 2 of 3 expected speakers (not seen: c; another build, not heard: c); answering"
        );
        // The same from b's side, at the same instants.
        assert!(rollout("b", &step2, &["a", "b"], t1).deferring);
        assert!(!rollout("b", &step2, &["a", "b"], t1 + JOIN_GRACE).fenced());
    }

    #[test]
    fn two_speakers_mid_rollout_the_old_one_answers_until_it_is_gone() {
        let q = rollout("a", &[("a", Some(now())), ("b", None)], &["a"], now() + JOIN_GRACE * 2);
        assert!(q.fenced());
        assert_eq!(
            q.describe(),
            "sees 1 of 2 expected speakers (not seen: b; another build, not heard: b); \
             the other build answers: deferring to it, not answering ARP/NDP"
        );
        // b's pod is gone (being deleted or replaced): a answers alone.
        assert!(!rollout("a", &[("a", Some(now()))], &["a"], now()).fenced());
    }

    #[test]
    fn a_speaker_heard_once_speaks_this_format_whatever_its_pod_says() {
        // An older build of the same format has no label: heard, it is one of us, and its
        // failure later is an ordinary one (b gone: a and c keep the majority).
        let expected: Expected = ["a", "b", "c"].iter().map(|n| (n.to_string(), None)).collect();
        let (seen, live, other) = (set(&["a", "b", "c"]), set(&["a", "c"]), set(&["b", "c"]));
        let (q, _) = decide("a", known(&expected, &seen, &live, &other), now(), true);
        assert!(q.other_build.is_empty() && !q.fenced(), "{}", q.describe());
        // Fencing turned off everywhere: the other build never fences, so this one defers
        // until it is gone.
        let (seen, other) = (set(&["a"]), set(&["b", "c"]));
        let (q, _) = decide("a", known(&expected, &seen, &seen, &other), now(), false);
        assert!(q.deferring && q.fenced());
    }

    #[test]
    fn a_starting_speaker_answers_only_once_it_heard_the_others_or_waited_long_enough() {
        // Two speakers (no majority needed): alone in its first view, b would take every IP
        // beside a. It waits for a, however young a's pod is.
        let expected: Expected =
            [("a", Some(now())), ("b", Some(now()))].into_iter().map(|(n, t)| (n.to_string(), t)).collect();
        let none = BTreeSet::new();
        let (alone, heard_a) = (set(&["b"]), set(&["a", "b"]));
        let at = |seen: &BTreeSet<String>, t: SystemTime| {
            let known =
                Sightings { expected: &expected, seen, live: seen, other_format: &none, started: now() };
            decide("b", known, t, true)
        };
        let (q, next) = at(&alone, now() + Duration::from_millis(10));
        assert!(q.fenced(), "{}", q.describe());
        assert_eq!(q.describe(), "joining: not heard yet: a; not answering ARP/NDP");
        assert_eq!(next, Some(now() + JOIN_WINDOW), "decide again when the wait ends");
        assert!(!at(&heard_a, now() + Duration::from_millis(20)).0.fenced());
        // a never answers: b answers alone once the window has passed.
        assert!(!at(&alone, now() + JOIN_WINDOW).0.fenced());
    }
}
