//! The chart's operational parts, rendered by a real Helm: secure metrics (flags, RBAC,
//! ServiceMonitors), NetworkPolicies, speaker.ignoreExcludeLB, frr.logLevel, and every value
//! documented; with a kube-apiserver, the rendered RBAC lets the controller authorize scrapers.

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::{Value, json};

use crate::chart::{container, find, render, render_clean};

/// Helm's error when `values` cannot be rendered, None when they can.
fn render_error(values: &str) -> Option<String> {
    let chart = crate::repo_root().join("charts/ferrolb");
    let out =
        Command::new("python3").args(["-c", crate::chart::HELPER]).arg(&chart).arg(values).output().unwrap();
    (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
}

fn args(objects: &[Value], kind: &str, name: &str, c: &str) -> Vec<String> {
    container(find(objects, kind, name), c).unwrap()["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str().map(String::from))
        .collect()
}

/// (apiGroup, resource, verb) triples a ClusterRole grants.
fn grants(role: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for r in role["rules"].as_array().unwrap() {
        for g in r["apiGroups"].as_array().into_iter().flatten() {
            for res in r["resources"].as_array().into_iter().flatten() {
                for v in r["verbs"].as_array().unwrap() {
                    out.insert((
                        g.as_str().unwrap().into(),
                        res.as_str().unwrap().into(),
                        v.as_str().unwrap().into(),
                    ));
                }
            }
        }
    }
    out
}

fn reviews() -> [(String, String, String); 2] {
    [
        ("authentication.k8s.io".into(), "tokenreviews".into(), "create".into()),
        ("authorization.k8s.io".into(), "subjectaccessreviews".into(), "create".into()),
    ]
}

#[test]
fn metrics_are_secure_by_default_and_plain_when_asked() {
    require_helm!();
    let monitored = r#"{"metrics": {"serviceMonitor": {"enabled": true}}}"#;
    let objects = render_clean(monitored);
    for (kind, name, c) in
        [("Deployment", "ferrolb-controller", "controller"), ("DaemonSet", "ferrolb-speaker", "speaker")]
    {
        let a = args(&objects, kind, name, c);
        assert!(a.contains(&"--metrics-secure=true".to_string()), "{a:?}");
        assert!(!a.iter().any(|a| a.starts_with("--metrics-cert-dir")), "{a:?}");
        let role = find(&objects, "ClusterRole", name);
        let g = grants(role);
        assert!(reviews().iter().all(|r| g.contains(r)), "{name} cannot review scrapers: {g:?}");
        let component = c;
        let monitor = find(&objects, "ServiceMonitor", &format!("ferrolb-{component}"));
        let e = &monitor["spec"]["endpoints"][0];
        assert_eq!(e["scheme"], "https");
        assert_eq!(e["bearerTokenFile"], "/var/run/secrets/kubernetes.io/serviceaccount/token");
        assert_eq!(e["tlsConfig"], json!({"insecureSkipVerify": true}));
    }
    let reader = find(&objects, "ClusterRole", "ferrolb-metrics-reader");
    assert_eq!(reader["rules"], json!([{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]));
    assert!(
        !objects
            .iter()
            .any(|o| o["kind"] == "ClusterRoleBinding" && o["metadata"]["name"] == "ferrolb-metrics-reader")
    );

    // Labs: plain HTTP, and no right to review anyone.
    let plain = render_clean(r#"{"metrics": {"secure": false, "serviceMonitor": {"enabled": true}}}"#);
    assert!(
        args(&plain, "Deployment", "ferrolb-controller", "controller")
            .contains(&"--metrics-secure=false".into())
    );
    assert!(
        args(&plain, "DaemonSet", "ferrolb-speaker", "speaker").contains(&"--metrics-secure=false".into())
    );
    let g = grants(find(&plain, "ClusterRole", "ferrolb-speaker"));
    assert!(!reviews().iter().any(|r| g.contains(r)), "{g:?}");
    assert_eq!(find(&plain, "ServiceMonitor", "ferrolb-speaker")["spec"]["endpoints"][0]["scheme"], "http");
    assert!(!plain.iter().any(|o| o["metadata"]["name"] == "ferrolb-metrics-reader"));

    // Certificates from Secrets, and the reader bound to Prometheus's account.
    let objects = render_clean(
        r#"{"metrics": {"tls": {"controllerSecretName": "c-tls", "speakerSecretName": "s-tls"},
            "reader": {"serviceAccount": "prometheus-k8s", "namespace": "monitoring"}}}"#,
    );
    for (kind, name, c, dir, secret) in [
        ("Deployment", "ferrolb-controller", "controller", "/run/ferrolb/metrics-cert", "c-tls"),
        ("DaemonSet", "ferrolb-speaker", "speaker", "/etc/ferrolb/metrics-cert", "s-tls"),
    ] {
        assert!(args(&objects, kind, name, c).contains(&format!("--metrics-cert-dir={dir}")));
        let pod = &find(&objects, kind, name)["spec"]["template"]["spec"];
        let volume = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "metrics-cert").unwrap();
        assert_eq!(volume["secret"]["secretName"], secret);
        let mounts =
            container(find(&objects, kind, name), c).unwrap()["volumeMounts"].as_array().unwrap().clone();
        assert!(mounts.iter().any(|m| m["name"] == "metrics-cert" && m["mountPath"] == dir), "{mounts:?}");
    }
    let binding = find(&objects, "ClusterRoleBinding", "ferrolb-metrics-reader");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "prometheus-k8s", "namespace": "monitoring"}])
    );
    let e =
        render_error(r#"{"metrics": {"reader": {"serviceAccount": "prometheus-k8s"}}}"#).expect("refused");
    assert!(e.contains("metrics.reader.namespace"), "{e}");
}

