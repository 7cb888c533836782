//! Framing: rmqtt-codec does the byte work (with its size limit set before anything is
//! buffered); this module detects the protocol level from CONNECT and converts between the
//! codec's v3 / v5 packets and the project's own `packet` types.

use crate::packet::*;
use bytes::BytesMut;
use bytestring::ByteString;
use rmqtt_codec::types::QoS;
use rmqtt_codec::{v3, v5, version, MqttCodec, MqttPacket};
use std::num::{NonZeroU16, NonZeroU32};
use tokio_util::codec::{Decoder, Encoder};

pub use rmqtt_codec::error::{DecodeError, EncodeError};

/// Decodes `Inbound` packets and encodes `Outbound` ones for one connection.
#[derive(Debug)]
pub struct Framing {
    codec: MqttCodec,
    /// Set once CONNECT is decoded.
    level: Option<Level>,
    /// Set once the version detector has chosen the v3 or v5 codec, which may be before the
    /// rest of CONNECT has arrived.
    detected: bool,
    max_inbound: u32,
}

impl Framing {
    /// `max_inbound` bounds every packet the client may send, checked from the fixed header.
    pub fn new(max_inbound: u32) -> Framing {
        Framing { codec: MqttCodec::Version(version::VersionCodec), level: None, detected: false, max_inbound }
    }

    pub fn level(&self) -> Option<Level> {
        self.level
    }

    /// The CONNACK refusal a CONNECT that failed to decode deserves (MQTT-3.1.2-2,
    /// MQTT-3.1.3-9), encoded for the protocol level the client asked for; None when the
    /// failure needs no answer (not a CONNECT at all).
    pub fn connect_refusal(&mut self, e: &DecodeError) -> Option<BytesMut> {
        let code = match e {
            DecodeError::InvalidClientId => reason::CLIENT_ID_NOT_VALID,
            DecodeError::UnsupportedProtocolLevel => reason::UNSUPPORTED_PROTOCOL_VERSION,
            DecodeError::InvalidProtocol if self.detected => reason::UNSUPPORTED_PROTOCOL_VERSION,
            _ => return None,
        };
        if matches!(self.codec, MqttCodec::V5(_)) {
            self.level = Some(Level::V5);
        }
        let mut out = BytesMut::new();
        self.encode(Outbound::ConnAck(ConnAck { reason: code, ..Default::default() }), &mut out).ok()?;
        Some(out)
    }

    /// Packets larger than this are not sent to the client (MQTT 5 Maximum Packet Size).
    pub fn set_max_outbound(&mut self, size: u32) {
        if let MqttCodec::V5(c) = &mut self.codec {
            c.set_max_outbound_size(size);
        }
    }
}

fn qos(q: QoS) -> u8 {
    q.value()
}

fn to_qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn text(s: &ByteString) -> String {
    s.to_string()
}

fn id(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN)
}

impl Decoder for Framing {
    type Item = Inbound;
    type Error = DecodeError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, DecodeError> {
        if !self.detected {
            let Some((MqttPacket::Version(v), _)) = self.codec.decode(src)? else { return Ok(None) };
            self.codec = match v {
                version::ProtocolVersion::MQTT3 => MqttCodec::V3(v3::Codec::new(self.max_inbound)),
                version::ProtocolVersion::MQTT5 => MqttCodec::V5(v5::Codec::new(self.max_inbound, 0)),
            };
            self.detected = true;
        }
        let mut unclean_anonymous = false;
        if self.level.is_none() && matches!(self.codec, MqttCodec::V5(_)) {
            // The codec takes a packet's fixed header off the buffer before the rest has
            // arrived; hold a (size-checked) CONNECT back until it is whole, to inspect it.
            match whole_packet_len(src) {
                Some(len) if len > src.len() && len.saturating_sub(5) <= self.max_inbound as usize => {
                    src.reserve(len - src.len());
                    return Ok(None);
                }
                Some(_) => unclean_anonymous = mark_empty_id_connect_clean(src),
                None if src.len() < 5 => return Ok(None),
                None => {}
            }
        }
        match self.codec.decode(src)? {
            None => Ok(None),
            Some((MqttPacket::V3(p), _)) => from_v3(p, &mut self.level).map(Some),
            Some((MqttPacket::V5(p), _)) => {
                let mut inbound = from_v5(p, &mut self.level)?;
                if let (true, Inbound::Connect(c)) = (unclean_anonymous, &mut inbound) {
                    c.clean_start = false;
                }
                Ok(Some(inbound))
            }
            Some((MqttPacket::Version(_), _)) => Err(DecodeError::InvalidProtocol),
        }
    }
}

