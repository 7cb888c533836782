//! The mutable heart of a queue: ready messages by priority, delivered-but-unacked messages, and
//! consumers. Everything here runs under the queue's lock and does no I/O; what must happen
//! outside the lock (store writes, dead-lettering, notifications) is collected in `Effects`.

use super::args::QueueArgs;
use super::consumer::{ChannelCredit, Consumer};
use super::paging::{Paged, PagedAway, Pager};
use crate::message::Message;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A message body written to the store once and shared by every durable queue holding it.
#[derive(Debug)]
pub struct StoredBody {
    pub id: u64,
    /// How many queue logs still hold the body; the last one out deletes it.
    pub refs: AtomicU32,
}

/// One message in one queue.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub msg: Arc<Message>,
    /// Set when this queue's log on disk holds the message.
    pub stored: Option<Arc<StoredBody>>,
    pub redelivered: bool,
    /// Times the message was handed back (nack/reject with requeue, consumer gone).
    pub returns: u32,
    pub expires_at: Option<Instant>,
}

impl Entry {
    pub fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| now > t)
    }
}

/// Why a message leaves a queue without being consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    Rejected,
    Expired,
    MaxLen,
    DeliveryLimit,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Rejected => "rejected",
            DropReason::Expired => "expired",
            DropReason::MaxLen => "maxlen",
            DropReason::DeliveryLimit => "delivery_limit",
        }
    }
}

/// Work to do once the queue lock is released.
#[derive(Default)]
pub struct Effects {
    /// Entries that left the queue for good (acked, dropped, purged): their log entries go.
    pub released: Vec<Entry>,
    pub dead_letters: Vec<(Arc<Message>, DropReason)>,
    /// The queue became unused and is auto-delete.
    pub auto_delete: bool,
    /// Paged-out messages that left the queue (purge, delete): their log entries and bodies go.
    pub paged_away: Option<PagedAway>,
}

pub struct Unacked {
    pub entry: Entry,
    pub consumer: Option<u64>,
    /// The delivering channel's credit, returned on ack even if the consumer is gone.
    pub credit: Option<Arc<ChannelCredit>>,
}

pub struct QueueState {
    /// Ready messages in memory, one deque per priority level, each ordered by seq. A paging
    /// queue has one level: its head, older than every paged message.
    pub ready: Vec<VecDeque<Entry>>,
    /// Body bytes of every ready message, paged or not.
    pub ready_bytes: usize,
    /// Present for queues that may page ready messages out to the store (see `paging`).
    pub pager: Option<Pager>,
    /// Ready messages newer than the head, left on disk.
    pub paged: Option<Paged>,
    /// The highest seq ever put among the ready messages: a paged range only starts above it,
    /// so that no message elsewhere (delivered, in the head) has a seq inside the range.
    pub highest_pushed: u64,
    pub unacked: HashMap<u64, Unacked>,
    pub consumers: Vec<Consumer>,
    /// Round-robin position among consumers.
    pub next_consumer: usize,
    pub had_consumers: bool,
    pub last_used: Instant,
    pub deleted: bool,
    /// Messages dropped from the head because the queue was full (`x-overflow` drop-head).
    pub overflow_drops: u64,
}

impl QueueState {
    pub fn new(levels: usize, pager: Option<Pager>) -> QueueState {
        QueueState {
            ready: (0..levels).map(|_| VecDeque::new()).collect(),
            ready_bytes: 0,
            pager: pager.filter(|_| levels == 1),
            paged: None,
            highest_pushed: 0,
            unacked: HashMap::new(),
            consumers: Vec::new(),
            next_consumer: 0,
            had_consumers: false,
            last_used: Instant::now(),
            deleted: false,
            overflow_drops: 0,
        }
    }

    pub fn has_ready(&self) -> bool {
        self.paged.is_some() || self.ready.iter().any(|d| !d.is_empty())
    }

    pub fn ready_count(&self) -> usize {
        self.ready.iter().map(VecDeque::len).sum::<usize>() + self.paged.as_ref().map_or(0, Paged::len)
    }

    /// Body bytes of the ready messages in the head.
    pub(super) fn head_bytes(&self) -> usize {
        self.ready_bytes - self.paged.as_ref().map_or(0, |p| p.bytes)
    }

    fn level_of(&self, msg: &Message) -> usize {
        let top = self.ready.len() - 1;
        (msg.properties.priority.unwrap_or(0) as usize).min(top)
    }

