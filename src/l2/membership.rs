//! Which speakers are alive: SWIM membership (foca, sans-IO) over UDP, sealed with a key shared
//! by all speakers (`seal.rs`: a stranger can neither read, forge nor replay membership
//! traffic; running without a key is an explicit opt-out).
//!
//! The live set feeds the layer 2 election. Failure detection is tuned for sub-second failover:
//! a speaker probes another every `probe_period`, asks others to probe indirectly after
//! `probe_rtt`, and a suspect is declared down after `suspect_to_down`. On top, each speaker
//! pings the next one by name every `ring_period` and suspects it when it stays silent
//! (`ring.rs`): foca's random probing alone leaves a dead speaker unprobed for several periods
//! now and then, the ring bounds that wait for every speaker. Speakers that leave
//! cleanly (SIGTERM) say so at once. News is passed on more often the larger the cluster, so no
//! survivor misses a death; a speaker that was not running for a while (CPU starved) gives the
//! others the time it lost before it concludes they are gone. Seeds that are not members are
//! announced to every second, so restarted speakers and healed partitions merge back (in steady
//! state every seed is a member: nothing is announced, and a speaker's traffic does not grow
//! with the cluster; a starting one hears from every seed at once, so it elects with the whole
//! view, not part of it); the seeds follow the cluster
//! ([`Membership::set_seeds`]), so a speaker started later is found too. Whether this speaker
//! may answer is decided elsewhere ([`crate::l2::quorum`]), against the speakers that should
//! exist rather than the ones ever seen.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use foca::{
    AccumulatingRuntime, Config, Foca, Identity, Member, OwnedNotification, PostcardCodec, State, Timer,
};
use rand::rngs::StdRng;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;

#[doc(hidden)]
pub mod fuzzing;
mod ring;
pub mod seal;
mod timers;

use ring::{Packet, Watch};
pub use seal::Dropped;
use seal::Sealer;
use timers::{Job, Timers};

/// The speaker pods' label naming the membership format their speaker speaks (the chart and
/// manifests set it), and this build's format. A build that changes a datagram so that the
/// previous build cannot read it raises the format; mid-rollout, speakers of two formats agree
/// on one election without talking ([`crate::l2::quorum`]). Builds before the label spoke "1".
pub const FORMAT_LABEL: &str = "ferrolb.io/membership-format";
pub const WIRE_FORMAT: &str = "1";

/// A speaker as the membership knows it. A restarted speaker comes back with a higher
/// incarnation, so it is not mistaken for the one declared down.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Speaker {
    pub node: String,
    pub addr: SocketAddr,
    pub incarnation: u64,
}

impl Identity for Speaker {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Speaker { incarnation: self.incarnation + 1, ..self.clone() })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.incarnation > adversary.incarnation
    }
}

#[derive(Debug, Clone)]
pub struct MembershipSettings {
    pub node: String,
    pub bind: SocketAddr,
    /// Other speakers to join through: (node, address).
    pub seeds: Vec<(String, SocketAddr)>,
    /// Shared keys: the first seals, every one opens (rotation). None: membership traffic is
    /// plain (and says so in the log).
    pub keys: Vec<Vec<u8>>,
    pub probe_period: Duration,
    pub probe_rtt: Duration,
    pub suspect_to_down: Duration,
    /// How often a speaker pings its neighbour on the ring (the ring watch, `ring.rs`); it
    /// suspects it after `ring::MISSES` of these without an answer.
    pub ring_period: Duration,
}

impl MembershipSettings {
    pub fn new(node: impl Into<String>, bind: SocketAddr) -> MembershipSettings {
        MembershipSettings {
            node: node.into(),
            bind,
            seeds: Vec::new(),
            keys: Vec::new(),
            // A crash is suspected 140-210 ms after it (two silent ring periods) and declared
            // down 160 ms later unless the speaker refutes: the new owner answers within 500 ms
            // at p99 with 100 speakers on 2 busy cores, no live speaker declared down (100 and
            // 200 ms: p99 555-586 ms; README, Figures).
            probe_period: Duration::from_millis(150),
            probe_rtt: Duration::from_millis(60),
            suspect_to_down: Duration::from_millis(160),
            ring_period: Duration::from_millis(70),
        }
    }