/// The length of the packet at the start of `src` (fixed header included), once its fixed
/// header is there.
fn whole_packet_len(src: &[u8]) -> Option<usize> {
    let (body_len, len_size) = varint(src.get(1..)?)?;
    Some(1 + len_size + body_len)
}

/// MQTT 5 lets a client send an empty client id with Clean Start 0 (the server assigns an id,
/// so the session is new anyway), but the codec refuses that CONNECT. When `src` holds such a
/// whole CONNECT, this sets its Clean Start bit so that it decodes, and says so; the caller
/// puts the flag back.
fn mark_empty_id_connect_clean(src: &mut BytesMut) -> bool {
    const CLEAN_START: u8 = 0x02;
    let Some((body_len, len_size)) = varint(src.get(1..).unwrap_or_default()) else { return false };
    let header_len = len_size + 1;
    if src.first() != Some(&0x10) || src.len() < header_len + body_len {
        return false;
    }
    // Protocol name (2 + 4), level, flags, keep-alive (2), then the properties.
    let flags_at = header_len + 7;
    let props_at = flags_at + 3;
    let Some((props_len, props_len_size)) = varint(src.get(props_at..).unwrap_or_default()) else { return false };
    let id_at = props_at + props_len_size + props_len;
    let empty_id = src.get(id_at..id_at + 2) == Some(&[0, 0][..]);
    match src.get_mut(flags_at) {
        Some(flags) if empty_id && *flags & CLEAN_START == 0 && id_at + 2 <= header_len + body_len => {
            *flags |= CLEAN_START;
            true
        }
        _ => false,
    }
}

