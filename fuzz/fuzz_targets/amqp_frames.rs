//! Arbitrary bytes through `FrameCodec`: decoding must never panic, and every method it decodes
//! must survive `FrameWriter::method` and a second decode unchanged.
#![no_main]

use junction_fuzz::codec::Frame;
use junction_fuzz::{check_method_round_trip, decode_all};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (frames, _end) = decode_all(data);
    for frame in &frames {
        if let Frame::Method(channel, method) = frame {
            check_method_round_trip(*channel, method);
        }
    }
});
