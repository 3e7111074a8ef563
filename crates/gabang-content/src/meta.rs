//! Image metadata in SQLite (WAL): images by manifest digest, tags, usage by containers,
//! and leases that protect in-progress operations from GC. Many processes share it.

use crate::error::Result;
use rusqlite::{params, Connection};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) struct Meta {
    conn: Connection,
    wal: std::path::PathBuf,
}

/// WAL size above which a closing connection folds the WAL into the database and cuts it
/// to zero (see [`Meta::open`]).
const WAL_TRUNCATE_BYTES: u64 = 256 * 1024;

impl Drop for Meta {
    fn drop(&mut self) {
        // Every CLI process is the first to open the database, and SQLite then rebuilds the
        // WAL index by reading and checksumming the whole WAL (its record of what was
        // already checkpointed lives in the -shm file, which the first opener resets). So
        // the WAL must stay short: with checkpoint-on-close off, it would only grow. Once
        // it passes 256 KiB, the closing connection checkpoints and truncates it (a few
        // fsyncs every few dozen CLI calls; skipped if another process is reading).
        if std::fs::metadata(&self.wal).is_ok_and(|m| m.len() > WAL_TRUNCATE_BYTES) {
            let _ = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
    }
}

/// One row of the images table.
#[derive(Debug, Clone)]
pub struct ImageRow {
    pub manifest_digest: String,
    pub media_type: String,
    pub config_digest: String,
    /// Unix seconds when this store got the image.
    pub added: i64,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}

impl Meta {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        // The WAL is fsynced at every durable commit; checkpointing it into the main file at
        // every close only cost two more fsyncs per CLI call; `Drop` truncates it once it
        // is long.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // A process that never drops its connection (the shared store of a CLI command
        // that exits through `process::exit`, a node agent that runs for weeks) keeps the
        // WAL short too: a passive checkpoint once it holds 64 pages, and the next writer
        // after a complete one restarts it, cut back to 256 KiB. The next process to open
        // the database then recovers at most that much, not megabytes of old frames.
        conn.pragma_update(None, "wal_autocheckpoint", 64)?;
        conn.pragma_update(None, "journal_size_limit", WAL_TRUNCATE_BYTES as i64)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS images (
                 manifest_digest TEXT PRIMARY KEY,
                 media_type TEXT NOT NULL,
                 config_digest TEXT NOT NULL,
                 added INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS images_config ON images(config_digest);
             CREATE TABLE IF NOT EXISTS tags (
                 name TEXT PRIMARY KEY,
                 manifest_digest TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS usage (
                 image TEXT NOT NULL,
                 owner TEXT NOT NULL,
                 PRIMARY KEY (image, owner));
             CREATE TABLE IF NOT EXISTS blob_refs (
                 owner TEXT NOT NULL,
                 digest TEXT NOT NULL,
                 PRIMARY KEY (owner, digest));
             CREATE TABLE IF NOT EXISTS leases (
                 id TEXT PRIMARY KEY,
                 pid INTEGER NOT NULL,
                 created_ms INTEGER NOT NULL,
                 expires_ms INTEGER NOT NULL);",
        )?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Ok(Meta {
            conn,
            wal: wal.into(),
        })
    }

