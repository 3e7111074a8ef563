//! The registry's own metadata, in SQLite (WAL) at `<root>/registry/registry.db`: which blobs
//! each repository links, its manifests (with what they reference and their subject), tags,
//! and upload sessions. Blob bytes live in the shared content store.

use crate::error::{io_ctx, Result};
use crate::manifest::Parsed;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;

pub struct Meta {
    conn: Connection,
}

/// A stored manifest row.
#[derive(Debug, Clone)]
pub struct ManifestRow {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

/// Why a manifest could not be recorded.
#[derive(Debug)]
pub enum PutManifestError {
    /// Blobs (or child manifests) the repository does not have.
    Missing(Vec<String>),
    Db(rusqlite::Error),
}

impl From<rusqlite::Error> for PutManifestError {
    fn from(e: rusqlite::Error) -> Self {
        PutManifestError::Db(e)
    }
}

impl Meta {
    pub fn open(dir: &Path) -> Result<Meta> {
        io_ctx(std::fs::create_dir_all(dir), || {
            format!("create {}", dir.display())
        })?;
        let conn = Connection::open(dir.join("registry.db"))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS blob_links(repo TEXT NOT NULL, digest TEXT NOT NULL,
                size INTEGER NOT NULL, seen_ms INTEGER NOT NULL, PRIMARY KEY(repo, digest));
             CREATE INDEX IF NOT EXISTS blob_links_digest ON blob_links(digest);
             CREATE TABLE IF NOT EXISTS manifests(repo TEXT NOT NULL, digest TEXT NOT NULL,
                media_type TEXT NOT NULL, size INTEGER NOT NULL, subject TEXT,
                artifact_type TEXT, annotations TEXT, created_ms INTEGER NOT NULL,
                PRIMARY KEY(repo, digest));
             CREATE INDEX IF NOT EXISTS manifests_subject ON manifests(repo, subject);
             CREATE TABLE IF NOT EXISTS manifest_refs(repo TEXT NOT NULL, manifest TEXT NOT NULL,
                child TEXT NOT NULL, PRIMARY KEY(repo, manifest, child));
             CREATE INDEX IF NOT EXISTS manifest_refs_child ON manifest_refs(repo, child);
             CREATE TABLE IF NOT EXISTS tags(repo TEXT NOT NULL, tag TEXT NOT NULL,
                digest TEXT NOT NULL, PRIMARY KEY(repo, tag));
             CREATE TABLE IF NOT EXISTS uploads(id TEXT PRIMARY KEY, repo TEXT NOT NULL,
                offset INTEGER NOT NULL, started_ms INTEGER NOT NULL);",
        )?;
        Ok(Meta { conn })
    }

    // ---- blobs ----

    pub fn link_blob(&self, repo: &str, digest: &str, size: u64, now: i64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO blob_links(repo, digest, size, seen_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(repo, digest) DO UPDATE SET seen_ms = MAX(seen_ms, ?4)",
            params![repo, digest, size as i64, now],
        )?;
        Ok(())
    }

    /// The size of a blob linked in `repo`; refreshes its last-seen time (see `gc`).
    pub fn blob_linked(&self, repo: &str, digest: &str, now: i64) -> Result<Option<u64>> {
        let size: Option<i64> = self
            .conn
            .query_row(
                "UPDATE blob_links SET seen_ms = MAX(seen_ms, ?3) WHERE repo = ?1 AND digest = ?2
                 RETURNING size",
                params![repo, digest, now],
                |r| r.get(0),
            )
            .optional()?;
        Ok(size.map(|s| s as u64))
    }

    pub fn unlink_blob(&self, repo: &str, digest: &str) -> Result<bool> {
        Ok(self.conn.execute(
            "DELETE FROM blob_links WHERE repo = ?1 AND digest = ?2",
            params![repo, digest],
        )? > 0)
    }

