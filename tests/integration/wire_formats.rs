//! The status objects one build writes and another reads, as every released version wrote
//! them: the controller reads the speakers' ConfigurationStates (their announce failures), users
//! and tools read the ServiceL2Status and ServiceBGPStatus objects, and mid-upgrade the writer
//! and the reader are different builds. Each version's are kept under
//! `tests/fixtures/wire/<version>/objects/` and must still be read with what they said: fields
//! are only added (an unknown one is ignored, a missing one defaults). A new version adds its
//! directory (WRITE_WIRE_CAPTURES=1 writes this version's where none exists), never edits one.
//! (Membership datagrams and frr-agent's messages have tests of their own beside their code.)

use std::path::{Path, PathBuf};

use ferrolb::api::{
    AnnounceFailure, ConfigurationResult, ConfigurationState, ConfigurationStateStatus, InterfaceInfo,
    ServiceBGPStatus, ServiceBGPStatusStatus, ServiceL2Status, ServiceL2StatusStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde::de::DeserializeOwned;

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-12-01T00:00:00Z".parse().unwrap(),
        ),
        observed_generation: None,
    }
}

fn speaker_state() -> ConfigurationState {
    let mut s = ConfigurationState::new("speaker-node1", Default::default());
    s.metadata.namespace = Some("metallb-system".into());
    s.status = Some(ConfigurationStateStatus {
        result: Some(ConfigurationResult::Valid),
        error_summary: None,
        conditions: vec![
            condition("layer2Fenced", "False", "Quorum", "sees 3 of 3 expected speakers; answering"),
            condition("membershipSealed", "True", "Sealed", "membership traffic is sealed with 1 key"),
        ],
        announce_failures: vec![AnnounceFailure {
            service: "shop/web".into(),
            protocol: "layer2".into(),
            reason: "192.0.2.200: none of the interfaces lan7 exists on this node".into(),
        }],
    });
    s
}

fn l2_status() -> ServiceL2Status {
    let mut s = ServiceL2Status::new("l2-abcde", Default::default());
    s.status = Some(ServiceL2StatusStatus {
        node: Some("node1".into()),
        service_name: Some("web".into()),
        service_namespace: Some("shop".into()),
        interfaces: vec![InterfaceInfo { name: "eth0".into() }],
    });
    s
}

fn bgp_status() -> ServiceBGPStatus {
    let mut s = ServiceBGPStatus::new("bgp-abcde", Default::default());
    s.status = Some(ServiceBGPStatusStatus {
        node: Some("node2".into()),
        service_name: Some("web".into()),
        service_namespace: Some("shop".into()),
        peers: vec!["tor-a".into(), "tor-b".into()],
    });
    s
}

fn captured() -> PathBuf {
    crate::repo_root().join("tests/fixtures/wire")
}

fn read<T: DeserializeOwned>(version: &Path, name: &str) -> T {
    let file = version.join("objects").join(name);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

#[test]
fn status_objects_of_every_captured_version_are_still_read() {
    let mine = captured().join(env!("CARGO_PKG_VERSION")).join("objects");
    if std::env::var_os("WRITE_WIRE_CAPTURES").is_some() && !mine.exists() {
        std::fs::create_dir_all(&mine).unwrap();
        let write = |name: &str, v: serde_json::Value| {
            std::fs::write(mine.join(name), serde_json::to_string_pretty(&v).unwrap() + "\n").unwrap()
        };
        write("configurationstate-speaker.json", serde_json::to_value(speaker_state()).unwrap());
        write("servicel2status.json", serde_json::to_value(l2_status()).unwrap());
        write("servicebgpstatus.json", serde_json::to_value(bgp_status()).unwrap());
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir(captured())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|v| v.join("objects").is_dir())
        .collect();
    versions.sort();
    assert!(!versions.is_empty(), "no captured status objects");
    for v in &versions {
        let at = v.display();
        // What that version said, field by field (not today's builders: a later version's may
        // set fields an older capture cannot hold).
        let state: ConfigurationState = read(v, "configurationstate-speaker.json");
        let status = state.status.unwrap_or_default();
        assert_eq!(status.result, Some(ConfigurationResult::Valid), "{at}");
        let fenced = status.conditions.iter().find(|c| c.type_ == "layer2Fenced");
        assert_eq!(fenced.map(|c| (c.status.as_str(), c.reason.as_str())), Some(("False", "Quorum")), "{at}");
        let failure = &status.announce_failures[0];
        assert_eq!((failure.service.as_str(), failure.over()), ("shop/web", "layer 2"), "{at}");
        assert!(failure.reason.contains("lan7"), "{at}");
        let l2: ServiceL2Status = read(v, "servicel2status.json");
        let l2 = l2.status.unwrap_or_default();
        assert_eq!((l2.node.as_deref(), l2.service_name.as_deref()), (Some("node1"), Some("web")), "{at}");
        assert_eq!(l2.interfaces, [InterfaceInfo { name: "eth0".into() }], "{at}");
        let bgp: ServiceBGPStatus = read(v, "servicebgpstatus.json");
        let bgp = bgp.status.unwrap_or_default();
        assert_eq!((bgp.node.as_deref(), bgp.peers.len()), (Some("node2"), 2), "{at}");
    }
}
