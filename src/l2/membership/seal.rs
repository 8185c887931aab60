//! Sealing membership datagrams with the speakers' shared key, so a host on the node network can
//! neither read, forge nor replay membership traffic (membership decides who answers for every
//! layer 2 IP).
//!
//! A sealed datagram (format 1):
//! `0xF1` ‖ nonce (6-byte stream ‖ 6-byte counter) ‖ ChaCha20-Poly1305(sent at, ms since the
//! epoch, 8 bytes big-endian ‖ packet), under a SHA-256 of the key, the first byte as associated
//! data. The stream is random per process and the counter counts its datagrams, so no nonce
//! repeats under one key and a receiver can tell a datagram it already took (a replay) from a
//! new one: per stream it keeps the highest counter and which of the 64 before it arrived, as
//! IPsec's anti-replay window does. Streams it no longer remembers are covered by the time: a
//! datagram sent more than [`WINDOW_MS`] ago, or before this receiver started (less
//! [`CLOCK_SLACK_MS`]), was meant for someone else, or is a replay. Speakers need clocks within
//! [`WINDOW_MS`] of each other (Kubernetes nodes run NTP for their certificates anyway).
//!
//! Rotation without a gap: the speaker seals with one key and opens with every key it is given,
//! so a new key is first added beside the old one everywhere, then made the sealing one.

use std::collections::HashMap;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use rand::RngExt;
use sha2::{Digest, Sha256};

/// The first byte of a sealed datagram: format 1. Plain (unkeyed) datagrams start with a packet
/// type byte (0-2), so the two never read as each other.
pub const FORMAT: u8 = 0xF1;
/// How far a datagram's send time may be from the receiver's clock.
pub const WINDOW_MS: u64 = 60_000;
/// How much earlier than this receiver's start a datagram may be sent (clocks a little apart).
pub const CLOCK_SLACK_MS: u64 = 2_000;
/// Streams remembered at most; beyond, the longest silent goes (its replays then meet the time
/// check). A stream is a speaker's process: a cluster has one per speaker, plus restarts.
const MAX_STREAMS: usize = 4096;
const HEADER: usize = 1 + 12;

/// Why a received datagram was dropped; each is counted
/// (`ferrolb_memberlist_packets_dropped_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Not sealed with any key this speaker holds (plain, another key, damaged, another format).
    Unauthenticated,
    /// Sealed with a good key, but already received once.
    Replayed,
    /// Sealed with a good key, but sent outside the time window (or before this receiver).
    Stale,
}

impl Dropped {
    pub const ALL: [Dropped; 3] = [Dropped::Unauthenticated, Dropped::Replayed, Dropped::Stale];

    pub fn reason(self) -> &'static str {
        match self {
            Dropped::Unauthenticated => "unauthenticated",
            Dropped::Replayed => "replayed",
            Dropped::Stale => "stale",
        }
    }
}

/// One stream's anti-replay window.
#[derive(Debug, Clone, Copy)]
struct Window {
    highest: u64,
    /// Bit i: counter `highest - i` arrived.
    seen: u64,
    last_ms: u64,
}

impl Window {
    /// Takes `counter` if it is new.
    fn take(&mut self, counter: u64) -> bool {
        if counter > self.highest {
            let shift = counter - self.highest;
            self.seen = if shift >= 64 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.highest = counter;
            return true;
        }
        let back = self.highest - counter;
        if back >= 64 || self.seen & (1 << back) != 0 {
            return false;
        }
        self.seen |= 1 << back;
        true
    }
}

/// The shared keys and what has been received under them. Without keys it passes datagrams
/// through as they are (membership unsealed: an explicit opt-out).
pub struct Sealer {
    /// The first seals; every one opens.
    keys: Vec<ChaCha20Poly1305>,
    stream: [u8; 6],
    sent: u64,
    started_ms: u64,
    streams: HashMap<[u8; 6], Window>,
}

impl Sealer {
    /// `keys[0]` seals, every key opens; `now_ms` is this receiver's start.
    pub fn new(keys: &[Vec<u8>], now_ms: u64) -> Sealer {
        Sealer {
            keys: keys.iter().map(|k| ChaCha20Poly1305::new(&Sha256::digest(k))).collect(),
            stream: rand::rng().random(),
            sent: 0,
            started_ms: now_ms,
            streams: HashMap::new(),
        }
    }

