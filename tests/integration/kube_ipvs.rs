//! kube-proxy in IPVS mode without strictARP, seen by the controller on a real API server:
//! nothing is said while no layer 2 is configured; an L2Advertisement brings the
//! `kubeProxyStrictARP False IPVSWithoutStrictARP` condition with the fix and a Warning Event on
//! the advertisement; setting strictARP in kube-proxy's ConfigMap turns the condition True.
//! (This machine's kernel modules are out of reach, so kube-proxy's ConfigMap stands alone.)

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};

use crate::kube_lab::KubeLab;

fn kube_proxy_config(strict_arp: bool) -> ConfigMap {
    let conf = format!(
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ipvs\nipvs:\n  strictARP: {strict_arp}\n"
    );
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
        "data": {"config.conf": conf}
    }))
    .unwrap()
}

/// The controller's `kubeProxyStrictARP` condition: (status, reason, message).
async fn condition(client: &Client) -> Option<(String, String, String)> {
    let states: Api<ferrolb::api::ConfigurationState> = Api::namespaced(client.clone(), "metallb-system");
    let st = states.get("controller").await.ok()?.status?;
    let c = st.conditions.into_iter().find(|c| c.type_ == "kubeProxyStrictARP")?;
    Some((c.status, c.reason, c.message))
}

/// Polls `check` every 200 ms for up to `limit` (kube-proxy's ConfigMap is read every 30 s).
async fn within<T>(limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn ipvs_without_strict_arp_is_reported_once_layer2_is_in_use_until_fixed() {
    require_kube!();
    let kube = KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        let client = kube.prepared(&["metallb-system"]).await;
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
        maps.create(&PostParams::default(), &kube_proxy_config(false)).await.unwrap();
        let mut inputs = ferrolb::plan::Inputs::new("metallb-system");
        inputs.add_yaml("config", crate::l2_lab_kube::CONFIG).unwrap();
        crate::kube_controller::create_all(&client, &inputs.objects.pools).await;
        let args =
            ["controller", "--webhook-port", "0", "--leader-elect", "false", "--metrics-bind", "127.0.0.1:0"];
        let _controller = kube.run_ferrolb(&args, "controller.log");
        let log = || kube.log("controller.log");

        // No layer 2 configured: kube-proxy's ARP is nobody's business.
        let states: Api<ferrolb::api::ConfigurationState> = Api::namespaced(client.clone(), "metallb-system");
        let written = within(Duration::from_secs(20), async || states.get("controller").await.ok()).await;
        assert!(written.is_some(), "no ConfigurationState\n{}", log());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(condition(&client).await, None, "{}", log());

        // Layer 2 in use: said at once, with the fix, and warned on the advertisement.
        crate::kube_controller::create_all(&client, &inputs.objects.l2_advertisements).await;
        let said = within(Duration::from_secs(10), async || {
            condition(&client).await.filter(|(s, _, _)| s == "False")
        })
        .await;
        let now = condition(&client).await;
        let Some((_, reason, message)) = said else { panic!("{now:?}\n{}", log()) };
        assert_eq!(reason, "IPVSWithoutStrictARP");
        assert!(
            message.contains("strictARP: true") && message.contains("kube-system/kube-proxy"),
            "{message}"
        );
        let events: Api<Event> = Api::namespaced(client.clone(), "metallb-system");
        let warned = within(Duration::from_secs(10), async || {
            let list = events.list(&ListParams::default()).await.ok()?.items;
            list.into_iter().find(|e| {
                e.reason.as_deref() == Some("IPVSWithoutStrictARP")
                    && e.type_.as_deref() == Some("Warning")
                    && e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("L2Advertisement")
            })
        })
        .await;
        assert!(warned.is_some(), "no Warning on the L2Advertisement\n{}", log());

        // Fixed in kube-proxy's ConfigMap: the condition follows within its read interval.
        let fixed = Instant::now();
        let patch = serde_json::json!({"data": kube_proxy_config(true).data});
        maps.patch("kube-proxy", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
        let r = within(Duration::from_secs(40), async || {
            condition(&client).await.filter(|(s, r, _)| s == "True" && r == "StrictARP")
        })
        .await;
        assert!(r.is_some(), "{:?}\n{}", condition(&client).await, log());
        println!("strictARP set: the condition turned True {:?} later", fixed.elapsed());
        let list = events.list(&ListParams::default()).await.unwrap().items;
        let warnings = list.iter().filter(|e| e.reason.as_deref() == Some("IPVSWithoutStrictARP")).count();
        assert_eq!(warnings, 1, "the warning went out more than once");
    });
}
