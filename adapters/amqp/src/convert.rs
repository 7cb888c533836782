//! Conversions between amq-protocol's types and the core's protocol-neutral ones. AMQP's field
//! types map one to one onto `core::Value`, so a table survives any number of round trips.

use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString, ShortString};
use bytes::Bytes;
use junction_core::message::{Properties, Table, Value};
use junction_core::text_headers;

pub fn table_from_amqp(t: &FieldTable) -> Table {
    Table(t.inner().iter().map(|(k, v)| (k.as_str().to_string(), value_from_amqp(v))).collect())
}

pub fn value_from_amqp(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(n) => Value::I8(*n),
        AMQPValue::ShortShortUInt(n) => Value::U8(*n),
        AMQPValue::ShortInt(n) => Value::I16(*n),
        AMQPValue::ShortUInt(n) => Value::U16(*n),
        AMQPValue::LongInt(n) => Value::I32(*n),
        AMQPValue::LongUInt(n) => Value::U32(*n),
        AMQPValue::LongLongInt(n) => Value::I64(*n),
        AMQPValue::Float(f) => Value::F32(*f),
        AMQPValue::Double(f) => Value::F64(*f),
        AMQPValue::DecimalValue(d) => Value::Decimal { scale: d.scale, value: d.value },
        AMQPValue::ShortString(s) => Value::ShortStr(s.as_str().to_string()),
        AMQPValue::LongString(s) => Value::Str(Bytes::copy_from_slice(s.as_bytes())),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(value_from_amqp).collect()),
        AMQPValue::Timestamp(t) => Value::Timestamp(*t),
        AMQPValue::FieldTable(t) => Value::Table(table_from_amqp(t)),
        AMQPValue::ByteArray(b) => Value::Bytes(Bytes::copy_from_slice(b.as_slice())),
        AMQPValue::Void => Value::Void,
    }
}

pub fn table_to_amqp(t: &Table) -> FieldTable {
    let mut out = FieldTable::default();
    for (k, v) in t.iter() {
        out.insert(short(k), value_to_amqp(v));
    }
    out
}

pub fn value_to_amqp(v: &Value) -> AMQPValue {
    match v {
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::I8(n) => AMQPValue::ShortShortInt(*n),
        Value::U8(n) => AMQPValue::ShortShortUInt(*n),
        Value::I16(n) => AMQPValue::ShortInt(*n),
        Value::U16(n) => AMQPValue::ShortUInt(*n),
        Value::I32(n) => AMQPValue::LongInt(*n),
        Value::U32(n) => AMQPValue::LongUInt(*n),
        Value::I64(n) => AMQPValue::LongLongInt(*n),
        Value::F32(f) => AMQPValue::Float(*f),
        Value::F64(f) => AMQPValue::Double(*f),
        Value::Decimal { scale, value } => AMQPValue::DecimalValue(DecimalValue { scale: *scale, value: *value }),
        Value::ShortStr(s) => AMQPValue::ShortString(short(s)),
        Value::Str(b) => AMQPValue::LongString(LongString::from(b.to_vec())),
        Value::Array(a) => AMQPValue::FieldArray(FieldArray::from(a.iter().map(value_to_amqp).collect::<Vec<_>>())),
        Value::Timestamp(t) => AMQPValue::Timestamp(*t),
        Value::Table(t) => AMQPValue::FieldTable(table_to_amqp(t)),
        Value::Bytes(b) => AMQPValue::ByteArray(ByteArray::from(b.to_vec())),
        Value::Void => AMQPValue::Void,
    }
}

/// A short string, cut at 255 bytes on a character boundary (core strings may be longer).
pub fn short(s: &str) -> ShortString {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    ShortString::from(&s[..end])
}

fn text(s: &Option<ShortString>) -> Option<String> {
    s.as_ref().map(|s| s.as_str().to_string())
}

