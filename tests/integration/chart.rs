//! The Helm chart, rendered and linted by a real Helm (Helm v4 as a library, from PyPI's
//! helm-python-sdk): the default values and `frr.enabled=true`; with a kube-apiserver, the
//! rendered RBAC is applied and the controller runs with nothing but its ServiceAccount's rights.

use std::process::Command;

use serde_json::Value;

pub const HELPER: &str = r#"
import json, sys
from helm_python import chart
path, values = sys.argv[1], json.loads(sys.argv[2])
c = chart.Chart.load(path)
rendered = c.render(values, name="ferrolb", namespace="metallb-system", is_install=True)
report = chart.lint(path, values, strict=True, namespace="metallb-system")
print(json.dumps({"rendered": rendered, "lint": report}))
"#;

/// Why the chart tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    let ok =
        Command::new("python3").args(["-c", "import helm_python"]).output().is_ok_and(|o| o.status.success());
    (!ok).then(|| "helm-python-sdk missing (pip install helm-python-sdk)".to_string())
}

#[allow(unused_macros)]
macro_rules! require_helm {
    () => {
        if let Some(why) = $crate::chart::unavailable() {
            println!("skipped: {why}");
            return;
        }
    };
}

/// Every rendered object (all documents of all templates) and Helm's lint report.
pub fn render(values: &str) -> (Vec<Value>, Value) {
    let chart = crate::repo_root().join("charts/ferrolb");
    let out = Command::new("python3").args(["-c", HELPER]).arg(&chart).arg(values).output().unwrap();
    assert!(out.status.success(), "helm: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut objects = Vec::new();
    for text in v["rendered"].as_object().unwrap().values() {
        for doc in serde_saphyr::from_multiple::<Value>(text.as_str().unwrap()).unwrap() {
            if !doc.is_null() {
                objects.push(doc);
            }
        }
    }
    (objects, v["lint"].clone())
}

/// The objects for `values`, after checking Helm's lint found no error.
pub fn render_clean(values: &str) -> Vec<Value> {
    let (objects, lint) = render(values);
    assert_eq!(lint["errors"], serde_json::json!([]), "{lint:#}");
    objects
}

pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

pub fn container<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    pod["spec"]["template"]["spec"]["containers"].as_array().unwrap().iter().find(|c| c["name"] == name)
}

