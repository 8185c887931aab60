//! The speaker's decisions as sequences of inputs, each at a time the test gives. Fixtures:
//! a cluster whose objects the test changes while the speaker reads them ([`Objects`]), worlds
//! written as manifests, and pickers that pull one kind of effect out of a step's answer.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use super::Speaker;
use crate::l2::membership::View;
use crate::l2::quorum::Expected;
use crate::l2::reach::{InterfaceHealth, Interfaces};
use crate::plan::{self, incremental::Dirty};
use crate::service::ServiceKey;
use crate::speaker::effect::{Effect, Log, Metric, Told};
use crate::speaker::input::{Cluster, Input, Now, Observed, Settings};
use crate::speaker::report::NodeReport;

mod announcing;
mod configuration;
mod failing;
mod fencing;
mod restarting;
mod telling;

/// The objects of a cluster: the test changes them, the speaker reads them.
#[derive(Clone)]
struct Objects(Rc<RefCell<(plan::Inputs, Dirty)>>);

impl Objects {
    fn new(yaml: &str) -> Objects {
        Objects(Rc::new(RefCell::new((inputs(yaml), Dirty::everything()))))
    }

    /// The cluster holds `yaml` now; `services` changed, or everything when None.
    fn change(&self, yaml: &str, services: Option<&[&str]>) {
        let mut held = self.0.borrow_mut();
        held.0 = inputs(yaml);
        held.1.merge(match services {
            Some(s) => Dirty { everything: false, services: s.iter().map(|s| s.to_string()).collect() },
            None => Dirty::everything(),
        });
    }
}

impl Cluster for Objects {
    fn take_dirty(&self) -> Dirty {
        std::mem::take(&mut self.0.borrow_mut().1)
    }

    fn inputs(&self) -> plan::Inputs {
        self.0.borrow().0.clone()
    }

    fn inputs_for(&self, services: &BTreeSet<ServiceKey>) -> plan::Inputs {
        let mut inputs = self.inputs();
        inputs.services.retain(|s| services.contains(&plan::writeback::key(s)));
        inputs
    }
}

fn inputs(yaml: &str) -> plan::Inputs {
    let mut i = plan::Inputs::new("metallb-system");
    i.add_yaml("test", yaml).unwrap();
    i
}

const NODES: [&str; 3] = ["node1", "node2", "node3"];

/// Services `web1`.. in namespace shop, each holding an IP of `prefix` (`prefix.1`, ..).
fn services(prefix: &str, n: usize) -> String {
    (1..=n)
        .map(|i| {
            format!(
                "---\napiVersion: v1\nkind: Service\nmetadata: {{name: web{i}, namespace: shop}}\n\
                 spec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n\
                 status: {{loadBalancer: {{ingress: [{{ip: {prefix}.{i}}}]}}}}\n"
            )
        })
        .collect()
}

fn nodes() -> String {
    NODES.iter().map(|n| format!("---\napiVersion: v1\nkind: Node\nmetadata: {{name: {n}}}\n")).collect()
}

/// A layer 2 pool (192.0.2.0/28) answered on `interfaces` (every one when empty), three
/// nodes and `n` Services.
fn layer2_world(interfaces: &[&str], n: usize) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: l2}}\nspec: {{addresses: [192.0.2.0/28]}}\n\
         ---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: l2}}\nspec: {{ipAddressPools: [l2], interfaces: {interfaces:?}}}\n\
         {}{}",
        nodes(),
        services("192.0.2", n)
    )
}

/// A BGP pool (198.51.100.0/28) with `addresses`, one peer, three nodes, `n` Services, and
/// the ConfigMap `bgpextras` when `extras` are given.
fn bgp_world(addresses: &str, n: usize, extras: Option<&str>) -> String {
    let extras = extras.map_or(String::new(), |e| {
        format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: bgpextras}}\ndata: {{extras: {e:?}}}\n"
        )
    });
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: p}}\nspec: {{addresses: [{addresses}]}}\n\
         ---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: p}}\nspec: {{ipAddressPools: [p]}}\n\
         ---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: tor}}\nspec: {{myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.254}}\n\
         {extras}{}{}",
        nodes(),
        services("198.51.100", n)
    )
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn view(live: &[&str]) -> View {
    View { live: set(live) }
}

