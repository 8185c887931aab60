//! Answers ARP and NDP for the IPs this node announces, on the interfaces each may use.
//!
//! One worker per eligible interface, started and stopped as netlink reports links coming and
//! going. Each worker reads the current announcement set from a watch channel, so an IP that is
//! withdrawn stops being answered at once, and an IP that is gained is announced gratuitously
//! right away and then on the configured schedule.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};
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

/// IP -> interfaces it may be answered on (`None`: every eligible interface).
pub type Announced = BTreeMap<IpAddr, Option<BTreeSet<String>>>;

fn allowed(announced: &Announced, ip: IpAddr, interface: &str) -> bool {
    announced.get(&ip).is_some_and(|i| i.as_ref().is_none_or(|set| set.contains(interface)))
}

#[derive(Debug, Clone)]
pub struct ResponderSettings {
    pub excluded: Vec<Regex>,
    /// When gratuitous announcements repeat after the first, counted from gaining the IP.
    pub gratuitous_after: Vec<Duration>,
}

impl Default for ResponderSettings {
    fn default() -> Self {
        // MetalLB repeats every 1.1 s for 5 s; the first one goes out at once either way.
        let gratuitous_after = (1..=4).map(|i| Duration::from_millis(1100 * i)).collect();
        let excluded =
            super::interfaces::DEFAULT_EXCLUDED.iter().filter_map(|p| Regex::new(p).ok()).collect();
        ResponderSettings { excluded, gratuitous_after }
    }
}

pub struct Responder {
    announced: watch::Sender<Announced>,
    task: JoinHandle<()>,
}

impl Responder {
    /// Starts answering (for nothing yet) on the current tokio runtime.
    pub fn start(settings: ResponderSettings) -> std::io::Result<Responder> {
        let events = LinkEvents::subscribe()?;
        let (announced, rx) = watch::channel(Announced::new());
        let task = tokio::spawn(supervise(settings, events, rx));
        Ok(Responder { announced, task })
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

/// Keeps one worker per eligible interface, rescanning whenever netlink reports a change.
async fn supervise(settings: ResponderSettings, events: LinkEvents, announced: watch::Receiver<Announced>) {
    let mut workers: BTreeMap<String, (Interface, JoinHandle<()>)> = BTreeMap::new();
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
        for (name, iface) in now {
            if let std::collections::btree_map::Entry::Vacant(slot) = workers.entry(name) {
                tracing::info!(interface = %slot.key(), ipv6 = iface.ipv6, "layer 2: answering on interface");
                let handle =
                    tokio::spawn(serve(iface.clone(), announced.clone(), settings.gratuitous_after.clone()));
                slot.insert((iface, handle));
            }
        }
        if let Err(e) = events.changed().await {
            tracing::error!(error = %e, "netlink link events failed; rescanning every second");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Answers on one interface until aborted.
async fn serve(iface: Interface, mut announced: watch::Receiver<Announced>, repeat: Vec<Duration>) {
    let arp_socket = match ArpSocket::open(iface.index) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(interface = %iface.name, error = %e, "cannot open an ARP socket");
            return;
        }
    };
    let ndp_socket = if iface.ipv6 {
        NdpSocket::open(&iface.name, iface.index)
            .inspect_err(
                |e| tracing::error!(interface = %iface.name, error = %e, "cannot open an NDP socket"),
            )
            .ok()
    } else {
        None
    };
    let mut mine: BTreeSet<IpAddr> = BTreeSet::new();
    // Solicited-node groups joined for `mine`, counted per IP (two IPs may share one).
    let mut groups = GroupCounts::default();
    // (when, ip) of gratuitous announcements still to send.
    let mut pending: BTreeSet<(Instant, IpAddr)> = BTreeSet::new();
    let mut arp_buf = [0u8; 1600];
    let mut ndp_buf = [0u8; 1600];
    // Take the first set as a change, so IPs announced before the worker started are
    // announced gratuitously too.
    announced.mark_changed();
    loop {
        let next = pending.first().map(|(at, _)| *at);
        tokio::select! {
            changed = announced.changed() => {
                if changed.is_err() { return; }
                let now: BTreeSet<IpAddr> = {
                    let set = announced.borrow_and_update();
                    set.keys().copied().filter(|ip| allowed(&set, *ip, &iface.name)).collect()
                };
                for ip in mine.difference(&now) {
                    pending.retain(|(_, p)| p != ip);
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
                    pending.insert((start, *ip));
                    pending.extend(repeat.iter().map(|d| (start + *d, *ip)));
                }
                mine = now;
            }
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                let now = Instant::now();
                while let Some((at, ip)) = pending.first().copied() {
                    if at > now { break; }
                    pending.pop_first();
                    gratuitous(&iface, ip, &arp_socket, ndp_socket.as_ref()).await;
                }
            }
            got = arp_socket.recv(&mut arp_buf) => match got {
                Ok(n) => {
                    let Ok(req) = arp::parse_request(&arp_buf[..n]) else { continue };
                    let ours = req.addressed_to(&iface.mac)
                        && allowed(&announced.borrow(), IpAddr::V4(req.target_ip), &iface.name);
                    if ours {
                        let ip = IpAddr::V4(req.target_ip);
                        count(&METRICS.layer2_requests, ip);
                        match arp_socket.send(&arp::reply(&req, iface.mac)).await {
                            Ok(()) => count(&METRICS.layer2_responses, ip),
                            Err(e) => tracing::warn!(interface = %iface.name, error = %e, "sending an ARP reply"),
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(interface = %iface.name, error = %e, "ARP socket failed");
                    return;
                }
            },
            got = recv_ndp(ndp_socket.as_ref(), &mut ndp_buf) => match got {
                Ok(r) => {
                    let s = match ndp::parse_solicitation(&ndp_buf[..r.len], r.hop_limit) {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::trace!(interface = %iface.name, from = %r.source, error = %e, "NDP message ignored");
                            continue;
                        }
                    };
                    // Decide before awaiting: the watch guard must not be held across a send.
                    let ours = allowed(&announced.borrow(), IpAddr::V6(s.target), &iface.name);
                    if ours && let Some(sock) = &ndp_socket {
                        let ip = IpAddr::V6(s.target);
                        count(&METRICS.layer2_requests, ip);
                        match sock.send(&ndp::advertisement(s.target, iface.mac, true, false), s.target, r.source).await {
                            Ok(()) => count(&METRICS.layer2_responses, ip),
                            Err(e) => tracing::warn!(interface = %iface.name, error = %e, "sending a neighbor advertisement"),
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(interface = %iface.name, error = %e, "NDP socket failed");
                    return;
                }
            },
        }
    }
}

async fn recv_ndp(
    socket: Option<&NdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<super::socket::ndp::Received> {
    match socket {
        Some(s) => s.recv(buf).await,
        None => std::future::pending().await,
    }
}

const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

async fn gratuitous(iface: &Interface, ip: IpAddr, arp_socket: &ArpSocket, ndp_socket: Option<&NdpSocket>) {
    let sent = match ip {
        IpAddr::V4(v4) => {
            let a = arp_socket.send(&arp::gratuitous(v4, iface.mac, ArpOperation::REQUEST)).await;
            let b = arp_socket.send(&arp::gratuitous(v4, iface.mac, ArpOperation::REPLY)).await;
            a.and(b)
        }
        IpAddr::V6(v6) => match ndp_socket {
            Some(s) => s.send(&ndp::advertisement(v6, iface.mac, false, true), v6, ALL_NODES).await,
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
