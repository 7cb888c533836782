//! One AMQP channel: content assembly for publishes, consumers and their unacknowledged
//! deliveries, publisher confirms and transactions. Methods are dispatched to `entities`
//! (exchange/queue methods) and `basic` (publish, consume, ack).

mod basic;
mod entities;
mod publish;

use crate::confirms::ConfirmTracker;
use crate::error::{AmqpError, AmqpResult, CHANNEL_ERROR, COMMAND_INVALID, PRECONDITION_FAILED, UNEXPECTED_FRAME};
use crate::session::Session;
use amq_protocol::frame::AMQPContentHeader;
use amq_protocol::protocol::{access, channel, confirm, tx, AMQPClass};
use bytes::{Bytes, BytesMut};
use junction_core::{ChannelCredit, Queue};
use publish::{PendingPublish, TxBuffer};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A consumer started on this channel.
struct ConsumerEntry {
    queue: Arc<Queue>,
    id: u64,
}

/// A delivery waiting for ack: which queue and which message there.
struct Outstanding {
    queue: Arc<Queue>,
    seq: u64,
}

/// Where the channel is in assembling a published message.
enum Content {
    Idle,
    AwaitingHeader(PendingPublish),
    AwaitingBody(PendingPublish, BytesMut),
}

pub struct Channel {
    pub id: u16,
    /// Tells this channel's deliveries from those of an earlier channel with the same number
    /// still on their way: the channel number in the low 16 bits, an opening count above.
    pub cookie: u64,
    /// The server sent channel.close and waits for close-ok; other frames are dropped.
    pub closing: bool,
    content: Content,
    consumers: HashMap<String, ConsumerEntry>,
    unacked: BTreeMap<u64, Outstanding>,
    next_delivery_tag: u64,
    /// Prefetch for consumers started from now on (`basic.qos` with global=false).
    consumer_prefetch: u32,
    credit: Arc<ChannelCredit>,
    confirms: Option<ConfirmTracker>,
    tx: Option<TxBuffer>,
    /// The last queue declared on this channel (AMQP's "current queue" for empty names).
    last_queue: Option<String>,
    /// The private queue behind direct reply-to, once a reply consumer exists.
    reply_queue: Option<String>,
}

/// What the connection should do after a frame was handled.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Continue,
    /// The channel finished closing and can be forgotten.
    Closed,
}

impl Channel {
    pub fn new(id: u16, cookie: u64) -> Channel {
        Channel {
            id,
            cookie,
            closing: false,
            content: Content::Idle,
            consumers: HashMap::new(),
            unacked: BTreeMap::new(),
            next_delivery_tag: 1,
            consumer_prefetch: 0,
            credit: Arc::new(ChannelCredit::default()),
            confirms: None,
            tx: None,
            last_queue: None,
            reply_queue: None,
        }
    }

    pub async fn handle_method(&mut self, s: &mut Session, method: AMQPClass) -> AmqpResult<Outcome> {
        if !matches!(self.content, Content::Idle) {
            return Err(self.content_interrupted(self.expected_content()));
        }
        let m = method.clone();
        let result = match method {
            AMQPClass::Channel(c) => return self.channel_method(s, c),
            AMQPClass::Access(access::AMQPMethod::Request(_)) => {
                s.send(self.id, AMQPClass::Access(access::AMQPMethod::RequestOk(access::RequestOk {})));
                Ok(())
            }
            AMQPClass::Exchange(e) => self.exchange_method(s, e),
            AMQPClass::Queue(q) => self.queue_method(s, q),
            AMQPClass::Basic(b) => self.basic_method(s, b),
            AMQPClass::Confirm(confirm::AMQPMethod::Select(sel)) => self.confirm_select(s, sel.nowait),
            AMQPClass::Tx(t) => self.tx_method(s, t).await,
            _ => Err(AmqpError::connection(COMMAND_INVALID, "method not valid on a channel")),
        };
        result.map(|()| Outcome::Continue).map_err(|e| e.during(&m))
    }

