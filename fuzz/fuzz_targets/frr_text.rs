//! Any text in any field that reaches frr.conf: refused by name, or kept inside its word
//! (`ferrolb::plan::hostile`). The first byte picks the field; a panic is an escape.
#![no_main]

use ferrolb::plan::hostile::{Slot, check};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let slot = Slot::ALL[usize::from(which) % Slot::ALL.len()];
    if let Err(escape) = check(slot, &String::from_utf8_lossy(rest)) {
        panic!("{escape}");
    }
});
