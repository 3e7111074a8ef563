//! The writer thread: the only code that writes the database.
//!
//! Group commit: it blocks for one request, drains every request already queued (up
//! to `max_batch`), applies them in order inside one `BEGIN IMMEDIATE` transaction —
//! each write gets its own revision, a failed compare-and-swap only fails its own
//! request — and commits once, then makes the commit durable with one `fdatasync` of
//! the WAL for the whole batch. Only after that sync is the new revision visible to
//! readers, are the events broadcast to watchers and the callers answered, so an
//! acknowledged or observed write is on disk. Between batches it expires leases and runs
//! compaction in bounded chunks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use rusqlite::{params, Connection, TransactionBehavior};
use tokio::sync::{broadcast, oneshot};

use super::schema::{meta_get, meta_set, row_at, Row, META_COMPACT, META_COMPACT_DONE};
use super::SqliteConfig;
use crate::error::{Result, StoreError};
use crate::types::{Deleted, Event, LeaseId, Revision};

pub(crate) enum WriteOp {
    Create {
        key: String,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Revision,
        lease: Option<LeaseId>,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact(Revision),
    LeaseGrant(i64),
    LeaseKeepAlive(LeaseId),
    LeaseRevoke(LeaseId),
}

pub(crate) enum Outcome {
    Rev(Revision),
    Deleted(Deleted),
    Lease(LeaseId),
    Ttl(i64),
    Done,
}

pub(crate) struct WriteReq {
    pub op: WriteOp,
    pub reply: oneshot::Sender<Result<Outcome>>,
}

struct LeaseState {
    ttl: i64,
    deadline: Instant,
}

pub(crate) struct Writer {
    conn: Connection,
    path: String,
    rx: Receiver<WriteReq>,
    events: broadcast::Sender<Arc<Vec<Event>>>,
    current: Arc<AtomicI64>,
    stats: Arc<super::Stats>,
    config: SqliteConfig,
    st: State,
    compact_done: Revision,
    next_auto_compact: Instant,
    checkpointer: Option<crossbeam_channel::Sender<()>>,
    wal: super::wal_sync::WalSync,
    /// Set when a WAL sync failed: the disk state is unknown, the writer stops.
    poisoned: bool,
    commits_since_checkpoint: u32,
    /// After a failed compaction chunk, the next try waits until then.
    compact_retry_at: Instant,
}

/// Commits between two checkpoint signals.
const COMMITS_PER_CHECKPOINT: u32 = 100;

/// What the ops of a batch read and change besides the database.
struct State {
    /// Last assigned revision (last committed one between batches).
    rev: Revision,
    leases: HashMap<LeaseId, LeaseState>,
    compact_target: Revision,
}

/// What one op does inside the batch transaction: `Err` is fatal for the batch (SQLite
/// failed), `Ok(Err)` fails only this request.
type Applied = rusqlite::Result<Result<Outcome>>;

impl Writer {
    #[allow(clippy::too_many_arguments)] // one call site, in `open`
    pub(crate) fn new(
        conn: Connection,
        path: String,
        rx: Receiver<WriteReq>,
        events: broadcast::Sender<Arc<Vec<Event>>>,
        current: Arc<AtomicI64>,
        stats: Arc<super::Stats>,
        config: SqliteConfig,
        wal: super::wal_sync::WalSync,
    ) -> rusqlite::Result<Self> {
        let (rev, compact_target) = super::schema::revisions(&conn)?;
        let compact_done = meta_get(&conn, META_COMPACT_DONE)?;
        current.store(rev, Ordering::SeqCst);
        let next_auto_compact = Instant::now() + config.compact_interval;
        let mut w = Writer {
            conn,
            path,
            rx,
            events,
            current,
            stats,
            config,
            st: State {
                rev,
                leases: HashMap::new(),
                compact_target,
            },
            compact_done,
            next_auto_compact,
            checkpointer: None,
            wal,
            poisoned: false,
            commits_since_checkpoint: 0,
            compact_retry_at: Instant::now(),
        };
        w.load_leases()?;
        Ok(w)
    }

    pub(crate) fn with_checkpointer(mut self, tx: crossbeam_channel::Sender<()>) -> Self {
        self.checkpointer = Some(tx);
        self
    }

