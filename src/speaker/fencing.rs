//! The speaker's layer 2 fencing decisions between passes: what `l2::quorum` decides from
//! (the speakers membership ever saw alive) and what was last said about it.

use std::collections::BTreeSet;
use std::time::SystemTime;

use super::effect::{Effect, Log, Metric};
use crate::l2::membership::View;
use crate::l2::quorum::{self, Expected, Quorum};

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
    pub fn decide(
        &mut self,
        me: &str,
        view: &View,
        expected: &Expected,
        now: SystemTime,
        fence: bool,
    ) -> Quorum {
        self.seen_alive.extend(view.live.iter().cloned());
        self.seen_alive.retain(|n| expected.contains_key(n));
        let (q, next) = quorum::decide(me, expected, &self.seen_alive, &view.live, now, fence);
        self.recount_at = next;
        q
    }

    /// Keeps `q` as the last decision; when it changed, the log line and the gauges.
    pub fn record(&mut self, q: Option<&Quorum>, out: &mut Vec<Effect>) {
        if q == self.last.as_ref() {
            return;
        }
        if let Some(q) = q {
            let (was, is) = (self.last.as_ref().map(Quorum::fenced), q.fenced());
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
