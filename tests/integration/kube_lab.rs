//! A real kube-apiserver and etcd on loopback, with ferrolb's CRDs installed. The binaries are
//! not in any package registry: tests look in FERROLB_KUBE_BIN_DIR (default
//! /opt/ferrolb-kube/bin) for kube-apiserver, and for etcd there or on PATH, and print
//! `skipped: no kube-apiserver` without them. Everything runs as a child process with its data
//! in a temporary directory, removed when the lab is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::PostParams;
use kube::{Api, Client};

use crate::frr_lab::wait_for;

pub const TOKEN: &str = "ferrolb-test-admin-token";

fn bin_dir() -> PathBuf {
    std::env::var_os("FERROLB_KUBE_BIN_DIR")
        .map_or_else(|| PathBuf::from("/opt/ferrolb-kube/bin"), PathBuf::from)
}

fn find(name: &str) -> Option<PathBuf> {
    let local = bin_dir().join(name);
    if local.is_file() {
        return Some(local);
    }
    let out = Command::new("sh").args(["-c", &format!("command -v {name}")]).output().ok()?;
    out.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Why the Kubernetes tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    if find("kube-apiserver").is_none() {
        return Some(format!(
            "no kube-apiserver (set FERROLB_KUBE_BIN_DIR; looked in {})",
            bin_dir().display()
        ));
    }
    if find("etcd").is_none() {
        return Some("no etcd (apt-get install etcd-server, or put it in FERROLB_KUBE_BIN_DIR)".into());
    }
    for tool in ["openssl", "curl"] {
        if find(tool).is_none() {
            return Some(format!("no {tool}"));
        }
    }
    None
}

#[allow(unused_macros)]
macro_rules! require_kube {
    () => {
        if let Some(why) = $crate::kube_lab::unavailable() {
            println!("skipped: {why}");
            return;
        }
    };
}

fn spawn_apiserver(args: &[String], dir: &Path) -> Child {
    let log =
        std::fs::OpenOptions::new().create(true).append(true).open(dir.join("kube-apiserver.log")).unwrap();
    Command::new(find("kube-apiserver").unwrap())
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("kube-apiserver starts")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Writes only (reads would drown them), once each: when answered.
const AUDIT_POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
";

/// One write to the API server, from its audit log.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Write {
    pub user: String,
    pub verb: String,
    /// `resource[/subresource] namespace/name`.
    pub object: String,
    pub code: u64,
}

impl Write {
    fn of(event: &serde_json::Value) -> Write {
        let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let o = &event["objectRef"];
        let sub = o["subresource"].as_str().map(|x| format!("/{x}")).unwrap_or_default();
        Write {
            user: s(&event["user"]["username"]),
            verb: s(&event["verb"]),
            object: format!("{}{sub} {}/{}", s(&o["resource"]), s(&o["namespace"]), s(&o["name"])),
            code: event["responseStatus"]["code"].as_u64().unwrap_or(0),
        }
    }
}

pub struct KubeLab {
    etcd: Child,
    /// Behind a lock so a test holding the lab shared can still bounce it.
    apiserver: std::sync::Mutex<Child>,
    apiserver_args: Vec<String>,
    pub dir: PathBuf,
    pub url: String,
}

