//! Answers ARP and NDP for the IPs this node announces, on the interfaces each may use.
//!
//! One worker per eligible interface, started and stopped as netlink reports links coming and
//! going. Each worker reads the current announcement set from a watch channel, so an IP that is
//! withdrawn stops being answered at once, and an IP that is gained is announced gratuitously
//! right away, then on the configured schedule, then (when asked) every refresh period for as
//! long as it is held.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use crate::metrics::{IpLabels, METRICS};
use etherparse::ArpOperation;
use regex::Regex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::groups::GroupCounts;
use super::interfaces::{Interface, LinkEvents, eligible};
use super::packet::{arp, ndp};
use super::socket::{arp::ArpSocket, ndp::NdpSocket};

pub use super::reach::Announced;
use super::reach::{InterfaceHealth, Interfaces};

fn allowed(announced: &Announced, ip: IpAddr, interface: &str) -> bool {
    announced.get(&ip).is_some_and(|i| i.as_ref().is_none_or(|set| set.contains(interface)))
}

#[derive(Debug, Clone)]
pub struct ResponderSettings {
    pub excluded: Vec<Regex>,
    /// When gratuitous announcements repeat after the first, counted from gaining the IP.
    pub gratuitous_after: Vec<Duration>,
    /// Announce every held IP again this often, for switches that forget a MAC's port before
    /// routers and hosts forget its neighbor entry (neither asks again, so nothing else would
    /// send a frame from it). `None`: only on gaining an IP.
    pub refresh: Option<Duration>,
}

impl Default for ResponderSettings {
    fn default() -> Self {
        // MetalLB repeats every 1.1 s for 5 s; the first one goes out at once either way.
        let gratuitous_after = (1..=4).map(|i| Duration::from_millis(1100 * i)).collect();
        let excluded =
            super::interfaces::DEFAULT_EXCLUDED.iter().filter_map(|p| Regex::new(p).ok()).collect();
        ResponderSettings { excluded, gratuitous_after, refresh: None }
    }
}

pub struct Responder {
    announced: watch::Sender<Announced>,
    interfaces: watch::Receiver<Option<Interfaces>>,
    task: JoinHandle<()>,
}

impl Responder {
    /// Starts answering (for nothing yet) on the current tokio runtime.
    pub fn start(settings: ResponderSettings) -> std::io::Result<Responder> {
        let events = LinkEvents::subscribe()?;
        let (announced, rx) = watch::channel(Announced::new());
        let (health, interfaces) = watch::channel(None);
        let task = tokio::spawn(supervise(settings, events, rx, health));
        Ok(Responder { announced, interfaces, task })
    }

    /// The eligible interfaces and what each can answer; None until they were first scanned.
    pub fn interfaces(&self) -> watch::Receiver<Option<Interfaces>> {
        self.interfaces.clone()
    }

    /// A responder that answers nothing itself: what it is asked to answer for stays in the
    /// watch returned. On the current tokio runtime.
    #[cfg(test)]
    pub fn detached() -> (Responder, watch::Receiver<Announced>) {
        let (announced, asked) = watch::channel(Announced::new());
        let (_, interfaces) = watch::channel(None);
        let task = tokio::spawn(std::future::pending());
        (Responder { announced, interfaces, task }, asked)
    }

