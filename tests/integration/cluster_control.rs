//! The cluster lab's control plane (see cluster_lab.rs): a lab CA and the API server's serving
//! certificate, kubeconfigs, and etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler started in the control-plane namespace, reached from the tests through a
//! socat relay.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::cluster_lab::{CP_IP, ClusterLab, SERVICE_CIDR, TOKEN, bin_dir, log, tail};
use crate::cluster_node::wait_until;
use crate::fabric::{Running, sh};

/// CA, API server serving certificate (the kubernetes Service IP, the control plane's address
/// and loopback in its SANs) and the ServiceAccount key pair.
pub fn make_pki(dir: &Path) {
    let script = format!(
        "set -e; cd {d}
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=ferrolb-lab-ca 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj /CN=kube-apiserver 2>/dev/null
printf 'subjectAltName=IP:198.18.0.1,IP:{CP_IP},IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\\n' > san.ext
openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 2 -extfile san.ext 2>/dev/null
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
printf '{TOKEN},admin,admin,\"system:masters\"\\n' > tokens.csv",
        d = dir.display()
    );
    sh(&script);
}

pub fn kubeconfig(dir: &Path, server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
         users:\n- name: admin\n  user:\n    token: {TOKEN}\ncontexts:\n- name: lab\n  context:\n    cluster: lab\n    user: admin\n\
         current-context: lab\n",
        ca = dir.join("ca.crt").display()
    )
}

impl ClusterLab {
    pub(crate) fn cp_ns(&self) -> &str {
        &self.cp.as_ref().unwrap().0
    }

    fn spawn_cp(&mut self, name: &str, args: &[String]) {
        let child = Command::new("ip")
            .args(["netns", "exec", self.cp_ns()])
            .arg(bin_dir().join(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log(&self.dir, &format!("{name}.log")))
            .spawn()
            .unwrap();
        self.control.push(Running(child));
    }

    pub(crate) fn start_control_plane(&mut self, bin: &Path, controller_manager_flags: &[&str]) {
        let dir = self.dir.clone();
        let d = |s: &str| dir.join(s).display().to_string();
        let etcd_args: Vec<String> = [
            "--data-dir",
            &d("etcd"),
            "--listen-client-urls",
            "http://127.0.0.1:2379",
            "--advertise-client-urls",
            "http://127.0.0.1:2379",
            "--listen-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:2380",
            "--initial-cluster",
            "default=http://127.0.0.1:2380",
            "--unsafe-no-fsync",
        ]
        .map(String::from)
        .into();
        self.spawn_cp("etcd", &etcd_args);
        let api_args: Vec<String> = [
            "--etcd-servers=http://127.0.0.1:2379".to_string(),
            "--bind-address=0.0.0.0".into(),
            "--secure-port=6443".into(),
            format!("--advertise-address={CP_IP}"),
            format!("--tls-cert-file={}", d("apiserver.crt")),
            format!("--tls-private-key-file={}", d("apiserver.key")),
            format!("--client-ca-file={}", d("ca.crt")),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!("--service-account-key-file={}", d("sa.pub")),
            format!("--service-account-signing-key-file={}", d("sa.key")),
            format!("--token-auth-file={}", d("tokens.csv")),
            "--authorization-mode=RBAC".into(),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--allow-privileged=true".into(),
            "--kubelet-preferred-address-types=InternalIP,Hostname".into(),
            "--shutdown-delay-duration=0s".into(),
            // No kube-proxy in the control plane's namespace: webhooks are dialled at their endpoints.
            "--enable-aggregator-routing=true".into(),
        ]
        .into();
        self.spawn_cp("kube-apiserver", &api_args);
        // The tests' way in: loopback here -> a unix socket -> the API server's namespace.
        let sock = self.dir.join("apiserver.sock");
        self.relays.push(Running(
            Command::new("ip")
                .args(["netns", "exec", self.cp_ns(), "socat"])
                .arg(format!("UNIX-LISTEN:{},fork", sock.display()))
                .arg(format!("TCP:{CP_IP}:6443"))
                .stderr(log(&self.dir, "relay.log"))
                .spawn()
                .unwrap(),
        ));
        self.relays.push(Running(
            Command::new("socat")
                .arg(format!("TCP-LISTEN:{},bind=127.0.0.1,fork,reuseaddr", self.api_port))
                .arg(format!("UNIX-CONNECT:{}", sock.display()))
                .stderr(log(&self.dir, "relay.log"))
                .spawn()
                .unwrap(),
        ));
        let ready = wait_until(Duration::from_secs(60), || {
            self.kubectl(&["get", "--raw", "/readyz"]).is_ok_and(|o| o.trim() == "ok")
        });
        assert!(ready.is_some(), "kube-apiserver not ready:\n{}", tail(&self.dir.join("kube-apiserver.log")));
        let kc = d("node.kubeconfig");
        let mut kcm_args: Vec<String> = [
            format!("--kubeconfig={kc}"),
            format!("--service-account-private-key-file={}", d("sa.key")),
            format!("--root-ca-file={}", d("ca.crt")),
            "--leader-elect=false".into(),
            "--use-service-account-credentials=false".into(),
            format!("--service-cluster-ip-range={SERVICE_CIDR}"),
            "--secure-port=0".into(),
        ]
        .into();
        kcm_args.extend(controller_manager_flags.iter().map(|f| f.to_string()));
        self.spawn_cp("kube-controller-manager", &kcm_args);
        let sched_args: Vec<String> =
            [format!("--kubeconfig={kc}"), "--leader-elect=false".into(), "--bind-address=127.0.0.1".into()]
                .into();
        self.spawn_cp("kube-scheduler", &sched_args);
        let _ = bin;
    }
}
