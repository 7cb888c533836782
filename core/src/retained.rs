//! Retained messages (MQTT): the last retained message of each topic, kept in memory for
//! matching and in the store for restarts. Topics and filters here are MQTT-shaped.

use crate::message::Message;
use crate::persist::Record;
use crate::topic::{pattern_matches, MQTT};
use junction_storage::{DurableReceipt, Store};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct RetainedMessage {
    pub message: Arc<Message>,
    /// When it was retained, for message expiry.
    pub stored_at_ms: u64,
}

impl RetainedMessage {
    fn expired(&self, now_ms: u64) -> bool {
        self.message.remaining_life_ms(now_ms) == Some(0)
    }
}

pub use crate::message::now_ms;

#[derive(Default)]
pub struct RetainedStore {
    by_topic: RwLock<HashMap<String, RetainedMessage>>,
}

impl RetainedStore {
    /// Sets (or with `None` clears) the retained message of `topic`; returns the store receipt.
    pub(crate) fn set(&self, store: &Store, vhost: &str, topic: &str, message: Option<Message>) -> DurableReceipt {
        let stored_at_ms = now_ms();
        match message {
            Some(message) => {
                let record = Record::Retained { vhost: vhost.into(), topic: topic.into(), message, stored_at_ms };
                let receipt = store.submit_durable(vec![record.put()]);
                let Record::Retained { message, .. } = record else { unreachable!("built above") };
                let entry = RetainedMessage { message: Arc::new(message), stored_at_ms };
                self.by_topic.write().insert(topic.to_string(), entry);
                receipt
            }
            None => {
                self.by_topic.write().remove(topic);
                let record = Record::Retained {
                    vhost: vhost.into(),
                    topic: topic.into(),
                    message: Message::new("", "", Default::default(), Default::default()),
                    stored_at_ms,
                };
                store.submit_durable(vec![record.delete()])
            }
        }
    }

    /// Retains a message in memory only (broker statistics, rebuilt after a restart anyway).
    pub fn set_volatile(&self, topic: &str, message: Message) {
        let entry = RetainedMessage { message: Arc::new(message), stored_at_ms: now_ms() };
        self.by_topic.write().insert(topic.to_string(), entry);
    }

    pub(crate) fn restore(&self, topic: String, message: Message, stored_at_ms: u64) {
        self.by_topic.write().insert(topic, RetainedMessage { message: Arc::new(message), stored_at_ms });
    }

    /// The live retained messages whose topics match the MQTT `filter`, with their topics.
    pub fn matching(&self, filter: &str) -> Vec<(String, RetainedMessage)> {
        let now = now_ms();
        self.by_topic
            .read()
            .iter()
            .filter(|(topic, r)| !r.expired(now) && pattern_matches(MQTT, filter, topic))
            .map(|(t, r)| (t.clone(), r.clone()))
            .collect()
    }

    /// Every retained message (expired ones too), with its topic.
    pub fn all(&self) -> Vec<(String, RetainedMessage)> {
        self.by_topic.read().iter().map(|(t, r)| (t.clone(), r.clone())).collect()
    }

    pub fn len(&self) -> usize {
        self.by_topic.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
