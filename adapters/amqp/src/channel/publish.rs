//! basic.publish once its content is complete: validation, direct reply-to, routing through
//! the core, mandatory returns, publisher confirms, and transactional buffering.

use junction_core::permissions::{Op, Resource};
use super::Channel;
use crate::convert::{properties_from_amqp, properties_to_amqp, short};
use crate::error::{AmqpError, AmqpResult, ACCESS_REFUSED, NOT_FOUND, NO_ROUTE, PRECONDITION_FAILED};
use crate::session::Session;
use amq_protocol::frame::AMQPContentHeader;
use amq_protocol::protocol::{basic, AMQPClass, BasicProperties};
use bytes::Bytes;
use futures::FutureExt;
use junction_core::{Message, PublishOutcome};

/// The name clients use for RabbitMQ's direct reply-to pseudo queue.
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// A basic.publish whose content is still arriving.
pub struct PendingPublish {
    pub exchange: String,
    pub routing_key: String,
    pub mandatory: bool,
    pub properties: BasicProperties,
    pub body_size: u64,
}

impl PendingPublish {
    pub fn new(p: &basic::Publish) -> Self {
        PendingPublish {
            exchange: p.exchange.as_str().to_string(),
            routing_key: p.routing_key.as_str().to_string(),
            mandatory: p.mandatory,
            properties: BasicProperties::default(),
            body_size: 0,
        }
    }

    pub fn with_header(mut self, header: AMQPContentHeader) -> Self {
        self.properties = header.properties;
        self.body_size = header.body_size;
        self
    }
}

/// Work held back until tx.commit.
#[derive(Default)]
pub struct TxBuffer {
    pub publishes: Vec<(Message, bool)>,
    /// (delivery tag, multiple, Some(requeue) for nack/reject or None for ack)
    pub acks: Vec<(u64, bool, Option<bool>)>,
}

impl Channel {
    pub(super) fn publish(&mut self, s: &mut Session, p: PendingPublish, body: Bytes) -> AmqpResult<()> {
        s.access.check(Op::Write, Resource::Exchange(&p.exchange))?;
        s.access.check_topic(Op::Write, &p.exchange, &p.routing_key)?;
        let mut properties = properties_from_amqp(&p.properties)
            .map_err(|bad| AmqpError::channel(PRECONDITION_FAILED, format!("invalid expiration '{bad}'")))?;
        properties.check_user_id(&s.user.name).map_err(|why| AmqpError::channel(PRECONDITION_FAILED, why))?;
        if properties.reply_to.as_deref() == Some(DIRECT_REPLY_TO) {
            let queue = self.reply_queue.clone().ok_or_else(|| {
                AmqpError::channel(PRECONDITION_FAILED, "fast reply consumer does not exist")
            })?;
            properties.reply_to = Some(queue);
        }
        if let Some(x) = s.vhost.exchange(&p.exchange) {
            if x.spec.internal {
                return Err(AmqpError::channel(
                    ACCESS_REFUSED,
                    format!("cannot publish to internal exchange '{}' in vhost '{}'", p.exchange, s.vhost.name()),
                ));
            }
        } else if !p.exchange.is_empty() {
            return Err(AmqpError::channel(
                NOT_FOUND,
                format!("no exchange '{}' in vhost '{}'", p.exchange, s.vhost.name()),
            ));
        }
        s.has_published = true;
        s.traffic().message_in();
        let msg = Message::new(&p.exchange, &p.routing_key, properties, body);
        if let Some(tx) = self.tx.as_mut() {
            tx.publishes.push((msg, p.mandatory));
            return Ok(());
        }
        let want_receipt = self.confirms.is_some();
        let outcome = s.vhost.publish(&p.exchange, msg.clone(), want_receipt)?;
        self.after_publish(s, &msg, p.mandatory, outcome);
        Ok(())
    }

    /// Returns an unroutable mandatory message, then confirms (RabbitMQ's order).
    fn after_publish(&mut self, s: &mut Session, msg: &Message, mandatory: bool, outcome: PublishOutcome) {
        if mandatory && !outcome.routed && !outcome.refused {
            let ret = basic::Return {
                reply_code: NO_ROUTE,
                reply_text: short("NO_ROUTE"),
                exchange: short(&msg.exchange),
                routing_key: short(&msg.routing_key),
            };
            s.send(self.id, AMQPClass::Basic(basic::AMQPMethod::Return(ret)));
            let frame_max = s.frame_max;
            s.writer().content(self.id, properties_to_amqp(&msg.properties), &msg.body, frame_max);
        }
        let Some(confirms) = self.confirms.as_mut() else { return };
        let tag = confirms.register();
        match outcome.durable {
            _ if outcome.refused => confirms.complete(tag, false),
            Some(receipt) => {
                let channel = self.id;
                s.confirms.push(receipt.map(move |r| (channel, tag, matches!(r, Ok(Ok(()))))).boxed());
            }
            None => confirms.complete(tag, true),
        }
        self.flush_confirms(s);
    }

    /// Sends whatever confirms are ready, in order.
    pub fn flush_confirms(&mut self, s: &mut Session) {
        let Some(confirms) = self.confirms.as_mut() else { return };
        for c in confirms.drain() {
            let method = if c.ack {
                basic::AMQPMethod::Ack(basic::Ack { delivery_tag: c.tag, multiple: c.multiple })
            } else {
                basic::AMQPMethod::Nack(basic::Nack { delivery_tag: c.tag, multiple: c.multiple, requeue: false })
            };
            s.send(self.id, AMQPClass::Basic(method));
        }
    }

    /// A durable-write receipt resolved for confirm `tag`.
    pub fn confirm_done(&mut self, s: &mut Session, tag: u64, ok: bool) {
        if let Some(confirms) = self.confirms.as_mut() {
            confirms.complete(tag, ok);
        }
        self.flush_confirms(s);
    }

    /// Applies a transaction: its publishes (waiting until they are durable) and its acks.
    pub(super) async fn commit(&mut self, s: &mut Session, buffer: TxBuffer) -> AmqpResult<()> {
        let mut receipts = Vec::new();
        for (msg, mandatory) in buffer.publishes {
            let mut outcome = s.vhost.publish(&msg.exchange.clone(), msg.clone(), true)?;
            receipts.extend(outcome.durable.take());
            self.after_publish(s, &msg, mandatory, outcome);
        }
        for (tag, multiple, reject) in buffer.acks {
            self.settle(s, tag, multiple, reject)?;
        }
        for receipt in receipts {
            if !matches!(receipt.await, Ok(Ok(()))) {
                return Err(AmqpError::connection(crate::error::INTERNAL_ERROR, "store write failed"));
            }
        }
        Ok(())
    }
}
