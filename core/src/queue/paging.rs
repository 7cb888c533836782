//! Paging: a durable queue whose backlog outgrows its in-memory window keeps only its oldest
//! ready messages in memory (the head consumers take from) and leaves the newer ones in the
//! store's queue log, where they were written anyway, reading them back in batches as the head
//! drains. Memory stays bounded however long the backlog grows.
//!
//! A message is paged out only when the store holds everything needed to bring it back: it is
//! persistent, in this queue's log alone (a body shared with other queues is reference counted
//! in memory), and not delivered before. Others inside the paged range stay in memory, pinned.

use super::state::{Entry, StoredBody};
use crate::message::{now_ms, Message};
use crate::resources::Resources;
use junction_storage::{LogEntry, Op, Store};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Ready messages a queue keeps in memory before paging, unless `x-queue-mode` is `lazy`.
pub const DEFAULT_WINDOW_MESSAGES: usize = 8192;
/// Body bytes of ready messages a queue keeps in memory before paging.
pub const DEFAULT_WINDOW_BYTES: usize = 16 << 20;
/// The window of a lazy queue (`x-queue-mode: lazy`): almost everything waits on disk.
pub const LAZY_WINDOW_MESSAGES: usize = 16;
/// Log entries read per round trip when a paged-out queue is purged or deleted.
const RELEASE_BATCH: usize = 8192;

/// The in-memory window of ready messages (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub messages: usize,
    pub bytes: usize,
}

/// Where a queue's paged-out messages live and how to bring them back.
pub struct Pager {
    pub store: Arc<Store>,
    pub queue_id: u64,
    pub resources: Arc<Resources>,
    pub message_ttl_ms: Option<u64>,
    pub window: Window,
    /// Messages below this seq were recovered after a restart: they come back flagged as
    /// possibly delivered before.
    pub recovered_below: u64,
}

/// Messages with seqs in `first..=last`: on disk only, except the pinned ones (see
/// `paged_state` for the invariant that makes reading that span safe).
#[derive(Debug)]
pub struct Paged {
    pub first: u64,
    /// `first - 1` while the range is empty.
    pub last: u64,
    pub on_disk: usize,
    pub pinned: BTreeMap<u64, Entry>,
    /// Messages past `last + 1`, in memory until the seqs before them arrive.
    pub waiting: BTreeMap<u64, Entry>,
    /// Body bytes of every message of the range, pinned or not.
    pub bytes: usize,
    /// Seqs inside the range belong to entries consumed (and deleted) before a restart: reads
    /// must honour deletions. A range made at run time, or recovered without gaps, holds only
    /// unconsumed entries.
    pub gaps: bool,
    /// A store write ticket covering every log entry of the range.
    pub ticket: u64,
}

impl Paged {
    /// An empty range whose first member will be `seq`.
    pub fn starting_at(seq: u64) -> Paged {
        let (pinned, waiting) = (BTreeMap::new(), BTreeMap::new());
        Paged { first: seq, last: seq - 1, on_disk: 0, pinned, waiting, bytes: 0, ticket: 0, gaps: false }
    }

    pub fn len(&self) -> usize {
        self.on_disk + self.pinned.len() + self.waiting.len()
    }
}

/// A paged range taken out of a queue (purge, delete) whose log entries and bodies must go.
#[derive(Debug)]
pub struct PagedAway {
    pub first: u64,
    pub last: u64,
    pub ticket: u64,
    /// Pinned seqs: released with the in-memory messages, their log entries are not ours to drop.
    pub pinned: Vec<u64>,
}

/// What reading a batch back produced.
pub struct PageIn {
    /// Messages in seq order, ready to join the head.
    pub entries: Vec<Entry>,
    /// Log entries read (or skipped as lost): they leave the on-disk count.
    pub taken_from_disk: usize,
    /// Body bytes of log entries whose bodies are gone (a damaged store): no longer ready.
    pub lost_bytes: usize,
    /// The range is read up to and including this seq.
    pub read_to: u64,
}

/// When a message read back from the store expires: its life counts from its arrival.
pub fn deadline_from_arrival(msg: &Message, queue_ttl_ms: Option<u64>) -> Option<Instant> {
    let ttl = [queue_ttl_ms, msg.properties.expiration_ms].into_iter().flatten().min()?;
    let left = msg.arrived_at_ms.saturating_add(ttl).saturating_sub(now_ms());
    Some(Instant::now() + Duration::from_millis(left))
}

impl Pager {
    /// Whether the store alone can bring this entry back.
    pub fn can_page_out(&self, entry: &Entry) -> bool {
        let sole_holder = entry.stored.as_ref().is_some_and(|s| s.refs.load(Ordering::Acquire) == 1);
        let fresh = !entry.redelivered || entry.seq < self.recovered_below;
        sole_holder && fresh && entry.returns == 0
    }

