//! libFuzzer target: the streaming decoder, fed in chunks whose sizes come from the
//! first input byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vpp_rt::c37118::{FrameStream, StreamEvent};

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(k) + 1;
    let mut s = FrameStream::new();
    for part in rest.chunks(chunk) {
        s.feed(part, |ev| {
            if let StreamEvent::Error(e) = ev {
                assert!(e.offset <= rest.len());
            }
        });
    }
    s.finish(|ev| {
        if let StreamEvent::Error(e) = ev {
            assert!(e.offset <= rest.len());
        }
    });
});
