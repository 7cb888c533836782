//! SEND, transactions (BEGIN / COMMIT / ABORT), DISCONNECT and RECEIPT frames.
//!
//! RECEIPTs leave in the order of the frames that asked for them; the one for a persistent
//! SEND waits until the message is on disk.

use crate::conn::{required, Conn, FrameResult, StompError};
use crate::convert;
use crate::destination::Destination;
use crate::frame::Frame;
use futures::future::BoxFuture;
use futures::FutureExt;
use junction_core::permissions::{Op, Resource};
use junction_core::{DurableReceipt, Message, QueueDeclare};

/// A RECEIPT waiting for the store (or for the receipts before it).
pub type PendingReceipt = BoxFuture<'static, ReceiptDone>;

pub struct ReceiptDone {
    receipt: Option<String>,
    stored: bool,
    /// This was DISCONNECT's receipt: close after sending it.
    disconnect: bool,
}

/// Bounds on what transactions may hold back per connection.
const MAX_TRANSACTIONS: usize = 64;
const MAX_TRANSACTION_FRAMES: usize = 100_000;
const MAX_TRANSACTION_BYTES: usize = 64 * 1024 * 1024;

/// Frames held back until COMMIT.
#[derive(Default)]
pub struct Transaction {
    frames: Vec<Frame>,
    bytes: usize,
}

impl Conn {
    pub fn on_send(&mut self, f: &Frame) -> FrameResult {
        if f.header("transaction").is_some() {
            self.has_published = true;
            self.hold_in_transaction(f)?;
            return self.receipt_after(f, Vec::new());
        }
        let stored = self.publish(f)?;
        self.has_published = true;
        self.receipt_after(f, stored.into_iter().collect())
    }

    /// Routes a SEND; returns the store receipt of a persistent message.
    fn publish(&mut self, f: &Frame) -> Result<Option<DurableReceipt>, StompError> {
        let destination = Destination::parse(required(f, "destination")?).map_err(|e| StompError::new("Invalid destination", &e))?;
        let (exchange, routing_key) = destination.publish_target();
        let access = &self.session.access;
        access.check(Op::Write, Resource::Exchange(exchange))?;
        access.check_topic(Op::Write, exchange, routing_key)?;
        if let Destination::Queue(name) = &destination {
            self.declare_named_queue(name, f)?;
        }
        let mut properties = convert::properties_of(f).map_err(|e| StompError::new("Invalid header", &e))?;
        properties.check_user_id(&self.session.user.name).map_err(|e| StompError::new("Invalid user-id", &e))?;
        if let Some(name) = properties.reply_to.as_deref().and_then(|r| r.strip_prefix("/temp-queue/")) {
            properties.reply_to = Some(format!("/reply-queue/{}", self.temp_queue(name)?));
        }
        let persistent = properties.persistent;
        let message = Message::new(exchange, routing_key, properties, f.body.clone());
        let outcome = self.session.vhost.publish(exchange, message, persistent)?;
        self.session.permit.registration.entry.traffic.message_in();
        Ok(outcome.durable)
    }

    /// `/queue/q` declares a durable queue on first use (RabbitMQ's STOMP semantics), with the
    /// frame's `x-*` headers as queue arguments. An existing queue is used as it is, without
    /// taking the vhost's write lock on every SEND.
    pub fn declare_named_queue(&self, name: &str, f: &Frame) -> FrameResult {
        if self.session.vhost.queue(name).is_some() {
            return Ok(());
        }
        self.session.access.check(Op::Configure, Resource::Queue(name))?;
        let arguments = crate::subscribe::queue_arguments(f);
        let declare = QueueDeclare { name: name.to_string(), durable: true, arguments, ..Default::default() };
        match self.session.vhost.declare_queue(declare) {
            // Declared earlier with other properties (e.g. by AMQP): use it as it is.
            Err(e) if e.kind == junction_core::ErrorKind::PreconditionFailed && self.session.vhost.queue(name).is_some() => Ok(()),
            other => other.map(|_| ()).map_err(StompError::from),
        }
    }

