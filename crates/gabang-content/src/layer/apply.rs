//! Safe application of an untrusted layer tar into a directory, in overlay format.
//!
//! Every path is resolved with `openat2(RESOLVE_IN_ROOT)` from a descriptor of the
//! destination, so symlinks in the tar (or already applied) can never lead a write,
//! a chmod or a chown outside it. Entries containing `..` are rejected by name; absolute
//! paths are taken relative to the root, as docker does. Device nodes are never created
//! (reported as skipped). Whiteouts become what overlayfs understands: `.wh.NAME` → a 0/0
//! character device `NAME`, `.wh..wh..opq` → xattr `trusted.overlay.opaque=y` on the
//! directory. Decompression bombs are stopped by a byte cap and a ratio cap.

use super::{decompressed, Compression, Pipelined};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{Error, IoContext, Result};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Limits and behaviour of [`apply_layer`].
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Refuse a layer whose uncompressed tar is larger than this.
    pub max_bytes: u64,
    /// Refuse a layer that expands more than this many times its compressed size...
    pub max_ratio: u64,
    /// ...once it has expanded past this many bytes.
    pub ratio_floor: u64,
    /// Apply owners from the tar (needs root).
    pub same_owner: bool,
    /// The diff id the uncompressed tar must have, if known.
    pub expected_diff_id: Option<Digest>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            max_bytes: 64 << 30,
            max_ratio: 200,
            ratio_floor: 512 << 20,
            same_owner: rustix::process::geteuid().is_root(),
            expected_diff_id: None,
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone)]
pub struct ApplyReport {
    pub diff_id: Digest,
    pub compression: Compression,
    pub compressed_bytes: u64,
    pub tar_bytes: u64,
    /// Bytes of regular file content written (what `docker images` calls SIZE).
    pub content_bytes: u64,
    pub entries: u64,
    /// Entries not created, with why (device nodes).
    pub skipped: Vec<String>,
}

struct Counting<R> {
    inner: R,
    n: Arc<AtomicU64>,
}
impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n.fetch_add(k as u64, Ordering::Relaxed);
        Ok(k)
    }
}

/// Hashes and bounds the decompressed stream; runs on the producer thread.
struct Tap<R> {
    inner: R,
    hasher: Option<Hasher>,
    n: u64,
    compressed: Arc<AtomicU64>,
    opts: ApplyOptions,
    result: Arc<Mutex<TapResult>>,
}

#[derive(Default)]
struct TapResult {
    digest: Option<(Digest, u64)>,
    limit: Option<String>,
}

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        if k == 0 {
            if let Some(h) = self.hasher.take() {
                if let Ok(mut r) = self.result.lock() {
                    r.digest = Some((h.finish(), self.n));
                }
            }
            return Ok(0);
        }
        self.n += k as u64;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..k]);
        }
        let c = self.compressed.load(Ordering::Relaxed).max(1);
        let msg = if self.n > self.opts.max_bytes {
            Some(format!(
                "uncompressed size exceeds the limit of {} bytes",
                self.opts.max_bytes
            ))
        } else if self.n > self.opts.ratio_floor && self.n / c > self.opts.max_ratio {
            Some(format!(
                "expands more than {}x its compressed size ({} bytes from {}): decompression bomb?",
                self.opts.max_ratio, self.n, c
            ))
        } else {
            None
        };
        if let Some(m) = msg {
            if let Ok(mut r) = self.result.lock() {
                r.limit = Some(m.clone());
            }
            return Err(io::Error::other(m));
        }
        Ok(k)
    }
}

