//! [`Registry`]: the state behind the HTTP server — the shared content store, the registry's
//! metadata db, upload sessions, and online garbage collection.
//!
//! # Online GC (why it never blocks pushes and never loses a blob a push references)
//!
//! A repository *links* a blob when an upload into it completes, when it is mounted into it,
//! or when a manifest is put (the manifest's own digest). Every link has a `seen` time, pushed
//! forward whenever a client uploads it, HEADs/GETs it (a pusher checking "do you have it?"),
//! mounts it, or puts a manifest that references it. For each link the content store holds a
//! reference `registry:<repo>` → digest (so the local image GC keeps it).
//!
//! [`Registry::gc`] runs in two phases:
//! 1. **Sweep** — one short SQLite `IMMEDIATE` transaction removes every link that no manifest
//!    of its repository is or references, and that was not seen within the grace period.
//!    A manifest PUT checks its references and records them in one `IMMEDIATE` transaction
//!    too, so the two serialise: either the PUT committed first (the sweep sees the
//!    references and keeps the blobs) or the sweep did (the PUT then finds the blob unlinked
//!    and answers MANIFEST_BLOB_UNKNOWN — it never records a manifest whose blob is gone).
//!    A push in progress touched its blobs (HEAD, upload, mount) within the grace period, so
//!    they are not swept from under it.
//! 2. **Collect** — drop the content-store references of the swept links and run the content
//!    store's GC, which deletes blobs nobody (local image, container, other repository,
//!    lease) references. Only this phase excludes the last step of an upload (link + reference,
//!    milliseconds) via an `RwLock` (uploads take it shared, the collect phase exclusively);
//!    blob data transfers, manifest reads and everything else never wait for GC.
//!
//! Uploads stream into `<root>/registry/uploads/<id>` (same filesystem as the blob store),
//! hashed as they arrive; completion verifies the digest, fsyncs, and renames the file into
//! the content store. A digest mismatch deletes the session: nothing is stored.

use crate::error::{io_ctx, ApiError, Code, Error, Result};
use crate::meta::Meta;
use gabang_content::digest::{Algorithm, Hasher};
use gabang_content::{Digest, Store};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Milliseconds since the epoch; a trait so tests can move time.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The system clock.
pub struct SystemClock;
impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// Who may do what.
#[derive(Clone, Default)]
pub enum AuthMode {
    /// Everyone may do everything.
    #[default]
    None,
    /// HTTP basic auth on every request against an htpasswd (bcrypt) file.
    Basic(Arc<crate::auth::Htpasswd>),
    /// The docker token flow: 401 with a Bearer challenge pointing at `/token` on this
    /// server, which trades htpasswd credentials for a short-lived token.
    Token(Arc<crate::auth::Htpasswd>),
}

/// Server settings.
#[derive(Clone)]
pub struct Config {
    /// Largest manifest accepted (413 above). Default 4 MiB.
    pub max_manifest_bytes: usize,
    /// Upper bound of `n` for tags and catalog pages.
    pub max_page: usize,
    /// Links not seen for this long and referenced by no manifest are collected by GC.
    pub gc_grace: Duration,
    /// Upload sessions older than this are abandoned and removed by GC.
    pub upload_ttl: Duration,
    /// Most upload sessions open at once (TOOMANYREQUESTS above).
    pub max_uploads: u64,
    pub auth: AuthMode,
    pub clock: Arc<dyn Clock>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_manifest_bytes: 4 << 20,
            max_page: 1000,
            gc_grace: Duration::from_secs(3600),
            upload_ttl: Duration::from_secs(24 * 3600),
            max_uploads: 10_000,
            auth: AuthMode::None,
            clock: Arc::new(SystemClock),
        }
    }
}

/// In-memory state of an upload: the running hash of the bytes received so far.
pub(crate) struct UploadState {
    pub hasher: Hasher,
    pub hashed: u64,
}

/// What [`Registry::gc`] did.
#[derive(Debug, Default, Clone)]
pub struct GcReport {
    pub links_removed: usize,
    pub uploads_removed: usize,
    pub blobs_removed: usize,
    pub bytes_freed: u64,
}

pub struct Registry {
    pub(crate) store: Arc<Store>,
    pub(crate) meta: Mutex<Meta>,
    pub(crate) config: Config,
    uploads_dir: PathBuf,
    pub(crate) uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<UploadState>>>>,
    /// Shared by upload/manifest commits, exclusive for GC's collect phase.
    pub(crate) commit_lock: tokio::sync::RwLock<()>,
    pub(crate) tokens: crate::auth::Tokens,
}

pub(crate) fn owner(repo: &str) -> String {
    format!("registry:{repo}")
}

impl Registry {
    /// Open the registry over a content store; metadata under `<store root>/registry/`.
    pub fn open(store: Arc<Store>, config: Config) -> Result<Registry> {
        let dir = store.root().join("registry");
        let meta = Meta::open(&dir)?;
        let uploads_dir = dir.join("uploads");
        io_ctx(std::fs::create_dir_all(&uploads_dir), || {
            format!("create {}", uploads_dir.display())
        })?;
        Ok(Registry {
            store,
            meta: Mutex::new(meta),
            config,
            uploads_dir,
            uploads: Mutex::new(HashMap::new()),
            commit_lock: tokio::sync::RwLock::new(()),
            tokens: Default::default(),
        })
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn now(&self) -> i64 {
        self.config.clock.now_ms()
    }

    pub(crate) fn meta(&self) -> std::result::Result<std::sync::MutexGuard<'_, Meta>, ApiError> {
        self.meta
            .lock()
            .map_err(|_| ApiError::internal("metadata lock poisoned"))
    }