    pub fn seal(&mut self, packet: &[u8], now_ms: u64) -> Option<Vec<u8>> {
        let Some(key) = self.keys.first() else { return Some(packet.to_vec()) };
        self.sent += 1;
        let mut out = Vec::with_capacity(HEADER + 8 + packet.len() + 16);
        out.push(FORMAT);
        out.extend_from_slice(&self.stream);
        out.extend_from_slice(&self.sent.to_be_bytes()[2..]);
        let plain = [&now_ms.to_be_bytes()[..], packet].concat();
        let sealed = key.encrypt(Nonce::from_slice(&out[1..HEADER]), Payload { msg: &plain, aad: &[FORMAT] });
        out.extend(sealed.ok()?);
        Some(out)
    }

    /// The packet inside `data`, once: a second copy, or one from outside the time window, is
    /// dropped.
    pub fn open(&mut self, data: &[u8], now_ms: u64) -> Result<Vec<u8>, Dropped> {
        if self.keys.is_empty() {
            return Ok(data.to_vec());
        }
        let (header, body) = data.split_at_checked(HEADER).ok_or(Dropped::Unauthenticated)?;
        if header[0] != FORMAT {
            return Err(Dropped::Unauthenticated);
        }
        let nonce = Nonce::from_slice(&header[1..]);
        let plain = self
            .keys
            .iter()
            .find_map(|k| k.decrypt(nonce, Payload { msg: body, aad: &[FORMAT] }).ok())
            .ok_or(Dropped::Unauthenticated)?;
        let (sent_at, packet) = plain.split_at_checked(8).ok_or(Dropped::Unauthenticated)?;
        let sent_at = u64::from_be_bytes(sent_at.try_into().map_err(|_| Dropped::Unauthenticated)?);
        if sent_at.abs_diff(now_ms) > WINDOW_MS || sent_at.saturating_add(CLOCK_SLACK_MS) < self.started_ms {
            return Err(Dropped::Stale);
        }
        let stream: [u8; 6] = header[1..7].try_into().map_err(|_| Dropped::Unauthenticated)?;
        let mut counter = [0u8; 8];
        counter[2..].copy_from_slice(&header[7..13]);
        if !self.remember(stream, u64::from_be_bytes(counter), now_ms) {
            return Err(Dropped::Replayed);
        }
        Ok(packet.to_vec())
    }

