//! Streams (`x-queue-type: stream`, RabbitMQ's semantics): an append-only log that consuming
//! does not change. Every message gets the next offset; each consumer reads from its own
//! position, so any number of readers share one copy (`Arc<Message>`). Retention drops whole
//! segments from the head, by age (`x-max-age`) or total size (`x-max-length-bytes`), and the
//! store deletes their log entries as one range.
//!
//! Acknowledgements only return credit. A named consumer (`x-stream-consumer-name`) has its
//! position stored server-side: the oldest offset it has not acknowledged, so a consumer that
//! comes back under the same name resumes there.

mod ops;
mod start;

pub use start::StreamStart;

use super::consumer::{ChannelCredit, Consumer};
use super::state::Entry;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

/// A run of consecutive offsets (from the previous segment's end); retention removes a
/// segment as a whole.
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// One past the last offset.
    end: u64,
    bytes: u64,
    /// Arrival time of its newest message (ms since the epoch).
    newest_ms: u64,
}

/// One consumer reading the stream.
pub(crate) struct Reader {
    pub consumer: Consumer,
    /// The next offset to hand out.
    pub next: u64,
    pub name: Option<String>,
    /// Offsets delivered and not yet acknowledged.
    outstanding: BTreeSet<u64>,
    /// The position last written to the store for a named reader.
    saved: u64,
}

impl Reader {
    /// Where this reader would resume: its oldest unacknowledged offset, or its next one.
    fn committed(&self) -> u64 {
        self.outstanding.first().copied().unwrap_or(self.next)
    }
}

/// A delivery waiting for its acknowledgement.
pub(crate) struct StreamUnacked {
    pub reader: u64,
    pub offset: u64,
    pub credit: Arc<ChannelCredit>,
}

/// A named reader's position that must be written to the store.
pub(crate) struct OffsetUpdate {
    pub name: String,
    pub offset: u64,
}

pub(crate) struct StreamState {
    /// Offset of `entries[0]`.
    base: u64,
    /// One slot per offset from `base`; `None` while a reserved offset's message is in flight.
    entries: VecDeque<Option<Entry>>,
    /// Offsets below this are all present and readable.
    end: u64,
    segments: VecDeque<Segment>,
    bytes: u64,
    pub readers: Vec<Reader>,
    pub unacked: HashMap<u64, StreamUnacked>,
    next_delivery: u64,
    /// Stored positions of named readers.
    positions: HashMap<String, u64>,
    /// The stream was deleted: nothing is appended or read any more.
    pub deleted: bool,
}

impl StreamState {
    pub fn new() -> StreamState {
        StreamState {
            base: 0,
            entries: VecDeque::new(),
            end: 0,
            segments: VecDeque::new(),
            bytes: 0,
            readers: Vec::new(),
            unacked: HashMap::new(),
            next_delivery: 1,
            positions: HashMap::new(),
            deleted: false,
        }
    }

    pub fn len(&self) -> usize {
        (self.end - self.base) as usize
    }

    pub fn bytes(&self) -> usize {
        self.bytes as usize
    }

    pub fn first_offset(&self) -> u64 {
        self.base
    }

    pub fn end_offset(&self) -> u64 {
        self.end
    }

    /// Places a message found in the store at start-up: the log starts at the first offset
    /// retention left (recovery goes in offset order).
    ///
    /// A crash can leave a hole (a later offset was stored before an earlier one): the missing
    /// offsets are skipped, or the stream would stop at the hole for ever.
    pub fn recover(&mut self, entry: Entry, segment_bytes: u64) {
        if self.entries.is_empty() && entry.seq > self.end {
            self.base = entry.seq;
            self.end = entry.seq;
        }
        if entry.seq > self.end {
            self.entries.resize((entry.seq - self.base) as usize, None);
            self.end = entry.seq;
        }
        self.insert(entry, segment_bytes);
    }

    /// Places a message at its offset. Offsets are reserved in order but publishers may finish
    /// out of order, so readers only see up to the first gap.
    pub fn insert(&mut self, entry: Entry, segment_bytes: u64) {
        let offset = entry.seq;
        if offset < self.base {
            return;
        }
        let index = (offset - self.base) as usize;
        if self.entries.len() <= index {
            self.entries.resize(index + 1, None);
        }
        self.entries[index] = Some(entry);
        while let Some(Some(e)) = self.entries.get((self.end - self.base) as usize) {
            let (size, arrived) = (e.msg.size() as u64, e.msg.arrived_at_ms);
            self.account(self.end, size, arrived, segment_bytes);
            self.end += 1;
        }
    }

    fn account(&mut self, offset: u64, size: u64, arrived_ms: u64, segment_bytes: u64) {
        self.bytes += size;
        match self.segments.back_mut() {
            Some(seg) if seg.bytes < segment_bytes => {
                seg.end = offset + 1;
                seg.bytes += size;
                seg.newest_ms = seg.newest_ms.max(arrived_ms);
            }
            _ => self.segments.push_back(Segment { end: offset + 1, bytes: size, newest_ms: arrived_ms }),
        }
    }

