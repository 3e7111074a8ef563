//! The build context: resolving COPY/ADD sources inside the context root
//! (globs like docker, `.dockerignore` honoured, never outside the root),
//! walking them, and hashing their content for cache keys with a persisted
//! stat cache (path, size, mtime, inode, ctime → sha256) so an unchanged
//! context is not re-read.
//!
//! Symlinks in a source *path* are resolved as if the context root were `/`
//! (docker's FollowSymlinkInScope), so `link -> /etc` resolves to
//! `<root>/etc`, never the host's `/etc`. Symlinks *inside* a copied
//! directory are recorded as symlinks and never followed.

use crate::ignore::{clean_path, Dockerignore, Glob};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("{source_path}: forbidden path outside the build context (sources are relative to the context root)")]
    OutsideContext { source_path: String },
    #[error("{source_path}: not found in the build context {root}")]
    NotFound { source_path: String, root: String },
    #[error("{source_path}: excluded by .dockerignore")]
    Excluded { source_path: String },
    #[error("{source_path}: no files in the build context match this pattern")]
    NoMatch { source_path: String },
    #[error("{source_path}: invalid pattern: {reason}")]
    BadPattern { source_path: String, reason: String },
    #[error("{path}: too many levels of symbolic links")]
    SymlinkLoop { path: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    StatCache { path: String, message: String },
    #[error("{path}: {source}")]
    Ignore {
        path: String,
        #[source]
        source: crate::ignore::PatternError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What kind of filesystem entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    File,
    Dir,
    Symlink {
        target: String,
    },
    /// fifo, socket, device: recorded, not hashed by content
    Other,
}

/// One entry of a walked source, relative to the context root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextEntry {
    /// Path relative to the context root, slash separated.
    pub path: String,
    /// Path relative to the source it belongs to (`""` for the source itself).
    pub rel_to_source: String,
    pub kind: EntryKind,
    pub mode: u32,
    pub size: u64,
    /// `sha256:…` of a regular file's content.
    pub digest: Option<String>,
}

/// A resolved source: the path inside the context, and whether it is a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedSource {
    /// As written in the Dockerfile (after expansion).
    pub pattern: String,
    /// Resolved path relative to the root (symlinks in the path followed in scope).
    pub path: String,
    pub is_dir: bool,
}

/// The hash of a set of sources plus every file in it (for explaining misses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SourceHash {
    pub digest: String,
    /// path → digest (or link target / kind) for every entry hashed.
    pub files: BTreeMap<String, String>,
}

