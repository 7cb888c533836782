//! A virtual host: its exchanges, queues and bindings, and the publish path that routes a
//! message through them into queues (writing persistent messages to the store once).

mod bind;
mod declare;
mod delayed;

pub use declare::{QueueDeclare, QueueDeclared};
pub use delayed::{requested_delay, DELAY_HEADER};

use crate::error::{CoreError, CoreResult};
use crate::exchange::{Destination, Exchange, ExchangeKind, ExchangeSpec};
use crate::message::{Message, Table};
use crate::persist::Record;
use crate::queue::{Queue, StoredBody};
use crate::resources::Resources;
use junction_storage::{DurableReceipt, Op, Store};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, Weak};

/// What became of a published message.
#[derive(Debug, Default)]
pub struct PublishOutcome {
    /// At least one queue accepted it.
    pub routed: bool,
    /// A full queue with `x-overflow: reject-publish` refused it.
    pub refused: bool,
    /// Resolves when the message is on disk in every durable queue that took it; `None` when
    /// there is nothing to wait for.
    pub durable: Option<DurableReceipt>,
}

pub struct VHost {
    name: String,
    exchanges: RwLock<HashMap<String, Arc<Exchange>>>,
    queues: RwLock<HashMap<String, Arc<Queue>>>,
    store: Arc<Store>,
    resources: Arc<Resources>,
    /// Broker-wide allocator of queue ids (names of queue logs in the store).
    queue_ids: Arc<AtomicU64>,
    retained: crate::retained::RetainedStore,
    /// Messages held back by `x-delay`.
    delayed: Arc<delayed::DelayedMessages>,
    this: Weak<VHost>,
}

impl std::fmt::Debug for VHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VHost").field("name", &self.name).finish()
    }
}

/// The exchanges every vhost has.
const STANDARD_EXCHANGES: [(&str, ExchangeKind); 5] = [
    ("amq.direct", ExchangeKind::Direct),
    ("amq.fanout", ExchangeKind::Fanout),
    ("amq.topic", ExchangeKind::Topic),
    ("amq.headers", ExchangeKind::Headers),
    ("amq.match", ExchangeKind::Headers),
];

impl VHost {
    pub(crate) fn new(
        name: &str,
        store: Arc<Store>,
        resources: Arc<Resources>,
        queue_ids: Arc<AtomicU64>,
    ) -> Arc<VHost> {
        let vhost = Arc::new_cyclic(|this| VHost {
            name: name.to_string(),
            exchanges: RwLock::new(HashMap::new()),
            queues: RwLock::new(HashMap::new()),
            store,
            resources,
            queue_ids,
            retained: Default::default(),
            delayed: Default::default(),
            this: this.clone(),
        });
        for (name, kind) in STANDARD_EXCHANGES {
            let spec = ExchangeSpec {
                name: name.into(),
                kind,
                durable: true,
                auto_delete: false,
                internal: false,
                arguments: Table::default(),
            };
            vhost.exchanges.write().insert(name.into(), Arc::new(Exchange::new(spec)));
        }
        vhost
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn exchange(&self, name: &str) -> Option<Arc<Exchange>> {
        self.exchanges.read().get(name).cloned()
    }

    pub fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.queues.read().get(name).cloned()
    }

    pub fn exchanges(&self) -> Vec<Arc<Exchange>> {
        self.exchanges.read().values().cloned().collect()
    }

    pub fn queues(&self) -> Vec<Arc<Queue>> {
        self.queues.read().values().cloned().collect()
    }

    /// The queue named `name` if `connection` may use it (exclusive queues belong to one).
    pub fn queue_for(&self, name: &str, connection: u64) -> CoreResult<Arc<Queue>> {
        let queue = self.queue(name).ok_or_else(|| self.no_queue(name))?;
        self.check_owner(&queue, connection)?;
        Ok(queue)
    }

    fn check_owner(&self, queue: &Queue, connection: u64) -> CoreResult<()> {
        match queue.owner() {
            Some(owner) if owner != connection => Err(CoreError::locked(format!(
                "cannot obtain exclusive access to locked queue '{}' in vhost '{}'. It could be \
                 originally declared on another connection or the exclusive property value does \
                 not match that of the original declaration.",
                queue.name(),
                self.name
            ))),
            _ => Ok(()),
        }
    }

    fn no_queue(&self, name: &str) -> CoreError {
        CoreError::not_found(format!("no queue '{name}' in vhost '{}'", self.name))
    }

    fn no_exchange(&self, name: &str) -> CoreError {
        CoreError::not_found(format!("no exchange '{name}' in vhost '{}'", self.name))
    }

    /// Publishes `msg` to `exchange`. With `want_receipt`, the outcome carries a receipt that
    /// resolves once the message is durable wherever it must be. A message with an `x-delay`
    /// header is held back until its time (and counts as routed).
    pub fn publish(&self, exchange: &str, msg: Message, want_receipt: bool) -> CoreResult<PublishOutcome> {
        if !exchange.is_empty() && self.exchange(exchange).is_none() {
            return Err(self.no_exchange(exchange));
        }
        if let Some(delay_ms) = requested_delay(&msg) {
            let receipt = self.hold(exchange, msg, delay_ms);
            return Ok(PublishOutcome { routed: true, refused: false, durable: receipt.filter(|_| want_receipt) });
        }
        Ok(self.deliver(exchange, Arc::new(msg), want_receipt))
    }

