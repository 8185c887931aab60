//! Which speakers are alive: SWIM membership (foca, sans-IO) over UDP, optionally sealed with a
//! key shared by all speakers (ChaCha20-Poly1305 over a SHA-256 of the secret, so a stranger
//! can neither read nor forge membership traffic).
//!
//! The live set feeds the layer 2 election. Failure detection is tuned for sub-second failover:
//! a speaker probes another every `probe_period`, asks others to probe indirectly after
//! `probe_rtt`, and a suspect is declared down after `suspect_to_down`. Speakers that leave
//! cleanly (SIGTERM) say so at once. Seeds that are not members are announced to every second, so
//! restarted speakers and healed partitions merge back; the seeds follow the cluster
//! ([`Membership::set_seeds`]), so a speaker started later is found too. Whether this speaker
//! may answer is decided elsewhere ([`crate::l2::quorum`]), against the speakers that should
//! exist rather than the ones ever seen.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::sync::Arc;
use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use foca::{AccumulatingRuntime, Config, Foca, Identity, OwnedNotification, PostcardCodec, Timer};
use rand::RngExt;
use rand::rngs::StdRng;
use sha2::{Digest, Sha256};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;

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
    /// Shared secret; without it membership traffic is plain (and says so in the log).
    pub secret: Option<Vec<u8>>,
    pub probe_period: Duration,
    pub probe_rtt: Duration,
    pub suspect_to_down: Duration,
}

impl MembershipSettings {
    pub fn new(node: impl Into<String>, bind: SocketAddr) -> MembershipSettings {
        MembershipSettings {
            node: node.into(),
            bind,
            seeds: Vec::new(),
            secret: None,
            probe_period: Duration::from_millis(150),
            probe_rtt: Duration::from_millis(60),
            suspect_to_down: Duration::from_millis(200),
        }
    }

