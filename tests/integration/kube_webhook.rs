//! The webhook served by `ferrolb controller`, called by a real kube-apiserver: invalid objects
//! are refused with the object and field named, a BFDProfile in use cannot be deleted, BGPPeer
//! v1beta1 objects are converted both ways, and the certificate ferrolb issued survives a
//! controller restart.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::fabric::Running;
use crate::kube_lab::{KubeLab, free_port};

const NS: &str = "metallb-system";
const KINDS: &[(&str, &str)] = &[
    ("v1beta1", "ipaddresspools"),
    ("v1beta1", "l2advertisements"),
    ("v1beta1", "bgpadvertisements"),
    ("v1beta2", "bgppeers"),
    ("v1beta1", "bfdprofiles"),
    ("v1beta1", "communities"),
];

/// The chart's webhook configuration, reaching the controller by URL (the lab has no Service
/// network) and without a caBundle: ferrolb must publish it.
fn configuration(port: u16) -> ValidatingWebhookConfiguration {
    let webhooks: Vec<Value> = KINDS
        .iter()
        .map(|(version, plural)| {
            let operations = if *plural == "bfdprofiles" { json!(["CREATE", "UPDATE", "DELETE"]) } else { json!(["CREATE", "UPDATE"]) };
            json!({
                "name": format!("{}.validate.metallb.io", plural.trim_end_matches('s')),
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "matchPolicy": "Equivalent",
                "clientConfig": {"url": format!("https://127.0.0.1:{port}/validate-metallb-io-{version}-{plural}")},
                "rules": [{"apiGroups": ["metallb.io"], "apiVersions": [version], "operations": operations, "resources": [plural]}],
            })
        })
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "ferrolb-webhook-configuration"},
        "webhooks": webhooks,
    }))
    .unwrap()
}

/// A prepared cluster with the webhook configuration pointing at a free local port.
async fn webhook_cluster(lab: &KubeLab) -> (Client, u16) {
    let client = lab.prepared(&[NS]).await;
    let port = free_port();
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&PostParams::default(), &configuration(port))
        .await
        .unwrap();
    (client, port)
}

fn dynamic(client: &Client, version: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let ar = ApiResource {
        group: "metallb.io".into(),
        version: version.into(),
        api_version: format!("metallb.io/{version}"),
        kind: kind.into(),
        plural: plural.into(),
    };
    Api::namespaced_with(client.clone(), NS, &ar)
}

fn object(version: &str, kind: &str, name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": format!("metallb.io/{version}"), "kind": kind,
        "metadata": {"name": name, "namespace": NS}, "spec": spec,
    }))
    .unwrap()
}

/// The API server's refusal message for creating `o`, or None when it was created.
async fn refusal(api: &Api<DynamicObject>, o: &DynamicObject) -> Option<String> {
    match api.create(&PostParams::default(), o).await {
        Ok(_) => None,
        Err(kube::Error::Api(s)) => Some(s.message),
        Err(e) => Some(e.to_string()),
    }
}

