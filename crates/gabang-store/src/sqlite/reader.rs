//! Reader threads: each owns a connection and answers gets, lists and watch catch-up
//! reads from one WAL snapshot (one read transaction per request).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crossbeam_channel::Receiver;
use rusqlite::{params, Connection};
use tokio::sync::oneshot;

use super::schema::{read_row, revisions, row_at, sql_err, ROW_COLS};
use crate::error::{Result, StoreError};
use crate::types::{key_after, prefix_end, Event, GetResult, ListOptions, ListResult, Revision};

pub(crate) enum ReadOp {
    Get {
        key: String,
        revision: Option<Revision>,
    },
    List {
        prefix: String,
        options: ListOptions,
    },
    /// Events under `prefix` after `after`, at most `limit`.
    Events {
        prefix: String,
        after: Revision,
        limit: usize,
    },
}

pub(crate) enum ReadOutcome {
    Get(GetResult),
    List(ListResult),
    Events(EventPage),
}

/// One page of history for a watcher.
pub(crate) struct EventPage {
    pub events: Vec<Event>,
    /// The snapshot's current revision: no more events up to it when `full` is false.
    pub current: Revision,
    /// The page hit its limit: read again after its last event.
    pub full: bool,
}

pub(crate) struct ReadReq {
    pub op: ReadOp,
    pub reply: oneshot::Sender<Result<ReadOutcome>>,
}

/// `durable`: the writer's last synced revision; reads never go past it, so nothing
/// is seen before it is on disk.
pub(crate) fn run(
    mut conn: Connection,
    path: String,
    rx: Receiver<ReadReq>,
    durable: Arc<AtomicI64>,
) {
    while let Ok(req) = rx.recv() {
        let res = match read(&mut conn, req.op, durable.load(Ordering::SeqCst)) {
            Ok(r) => r,
            Err(e) => Err(sql_err(&path)(e)),
        };
        let _ = req.reply.send(res);
    }
}

/// Checks `revision` against the snapshot; returns the revision to read at.
fn at_revision(
    current: Revision,
    compacted: Revision,
    revision: Option<Revision>,
) -> Result<Revision> {
    match revision {
        None | Some(0) => Ok(current),
        Some(r) if r > current => Err(StoreError::FutureRevision {
            requested: r,
            current,
        }),
        Some(r) if r < compacted => Err(StoreError::Compacted {
            requested: r,
            compacted,
        }),
        Some(r) => Ok(r),
    }
}

fn read(
    conn: &mut Connection,
    op: ReadOp,
    durable: Revision,
) -> rusqlite::Result<Result<ReadOutcome>> {
    let tx = conn.transaction()?;
    let (current, compacted) = revisions(&tx)?;
    let current = current.min(durable);
    let out = match op {
        ReadOp::Get { key, revision } => {
            let at = match at_revision(current, compacted, revision) {
                Ok(at) => at,
                Err(e) => return Ok(Err(e)),
            };
            let kv = row_at(&tx, key.as_bytes(), at)?
                .filter(|r| !r.deleted)
                .map(|r| r.to_kv());
            ReadOutcome::Get(GetResult { revision: at, kv })
        }
        ReadOp::List { prefix, options } => {
            let at = match at_revision(current, compacted, options.revision) {
                Ok(at) => at,
                Err(e) => return Ok(Err(e)),
            };
            let start = match &options.start_key {
                Some(s) if s.as_str() > prefix.as_str() => s.clone().into_bytes(),
                _ => prefix.clone().into_bytes(),
            };
            let end = prefix_end(prefix.as_bytes());
            let limit: i64 = if options.limit == 0 {
                -1
            } else {
                options.limit as i64 + 1
            };
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {ROW_COLS} FROM kv WHERE id IN (
                   SELECT MAX(id) FROM kv
                   WHERE key >= ?1 AND (?2 IS NULL OR key < ?2) AND id <= ?3 GROUP BY key)
                 AND deleted = 0 ORDER BY key LIMIT ?4"
            ))?;
            let rows = stmt.query_map(params![start, end, at, limit], |r| read_row(r, 0))?;
            let mut items = Vec::new();
            for row in rows {
                items.push(row?.to_kv());
            }
            let mut continue_key = None;
            if options.limit > 0 && items.len() > options.limit {
                items.truncate(options.limit);
                continue_key = items.last().map(|kv| key_after(&kv.key));
            }
            ReadOutcome::List(ListResult {
                items,
                revision: at,
                continue_key,
            })
        }
        ReadOp::Events {
            prefix,
            after,
            limit,
        } => {
            if after < compacted {
                return Ok(Err(StoreError::Compacted {
                    requested: after,
                    compacted,
                }));
            }
            let end = prefix_end(prefix.as_bytes());
            let cols = |t: &str| {
                ROW_COLS
                    .split(", ")
                    .map(|c| format!("{t}.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {}, {} FROM kv k LEFT JOIN kv p ON p.id = k.prev_revision
                 WHERE k.id > ?1 AND k.id <= ?5 AND k.key >= ?2 AND (?3 IS NULL OR k.key < ?3)
                 ORDER BY k.id LIMIT ?4",
                cols("k"),
                cols("p")
            ))?;
            let rows = stmt.query_map(
                params![after, prefix.as_bytes(), end, limit as i64, current],
                |r| {
                    let row = read_row(r, 0)?;
                    let prev = match r.get::<_, Option<i64>>(6)? {
                        Some(_) => Some(read_row(r, 6)?),
                        None => None,
                    };
                    Ok(row.to_event(prev.as_ref()))
                },
            )?;
            let mut events = Vec::new();
            for ev in rows {
                events.push(ev?);
            }
            let full = events.len() >= limit;
            ReadOutcome::Events(EventPage {
                events,
                current,
                full,
            })
        }
    };
    tx.commit()?;
    Ok(Ok(out))
}
