//! Every install path besides `helm install`: the plain manifests in `manifests/` and the
//! Kustomize bases in `config/` are the chart rendered (release `ferrolb`, namespace
//! `metallb-system`, as the seed documents install MetalLB) and must stay so;
//! `UPDATE_MANIFESTS=1 cargo test --test integration install::` rewrites them. The chart's
//! `kubeVersion` is the oldest Kubernetes whose APIs it uses; and the BGPPeer conversion webhook
//! follows the namespace the controller runs in.

use std::process::Command;

use serde_json::{Value, json};

/// (manifest name, Helm values, what it is for).
const INSTALLS: [(&str, &str, &str); 2] = [
    ("native", "{}", "layer 2 only (BGP goes through FRR: see ferrolb-frr.yaml)"),
    ("frr", r#"{"frr": {"enabled": true}}"#, "layer 2 and BGP, with FRR and frr-agent beside each speaker"),
];

/// Helm's install order for the kinds the chart renders; anything else goes last, as in Helm.
const KIND_ORDER: &[&str] = &[
    "Namespace",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "DaemonSet",
    "Deployment",
];

fn sort_key(o: &Value) -> (usize, String, String) {
    let kind = o["kind"].as_str().unwrap_or_default();
    let rank = KIND_ORDER.iter().position(|k| *k == kind).unwrap_or(KIND_ORDER.len());
    (rank, kind.to_string(), o["metadata"]["name"].as_str().unwrap_or_default().to_string())
}

/// The namespace the seed documents install into, allowed to run the speaker: host network,
/// root with NET_RAW and NET_ADMIN is Pod Security's `privileged` level.
fn namespace() -> Value {
    let level = "privileged";
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "metallb-system", "labels": {
        "pod-security.kubernetes.io/enforce": level,
        "pod-security.kubernetes.io/audit": level,
        "pod-security.kubernetes.io/warn": level,
    }}})
}

fn crds() -> Vec<Value> {
    let dir = crate::repo_root().join("charts/ferrolb/crds");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| serde_saphyr::from_multiple::<Value>(&std::fs::read_to_string(f).unwrap()).unwrap())
        .collect()
}

/// Every object of one install, in install order: namespace, CRDs, the chart's templates.
fn objects(values: &str) -> Vec<Value> {
    let (rendered, lint) = crate::chart::render(values);
    assert_eq!(lint["errors"], json!([]), "{lint:#}");
    let mut all = vec![namespace()];
    all.extend(crds());
    all.extend(rendered);
    all.sort_by_key(sort_key);
    all
}

fn manifest_text(name: &str, purpose: &str, objects: &[Value]) -> String {
    let mut text = format!(
        "# ferrolb, {purpose}.\n\
         # `kubectl apply -f` this file: it is charts/ferrolb rendered with its defaults{}\n\
         # (release ferrolb, namespace metallb-system), with the namespace and the CRDs.\n\
         # Generated: UPDATE_MANIFESTS=1 cargo test --test integration install:: rewrites it.\n",
        if name == "frr" { " and frr.enabled=true" } else { "" }
    );
    for o in objects {
        text.push_str("---\n");
        text.push_str(&serde_saphyr::to_string(o).expect("a rendered object serialises"));
    }
    text
}

fn docs(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text).unwrap().into_iter().filter(|d| !d.is_null()).collect()
}

/// Where each install lives: the manifest and the Kustomize base's copy of it (Kustomize reads
/// no file outside a base's directory).
fn paths(name: &str) -> [std::path::PathBuf; 2] {
    let root = crate::repo_root();
    [root.join(format!("manifests/ferrolb-{name}.yaml")), root.join(format!("config/{name}/ferrolb.yaml"))]
}