    fn committed(&mut self) {
        self.commits_since_checkpoint += 1;
        if self.commits_since_checkpoint >= COMMITS_PER_CHECKPOINT {
            if let Some(tx) = &self.checkpointer {
                // Full: a checkpoint is already pending.
                let _ = tx.try_send(());
            }
            self.commits_since_checkpoint = 0;
        }
    }

    /// Leases restart their full TTL when the store opens (etcd does the same on a
    /// leader change): the holder gets a chance to renew.
    fn load_leases(&mut self) -> rusqlite::Result<()> {
        let now = Instant::now();
        let mut stmt = self.conn.prepare("SELECT id, ttl FROM lease")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
        let mut leases = HashMap::new();
        for row in rows {
            let (id, ttl) = row?;
            leases.insert(
                id,
                LeaseState {
                    ttl,
                    deadline: now + Duration::from_secs(ttl.max(1) as u64),
                },
            );
        }
        drop(stmt);
        self.st.leases = leases;
        Ok(())
    }

    pub(crate) fn run(mut self) {
        while !self.poisoned {
            let timeout = self.next_timeout();
            let first = match self.rx.recv_timeout(timeout) {
                Ok(req) => Some(req),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut batch: Vec<WriteReq> = first.into_iter().collect();
            while batch.len() < self.config.max_batch {
                match self.rx.try_recv() {
                    Ok(req) => batch.push(req),
                    Err(_) => break,
                }
            }
            let now = Instant::now();
            let expired: Vec<LeaseId> = self
                .st
                .leases
                .iter()
                .filter(|(_, l)| l.deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            if !batch.is_empty() || !expired.is_empty() {
                self.run_batch(batch, expired);
            }
            if now >= self.next_auto_compact {
                self.next_auto_compact = now + self.config.compact_interval;
                let target = self.st.rev - self.config.retain_revisions;
                if target > self.st.compact_target {
                    self.run_batch(
                        vec![WriteReq {
                            op: WriteOp::Compact(target),
                            reply: oneshot::channel().0,
                        }],
                        Vec::new(),
                    );
                }
            }
            if self.compact_done < self.st.compact_target && Instant::now() >= self.compact_retry_at
            {
                if let Err(e) = self.compact_chunk() {
                    tracing::warn!(path = %self.path, error = %e, "compaction chunk failed");
                    self.compact_retry_at = Instant::now() + Duration::from_secs(5);
                }
            }
        }
        tracing::debug!(path = %self.path, "store writer stopped");
    }

    fn next_timeout(&self) -> Duration {
        let now = Instant::now();
        let mut next = self.next_auto_compact;
        if self.compact_done < self.st.compact_target {
            next = next.min(self.compact_retry_at);
        }
        for l in self.st.leases.values() {
            next = next.min(l.deadline);
        }
        next.saturating_duration_since(now)
    }

    fn run_batch(&mut self, batch: Vec<WriteReq>, expired: Vec<LeaseId>) {
        let (ops, replies): (Vec<WriteOp>, Vec<_>) =
            batch.into_iter().map(|r| (r.op, r.reply)).unzip();
        let start_rev = self.st.rev;
        let mut events = Vec::new();
        let result = self
            .apply_all(ops, &expired, &mut events)
            .map_err(|e| e.to_string());
        // Durable before visible: nothing is published or answered before this sync.
        let result = result.and_then(|r| match self.wal.sync() {
            Ok(()) => Ok(r),
            Err(e) => {
                self.poisoned = true;
                Err(format!("syncing {}: {e}", self.wal.path().display()))
            }
        });
        match result {
            Ok(results) => {
                self.current.store(self.st.rev, Ordering::SeqCst);
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
                self.committed();
                self.stats
                    .requests
                    .fetch_add(results.len() as u64, Ordering::Relaxed);
                if !events.is_empty() {
                    // No receiver is fine: nobody watches.
                    let _ = self.events.send(Arc::new(events));
                }
                for (reply, res) in replies.into_iter().zip(results) {
                    let _ = reply.send(res);
                }
            }
            Err(e) => {
                tracing::error!(path = %self.path, error = %e, "write batch failed");
                self.st.rev = start_rev;
                if let Err(e) = self.load_leases() {
                    tracing::error!(path = %self.path, error = %e, "reloading leases failed");
                }
                let msg = format!("sqlite store {}: {e}", self.path);
                if self.poisoned {
                    tracing::error!(path = %self.path, "WAL sync failed; the store stops taking writes");
                }
                for reply in replies {
                    let _ = reply.send(Err(StoreError::BatchFailed(msg.clone())));
                }
            }
        }
    }

    fn apply_all(
        &mut self,
        ops: Vec<WriteOp>,
        expired: &[LeaseId],
        events: &mut Vec<Event>,
    ) -> rusqlite::Result<Vec<Result<Outcome>>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            results.push(self.st.apply(&tx, op, events)?);
        }
        for id in expired {
            tracing::debug!(lease = id, "lease expired");
            if let Err(e) = self.st.apply(&tx, WriteOp::LeaseRevoke(*id), events)? {
                tracing::warn!(lease = id, error = %e, "expiring lease");
            }
        }
        tx.commit()?;
        Ok(results)
    }
}

impl State {
    fn next_rev(&mut self) -> Revision {
        self.rev += 1;
        self.rev
    }

