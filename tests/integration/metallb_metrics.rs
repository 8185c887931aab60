//! ferrolb's metrics against MetalLB's list (`tests/metallb/metrics.txt`): every MetalLB metric
//! a role should have is there with MetalLB's name, type and labels, and no `metallb_` family
//! exists that MetalLB does not have. The real-FRR and real-API-server tests run [`check`] on
//! what the processes serve; the test here on every family at once, with a value in each.

use std::collections::{BTreeMap, BTreeSet};

pub struct Expected {
    pub name: String,
    pub kind: String,
    pub labels: BTreeSet<String>,
    pub roles: Vec<String>,
}

pub fn expected() -> Vec<Expected> {
    let text = std::fs::read_to_string(crate::repo_root().join("tests/metallb/metrics.txt")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 5, "tests/metallb/metrics.txt: {l:?}");
            Expected {
                name: f[0].to_string(),
                kind: f[1].to_string(),
                labels: f[2].split(',').filter(|s| *s != "-").map(str::to_string).collect(),
                roles: f[3].split(',').map(str::to_string).collect(),
            }
        })
        .collect()
}

/// What one exposition (format 0.0.4) declares: family -> type, and sample name -> the label
/// sets its samples carry.
struct Exposition {
    types: BTreeMap<String, String>,
    samples: BTreeMap<String, BTreeSet<BTreeSet<String>>>,
}

fn read(text: &str) -> Exposition {
    let mut e = Exposition { types: BTreeMap::new(), samples: BTreeMap::new() };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            e.types.insert(name.to_string(), kind.to_string());
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            let labels = match line[end..].strip_prefix('{') {
                // Label values here never hold `,` or `=` (IPs, names), so splitting is enough.
                Some(rest) => rest
                    .split('}')
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_string()))
                    .collect(),
                None => BTreeSet::new(),
            };
            e.samples.entry(line[..end].to_string()).or_default().insert(labels);
        }
    }
    e
}

/// Every problem with `text` as `role`'s metrics; `with_samples` names the metrics that must
/// hold a sample (a family with none cannot show its labels, and a labelled one with none is
/// not written at all).
pub fn check(text: &str, role: &str, with_samples: &[&str]) -> Vec<String> {
    let e = read(text);
    let all = expected();
    let mut problems = Vec::new();
    for m in all.iter().filter(|m| m.roles.iter().any(|r| r == role)) {
        let required = with_samples.contains(&m.name.as_str());
        match e.types.get(&m.name) {
            // A labelled family with no sample yet is left out, by MetalLB's client as by this one.
            None if !required && !m.labels.is_empty() => {}
            None => problems.push(format!("{}: missing (no TYPE line)", m.name)),
            Some(k) if *k != m.kind => {
                problems.push(format!("{}: type {k}, MetalLB's is {}", m.name, m.kind))
            }
            Some(_) => {}
        }
        let sets = e.samples.get(&m.name);
        for set in sets.into_iter().flatten() {
            if *set != m.labels {
                problems.push(format!("{}: labels {set:?}, MetalLB's are {:?}", m.name, m.labels));
            }
        }
        if required && sets.is_none() {
            problems.push(format!("{}: no sample", m.name));
        }
    }
    // A `metallb_` name MetalLB does not have is a misspelling (`…_received_total`, say).
    let known: BTreeSet<&str> = all.iter().map(|m| m.name.as_str()).collect();
    for name in e.types.keys().chain(e.samples.keys()).filter(|n| n.starts_with("metallb_")) {
        if !known.contains(name.as_str()) {
            problems.push(format!("{name}: not a MetalLB metric"));
        }
    }
    problems
}

