//! The protocol-neutral message: body bytes plus one set of properties that every adapter maps
//! to and from its own frames. Header values are typed so AMQP tables survive a round trip.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A typed header value. The variants cover AMQP 0-9-1 field values (the richest type system
/// of the three protocols); MQTT user properties and STOMP headers are `Str`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Bool(bool),
    I8(i8),
    U8(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    F32(f32),
    F64(f64),
    Decimal { scale: u8, value: u32 },
    /// A long string: arbitrary bytes, usually UTF-8.
    Str(Bytes),
    /// A short string (deprecated in tables but still sent by some clients).
    ShortStr(String),
    Array(Vec<Value>),
    /// Seconds since the Unix epoch.
    Timestamp(u64),
    Table(Table),
    Bytes(Bytes),
    Void,
}

impl Value {
    pub fn str(s: &str) -> Value {
        Value::Str(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// The value as an integer, whatever its integer width.
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            Value::I8(v) => v.into(),
            Value::U8(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I64(v) => v,
            _ => return None,
        })
    }

    /// Equal as an argument value: integers of any width by value, both string types by text
    /// (clients of different protocols encode the same `x-max-length` differently).
    pub fn same_as(&self, other: &Value) -> bool {
        match (self.as_i64(), other.as_i64(), self.as_str(), other.as_str()) {
            (Some(a), Some(b), _, _) => a == b,
            (_, _, Some(a), Some(b)) => a == b,
            _ => self == other,
        }
    }

    /// The value as text, for either string type.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(b) => std::str::from_utf8(b).ok(),
            Value::ShortStr(s) => Some(s),
            _ => None,
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// An ordered list of named values; names are unique (a later insert replaces).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Table(pub Vec<(String, Value)>);

impl Table {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn insert(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let pos = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(pos).1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Equal as a set of entries, whatever the order (AMQP tables are unordered).
    pub fn same_entries(&self, other: &Table) -> bool {
        self.0.len() == other.0.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Properties {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub headers: Table,
    /// True when the publisher asked for the message to survive a restart.
    pub persistent: bool,
    pub priority: Option<u8>,
    pub correlation_id: Option<Bytes>,
    pub reply_to: Option<String>,
    /// Time to live in milliseconds, counted from when a queue accepts the message.
    pub expiration_ms: Option<u64>,
    pub message_id: Option<String>,
    /// Seconds since the Unix epoch.
    pub timestamp: Option<u64>,
    pub kind: Option<String>,
    pub user_id: Option<String>,
    pub app_id: Option<String>,
    pub cluster_id: Option<String>,
}

impl Properties {
    /// See `check_user_id`.
    pub fn check_user_id(&self, user: &str) -> Result<(), String> {
        check_user_id(self.user_id.as_deref(), user)
    }
}

/// A publisher may set a message's user id only to the user it logged in as (RabbitMQ's rule,
/// so that consumers can trust it); `Err` has RabbitMQ's wording.
pub fn check_user_id(claimed: Option<&str>, user: &str) -> Result<(), String> {
    match claimed {
        Some(claimed) if claimed != user => Err(format!("user_id property set to '{claimed}' but authenticated user was '{user}'")),
        _ => Ok(()),
    }
}

/// A message as the core routes it. Shared (`Arc`) between every queue it was routed to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The exchange it was published to and its routing key, as the publisher gave them.
    pub exchange: String,
    pub routing_key: String,
    pub properties: Properties,
    pub body: Bytes,
    /// Wall-clock milliseconds since the Unix epoch when the broker took the message in: the
    /// start of its expiry countdown, which has to survive a restart.
    pub arrived_at_ms: u64,
}

impl Message {
    pub fn new(exchange: &str, routing_key: &str, properties: Properties, body: Bytes) -> Message {
        Message { exchange: exchange.into(), routing_key: routing_key.into(), properties, body, arrived_at_ms: now_ms() }
    }

    /// Bytes a queued message costs in memory, as the memory high watermark counts them: the
    /// body, the names and headers, and a fixed estimate for the queue entry, the shared
    /// `Message` and allocator slack (a 1 KiB message measured about 1.5x its body in RSS).
    pub fn memory_footprint(&self) -> usize {
        const BOOKKEEPING: usize = 512;
        let headers: usize = self.properties.headers.iter().map(|(k, _)| k.len() + 32).sum();
        self.body.len() + self.exchange.len() + self.routing_key.len() + headers + BOOKKEEPING
    }

    /// Milliseconds of its own expiry (`expiration`, MQTT message expiry) left at `now_ms`:
    /// `None` when it never expires, `Some(0)` when it has expired.
    pub fn remaining_life_ms(&self, now_ms: u64) -> Option<u64> {
        let ttl = self.properties.expiration_ms?;
        Some(self.arrived_at_ms.saturating_add(ttl).saturating_sub(now_ms))
    }

    /// Bytes counted against queue length limits and memory alarms.
    pub fn size(&self) -> usize {
        self.body.len()
    }

    /// The on-disk encoding.
    pub fn encode(&self) -> Vec<u8> {
        bincode::serialize(self).expect("a message always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Option<Message> {
        bincode::deserialize(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_encoding_round_trips_every_field() {
        let mut headers = Table::default();
        headers.insert("n", Value::I64(-5));
        headers.insert("t", Value::Table(Table(vec![("x".into(), Value::Array(vec![Value::Void]))])));
        let props = Properties {
            content_type: Some("text/plain".into()),
            headers,
            persistent: true,
            priority: Some(3),
            correlation_id: Some(Bytes::from_static(b"\0corr")),
            expiration_ms: Some(1500),
            timestamp: Some(1_700_000_000),
            ..Default::default()
        };
        let msg = Message::new("amq.topic", "a.b", props, Bytes::from_static(b"\0body\xff"));
        assert_eq!(Message::decode(&msg.encode()), Some(msg));
        assert_eq!(Message::decode(b"\xff\xff"), None);
    }

    #[test]
    fn table_insert_replaces_and_keeps_order() {
        let mut t = Table::default();
        t.insert("b", Value::Bool(true));
        t.insert("a", Value::I8(1));
        t.insert("b", Value::Bool(false));
        assert_eq!(t.0, vec![("b".into(), Value::Bool(false)), ("a".into(), Value::I8(1))]);
        let mut u = Table::default();
        u.insert("a", Value::I8(1));
        u.insert("b", Value::Bool(false));
        assert!(t.same_entries(&u));
    }
}