    /// Reads the range back from its start: up to `want` messages and about `want_bytes` of
    /// bodies (at least one message).
    pub fn page_in(&self, paged: &Paged, want: usize, want_bytes: usize) -> Result<PageIn, junction_storage::StoreError> {
        let applied = self.store.wait_written(paged.ticket);
        let span = (paged.first, paged.last);
        let mut log = self.store.read_queue_log(self.queue_id, span, want, paged.gaps)?;
        let exhausted = log.len() < want;
        let size_of = |e: &LogEntry| match paged.pinned.get(&e.seq) {
            Some(entry) => entry.msg.size(),
            None => e.size_and_holders.map_or(0, |(size, _)| size as usize),
        };
        let mut bytes = 0;
        let keep = log.iter().position(|e| {
            bytes += size_of(e);
            bytes > want_bytes
        });
        let truncated = keep.is_some_and(|at| at.max(1) < log.len());
        if let Some(at) = keep {
            log.truncate(at.max(1));
        }
        let disk: Vec<LogEntry> = log.iter().filter(|e| !paged.pinned.contains_key(&e.seq)).copied().collect();
        let missing = exhausted && disk.len() < paged.on_disk;
        let read_to = match log.last() {
            Some(last) if truncated || !exhausted => last.seq,
            // Fewer entries than counted while writes are still pending: read again later
            // rather than take the range for read to its end.
            _ if missing && !applied => log.last().map_or(paged.first - 1, |e| e.seq),
            _ => paged.last,
        };
        if missing && applied {
            tracing::error!(queue_id = self.queue_id, "paged messages are missing from the store's queue log");
        }
        let ids: Vec<u64> = disk.iter().map(|e| e.body_id).collect();
        let bodies = self.store.read_bodies(&ids)?;
        let mut out = PageIn { entries: Vec::with_capacity(disk.len()), taken_from_disk: disk.len(), lost_bytes: 0, read_to };
        let mut lost = Vec::new();
        let mut undecodable = 0;
        for (log_entry, body) in disk.iter().zip(bodies) {
            let decoded = body.as_deref().map(Message::decode);
            if let Some(Some(msg)) = decoded {
                out.entries.push(self.entry_from_store(log_entry, msg));
                continue;
            }
            out.lost_bytes += log_entry.size_and_holders.map_or(0, |(size, _)| size as usize);
            match decoded {
                // A body that is there but unreadable stays on disk: never delete what we
                // cannot read (another version may).
                Some(None) => undecodable += 1,
                _ => lost.push(Op::Dequeue { queue_id: self.queue_id, seq: log_entry.seq }),
            }
        }
        if !lost.is_empty() || undecodable > 0 {
            tracing::error!(
                queue_id = self.queue_id,
                missing = lost.len(),
                undecodable,
                "paged messages cannot be read back; they leave the queue"
            );
            self.store.submit(lost);
        }
        let footprint: usize = out.entries.iter().map(|e| e.msg.memory_footprint()).sum();
        self.resources.add_message_bytes(footprint);
        Ok(out)
    }

    fn entry_from_store(&self, log_entry: &LogEntry, msg: Message) -> Entry {
        let expires_at = deadline_from_arrival(&msg, self.message_ttl_ms);
        Entry {
            seq: log_entry.seq,
            msg: Arc::new(msg),
            stored: Some(Arc::new(StoredBody { id: log_entry.body_id, refs: AtomicU32::new(1) })),
            redelivered: log_entry.seq < self.recovered_below,
            returns: 0,
            expires_at,
        }
    }

    /// Deletes the log entries and bodies of a paged range that left the queue for good.
    /// Runs outside the queue lock, in batches, so a purge of millions does not stall it.
    pub fn release(store: &Store, queue_id: u64, away: PagedAway) {
        store.wait_written(away.ticket);
        let mut from = away.first;
        while from <= away.last {
            let log = match store.read_queue_log(queue_id, (from, away.last), RELEASE_BATCH, true) {
                Ok(log) => log,
                Err(e) => return tracing::error!(error = %e, queue_id, "cannot read a released paged range"),
            };
            let Some(end) = log.last().map(|e| e.seq) else { return };
            let ops = log
                .iter()
                .filter(|e| away.pinned.binary_search(&e.seq).is_err())
                .flat_map(|e| [Op::Dequeue { queue_id, seq: e.seq }, Op::DeleteBody { id: e.body_id }])
                .collect();
            store.submit(ops);
            if log.len() < RELEASE_BATCH {
                return;
            }
            from = end + 1;
        }
    }
}

#[cfg(test)]
#[path = "paging_tests.rs"]
mod tests;