fn start_controller(lab: &KubeLab, port: u16, log: &str) -> Running {
    Running(
        Command::new(crate::ferrolb_bin())
            .args(["controller", "--webhook-address", "127.0.0.1", "--webhook-host", "127.0.0.1"])
            .args(["--webhook-port", &port.to_string(), "--identity", log, "--kubeconfig"])
            .arg(lab.kubeconfig())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(lab.dir.join(log)).unwrap())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn the_webhook_refuses_bad_config_guards_bfd_profiles_and_converts_peers() {
    require_kube!();
    let lab = KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        let (client, port) = webhook_cluster(&lab).await;
        let vwc: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let to_url = json!({"spec": {"conversion": {"webhook": {"clientConfig": {"service": null, "url": format!("https://127.0.0.1:{port}/convert")}}}}});
        crds.patch("bgppeers.metallb.io", &PatchParams::default(), &Patch::Merge(to_url)).await.unwrap();

        let started = Instant::now();
        let mut controller = start_controller(&lab, port, "controller-1.log");
        let pools = dynamic(&client, "v1beta1", "IPAddressPool", "ipaddresspools");
        let front = object("v1beta1", "IPAddressPool", "front", json!({"addresses": ["192.0.2.0/24"]}));
        // Until ferrolb has published its CA the API server cannot call it, and Fail refuses all.
        let mut last = None;
        while started.elapsed() < Duration::from_secs(30) {
            last = refusal(&pools, &front).await;
            if last.is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(last.is_none(), "the webhook never admitted a valid pool: {last:?}\n{}", lab.log("controller-1.log"));
        println!("webhook: first admission {:.1}s after the controller started", started.elapsed().as_secs_f64());
        let published = vwc.get("ferrolb-webhook-configuration").await.unwrap();
        assert!(published.webhooks.unwrap().iter().all(|w| w.client_config.ca_bundle.is_some()));

        // Refusals name object and field, from the same parser `plan` uses.
        let overlapping = object("v1beta1", "IPAddressPool", "back", json!({"addresses": ["192.0.2.128/25"]}));
        let mut times = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let why = refusal(&pools, &overlapping).await.expect("an overlapping pool was admitted");
            times.push(t.elapsed());
            assert!(why.contains("IPAddressPool \"back\"") && why.contains("spec.addresses[0]") && why.contains("overlaps"), "{why}");
        }
        times.sort();
        println!("webhook: refused create round trip p50={:?} max={:?} (n=20)", times[10], times[19]);
        let peers = dynamic(&client, "v1beta2", "BGPPeer", "bgppeers");
        let ibgp_multihop = object("v1beta2", "BGPPeer", "rr", json!({"myASN": 64500, "peerASN": 64500, "peerAddress": "192.0.2.254", "ebgpMultiHop": true}));
        let why = refusal(&peers, &ibgp_multihop).await.expect("ebgpMultiHop on iBGP was admitted");
        assert!(why.contains("BGPPeer \"rr\"") && why.contains("spec.ebgpMultiHop"), "{why}");
        let communities = dynamic(&client, "v1beta1", "Community", "communities");
        let bad = object("v1beta1", "Community", "c", json!({"communities": [{"name": "x", "value": "99999999:1"}]}));
        let why = refusal(&communities, &bad).await.expect("a bad community value was admitted");
        assert!(why.contains("Community \"c\""), "{why}");

        // A password from a Secret that would add FRR configuration: the schema cannot see it,
        // the webhook refuses the peer by field, without repeating the password.
        let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
        let smuggling: Secret = serde_json::from_value(json!({"metadata": {"name": "tor-pw"}, "type": "kubernetes.io/basic-auth",
            "stringData": {"password": "x\n neighbor 198.51.100.66 remote-as 65666"}})).unwrap();
        secrets.create(&PostParams::default(), &smuggling).await.unwrap();
        let with_secret = object("v1beta2", "BGPPeer", "tor-md5", json!({"myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.252", "passwordSecret": {"name": "tor-pw"}}));
        let why = refusal(&peers, &with_secret).await.expect("a peer whose Secret smuggles FRR lines was admitted");
        assert!(why.contains("BGPPeer \"tor-md5\"") && why.contains("spec.passwordSecret") && why.contains("line or word break"), "{why}");
        assert!(!why.contains("65666"), "the refusal repeats the password: {why}");
        secrets.delete("tor-pw", &DeleteParams::default()).await.unwrap();

        // Creation order is free: a peer may name a BFDProfile that does not exist yet ...
        let tor = object("v1beta2", "BGPPeer", "tor", json!({"myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.254", "bfdProfile": "fast"}));
        assert_eq!(refusal(&peers, &tor).await, None);
        let profiles = dynamic(&client, "v1beta1", "BFDProfile", "bfdprofiles");
        assert_eq!(refusal(&profiles, &object("v1beta1", "BFDProfile", "fast", json!({}))).await, None);
        // ... but once named, it cannot be deleted from under the peer.
        let why = match profiles.delete("fast", &DeleteParams::default()).await {
            Ok(_) => panic!("a BFDProfile in use was deleted\n{}", lab.log("controller-1.log")),
            Err(e) => e.to_string(),
        };
        assert!(why.contains("BFDProfile \"fast\"") && why.contains("BGPPeer \"tor\""), "{why}");
        peers.delete("tor", &DeleteParams::default()).await.unwrap();
        let t = Instant::now();
        while profiles.delete("fast", &DeleteParams::default()).await.is_err() {
            assert!(t.elapsed() < Duration::from_secs(10), "the unused profile stayed undeletable");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Conversion: a v1beta1 manifest is stored as v1beta2 ...
        let old = dynamic(&client, "v1beta1", "BGPPeer", "bgppeers");
        let legacy = object("v1beta1", "BGPPeer", "legacy", json!({"myASN": 64500, "peerASN": 64502, "peerAddress": "192.0.2.253", "peerPort": 0,
            "nodeSelectors": [{"matchLabels": {"rack": "a"}}]}));
        old.create(&PostParams::default(), &legacy).await.unwrap();
        let stored = peers.get("legacy").await.unwrap();
        assert_eq!(stored.data["spec"]["peerASN"], 64502);
        assert_eq!(stored.data["spec"]["nodeSelectors"][0]["matchLabels"]["rack"], "a");
        assert!(stored.data["spec"].get("peerPort").is_none(), "{}", stored.data);
        // ... and a v1beta2-only peer read and written back as v1beta1 keeps what v1beta1 lacks.
        let unnumbered = object("v1beta2", "BGPPeer", "unnumbered", json!({"myASN": 64500, "dynamicASN": "external", "interface": "eth1"}));
        peers.create(&PostParams::default(), &unnumbered).await.unwrap();
        let mut seen_old = old.get("unnumbered").await.unwrap();
        assert_eq!(seen_old.data["spec"]["peerASN"], 0);
        seen_old.data["spec"]["holdTime"] = json!("9s");
        old.replace("unnumbered", &PostParams::default(), &seen_old).await.unwrap();
        let back = peers.get("unnumbered").await.unwrap();
        assert_eq!(back.data["spec"]["dynamicASN"], "external", "{}", back.data);
        assert_eq!(back.data["spec"]["interface"], "eth1");
        assert_eq!(back.data["spec"]["holdTime"], "9s");

        // A restarted controller serves the certificate it stored, it does not issue another.
        let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
        let before = secrets.get("ferrolb-webhook-cert").await.unwrap().data.unwrap()["tls.crt"].clone();
        drop(controller);
        controller = start_controller(&lab, port, "controller-2.log");
        let t = Instant::now();
        let mut again = Some(String::new());
        while t.elapsed() < Duration::from_secs(30) && again.is_some() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            again = refusal(&pools, &object("v1beta1", "IPAddressPool", "side", json!({"addresses": ["203.0.113.0/24"]}))).await;
        }
        assert!(again.is_none(), "{again:?}\n{}", lab.log("controller-2.log"));
        let after = secrets.get("ferrolb-webhook-cert").await.unwrap().data.unwrap()["tls.crt"].clone();
        assert_eq!(before, after, "the restart issued a new certificate");
        drop(controller);
    });
}

