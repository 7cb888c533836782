//! Junction's store: RocksDB with one column family per record kind (see `keys`), written by a
//! single group-commit thread (see `writer`). The store knows nothing about brokers: it keeps
//! opaque definition records, message bodies and queue logs of body ids.

pub mod histogram;
pub mod keys;
mod writer;

pub use writer::{Op, WriterStats};

use keys::{CF_BODIES, CF_META, CF_QUEUES};
use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, ReadOptions, DB};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use tokio::sync::oneshot;
use writer::{Progress, Request};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("rocksdb: {0}")]
    Rocks(Arc<str>),
    #[error("the store is closed")]
    Closed,
}

impl From<rocksdb::Error> for StoreError {
    fn from(e: rocksdb::Error) -> Self {
        StoreError::Rocks(e.to_string().into())
    }
}

/// A future answer that some operations are on disk.
pub type DurableReceipt = oneshot::Receiver<Result<(), StoreError>>;

/// One entry of a queue log as found on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogEntry {
    pub queue_id: u64,
    pub seq: u64,
    pub body_id: u64,
    /// The body's size and how many queue logs hold it; `None` in entries written by versions
    /// that did not record them.
    pub size_and_holders: Option<(u32, u32)>,
}

impl LogEntry {
    fn parse(key: &[u8], value: &[u8]) -> Option<LogEntry> {
        let (queue_id, seq) = keys::parse_queue_entry(key)?;
        let (body_id, size_and_holders) = keys::parse_log_value(value)?;
        Some(LogEntry { queue_id, seq, body_id, size_and_holders })
    }
}

/// How long a reader waits for the writer to apply earlier writes before reading anyway.
const READ_AFTER_WRITE_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

pub struct Store {
    db: Arc<DB>,
    path: PathBuf,
    /// Read-locked by every submitter (shared, never contended); write-locked only to close.
    requests: parking_lot::RwLock<Option<mpsc::Sender<Request>>>,
    writer: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
    next_body_id: AtomicU64,
    stats: Arc<WriterStats>,
    /// Requests handed to the writer so far (see `write_ticket`).
    submitted: AtomicU64,
    progress: Arc<Progress>,
}

