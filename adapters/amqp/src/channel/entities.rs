//! exchange.* and queue.* methods: thin translations onto the vhost's declare/bind calls.

use super::Channel;
use crate::convert::{short, table_from_amqp};
use crate::error::{AmqpError, AmqpResult, COMMAND_INVALID, NOT_FOUND};
use crate::session::Session;
use amq_protocol::protocol::{exchange, queue, AMQPClass};
use junction_core::persist::DestinationKind;
use junction_core::permissions::{Op, Resource};
use junction_core::{ExchangeKind, ExchangeSpec, QueueDeclare};

impl Channel {
    pub(super) fn exchange_method(&mut self, s: &mut Session, method: exchange::AMQPMethod) -> AmqpResult<()> {
        let vhost = s.vhost.clone();
        let conn = s.connection_id;
        let (nowait, reply) = match method {
            exchange::AMQPMethod::Declare(d) => {
                let kind = match ExchangeKind::parse(d.kind.as_str()) {
                    Some(kind) => kind,
                    // RabbitMQ answers an unknown type with a connection error.
                    None => {
                        return Err(AmqpError::connection(
                            COMMAND_INVALID,
                            format!("unknown exchange type '{}'", d.kind.as_str()),
                        ))
                    }
                };
                if !d.passive {
                    s.access.check(Op::Configure, Resource::Exchange(d.exchange.as_str()))?;
                }
                let spec = ExchangeSpec {
                    name: d.exchange.as_str().to_string(),
                    kind,
                    durable: d.durable,
                    auto_delete: d.auto_delete,
                    internal: d.internal,
                    arguments: table_from_amqp(&d.arguments),
                };
                vhost.declare_exchange(spec, d.passive)?;
                (d.nowait, exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {}))
            }
            exchange::AMQPMethod::Delete(d) => {
                s.access.check(Op::Configure, Resource::Exchange(d.exchange.as_str()))?;
                vhost.delete_exchange(d.exchange.as_str(), d.if_unused)?;
                (d.nowait, exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {}))
            }
            exchange::AMQPMethod::Bind(b) => {
                let args = table_from_amqp(&b.arguments);
                let (dest, src, key) = (b.destination.as_str(), b.source.as_str(), b.routing_key.as_str());
                check_binding(s, Resource::Exchange(dest), src, key)?;
                vhost.bind(src, DestinationKind::Exchange, dest, key, args, conn)?;
                (b.nowait, exchange::AMQPMethod::BindOk(exchange::BindOk {}))
            }
            exchange::AMQPMethod::Unbind(b) => {
                let args = table_from_amqp(&b.arguments);
                let (dest, src, key) = (b.destination.as_str(), b.source.as_str(), b.routing_key.as_str());
                check_binding(s, Resource::Exchange(dest), src, key)?;
                vhost.unbind(src, DestinationKind::Exchange, dest, key, &args, conn)?;
                (b.nowait, exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {}))
            }
            _ => return Err(AmqpError::connection(COMMAND_INVALID, "unexpected exchange method")),
        };
        if !nowait {
            s.send(self.id, AMQPClass::Exchange(reply));
        }
        Ok(())
    }

    /// An empty queue name means the last queue declared on this channel.
    fn queue_name(&self, given: &str) -> AmqpResult<String> {
        if !given.is_empty() {
            return Ok(given.to_string());
        }
        self.last_queue.clone().ok_or_else(|| AmqpError::channel(NOT_FOUND, "no previously declared queue"))
    }

    pub(super) fn queue_method(&mut self, s: &mut Session, method: queue::AMQPMethod) -> AmqpResult<()> {
        let vhost = s.vhost.clone();
        let conn = s.connection_id;
        let (nowait, reply) = match method {
            queue::AMQPMethod::Declare(d) => {
                if !d.passive {
                    // A server-named queue is checked under the prefix its name will have.
                    let name = if d.queue.as_str().is_empty() { SERVER_NAMED_PREFIX } else { d.queue.as_str() };
                    s.access.check(Op::Configure, Resource::Queue(name))?;
                }
                let declared = vhost.declare_queue(QueueDeclare {
                    name: if d.passive { self.queue_name(d.queue.as_str())? } else { d.queue.as_str().to_string() },
                    durable: d.durable,
                    exclusive: d.exclusive,
                    auto_delete: d.auto_delete,
                    arguments: table_from_amqp(&d.arguments),
                    passive: d.passive,
                    connection: conn,
                })?;
                self.last_queue = Some(declared.name.clone());
                let ok = queue::DeclareOk {
                    queue: short(&declared.name),
                    message_count: declared.counts.ready as u32,
                    consumer_count: declared.counts.consumers as u32,
                };
                (d.nowait, queue::AMQPMethod::DeclareOk(ok))
            }
            queue::AMQPMethod::Bind(b) => {
                let name = self.queue_name(b.queue.as_str())?;
                check_binding(s, Resource::Queue(&name), b.exchange.as_str(), b.routing_key.as_str())?;
                let args = table_from_amqp(&b.arguments);
                vhost.bind(b.exchange.as_str(), DestinationKind::Queue, &name, b.routing_key.as_str(), args, conn)?;
                (b.nowait, queue::AMQPMethod::BindOk(queue::BindOk {}))
            }
            queue::AMQPMethod::Unbind(b) => {
                let name = self.queue_name(b.queue.as_str())?;
                check_binding(s, Resource::Queue(&name), b.exchange.as_str(), b.routing_key.as_str())?;
                let args = table_from_amqp(&b.arguments);
                vhost.unbind(b.exchange.as_str(), DestinationKind::Queue, &name, b.routing_key.as_str(), &args, conn)?;
                (false, queue::AMQPMethod::UnbindOk(queue::UnbindOk {}))
            }
            queue::AMQPMethod::Purge(p) => {
                let name = self.queue_name(p.queue.as_str())?;
                s.access.check(Op::Read, Resource::Queue(&name))?;
                let count = vhost.purge_queue(&name, conn)?;
                (p.nowait, queue::AMQPMethod::PurgeOk(queue::PurgeOk { message_count: count as u32 }))
            }
            queue::AMQPMethod::Delete(d) => {
                let name = self.queue_name(d.queue.as_str())?;
                s.access.check(Op::Configure, Resource::Queue(&name))?;
                let count = vhost.delete_queue(&name, d.if_unused, d.if_empty, conn)?;
                (d.nowait, queue::AMQPMethod::DeleteOk(queue::DeleteOk { message_count: count as u32 }))
            }
            _ => return Err(AmqpError::connection(COMMAND_INVALID, "unexpected queue method")),
        };
        if !nowait {
            s.send(self.id, AMQPClass::Queue(reply));
        }
        Ok(())
    }
}

/// Names of server-named queues start with this (`amq.gen-...`).
const SERVER_NAMED_PREFIX: &str = "amq.gen-";

/// A binding (or unbinding) needs write on its destination, read on its source exchange, and
/// read on the binding key where the source has topic permissions (RabbitMQ's rules).
fn check_binding(s: &Session, destination: Resource<'_>, source: &str, key: &str) -> AmqpResult<()> {
    s.access.check(Op::Write, destination)?;
    s.access.check(Op::Read, Resource::Exchange(source))?;
    s.access.check_topic(Op::Read, source, key)?;
    Ok(())
}
