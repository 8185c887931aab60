//! What the L2Advertisement's fields and the speaker's interface options do, seen from a Linux
//! client on the switch: which pools and Services get ARP answers at all, which node answers
//! (nodeSelectors, preferredNodeSelectors: the client's neighbour entry), which interfaces
//! answer, and the layer 2 counters of the responder that answered.

use std::time::Duration;

use crate::fabric::{Running, sh};
use crate::frr_lab::wait_for;
use crate::l2_lab::{L2Lab, answering, unavailable};

const MACS: [&str; 2] = ["02:00:00:00:00:11", "02:00:00:00:00:12"];

fn pool(name: &str, range: &str, labels: &str) -> String {
    format!(
        "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: {name}{labels}}}\n\
         spec: {{addresses: [{range}], autoAssign: false}}\n"
    )
}

fn service(name: &str, ip: &str, labels: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop{labels}, \
         annotations: {{metallb.io/loadBalancerIPs: {ip}}}}}\nspec: {{type: LoadBalancer}}\n"
    )
}

fn node_objects(n: usize) -> String {
    (1..=n).map(|i| format!("---\napiVersion: v1\nkind: Node\nmetadata: {{name: node{i}}}\n")).collect()
}

/// The node (0-based) `plan` elects to answer for `ip` among node1 and node2 under `manifest`.
fn elected(manifest: &str, service: &str) -> Option<usize> {
    let mut inputs = ferrolb::plan::Inputs::new("metallb-system");
    inputs.add_yaml("lab", &format!("{manifest}{}", node_objects(2))).expect("manifest parses");
    (0..2).find(|i| {
        let options = ferrolb::plan::Options { node: Some(format!("node{}", i + 1)), ..Default::default() };
        let p = ferrolb::plan::plan(&inputs, &options);
        p.announcements.unwrap_or_default().iter().any(|a| a.protocol == "layer2" && a.service == service)
    })
}

fn speakers(lab: &L2Lab) -> Vec<Running> {
    (0..2).map(|i| lab.speaker_with(i, &["--live-nodes", "node1,node2"])).collect()
}

#[test]
fn pools_services_and_nodes_the_advertisements_select_and_no_others_answer() {
    if let Some(why) = unavailable() {
        println!("skipped: {why}");
        return;
    }
    let objects = [
        pool("lan", "192.0.2.200-192.0.2.209", ", labels: {zone: lan}"),
        pool("other", "192.0.2.220-192.0.2.229", ""),
        pool("pinned", "192.0.2.230-192.0.2.239", ""),
        pool("preferred", "192.0.2.240-192.0.2.249", ""),
        service("web", "192.0.2.200", ", labels: {l2: 'yes'}"),
        service("quiet", "192.0.2.201", ""),
        service("orphan", "192.0.2.220", ""),
        service("pinned", "192.0.2.230", ""),
        service("preferred", "192.0.2.240", ""),
        "---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: labelled}\n\
         spec: {ipAddressPoolSelectors: [{matchLabels: {zone: lan}}], serviceSelectors: [{matchLabels: {l2: 'yes'}}]}\n"
            .to_string(),
    ]
    .concat();
    // Who the hash alone elects for the pinned and preferred IPs; the rules then point at the
    // other node, so only a rule that works can put the answer there.
    let plain = format!(
        "{objects}---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: rest}}\n\
         spec: {{ipAddressPools: [pinned, preferred]}}\n"
    );
    let hash_pinned = elected(&plain, "shop/pinned").expect("someone announces pinned");
    let hash_preferred = elected(&plain, "shop/preferred").expect("someone announces preferred");
    let (to_pin, to_prefer) = (1 - hash_pinned, 1 - hash_preferred);
    let manifest = format!(
        "{objects}---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: pin}}\n\
         spec: {{ipAddressPools: [pinned], nodeSelectors: [{{matchLabels: {{kubernetes.io/hostname: node{}}}}}]}}\n\
         ---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: prefer}}\n\
         spec:\n  ipAddressPools: [preferred]\n  preferredNodeSelectors: [{{weight: 50, preference: {{matchLabels: {{kubernetes.io/hostname: node{}}}}}}}]\n",
        to_pin + 1,
        to_prefer + 1
    );
    let lab = L2Lab::start_with(&manifest, 2, 2, false);
    let _speakers = speakers(&lab);
    let all_up = wait_for(Duration::from_secs(15), || {
        ["192.0.2.200", "192.0.2.230", "192.0.2.240"].iter().all(|ip| lab.arping(ip).is_some())
    });
    assert!(all_up.is_some(), "{}\n{}", lab.log(0), lab.log(1));
    // The pool selected by label, for the labelled Service, is answered; the same pool's
    // unlabelled Service and a pool no advertisement selects are not.
    for (ip, why) in
        [("192.0.2.201", "serviceSelectors"), ("192.0.2.220", "no advertisement selects its pool")]
    {
        for _ in 0..3 {
            assert_eq!(answering(&lab, ip), Vec::<String>::new(), "{ip} answered ({why})");
        }
    }
    for _ in 0..3 {
        assert_eq!(answering(&lab, "192.0.2.230"), [MACS[to_pin]], "nodeSelectors");
    }
    // The client's own resolution lands on the preferred node.
    lab.resolve("192.0.2.240");
    assert_eq!(lab.neighbour("192.0.2.240").as_deref(), Some(MACS[to_prefer]), "preferredNodeSelectors");
    println!(
        "hash would elect node{} for .230 and node{} for .240; nodeSelectors/preference put them on node{} and node{}",
        hash_pinned + 1,
        hash_preferred + 1,
        to_pin + 1,
        to_prefer + 1
    );

    // The answering speaker counts each request for its IP and each reply it sent.
    let owner = crate::l2_lab::mac_index(&answering(&lab, "192.0.2.200")[0]).expect("a lab MAC");
    let requests =
        |n: usize| lab.metric(n, "metallb_layer2_requests_received{ip=\"192.0.2.200\"}").unwrap_or(0.0);
    let responses =
        |n: usize| lab.metric(n, "metallb_layer2_responses_sent{ip=\"192.0.2.200\"}").unwrap_or(0.0);
    let (r0, s0) = (requests(owner), responses(owner));
    for _ in 0..5 {
        assert!(lab.arping("192.0.2.200").is_some());
    }
    let counted =
        wait_for(Duration::from_secs(3), || requests(owner) == r0 + 5.0 && responses(owner) == s0 + 5.0);
    assert!(
        counted.is_some(),
        "requests {r0} -> {}, responses {s0} -> {}",
        requests(owner),
        responses(owner)
    );
    // The other node saw the same broadcasts but owns nothing to answer for.
    assert_eq!(responses(1 - owner), 0.0);
    println!("node{} counted 5 more requests and 5 more responses for 192.0.2.200", owner + 1);
}

