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
use writer::Request;

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

/// One entry of a queue log as found on disk at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogEntry {
    pub queue_id: u64,
    pub seq: u64,
    pub body_id: u64,
}

pub struct Store {
    db: Arc<DB>,
    path: PathBuf,
    /// Read-locked by every submitter (shared, never contended); write-locked only to close.
    requests: parking_lot::RwLock<Option<mpsc::Sender<Request>>>,
    writer: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
    next_body_id: AtomicU64,
    stats: Arc<WriterStats>,
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
        let writer = {
            let (db, stats) = (db.clone(), stats.clone());
            std::thread::Builder::new()
                .name("junction-store-writer".into())
                .spawn(move || writer::run(db, rx, stats))
                .map_err(|e| StoreError::Rocks(e.to_string().into()))?
        };
        Ok(Store {
            db,
            path: dir.to_path_buf(),
            requests: parking_lot::RwLock::new(Some(tx)),
            writer: parking_lot::Mutex::new(Some(writer)),
            next_body_id: AtomicU64::new(next_body_id),
            stats,
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

    fn send(&self, request: Request) {
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
            let (Some((queue_id, seq)), Some(body_id)) = (keys::parse_queue_entry(&k), keys::parse_u64(&v)) else {
                tracing::warn!("skipping malformed queue log entry");
                continue;
            };
            visit(LogEntry { queue_id, seq, body_id });
        }
        Ok(())
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
