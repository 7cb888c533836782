//! The first byte chooses split points, the rest is the stream: decoding it chunk by chunk must
//! give the same frames, and stop the same way, as decoding it in one piece.
#![no_main]

use junction_fuzz::{decode_all, decode_chunks};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else { return };
    let whole = decode_all(stream);
    let split = decode_chunks(chunks(stream, seed));
    // Frame has no PartialEq (FrameError holds io::Error); Debug shows every field.
    let (whole_dbg, split_dbg) = (format!("{whole:?}"), format!("{split:?}"));
    assert_eq!(whole_dbg, split_dbg, "split with seed {seed:#04x} changed the result");
});

/// Splits `stream` into chunks of 1..=max(seed, 1) bytes, lengths from a small LCG seeded by
/// `seed`; seed 0 feeds one byte at a time.
fn chunks(stream: &[u8], seed: u8) -> Vec<&[u8]> {
    let max = usize::from(seed).max(1);
    let mut state = u32::from(seed);
    let mut rest = stream;
    let mut out = Vec::new();
    while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let len = (1 + (state >> 16) as usize % max).min(rest.len());
        let (head, tail) = rest.split_at(len);
        out.push(head);
        rest = tail;
    }
    out
}