#[test]
fn manifests_and_kustomize_bases_are_the_chart_rendered() {
    require_helm!();
    let update = std::env::var_os("UPDATE_MANIFESTS").is_some();
    for (name, values, purpose) in INSTALLS {
        let want = objects(values);
        let [manifest, base] = paths(name);
        if update {
            let text = manifest_text(name, purpose, &want);
            for p in [&manifest, &base] {
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, &text).unwrap();
            }
            continue;
        }
        let stale = "run UPDATE_MANIFESTS=1 cargo test --test integration install::";
        let on_disk = std::fs::read_to_string(&manifest)
            .unwrap_or_else(|e| panic!("{}: {e}; {stale}", manifest.display()));
        // Meaning, not bytes, against the chart (emitters differ in quoting); the base's copy
        // byte for byte.
        let have = docs(&on_disk);
        assert_eq!(have.len(), want.len(), "{}: {stale}", manifest.display());
        for (h, w) in have.iter().zip(&want) {
            assert!(
                h == w,
                "{}: {} {} differs from the chart; {stale}",
                manifest.display(),
                w["kind"],
                w["metadata"]["name"]
            );
        }
        assert_eq!(
            std::fs::read_to_string(&base).ok().as_deref(),
            Some(on_disk.as_str()),
            "{}: {stale}",
            base.display()
        );
        let kustomization = std::fs::read_to_string(base.with_file_name("kustomization.yaml")).unwrap();
        let k: Value = serde_saphyr::from_str(&kustomization).unwrap();
        assert_eq!(k["resources"], json!(["ferrolb.yaml"]), "config/{name}/kustomization.yaml");
    }
}

#[test]
fn the_manifests_hold_one_complete_install_each() {
    for (name, _, _) in INSTALLS {
        let [manifest, _] = paths(name);
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            panic!(
                "{} missing; run UPDATE_MANIFESTS=1 cargo test --test integration install::",
                manifest.display()
            )
        };
        let objects = docs(&text);
        let count = |kind: &str| objects.iter().filter(|o| o["kind"] == kind).count();
        assert_eq!(count("Namespace"), 1, "{name}");
        assert_eq!(count("CustomResourceDefinition"), 9, "{name}");
        assert_eq!((count("Deployment"), count("DaemonSet")), (1, 1), "{name}");
        let speaker = objects.iter().find(|o| o["kind"] == "DaemonSet").unwrap();
        let containers: Vec<&str> = speaker["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        let want: &[&str] = if name == "frr" { &["speaker", "frr", "frr-agent"] } else { &["speaker"] };
        assert_eq!(containers, want, "{name}");
        // Everything namespaced lands in the namespace the file creates, but the controller's
        // read of kube-proxy's ConfigMap, which lives in kube-system.
        for o in &objects {
            let ns = &o["metadata"]["namespace"];
            let kube_proxy = o["metadata"]["name"] == "ferrolb-controller-kube-proxy"
                && (o["kind"] == "Role" || o["kind"] == "RoleBinding");
            assert!(
                ns.is_null() || ns == "metallb-system" || (kube_proxy && ns == "kube-system"),
                "{name}: {} {} in {ns}",
                o["kind"],
                o["metadata"]["name"]
            );
        }
    }
}

/// `v` with every whole-valued float as an integer.
fn integral(v: Value) -> Value {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => json!(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(integral).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, integral(v))).collect()),
        other => other,
    }
}

/// kubectl from FERROLB_KUBE_BIN_DIR, if there is one.
fn kubectl() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("FERROLB_KUBE_BIN_DIR").unwrap_or_else(|| "/opt/ferrolb-kube/bin".into());
    Some(std::path::PathBuf::from(dir).join("kubectl")).filter(|p| p.is_file())
}

