//! The whole path in a cluster: a real kube-apiserver, `ferrolb controller`, and `ferrolb
//! speaker` for node1 driving frr-agent on node1's FRR, peering with a ToR. Creating a Service
//! puts its prefix in the ToR's routing table; deleting it takes it out.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, PostParams};

use crate::agent_process::AgentProcess;
use crate::bgp_lab::Lab;
use crate::fabric::Running;
use crate::frr_lab::wait_for;
use crate::kube_lab::KubeLab;

const CONFIG: &str = "
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lab, namespace: metallb-system}
spec: {addresses: [198.51.100.0/24]}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: tor, namespace: metallb-system}
spec: {myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.1, holdTime: 9s, keepaliveTime: 3s, connectTime: 1s, routerID: 192.0.2.11}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: lab, namespace: metallb-system}
";

fn route_at_tor(lab: &Lab, ip: &str) -> bool {
    let out = Command::new("ip").args(["-n", &lab.tor.ns, "route", "show", ip]).output().unwrap();
    !out.stdout.is_empty()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[test]
fn a_new_service_reaches_the_tor_and_a_deleted_one_leaves_it() {
    require_frr!();
    require_kube!();
    let lab = Lab::start();
    let agent = AgentProcess::start(&lab.node, "agent");
    let kube = KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        let client = kube.prepared(&["metallb-system", "shop"]).await;
        let node: Node = serde_saphyr::from_str("apiVersion: v1\nkind: Node\nmetadata: {name: node1}\n").unwrap();
        Api::<Node>::all(client.clone()).create(&PostParams::default(), &node).await.unwrap();
        let mut inputs = ferrolb::plan::Inputs::new("metallb-system");
        inputs.add_yaml("config", CONFIG).unwrap();
        crate::kube_controller::create_all(&client, &inputs.objects.pools).await;
        crate::kube_controller::create_all(&client, &inputs.objects.peers).await;
        crate::kube_controller::create_all(&client, &inputs.objects.bgp_advertisements).await;

        let log = |name: &str| std::fs::File::create(kube.dir.join(name)).unwrap();
        let _controller = Running(
            Command::new(crate::ferrolb_bin())
                .args(["controller", "--webhook-port", "0", "--kubeconfig"])
                .arg(kube.kubeconfig())
                .stdout(Stdio::null())
                .stderr(log("controller.log"))
                .spawn()
                .unwrap(),
        );
        let _speaker = Running(
            Command::new(crate::ferrolb_bin())
                .args(["speaker", "--node", "node1", "--kubeconfig"])
                .arg(kube.kubeconfig())
                .arg("--frr-agent-socket")
                .arg(&agent.socket)
                .stdout(Stdio::null())
                .stderr(log("speaker.log"))
                .spawn()
                .unwrap(),
        );
        let speaker_log = || std::fs::read_to_string(kube.dir.join("speaker.log")).unwrap_or_default();
        let session = wait_for(Duration::from_secs(30), || {
            lab.tor.json("show bgp neighbors 192.0.2.11 json")["192.0.2.11"]["bgpState"] == "Established"
        });
        assert!(session.is_some(), "no session\n{}", speaker_log());

        let services: Api<Service> = Api::namespaced(client.clone(), "shop");
        let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "shop");
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for i in 0..20 {
            let svc: Service = serde_saphyr::from_str(&format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: web{i}, namespace: shop}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\n"
            ))
            .unwrap();
            // A serving endpoint on node1, as the EndpointSlice controller would publish for a
            // ready pod (none runs here); without one nothing is announced, as in MetalLB.
            let slice: EndpointSlice = serde_saphyr::from_str(&format!(
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web{i}-1, namespace: shop, labels: {{kubernetes.io/service-name: web{i}}}}}\n\
                 addressType: IPv4\nendpoints: [{{addresses: [203.0.113.{}], nodeName: node1, conditions: {{ready: true}}}}]\nports: [{{port: 80}}]\n",
                10 + i
            ))
            .unwrap();
            slices.create(&PostParams::default(), &slice).await.unwrap();
            let t = Instant::now();
            services.create(&PostParams::default(), &svc).await.unwrap();
            let ip = loop {
                let s = services.get(&format!("web{i}")).await.unwrap();
                if let Some(ip) = ferrolb::plan::writeback::current_ips(&s).first().cloned() {
                    break ip;
                }
                assert!(t.elapsed() < Duration::from_secs(10), "web{i} got no IP");
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            while !route_at_tor(&lab, &ip) {
                assert!(t.elapsed() < Duration::from_secs(10), "{ip} never reached the ToR\n{}", speaker_log());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            up.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            services.delete(&format!("web{i}"), &DeleteParams::default()).await.unwrap();
            while route_at_tor(&lab, &ip) {
                assert!(t.elapsed() < Duration::from_secs(10), "{ip} never left the ToR");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            down.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        println!(
            "Service created -> prefix in the ToR's routing table: p50={:.0}ms p99={:.0}ms; deleted -> gone: p50={:.0}ms p99={:.0}ms (n=20)",
            pct(&mut up, 0.5),
            pct(&mut up, 0.99),
            pct(&mut down, 0.5),
            pct(&mut down, 0.99)
        );
    });
}
