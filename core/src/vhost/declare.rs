//! Declaring and deleting exchanges and queues, with AMQP's equivalence and reserved-name rules.

use super::VHost;
use crate::error::{CoreError, CoreResult};
use crate::exchange::{Exchange, ExchangeSpec};
use crate::message::{Table, Value};
use crate::persist::Record;
use crate::queue::{Queue, QueueArgs, QueueCounts, QueueSpec};
use rand::distr::{Alphanumeric, SampleString};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A queue declaration as any protocol expresses it.
#[derive(Debug, Clone, Default)]
pub struct QueueDeclare {
    /// Empty asks for a server-named queue (`amq.gen-...`).
    pub name: String,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: Table,
    /// Only check that the queue exists.
    pub passive: bool,
    /// The declaring connection (owner of an exclusive queue).
    pub connection: u64,
}

#[derive(Debug, Clone)]
pub struct QueueDeclared {
    pub name: String,
    pub counts: QueueCounts,
}

fn reserved(name: &str) -> bool {
    name.starts_with("amq.")
}

impl VHost {
    pub fn declare_exchange(&self, spec: ExchangeSpec, passive: bool) -> CoreResult<()> {
        if let Some(existing) = self.exchange(&spec.name) {
            if passive || spec.equivalent(&existing.spec) || spec.name.is_empty() {
                return Ok(());
            }
            let field = if existing.spec.kind != spec.kind { "type" } else { "arguments" };
            return Err(CoreError::precondition(format!(
                "inequivalent arg '{field}' for exchange '{}' in vhost '{}': received '{}' but current is '{}'",
                spec.name,
                self.name,
                spec.kind.as_str(),
                existing.spec.kind.as_str()
            )));
        }
        if passive || spec.name.is_empty() {
            return Err(self.no_exchange(&spec.name));
        }
        if reserved(&spec.name) {
            return Err(CoreError::refused(format!(
                "exchange name '{}' contains reserved prefix 'amq.*'",
                spec.name
            )));
        }
        let mut exchanges = self.exchanges.write();
        if exchanges.contains_key(&spec.name) {
            return Ok(());
        }
        if spec.durable {
            self.persist(vec![self.exchange_record(&spec).put()]);
        }
        exchanges.insert(spec.name.clone(), Arc::new(Exchange::new(spec)));
        Ok(())
    }

    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> CoreResult<()> {
        if name.is_empty() || reserved(name) {
            return Err(CoreError::refused(format!(
                "deletion of system exchange '{name}' in vhost '{}' not allowed",
                self.name
            )));
        }
        let Some(exchange) = self.exchange(name) else { return Ok(()) };
        if if_unused && exchange.has_bindings() {
            return Err(CoreError::precondition(format!(
                "exchange '{name}' in vhost '{}' in use",
                self.name
            )));
        }
        self.remove_exchange(&exchange);
        Ok(())
    }

    /// Removes an exchange, its bindings, and bindings that point at it.
    pub(crate) fn remove_exchange(&self, exchange: &Arc<Exchange>) {
        if self.exchanges.write().remove(exchange.name()).is_none() {
            return;
        }
        let mut ops = Vec::new();
        for binding in exchange.unbind_where(|_| true) {
            ops.extend(self.binding_record(exchange, &binding).map(|r| r.delete()));
        }
        if exchange.spec.durable {
            ops.push(self.exchange_record(&exchange.spec).delete());
        }
        self.persist(ops);
        self.unbind_destination(|d| matches!(d, crate::exchange::Destination::Exchange(n) if n == exchange.name()));
    }

    pub fn declare_queue(&self, mut d: QueueDeclare) -> CoreResult<QueueDeclared> {
        if d.passive {
            let queue = self.queue_for(&d.name, d.connection)?;
            queue.touch();
            return Ok(QueueDeclared { name: d.name, counts: queue.counts() });
        }
        if d.name.is_empty() {
            d.name = format!("amq.gen-{}", Alphanumeric.sample_string(&mut rand::rng(), 22));
        } else if reserved(&d.name) && self.queue(&d.name).is_none() {
            return Err(CoreError::refused(format!(
                "queue name '{}' contains reserved prefix 'amq.*'",
                d.name
            )));
        }
        let args = QueueArgs::parse(&d.arguments)?;
        if args.is_stream() && (!d.durable || d.exclusive || d.auto_delete) {
            return Err(CoreError::precondition(format!(
                "invalid property for stream '{}': a stream must be durable, not exclusive and not auto-delete",
                d.name
            )));
        }
        let mut queues = self.queues.write();
        if let Some(existing) = queues.get(&d.name).cloned() {
            drop(queues);
            self.check_owner(&existing, d.connection)?;
            self.check_equivalent(existing.spec(), &d)?;
            existing.touch();
            return Ok(QueueDeclared { name: d.name, counts: existing.counts() });
        }
        let max = self.resources.limits().max_queues;
        if max > 0 && queues.len() >= max {
            return Err(CoreError::precondition(format!(
                "cannot declare queue '{}': queue limit in vhost '{}' ({max}) is reached",
                d.name, self.name
            )));
        }
        let spec = QueueSpec {
            name: d.name.clone(),
            id: self.queue_ids.fetch_add(1, Ordering::Relaxed),
            durable: d.durable,
            exclusive: d.exclusive,
            auto_delete: d.auto_delete,
            arguments: d.arguments,
        };
        // Exclusive queues die with their connection, so they never outlive a restart.
        if spec.durable && !spec.exclusive {
            self.persist(vec![Record::Queue { vhost: self.name.clone(), spec: spec.clone() }.put()]);
        }
        let owner = d.exclusive.then_some(d.connection);
        let queue = self.make_queue(spec, args, owner);
        queues.insert(d.name.clone(), queue.clone());
        Ok(QueueDeclared { name: d.name, counts: queue.counts() })
    }