/// A Variable Byte Integer at the start of `b`: its value and its length.
fn varint(b: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, byte) in b.iter().take(4).enumerate() {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

fn from_v3(p: v3::Packet, level: &mut Option<Level>) -> Result<Inbound, DecodeError> {
    Ok(match p {
        v3::Packet::Connect(c) => {
            let lvl = if c.protocol.0 == 3 { Level::V31 } else { Level::V311 };
            *level = Some(lvl);
            Inbound::Connect(Box::new(Connect {
                level: lvl,
                client_id: text(&c.client_id),
                clean_start: c.clean_session,
                keep_alive: c.keep_alive,
                username: c.username.as_ref().map(text),
                password: c.password.clone(),
                will: c.last_will.as_ref().map(|w| Will {
                    topic: text(&w.topic),
                    payload: w.message.clone(),
                    qos: qos(w.qos),
                    retain: w.retain,
                    delay_secs: 0,
                    props: PublishProps::default(),
                }),
                // 3.1.x: a persistent session never expires on its own.
                session_expiry: if c.clean_session { 0 } else { u32::MAX },
                receive_max: u16::MAX,
                max_packet_size: None,
                topic_alias_max: 0,
                auth_method: None,
            }))
        }
        v3::Packet::Publish(p) => Inbound::Publish(Box::new(publish_from(&p))),
        v3::Packet::PublishAck { packet_id } => Inbound::PubAck(packet_id.get()),
        v3::Packet::PublishReceived { packet_id } => Inbound::PubRec(packet_id.get()),
        v3::Packet::PublishRelease { packet_id } => Inbound::PubRel(packet_id.get()),
        v3::Packet::PublishComplete { packet_id } => Inbound::PubComp(packet_id.get()),
        v3::Packet::Subscribe { packet_id, topic_filters } => Inbound::Subscribe {
            packet_id: packet_id.get(),
            subscription_id: None,
            filters: topic_filters
                .iter()
                .map(|(f, q)| {
                    let opts = SubscriptionOptions { qos: qos(*q), no_local: false, retain_as_published: false, retain_handling: 0 };
                    (text(f), opts)
                })
                .collect(),
        },
        v3::Packet::Unsubscribe { packet_id, topic_filters } => {
            Inbound::Unsubscribe { packet_id: packet_id.get(), filters: topic_filters.iter().map(text).collect() }
        }
        v3::Packet::PingRequest => Inbound::PingReq,
        v3::Packet::Disconnect => Inbound::Disconnect { reason: reason::SUCCESS, session_expiry: None },
        _ => return Err(DecodeError::UnsupportedPacketType),
    })
}

/// Both protocol levels decode PUBLISH into the codec's one `Publish` type.
fn publish_from(p: &rmqtt_codec::types::Publish) -> Publish {
    Publish {
        topic: text(&p.topic),
        payload: p.payload.clone(),
        qos: qos(p.qos),
        retain: p.retain,
        dup: p.dup,
        packet_id: p.packet_id.map(NonZeroU16::get),
        props: p.properties.as_ref().map(props_from_v5).unwrap_or_default(),
    }
}

fn props_from_v5(p: &v5::PublishProperties) -> PublishProps {
    PublishProps {
        payload_utf8: p.is_utf8_payload,
        expiry_secs: p.message_expiry_interval.map(NonZeroU32::get),
        content_type: p.content_type.as_ref().map(text),
        response_topic: p.response_topic.as_ref().map(text),
        correlation_data: p.correlation_data.clone(),
        user: p.user_properties.iter().map(|(k, v)| (text(k), text(v))).collect(),
        subscription_ids: p.subscription_ids.iter().map(|n| n.get()).collect(),
        topic_alias: p.topic_alias.map(NonZeroU16::get),
    }
}

fn props_to_v5(p: &PublishProps) -> v5::PublishProperties {
    v5::PublishProperties {
        topic_alias: p.topic_alias.and_then(NonZeroU16::new),
        correlation_data: p.correlation_data.clone(),
        message_expiry_interval: p.expiry_secs.and_then(NonZeroU32::new),
        content_type: p.content_type.as_deref().map(ByteString::from),
        user_properties: p.user.iter().map(|(k, v)| (ByteString::from(k.as_str()), ByteString::from(v.as_str()))).collect(),
        is_utf8_payload: p.payload_utf8,
        response_topic: p.response_topic.as_deref().map(ByteString::from),
        subscription_ids: p.subscription_ids.iter().filter_map(|n| NonZeroU32::new(*n)).collect(),
    }
}

fn from_v5(p: v5::Packet, level: &mut Option<Level>) -> Result<Inbound, DecodeError> {
    Ok(match p {
        v5::Packet::Connect(c) => {
            *level = Some(Level::V5);
            Inbound::Connect(Box::new(Connect {
                level: Level::V5,
                client_id: text(&c.client_id),
                clean_start: c.clean_start,
                keep_alive: c.keep_alive,
                username: c.username.as_ref().map(text),
                password: c.password.clone(),
                will: c.last_will.as_ref().map(|w| Will {
                    topic: text(&w.topic),
                    payload: w.message.clone(),
                    qos: qos(w.qos),
                    retain: w.retain,
                    delay_secs: w.will_delay_interval_sec.unwrap_or(0),
                    props: PublishProps {
                        payload_utf8: w.is_utf8_payload.unwrap_or(false),
                        expiry_secs: w.message_expiry_interval.map(NonZeroU32::get),
                        content_type: w.content_type.as_ref().map(text),
                        response_topic: w.response_topic.as_ref().map(text),
                        correlation_data: w.correlation_data.clone(),
                        user: w.user_properties.iter().map(|(k, v)| (text(k), text(v))).collect(),
                        ..Default::default()
                    },
                }),
                session_expiry: c.session_expiry_interval_secs,
                receive_max: c.receive_max.map_or(u16::MAX, NonZeroU16::get),
                max_packet_size: c.max_packet_size.map(NonZeroU32::get),
                topic_alias_max: c.topic_alias_max,
                auth_method: c.auth_method.as_ref().map(text),
            }))
        }
        v5::Packet::Publish(p) => Inbound::Publish(Box::new(publish_from(&p))),
        v5::Packet::PublishAck(a) => Inbound::PubAck(a.packet_id.get()),
        v5::Packet::PublishReceived(a) => Inbound::PubRec(a.packet_id.get()),
        v5::Packet::PublishRelease(a) => Inbound::PubRel(a.packet_id.get()),
        v5::Packet::PublishComplete(a) => Inbound::PubComp(a.packet_id.get()),
        v5::Packet::Subscribe(s) => Inbound::Subscribe {
            packet_id: s.packet_id.get(),
            subscription_id: s.id.map(NonZeroU32::get),
            filters: s
                .topic_filters
                .iter()
                .map(|(f, o)| {
                    let opts = SubscriptionOptions {
                        qos: qos(o.qos),
                        no_local: o.no_local,
                        retain_as_published: o.retain_as_published,
                        retain_handling: u8::from(o.retain_handling),
                    };
                    (text(f), opts)
                })
                .collect(),
        },
        v5::Packet::Unsubscribe(u) => {
            Inbound::Unsubscribe { packet_id: u.packet_id.get(), filters: u.topic_filters.iter().map(text).collect() }
        }
        v5::Packet::PingRequest => Inbound::PingReq,
        v5::Packet::Disconnect(d) => {
            Inbound::Disconnect { reason: u8::from(d.reason_code), session_expiry: d.session_expiry_interval_secs }
        }
        v5::Packet::Auth(_) => Inbound::Auth,
        _ => return Err(DecodeError::UnsupportedPacketType),
    })
}

impl Encoder<Outbound> for Framing {
    type Error = EncodeError;

    fn encode(&mut self, item: Outbound, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let packet = match self.level {
            Some(Level::V5) => MqttPacket::V5(to_v5(item)?),
            _ => MqttPacket::V3(to_v3(item)?),
        };
        self.codec.encode(packet, dst)
    }
}

fn to_v3(item: Outbound) -> Result<v3::Packet, EncodeError> {
    Ok(match item {
        Outbound::ConnAck(a) => {
            let code = v3::ConnectAckReason::try_from(v3_return_code(a.reason)).map_err(|_| EncodeError::MalformedPacket)?;
            v3::Packet::ConnectAck(v3::ConnectAck { return_code: code, session_present: a.session_present })
        }
        Outbound::Publish(p) => v3::Packet::Publish(Box::new(publish_to(*p, false))),
        Outbound::PubAck { packet_id, .. } => v3::Packet::PublishAck { packet_id: id(packet_id) },
        Outbound::PubRec { packet_id, .. } => v3::Packet::PublishReceived { packet_id: id(packet_id) },
        Outbound::PubRel { packet_id } => v3::Packet::PublishRelease { packet_id: id(packet_id) },
        Outbound::PubComp { packet_id } => v3::Packet::PublishComplete { packet_id: id(packet_id) },
        Outbound::SubAck { packet_id, codes } => v3::Packet::SubscribeAck {
            packet_id: id(packet_id),
            status: codes
                .into_iter()
                .map(|c| if c < 3 { v3::SubscribeReturnCode::Success(to_qos(c)) } else { v3::SubscribeReturnCode::Failure })
                .collect(),
        },
        Outbound::UnsubAck { packet_id, .. } => v3::Packet::UnsubscribeAck { packet_id: id(packet_id) },
        Outbound::PingResp => v3::Packet::PingResponse,
        // 3.1.x has no server DISCONNECT: the caller just closes.
        Outbound::Disconnect { .. } => return Err(EncodeError::UnsupportedVersion),
    })
}

fn to_v5(item: Outbound) -> Result<v5::Packet, EncodeError> {
    let reason_string = |s: Option<String>| s.map(|s| ByteString::from(s.as_str()));
    Ok(match item {
        Outbound::ConnAck(a) => v5::Packet::ConnectAck(Box::new(v5::ConnectAck {
            session_present: a.session_present,
            reason_code: v5::ConnectAckReason::try_from(a.reason).map_err(|_| EncodeError::MalformedPacket)?,
            session_expiry_interval_secs: a.session_expiry,
            receive_max: NonZeroU16::new(a.receive_max).unwrap_or(NonZeroU16::MAX),
            max_packet_size: a.max_packet_size,
            assigned_client_id: a.assigned_client_id.map(|s| ByteString::from(s.as_str())),
            topic_alias_max: a.topic_alias_max,
            server_keepalive_sec: a.server_keep_alive,
            reason_string: reason_string(a.reason_string),
            ..Default::default()
        })),
        Outbound::Publish(p) => v5::Packet::Publish(Box::new(publish_to(*p, true))),
        Outbound::PubAck { packet_id, reason } => v5::Packet::PublishAck(puback(packet_id, reason)?),
        Outbound::PubRec { packet_id, reason } => v5::Packet::PublishReceived(puback(packet_id, reason)?),
        Outbound::PubRel { packet_id } => v5::Packet::PublishRelease(puback2(packet_id)),
        Outbound::PubComp { packet_id } => v5::Packet::PublishComplete(puback2(packet_id)),
        Outbound::SubAck { packet_id, codes } => v5::Packet::SubscribeAck(v5::SubscribeAck {
            packet_id: id(packet_id),
            properties: Vec::new(),
            reason_string: None,
            status: codes
                .into_iter()
                .map(|c| v5::SubscribeAckReason::try_from(c).map_err(|_| EncodeError::MalformedPacket))
                .collect::<Result<_, _>>()?,
        }),
        Outbound::UnsubAck { packet_id, codes } => v5::Packet::UnsubscribeAck(v5::UnsubscribeAck {
            packet_id: id(packet_id),
            properties: Vec::new(),
            reason_string: None,
            status: codes
                .into_iter()
                .map(|c| v5::UnsubscribeAckReason::try_from(c).map_err(|_| EncodeError::MalformedPacket))
                .collect::<Result<_, _>>()?,
        }),
        Outbound::PingResp => v5::Packet::PingResponse,
        Outbound::Disconnect { reason, reason_string: text } => v5::Packet::Disconnect(v5::Disconnect {
            reason_code: v5::DisconnectReasonCode::try_from(reason).map_err(|_| EncodeError::MalformedPacket)?,
            session_expiry_interval_secs: None,
            server_reference: None,
            reason_string: reason_string(text),
            user_properties: Vec::new(),
        }),
    })
}

/// The codec's PUBLISH for either level; properties only exist in MQTT 5.
fn publish_to(p: Publish, v5_properties: bool) -> rmqtt_codec::types::Publish {
    rmqtt_codec::types::Publish {
        dup: p.dup,
        retain: p.retain,
        qos: to_qos(p.qos),
        topic: ByteString::from(p.topic.as_str()),
        packet_id: p.packet_id.and_then(NonZeroU16::new),
        properties: v5_properties.then(|| props_to_v5(&p.props)),
        payload: p.payload,
    }
}

fn puback(packet_id: u16, reason: u8) -> Result<v5::PublishAck, EncodeError> {
    Ok(v5::PublishAck {
        packet_id: id(packet_id),
        reason_code: v5::PublishAckReason::try_from(reason).map_err(|_| EncodeError::MalformedPacket)?,
        properties: Vec::new(),
        reason_string: None,
    })
}

fn puback2(packet_id: u16) -> v5::PublishAck2 {
    v5::PublishAck2 {
        packet_id: id(packet_id),
        reason_code: v5::PublishAck2Reason::Success,
        properties: Vec::new(),
        reason_string: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_chunks(chunks: &[&[u8]]) -> Vec<Inbound> {
        let mut framing = Framing::new(4096);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(p) = framing.decode(&mut buf).unwrap() {
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn a_connect_split_across_reads_is_decoded() {
        // 3.1.1 CONNECT then PINGREQ, found by the fuzzer's author: split after the level byte.
        let bytes = b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00\xc0\x00";
        let whole = decode_chunks(&[bytes]);
        assert!(matches!(whole[..], [Inbound::Connect(_), Inbound::PingReq]));
        for split in 1..bytes.len() {
            let parts = decode_chunks(&[&bytes[..split], &bytes[split..]]);
            assert_eq!(parts, whole, "split at {split}");
        }
    }

    #[test]
    fn a_v5_connect_with_an_empty_id_and_clean_start_0_is_accepted_as_such() {
        // Flags 0x00 (Clean Start 0), keep-alive 60, one property (session expiry 10), id "".
        let bytes = b"\x10\x12\x00\x04MQTT\x05\x00\x00\x3c\x05\x11\x00\x00\x00\x0a\x00\x00";
        for split in 1..=bytes.len() {
            let parts = decode_chunks(&[&bytes[..split], &bytes[split..]]);
            let [Inbound::Connect(c)] = &parts[..] else { panic!("split at {split}: {parts:?}") };
            assert!(c.client_id.is_empty() && !c.clean_start && c.session_expiry == 10, "split at {split}");
        }
    }

    #[test]
    fn a_v311_connect_with_an_empty_id_and_clean_session_0_is_refused() {
        let bytes = b"\x10\x0c\x00\x04MQTT\x04\x00\x00\x3c\x00\x00";
        let mut framing = Framing::new(4096);
        let err = framing.decode(&mut BytesMut::from(&bytes[..])).unwrap_err();
        assert!(matches!(err, DecodeError::InvalidClientId));
    }
}
