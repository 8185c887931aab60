//! The scale benchmark (`scripts/bench-scale`; ignored in the normal test run): against a real
//! kube-apiserver, N LoadBalancer Services (`FERROLB_SCALE_SERVICES`, default 10,000) over v4,
//! v6 and dual-stack pools with 10 % sharing an IP, an EndpointSlice each, 100 Nodes. It prints
//! one `scale …` line: how long a cold controller takes to give them all IPs beside the floor a
//! bare client sets for the same number of status writes with the same parallelism, both roles'
//! resident memory, a restart, the decision time per change, churn latency at 20 Services/s
//! (in the start-up's tail, then steady) beside what a bare client's churn costs on the same
//! API server at the same moments.
//! Figures, not assertions: the targets are judged from the line.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};

use crate::fabric::Running;
use crate::kube_lab::KubeLab;

const POOLS: &str = concat!(
    include_str!("../../benches/scale-pools.yaml"),
    "---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: all, namespace: metallb-system}\n"
);

/// Service `i` of the benchmark: every fifth IPv6, every fifth dual-stack, one in ten sharing
/// its IP with its neighbour (same pool and key, another port). No NodePorts: 10,000 would not
/// fit the default NodePort range.
fn service(ns: &str, i: usize, class: Option<&str>) -> Service {
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
    let class = class.map(|c| format!(", loadBalancerClass: {c}")).unwrap_or_default();
    serde_saphyr::from_str(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: {ns}, annotations: {{metallb.io/address-pool: {pool}{sharing}}}}}\n\
         spec: {{type: LoadBalancer, allocateLoadBalancerNodePorts: false, {families}, ports: [{{port: {}}}]{class}}}\n",
        80 + i % 20
    ))
    .unwrap()
}

fn slice(ns: &str, i: usize) -> EndpointSlice {
    serde_saphyr::from_str(&format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s{i}-1, namespace: {ns}, labels: {{kubernetes.io/service-name: s{i}}}}}\n\
         addressType: IPv4\nendpoints: [{{addresses: [198.18.64.{}], nodeName: node{:03}, conditions: {{ready: true}}}}]\nports: [{{port: 80}}]\n",
        i % 250 + 1,
        i % 100
    ))
    .unwrap()
}

async fn each<T, F, Fut>(items: Vec<T>, f: F)
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    futures::stream::iter(items).for_each_concurrent(ferrolb_writers(), f).await;
}

/// The controller's parallelism, so the floor is measured at the same.
fn ferrolb_writers() -> usize {
    16
}

/// One field of /proc/PID/status in MiB: VmRSS (resident), RssAnon (heap and stacks; the rest
/// of RSS is the binary's pages), VmHWM (the highest RSS so far).
fn mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// `role_rss_mib=… role_anon_mib=… role_peak_mib=…`
fn memory(role: &str, pid: u32) -> String {
    let f = |field| mib(pid, field);
    format!(
        "{role}_rss_mib={:.0} {role}_anon_mib={:.0} {role}_peak_mib={:.0}",
        f("VmRSS"),
        f("RssAnon"),
        f("VmHWM")
    )
}

