//! Nothing changes, nothing is written: once three layer 2 speakers and the controller have
//! settled on a real API server, a minute passes with no write but the leader's lease
//! renewals (no ServiceL2Status, ConfigurationState, Service status, condition or Event
//! rewritten; MetalLB 0.16.0 rewrote status objects about twice a second, its #3063), and the
//! API server restarting (every watch relists) writes nothing either. Counted from the API
//! server's own audit log.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;

use crate::fabric::Running;
use crate::frr_lab::wait_for;
use crate::kube_lab::{KubeLab, Write};
use crate::l2_lab::answering;
use crate::l2_lab_kube::{l2_objects, l2_on_kube, speaker};
use crate::l2_lab_members::all_live;

const NODES: usize = 3;

/// Writes by ferrolb (the API server's own bookkeeping aside) after the first `from`.
fn ferrolb_writes(kube: &KubeLab, from: usize) -> Vec<Write> {
    kube.writes().into_iter().skip(from).filter(|w| !w.user.starts_with("system:")).collect()
}

/// Waits until ferrolb has written nothing but leases for `quiet`; the writes seen meanwhile.
fn settle(kube: &KubeLab, quiet: Duration, limit: Duration) -> Result<(), Vec<Write>> {
    let start = std::time::Instant::now();
    loop {
        let from = kube.writes().len();
        std::thread::sleep(quiet);
        let w: Vec<Write> = ferrolb_writes(kube, from).into_iter().filter(|w| !is_lease(w)).collect();
        if w.is_empty() {
            return Ok(());
        }
        if start.elapsed() > limit {
            return Err(w);
        }
    }
}

fn is_lease(w: &Write) -> bool {
    w.object.starts_with("leases ")
}

/// How many of each write, for the log and the failure message.
fn tally(writes: &[Write]) -> BTreeMap<String, usize> {
    let mut t = BTreeMap::new();
    for w in writes {
        *t.entry(format!("{} {} ({})", w.verb, w.object, w.code)).or_insert(0) += 1;
    }
    t
}

#[test]
fn a_settled_cluster_writes_nothing_but_the_leaders_lease() {
    if let Some(why) = crate::l2_lab::unavailable() {
        println!("skipped: {why}");
        return;
    }
    require_kube!();
    let (lab, kube, _forwards) = l2_on_kube(NODES);
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        let client = l2_objects(&kube, NODES).await;
        let services = Api::<Service>::namespaced(client.clone(), "shop");
        let slices = Api::<EndpointSlice>::namespaced(client.clone(), "shop");
        for (i, name) in ["web", "api"].iter().enumerate() {
            crate::kube_speaker::create_served(&services, &slices, name, &format!("203.0.113.{}", 50 + i))
                .await;
        }
    });
    let controller = ["controller", "--webhook-port", "0", "--metrics-bind", "127.0.0.1:0"];
    let _controller: Running = kube.run_ferrolb(
        &[&controller[..], &["--memberlist-secret", "ferrolb-memberlist"]].concat(),
        "controller.log",
    );
    let _speakers: Vec<Running> = (0..NODES).map(|i| speaker(&lab, &kube, i)).collect();
    let converged = wait_for(Duration::from_secs(40), || {
        (0..NODES).all(|i| lab.log(i).contains(&all_live(NODES)))
            && ["192.0.2.200", "192.0.2.201"].iter().all(|ip| answering(&lab, ip).len() == 1)
    });
    assert!(converged.is_some(), "{}\n{}", lab.logs(), kube.log("controller.log"));
    let settled = settle(&kube, Duration::from_secs(5), Duration::from_secs(60));
    assert!(
        settled.is_ok(),
        "still writing a minute after converging: {:#?}",
        settled.map_err(|w| tally(&w))
    );

    // The audit log sees every kind a role writes (so the zero below counts them): each was
    // written while the cluster converged.
    let converging = ferrolb_writes(&kube, 0);
    for kind in ["services/status ", "servicel2statuses", "configurationstates", "events ", "secrets "] {
        assert!(
            converging.iter().any(|w| w.object.starts_with(kind)),
            "no {kind} write: {:#?}",
            tally(&converging)
        );
    }

    let from = kube.writes().len();
    std::thread::sleep(Duration::from_secs(60));
    let minute = ferrolb_writes(&kube, from);
    let (leases, others): (Vec<Write>, Vec<Write>) = minute.into_iter().partition(is_lease);
    println!("a settled minute: {} lease writes {:?}, {} others", leases.len(), tally(&leases), others.len());
    assert!(
        others.is_empty(),
        "written in a minute where nothing changed: {:#?}\n{}",
        tally(&others),
        lab.logs()
    );

    // Every watch relists after the API server restarts: what each role sees is what it wrote,
    // so it writes nothing again.
    let from = kube.writes().len();
    kube.restart_apiserver();
    std::thread::sleep(Duration::from_secs(30));
    let after = ferrolb_writes(&kube, from);
    let (leases, others): (Vec<Write>, Vec<Write>) = after.into_iter().partition(is_lease);
    println!("30 s after the API server restarted: {} lease writes, {} others", leases.len(), others.len());
    assert!(others.is_empty(), "written after a relist: {:#?}\n{}", tally(&others), lab.logs());
    assert!(["192.0.2.200", "192.0.2.201"].iter().all(|ip| answering(&lab, ip).len() == 1), "{}", lab.logs());
}
