//! The announcement schedule: takeover bursts, then refreshes at a steady pace while held.

use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::{Pending, Schedule};

fn schedule(refresh: Option<u64>) -> Schedule {
    let takeover = [1100, 2200].into_iter().map(Duration::from_millis).collect();
    Schedule { takeover, refresh: refresh.map(Duration::from_secs) }
}

/// Offsets from `start` (in ms) at which `ip` is announced, stepping the clock every 100 ms.
fn sent(pending: &mut Pending, start: Instant, schedule: &Schedule, until_ms: u64) -> Vec<u64> {
    let mut out = Vec::new();
    for ms in (0..=until_ms).step_by(100) {
        let now = start + Duration::from_millis(ms);
        out.extend(pending.due(now, schedule).iter().map(|_| ms));
    }
    out
}

#[test]
fn without_a_refresh_only_the_takeover_announcements_go_out() {
    let ip: IpAddr = "192.0.2.200".parse().unwrap();
    let (start, s) = (Instant::now(), schedule(None));
    let mut pending = Pending::default();
    pending.gained(ip, start, &s);
    assert_eq!(sent(&mut pending, start, &s, 10_000), [0, 1100, 2200]);
    assert_eq!(pending.next(), None);
}

#[test]
fn a_refresh_repeats_at_its_pace_until_the_ip_is_lost() {
    let ip: IpAddr = "2001:db8:10::200".parse().unwrap();
    let (start, s) = (Instant::now(), schedule(Some(1)));
    let mut pending = Pending::default();
    pending.gained(ip, start, &s);
    assert_eq!(sent(&mut pending, start, &s, 4000), [0, 1000, 1100, 2000, 2200, 3000, 4000]);
    pending.lost(ip);
    assert_eq!(pending.next(), None);
}

#[test]
fn a_stalled_worker_does_not_catch_up_in_a_burst() {
    let ip: IpAddr = "192.0.2.200".parse().unwrap();
    let (start, s) = (Instant::now(), schedule(Some(1)));
    let mut pending = Pending(Default::default());
    pending.gained(ip, start, &Schedule { takeover: Vec::new(), ..s.clone() });
    pending.due(start, &s);
    let late = start + Duration::from_secs(10);
    assert_eq!(pending.due(late, &s), [ip]);
    assert_eq!(pending.next(), Some(late + Duration::from_secs(1)));
}
