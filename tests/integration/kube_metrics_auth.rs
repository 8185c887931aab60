//! Secure metrics against a real kube-apiserver: HTTPS, and a scrape is answered only for a
//! ServiceAccount a ClusterRole allows to `get` /metrics (401 without a token or with a token
//! the API server does not know, 403 for one it knows but does not allow); probes stay open;
//! plain HTTP still works when asked for.

use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::kube_lab::{KubeLab, free_port};

/// A token of the ServiceAccount `ns/name`, creating the account first.
pub async fn service_account_token(admin: &Client, ns: &str, name: &str, create: bool) -> String {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
    if create {
        let sa: ServiceAccount =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name, "namespace": ns}})).unwrap();
        accounts.create(&PostParams::default(), &sa).await.unwrap();
    }
    let request = TokenRequest {
        spec: TokenRequestSpec { expiration_seconds: Some(3600), ..Default::default() },
        ..Default::default()
    };
    accounts.create_token_request(name, &PostParams::default(), &request).await.unwrap().status.unwrap().token
}

/// (HTTP status, body) of a GET; status 0 when nothing answered.
pub fn get(url: &str, token: Option<&str>, ca: Option<&std::path::Path>) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-s", "--max-time", "5", "-w", "\n%{http_code}"]);
    match ca {
        Some(ca) => c.arg("--cacert").arg(ca),
        None => c.arg("-k"),
    };
    if let Some(t) = token {
        c.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = c.arg(url).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn wait_answering(url: &str) -> bool {
    crate::frr_lab::wait_for(Duration::from_secs(20), || get(url, None, None).0 != 0).is_some()
}

#[test]
fn only_an_allowed_service_account_scrapes_secure_metrics() {
    require_kube!();
    let lab = KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        let admin = lab.prepared(&["metallb-system", "monitoring"]).await;
        // What a monitoring stack is given: get on the non-resource URL /metrics.
        let role: ClusterRole = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "metrics-reader"},
            "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}],
        }))
        .unwrap();
        Api::<ClusterRole>::all(admin.clone()).create(&PostParams::default(), &role).await.unwrap();
        let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "prometheus-metrics-reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "metrics-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "prometheus", "namespace": "monitoring"}],
        }))
        .unwrap();
        Api::<ClusterRoleBinding>::all(admin.clone()).create(&PostParams::default(), &binding).await.unwrap();
        let allowed = service_account_token(&admin, "monitoring", "prometheus", true).await;
        let refused = service_account_token(&admin, "monitoring", "intruder", true).await;

        // A certificate from files (a mounted Secret), for the speaker: verified by the scraper.
        let certs = lab.dir.join("metrics-cert");
        std::fs::create_dir_all(&certs).unwrap();
        let ok = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=ferrolb-metrics"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1"])
            .arg("-keyout")
            .arg(certs.join("tls.key"))
            .arg("-out")
            .arg(certs.join("tls.crt"))
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "openssl could not make the metrics certificate");

        let (secure, files, plain) = (free_port(), free_port(), free_port());
        let controller = |port: u16, extra: &[&str], log: &str| {
            let bind = format!("127.0.0.1:{port}");
            let mut args = vec!["controller", "--webhook-port", "0", "--leader-elect", "false", "--metrics-bind"];
            args.push(&bind);
            args.extend_from_slice(extra);
            lab.run_ferrolb(&args, log)
        };
        let _secure = controller(secure, &["--metrics-secure=true"], "secure.log");
        let _plain = controller(plain, &[], "plain.log");
        let cert_dir = certs.display().to_string();
        let files_bind = format!("127.0.0.1:{files}");
        let _speaker = lab.run_ferrolb(
            &["speaker", "--node", "node1", "--metrics-bind", &files_bind, "--metrics-secure=true"]
                .into_iter()
                .chain(["--metrics-cert-dir", &cert_dir])
                .collect::<Vec<_>>(),
            "speaker.log",
        );

        let https = format!("https://127.0.0.1:{secure}");
        assert!(wait_answering(&format!("{https}/healthz")), "{}", lab.log("secure.log"));
        let first = Instant::now();
        let (code, body) = get(&format!("{https}/metrics"), Some(&allowed), None);
        let uncached = first.elapsed();
        assert_eq!(code, 200, "{body}\n{}", lab.log("secure.log"));
        assert!(body.contains("metallb_k8s_client_config_loaded_bool"), "{body}");
        let again = Instant::now();
        for _ in 0..20 {
            assert_eq!(get(&format!("{https}/metrics"), Some(&allowed), None).0, 200);
        }
        let cached = again.elapsed() / 20;
        println!("secure scrape: first {uncached:?} (TokenReview + SubjectAccessReview), then {cached:?} each (cached)");

        let (code, body) = get(&format!("{https}/metrics"), Some(&refused), None);
        assert_eq!(code, 403, "{body}");
        assert!(body.contains("system:serviceaccount:monitoring:intruder"), "{body}");
        assert_eq!(get(&format!("{https}/metrics"), None, None).0, 401);
        assert_eq!(get(&format!("{https}/metrics"), Some("not-a-token"), None).0, 401);
        // Probes carry no token and must keep working for the kubelet.
        assert_eq!(get(&format!("{https}/healthz"), None, None), (200, "ok".into()));
        // Nothing is served in the clear on the secure port.
        assert_ne!(get(&format!("http://127.0.0.1:{secure}/metrics"), Some(&allowed), None).0, 200);

        // The speaker, with a certificate from files, verified against it.
        let https = format!("https://127.0.0.1:{files}");
        let ca = certs.join("tls.crt");
        assert!(wait_answering(&format!("{https}/healthz")), "{}", lab.log("speaker.log"));
        let (code, body) = get(&format!("{https}/metrics"), Some(&allowed), Some(&ca));
        assert_eq!(code, 200, "{body}\n{}", lab.log("speaker.log"));
        assert_eq!(get(&format!("{https}/metrics"), Some(&refused), Some(&ca)).0, 403);

        // Labs keep plain HTTP, no token needed.
        let http = format!("http://127.0.0.1:{plain}");
        assert!(wait_answering(&format!("{http}/healthz")), "{}", lab.log("plain.log"));
        let (code, body) = get(&format!("{http}/metrics"), None, None);
        assert_eq!(code, 200);
        assert!(body.contains("metallb_k8s_client_config_loaded_bool"), "{body}");
    });
}

#[test]
fn secure_metrics_need_the_api_server() {
    let out = Command::new(crate::ferrolb_bin())
        .args([
            "speaker",
            "--node",
            "n1",
            "-f",
            "examples",
            "--metrics-secure=true",
            "--metrics-bind",
            "127.0.0.1:0",
        ])
        .current_dir(crate::repo_root())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--metrics-secure") && err.contains("-f"), "{err}");
}