/// Counters that show how much the stat cache saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HashStats {
    pub files_hashed: u64,
    pub bytes_hashed: u64,
    pub cache_hits: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StatEntry {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
    dev: u64,
    digest: String,
    /// Hashed by this process: trusted regardless of the racy window.
    #[serde(skip)]
    fresh: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct StatCacheFile {
    version: u32,
    /// When the file was written (ns since epoch); entries changed at or after
    /// this time minus a margin are re-hashed (git's "racily clean" rule).
    written_at_ns: i128,
    entries: HashMap<String, StatEntry>,
}

/// A persisted stat cache: path → (size, mtime, ctime, inode, device) → sha256.
#[derive(Debug, Default)]
pub struct StatCache {
    path: Option<PathBuf>,
    entries: HashMap<String, StatEntry>,
    trusted_before_ns: i128,
    dirty: bool,
}

/// Files changed less than this long before the cache was written are
/// re-hashed on the next load: a write in the same timestamp tick would be invisible.
const RACY_MARGIN_NS: i128 = 1_000_000_000;

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

impl StatCache {
    /// Load from `path` (a missing or unreadable/corrupt file starts empty).
    pub fn load(path: &Path) -> StatCache {
        let parsed: Option<StatCacheFile> = fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .filter(|f: &StatCacheFile| f.version == 1);
        let (entries, written) = parsed
            .map(|f| (f.entries, f.written_at_ns))
            .unwrap_or_default();
        StatCache {
            path: Some(path.to_path_buf()),
            entries,
            trusted_before_ns: written - RACY_MARGIN_NS,
            dirty: false,
        }
    }

    /// An in-memory cache that is never saved.
    pub fn in_memory() -> StatCache {
        StatCache::default()
    }

    /// Write atomically (temp file in the same directory, fsync, rename).
    pub fn save(&mut self) -> Result<(), ContextError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let file = StatCacheFile {
            version: 1,
            written_at_ns: now_ns(),
            entries: self.entries.clone(),
        };
        let bytes = serde_json::to_vec(&file).map_err(|e| ContextError::StatCache {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err(dir))?;
        tmp.write_all(&bytes).map_err(io_err(path))?;
        tmp.as_file().sync_all().map_err(io_err(path))?;
        tmp.persist(path).map_err(|e| ContextError::Io {
            path: path.display().to_string(),
            source: e.error,
        })?;
        self.dirty = false;
        Ok(())
    }

    fn lookup(&self, rel: &str, md: &fs::Metadata) -> Option<String> {
        let e = self.entries.get(rel)?;
        let mtime = md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128;
        let ctime = md.ctime() as i128 * 1_000_000_000 + md.ctime_nsec() as i128;
        let same = e.size == md.len()
            && e.mtime_ns == mtime
            && e.ctime_ns == ctime
            && e.ino == md.ino()
            && e.dev == md.dev();
        let settled = e.fresh || (mtime < self.trusted_before_ns && ctime < self.trusted_before_ns);
        (same && settled).then(|| e.digest.clone())
    }

    fn insert(&mut self, rel: &str, md: &fs::Metadata, digest: &str) {
        self.entries.insert(
            rel.to_string(),
            StatEntry {
                size: md.len(),
                mtime_ns: md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
                ctime_ns: md.ctime() as i128 * 1_000_000_000 + md.ctime_nsec() as i128,
                ino: md.ino(),
                dev: md.dev(),
                digest: digest.to_string(),
                fresh: true,
            },
        );
        self.dirty = true;
    }
}

/// A build context rooted at a directory.
#[derive(Debug)]
pub struct BuildContext {
    root: PathBuf,
    ignore: Dockerignore,
    stat_cache: StatCache,
    stats: HashStats,
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

impl BuildContext {
    /// Open a context; reads `<root>/.dockerignore` if present.
    pub fn open(root: &Path, stat_cache: StatCache) -> Result<BuildContext, ContextError> {
        let root = fs::canonicalize(root).map_err(io_err(root))?;
        let ignore_path = root.join(".dockerignore");
        let ignore = match fs::read_to_string(&ignore_path) {
            Ok(text) => Dockerignore::parse(&text).map_err(|e| ContextError::Ignore {
                path: ignore_path.display().to_string(),
                source: e,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Dockerignore::default(),
            Err(e) => return Err(io_err(&ignore_path)(e)),
        };
        Ok(BuildContext {
            root,
            ignore,
            stat_cache,
            stats: HashStats::default(),
        })
    }

    /// Open with explicit ignore rules (no `.dockerignore` read).
    pub fn with_ignore(
        root: &Path,
        ignore: Dockerignore,
        stat_cache: StatCache,
    ) -> Result<BuildContext, ContextError> {
        let root = fs::canonicalize(root).map_err(io_err(root))?;
        Ok(BuildContext {
            root,
            ignore,
            stat_cache,
            stats: HashStats::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn ignore(&self) -> &Dockerignore {
        &self.ignore
    }

    pub fn stats(&self) -> HashStats {
        self.stats
    }

    /// Persist the stat cache (atomic).
    pub fn save_stat_cache(&mut self) -> Result<(), ContextError> {
        self.stat_cache.save()
    }

    /// Host path for a resolved relative path.
    pub fn host_path(&self, rel: &str) -> PathBuf {
        if rel == "." || rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        }
    }

    /// Clean a source as written; error when it leaves the root.
    fn clean_source(src: &str) -> Result<String, ContextError> {
        let c = clean_path(&format!("./{}", src.trim_start_matches('/')));
        if c == ".." || c.starts_with("../") {
            return Err(ContextError::OutsideContext {
                source_path: src.to_string(),
            });
        }
        Ok(c)
    }

    /// Resolve `rel` following symlinks as if the root were `/`. Returns the
    /// resolved relative path ("." for the root).
    pub fn resolve_in_root(&self, rel: &str) -> Result<String, ContextError> {
        let mut parts: Vec<String> = Vec::new();
        let mut pending: Vec<String> = rel
            .split('/')
            .rev()
            .filter(|p| !p.is_empty() && *p != ".")
            .map(String::from)
            .collect();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            if part == ".." {
                parts.pop();
                continue;
            }
            let cand = if parts.is_empty() {
                part.clone()
            } else {
                format!("{}/{}", parts.join("/"), part)
            };
            let host = self.root.join(&cand);
            match fs::symlink_metadata(&host) {
                Ok(md) if md.file_type().is_symlink() => {
                    hops += 1;
                    if hops > 40 {
                        return Err(ContextError::SymlinkLoop {
                            path: rel.to_string(),
                        });
                    }
                    let target = fs::read_link(&host).map_err(io_err(&host))?;
                    let t = target.to_string_lossy().to_string();
                    if t.starts_with('/') {
                        parts.clear();
                    }
                    for p in t.split('/').rev().filter(|p| !p.is_empty() && *p != ".") {
                        pending.push(p.to_string());
                    }
                }
                _ => parts.push(part),
            }
        }
        Ok(if parts.is_empty() {
            ".".to_string()
        } else {
            parts.join("/")
        })
    }

    /// Resolve COPY/ADD sources (after variable expansion) to paths in the context.
    pub fn resolve_sources(&self, sources: &[String]) -> Result<Vec<ResolvedSource>, ContextError> {
        let mut out = Vec::new();
        for src in sources {
            let cleaned = Self::clean_source(src)?;
            if !has_glob(&cleaned) {
                if cleaned != "." && self.ignore.is_excluded(&cleaned) {
                    return Err(ContextError::Excluded {
                        source_path: src.clone(),
                    });
                }
                let path = self.resolve_in_root(&cleaned)?;
                let host = self.host_path(&path);
                let md = fs::metadata(&host).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => ContextError::NotFound {
                        source_path: src.clone(),
                        root: self.root.display().to_string(),
                    },
                    _ => io_err(&host)(e),
                })?;
                out.push(ResolvedSource {
                    pattern: src.clone(),
                    path,
                    is_dir: md.is_dir(),
                });
                continue;
            }
            let mut found = Vec::new();
            self.glob_walk(
                ".",
                &cleaned.split('/').collect::<Vec<_>>(),
                src,
                &mut found,
            )?;
            if found.is_empty() {
                return Err(ContextError::NoMatch {
                    source_path: src.clone(),
                });
            }
            found.sort();
            for rel in found {
                let host = self.host_path(&rel);
                let md = fs::symlink_metadata(&host).map_err(io_err(&host))?;
                let (path, is_dir) = if md.file_type().is_symlink() {
                    let p = self.resolve_in_root(&rel)?;
                    let is_dir = fs::metadata(self.host_path(&p))
                        .map(|m| m.is_dir())
                        .unwrap_or(false);
                    (p, is_dir)
                } else {
                    (rel, md.is_dir())
                };
                out.push(ResolvedSource {
                    pattern: src.clone(),
                    path,
                    is_dir,
                });
            }
        }
        Ok(out)
    }

    fn glob_walk(
        &self,
        dir: &str,
        comps: &[&str],
        src: &str,
        out: &mut Vec<String>,
    ) -> Result<(), ContextError> {
        let Some((first, rest)) = comps.split_first() else {
            out.push(dir.to_string());
            return Ok(());
        };
        let join = |name: &str| {
            if dir == "." {
                name.to_string()
            } else {
                format!("{dir}/{name}")
            }
        };
        if !has_glob(first) {
            let next = join(first);
            if self.ignore.is_excluded(&next) && rest.is_empty() {
                return Ok(());
            }
            let resolved = self.resolve_in_root(&next)?;
            if fs::symlink_metadata(self.host_path(&resolved)).is_ok() {
                let base = if rest.is_empty() { next } else { resolved };
                return self.glob_walk(&base, rest, src, out);
            }
            return Ok(());
        }
        let glob = Glob::new(first, false).map_err(|reason| ContextError::BadPattern {
            source_path: src.to_string(),
            reason,
        })?;
        let host = self.host_path(dir);
        let Ok(rd) = fs::read_dir(&host) else {
            return Ok(());
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        for name in names {
            if !glob.matches(&name) {
                continue;
            }
            let next = join(&name);
            if self.ignore.is_excluded(&next)
                && (rest.is_empty() || !self.ignore.must_walk_excluded_dir(&next))
            {
                continue;
            }
            if rest.is_empty() {
                out.push(next);
            } else {
                let resolved = self.resolve_in_root(&next)?;
                if fs::metadata(self.host_path(&resolved))
                    .map(|m| m.is_dir())
                    .unwrap_or(false)
                {
                    self.glob_walk(&resolved, rest, src, out)?;
                }
            }
        }
        Ok(())
    }

    /// Walk one resolved source: the entry itself and, for a directory, every
    /// entry below it not excluded by `.dockerignore` (sorted, symlinks not followed).
    pub fn walk(&self, source: &ResolvedSource) -> Result<Vec<ContextEntry>, ContextError> {
        let mut out = Vec::new();
        let host = self.host_path(&source.path);
        // the top-level source is followed (like docker): stat, not lstat
        let md = fs::metadata(&host).map_err(io_err(&host))?;
        out.push(self.entry(&source.path, "", &md, &host)?);
        if md.is_dir() {
            self.walk_dir(&source.path, "", &mut out)?;
        }
        Ok(out)
    }

    fn entry(
        &self,
        rel: &str,
        rel_src: &str,
        md: &fs::Metadata,
        host: &Path,
    ) -> Result<ContextEntry, ContextError> {
        let ft = md.file_type();
        let kind = if ft.is_symlink() {
            EntryKind::Symlink {
                target: fs::read_link(host)
                    .map_err(io_err(host))?
                    .to_string_lossy()
                    .to_string(),
            }
        } else if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            EntryKind::File
        } else {
            EntryKind::Other
        };
        Ok(ContextEntry {
            path: rel.to_string(),
            rel_to_source: rel_src.to_string(),
            kind,
            mode: md.mode() & 0o7777,
            size: if ft.is_file() { md.len() } else { 0 },
            digest: None,
        })
    }

    fn walk_dir(
        &self,
        dir: &str,
        rel_src: &str,
        out: &mut Vec<ContextEntry>,
    ) -> Result<(), ContextError> {
        let host = self.host_path(dir);
        let mut names: Vec<String> = fs::read_dir(&host)
            .map_err(io_err(&host))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        for name in names {
            let rel = if dir == "." {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            let rs = if rel_src.is_empty() {
                name.clone()
            } else {
                format!("{rel_src}/{name}")
            };
            let h = self.root.join(&rel);
            let md = fs::symlink_metadata(&h).map_err(io_err(&h))?;
            let excluded = self.ignore.is_excluded(&rel);
            if excluded && !(md.is_dir() && self.ignore.must_walk_excluded_dir(&rel)) {
                continue;
            }
            if !excluded {
                out.push(self.entry(&rel, &rs, &md, &h)?);
            }
            if md.is_dir() {
                self.walk_dir(&rel, &rs, out)?;
            }
        }
        Ok(())
    }

    /// sha256 of one regular file, from the stat cache when unchanged.
    pub fn file_digest(&mut self, rel: &str) -> Result<String, ContextError> {
        let host = self.host_path(rel);
        let md = fs::symlink_metadata(&host).map_err(io_err(&host))?;
        if let Some(d) = self.stat_cache.lookup(rel, &md) {
            self.stats.cache_hits += 1;
            return Ok(d);
        }
        let mut f = fs::File::open(&host).map_err(io_err(&host))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(io_err(&host))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            self.stats.bytes_hashed += n as u64;
        }
        self.stats.files_hashed += 1;
        let d = format!("sha256:{}", hex::encode(h.finalize()));
        self.stat_cache.insert(rel, &md, &d);
        Ok(d)
    }

    /// Walk and hash a set of resolved sources. The digest covers every entry's
    /// path relative to its source, type, permission bits and content (or link target).
    pub fn hash_sources(
        &mut self,
        sources: &[ResolvedSource],
    ) -> Result<(SourceHash, Vec<Vec<ContextEntry>>), ContextError> {
        self.hash_sources_excluding(sources, &Dockerignore::default())
    }

    /// Like [`hash_sources`](Self::hash_sources), leaving out entries whose path
    /// relative to their source matches `exclude` (COPY `--exclude=`).
    pub fn hash_sources_excluding(
        &mut self,
        sources: &[ResolvedSource],
        exclude: &Dockerignore,
    ) -> Result<(SourceHash, Vec<Vec<ContextEntry>>), ContextError> {
        let mut h = Sha256::new();
        let mut files = BTreeMap::new();
        let mut walked = Vec::new();
        for src in sources {
            let mut entries = self.walk(src)?;
            if !exclude.is_empty() {
                entries.retain(|e| {
                    e.rel_to_source.is_empty() || !exclude.is_excluded(&e.rel_to_source)
                });
            }
            h.update(format!("source\0{}\0{}\n", src.pattern, src.is_dir).as_bytes());
            for e in entries.iter_mut() {
                let what = match &e.kind {
                    EntryKind::File => {
                        let d = self.file_digest(&e.path)?;
                        e.digest = Some(d.clone());
                        d
                    }
                    EntryKind::Dir => "dir".to_string(),
                    EntryKind::Symlink { target } => format!("symlink:{target}"),
                    EntryKind::Other => "other".to_string(),
                };
                h.update(format!("{}\0{:o}\0{}\n", e.rel_to_source, e.mode, what).as_bytes());
                if e.kind != EntryKind::Dir {
                    files.insert(e.path.clone(), what);
                }
            }
            walked.push(entries);
        }
        Ok((
            SourceHash {
                digest: format!("sha256:{}", hex::encode(h.finalize())),
                files,
            },
            walked,
        ))
    }
}

/// One item to copy: a resolved source and where it lands in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyItem {
    pub source: ResolvedSource,
    /// Absolute destination path in the image.
    pub dest: String,
    /// The source is a directory: copy its contents into `dest` (not the dir itself).
    pub contents_only: bool,
    /// `dest` had no trailing slash and the source is a file: if `dest` is an
    /// existing directory in the image, the file goes inside it (docker's rule).
    pub dest_may_be_dir: bool,
}

impl CopyItem {
    /// Where one walked entry of this item lands in the image.
    pub fn target_of(&self, entry: &ContextEntry) -> String {
        if entry.rel_to_source.is_empty() {
            self.dest.clone()
        } else if self.dest == "/" {
            format!("/{}", entry.rel_to_source)
        } else {
            format!(
                "{}/{}",
                self.dest.trim_end_matches('/'),
                entry.rel_to_source
            )
        }
    }
}

/// Apply docker's destination rules: relative to WORKDIR, trailing `/` means
/// directory, several sources need a directory destination.
pub fn copy_items(
    sources: &[ResolvedSource],
    dest: &str,
    workdir: &str,
    instr: &str,
) -> Result<Vec<CopyItem>, String> {
    let abs = if dest.starts_with('/') {
        dest.to_string()
    } else {
        let wd = if workdir.is_empty() { "/" } else { workdir };
        format!("{}/{}", wd.trim_end_matches('/'), dest)
    };
    let dir_dest = dest.ends_with('/') || dest == "." || dest.ends_with("/.") || dest.is_empty();
    let cleaned = clean_path(&abs);
    if sources.len() > 1 && !dir_dest {
        return Err(format!(
            "when using {instr} with more than one source file, the destination must be a directory and end with a /: \"{dest}\""
        ));
    }
    Ok(sources
        .iter()
        .map(|s| {
            let base = s.path.rsplit('/').next().unwrap_or(&s.path);
            let d = if s.is_dir || !dir_dest {
                cleaned.clone()
            } else if cleaned == "/" {
                format!("/{base}")
            } else {
                format!("{cleaned}/{base}")
            };
            CopyItem {
                source: s.clone(),
                dest: d,
                contents_only: s.is_dir,
                dest_may_be_dir: !s.is_dir && !dir_dest,
            }
        })
        .collect())
}