    fn check_lease(&self, lease: Option<LeaseId>) -> Result<i64> {
        match lease {
            None | Some(0) => Ok(0),
            Some(id) if self.leases.contains_key(&id) => Ok(id),
            Some(id) => Err(StoreError::LeaseNotFound(id)),
        }
    }

    fn insert(&mut self, tx: &Connection, row: &Row, prev: Option<&Row>) -> rusqlite::Result<()> {
        tx.prepare_cached(
            "INSERT INTO kv(id, key, created, prev_revision, deleted, lease, value)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            row.id,
            row.key,
            row.created,
            prev.map_or(0, |p| p.id),
            row.deleted as i64,
            row.lease,
            row.value
        ])?;
        Ok(())
    }

    fn apply(&mut self, tx: &Connection, op: WriteOp, events: &mut Vec<Event>) -> Applied {
        match op {
            WriteOp::Create { key, value, lease } => {
                let lease = match self.check_lease(lease) {
                    Ok(l) => l,
                    Err(e) => return Ok(Err(e)),
                };
                let prev = row_at(tx, key.as_bytes(), i64::MAX)?;
                if prev.as_ref().is_some_and(|p| !p.deleted) {
                    return Ok(Err(StoreError::AlreadyExists { key }));
                }
                let id = self.next_rev();
                let row = Row {
                    id,
                    key: key.into_bytes(),
                    created: id,
                    deleted: false,
                    lease,
                    value,
                };
                self.insert(tx, &row, prev.as_ref())?;
                events.push(row.to_event(prev.as_ref()));
                Ok(Ok(Outcome::Rev(id)))
            }
            WriteOp::Update {
                key,
                value,
                expected,
                lease,
            } => {
                let lease = match self.check_lease(lease) {
                    Ok(l) => l,
                    Err(e) => return Ok(Err(e)),
                };
                let prev = match row_at(tx, key.as_bytes(), i64::MAX)? {
                    Some(p) if !p.deleted => p,
                    _ => return Ok(Err(StoreError::NotFound { key })),
                };
                if prev.id != expected {
                    return Ok(Err(StoreError::Conflict {
                        key,
                        expected,
                        actual: prev.id,
                    }));
                }
                let id = self.next_rev();
                let row = Row {
                    id,
                    key: key.into_bytes(),
                    created: prev.created,
                    deleted: false,
                    lease,
                    value,
                };
                self.insert(tx, &row, Some(&prev))?;
                events.push(row.to_event(Some(&prev)));
                Ok(Ok(Outcome::Rev(id)))
            }
            WriteOp::Delete { key, expected } => {
                let prev = match row_at(tx, key.as_bytes(), i64::MAX)? {
                    Some(p) if !p.deleted => p,
                    _ => return Ok(Err(StoreError::NotFound { key })),
                };
                if let Some(expected) = expected {
                    if prev.id != expected {
                        return Ok(Err(StoreError::Conflict {
                            key,
                            expected,
                            actual: prev.id,
                        }));
                    }
                }
                let id = self.delete_row(tx, &prev, events)?;
                Ok(Ok(Outcome::Deleted(Deleted {
                    revision: id,
                    prev: prev.to_kv(),
                })))
            }
            WriteOp::Compact(target) => {
                if target > self.rev {
                    return Ok(Err(StoreError::FutureRevision {
                        requested: target,
                        current: self.rev,
                    }));
                }
                if target > self.compact_target {
                    meta_set(tx, META_COMPACT, target)?;
                    self.compact_target = target;
                }
                Ok(Ok(Outcome::Done))
            }
            WriteOp::LeaseGrant(ttl) => {
                if ttl < 1 {
                    return Ok(Err(StoreError::InvalidTtl(ttl)));
                }
                tx.prepare_cached("INSERT INTO lease(ttl) VALUES (?1)")?
                    .execute([ttl])?;
                let id = tx.last_insert_rowid();
                self.leases.insert(
                    id,
                    LeaseState {
                        ttl,
                        deadline: Instant::now() + Duration::from_secs(ttl as u64),
                    },
                );
                Ok(Ok(Outcome::Lease(id)))
            }
            WriteOp::LeaseKeepAlive(id) => match self.leases.get_mut(&id) {
                Some(l) => {
                    l.deadline = Instant::now() + Duration::from_secs(l.ttl as u64);
                    Ok(Ok(Outcome::Ttl(l.ttl)))
                }
                None => Ok(Err(StoreError::LeaseNotFound(id))),
            },
            WriteOp::LeaseRevoke(id) => {
                if self.leases.remove(&id).is_none() {
                    return Ok(Err(StoreError::LeaseNotFound(id)));
                }
                let rows: Vec<Row> = {
                    let mut stmt = tx.prepare_cached(&format!(
                        "SELECT {} FROM kv k WHERE k.lease = ?1 AND k.deleted = 0
                           AND k.id = (SELECT MAX(id) FROM kv WHERE key = k.key)
                         ORDER BY k.key",
                        super::schema::ROW_COLS
                            .split(", ")
                            .map(|c| format!("k.{c}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))?;
                    let rows = stmt.query_map([id], |r| super::schema::read_row(r, 0))?;
                    rows.collect::<rusqlite::Result<_>>()?
                };
                for prev in &rows {
                    self.delete_row(tx, prev, events)?;
                }
                tx.prepare_cached("DELETE FROM lease WHERE id = ?1")?
                    .execute([id])?;
                Ok(Ok(Outcome::Done))
            }
        }
    }

    fn delete_row(
        &mut self,
        tx: &Connection,
        prev: &Row,
        events: &mut Vec<Event>,
    ) -> rusqlite::Result<Revision> {
        let id = self.next_rev();
        let row = Row {
            id,
            key: prev.key.clone(),
            created: prev.created,
            deleted: true,
            lease: 0,
            value: Vec::new(),
        };
        self.insert(tx, &row, Some(prev))?;
        events.push(row.to_event(Some(prev)));
        Ok(id)
    }
}

impl Writer {
    /// Physically removes the rows no read at or after the compaction point can see,
    /// walking the log in chunks of at most `compact_chunk` revisions (one short
    /// transaction each, so writers keep going): for every row in the chunk, the row
    /// it replaced (superseded at or before the point), and tombstones in the chunk.
    fn compact_chunk(&mut self) -> rusqlite::Result<()> {
        let lo = self.compact_done;
        let hi = (lo + self.config.compact_chunk).min(self.st.compact_target);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let removed = tx
            .prepare_cached(
                "DELETE FROM kv WHERE id IN (
                   SELECT prev_revision FROM kv
                   WHERE id > ?1 AND id <= ?2 AND prev_revision != 0)
                 OR (id > ?1 AND id <= ?2 AND deleted = 1)",
            )?
            .execute(params![lo, hi])?;
        meta_set(&tx, META_COMPACT_DONE, hi)?;
        tx.commit()?;
        self.committed();
        tracing::debug!(lo, hi, removed, "compacted chunk");
        self.compact_done = hi;
        Ok(())
    }
}