    /// Drops head segments beyond the retention limits; never the segment being written.
    pub fn enforce_retention(&mut self, max_bytes: Option<u64>, max_age_ms: Option<u64>, now_ms: u64) -> Vec<Entry> {
        let mut dropped = Vec::new();
        while self.segments.len() > 1 {
            let head = self.segments[0];
            let too_big = max_bytes.is_some_and(|max| self.bytes > max);
            let too_old = max_age_ms.is_some_and(|age| head.newest_ms.saturating_add(age) < now_ms);
            if !too_big && !too_old {
                break;
            }
            self.segments.pop_front();
            self.bytes -= head.bytes;
            // Everything below the segment's end goes, skipped offsets (holes) included.
            for _ in self.base..head.end {
                dropped.extend(self.entries.pop_front().flatten());
            }
            self.base = head.end;
        }
        dropped
    }

    /// When the head segment will be old enough to go (ms since the epoch).
    pub fn next_age_deadline(&self, max_age_ms: u64) -> Option<u64> {
        (self.segments.len() > 1).then(|| self.segments[0].newest_ms.saturating_add(max_age_ms))
    }

    /// Every retained message, for deletion.
    pub fn take_all(&mut self) -> Vec<Entry> {
        self.segments.clear();
        self.bytes = 0;
        self.base = self.end;
        self.entries.drain(..).flatten().collect()
    }

    /// The offset a new reader starts at; a named reader seen before resumes where it was.
    pub fn start_offset(&self, start: StreamStart, name: Option<&str>) -> u64 {
        if let Some(saved) = name.and_then(|n| self.positions.get(n)) {
            return (*saved).clamp(self.base, self.end);
        }
        match start {
            StreamStart::First => self.base,
            StreamStart::Last => self.end.saturating_sub(1).max(self.base),
            StreamStart::Next => self.end,
            StreamStart::Offset(n) => n.clamp(self.base, self.end),
            StreamStart::Timestamp(ms) => {
                // Arrival times grow with offsets (up to publishers racing within a millisecond).
                let before = self.entries.partition_point(|e| e.as_ref().is_some_and(|e| e.msg.arrived_at_ms < ms));
                self.base + (before as u64).min(self.len() as u64)
            }
        }
    }

    pub fn add_reader(&mut self, consumer: Consumer, next: u64, name: Option<String>) {
        self.readers.push(Reader { consumer, next, name, outstanding: BTreeSet::new(), saved: next });
    }

    pub fn remove_reader(&mut self, consumer_id: u64) -> Option<OffsetUpdate> {
        let pos = self.readers.iter().position(|r| r.consumer.id == consumer_id)?;
        let reader = self.readers.remove(pos);
        let name = reader.name.clone()?;
        let offset = reader.committed();
        self.positions.insert(name.clone(), offset);
        (offset != reader.saved).then_some(OffsetUpdate { name, offset })
    }

    /// Restores a named reader's stored position (start-up).
    pub fn restore_position(&mut self, name: String, offset: u64) {
        self.positions.insert(name, offset);
    }

    pub fn position_names(&self) -> impl Iterator<Item = &String> {
        self.positions.keys()
    }

    /// The next delivery for reader `index`, if it has credit and there is a message for it:
    /// `(delivery id, offset, entry)`. Moves the reader on and records the unacked delivery.
    pub fn next_for(&mut self, index: usize) -> Option<(u64, u64, Entry)> {
        let base = self.base;
        let reader = &mut self.readers[index];
        reader.next = reader.next.max(base);
        // Offsets lost in a crash (holes) are passed over.
        while reader.next < self.end && self.entries[(reader.next - base) as usize].is_none() {
            reader.next += 1;
        }
        if reader.next >= self.end || !reader.consumer.has_credit() {
            return None;
        }
        let offset = reader.next;
        let entry = self.entries[(offset - base) as usize].clone()?;
        reader.next += 1;
        let id = self.next_delivery;
        self.next_delivery += 1;
        let credit = reader.consumer.spec.channel_credit.clone();
        credit.queued(entry.msg.body.len());
        if !reader.consumer.spec.no_ack {
            reader.consumer.unacked += 1;
            reader.outstanding.insert(offset);
            credit.in_flight.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            self.unacked.insert(id, StreamUnacked { reader: reader.consumer.id, offset, credit });
        }
        Some((id, offset, entry))
    }

    /// Settles a delivery (ack, nack and reject all just return its credit).
    pub fn settle(&mut self, delivery: u64) {
        let Some(u) = self.unacked.remove(&delivery) else { return };
        let _ = u.credit.in_flight.fetch_update(
            std::sync::atomic::Ordering::AcqRel,
            std::sync::atomic::Ordering::Acquire,
            |v| v.checked_sub(1),
        );
        if let Some(reader) = self.readers.iter_mut().find(|r| r.consumer.id == u.reader) {
            reader.consumer.unacked = reader.consumer.unacked.saturating_sub(1);
            reader.outstanding.remove(&u.offset);
        }
    }

    /// Named readers whose resume point moved far enough to be worth writing down: every
    /// `SAVE_EVERY` messages (and when the reader stops), not one store write per message.
    pub fn positions_to_save(&mut self) -> Vec<OffsetUpdate> {
        const SAVE_EVERY: u64 = 128;
        let mut out = Vec::new();
        for reader in &mut self.readers {
            let Some(name) = &reader.name else { continue };
            let committed = reader.committed();
            if committed >= reader.saved + SAVE_EVERY {
                reader.saved = committed;
                self.positions.insert(name.clone(), committed);
                out.push(OffsetUpdate { name: name.clone(), offset: committed });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