    /// Insert an image and point tags at it, in one transaction.
    pub(crate) fn put_image(&mut self, row: &ImageRow, tags: &[String]) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO images (manifest_digest, media_type, config_digest, added)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(manifest_digest) DO NOTHING",
            params![
                row.manifest_digest,
                row.media_type,
                row.config_digest,
                row.added
            ],
        )?;
        for t in tags {
            tx.execute(
                "INSERT INTO tags (name, manifest_digest) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET manifest_digest = excluded.manifest_digest
             WHERE tags.manifest_digest != excluded.manifest_digest",
                params![t, row.manifest_digest],
            )?;
        }
        // Like docker, one image ID shows once: drop untagged, unused manifests of the same
        // config that this one supersedes (their blobs go at the next GC).
        tx.execute(
            "DELETE FROM images WHERE config_digest = ?1 AND manifest_digest != ?2
               AND manifest_digest NOT IN (SELECT manifest_digest FROM tags)
               AND manifest_digest NOT IN (SELECT image FROM usage)
               AND config_digest NOT IN (SELECT image FROM usage)",
            params![row.config_digest, row.manifest_digest],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn images(&self) -> Result<Vec<ImageRow>> {
        let mut st = self
            .conn
            .prepare("SELECT manifest_digest, media_type, config_digest, added FROM images")?;
        let rows = st
            .query_map([], |r| {
                Ok(ImageRow {
                    manifest_digest: r.get(0)?,
                    media_type: r.get(1)?,
                    config_digest: r.get(2)?,
                    added: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// The image a fully qualified `name:tag` points at, with all of its tags.
    pub(crate) fn by_tag(&self, name: &str) -> Result<Option<(ImageRow, Vec<String>)>> {
        use rusqlite::OptionalExtension;
        let row = self
            .conn
            .query_row(
                "SELECT i.manifest_digest, i.media_type, i.config_digest, i.added
                   FROM tags t JOIN images i ON i.manifest_digest = t.manifest_digest
                  WHERE t.name = ?1",
                [name],
                |r| {
                    Ok(ImageRow {
                        manifest_digest: r.get(0)?,
                        media_type: r.get(1)?,
                        config_digest: r.get(2)?,
                        added: r.get(3)?,
                    })
                },
            )
            .optional()?;
        let Some(row) = row else { return Ok(None) };
        let mut st = self
            .conn
            .prepare("SELECT name FROM tags WHERE manifest_digest = ?1 ORDER BY name")?;
        let tags = st
            .query_map([&row.manifest_digest], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(Some((row, tags)))
    }

    /// All (tag, manifest digest) pairs.
    pub(crate) fn tags(&self) -> Result<Vec<(String, String)>> {
        let mut st = self
            .conn
            .prepare("SELECT name, manifest_digest FROM tags ORDER BY name")?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    pub(crate) fn set_tag(&self, name: &str, manifest_digest: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO tags (name, manifest_digest) VALUES (?1, ?2)
             ON CONFLICT(name) DO UPDATE SET manifest_digest = excluded.manifest_digest
             WHERE tags.manifest_digest != excluded.manifest_digest",
            params![name, manifest_digest],
        )?;
        Ok(())
    }

    pub(crate) fn remove_tag(&self, name: &str) -> Result<bool> {
        Ok(self
            .conn
            .execute("DELETE FROM tags WHERE name = ?1", [name])?
            > 0)
    }

    /// Delete an image row and its tags.
    pub(crate) fn remove_image(&mut self, manifest_digest: &str) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "DELETE FROM tags WHERE manifest_digest = ?1",
            [manifest_digest],
        )?;
        tx.execute(
            "DELETE FROM images WHERE manifest_digest = ?1",
            [manifest_digest],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Usage records are written without fsync, like leases: they only matter while the
    /// machine is up (a process crash loses nothing in WAL mode; after a power loss every
    /// container is stopped and its record is re-added when it starts again). Every
    /// `gabang run` writes two of them, and a WAL fsync costs more than starting the container.
    pub(crate) fn add_usage(&self, image: &str, owner: &str) -> Result<()> {
        self.without_sync(|| {
            self.conn.execute(
                "INSERT OR IGNORE INTO usage (image, owner) VALUES (?1, ?2)",
                params![image, owner],
            )?;
            Ok(())
        })
    }

    pub(crate) fn remove_usage(&self, image: &str, owner: &str) -> Result<()> {
        self.without_sync(|| {
            self.conn.execute(
                "DELETE FROM usage WHERE image = ?1 AND owner = ?2",
                params![image, owner],
            )?;
            Ok(())
        })
    }

    /// Owners using an image (by manifest or config digest).
    pub(crate) fn users(&self, keys: &[&str]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut st = self
            .conn
            .prepare("SELECT owner FROM usage WHERE image = ?1")?;
        for k in keys {
            for o in st.query_map([k], |r| r.get::<_, String>(0))? {
                out.push(o?);
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    pub(crate) fn all_usage(&self) -> Result<Vec<(String, String)>> {
        let mut st = self.conn.prepare("SELECT image, owner FROM usage")?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    pub(crate) fn add_blob_refs(&mut self, owner: &str, digests: &[String]) -> Result<()> {
        let tx = self.conn.transaction()?;
        for d in digests {
            tx.execute(
                "INSERT OR IGNORE INTO blob_refs (owner, digest) VALUES (?1, ?2)",
                params![owner, d],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn remove_blob_refs(
        &mut self,
        owner: &str,
        digests: Option<&[String]>,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        match digests {
            None => {
                tx.execute("DELETE FROM blob_refs WHERE owner = ?1", [owner])?;
            }
            Some(ds) => {
                for d in ds {
                    tx.execute(
                        "DELETE FROM blob_refs WHERE owner = ?1 AND digest = ?2",
                        params![owner, d],
                    )?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub(crate) fn all_blob_refs(&self) -> Result<Vec<String>> {
        let mut st = self.conn.prepare("SELECT DISTINCT digest FROM blob_refs")?;
        let rows = st
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(rows)
    }

    /// Leases need no durability: a lease lost in a crash belonged to a dead process, which
    /// `oldest_live_lease` would drop anyway. So their writes skip the fsync (a later durable
    /// commit syncs the WAL frames before it), which keeps a no-op `build` free of fsyncs.
    fn without_sync<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.conn.pragma_update(None, "synchronous", "OFF")?;
        let r = f();
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        r
    }

    pub(crate) fn add_lease(&self, id: &str, ttl: Duration) -> Result<()> {
        let now = now_ms();
        self.without_sync(|| {
            self.conn.execute(
                "INSERT INTO leases (id, pid, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)",
                params![id, std::process::id(), now, now + ttl.as_millis() as i64],
            )?;
            Ok(())
        })
    }

    pub(crate) fn remove_lease(&self, id: &str) -> Result<()> {
        self.without_sync(|| {
            self.conn
                .execute("DELETE FROM leases WHERE id = ?1", [id])?;
            Ok(())
        })
    }

    /// Creation time (ms) of the oldest live lease; expired or orphaned leases are dropped.
    pub(crate) fn oldest_live_lease(&self) -> Result<Option<i64>> {
        let now = now_ms();
        let mut st = self
            .conn
            .prepare("SELECT id, pid, created_ms, expires_ms FROM leases")?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut oldest: Option<i64> = None;
        for (id, pid, created, expires) in rows {
            let alive = pid > 0
                && rustix::process::Pid::from_raw(pid as i32)
                    .map(|p| rustix::process::test_kill_process(p).is_ok())
                    .unwrap_or(false);
            if expires < now || !alive {
                self.remove_lease(&id)?;
                continue;
            }
            oldest = Some(oldest.map_or(created, |o: i64| o.min(created)));
        }
        Ok(oldest)
    }
}
