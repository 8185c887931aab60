//! The driver without sockets: effects carried out into a detached backend and responder,
//! and what the watches hand over.

use crate::api::AnnounceFailure;
use crate::l2::reach::Announced;
use crate::speaker::bgp_backend::Desired;

use super::*;

struct Sinks {
    hands: Hands,
    /// What the backend was asked to run.
    frr: watch::Receiver<Option<Desired>>,
    /// What the responder was asked to answer for.
    answering: watch::Receiver<Announced>,
    report: watch::Receiver<Option<NodeReport>>,
}

/// Hands with a detached backend and responder (on the current runtime).
fn sinks() -> Sinks {
    let (backend, frr) = BgpBackend::detached();
    let (responder, answering) = Responder::detached();
    let (report, report_rx) = watch::channel(None);
    let has_config = Arc::new(AtomicBool::new(false));
    let hands = Hands {
        backend: Some(backend),
        responder: Some(responder),
        membership: None,
        report,
        events: None,
        has_config,
    };
    Sinks { hands, frr, answering, report: report_rx }
}

#[tokio::test]
async fn each_effect_reaches_what_carries_it_out() {
    let mut s = sinks();
    let failure =
        AnnounceFailure { service: "shop/web1".into(), protocol: "bgp".into(), reason: "FRR refused".into() };
    // Failures amend a report: before the first, there is none to amend.
    let failures = Effect::Failures { failures: vec![failure.clone()], unanswered: Default::default() };
    s.hands.carry_out(failures.clone()).await;
    assert_eq!(*s.report.borrow(), None);

    let config = "router bgp 64512\n network 198.51.100.1/32\n".to_string();
    let extras = Some("ip prefix-list x seq 5 permit 203.0.113.0/24\n".to_string());
    s.hands.carry_out(Effect::Frr { config: config.clone(), extras: extras.clone(), announcements: 1 }).await;
    assert_eq!(*s.frr.borrow(), Some(Desired { config, extras }));
    assert!(s.hands.has_config.load(Ordering::Relaxed), "the frr readiness check waits for it now");

    let l2: Announced = [("192.0.2.1".parse().unwrap(), None)].into();
    s.hands.carry_out(Effect::Layer2(l2.clone())).await;
    assert_eq!(*s.answering.borrow(), l2);

    let report = NodeReport { errors: Some("bad pool".into()), ..Default::default() };
    s.hands.carry_out(Effect::Report(report.clone())).await;
    assert_eq!(*s.report.borrow(), Some(report.clone()));
    s.hands.carry_out(failures).await;
    assert_eq!(*s.report.borrow(), Some(NodeReport { failures: vec![failure], ..report }));

    // Nothing to carry them out here: nothing happens.
    s.hands.carry_out(Effect::Seeds(vec![("node2".into(), "192.0.2.12:7946".parse().unwrap())])).await;
    s.hands.carry_out(Effect::Leave).await;
}

#[tokio::test]
async fn a_decided_frr_configuration_reaches_the_backend() {
    let mut s = sinks();
    let settings =
        Settings { node: "node1".into(), frr_log_level: "info".into(), bgp: true, ..Default::default() };
    let mut speaker = Speaker::new(settings, None, Observed::default(), now());
    let mut objects = plan::Inputs::new("metallb-system");
    let yaml = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: [198.51.100.0/28]}\n\
        ---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: p}\nspec: {ipAddressPools: [p]}\n\
        ---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: tor}\nspec: {myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.254}\n\
        ---\napiVersion: v1\nkind: Node\nmetadata: {name: node1}\n\
        ---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\n";
    objects.add_yaml("test", yaml).unwrap();
    for effect in speaker.steps([Input::Manifests(Ok(objects))], now()) {
        s.hands.carry_out(effect).await;
    }
    let asked = s.frr.borrow().clone().map(|d| d.config).unwrap_or_default();
    assert!(asked.contains("network 198.51.100."), "{asked}");
}

fn peers(seeds: &[(&str, &str)]) -> peers::Peers {
    let seeds: Vec<(String, std::net::SocketAddr)> =
        seeds.iter().map(|(n, a)| (n.to_string(), a.parse().unwrap())).collect();
    let expected = seeds.iter().map(|(n, _)| (n.clone(), None)).collect();
    peers::Peers { expected, seeds, ..Default::default() }
}

fn view(live: &[&str]) -> View {
    View { live: live.iter().map(|n| n.to_string()).collect() }
}

#[test]
fn what_changed_meanwhile_goes_with_the_input_at_its_latest_and_is_then_seen() {
    let (view_tx, view_rx) = watch::channel(view(&["node1"]));
    let (peers_tx, peers_rx) = watch::channel(peers(&[]));
    let (frr_tx, frr_rx) = watch::channel(BackendReport::default());
    let (interfaces_tx, interfaces_rx) = watch::channel(None);
    let mut w = Watches {
        view: Some(view_rx),
        peers: Some(peers_rx),
        frr: Some(frr_rx),
        interfaces: Some(interfaces_rx),
    };
    w.observed();
    assert!(w.pending().is_empty());

    view_tx.send_replace(view(&["node1", "node2"]));
    view_tx.send_replace(view(&["node1", "node2", "node3"]));
    frr_tx.send_replace(BackendReport { applies: 3, ..Default::default() });
    let pending = w.pending();
    assert_eq!(pending.len(), 2, "{pending:?}");
    assert!(matches!(&pending[0], Input::View(v) if v.live.len() == 3), "the latest view: {pending:?}");
    assert!(matches!(&pending[1], Input::Frr(r) if r.applies == 3), "{pending:?}");
    assert!(w.pending().is_empty(), "taken once");

    let joined = peers(&[("node2", "192.0.2.12:7946")]);
    peers_tx.send_replace(joined.clone());
    assert!(matches!(&w.pending()[..], [Input::Peers(p)] if *p == joined));
    // A watch that closed is left to the wait to report.
    interfaces_tx.send_replace(Some(Default::default()));
    drop(interfaces_tx);
    assert!(w.pending().is_empty());
}

#[test]
fn a_speaker_list_changed_while_membership_started_is_news() {
    let joined = peers(&[("node2", "192.0.2.12:7946")]);
    let (tx, rx) = watch::channel(joined.clone());
    let mut w = Watches { view: None, peers: Some(rx), frr: None, interfaces: None };
    w.observed();
    assert!(w.since_joining(Some(joined.clone())).is_none(), "what membership started with");

    let now = peers(&[("node2", "192.0.2.12:7946"), ("node3", "192.0.2.13:7946")]);
    tx.send_replace(now.clone());
    let observed = w.observed();
    assert_eq!(observed.expected.as_ref(), Some(&now.expected));
    assert!(matches!(w.since_joining(Some(joined)), Some(Input::Peers(p)) if p == now));
    assert!(w.since_joining(None).is_none(), "no membership, no seeds");
}
