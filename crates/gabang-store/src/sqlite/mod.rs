//! The embedded backend: SQLite in WAL mode, kine-style.
//!
//! Layout in `schema.rs` (one log table, one row per revision). All database access
//! happens on dedicated threads: one writer (`writer.rs`: group commit, leases,
//! compaction; `wal_sync.rs`: the per-commit sync), a checkpointer (`checkpoint.rs`)
//! and a few readers (`reader.rs`). Async callers talk to them over
//! channels and wait on oneshot replies. Watchers (`watch.rs`) read history from the
//! log and then follow the writer's in-process broadcast.
//!
//! One process opens a store at a time (a lock file next to the database enforces it).

mod checkpoint;
mod reader;
mod schema;
mod wal_sync;
mod watch;
mod writer;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{broadcast, oneshot};

use crate::backend::{Backend, WatchStream};
use crate::error::{Result, StoreError};
use crate::types::{
    check_key, check_write, Deleted, Event, GetResult, LeaseId, ListOptions, ListResult, Revision,
};
use reader::{ReadOp, ReadOutcome, ReadReq};
use schema::{open_conn, sql_err};
use writer::{Outcome, WriteOp, WriteReq, Writer};

type ReadSender = crossbeam_channel::Sender<ReadReq>;

/// Tuning of the embedded store.
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    /// Reader threads (each with its own connection).
    pub readers: usize,
    /// Most writes committed in one transaction.
    pub max_batch: usize,
    /// Automatic compaction keeps at least this many recent revisions.
    pub retain_revisions: i64,
    /// How often automatic compaction runs.
    pub compact_interval: Duration,
    /// Revisions physically compacted per transaction (bounds writer pauses).
    pub compact_chunk: i64,
    /// Events buffered per watcher before it falls back to reading the log.
    pub watch_buffer: usize,
    /// Commits buffered in the broadcast to watchers.
    pub broadcast_capacity: usize,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            readers: 2,
            max_batch: 1024,
            retain_revisions: 10_000,
            compact_interval: Duration::from_secs(60),
            compact_chunk: 1000,
            watch_buffer: 1024,
            broadcast_capacity: 1024,
        }
    }
}

/// Counters of the writer thread.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    commits: AtomicU64,
    requests: AtomicU64,
}

/// What group commit achieved so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SqliteStats {
    /// Write transactions committed (one fsync each).
    pub commits: u64,
    /// Write requests answered by those commits.
    pub requests: u64,
}

/// The embedded SQLite store. Dropping it stops the writer after its current batch.
pub struct SqliteBackend {
    path: PathBuf,
    config: SqliteConfig,
    write_tx: Option<crossbeam_channel::Sender<WriteReq>>,
    read_tx: ReadSender,
    events: broadcast::Sender<Arc<Vec<Event>>>,
    current: Arc<AtomicI64>,
    stats: Arc<Stats>,
    writer: Option<JoinHandle<()>>,
    _lock: File,
}

