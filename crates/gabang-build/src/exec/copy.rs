//! COPY/ADD without a container: files are written into a fresh layer
//! directory (which becomes the layer and the snapshot). Parent directories
//! that exist in the image keep their metadata; missing ones are created
//! 0755 (owned by `--chown` when given, like docker). Context files are opened
//! with `openat2(RESOLVE_IN_ROOT)` so nothing outside the context is read.

use super::view::MergedView;
use crate::context::{ContextEntry, CopyItem, EntryKind};
use crate::plan::InlineFile;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::fs::{self, File};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Owner given by `--chown`, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

fn field_lookup(file: Option<Vec<u8>>, name: &str, want: usize) -> Option<(u32, Option<u32>)> {
    let text = String::from_utf8_lossy(&file?).to_string();
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() > want && f[0] == name {
            let id = f[2].parse().ok()?;
            let g = if want >= 3 { f[3].parse().ok() } else { None };
            Some((id, g))
        } else {
            None
        }
    })
}

/// Resolve `user[:group]` (names from the image's /etc/passwd and /etc/group).
pub fn resolve_chown(view: &MergedView, spec: &str) -> Result<Owner, String> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = view.read_file("/etc/passwd");
    let (uid, primary) = match u.parse::<u32>() {
        Ok(n) => (n, None),
        Err(_) => field_lookup(passwd, u, 3)
            .ok_or_else(|| format!("--chown={spec}: no user {u:?} in the image's /etc/passwd"))?,
    };
    let gid = match g {
        Some(g) if !g.is_empty() => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => field_lookup(view.read_file("/etc/group"), g, 2)
                .map(|x| x.0)
                .ok_or_else(|| {
                    format!("--chown={spec}: no group {g:?} in the image's /etc/group")
                })?,
        },
        _ => match u.parse::<u32>() {
            Ok(n) => n,
            Err(_) => field_lookup(view.read_file("/etc/group"), u, 2)
                .map(|x| x.0)
                .or(primary)
                .unwrap_or(0),
        },
    };
    Ok(Owner { uid, gid })
}

/// Writes files into one layer directory over a base view.
pub struct LayerWriter<'a> {
    pub dir: &'a Path,
    pub base: &'a MergedView,
    pub owner: Option<Owner>,
    pub chmod: Option<u32>,
}

fn ioe(what: &str, p: &Path, e: impl std::fmt::Display) -> String {
    format!("{what} {}: {e}", p.display())
}

fn set_times(p: &Path, md_mtime: Option<(i64, i64)>) {
    if let Some((s, ns)) = md_mtime {
        let ts = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: s,
                tv_nsec: ns as _,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: s,
                tv_nsec: ns as _,
            },
        };
        let _ = rustix::fs::utimensat(
            rustix::fs::CWD,
            p,
            &ts,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        );
    }
}