    /// foca's settings for a cluster of about `speakers`.
    fn foca_config(&self, speakers: usize) -> Config {
        let mut c = Config::simple();
        c.probe_period = self.probe_period;
        c.probe_rtt = self.probe_rtt;
        c.suspect_to_down_after = self.suspect_to_down;
        c.num_indirect_probes = NonZeroUsize::new(2).expect("nonzero");
        c.max_transmissions = transmissions(speakers);
        c.notify_down_members = true;
        // News of a death must reach everyone within a few tens of milliseconds, not at the
        // next probe.
        c.periodic_gossip = Some(foca::PeriodicParams {
            frequency: Duration::from_millis(30),
            num_members: NonZeroUsize::new(3).expect("nonzero"),
        });
        c
    }
}

/// How many times each speaker passes each piece of news on (piggybacked or gossiped, to random
/// speakers). A speaker misses news with a chance of about e^-k, so k grows with ln(N) to keep
/// the chance that any of N speakers misses it below 1/10,000: a missed death is found only when
/// that speaker probes the dead one itself, up to N probe periods later (seconds at 100
/// speakers). 8, enough for a handful of speakers, missed one survivor in ~20 at 100.
fn transmissions(speakers: usize) -> NonZeroU8 {
    let k = (speakers.max(2) as f64).ln().ceil() + 10.0;
    NonZeroU8::new(k.min(255.0) as u8).expect("at least 10")
}

/// What membership tells the speaker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Nodes whose speakers are alive, this one included.
    pub live: BTreeSet<String>,
}

type Seeds = Vec<(String, SocketAddr)>;

/// What one membership instance's socket carried (UDP payload bytes, sealed), and how many
/// speakers it saw go. The process-wide metrics count the same; this is per instance, so
/// several instances in one process (the membership benchmark) can be told apart.
#[derive(Debug, Default)]
pub struct Traffic {
    pub packets_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub packets_received: AtomicU64,
    pub bytes_received: AtomicU64,
    /// Speakers declared down (failed or left) as this instance saw them.
    pub downs: AtomicU64,
    /// Datagrams dropped before membership saw them, by [`seal::Dropped`] (in its order).
    pub dropped: [AtomicU64; 3],
}

impl Traffic {
    fn sent(&self, bytes: usize) {
        self.packets_sent.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
        crate::metrics::METRICS.memberlist_packets_sent.inc();
        crate::metrics::METRICS.memberlist_bytes_sent.inc_by(bytes as u64);
    }

    fn received(&self, bytes: usize) {
        self.packets_received.fetch_add(1, Ordering::Relaxed);
        self.bytes_received.fetch_add(bytes as u64, Ordering::Relaxed);
        crate::metrics::METRICS.memberlist_packets_received.inc();
        crate::metrics::METRICS.memberlist_bytes_received.inc_by(bytes as u64);
    }

    fn dropped(&self, why: Dropped) {
        let i = Dropped::ALL.iter().position(|d| *d == why).unwrap_or(0);
        self.dropped[i].fetch_add(1, Ordering::Relaxed);
        crate::metrics::METRICS.memberlist_dropped(why.reason());
    }

    /// Datagrams dropped for this reason so far.
    pub fn dropped_for(&self, why: Dropped) -> u64 {
        Dropped::ALL.iter().position(|d| *d == why).map_or(0, |i| self.dropped[i].load(Ordering::Relaxed))
    }
}

