//! Harness shared by the fuzz targets. The codecs are compiled straight from the adapters' source,
//! so this crate does not depend on junction-amqp or junction-mqtt (and through them on the broker
//! and RocksDB).

#[path = "../../adapters/amqp/src/codec.rs"]
pub mod codec;

// MQTT: both files sit at the crate root, as in junction-mqtt, so that the framing's
// `use crate::packet::*;` resolves. `codec` is taken by AMQP, hence `mqtt_codec`.
#[path = "../../adapters/mqtt/src/packet.rs"]
pub mod packet;
#[path = "../../adapters/mqtt/src/codec.rs"]
pub mod mqtt_codec;

// STOMP: `frame` sits at the crate root as in junction-stomp (`use crate::frame::...`).
#[path = "../../adapters/stomp/src/frame.rs"]
pub mod frame;
#[path = "../../adapters/stomp/src/codec.rs"]
pub mod stomp_codec;

use amq_protocol::protocol::AMQPClass;
use bytes::BytesMut;
use codec::{Frame, FrameCodec, FrameWriter};
use tokio_util::codec::Decoder;

/// The frame_max the targets decode with: small enough that the size check is reachable.
pub const FRAME_MAX: usize = 4096;

/// A frame_max for re-decoding our own output: an encoding that grows past `FRAME_MAX` is not
/// itself a disagreement, so only the round trip decides.
const ROUND_TRIP_FRAME_MAX: usize = 1 << 24;

/// How a decode run stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// `decode` returned `Ok(None)` with this many bytes still buffered.
    NeedMore { buffered: usize },
    /// `decode` returned this error (its `Debug` form: `FrameError` has no `PartialEq`).
    Error(String),
}

/// Decodes `data` handed over in one piece.
pub fn decode_all(data: &[u8]) -> (Vec<Frame>, End) {
    decode_chunks(std::iter::once(data))
}

/// Decodes the chunks handed over one after the other, draining every frame after each chunk
/// the way a connection's read loop does.
pub fn decode_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Frame>, End) {
    let mut codec = FrameCodec { frame_max: FRAME_MAX };
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => return (frames, End::Error(format!("{e:?}"))),
            }
        }
    }
    (frames, End::NeedMore { buffered: buf.len() })
}

/// Re-encodes a decoded method with `FrameWriter::method`, decodes it again and panics unless
/// exactly one equal method on the same channel comes back.
pub fn check_method_round_trip(channel: u16, method: &AMQPClass) {
    let mut out = BytesMut::new();
    FrameWriter { out: &mut out }.method(channel, method.clone());
    let encoded = out.to_vec();
    let mut codec = FrameCodec { frame_max: ROUND_TRIP_FRAME_MAX };
    match codec.decode(&mut out) {
        Ok(Some(Frame::Method(c, m))) if c == channel && same_method(&m, method) => {}
        other => panic!(
            "method does not round-trip\n  decoded:    {method:?} on channel {channel}\n  \
             re-encoded: {}\n  re-decoded: {other:?}",
            hex(&encoded)
        ),
    }
    assert!(out.is_empty(), "{} bytes left after re-decoding {}", out.len(), hex(&encoded));
}

/// `PartialEq`, except that a NaN in a field table equals itself: both sides then print alike.
fn same_method(a: &AMQPClass, b: &AMQPClass) -> bool {
    a == b || format!("{a:?}") == format!("{b:?}")
}

/// Lowercase hex, for panic messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `max_inbound` the MQTT target decodes with: small enough that the size check is reachable.
pub const MQTT_MAX_INBOUND: u32 = 4096;

/// Decodes `data` handed over in one piece with a fresh `Framing::new(MQTT_MAX_INBOUND)`, until
/// `decode` returns `Ok(None)` or `Err`. Each `Inbound::Publish` is handed back as an
/// `Outbound::Publish` with the same fields and encoded with the same `Framing` right away, the
/// way the broker's writer shares it with the reader once CONNECT has set the level. Encoding may
/// fail (for example a QoS 1/2 publish without a packet id, or a v5 publish on a 3.1.x level), but
/// it must not panic. Returns the packets, how decoding stopped, and how many encodes failed.
pub fn mqtt_decode_and_reencode(data: &[u8]) -> (Vec<packet::Inbound>, End, usize) {
    use packet::{Inbound, Outbound};
    use tokio_util::codec::Encoder;

    let mut framing = mqtt_codec::Framing::new(MQTT_MAX_INBOUND);
    let mut buf = BytesMut::from(data);
    let mut packets = Vec::new();
    let mut encode_errors = 0;
    let mut out = BytesMut::new();
    let end = loop {
        match framing.decode(&mut buf) {
            Ok(Some(inbound)) => {
                if let Inbound::Publish(p) = &inbound {
                    out.clear();
                    if framing.encode(Outbound::Publish(p.clone()), &mut out).is_err() {
                        encode_errors += 1;
                    }
                }
                packets.push(inbound);
            }
            Ok(None) => break End::NeedMore { buffered: buf.len() },
            Err(e) => break End::Error(format!("{e:?}")),
        }
    };
    (packets, end, encode_errors)
}

/// Arbitrary bytes through the STOMP decoder (as a 1.2 session, in two pieces split at
/// `split`): it must never panic, and every frame it decodes must encode and decode back to
/// the same command, headers and body. CONNECT, STOMP and CONNECTED are left out of the round
/// trip: their headers are never escaped, so a value ending in CR cannot survive one (the
/// server never encodes the first two and writes only its own values into CONNECTED).
pub fn stomp_decode_and_reencode(data: &[u8], split: usize) {
    use stomp_codec::{Inbound, Limits, StompCodec};
    let limits = Limits { max_headers: 16, max_header_line: 256, max_head: 1024, max_body: 4096 };
    let mut codec = StompCodec::new(limits);
    codec.set_version(frame::Version::V12);
    let split = split.min(data.len());
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in [&data[..split], &data[split..]] {
        buf.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(Inbound::Frame(f))) => frames.push(f),
                Ok(Some(Inbound::HeartBeat)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
    for f in frames.into_iter().filter(|f| !matches!(f.command.as_str(), "CONNECT" | "STOMP" | "CONNECTED")) {
        let mut wire = BytesMut::new();
        codec.encode_frame(&f, &mut wire);
        let mut again = StompCodec::new(Limits { max_headers: 64, max_header_line: 1 << 20, max_head: 1 << 22, max_body: 1 << 22 });
        again.set_version(frame::Version::V12);
        match again.decode(&mut wire) {
            Ok(Some(Inbound::Frame(back))) => {
                assert_eq!((&back.command, &back.body), (&f.command, &f.body));
                let strip = |h: &[(String, String)]| h.iter().filter(|(k, _)| k != "content-length").cloned().collect::<Vec<_>>();
                assert_eq!(strip(&back.headers), strip(&f.headers));
            }
            other => panic!("re-encoded frame did not decode: {other:?}"),
        }
    }
}