#[test]
fn kustomize_renders_each_base_as_its_manifest() {
    let Some(kubectl) = kubectl() else {
        println!("skipped: no kubectl in FERROLB_KUBE_BIN_DIR (or /opt/ferrolb-kube/bin)");
        return;
    };
    for (name, _, _) in INSTALLS {
        let out = Command::new(&kubectl)
            .arg("kustomize")
            .arg(crate::repo_root().join("config").join(name))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl kustomize config/{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Kustomize orders by kind in its own way, and prints 10.0 as 10: compare as sets of
        // objects, numbers by value.
        let mut built: Vec<Value> =
            docs(&String::from_utf8_lossy(&out.stdout)).into_iter().map(integral).collect();
        let mut manifest: Vec<Value> =
            docs(&std::fs::read_to_string(&paths(name)[0]).unwrap()).into_iter().map(integral).collect();
        built.sort_by_key(sort_key);
        manifest.sort_by_key(sort_key);
        assert_eq!(built.len(), manifest.len(), "config/{name}");
        for (b, m) in built.iter().zip(&manifest) {
            assert!(b == m, "config/{name}: kustomize changed {} {}", m["kind"], m["metadata"]["name"]);
        }
    }
}

/// The Kubernetes release each API (or API feature) the chart or ferrolb uses first had on by
/// default. ferrolb's own calls show in its RBAC rules (server-side apply, which the speakers'
/// reports use, is on from 1.16 and GA in 1.22, so it never decides); optional integrations
/// (ServiceMonitor, cert-manager) need their CRDs, not a Kubernetes version.
const INTRODUCED: &[(&str, u32)] = &[
    ("v1", 0),
    ("apps/v1", 9),
    ("apps", 9),
    ("rbac.authorization.k8s.io/v1", 8),
    ("coordination.k8s.io", 14),
    ("admissionregistration.k8s.io/v1", 16),
    ("admissionregistration.k8s.io", 16),
    ("apiextensions.k8s.io/v1", 16),
    ("apiextensions.k8s.io", 16),
    ("events.k8s.io", 19),
    // seccompProfile in a securityContext.
    ("seccompProfile", 19),
    ("startupProbe", 20),
    ("discovery.k8s.io", 21),
    // CEL validation rules in the CRDs (transition rules with oldSelf included): on by default
    // from 1.25 (GA in 1.29). Before, the API server drops them and immutability goes unchecked.
    ("x-kubernetes-validations", 25),
    // The groups a ClusterRole or Role names with no version: the core group.
    ("", 0),
    ("metallb.io", 0),
    // Secure metrics: TokenReview and SubjectAccessReview (both v1 since 1.6).
    ("authentication.k8s.io", 6),
    ("authorization.k8s.io", 6),
    ("networking.k8s.io/v1", 7),
    // The Prometheus operator's kinds come with its own CRDs, not with a Kubernetes release.
    ("monitoring.coreos.com/v1", 0),
];

fn collect_features(v: &Value, found: &mut std::collections::BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if INTRODUCED.iter().any(|(f, _)| f == k) {
                    found.insert(k.clone());
                }
                collect_features(child, found);
            }
        }
        Value::Array(a) => a.iter().for_each(|c| collect_features(c, found)),
        _ => {}
    }
}

#[test]
fn kube_version_is_what_the_apis_need() {
    require_helm!();
    let mut used = std::collections::BTreeSet::new();
    for (_, values, _) in INSTALLS {
        let all = objects(values);
        for o in &all {
            used.insert(o["apiVersion"].as_str().unwrap().to_string());
            collect_features(o, &mut used);
            for rule in o["rules"].as_array().into_iter().flatten() {
                // Rules for non-resource URLs (the metrics reader) name no API group.
                used.extend(
                    rule["apiGroups"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|g| g.as_str().map(String::from)),
                );
            }
        }
    }
    let mut oldest = 0;
    for u in &used {
        let Some((_, minor)) = INTRODUCED.iter().find(|(f, _)| f == u) else {
            panic!("the chart uses {u}: add the Kubernetes release that introduced it to INTRODUCED")
        };
        oldest = oldest.max(*minor);
    }
    let chart: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(crate::repo_root().join("charts/ferrolb/Chart.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(chart["kubeVersion"], format!(">=1.{oldest}.0-0"), "Chart.yaml kubeVersion (uses {used:?})");
}

#[test]
fn the_conversion_webhook_follows_the_release_namespace() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    require_kube!();
    let kube = crate::kube_lab::KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        // The CRDs as Helm installs them (naming metallb-system), the release elsewhere.
        let client = kube.prepared(&["lb-elsewhere"]).await;
        let webhook = crate::kube_lab::free_port().to_string();
        let args = [
            "controller",
            "--namespace",
            "lb-elsewhere",
            "--webhook-address",
            "127.0.0.1",
            "--webhook-port",
            &webhook,
            "--leader-elect",
            "false",
            "--metrics-bind",
            "127.0.0.1:0",
        ];
        let _controller = kube.run_ferrolb(&args, "controller.log");
        let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
        let r = crate::kube_lab::eventually("the conversion webhook in lb-elsewhere", || async {
            let crd = crds.get("bgppeers.metallb.io").await.map_err(|e| e.to_string())?;
            let config = crd
                .spec
                .conversion
                .and_then(|c| c.webhook)
                .and_then(|w| w.client_config)
                .ok_or("no conversion")?;
            let service = config.service.ok_or("no service")?;
            match (service.namespace.as_str(), service.name.as_str(), config.ca_bundle.is_some()) {
                ("lb-elsewhere", "ferrolb-webhook-service", true) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        assert!(r.is_ok(), "{r:?}\n{}", kube.log("controller.log"));
    });
}
