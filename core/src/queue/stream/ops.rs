//! The queue operations of a stream: appending, reading from offsets, settling, retention and
//! deletion. `Queue`'s public methods branch here when the queue is a stream.

use super::{OffsetUpdate, StreamStart, StreamState};
use crate::persist::Record;
use crate::queue::consumer::{Consumer, ConsumerEvent, ConsumerSpec};
use crate::queue::state::{Effects, Entry};
use crate::queue::{Delivery, Queue, QueueCounts};
use crate::CoreResult;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl Queue {
    pub fn is_stream(&self) -> bool {
        self.stream.is_some()
    }

    fn stream_state(&self) -> &Mutex<StreamState> {
        self.stream.as_ref().expect("called on a stream")
    }

    pub(in crate::queue) fn stream_counts(&self, st: &StreamState) -> QueueCounts {
        QueueCounts {
            ready: st.len(),
            unacked: st.unacked.len(),
            consumers: st.readers.len(),
            ready_bytes: st.bytes(),
            paged_out: 0,
            overflow_drops: 0,
        }
    }

    /// The first retained offset and one past the last (an empty stream has them equal).
    pub fn stream_bounds(&self) -> Option<(u64, u64)> {
        let st = self.stream.as_ref()?.lock();
        Some((st.first_offset(), st.end_offset()))
    }

    /// Appends a message at its reserved offset and feeds the readers (not while recovering:
    /// nobody reads yet, and retention runs once the log is whole).
    pub(in crate::queue) fn stream_append(self: &Arc<Self>, entry: Entry, recovering: bool) {
        let mut fx = Effects::default();
        {
            let mut st = self.stream_state().lock();
            if st.deleted {
                fx.released.push(entry);
                drop(st);
                return self.finish(fx);
            }
            if recovering {
                st.recover(entry, self.args.segment_bytes);
            } else {
                st.insert(entry, self.args.segment_bytes);
            }
            if !recovering {
                fx.released = st.enforce_retention(self.args.max_length_bytes, self.args.max_age_ms, crate::message::now_ms());
                self.feed_readers(&mut st);
            }
        }
        self.finish(fx);
    }

    /// Applies retention now (the timer's periodic pass, and after recovery). Returns when the
    /// head segment next becomes too old, in ms since the epoch.
    pub(in crate::queue) fn stream_retention(self: &Arc<Self>) -> Option<u64> {
        let mut fx = Effects::default();
        let next = {
            let mut st = self.stream_state().lock();
            let now = crate::message::now_ms();
            fx.released = st.enforce_retention(self.args.max_length_bytes, self.args.max_age_ms, now);
            self.args.max_age_ms.and_then(|age| st.next_age_deadline(age))
        };
        self.finish(fx);
        next
    }

    /// Starts a stream consumer at `start`, or where the reader `name` left off.
    /// On a classic queue this is a plain `consume`.
    pub fn consume_stream(self: &Arc<Self>, spec: ConsumerSpec, start: StreamStart, name: Option<String>) -> CoreResult<u64> {
        if self.stream.is_none() {
            return self.consume(spec);
        }
        let id = self.next_consumer_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut st = self.stream_state().lock();
            if st.deleted {
                return Err(crate::CoreError::not_found(format!("no queue '{}'", self.name())));
            }
            let next = st.start_offset(start, name.as_deref());
            st.add_reader(Consumer { id, spec, unacked: 0 }, next, name);
            self.feed_readers(&mut st);
        }
        self.touch();
        Ok(id)
    }

    pub(in crate::queue) fn stream_cancel(self: &Arc<Self>, consumer_id: u64) {
        let update = self.stream_state().lock().remove_reader(consumer_id);
        self.save_positions(update.into_iter().collect());
        self.touch();
    }

    pub(in crate::queue) fn stream_settle(self: &Arc<Self>, deliveries: &[u64]) {
        let updates = {
            let mut st = self.stream_state().lock();
            for id in deliveries {
                st.settle(*id);
            }
            self.feed_readers(&mut st);
            st.positions_to_save()
        };
        self.save_positions(updates);
    }

    pub(in crate::queue) fn stream_kick(self: &Arc<Self>) {
        let updates = {
            let mut st = self.stream_state().lock();
            self.feed_readers(&mut st);
            st.positions_to_save()
        };
        self.save_positions(updates);
    }

    /// Restores a named reader's position found in the store.
    pub(crate) fn restore_stream_position(&self, name: String, offset: u64) {
        if let Some(stream) = &self.stream {
            stream.lock().restore_position(name, offset);
        }
    }

    /// Hands each reader the messages it has credit for; readers whose connection is gone are
    /// dropped (their channel cleanup cancels them too).
    fn feed_readers(self: &Arc<Self>, st: &mut StreamState) {
        let mut index = 0;
        while index < st.readers.len() {
            let mut gone = false;
            while let Some((id, offset, entry)) = st.next_for(index) {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                let reader = &st.readers[index].consumer.spec;
                let delivery = Delivery {
                    queue: self.clone(),
                    seq: id,
                    message: entry.msg,
                    redelivered: false,
                    consumer_tag: reader.tag.clone(),
                    cookie: reader.cookie,
                    no_ack: reader.no_ack,
                    remaining: 0,
                    stream_offset: Some(offset),
                };
                if reader.sink.send(ConsumerEvent::Deliver(Box::new(delivery))).is_err() {
                    st.settle(id);
                    gone = true;
                    break;
                }
            }
            if gone {
                st.readers.remove(index);
            } else {
                index += 1;
            }
        }
    }

    fn save_positions(&self, updates: Vec<OffsetUpdate>) {
        let (Some(store), Some(vhost)) = (&self.store, self.vhost.upgrade()) else { return };
        if updates.is_empty() {
            return;
        }
        let ops = updates.into_iter().map(|u| self.position_record(vhost.name(), u.name, u.offset).put()).collect();
        store.submit(ops);
    }

    fn position_record(&self, vhost: &str, consumer: String, offset: u64) -> Record {
        Record::StreamOffset { vhost: vhost.to_string(), queue: self.name().to_string(), consumer, offset }
    }

    /// Empties a stream being deleted: its log, its readers (returned to be told) and its
    /// stored positions. Returns how many messages it held.
    pub(in crate::queue) fn shut_stream(&self, stream: &Mutex<StreamState>, fx: &mut Effects) -> (usize, Vec<Consumer>) {
        let mut st = stream.lock();
        st.deleted = true;
        let held = st.len();
        fx.released.extend(st.take_all());
        let ids: Vec<u64> = st.unacked.keys().copied().collect();
        for id in ids {
            st.settle(id);
        }
        if let (Some(store), Some(vhost)) = (&self.store, self.vhost.upgrade()) {
            let names: Vec<String> = st.position_names().cloned().collect();
            let ops = names.into_iter().map(|n| self.position_record(vhost.name(), n, 0).delete()).collect();
            store.submit(ops);
        }
        (held, st.readers.drain(..).map(|r| r.consumer).collect())
    }
}
