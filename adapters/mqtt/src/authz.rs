//! Permissions for MQTT operations, in RabbitMQ's model (`junction_core::permissions`): what
//! each MQTT action does in the core decides which permission it needs.

use crate::handlers::direct_queue;
use crate::mapping;
use crate::session;
use junction_core::auth::User;
use junction_core::permissions::{Access, Op, Resource};
use junction_core::topic_map::mqtt_filter_to_amqp;
use junction_core::{Broker, CoreResult, VHost};

/// Access to the vhost, and configure on the session queue the connection declares.
pub fn may_connect(broker: &Broker, user: &User, vhost: &VHost, client_id: &str) -> CoreResult<Access> {
    let access = broker.access(user, vhost.name())?;
    access.check(Op::Configure, Resource::Queue(&session::queue_name(client_id)))?;
    Ok(access)
}

/// Publishing writes to `amq.topic` under the topic's routing key (`$queue/q`: to the default
/// exchange, key `q`).
pub fn may_publish(access: &Access, topic: &str) -> CoreResult<()> {
    let (exchange, routing_key) = mapping::destination(topic);
    access.check(Op::Write, Resource::Exchange(exchange))?;
    access.check_topic(Op::Write, exchange, &routing_key)
}

/// A plain subscription binds the session queue to `amq.topic`; `$share/g/f` declares, binds
/// and consumes the group's queue; `$queue/q` consumes queue `q`.
pub fn may_subscribe(access: &Access, vhost: &VHost, filter: &str, session_queue: &str) -> CoreResult<()> {
    match direct_queue(filter) {
        Some((queue, None)) => {
            // A missing queue is declared (durable) by the subscription: that is configuring.
            if vhost.queue(&queue).is_none() {
                access.check(Op::Configure, Resource::Queue(&queue))?;
            }
            access.check(Op::Read, Resource::Queue(&queue))
        }
        Some((queue, Some(inner))) => {
            access.check(Op::Configure, Resource::Queue(&queue))?;
            may_bind(access, &queue, &inner)?;
            access.check(Op::Read, Resource::Queue(&queue))
        }
        None => may_bind(access, session_queue, filter),
    }
}

fn may_bind(access: &Access, queue: &str, filter: &str) -> CoreResult<()> {
    access.check(Op::Write, Resource::Queue(queue))?;
    access.check(Op::Read, Resource::Exchange(mapping::TOPIC_EXCHANGE))?;
    access.check_topic(Op::Read, mapping::TOPIC_EXCHANGE, &mqtt_filter_to_amqp(filter))
}
