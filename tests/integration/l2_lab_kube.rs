//! The quorum base from the API server, as users run it: five layer 2 speakers in network
//! namespaces find each other through their speaker pods on a real kube-apiserver (the
//! controller allocates), and deleting three of the pods (the DaemonSet shrinking) lets the two
//! speakers left answer again, where losing the three without the pods going fences them; pods
//! added back do not fence the two while their speakers start.

use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};

use crate::fabric::Running;
use crate::frr_lab::wait_for;
use crate::kube_lab::KubeLab;
use crate::l2_lab::{L2Lab, answering};
use crate::l2_lab_members::{all_live, survivors_answer};

/// Makes the host's `127.0.0.1:port` (the API server) reachable as `127.0.0.1:port` inside a
/// node's namespace, so the certificate and kubeconfig stay as they are. A listener keeps the
/// namespace it was made in, so one thread binds it inside and then returns to the host's.
pub struct Forward {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn enter(ns: &std::fs::File) -> bool {
    // SAFETY: setns on a namespace file we hold open; it changes only this thread's namespace.
    unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) == 0 }
}

impl Forward {
    pub fn start(ns: &str, port: u16) -> Forward {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, bound) = std::sync::mpsc::channel();
        let target = format!("/var/run/netns/{ns}");
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let host = std::fs::File::open("/proc/thread-self/ns/net").unwrap();
            let inside = std::fs::File::open(&target).unwrap();
            assert!(enter(&inside), "entering {target}");
            let listener = TcpListener::bind(("127.0.0.1", port));
            assert!(enter(&host), "back to the host's namespace");
            let listener = listener.unwrap();
            listener.set_nonblocking(true).unwrap();
            ready.send(()).unwrap();
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        if let Ok(server) = TcpStream::connect(("127.0.0.1", port)) {
                            pipe(client, server);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(_) => return,
                }
            }
        });
        bound.recv_timeout(Duration::from_secs(5)).expect("forwarder listening");
        Forward { stop, thread: Some(thread) }
    }
}

/// Copies both ways until either side closes.
fn pipe(a: TcpStream, b: TcpStream) {
    for (mut from, mut to) in [(a.try_clone(), b.try_clone()), (b.try_clone(), a.try_clone())]
        .into_iter()
        .filter_map(|(f, t)| Some((f.ok()?, t.ok()?)))
    {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Both);
        });
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub const CONFIG: &str = "
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan, namespace: metallb-system}
spec: {addresses: [192.0.2.200-192.0.2.209]}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: all, namespace: metallb-system}
";

/// The speaker pod `name` on node `n` as the DaemonSet would make it, running (no kubelet
/// here); `started` adds its container's status, started at that time.
pub async fn speaker_pod(pods: &Api<Pod>, name: &str, n: usize, started: Option<&str>) {
    let pod: Pod = serde_saphyr::from_str(&format!(
        "metadata: {{name: {name}, labels: {{app.kubernetes.io/name: ferrolb, app.kubernetes.io/component: speaker}}}}\n\
         spec: {{nodeName: node{n}, hostNetwork: true, containers: [{{name: speaker, image: ferrolb}}]}}\n"
    ))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let mut status = serde_json::json!({"phase": "Running", "podIP": format!("192.0.2.{}", 10 + n)});
    if let Some(at) = started {
        status["containerStatuses"] = serde_json::json!([{"name": "speaker", "image": "ferrolb", "imageID": "",
            "ready": true, "restartCount": 0, "state": {"running": {"startedAt": at}}}]);
    }
    let patch = Patch::Merge(serde_json::json!({ "status": status }));
    pods.patch_status(name, &PatchParams::default(), &patch).await.unwrap();
}

/// The `layer2Fenced` condition of node `n`'s ConfigurationState: (status, reason, message).
async fn fenced_condition(client: &kube::Client, n: usize) -> Option<(String, String, String)> {
    condition(client, n, "layer2Fenced").await
}

/// The condition `type_` of node `n`'s ConfigurationState: (status, reason, message).
async fn condition(client: &kube::Client, n: usize, type_: &str) -> Option<(String, String, String)> {
    let states: Api<ferrolb::api::ConfigurationState> = Api::namespaced(client.clone(), "metallb-system");
    let st = states.get(&format!("speaker-node{n}")).await.ok()?.status?;
    let c = st.conditions.into_iter().find(|c| c.type_ == type_)?;
    Some((c.status, c.reason, c.message))
}

