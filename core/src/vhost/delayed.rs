//! Delayed delivery, built in (what RabbitMQ's most requested plugin adds): a message published
//! with an `x-delay` header (milliseconds; an AMQP header, a STOMP header or an MQTT 5 user
//! property) is held back until its time and then routed from the exchange it was published
//! to. A persistent message is held in the store, so it survives a restart; its publisher's
//! confirm comes once the held copy is on disk.

use super::VHost;
use crate::message::{Message, Value};
use crate::persist::Record;
use junction_storage::DurableReceipt;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;

pub const DELAY_HEADER: &str = "x-delay";

/// A held message's key: when it is due (ms since the epoch) and a random tie-breaker.
type HeldKey = (u64, u64);

struct Held {
    exchange: String,
    message: Arc<Message>,
    persisted: bool,
}

#[derive(Default)]
pub struct DelayedMessages {
    held: Mutex<BTreeMap<HeldKey, Held>>,
    wake: Notify,
    running: AtomicBool,
}

/// The delay a message asks for, in milliseconds, when it asks for one.
pub fn requested_delay(msg: &Message) -> Option<u64> {
    let value = msg.properties.headers.get(DELAY_HEADER)?;
    let ms = match value {
        Value::Str(_) | Value::ShortStr(_) => value.as_str()?.trim().parse::<i64>().ok()?,
        other => other.as_i64()?,
    };
    u64::try_from(ms).ok().filter(|ms| *ms > 0)
}

impl VHost {
    /// Holds `msg` for `delay_ms`; returns the receipt of its durable copy when it has one.
    pub(super) fn hold(&self, exchange: &str, msg: Message, delay_ms: u64) -> Option<DurableReceipt> {
        let due = crate::message::now_ms().saturating_add(delay_ms);
        let key = (due, rand::random::<u64>());
        let persisted = msg.properties.persistent;
        let receipt = persisted.then(|| self.store.submit_durable(vec![self.held_record(key, exchange, &msg).put()]));
        self.resources.add_message_bytes(msg.memory_footprint());
        let held = Held { exchange: exchange.to_string(), message: Arc::new(msg), persisted };
        self.delayed.held.lock().insert(key, held);
        self.delayed.wake.notify_one();
        self.start_delay_timer();
        receipt
    }

    /// Puts back a held message found in the store at start-up.
    pub(crate) fn restore_held(&self, due_ms: u64, tie: u64, exchange: String, message: Message) {
        self.resources.add_message_bytes(message.memory_footprint());
        let held = Held { exchange, message: Arc::new(message), persisted: true };
        self.delayed.held.lock().insert((due_ms, tie), held);
    }

    /// Forgets every held message (the vhost is being deleted).
    pub(super) fn drop_held(&self) {
        let held = std::mem::take(&mut *self.delayed.held.lock());
        let mut ops = Vec::new();
        for (key, h) in held {
            self.resources.sub_message_bytes(h.message.memory_footprint());
            if h.persisted {
                ops.push(self.held_record(key, &h.exchange, &h.message).delete());
            }
        }
        self.persist(ops);
    }

    /// How many messages are being held back.
    pub fn delayed_count(&self) -> usize {
        self.delayed.held.lock().len()
    }

    fn held_record(&self, key: HeldKey, exchange: &str, msg: &Message) -> Record {
        Record::Delayed { vhost: self.name.clone(), due_ms: key.0, tie: key.1, exchange: exchange.into(), message: msg.clone() }
    }

    /// Starts releasing held messages (after start-up recovery: a message that fell due while
    /// the broker was down must not be routed before the queues have their stored messages).
    pub(crate) fn start_delay_timer(&self) {
        if self.delayed.running.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(release_when_due(self.this.clone(), self.delayed.clone()));
            }
            Err(_) => self.delayed.running.store(false, Ordering::Release),
        }
    }

    /// Routes every held message whose time has come; returns when the next one is due.
    fn release_due(&self) -> Option<u64> {
        let now = crate::message::now_ms();
        let due: Vec<(HeldKey, Held)> = {
            let mut held = self.delayed.held.lock();
            let later = held.split_off(&(now.saturating_add(1), 0));
            std::mem::replace(&mut *held, later).into_iter().collect()
        };
        for (key, h) in due {
            self.resources.sub_message_bytes(h.message.memory_footprint());
            if h.exchange.is_empty() || self.exchange(&h.exchange).is_some() {
                self.deliver(&h.exchange, h.message.clone(), false);
            }
            // Submitted after the routed copies: the store applies writes in order, so a crash
            // in between leaves the held copy (delivered again later), never neither.
            if h.persisted {
                self.persist(vec![self.held_record(key, &h.exchange, &h.message).delete()]);
            }
        }
        self.delayed.held.lock().keys().next().map(|(due, _)| *due)
    }
}

async fn release_when_due(vhost: Weak<VHost>, delayed: Arc<DelayedMessages>) {
    loop {
        // No strong reference while sleeping: a deleted vhost ends the task.
        let Some(next) = vhost.upgrade().map(|v| v.release_due()) else { return };
        let wait = next.map_or(Duration::from_secs(3600), |due| {
            Duration::from_millis(due.saturating_sub(crate::message::now_ms()).max(1))
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = delayed.wake.notified() => {}
        }
    }
}