    pub(crate) fn upload_path(&self, id: &str) -> PathBuf {
        self.uploads_dir.join(id)
    }

    /// Start an upload session; returns its id.
    pub(crate) fn new_upload(&self, repo: &str) -> std::result::Result<String, ApiError> {
        let meta = self.meta()?;
        if meta.count_uploads().map_err(ApiError::from)? >= self.config.max_uploads {
            return Err(ApiError::new(
                Code::TooManyRequests,
                "too many upload sessions in progress; retry later",
            ));
        }
        let id = format!("{:032x}", rand::random::<u128>());
        std::fs::File::create(self.upload_path(&id))?;
        meta.create_upload(&id, repo, self.now())
            .map_err(ApiError::from)?;
        drop(meta);
        self.uploads
            .lock()
            .map_err(|_| ApiError::internal("lock"))?
            .insert(
                id.clone(),
                Arc::new(tokio::sync::Mutex::new(UploadState {
                    hasher: Hasher::new(Algorithm::Sha256),
                    hashed: 0,
                })),
            );
        Ok(id)
    }

    /// The session's state (recreated after a restart: the hash then restarts from the file).
    pub(crate) fn upload_state(&self, id: &str) -> Option<Arc<tokio::sync::Mutex<UploadState>>> {
        let mut map = self.uploads.lock().ok()?;
        Some(
            map.entry(id.to_string())
                .or_insert_with(|| {
                    Arc::new(tokio::sync::Mutex::new(UploadState {
                        hasher: Hasher::new(Algorithm::Sha256),
                        hashed: u64::MAX,
                    }))
                })
                .clone(),
        )
    }

    /// Forget a session and its data.
    pub(crate) fn drop_upload(&self, id: &str) {
        if let Ok(m) = self.meta() {
            let _ = m.delete_upload(id);
        }
        if let Ok(mut map) = self.uploads.lock() {
            map.remove(id);
        }
        let _ = std::fs::remove_file(self.upload_path(id));
    }

    /// Finish an upload whose bytes are all in its file: verify `expected`, move the file into
    /// the content store, link it in `repo`. On a mismatch the session is deleted.
    pub(crate) async fn commit_upload(
        &self,
        repo: &str,
        id: &str,
        state: &mut UploadState,
        size: u64,
        expected: &Digest,
    ) -> std::result::Result<(), ApiError> {
        let path = self.upload_path(id);
        let actual = if state.hashed == size && expected.algorithm() == Algorithm::Sha256 {
            std::mem::replace(&mut state.hasher, Hasher::new(Algorithm::Sha256)).finish()
        } else {
            let p = path.clone();
            let algo = expected.algorithm();
            tokio::task::spawn_blocking(move || hash_file(&p, algo))
                .await
                .map_err(ApiError::internal)??
        };
        if &actual != expected {
            self.drop_upload(id);
            return Err(ApiError::new(
                Code::DigestInvalid,
                format!("uploaded content has digest {actual}, not {expected}"),
            ));
        }
        let _guard = self.commit_lock.read().await;
        let res = tokio::task::block_in_place(|| -> std::result::Result<(), ApiError> {
            let _lease = self.store.lease()?;
            let dest = self.store.blobs().path(expected);
            if dest.is_file() {
                self.store.blobs().touch(expected);
            } else {
                let f = std::fs::File::open(&path)?;
                f.sync_all()?;
                std::fs::rename(&path, &dest)?;
                if let Some(dir) = dest.parent() {
                    if let Ok(d) = std::fs::File::open(dir) {
                        let _ = d.sync_all();
                    }
                }
            }
            self.link(repo, expected, size)
        });
        self.drop_upload(id);
        res
    }

    /// Link a stored blob into `repo` (metadata + content-store reference).
    /// Callers hold `commit_lock` shared.
    pub(crate) fn link(
        &self,
        repo: &str,
        d: &Digest,
        size: u64,
    ) -> std::result::Result<(), ApiError> {
        self.meta()?
            .link_blob(repo, &d.to_string(), size, self.now())
            .map_err(ApiError::from)?;
        self.store
            .add_blob_refs(&owner(repo), std::slice::from_ref(d))?;
        Ok(())
    }

    /// Online garbage collection; see the module documentation.
    pub async fn gc(&self) -> Result<GcReport> {
        let now = self.now();
        let mut report = GcReport::default();
        // Abandoned uploads.
        let stale = self
            .meta
            .lock()
            .map_err(|_| Error::Config("metadata lock poisoned".into()))?
            .stale_uploads(now - self.config.upload_ttl.as_millis() as i64)?;
        for id in &stale {
            self.drop_upload(id);
        }
        report.uploads_removed = stale.len();
        // Phase 1: sweep links (one short transaction).
        let removed = self
            .meta
            .lock()
            .map_err(|_| Error::Config("metadata lock poisoned".into()))?
            .sweep(now - self.config.gc_grace.as_millis() as i64)?;
        report.links_removed = removed.len();
        // Phase 2: drop our references and collect, excluding only upload commits.
        let _guard = self.commit_lock.write().await;
        let store = self.store.clone();
        let content = tokio::task::block_in_place(move || -> Result<_> {
            for (repo, d) in &removed {
                if let Ok(d) = d.parse::<Digest>() {
                    store.remove_blob_refs(&owner(repo), Some(&[d]))?;
                }
            }
            Ok(store.gc()?)
        })?;
        report.blobs_removed = content.blobs_removed;
        report.bytes_freed = content.bytes_freed;
        Ok(report)
    }
}

fn hash_file(path: &Path, algo: Algorithm) -> std::result::Result<Digest, ApiError> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Hasher::new(algo);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}