    fn channel_method(&mut self, s: &mut Session, method: channel::AMQPMethod) -> AmqpResult<Outcome> {
        match method {
            channel::AMQPMethod::Open(_) => Err(AmqpError::connection(CHANNEL_ERROR, "second 'channel.open' seen")
                .during(&AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})))),
            channel::AMQPMethod::Close(_) => {
                self.release(s);
                s.send(self.id, AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})));
                Ok(Outcome::Closed)
            }
            channel::AMQPMethod::CloseOk(_) => Ok(Outcome::Closed),
            channel::AMQPMethod::Flow(f) => {
                let ok = channel::FlowOk { active: f.active };
                s.send(self.id, AMQPClass::Channel(channel::AMQPMethod::FlowOk(ok)));
                Ok(Outcome::Continue)
            }
            channel::AMQPMethod::FlowOk(_) => Ok(Outcome::Continue),
            channel::AMQPMethod::OpenOk(_) => {
                Err(AmqpError::connection(COMMAND_INVALID, "channel.open-ok is sent by servers only"))
            }
        }
    }

    pub fn handle_header(&mut self, s: &mut Session, header: AMQPContentHeader) -> AmqpResult<()> {
        let Content::AwaitingHeader(publish) = std::mem::replace(&mut self.content, Content::Idle) else {
            return Err(AmqpError::connection(UNEXPECTED_FRAME, "expected method frame, got non method frame instead"));
        };
        if header.class_id != 60 {
            return Err(self.content_interrupted(&format!(
                "expected content header for class 60, got one for class {} instead",
                header.class_id
            )));
        }
        if header.body_size > s.max_message_size {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                format!("message size {} is larger than configured max size {}", header.body_size, s.max_message_size),
            ));
        }
        let publish = publish.with_header(header);
        if publish.body_size == 0 {
            return self.publish(s, publish, Bytes::new());
        }
        let capacity = publish.body_size.min(1 << 20) as usize;
        self.content = Content::AwaitingBody(publish, BytesMut::with_capacity(capacity));
        Ok(())
    }

    pub fn handle_body(&mut self, s: &mut Session, chunk: Bytes) -> AmqpResult<()> {
        let Content::AwaitingBody(publish, mut body) = std::mem::replace(&mut self.content, Content::Idle) else {
            return Err(AmqpError::connection(UNEXPECTED_FRAME, "expected method frame, got non method frame instead"));
        };
        // A body that arrives as a single frame is used as is, without a copy.
        let body = if body.is_empty() && chunk.len() as u64 == publish.body_size {
            chunk
        } else {
            body.extend_from_slice(&chunk);
            if (body.len() as u64) < publish.body_size {
                self.content = Content::AwaitingBody(publish, body);
                return Ok(());
            }
            body.freeze()
        };
        if body.len() as u64 > publish.body_size {
            return Err(self.content_interrupted("content body larger than announced"));
        }
        self.publish(s, publish, body)
    }

    fn confirm_select(&mut self, s: &mut Session, nowait: bool) -> AmqpResult<()> {
        if self.tx.is_some() {
            return Err(AmqpError::channel(PRECONDITION_FAILED, "cannot switch from tx to confirm mode"));
        }
        self.confirms.get_or_insert_with(ConfirmTracker::new);
        if !nowait {
            s.send(self.id, AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})));
        }
        Ok(())
    }

    async fn tx_method(&mut self, s: &mut Session, method: tx::AMQPMethod) -> AmqpResult<()> {
        let reply = match method {
            tx::AMQPMethod::Select(_) => {
                if self.confirms.is_some() {
                    return Err(AmqpError::channel(PRECONDITION_FAILED, "cannot switch from confirm to tx mode"));
                }
                self.tx.get_or_insert_with(TxBuffer::default);
                tx::AMQPMethod::SelectOk(tx::SelectOk {})
            }
            tx::AMQPMethod::Commit(_) => {
                let buffer = std::mem::take(self.tx.as_mut().ok_or_else(not_transactional)?);
                self.commit(s, buffer).await?;
                tx::AMQPMethod::CommitOk(tx::CommitOk {})
            }
            tx::AMQPMethod::Rollback(_) => {
                *self.tx.as_mut().ok_or_else(not_transactional)? = TxBuffer::default();
                tx::AMQPMethod::RollbackOk(tx::RollbackOk {})
            }
            _ => return Err(AmqpError::connection(COMMAND_INVALID, "unexpected tx method")),
        };
        s.send(self.id, AMQPClass::Tx(reply));
        Ok(())
    }

    /// Gives back everything the channel holds: consumers stop, unacked messages are requeued
    /// (marked redelivered) for other consumers.
    pub fn release(&mut self, _s: &mut Session) {
        for (_, c) in self.consumers.drain() {
            c.queue.cancel(c.id);
        }
        let unacked = std::mem::take(&mut self.unacked).into_values().collect();
        for (queue, seqs) in basic::group_by_queue(unacked) {
            queue.reject(&seqs, true);
        }
        self.content = Content::Idle;
    }
}

impl Channel {
    /// RabbitMQ's words for a frame that arrived where content belonged.
    pub fn expected_content(&self) -> &'static str {
        match self.content {
            Content::AwaitingBody(..) => "expected content body, got non content body frame instead",
            _ => "expected content header for class 60, got non content header frame instead",
        }
    }

    pub fn awaiting_content(&self) -> bool {
        !matches!(self.content, Content::Idle)
    }

    /// A frame broke off the content of a basic.publish: a connection error naming publish.
    pub fn content_interrupted(&self, why: &str) -> AmqpError {
        AmqpError::connection(UNEXPECTED_FRAME, why.to_string()).during(&publish_method())
    }
}

fn publish_method() -> AMQPClass {
    AMQPClass::Basic(amq_protocol::protocol::basic::AMQPMethod::Publish(Default::default()))
}

fn not_transactional() -> AmqpError {
    AmqpError::channel(PRECONDITION_FAILED, "channel is not transactional")
}
