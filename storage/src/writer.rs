//! Group commit. One thread owns every write to RocksDB: it takes all the operations that queued
//! up while the previous batch was being synced, folds them into one `WriteBatch`, writes it with
//! a single fsync when anyone is waiting for durability, and only then tells the waiters.

use crate::keys::{self, CF_BODIES, CF_META, CF_QUEUES};
use crate::StoreError;
use rocksdb::{WriteBatch, WriteOptions, DB};
use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// One change to the store.
#[derive(Debug)]
pub enum Op {
    PutBody { id: u64, bytes: Vec<u8> },
    DeleteBody { id: u64 },
    /// Appends a message to a queue's log: its body, the body's size and how many queue logs
    /// the body went into (a queue pages out only messages it alone holds).
    Enqueue { queue_id: u64, seq: u64, body_id: u64, size: u32, holders: u32 },
    /// Removes an acknowledged (or dropped) message from a queue's log.
    Dequeue { queue_id: u64, seq: u64 },
    /// Drops a whole queue log.
    DropQueueLog { queue_id: u64 },
    PutMeta { key: Vec<u8>, value: Vec<u8> },
    DeleteMeta { key: Vec<u8> },
}

/// Tells a waiter that its operations are durable (or why they are not).
pub type Durable = oneshot::Sender<Result<(), StoreError>>;

pub(crate) enum Request {
    Write { ops: Vec<Op>, durable: Option<Durable> },
    /// Syncs everything written so far, then answers.
    Barrier(Durable),
    Shutdown,
}

/// Counts how long each synced batch took, for the metrics the operator sees.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub batches: std::sync::atomic::AtomicU64,
    pub synced_batches: std::sync::atomic::AtomicU64,
    pub ops: std::sync::atomic::AtomicU64,
    pub sync_micros_total: std::sync::atomic::AtomicU64,
    /// How long each synced batch took to write and fsync.
    pub sync_latency: crate::histogram::Histogram,
}

/// How many requests the writer has applied to RocksDB (visible to reads, not necessarily
/// synced), so that a reader can wait for writes submitted before it.
#[derive(Default)]
pub(crate) struct Progress {
    applied: parking_lot::Mutex<u64>,
    changed: parking_lot::Condvar,
}

impl Progress {
    fn advance(&self, requests: u64) {
        *self.applied.lock() += requests;
        self.changed.notify_all();
    }

    /// The writer has stopped: nobody may wait for it any more.
    fn finish(&self) {
        *self.applied.lock() = u64::MAX;
        self.changed.notify_all();
    }

    /// Waits until `ticket` requests are applied; false if that took longer than `limit`.
    pub(crate) fn wait(&self, ticket: u64, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut applied = self.applied.lock();
        while *applied < ticket {
            if self.changed.wait_until(&mut applied, deadline).timed_out() {
                return *applied >= ticket;
            }
        }
        true
    }
}

/// Upper bound on operations folded into one batch so a flood cannot make one batch huge.
const MAX_OPS_PER_BATCH: usize = 50_000;

pub(crate) fn run(db: Arc<DB>, requests: Receiver<Request>, stats: Arc<WriterStats>, progress: Arc<Progress>) {
    /// Releases readers however the writer ends, a panic included.
    struct Finish(Arc<Progress>);
    impl Drop for Finish {
        fn drop(&mut self) {
            self.0.finish();
        }
    }
    let finish = Finish(progress);
    write_batches(&db, &requests, &stats, &finish.0);
}