    pub fn repo_exists(&self, repo: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM blob_links WHERE repo = ?1 UNION SELECT 1 FROM manifests WHERE repo = ?1 LIMIT 1",
                params![repo],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    // ---- manifests ----

    /// Record a manifest (already in the blob store) in one IMMEDIATE transaction: checks that
    /// every blob and child manifest it references is linked in `repo`, refreshing them, so a
    /// concurrent GC sweep (also one transaction) either sees these references or ran before.
    #[allow(clippy::too_many_arguments)]
    pub fn put_manifest(
        &mut self,
        repo: &str,
        digest: &str,
        size: u64,
        parsed: &Parsed,
        tag: Option<&str>,
        now: i64,
    ) -> std::result::Result<(), PutManifestError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut missing = Vec::new();
        let mut refs: Vec<String> = parsed.blobs.iter().map(|d| d.to_string()).collect();
        refs.extend(parsed.children.iter().map(|c| c.digest.clone()));
        for child in &refs {
            let n = tx.execute(
                "UPDATE blob_links SET seen_ms = MAX(seen_ms, ?3) WHERE repo = ?1 AND digest = ?2",
                params![repo, child, now],
            )?;
            if n == 0 {
                missing.push(child.clone());
            }
        }
        if !missing.is_empty() {
            return Err(PutManifestError::Missing(missing));
        }
        tx.execute(
            "INSERT INTO blob_links(repo, digest, size, seen_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(repo, digest) DO UPDATE SET seen_ms = MAX(seen_ms, ?4)",
            params![repo, digest, size as i64, now],
        )?;
        let ann = parsed
            .annotations
            .as_ref()
            .map(|a| serde_json::Value::Object(a.clone()).to_string());
        tx.execute(
            "INSERT INTO manifests(repo, digest, media_type, size, subject, artifact_type, annotations, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT(repo, digest) DO UPDATE SET media_type = ?3",
            params![
                repo,
                digest,
                parsed.media_type,
                size as i64,
                parsed.subject.as_ref().map(|s| s.to_string()),
                parsed.artifact_type,
                ann,
                now
            ],
        )?;
        for child in &refs {
            tx.execute(
                "INSERT OR IGNORE INTO manifest_refs(repo, manifest, child) VALUES (?1, ?2, ?3)",
                params![repo, digest, child],
            )?;
        }
        if let Some(t) = tag {
            tx.execute(
                "INSERT INTO tags(repo, tag, digest) VALUES (?1, ?2, ?3)
                 ON CONFLICT(repo, tag) DO UPDATE SET digest = ?3",
                params![repo, t, digest],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn manifest(&self, repo: &str, digest: &str) -> Result<Option<ManifestRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT digest, media_type, size, artifact_type, annotations FROM manifests
                 WHERE repo = ?1 AND digest = ?2",
                params![repo, digest],
                row_to_manifest,
            )
            .optional()?)
    }

