//! What the fuzz target `fuzz/fuzz_targets/membership.rs` needs of the receive path and cannot
//! reach otherwise: the packet decoder and foca as a speaker runs it. Not an API.

use std::net::SocketAddr;

use foca::{Foca, NoCustomBroadcast, PostcardCodec};
use rand::SeedableRng;
use rand::rngs::StdRng;

pub use super::ring::Packet;
use super::{MembershipSettings, Speaker};

pub type SpeakerFoca = Foca<Speaker, PostcardCodec, StdRng, NoCustomBroadcast>;

/// The speaker the fuzz target receives as; the seeds are addressed to it, so foca reads past
/// their headers.
pub fn receiver() -> Speaker {
    Speaker { node: "fuzz-a".into(), addr: SocketAddr::from(([192, 0, 2, 1], 7946)), incarnation: 1 }
}

/// foca with the settings `run` gives it for a cluster of `speakers`; seeded, so a run replays.
pub fn foca(me: Speaker, speakers: usize, seed: u64) -> SpeakerFoca {
    let config = MembershipSettings::new(me.node.clone(), me.addr).foca_config(speakers);
    Foca::new(me, config, StdRng::seed_from_u64(seed), PostcardCodec)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use foca::AccumulatingRuntime;

    use super::*;

    fn sender() -> Speaker {
        Speaker { node: "fuzz-b".into(), addr: SocketAddr::from(([192, 0, 2, 2], 7946)), incarnation: 1 }
    }

    /// The datagram foca queued for `to`, as the socket carries it unkeyed.
    fn sent_to(runtime: &mut AccumulatingRuntime<Speaker>, to: &Speaker) -> Vec<u8> {
        let mut found = None;
        while let Some((dst, data)) = runtime.to_send() {
            if dst == *to && found.is_none() {
                found = Some(Packet::Foca(&data).encode());
            }
        }
        found.expect("foca sent something to the speaker")
    }

    /// Real datagrams to [`receiver`]: a join, a gossip of what the sender knows, a leave, and
    /// the ring watch's ping and answer.
    fn real_datagrams() -> Vec<(&'static str, Vec<u8>)> {
        let (us, them) = (receiver(), sender());
        let (mut a, mut b) = (foca(us.clone(), 3, 1), foca(them.clone(), 3, 2));
        let (mut ra, mut rb) = (AccumulatingRuntime::new(), AccumulatingRuntime::new());
        b.announce(us.clone(), &mut rb).unwrap();
        let announce = sent_to(&mut rb, &us);
        a.handle_data(&announce[1..], &mut ra).unwrap();
        b.handle_data(&sent_to(&mut ra, &them)[1..], &mut rb).unwrap();
        b.gossip(&mut rb).unwrap();
        let gossip = sent_to(&mut rb, &us);
        b.leave_cluster(&mut rb).unwrap();
        let leave = sent_to(&mut rb, &us);
        vec![
            ("foca-announce", announce),
            ("foca-gossip", gossip),
            ("foca-leave", leave),
            ("ring-ping", Packet::Ping(7).encode()),
            ("ring-ack", Packet::Ack(7).encode()),
        ]
    }

    /// Where each version's captured datagrams live: `<version>/membership/<name>`.
    fn captured() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wire")
    }

    /// The key and send time of the captured sealed datagrams.
    const CAPTURE_KEY: &[u8] = b"ferrolb wire capture key";
    const CAPTURED_AT_MS: u64 = 1_800_000_000_000;

    /// Datagrams as every released format sent them must still be read, so speakers of two
    /// versions can talk during a rollout: a new version adds its own directory
    /// (WRITE_WIRE_CAPTURES=1 writes this version's files where none exist) and never edits an
    /// older one. The join must still name the speaker it came from.
    #[test]
    fn datagrams_of_every_captured_version_are_still_read() {
        let version = env!("CARGO_PKG_VERSION");
        let mine = captured().join(version).join("membership");
        if std::env::var_os("WRITE_WIRE_CAPTURES").is_some() && !mine.exists() {
            std::fs::create_dir_all(&mine).unwrap();
            let mut sealer = super::super::seal::Sealer::new(&[CAPTURE_KEY.to_vec()], CAPTURED_AT_MS);
            for (name, datagram) in real_datagrams() {
                let sealed = sealer.seal(&datagram, CAPTURED_AT_MS).unwrap();
                std::fs::write(mine.join(format!("{name}.sealed")), sealed).unwrap();
                std::fs::write(mine.join(name), datagram).unwrap();
            }
        }
        let mut versions: Vec<PathBuf> =
            std::fs::read_dir(captured()).unwrap().map(|e| e.unwrap().path()).collect();
        versions.sort();
        assert!(!versions.is_empty(), "no captured wire formats");
        for dir in versions.iter().map(|v| v.join("membership")) {
            let mut files: Vec<PathBuf> =
                std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
            files.sort();
            assert_eq!(files.len(), 10, "{}", dir.display());
            // A receiver started at the capture, reading each as it arrives.
            let mut opener = super::super::seal::Sealer::new(&[CAPTURE_KEY.to_vec()], CAPTURED_AT_MS);
            for file in files {
                let mut datagram = std::fs::read(&file).unwrap();
                if file.extension().is_some_and(|e| e == "sealed") {
                    datagram = opener
                        .open(&datagram, CAPTURED_AT_MS + 1)
                        .unwrap_or_else(|e| panic!("{}: {e:?}", file.display()));
                }
                let mut runtime = AccumulatingRuntime::new();
                let mut us = foca(receiver(), 3, 0);
                match Packet::decode(&datagram) {
                    Some(Packet::Foca(data)) => us.handle_data(data, &mut runtime).unwrap(),
                    Some(Packet::Ping(n) | Packet::Ack(n)) => assert_eq!(n, 7, "{}", file.display()),
                    None => panic!("{} is no membership packet", file.display()),
                }
                let name = file.file_name().unwrap().to_string_lossy();
                if name.starts_with("foca-announce") {
                    let from: Vec<Speaker> = us.iter_members().map(|m| m.id().clone()).collect();
                    assert_eq!(from, [sender()], "{}", file.display());
                }
            }
        }
    }

    /// UPDATE_FUZZ_SEEDS=1 writes them to fuzz/seeds/membership/; either way every seed there must
    /// still be one the receiver takes whole (a seed foca refuses at its header fuzzes little).
    #[test]
    fn the_fuzz_seeds_are_real_datagrams_the_receiver_takes() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/membership");
        if std::env::var_os("UPDATE_FUZZ_SEEDS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            for (name, datagram) in real_datagrams() {
                std::fs::write(dir.join(name), datagram).unwrap();
            }
        }
        let mut seeds: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        seeds.sort();
        assert_eq!(seeds.len(), real_datagrams().len(), "{seeds:?}");
        for seed in seeds {
            let datagram = std::fs::read(&seed).unwrap();
            match Packet::decode(&datagram) {
                Some(Packet::Foca(data)) => {
                    let mut runtime = AccumulatingRuntime::new();
                    foca(receiver(), 3, 0).handle_data(data, &mut runtime).unwrap();
                }
                Some(Packet::Ping(_) | Packet::Ack(_)) => {}
                None => panic!("{} is no membership packet", seed.display()),
            }
        }
    }
}