impl KubeLab {
    pub fn start() -> KubeLab {
        let dir = std::env::temp_dir().join(format!(
            "ferrolb-kube-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(dir.join("certs")).unwrap();
        let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
        let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
        let etcd = Command::new(find("etcd").unwrap())
            .args(["--data-dir", dir.join("etcd").to_str().unwrap()])
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{etcd_port}")])
            .args(["--advertise-client-urls", &format!("http://127.0.0.1:{etcd_port}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer_port}")])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer_port}")])
            .args(["--initial-cluster", &format!("default=http://127.0.0.1:{peer_port}")])
            .args(["--unsafe-no-fsync"])
            .stdout(Stdio::null())
            .stderr(log("etcd.log"))
            .spawn()
            .expect("etcd starts");
        let key = dir.join("sa.key");
        let ok = Command::new("openssl")
            .args(["genrsa", "-out", key.to_str().unwrap(), "2048"])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
            && Command::new("openssl")
                .args([
                    "rsa",
                    "-in",
                    key.to_str().unwrap(),
                    "-pubout",
                    "-out",
                    dir.join("sa.pub").to_str().unwrap(),
                ])
                .stderr(Stdio::null())
                .status()
                .unwrap()
                .success();
        assert!(ok, "openssl could not make the service account key");
        std::fs::write(dir.join("tokens.csv"), format!("{TOKEN},admin,admin,\"system:masters\"\n")).unwrap();
        std::fs::write(dir.join("audit-policy.yaml"), AUDIT_POLICY).unwrap();
        let apiserver_args: Vec<String> = [
            "--etcd-servers".into(),
            format!("http://127.0.0.1:{etcd_port}"),
            "--bind-address".into(),
            "127.0.0.1".into(),
            "--secure-port".into(),
            api_port.to_string(),
            "--cert-dir".into(),
            dir.join("certs").display().to_string(),
            "--service-account-issuer".into(),
            "https://kubernetes.default.svc".into(),
            "--service-account-key-file".into(),
            dir.join("sa.pub").display().to_string(),
            "--service-account-signing-key-file".into(),
            key.display().to_string(),
            "--token-auth-file".into(),
            dir.join("tokens.csv").display().to_string(),
            "--authorization-mode".into(),
            "RBAC".into(),
            // Cluster IPs are only bookkeeping here: nothing is ever sent to them.
            "--service-cluster-ip-range".into(),
            "198.18.0.0/16,2001:db8:ffff::/112".into(),
            "--disable-admission-plugins".into(),
            "ServiceAccount".into(),
            "--audit-policy-file".into(),
            dir.join("audit-policy.yaml").display().to_string(),
            "--audit-log-path".into(),
            dir.join("audit.log").display().to_string(),
        ]
        .into();
        let apiserver = spawn_apiserver(&apiserver_args, &dir);
        let url = format!("https://127.0.0.1:{api_port}");
        let lab = KubeLab { etcd, apiserver: std::sync::Mutex::new(apiserver), apiserver_args, dir, url };
        lab.write_kubeconfig();
        lab.wait_ready();
        lab
    }

    fn wait_ready(&self) {
        let up = wait_for(Duration::from_secs(60), || {
            Command::new("sh")
                .args(["-c", &format!("curl -sk -H 'Authorization: Bearer {TOKEN}' {}/readyz", self.url)])
                .output()
                .is_ok_and(|o| o.stdout == b"ok")
        });
        assert!(up.is_some(), "kube-apiserver not ready:\n{}", self.log("kube-apiserver.log"));
    }

    /// Stops the API server (etcd keeps the data) until `restart_apiserver`.
    pub fn stop_apiserver(&self) {
        let mut child = self.apiserver.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts it again on the same address and waits until it is ready.
    pub fn restart_apiserver(&self) {
        // Stopped first if it still runs: a second one could not bind the port, and the first
        // would outlive the lab.
        self.stop_apiserver();
        *self.apiserver.lock().unwrap() = spawn_apiserver(&self.apiserver_args, &self.dir);
        self.wait_ready();
    }

    /// Every write the API server has answered so far, in order (its audit log).
    pub fn writes(&self) -> Vec<Write> {
        let text = std::fs::read_to_string(self.dir.join("audit.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|e| Write::of(&e))
            .collect()
    }

    /// `ferrolb ARGS --kubeconfig <this lab's>`, its stderr in `log` under the lab's directory.
    pub fn run_ferrolb(&self, args: &[&str], log: &str) -> crate::fabric::Running {
        crate::fabric::Running(
            Command::new(crate::ferrolb_bin())
                .args(args)
                .arg("--kubeconfig")
                .arg(self.kubeconfig())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(self.dir.join(log)).unwrap())
                .spawn()
                .unwrap(),
        )
    }

    pub fn log(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        text.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// A kubeconfig for this API server (admin token, the self-signed certificate trusted).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    fn write_kubeconfig(&self) {
        let path = self.kubeconfig();
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: {}\n    insecure-skip-tls-verify: true\n\
                 users:\n- name: admin\n  user:\n    token: {TOKEN}\ncontexts:\n- name: lab\n  context:\n    cluster: lab\n    user: admin\n\
                 current-context: lab\n",
                self.url
            ),
        )
        .unwrap();
    }

    pub async fn client(&self) -> kube::Client {
        ferrolb::k8s::client(Some(Path::new(&self.kubeconfig()))).await.unwrap()
    }

    /// An admin client for a cluster with ferrolb's CRDs installed and these namespaces made.
    pub async fn prepared(&self, namespaces: &[&str]) -> Client {
        let client = self.client().await;
        install_crds(&client).await;
        create_namespaces(&client, namespaces).await;
        client
    }
}

/// Creates these namespaces.
async fn create_namespaces(client: &Client, names: &[&str]) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in names {
        let object = Namespace {
            metadata: kube::api::ObjectMeta { name: Some(ns.to_string()), ..Default::default() },
            ..Default::default()
        };
        namespaces.create(&PostParams::default(), &object).await.unwrap();
    }
}

/// Installs ferrolb's CRDs from crds/ and waits until the API server serves them.
pub async fn install_crds(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = crate::repo_root().join("crds");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for doc in serde_saphyr::from_multiple::<CustomResourceDefinition>(&text).unwrap() {
            names.push(doc.metadata.name.clone().unwrap());
            api.create(&PostParams::default(), &doc).await.unwrap();
        }
    }
    for name in names {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let crd = api.get(&name).await.unwrap();
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Established" && c.status == "True"));
            if established {
                break;
            }
            assert!(Instant::now() < deadline, "CRD {name} never established");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for KubeLab {
    fn drop(&mut self) {
        self.stop_apiserver();
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `check` every 50 ms until it passes or 10 s went by (then its last complaint).
pub async fn eventually<F, Fut>(what: &str, mut check: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let t = Instant::now();
    loop {
        match check().await {
            Ok(()) => return Ok(()),
            Err(e) if t.elapsed() > Duration::from_secs(10) => return Err(format!("{what}: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