    pub fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT digest FROM tags WHERE repo = ?1 AND tag = ?2",
                params![repo, tag],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Delete a manifest and the tags pointing at it. Its blobs stay linked until GC.
    pub fn delete_manifest(&mut self, repo: &str, digest: &str) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "DELETE FROM manifests WHERE repo = ?1 AND digest = ?2",
            params![repo, digest],
        )?;
        tx.execute(
            "DELETE FROM manifest_refs WHERE repo = ?1 AND manifest = ?2",
            params![repo, digest],
        )?;
        tx.execute(
            "DELETE FROM tags WHERE repo = ?1 AND digest = ?2",
            params![repo, digest],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    pub fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool> {
        Ok(self.conn.execute(
            "DELETE FROM tags WHERE repo = ?1 AND tag = ?2",
            params![repo, tag],
        )? > 0)
    }

    /// Tags of `repo` after `last`, sorted, at most `n`.
    pub fn tags(&self, repo: &str, n: usize, last: Option<&str>) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare("SELECT tag FROM tags WHERE repo = ?1 AND tag > ?2 ORDER BY tag LIMIT ?3")?;
        let rows = st.query_map(params![repo, last.unwrap_or(""), n as i64], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    /// Repositories (with at least one manifest) after `last`, sorted, at most `n`.
    pub fn catalog(&self, n: usize, last: Option<&str>) -> Result<Vec<String>> {
        let mut st = self.conn.prepare(
            "SELECT DISTINCT repo FROM manifests WHERE repo > ?1 ORDER BY repo LIMIT ?2",
        )?;
        let rows = st.query_map(params![last.unwrap_or(""), n as i64], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    /// Manifests of `repo` whose subject is `subject`.
    pub fn referrers(&self, repo: &str, subject: &str) -> Result<Vec<ManifestRow>> {
        let mut st = self.conn.prepare(
            "SELECT digest, media_type, size, artifact_type, annotations FROM manifests
             WHERE repo = ?1 AND subject = ?2 ORDER BY created_ms, digest",
        )?;
        let rows = st.query_map(params![repo, subject], row_to_manifest)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    // ---- uploads ----

    pub fn create_upload(&self, id: &str, repo: &str, now: i64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO uploads(id, repo, offset, started_ms) VALUES (?1, ?2, 0, ?3)",
            params![id, repo, now],
        )?;
        Ok(())
    }

    /// (repository, offset) of an upload session.
    pub fn upload(&self, id: &str) -> Result<Option<(String, u64)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT repo, offset FROM uploads WHERE id = ?1",
                params![id],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)),
            )
            .optional()?)
    }

    pub fn set_upload_offset(&self, id: &str, offset: u64) -> Result<()> {
        self.conn.execute(
            "UPDATE uploads SET offset = ?2 WHERE id = ?1",
            params![id, offset as i64],
        )?;
        Ok(())
    }

    pub fn delete_upload(&self, id: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM uploads WHERE id = ?1", params![id])?;
        Ok(())
    }

    pub fn count_uploads(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM uploads", [], |r| r.get::<_, i64>(0))?
            as u64)
    }

    /// Upload sessions started before `before_ms` (abandoned).
    pub fn stale_uploads(&self, before_ms: i64) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare("SELECT id FROM uploads WHERE started_ms < ?1")?;
        let rows = st.query_map(params![before_ms], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
    }

    // ---- gc ----

    /// One IMMEDIATE transaction: unlink every blob that no manifest of its repository is or
    /// references and that nobody uploaded, looked up or referenced since `seen_before_ms`.
    /// Returns the (repo, digest) links removed.
    pub fn sweep(&mut self, seen_before_ms: i64) -> Result<Vec<(String, String)>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let removed = {
            let mut st = tx.prepare(
                "DELETE FROM blob_links AS b WHERE b.seen_ms < ?1
                   AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.repo = b.repo AND m.digest = b.digest)
                   AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.repo = b.repo AND r.child = b.digest)
                 RETURNING repo, digest",
            )?;
            let rows = st.query_map(params![seen_before_ms], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<Vec<(String, String)>>>()?
        };
        tx.commit()?;
        Ok(removed)
    }

    /// Whether any repository links `digest`.
    pub fn linked_anywhere(&self, digest: &str) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM blob_links WHERE digest = ?1 LIMIT 1",
                params![digest],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Every (repo, digest) link, for re-asserting the content store's references.
    pub fn all_links(&self) -> Result<Vec<(String, String)>> {
        let mut st = self.conn.prepare("SELECT repo, digest FROM blob_links")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<(String, String)>>>()?)
    }
}

fn row_to_manifest(r: &rusqlite::Row<'_>) -> rusqlite::Result<ManifestRow> {
    Ok(ManifestRow {
        digest: r.get(0)?,
        media_type: r.get(1)?,
        size: r.get::<_, i64>(2)? as u64,
        artifact_type: r.get(3)?,
        annotations: r.get(4)?,
    })
}
