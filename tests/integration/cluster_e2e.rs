//! The cluster lab itself: nodes Ready, pods of a local image Ready on every node, reaching each
//! other across nodes through a ClusterIP Service (kube-proxy, iptables mode).

use std::time::Duration;

use crate::cluster_lab::ClusterLab;
use crate::cluster_node::wait_until;

/// A web server on every node and a ClusterIP Service in front of them.
pub const WEB: &str = "apiVersion: apps/v1
kind: DaemonSet
metadata: {name: web, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: localhost/ferrolb-web:e2e
        imagePullPolicy: Never
        ports: [{containerPort: 80}]
        readinessProbe: {tcpSocket: {port: 80}, periodSeconds: 1}
";

/// True when every pod with `selector` in `ns` is Ready and there are `count` of them.
pub fn pods_ready(lab: &ClusterLab, ns: &str, selector: &str, count: usize) -> bool {
    let Ok(v) = lab.get_json(&["get", "pods", "-n", ns, "-l", selector]) else { return false };
    let items = v["items"].as_array().cloned().unwrap_or_default();
    items.len() == count && items.iter().all(crate::cluster_lab::is_ready)
}

#[test]
fn pods_run_on_every_node_and_reach_each_other_through_a_cluster_ip() {
    if let Some(why) = crate::cluster_lab::unavailable() {
        println!("skipped: {why}");
        return;
    }
    let lab = ClusterLab::start(2);
    lab.apply(WEB).unwrap();
    lab.apply("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec: {selector: {app: web}, ports: [{port: 80}]}\n").unwrap();
    let ready = wait_until(Duration::from_secs(60), || pods_ready(&lab, "default", "app=web", 2));
    assert!(
        ready.is_some(),
        "web pods not Ready: {:?}\n{}",
        lab.kubectl(&["get", "pods", "-A", "-o", "wide"]),
        lab.diagnostics()
    );
    println!("web pods Ready on 2 nodes {:.1} s after apply", ready.unwrap().as_secs_f64());
    let ip = lab.get_json(&["get", "svc", "web"]).unwrap()["spec"]["clusterIP"].as_str().unwrap().to_string();
    for node in &lab.nodes {
        let ok = wait_until(Duration::from_secs(20), || {
            let out = node.run(&format!("curl -s --max-time 1 http://{ip}/"));
            String::from_utf8_lossy(&out.stdout).contains("ferrolb e2e")
        });
        assert!(
            ok.is_some(),
            "{} cannot reach the ClusterIP {ip}:\n{}",
            node.name,
            node.tail("kube-proxy.log")
        );
    }
}
