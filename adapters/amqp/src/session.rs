//! What every channel of one connection shares: the vhost, the outgoing frame buffer, the sink
//! that queues deliver into, and the pending publisher-confirm receipts.

use crate::codec::FrameWriter;
use amq_protocol::protocol::AMQPClass;
use bytes::BytesMut;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use junction_core::auth::User;
use junction_core::permissions::Access;
use junction_core::{Broker, VHost};
use std::sync::Arc;

/// A durable-write receipt resolved: (channel, delivery tag, stored successfully).
pub type ConfirmDone = (u16, u64, bool);

/// What the client said it understands (connection.start-ok client-properties capabilities).
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientCapabilities {
    pub consumer_cancel_notify: bool,
    pub connection_blocked: bool,
}

pub struct Session {
    pub connection_id: u64,
    pub broker: Arc<Broker>,
    pub vhost: Arc<VHost>,
    pub user: User,
    /// What the user may do in the vhost (checked before every operation).
    pub access: Access,
    pub permit: junction_core::connections::ConnectionPermit,
    pub frame_max: usize,
    pub capabilities: ClientCapabilities,
    /// Largest message body accepted.
    pub max_message_size: u64,
    pub out: BytesMut,
    pub events: junction_core::EventSender,
    pub confirms: FuturesUnordered<BoxFuture<'static, ConfirmDone>>,
    /// Set once the connection has published: it is the one blocked by resource alarms.
    pub has_published: bool,
}

impl Session {
    /// This connection's counters, as operators see them.
    pub fn traffic(&self) -> &junction_core::registry::Traffic {
        &self.permit.registration.entry.traffic
    }

    pub fn writer(&mut self) -> FrameWriter<'_> {
        FrameWriter { out: &mut self.out }
    }

    pub fn send(&mut self, channel: u16, method: AMQPClass) {
        self.writer().method(channel, method);
    }
}
