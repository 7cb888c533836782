//! The state of one connected MQTT client, and the small operations the handlers share.

use crate::codec::Framing;
use crate::packet::{Level, Outbound, Publish, Will};
use crate::session::{self, SessionState};
use crate::Mqtt;
use bytes::BytesMut;
use futures::future::BoxFuture;
use junction_core::permissions::Access;
use junction_core::{ChannelCredit, Queue, VHost};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tokio_util::codec::Encoder;

/// A QoS 1/2 message sent to the client and not yet fully acknowledged.
pub enum Outgoing {
    /// PUBLISH sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2). `source` is the core
    /// message to ack (none for retained messages sent at subscribe time).
    Sent { source: Option<(Arc<Queue>, u64)> },
    /// QoS 2 PUBREC received and the core message acked; waiting for PUBCOMP.
    Released,
}

/// What a consumer cookie stands for.
pub enum Feed {
    /// The session queue: matched against the session's ordinary subscriptions.
    Session,
    /// A `$share/...` or `$queue/...` subscription, by its filter as the client wrote it.
    Direct(String),
}

/// An acknowledgement that must wait for the store: (packet id, QoS, stored ok).
/// (packet id, QoS, reason code) once the publish is stored (or refused).
pub type PendingAck = BoxFuture<'static, (u16, u8, u8)>;

/// Its maps are `BTreeMap`s: they stay small, and an empty one takes 24 bytes where a
/// `HashMap` takes 48, in every connection (most of them idle).
pub struct Client {
    pub mqtt: Arc<Mqtt>,
    /// The client id (shared with the connection's listing and the client-id registry).
    pub id: Arc<str>,
    pub level: Level,
    pub vhost: Arc<VHost>,
    /// What the user who logged in may do in the vhost (and who that is: `access.user()`).
    pub access: Access,
    pub session: SessionState,
    /// The session outlives the connection (clean session 0 / expiry > 0).
    pub persistent: bool,
    /// The session queue. A clean session gets it at its first ordinary subscription: a client
    /// that only publishes never costs a queue (see `session_queue`).
    pub queue: Option<Arc<Queue>>,
    /// What the client has going on; None while it has nothing (see `Activity`).
    pub activity: Option<Box<Activity>>,
    /// Set once the client has published: resource alarms stop reading from it (only from
    /// publishers, as in RabbitMQ: a subscriber must still be read, its acks drain the queues).
    pub has_published: bool,
    pub will: Option<Box<Will>>,
    pub topic_alias_max: u16,
    /// Counts the connection against the connection limits while it lives.
    pub permit: Option<junction_core::connections::ConnectionPermit>,
    /// The client's Topic Alias Maximum: how many aliases this server may assign (MQTT 5).
    pub outbound_alias_max: u16,
    /// The client's Maximum Packet Size (MQTT 5; never 0).
    pub max_packet_size: Option<std::num::NonZeroU32>,
    pub prefetch: u32,
    pub out: BytesMut,
}

/// The state of what a client has going on: consumers, messages in flight either way, topic
/// aliases. Made at the first publish or subscription and given back once all of it is over
/// and the connection idles (`Client::release_idle_activity`): most connections of a large
/// fleet are idle, and an idle one then holds a pointer instead of all of this.
pub struct Activity {
    /// Consumer cookie -> (queue, consumer id, what it feeds).
    pub consumers: BTreeMap<u64, (Arc<Queue>, u64, Feed)>,
    pub next_cookie: u64,
    pub outstanding: BTreeMap<u16, Outgoing>,
    next_packet_id: u16,
    /// In publish order; only the first is polled, as acknowledgements leave in order anyway
    /// (a `FuturesOrdered` would cost two allocations even while empty).
    pub pending_acks: VecDeque<PendingAck>,
    /// Inbound QoS 1 publishes not yet acknowledged (QoS 2 ones are `session.incoming_qos2`).
    pub inbound_qos1: usize,
    /// Inbound topic aliases (MQTT 5).
    pub aliases: BTreeMap<u16, String>,
    /// Topic aliases this server assigned to the client (MQTT 5).
    pub outbound_aliases: OutboundAliases,
    /// Made when the client first consumes (see `Deliveries`).
    pub deliveries: Option<Deliveries>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            consumers: BTreeMap::new(),
            next_cookie: SESSION_COOKIE + 1,
            outstanding: BTreeMap::new(),
            next_packet_id: 1,
            pending_acks: VecDeque::new(),
            inbound_qos1: 0,
            aliases: BTreeMap::new(),
            outbound_aliases: OutboundAliases::default(),
            deliveries: None,
        }
    }
}

impl Activity {
    /// Nothing going on: no consumer, nothing in flight, no alias or channel to remember.
    fn is_over(&self) -> bool {
        self.consumers.is_empty()
            && self.outstanding.is_empty()
            && self.pending_acks.is_empty()
            && self.inbound_qos1 == 0
            && self.aliases.is_empty()
            && self.outbound_aliases.by_topic.is_empty()
            && self.deliveries.is_none()
    }