    /// Puts an entry among the ready messages at its seq position (new messages land at the
    /// tail; requeued ones go back where they were). A paging queue sends it to its paged range
    /// instead when it belongs there (see `paged_state`).
    pub fn push_ready(&mut self, entry: Entry) {
        self.ready_bytes += entry.msg.size();
        let Some(entry) = self.offer_to_range(entry) else { return };
        let level = self.level_of(&entry.msg);
        let deque = &mut self.ready[level];
        let at_tail = deque.back().is_none_or(|last| last.seq < entry.seq);
        if at_tail {
            deque.push_back(entry);
        } else {
            let pos = deque.partition_point(|e| e.seq < entry.seq);
            deque.insert(pos, entry);
        }
    }

    /// The oldest ready message of the highest non-empty priority; expired heads are dropped
    /// on the way (messages expire only when they reach the head, as in RabbitMQ).
    pub fn pop_ready(&mut self, now: Instant, fx: &mut Effects) -> Option<Entry> {
        loop {
            self.refill();
            for level in (0..self.ready.len()).rev() {
                while let Some(entry) = self.ready[level].pop_front() {
                    self.ready_bytes -= entry.msg.size();
                    if entry.expired(now) {
                        fx.dead_letters.push((entry.msg.clone(), DropReason::Expired));
                        fx.released.push(entry);
                        continue;
                    }
                    return Some(entry);
                }
            }
            // The head expired away while messages wait on disk: read on, unless reading
            // brings nothing back (the store failed).
            if self.paged.is_none() || !self.page_in_once() {
                return None;
            }
        }
    }

    /// Drops the oldest ready message (for `x-overflow: drop-head`).
    pub fn drop_head(&mut self, fx: &mut Effects) -> bool {
        self.refill();
        for level in 0..self.ready.len() {
            if let Some(entry) = self.ready[level].pop_front() {
                self.ready_bytes -= entry.msg.size();
                self.overflow_drops += 1;
                fx.dead_letters.push((entry.msg.clone(), DropReason::MaxLen));
                fx.released.push(entry);
                return true;
            }
        }
        false
    }

    /// Drops expired messages at the heads and returns the earliest remaining head deadline.
    /// A paging queue reads a few windows back per call; if its head is still all expired after
    /// them, it asks to be called again at once.
    pub fn expire_heads(&mut self, now: Instant, fx: &mut Effects) -> Option<Instant> {
        const WINDOWS_PER_CALL: usize = 8;
        for _ in 0..WINDOWS_PER_CALL {
            self.refill();
            let next = self.expire_in_memory(now, fx);
            if next.is_some() || self.paged.is_none() || !self.ready[0].is_empty() {
                return next;
            }
        }
        Some(now)
    }

    fn expire_in_memory(&mut self, now: Instant, fx: &mut Effects) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for level in 0..self.ready.len() {
            while self.ready[level].front().is_some_and(|e| e.expired(now)) {
                let entry = self.ready[level].pop_front().expect("front exists");
                self.ready_bytes -= entry.msg.size();
                fx.dead_letters.push((entry.msg.clone(), DropReason::Expired));
                fx.released.push(entry);
            }
            if let Some(t) = self.ready[level].front().and_then(|e| e.expires_at) {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        next
    }

    /// Index of the next consumer able to take a message, round robin. With a single active
    /// consumer only the oldest consumer is ever eligible.
    pub fn pick_consumer(&mut self, args: &QueueArgs) -> Option<usize> {
        let n = self.consumers.len();
        if n == 0 {
            return None;
        }
        if args.single_active_consumer {
            return self.consumers[0].has_credit().then_some(0);
        }
        for step in 0..n {
            let i = (self.next_consumer + step) % n;
            if self.consumers[i].has_credit() {
                self.next_consumer = i + 1;
                return Some(i);
            }
        }
        None
    }

    /// Returns a delivered message's credit to its consumer and channel.
    pub fn return_credit(&mut self, unacked: &Unacked) {
        if let Some(id) = unacked.consumer {
            if let Some(c) = self.consumers.iter_mut().find(|c| c.id == id) {
                c.unacked = c.unacked.saturating_sub(1);
            }
        }
        if let Some(credit) = &unacked.credit {
            let _ = credit.in_flight.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1));
        }
    }

    /// Takes every message out (purge: ready only; delete: ready and unacked).
    pub fn drain_ready(&mut self, fx: &mut Effects) -> usize {
        let mut n = 0;
        for deque in &mut self.ready {
            n += deque.len();
            fx.released.extend(deque.drain(..));
        }
        if let Some(paged) = self.paged.take() {
            n += paged.len();
            let pinned: Vec<u64> = paged.pinned.keys().copied().collect();
            fx.released.extend(paged.pinned.into_values());
            fx.released.extend(paged.waiting.into_values());
            fx.paged_away = Some(PagedAway { first: paged.first, last: paged.last, ticket: paged.ticket, pinned });
        }
        self.ready_bytes = 0;
        n
    }
}
