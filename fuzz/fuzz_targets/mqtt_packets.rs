//! Arbitrary bytes through the MQTT adapter's `Framing` (rmqtt-codec plus the conversion to the
//! project's `Inbound` packets): decoding must never panic, and every PUBLISH it decodes, handed
//! back as an `Outbound::Publish`, must encode with the same `Framing` without panicking (an
//! `Err` is fine).
#![no_main]

use junction_fuzz::mqtt_decode_and_reencode;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mqtt_decode_and_reencode(data);
});
