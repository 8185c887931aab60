//! The ring watch: each speaker also pings the next live speaker after it, by node name, with a
//! small ping of its own, and suspects it after [`MISSES`] periods without an answer (once it
//! answered one: the watch is for speakers that were running and stopped).
//!
//! Why: foca picks whom to probe by a shuffled round-robin, so in one probe period a dead
//! speaker is probed by nobody with a chance of about 1/e, whatever the cluster's size; at 100
//! speakers the slowest of a dozen crashes waited ~5 periods before anyone even suspected it.
//! On the ring every live speaker has exactly one watcher, so the wait is bounded: the dead one
//! is suspected [`MISSES`] to [`MISSES`] + 1 ring periods after it died. Each speaker sends one
//! ping and one answer a period, whatever the cluster's size. foca goes on probing at random
//! too: it catches what the ring misses (two neighbours dying together: the second is watched
//! again once the first is gone) and gives indirect probes their say.
//!
//! A suspicion goes to foca like one of its own (it passes it on, and a live speaker refutes
//! it by raising its incarnation); the verdict is foca's too, by the timer foca would have set
//! for its own suspicion, which declares the speaker down only if it did not refute. The watch
//! withdraws its verdict if the speaker answers meanwhile. This module decides; the membership
//! task does the I/O.

use std::net::SocketAddr;

use super::Speaker;

/// Periods without an answer before the watched speaker is suspected: one lost datagram, or a
/// speaker busy for a moment, is not a suspicion.
pub const MISSES: u8 = 2;

/// What one sealed membership datagram carries: foca's message, or the ring watch's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    Foca(&'a [u8]),
    Ping(u32),
    Ack(u32),
}

const FOCA: u8 = 0;
const PING: u8 = 1;
const ACK: u8 = 2;

impl<'a> Packet<'a> {
    /// One type byte, then foca's bytes or the ping's number (little endian).
    pub fn encode(&self) -> Vec<u8> {
        match *self {
            Packet::Foca(data) => [&[FOCA][..], data].concat(),
            Packet::Ping(n) => [&[PING][..], &n.to_le_bytes()].concat(),
            Packet::Ack(n) => [&[ACK][..], &n.to_le_bytes()].concat(),
        }
    }

    pub fn decode(data: &'a [u8]) -> Option<Packet<'a>> {
        let (&kind, rest) = data.split_first()?;
        let number = || Some(u32::from_le_bytes(rest.try_into().ok()?));
        match kind {
            FOCA => Some(Packet::Foca(rest)),
            PING => number().map(Packet::Ping),
            ACK => number().map(Packet::Ack),
            _ => None,
        }
    }
}

/// The speaker `me` watches among `live` (the others it sees alive or suspect): the next one by
/// node name, wrapping around. Every speaker with the same view picks a different one, so each
/// is watched by exactly one. By name, not incarnation, so a restart does not move the ring.
pub fn successor<'a>(me: &str, live: impl IntoIterator<Item = &'a Speaker>) -> Option<&'a Speaker> {
    let key = |s: &&'a Speaker| (s.node.as_str(), s.addr);
    let (mut after, mut first): (Option<&Speaker>, Option<&Speaker>) = (None, None);
    for s in live.into_iter().filter(|s| s.node != me) {
        if first.is_none_or(|f| key(&s) < key(&f)) {
            first = Some(s);
        }
        if s.node.as_str() > me && after.is_none_or(|a| key(&s) < key(&a)) {
            after = Some(s);
        }
    }
    after.or(first)
}

/// What the watch wants done at a tick.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tick {
    /// Ping this address with this number.
    pub ping: Option<(SocketAddr, u32)>,
    /// Tell foca this speaker is suspect.
    pub suspect: Option<Speaker>,
}

/// The watch on one speaker, ticked once a ring period.
#[derive(Debug, Default)]
pub struct Watch {
    target: Option<Speaker>,
    /// The last ping's number; acks of pings before `first` were for an earlier target.
    number: u32,
    first: u32,
    /// Whether a ping went to the target since it became the target (else a tick judges
    /// nothing), and whether it answered since the last tick.
    pinged: bool,
    heard: bool,
    /// Whether it ever answered: only a neighbour that did is suspected. One that never did
    /// (starting, its socket flooded by a cold start's announcements) is left to foca's probes,
    /// which ask others too.
    answered: bool,
    misses: u8,
    /// Suspected by this watch and silent since.
    suspected: bool,
}

impl Watch {
    /// One ring period went by; `target` is whom to watch now ([`successor`]). Judges the
    /// period that ended (an answer, or one more miss) and pings for the next one.
    pub fn tick(&mut self, target: Option<&Speaker>) -> Tick {
        let mut out = Tick::default();
        if self.target.as_ref() != target {
            // A new neighbour (a speaker came or went): start over with it.
            *self = Watch {
                target: target.cloned(),
                number: self.number,
                first: self.number.wrapping_add(1),
                ..Watch::default()
            };
        } else if self.pinged && !self.heard {
            self.misses = self.misses.saturating_add(1);
            if self.misses == MISSES && self.answered {
                self.suspected = true;
                out.suspect = self.target.clone();
            }
        }
        self.heard = false;
        if let Some(t) = &self.target {
            self.number = self.number.wrapping_add(1);
            self.pinged = true;
            out.ping = Some((t.addr, self.number));
        }
        out
    }