    /// Declares the private queue behind direct reply-to (`amq.rabbitmq.reply-to`): exclusive
    /// to `connection`, gone with its consumer.
    pub fn declare_reply_queue(&self, connection: u64) -> Arc<Queue> {
        let name = format!("amq.rabbitmq.reply-to.{}", Alphanumeric.sample_string(&mut rand::rng(), 24));
        let spec = QueueSpec {
            name: name.clone(),
            id: self.queue_ids.fetch_add(1, Ordering::Relaxed),
            durable: false,
            exclusive: true,
            auto_delete: true,
            arguments: Table::default(),
        };
        let queue = self.make_queue(spec, QueueArgs::default(), Some(connection));
        self.queues.write().insert(name, queue.clone());
        queue
    }

    pub(crate) fn make_queue(&self, spec: QueueSpec, args: QueueArgs, owner: Option<u64>) -> Arc<Queue> {
        let store = (spec.durable && owner.is_none()).then(|| self.store.clone());
        Queue::new(spec, args, owner, store, self.this.clone(), self.resources.clone())
    }

    fn check_equivalent(&self, existing: &QueueSpec, d: &QueueDeclare) -> CoreResult<()> {
        let differs = |field: &str, received: String, current: String| {
            Err(CoreError::precondition(format!(
                "inequivalent arg '{field}' for queue '{}' in vhost '{}': received '{received}' but current is '{current}'",
                d.name, self.name
            )))
        };
        if existing.durable != d.durable {
            return differs("durable", d.durable.to_string(), existing.durable.to_string());
        }
        if existing.auto_delete != d.auto_delete {
            return differs("auto_delete", d.auto_delete.to_string(), existing.auto_delete.to_string());
        }
        for key in existing.arguments.iter().chain(d.arguments.iter()).map(|(k, _)| k) {
            let (mine, theirs) = (d.arguments.get(key), existing.arguments.get(key));
            let same = match (mine, theirs) {
                (Some(a), Some(b)) => a.same_as(b),
                (a, b) => a == b,
            };
            if !same {
                return differs(key, describe(mine), describe(theirs));
            }
        }
        Ok(())
    }

    /// Restores an exchange found in the store at start-up.
    pub(crate) fn restore_exchange(&self, spec: ExchangeSpec) {
        self.exchanges.write().insert(spec.name.clone(), Arc::new(Exchange::new(spec)));
    }

    /// Restores a durable queue found in the store at start-up.
    pub(crate) fn restore_queue(&self, spec: QueueSpec) -> CoreResult<Arc<Queue>> {
        let args = QueueArgs::parse(&spec.arguments)?;
        let queue = self.make_queue(spec, args, None);
        self.queues.write().insert(queue.name().to_string(), queue.clone());
        Ok(queue)
    }

    /// Deletes a queue on a client's request; returns the number of messages it held.
    pub fn delete_queue(&self, name: &str, if_unused: bool, if_empty: bool, connection: u64) -> CoreResult<usize> {
        let Some(queue) = self.queue(name) else { return Ok(0) };
        self.check_owner(&queue, connection)?;
        let counts = queue.counts();
        if if_unused && counts.consumers > 0 {
            return Err(CoreError::precondition(format!("queue '{name}' in vhost '{}' in use", self.name)));
        }
        if if_empty && counts.ready + counts.unacked > 0 {
            return Err(CoreError::precondition(format!("queue '{name}' in vhost '{}' not empty", self.name)));
        }
        Ok(self.remove_queue(&queue))
    }

    pub fn purge_queue(&self, name: &str, connection: u64) -> CoreResult<usize> {
        Ok(self.queue_for(name, connection)?.purge())
    }

    /// Deletes every queue and exchange (with their bindings and stored records), the retained
    /// messages and the held delayed messages: the vhost is going away.
    pub(crate) fn delete_everything(&self) {
        for queue in self.queues() {
            self.remove_queue(&queue);
        }
        for exchange in self.exchanges() {
            self.remove_exchange(&exchange);
        }
        for (topic, _) in self.retained.all() {
            let _ = self.set_retained(&topic, None);
        }
        self.drop_held();
    }

    /// Removes a queue for any reason (request, auto-delete, expiry, owner gone).
    pub(crate) fn remove_queue(&self, queue: &Arc<Queue>) -> usize {
        {
            let mut queues = self.queues.write();
            match queues.get(queue.name()) {
                Some(q) if Arc::ptr_eq(q, queue) => queues.remove(queue.name()),
                _ => return 0,
            };
        }
        let held = queue.shut();
        if queue.is_durable() && queue.owner().is_none() {
            self.persist(vec![Record::Queue { vhost: self.name.clone(), spec: queue.spec().clone() }.delete()]);
        }
        self.unbind_destination(|d| matches!(d, crate::exchange::Destination::Queue(q) if Arc::ptr_eq(q, queue)));
        held
    }
}

/// An argument value as RabbitMQ shows it in inequivalence errors.
fn describe(v: Option<&Value>) -> String {
    match v {
        None => "none".into(),
        Some(v) => match (v.as_i64(), v.as_str()) {
            (Some(n), _) => n.to_string(),
            (_, Some(s)) => s.to_string(),
            _ => format!("{v:?}"),
        },
    }
}