    /// Queues the RECEIPT a frame asked for, sent once `stored` have resolved.
    pub fn receipt_after(&mut self, f: &Frame, stored: Vec<DurableReceipt>) -> FrameResult {
        let Some(receipt) = f.header("receipt").map(str::to_string) else { return Ok(()) };
        self.receipts.push_back(wait_for(Some(receipt), stored, false));
        Ok(())
    }

    pub fn on_receipt(&mut self, done: ReceiptDone) {
        match (done.stored, done.receipt) {
            (true, Some(receipt)) => self.send(&Frame::new("RECEIPT").with("receipt-id", receipt)),
            (false, receipt) => {
                let error = StompError::new("Message not stored", "The store failed; the message may be lost.");
                let frame = Frame::new("ERROR").with("message", error.message).with_body(error.detail.into_bytes());
                let frame = match receipt {
                    Some(r) => frame.with("receipt-id", r),
                    None => frame,
                };
                self.send(&frame);
                self.closing = true;
            }
            (true, None) => {}
        }
        if done.disconnect {
            self.closing = true;
        }
    }

    pub fn on_disconnect(&mut self, f: &Frame) -> FrameResult {
        match f.header("receipt") {
            // After every earlier receipt, so the client knows all it sent was handled.
            Some(r) => self.receipts.push_back(wait_for(Some(r.to_string()), Vec::new(), true)),
            None => self.closing = true,
        }
        Ok(())
    }

    fn transaction(&mut self, name: &str) -> Result<&mut Transaction, StompError> {
        self.transactions
            .get_mut(name)
            .ok_or_else(|| StompError::new("Bad transaction", &format!("Invalid transaction identifier: {name}")))
    }

    pub fn on_begin(&mut self, f: &Frame) -> FrameResult {
        let name = required(f, "transaction")?.to_string();
        if self.transactions.contains_key(&name) {
            return Err(StompError::new("Bad transaction", &format!("Transaction {name} already active")));
        }
        if self.transactions.len() >= MAX_TRANSACTIONS {
            return Err(StompError::new("Too many transactions", &format!("At most {MAX_TRANSACTIONS} open transactions per connection")));
        }
        self.transactions.insert(name, Transaction::default());
        self.receipt_after(f, Vec::new())
    }

    /// Replays the transaction's SENDs and ACK/NACKs, in order.
    pub fn on_commit(&mut self, f: &Frame) -> FrameResult {
        let name = required(f, "transaction")?.to_string();
        let tx = self.transactions.remove(&name).ok_or_else(|| StompError::new("Bad transaction", &format!("Invalid transaction identifier: {name}")))?;
        let mut stored = Vec::new();
        for frame in tx.frames {
            match frame.command.as_str() {
                "SEND" => stored.extend(self.publish(&frame)?),
                command => self.settle(&frame, command == "ACK")?,
            }
        }
        self.receipt_after(f, stored)
    }

    pub fn on_abort(&mut self, f: &Frame) -> FrameResult {
        let name = required(f, "transaction")?.to_string();
        self.transactions.remove(&name).ok_or_else(|| StompError::new("Bad transaction", &format!("Invalid transaction identifier: {name}")))?;
        self.receipt_after(f, Vec::new())
    }

    /// A SEND, ACK or NACK inside a transaction waits for COMMIT (within bounds: held frames
    /// are memory the alarms do not see).
    pub fn hold_in_transaction(&mut self, f: &Frame) -> Result<bool, StompError> {
        let Some(name) = f.header("transaction") else { return Ok(false) };
        let tx = self.transaction(name)?;
        if tx.frames.len() >= MAX_TRANSACTION_FRAMES || tx.bytes + f.body.len() > MAX_TRANSACTION_BYTES {
            return Err(StompError::new(
                "Transaction too large",
                &format!("A transaction holds at most {MAX_TRANSACTION_FRAMES} frames and {MAX_TRANSACTION_BYTES} body bytes"),
            ));
        }
        tx.bytes += f.body.len();
        tx.frames.push(f.clone());
        Ok(true)
    }
}

fn wait_for(receipt: Option<String>, stored: Vec<DurableReceipt>, disconnect: bool) -> PendingReceipt {
    async move {
        let results = futures::future::join_all(stored).await;
        let stored = results.into_iter().all(|r| matches!(r, Ok(Ok(()))));
        ReceiptDone { receipt, stored, disconnect }
    }
    .boxed()
}
