//! Blobs by digest, with atomic ingest.
//!
//! Layout: `<root>/blobs/<algo>/<hex>` and `<root>/ingest/<random>` for writes in progress.
//! A write goes to a temp file held under an exclusive `flock`, is fsynced, verified
//! (size and digest), renamed into place and the directory fsynced. Readers therefore
//! never see a partial blob; two writers of one digest both rename an identical file.
//! Temp files whose lock is free belong to a dead writer and are removed on open.

use crate::digest::{Algorithm, Digest, HashingWriter};
use crate::error::{Error, IoContext, Result};
use rustix::fs::FlockOperation;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The blob half of the content store.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

/// Metadata of one stored blob.
#[derive(Debug, Clone)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
    pub modified: SystemTime,
}

impl BlobStore {
    /// Open (creating if needed) a blob store under `root`, removing temp files of dead writers.
    pub fn open(root: &Path) -> Result<Self> {
        for d in ["blobs/sha256", "blobs/sha512", "ingest"] {
            let p = root.join(d);
            fs::create_dir_all(&p).ctx(|| format!("create {}", p.display()))?;
        }
        let store = BlobStore {
            root: root.to_path_buf(),
        };
        store.clean_stale_ingests()?;
        Ok(store)
    }

    fn clean_stale_ingests(&self) -> Result<()> {
        let dir = self.root.join("ingest");
        for entry in fs::read_dir(&dir).ctx(|| format!("read {}", dir.display()))? {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            // Created, then locked: a young file may be a writer between the two.
            if !crate::snapshot::older_than(&path, crate::snapshot::STALE_AFTER) {
                continue;
            }
            let Ok(f) = File::open(&path) else { continue };
            // A live writer holds LOCK_EX; if we can take it, the writer is gone.
            if rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive).is_ok() {
                let _ = fs::remove_file(&path);
            }
        }
        Ok(())
    }

    /// Path of a blob (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    pub fn exists(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    pub fn info(&self, digest: &Digest) -> Result<BlobInfo> {
        let p = self.path(digest);
        let md = fs::metadata(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::BlobNotFound(digest.to_string()),
            _ => Error::Io {
                context: format!("stat {}", p.display()),
                source: e,
            },
        })?;
        Ok(BlobInfo {
            digest: digest.clone(),
            size: md.len(),
            modified: md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        })
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let p = self.path(digest);
        File::open(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::BlobNotFound(digest.to_string()),
            _ => Error::Io {
                context: format!("open {}", p.display()),
                source: e,
            },
        })
    }

    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.open_blob(digest)?
            .read_to_end(&mut buf)
            .ctx(|| format!("read blob {digest}"))?;
        Ok(buf)
    }

    /// Store bytes already in memory; returns their sha256 digest.
    pub fn put(&self, bytes: &[u8]) -> Result<Digest> {
        Ok(self.put_fresh(bytes)?.0)
    }

    /// Like [`BlobStore::put`], also telling whether this call created the blob.
    pub fn put_fresh(&self, bytes: &[u8]) -> Result<(Digest, bool)> {
        let mut w = self.writer(Algorithm::Sha256)?;
        w.write_all(bytes).ctx(|| "write blob".to_string())?;
        w.commit_fresh(None, None)
    }

    /// Store bytes that must have the given digest.
    pub fn put_expected(&self, bytes: &[u8], expected: &Digest) -> Result<Digest> {
        if self.exists(expected) {
            self.touch(expected);
            return Ok(expected.clone());
        }
        let mut w = self.writer(expected.algorithm())?;
        w.write_all(bytes).ctx(|| "write blob".to_string())?;
        w.commit(Some(expected), Some(bytes.len() as u64))
    }

    /// Copy a reader into the store, verifying the expected digest and size when given.
    pub fn ingest<R: Read>(
        &self,
        mut reader: R,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<Digest> {
        let algo = expected.map(|d| d.algorithm()).unwrap_or(Algorithm::Sha256);
        let mut w = self.writer(algo)?;
        io::copy(&mut reader, &mut w).ctx(|| "copy into blob store".to_string())?;
        w.commit(expected, expected_size)
    }

    /// Start a streaming write. Nothing is visible until [`BlobWriter::commit`].
    pub fn writer(&self, algo: Algorithm) -> Result<BlobWriter> {
        let name = format!("{:016x}", rand::random::<u64>());
        let path = self.root.join("ingest").join(name);
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .ctx(|| format!("create {}", path.display()))?;
        rustix::fs::flock(&file, FlockOperation::LockExclusive)
            .ctx(|| format!("lock {}", path.display()))?;
        Ok(BlobWriter {
            store: self.clone(),
            path,
            inner: Some(HashingWriter::new(
                io::BufWriter::with_capacity(1 << 20, file),
                algo,
            )),
        })
    }

    /// Bump the blob's mtime so an in-progress operation that reuses it is protected from GC.
    pub fn touch(&self, digest: &Digest) {
        if let Ok(f) = File::options().append(true).open(self.path(digest)) {
            let _ = f.set_modified(SystemTime::now());
        }
    }

    pub fn delete(&self, digest: &Digest) -> Result<bool> {
        let p = self.path(digest);
        match fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::Io {
                context: format!("remove {}", p.display()),
                source: e,
            }),
        }
    }

    /// Every stored blob.
    pub fn list(&self) -> Result<Vec<BlobInfo>> {
        let mut out = Vec::new();
        for algo in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.root.join("blobs").join(algo.name());
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(Error::Io {
                        context: format!("read {}", dir.display()),
                        source: e,
                    })
                }
            };
            for entry in rd.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                let Ok(digest) = format!("{}:{}", algo.name(), name).parse::<Digest>() else {
                    continue;
                };
                if let Ok(md) = entry.metadata() {
                    out.push(BlobInfo {
                        digest,
                        size: md.len(),
                        modified: md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Bytes used by all blobs.
    pub fn total_size(&self) -> Result<u64> {
        Ok(self.list()?.iter().map(|b| b.size).sum())
    }
}

/// A blob being written. Dropping it without commit removes the temp file.
pub struct BlobWriter {
    store: BlobStore,
    path: PathBuf,
    inner: Option<HashingWriter<io::BufWriter<File>>>,
}

impl BlobWriter {
    pub fn bytes_written(&self) -> u64 {
        self.inner.as_ref().map(|w| w.count_written()).unwrap_or(0)
    }

    /// Verify and publish the blob. Returns its digest.
    pub fn commit(self, expected: Option<&Digest>, expected_size: Option<u64>) -> Result<Digest> {
        Ok(self.commit_fresh(expected, expected_size)?.0)
    }

    /// Like [`BlobWriter::commit`], also telling whether the blob is new (false: it was already stored).
    pub fn commit_fresh(
        mut self,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<(Digest, bool)> {
        let Some(w) = self.inner.take() else {
            return Err(Error::invalid("blob writer", "already committed"));
        };
        let (buf, digest, size) = w.finish();
        let file = buf
            .into_inner()
            .map_err(|e| e.into_error())
            .ctx(|| format!("flush {}", self.path.display()))?;
        if let Some(exp) = expected_size {
            if exp != size {
                return Err(Error::SizeMismatch {
                    what: expected
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "blob".into()),
                    expected: exp,
                    actual: size,
                });
            }
        }
        if let Some(exp) = expected {
            if *exp != digest {
                return Err(Error::DigestMismatch {
                    what: "blob".into(),
                    expected: exp.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        let dest = self.store.path(&digest);
        if dest.is_file() {
            // Someone stored it already: identical bytes by definition.
            self.store.touch(&digest);
            return Ok((digest, false));
        }
        file.sync_all()
            .ctx(|| format!("fsync {}", self.path.display()))?;
        fs::rename(&self.path, &dest).ctx(|| format!("rename into {}", dest.display()))?;
        if let Some(dir) = dest.parent() {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok((digest, true))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.inner.as_mut() {
            Some(w) => w.write(buf),
            None => Err(io::Error::other("blob writer already committed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.inner.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // On commit the temp file was renamed away (or is an already-stored duplicate).
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_verify_and_dedupe() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        let d = s.put(b"hello").unwrap();
        assert_eq!(d, Digest::sha256_of(b"hello"));
        assert_eq!(s.read(&d).unwrap(), b"hello");
        // Wrong digest: nothing stored, no temp left behind.
        let wrong = Digest::sha256_of(b"other");
        let err = s.ingest(&b"hello!"[..], Some(&wrong), None).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert!(!s.exists(&wrong));
        let err = s.ingest(&b"hello"[..], Some(&d), Some(3)).unwrap_err();
        assert!(matches!(err, Error::SizeMismatch { .. }), "{err}");
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);
        // Same content twice: one blob.
        s.put(b"hello").unwrap();
        assert_eq!(s.list().unwrap().len(), 1);
    }

    #[test]
    fn concurrent_writers_of_one_digest_end_with_one_intact_blob() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..(3 << 20)).map(|i| (i * 7 % 251) as u8).collect();
        let want = Digest::sha256_of(&data);
        std::thread::scope(|sc| {
            for _ in 0..8 {
                sc.spawn(|| {
                    let mut w = s.writer(Algorithm::Sha256).unwrap();
                    for chunk in data.chunks(4096) {
                        w.write_all(chunk).unwrap();
                    }
                    assert_eq!(w.commit(Some(&want), None).unwrap(), want);
                });
            }
        });
        assert_eq!(s.read(&want).unwrap(), data);
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);
    }

    #[test]
    fn stale_temp_files_of_dead_writers_are_removed_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path()).unwrap();
        // A "crashed" writer: an unlocked temp file, older than the stale age.
        fs::write(dir.path().join("ingest/deadbeef"), b"partial").unwrap();
        let old = SystemTime::now() - std::time::Duration::from_secs(3600);
        File::options()
            .append(true)
            .open(dir.path().join("ingest/deadbeef"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        // A live writer in this process holds its lock (flock is per open file description).
        let mut live = s.writer(Algorithm::Sha256).unwrap();
        live.write_all(b"in progress").unwrap();
        live.flush().unwrap();
        BlobStore::open(dir.path()).unwrap();
        let left: Vec<_> = fs::read_dir(dir.path().join("ingest"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "{left:?}");
        assert_ne!(left[0], "deadbeef");
        live.commit(None, None).unwrap();
    }
}
