//! Queues: FIFO (per priority level) message stores with competing consumers, acks, requeues,
//! length limits, TTLs and dead-lettering. One mutex per queue guards its state; store writes
//! and dead-letter publishes happen after it is released (see `state::Effects`).

pub mod args;
pub mod consumer;
mod events;
mod dead_letter;
mod paged_state;
pub mod paging;
mod state;
pub mod stream;
mod timer;

pub use args::{Overflow, QueueArgs};
pub use consumer::{return_unsent, ChannelCredit, ConsumerEvent, ConsumerSpec};
pub use events::{event_channel, EventReceiver, EventSender};
pub use state::{DropReason, StoredBody};
pub use stream::StreamStart;

use crate::message::{Message, Table};
use crate::resources::Resources;
use crate::vhost::VHost;
use consumer::Consumer;
use paging::{Pager, Window};
use junction_storage::{Op, Store};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use state::{Effects, Entry, QueueState, Unacked};
use stream::StreamState;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The declared, persisted description of a queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueSpec {
    pub name: String,
    /// Stable numeric id naming the queue's log in the store.
    pub id: u64,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: Table,
}

impl QueueSpec {
    /// Same declaration as far as AMQP's equivalence rules go.
    pub fn equivalent(&self, other: &QueueSpec) -> bool {
        self.durable == other.durable
            && self.exclusive == other.exclusive
            && self.auto_delete == other.auto_delete
            && self.arguments.same_entries(&other.arguments)
    }
}

/// A message handed to a consumer or to `get`; acknowledge it with its `seq`.
#[derive(Debug)]
pub struct Delivery {
    pub queue: Arc<Queue>,
    pub seq: u64,
    pub message: Arc<Message>,
    pub redelivered: bool,
    pub consumer_tag: Arc<str>,
    /// The consumer's cookie (see `ConsumerSpec::cookie`); 0 for `get`.
    pub cookie: u64,
    /// The message already counts as acknowledged.
    pub no_ack: bool,
    /// Ready messages left in the queue after this one (for `basic.get-ok`).
    pub remaining: usize,
    /// The message's offset when it comes from a stream.
    pub stream_offset: Option<u64>,
}

/// Header on messages delivered from a stream: their offset.
pub const STREAM_OFFSET_HEADER: &str = "x-stream-offset";

impl Delivery {
    /// The message as its consumer sees it: a delivery from a stream carries its offset in the
    /// `x-stream-offset` header (a copy is made only then) — a long for AMQP, as RabbitMQ sends
    /// it, and text for the protocols whose headers are text (`as_text`), so that it needs no
    /// typed-values header there.
    pub fn as_delivered(&self, as_text: bool) -> std::borrow::Cow<'_, Message> {
        use crate::message::Value;
        match self.stream_offset {
            None => std::borrow::Cow::Borrowed(&self.message),
            Some(offset) => {
                let mut msg = Message::clone(&self.message);
                let value = if as_text { Value::str(&offset.to_string()) } else { Value::I64(i64::try_from(offset).unwrap_or(i64::MAX)) };
                msg.properties.headers.insert(STREAM_OFFSET_HEADER, value);
                std::borrow::Cow::Owned(msg)
            }
        }
    }
}

/// Counts shown to clients and operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounts {
    pub ready: usize,
    pub unacked: usize,
    pub consumers: usize,
    pub ready_bytes: usize,
    /// Ready messages whose bodies wait on disk only (see `paging`).
    pub paged_out: usize,
    /// Dropped from the head because the queue was full, since the broker started.
    pub overflow_drops: u64,
}

/// Message counts of one queue since the broker started (rates are derived by sampling them).
#[derive(Debug, Default)]
pub struct QueueStats {
    pub published: AtomicU64,
    pub delivered: AtomicU64,
    pub acked: AtomicU64,
}

pub struct Queue {
    /// Counters for operators.
    pub stats: QueueStats,
    spec: QueueSpec,
    args: QueueArgs,
    /// The connection that owns an exclusive queue.
    owner: Option<u64>,
    /// Present for durable queues: persistent messages are logged here.
    store: Option<Arc<Store>>,
    vhost: Weak<VHost>,
    resources: Arc<Resources>,
    state: Mutex<QueueState>,
    /// Present for streams, which keep their messages here instead of in `state`.
    stream: Option<Mutex<StreamState>>,
    /// Next message sequence number (for streams: the next offset).
    next_seq: AtomicU64,
    next_consumer_id: AtomicU64,
    timer: Notify,
    timer_running: AtomicBool,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("name", &self.spec.name).field("id", &self.spec.id).finish()
    }
}