#[test]
fn certificates_from_cert_manager_files_are_served_and_their_ca_published() {
    require_kube!();
    let lab = KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        let (client, port) = webhook_cluster(&lab).await;
        // What cert-manager's Certificate would leave in the mounted Secret.
        let now = time::OffsetDateTime::now_utc();
        let issued = ferrolb::tls::cert::issue(&["127.0.0.1".into()], None, now).unwrap();
        let dir = lab.dir.join("cert-manager");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tls.crt"), &issued.cert_pem).unwrap();
        std::fs::write(dir.join("tls.key"), &issued.key_pem).unwrap();
        std::fs::write(dir.join("ca.crt"), &issued.ca_bundle_pem).unwrap();
        let _controller = Running(
            Command::new(crate::ferrolb_bin())
                .args(["controller", "--webhook-address", "127.0.0.1", "--webhook-port", &port.to_string()])
                .arg("--webhook-cert-dir")
                .arg(&dir)
                .arg("--kubeconfig")
                .arg(lab.kubeconfig())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(lab.dir.join("controller.log")).unwrap())
                .spawn()
                .unwrap(),
        );
        let pools = dynamic(&client, "v1beta1", "IPAddressPool", "ipaddresspools");
        let t = Instant::now();
        let mut last = Some(String::new());
        while t.elapsed() < Duration::from_secs(30) && last.is_some() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            last = refusal(
                &pools,
                &object("v1beta1", "IPAddressPool", "front", json!({"addresses": ["192.0.2.0/24"]})),
            )
            .await;
        }
        assert!(last.is_none(), "{last:?}\n{}", lab.log("controller.log"));
        let why = refusal(
            &pools,
            &object("v1beta1", "IPAddressPool", "bad", json!({"addresses": ["192.0.2.0/40"]})),
        )
        .await;
        assert!(why.is_some_and(|w| w.contains("IPAddressPool \"bad\"")));
        // No Secret of our own: the files are the certificate.
        let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
        assert!(secrets.get_opt("ferrolb-webhook-cert").await.unwrap().is_none());
    });
}

