//! The chart's optional objects for a cluster's monitoring and network policy (ServiceMonitors
//! and their headless Services, the PrometheusRule, NetworkPolicies), applied to a real
//! kube-apiserver with strict field validation: a field the API does not know is an error there,
//! where a typed client or a lenient apply would drop it without a word. The Prometheus
//! Operator's kinds come from `tests/fixtures/monitoring-crds.yaml` (no package ships the
//! operator's CRDs). The plain manifests and Kustomize bases render the chart's defaults, which
//! create none of these objects.

use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::Value;

async fn install_monitoring_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let text = std::fs::read_to_string(crate::repo_root().join("tests/fixtures/monitoring-crds.yaml"))
        .expect("the monitoring CRDs fixture");
    for crd in serde_saphyr::from_multiple::<CustomResourceDefinition>(&text).expect("CRDs parse") {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.create(&PostParams::default(), &crd).await.unwrap_or_else(|e| panic!("creating CRD {name}: {e}"));
        let t = Instant::now();
        loop {
            let got = api.get(&name).await.expect("CRD readable");
            let conditions = got.status.and_then(|s| s.conditions).unwrap_or_default();
            if conditions.iter().any(|c| c.type_ == "Established" && c.status == "True") {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "CRD {name} never established: {conditions:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn api_for(client: &Client, o: &Value) -> Api<DynamicObject> {
    let api_version = o["apiVersion"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = o["kind"].as_str().unwrap_or_default();
    let lower = kind.to_lowercase();
    let plural = match lower.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None => format!("{lower}s"),
    };
    let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), &plural);
    let ns = o["metadata"]["namespace"].as_str().unwrap_or("metallb-system");
    Api::namespaced_with(client.clone(), ns, &resource)
}

/// Server-side apply with strict field validation.
async fn apply_strict(client: &Client, o: &Value) -> Result<DynamicObject, kube::Error> {
    let name = o["metadata"]["name"].as_str().unwrap_or_default();
    let params = PatchParams::apply("ferrolb-chart-test").validation_strict();
    api_for(client, o).patch(name, &params, &Patch::Apply(o)).await
}

fn chosen(objects: &[Value]) -> Vec<Value> {
    objects
        .iter()
        .filter(|o| {
            matches!(o["kind"].as_str(), Some("ServiceMonitor" | "PrometheusRule" | "NetworkPolicy"))
                || (o["kind"] == "Service"
                    && o["metadata"]["name"].as_str().is_some_and(|n| n.ends_with("-metrics")))
        })
        .cloned()
        .collect()
}

#[test]
fn the_charts_monitors_rules_and_network_policies_pass_strict_validation() {
    require_helm!();
    require_kube!();
    let secure = r#"{"metrics": {"serviceMonitor": {"enabled": true, "labels": {"release": "prom"}},
        "prometheusRule": {"enabled": true, "excludePools": ["kept-full"]},
        "reader": {"serviceAccount": "prometheus", "namespace": "monitoring"}},
        "networkPolicies": {"enabled": true, "apiServerCIDRs": ["192.0.2.10/32"]}}"#;
    let plain = r#"{"metrics": {"secure": false, "serviceMonitor": {"enabled": true}},
        "networkPolicies": {"enabled": true}}"#;
    let lab = crate::kube_lab::KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        let client = lab.prepared(&["metallb-system", "monitoring"]).await;
        install_monitoring_crds(&client).await;
        for (name, values) in [("secure metrics", secure), ("plain metrics", plain)] {
            let objects = chosen(&crate::chart::render_clean(values));
            let count = |kind: &str| objects.iter().filter(|o| o["kind"] == kind).count();
            assert_eq!((count("ServiceMonitor"), count("Service")), (2, 2), "{name}");
            assert!(count("NetworkPolicy") >= 2, "{name}");
            for o in &objects {
                let what = format!("{name}: {} {}", o["kind"], o["metadata"]["name"]);
                let stored = apply_strict(&client, o).await.unwrap_or_else(|e| panic!("{what} refused: {e}"));
                // The operator's kinds have no defaults: what is stored is what was sent.
                if o["apiVersion"].as_str().is_some_and(|v| v.starts_with("monitoring.coreos.com/")) {
                    assert_eq!(stored.data["spec"], o["spec"], "{what}");
                }
            }
            println!("{name}: {} objects accepted with strict field validation", objects.len());
        }

        // The check can fail: a field one level off, and a duration the operator cannot read.
        let objects = chosen(&crate::chart::render_clean(secure));
        let mut monitor =
            objects.iter().find(|o| o["kind"] == "ServiceMonitor").cloned().expect("a ServiceMonitor");
        let tls = monitor["spec"]["endpoints"][0]["tlsConfig"].clone();
        monitor["spec"]["tlsConfig"] = tls;
        let refused = apply_strict(&client, &monitor).await;
        assert!(refused.is_err(), "a misplaced tlsConfig was accepted");
        let mut monitor = objects.iter().find(|o| o["kind"] == "ServiceMonitor").cloned().unwrap_or_default();
        monitor["spec"]["endpoints"][0]["interval"] = Value::from("30 seconds");
        assert!(apply_strict(&client, &monitor).await.is_err(), "a bad interval was accepted");
    });
}