    /// Replaces the set of IPs this node answers for.
    pub fn set(&self, announced: Announced) {
        self.announced.send_if_modified(|now| {
            let changed = *now != announced;
            *now = announced;
            changed
        });
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps one worker per eligible interface, rescanning whenever netlink reports a change, and
/// says in `health` what each can answer.
async fn supervise(
    settings: ResponderSettings,
    events: LinkEvents,
    announced: watch::Receiver<Announced>,
    health: watch::Sender<Option<Interfaces>>,
) {
    let mut workers: BTreeMap<String, (Interface, JoinHandle<()>)> = BTreeMap::new();
    let mut serial = 0;
    loop {
        let now: BTreeMap<String, Interface> =
            eligible(&settings.excluded).into_iter().map(|i| (i.name.clone(), i)).collect();
        workers.retain(|name, (iface, handle)| {
            let keep = now.get(name) == Some(iface);
            if !keep {
                tracing::info!(interface = %name, "layer 2: interface gone or changed");
                handle.abort();
            }
            keep
        });
        // One update per scan, made whole before any new worker runs: an interface replaced
        // (gone and back, its IPv6 come up) never shows as missing in between, and a new
        // worker's own report of a failure cannot be overwritten by this one.
        let mut next = health.borrow().clone().unwrap_or_default();
        next.retain(|name, _| workers.contains_key(name));
        let mut starting = Vec::new();
        for (name, iface) in now.into_iter().filter(|(name, _)| !workers.contains_key(name)) {
            tracing::info!(interface = %name, ipv6 = iface.ipv6, "layer 2: answering on interface");
            serial += 1;
            let (sockets, state) = open(&iface, serial);
            next.insert(name, state);
            starting.push((iface, sockets, serial));
        }
        health.send_if_modified(|h| {
            let changed = h.as_ref() != Some(&next);
            *h = Some(next);
            changed
        });
        for (iface, sockets, serial) in starting {
            let worker = Worker { iface: iface.clone(), serial, health: health.clone() };
            let handle = tokio::spawn(worker.serve(sockets, announced.clone(), Schedule::of(&settings)));
            workers.insert(iface.name.clone(), (iface, handle));
        }
        if let Err(e) = events.changed().await {
            tracing::error!(error = %e, "netlink link events failed; rescanning every second");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// An interface's sockets (ARP always, NDP where IPv6 runs), and what it can answer.
fn open(iface: &Interface, serial: u64) -> ((Option<ArpSocket>, Option<NdpSocket>), InterfaceHealth) {
    let arp = ArpSocket::open(iface.index)
        .inspect_err(|e| tracing::error!(interface = %iface.name, error = %e, "cannot open an ARP socket"));
    let ndp = if iface.ipv6 {
        NdpSocket::open(iface.index)
            .inspect_err(
                |e| tracing::error!(interface = %iface.name, error = %e, "cannot open an NDP socket"),
            )
            .map_err(|e| format!("NDP socket: {e}"))
    } else {
        Err("no IPv6 link-local address on it, so no NDP".to_string())
    };
    let state = InterfaceHealth {
        serial,
        arp_error: arp.as_ref().err().map(|e| format!("ARP socket: {e}")),
        ndp_error: ndp.as_ref().err().cloned(),
    };
    ((arp.ok(), ndp.ok()), state)
}
/// When an IP is announced unsolicited: at once and after each takeover delay, then every
/// refresh period while it is held.
#[derive(Debug, Clone)]
struct Schedule {
    takeover: Vec<Duration>,
    refresh: Option<Duration>,
}

impl Schedule {
    fn of(settings: &ResponderSettings) -> Schedule {
        let refresh = settings.refresh.filter(|d| !d.is_zero());
        Schedule { takeover: settings.gratuitous_after.clone(), refresh }
    }
}

/// Announcements still to send: (when, IP, whether it repeats every refresh period).
#[derive(Debug, Default)]
struct Pending(BTreeSet<(Instant, IpAddr, bool)>);

impl Pending {
    fn gained(&mut self, ip: IpAddr, at: Instant, schedule: &Schedule) {
        self.0.insert((at, ip, false));
        self.0.extend(schedule.takeover.iter().map(|d| (at + *d, ip, false)));
        if let Some(every) = schedule.refresh {
            self.0.insert((at + every, ip, true));
        }
    }

    fn lost(&mut self, ip: IpAddr) {
        self.0.retain(|(_, p, _)| *p != ip);
    }

    fn next(&self) -> Option<Instant> {
        self.0.first().map(|(at, _, _)| *at)
    }

    /// The IPs due by `now`. A repeating one is due again a period after it was due, keeping its
    /// pace; after a stall longer than a period, a period from now, so a stall never turns into
    /// a burst of catching up.
    fn due(&mut self, now: Instant, schedule: &Schedule) -> Vec<IpAddr> {
        let mut out = Vec::new();
        while let Some((at, ip, repeats)) = self.0.first().copied() {
            if at > now {
                break;
            }
            self.0.pop_first();
            out.push(ip);
            if let (true, Some(every)) = (repeats, schedule.refresh) {
                let again = if at + every > now { at + every } else { now + every };
                self.0.insert((again, ip, true));
            }
        }
        out
    }
}

/// The IPs `iface` answers for now.
fn held(announced: &mut watch::Receiver<Announced>, iface: &str) -> BTreeSet<IpAddr> {
    let set = announced.borrow_and_update();
    set.keys().copied().filter(|ip| allowed(&set, *ip, iface)).collect()
}

/// One interface's answering, and where to say that it stopped.
struct Worker {
    iface: Interface,
    /// Which worker of the interface this is: one that was replaced (aborted while it failed)
    /// must not mark its successor's entry.
    serial: u64,
    health: watch::Sender<Option<Interfaces>>,
}

impl Worker {
    /// Marks the interface as answering nothing any more, with why.
    fn failed(&self, why: String) {
        tracing::error!(interface = %self.iface.name, error = %why, "layer 2: no longer answering on this interface");
        self.health.send_modify(|h| {
            if let Some(entry) =
                h.get_or_insert_default().get_mut(&self.iface.name).filter(|e| e.serial == self.serial)
            {
                entry.arp_error = Some(why.clone());
                entry.ndp_error = Some(why);
            }
        });
    }

    async fn serve(
        self,
        sockets: (Option<ArpSocket>, Option<NdpSocket>),
        announced: watch::Receiver<Announced>,
        schedule: Schedule,
    ) {
        let (Some(arp), ndp) = sockets else {
            return self.failed("its ARP socket would not open".into());
        };
        if let Err(why) = serve(self.iface.clone(), arp, ndp, announced, schedule).await {
            self.failed(why);
        }
    }
}

/// Answers on one interface until aborted, or until a socket fails (why).
async fn serve(
    iface: Interface,
    arp_socket: ArpSocket,
    ndp_socket: Option<NdpSocket>,
    mut announced: watch::Receiver<Announced>,
    schedule: Schedule,
) -> Result<(), String> {
    let mut mine: BTreeSet<IpAddr> = BTreeSet::new();
    // Solicited-node groups joined for `mine`, counted per IP (two IPs may share one).
    let mut groups = GroupCounts::default();
    let mut pending = Pending::default();
    let mut arp_buf = [0u8; 1600];
    let mut ndp_buf = [0u8; 1600];
    // Take the first set as a change, so IPs announced before the worker started are
    // announced gratuitously too.
    announced.mark_changed();
    loop {
        let next = pending.next();
        tokio::select! {
            changed = announced.changed() => {
                if changed.is_err() { return Ok(()); }
                let now = held(&mut announced, &iface.name);
                for ip in mine.difference(&now) {
                    pending.lost(*ip);
                }
                let change = groups.change(mine.difference(&now).copied(), now.difference(&mine).copied());
                if let Some(s) = &ndp_socket {
                    for group in &change.leave {
                        let _ = s.leave(*group);
                    }
                    for group in &change.join {
                        if let Err(e) = s.join(*group) {
                            tracing::warn!(interface = %iface.name, %group, error = %e, "joining the solicited-node group");
                        }
                    }
                }
                let start = Instant::now();
                for ip in now.difference(&mine) {
                    pending.gained(*ip, start, &schedule);
                }
                mine = now;
            }
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                for ip in pending.due(Instant::now(), &schedule) {
                    gratuitous(&iface, ip, &arp_socket, ndp_socket.as_ref()).await;
                }
            }
            got = arp_socket.recv(&mut arp_buf) => match got {
                Ok(n) => answer_arp(&iface, &arp_buf[..n], &announced, &arp_socket).await,
                Err(e) => return Err(format!("its ARP socket failed: {e}")),
            },
            got = recv_ndp(ndp_socket.as_ref(), &mut ndp_buf) => match (got, &ndp_socket) {
                (Ok(n), Some(s)) => answer_ndp(&iface, &ndp_buf[..n], &announced, s).await,
                (Ok(_), None) => {}
                (Err(e), _) => return Err(format!("its NDP socket failed: {e}")),
            },
        }
    }
}

async fn answer_arp(
    iface: &Interface,
    frame: &[u8],
    announced: &watch::Receiver<Announced>,
    socket: &ArpSocket,
) {
    let Ok(req) = arp::parse_request(frame) else { return };
    let ip = IpAddr::V4(req.target_ip);
    // Decide before awaiting: the watch guard must not be held across a send.
    let ours = req.addressed_to(&iface.mac) && allowed(&announced.borrow(), ip, &iface.name);
    if !ours {
        return;
    }
    count(&METRICS.layer2_requests, ip);
    match socket.send(&arp::reply(&req, iface.mac)).await {
        Ok(()) => count(&METRICS.layer2_responses, ip),
        Err(e) => tracing::warn!(interface = %iface.name, error = %e, "sending an ARP reply"),
    }
}

async fn answer_ndp(
    iface: &Interface,
    frame: &[u8],
    announced: &watch::Receiver<Announced>,
    socket: &NdpSocket,
) {
    let s = match ndp::parse_solicitation(frame) {
        Ok(s) => s,
        Err(e) => {
            tracing::trace!(interface = %iface.name, error = %e, "NDP frame ignored");
            return;
        }
    };
    let ip = IpAddr::V6(s.target);
    let ours = s.addressed_to(&iface.mac) && allowed(&announced.borrow(), ip, &iface.name);
    if !ours {
        return;
    }
    // Duplicate address detection for a Service IP means a host is about to configure it. The
    // address is in use, and RFC 4862 §5.4.3 has its holder say so: the host then refuses it and
    // logs the conflict, instead of answering beside us and quietly taking part of the traffic.
    // MetalLB ignores these. Nothing in a working cluster sends one for a Service IP (kube-proxy's
    // IPVS device is NOARP, which skips detection, and is not on the link anyway), so defending
    // never disturbs a correct setup, and the warning names the host that is misconfigured.
    if s.is_duplicate_address_detection() {
        let from = super::packet::format_mac(&s.eth_source);
        tracing::warn!(interface = %iface.name, %ip, %from, "a host is about to configure this Service IP (duplicate address detection); defending it");
    }
    count(&METRICS.layer2_requests, ip);
    match socket.send(&ndp::answer(&s, iface.mac)).await {
        Ok(()) => count(&METRICS.layer2_responses, ip),
        Err(e) => tracing::warn!(interface = %iface.name, error = %e, "sending a neighbor advertisement"),
    }
}

async fn recv_ndp(socket: Option<&NdpSocket>, buf: &mut [u8]) -> std::io::Result<usize> {
    match socket {
        Some(s) => s.recv(buf).await,
        None => std::future::pending().await,
    }
}

async fn gratuitous(iface: &Interface, ip: IpAddr, arp_socket: &ArpSocket, ndp_socket: Option<&NdpSocket>) {
    let sent = match ip {
        IpAddr::V4(v4) => {
            let a = arp_socket.send(&arp::gratuitous(v4, iface.mac, ArpOperation::REQUEST)).await;
            let b = arp_socket.send(&arp::gratuitous(v4, iface.mac, ArpOperation::REPLY)).await;
            a.and(b)
        }
        IpAddr::V6(v6) => match ndp_socket {
            Some(s) => s.send(&ndp::unsolicited(v6, iface.mac)).await,
            None => Ok(()),
        },
    };
    match sent {
        Ok(()) => count(&METRICS.layer2_gratuitous, ip),
        Err(e) => {
            tracing::warn!(interface = %iface.name, %ip, error = %e, "sending a gratuitous announcement")
        }
    }
}

fn count(
    family: &prometheus_client::metrics::family::Family<
        IpLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    ip: IpAddr,
) {
    family.get_or_create(&IpLabels { ip: ip.to_string() }).inc();
}

#[cfg(test)]
mod tests;
