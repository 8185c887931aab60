//! The `ferrolb` binary's contract: output formats and exit codes, and bad input never panics.

use std::io::Write;
use std::process::{Command, Output};

fn run(args: &[&str], files: &[(&str, &str)]) -> (Output, tempdir::Dir) {
    let dir = tempdir::Dir::new();
    for (name, text) in files {
        std::fs::File::create(dir.path.join(name)).unwrap().write_all(text.as_bytes()).unwrap();
    }
    let out = Command::new(crate::ferrolb_bin()).args(args).current_dir(&dir.path).output().unwrap();
    (out, dir)
}

/// A throwaway directory removed on drop, so failures clean up too.
mod tempdir {
    pub struct Dir {
        pub path: std::path::PathBuf,
    }
    impl Dir {
        pub fn new() -> Dir {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "ferrolb-cli-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&path).unwrap();
            Dir { path }
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed by a signal")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const POOL: &str = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p, namespace: metallb-system}\nspec: {addresses: [192.0.2.0/24]}\n";
const SVC: &str = "---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {type: LoadBalancer}\n";

/// Every binary names the version the chart carries and the commit it was built from, so a
/// user can tell which build runs where (and a half-done rollout shows as two).
#[test]
fn each_binary_says_its_version_and_commit_and_the_chart_follows_them() {
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(crate::repo_root())
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    let version = env!("CARGO_PKG_VERSION");
    let want = |binary: &str| format!("{binary} {version} (commit {head})\n");
    let out = |bin: &std::path::Path, args: &[&str]| {
        let o = std::process::Command::new(bin).args(args).output().unwrap();
        assert!(o.status.success(), "{bin:?} {args:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(out(crate::ferrolb_bin(), &["version"]), want("ferrolb"));
    assert_eq!(out(crate::ferrolb_bin(), &["--version"]), want("ferrolb"));
    let agent = crate::ferrolb_bin().with_file_name("frr-agent");
    assert_eq!(out(&agent, &["--version"]), want("frr-agent"));
    let chart: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(crate::repo_root().join("charts/ferrolb/Chart.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!((chart["version"].as_str(), chart["appVersion"].as_str()), (Some(version), Some(version)));
    let changelog = std::fs::read_to_string(crate::repo_root().join("CHANGELOG.md")).unwrap();
    assert!(changelog.contains(&format!("## {version}")), "CHANGELOG.md has no section for {version}");
}

#[test]
fn plan_prints_json_and_exits_zero_even_with_pending_services() {
    let two = format!("{POOL}{SVC}{}", SVC.replace("web", "api"));
    let small = two.replace("192.0.2.0/24", "192.0.2.0/32");
    let (o, _d) = run(&["plan", "-f", "m.yaml", "-o", "json"], &[("m.yaml", &small)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["allocations"][0]["service"], "shop/api");
    assert_eq!(v["pending"][0]["service"], "shop/web");
}

#[test]
fn invalid_configuration_exits_one_with_the_error_listed() {
    let bad = POOL.replace("192.0.2.0/24", "::/0");
    let (o, _d) = run(&["plan", "-f", "m.yaml", "-o", "json"], &[("m.yaml", &format!("{bad}{SVC}"))]);
    assert_eq!(code(&o), 1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["errors"][0]["kind"], "IPAddressPool");
    assert_eq!(v["errors"][0]["field"], "spec.addresses[0]");
    let wrong_type = POOL.replace("[192.0.2.0/24]", "{a: 1}");
    let (o, _d) = run(&["plan", "-f", "m.yaml"], &[("m.yaml", &wrong_type)]);
    assert_eq!(code(&o), 1);
    assert!(String::from_utf8_lossy(&o.stdout).contains("spec.addresses"));
}

#[test]
fn read_and_usage_errors_exit_two_with_a_message() {
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (vec!["plan", "-f", "m.yaml"], "a: [unclosed\n", "not valid YAML"),
        (vec!["plan", "-f", "m.yaml"], "- just\n- a list\n", "expected a Kubernetes object"),
        (vec!["plan", "-f", "m.yaml"], "metadata: {name: x}\n", "missing apiVersion or kind"),
        (vec!["plan", "-f", "missing.yaml"], "", "missing.yaml"),
        (vec!["plan", "-f", "m.yaml", "-o", "xml"], "", "invalid value"),
        (vec!["plan"], "", "required"),
    ];
    for (args, text, want) in cases {
        let (o, _d) = run(&args, &[("m.yaml", text)]);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{args:?}");
    }
}

#[test]
fn huge_pools_cost_nothing_and_strange_input_never_panics() {
    let huge = POOL.replace("[192.0.2.0/24]", "['2001:db8::/32', 10.0.0.0/8, '2001:db9::-2001:dbf:ffff::']");
    let (o, _d) = run(&["plan", "-f", "m.yaml", "-o", "json"], &[("m.yaml", &format!("{huge}{SVC}"))]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let v6 = |s: &str| u128::from(s.parse::<std::net::Ipv6Addr>().unwrap());
    let expected = (1u128 << 96) + (v6("2001:dbf:ffff::") - v6("2001:db9::") + 1);
    assert_eq!(v["pools"][0]["availableIPv6"], expected.to_string());
    assert_eq!(v["pools"][0]["availableIPv4"], ((1u32 << 24) - 1).to_string());
    let strange = [
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\nspec: {addresses: ['0.0.0.0-255.255.255.255', '', ' - ', '1.2.3.4/-1']}\n",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: LoadBalancer, ports: [{port: 99999999}], clusterIPs: [x, y, z]}\n",
        "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p}\nspec: {myASN: 4294967296, peerAddress: x}\n",
        "a: &a [*a]\n",
        "\u{0}\u{1}\u{2}",
        "---\n---\n...\n",
    ];
    for text in strange {
        let (o, _d) = run(&["plan", "-f", "m.yaml"], &[("m.yaml", text)]);
        assert!(matches!(code(&o), 0..=2), "{text:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{text:?}: {}", stderr(&o));
    }
}

#[test]
fn directories_are_read_in_name_order_and_crds_print() {
    let (o, _d) = run(
        &["plan", "-f", ".", "-o", "json"],
        &[("a.yaml", POOL), ("b.yml", SVC), ("notes.txt", "not yaml: [")],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let (o, _d) = run(&["crds"], &[]);
    assert_eq!(code(&o), 0);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(text.matches("kind: CustomResourceDefinition").count(), 9);
}

#[test]
fn plan_for_a_node_lists_announcements_and_renders_frr_config() {
    let bgp = format!(
        "{POOL}---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: tor, namespace: metallb-system}}\nspec: {{myASN: 64512, peerASN: 64500, peerAddress: 192.0.2.1, password: hunter2}}\n\
         ---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: ad, namespace: metallb-system}}\nspec: {{communities: ['64500:7']}}\n{SVC}"
    );
    let files = [("m.yaml", bgp.as_str())];
    let (o, _d) = run(&["plan", "-f", "m.yaml", "--node", "node1", "-o", "json"], &files);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["announcements"],
        serde_json::json!([{"service": "shop/web", "ip": "192.0.2.0", "prefix": "192.0.2.0/32", "protocol": "bgp",
                            "peers": ["tor"], "communities": ["64500:7"], "localPref": null}])
    );
    assert_eq!(v["notAnnounced"], serde_json::json!([]));
    assert!(stderr(&o).contains("assuming every Service is served"), "{}", stderr(&o));

    let (o, _d) = run(&["plan", "-f", "m.yaml", "--node", "node1", "--frr"], &files);
    let conf = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(conf.contains("router bgp 64512") && conf.contains(" network 192.0.2.0/32"), "{conf}");
    assert!(conf.contains("password REDACTED") && !conf.contains("hunter2"));
    let (o, _d) = run(&["plan", "-f", "m.yaml", "--node", "node1", "--frr", "--show-secrets"], &files);
    assert!(String::from_utf8_lossy(&o.stdout).contains("password hunter2"));
    let (o, _d) = run(&["plan", "-f", "m.yaml", "--frr"], &files);
    assert_eq!(code(&o), 2, "--frr without --node is a usage error");
}

#[test]
fn plan_for_a_node_lists_layer2_announcements_with_interfaces_and_the_elected_node() {
    let l2 = format!(
        "{POOL}---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: ad, namespace: metallb-system}}\nspec: {{interfaces: [eth1, eth0]}}\n\
         ---\napiVersion: v1\nkind: Node\nmetadata: {{name: node1}}\n---\napiVersion: v1\nkind: Node\nmetadata: {{name: node2}}\n{SVC}"
    );
    let files = [("m.yaml", l2.as_str())];
    let mut winners = Vec::new();
    for node in ["node1", "node2"] {
        let (o, _d) = run(&["plan", "-f", "m.yaml", "--node", node, "-o", "json"], &files);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let layer2: Vec<_> = v["announcements"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["protocol"] == "layer2")
            .cloned()
            .collect();
        if let Some(a) = layer2.first() {
            assert_eq!(a["ip"], "192.0.2.0");
            assert_eq!(a["interfaces"], serde_json::json!(["eth0", "eth1"]));
            winners.push(node);
        } else {
            let why = &v["notAnnounced"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["protocol"] == "layer2")
                .unwrap()["reason"];
            assert!(why.as_str().unwrap().ends_with("announces it"), "{why}");
        }
    }
    assert_eq!(winners.len(), 1, "exactly one node answers for the IP: {winners:?}");
}