fn scrape(port: u16) -> String {
    let out =
        Command::new("curl").args(["-sf", &format!("http://127.0.0.1:{port}/metrics")]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The binary to measure: `FERROLB_BIN` (the release build, from scripts/bench-scale) or the
/// test build.
fn binary() -> std::path::PathBuf {
    std::env::var_os("FERROLB_BIN").map_or_else(|| crate::ferrolb_bin().to_path_buf(), Into::into)
}

fn start(lab: &KubeLab, role: &[&str], port: u16, log: &str) -> Running {
    Running(
        Command::new(binary())
            .args(role)
            .args(["--metrics-bind", &format!("127.0.0.1:{port}"), "--kubeconfig"])
            .arg(lab.kubeconfig())
            .env("RUST_LOG", "warn,ferrolb::controller=info,ferrolb::speaker=info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(lab.dir.join(log)).unwrap())
            .spawn()
            .unwrap(),
    )
}

async fn ips(client: &Client) -> BTreeMap<String, Vec<String>> {
    let api: Api<Service> = Api::namespaced(client.clone(), "bulk");
    let mut out = BTreeMap::new();
    let mut params = ListParams::default().limit(2000);
    loop {
        let page = api.list(&params).await.unwrap();
        for s in &page.items {
            out.insert(s.metadata.name.clone().unwrap_or_default(), ferrolb::plan::writeback::current_ips(s));
        }
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => params = params.continue_token(&c),
            _ => return out,
        }
    }
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(((v.len().max(1) - 1) as f64 * p).round() as usize).copied().unwrap_or(0.0)
}

/// What the bare client does for a Service: one status write with its IP, as ferrolb's one.
async fn write_ip(api: &Api<Service>, name: &str, ip: &str) -> kube::Result<Service> {
    let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(patch)).await
}

/// 200 Services of `class` named `{prefix}{i}` created in `ns` at 20 a second: for each, ms from
/// its create to the first watch event that shows it an IP.
async fn churn(client: &Client, ns: &str, class: Option<&str>, prefix: &str) -> BTreeMap<String, f64> {
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::<String, Instant>::new()));
    let watch = {
        let (api, seen) = (api.clone(), seen.clone());
        tokio::spawn(async move {
            let mut events = std::pin::pin!(kube::runtime::watcher(api, Default::default()));
            while let Some(Ok(e)) = events.next().await {
                if let kube::runtime::watcher::Event::Apply(s) = e
                    && !ferrolb::plan::writeback::current_ips(&s).is_empty()
                {
                    seen.lock()
                        .unwrap()
                        .entry(s.metadata.name.clone().unwrap_or_default())
                        .or_insert_with(Instant::now);
                }
            }
        })
    };
    let mut created = BTreeMap::new();
    for i in 0..200 {
        let t = Instant::now();
        let mut svc = service(ns, i, class);
        svc.metadata.name = Some(format!("{prefix}{i}"));
        api.create(&PostParams::default(), &svc).await.unwrap();
        created.insert(format!("{prefix}{i}"), t);
        tokio::time::sleep(Duration::from_millis(50).saturating_sub(t.elapsed())).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    watch.abort();
    let seen = seen.lock().unwrap().clone();
    created
        .into_iter()
        .filter_map(|(name, t)| seen.get(&name).map(|s| (name, s.duration_since(t).as_secs_f64() * 1000.0)))
        .collect()
}

/// ferrolb's churn and, at the same moments, a bare client's (Services of a class ferrolb
/// ignores, given an IP by the floor writer as soon as it sees them): (ferrolb's, the floor's,
/// ferrolb's by Service name).
async fn churn_beside_floor(client: &Client, prefix: &str) -> (Vec<f64>, Vec<f64>, BTreeMap<String, f64>) {
    let (ours, floor) = futures::join!(
        churn(client, "churn", None, prefix),
        churn(client, "floor", Some("bench/none"), prefix)
    );
    (ours.values().copied().collect(), floor.values().copied().collect(), ours)
}

/// etcd's revision as the API server reports it: it moves with every write to any object.
async fn revision(client: &Client) -> u64 {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let list = api.list_metadata(&ListParams::default().limit(1)).await.unwrap();
    list.metadata.resource_version.and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// Waits until the API server takes fewer than 10 writes in 2 s: the roles' start-up writes
/// (Events, conditions, reports) done. Seconds waited.
async fn settled(client: &Client) -> f64 {
    let t = Instant::now();
    let mut last = revision(client).await;
    while t.elapsed() < Duration::from_secs(600) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = revision(client).await;
        if now.saturating_sub(last) < 10 {
            break;
        }
        last = now;
    }
    t.elapsed().as_secs_f64()
}