/// The CRD schemas alone (no webhook runs): a real API server refuses text that would leave its
/// word in frr.conf, in every field that reaches it, and takes what FRR reads back unchanged.
#[test]
fn the_schemas_refuse_text_that_would_become_frr_commands() {
    require_kube!();
    let lab = KubeLab::start();
    let rt = crate::threaded_runtime();
    rt.block_on(async {
        let client = lab.prepared(&[NS]).await;
        let peers = dynamic(&client, "v1beta2", "BGPPeer", "bgppeers");
        let old_peers = dynamic(&client, "v1beta1", "BGPPeer", "bgppeers");
        let base = json!({"myASN": 64500, "peerASN": 64501, "peerAddress": "192.0.2.254"});
        let with = |field: &str, value: &str| {
            let mut spec = base.clone();
            spec[field] = value.into();
            spec
        };
        let smuggle = "x\n neighbor 198.51.100.66 remote-as 65666";
        for (n, (field, value)) in [
            ("password", smuggle),
            ("password", &*"k".repeat(81)),
            ("password", "two words"),
            ("vrf", "red\nexit"),
            ("vrf", "a-sixteen-chars!"),
            ("interface", "eth0/1"),
            ("bfdProfile", "fast\n!"),
        ]
        .into_iter()
        .enumerate()
        {
            let o = object("v1beta2", "BGPPeer", &format!("p{n}"), with(field, value));
            let why = refusal(&peers, &o).await.unwrap_or_else(|| panic!("{field}={value:?} was admitted"));
            assert!(why.contains(&format!("spec.{field}")), "{field}: {why}");
        }
        let o = object("v1beta1", "BGPPeer", "old", with("password", smuggle));
        let why = refusal(&old_peers, &o).await.expect("a v1beta1 peer's smuggling password was admitted");
        assert!(why.contains("spec.password"), "{why}");
        let profiles = dynamic(&client, "v1beta1", "BFDProfile", "bfdprofiles");
        let long = format!("{}.{}", "a".repeat(32), "b".repeat(32));
        let why = refusal(&profiles, &object("v1beta1", "BFDProfile", &long, json!({}))).await;
        assert!(why.as_deref().is_some_and(|w| w.contains("at most 63 characters")), "{why:?}");
        // What FRR takes as one word is admitted as it is.
        let fine = with("password", "!#$%&'()*+,-./:;<=>?@[\\]^_`{|}~\"");
        assert_eq!(refusal(&peers, &object("v1beta2", "BGPPeer", "fine", fine)).await, None);
        assert_eq!(refusal(&profiles, &object("v1beta1", "BFDProfile", &long[..63], json!({}))).await, None);
    });
}
