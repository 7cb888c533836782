//! Core values and tables to and from JSON, as the API shows arguments, headers and properties.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use junction_core::message::{Properties, Table, Value};
use serde_json::{json, Map, Value as Json};

pub fn value(v: &Value) -> Json {
    match v {
        Value::Bool(b) => json!(b),
        Value::F32(f) => json!(f),
        Value::F64(f) => json!(f),
        Value::Decimal { scale, value } => json!(f64::from(*value) / 10f64.powi(i32::from(*scale))),
        Value::Str(_) | Value::ShortStr(_) => json!(v.as_str().map_or_else(|| junction_core::text_headers::value_text(v), str::to_string)),
        Value::Array(items) => Json::Array(items.iter().map(value).collect()),
        Value::Timestamp(t) => json!(t),
        Value::Table(t) => table(t),
        Value::Bytes(b) => json!(BASE64.encode(b)),
        Value::Void => Json::Null,
        other => other.as_i64().map_or(Json::Null, |n| json!(n)),
    }
}

pub fn table(t: &Table) -> Json {
    Json::Object(t.iter().map(|(k, v)| (k.to_string(), value(v))).collect::<Map<_, _>>())
}

/// A JSON value as a core value: integers stay integers, objects become tables.
pub fn to_value(j: &Json) -> Value {
    match j {
        Json::Null => Value::Void,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::I64(i),
            None => Value::F64(n.as_f64().unwrap_or(0.0)),
        },
        Json::String(s) => Value::str(s),
        Json::Array(items) => Value::Array(items.iter().map(to_value).collect()),
        Json::Object(_) => Value::Table(to_table(j)),
    }
}

/// A JSON object as a table (anything else is an empty table).
pub fn to_table(j: &Json) -> Table {
    match j {
        Json::Object(map) => Table(map.iter().map(|(k, v)| (k.clone(), to_value(v))).collect()),
        _ => Table::default(),
    }
}

/// Message properties as RabbitMQ's API shows them (absent fields left out).
pub fn properties(p: &Properties) -> Json {
    let mut out = Map::new();
    let mut put = |k: &str, v: Option<Json>| {
        if let Some(v) = v {
            out.insert(k.to_string(), v);
        }
    };
    put("content_type", p.content_type.clone().map(Json::String));
    put("content_encoding", p.content_encoding.clone().map(Json::String));
    put("headers", (!p.headers.is_empty()).then(|| table(&p.headers)));
    put("delivery_mode", Some(json!(if p.persistent { 2 } else { 1 })));
    put("priority", p.priority.map(|n| json!(n)));
    put("correlation_id", p.correlation_id.as_ref().map(|c| json!(String::from_utf8_lossy(c))));
    put("reply_to", p.reply_to.clone().map(Json::String));
    put("expiration", p.expiration_ms.map(|n| json!(n.to_string())));
    put("message_id", p.message_id.clone().map(Json::String));
    put("timestamp", p.timestamp.map(|n| json!(n)));
    put("type", p.kind.clone().map(Json::String));
    put("user_id", p.user_id.clone().map(Json::String));
    put("app_id", p.app_id.clone().map(Json::String));
    Json::Object(out)
}

/// Publish properties from the API's JSON (the fields `properties` shows).
pub fn to_properties(j: &Json) -> Properties {
    let text = |k: &str| j.get(k).and_then(Json::as_str).map(str::to_string);
    Properties {
        content_type: text("content_type"),
        content_encoding: text("content_encoding"),
        headers: j.get("headers").map(to_table).unwrap_or_default(),
        persistent: j.get("delivery_mode").and_then(Json::as_u64) == Some(2),
        priority: j.get("priority").and_then(Json::as_u64).map(|n| n.min(255) as u8),
        correlation_id: text("correlation_id").map(bytes::Bytes::from),
        reply_to: text("reply_to"),
        expiration_ms: text("expiration").and_then(|e| e.parse().ok()),
        message_id: text("message_id"),
        timestamp: j.get("timestamp").and_then(Json::as_u64),
        kind: text("type"),
        user_id: text("user_id"),
        app_id: text("app_id"),
        cluster_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_round_trip_through_json() {
        let mut t = Table::default();
        t.insert("x-max-length", Value::I64(10));
        t.insert("x-queue-type", Value::str("stream"));
        t.insert("flag", Value::Bool(true));
        t.insert("nested", Value::Table(Table(vec![("a".into(), Value::Array(vec![Value::I64(1)]))])));
        assert!(to_table(&table(&t)).same_entries(&t), "JSON objects keep every entry (not their order)");
        assert_eq!(value(&Value::I32(-3)), json!(-3));
        assert_eq!(value(&Value::Decimal { scale: 2, value: 150 }), json!(1.5));
    }
}
