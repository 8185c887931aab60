//! What one decision costs with N Services present, in process (no API server): the
//! controller's pass (plan, write-back, conditions) and a speaker's pass (its node's plan),
//! cold and after one Service changed. The shape is the scale benchmark's (v4, v6 and
//! dual-stack pools, 10 % sharing, an EndpointSlice each, 100 Nodes).
//!
//!     cargo bench --bench plan             # 1,000 and 10,000 Services
//!     cargo bench --bench plan -- --quick  # 1,000 only: a smoke run for scripts/test

use std::fmt::Write;

use std::collections::BTreeSet;
use std::sync::Arc;

use ferrolb::plan::incremental::{Allocations, NodeAnnouncements};
use ferrolb::plan::{self, Inputs, Options, condition, writeback};

const POOLS: &str = concat!(
    include_str!("scale-pools.yaml"),
    "---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: all, namespace: metallb-system}\n"
);

fn service(i: usize) -> String {
    let (pool, families) = match i % 5 {
        0 => ("v6", "ipFamilies: [IPv6]"),
        1 => ("dual", "ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4, IPv6]"),
        _ => ("v4", "ipFamilies: [IPv4]"),
    };
    let sharing = if i % 20 == 2 || i % 20 == 3 {
        format!(", metallb.io/allow-shared-ip: k{}", i / 20)
    } else {
        String::new()
    };
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: bulk, resourceVersion: '1', annotations: {{metallb.io/address-pool: {pool}{sharing}}}}}\n\
         spec: {{type: LoadBalancer, {families}, ports: [{{port: {}}}]}}\n\
         ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s{i}-1, namespace: bulk, labels: {{kubernetes.io/service-name: s{i}}}}}\n\
         addressType: IPv4\nendpoints: [{{addresses: [198.18.64.{}], nodeName: node{:03}, conditions: {{ready: true}}}}]\nports: [{{port: 80}}]\n",
        80 + i % 20,
        i % 250 + 1,
        i % 100
    )
}

/// N Services, their slices and 100 Nodes; with `allocated`, every Service's status and pool
/// annotation already say what the controller decides (a steady cluster).
fn cluster(n: usize, allocated: bool) -> Inputs {
    let mut yaml = String::from(POOLS);
    for i in 0..100 {
        let _ = write!(yaml, "---\napiVersion: v1\nkind: Node\nmetadata: {{name: node{i:03}}}\n");
    }
    for i in 0..n {
        yaml.push_str(&service(i));
    }
    let mut inputs = Inputs::new("metallb-system");
    inputs.add_yaml("bench", &yaml).expect("bench manifests parse");
    if allocated {
        let p = plan::plan(&inputs, &Options::default());
        let by_key: std::collections::HashMap<_, _> =
            p.allocations.iter().map(|a| (a.service.clone(), a)).collect();
        for svc in &mut inputs.services {
            let svc = std::sync::Arc::make_mut(svc);
            let a = by_key[&writeback::key(svc)];
            let ingress = a.ips.iter().map(|ip| serde_json::json!({"ip": ip})).collect::<Vec<_>>();
            svc.status =
                serde_json::from_value(serde_json::json!({"loadBalancer": {"ingress": ingress}})).ok();
            svc.metadata
                .annotations
                .get_or_insert_default()
                .insert(writeback::POOL_ANNOTATION.into(), a.pool.clone());
        }
    }
    inputs
}

/// This thread's CPU time in ms: what a pass costs, whatever else the machine runs (wall
/// clock on a shared 2-core machine measures the neighbours too).
fn cpu_ms() -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the valid pointer it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 * 1000.0 + t.tv_nsec as f64 / 1e6
}

/// Median of `runs` CPU timings of `f`.
fn median(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..runs)
        .map(|_| {
            let t = cpu_ms();
            f();
            cpu_ms() - t
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn controller_pass(inputs: &Inputs) -> usize {
    let p = plan::plan_with_last_good(inputs, &Options::default(), None);
    let changes = writeback::changes(&inputs.services, &p);
    let conditions = condition::conditions(&p, inputs, &[], &[], &[]);
    changes.len() + conditions.len()
}

fn speaker_pass(inputs: &Inputs) -> usize {
    let options = Options { node: Some("node000".into()), ips_from_status: true, ..Default::default() };
    let p = plan::plan_with_last_good(inputs, &options, None);
    p.layer2.map_or(0, |l| l.len())
}

/// One new Service among the N: the controller decides it alone (with its write-back and
/// condition), as after a watch event.
fn controller_change(state: &mut Allocations, steady: &Inputs, i: usize) -> usize {
    let mut one = Inputs { objects: steady.objects.clone(), ..Default::default() };
    one.add_yaml("new", &service(i)).expect("bench manifest parses");
    let changed: BTreeSet<String> = [format!("bulk/s{i}")].into();
    let p = state.decide_changed(&one, &Options::default(), &changed).expect("a decision was kept");
    let changes = writeback::changes(&one.services, &p);
    let conditions = condition::conditions(&p, &one, &[], &[], &[]);
    changes.len() + conditions.len()
}

/// One Service of the N got its IP: a speaker decides it alone.
fn speaker_change(state: &mut NodeAnnouncements, steady: &Inputs, i: usize) -> usize {
    let options = Options { node: Some("node000".into()), ips_from_status: true, ..Default::default() };
    let svc = steady.services[i].clone();
    let key = writeback::key(&svc);
    let one = Inputs {
        objects: steady.objects.clone(),
        services: vec![svc],
        endpoint_slices: vec![steady.endpoint_slices[i].clone()],
        ..Default::default()
    };
    let changed: BTreeSet<String> = [key].into();
    let p = state.decide_changed(&one, &options, &changed).expect("nothing else changed");
    p.layer2.map_or(0, |l| l.len())
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes: &[usize] = if quick { &[1_000] } else { &[1_000, 10_000] };
    for &n in sizes {
        let cold = cluster(n, false);
        let steady = cluster(n, true);
        let runs = if n >= 10_000 { 5 } else { 15 };
        let controller_cold = median(runs, || {
            std::hint::black_box(controller_pass(&cold));
        });
        let controller_steady = median(runs, || {
            std::hint::black_box(controller_pass(&steady));
        });
        let speaker = median(runs, || {
            std::hint::black_box(speaker_pass(&steady));
        });
        let mut controller = Allocations::default();
        controller.decide_all(&steady, &Options::default(), None);
        let mut next = n;
        let controller_change_ms = median(runs * 4, || {
            next += 1;
            std::hint::black_box(controller_change(&mut controller, &steady, next));
        });
        let mut speaker_state = NodeAnnouncements::default();
        let speaker_options =
            Options { node: Some("node000".into()), ips_from_status: true, ..Default::default() };
        speaker_state.decide_all(&steady, &speaker_options, None);
        let mut which = 0;
        let speaker_change_ms = median(runs * 4, || {
            which = (which + 7) % n;
            std::hint::black_box(speaker_change(&mut speaker_state, &steady, which));
        });
        let _ = Arc::strong_count(&steady.services[0]);
        println!(
            "plan services={n} controller_change_ms={controller_change_ms:.2} speaker_change_ms={speaker_change_ms:.2}"
        );
        println!(
            "plan services={n} controller_cold_ms={controller_cold:.1} controller_pass_ms={controller_steady:.1} \
             speaker_pass_ms={speaker:.1} controller_us_per_service={:.1} speaker_us_per_service={:.1}",
            controller_steady * 1000.0 / n as f64,
            speaker * 1000.0 / n as f64,
        );
    }
}
