//! SUBSCRIBE / UNSUBSCRIBE, MESSAGE delivery, and ACK / NACK in the three ack modes.

use crate::conn::{required, Conn, FrameResult, StompError};
use crate::convert;
use crate::destination::{Destination, TOPIC_EXCHANGE};
use crate::frame::{Frame, Version};
use junction_core::message::{Table, Value};
use junction_core::permissions::{Op, Resource};
use junction_core::persist::DestinationKind;
use junction_core::queue::StreamStart;
use junction_core::{ConsumerEvent, ConsumerSpec, Delivery, Queue, QueueDeclare};
use rand::distr::{Alphanumeric, SampleString};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// Acknowledged when sent.
    Auto,
    /// An ACK acknowledges that message and every earlier one of the subscription.
    Client,
    ClientIndividual,
}

pub struct Subscription {
    pub ack: AckMode,
    pub queue: Arc<Queue>,
    pub consumer: u64,
}

/// Where a subscription to a stream starts reading (`x-stream-offset`) and the name its
/// position is kept under (`x-stream-consumer-name`); ignored for other queues.
#[derive(Debug, Default)]
struct StreamReader {
    start: StreamStart,
    name: Option<String>,
}

/// A delivered message waiting for its ACK / NACK.
pub struct Unacked {
    pub subscription: String,
    pub queue: Arc<Queue>,
    pub seq: u64,
}

impl Conn {
    pub fn on_subscribe(&mut self, f: &Frame) -> FrameResult {
        let raw = required(f, "destination")?;
        let destination = Destination::parse(raw).map_err(|e| StompError::new("Invalid destination", &e))?;
        // RabbitMQ accepts a missing id (the destination stands in), whatever the version.
        let id = f.header("id").unwrap_or(raw).to_string();
        if self.subscriptions.contains_key(&id) {
            return Err(StompError::new("Duplicated subscription identifier", &format!("A subscription identified by '{id}' already exists.")));
        }
        let ack = match f.header("ack").unwrap_or("auto") {
            "auto" => AckMode::Auto,
            "client" => AckMode::Client,
            "client-individual" => AckMode::ClientIndividual,
            other => return Err(StompError::new("Invalid ack header", &format!("'{other}' is not auto, client or client-individual"))),
        };
        let prefetch = match f.header("prefetch-count") {
            Some(n) => n.parse().map_err(|_| StompError::new("Invalid prefetch-count", n))?,
            None => 0,
        };
        let queue = self.subscription_queue(&destination, &id, f)?;
        self.session.access.check(Op::Read, Resource::Queue(queue.name()))?;
        let start = match f.header("x-stream-offset") {
            Some(text) => StreamStart::parse(text).map_err(|e| StompError::new("Invalid x-stream-offset", &e))?,
            None => StreamStart::Next,
        };
        let reader = StreamReader { start, name: f.header("x-stream-consumer-name").map(str::to_string) };
        self.start_consumer(id, queue, ack, prefetch, reader)?;
        self.receipt_after(f, Vec::new())
    }

    /// The queue a subscription consumes: the named queue itself, or for topics and exchanges
    /// a queue bound to them (durable and named after the id with `durable:true`).
    fn subscription_queue(&mut self, d: &Destination, id: &str, f: &Frame) -> Result<Arc<Queue>, StompError> {
        let vhost = self.session.vhost.clone();
        let (exchange, key) = match d {
            Destination::Queue(name) => {
                self.session.access.check(Op::Read, Resource::Queue(name))?;
                self.declare_named_queue(name, f)?;
                return Ok(vhost.queue_for(name, self.connection_id)?);
            }
            Destination::AmqQueue(name) => return Ok(vhost.queue_for(name, self.connection_id)?),
            Destination::TempQueue(_) | Destination::ReplyQueue(_) => {
                return Err(StompError::new("Invalid destination", "temp-queue and reply-queue destinations are for replies, not SUBSCRIBE"))
            }
            Destination::Topic(key) => (TOPIC_EXCHANGE, key.as_str()),
            Destination::Exchange { name, key } => (name.as_str(), key.as_str()),
        };
        let durable = f.header("durable").or(f.header("persistent")) == Some("true");
        let name = match f.header("x-queue-name") {
            Some(name) => name.to_string(),
            None if durable => durable_queue_name(&self.session.user.name, d, id),
            None => format!("stomp-subscription-{}", Alphanumeric.sample_string(&mut rand::rng(), 22)),
        };
        let access = &self.session.access;
        access.check(Op::Configure, Resource::Queue(&name))?;
        access.check(Op::Write, Resource::Queue(&name))?;
        access.check(Op::Read, Resource::Queue(&name))?;
        access.check(Op::Read, Resource::Exchange(exchange))?;
        access.check_topic(Op::Read, exchange, key)?;
        let declare = QueueDeclare {
            name: name.clone(),
            durable,
            exclusive: !durable,
            auto_delete: f.header("auto-delete").map_or(!durable, |v| v == "true"),
            arguments: queue_arguments(f),
            connection: self.connection_id,
            ..Default::default()
        };
        vhost.declare_queue(declare)?;
        vhost.bind(exchange, DestinationKind::Queue, &name, key, Table::default(), self.connection_id)?;
        Ok(vhost.queue_for(&name, self.connection_id)?)
    }

