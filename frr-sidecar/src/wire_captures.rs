//! frr-agent's messages as every released version encodes them: the speaker and the agent are
//! one pod and roll together, but a kubelet restarting one container, or a user pinning the FRR
//! image, pairs two builds. proto3 makes that safe as long as fields are only ever added (a
//! field either side does not know is skipped, a missing one reads as its default) and an RPC
//! is never renumbered or removed; these captures hold every version to it. A new version adds
//! its directory (WRITE_WIRE_CAPTURES=1 writes this version's where none exists) and never edits
//! an older one.

use std::path::PathBuf;

use prost::Message;

use crate::proto::{
    AgentStatus, ApplyReply, ApplyRequest, BfdCounters, BfdPeer, MessageCounters, Neighbor,
    apply_reply::Outcome,
};

const CONFIG: &str =
    "frr defaults traditional\nrouter bgp 64512\n neighbor 192.0.2.1 remote-as 64500\nexit\n";

fn request() -> ApplyRequest {
    ApplyRequest { config: CONFIG.into(), generation: 42 }
}

fn reply() -> ApplyReply {
    ApplyReply {
        outcome: Outcome::Rejected.into(),
        error: "line 3: % Unknown command".into(),
        running_generation: 41,
        lines_added: 3,
        lines_removed: 1,
        took_micros: 151_000,
    }
}

fn status() -> AgentStatus {
    AgentStatus {
        running_generation: 42,
        last_error: String::new(),
        frr_reachable: true,
        restores: 1,
        neighbors: vec![Neighbor {
            vrf: "default".into(),
            peer: "192.0.2.1".into(),
            remote_as: 64500,
            local_as: 64512,
            state: "Established".into(),
            established: true,
            state_for_millis: 90_000,
            connections_established: 2,
            connections_dropped: 1,
            prefixes_sent: 10,
            prefixes_received: 0,
            last_reset: "BFD down received".into(),
            last_notification: String::new(),
            bfd_status: "Up".into(),
            remote_port: 179,
            messages: Some(MessageCounters {
                updates_sent: 7,
                keepalives_received: 30,
                ..Default::default()
            }),
        }],
        bfd_peers: vec![BfdPeer {
            vrf: "default".into(),
            peer: "192.0.2.1".into(),
            status: "up".into(),
            detect_multiplier: 3,
            receive_interval_millis: 100,
            transmit_interval_millis: 100,
            counters: Some(BfdCounters { session_up_events: 2, ..Default::default() }),
            ..Default::default()
        }],
        frr_version: "10.3".into(),
        daemons_down: vec!["bfdd".into()],
        // Only Status fills it in, with the watchers at that moment: 0 encodes as nothing.
        watchers: 0,
    }
}

fn captured() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/wire")
}

fn read(version: &std::path::Path, name: &str) -> Vec<u8> {
    let file = version.join("frr-agent").join(name);
    std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

#[test]
fn messages_of_every_captured_version_are_still_read() {
    let mine = captured().join(env!("CARGO_PKG_VERSION")).join("frr-agent");
    if std::env::var_os("WRITE_WIRE_CAPTURES").is_some() && !mine.exists() {
        std::fs::create_dir_all(&mine).unwrap();
        std::fs::write(mine.join("apply-request.pb"), request().encode_to_vec()).unwrap();
        std::fs::write(mine.join("apply-reply.pb"), reply().encode_to_vec()).unwrap();
        std::fs::write(mine.join("status.pb"), status().encode_to_vec()).unwrap();
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir(captured())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|v| v.join("frr-agent").is_dir())
        .collect();
    versions.sort();
    assert!(!versions.is_empty(), "no captured frr-agent messages");
    for v in &versions {
        let at = v.display();
        // Compared field by field with what that version sent, not with today's builders: a
        // later version's builders may set fields the older capture cannot hold.
        let req = ApplyRequest::decode(&read(v, "apply-request.pb")[..]).unwrap();
        assert_eq!((req.config.as_str(), req.generation), (CONFIG, 42), "{at}");
        let rep = ApplyReply::decode(&read(v, "apply-reply.pb")[..]).unwrap();
        assert_eq!(rep.outcome(), Outcome::Rejected, "{at}");
        assert_eq!(
            (rep.error.as_str(), rep.running_generation, rep.took_micros),
            ("line 3: % Unknown command", 41, 151_000),
            "{at}"
        );
        let st = AgentStatus::decode(&read(v, "status.pb")[..]).unwrap();
        assert_eq!(
            (st.running_generation, st.frr_reachable, st.frr_version.as_str()),
            (42, true, "10.3"),
            "{at}"
        );
        assert_eq!(st.daemons_down, ["bfdd"], "{at}");
        let n = &st.neighbors[0];
        assert_eq!(
            (n.peer.as_str(), n.established, n.connections_dropped, n.last_reset.as_str()),
            ("192.0.2.1", true, 1, "BFD down received"),
            "{at}"
        );
        assert_eq!(
            n.messages.as_ref().map(|m| (m.updates_sent, m.keepalives_received)),
            Some((7, 30)),
            "{at}"
        );
        let b = &st.bfd_peers[0];
        assert_eq!(
            (b.status.as_str(), b.detect_multiplier, b.counters.as_ref().map(|c| c.session_up_events)),
            ("up", 3, Some(2)),
            "{at}"
        );
    }
}

/// The other way round: a message from a newer version, with a field this one has never heard
/// of, still reads, the known fields intact (what an older agent does with a newer speaker's
/// request).
#[test]
fn a_field_from_a_newer_version_is_skipped() {
    let mut bytes = request().encode_to_vec();
    // Field 99, varint 7: nothing this version knows.
    bytes.extend_from_slice(&[0x98, 0x06, 0x07]);
    let req = ApplyRequest::decode(&bytes[..]).unwrap();
    assert_eq!((req.config.as_str(), req.generation), (CONFIG, 42));
}
