//! Durable definition records and their keys in the store's `meta` column family.
//! Keys are `[kind] ++ vhost ++ 0 ++ name` so one vhost's records sort together.

use crate::exchange::ExchangeSpec;
use crate::message::Table;
use crate::queue::QueueSpec;
use serde::{Deserialize, Serialize};

const KIND_VHOST: u8 = 1;
const KIND_EXCHANGE: u8 = 2;
const KIND_QUEUE: u8 = 3;
const KIND_BINDING: u8 = 4;
const KIND_USER: u8 = 5;
const KIND_RETAINED: u8 = 6;
const KIND_SESSION: u8 = 7;
const KIND_PERMISSION: u8 = 8;
const KIND_TOPIC_PERMISSION: u8 = 9;
const KIND_STREAM_OFFSET: u8 = 10;
const KIND_DELAYED: u8 = 11;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DestinationKind {
    Queue,
    Exchange,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BindingRecord {
    pub vhost: String,
    pub source: String,
    pub destination_kind: DestinationKind,
    pub destination: String,
    pub key: String,
    pub arguments: Table,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    pub name: String,
    /// Argon2 hash in PHC string format.
    pub password_hash: String,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Record {
    VHost { name: String },
    Exchange { vhost: String, spec: ExchangeSpec },
    Queue { vhost: String, spec: QueueSpec },
    Binding(BindingRecord),
    User(UserRecord),
    /// A retained message (MQTT), keyed by its topic.
    Retained { vhost: String, topic: String, message: crate::message::Message, stored_at_ms: u64 },
    /// A protocol session (e.g. an MQTT client's subscriptions), opaque to the core.
    Session { vhost: String, protocol: String, id: String, data: Vec<u8> },
    Permission(crate::permissions::PermissionRecord),
    TopicPermission(crate::permissions::TopicPermissionRecord),
    /// Where a named stream consumer resumes.
    StreamOffset { vhost: String, queue: String, consumer: String, offset: u64 },
    /// A persistent message held back by `x-delay` until `due_ms` (ms since the epoch).
    Delayed { vhost: String, due_ms: u64, tie: u64, exchange: String, message: crate::message::Message },
}

fn key(kind: u8, scope: &str, name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + scope.len() + name.len());
    k.push(kind);
    k.extend_from_slice(scope.as_bytes());
    k.push(0);
    k.extend_from_slice(name);
    k
}

impl Record {
    pub fn key(&self) -> Vec<u8> {
        match self {
            Record::VHost { name } => key(KIND_VHOST, "", name.as_bytes()),
            Record::Exchange { vhost, spec } => key(KIND_EXCHANGE, vhost, spec.name.as_bytes()),
            Record::Queue { vhost, spec } => key(KIND_QUEUE, vhost, spec.name.as_bytes()),
            // A binding is identified by all of its fields.
            Record::Binding(b) => key(KIND_BINDING, &b.vhost, &bincode::serialize(b).expect("serializes")),
            Record::User(u) => key(KIND_USER, "", u.name.as_bytes()),
            Record::Retained { vhost, topic, .. } => key(KIND_RETAINED, vhost, topic.as_bytes()),
            Record::Session { vhost, protocol, id, .. } => {
                key(KIND_SESSION, vhost, format!("{protocol}\0{id}").as_bytes())
            }
            Record::Permission(p) => key(KIND_PERMISSION, &p.vhost, p.user.as_bytes()),
            Record::StreamOffset { vhost, queue, consumer, .. } => {
                key(KIND_STREAM_OFFSET, vhost, format!("{queue}\0{consumer}").as_bytes())
            }
            Record::Delayed { vhost, due_ms, tie, .. } => {
                let mut name = due_ms.to_be_bytes().to_vec();
                name.extend_from_slice(&tie.to_be_bytes());
                key(KIND_DELAYED, vhost, &name)
            }
            Record::TopicPermission(t) => {
                key(KIND_TOPIC_PERMISSION, &t.vhost, format!("{}\0{}", t.user, t.exchange).as_bytes())
            }
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        bincode::serialize(self).expect("a record always serializes")
    }

    pub fn decode(bytes: &[u8]) -> Option<Record> {
        bincode::deserialize(bytes).ok()
    }

    pub fn put(&self) -> junction_storage::Op {
        junction_storage::Op::PutMeta { key: self.key(), value: self.encode() }
    }

    pub fn delete(&self) -> junction_storage::Op {
        junction_storage::Op::DeleteMeta { key: self.key() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_keys_are_scoped() {
        let a = Record::VHost { name: "a".into() };
        assert_eq!(Record::decode(&a.encode()), Some(a.clone()));
        let u = Record::User(UserRecord { name: "a".into(), password_hash: "h".into(), tags: vec![] });
        assert_ne!(a.key(), u.key());
    }
}
