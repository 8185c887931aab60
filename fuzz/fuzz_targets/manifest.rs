//! Whole manifests through decoding, validation and planning: never panics, whatever the text.
#![no_main]

use ferrolb::plan::{self, Format, Inputs, Options};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut inputs = Inputs::new("metallb-system");
    if inputs.add_yaml("fuzz", text).is_err() {
        return;
    }
    let p = plan::plan(&inputs, &Options::default());
    let _ = plan::render(&p, Format::Json);
    let _ = plan::render(&p, Format::Table);
});
