//! basic.* methods other than the publish content path: qos, consume, cancel, get, ack, nack,
//! reject, recover; and turning core deliveries into basic.deliver frames.

use junction_core::permissions::{Op, Resource};
use super::publish::{PendingPublish, DIRECT_REPLY_TO};
use super::{Channel, ConsumerEntry, Content, Outstanding};
use crate::convert::{properties_to_amqp, short};
use crate::error::{AmqpError, AmqpResult, COMMAND_INVALID, NOT_ALLOWED, NOT_IMPLEMENTED, PRECONDITION_FAILED};
use crate::session::Session;
use amq_protocol::protocol::{basic, AMQPClass};
use junction_core::queue::StreamStart;
use junction_core::{ConsumerSpec, Delivery, Queue};
use rand::distr::{Alphanumeric, SampleString};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl Channel {
    pub(super) fn basic_method(&mut self, s: &mut Session, method: basic::AMQPMethod) -> AmqpResult<()> {
        match method {
            basic::AMQPMethod::Publish(p) => {
                self.content = Content::AwaitingHeader(PendingPublish::new(&p));
                Ok(())
            }
            basic::AMQPMethod::Qos(q) => {
                if q.global {
                    self.credit.limit.store(q.prefetch_count.into(), Ordering::Release);
                    self.kick_queues();
                } else {
                    self.consumer_prefetch = q.prefetch_count.into();
                }
                s.send(self.id, AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})));
                Ok(())
            }
            basic::AMQPMethod::Consume(c) => self.consume(s, c),
            basic::AMQPMethod::Cancel(c) => {
                if let Some(entry) = self.consumers.remove(c.consumer_tag.as_str()) {
                    entry.queue.cancel(entry.id);
                }
                if !c.nowait {
                    let ok = basic::CancelOk { consumer_tag: c.consumer_tag };
                    s.send(self.id, AMQPClass::Basic(basic::AMQPMethod::CancelOk(ok)));
                }
                Ok(())
            }
            basic::AMQPMethod::Get(g) => self.get(s, g),
            basic::AMQPMethod::Ack(a) => self.settle_or_buffer(s, a.delivery_tag, a.multiple, None),
            basic::AMQPMethod::Nack(n) => self.settle_or_buffer(s, n.delivery_tag, n.multiple, Some(n.requeue)),
            basic::AMQPMethod::Reject(r) => self.settle_or_buffer(s, r.delivery_tag, false, Some(r.requeue)),
            basic::AMQPMethod::Recover(r) => {
                self.recover(r.requeue)?;
                s.send(self.id, AMQPClass::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {})));
                Ok(())
            }
            basic::AMQPMethod::RecoverAsync(r) => self.recover(r.requeue),
            _ => Err(AmqpError::connection(COMMAND_INVALID, "unexpected basic method from a client")),
        }
    }

    fn consume(&mut self, s: &mut Session, c: basic::Consume) -> AmqpResult<()> {
        let tag = match c.consumer_tag.as_str() {
            "" => format!("amq.ctag-{}", Alphanumeric.sample_string(&mut rand::rng(), 22)),
            t => t.to_string(),
        };
        if self.consumers.contains_key(&tag) {
            return Err(AmqpError::connection(NOT_ALLOWED, format!("attempt to reuse consumer tag '{tag}'")));
        }
        let queue = if c.queue.as_str() == DIRECT_REPLY_TO {
            if !c.no_ack {
                return Err(AmqpError::channel(PRECONDITION_FAILED, "reply consumer cannot acknowledge"));
            }
            let queue = s.vhost.declare_reply_queue(s.connection_id);
            self.reply_queue = Some(queue.name().to_string());
            queue
        } else {
            let name = if c.queue.as_str().is_empty() {
                self.last_queue.clone().unwrap_or_default()
            } else {
                c.queue.as_str().to_string()
            };
            s.access.check(Op::Read, Resource::Queue(&name))?;
            s.vhost.queue_for(&name, s.connection_id)?
        };
        let spec = ConsumerSpec {
            tag: Arc::from(tag.as_str()),
            no_ack: c.no_ack,
            exclusive: c.exclusive,
            prefetch: self.consumer_prefetch,
            channel_credit: self.credit.clone(),
            sink: s.events.clone(),
            cookie: self.cookie,
        };
        // consume-ok must precede the first delivery: queue it before the consumer starts.
        if !c.nowait {
            let ok = basic::ConsumeOk { consumer_tag: short(&tag) };
            s.send(self.id, AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(ok)));
        }
        let id = match stream_read(&c)? {
            Some((start, name)) if queue.is_stream() => queue.consume_stream(spec, start, name)?,
            _ => queue.consume(spec)?,
        };
        self.consumers.insert(tag, ConsumerEntry { queue, id });
        Ok(())
    }

    fn get(&mut self, s: &mut Session, g: basic::Get) -> AmqpResult<()> {
        let name = if g.queue.as_str().is_empty() { self.last_queue.clone().unwrap_or_default() } else { g.queue.as_str().to_string() };
        s.access.check(Op::Read, Resource::Queue(&name))?;
        let queue = s.vhost.queue_for(&name, s.connection_id)?;
        if queue.is_stream() {
            let why = format!("basic.get not supported by stream queues queue '{name}' in vhost '{}'", s.vhost.name());
            return Err(AmqpError::channel(NOT_IMPLEMENTED, why));
        }
        let Some(d) = queue.get(g.no_ack) else {
            let empty = basic::GetEmpty {};
            s.send(self.id, AMQPClass::Basic(basic::AMQPMethod::GetEmpty(empty)));
            return Ok(());
        };
        let tag = self.track(&d);
        s.traffic().message_out(Some(d.message.arrived_at_ms));
        let ok = basic::GetOk {
            delivery_tag: tag,
            redelivered: d.redelivered,
            exchange: short(&d.message.exchange),
            routing_key: short(&d.message.routing_key),
            message_count: d.remaining as u32,
        };
        s.send(self.id, AMQPClass::Basic(basic::AMQPMethod::GetOk(ok)));
        let frame_max = s.frame_max;
        s.writer().content(self.id, properties_to_amqp(&d.message.properties), &d.message.body, frame_max);
        Ok(())
    }

    /// Assigns a delivery tag and remembers what to ack.
    fn track(&mut self, d: &Delivery) -> u64 {
        let tag = self.next_delivery_tag;
        self.next_delivery_tag += 1;
        if !d.no_ack {
            self.unacked.insert(tag, Outstanding { queue: d.queue.clone(), seq: d.seq });
        }
        tag
    }

    /// Writes a queue's delivery as basic.deliver, or hands it back if this channel is closing.
    pub fn deliver(&mut self, s: &mut Session, d: Delivery) {
        if self.credit.written(d.message.body.len()) {
            self.kick_queues();
        }
        if self.closing {
            if !d.no_ack {
                d.queue.reject(&[d.seq], true);
            }
            return;
        }
        let tag = self.track(&d);
        s.traffic().message_out(Some(d.message.arrived_at_ms));
        let deliver = basic::Deliver {
            consumer_tag: short(&d.consumer_tag),
            delivery_tag: tag,
            redelivered: d.redelivered,
            exchange: short(&d.message.exchange),
            routing_key: short(&d.message.routing_key),
        };
        s.send(self.id, AMQPClass::Basic(basic::AMQPMethod::Deliver(deliver)));
        let frame_max = s.frame_max;
        let message = d.as_delivered(false);
        s.writer().content(self.id, properties_to_amqp(&message.properties), &message.body, frame_max);
    }

    /// The queue behind a consumer went away: tell the client if it understands basic.cancel.
    pub fn consumer_cancelled(&mut self, s: &mut Session, tag: &str) {
        if self.consumers.remove(tag).is_some() && s.capabilities.consumer_cancel_notify {
            let cancel = basic::Cancel { consumer_tag: short(tag), nowait: true };
            s.send(self.id, AMQPClass::Basic(basic::AMQPMethod::Cancel(cancel)));
        }
    }

    fn settle_or_buffer(&mut self, s: &mut Session, tag: u64, multiple: bool, reject: Option<bool>) -> AmqpResult<()> {
        if self.tx.is_some() {
            self.check_tag(tag, multiple)?;
            self.tx.as_mut().expect("checked above").acks.push((tag, multiple, reject));
            return Ok(());
        }
        self.settle(s, tag, multiple, reject)
    }

    fn check_tag(&self, tag: u64, multiple: bool) -> AmqpResult<()> {
        if (multiple && tag == 0) || self.unacked.contains_key(&tag) {
            return Ok(());
        }
        Err(AmqpError::channel(PRECONDITION_FAILED, format!("unknown delivery tag {tag}")))
    }

    /// Acks (`reject == None`) or rejects deliveries up to and including `tag` if `multiple`
    /// (tag 0 with multiple means all).
    pub(super) fn settle(&mut self, _s: &mut Session, tag: u64, multiple: bool, reject: Option<bool>) -> AmqpResult<()> {
        self.check_tag(tag, multiple)?;
        let settled: Vec<Outstanding> = if multiple {
            let upto = if tag == 0 { u64::MAX } else { tag };
            let keep = self.unacked.split_off(&upto.saturating_add(1));
            std::mem::replace(&mut self.unacked, keep).into_values().collect()
        } else {
            self.unacked.remove(&tag).into_iter().collect()
        };
        for (queue, seqs) in group_by_queue(settled) {
            match reject {
                None => queue.ack(&seqs),
                Some(requeue) => queue.reject(&seqs, requeue),
            }
        }
        if self.credit.limit.load(Ordering::Acquire) > 0 {
            self.kick_queues();
        }
        Ok(())
    }

    fn recover(&mut self, requeue: bool) -> AmqpResult<()> {
        if !requeue {
            return Err(AmqpError::connection(NOT_IMPLEMENTED, "basic.recover with requeue=false is not supported"));
        }
        let all = std::mem::take(&mut self.unacked).into_values().collect();
        for (queue, seqs) in group_by_queue(all) {
            queue.reject(&seqs, true);
        }
        Ok(())
    }

    /// With a channel-wide prefetch, an ack on one queue can free room for another's consumer.
    fn kick_queues(&self) {
        for c in self.consumers.values() {
            c.queue.kick();
        }
    }
}

pub(super) fn group_by_queue(items: Vec<Outstanding>) -> Vec<(Arc<Queue>, Vec<u64>)> {
    let mut groups: HashMap<*const Queue, (Arc<Queue>, Vec<u64>)> = HashMap::new();
    for o in items {
        groups.entry(Arc::as_ptr(&o.queue)).or_insert_with(|| (o.queue.clone(), Vec::new())).1.push(o.seq);
    }
    groups.into_values().collect()
}

/// Where a stream consumer starts and the name its position is stored under: the
/// `x-stream-offset` and `x-stream-consumer-name` consume arguments (`None` when neither is given).
fn stream_read(c: &basic::Consume) -> AmqpResult<Option<(StreamStart, Option<String>)>> {
    let args = crate::convert::table_from_amqp(&c.arguments);
    let start = match args.get("x-stream-offset") {
        Some(v) => Some(StreamStart::from_value(v).map_err(|why| AmqpError::channel(PRECONDITION_FAILED, why))?),
        None => None,
    };
    let name = args.get("x-stream-consumer-name").and_then(|v| v.as_str()).map(str::to_string);
    Ok((start.is_some() || name.is_some()).then(|| (start.unwrap_or_default(), name)))
}
