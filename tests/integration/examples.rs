//! Every example directory against the outcome its documentation describes, and every YAML
//! block of the seed documents decoding cleanly.

use std::collections::BTreeMap;

use ferrolb::plan::{self, Inputs, Options, Plan};

fn plan_dir(dir: &str) -> (Plan, Inputs) {
    let root = crate::repo_root().join("examples").join(dir);
    let mut inputs = Inputs::new("metallb-system");
    let mut files: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "yaml")) {
        inputs.add_yaml(&f.display().to_string(), &std::fs::read_to_string(f).unwrap()).unwrap();
    }
    let plan = plan::plan(&inputs, &Options::default());
    assert!(plan.errors.is_empty(), "{dir}: {:#?}", plan.errors);
    assert!(plan.pending.is_empty(), "{dir}: {:#?}", plan.pending);
    (plan, inputs)
}

fn ips(plan: &Plan) -> BTreeMap<String, (String, String)> {
    plan.allocations.iter().map(|a| (a.service.clone(), (a.ips.join(","), a.pool.clone()))).collect()
}

fn entry(svc: &str, ips: &str, pool: &str) -> (String, (String, String)) {
    (svc.into(), (ips.into(), pool.into()))
}

#[test]
fn first_pool_serves_both_families_from_its_first_entries() {
    let (p, _) = plan_dir("first-pool");
    assert_eq!(
        ips(&p),
        BTreeMap::from([
            entry("default/web", "192.168.10.0", "first-pool"),
            entry("default/web-v6", "fc00:f853:ccd:e799::", "first-pool"),
        ])
    );
    let pool = &p.pools[0];
    // 256 + 5 IPv4 addresses, 16 IPv6.
    assert_eq!(
        (pool.stats.assigned_v4 + pool.stats.available_v4, pool.stats.assigned_v6 + pool.stats.available_v6),
        (261, 16)
    );
}

#[test]
fn layer2_examples_allocate_from_the_documented_range() {
    for dir in ["l2", "l2-selected-pool"] {
        let (p, inputs) = plan_dir(dir);
        assert_eq!(ips(&p), BTreeMap::from([entry("default/web", "192.168.1.240", "first-pool")]), "{dir}");
        assert_eq!(inputs.objects.l2_advertisements.len(), 1, "{dir}");
    }
    // kube-proxy's strictARP document is recognised as someone else's and skipped.
    let (_, inputs) = plan_dir("l2");
    assert!(inputs.notes.iter().any(|n| n.contains("KubeProxyConfiguration")), "{:?}", inputs.notes);
}

#[test]
fn bgp_examples_parse_peers_profiles_and_advertisements() {
    let (p, inputs) = plan_dir("bgp");
    assert_eq!(ips(&p), BTreeMap::from([entry("default/web", "192.168.1.240", "first-pool")]));
    let config = ferrolb::config::parse(&inputs.objects).result.unwrap();
    assert_eq!(config.peers["sample"].my_asn, 64500);
    assert_eq!(config.bgp_advertisements[0].pools.iter().collect::<Vec<_>>(), ["first-pool"]);

    let (_, inputs) = plan_dir("bgp-bfd");
    let config = ferrolb::config::parse(&inputs.objects).result.unwrap();
    let peer = &config.peers["peersample"];
    assert!(peer.is_ibgp());
    assert_eq!(peer.bfd_profile.as_deref(), Some("testbfdprofile"));
    let bfd = &config.bfd_profiles["testbfdprofile"];
    assert_eq!((bfd.receive_interval, bfd.transmit_interval), (Some(380), Some(270)));
}

#[test]
fn the_pool_annotation_picks_a_manual_pool() {
    let (p, _) = plan_dir("address-pool-annotation");
    assert_eq!(ips(&p), BTreeMap::from([entry("default/nginx", "203.0.113.16", "production-public-ips")]));
}

#[test]
fn the_dns_pair_shares_one_ip() {
    let (p, _) = plan_dir("ip-sharing");
    assert_eq!(
        ips(&p),
        BTreeMap::from([
            entry("default/dns-service-tcp", "1.2.3.4", "dns"),
            entry("default/dns-service-udp", "1.2.3.4", "dns"),
        ])
    );
    // Legacy annotations still work and are flagged.
    assert!(p.events.values().flatten().any(|e| e.reason == "deprecatedAnnotation"));
}

#[test]
fn production_gets_fixed_ips_and_sandboxes_the_private_pool_with_its_community() {
    let (p, inputs) = plan_dir("production-sandbox");
    assert_eq!(
        ips(&p),
        BTreeMap::from([
            entry("production/storefront", "42.176.25.66", "production"),
            entry("sandbox-alice/storefront", "192.168.144.0", "sandbox"),
        ])
    );
    let config = ferrolb::config::parse(&inputs.objects).result.unwrap();
    let local = config.bgp_advertisements.iter().find(|a| a.name == "local").unwrap();
    assert_eq!(local.communities.iter().map(|c| c.to_string()).collect::<Vec<_>>(), ["1234:1"]);
}