    /// Publishes on the broker's own behalf (dead letters): no receipt, missing exchange = drop.
    pub(crate) fn publish_internal(&self, exchange: &str, msg: Message) {
        if exchange.is_empty() || self.exchange(exchange).is_some() {
            self.deliver(exchange, Arc::new(msg), false);
        }
    }

    fn deliver(&self, exchange: &str, msg: Arc<Message>, want_receipt: bool) -> PublishOutcome {
        let targets = self.route(exchange, &msg.routing_key, &msg.properties.headers);
        let mut outcome = PublishOutcome::default();
        let mut admitted = Vec::with_capacity(targets.len());
        for queue in targets {
            match queue.reserve(&msg) {
                Some(seq) => admitted.push((queue, seq)),
                None => outcome.refused = true,
            }
        }
        outcome.routed = !admitted.is_empty();
        let stored = self.write_once(&msg, &admitted, want_receipt, &mut outcome);
        for (queue, seq) in admitted {
            let body = stored.clone().filter(|_| self.logs(&queue, &msg));
            queue.accept(seq, msg.clone(), body);
        }
        outcome
    }

    /// A persistent message in a durable queue goes to that queue's log; a stream logs every
    /// message (as RabbitMQ's streams do).
    fn logs(&self, queue: &Queue, msg: &Message) -> bool {
        queue.is_stream() || (msg.properties.persistent && queue.is_durable() && queue.owner().is_none())
    }

    /// Writes the body once and one log entry per durable queue; the store sees these before
    /// any consumer can ack the message.
    fn write_once(
        &self,
        msg: &Arc<Message>,
        admitted: &[(Arc<Queue>, u64)],
        want_receipt: bool,
        outcome: &mut PublishOutcome,
    ) -> Option<Arc<StoredBody>> {
        let logged: Vec<&(Arc<Queue>, u64)> = admitted.iter().filter(|(q, _)| self.logs(q, msg)).collect();
        if logged.is_empty() {
            return None;
        }
        let id = self.store.allocate_body_id();
        let mut ops = Vec::with_capacity(logged.len() + 1);
        ops.push(Op::PutBody { id, bytes: msg.encode() });
        let size = u32::try_from(msg.size()).unwrap_or(u32::MAX);
        let holders = logged.len() as u32;
        for (queue, seq) in &logged {
            ops.push(Op::Enqueue { queue_id: queue.spec().id, seq: *seq, body_id: id, size, holders });
        }
        if want_receipt {
            outcome.durable = Some(self.store.submit_durable(ops));
        } else {
            self.store.submit(ops);
        }
        Some(Arc::new(StoredBody { id, refs: AtomicU32::new(logged.len() as u32) }))
    }

    /// The queues a message reaches from `exchange`, following exchange-to-exchange bindings
    /// and alternate exchanges, each queue once.
    pub fn route(&self, exchange: &str, routing_key: &str, headers: &Table) -> Vec<Arc<Queue>> {
        if exchange.is_empty() {
            return self.queue(routing_key).into_iter().collect();
        }
        let mut out: Vec<Arc<Queue>> = Vec::new();
        let mut visited = vec![exchange.to_string()];
        let mut pending = vec![exchange.to_string()];
        let mut dests = Vec::new();
        while let Some(name) = pending.pop() {
            let Some(x) = self.exchange(&name) else { continue };
            dests.clear();
            x.route(routing_key, headers, &mut dests);
            if dests.is_empty() {
                if let Some(alternate) = x.spec.alternate() {
                    if !visited.iter().any(|v| v == alternate) {
                        visited.push(alternate.to_string());
                        pending.push(alternate.to_string());
                    }
                }
            }
            for dest in dests.drain(..) {
                match dest {
                    Destination::Queue(q) => {
                        if !out.iter().any(|o| Arc::ptr_eq(o, &q)) {
                            out.push(q);
                        }
                    }
                    Destination::Exchange(next) => {
                        if !visited.contains(&next) {
                            visited.push(next.clone());
                            pending.push(next);
                        }
                    }
                }
            }
        }
        out
    }

    /// Retained messages (MQTT topics).
    pub fn retained(&self) -> &crate::retained::RetainedStore {
        &self.retained
    }

    /// Retains `message` for the MQTT `topic` (or clears it with `None`); durable once the
    /// receipt resolves.
    pub fn set_retained(&self, topic: &str, message: Option<Message>) -> DurableReceipt {
        self.retained.set(&self.store, &self.name, topic, message)
    }

    /// Deletes the exclusive queues of a connection that went away.
    pub fn connection_closed(&self, connection: u64) {
        let owned: Vec<Arc<Queue>> =
            self.queues.read().values().filter(|q| q.owner() == Some(connection)).cloned().collect();
        for queue in owned {
            self.remove_queue(&queue);
        }
    }

    fn persist(&self, ops: Vec<Op>) {
        if !ops.is_empty() {
            self.store.submit(ops);
        }
    }

    fn exchange_record(&self, spec: &ExchangeSpec) -> Record {
        Record::Exchange { vhost: self.name.clone(), spec: spec.clone() }
    }
}

#[cfg(test)]
mod tests;