/// This process's exposition with one value in every family.
fn populated() -> String {
    use ferrolb::metrics::{AnnouncedLabels, IpLabels, METRICS, PoolLabels};
    use frr_sidecar::proto::{AgentStatus, BfdCounters, BfdPeer, MessageCounters, Neighbor};
    let pool = PoolLabels { pool: "front".into() };
    for f in [
        &METRICS.addresses_total,
        &METRICS.addresses_in_use_total,
        &METRICS.ipv4_addresses_total,
        &METRICS.ipv4_addresses_in_use_total,
        &METRICS.ipv6_addresses_total,
        &METRICS.ipv6_addresses_in_use_total,
    ] {
        f.get_or_create(&pool).set(1);
    }
    METRICS.k8s_updates.inc();
    let ip = IpLabels { ip: "192.0.2.10".into() };
    for f in [&METRICS.layer2_requests, &METRICS.layer2_responses, &METRICS.layer2_gratuitous] {
        f.get_or_create(&ip).inc();
    }
    let announced = AnnouncedLabels {
        ip: "192.0.2.10".into(),
        node: "node1".into(),
        protocol: "layer2".into(),
        service: "shop/web".into(),
    };
    METRICS.announced.get_or_create(&announced).set(1);
    ferrolb::metrics::frr::enable();
    ferrolb::metrics::frr::set(Some(AgentStatus {
        neighbors: vec![Neighbor {
            vrf: "default".into(),
            peer: "192.0.2.1".into(),
            established: true,
            messages: Some(MessageCounters::default()),
            ..Default::default()
        }],
        bfd_peers: vec![BfdPeer {
            vrf: "default".into(),
            peer: "192.0.2.1".into(),
            status: "up".into(),
            counters: Some(BfdCounters::default()),
            ..Default::default()
        }],
        ..Default::default()
    }));
    ferrolb::metrics::render()
}

/// One value in every family, in this process, then the whole list checked for both roles.
#[test]
fn every_metallb_metric_has_metallbs_name_type_and_labels() {
    let text = populated();
    let all: Vec<String> = expected().into_iter().map(|m| m.name).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    for role in ["controller", "speaker"] {
        let problems = check(&text, role, &all);
        assert!(problems.is_empty(), "{role}:\n{}\n\n{text}", problems.join("\n"));
    }
    // MetalLB's layer 2 counters carry no `_total`, in the samples Prometheus stores too.
    assert!(text.contains("\nmetallb_layer2_requests_received{ip=\"192.0.2.10\"} 1\n"), "{text}");
    // ferrolb's own histograms stay beside them.
    assert!(text.contains("# TYPE ferrolb_frr_apply_seconds histogram"), "{text}");
}

/// Prometheus' own parser reads the exposition (`promtool check metrics`, from Debian's
/// `prometheus`); its only complaints may be about `_total` suffixes (wanted on counters, not
/// on gauges) of names MetalLB chose otherwise.
#[test]
fn prometheus_reads_the_exposition() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        println!("skipped: no promtool (Debian's prometheus package has it)");
        return;
    };
    let text = populated();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // 1: it could not parse the text; 3: lint findings, read below.
    assert_ne!(out.status.code(), Some(1), "{said}\n{text}");
    let metallb: Vec<String> = expected().into_iter().map(|m| m.name).collect();
    for line in said.lines().filter(|l| !l.trim().is_empty()) {
        let name = line.split_whitespace().next().unwrap_or("");
        let suffix = line.ends_with("counter metrics should have \"_total\" suffix")
            || line.ends_with("non-counter metrics should not have \"_total\" suffix");
        let metallbs_own = metallb.iter().any(|m| m == name) && suffix;
        assert!(metallbs_own, "promtool: {line}\n{said}");
    }
}

#[test]
fn a_misspelt_or_mistyped_metric_is_caught() {
    let text = "# TYPE metallb_layer2_requests_received counter\n\
                metallb_layer2_requests_received_total{ip=\"192.0.2.1\"} 1\n\
                # TYPE metallb_bgp_session_up counter\nmetallb_bgp_session_up{peer=\"p\",node=\"n\"} 1\n";
    let problems = check(text, "speaker", &["metallb_bgp_session_up"]).join("\n");
    for want in [
        "metallb_layer2_requests_received_total: not a MetalLB metric",
        "metallb_bgp_session_up: type counter, MetalLB's is gauge",
        "metallb_bgp_session_up: labels",
        "metallb_k8s_client_config_loaded_bool: missing",
    ] {
        assert!(problems.contains(want), "{want} not in\n{problems}");
    }
}
