//! `nodeAssigned` Events, as MetalLB's speaker records them ("announcing from node X with
//! protocol Y"), but only when this node *starts* announcing a Service over a protocol (a new
//! Service, a takeover, announcing moving here), not on every pass, and rate-limited.
//!
//! Pure: which announcements started, and whether an Event may be sent now. The limits:
//! - per Service a bucket of [`SERVICE_BURST`] Events refilled one every [`SERVICE_EVERY`]:
//!   a real move is recorded at once, while an endpoint flapping at 1 Hz (the node
//!   announcing and withdrawing every other second) costs 3 Events and then one a minute,
//!   not 30 a minute;
//! - per speaker a bucket of [`SPEAKER_BURST`] refilled [`SPEAKER_PER_SECOND`] a second: a
//!   restart that starts announcing 10,000 Services at once sends a bounded trickle.
//!   Events over either limit are dropped (and counted), never queued: an Event is news, and
//!   late news of an announcement that may be gone again is worse than none.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::service::ServiceKey;

pub const REASON: &str = "nodeAssigned";
pub const SERVICE_BURST: f64 = 3.0;
pub const SERVICE_EVERY: Duration = Duration::from_secs(60);
pub const SPEAKER_BURST: f64 = 100.0;
pub const SPEAKER_PER_SECOND: f64 = 10.0;

/// (Service, protocol) pairs this node announces.
pub type Announcing = BTreeSet<(ServiceKey, &'static str)>;

/// What this node started announcing between `before` and `now`.
pub fn started<'a>(
    before: &'a Announcing,
    now: &'a Announcing,
) -> impl Iterator<Item = &'a (ServiceKey, &'static str)> {
    now.difference(before)
}

/// MetalLB's words.
pub fn message(node: &str, protocol: &str) -> String {
    format!("announcing from node {node:?} with protocol {protocol:?}")
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket { tokens: burst, at: now }
    }

    /// Refills at `per_second` up to `burst`, then takes a token if there is one.
    fn take(&mut self, burst: f64, per_second: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_second).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn refilled(&self, burst: f64, per_second: f64, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * per_second >= burst
    }
}

#[derive(Debug)]
pub struct Limiter {
    services: HashMap<ServiceKey, Bucket>,
    speaker: Bucket,
    /// Events dropped by the limits since the start.
    pub dropped: u64,
}

fn service_rate() -> f64 {
    1.0 / SERVICE_EVERY.as_secs_f64()
}

impl Limiter {
    pub fn new(now: Instant) -> Limiter {
        Limiter { services: HashMap::new(), speaker: Bucket::full(SPEAKER_BURST, now), dropped: 0 }
    }

    /// Whether an Event about `service` may go out at `now` (taking from both buckets if so).
    pub fn admit(&mut self, service: &str, now: Instant) -> bool {
        let bucket =
            self.services.entry(service.to_string()).or_insert_with(|| Bucket::full(SERVICE_BURST, now));
        // The Service's own limit first: a flapping Service must not eat the speaker's budget.
        let mut probe = *bucket;
        if !probe.take(SERVICE_BURST, service_rate(), now) {
            *bucket = probe;
            self.dropped += 1;
            return false;
        }
        if !self.speaker.take(SPEAKER_BURST, SPEAKER_PER_SECOND, now) {
            self.dropped += 1;
            return false;
        }
        *bucket = probe;
        true
    }

    /// Forgets Services whose bucket has refilled: they would start full anyway, so memory
    /// follows the Services that changed in the last few minutes, not every Service ever seen.
    pub fn forget_idle(&mut self, now: Instant) {
        self.services.retain(|_, b| !b.refilled(SERVICE_BURST, service_rate(), now));
    }

    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.services.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[(&str, &'static str)]) -> Announcing {
        items.iter().map(|(s, p)| (s.to_string(), *p)).collect()
    }

    #[test]
    fn only_what_started_is_news() {
        let before = set(&[("shop/web", "bgp"), ("shop/db", "layer2")]);
        let now = set(&[("shop/web", "bgp"), ("shop/web", "layer2"), ("shop/api", "bgp")]);
        let got: Vec<_> = started(&before, &now).cloned().collect();
        assert_eq!(got, set(&[("shop/api", "bgp"), ("shop/web", "layer2")]).into_iter().collect::<Vec<_>>());
        assert_eq!(started(&now, &now).count(), 0);
        assert_eq!(message("node1", "layer2"), r#"announcing from node "node1" with protocol "layer2""#);
    }

    #[test]
    fn a_flapping_service_gets_a_burst_then_one_a_minute() {
        let t0 = Instant::now();
        let mut l = Limiter::new(t0);
        // A 1 Hz flap: this node starts announcing every other second, for ten minutes.
        let sent: Vec<u64> =
            (0..300u64).filter(|i| l.admit("shop/web", t0 + Duration::from_secs(i * 2))).collect();
        assert_eq!(&sent[..3], &[0, 1, 2]);
        // Then one a minute: 3 + 599/60 whole tokens.
        assert_eq!(sent.len(), 3 + 9, "{sent:?}");
        assert_eq!(l.dropped, 300 - 12);
        let per_minute_after_the_burst = (sent.len() - 3) as f64 / 10.0;
        assert!(per_minute_after_the_burst <= 1.0);
    }

    #[test]
    fn one_flapping_service_never_silences_another() {
        let t0 = Instant::now();
        let mut l = Limiter::new(t0);
        for i in 0..50 {
            l.admit("shop/flappy", t0 + Duration::from_millis(i * 10));
        }
        assert!(l.admit("shop/web", t0 + Duration::from_secs(1)));
    }

    #[test]
    fn a_restart_sends_a_bounded_trickle() {
        let t0 = Instant::now();
        let mut l = Limiter::new(t0);
        let at_once = (0..10_000).filter(|i| l.admit(&format!("ns/s{i}"), t0)).count();
        assert_eq!(at_once as f64, SPEAKER_BURST);
        // A second later the speaker's bucket has ten more.
        let later = t0 + Duration::from_secs(1);
        let next = (10_000..20_000).filter(|i| l.admit(&format!("ns/s{i}"), later)).count();
        assert_eq!(next as f64, SPEAKER_PER_SECOND);
    }

    #[test]
    fn idle_services_are_forgotten() {
        let t0 = Instant::now();
        let mut l = Limiter::new(t0);
        l.admit("a/x", t0);
        l.admit("a/y", t0);
        l.forget_idle(t0 + Duration::from_secs(1));
        assert_eq!(l.tracked(), 2);
        l.forget_idle(t0 + SERVICE_EVERY + Duration::from_secs(1));
        assert_eq!(l.tracked(), 0);
    }
}
