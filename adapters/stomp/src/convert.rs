//! STOMP headers to and from the core's message properties, as RabbitMQ's STOMP plugin maps
//! them. Headers with no property of their own travel as message headers.

use crate::frame::Frame;
use bytes::Bytes;
use junction_core::message::{Properties, Value};
use junction_core::text_headers;

/// Frame headers that steer the broker and are not part of the message.
const FRAME_ONLY: &[&str] = &["destination", "receipt", "transaction", "content-length", "ack", "id", "subscription", "message-id"];

/// The properties a SEND carries; `Err` names a header with a bad value.
pub fn properties_of(frame: &Frame) -> Result<Properties, String> {
    let mut p = Properties::default();
    for (name, value) in frame.distinct_headers() {
        let text = || Some(value.to_string());
        match name {
            "content-type" => p.content_type = text(),
            "content-encoding" => p.content_encoding = text(),
            "persistent" => p.persistent = value == "true",
            "priority" => p.priority = Some(value.parse().map_err(|_| format!("invalid priority '{value}'"))?),
            "correlation-id" => p.correlation_id = Some(Bytes::copy_from_slice(value.as_bytes())),
            "reply-to" => p.reply_to = text(),
            "expiration" => p.expiration_ms = Some(value.parse().map_err(|_| format!("invalid expiration '{value}'"))?),
            "amqp-message-id" => p.message_id = text(),
            "timestamp" => p.timestamp = Some(value.parse().map_err(|_| format!("invalid timestamp '{value}'"))?),
            "type" => p.kind = text(),
            "user-id" => p.user_id = text(),
            "app-id" => p.app_id = text(),
            "cluster-id" => p.cluster_id = text(),
            _ if FRAME_ONLY.contains(&name) => {}
            _ => p.headers.insert(name, Value::Str(Bytes::copy_from_slice(value.as_bytes()))),
        }
    }
    text_headers::restore_typed_headers(&mut p.headers);
    text_headers::restore_correlation(&mut p);
    Ok(p)
}

/// Adds the message's properties to a MESSAGE frame.
pub fn add_properties(mut frame: Frame, p: &Properties) -> Frame {
    // A binary correlation id has no STOMP text form: it goes along as a typed header.
    let (correlation, with_bytes_header) = text_headers::text_correlation(p, usize::MAX);
    let p = with_bytes_header.as_ref().unwrap_or(p);
    let mut add = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            frame.headers.push((name.to_string(), v));
        }
    };
    add("content-type", p.content_type.clone());
    add("content-encoding", p.content_encoding.clone());
    add("persistent", p.persistent.then(|| "true".to_string()));
    add("priority", p.priority.map(|n| n.to_string()));
    add("correlation-id", correlation);
    add("reply-to", p.reply_to.clone());
    add("expiration", p.expiration_ms.map(|n| n.to_string()));
    add("amqp-message-id", p.message_id.clone());
    add("timestamp", p.timestamp.map(|n| n.to_string()));
    add("type", p.kind.clone());
    add("user-id", p.user_id.clone());
    add("app-id", p.app_id.clone());
    add("cluster-id", p.cluster_id.clone());
    // A header another protocol set under a frame-only name (content-length, destination, ...)
    // must not steer the client's framing or routing.
    frame.headers.extend(text_headers::headers_to_text(&p.headers, |name| FRAME_ONLY.contains(&name)));
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_headers_become_properties_and_come_back() {
        let send = Frame::new("SEND")
            .with("destination", "/queue/q")
            .with("persistent", "true")
            .with("content-type", "text/plain")
            .with("correlation-id", "c-1")
            .with("reply-to", "/queue/replies")
            .with("priority", "5")
            .with("x-custom", "v1")
            .with("x-custom", "ignored repeat");
        let p = properties_of(&send).unwrap();
        assert!(p.persistent);
        assert_eq!(p.priority, Some(5));
        assert_eq!(p.headers.get("x-custom").and_then(Value::as_str), Some("v1"));
        let message = add_properties(Frame::new("MESSAGE"), &p);
        for h in ["persistent", "content-type", "correlation-id", "reply-to", "priority", "x-custom"] {
            assert_eq!(message.header(h), send.header(h), "{h}");
        }
        assert_eq!(message.header("destination"), None, "frame headers are not message headers");
        assert!(properties_of(&Frame::new("SEND").with("priority", "high")).is_err());
    }
}
