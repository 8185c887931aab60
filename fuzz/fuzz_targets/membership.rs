//! What a speaker does with a membership datagram before it trusts it, on arbitrary bytes:
//! opening the sealed envelope, decoding the packet, and foca decoding its part. Never panics;
//! forged bytes never open under a key, and a sealed packet opens once, to itself, within the
//! time window.
#![no_main]

use ferrolb::l2::membership::Speaker;
use ferrolb::l2::membership::fuzzing::{self, Packet};
use ferrolb::l2::membership::seal::{Dropped, Sealer, WINDOW_MS};
use foca::{AccumulatingRuntime, Codec, PostcardCodec};
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"fuzz membership key";
/// A receiver's clock, ms since the epoch (2027).
const NOW: u64 = 1_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    // Unkeyed, the datagram is the packet.
    let packet = Sealer::new(&[], NOW).open(data, NOW).expect("an unkeyed speaker takes every datagram");
    assert_eq!(packet, data);
    receive(&packet);
    keyed(data);
});

/// The packet decoded and, if it is foca's, handed to a speaker's foca, and to foca's codec.
fn receive(packet: &[u8]) {
    match Packet::decode(packet) {
        Some(Packet::Foca(bytes)) => {
            let mut runtime = AccumulatingRuntime::new();
            let _ = fuzzing::foca(fuzzing::receiver(), 3, 0).handle_data(bytes, &mut runtime);
            let _ = Codec::<Speaker>::decode_header(&mut PostcardCodec, bytes);
            let _ = Codec::<Speaker>::decode_member(&mut PostcardCodec, bytes);
        }
        Some(ring @ (Packet::Ping(_) | Packet::Ack(_))) => assert_eq!(ring.encode(), packet),
        None => {}
    }
}

/// Under a key: the bytes as they came never open; sealed by a speaker holding the key, they
/// open once if they arrive within the window (the first byte picks how late, up to 127 s).
fn keyed(data: &[u8]) {
    let mut receiver = Sealer::new(&[KEY.to_vec()], NOW);
    assert!(receiver.open(data, NOW).is_err(), "forged datagram opened");
    let sealed = Sealer::new(&[KEY.to_vec()], NOW).seal(data, NOW).expect("sealing");
    let late = u64::from(data.first().copied().unwrap_or(0)) * 500;
    match receiver.open(&sealed, NOW + late) {
        Ok(packet) => {
            assert!(late <= WINDOW_MS, "opened {late} ms late");
            assert_eq!(packet, data);
            assert_eq!(receiver.open(&sealed, NOW + late), Err(Dropped::Replayed));
        }
        Err(why) => assert!(late > WINDOW_MS && why == Dropped::Stale, "{why:?} {late} ms late"),
    }
}