#[test]
fn network_policies_admit_only_what_ferrolb_needs() {
    require_helm!();
    assert!(!render_clean("{}").iter().any(|o| o["kind"] == "NetworkPolicy"));
    let objects = render_clean(
        r#"{"networkPolicies": {"enabled": true, "apiServerCIDRs": ["192.0.2.10/32"], "monitoringNamespace": "obs"}}"#,
    );
    let monitoring = json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "obs"}}}]);
    let c = &find(&objects, "NetworkPolicy", "ferrolb-controller")["spec"];
    assert_eq!(c["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        c["ingress"],
        json!([
            {"ports": [{"protocol": "TCP", "port": 9443}], "from": [{"ipBlock": {"cidr": "192.0.2.10/32"}}]},
            {"ports": [{"protocol": "TCP", "port": 7472}], "from": monitoring},
        ])
    );
    assert_eq!(
        c["egress"],
        json!([{"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}],
                "to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}]}])
    );
    let s = &find(&objects, "NetworkPolicy", "ferrolb-speaker")["spec"];
    assert_eq!(s["policyTypes"], json!(["Ingress"]));
    let speakers = json!({"matchLabels": {"app.kubernetes.io/instance": "ferrolb", "app.kubernetes.io/component": "speaker"}});
    assert_eq!(s["podSelector"], speakers);
    assert_eq!(
        s["ingress"],
        json!([
            {"ports": [{"protocol": "TCP", "port": 7946}, {"protocol": "UDP", "port": 7946}], "from": [{"podSelector": speakers}]},
            {"ports": [{"protocol": "TCP", "port": 7472}], "from": monitoring},
        ])
    );
    // Without CIDRs the webhook port is open to any source (the API server is no pod).
    let open = render_clean(r#"{"networkPolicies": {"enabled": true}}"#);
    let c = &find(&open, "NetworkPolicy", "ferrolb-controller")["spec"];
    assert_eq!(c["ingress"][0], json!({"ports": [{"protocol": "TCP", "port": 9443}]}));
}

#[test]
fn ignore_exclude_lb_and_the_frr_log_level_reach_the_speaker() {
    require_helm!();
    let speaker = |values: &str| args(&render_clean(values), "DaemonSet", "ferrolb-speaker", "speaker");
    assert!(!speaker("{}").iter().any(|a| a == "--ignore-exclude-lb"));
    assert!(speaker(r#"{"speaker": {"ignoreExcludeLB": true}}"#).contains(&"--ignore-exclude-lb".into()));
    assert!(speaker(r#"{"frr": {"enabled": true}}"#).contains(&"--frr-log-level=info".into()));
    assert!(
        speaker(r#"{"frr": {"enabled": true, "logLevel": "warnings"}}"#)
            .contains(&"--frr-log-level=warnings".into())
    );
    let e = render_error(r#"{"frr": {"enabled": true, "logLevel": "loud"}}"#).expect("refused");
    assert!(e.contains("frr.logLevel \"loud\" is not a log level"), "{e}");
    // The chart knows the levels the speaker accepts, no more, no fewer.
    let helpers =
        std::fs::read_to_string(crate::repo_root().join("charts/ferrolb/templates/_helpers.tpl")).unwrap();
    let line = helpers.lines().find(|l| l.contains("$known := list")).unwrap();
    let chart: BTreeSet<&str> = line.split('"').skip(1).step_by(2).collect();
    let speaker: BTreeSet<&str> = ferrolb::bgp::frr::METALLB_LOG_LEVELS
        .into_iter()
        .map(|(m, _)| m)
        .chain(ferrolb::bgp::frr::FRR_LOG_LEVELS)
        .collect();
    assert_eq!(chart, speaker);
}

#[test]
fn the_layer2_refresh_reaches_the_speaker_only_when_set() {
    require_helm!();
    let speaker = |values: &str| args(&render_clean(values), "DaemonSet", "ferrolb-speaker", "speaker");
    assert!(!speaker("{}").iter().any(|a| a.starts_with("--layer2-refresh-seconds")));
    let set = speaker(r#"{"speaker": {"layer2RefreshSeconds": 30}}"#);
    assert!(set.contains(&"--layer2-refresh-seconds=30".into()), "{set:?}");
}

/// Every key of values.yaml (its path) that is not documented: a key is documented by the
/// comment right above it or by an ancestor's comment naming it; a group (a key with keys
/// under it) by its keys; and what lies under a documented leaf (labels, a tlsConfig, list
/// entries) is that value's data.
fn undocumented(text: &str) -> Vec<String> {
    // (indent, path, documented by itself)
    let mut keys: Vec<(usize, Vec<String>, bool)> = Vec::new();
    let mut stack: Vec<(usize, String, String)> = Vec::new();
    let mut comment = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(c) = trimmed.strip_prefix('#') {
            comment.push_str(c);
            comment.push(' ');
            continue;
        }
        let item = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        let indent = line.len() - item.len();
        let key = match item.split_once(':') {
            Some((k, _)) if !k.contains(' ') && !k.contains('{') => k.to_string(),
            _ => {
                comment.clear();
                continue;
            }
        };
        while stack.last().is_some_and(|(i, _, _)| *i >= indent) {
            stack.pop();
        }
        let named = stack.iter().any(|(_, _, c)| c.split(|ch: char| !ch.is_alphanumeric()).any(|w| w == key));
        let mut path: Vec<String> = stack.iter().map(|(_, k, _)| k.clone()).collect();
        path.push(key.clone());
        keys.push((indent, path, !comment.trim().is_empty() || named));
        stack.push((indent, key, std::mem::take(&mut comment)));
    }
    let mut out = Vec::new();
    for (i, (_, path, own)) in keys.iter().enumerate() {
        let group =
            keys.get(i + 1).is_some_and(|(_, next, _)| next.len() > path.len() && next.starts_with(path));
        let parent = &path[..path.len() - 1];
        let parent_documented =
            keys.iter().take(i).rev().find(|(_, p, _)| p == parent).is_some_and(|(_, _, d)| *d);
        if !own && !group && !parent_documented {
            out.push(path.join("."));
        }
    }
    out
}

#[test]
fn every_value_is_documented_and_every_value_read_exists() {
    let root = crate::repo_root().join("charts/ferrolb");
    let text = std::fs::read_to_string(root.join("values.yaml")).unwrap();
    let bare = undocumented(&text);
    assert!(bare.is_empty(), "values without a comment in values.yaml: {bare:?}");
    // The check itself notices a bare value.
    assert_eq!(undocumented("a:\n  # documented\n  b: 1\n  c: 2\n"), ["a.c"]);

    let values: Value = serde_saphyr::from_str(&text).unwrap();
    let re = regex::Regex::new(r"\.Values\.([A-Za-z0-9_.]+)").unwrap();
    let mut missing = BTreeSet::new();
    for e in std::fs::read_dir(root.join("templates")).unwrap() {
        let t = std::fs::read_to_string(e.unwrap().path()).unwrap();
        for c in re.captures_iter(&t) {
            let path = &c[1];
            let found = path.split('.').try_fold(&values, |v, k| v.get(k));
            if found.is_none() {
                missing.insert(path.to_string());
            }
        }
    }
    assert!(missing.is_empty(), "templates read values that values.yaml does not have: {missing:?}");
}

#[test]
fn the_charts_rbac_lets_the_controller_authorize_scrapers() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    require_helm!();
    require_kube!();
    let (objects, _) =
        render(r#"{"metrics": {"reader": {"serviceAccount": "prometheus", "namespace": "monitoring"}}}"#);
    let lab = crate::kube_lab::KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        let admin = lab.prepared(&["metallb-system", "monitoring"]).await;
        crate::chart::create_namespaced::<ServiceAccount>(&admin, &objects, "ServiceAccount").await;
        crate::chart::create_cluster::<ClusterRole>(&admin, &objects, "ClusterRole").await;
        crate::chart::create_cluster::<ClusterRoleBinding>(&admin, &objects, "ClusterRoleBinding").await;
        crate::chart::create_namespaced::<Role>(&admin, &objects, "Role").await;
        crate::chart::create_namespaced::<RoleBinding>(&admin, &objects, "RoleBinding").await;
        // The NetworkPolicies are valid objects for a real API server too.
        let (policies, _) =
            render(r#"{"networkPolicies": {"enabled": true, "apiServerCIDRs": ["192.0.2.10/32"]}}"#);
        crate::chart::create_namespaced::<k8s_openapi::api::networking::v1::NetworkPolicy>(
            &admin,
            &policies,
            "NetworkPolicy",
        )
        .await;

        use crate::kube_metrics_auth::{get, service_account_token};
        let controller = service_account_token(&admin, "metallb-system", "ferrolb-controller", false).await;
        let kubeconfig = lab.dir.join("controller-sa.kubeconfig");
        let admin_config = std::fs::read_to_string(lab.kubeconfig()).unwrap();
        std::fs::write(&kubeconfig, admin_config.replace(crate::kube_lab::TOKEN, &controller)).unwrap();
        let prometheus = service_account_token(&admin, "monitoring", "prometheus", true).await;
        let other = service_account_token(&admin, "monitoring", "grafana", true).await;

        let port = crate::kube_lab::free_port();
        let log = lab.dir.join("controller.log");
        let _running = crate::fabric::Running(
            Command::new(crate::ferrolb_bin())
                .args([
                    "controller",
                    "--webhook-port",
                    "0",
                    "--leader-elect",
                    "false",
                    "--metrics-secure=true",
                ])
                .arg(format!("--metrics-bind=127.0.0.1:{port}"))
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        let url = format!("https://127.0.0.1:{port}/metrics");
        let up =
            crate::frr_lab::wait_for(std::time::Duration::from_secs(20), || get(&url, None, None).0 == 401);
        assert!(up.is_some(), "{}", std::fs::read_to_string(&log).unwrap_or_default());
        let (code, body) = get(&url, Some(&prometheus), None);
        assert_eq!(code, 200, "{body}\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        assert_eq!(get(&url, Some(&other), None).0, 403);
    });
}

/// Membership is sealed by default: the speakers mount the key's Secret (and wait for it), the
/// controller makes it and may create Secrets; unsealed only when asked, never by an empty name.
#[test]
fn membership_is_sealed_by_default_and_unsealed_only_when_asked() {
    require_helm!();
    let objects = render_clean("{}");
    let speaker = args(&objects, "DaemonSet", "ferrolb-speaker", "speaker");
    assert!(
        speaker.contains(&"--membership-secret-file=/etc/ferrolb/memberlist/secretkey".to_string()),
        "{speaker:?}"
    );
    let ds = find(&objects, "DaemonSet", "ferrolb-speaker");
    let volumes = ds["spec"]["template"]["spec"]["volumes"].as_array().unwrap();
    let key = volumes.iter().find(|v| v["name"] == "memberlist").expect("the key's volume");
    assert_eq!(key["secret"]["secretName"], "ferrolb-memberlist");
    assert!(key["secret"].get("optional").is_none(), "speakers must wait for the key: {key}");
    let controller = args(&objects, "Deployment", "ferrolb-controller", "controller");
    assert!(controller.contains(&"--memberlist-secret=ferrolb-memberlist".to_string()), "{controller:?}");
    let role = objects
        .iter()
        .find(|o| o["kind"] == "Role" && o["metadata"]["name"] == "ferrolb-controller")
        .unwrap();
    assert!(grants(role).contains(&("".into(), "secrets".into(), "create".into())));

    let open = render_clean(r#"{"speaker": {"memberlist": {"insecure": true}}}"#);
    let speaker = args(&open, "DaemonSet", "ferrolb-speaker", "speaker");
    assert!(!speaker.iter().any(|a| a.starts_with("--membership-secret-file")), "{speaker:?}");
    let controller = args(&open, "Deployment", "ferrolb-controller", "controller");
    assert!(!controller.iter().any(|a| a.starts_with("--memberlist-secret")), "{controller:?}");
    let why =
        render_error(r#"{"speaker": {"memberlist": {"secretName": ""}}}"#).expect("an empty name renders");
    assert!(why.contains("speaker.memberlist.insecure=true"), "{why}");
}
