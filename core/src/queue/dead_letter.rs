//! Dead-lettering: a message that is rejected, expires, overflows or exceeds its delivery limit
//! is republished to the queue's dead-letter exchange with an `x-death` history, as RabbitMQ
//! does.

use super::{DropReason, Queue};
use crate::message::{Message, Table, Value};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

impl Queue {
    pub(super) fn dead_letter(&self, letters: Vec<(Arc<Message>, DropReason)>) {
        let Some(exchange) = &self.args.dead_letter_exchange else { return };
        let Some(vhost) = self.vhost.upgrade() else { return };
        for (msg, reason) in letters {
            if reason != DropReason::Rejected && dies_in_cycle(&msg, self.name()) {
                tracing::debug!(queue = self.name(), "dropping dead letter caught in a cycle");
                continue;
            }
            let routing_key = self.args.dead_letter_routing_key.as_deref().unwrap_or(&msg.routing_key);
            let letter = dead_lettered(&msg, self.name(), reason, exchange, routing_key);
            vhost.publish_internal(exchange, letter);
        }
    }
}

/// A copy of `msg` carrying its death record, addressed to the dead-letter exchange.
fn dead_lettered(msg: &Message, queue: &str, reason: DropReason, exchange: &str, routing_key: &str) -> Message {
    let mut letter = msg.clone();
    // A new life in the dead-letter queue: its TTL counts from now, also after a restart.
    letter.arrived_at_ms = crate::message::now_ms();
    let expiration = letter.properties.expiration_ms.take();
    record_death(&mut letter.properties.headers, msg, queue, reason, expiration);
    letter.exchange = exchange.to_string();
    letter.routing_key = routing_key.to_string();
    letter
}

/// Adds to (or bumps) the `x-death` list: one table per (queue, reason), newest first.
fn record_death(headers: &mut Table, msg: &Message, queue: &str, reason: DropReason, expiration: Option<u64>) {
    let mut deaths = match headers.remove("x-death") {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    let same = |v: &Value| match v {
        Value::Table(t) => {
            t.get("queue").and_then(Value::as_str) == Some(queue)
                && t.get("reason").and_then(Value::as_str) == Some(reason.as_str())
        }
        _ => false,
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let death = match deaths.iter().position(same) {
        Some(pos) => {
            let Value::Table(mut t) = deaths.remove(pos) else { unreachable!("matched a table") };
            let count = t.get("count").and_then(Value::as_i64).unwrap_or(0);
            t.insert("count", Value::I64(count + 1));
            t.insert("time", Value::Timestamp(now));
            t
        }
        None => {
            let mut t = Table::default();
            t.insert("count", Value::I64(1));
            t.insert("reason", Value::str(reason.as_str()));
            t.insert("queue", Value::str(queue));
            t.insert("time", Value::Timestamp(now));
            t.insert("exchange", Value::str(&msg.exchange));
            t.insert("routing-keys", Value::Array(vec![Value::str(&msg.routing_key)]));
            if let Some(ms) = expiration {
                t.insert("original-expiration", Value::str(&ms.to_string()));
            }
            t
        }
    };
    deaths.insert(0, Value::Table(death));
    headers.insert("x-death", Value::Array(deaths));
    if headers.get("x-first-death-reason").is_none() {
        headers.insert("x-first-death-reason", Value::str(reason.as_str()));
        headers.insert("x-first-death-queue", Value::str(queue));
        headers.insert("x-first-death-exchange", Value::str(&msg.exchange));
    }
    headers.insert("x-last-death-reason", Value::str(reason.as_str()));
    headers.insert("x-last-death-queue", Value::str(queue));
    headers.insert("x-last-death-exchange", Value::str(&msg.exchange));
}

/// RabbitMQ's cycle rule: a message that already died in this queue, with no rejection
/// anywhere in its history, would loop forever; it is dropped instead.
fn dies_in_cycle(msg: &Message, queue: &str) -> bool {
    let Some(Value::Array(deaths)) = msg.properties.headers.get("x-death") else { return false };
    let tables = deaths.iter().filter_map(|d| match d {
        Value::Table(t) => Some(t),
        _ => None,
    });
    let mut seen_here = false;
    for t in tables {
        if t.get("reason").and_then(Value::as_str) == Some("rejected") {
            return false;
        }
        seen_here |= t.get("queue").and_then(Value::as_str) == Some(queue);
    }
    seen_here
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Properties;
    use bytes::Bytes;

    #[test]
    fn repeated_deaths_bump_the_count() {
        let msg = Message::new("ex", "rk", Properties::default(), Bytes::new());
        let once = dead_lettered(&msg, "q", DropReason::Rejected, "dlx", "rk");
        let twice = dead_lettered(&once, "q", DropReason::Rejected, "dlx", "rk");
        let Some(Value::Array(deaths)) = twice.properties.headers.get("x-death") else { panic!() };
        assert_eq!(deaths.len(), 1);
        let Value::Table(t) = &deaths[0] else { panic!() };
        assert_eq!(t.get("count"), Some(&Value::I64(2)));
        assert_eq!(t.get("exchange").and_then(Value::as_str), Some("ex"));
        assert_eq!(twice.exchange, "dlx");
    }

    #[test]
    fn expiry_cycles_are_detected_but_rejections_break_them() {
        let msg = Message::new("ex", "rk", Properties::default(), Bytes::new());
        let expired = dead_lettered(&msg, "q", DropReason::Expired, "dlx", "rk");
        assert!(dies_in_cycle(&expired, "q"));
        assert!(!dies_in_cycle(&expired, "other"));
        let rejected = dead_lettered(&expired, "other", DropReason::Rejected, "dlx", "rk");
        assert!(!dies_in_cycle(&rejected, "q"));
    }
}
