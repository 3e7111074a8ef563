//! Snapshots: unpacked layers keyed by chain id, in overlay format, so that a layer shared
//! by many images is unpacked once. `<root>/<chain hex>/fs` is the tree, `info.json` beside
//! it records parent, diff id and size. A snapshot is built in a locked staging directory
//! and renamed into place, so a reader sees all of it or nothing.

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// Temp entries younger than this may belong to a live writer that has not locked them yet.
pub(crate) const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

pub(crate) fn older_than(p: &Path, age: std::time::Duration) -> bool {
    fs::symlink_metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|e| e > age)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub chain_id: Digest,
    pub parent: Option<Digest>,
    pub diff_id: Digest,
    /// Bytes of file content in this layer.
    pub size: u64,
    /// Bytes of the uncompressed tar.
    pub tar_size: u64,
}

#[derive(Debug, Clone)]
pub struct Snapshots {
    root: PathBuf,
}

/// A snapshot under construction; removed on drop unless committed.
pub struct Staging {
    dir: PathBuf,
    _lock: File,
    committed: bool,
}

impl Staging {
    /// Where to unpack the layer.
    pub fn fs(&self) -> PathBuf {
        self.dir.join("fs")
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

impl Snapshots {
    pub fn open(root: &Path) -> Result<Self> {
        fs::create_dir_all(root).ctx(|| format!("create {}", root.display()))?;
        let s = Snapshots {
            root: root.to_path_buf(),
        };
        s.clean_stale()?;
        Ok(s)
    }

    fn clean_stale(&self) -> Result<()> {
        for e in fs::read_dir(&self.root)
            .ctx(|| format!("read {}", self.root.display()))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with(".staging-") || name.starts_with(".trash-") {
                let p = e.path();
                // A staging dir is created, then locked: leave young ones alone so we
                // never race a writer between its mkdir and its flock.
                if !older_than(&p, STALE_AFTER) {
                    continue;
                }
                let Ok(f) = File::open(p.join(".lock")) else {
                    let _ = fs::remove_dir_all(&p);
                    continue;
                };
                if rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive).is_ok() {
                    let _ = fs::remove_dir_all(&p);
                }
            }
        }
        Ok(())
    }

    fn dir(&self, chain: &Digest) -> PathBuf {
        self.root.join(chain.hex())
    }

    /// The unpacked tree of a snapshot (whether or not it exists).
    pub fn fs_path(&self, chain: &Digest) -> PathBuf {
        self.dir(chain).join("fs")
    }

    pub fn exists(&self, chain: &Digest) -> bool {
        self.dir(chain).join("info.json").is_file()
    }

    pub fn info(&self, chain: &Digest) -> Result<Option<SnapshotInfo>> {
        let p = self.dir(chain).join("info.json");
        match fs::read(&p) {
            Ok(b) => Ok(Some(
                serde_json::from_slice(&b).map_err(|e| Error::json(p.display().to_string(), e))?,
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io {
                context: format!("read {}", p.display()),
                source: e,
            }),
        }
    }

    pub fn stage(&self) -> Result<Staging> {
        let dir = self
            .root
            .join(format!(".staging-{:016x}", rand::random::<u64>()));
        fs::create_dir(&dir).ctx(|| format!("create {}", dir.display()))?;
        let lock =
            File::create(dir.join(".lock")).ctx(|| format!("create lock in {}", dir.display()))?;
        rustix::fs::flock(&lock, FlockOperation::LockExclusive)
            .ctx(|| "lock staging".to_string())?;
        fs::create_dir(dir.join("fs")).ctx(|| format!("create {}/fs", dir.display()))?;
        Ok(Staging {
            dir,
            _lock: lock,
            committed: false,
        })
    }

    /// Publish a staged snapshot. If another process published the same chain first, ours is dropped.
    pub fn commit(&self, mut staging: Staging, info: &SnapshotInfo) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(info).map_err(|e| Error::json("snapshot info", e))?;
        fs::write(staging.dir.join("info.json"), bytes)
            .ctx(|| "write snapshot info".to_string())?;
        let _ = fs::remove_file(staging.dir.join(".lock"));
        let dest = self.dir(&info.chain_id);
        match fs::rename(&staging.dir, &dest) {
            Ok(()) => {
                staging.committed = true;
                Ok(())
            }
            Err(_) if self.exists(&info.chain_id) => Ok(()),
            Err(e) => Err(Error::Io {
                context: format!("publish snapshot {}", dest.display()),
                source: e,
            }),
        }
    }

    pub fn list(&self) -> Result<Vec<SnapshotInfo>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.root)
            .ctx(|| format!("read {}", self.root.display()))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            if let Ok(d) = format!("sha256:{name}").parse::<Digest>() {
                if let Ok(Some(info)) = self.info(&d) {
                    out.push(info);
                }
            }
        }
        Ok(out)
    }

    /// Remove a snapshot: rename away first so no reader sees it half-deleted.
    pub fn remove(&self, chain: &Digest) -> Result<()> {
        let src = self.dir(chain);
        if !src.exists() {
            return Ok(());
        }
        let trash = self
            .root
            .join(format!(".trash-{:016x}", rand::random::<u64>()));
        fs::rename(&src, &trash).ctx(|| format!("remove snapshot {}", src.display()))?;
        fs::remove_dir_all(&trash).ctx(|| format!("remove {}", trash.display()))
    }
}
