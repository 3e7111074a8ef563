//! The SQLite layout (one kine-style log table) and the row helpers shared by the
//! writer and the readers.

use std::path::Path;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::error::StoreError;
use crate::types::{Event, EventKind, KeyValue};

/// `kv` is the log: one row per revision. `id` is the revision (the row's mod
/// revision), `created` the key's create revision, `prev_revision` the row it
/// replaced (0 for none), `deleted` marks a tombstone. `meta` holds the compaction
/// point; `lease` the granted leases.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    id INTEGER PRIMARY KEY,
    key BLOB NOT NULL,
    created INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    lease INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS kv_key_id ON kv(key, id);
CREATE INDEX IF NOT EXISTS kv_lease ON kv(lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS lease (id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL);
";

/// Meta row: reads and watches before this revision fail with `Compacted`.
pub(crate) const META_COMPACT: &str = "compact_rev";
/// Meta row: rows up to this revision have been physically compacted.
pub(crate) const META_COMPACT_DONE: &str = "compact_done";

pub(crate) fn sql_err(path: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Sqlite {
        path: path.to_string(),
        source,
    }
}

/// Opens a connection in WAL mode with `synchronous=NORMAL`: SQLite keeps the database
/// consistent across crashes and syncs around checkpoints, and the writer makes each
/// commit durable itself with one `fdatasync` of the WAL before anyone sees it (see
/// `wal_sync.rs`) — the durability of `synchronous=FULL` with a data-only sync, as
/// etcd does for its WAL (the bundled SQLite is built without `fdatasync` and would
/// `fsync`, which also flushes the file's mtime through the filesystem journal).
pub(crate) fn open_conn(path: &Path, writer: bool) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.set_prepared_statement_cache_capacity(64);
    if writer {
        // Checkpoints run on their own thread (`checkpoint.rs`), not inside commits.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        conn.execute_batch(SCHEMA)?;
    } else {
        conn.pragma_update(None, "query_only", true)?;
    }
    Ok(conn)
}

pub(crate) fn meta_get(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    Ok(conn
        .prepare_cached("SELECT value FROM meta WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

pub(crate) fn meta_set(conn: &Connection, name: &str, value: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta(name, value) VALUES (?1, ?2)
         ON CONFLICT(name) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![name, value])?;
    Ok(())
}

/// (current revision, compaction point) as seen by `conn`'s snapshot. The current
/// revision survives compaction of the newest rows because it is never below the
/// compaction point.
pub(crate) fn revisions(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    let max: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM kv")?
        .query_row([], |r| r.get(0))?;
    let compact = meta_get(conn, META_COMPACT)?;
    Ok((max.max(compact), compact))
}

/// One log row.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub id: i64,
    pub key: Vec<u8>,
    pub created: i64,
    pub deleted: bool,
    pub lease: i64,
    pub value: Vec<u8>,
}

impl Row {
    pub(crate) fn to_kv(&self) -> KeyValue {
        KeyValue {
            key: String::from_utf8_lossy(&self.key).into_owned(),
            value: self.value.clone(),
            create_revision: self.created,
            mod_revision: self.id,
            lease: self.lease,
        }
    }

    /// The event this row records, given the row it replaced.
    pub(crate) fn to_event(&self, prev: Option<&Row>) -> Event {
        let prev = prev.filter(|p| !p.deleted).map(Row::to_kv);
        if self.deleted {
            Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: String::from_utf8_lossy(&self.key).into_owned(),
                    value: Vec::new(),
                    create_revision: 0,
                    mod_revision: self.id,
                    lease: 0,
                },
                prev,
            }
        } else {
            Event {
                kind: EventKind::Put,
                kv: self.to_kv(),
                prev,
            }
        }
    }
}

pub(crate) const ROW_COLS: &str = "id, key, created, deleted, lease, value";

pub(crate) fn read_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Row> {
    Ok(Row {
        id: r.get(at)?,
        key: r.get(at + 1)?,
        created: r.get(at + 2)?,
        deleted: r.get::<_, i64>(at + 3)? != 0,
        lease: r.get(at + 4)?,
        value: r.get(at + 5)?,
    })
}

/// The newest row of `key` at or before `revision`.
pub(crate) fn row_at(
    conn: &Connection,
    key: &[u8],
    revision: i64,
) -> rusqlite::Result<Option<Row>> {
    conn.prepare_cached(&format!(
        "SELECT {ROW_COLS} FROM kv WHERE key = ?1 AND id <= ?2 ORDER BY id DESC LIMIT 1"
    ))?
    .query_row(params![key, revision], |r| read_row(r, 0))
    .optional()
}