#[test]
fn answers_come_from_the_listed_interfaces_and_never_from_excluded_ones() {
    if let Some(why) = unavailable() {
        println!("skipped: {why}");
        return;
    }
    let eth1 = "02:00:00:00:01:11";
    let base = [pool("lan", "192.0.2.200-192.0.2.209", ""), service("web", "192.0.2.200", "")].concat();
    let ad = |extra: &str| {
        format!(
            "{base}---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: node1}}\n\
             spec: {{nodeSelectors: [{{matchLabels: {{kubernetes.io/hostname: node1}}}}]{extra}}}\n"
        )
    };
    // node1 reaches the switch twice, eth0 and eth1; only its speaker runs.
    let lab = L2Lab::start_with(&ad(""), 2, 1, true);
    let ip = "192.0.2.200";
    let macs = |want: usize| {
        let seen = wait_for(Duration::from_secs(15), || answering(&lab, ip).len() == want);
        assert!(seen.is_some(), "{:?}\n{}", answering(&lab, ip), lab.log(0));
        let mut all = Vec::new();
        for _ in 0..3 {
            all.extend(answering(&lab, ip));
        }
        all.sort();
        all.dedup();
        all
    };
    let restart = |speaker: Running, manifest: &str, extra: &[&str]| {
        drop(speaker);
        std::fs::write(lab.dir.join("m.yaml"), format!("{manifest}{}", node_objects(2)))
            .expect("manifest written");
        let mut args = vec!["--live-nodes", "node1,node2"];
        args.extend_from_slice(extra);
        lab.speaker_with(0, &args)
    };

    // Nothing restricted: both of node1's interfaces answer, so a restriction has something
    // to take away.
    let speaker = lab.speaker_with(0, &["--live-nodes", "node1,node2"]);
    assert_eq!(macs(2), [MACS[0], eth1]);
    let speaker = restart(speaker, &ad(", interfaces: [eth1]"), &[]);
    sh(&format!("ip -n {} neigh flush all", lab.client.0));
    assert_eq!(macs(1), [eth1], "interfaces: [eth1]");
    let speaker = restart(speaker, &ad(""), &["--exclude-interfaces", "^eth1$,^lo$"]);
    assert_eq!(macs(1), [MACS[0]], "--exclude-interfaces ^eth1$");
    drop(speaker);
    println!(
        "both links answer unrestricted; eth1 alone with interfaces: [eth1]; eth0 alone with eth1 excluded"
    );
}
