//! MQTT publishes to and from core messages. MQTT topics become `amq.topic` routing keys by
//! the reversible mapping in `junction_core::topic_map`; `$queue/{name}` addresses the named
//! queue through the default exchange.

use crate::packet::{Publish, PublishProps};
use junction_core::message::{Message, Properties, Table, Value};
use junction_core::queue::StreamStart;
use junction_core::text_headers;
use junction_core::retained::now_ms;
use junction_core::topic_map::{amqp_to_mqtt, mqtt_to_amqp};

/// The exchange MQTT topics live on, as in RabbitMQ's MQTT plugin.
pub const TOPIC_EXCHANGE: &str = "amq.topic";
/// Topic prefix addressing a named queue directly.
pub const QUEUE_PREFIX: &str = "$queue/";
/// Subscription prefix reading a stream: `$stream/{start}/{stream name}` (see docs/mqtt.md).
pub const STREAM_PREFIX: &str = "$stream/";
/// Header carrying the QoS the message was published with (1 and 2 are both "persistent").
pub const QOS_HEADER: &str = "x-mqtt-publish-qos";
/// Header naming the publishing client, for MQTT 5 No Local.
pub const CLIENT_HEADER: &str = "x-mqtt-client-id";
/// Header marking a message published with the retain flag (for Retain As Published).
pub const RETAIN_HEADER: &str = "x-mqtt-retain";
/// Header carrying MQTT 5's payload format indicator.
pub const PAYLOAD_FORMAT_HEADER: &str = "x-mqtt-payload-format";

/// A `$stream/{start}/{name}` filter: the stream's name and where to start reading
/// (`first`, `last`, `next`, `offset=N`, `timestamp=T`).
pub fn stream_filter(filter: &str) -> Option<(&str, Result<StreamStart, String>)> {
    let rest = filter.strip_prefix(STREAM_PREFIX)?;
    let (start, name) = rest.split_once('/').unwrap_or(("", rest));
    Some((name, StreamStart::parse(start)))
}

/// Where a publish to `topic` goes: (exchange, routing key).
pub fn destination(topic: &str) -> (&'static str, String) {
    match topic.strip_prefix(QUEUE_PREFIX) {
        Some(queue) => ("", queue.to_string()),
        None => (TOPIC_EXCHANGE, mqtt_to_amqp(topic)),
    }
}

/// The MQTT topic a core message is shown under.
pub fn topic_of(msg: &Message) -> String {
    if msg.exchange.is_empty() {
        format!("{QUEUE_PREFIX}{}", msg.routing_key)
    } else {
        amqp_to_mqtt(&msg.routing_key)
    }
}

/// A core message for an MQTT publish.
pub fn to_core(p: &Publish, client_id: &str) -> Message {
    let (exchange, routing_key) = destination(&p.topic);
    let mut headers = Table::default();
    headers.insert(QOS_HEADER, Value::U8(p.qos));
    headers.insert(CLIENT_HEADER, Value::str(client_id));
    if p.props.payload_utf8 {
        headers.insert(PAYLOAD_FORMAT_HEADER, Value::U8(1));
    }
    if p.retain {
        headers.insert(RETAIN_HEADER, Value::U8(1));
    }
    let mut properties = Properties {
        content_type: p.props.content_type.clone(),
        persistent: p.qos > 0,
        correlation_id: p.props.correlation_data.clone(),
        reply_to: p.props.response_topic.clone(),
        expiration_ms: p.props.expiry_secs.map(|s| u64::from(s) * 1000),
        ..Default::default()
    };
    for (k, v) in &p.props.user {
        if !take_carried(&mut properties, k, v) {
            headers.0.push((k.clone(), Value::str(v)));
        }
    }
    text_headers::restore_typed_headers(&mut headers);
    properties.headers = headers;
    Message::new(exchange, &routing_key, properties, p.payload.clone())
}

/// The user properties that carry the AMQP properties MQTT 5 has no field for (docs/mapping.md).
const CARRIED: [&str; 8] = [
    "x-amqp-content-encoding",
    "x-amqp-message-id",
    "x-amqp-timestamp",
    "x-amqp-priority",
    "x-amqp-type",
    "x-amqp-user-id",
    "x-amqp-app-id",
    "x-amqp-cluster-id",
];

/// A user id a publish claims (an `x-amqp-user-id` user property) that is not `user`'s own;
/// user properties may repeat, so every one is checked.
pub fn foreign_user_id<'a>(p: &'a Publish, user: &str) -> Option<&'a str> {
    p.props.user.iter().find(|(k, v)| k == "x-amqp-user-id" && v != user).map(|(_, v)| v.as_str())
}