/// AMQP `expiration` is a decimal string of milliseconds; anything else is a syntax error.
pub fn parse_expiration(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Converts publish properties; `Err` carries the invalid `expiration` value.
pub fn properties_from_amqp(p: &BasicProperties) -> Result<Properties, String> {
    let expiration_ms = match p.expiration() {
        Some(e) => Some(parse_expiration(e.as_str()).ok_or_else(|| e.as_str().to_string())?),
        None => None,
    };
    let mut properties = Properties {
        content_type: text(p.content_type()),
        content_encoding: text(p.content_encoding()),
        headers: p.headers().as_ref().map(table_from_amqp).unwrap_or_default(),
        persistent: *p.delivery_mode() == Some(2),
        priority: *p.priority(),
        correlation_id: p.correlation_id().as_ref().map(|c| Bytes::copy_from_slice(c.as_str().as_bytes())),
        reply_to: text(p.reply_to()),
        expiration_ms,
        message_id: text(p.message_id()),
        timestamp: *p.timestamp(),
        kind: text(p.kind()),
        user_id: text(p.user_id()),
        app_id: text(p.app_id()),
        cluster_id: text(p.cluster_id()),
    };
    text_headers::restore_correlation(&mut properties);
    Ok(properties)
}

pub fn properties_to_amqp(p: &Properties) -> BasicProperties {
    // A correlation id that is no short string (binary MQTT correlation data) goes as a header.
    let (correlation, with_bytes_header) = text_headers::text_correlation(p, 255);
    let p = with_bytes_header.as_ref().unwrap_or(p);
    let mut out = BasicProperties::default();
    if let Some(v) = &p.content_type {
        out = out.with_content_type(short(v));
    }
    if let Some(v) = &p.content_encoding {
        out = out.with_content_encoding(short(v));
    }
    if !p.headers.is_empty() {
        out = out.with_headers(table_to_amqp(&p.headers));
    }
    out = out.with_delivery_mode(if p.persistent { 2 } else { 1 });
    if let Some(v) = p.priority {
        out = out.with_priority(v);
    }
    if let Some(v) = correlation {
        out = out.with_correlation_id(short(&v));
    }
    if let Some(v) = &p.reply_to {
        out = out.with_reply_to(short(v));
    }
    if let Some(v) = p.expiration_ms {
        out = out.with_expiration(short(&v.to_string()));
    }
    if let Some(v) = &p.message_id {
        out = out.with_message_id(short(v));
    }
    if let Some(v) = p.timestamp {
        out = out.with_timestamp(v);
    }
    if let Some(v) = &p.kind {
        out = out.with_type(short(v));
    }
    if let Some(v) = &p.user_id {
        out = out.with_user_id(short(v));
    }
    if let Some(v) = &p.app_id {
        out = out.with_app_id(short(v));
    }
    if let Some(v) = &p.cluster_id {
        out = out.with_cluster_id(short(v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_round_trip() {
        let mut headers = FieldTable::default();
        headers.insert("n".into(), AMQPValue::LongLongInt(-3));
        headers.insert("d".into(), AMQPValue::DecimalValue(DecimalValue { scale: 2, value: 314 }));
        let p = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_headers(headers)
            .with_delivery_mode(2)
            .with_priority(4)
            .with_correlation_id("c1".into())
            .with_expiration("1500".into())
            .with_timestamp(1_700_000_000)
            .with_type("t".into())
            .with_app_id("app".into());
        let core = properties_from_amqp(&p).unwrap();
        assert!(core.persistent);
        assert_eq!(core.expiration_ms, Some(1500));
        assert_eq!(properties_to_amqp(&core), p);
    }

    #[test]
    fn bad_expiration_is_rejected() {
        assert_eq!(parse_expiration("10"), Some(10));
        assert_eq!(parse_expiration("-1"), None);
        assert_eq!(parse_expiration(""), None);
        let p = BasicProperties::default().with_expiration("soon".into());
        assert!(properties_from_amqp(&p).is_err());
    }

    #[test]
    fn short_strings_are_cut_on_char_boundaries() {
        let long = "é".repeat(200);
        assert!(short(&long).as_str().len() <= 255);
    }
}