    /// The private queue behind `reply-to:/temp-queue/{name}`, created (and consumed under the
    /// subscription id `/temp-queue/{name}`) on first use; returns its real name.
    pub fn temp_queue(&mut self, name: &str) -> Result<String, StompError> {
        let id = format!("/temp-queue/{name}");
        if let Some(sub) = self.subscriptions.get(&id) {
            return Ok(sub.queue.name().to_string());
        }
        let real = format!("stomp-temp-{}", Alphanumeric.sample_string(&mut rand::rng(), 22));
        let declare = QueueDeclare { name: real.clone(), exclusive: true, auto_delete: true, connection: self.connection_id, ..Default::default() };
        self.session.vhost.declare_queue(declare)?;
        let queue = self.session.vhost.queue_for(&real, self.connection_id)?;
        self.start_consumer(id, queue, AckMode::Auto, 0, StreamReader::default())?;
        Ok(real)
    }

    fn start_consumer(&mut self, id: String, queue: Arc<Queue>, ack: AckMode, prefetch: u32, reader: StreamReader) -> FrameResult {
        let cookie = self.next_cookie;
        self.next_cookie += 1;
        let spec = ConsumerSpec {
            tag: Arc::from(id.as_str()),
            no_ack: ack == AckMode::Auto,
            exclusive: false,
            prefetch,
            channel_credit: self.credit.clone(),
            sink: self.events_tx.clone(),
            cookie,
        };
        let consumer = queue.consume_stream(spec, reader.start, reader.name)?;
        self.by_cookie.insert(cookie, id.clone());
        self.subscriptions.insert(id, Subscription { ack, queue, consumer });
        Ok(())
    }

    pub fn on_unsubscribe(&mut self, f: &Frame) -> FrameResult {
        let id = f.header("id").or(f.header("destination")).ok_or_else(|| StompError::new("Missing id header", "UNSUBSCRIBE needs an 'id' header"))?;
        let sub = self
            .subscriptions
            .remove(id)
            .ok_or_else(|| StompError::new("Bad subscription", &format!("Subscription to '{id}' not found.")))?;
        sub.queue.cancel(sub.consumer);
        self.by_cookie.retain(|_, s| s != id);
        // RabbitMQ's way to end a durable subscription for good.
        if f.header("durable").or(f.header("persistent")) == Some("true") && sub.queue.is_durable() {
            self.session.access.check(Op::Configure, Resource::Queue(sub.queue.name()))?;
            self.session.vhost.delete_queue(sub.queue.name(), false, false, self.connection_id)?;
        }
        self.receipt_after(f, Vec::new())
    }

    pub fn on_event(&mut self, event: ConsumerEvent) {
        match event {
            ConsumerEvent::Deliver(d) => {
                if self.credit.written(d.message.body.len()) {
                    for sub in self.subscriptions.values() {
                        sub.queue.kick();
                    }
                }
                self.deliver(*d);
            }
            ConsumerEvent::Cancelled { cookie, .. } => {
                if let Some(id) = self.by_cookie.remove(&cookie) {
                    self.subscriptions.remove(&id);
                }
            }
        }
    }

    fn deliver(&mut self, d: Delivery) {
        let Some(sub_id) = self.by_cookie.get(&d.cookie).cloned() else {
            // Unsubscribed meanwhile: the message goes back to its queue.
            if !d.no_ack {
                d.queue.reject(&[d.seq], true);
            }
            return;
        };
        let tag = self.next_tag;
        self.next_tag += 1;
        self.session.permit.registration.entry.traffic.message_out(Some(d.message.arrived_at_ms));
        let mut frame = Frame::new("MESSAGE")
            .with("subscription", sub_id.as_str())
            .with("destination", Destination::of_message(&d.message))
            .with("message-id", tag.to_string());
        if self.version() == Version::V12 && !d.no_ack {
            frame = frame.with("ack", tag.to_string());
        }
        if d.redelivered {
            frame = frame.with("redelivered", "true");
        }
        let message = d.as_delivered(true);
        let frame = convert::add_properties(frame, &message.properties).with_body(message.body.clone());
        if !d.no_ack {
            self.unacked.insert(tag, Unacked { subscription: sub_id, queue: d.queue.clone(), seq: d.seq });
        }
        self.send(&frame);
    }