impl Store {
    /// Opens (or creates) the store in `dir` and starts its writer thread.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Rocks(e.to_string().into()))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(4);
        // Queue logs churn: messages are written and deleted within seconds. A large memtable
        // lets most of them die before they ever reach an SST file.
        let mut churn = Options::default();
        churn.set_write_buffer_size(64 << 20);
        churn.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let cfs = keys::ALL_CFS.iter().map(|name| {
            let cf_opts = if *name == CF_META { Options::default() } else { churn.clone() };
            ColumnFamilyDescriptor::new(*name, cf_opts)
        });
        let db = Arc::new(DB::open_cf_descriptors(&opts, dir, cfs)?);
        let next_body_id = last_u64_key(&db, CF_BODIES)?.map_or(1, |id| id + 1);
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(WriterStats::default());
        let progress = Arc::new(Progress::default());
        let writer = {
            let (db, stats, progress) = (db.clone(), stats.clone(), progress.clone());
            std::thread::Builder::new()
                .name("junction-store-writer".into())
                .spawn(move || writer::run(db, rx, stats, progress))
                .map_err(|e| StoreError::Rocks(e.to_string().into()))?
        };
        Ok(Store {
            db,
            path: dir.to_path_buf(),
            requests: parking_lot::RwLock::new(Some(tx)),
            writer: parking_lot::Mutex::new(Some(writer)),
            next_body_id: AtomicU64::new(next_body_id),
            stats,
            submitted: AtomicU64::new(0),
            progress,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Reserves a fresh id for a message body.
    pub fn allocate_body_id(&self) -> u64 {
        self.next_body_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues operations for the writer; they become visible in submission order.
    pub fn submit(&self, ops: Vec<Op>) {
        self.send(Request::Write { ops, durable: None });
    }

    /// Queues operations and returns a receipt that resolves once they are fsynced.
    pub fn submit_durable(&self, ops: Vec<Op>) -> DurableReceipt {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Write { ops, durable: Some(tx) });
        rx
    }

    /// Resolves once everything submitted before it is fsynced.
    pub fn barrier(&self) -> DurableReceipt {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Barrier(tx));
        rx
    }

    /// A ticket covering every write submitted so far: `wait_written` with it returns once they
    /// are all readable.
    pub fn write_ticket(&self) -> u64 {
        self.submitted.load(Ordering::Acquire)
    }

    /// Blocks until the writes a ticket covers are readable (or the writer stopped). Writes are
    /// applied within milliseconds; a reader that finds them still pending after
    /// `READ_AFTER_WRITE_LIMIT` reads anyway rather than hang.
    /// True when they are.
    pub fn wait_written(&self, ticket: u64) -> bool {
        let applied = self.progress.wait(ticket, READ_AFTER_WRITE_LIMIT);
        if !applied {
            tracing::warn!("the store writer is behind; reading before earlier writes are applied");
        }
        applied
    }

    fn send(&self, request: Request) {
        // Counted before it is sent: requests are applied in channel order, so once the writer
        // has applied `n` requests, every request sent before `submitted` reached `n` is applied.
        self.submitted.fetch_add(1, Ordering::AcqRel);
        let guard = self.requests.read();
        let refused = match guard.as_ref() {
            Some(tx) => tx.send(request).err().map(|e| e.0),
            None => Some(request),
        };
        // A closed store answers durable waiters with an error rather than leaving them hanging.
        if let Some(Request::Write { durable: Some(w), .. } | Request::Barrier(w)) = refused {
            let _ = w.send(Err(StoreError::Closed));
        }
    }

    /// Syncs and stops the writer thread. Later submissions are refused.
    pub fn close(&self) {
        if let Some(tx) = self.requests.write().take() {
            let _ = tx.send(Request::Shutdown);
        }
        if let Some(handle) = self.writer.lock().take() {
            let _ = handle.join();
        }
    }

    /// Every definition record, in key order.
    pub fn load_meta(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let cf = self.cf(CF_META);
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, v) = item?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Calls `visit` for every queue log entry, grouped by queue and in sequence order.
    pub fn scan_queue_logs(&self, mut visit: impl FnMut(LogEntry)) -> Result<(), StoreError> {
        let mut ro = ReadOptions::default();
        ro.fill_cache(false);
        let iter = self.db.iterator_cf_opt(self.cf(CF_QUEUES), ro, IteratorMode::Start);
        for item in iter {
            let (k, v) = item?;
            match LogEntry::parse(&k, &v) {
                Some(entry) => visit(entry),
                None => tracing::warn!("skipping malformed queue log entry"),
            }
        }
        Ok(())
    }

    /// Up to `limit` entries of one queue's log with `from <= seq <= to`, in order. The seek
    /// lands on `from`: tombstones of entries already consumed before it are never walked.
    ///
    /// `deletions_inside`: whether entries in the span may have been deleted. When the caller
    /// knows none were (a span of messages that have not been consumed), the read skips the
    /// range deletions altogether: RocksDB would otherwise rebuild its view of every range
    /// tombstone in the memtable for each read, and a queue drained in order leaves one per
    /// write batch.
    pub fn read_queue_log(
        &self,
        queue_id: u64,
        (from, to): (u64, u64),
        limit: usize,
        deletions_inside: bool,
    ) -> Result<Vec<LogEntry>, StoreError> {
        let mut ro = ReadOptions::default();
        // Deprecated upstream for stores that never use DeleteRange ("no performance impact"
        // then); this one does, and profiling a 10M-message drain showed a fifth of the CPU in
        // rebuilding the memtable's range-tombstone list for each read before it was set.
        #[allow(deprecated)]
        ro.set_ignore_range_deletions(!deletions_inside);
        ro.set_iterate_upper_bound(keys::queue_entry(queue_id, to.saturating_add(1)).to_vec());
        let start = keys::queue_entry(queue_id, from);
        let mode = IteratorMode::From(&start, rocksdb::Direction::Forward);
        let mut out = Vec::new();
        for item in self.db.iterator_cf_opt(self.cf(CF_QUEUES), ro, mode) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            match LogEntry::parse(&k, &v) {
                Some(entry) if entry.queue_id == queue_id && entry.seq <= to => out.push(entry),
                Some(_) => break,
                None => tracing::warn!("skipping malformed queue log entry"),
            }
        }
        Ok(out)
    }

    /// The stored bodies with these ids, in the same order (`None` where one is missing).
    pub fn read_bodies(&self, ids: &[u64]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let cf = self.cf(CF_BODIES);
        let keys: Vec<_> = ids.iter().map(|id| (cf, keys::body(*id))).collect();
        self.db.multi_get_cf(keys).into_iter().map(|r| r.map_err(StoreError::from)).collect()
    }

    /// Calls `visit` for every stored message body in id order.
    pub fn scan_bodies(&self, mut visit: impl FnMut(u64, &[u8])) -> Result<(), StoreError> {
        let mut ro = ReadOptions::default();
        ro.fill_cache(false);
        for item in self.db.iterator_cf_opt(self.cf(CF_BODIES), ro, IteratorMode::Start) {
            let (k, v) = item?;
            if let Some(id) = keys::parse_u64(&k) {
                visit(id, &v);
            }
        }
        Ok(())
    }

    /// Writes every column family's memtable out to SST files (what RocksDB does by itself
    /// once a memtable is full; tests use it to reach on-disk states deterministically).
    pub fn flush(&self) -> Result<(), StoreError> {
        for name in keys::ALL_CFS {
            self.db.flush_cf(self.cf(name))?;
        }
        Ok(())
    }

    /// Writes a consistent copy of the store into `dir` (a RocksDB checkpoint).
    pub fn checkpoint(&self, dir: &Path) -> Result<(), StoreError> {
        rocksdb::checkpoint::Checkpoint::new(&self.db)?.create_checkpoint(dir)?;
        Ok(())
    }

    /// Approximate bytes the store occupies on disk.
    pub fn disk_size(&self) -> u64 {
        dir_size(&self.path)
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("column family exists")
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

fn last_u64_key(db: &DB, cf: &str) -> Result<Option<u64>, StoreError> {
    let handle = db.cf_handle(cf).expect("column family exists");
    match db.iterator_cf(handle, IteratorMode::End).next() {
        Some(item) => Ok(keys::parse_u64(&item?.0)),
        None => Ok(None),
    }
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests;