/// The speaker container's arguments as the chart renders them for `values`.
pub fn speaker_args(values: &str) -> Vec<String> {
    let objects = render_clean(values);
    let speaker = find(&objects, "DaemonSet", "ferrolb-speaker");
    container(speaker, "speaker").unwrap()["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

#[test]
fn default_values_render_lint_clean_and_least_privileged() {
    require_helm!();
    let (objects, lint) = render("{}");
    assert_eq!(lint["errors"], serde_json::json!([]), "{lint:#}");
    let errors: Vec<_> =
        lint["messages"].as_array().unwrap().iter().filter(|m| m["severity"].as_u64() >= Some(2)).collect();
    assert!(errors.is_empty(), "lint warnings or errors: {errors:?}");

    let controller = find(&objects, "Deployment", "ferrolb-controller");
    assert_eq!(controller["spec"]["replicas"], 2);
    let c = container(controller, "controller").unwrap();
    assert_eq!(c["args"][0], "controller");
    assert_eq!(c["securityContext"]["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(c["securityContext"]["capabilities"]["add"].is_null());

    let speaker = find(&objects, "DaemonSet", "ferrolb-speaker");
    assert_eq!(speaker["spec"]["template"]["spec"]["hostNetwork"], true);
    let s = container(speaker, "speaker").unwrap();
    assert_eq!(s["securityContext"]["capabilities"]["add"], serde_json::json!(["NET_RAW", "NET_ADMIN"]));
    assert!(container(speaker, "frr").is_none() && container(speaker, "frr-agent").is_none());

    // The controller may not touch Secrets outside its namespace or write anything but
    // Services, their status, events, its Lease and the status kinds.
    let role = find(&objects, "ClusterRole", "ferrolb-controller");
    let cluster_resources: Vec<&str> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["resources"].as_array().unwrap())
        .filter_map(Value::as_str)
        .collect();
    assert!(!cluster_resources.contains(&"secrets"), "{cluster_resources:?}");
    for rule in role["rules"].as_array().unwrap() {
        assert!(!rule["verbs"].as_array().unwrap().iter().any(|v| v == "delete" || v == "*"), "{rule}");
    }

    // Every configuration kind is validated; only BFDProfile deletion is checked.
    let vwc = find(&objects, "ValidatingWebhookConfiguration", "ferrolb-webhook-configuration");
    let webhooks = vwc["webhooks"].as_array().unwrap();
    let resources: Vec<&str> =
        webhooks.iter().filter_map(|w| w["rules"][0]["resources"][0].as_str()).collect();
    assert_eq!(
        resources,
        ["ipaddresspools", "l2advertisements", "bgpadvertisements", "bgppeers", "bfdprofiles", "communities"]
    );
    for w in webhooks {
        let deletes = w["rules"][0]["operations"].as_array().unwrap().iter().any(|o| o == "DELETE");
        assert_eq!(deletes, w["rules"][0]["resources"][0] == "bfdprofiles", "{w}");
        assert_eq!(w["clientConfig"]["service"]["name"], "ferrolb-webhook-service");
        assert_eq!(w["failurePolicy"], "Fail");
    }
    let ports: Vec<(&str, u64)> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["containerPort"].as_u64().unwrap()))
        .collect();
    assert_eq!(ports, [("metrics", 7472), ("webhook", 9443)]);
    find(&objects, "Service", "ferrolb-webhook-service");
}

#[test]
fn metrics_are_scraped_from_both_roles_when_asked() {
    require_helm!();
    let objects =
        render_clean(r#"{"metrics": {"serviceMonitor": {"enabled": true, "labels": {"release": "prom"}}}}"#);
    for component in ["controller", "speaker"] {
        let monitor = find(&objects, "ServiceMonitor", &format!("ferrolb-{component}"));
        assert_eq!(monitor["metadata"]["labels"]["release"], "prom");
        let svc = find(&objects, "Service", &format!("ferrolb-{component}-metrics"));
        assert_eq!(svc["spec"]["clusterIP"], "None");
        assert_eq!(svc["spec"]["selector"]["app.kubernetes.io/component"], component);
    }
    let speaker = find(&objects, "DaemonSet", "ferrolb-speaker");
    let args: Vec<&str> = container(speaker, "speaker").unwrap()["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(args.contains(&"--metrics-bind=[$(NODE_IP)]:7472"), "{args:?}");
    let (plain, _) = render("{}");
    assert!(!plain.iter().any(|o| o["kind"] == "ServiceMonitor"));
}

#[test]
fn cert_manager_mode_mounts_its_certificate() {
    require_helm!();
    let objects =
        render_clean(r#"{"webhook": {"certManager": {"enabled": true}, "failurePolicy": "Ignore"}}"#);
    let cert = find(&objects, "Certificate", "ferrolb-webhook");
    assert_eq!(cert["spec"]["secretName"], "ferrolb-webhook-cert-manager");
    let controller = find(&objects, "Deployment", "ferrolb-controller");
    let c = container(controller, "controller").unwrap();
    let args: Vec<&str> = c["args"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(args.contains(&"--webhook-cert-dir=/run/ferrolb/webhook-cert"), "{args:?}");
    let vwc = find(&objects, "ValidatingWebhookConfiguration", "ferrolb-webhook-configuration");
    assert_eq!(vwc["webhooks"][0]["failurePolicy"], "Ignore");
    let (off, _) = render(r#"{"webhook": {"enabled": false}}"#);
    assert!(!off.iter().any(|o| o["kind"] == "ValidatingWebhookConfiguration"));
}

#[test]
fn frr_enabled_adds_frr_and_its_agent_sharing_a_socket() {
    require_helm!();
    let objects =
        render_clean(r#"{"frr": {"enabled": true}, "speaker": {"memberlist": {"secretName": "ml"}}}"#);
    let speaker = find(&objects, "DaemonSet", "ferrolb-speaker");
    let s = container(speaker, "speaker").unwrap();
    let agent = container(speaker, "frr-agent").expect("frr-agent container");
    assert!(container(speaker, "frr").is_some());
    let args: Vec<&str> = s["args"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(args.contains(&"--frr-agent-socket=/var/run/frr-agent/agent.sock"), "{args:?}");
    assert!(args.contains(&"--membership-secret-file=/etc/ferrolb/memberlist/secretkey"), "{args:?}");
    let mounts = |c: &Value| -> Vec<String> {
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(mounts(s).contains(&"frr-agent-socket".to_string()));
    assert!(
        mounts(agent).contains(&"frr-agent-socket".to_string())
            && mounts(agent).contains(&"frr-sockets".to_string())
    );
}

#[test]
fn every_container_is_probed_and_frr_gets_time_to_stop() {
    require_helm!();
    let agent_bin = crate::ferrolb_bin().with_file_name("frr-agent");
    for (values, grace) in [(r#"{"metrics": {"port": 7473}}"#, 2), (r#"{"frr": {"enabled": true}}"#, 10)] {
        let objects = render_clean(values);
        let port = if values.contains("7473") { 7473 } else { 7472 };
        for (kind, name) in [("Deployment", "ferrolb-controller"), ("DaemonSet", "ferrolb-speaker")] {
            let pod = &find(&objects, kind, name)["spec"]["template"]["spec"];
            for c in pod["containers"].as_array().unwrap() {
                let who = format!("{name}/{} with {values}", c["name"]);
                for probe in ["livenessProbe", "readinessProbe"] {
                    let p = &c[probe];
                    assert!(p.is_object(), "{who}: no {probe}");
                    if let Some(path) = p["httpGet"]["path"].as_str() {
                        assert_eq!(
                            path,
                            if probe == "livenessProbe" { "/livez" } else { "/readyz" },
                            "{who}"
                        );
                        // The speaker's by number (its metrics bind the node's address, which
                        // the kubelet probes on the host network), the controller's by name.
                        let want = if c["name"] == "speaker" {
                            serde_json::json!(port)
                        } else {
                            serde_json::json!("metrics")
                        };
                        assert_eq!(p["httpGet"]["port"], want, "{who}");
                        continue;
                    }
                    // Exec probes run the image's frr-agent: the rendered command must be one it
                    // understands (exit 0 or 1, never 2, clap's usage error), and away from any
                    // FRR it must say not ready.
                    let argv: Vec<&str> = p["exec"]["command"]
                        .as_array()
                        .expect("httpGet or exec")
                        .iter()
                        .filter_map(Value::as_str)
                        .collect();
                    assert_eq!(argv[..2], ["frr-agent", "probe"], "{who}");
                    if !agent_bin.exists() {
                        continue;
                    }
                    let dir = std::env::temp_dir().join(format!("ferrolb-probe-{}", std::process::id()));
                    let out = Command::new(&agent_bin)
                        .args(&argv[1..])
                        .args([
                            format!("--vty-socket={}", dir.display()),
                            format!("--config-dir={}", dir.display()),
                        ])
                        .env("FRR_AGENT_SOCKET", dir.join("none.sock"))
                        .output()
                        .unwrap();
                    assert_eq!(
                        out.status.code(),
                        Some(1),
                        "{who}: {argv:?}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
            if kind == "DaemonSet" {
                assert_eq!(pod["terminationGracePeriodSeconds"], grace, "{values}");
            }
        }
    }
}

#[test]
fn layer2_fencing_is_a_value_and_the_speakers_watch_their_pods() {
    require_helm!();
    let args = |values: &str| -> Vec<String> {
        let objects = render_clean(values);
        let speaker = find(&objects, "DaemonSet", "ferrolb-speaker");
        let s = container(speaker, "speaker").unwrap();
        s["args"].as_array().unwrap().iter().filter_map(Value::as_str).map(String::from).collect()
    };
    assert!(args("{}").contains(&"--fence=true".to_string()));
    assert!(args(r#"{"speaker": {"fence": false}}"#).contains(&"--fence=false".to_string()));
    assert!(!args(r#"{"speaker": {"layer2": false}}"#).iter().any(|a| a.starts_with("--fence")));
    // The quorum base follows the DaemonSet only if the speakers may watch its pods.
    let objects = render_clean("{}");
    let role = find(&objects, "Role", "ferrolb-speaker");
    let pods =
        role["rules"].as_array().unwrap().iter().find(|r| r["resources"] == serde_json::json!(["pods"]));
    assert_eq!(pods.map(|r| &r["verbs"]), Some(&serde_json::json!(["get", "list", "watch"])), "{role}");
    // On SIGTERM a speaker reads its DaemonSet (gone: withdraw the BGP routes), nothing more.
    let sets = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resources"] == serde_json::json!(["daemonsets"]));
    assert_eq!(sets.map(|r| &r["verbs"]), Some(&serde_json::json!(["get"])), "{role}");
    // Mid-rollout the speakers tell builds they cannot hear by this label: it must name the
    // format this build's speaker speaks.
    let speaker = find(&objects, "DaemonSet", "ferrolb-speaker");
    let labels = &speaker["spec"]["template"]["metadata"]["labels"];
    let format = &labels[ferrolb::l2::membership::FORMAT_LABEL];
    assert_eq!(format.as_str(), Some(ferrolb::l2::membership::WIRE_FORMAT), "{labels}");
}

#[test]
fn the_charts_crds_are_the_generated_ones() {
    let chart = crate::repo_root().join("charts/ferrolb/crds");
    let generated = crate::repo_root().join("crds");
    let mut names: Vec<_> = std::fs::read_dir(&generated).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    let mut in_chart: Vec<_> = std::fs::read_dir(&chart).unwrap().map(|e| e.unwrap().file_name()).collect();
    in_chart.sort();
    assert_eq!(names, in_chart);
    for n in names {
        let a = std::fs::read_to_string(generated.join(&n)).unwrap();
        let b = std::fs::read_to_string(chart.join(&n)).unwrap();
        assert!(
            a == b,
            "charts/ferrolb/crds/{} differs from crds/ (UPDATE_CRDS=1 rewrites both)",
            n.to_string_lossy()
        );
    }
}

/// Creates the rendered objects of a namespaced `kind` through a typed API.
pub async fn create_namespaced<K>(client: &kube::Client, objects: &[Value], kind: &str)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    for o in objects.iter().filter(|o| o["kind"] == kind) {
        let typed: K = serde_json::from_value(o.clone()).unwrap();
        let ns = o["metadata"]["namespace"].as_str().unwrap();
        let api: kube::Api<K> = kube::Api::namespaced(client.clone(), ns);
        api.create(&Default::default(), &typed).await.unwrap_or_else(|e| panic!("creating {kind}: {e}"));
    }
}

/// The same for cluster-scoped kinds.
pub async fn create_cluster<K>(client: &kube::Client, objects: &[Value], kind: &str)
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    for o in objects.iter().filter(|o| o["kind"] == kind) {
        let typed: K = serde_json::from_value(o.clone()).unwrap();
        let api: kube::Api<K> = kube::Api::all(client.clone());
        api.create(&Default::default(), &typed).await.unwrap_or_else(|e| panic!("creating {kind}: {e}"));
    }
}

#[test]
fn the_controller_works_with_only_the_rights_the_chart_grants() {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    use kube::Api;
    use kube::api::PostParams;
    require_helm!();
    require_kube!();
    let (objects, _) = render("{}");
    let lab = crate::kube_lab::KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        let admin = lab.prepared(&["metallb-system", "shop"]).await;
        create_namespaced::<ServiceAccount>(&admin, &objects, "ServiceAccount").await;
        create_cluster::<ClusterRole>(&admin, &objects, "ClusterRole").await;
        create_cluster::<ClusterRoleBinding>(&admin, &objects, "ClusterRoleBinding").await;
        create_namespaced::<Role>(&admin, &objects, "Role").await;
        create_namespaced::<RoleBinding>(&admin, &objects, "RoleBinding").await;

        // A token for a ServiceAccount, and a kubeconfig using only it.
        let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), "metallb-system");
        let request = TokenRequest {
            spec: TokenRequestSpec { audiences: vec![], expiration_seconds: Some(3600), ..Default::default() },
            ..Default::default()
        };
        let admin_config = std::fs::read_to_string(lab.kubeconfig()).unwrap();
        let kubeconfig_of = async |account: &str| {
            let token = accounts
                .create_token_request(account, &PostParams::default(), &request)
                .await
                .unwrap()
                .status
                .unwrap()
                .token;
            let kubeconfig = lab.dir.join(format!("{account}-sa.kubeconfig"));
            std::fs::write(&kubeconfig, admin_config.replace(crate::kube_lab::TOKEN, &token)).unwrap();
            kubeconfig
        };
        let kubeconfig = kubeconfig_of("ferrolb-controller").await;

        // The speaker may read the ConfigMap `bgpextras` as it watches it (by name), and no
        // other ConfigMap.
        use k8s_openapi::api::core::v1::ConfigMap;
        let speaker = ferrolb::k8s::client(Some(&kubeconfig_of("ferrolb-speaker").await)).await.unwrap();
        let maps: Api<ConfigMap> = Api::namespaced(speaker, "metallb-system");
        let by_name = kube::api::ListParams::default().fields("metadata.name=bgpextras");
        assert!(maps.list(&by_name).await.is_ok(), "the speaker cannot list bgpextras");
        assert!(maps.list(&Default::default()).await.is_err(), "the speaker may list every ConfigMap");

        let yaml = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p, namespace: metallb-system}\nspec: {addresses: [192.0.2.0/28]}\n";
        let pool: ferrolb::api::IPAddressPool = serde_saphyr::from_str(yaml).unwrap();
        Api::<ferrolb::api::IPAddressPool>::namespaced(admin.clone(), "metallb-system")
            .create(&PostParams::default(), &pool)
            .await
            .unwrap();
        let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(admin.clone(), "shop");
        for i in 0..3 {
            let svc: k8s_openapi::api::core::v1::Service = serde_saphyr::from_str(&format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: s{i}, namespace: shop}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"
            ))
            .unwrap();
            services.create(&PostParams::default(), &svc).await.unwrap();
        }
        // The webhook objects after the pool: nothing can reach the webhook in this lab until the
        // controller has published its CA, and the chart's failurePolicy is Fail.
        create_cluster::<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration>(
            &admin,
            &objects,
            "ValidatingWebhookConfiguration",
        )
        .await;
        create_namespaced::<k8s_openapi::api::core::v1::Service>(&admin, &objects, "Service").await;
        let log = lab.dir.join("controller-sa.log");
        let port = crate::kube_lab::free_port().to_string();
        let mut controller = std::process::Command::new(crate::ferrolb_bin())
            .args(["controller", "--webhook-address", "127.0.0.1", "--webhook-port", &port, "--kubeconfig"])
            .arg(&kubeconfig)
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let t = std::time::Instant::now();
        let mut allocated = 0;
        while t.elapsed() < std::time::Duration::from_secs(30) {
            let list = services.list(&Default::default()).await.unwrap().items;
            allocated = list.iter().filter(|s| !ferrolb::plan::writeback::current_ips(s).is_empty()).count();
            if allocated == 3 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // ... and the webhook's certificate issued and its CA published with the chart's rights.
        let vwc: Api<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration> =
            Api::all(admin.clone());
        let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
            Api::all(admin.clone());
        let mut published = false;
        while t.elapsed() < std::time::Duration::from_secs(30) && !published {
            let w = vwc.get("ferrolb-webhook-configuration").await.unwrap();
            let c = crds.get("bgppeers.metallb.io").await.unwrap();
            let conversion_ca = c.spec.conversion.and_then(|c| c.webhook).and_then(|w| w.client_config).and_then(|c| c.ca_bundle);
            published = w.webhooks.unwrap_or_default().iter().all(|w| w.client_config.ca_bundle.is_some())
                && conversion_ca.is_some();
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let _ = controller.kill();
        let _ = controller.wait();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(allocated, 3, "{text}");
        assert!(published, "the CA bundle was not published:\n{text}");
        assert!(!text.to_lowercase().contains("forbidden"), "the chart's RBAC is missing a right:\n{text}");
    });
}