    pub fn on_ack(&mut self, f: &Frame, ack: bool) -> FrameResult {
        if self.hold_in_transaction(f)? {
            return self.receipt_after(f, Vec::new());
        }
        self.settle(f, ack)?;
        self.receipt_after(f, Vec::new())
    }

    /// Applies an ACK (or NACK, which requeues unless `requeue:false`).
    pub fn settle(&mut self, f: &Frame, ack: bool) -> FrameResult {
        let id_header = if self.version() == Version::V12 { "id" } else { "message-id" };
        let id = required(f, id_header)?;
        let unknown = || StompError::new("Bad ACK", &format!("Unknown or already acknowledged message: '{id}'"));
        let tag: u64 = id.parse().map_err(|_| unknown())?;
        let sub_id = self.unacked.get(&tag).ok_or_else(unknown)?.subscription.clone();
        let cumulative = self.subscriptions.get(&sub_id).is_some_and(|s| s.ack == AckMode::Client);
        let tags: Vec<u64> = if cumulative {
            self.unacked.range(..=tag).filter(|(_, u)| u.subscription == sub_id).map(|(t, _)| *t).collect()
        } else {
            vec![tag]
        };
        let requeue = f.header("requeue") != Some("false");
        // One subscription consumes one queue: settle its messages with one call (one lock).
        let queue = self.unacked[&tag].queue.clone();
        let seqs: Vec<u64> = tags.iter().map(|t| self.unacked.remove(t).expect("listed above").seq).collect();
        if ack {
            queue.ack(&seqs);
        } else {
            queue.reject(&seqs, requeue);
        }
        Ok(())
    }
}

/// The queue of a durable subscription: the id the client chose, plus a stable hash of the
/// user and the destination, so that two users (or two topics) with the same id (stomp.js
/// numbers its subscriptions `sub-0`, `sub-1`, ...) never share a queue. FNV-1a, because the
/// name must stay the same across restarts and Rust versions.
fn durable_queue_name(user: &str, d: &Destination, id: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let (exchange, key) = d.publish_target();
    for byte in [user, exchange, key].join("\0").bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("stomp-subscription-{id}-{hash:016x}")
}

/// `x-*` headers of a SUBSCRIBE or SEND that are queue arguments (numbers where RabbitMQ
/// expects them).
pub fn queue_arguments(f: &Frame) -> Table {
    // The queue arguments RabbitMQ's STOMP plugin takes from headers; other `x-` headers (user
    // headers, `x-stream-offset`, `x-delay`) are not arguments.
    const NUMERIC: &[&str] = &[
        "x-message-ttl",
        "x-expires",
        "x-max-length",
        "x-max-length-bytes",
        "x-max-priority",
        "x-delivery-limit",
        "x-stream-max-segment-size-bytes",
    ];
    const TEXT: &[&str] = &["x-dead-letter-exchange", "x-dead-letter-routing-key", "x-overflow", "x-queue-type", "x-max-age"];
    let mut args = Table::default();
    for (name, value) in f.distinct_headers() {
        let v = match value.parse::<i64>() {
            Ok(n) if NUMERIC.contains(&name) => Value::I64(n),
            _ if NUMERIC.contains(&name) || TEXT.contains(&name) => Value::Str(value.as_bytes().to_vec().into()),
            _ if name == "x-single-active-consumer" => Value::Bool(value == "true"),
            _ => continue,
        };
        args.insert(name, v);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_queue_names_differ_by_user_and_destination_and_stay_stable() {
        let topic = Destination::Topic("alerts.#".into());
        let a = durable_queue_name("alice", &topic, "sub-0");
        assert_eq!(a, durable_queue_name("alice", &topic, "sub-0"));
        assert!(a.starts_with("stomp-subscription-sub-0-"));
        assert_ne!(a, durable_queue_name("bob", &topic, "sub-0"));
        assert_ne!(a, durable_queue_name("alice", &Destination::Topic("news.#".into()), "sub-0"));
        assert_eq!(durable_queue_name("", &Destination::Topic("".into()), "x"), "stomp-subscription-x-83cf66512be51263");
    }
}