fn write_batches(db: &DB, requests: &Receiver<Request>, stats: &WriterStats, progress: &Progress) {
    use std::sync::atomic::Ordering::Relaxed;
    loop {
        let first = match requests.recv() {
            Ok(r) => r,
            Err(_) => return,
        };
        let mut pending = vec![first];
        let mut op_count = 0;
        // Everything that arrived while we were busy rides in this batch.
        while op_count < MAX_OPS_PER_BATCH {
            match requests.recv_timeout(Duration::ZERO) {
                Ok(r) => {
                    if let Request::Write { ops, .. } = &r {
                        op_count += ops.len();
                    }
                    pending.push(r)
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let request_count = pending.len() as u64;
        let mut shutdown = false;
        let mut waiters = Vec::new();
        let mut batch = BatchBuilder::default();
        for request in pending {
            match request {
                Request::Write { ops, durable } => {
                    stats.ops.fetch_add(ops.len() as u64, Relaxed);
                    batch.add(ops);
                    waiters.extend(durable);
                }
                Request::Barrier(w) => waiters.push(w),
                Request::Shutdown => shutdown = true,
            }
        }
        let sync = !waiters.is_empty() || shutdown;
        let started = Instant::now();
        let result = batch.write(db, sync);
        progress.advance(request_count);
        stats.batches.fetch_add(1, Relaxed);
        if sync {
            stats.synced_batches.fetch_add(1, Relaxed);
            stats.sync_micros_total.fetch_add(started.elapsed().as_micros() as u64, Relaxed);
            stats.sync_latency.observe(started.elapsed());
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, "store write failed");
        }
        for w in waiters {
            let _ = w.send(result.clone());
        }
        if shutdown {
            return;
        }
    }
}

/// Collects operations, turning runs of consecutive dequeues into range deletes so an acked
/// prefix leaves one range tombstone instead of one tombstone per message.
#[derive(Default)]
struct BatchBuilder {
    ops: Vec<Op>,
    dequeues: BTreeMap<u64, Vec<u64>>,
}

impl BatchBuilder {
    fn add(&mut self, ops: Vec<Op>) {
        for op in ops {
            match op {
                Op::Dequeue { queue_id, seq } => self.dequeues.entry(queue_id).or_default().push(seq),
                other => self.ops.push(other),
            }
        }
    }

    fn write(self, db: &DB, sync: bool) -> Result<(), StoreError> {
        let cf = |name| db.cf_handle(name).expect("column family exists");
        let (meta, bodies, queues) = (cf(CF_META), cf(CF_BODIES), cf(CF_QUEUES));
        let mut wb = WriteBatch::default();
        // Enqueues before dequeues: a message acked within the batch that appended it must
        // end up deleted. A (queue, seq) pair is never appended twice, so nothing else reorders.
        for op in &self.ops {
            if let Op::Enqueue { queue_id, seq, body_id, size, holders } = op {
                wb.put_cf(queues, keys::queue_entry(*queue_id, *seq), keys::log_value(*body_id, *size, *holders));
            }
        }
        for (queue_id, mut seqs) in self.dequeues {
            seqs.sort_unstable();
            for (start, end) in runs(&seqs) {
                if start == end {
                    wb.delete_cf(queues, keys::queue_entry(queue_id, start));
                } else {
                    let to = keys::queue_entry(queue_id, end + 1);
                    wb.delete_range_cf(queues, keys::queue_entry(queue_id, start), to);
                }
            }
        }
        for op in self.ops {
            match op {
                Op::PutBody { id, bytes } => wb.put_cf(bodies, keys::body(id), bytes),
                Op::DeleteBody { id } => wb.delete_cf(bodies, keys::body(id)),
                Op::DropQueueLog { queue_id } => wb.delete_range_cf(
                    queues,
                    keys::queue_entry(queue_id, 0),
                    keys::queue_entry(queue_id + 1, 0),
                ),
                Op::PutMeta { key, value } => wb.put_cf(meta, key, value),
                Op::DeleteMeta { key } => wb.delete_cf(meta, key),
                Op::Enqueue { .. } | Op::Dequeue { .. } => {}
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        db.write_opt(wb, &opts).map_err(|e| StoreError::Rocks(e.to_string().into()))
    }
}

/// Splits sorted sequence numbers into inclusive runs of consecutive values.
fn runs(sorted: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &s in sorted {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == s || *end == s => *end = s,
            _ => out.push((s, s)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::runs;

    #[test]
    fn consecutive_seqs_fold_into_runs() {
        assert_eq!(runs(&[1, 2, 3, 5, 7, 8]), vec![(1, 3), (5, 5), (7, 8)]);
        assert_eq!(runs(&[]), vec![]);
        assert_eq!(runs(&[4, 4, 5]), vec![(4, 5)]);
    }
}
