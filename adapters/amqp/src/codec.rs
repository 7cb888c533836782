//! AMQP 0-9-1 framing on a byte stream. The frame header is checked against `frame_max` before
//! the payload is buffered, so a peer cannot make us hold more than one negotiated frame.
//! Method and content-header payloads are parsed by amq-protocol; bodies stay as `Bytes`.

use amq_protocol::frame::parsing::parse_content_header;
use amq_protocol::frame::{gen_frame, AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::{parse_class, AMQPClass, BasicProperties};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::Decoder;

pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
pub const FRAME_END: u8 = 0xCE;
const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_HEARTBEAT: u8 = 8;
/// Frame header (type, channel, size) plus the frame-end octet.
pub const FRAME_OVERHEAD: usize = 8;

/// A frame from the client.
#[derive(Debug)]
pub enum Frame {
    Method(u16, AMQPClass),
    Header(u16, AMQPContentHeader),
    Body(u16, Bytes),
    Heartbeat(u16),
    /// A well-framed method that cannot be decoded. Passed on rather than failed here because
    /// the right reply depends on the channel's state (505 in the middle of content).
    BadMethod(u16, FrameError),
}

impl Frame {
    /// The content bytes a body frame holds (what counts when frames are kept a while).
    pub fn body_len(&self) -> usize {
        match self {
            Frame::Body(_, body) => body.len(),
            _ => 0,
        }
    }
}

/// Why the byte stream could not be read as frames: every case is a connection error.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame size {size} exceeds frame_max {max}")]
    TooLarge { size: usize, max: usize },
    #[error("invalid frame end octet {0:#04x}")]
    BadFrameEnd(u8),
    #[error("unknown frame type {0}")]
    BadFrameType(u8),
    #[error("unknown method {class}.{method}")]
    UnknownMethod { class: u16, method: u16 },
    #[error("cannot decode {what}")]
    Syntax { what: &'static str, class: u16, method: u16 },
    #[error("heartbeat frame with a payload")]
    BadHeartbeat,
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Splits a byte stream into frames no larger than `frame_max`.
#[derive(Debug)]
pub struct FrameCodec {
    pub frame_max: usize,
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if buf.len() < 7 {
            return Ok(None);
        }
        let kind = buf[0];
        let channel = u16::from_be_bytes([buf[1], buf[2]]);
        let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize;
        if size + FRAME_OVERHEAD > self.frame_max {
            return Err(FrameError::TooLarge { size: size + FRAME_OVERHEAD, max: self.frame_max });
        }
        if buf.len() < size + FRAME_OVERHEAD {
            buf.reserve(size + FRAME_OVERHEAD - buf.len());
            return Ok(None);
        }
        let end = buf[7 + size];
        if end != FRAME_END {
            return Err(FrameError::BadFrameEnd(end));
        }
        buf.advance(7);
        let payload = buf.split_to(size).freeze();
        buf.advance(1);
        parse_payload(kind, channel, payload).map(Some)
    }
}

fn parse_payload(kind: u8, channel: u16, payload: Bytes) -> Result<Frame, FrameError> {
    match kind {
        FRAME_METHOD => {
            if payload.len() < 4 {
                return Err(FrameError::Syntax { what: "method frame", class: 0, method: 0 });
            }
            let class = u16::from_be_bytes([payload[0], payload[1]]);
            let method = u16::from_be_bytes([payload[2], payload[3]]);
            let error = match parse_class(&payload[..]) {
                Ok((rest, m)) if rest.is_empty() => return Ok(Frame::Method(channel, m)),
                _ if !known_method(class, method) => FrameError::UnknownMethod { class, method },
                _ => FrameError::Syntax { what: "method arguments", class, method },
            };
            Ok(Frame::BadMethod(channel, error))
        }
        FRAME_HEADER => match parse_content_header(&payload[..]) {
            Ok((rest, h)) if rest.is_empty() => Ok(Frame::Header(channel, h)),
            _ => Err(FrameError::Syntax { what: "content header", class: 0, method: 0 }),
        },
        FRAME_BODY => Ok(Frame::Body(channel, payload)),
        FRAME_HEARTBEAT if payload.is_empty() => Ok(Frame::Heartbeat(channel)),
        FRAME_HEARTBEAT => Err(FrameError::BadHeartbeat),
        other => Err(FrameError::BadFrameType(other)),
    }
}

/// Method ids defined by AMQP 0-9-1 and RabbitMQ's extensions.
fn known_method(class: u16, method: u16) -> bool {
    let methods: &[u16] = match class {
        10 => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 60, 61, 70, 71],
        20 => &[10, 11, 20, 21, 40, 41],
        30 => &[10, 11],
        40 => &[10, 11, 20, 21, 30, 31, 40, 51],
        50 => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51],
        60 => &[10, 11, 20, 21, 30, 31, 40, 50, 60, 70, 71, 72, 80, 90, 100, 110, 111, 120],
        85 => &[10, 11],
        90 => &[10, 11, 20, 21, 30, 31],
        _ => &[],
    };
    methods.contains(&method)
}

/// Appends encoded frames to an output buffer.
pub struct FrameWriter<'a> {
    pub out: &'a mut BytesMut,
}

impl FrameWriter<'_> {
    fn encode(&mut self, frame: &AMQPFrame) {
        let buf = Vec::with_capacity(128);
        let (buf, _) = cookie_factory::gen(gen_frame(frame), buf).expect("frames always encode");
        self.out.extend_from_slice(&buf);
    }

    pub fn method(&mut self, channel: u16, method: AMQPClass) {
        self.encode(&AMQPFrame::Method(channel, method));
    }

    pub fn heartbeat(&mut self) {
        self.out.extend_from_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
    }

    /// A content header and the body split into frames that fit `frame_max`.
    pub fn content(&mut self, channel: u16, properties: BasicProperties, body: &[u8], frame_max: usize) {
        let header = AMQPContentHeader { class_id: 60, body_size: body.len() as u64, properties };
        self.encode(&AMQPFrame::Header(channel, header));
        let chunk = frame_max.saturating_sub(FRAME_OVERHEAD).max(1);
        self.out.reserve(body.len() + (body.len() / chunk + 1) * FRAME_OVERHEAD);
        for part in body.chunks(chunk) {
            self.out.put_u8(FRAME_BODY);
            self.out.put_u16(channel);
            self.out.put_u32(part.len() as u32);
            self.out.extend_from_slice(part);
            self.out.put_u8(FRAME_END);
        }
    }

    #[cfg(test)]
    pub fn raw(&mut self, frame: &AMQPFrame) {
        self.encode(frame)
    }
}

#[cfg(test)]
mod tests;