/// Apply a (possibly compressed) layer tar from `reader` into the existing directory `dest`.
pub fn apply_layer<R: Read + Send + 'static>(
    reader: R,
    dest: &Path,
    opts: &ApplyOptions,
) -> Result<ApplyReport> {
    let compressed = Arc::new(AtomicU64::new(0));
    let counting = Counting {
        inner: reader,
        n: compressed.clone(),
    };
    let (compression, dec) = decompressed(counting).ctx(|| "read layer".to_string())?;
    let result = Arc::new(Mutex::new(TapResult::default()));
    let tap = Tap {
        inner: dec,
        hasher: Some(Hasher::new(Algorithm::Sha256)),
        n: 0,
        compressed: compressed.clone(),
        opts: opts.clone(),
        result: result.clone(),
    };
    let piped = Pipelined::new(tap);
    let mut applier = Applier::new(dest, opts)?;
    let res = applier.run(piped);
    let limit = result.lock().ok().and_then(|r| r.limit.clone());
    if let Some(m) = limit {
        return Err(Error::LayerLimit(m));
    }
    res?;
    let (diff_id, tar_bytes) = result
        .lock()
        .ok()
        .and_then(|r| r.digest.clone())
        .ok_or_else(|| Error::invalid("layer", "stream ended early"))?;
    if let Some(exp) = &opts.expected_diff_id {
        if *exp != diff_id {
            return Err(Error::DigestMismatch {
                what: "layer diff id (uncompressed content)".into(),
                expected: exp.to_string(),
                actual: diff_id.to_string(),
            });
        }
    }
    Ok(ApplyReport {
        diff_id,
        compression,
        compressed_bytes: compressed.load(Ordering::Relaxed),
        tar_bytes,
        content_bytes: applier.content_bytes,
        entries: applier.entries,
        skipped: applier.skipped,
    })
}

/// Entry-by-entry writer into a root directory descriptor.
pub(crate) struct Applier {
    root: OwnedFd,
    opts: ApplyOptions,
    /// Last parent directory opened (path → fd); cleared whenever the tree shape changes.
    parent_cache: Option<(Vec<u8>, OwnedFd)>,
    dir_times: Vec<(Vec<u8>, i64)>,
    buf: Vec<u8>,
    pub content_bytes: u64,
    pub entries: u64,
    pub skipped: Vec<String>,
}