    /// An answer from `from` to ping `number`. Any answer from the target since it became the
    /// target counts, a late one too: it was alive after this watch last heard from it.
    pub fn ack(&mut self, from: SocketAddr, number: u32) {
        let ours = number.wrapping_sub(self.first) <= self.number.wrapping_sub(self.first);
        if self.target.as_ref().is_some_and(|t| t.addr == from) && self.pinged && ours {
            self.heard = true;
            self.answered = true;
            self.misses = 0;
            self.suspected = false;
        }
    }

    /// Whether this watch suspected `who` and has not heard from it since: its verdict stands.
    pub fn still_suspects(&self, who: &Speaker) -> bool {
        self.suspected && self.target.as_ref() == Some(who)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speaker(node: &str, port: u16) -> Speaker {
        Speaker { node: node.into(), addr: SocketAddr::from(([192, 0, 2, 1], port)), incarnation: 1 }
    }

    #[test]
    fn packets_say_what_they_carry() {
        for p in [Packet::Foca(b"swim"), Packet::Foca(b""), Packet::Ping(7), Packet::Ack(u32::MAX)] {
            assert_eq!(Packet::decode(&p.encode()), Some(p));
        }
        assert_eq!(Packet::Ping(1).encode(), [1, 1, 0, 0, 0]);
        assert_eq!(Packet::decode(b""), None);
        assert_eq!(Packet::decode(&[PING, 1, 0, 0]), None);
        assert_eq!(Packet::decode(&[9, 1, 0, 0, 0]), None);
    }

    #[test]
    fn every_speaker_watches_the_next_by_name_and_each_is_watched_once() {
        let all: Vec<Speaker> = ["c", "a", "d", "b"].iter().zip(1..).map(|(n, p)| speaker(n, p)).collect();
        let watched = |me: &str| successor(me, all.iter().filter(|s| s.node != me)).map(|s| s.node.clone());
        assert_eq!(
            ["a", "b", "c", "d"].map(watched),
            [Some("b".into()), Some("c".into()), Some("d".into()), Some("a".into())]
        );
        // Its own entry, were it listed, is skipped; alone, it watches nobody.
        assert_eq!(successor("d", &all).map(|s| s.node.as_str()), Some("a"));
        assert_eq!(successor("a", &all[1..2]), None);
        // A speaker not in the ring (just starting) watches the one after its place.
        assert_eq!(successor("bb", &all).map(|s| s.node.as_str()), Some("c"));
    }

    #[test]
    fn a_silent_neighbour_is_suspected_after_two_periods_once() {
        let b = speaker("b", 2);
        let mut w = Watch::default();
        // The first tick only pings: nothing was asked before.
        let t = w.tick(Some(&b));
        assert_eq!(t, Tick { ping: Some((b.addr, 1)), suspect: None });
        w.ack(b.addr, 1);
        assert_eq!(w.tick(Some(&b)).suspect, None);
        assert_eq!(w.tick(Some(&b)).suspect, None);
        let t = w.tick(Some(&b));
        assert_eq!(t.suspect, Some(b.clone()));
        assert_eq!(t.ping, Some((b.addr, 4)));
        assert!(w.still_suspects(&b));
        // Still silent: suspected once, the verdict is foca's now.
        assert_eq!(w.tick(Some(&b)).suspect, None);
        assert!(w.still_suspects(&b));
    }

    #[test]
    fn an_answer_even_late_clears_the_misses_and_withdraws_the_verdict() {
        let b = speaker("b", 2);
        let mut w = Watch::default();
        w.tick(Some(&b));
        w.tick(Some(&b));
        w.ack(b.addr, 1);
        assert_eq!(w.tick(Some(&b)).suspect, None);
        w.tick(Some(&b));
        assert!(w.tick(Some(&b)).suspect.is_some());
        w.ack(b.addr, 5);
        assert!(!w.still_suspects(&b));
        // Answers from elsewhere, or to pings never sent, do not count.
        w.tick(Some(&b));
        w.ack(SocketAddr::from(([192, 0, 2, 9], 2)), 6);
        w.ack(b.addr, 8);
        assert_eq!(w.tick(Some(&b)).suspect, None);
        assert_eq!(w.tick(Some(&b)).suspect, Some(b));
    }

    #[test]
    fn a_neighbour_that_never_answered_is_left_to_foca() {
        let b = speaker("b", 2);
        let mut w = Watch::default();
        for _ in 0..5 {
            assert_eq!(w.tick(Some(&b)).suspect, None);
        }
        assert!(!w.still_suspects(&b));
    }

    #[test]
    fn a_new_neighbour_starts_over() {
        let (b, c) = (speaker("b", 2), speaker("c", 3));
        let mut w = Watch::default();
        w.tick(Some(&b));
        w.tick(Some(&b));
        // b went (or c came between): no miss carried over, and b's answers no longer count.
        assert_eq!(w.tick(Some(&c)), Tick { ping: Some((c.addr, 3)), suspect: None });
        w.ack(b.addr, 3);
        w.ack(c.addr, 2);
        assert_eq!(w.tick(Some(&c)).suspect, None);
        assert_eq!(w.tick(Some(&c)).suspect, None, "c never answered one of its pings");
        w.ack(c.addr, 4);
        w.tick(Some(&c));
        w.tick(Some(&c));
        assert_eq!(w.tick(Some(&c)).suspect, Some(c.clone()));
        assert!(!w.still_suspects(&b));
        // Alone: nothing to ping.
        assert_eq!(w.tick(None), Tick::default());
    }
}