impl LayerWriter<'_> {
    fn host(&self, abs: &str) -> PathBuf {
        self.dir.join(abs.trim_start_matches('/'))
    }

    /// Make every ancestor of `abs` exist in the layer dir.
    pub fn ensure_parents(&self, abs: &str) -> Result<(), String> {
        let cs: Vec<&str> = abs.split('/').filter(|c| !c.is_empty()).collect();
        let mut cur = String::new();
        for c in cs.iter().take(cs.len().saturating_sub(1)) {
            cur.push('/');
            cur.push_str(c);
            self.ensure_dir(&cur, true)?;
        }
        Ok(())
    }

    /// Make the directory `abs` exist in the layer; copy metadata from the base
    /// image when it is there, else create it (owned by --chown if `created_owned`).
    pub fn ensure_dir(&self, abs: &str, created_owned: bool) -> Result<(), String> {
        let h = self.host(abs);
        if fs::symlink_metadata(&h).is_ok_and(|m| m.is_dir()) {
            return Ok(());
        }
        let _ = fs::remove_file(&h);
        fs::create_dir(&h).map_err(|e| ioe("create", &h, e))?;
        match self.base.metadata(abs) {
            Some((_, md)) if md.is_dir() => {
                let _ = std::os::unix::fs::lchown(&h, Some(md.uid()), Some(md.gid()));
                let _ = fs::set_permissions(&h, fs::Permissions::from_mode(md.mode() & 0o7777));
                set_times(&h, Some((md.mtime(), md.mtime_nsec())));
            }
            _ => {
                let o = if created_owned { self.owner } else { None };
                let o = o.unwrap_or(Owner { uid: 0, gid: 0 });
                let _ = std::os::unix::fs::lchown(&h, Some(o.uid), Some(o.gid));
                let _ = fs::set_permissions(&h, fs::Permissions::from_mode(0o755));
            }
        }
        Ok(())
    }

    fn finish(&self, h: &Path, mode: u32, owner: Owner, mtime: Option<(i64, i64)>, link: bool) {
        let _ = std::os::unix::fs::lchown(h, Some(owner.uid), Some(owner.gid));
        if !link {
            let m = self.chmod.unwrap_or(mode & 0o7777);
            let _ = fs::set_permissions(h, fs::Permissions::from_mode(m));
        }
        set_times(h, mtime);
    }

    /// Write a regular file from a reader.
    pub fn put_file(
        &self,
        abs: &str,
        mut src: impl io::Read,
        mode: u32,
        owner: Owner,
        mtime: Option<(i64, i64)>,
    ) -> Result<(), String> {
        self.ensure_parents(abs)?;
        let h = self.host(abs);
        if fs::symlink_metadata(&h).is_ok_and(|m| m.is_dir()) {
            fs::remove_dir_all(&h).map_err(|e| ioe("replace", &h, e))?;
        }
        let mut f = File::create(&h).map_err(|e| ioe("create", &h, e))?;
        io::copy(&mut src, &mut f).map_err(|e| ioe("write", &h, e))?;
        drop(f);
        self.finish(&h, mode, owner, mtime, false);
        Ok(())
    }

    pub fn put_dir(
        &self,
        abs: &str,
        mode: u32,
        owner: Owner,
        mtime: Option<(i64, i64)>,
    ) -> Result<(), String> {
        self.ensure_parents(abs)?;
        let h = self.host(abs);
        if !fs::symlink_metadata(&h).is_ok_and(|m| m.is_dir()) {
            let _ = fs::remove_file(&h);
            fs::create_dir(&h).map_err(|e| ioe("create", &h, e))?;
        }
        self.finish(&h, mode, owner, mtime, false);
        Ok(())
    }

    pub fn put_symlink(&self, abs: &str, target: &Path, owner: Owner) -> Result<(), String> {
        self.ensure_parents(abs)?;
        let h = self.host(abs);
        if let Ok(m) = fs::symlink_metadata(&h) {
            if m.is_dir() {
                let _ = fs::remove_dir_all(&h);
            } else {
                let _ = fs::remove_file(&h);
            }
        }
        std::os::unix::fs::symlink(target, &h).map_err(|e| ioe("symlink", &h, e))?;
        self.finish(&h, 0o777, owner, None, true);
        Ok(())
    }

    fn default_owner(&self) -> Owner {
        self.owner.unwrap_or(Owner { uid: 0, gid: 0 })
    }

    /// Where a file copied to `dest` lands: inside `dest` if it is an existing directory.
    fn file_dest(&self, dest: &str, may_be_dir: bool, name: &str) -> String {
        if may_be_dir
            && (self.base.is_dir(dest) || fs::metadata(self.host(dest)).is_ok_and(|m| m.is_dir()))
        {
            format!("{}/{name}", dest.trim_end_matches('/'))
        } else {
            dest.to_string()
        }
    }

    /// The destination with symlinks in its parent resolved inside the image.
    fn canonical(&self, abs: &str) -> String {
        self.base.resolve(abs, false)
    }

    /// Copy walked context entries (open each in the context root with RESOLVE_IN_ROOT).
    pub fn copy_context(
        &self,
        root: &Path,
        items: &[CopyItem],
        entries: &[Vec<ContextEntry>],
        add: bool,
    ) -> Result<(), String> {
        let rootfd: OwnedFd = rustix::fs::open(
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ioe("open context", root, e))?;
        let owner = self.default_owner();
        for (item, ents) in items.iter().zip(entries) {
            for e in ents {
                let raw = if e.rel_to_source.is_empty() && !item.contents_only {
                    let name = item.source.path.rsplit('/').next().unwrap_or("");
                    self.file_dest(&item.dest, item.dest_may_be_dir, name)
                } else {
                    item.target_of(e)
                };
                let target = self.canonical(&raw);
                let open = |flags: OFlags| {
                    rustix::fs::openat2(
                        &rootfd,
                        e.path.as_str(),
                        flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                        Mode::empty(),
                        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
                    )
                    .map_err(|err| format!("open {} in the build context: {err}", e.path))
                };
                match &e.kind {
                    EntryKind::File => {
                        let f = File::from(open(OFlags::RDONLY)?);
                        let md = f
                            .metadata()
                            .map_err(|err| format!("stat {}: {err}", e.path))?;
                        if add && is_archive(&f) {
                            let f2 = File::from(open(OFlags::RDONLY)?);
                            // the archive unpacks into the destination directory
                            let dest = if item.dest_may_be_dir {
                                item.dest.clone()
                            } else {
                                item.dest
                                    .rsplit_once('/')
                                    .map(|(p, _)| {
                                        if p.is_empty() {
                                            "/".to_string()
                                        } else {
                                            p.to_string()
                                        }
                                    })
                                    .unwrap_or_else(|| "/".into())
                            };
                            let dest = self.canonical(&dest);
                            self.ensure_parents(&format!("{}/x", dest.trim_end_matches('/')))?;
                            let opts = gabang_content::layer::apply::ApplyOptions::default();
                            gabang_content::layer::apply::apply_layer(f2, &self.host(&dest), &opts)
                                .map_err(|err| format!("ADD {}: extract: {err}", e.path))?;
                            continue;
                        }
                        self.put_file(
                            &target,
                            f,
                            md.mode(),
                            owner,
                            Some((md.mtime(), md.mtime_nsec())),
                        )?;
                    }
                    EntryKind::Dir => {
                        if target == "/" {
                            continue;
                        }
                        let f = File::from(open(OFlags::RDONLY | OFlags::DIRECTORY)?);
                        let md = f
                            .metadata()
                            .map_err(|err| format!("stat {}: {err}", e.path))?;
                        if e.rel_to_source.is_empty() {
                            // the destination dir itself: created like a parent
                            self.ensure_parents(&target)?;
                            if self.base.is_dir(&target) {
                                self.ensure_dir(&target, false)?;
                            } else {
                                self.put_dir(&target, 0o755, owner, None)?;
                            }
                        } else {
                            self.put_dir(
                                &target,
                                md.mode(),
                                owner,
                                Some((md.mtime(), md.mtime_nsec())),
                            )?;
                        }
                    }
                    EntryKind::Symlink { target: t } => {
                        self.put_symlink(&target, Path::new(t), owner)?;
                    }
                    EntryKind::Other => {}
                }
            }
        }
        Ok(())
    }

    /// Heredoc files.
    pub fn copy_inline(&self, files: &[InlineFile]) -> Result<(), String> {
        let owner = self.default_owner();
        for f in files {
            let t = self.canonical(&f.path);
            self.put_file(&t, &f.content[..], f.mode, owner, None)?;
        }
        Ok(())
    }

    /// COPY --from: `paths` (last component may be a glob) inside `src`.
    pub fn copy_state(&self, src: &MergedView, paths: &[String], dest: &str) -> Result<(), String> {
        let mut sources: Vec<String> = Vec::new();
        for p in paths {
            let abs = if p.starts_with('/') {
                p.clone()
            } else {
                format!("/{p}")
            };
            let (parent, base) = abs.rsplit_once('/').unwrap_or(("", &abs));
            if base.contains(['*', '?', '[']) {
                let dir = src.resolve(if parent.is_empty() { "/" } else { parent }, true);
                let mut hit = false;
                for name in src.read_dir(&dir).into_keys() {
                    if glob_match(base, &name) {
                        sources.push(format!("{}/{name}", dir.trim_end_matches('/')));
                        hit = true;
                    }
                }
                if !hit {
                    return Err(format!(
                        "no source files were specified: {p} matches nothing"
                    ));
                }
            } else {
                let r = src.resolve(&abs, true);
                if src.metadata(&r).is_none() {
                    return Err(format!(
                        "{p}: no such file or directory in the source stage"
                    ));
                }
                sources.push(r);
            }
        }
        let dir_dest = dest.ends_with('/') || sources.len() > 1;
        for s in &sources {
            let Some((_, md)) = src.metadata(s) else {
                continue;
            };
            let name = s.rsplit('/').next().unwrap_or("");
            if md.is_dir() {
                let d = self.canonical(dest);
                if d != "/" {
                    if self.base.is_dir(&d) {
                        self.ensure_dir(&d, false)?;
                    } else {
                        self.put_dir(&d, 0o755, self.default_owner(), None)?;
                    }
                }
                self.copy_tree(src, s, &d)?;
            } else {
                let t = if dir_dest {
                    format!("{}/{name}", dest.trim_end_matches('/'))
                } else {
                    self.file_dest(dest, true, name)
                };
                let t = self.canonical(&t);
                self.copy_one(src, s, &t)?;
            }
        }
        Ok(())
    }

    fn copy_one(&self, src: &MergedView, from: &str, to: &str) -> Result<(), String> {
        let Some((p, md)) = src.metadata(from) else {
            return Ok(());
        };
        let owner = self.owner.unwrap_or(Owner {
            uid: md.uid(),
            gid: md.gid(),
        });
        let mtime = Some((md.mtime(), md.mtime_nsec()));
        let ft = md.file_type();
        if ft.is_symlink() {
            let t = fs::read_link(&p).map_err(|e| ioe("readlink", &p, e))?;
            self.put_symlink(to, &t, owner)
        } else if ft.is_dir() {
            self.put_dir(to, md.mode(), owner, mtime)?;
            self.copy_tree(src, from, to)
        } else if ft.is_file() {
            let f = File::open(&p).map_err(|e| ioe("open", &p, e))?;
            self.put_file(to, f, md.mode(), owner, mtime)
        } else {
            Ok(())
        }
    }

    fn copy_tree(&self, src: &MergedView, from: &str, to: &str) -> Result<(), String> {
        for name in src.read_dir(from).into_keys() {
            let f = format!("{}/{name}", from.trim_end_matches('/'));
            let t = format!("{}/{name}", to.trim_end_matches('/'));
            self.copy_one(src, &f, &t)?;
        }
        Ok(())
    }
}