    fn foca_config(&self) -> Config {
        let mut c = Config::simple();
        c.probe_period = self.probe_period;
        c.probe_rtt = self.probe_rtt;
        c.suspect_to_down_after = self.suspect_to_down;
        c.num_indirect_probes = NonZeroUsize::new(2).expect("nonzero");
        c.max_transmissions = NonZeroU8::new(8).expect("nonzero");
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

/// What membership tells the speaker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Nodes whose speakers are alive, this one included.
    pub live: BTreeSet<String>,
}

type Seeds = Vec<(String, SocketAddr)>;

pub struct Membership {
    view: watch::Receiver<View>,
    seeds: watch::Sender<Seeds>,
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
        if settings.secret.is_none() {
            tracing::warn!("membership traffic is not authenticated: set a shared secret");
        }
        let me = Speaker {
            node: settings.node.clone(),
            addr: socket.local_addr().unwrap_or(settings.bind),
            incarnation: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        let (tx, view) = watch::channel(View { live: [me.node.clone()].into() });
        let (seeds, seeds_rx) = watch::channel(settings.seeds.clone());
        let (leave, left) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(run(settings, Arc::new(socket), me, tx, seeds_rx, left));
        Ok(Membership { view, seeds, leave: Some(leave), task })
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

struct Sealer(Option<ChaCha20Poly1305>);

impl Sealer {
    fn new(secret: Option<&[u8]>) -> Sealer {
        Sealer(secret.map(|s| ChaCha20Poly1305::new(&Sha256::digest(s))))
    }

    fn seal(&self, data: &[u8]) -> Option<Vec<u8>> {
        let Some(cipher) = &self.0 else { return Some(data.to_vec()) };
        let nonce: [u8; 12] = rand::rng().random();
        let mut out = nonce.to_vec();
        out.extend(cipher.encrypt(Nonce::from_slice(&nonce), data).ok()?);
        Some(out)
    }

    fn open(&self, data: &[u8]) -> Option<Vec<u8>> {
        let Some(cipher) = &self.0 else { return Some(data.to_vec()) };
        let (nonce, sealed) = data.split_at_checked(12)?;
        cipher.decrypt(Nonce::from_slice(nonce), sealed).ok()
    }
}

/// Timers foca asked for, earliest first.
struct Due(Instant, u64, Timer<Speaker>);

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

async fn run(
    settings: MembershipSettings,
    socket: Arc<UdpSocket>,
    me: Speaker,
    view: watch::Sender<View>,
    seeds: watch::Receiver<Seeds>,
    mut left: tokio::sync::oneshot::Receiver<()>,
) {
    let rng: StdRng = rand::make_rng();
    let mut foca = Foca::new(me.clone(), settings.foca_config(), rng, PostcardCodec);
    let mut runtime = AccumulatingRuntime::new();
    let sealer = Sealer::new(settings.secret.as_deref());
    let mut timers: BinaryHeap<Due> = BinaryHeap::new();
    let mut sequence = 0u64;
    let mut buf = vec![0u8; 65536];
    let mut announce = tokio::time::interval(Duration::from_secs(1));
    announce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next = timers.peek().map(|d| d.0);
        tokio::select! {
            _ = &mut left => {
                let _ = foca.leave_cluster(&mut runtime);
                flush(&mut runtime, &socket, &sealer, &mut timers, &mut sequence).await;
                return;
            }
            got = socket.recv_from(&mut buf) => match got {
                Ok((n, from)) => match sealer.open(&buf[..n]) {
                    Some(data) => {
                        if let Err(e) = foca.handle_data(&data, &mut runtime) {
                            tracing::debug!(%from, error = %e, "membership message ignored");
                        }
                    }
                    None => tracing::warn!(%from, "membership message failed authentication; dropped"),
                },
                Err(e) => tracing::warn!(error = %e, "membership socket"),
            },
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                let now = Instant::now();
                while timers.peek().is_some_and(|d| d.0 <= now) {
                    let Some(Due(_, _, timer)) = timers.pop() else { break };
                    let _ = foca.handle_timer(timer, &mut runtime);
                }
            }
            _ = announce.tick() => {
                let members: BTreeSet<SocketAddr> = foca.iter_members().map(|m| m.id().addr).collect();
                let seeds = seeds.borrow().clone();
                for (node, addr) in &seeds {
                    if !members.contains(addr) && *addr != me.addr {
                        let seed = Speaker { node: node.clone(), addr: *addr, incarnation: 0 };
                        let _ = foca.announce(seed, &mut runtime);
                    }
                }
            }
        }
        flush(&mut runtime, &socket, &sealer, &mut timers, &mut sequence).await;
        let mut changed = false;
        while let Some(n) = runtime.to_notify() {
            changed = true;
            match n {
                OwnedNotification::MemberUp(s) => {
                    tracing::info!(node = %s.node, addr = %s.addr, "speaker up")
                }
                OwnedNotification::MemberDown(s) => {
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
            flush(&mut runtime, &socket, &sealer, &mut timers, &mut sequence).await;
        }
    }
}

/// Sends what foca queued and files the timers it asked for.
async fn flush(
    runtime: &mut AccumulatingRuntime<Speaker>,
    socket: &UdpSocket,
    sealer: &Sealer,
    timers: &mut BinaryHeap<Due>,
    sequence: &mut u64,
) {
    while let Some((to, data)) = runtime.to_send() {
        if let Some(sealed) = sealer.seal(&data) {
            let _ = socket.send_to(&sealed, to.addr).await;
        }
    }
    while let Some((after, timer)) = runtime.to_schedule() {
        *sequence += 1;
        timers.push(Due(Instant::now() + after, *sequence, timer));
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
    fn sealed_messages_open_only_with_the_same_secret() {
        let a = Sealer::new(Some(b"shared"));
        let b = Sealer::new(Some(b"other"));
        let plain = Sealer::new(None);
        let sealed = a.seal(b"hello").unwrap();
        assert_ne!(&sealed[12..], b"hello");
        assert_eq!(a.open(&sealed).as_deref(), Some(&b"hello"[..]));
        assert_eq!(b.open(&sealed), None);
        assert_eq!(a.open(b"short"), None);
        let mut tampered = sealed.clone();
        tampered[14] ^= 1;
        assert_eq!(a.open(&tampered), None);
        assert_eq!(plain.open(b"hello").as_deref(), Some(&b"hello"[..]));
        // Two seals of one message differ (fresh nonces).
        assert_ne!(a.seal(b"hello"), a.seal(b"hello"));
    }

    #[test]
    fn seeds_parse_or_say_which_one_is_wrong() {
        let s = parse_seeds(&["node2=192.0.2.12:7946".into(), "node1=192.0.2.11:7946".into()]).unwrap();
        assert_eq!(s[0], ("node1".to_string(), "192.0.2.11:7946".parse().unwrap()));
        assert!(parse_seeds(&["node1".into()]).unwrap_err().contains("NODE=IP:PORT"));
        assert!(parse_seeds(&["node1=nowhere".into()]).unwrap_err().contains("node1=nowhere"));
    }
}