async fn condition_becomes(
    client: &kube::Client,
    n: usize,
    status: &str,
    reason: &str,
) -> Result<(), String> {
    crate::kube_lab::eventually("the layer2Fenced condition", || async {
        match fenced_condition(client, n).await {
            Some((s, r, m)) if s == status && r == reason => {
                println!("speaker-node{n}: layer2Fenced={s} {r}: {m}");
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// `n` layer 2 nodes on a switch and a real API server each reaches from its namespace (the
/// forwards live as long as the returned vector).
pub fn l2_on_kube(n: usize) -> (L2Lab, KubeLab, Vec<Forward>) {
    let lab = L2Lab::start_with("", n, n, false);
    let kube = KubeLab::start();
    let port: u16 = kube.url.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap();
    let forwards = lab.nodes.iter().map(|node| Forward::start(&node.0, port)).collect();
    (lab, kube, forwards)
}

/// Nodes node1..`n` with a running speaker pod each, and [`CONFIG`]'s pool and advertisement.
pub async fn l2_objects(kube: &KubeLab, n: usize) -> kube::Client {
    let client = kube.prepared(&["metallb-system", "shop"]).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "metallb-system");
    for i in 1..=n {
        let node: Node = serde_saphyr::from_str(&format!("metadata: {{name: node{i}}}\n")).unwrap();
        Api::<Node>::all(client.clone()).create(&PostParams::default(), &node).await.unwrap();
        speaker_pod(&pods, &format!("speaker-{i}"), i, None).await;
    }
    let mut inputs = ferrolb::plan::Inputs::new("metallb-system");
    inputs.add_yaml("config", CONFIG).unwrap();
    crate::kube_controller::create_all(&client, &inputs.objects.pools).await;
    crate::kube_controller::create_all(&client, &inputs.objects.l2_advertisements).await;
    client
}

#[test]
fn the_quorum_base_follows_the_speaker_pods_down_and_up() {
    if let Some(why) = crate::l2_lab::unavailable() {
        println!("skipped: {why}");
        return;
    }
    require_kube!();
    let (lab, kube, _forwards) = l2_on_kube(5);
    let rt = crate::threaded_runtime();
    let ip = "192.0.2.200";
    rt.block_on(async {
        let client = l2_objects(&kube, 5).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "metallb-system");
        let svc: Service = serde_saphyr::from_str(
            "metadata: {name: web, namespace: shop}\nspec: {type: LoadBalancer, ports: [{port: 80}]}\n",
        )
        .unwrap();
        Api::<Service>::namespaced(client.clone(), "shop")
            .create(&PostParams::default(), &svc)
            .await
            .unwrap();
        // A serving endpoint (traffic policy Cluster: anywhere will do), or nothing is announced.
        let slice: EndpointSlice = serde_saphyr::from_str(
            "metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}\n\
             addressType: IPv4\nendpoints: [{addresses: [203.0.113.50], nodeName: node1, conditions: {ready: true}}]\n\
             ports: [{port: 80}]\n",
        )
        .unwrap();
        Api::<EndpointSlice>::namespaced(client.clone(), "shop")
            .create(&PostParams::default(), &slice)
            .await
            .unwrap();

        let controller_metrics = format!("127.0.0.1:{}", crate::kube_lab::free_port());
        let _controller = Running(
            Command::new(crate::ferrolb_bin())
                .args(["controller", "--webhook-port", "0", "--metrics-bind", &controller_metrics])
                .args(["--memberlist-secret", "ferrolb-memberlist"])
                .arg("--kubeconfig")
                .arg(kube.kubeconfig())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(kube.dir.join("controller.log")).unwrap())
                .spawn()
                .unwrap(),
        );
        let mut speakers: Vec<Option<Running>> = (0..5).map(|i| Some(speaker(&lab, &kube, i))).collect();
        let converged = wait_for(Duration::from_secs(40), || {
            (0..5).all(|i| lab.log(i).contains(&all_live(5))) && answering(&lab, ip).len() == 1
        });
        assert!(converged.is_some(), "{}\n{}", lab.logs(), kube.log("controller.log"));
        for n in 1..=5 {
            assert!(condition_becomes(&client, n, "False", "Quorum").await.is_ok(), "{}", lab.log(n - 1));
        }
        // These speakers run without a key, an opt-out their ConfigurationState names.
        let unsealed = condition(&client, 1, "membershipSealed").await;
        assert!(matches!(&unsealed, Some((s, r, _)) if s == "False" && r == "NoKey"), "{unsealed:?}");
        // The controller made the speakers' key, and said nothing of it.
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), "metallb-system");
        let made = secrets.get("ferrolb-memberlist").await.expect("the membership key's Secret").data.unwrap();
        let key = String::from_utf8(made["secretkey"].0.clone()).unwrap();
        assert!(key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
        assert!(!kube.log("controller.log").contains(&key), "the key reached the controller's log");
        assert!(kube.log("controller.log").contains("made the speakers' membership key"));

        // Three speakers die, their pods stay: the two left may be the cut-off side, so they fence.
        for s in speakers.iter_mut().skip(2) {
            drop(s.take());
        }
        let fenced = wait_for(Duration::from_secs(10), || {
            (0..2).all(|i| lab.metric(i, "ferrolb_layer2_fenced") == Some(1.0))
        });
        assert!(fenced.is_some(), "{}", lab.logs());
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(answering(&lab, ip), Vec::<String>::new(), "a fenced node answers\n{}", lab.logs());
        for n in 1..=2 {
            assert!(condition_becomes(&client, n, "True", "NoQuorum").await.is_ok(), "{}", lab.log(n - 1));
        }

        // The DaemonSet shrinks: the three pods are deleted (they stay Terminating with no kubelet
        // to confirm, as pods on a dead node do).
        let deleted = Instant::now();
        for n in 3..=5 {
            pods.delete(&format!("speaker-{n}"), &DeleteParams::default()).await.unwrap();
        }
        let (lifted_after, probes, owner) = survivors_answer(&lab, ip, deleted);
        // The node answering says so on the Service, as MetalLB's speakers do.
        let said = format!("announcing from node \"node{}\" with protocol \"layer2\"", owner + 1);
        let r = crate::kube_lab::eventually("a nodeAssigned Event from the answering node", || async {
            let events = crate::kube_events::assigned(&client, "web").await;
            if events.iter().any(|(note, _)| *note == said) { Ok(()) } else { Err(format!("{events:?}")) }
        })
        .await;
        assert!(r.is_ok(), "{r:?}\n{}", lab.log(owner));
        for n in 1..=2 {
            assert!(condition_becomes(&client, n, "False", "Quorum").await.is_ok(), "{}", lab.log(n - 1));
            assert_eq!(lab.metric(n - 1, "ferrolb_layer2_expected_speakers"), Some(2.0));
        }
                println!(
            "3 of 5 speaker pods deleted: fencing lifted {lifted_after:?} later, node{} answered ARP \
             probe {probes} sent after that",
            owner + 1
        );

        // Scaled back to five: the new pods run, their speakers have not joined yet. They hold
        // nothing, so the two keep answering meanwhile; once the speakers join, all five count.
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        for n in 3..=5 {
            speaker_pod(&pods, &format!("speaker-{n}-new"), n, Some(&now)).await;
        }
        let r = crate::kube_lab::eventually("the new pods seen as starting", || async {
            match fenced_condition(&client, 1).await {
                Some((s, _, m)) if s == "False" && m.contains("(starting: node3, node4, node5)") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        assert!(r.is_ok(), "{r:?}\n{}", lab.log(0));
        for _ in 0..3 {
            assert_eq!(answering(&lab, ip).len(), 1, "{}", lab.logs());
        }
        for (i, s) in speakers.iter_mut().enumerate().skip(2) {
            *s = Some(speaker(&lab, &kube, i));
        }
        let grown = wait_for(Duration::from_secs(30), || {
            (0..5).all(|i| lab.metric(i, "ferrolb_layer2_expected_speakers") == Some(5.0))
                && (0..5).all(|i| lab.metric(i, "ferrolb_layer2_live_speakers") == Some(5.0))
        });
        assert!(grown.is_some(), "{}", lab.logs());
        assert_eq!(answering(&lab, ip).len(), 1, "{}", lab.logs());
        for n in 1..=5 {
            assert_eq!(lab.metric(n - 1, "ferrolb_layer2_fenced"), Some(0.0), "{}", lab.log(n - 1));
        }
        println!("scaled back to 5: no fencing while the new speakers started, all 5 counted once joined");
        speakers.clear();
    });
}

/// Node `i`'s speaker, in its namespace, reading the cluster through the forwarded API server.
pub fn speaker(lab: &L2Lab, kube: &KubeLab, i: usize) -> Running {
    speaker_with(lab, kube, i, &[])
}

/// [`speaker`] with more arguments.
pub fn speaker_with(lab: &L2Lab, kube: &KubeLab, i: usize, extra: &[&str]) -> Running {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(lab.dir.join(format!("node{}.log", i + 1)))
        .unwrap();
    let bind = format!("192.0.2.{}:7946", 11 + i);
    Running(
        Command::new("ip")
            .args(["netns", "exec", &lab.nodes[i].0])
            .arg(crate::ferrolb_bin())
            .args(["speaker", "--node", &format!("node{}", i + 1), "--layer2", "--membership-bind", &bind])
            .args(extra)
            .arg("--kubeconfig")
            .arg(kube.kubeconfig())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}
