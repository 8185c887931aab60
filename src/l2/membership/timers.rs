//! The membership task's timers (foca's and the ring watch's), and how a speaker that was not
//! running for a while gives the others the time it lost before it judges them.

use std::collections::BinaryHeap;
use std::time::Duration;

use foca::{Timer, TimerToken};
use tokio::time::Instant;

use super::Speaker;

/// A timer that fires this much later than asked means this speaker was not running (CPU
/// starved, paused): what it would conclude now (a probe unanswered, a suspect silent) may be
/// its own fault, as the answers may be sitting unread in its socket.
const STALLED: Duration = Duration::from_millis(20);
/// The most a stalled speaker gives the others on top: enough to read what they sent meanwhile
/// (and, with other speakers starved alongside, for them to answer), little enough that a stall
/// does not add its length again to a real failover.
const MAX_GRACE: Duration = Duration::from_millis(50);

/// When a timer due at `due` and seen at `now` should fire instead, if this speaker was stalled:
/// once, as late again as it was late, so the others get the time it lost (Lifeguard's local
/// health awareness, in its simplest form). None: fire now.
fn grace(due: Instant, now: Instant, deferred_before: bool) -> Option<Instant> {
    let late = now.saturating_duration_since(due);
    (late > STALLED && !deferred_before).then(|| now + late.min(MAX_GRACE))
}

/// What a timer is for.
pub enum Job {
    /// One foca asked for.
    Foca(Timer<Speaker>),
    /// The ring watch's next period.
    Watch,
    /// The ring watch's verdict on a speaker it suspected: foca's own suspect-to-down timer,
    /// handed to foca only if the watch has not heard from the speaker since.
    WatchDown(Timer<Speaker>),
}

impl Job {
    /// Whether it concludes something about the others, so waits when this speaker stalled.
    fn judges(&self) -> bool {
        match self {
            Job::Foca(timer) => matches!(
                timer,
                Timer::ProbeRandomMember(_)
                    | Timer::SendIndirectProbe { .. }
                    | Timer::ChangeSuspectToDown { .. }
            ),
            Job::Watch | Job::WatchDown(_) => true,
        }
    }
}

/// A timer: when, in which order among those due together, what for, and whether it was
/// deferred once already.
struct Due(Instant, u64, Job, bool);

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.0, self.1) == (other.0, other.1)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // BinaryHeap is a max-heap: reverse for earliest first.
        (other.0, other.1).cmp(&(self.0, self.1))
    }
}

/// The timers, earliest first.
#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Due>,
    sequence: u64,
    /// The token foca stamps its timers with, as last seen on one: the ring watch's verdicts
    /// carry it, so foca takes them as its own (and ignores them, as its own, once it changed
    /// identity or left).
    pub token: Option<TimerToken>,
}

impl Timers {
    pub fn at(&mut self, when: Instant, job: Job) {
        self.sequence += 1;
        self.heap.push(Due(when, self.sequence, job, false));
    }

    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|d| d.0)
    }

    /// The next timer to act on at `now`, earliest first. One that judges the others and fired
    /// late, because this speaker was not running, is filed again for later instead (once).
    pub fn due(&mut self, now: Instant) -> Option<Job> {
        while self.heap.peek().is_some_and(|d| d.0 <= now) {
            let Due(due, n, job, deferred) = self.heap.pop()?;
            match grace(due, now, deferred || !job.judges()) {
                Some(later) => self.heap.push(Due(later, n, job, true)),
                None => return Some(job),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stalled_speaker_gives_the_others_the_time_it_lost_once() {
        let due = Instant::now();
        let ms = Duration::from_millis;
        // On time, or late by scheduling noise: fire now.
        assert_eq!(grace(due, due, false), None);
        assert_eq!(grace(due, due + ms(5), false), None);
        // Stalled for 30 ms: the answers may be unread; wait as long again.
        assert_eq!(grace(due, due + ms(30), false), Some(due + ms(60)));
        // Never more than MAX_GRACE, and never twice for one timer.
        assert_eq!(grace(due, due + ms(90), false), Some(due + ms(140)));
        assert_eq!(grace(due, due + ms(5000), false), Some(due + ms(5050)));
        assert_eq!(grace(due, due + ms(90), true), None);
    }

    #[test]
    fn a_stalled_speaker_defers_its_verdicts_not_its_chores() {
        let ms = Duration::from_millis;
        let start = Instant::now();
        let mut timers = Timers::default();
        timers.at(start, Job::Watch);
        timers.at(start + ms(1), Job::Foca(Timer::PeriodicGossip(0)));
        // On time: both, in order.
        assert!(matches!(timers.due(start + ms(2)), Some(Job::Watch)));
        assert!(matches!(timers.due(start + ms(2)), Some(Job::Foca(Timer::PeriodicGossip(0)))));
        assert!(timers.due(start + ms(2)).is_none());
        // 40 ms late: the gossip goes, the watch's verdict waits 40 ms more, then is due.
        timers.at(start, Job::Watch);
        timers.at(start, Job::Foca(Timer::PeriodicGossip(0)));
        assert!(matches!(timers.due(start + ms(40)), Some(Job::Foca(_))));
        assert!(timers.due(start + ms(40)).is_none());
        assert_eq!(timers.next(), Some(start + ms(80)));
        assert!(timers.due(start + ms(79)).is_none());
        assert!(matches!(timers.due(start + ms(200)), Some(Job::Watch)));
    }
}