pub struct Membership {
    view: watch::Receiver<View>,
    seeds: watch::Sender<Seeds>,
    traffic: Arc<Traffic>,
    leave: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("binding the membership socket {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

impl Membership {
    pub async fn start(settings: MembershipSettings) -> Result<Membership, MembershipError> {
        let socket =
            UdpSocket::bind(settings.bind).await.map_err(|e| MembershipError::Bind(settings.bind, e))?;
        if settings.keys.is_empty() {
            tracing::warn!(
                "membership traffic is neither encrypted nor authenticated: any host on the node network can take part in electing who answers for layer 2 IPs (give the speakers a key)"
            );
        }
        let me = Speaker {
            node: settings.node.clone(),
            addr: socket.local_addr().unwrap_or(settings.bind),
            incarnation: unix_ms(),
        };
        let (tx, view) = watch::channel(View { live: [me.node.clone()].into() });
        let (seeds, seeds_rx) = watch::channel(settings.seeds.clone());
        let (leave, left) = tokio::sync::oneshot::channel();
        let traffic = Arc::new(Traffic::default());
        let sealer = Sealer::new(&settings.keys, unix_ms());
        let io = Io { socket, sealer: std::sync::Mutex::new(sealer), traffic: traffic.clone() };
        let task = tokio::spawn(run(settings, io, me, tx, seeds_rx, left));
        Ok(Membership { view, seeds, traffic, leave: Some(leave), task })
    }

    /// Replaces the speakers to join through (the speaker pods, as they come and go).
    pub fn set_seeds(&self, seeds: Seeds) {
        self.seeds.send_if_modified(|now| {
            let changed = *now != seeds;
            *now = seeds;
            changed
        });
    }

    pub fn view(&self) -> watch::Receiver<View> {
        self.view.clone()
    }

    pub fn traffic(&self) -> Arc<Traffic> {
        self.traffic.clone()
    }

    /// Tells the others this speaker is going, then stops.
    pub async fn leave(mut self) {
        if let Some(tx) = self.leave.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), &mut self.task).await;
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Milliseconds since the epoch: the seal's clock, and a new speaker's incarnation.
fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The socket and what goes through it.
struct Io {
    socket: UdpSocket,
    /// Only the membership task uses it; the lock is never contended.
    sealer: std::sync::Mutex<Sealer>,
    traffic: Arc<Traffic>,
}

impl Io {
    async fn send(&self, packet: Packet<'_>, to: SocketAddr) {
        let sealed = self.sealer.lock().ok().and_then(|mut s| s.seal(&packet.encode(), unix_ms()));
        if let Some(sealed) = sealed
            && self.socket.send_to(&sealed, to).await.is_ok()
        {
            self.traffic.sent(sealed.len());
        }
    }

    /// The packet a received datagram carries, if it is to be believed.
    fn open(&self, data: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
        let opened = self.sealer.lock().ok().map(|mut s| s.open(data, unix_ms()))?;
        match opened {
            Ok(packet) => Some(packet),
            Err(why) => {
                self.traffic.dropped(why);
                tracing::debug!(%from, reason = why.reason(), "membership datagram dropped");
                None
            }
        }
    }

    /// Sends what foca queued and files the timers it asked for.
    async fn flush(&self, runtime: &mut AccumulatingRuntime<Speaker>, timers: &mut Timers) {
        while let Some((to, data)) = runtime.to_send() {
            self.send(Packet::Foca(&data), to.addr).await;
        }
        while let Some((after, timer)) = runtime.to_schedule() {
            match timer {
                Timer::ProbeRandomMember(t)
                | Timer::SendIndirectProbe { token: t, .. }
                | Timer::ChangeSuspectToDown { token: t, .. }
                | Timer::PeriodicAnnounce(t)
                | Timer::PeriodicAnnounceDown(t)
                | Timer::PeriodicGossip(t) => timers.token = Some(t),
                Timer::RemoveDown(_) => {}
            }
            timers.at(Instant::now() + after, Job::Foca(timer));
        }
    }
}

/// The ring watch's period: pings the neighbour, and if it stayed silent too long, suspects it
/// in foca and files foca's verdict for `suspect_to_down` later.
async fn ring_tick(
    settings: &MembershipSettings,
    io: &Io,
    foca: &mut Foca<Speaker, PostcardCodec, StdRng, foca::NoCustomBroadcast>,
    runtime: &mut AccumulatingRuntime<Speaker>,
    neighbour: &mut Watch,
    timers: &mut Timers,
) {
    let tick = neighbour.tick(ring::successor(&foca.identity().node, foca.iter_members().map(|m| m.id())));
    if let Some(who) = tick.suspect {
        let known = foca.iter_members().find(|m| *m.id() == who).map(|m| m.incarnation());
        // foca has stamped a timer with its token once it had a member to probe, so the token is
        // known whenever there is a neighbour to suspect.
        if let (Some(incarnation), Some(token)) = (known, timers.token) {
            tracing::debug!(node = %who.node, "ring neighbour silent; suspecting it");
            // foca passes the suspicion on like one of its own; a live neighbour that hears it
            // refutes it with a higher incarnation.
            let suspect = Member::new(who.clone(), incarnation, State::Suspect);
            let _ = foca.apply_many(std::iter::once(suspect), true, &mut *runtime);
            // The verdict is the timer foca sets for its own suspicions: it declares the
            // neighbour down only if its incarnation is still this one, passes that on, notifies
            // MemberDown and tells the neighbour. (Down through apply_many would win over a
            // refutation: foca lets Down override any incarnation.)
            let down = Timer::ChangeSuspectToDown { member_id: who, incarnation, token };
            timers.at(Instant::now() + settings.suspect_to_down, Job::WatchDown(down));
        }
    }
    if let Some((to, number)) = tick.ping {
        io.send(Packet::Ping(number), to).await;
    }
    timers.at(Instant::now() + settings.ring_period, Job::Watch);
}

async fn run(
    settings: MembershipSettings,
    io: Io,
    me: Speaker,
    view: watch::Sender<View>,
    seeds: watch::Receiver<Seeds>,
    mut left: tokio::sync::oneshot::Receiver<()>,
) {
    let rng: StdRng = rand::make_rng();
    let mut speakers = seeds.borrow().len() + 1;
    let mut foca = Foca::new(me.clone(), settings.foca_config(speakers), rng, PostcardCodec);
    let mut runtime = AccumulatingRuntime::new();
    let mut timers = Timers::default();
    let mut neighbour = Watch::default();
    timers.at(Instant::now() + settings.ring_period, Job::Watch);
    let mut buf = vec![0u8; 65536];
    let mut announce = tokio::time::interval(Duration::from_secs(1));
    announce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = timers.next();
        tokio::select! {
            _ = &mut left => {
                let _ = foca.leave_cluster(&mut runtime);
                // foca tells two speakers; tell as many as the news is passed on, so a clean
                // leave does not hinge on two datagrams.
                for _ in 1..transmissions(speakers).get().div_ceil(2) {
                    let _ = foca.gossip(&mut runtime);
                }
                io.flush(&mut runtime, &mut timers).await;
                return;
            }
            got = io.socket.recv_from(&mut buf) => match got {
                Ok((n, from)) => {
                    io.traffic.received(n);
                    match io.open(&buf[..n], from).as_deref().map(Packet::decode) {
                        Some(Some(Packet::Foca(data))) => {
                            if let Err(e) = foca.handle_data(data, &mut runtime) {
                                tracing::debug!(%from, error = %e, "membership message ignored");
                            }
                        }
                        Some(Some(Packet::Ping(number))) => io.send(Packet::Ack(number), from).await,
                        Some(Some(Packet::Ack(number))) => neighbour.ack(from, number),
                        Some(None) => tracing::debug!(%from, "membership message of no known kind; dropped"),
                        None => {}
                    }
                }
                Err(e) => tracing::warn!(error = %e, "membership socket"),
            },
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                let now = Instant::now();
                while let Some(job) = timers.due(now) {
                    match job {
                        Job::Foca(timer) => {
                            let _ = foca.handle_timer(timer, &mut runtime);
                        }
                        Job::Watch => ring_tick(&settings, &io, &mut foca, &mut runtime, &mut neighbour, &mut timers).await,
                        Job::WatchDown(timer) => {
                            let still = matches!(&timer, Timer::ChangeSuspectToDown { member_id, .. }
                                if neighbour.still_suspects(member_id));
                            if still {
                                let _ = foca.handle_timer(timer, &mut runtime);
                            }
                        }
                    }
                }
            }
            _ = announce.tick() => {
                let members: BTreeSet<SocketAddr> = foca.iter_members().map(|m| m.id().addr).collect();
                let seeds = seeds.borrow().clone();
                let now = seeds.len().max(members.len()) + 1;
                if transmissions(now) != transmissions(speakers) {
                    speakers = now;
                    let _ = foca.set_config(settings.foca_config(speakers));
                }
                for (node, addr) in &seeds {
                    if !members.contains(addr) && *addr != me.addr {
                        let seed = Speaker { node: node.clone(), addr: *addr, incarnation: 0 };
                        let _ = foca.announce(seed, &mut runtime);
                    }
                }
            }
        }
        io.flush(&mut runtime, &mut timers).await;
        let mut changed = false;
        while let Some(n) = runtime.to_notify() {
            changed = true;
            match n {
                OwnedNotification::MemberUp(s) => {
                    tracing::info!(node = %s.node, addr = %s.addr, "speaker up")
                }
                OwnedNotification::MemberDown(s) => {
                    io.traffic.downs.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(node = %s.node, addr = %s.addr, "speaker down")
                }
                OwnedNotification::Defunct => {
                    // Declared down by the others while alive (a partition healed): come back
                    // under a new incarnation.
                    tracing::warn!("this speaker was declared down; rejoining");
                    let renewed = foca.identity().renew();
                    if let Some(id) = renewed {
                        let _ = foca.change_identity(id, &mut runtime);
                    }
                }
                other => tracing::debug!(?other, "membership"),
            }
        }
        if changed {
            let live: BTreeSet<String> =
                foca.iter_members().map(|m| m.id().node.clone()).chain([me.node.clone()]).collect();
            view.send_if_modified(|v| {
                let next = View { live };
                let differs = *v != next;
                *v = next;
                differs
            });
            io.flush(&mut runtime, &mut timers).await;
        }
    }
}

