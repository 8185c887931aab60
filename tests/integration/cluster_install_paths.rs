//! Every install path besides Helm, applied to the cluster lab: the plain manifests
//! (manifests/ferrolb-native.yaml, manifests/ferrolb-frr.yaml) and the Kustomize bases
//! (config/native, config/frr). Each one: controller and speakers Ready, the webhook refusing an
//! overlapping pool, then everything deleted before the next. A path not in the tree is named in
//! a `skipped:` line.

use std::time::Duration;

use crate::cluster_e2e_install::{assert_ferrolb_ready, webhook_refuses_an_overlapping_pool};
use crate::cluster_lab::ClusterLab;
use crate::cluster_node::wait_until;

/// (what `kubectl apply` is given, speaker containers per pod, needs the FRR image)
const PATHS: [(&str, &str, usize, bool); 4] = [
    ("-f", "manifests/ferrolb-native.yaml", 1, false),
    ("-f", "manifests/ferrolb-frr.yaml", 3, true),
    ("-k", "config/native", 1, false),
    ("-k", "config/frr", 3, true),
];

#[test]
fn manifests_and_kustomize_bases_install_a_working_ferrolb() {
    require_cluster!(images: true);
    let present: Vec<_> = PATHS.iter().filter(|(_, p, _, _)| crate::repo_root().join(p).exists()).collect();
    for (_, path, _, _) in PATHS.iter().filter(|(_, p, _, _)| !crate::repo_root().join(p).exists()) {
        println!("skipped: {path} is not in the tree");
    }
    if present.is_empty() {
        return;
    }
    let lab = ClusterLab::start(2);
    for (flag, path, containers, _) in present {
        let full = crate::repo_root().join(path);
        let full = full.to_str().unwrap();
        lab.kubectl(&["apply", "--server-side", flag, full]).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_ferrolb_ready(&lab, *containers);
        webhook_refuses_an_overlapping_pool(&lab);
        println!("{path}: controller and speakers Ready, webhook refuses an overlap");
        lab.kubectl(&["delete", "-n", "metallb-system", "ipaddresspools", "--all"]).unwrap();
        lab.kubectl(&["delete", "--wait=true", "--timeout=120s", flag, full])
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let gone = wait_until(Duration::from_secs(60), || {
            lab.kubectl(&["get", "namespace", "metallb-system"]).is_err()
                && lab.kubectl(&["get", "crd", "ipaddresspools.metallb.io"]).is_err()
        });
        assert!(gone.is_some(), "{path}: namespace or CRDs left after delete");
    }
}

/// What the plain manifests are (the chart rendered once), applied the way a user applies a
/// manifest: `kubectl apply` of the CRDs, the namespace and every rendered object, with no Helm
/// on the cluster. Runs whether or not manifests/ is in the tree.
#[test]
fn the_rendered_chart_applied_with_kubectl_runs_ferrolb() {
    require_cluster!(images: true);
    let lab = ClusterLab::start(2);
    for (values, containers) in [("{}", 1), (r#"{"frr": {"enabled": true}}"#, 3)] {
        let (objects, _) = crate::chart::render(values);
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
        let file = lab.dir.join("rendered.json");
        std::fs::write(&file, list.to_string()).unwrap();
        let crds = crate::repo_root().join("crds");
        lab.kubectl(&["apply", "--server-side", "-f", crds.to_str().unwrap()]).unwrap();
        lab.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: metallb-system}\n").unwrap();
        lab.kubectl(&["apply", "--server-side", "-f", file.to_str().unwrap()])
            .unwrap_or_else(|e| panic!("{values}: {e}"));
        assert_ferrolb_ready(&lab, containers);
        webhook_refuses_an_overlapping_pool(&lab);
        println!(
            "rendered chart {values} applied with kubectl: controller and speakers Ready, webhook refuses an overlap"
        );
        lab.kubectl(&["delete", "-n", "metallb-system", "ipaddresspools", "--all"]).unwrap();
        lab.kubectl(&["delete", "--wait=true", "--timeout=120s", "-f", file.to_str().unwrap()]).unwrap();
        lab.kubectl(&["delete", "--wait=true", "--timeout=120s", "namespace", "metallb-system"]).unwrap();
        let gone = wait_until(Duration::from_secs(60), || {
            lab.kubectl(&["get", "namespace", "metallb-system"]).is_err()
        });
        assert!(gone.is_some(), "metallb-system left after delete");
    }
}