impl Queue {
    pub(crate) fn new(
        spec: QueueSpec,
        args: QueueArgs,
        owner: Option<u64>,
        store: Option<Arc<Store>>,
        vhost: Weak<VHost>,
        resources: Arc<Resources>,
    ) -> Arc<Queue> {
        let levels = args.priority_levels();
        let stream = args.is_stream().then(|| Mutex::new(StreamState::new()));
        // Only messages in this queue's own log can be paged: a durable, shared, plain queue.
        let pageable = spec.durable && owner.is_none() && stream.is_none() && levels == 1;
        let pager = store.clone().filter(|_| pageable).map(|store| Pager {
            store,
            queue_id: spec.id,
            resources: resources.clone(),
            message_ttl_ms: args.message_ttl_ms,
            window: args.paging_window(),
            recovered_below: 0,
        });
        let first_seq = if stream.is_some() { 0 } else { 1 };
        let queue = Arc::new(Queue {
            stats: QueueStats::default(),
            spec,
            args,
            owner,
            store,
            vhost,
            resources,
            state: Mutex::new(QueueState::new(levels, pager)),
            stream,
            next_seq: AtomicU64::new(first_seq),
            next_consumer_id: AtomicU64::new(1),
            timer: Notify::new(),
            timer_running: AtomicBool::new(false),
        });
        if queue.args.expires_ms.is_some() || queue.args.message_ttl_ms.is_some() || queue.args.max_age_ms.is_some() {
            queue.ensure_timer();
        }
        queue
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn spec(&self) -> &QueueSpec {
        &self.spec
    }

    pub fn args(&self) -> &QueueArgs {
        &self.args
    }

    pub fn owner(&self) -> Option<u64> {
        self.owner
    }

    pub fn is_durable(&self) -> bool {
        self.spec.durable
    }

    pub fn is_deleted(&self) -> bool {
        self.state.lock().deleted
    }

    pub fn counts(&self) -> QueueCounts {
        if let Some(stream) = &self.stream {
            return self.stream_counts(&stream.lock());
        }
        let st = self.state.lock();
        QueueCounts {
            ready: st.ready_count(),
            unacked: st.unacked.len(),
            consumers: st.consumers.len(),
            ready_bytes: st.ready_bytes,
            paged_out: st.paged.as_ref().map_or(0, |p| p.on_disk),
            overflow_drops: st.overflow_drops,
        }
    }

    /// The queue's consumers, for operators: (tag, acknowledging, prefetch).
    pub fn consumer_list(&self) -> Vec<(Arc<str>, bool, u32)> {
        let describe = |c: &consumer::Consumer| (c.spec.tag.clone(), !c.spec.no_ack, c.spec.prefetch);
        match &self.stream {
            Some(stream) => stream.lock().readers.iter().map(|r| describe(&r.consumer)).collect(),
            None => self.state.lock().consumers.iter().map(describe).collect(),
        }
    }

    /// Marks the queue as used now (resets `x-expires`).
    pub fn touch(&self) {
        self.state.lock().last_used = Instant::now();
        self.timer.notify_one();
    }

    /// Reserves a sequence number for a new message, or refuses it when the queue is full and
    /// its overflow policy rejects publishes. Reserving before the store write and inserting
    /// after it keeps a message invisible to consumers until its log entry is submitted.
    pub(crate) fn reserve(&self, msg: &Arc<Message>) -> Option<u64> {
        if self.stream.is_none() && self.args.overflow != Overflow::DropHead && self.is_full_for(msg) {
            if self.args.overflow == Overflow::RejectPublishDlx {
                self.dead_letter(vec![(msg.clone(), DropReason::MaxLen)]);
            }
            return None;
        }
        Some(self.next_seq.fetch_add(1, Ordering::Relaxed))
    }

    fn is_full_for(&self, msg: &Message) -> bool {
        let st = self.state.lock();
        self.args.max_length.is_some_and(|max| st.ready_count() as u64 >= max)
            || self.args.max_length_bytes.is_some_and(|max| (st.ready_bytes + msg.size()) as u64 > max)
    }

    fn over_limit(&self, st: &QueueState) -> bool {
        self.args.max_length.is_some_and(|max| st.ready_count() as u64 > max)
            || self.args.max_length_bytes.is_some_and(|max| st.ready_bytes as u64 > max)
    }

    /// Makes a reserved message ready and hands it to a consumer if one has credit.
    pub(crate) fn accept(self: &Arc<Self>, seq: u64, msg: Arc<Message>, stored: Option<Arc<StoredBody>>) {
        let now = Instant::now();
        let ttl = [self.args.message_ttl_ms, msg.properties.expiration_ms].into_iter().flatten().min();
        let expires_at = ttl.map(|ms| now + Duration::from_millis(ms));
        let entry = Entry { seq, msg, stored, redelivered: false, returns: 0, expires_at };
        self.resources.add_message_bytes(entry.msg.memory_footprint());
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        if self.stream.is_some() {
            return self.stream_append(entry, false);
        }
        let mut fx = Effects::default();
        {
            let mut st = self.state.lock();
            if st.deleted {
                fx.released.push(entry);
            } else {
                st.push_ready(entry);
                while self.over_limit(&st) && st.drop_head(&mut fx) {}
                self.dispatch(&mut st, now, &mut fx);
            }
        }
        self.finish(fx);
        if expires_at.is_some() {
            self.ensure_timer();
            self.timer.notify_one();
        }
    }

    /// Re-inserts a message found in the store at start-up.
    /// Its expiry counts from when the message arrived, not from the restart.
    pub(crate) fn recover(self: &Arc<Self>, seq: u64, msg: Arc<Message>, stored: Arc<StoredBody>) {
        self.resources.add_message_bytes(msg.memory_footprint());
        let expires_at = self.recovered_deadline(&msg);
        // Whether it was delivered before the broker stopped is not recorded: flag it as a
        // possible redelivery (what the flag means in AMQP; RabbitMQ flags such messages too),
        // so that a consumer deduplicating at-least-once deliveries checks it.
        let redelivered = self.stream.is_none();
        let entry = Entry { seq, msg, stored: Some(stored), redelivered, returns: 0, expires_at };
        self.next_seq.fetch_max(seq + 1, Ordering::Relaxed);
        if self.stream.is_some() {
            return self.stream_append(entry, true);
        }
        let mut st = self.state.lock();
        st.note_recovered(seq);
        st.push_ready(entry);
        drop(st);
        if expires_at.is_some() {
            self.ensure_timer();
        }
    }

    /// Counts a message found in the store at start-up that stays there until consumers get
    /// near it (its body is not even read).
    pub(crate) fn recover_paged(&self, seq: u64, size: usize) {
        self.next_seq.fetch_max(seq + 1, Ordering::Relaxed);
        self.state.lock().recover_paged(seq, size);
    }

    /// The in-memory window of a queue that pages (see `paging`); `None` when it cannot.
    pub fn paging_window(&self) -> Option<Window> {
        self.state.lock().pager.as_ref().map(|p| p.window)
    }

    fn recovered_deadline(&self, msg: &Message) -> Option<Instant> {
        if self.stream.is_some() {
            return None;
        }
        paging::deadline_from_arrival(msg, self.args.message_ttl_ms)
    }

    /// Hands ready messages to consumers with credit, round robin.
    fn dispatch(self: &Arc<Self>, st: &mut QueueState, now: Instant, fx: &mut Effects) {
        // Check for a message before picking: picking advances the round robin.
        while st.has_ready() {
            let Some(index) = st.pick_consumer(&self.args) else { break };
            let Some(entry) = st.pop_ready(now, fx) else { break };
            let consumer = &mut st.consumers[index];
            let delivery_size = entry.msg.body.len();
            let delivery = Delivery {
                queue: self.clone(),
                seq: entry.seq,
                message: entry.msg.clone(),
                redelivered: entry.redelivered,
                consumer_tag: consumer.spec.tag.clone(),
                cookie: consumer.spec.cookie,
                no_ack: consumer.spec.no_ack,
                remaining: 0,
                stream_offset: None,
            };
            // Counted before it is sent: the adapter may write it out (and uncount it) at once.
            consumer.spec.channel_credit.queued(delivery_size);
            if consumer.spec.sink.send(ConsumerEvent::Deliver(Box::new(delivery))).is_err() {
                // The consumer's connection is gone; its channel cleanup will cancel it.
                consumer.spec.channel_credit.written(delivery_size);
                st.consumers.remove(index);
                st.push_ready(entry);
                continue;
            }
            self.stats.delivered.fetch_add(1, Ordering::Relaxed);
            if consumer.spec.no_ack {
                fx.released.push(entry);
            } else {
                consumer.unacked += 1;
                let credit = consumer.spec.channel_credit.clone();
                credit.in_flight.fetch_add(1, Ordering::AcqRel);
                let unacked = Unacked { entry, consumer: Some(consumer.id), credit: Some(credit) };
                st.unacked.insert(unacked.entry.seq, unacked);
            }
        }
    }

    /// Starts a consumer; messages flow at once if any are ready. A stream consumer starts
    /// with the next message published.
    pub fn consume(self: &Arc<Self>, spec: ConsumerSpec) -> crate::CoreResult<u64> {
        if self.stream.is_some() {
            return self.consume_stream(spec, StreamStart::Next, None);
        }
        let mut fx = Effects::default();
        let id = {
            let mut st = self.state.lock();
            if st.deleted {
                return Err(crate::CoreError::not_found(format!("no queue '{}'", self.name())));
            }
            if st.consumers.iter().any(|c| c.spec.exclusive) || (spec.exclusive && !st.consumers.is_empty()) {
                let vhost = self.vhost.upgrade().map(|v| v.name().to_string()).unwrap_or_default();
                return Err(crate::CoreError::refused(format!(
                    "queue '{}' in vhost '{vhost}' in exclusive use",
                    self.name()
                )));
            }
            let id = self.next_consumer_id.fetch_add(1, Ordering::Relaxed);
            st.consumers.push(Consumer { id, spec, unacked: 0 });
            st.had_consumers = true;
            st.last_used = Instant::now();
            self.dispatch(&mut st, Instant::now(), &mut fx);
            id
        };
        self.finish(fx);
        Ok(id)
    }

    /// Stops a consumer. Its unacknowledged messages stay unacknowledged until acked, rejected
    /// or their channel closes, as in AMQP.
    pub fn cancel(self: &Arc<Self>, consumer_id: u64) {
        if self.stream.is_some() {
            return self.stream_cancel(consumer_id);
        }
        let mut fx = Effects::default();
        {
            let mut st = self.state.lock();
            st.consumers.retain(|c| c.id != consumer_id);
            st.last_used = Instant::now();
            if st.consumers.is_empty() && st.had_consumers && self.spec.auto_delete && !st.deleted {
                fx.auto_delete = true;
            }
            self.dispatch(&mut st, Instant::now(), &mut fx);
        }
        self.timer.notify_one();
        self.finish(fx);
    }

    /// Acknowledges delivered messages: they leave the queue for good.
    pub fn ack(self: &Arc<Self>, seqs: &[u64]) {
        self.stats.acked.fetch_add(seqs.len() as u64, Ordering::Relaxed);
        if self.stream.is_some() {
            return self.stream_settle(seqs);
        }
        let mut fx = Effects::default();
        {
            let mut st = self.state.lock();
            for seq in seqs {
                if let Some(u) = st.unacked.remove(seq) {
                    st.return_credit(&u);
                    fx.released.push(u.entry);
                }
            }
            self.dispatch(&mut st, Instant::now(), &mut fx);
        }
        self.finish(fx);
    }

    /// Rejects delivered messages: back to their original position (marked redelivered), or
    /// dead-lettered / dropped. Past `x-delivery-limit` returns, a requeue dead-letters instead.
    pub fn reject(self: &Arc<Self>, seqs: &[u64], requeue: bool) {
        if self.stream.is_some() {
            // A stream never loses or re-queues a message: a rejection only returns credit.
            return self.stream_settle(seqs);
        }
        let mut fx = Effects::default();
        {
            let mut st = self.state.lock();
            for seq in seqs {
                let Some(u) = st.unacked.remove(seq) else { continue };
                st.return_credit(&u);
                let mut entry = u.entry;
                let reason = if !requeue {
                    Some(DropReason::Rejected)
                } else {
                    entry.returns += 1;
                    entry.redelivered = true;
                    let over = self.args.delivery_limit.is_some_and(|limit| entry.returns > limit);
                    over.then_some(DropReason::DeliveryLimit)
                };
                match reason {
                    Some(reason) if !st.deleted => {
                        fx.dead_letters.push((entry.msg.clone(), reason));
                        fx.released.push(entry);
                    }
                    _ if st.deleted => fx.released.push(entry),
                    _ => st.push_ready(entry),
                }
            }
            self.dispatch(&mut st, Instant::now(), &mut fx);
        }
        self.finish(fx);
    }

    /// Takes one ready message (AMQP `basic.get`). Streams have no "next" message to take
    /// (adapters refuse `get` on them); this returns `None` for a stream.
    pub fn get(self: &Arc<Self>, no_ack: bool) -> Option<Delivery> {
        if self.stream.is_some() {
            return None;
        }
        let mut fx = Effects::default();
        let delivery = {
            let mut st = self.state.lock();
            st.last_used = Instant::now();
            let entry = st.pop_ready(Instant::now(), &mut fx);
            entry.map(|entry| {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                let delivery = Delivery {
                    queue: self.clone(),
                    seq: entry.seq,
                    message: entry.msg.clone(),
                    redelivered: entry.redelivered,
                    consumer_tag: Arc::from(""),
                    cookie: 0,
                    no_ack,
                    remaining: st.ready_count(),
                    stream_offset: None,
                };
                if no_ack {
                    fx.released.push(entry);
                } else {
                    st.unacked.insert(entry.seq, Unacked { entry, consumer: None, credit: None });
                }
                delivery
            })
        };
        self.finish(fx);
        delivery
    }

    /// Offers ready messages to consumers again (a channel-wide prefetch window opened).
    pub fn kick(self: &Arc<Self>) {
        if self.stream.is_some() {
            return self.stream_kick();
        }
        let mut fx = Effects::default();
        {
            let mut st = self.state.lock();
            self.dispatch(&mut st, Instant::now(), &mut fx);
        }
        self.finish(fx);
    }

    /// Drops every ready message; returns how many. Streams are append-only: purging one
    /// removes nothing (adapters refuse it).
    pub fn purge(self: &Arc<Self>) -> usize {
        if self.stream.is_some() {
            return 0;
        }
        let mut fx = Effects::default();
        let n = self.state.lock().drain_ready(&mut fx);
        self.finish(fx);
        n
    }

    /// Empties the queue for deletion: consumers are told, messages are dropped, the log goes.
    /// Returns the number of ready messages it held.
    pub(crate) fn shut(&self) -> usize {
        let mut fx = Effects::default();
        let (ready, consumers) = {
            let mut st = self.state.lock();
            if st.deleted {
                return 0;
            }
            st.deleted = true;
            let ready = st.drain_ready(&mut fx);
            let unacked: Vec<Unacked> = st.unacked.drain().map(|(_, u)| u).collect();
            for u in &unacked {
                st.return_credit(u);
            }
            fx.released.extend(unacked.into_iter().map(|u| u.entry));
            (ready, std::mem::take(&mut st.consumers))
        };
        let (ready, consumers) = match &self.stream {
            Some(stream) => self.shut_stream(stream, &mut fx),
            None => (ready, consumers),
        };
        for c in consumers {
            let _ = c.spec.sink.send(ConsumerEvent::Cancelled { tag: c.spec.tag.clone(), cookie: c.spec.cookie });
        }
        let mut ops = self.release(&fx.released, false);
        if let Some(store) = &self.store {
            if let Some(away) = fx.paged_away.take() {
                // Read before the log is dropped: the paged bodies are found through it.
                Pager::release(store, self.spec.id, away);
            }
            ops.push(Op::DropQueueLog { queue_id: self.spec.id });
        }
        self.submit(ops);
        self.timer.notify_one();
        ready
    }

    /// Store operations for entries leaving the queue; updates memory accounting.
    fn release(&self, entries: &[Entry], per_entry: bool) -> Vec<Op> {
        let mut ops = Vec::new();
        for entry in entries {
            self.resources.sub_message_bytes(entry.msg.memory_footprint());
            let Some(stored) = &entry.stored else { continue };
            if per_entry {
                ops.push(Op::Dequeue { queue_id: self.spec.id, seq: entry.seq });
            }
            if stored.refs.fetch_sub(1, Ordering::AcqRel) == 1 {
                ops.push(Op::DeleteBody { id: stored.id });
            }
        }
        ops
    }

    fn submit(&self, ops: Vec<Op>) {
        if let (Some(store), false) = (&self.store, ops.is_empty()) {
            store.submit(ops);
        }
    }

    /// Does what `Effects` asks once the lock is released.
    fn finish(self: &Arc<Self>, fx: Effects) {
        let ops = self.release(&fx.released, true);
        self.submit(ops);
        if let (Some(store), Some(away)) = (&self.store, fx.paged_away) {
            Pager::release(store, self.spec.id, away);
        }
        if !fx.dead_letters.is_empty() {
            self.dead_letter(fx.dead_letters);
        }
        if fx.auto_delete {
            if let Some(vhost) = self.vhost.upgrade() {
                vhost.remove_queue(self);
            }
        }
    }
}
