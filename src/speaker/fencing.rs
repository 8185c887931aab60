//! The speaker's layer 2 fencing decisions between passes: what `l2::quorum` decides from
//! (the speakers membership ever saw alive) and what was last said about it.

use std::collections::BTreeSet;
use std::time::SystemTime;

use super::effect::{Effect, Log, Metric};
use crate::l2::membership::View;
use crate::l2::quorum::{self, Expected, Quorum};

/// What the fencing decision reads besides the time.
pub struct Known<'a> {
    pub view: &'a View,
    pub expected: &'a Expected,
    /// Expected speakers whose pods say they speak another membership format.
    pub other_format: &'a BTreeSet<String>,
    /// When this process started (None: no join wait).
    pub started: Option<SystemTime>,
}

#[derive(Debug, Default)]
pub struct Fencing {
    /// The last decision: said and exported when it changes.
    last: Option<Quorum>,
    /// The expected speakers membership ever saw alive: they count from then on.
    seen_alive: BTreeSet<String>,
    /// When a starting speaker will count without having joined: decide again then.
    pub recount_at: Option<SystemTime>,
}

impl Fencing {
    /// The quorum from membership's view and the speakers that should exist. Everything the
    /// fencing decision reads comes through here.
    pub fn decide(&mut self, me: &str, known: Known, now: SystemTime, fence: bool) -> Quorum {
        self.seen_alive.extend(known.view.live.iter().cloned());
        self.seen_alive.retain(|n| known.expected.contains_key(n));
        let sightings = quorum::Sightings {
            expected: known.expected,
            seen: &self.seen_alive,
            live: &known.view.live,
            other_format: known.other_format,
            started: known.started.unwrap_or(SystemTime::UNIX_EPOCH),
        };
        let (q, next) = quorum::decide(me, sightings, now, fence);
        self.recount_at = next;
        q
    }

    /// Keeps `q` as the last decision; when it changed, the log line and the gauges.
    pub fn record(&mut self, q: Option<&Quorum>, out: &mut Vec<Effect>) {
        if q == self.last.as_ref() {
            return;
        }
        if let Some(q) = q {
            // Joining is every start's first moment, not a fence worth a warning or the gauge.
            let fence = |q: &Quorum| q.fenced() && q.joining.is_empty();
            let (was, is) = (self.last.as_ref().map(fence), fence(q));
            let turned = match (was, is) {
                (Some(true), false) => Some(false),
                (was, true) if was != Some(true) => Some(true),
                _ => None,
            };
            out.push(
                Metric::Fencing { fenced: is, expected: q.expected.len(), live: q.live_expected.len() }
                    .into(),
            );
            out.push(Log::Quorum { quorum: q.clone(), turned }.into());
        }
        self.last = q.cloned();
    }
}