/// The carried properties of a message, as user properties.
fn carried(p: &Properties) -> Vec<(String, String)> {
    let values = [
        p.content_encoding.clone(),
        p.message_id.clone(),
        p.timestamp.map(|t| t.to_string()),
        p.priority.map(|n| n.to_string()),
        p.kind.clone(),
        p.user_id.clone(),
        p.app_id.clone(),
        p.cluster_id.clone(),
    ];
    CARRIED.iter().zip(values).filter_map(|(name, v)| Some((name.to_string(), v?))).collect()
}

/// Sets the property a carried user property stands for; false when `name` is not one (or its
/// value does not parse, so it stays a plain header).
fn take_carried(p: &mut Properties, name: &str, value: &str) -> bool {
    let text = || Some(value.to_string());
    match name {
        "x-amqp-content-encoding" => p.content_encoding = text(),
        "x-amqp-message-id" => p.message_id = text(),
        "x-amqp-timestamp" => match value.parse() {
            Ok(t) => p.timestamp = Some(t),
            Err(_) => return false,
        },
        "x-amqp-priority" => match value.parse() {
            Ok(n) => p.priority = Some(n),
            Err(_) => return false,
        },
        "x-amqp-type" => p.kind = text(),
        "x-amqp-user-id" => p.user_id = text(),
        "x-amqp-app-id" => p.app_id = text(),
        "x-amqp-cluster-id" => p.cluster_id = text(),
        _ => return false,
    }
    true
}

/// An integer header, whether it came typed (AMQP) or as text (a STOMP header).
fn int_header(msg: &Message, name: &str) -> Option<i64> {
    let v = msg.properties.headers.get(name)?;
    v.as_i64().or_else(|| v.as_str()?.trim().parse().ok())
}

/// The QoS a core message was published with (AMQP/STOMP messages: persistent = 1).
pub fn published_qos(msg: &Message) -> u8 {
    match int_header(msg, QOS_HEADER) {
        Some(q) => q.clamp(0, 2) as u8,
        None => u8::from(msg.properties.persistent),
    }
}

/// Was the message published with the retain flag?
pub fn published_retained(msg: &Message) -> bool {
    int_header(msg, RETAIN_HEADER) == Some(1)
}

pub fn publisher_of(msg: &Message) -> Option<&str> {
    msg.properties.headers.get(CLIENT_HEADER).and_then(Value::as_str)
}

/// An outgoing PUBLISH for a core message (packet id, QoS and flags set by the caller).
pub fn to_mqtt(msg: &Message, topic: String, qos: u8) -> Publish {
    let h = &msg.properties.headers;
    // MQTT's own headers are shown by the packet itself (QoS, retain, payload format).
    // Headers under the carried names are not shown: only the properties themselves travel
    // as those user properties (another protocol's header cannot forge one).
    let mut user = text_headers::headers_to_text(h, |k| k.starts_with("x-mqtt-") || CARRIED.contains(&k));
    user.extend(carried(&msg.properties));
    let props = PublishProps {
        payload_utf8: int_header(msg, PAYLOAD_FORMAT_HEADER) == Some(1),
        // The interval left, as MQTT-3.3.2-6 asks when forwarding.
        expiry_secs: msg.remaining_life_ms(now_ms()).map(|ms| ms.div_ceil(1000).min(u64::from(u32::MAX)) as u32),
        content_type: msg.properties.content_type.clone(),
        response_topic: msg.properties.reply_to.clone(),
        correlation_data: msg.properties.correlation_id.clone(),
        user,
        subscription_ids: Vec::new(),
        topic_alias: None,
    };
    Publish { topic, payload: msg.body.clone(), qos, retain: false, dup: false, packet_id: None, props }
}


#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn publish(topic: &str, qos: u8) -> Publish {
        Publish {
            topic: topic.into(),
            payload: Bytes::from_static(b"\0x"),
            qos,
            retain: false,
            dup: false,
            packet_id: None,
            props: PublishProps { user: vec![("b".into(), "2".into()), ("a".into(), "1".into())], ..Default::default() },
        }
    }

    #[test]
    fn dotted_topics_and_queue_topics_round_trip() {
        let m = to_core(&publish("spBv1.0/g/n", 2), "c1");
        assert_eq!((m.exchange.as_str(), m.routing_key.as_str()), ("amq.topic", "spBv1%2E0.g.n"));
        assert_eq!(topic_of(&m), "spBv1.0/g/n");
        assert_eq!(published_qos(&m), 2);
        assert_eq!(publisher_of(&m), Some("c1"));
        let back = to_mqtt(&m, topic_of(&m), 1);
        assert_eq!(back.props.user, vec![("b".to_string(), "2".to_string()), ("a".to_string(), "1".to_string())]);
        let q = to_core(&publish("$queue/jobs", 1), "c1");
        assert_eq!((q.exchange.as_str(), q.routing_key.as_str()), ("", "jobs"));
        assert_eq!(topic_of(&q), "$queue/jobs");
    }
}