/// Tar archive (plain or compressed) by its first bytes.
fn is_archive(f: &File) -> bool {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; 512];
    let n = f.read_at(&mut head, 0).unwrap_or(0);
    if n >= 4
        && (head.starts_with(&[0x1f, 0x8b])
            || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
            || head.starts_with(b"BZh")
            || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z']))
    {
        return true;
    }
    n == 512 && &head[257..262] == b"ustar"
}

/// Shell glob (`*`, `?`, `[...]`) on one path component.
pub fn glob_match(pat: &str, name: &str) -> bool {
    fn m(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| m(rest, &n[i..])),
            Some(('?', rest)) => !n.is_empty() && m(rest, &n[1..]),
            Some(('[', rest)) => {
                let Some(end) = rest.iter().position(|&c| c == ']') else {
                    return n.first() == Some(&'[') && m(rest, &n[1..]);
                };
                let Some(&c) = n.first() else { return false };
                let (neg, set) = match rest[..end].split_first() {
                    Some(('^' | '!', s)) => (true, s),
                    _ => (false, &rest[..end]),
                };
                let mut ok = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == '-' {
                        ok |= set[i] <= c && c <= set[i + 2];
                        i += 3;
                    } else {
                        ok |= set[i] == c;
                        i += 1;
                    }
                }
                ok != neg && m(&rest[end + 1..], &n[1..])
            }
            Some((c, rest)) => n.first() == Some(c) && m(rest, &n[1..]),
        }
    }
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    m(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.txt", "a.txt"));
        assert!(!glob_match("*.txt", "a.txd"));
        assert!(glob_match("f?[0-9]", "fx7"));
        assert!(!glob_match("f[!a]", "fa"));
    }

    #[test]
    fn chown_names_from_image_files() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        std::fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            t.path().join("etc/group"),
            "root:x:0:\nstaff:x:50:\nusers:x:1001:\n",
        )
        .unwrap();
        let v = MergedView::new(&[t.path().to_path_buf()]);
        assert_eq!(
            resolve_chown(&v, "app").unwrap(),
            Owner {
                uid: 1000,
                gid: 1001
            }
        );
        assert_eq!(
            resolve_chown(&v, "app:staff").unwrap(),
            Owner { uid: 1000, gid: 50 }
        );
        assert_eq!(resolve_chown(&v, "7:8").unwrap(), Owner { uid: 7, gid: 8 });
        assert!(resolve_chown(&v, "nobody").is_err());
        assert!(resolve_chown(&v, "app:nogroup").is_err());
    }
}