/// Nodes named in `node=host:port` seed strings.
pub fn parse_seeds(seeds: &[String]) -> Result<Vec<(String, SocketAddr)>, String> {
    let mut out: BTreeMap<String, SocketAddr> = BTreeMap::new();
    for s in seeds {
        let (node, addr) = s.split_once('=').ok_or_else(|| format!("member {s:?}: expected NODE=IP:PORT"))?;
        let addr = crate::bind::parse_socket_addr(addr).map_err(|e| format!("member {s:?}: {e}"))?;
        out.insert(node.to_string(), addr);
    }
    Ok(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn news_is_passed_on_more_often_in_larger_clusters() {
        let k = |n| transmissions(n).get();
        assert_eq!((k(0), k(1), k(3), k(25), k(100), k(1000)), (11, 11, 12, 14, 15, 17));
        // The chance that any of 100 speakers misses news, about 100 e^-k, stays below 1/10,000.
        assert!(100.0 * (-f64::from(k(100))).exp() < 1e-4);
        let s = MembershipSettings::new("n", "127.0.0.1:0".parse().unwrap());
        assert_eq!(s.foca_config(100).max_transmissions.get(), 15);
    }

    #[test]
    fn seeds_parse_or_say_which_one_is_wrong() {
        let s = parse_seeds(&["node2=192.0.2.12:7946".into(), "node1=192.0.2.11:7946".into()]).unwrap();
        assert_eq!(s[0], ("node1".to_string(), "192.0.2.11:7946".parse().unwrap()));
        assert!(parse_seeds(&["node1".into()]).unwrap_err().contains("NODE=IP:PORT"));
        assert!(parse_seeds(&["node1=nowhere".into()]).unwrap_err().contains("node1=nowhere"));
    }
}