#[test]
#[ignore = "a benchmark: scripts/bench-scale"]
fn scale() {
    require_kube!();
    let n: usize =
        std::env::var("FERROLB_SCALE_SERVICES").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let lab = KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        let client = lab.prepared(&["metallb-system", "bulk", "floor", "churn"]).await;
        let nodes: Api<Node> = Api::all(client.clone());
        each((0..100).collect(), |i| {
            let nodes = nodes.clone();
            async move {
                let node: Node = serde_saphyr::from_str(&format!("apiVersion: v1\nkind: Node\nmetadata: {{name: node{i:03}}}\n")).unwrap();
                nodes.create(&PostParams::default(), &node).await.unwrap();
            }
        })
        .await;
        let mut inputs = ferrolb::plan::Inputs::new("metallb-system");
        inputs.add_yaml("pools", POOLS).unwrap();
        crate::kube_controller::create_all(&client, &inputs.objects.pools).await;
        crate::kube_controller::create_all(&client, &inputs.objects.l2_advertisements).await;

        // The floor: the same number of status writes by a bare client, on Services of a class
        // ferrolb ignores, removed before ferrolb starts.
        let floor: Api<Service> = Api::namespaced(client.clone(), "floor");
        each((0..n).collect(), |i| {
            let floor = floor.clone();
            async move {
                floor.create(&PostParams::default(), &service("floor", i, Some("bench/none"))).await.unwrap();
            }
        })
        .await;
        let t = Instant::now();
        each((0..n).collect(), |i| {
            let floor = floor.clone();
            async move {
                let ip = format!("198.19.{}.{}", i / 250, i % 250);
                write_ip(&floor, &format!("s{i}"), &ip).await.unwrap();
            }
        })
        .await;
        let api_floor = t.elapsed().as_secs_f64();
        let _ = floor.delete_collection(&Default::default(), &ListParams::default()).await;

        let services: Api<Service> = Api::namespaced(client.clone(), "bulk");
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "bulk");
        each((0..n).collect(), |i| {
            let (services, slices) = (services.clone(), slices.clone());
            async move {
                slices.create(&PostParams::default(), &slice("bulk", i)).await.unwrap();
                services.create(&PostParams::default(), &service("bulk", i, None)).await.unwrap();
            }
        })
        .await;

        let port = crate::kube_lab::free_port();
        let controller = start(&lab, &["controller", "--webhook-port", "0", "--leader-elect", "false"], port, "controller.log");
        let t = Instant::now();
        // Where the time goes: listing the cluster, then deciding and writing.
        let mut listed_at = None;
        while sample(&scrape(port), "ferrolb_allocation_seconds_count") < n as f64 {
            assert!(t.elapsed() < Duration::from_secs(1800), "not allocated in 30 min\n{}", lab.log("controller.log"));
            let log = || std::fs::read_to_string(lab.dir.join("controller.log")).unwrap_or_default();
            if listed_at.is_none() && log().contains("cluster listed") {
                listed_at = Some(t.elapsed().as_secs_f64());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let allocate = t.elapsed().as_secs_f64();
        let cold_listed = listed_at.unwrap_or(allocate);
        // Conditions and pool counts follow the IPs; let them land before measuring memory.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let controller_memory = memory("controller", controller.0.id());
        let controller_rss = mib(controller.0.id(), "VmRSS");
        let writes = sample(&scrape(port), "metallb_k8s_client_updates_total");
        let before = ips(&client).await;
        assert_eq!(before.values().filter(|v| !v.is_empty()).count(), n, "every Service holds an IP");

        // The speaker of one node, neither layer 2 nor FRR: what watching and planning cost.
        let sport = crate::kube_lab::free_port();
        let speaker = start(&lab, &["speaker", "--node", "node000"], sport, "speaker.log");
        let t = Instant::now();
        while sample(&scrape(sport), "ferrolb_plan_seconds_count") < 1.0 {
            assert!(t.elapsed() < Duration::from_secs(300), "the speaker never planned\n{}", lab.log("speaker.log"));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;

        // Churn: 20 Services a second for 10 s with the N present, create -> status written;
        // by ferrolb and, at the same moments, by a bare client that writes an IP as soon as it
        // sees a Service: the part of churn that is the API server's (two watch deliveries and
        // a write) under the same load. Twice: at once, in the tail of the start-up (the cold
        // controller's last Events and conditions, the new speaker's reports and the conditions
        // they bring), and once the API server is quiet again: the steady state.
        let floor_writer = {
            let floor = floor.clone();
            tokio::spawn(async move {
                let mut events = std::pin::pin!(kube::runtime::watcher(floor.clone(), Default::default()));
                while let Some(Ok(e)) = events.next().await {
                    if let kube::runtime::watcher::Event::Apply(s) = e
                        && ferrolb::plan::writeback::current_ips(&s).is_empty()
                    {
                        let floor = floor.clone();
                        tokio::spawn(async move {
                            let _ = write_ip(&floor, &s.metadata.name.unwrap_or_default(), "198.19.255.1").await;
                        });
                    }
                }
            })
        };
        let (startup_ms, startup_floor_ms, _) = churn_beside_floor(&client, "t").await;
        let settle_s = settled(&client).await;
        let (c0, s0) = (scrape(port), scrape(sport));
        let (churn_ms, churn_floor_ms, by_name) = churn_beside_floor(&client, "c").await;
        let (c1, s1) = (scrape(port), scrape(sport));
        floor_writer.abort();
        let mean_ms = |a: &str, b: &str| {
            let count = sample(b, "ferrolb_plan_seconds_count") - sample(a, "ferrolb_plan_seconds_count");
            (sample(b, "ferrolb_plan_seconds_sum") - sample(a, "ferrolb_plan_seconds_sum")) / count.max(1.0) * 1000.0
        };
        let (controller_decide_ms, speaker_plan_ms) = (mean_ms(&c0, &c1), mean_ms(&s0, &s1));
        let full = |a: &str, b: &str| sample(b, "ferrolb_plan_full_passes_total") - sample(a, "ferrolb_plan_full_passes_total");
        let (controller_full, speaker_full) = (full(&c0, &c1), full(&s0, &s1));
        // Where the slow ones fall in the churn: a backlog early on, or spread out.
        let slowest: Vec<String> = {
            let mut by: Vec<(&f64, &String)> = by_name.iter().map(|(name, ms)| (ms, name)).collect();
            by.sort_by(|a, b| b.0.total_cmp(a.0));
            by.iter().take(3).map(|(ms, name)| format!("{name}:{ms:.0}")).collect()
        };
        let speaker_memory = memory("speaker", speaker.0.id());
        // The controller again, after the churn: its cold start's Events and conditions written.
        let controller_later = mib(controller.0.id(), "VmRSS");
        let speaker_rss = mib(speaker.0.id(), "VmRSS");
        drop(speaker);

        // A restart: how long until it listed, and whether anything moved.
        drop(controller);
        let t = Instant::now();
        let _controller = start(&lab, &["controller", "--webhook-port", "0", "--leader-elect", "false"], port, "controller-2.log");
        let log = lab.dir.join("controller-2.log");
        while !std::fs::read_to_string(&log).unwrap_or_default().contains("cluster listed") {
            assert!(t.elapsed() < Duration::from_secs(300));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let listed = t.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let after = ips(&client).await;
        let changed = before.iter().filter(|(k, v)| after.get(*k) != Some(v)).count();
        println!(
            "scale services={n} controller_allocate_s={allocate:.1} controller_listed_s={cold_listed:.1} api_floor_s={api_floor:.1} ratio={:.2} writes_per_service={:.2} {controller_memory} controller_later_rss_mib={controller_later:.0} controller_bytes_per_service={:.0} controller_restart_listed_s={listed:.2} restart_ip_changes={changed} {speaker_memory} speaker_bytes_per_service={:.0} speaker_plan_ms={speaker_plan_ms:.1} controller_decide_ms={controller_decide_ms:.1} churn_n={} churn_p50_ms={:.0} churn_p99_ms={:.0} churn_floor_p50_ms={:.0} churn_floor_p99_ms={:.0} churn_full_passes={controller_full}/{speaker_full} churn_slowest={} settle_s={settle_s:.0} startup_churn_p50_ms={:.0} startup_churn_p99_ms={:.0} startup_churn_floor_p50_ms={:.0} startup_churn_floor_p99_ms={:.0}",
            allocate / api_floor,
            writes / n as f64,
            controller_rss * 1048576.0 / n as f64,
            speaker_rss * 1048576.0 / n as f64,
            churn_ms.len(),
            pct(&churn_ms, 0.5),
            pct(&churn_ms, 0.99),
            pct(&churn_floor_ms, 0.5),
            pct(&churn_floor_ms, 0.99),
            slowest.join(","),
            pct(&startup_ms, 0.5),
            pct(&startup_ms, 0.99),
            pct(&startup_floor_ms, 0.5),
            pct(&startup_floor_ms, 0.99),
        );
    });
}
