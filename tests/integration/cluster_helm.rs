//! `helm install / upgrade / uninstall` of charts/ferrolb against the cluster lab, through a real
//! Helm (Helm v4 as a library, PyPI's helm-python-sdk, as chart.rs uses it).

use std::process::Command;
use std::time::{Duration, Instant};

use crate::cluster_lab::ClusterLab;

const HELPER: &str = r#"
import json, sys
import helm_python
from helm_python.config import Config
action, kubeconfig, chart, release, namespace, values = sys.argv[1:7]
cfg = Config(kubeconfig_path=kubeconfig, namespace=namespace)
if action == "install":
    cfg.install(chart, release, json.loads(values), namespace=namespace, create_namespace=True,
                wait="watcher", timeout=int(sys.argv[7]))
elif action == "upgrade":
    cfg.upgrade(chart, release, json.loads(values), namespace=namespace, wait="watcher",
                timeout=int(sys.argv[7]))
elif action == "uninstall":
    cfg.uninstall(release, wait="watcher", timeout=int(sys.argv[7]))
print("ok")
"#;

pub const RELEASE: &str = "ferrolb";
pub const NAMESPACE: &str = "metallb-system";

fn helm(
    lab: &ClusterLab,
    action: &str,
    values: &serde_json::Value,
    timeout: Duration,
) -> Result<Duration, String> {
    helm_chart(lab, &crate::repo_root().join("charts/ferrolb"), action, values, timeout)
}

fn helm_chart(
    lab: &ClusterLab,
    chart: &std::path::Path,
    action: &str,
    values: &serde_json::Value,
    timeout: Duration,
) -> Result<Duration, String> {
    let t = Instant::now();
    let out = Command::new("python3")
        .args(["-c", HELPER, action])
        .arg(&lab.kubeconfig)
        .arg(chart)
        .args([RELEASE, NAMESPACE, &values.to_string(), &timeout.as_secs().to_string()])
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        return Err(format!("helm {action}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(t.elapsed())
}

/// `helm install --wait` with `values`; how long it took.
pub fn install(lab: &ClusterLab, values: serde_json::Value) -> Result<Duration, String> {
    helm(lab, "install", &values, Duration::from_secs(180))
}

/// `helm install --wait` of another chart (an older build's) with `values`.
pub fn install_chart(
    lab: &ClusterLab,
    chart: &std::path::Path,
    values: serde_json::Value,
) -> Result<Duration, String> {
    helm_chart(lab, chart, "install", &values, Duration::from_secs(180))
}

/// `helm upgrade --wait` with `values` (the release's earlier values are not reused).
pub fn upgrade(lab: &ClusterLab, values: serde_json::Value) -> Result<Duration, String> {
    helm(lab, "upgrade", &values, Duration::from_secs(180))
}

pub fn uninstall(lab: &ClusterLab) -> Result<Duration, String> {
    helm(lab, "uninstall", &serde_json::Value::Null, Duration::from_secs(120))
}

/// Values every lab install uses: the images imported on every node, never pulled.
pub fn lab_values(extra: serde_json::Value) -> serde_json::Value {
    let mut v = serde_json::json!({
        "image": {"pullPolicy": "Never"},
        "frr": {"image": {"pullPolicy": "Never"}},
    });
    merge(&mut v, extra);
    v
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}