impl SqliteBackend {
    /// Opens (creating if needed) the store at `path`. Blocking: call it from a
    /// blocking context (or see [`crate::open`]).
    pub fn open(path: &Path, config: SqliteConfig) -> Result<Self> {
        let p = path.display().to_string();
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| StoreError::Io {
                path: PathBuf::from(&lock_path).display().to_string(),
                source,
            })?;
        if lock.try_lock().is_err() {
            return Err(StoreError::Locked { path: p });
        }
        let wconn = open_conn(path, true).map_err(sql_err(&p))?;
        // Frames a crashed process left in the WAL may not be on disk yet: sync them
        // before they are served.
        let io_err = |source| StoreError::Io {
            path: format!("{p}-wal"),
            source,
        };
        let mut wal = wal_sync::WalSync::open(path).map_err(io_err)?;
        wal.sync().map_err(io_err)?;
        let (events, _) = broadcast::channel(config.broadcast_capacity.max(16));
        let current = Arc::new(AtomicI64::new(0));
        let stats = Arc::new(Stats::default());
        let (write_tx, write_rx) = crossbeam_channel::unbounded();
        let w = Writer::new(
            wconn,
            p.clone(),
            write_rx,
            events.clone(),
            current.clone(),
            stats.clone(),
            config.clone(),
            wal,
        )
        .map_err(sql_err(&p))?;
        let (ckpt_tx, ckpt_rx) = crossbeam_channel::bounded(1);
        let ckpt_conn = open_conn(path, false).map_err(sql_err(&p))?;
        ckpt_conn
            .pragma_update(None, "query_only", false)
            .map_err(sql_err(&p))?;
        let pp = p.clone();
        std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || checkpoint::run(ckpt_conn, pp, ckpt_rx))
            .map_err(|source| StoreError::Io {
                path: p.clone(),
                source,
            })?;
        let w = w.with_checkpointer(ckpt_tx);
        let (read_tx, read_rx) = crossbeam_channel::unbounded();
        for i in 0..config.readers.max(1) {
            let conn = open_conn(path, false).map_err(sql_err(&p))?;
            let rx = read_rx.clone();
            let pp = p.clone();
            let durable = current.clone();
            std::thread::Builder::new()
                .name(format!("store-read-{i}"))
                .spawn(move || reader::run(conn, pp, rx, durable))
                .map_err(|source| StoreError::Io {
                    path: p.clone(),
                    source,
                })?;
        }
        let writer = std::thread::Builder::new()
            .name("store-write".into())
            .spawn(move || w.run())
            .map_err(|source| StoreError::Io {
                path: p.clone(),
                source,
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            config,
            write_tx: Some(write_tx),
            read_tx,
            events,
            current,
            stats,
            writer: Some(writer),
            _lock: lock,
        })
    }

    /// Group-commit counters since open.
    pub fn stats(&self) -> SqliteStats {
        SqliteStats {
            commits: self.stats.commits.load(Ordering::Relaxed),
            requests: self.stats.requests.load(Ordering::Relaxed),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn write(&self, op: WriteOp) -> Result<Outcome> {
        let (reply, rx) = oneshot::channel();
        self.write_tx
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(WriteReq { op, reply })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn write_rev(&self, op: WriteOp) -> Result<Revision> {
        match self.write(op).await? {
            Outcome::Rev(r) => Ok(r),
            _ => Err(StoreError::Closed),
        }
    }
}

async fn read(reads: &ReadSender, op: ReadOp) -> Result<ReadOutcome> {
    let (reply, rx) = oneshot::channel();
    reads
        .send(ReadReq { op, reply })
        .map_err(|_| StoreError::Closed)?;
    rx.await.map_err(|_| StoreError::Closed)?
}

impl Drop for SqliteBackend {
    fn drop(&mut self) {
        self.write_tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.current.load(Ordering::SeqCst))
    }

    async fn get(&self, key: &str, revision: Option<Revision>) -> Result<GetResult> {
        check_key(key)?;
        let op = ReadOp::Get {
            key: key.to_string(),
            revision,
        };
        match read(&self.read_tx, op).await? {
            ReadOutcome::Get(g) => Ok(g),
            _ => Err(StoreError::Closed),
        }
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult> {
        let op = ReadOp::List {
            prefix: prefix.to_string(),
            options,
        };
        match read(&self.read_tx, op).await? {
            ReadOutcome::List(l) => Ok(l),
            _ => Err(StoreError::Closed),
        }
    }

    async fn create(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision> {
        check_write(key, &value)?;
        self.write_rev(WriteOp::Create {
            key: key.to_string(),
            value,
            lease,
        })
        .await
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_mod_revision: Revision,
        lease: Option<LeaseId>,
    ) -> Result<Revision> {
        check_write(key, &value)?;
        self.write_rev(WriteOp::Update {
            key: key.to_string(),
            value,
            expected: expected_mod_revision,
            lease,
        })
        .await
    }

    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<Deleted> {
        check_key(key)?;
        match self
            .write(WriteOp::Delete {
                key: key.to_string(),
                expected: expected_mod_revision,
            })
            .await?
        {
            Outcome::Deleted(d) => Ok(d),
            _ => Err(StoreError::Closed),
        }
    }

    async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream> {
        let live = self.events.subscribe();
        watch::start(
            self.read_tx.clone(),
            live,
            prefix.to_string(),
            after_revision,
            self.config.watch_buffer.max(1),
        )
        .await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.write(WriteOp::Compact(revision)).await.map(|_| ())
    }

    async fn lease_grant(&self, ttl_seconds: i64) -> Result<LeaseId> {
        match self.write(WriteOp::LeaseGrant(ttl_seconds)).await? {
            Outcome::Lease(id) => Ok(id),
            _ => Err(StoreError::Closed),
        }
    }

    async fn lease_keepalive(&self, id: LeaseId) -> Result<i64> {
        match self.write(WriteOp::LeaseKeepAlive(id)).await? {
            Outcome::Ttl(t) => Ok(t),
            _ => Err(StoreError::Closed),
        }
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<()> {
        self.write(WriteOp::LeaseRevoke(id)).await.map(|_| ())
    }
}
