//! Junction's protocol-neutral broker core.
//!
//! Adapters translate their protocol's frames into calls on [`Broker`] and [`VHost`] (declare,
//! bind, publish, consume, ack) and the core's deliveries back into frames. Nothing in here
//! knows about AMQP, MQTT or STOMP.

pub mod auth;
pub mod broker;
pub mod connections;
pub mod error;
pub mod exchange;
pub mod message;
pub mod net;
pub mod permissions;
pub mod persist;
pub mod queue;
pub mod resources;
pub mod registry;
pub mod retained;
pub mod text_headers;
pub mod topic;
pub mod topic_map;
pub mod vhost;

#[cfg(test)]
mod test_support;

pub use broker::{Broker, BrokerConfig, RecoveryReport};
pub use error::{CoreError, CoreResult, ErrorKind};
pub use exchange::{ExchangeKind, ExchangeSpec};
pub use message::{Message, Properties, Table, Value};
pub use queue::{event_channel, ChannelCredit, ConsumerEvent, ConsumerSpec, Delivery, EventReceiver, EventSender, Queue};
pub use vhost::{PublishOutcome, QueueDeclare, VHost};
pub use junction_storage::{DurableReceipt, StoreError};