    fn remember(&mut self, stream: [u8; 6], counter: u64, now_ms: u64) -> bool {
        if !self.streams.contains_key(&stream) && self.streams.len() >= MAX_STREAMS {
            self.streams.retain(|_, w| now_ms.saturating_sub(w.last_ms) <= WINDOW_MS);
            if self.streams.len() >= MAX_STREAMS
                && let Some(oldest) = self.streams.iter().min_by_key(|(_, w)| w.last_ms).map(|(s, _)| *s)
            {
                self.streams.remove(&oldest);
            }
        }
        let window = self.streams.entry(stream).or_insert(Window { highest: 0, seen: 0, last_ms: now_ms });
        let fresh = window.take(counter);
        if fresh {
            window.last_ms = now_ms;
        }
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_800_000_000_000;

    fn pair() -> (Sealer, Sealer) {
        (Sealer::new(&[b"shared".to_vec()], T), Sealer::new(&[b"shared".to_vec()], T))
    }

    #[test]
    fn sealed_messages_open_once_and_only_with_the_same_key() {
        let (mut a, mut b) = pair();
        let mut other = Sealer::new(&[b"other".to_vec()], T);
        let mut plain = Sealer::new(&[], T);
        let sealed = a.seal(b"hello", T).unwrap();
        assert_eq!(sealed[0], FORMAT);
        assert!(!sealed.windows(5).any(|w| w == b"hello"));
        assert_eq!(other.open(&sealed, T), Err(Dropped::Unauthenticated));
        assert_eq!(b.open(&sealed, T + 5).as_deref(), Ok(&b"hello"[..]));
        assert_eq!(b.open(&sealed, T + 10), Err(Dropped::Replayed));
        assert_eq!(b.open(b"short", T), Err(Dropped::Unauthenticated));
        assert_eq!(b.open(&[0u8; 64], T), Err(Dropped::Unauthenticated));
        let mut tampered = a.seal(b"hello", T).unwrap();
        tampered[20] ^= 1;
        assert_eq!(b.open(&tampered, T), Err(Dropped::Unauthenticated));
        // The format byte is authenticated too.
        let mut reformatted = a.seal(b"hello", T).unwrap();
        reformatted[0] = 0xF2;
        assert_eq!(b.open(&reformatted, T), Err(Dropped::Unauthenticated));
        // A plain datagram is refused by a keyed speaker, and passes where there is no key.
        assert_eq!(b.open(&[0, 1, 2], T), Err(Dropped::Unauthenticated));
        assert_eq!(plain.open(b"hello", T).as_deref(), Ok(&b"hello"[..]));
        assert_eq!(plain.seal(b"hello", T).as_deref(), Some(&b"hello"[..]));
        // Two seals of one packet differ (the counter moves).
        assert_ne!(a.seal(b"hello", T), a.seal(b"hello", T));
    }

    #[test]
    fn out_of_order_datagrams_arrive_once_each_within_the_window() {
        let (mut a, mut b) = pair();
        let sealed: Vec<Vec<u8>> = (0..100).map(|i| a.seal(&[i], T).unwrap()).collect();
        for i in [5usize, 3, 4, 99, 40, 36] {
            assert_eq!(b.open(&sealed[i], T), Ok(vec![i as u8]), "{i}");
        }
        for i in [5usize, 3, 99, 40] {
            assert_eq!(b.open(&sealed[i], T), Err(Dropped::Replayed), "{i}");
        }
        // More than 64 behind the newest: cannot be told from a replay, dropped.
        assert_eq!(b.open(&sealed[30], T), Err(Dropped::Replayed));
        assert_eq!(b.open(&sealed[98], T), Ok(vec![98]));
    }

    #[test]
    fn old_datagrams_and_ones_sent_before_the_receiver_started_are_stale() {
        let mut a = Sealer::new(&[b"k".to_vec()], T);
        let old = a.seal(b"x", T).unwrap();
        let mut late = Sealer::new(&[b"k".to_vec()], T + 10 * WINDOW_MS);
        assert_eq!(late.open(&old, T + 10 * WINDOW_MS), Err(Dropped::Stale));
        // A receiver restarted after the capture: the replay is older than its start.
        let mut restarted = Sealer::new(&[b"k".to_vec()], T + 5_000);
        assert_eq!(restarted.open(&old, T + 5_000), Err(Dropped::Stale));
        // A sender whose clock is a little behind is fine.
        let fresh = a.seal(b"y", T + 4_000).unwrap();
        assert_eq!(restarted.open(&fresh, T + 5_000).as_deref(), Ok(&b"y"[..]));
        // One from the future beyond the window too.
        let ahead = a.seal(b"z", T + 5_000 + WINDOW_MS + 1).unwrap();
        assert_eq!(restarted.open(&ahead, T + 5_000), Err(Dropped::Stale));
    }

    #[test]
    fn any_key_given_opens_and_the_first_seals_so_keys_rotate_without_a_gap() {
        let mut old = Sealer::new(&[b"old".to_vec()], T);
        let mut both = Sealer::new(&[b"old".to_vec(), b"new".to_vec()], T);
        let mut new_first = Sealer::new(&[b"new".to_vec(), b"old".to_vec()], T);
        let from_old = old.seal(b"1", T).unwrap();
        let from_new = new_first.seal(b"2", T).unwrap();
        assert!(both.open(&from_old, T).is_ok() && both.open(&from_new, T).is_ok());
        assert_eq!(old.open(&from_new, T), Err(Dropped::Unauthenticated));
        assert!(new_first.open(&both.seal(b"3", T).unwrap(), T).is_ok());
    }

    #[test]
    fn remembered_streams_are_bounded() {
        let mut b = Sealer::new(&[b"k".to_vec()], T);
        for n in 0..(MAX_STREAMS + 10) {
            let mut a = Sealer::new(&[b"k".to_vec()], T);
            let sealed = a.seal(&[1], T + n as u64).unwrap();
            assert!(b.open(&sealed, T + n as u64).is_ok());
        }
        assert!(b.streams.len() <= MAX_STREAMS);
    }
}
