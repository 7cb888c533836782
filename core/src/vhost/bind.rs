//! Bindings: queue-to-exchange and exchange-to-exchange, persisted when both ends are durable.

use super::VHost;
use crate::error::{CoreError, CoreResult};
use crate::exchange::{Binding, Destination, Exchange};
use crate::message::Table;
use crate::persist::{BindingRecord, DestinationKind, Record};
use std::sync::Arc;

impl VHost {
    fn bindable_source(&self, name: &str) -> CoreResult<Arc<Exchange>> {
        if name.is_empty() {
            return Err(CoreError::refused("operation not permitted on the default exchange"));
        }
        self.exchange(name).ok_or_else(|| self.no_exchange(name))
    }

    fn destination(&self, kind: &DestinationKind, name: &str, connection: u64) -> CoreResult<Destination> {
        Ok(match kind {
            DestinationKind::Queue => Destination::Queue(self.queue_for(name, connection)?),
            DestinationKind::Exchange => {
                if name.is_empty() {
                    return Err(CoreError::refused("operation not permitted on the default exchange"));
                }
                self.exchange(name).ok_or_else(|| self.no_exchange(name))?;
                Destination::Exchange(name.to_string())
            }
        })
    }

    /// Binds `destination` (a queue or an exchange) to `source` with `key` and `arguments`.
    pub fn bind(
        &self,
        source: &str,
        kind: DestinationKind,
        destination: &str,
        key: &str,
        arguments: Table,
        connection: u64,
    ) -> CoreResult<()> {
        let exchange = self.bindable_source(source)?;
        let destination = self.destination(&kind, destination, connection)?;
        let binding = Binding { destination, key: key.to_string(), arguments };
        let record = self.binding_record(&exchange, &binding);
        if exchange.bind(binding) {
            self.persist(record.map(|r| r.put()).into_iter().collect());
        }
        Ok(())
    }

    pub fn unbind(
        &self,
        source: &str,
        kind: DestinationKind,
        destination: &str,
        key: &str,
        arguments: &Table,
        connection: u64,
    ) -> CoreResult<()> {
        let exchange = self.bindable_source(source)?;
        let destination = self.destination(&kind, destination, connection)?;
        let removed = exchange.unbind_where(|b| {
            b.destination == destination && b.key == key && b.arguments.same_entries(arguments)
        });
        let ops = removed.iter().filter_map(|b| self.binding_record(&exchange, b)).map(|r| r.delete()).collect();
        self.persist(ops);
        self.auto_delete_if_unbound(&exchange);
        Ok(())
    }

    /// Removes every binding whose destination matches (the destination is going away).
    pub(super) fn unbind_destination(&self, matches: impl Fn(&Destination) -> bool) {
        for exchange in self.exchanges() {
            let removed = exchange.unbind_where(|b| matches(&b.destination));
            if removed.is_empty() {
                continue;
            }
            let ops = removed.iter().filter_map(|b| self.binding_record(&exchange, b)).map(|r| r.delete()).collect();
            self.persist(ops);
            self.auto_delete_if_unbound(&exchange);
        }
    }

    fn auto_delete_if_unbound(&self, exchange: &Arc<Exchange>) {
        if exchange.spec.auto_delete && !exchange.has_bindings() {
            self.remove_exchange(exchange);
        }
    }

    /// The durable record of a binding, if both ends survive restarts.
    pub(super) fn binding_record(&self, source: &Exchange, binding: &Binding) -> Option<Record> {
        let (kind, durable) = match &binding.destination {
            Destination::Queue(q) => (DestinationKind::Queue, q.is_durable() && q.owner().is_none()),
            Destination::Exchange(x) => {
                (DestinationKind::Exchange, self.exchange(x).is_some_and(|x| x.spec.durable))
            }
        };
        (source.spec.durable && durable).then(|| {
            Record::Binding(BindingRecord {
                vhost: self.name.clone(),
                source: source.name().to_string(),
                destination_kind: kind,
                destination: binding.destination.name().to_string(),
                key: binding.key.clone(),
                arguments: binding.arguments.clone(),
            })
        })
    }

    /// Restores a binding found in the store at start-up (both ends already restored).
    pub(crate) fn restore_binding(&self, record: &BindingRecord) {
        let destination = match record.destination_kind {
            DestinationKind::Queue => self.queue(&record.destination).map(Destination::Queue),
            DestinationKind::Exchange => {
                self.exchange(&record.destination).map(|x| Destination::Exchange(x.name().to_string()))
            }
        };
        match (self.exchange(&record.source), destination) {
            (Some(source), Some(destination)) => {
                source.bind(Binding { destination, key: record.key.clone(), arguments: record.arguments.clone() });
            }
            _ => tracing::warn!(source = %record.source, destination = %record.destination, "dropping dangling binding"),
        }
    }
}
