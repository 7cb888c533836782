//! Arbitrary bytes through the STOMP adapter's `StompCodec` (adapters/stomp/src/codec.rs), split
//! in two at a position taken from the first byte: decoding never panics, and every decoded frame
//! survives an encode / decode round trip.
#![no_main]

use junction_fuzz::stomp_decode_and_reencode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    stomp_decode_and_reencode(rest, usize::from(split));
});
