use super::*;
use amq_protocol::protocol::{basic, channel};
use proptest::prelude::*;

fn decode_all(bytes: &[u8], frame_max: usize) -> Result<Vec<Frame>, FrameError> {
    let mut codec = FrameCodec { frame_max };
    let mut buf = BytesMut::from(bytes);
    let mut frames = Vec::new();
    while let Some(f) = codec.decode(&mut buf)? {
        frames.push(f);
    }
    Ok(frames)
}

#[test]
fn round_trips_method_header_and_split_body() {
    let mut out = BytesMut::new();
    let mut w = FrameWriter { out: &mut out };
    w.method(1, AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})));
    w.content(1, BasicProperties::default().with_priority(3), &[7u8; 100], 40);
    let frames = decode_all(&out, 4096).unwrap();
    assert!(matches!(frames[0], Frame::Method(1, AMQPClass::Channel(_))));
    let Frame::Header(1, h) = &frames[1] else { panic!("header expected") };
    assert_eq!(h.body_size, 100);
    assert_eq!(*h.properties.priority(), Some(3));
    let bodies: Vec<usize> = frames[2..]
        .iter()
        .map(|f| match f {
            Frame::Body(1, b) => b.len(),
            _ => panic!("body expected"),
        })
        .collect();
    assert_eq!(bodies, vec![32, 32, 32, 4]);
}

#[test]
fn oversized_frame_is_refused_from_its_header() {
    // Only the 7-byte header is present: the size alone decides.
    let header = [FRAME_BODY, 0, 1, 0, 1, 0, 0];
    assert!(matches!(decode_all(&header, 4096), Err(FrameError::TooLarge { .. })));
}

#[test]
fn wrong_frame_end_and_unknown_method_are_errors() {
    let mut out = BytesMut::new();
    FrameWriter { out: &mut out }.heartbeat();
    let mut bad = out.to_vec();
    *bad.last_mut().unwrap() = 0x00;
    assert!(matches!(decode_all(&bad, 4096), Err(FrameError::BadFrameEnd(0))));
    let unknown = [FRAME_METHOD, 0, 1, 0, 0, 0, 4, 0, 99, 0, 1, FRAME_END];
    let frames = decode_all(&unknown, 4096).unwrap();
    assert!(matches!(frames[0], Frame::BadMethod(1, FrameError::UnknownMethod { class: 99, method: 1 })));
    let truncated_args = [FRAME_METHOD, 0, 1, 0, 0, 0, 5, 0, 60, 0, 40, 0, FRAME_END];
    let frames = decode_all(&truncated_args, 4096).unwrap();
    assert!(matches!(frames[0], Frame::BadMethod(1, FrameError::Syntax { class: 60, method: 40, .. })));
}

#[test]
fn partial_frames_wait_for_more_bytes() {
    let mut out = BytesMut::new();
    FrameWriter { out: &mut out }.raw(&AMQPFrame::Method(
        2,
        AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos { prefetch_count: 5, global: false })),
    ));
    let mut codec = FrameCodec { frame_max: 4096 };
    let mut buf = BytesMut::from(&out[..out.len() - 1]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    buf.extend_from_slice(&out[out.len() - 1..]);
    assert!(matches!(codec.decode(&mut buf).unwrap(), Some(Frame::Method(2, _))));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_all(&bytes, 1024);
    }
}