    /// The channel and window the client's consumers use, made now if this is its first.
    pub fn deliveries(&mut self) -> &mut Deliveries {
        self.deliveries.get_or_insert_with(|| {
            let (tx, rx) = junction_core::event_channel();
            Deliveries { tx, rx, credit: Arc::new(ChannelCredit::default()) }
        })
    }
}

/// How queues hand the client its messages: the event channel its consumers send to and the
/// send window they share. Made at the first subscription: a client that only publishes never
/// costs one (100,000 idle connections are a figure we publish).
pub struct Deliveries {
    pub tx: junction_core::EventSender,
    pub rx: junction_core::EventReceiver,
    pub credit: Arc<ChannelCredit>,
}

impl Drop for Client {
    /// Lets go of the client id however the connection ends (its task dropped or panicking
    /// mid-way included): a takeover waiting for it goes on at once.
    fn drop(&mut self) {
        if let Some(permit) = &self.permit {
            self.mqtt.registry.release(self.vhost.name(), &self.id, permit.registration.entry.id);
        }
    }
}

/// Server-to-client topic aliases: the first `max` distinct topics sent on a connection get
/// aliases 1..=max, and later publishes on them travel with an empty topic name. Topics beyond
/// that go in full (no replacement: remapping would cost a full topic anyway).
#[derive(Debug, Default)]
pub struct OutboundAliases {
    by_topic: BTreeMap<String, u16>,
}

impl OutboundAliases {
    /// `max`: the client's Topic Alias Maximum (0: no aliases).
    pub fn apply(&mut self, max: u16, p: &mut Publish) {
        if max == 0 {
            return;
        }
        if let Some(&alias) = self.by_topic.get(&p.topic) {
            p.props.topic_alias = Some(alias);
            p.topic.clear();
        } else if self.by_topic.len() < usize::from(max) {
            let alias = self.by_topic.len() as u16 + 1;
            self.by_topic.insert(p.topic.clone(), alias);
            p.props.topic_alias = Some(alias);
        }
    }
}

/// Cookie of the session queue's consumer.
pub const SESSION_COOKIE: u64 = 1;

impl Client {
    /// The session queue, declared and consumed now if this is its first use.
    pub fn session_queue(&mut self) -> junction_core::CoreResult<Arc<Queue>> {
        if let Some(queue) = &self.queue {
            return Ok(queue.clone());
        }
        let queue = crate::connect::declare_session_queue(&self.mqtt, &self.vhost, &self.id, self.persistent)?;
        self.queue = Some(queue.clone());
        crate::connect::consume(self, queue.clone(), SESSION_COOKIE, Feed::Session);
        Ok(queue)
    }

    /// This connection's counters, once it is admitted.
    pub fn traffic(&self) -> Option<&junction_core::registry::Traffic> {
        self.permit.as_ref().map(|p| &*p.registration.entry.traffic)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        mqtt: Arc<Mqtt>,
        id: Arc<str>,
        level: Level,
        vhost: Arc<VHost>,
        access: Access,
        session: SessionState,
        persistent: bool,
        queue: Option<Arc<Queue>>,
    ) -> Client {
        Client {
            mqtt,
            id,
            level,
            vhost,
            access,
            session,
            persistent,
            queue,
            activity: None,
            has_published: false,
            will: None,
            topic_alias_max: 0,
            outbound_alias_max: 0,
            permit: None,
            max_packet_size: None,
            prefetch: 64,
            out: BytesMut::new(),
        }
    }

    /// What the client has going on, made now if it had nothing.
    pub fn active(&mut self) -> &mut Activity {
        self.activity.get_or_insert_with(Box::default)
    }

    /// Gives the activity state back if nothing is going on (the connection is idle).
    pub fn release_idle_activity(&mut self) {
        if self.activity.as_ref().is_some_and(|a| a.is_over()) {
            self.activity = None;
        }
    }

    /// Encodes a packet into the output buffer.
    pub fn send(&mut self, framing: &mut Framing, packet: Outbound) {
        if let Err(e) = framing.encode(packet, &mut self.out) {
            tracing::debug!(client = %self.id, error = %e, "packet not sent");
        }
    }

    /// A free packet identifier for an outgoing QoS 1/2 publish.
    pub fn allocate_packet_id(&mut self) -> u16 {
        let activity = self.activity.get_or_insert_with(Box::default);
        loop {
            let id = activity.next_packet_id;
            activity.next_packet_id = activity.next_packet_id.checked_add(1).unwrap_or(1);
            if !activity.outstanding.contains_key(&id) && !self.session.awaiting_pubcomp.contains(&id) {
                return id;
            }
        }
    }

    /// Writes the session record if the session is persistent; the receipt resolves when durable.
    pub fn save_session(&self) -> Option<junction_core::DurableReceipt> {
        self.persistent.then(|| {
            let broker = &self.mqtt.broker;
            broker.put_session(self.vhost.name(), session::PROTOCOL, &self.id, self.session.encode())
        })
    }
}