fn expected(nodes: &[&str]) -> Expected {
    nodes.iter().map(|n| (n.to_string(), None)).collect()
}

/// Interfaces that answer ARP, not NDP.
fn interfaces(names: &[&str]) -> Interfaces {
    let health = InterfaceHealth { serial: 0, arp_error: None, ndp_error: Some("no IPv6 link-local".into()) };
    names.iter().map(|n| (n.to_string(), health.clone())).collect()
}

/// node1's speaker answering ARP/NDP, fencing on, no frr-agent.
fn layer2_settings() -> Settings {
    Settings {
        node: "node1".into(),
        fence: true,
        ready_settle: Duration::from_secs(60),
        frr_log_level: "info".into(),
        layer2: true,
        ..Default::default()
    }
}

/// node1's speaker with an frr-agent, no layer 2.
fn bgp_settings() -> Settings {
    Settings { node: "node1".into(), frr_log_level: "info".into(), bgp: true, ..Default::default() }
}

/// A speaker and the clocks it is stepped with.
struct Lab {
    speaker: Speaker,
    cluster: Objects,
    start: Instant,
    wall: SystemTime,
}

impl Lab {
    /// A speaker in a cluster that holds `yaml`.
    fn new(settings: Settings, yaml: &str, seen: Observed) -> Lab {
        let cluster = Objects::new(yaml);
        // 2026-01-01T00:00:00Z: what the fixtures' timestamps are written against.
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let start = Instant::now();
        let now = Now { at: start, wall };
        let speaker = Speaker::new(settings, Some(Box::new(cluster.clone())), seen, now);
        Lab { speaker, cluster, start, wall }
    }

    fn at(&self, seconds: u64) -> Now {
        let since = Duration::from_secs(seconds);
        Now { at: self.start + since, wall: self.wall + since }
    }

    fn step(&mut self, seconds: u64, input: Input) -> Vec<Effect> {
        self.speaker.step(input, self.at(seconds))
    }

    /// Inputs observed together, as the driver hands over what changed meanwhile.
    fn steps<const N: usize>(&mut self, seconds: u64, inputs: [Input; N]) -> Vec<Effect> {
        self.speaker.steps(inputs, self.at(seconds))
    }
}

/// The IPs of the last layer 2 effect, if any.
fn answered(effects: &[Effect]) -> Option<BTreeSet<IpAddr>> {
    effects.iter().rev().find_map(|e| match e {
        Effect::Layer2(l2) => Some(l2.keys().copied().collect()),
        _ => None,
    })
}

fn logs(effects: &[Effect]) -> Vec<&Log> {
    effects.iter().filter_map(|e| if let Effect::Log(l) = e { Some(l) } else { None }).collect()
}

fn metrics(effects: &[Effect]) -> Vec<&Metric> {
    effects.iter().filter_map(|e| if let Effect::Metric(m) = e { Some(m) } else { None }).collect()
}

fn report(effects: &[Effect]) -> Option<&NodeReport> {
    effects.iter().find_map(|e| if let Effect::Report(r) = e { Some(r) } else { None })
}

/// The FRR configuration handed over, with its extras.
fn frr(effects: &[Effect]) -> Option<(&str, Option<&str>)> {
    effects.iter().find_map(|e| match e {
        Effect::Frr { config, extras, .. } => Some((config.as_str(), extras.as_deref())),
        _ => None,
    })
}

/// The Events, as `reason name`.
fn told(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Event { service, told: Told::Assigned(_) } => {
                service.name.clone().map(|n| format!("nodeAssigned {n}"))
            }
            Effect::Event { service, told: Told::Failed(_) } => {
                service.name.clone().map(|n| format!("announceFailed {n}"))
            }
            _ => None,
        })
        .collect()
}

/// The Services of a set of IPs (`192.0.2.3` is web3).
fn named(ips: &BTreeSet<IpAddr>) -> Vec<String> {
    ips.iter().map(|ip| format!("web{}", ip.to_string().rsplit('.').next().unwrap_or_default())).collect()
}
