//! libFuzzer target: one frame through `decode` (with every sample configuration known),
//! then back through `encode` when it decoded.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use vpp_rt::c37118::{decode, samples, ConfigStore, Frame};

fn store() -> &'static ConfigStore {
    static STORE: OnceLock<ConfigStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let mut s = ConfigStore::new();
        for f in samples::all_frames() {
            if let Ok(Frame::Config(c)) = decode(&f, &s) {
                s.insert(c);
            }
        }
        s
    })
}

fuzz_target!(|data: &[u8]| {
    match decode(data, store()) {
        Ok(frame) => {
            let _ = frame.encode(store());
        }
        Err(e) => assert!(e.offset <= data.len() && !e.field.is_empty()),
    }
});