fn unsafe_entry(entry: &str, reason: impl Into<String>) -> Error {
    Error::UnsafeEntry {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

/// Split a tar path into clean components; `..` is refused, `/` and `.` dropped.
pub(crate) fn clean_components(raw: &[u8], shown: &str) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(unsafe_entry(shown, "path contains '..'")),
            c if c.contains(&0) => return Err(unsafe_entry(shown, "path contains NUL")),
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

fn join(comps: &[Vec<u8>]) -> Vec<u8> {
    comps.join(&b'/')
}

fn in_root() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

impl Applier {
    pub(crate) fn new(dest: &Path, opts: &ApplyOptions) -> Result<Self> {
        let root = rustix::fs::open(
            dest,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("open {}", dest.display()))?;
        Ok(Applier {
            root,
            opts: opts.clone(),
            parent_cache: None,
            dir_times: Vec::new(),
            buf: vec![0u8; 256 << 10],
            content_bytes: 0,
            entries: 0,
            skipped: Vec::new(),
        })
    }

    pub(crate) fn run<R: Read>(&mut self, reader: R) -> Result<()> {
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().ctx(|| "read layer tar".to_string())?;
        for entry in entries {
            let entry = entry.ctx(|| "read layer tar entry".to_string())?;
            self.entry(entry)?;
            self.entries += 1;
        }
        // Hash everything, including padding after the end-of-archive marker.
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink()).ctx(|| "read layer tail".to_string())?;
        self.finish_dirs();
        Ok(())
    }

    fn finish_dirs(&mut self) {
        for (path, mtime) in std::mem::take(&mut self.dir_times).into_iter().rev() {
            let p = if path.is_empty() { b".".to_vec() } else { path };
            if let Ok(fd) = rustix::fs::openat2(
                &self.root,
                OsStr::from_bytes(&p),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                in_root(),
            ) {
                let t = Timespec {
                    tv_sec: mtime,
                    tv_nsec: 0,
                };
                let _ = rustix::fs::futimens(
                    &fd,
                    &Timestamps {
                        last_access: t,
                        last_modification: t,
                    },
                );
            }
        }
    }

    /// Open (creating as needed) the directory at `comps` inside the root.
    fn parent(&mut self, comps: &[Vec<u8>], shown: &str) -> Result<std::os::fd::BorrowedFd<'_>> {
        let key = join(comps);
        let hit = matches!(&self.parent_cache, Some((k, _)) if *k == key);
        if !hit {
            let fd = self.open_dir_creating(comps, shown)?;
            self.parent_cache = Some((key, fd));
        }
        match &self.parent_cache {
            Some((_, fd)) => Ok(fd.as_fd()),
            None => Err(unsafe_entry(shown, "internal: no parent")),
        }
    }

    fn open_dir_creating(&self, comps: &[Vec<u8>], shown: &str) -> Result<OwnedFd> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        if comps.is_empty() {
            return rustix::fs::openat2(&self.root, ".", flags, Mode::empty(), in_root())
                .ctx(|| format!("open root for {shown:?}"));
        }
        if let Ok(fd) = rustix::fs::openat2(
            &self.root,
            OsStr::from_bytes(&join(comps)),
            flags,
            Mode::empty(),
            in_root(),
        ) {
            return Ok(fd);
        }
        let mut cur = rustix::fs::openat2(&self.root, ".", flags, Mode::empty(), in_root())
            .ctx(|| format!("open root for {shown:?}"))?;
        for c in comps {
            let name = OsStr::from_bytes(c);
            let next = match rustix::fs::openat2(&cur, name, flags, Mode::empty(), in_root()) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) => {
                    match rustix::fs::mkdirat(&cur, name, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => {
                            return Err(Error::Io {
                                context: format!("create parent directory of {shown:?}"),
                                source: e.into(),
                            })
                        }
                    }
                    rustix::fs::openat2(&cur, name, flags, Mode::empty(), in_root()).map_err(
                        |e| unsafe_entry(shown, format!("parent is not a directory ({e})")),
                    )?
                }
                Err(e) => {
                    return Err(unsafe_entry(
                        shown,
                        format!(
                            "parent {:?} is not a usable directory ({e})",
                            String::from_utf8_lossy(c)
                        ),
                    ))
                }
            };
            cur = next;
        }
        Ok(cur)
    }

    /// Remove whatever is at `name` in `dir` (a whole tree if it is a directory).
    fn remove_existing(dir: std::os::fd::BorrowedFd<'_>, name: &OsStr, shown: &str) -> Result<()> {
        if name.is_empty() || name == "." || name == ".." || name.as_bytes().contains(&b'/') {
            return Err(unsafe_entry(
                shown,
                "refusing to replace '.', '..' or a nested path",
            ));
        }
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(Error::Io {
                context: format!("stat existing {shown:?}"),
                source: e.into(),
            }),
            Ok(st) => {
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    let p = PathBuf::from(format!(
                        "/proc/self/fd/{}",
                        std::os::fd::AsRawFd::as_raw_fd(&dir)
                    ))
                    .join(name);
                    std::fs::remove_dir_all(&p).ctx(|| format!("replace directory {shown:?}"))
                } else {
                    rustix::fs::unlinkat(dir, name, AtFlags::empty())
                        .ctx(|| format!("replace {shown:?}"))
                }
            }
        }
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).to_string();
        let mut comps = clean_components(&raw_path, &shown)?;
        let header = entry.header().clone();
        let kind = header.entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let Some(name) = comps.pop() else {
            // The root itself: keep the snapshot root as created.
            return Ok(());
        };
        let mtime = header.mtime().unwrap_or(0) as i64;
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        let mode = header.mode().unwrap_or(0o644) & 0o7777;

        // Whiteouts.
        if let Some(target) = name.strip_prefix(b".wh.") {
            self.parent_cache = None;
            if target == b".wh..opq" {
                let dir = self.open_dir_creating(&comps, &shown)?;
                let fd = rustix::fs::openat(
                    &dir,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .ctx(|| format!("open opaque directory for {shown:?}"))?;
                rustix::fs::fsetxattr(
                    &fd,
                    "trusted.overlay.opaque",
                    b"y",
                    rustix::fs::XattrFlags::empty(),
                )
                .ctx(|| format!("mark {shown:?} opaque"))?;
                return Ok(());
            }
            if target.is_empty() {
                return Err(unsafe_entry(&shown, "bare whiteout '.wh.' names nothing"));
            }
            if target == b"." || target == b".." {
                return Err(unsafe_entry(&shown, "whiteout of '.' or '..'"));
            }
            if target.starts_with(b".wh.") {
                // aufs metadata (.wh..wh.plnk, .wh..wh.aufs): not content.
                return Ok(());
            }
            let dir = self.open_dir_creating(&comps, &shown)?;
            let tname = OsStr::from_bytes(target);
            Self::remove_existing(dir.as_fd(), tname, &shown)?;
            rustix::fs::mknodat(&dir, tname, FileType::CharacterDevice, Mode::empty(), 0)
                .ctx(|| format!("create whiteout for {shown:?}"))?;
            return Ok(());
        }

        let same_owner = self.opts.same_owner;
        let xattrs = Self::xattrs(&mut entry);
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let dir = self.parent(&comps, &shown)?;
                let nm = OsStr::from_bytes(&name);
                Self::remove_existing(dir, nm, &shown)?;
                let fd = rustix::fs::openat(
                    dir,
                    nm,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .ctx(|| format!("create {shown:?}"))?;
                let mut file = File::from(fd);
                let mut written = 0u64;
                loop {
                    let n = match entry.read(&mut self.buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            return Err(Error::Io {
                                context: format!("read {shown:?} from layer"),
                                source: e,
                            })
                        }
                    };
                    file.write_all(&self.buf[..n])
                        .ctx(|| format!("write {shown:?}"))?;
                    written += n as u64;
                }
                self.content_bytes += written;
                if same_owner {
                    rustix::fs::fchown(&file, Some(uid_of(uid)), Some(gid_of(gid)))
                        .ctx(|| format!("chown {shown:?}"))?;
                }
                rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))
                    .ctx(|| format!("chmod {shown:?}"))?;
                for (k, v) in &xattrs {
                    let _ = rustix::fs::fsetxattr(
                        &file,
                        k.as_str(),
                        v,
                        rustix::fs::XattrFlags::empty(),
                    );
                }
                let t = ts(mtime);
                let _ = rustix::fs::futimens(&file, &t);
            }
            tar::EntryType::Directory => {
                self.parent_cache = None;
                let dir = self.open_dir_creating(&comps, &shown)?;
                let nm = OsStr::from_bytes(&name);
                let is_dir = matches!(rustix::fs::statat(&dir, nm, AtFlags::SYMLINK_NOFOLLOW),
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory);
                if !is_dir {
                    Self::remove_existing(dir.as_fd(), nm, &shown)?;
                    rustix::fs::mkdirat(&dir, nm, Mode::from_raw_mode(0o755))
                        .ctx(|| format!("mkdir {shown:?}"))?;
                }
                let fd = rustix::fs::openat(
                    &dir,
                    nm,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .ctx(|| format!("open directory {shown:?}"))?;
                if same_owner {
                    rustix::fs::fchown(&fd, Some(uid_of(uid)), Some(gid_of(gid)))
                        .ctx(|| format!("chown {shown:?}"))?;
                }
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))
                    .ctx(|| format!("chmod {shown:?}"))?;
                for (k, v) in &xattrs {
                    let _ =
                        rustix::fs::fsetxattr(&fd, k.as_str(), v, rustix::fs::XattrFlags::empty());
                }
                let mut full = comps.clone();
                full.push(name.clone());
                self.dir_times.push((join(&full), mtime));
            }
            tar::EntryType::Symlink => {
                self.parent_cache = None;
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(&shown, "symlink without a target"))?
                    .into_owned();
                if target.contains(&0) || target.is_empty() {
                    return Err(unsafe_entry(&shown, "invalid symlink target"));
                }
                let dir = self.open_dir_creating(&comps, &shown)?;
                let nm = OsStr::from_bytes(&name);
                Self::remove_existing(dir.as_fd(), nm, &shown)?;
                rustix::fs::symlinkat(OsStr::from_bytes(&target), &dir, nm)
                    .ctx(|| format!("symlink {shown:?}"))?;
                if same_owner {
                    chown_nofollow(dir.as_fd(), nm, uid, gid);
                }
                let _ = rustix::fs::utimensat(&dir, nm, &ts(mtime), AtFlags::SYMLINK_NOFOLLOW);
            }
            tar::EntryType::Link => {
                self.parent_cache = None;
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(&shown, "hardlink without a target"))?
                    .into_owned();
                let mut tcomps = clean_components(&target, &shown)
                    .map_err(|_| unsafe_entry(&shown, "hardlink target contains '..'"))?;
                let tname = tcomps
                    .pop()
                    .ok_or_else(|| unsafe_entry(&shown, "hardlink to the root"))?;
                let tparent = if tcomps.is_empty() {
                    b".".to_vec()
                } else {
                    join(&tcomps)
                };
                let tdir = rustix::fs::openat2(
                    &self.root,
                    OsStr::from_bytes(&tparent),
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    in_root(),
                )
                .map_err(|e| unsafe_entry(&shown, format!("hardlink target directory: {e}")))?;
                let dir = self.open_dir_creating(&comps, &shown)?;
                let nm = OsStr::from_bytes(&name);
                let tn = OsStr::from_bytes(&tname);
                if rustix::fs::statat(&tdir, tn, AtFlags::SYMLINK_NOFOLLOW)
                    .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
                    .unwrap_or(false)
                {
                    return Err(unsafe_entry(&shown, "hardlink to a directory"));
                }
                Self::remove_existing(dir.as_fd(), nm, &shown)?;
                rustix::fs::linkat(&tdir, tn, &dir, nm, AtFlags::empty()).map_err(|e| {
                    unsafe_entry(
                        &shown,
                        format!("hardlink to {:?}: {e}", String::from_utf8_lossy(&target)),
                    )
                })?;
            }
            tar::EntryType::Fifo => {
                self.parent_cache = None;
                let dir = self.open_dir_creating(&comps, &shown)?;
                let nm = OsStr::from_bytes(&name);
                Self::remove_existing(dir.as_fd(), nm, &shown)?;
                rustix::fs::mknodat(&dir, nm, FileType::Fifo, Mode::from_raw_mode(mode), 0)
                    .ctx(|| format!("mkfifo {shown:?}"))?;
                if same_owner {
                    chown_nofollow(dir.as_fd(), nm, uid, gid);
                }
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                self.skipped.push(format!(
                    "{shown}: device node not created (the runtime provides /dev)"
                ));
            }
            other => {
                return Err(unsafe_entry(
                    &shown,
                    format!("unsupported tar entry type {other:?}"),
                ));
            }
        }
        Ok(())
    }

    /// PAX xattrs we are willing to set: `user.*` and `security.capability`.
    /// `trusted.*` (e.g. overlay redirects) is never taken from a tar.
    fn xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        if let Ok(Some(exts)) = entry.pax_extensions() {
            for ext in exts.flatten() {
                let Ok(key) = ext.key() else { continue };
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    if name.starts_with("user.") || name == "security.capability" {
                        out.push((name.to_string(), ext.value_bytes().to_vec()));
                    }
                }
            }
        }
        out
    }
}

/// Best-effort owner of a just-created symlink or fifo, never following it.
fn chown_nofollow(dir: std::os::fd::BorrowedFd<'_>, name: &OsStr, uid: u64, gid: u64) {
    let _ = rustix::fs::chownat(
        dir,
        name,
        Some(uid_of(uid)),
        Some(gid_of(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    );
}

fn uid_of(u: u64) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(u32::try_from(u).unwrap_or(65534))
}
fn gid_of(g: u64) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(u32::try_from(g).unwrap_or(65534))
}
fn ts(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}
