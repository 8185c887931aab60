//! The chart's PrometheusRule (MetalLB's alerts) checked and evaluated by Prometheus's own
//! `promtool` (Debian's `prometheus` package) over series exactly as ferrolb exports them:
//! the input series are taken from ferrolb's exposition text, with the target labels a scrape
//! adds.

use std::collections::BTreeMap;
use std::process::Command;

use ferrolb::metrics::{METRICS, PoolLabels};
use frr_sidecar::proto::{AgentStatus, BfdPeer, Neighbor};
use serde_json::{Value, json};

fn promtool() -> Option<String> {
    let ok = Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success());
    (!ok).then(|| "no promtool (apt-get install prometheus)".to_string())
}

/// The series line of `name` whose labels include `has`, from ferrolb's exposition.
fn exported(text: &str, name: &str, has: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(has))
        .unwrap_or_else(|| panic!("ferrolb exports no {name} with {has}:\n{text}"));
    line.rsplit_once(' ').unwrap().0.to_string()
}

/// `series` with the labels a scrape of `pod` adds.
fn scraped(series: &str, pod: &str) -> String {
    let target = format!("pod=\"{pod}\",instance=\"{pod}:7472\"");
    match series.split_once('{') {
        Some((name, rest)) => format!("{name}{{{target},{rest}"),
        None => format!("{series}{{{target}}}"),
    }
}

