//! Consumers as a queue sees them: where to send deliveries and how much credit they have.

use super::Delivery;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use super::events::{EventReceiver, EventSender};

/// What a queue tells a consumer.
#[derive(Debug)]
pub enum ConsumerEvent {
    /// Boxed: an event waiting in a connection's channel then costs a pointer and the channel's
    /// deque stays small.
    Deliver(Box<Delivery>),
    /// The queue went away (deleted, expired); the consumer with this tag is cancelled.
    Cancelled { tag: Arc<str>, cookie: u64 },
}

/// Hands back the deliveries still waiting in a connection's event channel when the connection
/// ends, in order: each counts as unacknowledged in its queue until settled. Call it once the
/// connection's consumers are cancelled; the channel is closed first, so nothing arrives after.
pub fn return_unsent(events: &mut EventReceiver) {
    events.close();
    while let Some(event) = events.try_recv() {
        if let ConsumerEvent::Deliver(d) = event {
            if !d.no_ack {
                d.queue.reject(&[d.seq], true);
            }
        }
    }
}

/// Deliveries a channel may have queued towards its connection but not yet written out. Bounds
/// the adapter's delivery buffer even for no-ack and unlimited-prefetch consumers.
pub const SEND_WINDOW: u32 = 1024;
/// The same bound in body bytes: with large messages the broker keeps at most this much (plus
/// one message) waiting for a connection that reads slowly, before its queues stop dispatching
/// to it. (A connection that reads nothing at all is dropped after `net::WRITE_STALL_TIMEOUT`.)
pub const SEND_WINDOW_BYTES: u64 = 4 << 20;

/// Credit shared by every consumer of one channel (of one connection for MQTT and STOMP): the
/// prefetch window (AMQP `basic.qos` with `global=true`; a limit of 0 means no limit) and the
/// send window.
#[derive(Debug, Default)]
pub struct ChannelCredit {
    pub limit: AtomicU32,
    /// Delivered and not yet acknowledged.
    pub in_flight: AtomicU32,
    /// Handed to the adapter and not yet written to the network: deliveries and body bytes.
    queued: AtomicU32,
    queued_bytes: AtomicU64,
}

impl ChannelCredit {
    pub fn has_room(&self) -> bool {
        let limit = self.limit.load(Ordering::Acquire);
        (limit == 0 || self.in_flight.load(Ordering::Acquire) < limit) && self.send_window_open()
    }

    fn send_window_open(&self) -> bool {
        Self::window_open(self.queued.load(Ordering::Acquire), self.queued_bytes.load(Ordering::Acquire))
    }

    fn window_open(queued: u32, bytes: u64) -> bool {
        queued < SEND_WINDOW && bytes < SEND_WINDOW_BYTES
    }

    /// A queue handed the adapter a delivery with a body of `bytes`.
    pub fn queued(&self, bytes: usize) {
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.queued_bytes.fetch_add(bytes as u64, Ordering::AcqRel);
    }

    /// The adapter wrote out a delivery with a body of `bytes`. True when that reopened a full
    /// send window: the adapter should then offer its queues the chance to deliver again
    /// (`Queue::kick`). A queue only stops dispatching after seeing the window full, and the
    /// write that takes it below its bounds sees it full just before, so no reopening is missed.
    pub fn written(&self, bytes: usize) -> bool {
        let count = self.queued.fetch_sub(1, Ordering::AcqRel);
        let size = self.queued_bytes.fetch_sub(bytes as u64, Ordering::AcqRel);
        !Self::window_open(count, size) && Self::window_open(count.wrapping_sub(1), size.wrapping_sub(bytes as u64))
    }
}

/// What a protocol adapter supplies when it starts consuming.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub tag: Arc<str>,
    /// Messages count as acknowledged the moment they are sent.
    pub no_ack: bool,
    /// No other consumer may use the queue while this one exists.
    pub exclusive: bool,
    /// Per-consumer prefetch; 0 means unlimited.
    pub prefetch: u32,
    pub channel_credit: Arc<ChannelCredit>,
    pub sink: EventSender,
    /// Opaque to the core and copied into every delivery: lets an adapter that funnels many
    /// consumers into one sink tell them apart (AMQP uses the channel number).
    pub cookie: u64,
}

#[derive(Debug)]
pub struct Consumer {
    pub id: u64,
    pub spec: ConsumerSpec,
    pub unacked: u32,
}

impl Consumer {
    pub fn has_credit(&self) -> bool {
        if self.spec.no_ack {
            return self.spec.channel_credit.send_window_open();
        }
        (self.spec.prefetch == 0 || self.unacked < self.spec.prefetch) && self.spec.channel_credit.has_room()
    }
}