#[test]
fn dual_stack_services_get_one_ip_per_family() {
    let (p, _) = plan_dir("dual-stack");
    assert_eq!(
        ips(&p),
        BTreeMap::from([
            entry("default/web-dual", "192.168.10.5,fc00:f853:ccd:e799::5", "first-pool"),
            entry("default/web-prefer-dual", "192.168.10.0,fc00:f853:ccd:e799::", "first-pool"),
        ])
    );
}

#[test]
fn the_layer2_walkthrough_gets_its_first_and_its_requested_address() {
    let (p, _) = plan_dir("l2-test-nginx");
    assert_eq!(
        ips(&p),
        BTreeMap::from([
            entry("default/nginx-test-service", "172.18.8.201", "first-pool"),
            entry("default/nginx-test-service-fixed", "172.18.8.203", "first-pool"),
        ])
    );
}

#[test]
fn every_example_directory_is_tested() {
    let source = include_str!("examples.rs");
    for e in std::fs::read_dir(crate::repo_root().join("examples")).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(source.contains(&format!("\"{name}\"")), "examples/{name} has no test");
        }
    }
}

/// The seed documents live beside the repository (`../shared/seeds`); every YAML block in them
/// must decode into known objects without errors.
#[test]
fn every_yaml_block_of_the_seed_documents_decodes() {
    let seeds = crate::repo_root().join("../shared/seeds");
    let Ok(dir) = std::fs::read_dir(&seeds) else {
        println!("skipped: no seed documents at {}", seeds.display());
        return;
    };
    let mut blocks = 0;
    for f in dir {
        let path = f.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for block in text.split("```").skip(1).step_by(2) {
            let Some(body) = block.strip_prefix("yaml\n").or_else(|| block.strip_prefix("yml\n")) else {
                continue;
            };
            let mut inputs = Inputs::new("metallb-system");
            inputs.add_yaml(&path.display().to_string(), body).unwrap_or_else(|e| panic!("{e}\n{body}"));
            assert!(
                inputs.decode_errors.is_empty(),
                "{}: {:#?}\n{body}",
                path.display(),
                inputs.decode_errors
            );
            let parsed = ferrolb::config::parse(&inputs.objects);
            // A block may reference objects defined in another block (a BFD profile, an alias):
            // only missing references are acceptable.
            if let Err(e) = parsed.result {
                assert!(e.0.iter().all(|e| e.transient), "{}: {e}\n{body}", path.display());
            }
            blocks += 1;
        }
    }
    assert!(blocks >= 15, "found only {blocks} YAML blocks in the seeds");
}

#[test]
fn a_legacy_configmap_is_converted_and_served() {
    let (p, inputs) = plan_dir("legacy-configmap");
    assert_eq!(ips(&p), BTreeMap::from([entry("default/web", "192.168.1.240", "my-ip-space")]));
    assert_eq!(inputs.objects.l2_advertisements[0].spec.ip_address_pools, ["my-ip-space"]);
}

#[test]
fn the_bgp_lab_announces_both_families_with_bfd_and_communities() {
    let (p, _) = plan_dir("bgp-lab");
    assert_eq!(
        ips(&p),
        BTreeMap::from([
            entry("shop/dns", "198.51.100.10", "lab"),
            // avoidBuggyIPs skips 198.51.100.0.
            entry("shop/web", "198.51.100.1,2001:db8:20::10", "lab"),
        ])
    );
    let root = crate::repo_root().join("examples/bgp-lab");
    let inputs = ferrolb::manifests::read(&[root], false, "metallb-system").unwrap();
    let p = plan::plan(&inputs, &Options { node: Some("node1".into()), ..Default::default() });
    let frr = p.frr_config.unwrap();
    for line in [
        "neighbor 192.0.2.1 bfd profile fast",
        "neighbor 2001:db8:10::1 bfd profile fast",
        "receive-interval 100",
    ] {
        assert!(frr.contains(line), "{line}:\n{frr}");
    }
    let announced = p.announcements.unwrap();
    assert_eq!(announced.len(), 3);
    assert!(announced.iter().all(|a| a.communities.iter().any(|c| c == "64500:100")), "{announced:?}");
}

#[test]
fn the_layer2_lab_gives_its_service_the_first_address_and_one_node_announces_it() {
    let (p, _) = plan_dir("l2-lab");
    assert_eq!(ips(&p), BTreeMap::from([entry("shop/web", "192.0.2.200", "lan")]));
    let root = crate::repo_root().join("examples/l2-lab");
    let inputs = ferrolb::manifests::read(&[root], false, "metallb-system").unwrap();
    let winners: Vec<_> = ["node1", "node2", "node3"]
        .into_iter()
        .filter(|n| {
            let p = plan::plan(&inputs, &Options { node: Some(n.to_string()), ..Default::default() });
            p.announcements.unwrap().iter().any(|a| a.protocol == "layer2")
        })
        .collect();
    assert_eq!(winners.len(), 1, "{winners:?}");
}