fn labels(series: &str) -> BTreeMap<String, String> {
    let re = regex::Regex::new(r#"(\w+)="([^"]*)""#).unwrap();
    re.captures_iter(series).map(|c| (c[1].to_string(), c[2].to_string())).collect()
}

fn with(mut l: BTreeMap<String, String>, k: &str, v: &str) -> BTreeMap<String, String> {
    l.insert(k.into(), v.into());
    l
}

fn alert(at: &str, name: &str, expected: Vec<(BTreeMap<String, String>, String)>) -> Value {
    let exp: Vec<Value> = expected
        .into_iter()
        .map(|(l, m)| json!({"exp_labels": l, "exp_annotations": {"message": m}}))
        .collect();
    json!({"eval_time": at, "alertname": name, "exp_alerts": exp})
}

#[test]
fn metallbs_alerts_fire_on_ferrolbs_metrics() {
    require_helm!();
    if let Some(why) = promtool() {
        println!("skipped: {why}");
        return;
    }
    let objects = crate::chart::render_clean(
        r#"{"metrics": {"prometheusRule": {"enabled": true, "excludePools": ["kept-full"]}}}"#,
    );
    let rule = crate::chart::find(&objects, "PrometheusRule", "ferrolb");
    let dir = std::env::temp_dir().join(format!("ferrolb-promtool-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rules.yaml"), json!({"groups": rule["spec"]["groups"]}).to_string()).unwrap();
    let check =
        Command::new("promtool").args(["check", "rules"]).arg(dir.join("rules.yaml")).output().unwrap();
    assert!(check.status.success(), "promtool check rules:\n{}", String::from_utf8_lossy(&check.stdout));

    // What ferrolb exports, set through its own metrics.
    let m = &*METRICS;
    for pool in ["front", "kept-full"] {
        m.addresses_total.get_or_create(&PoolLabels { pool: pool.into() }).set(10);
        m.addresses_in_use_total.get_or_create(&PoolLabels { pool: pool.into() }).set(10);
    }
    m.config_stale.set(1);
    m.config_loaded.set(0);
    // The BGP and BFD families come from frr-agent's status of FRR.
    ferrolb::metrics::frr::enable();
    ferrolb::metrics::frr::set(Some(AgentStatus {
        neighbors: ["192.0.2.1", "192.0.2.2"]
            .iter()
            .map(|peer| Neighbor {
                vrf: "default".into(),
                peer: peer.to_string(),
                remote_port: 179,
                ..Default::default()
            })
            .collect(),
        bfd_peers: vec![BfdPeer {
            vrf: "default".into(),
            peer: "192.0.2.1".into(),
            status: "down".into(),
            ..Default::default()
        }],
        ..Default::default()
    }));
    let text = ferrolb::metrics::render();
    let pool_total = exported(&text, "metallb_allocator_addresses_total", "pool=\"front\"");
    let pool_used = exported(&text, "metallb_allocator_addresses_in_use_total", "pool=\"front\"");
    let full_total = exported(&text, "metallb_allocator_addresses_total", "pool=\"kept-full\"");
    let full_used = exported(&text, "metallb_allocator_addresses_in_use_total", "pool=\"kept-full\"");
    let stale = scraped(&exported(&text, "metallb_k8s_client_config_stale_bool", ""), "speaker-a");
    let loaded = scraped(&exported(&text, "metallb_k8s_client_config_loaded_bool", ""), "speaker-a");
    let down = scraped(&exported(&text, "metallb_bgp_session_up", "peer=\"192.0.2.1:179\""), "speaker-a");
    let up = scraped(&exported(&text, "metallb_bgp_session_up", "peer=\"192.0.2.2:179\""), "speaker-a");
    // The BFD family comes with frr-agent's status; its series as MetalLB's FRR exporter names it.
    let bfd = scraped(
        &text
            .lines()
            .find(|l| l.starts_with("metallb_bfd_session_up{"))
            .map(|l| l.rsplit_once(' ').unwrap().0.to_string())
            .unwrap_or_else(|| r#"metallb_bfd_session_up{peer="192.0.2.1",vrf="default"}"#.into()),
        "speaker-a",
    );

    let mut series = vec![
        json!({"series": stale, "values": "0 0 1 1 1 1 1 1"}),
        json!({"series": loaded, "values": "0 0 0 1 1 1 1 1"}),
        json!({"series": down, "values": "1 1 0 0 0 0 0 0"}),
        json!({"series": up, "values": "1 1 1 1 1 1 1 1"}),
        json!({"series": bfd, "values": "1 1 1 0 0 0 0 0"}),
    ];
    // Two controller replicas may both export the pool figures.
    for pod in ["controller-a", "controller-b"] {
        series.push(json!({"series": scraped(&pool_total, pod), "values": "10x8"}));
        series.push(json!({"series": scraped(&pool_used, pod), "values": "5 8 8 8 9 10 10 10"}));
        series.push(json!({"series": scraped(&full_total, pod), "values": "4x8"}));
        series.push(json!({"series": scraped(&full_used, pod), "values": "4x8"}));
    }
    let front = BTreeMap::from([("pool".to_string(), "front".to_string())]);
    let sev = |l: &BTreeMap<String, String>, s: &str| with(l.clone(), "severity", s);
    let pool_alert = |p: u32, s: &str| (sev(&front, s), format!("address pool front is past {p}% usage"));
    let tests = json!({
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [
                alert("2m", "MetalLBStaleConfig", vec![]),
                alert("4m", "MetalLBStaleConfig", vec![(sev(&labels(&stale), "warning"),
                    "speaker-a: the newest configuration is invalid; the previous one runs".into())]),
                alert("2m", "MetalLBConfigNotLoaded", vec![(sev(&labels(&loaded), "warning"),
                    "speaker-a: no valid configuration loaded yet".into())]),
                alert("4m", "MetalLBConfigNotLoaded", vec![]),
                alert("3m", "MetalLBAddressPoolUsage75Percent", vec![pool_alert(75, "warning")]),
                alert("3m", "MetalLBAddressPoolUsage85Percent", vec![]),
                alert("5m", "MetalLBAddressPoolUsage85Percent", vec![pool_alert(85, "warning")]),
                alert("5m", "MetalLBAddressPoolExhausted", vec![]),
                alert("7m", "MetalLBAddressPoolUsage95Percent", vec![pool_alert(95, "critical")]),
                alert("7m", "MetalLBAddressPoolExhausted", vec![(sev(&front, "critical"),
                    "address pool front is exhausted".into())]),
                alert("2m", "MetalLBBGPSessionDown", vec![]),
                alert("4m", "MetalLBBGPSessionDown", vec![(sev(&labels(&down), "critical"),
                    "speaker-a: BGP session to 192.0.2.1:179 is down".into())]),
                alert("3m", "MetalLBBFDSessionDown", vec![]),
                alert("4m", "MetalLBBFDSessionDown", vec![(sev(&labels(&bfd), "critical"),
                    format!("speaker-a: BFD session to {} is down", labels(&bfd)["peer"]))]),
            ],
        }],
    });
    std::fs::write(dir.join("tests.yaml"), tests.to_string()).unwrap();
    let run = Command::new("promtool").args(["test", "rules"]).arg(dir.join("tests.yaml")).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(run.status.success(), "promtool test rules:\n{said}");
    println!("promtool test rules: {}", said.lines().rfind(|l| !l.trim().is_empty()).unwrap_or_default());
}
