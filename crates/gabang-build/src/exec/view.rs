//! A read-only merged view of a stack of overlay-format layer directories
//! (what overlayfs would show), computed in user space: lookups honour
//! whiteouts (0/0 character devices) and opaque directories
//! (`trusted.overlay.opaque=y`), and path resolution follows symlinks without
//! ever leaving the root (`..` and absolute link targets stay inside).

use std::collections::BTreeMap;
use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Layers, top first.
#[derive(Debug, Clone, Default)]
pub struct MergedView {
    layers: Vec<PathBuf>,
}

fn is_whiteout(md: &Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

fn is_opaque(p: &Path) -> bool {
    let mut buf = [0u8; 4];
    matches!(rustix::fs::lgetxattr(p, "trusted.overlay.opaque", &mut buf), Ok(n) if n >= 1 && buf[0] == b'y')
}

fn comps(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

impl MergedView {
    /// `bottom_to_top` as the content store lists snapshot dirs.
    pub fn new(bottom_to_top: &[PathBuf]) -> MergedView {
        MergedView {
            layers: bottom_to_top.iter().rev().cloned().collect(),
        }
    }

    /// Layers (top first) in which the directory at `rel` is visible and merged.
    fn dir_layers(&self, rel: &[&str]) -> Vec<usize> {
        let mut cands: Vec<usize> = (0..self.layers.len()).collect();
        let mut prefix = PathBuf::new();
        for c in rel {
            prefix.push(c);
            let mut next = Vec::new();
            for &i in &cands {
                let p = self.layers[i].join(&prefix);
                let Ok(md) = std::fs::symlink_metadata(&p) else {
                    continue;
                };
                if is_whiteout(&md) {
                    break;
                }
                if md.is_dir() {
                    next.push(i);
                    if is_opaque(&p) {
                        break;
                    }
                } else {
                    // a non-directory hides everything below it
                    break;
                }
            }
            cands = next;
            if cands.is_empty() {
                break;
            }
        }
        cands
    }

    /// The host path of the entry at `path` (no symlink following), if visible.
    pub fn lookup(&self, path: &str) -> Option<PathBuf> {
        let cs = comps(path);
        let Some((last, parent)) = cs.split_last() else {
            return self.layers.first().cloned();
        };
        for i in self.dir_layers(parent) {
            let p = self.layers[i].join(parent.join("/")).join(last);
            if let Ok(md) = std::fs::symlink_metadata(&p) {
                if is_whiteout(&md) {
                    return None;
                }
                return Some(p);
            }
        }
        None
    }

    /// `lstat` of a visible entry.
    pub fn metadata(&self, path: &str) -> Option<(PathBuf, Metadata)> {
        let p = self.lookup(path)?;
        let md = std::fs::symlink_metadata(&p).ok()?;
        Some((p, md))
    }

    /// Entries of the directory `path`: name → host path (whiteouts removed).
    pub fn read_dir(&self, path: &str) -> BTreeMap<String, PathBuf> {
        let cs = comps(path);
        let mut out: BTreeMap<String, PathBuf> = BTreeMap::new();
        let mut hidden = std::collections::BTreeSet::new();
        for i in self.dir_layers(&cs) {
            let d = self.layers[i].join(cs.join("/"));
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if out.contains_key(&name) || hidden.contains(&name) {
                    continue;
                }
                match e.metadata() {
                    Ok(md) if is_whiteout(&md) => {
                        hidden.insert(name);
                    }
                    Ok(_) => {
                        out.insert(name, e.path());
                    }
                    Err(_) => {}
                }
            }
        }
        out
    }

    /// Canonical absolute path of `path` inside the root: `.`/`..` resolved,
    /// symlinks followed (the last one only if `follow_last`), never escaping
    /// the root. Missing components are kept as written.
    pub fn resolve(&self, path: &str, follow_last: bool) -> String {
        let mut todo: Vec<String> = comps(path).into_iter().rev().map(String::from).collect();
        let mut out: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            if c == ".." {
                out.pop();
                continue;
            }
            out.push(c);
            let is_last = todo.is_empty();
            if is_last && !follow_last {
                break;
            }
            let cur = out.join("/");
            let Some((p, md)) = self.metadata(&cur) else {
                continue;
            };
            if md.file_type().is_symlink() && hops < 40 {
                hops += 1;
                let Ok(t) = std::fs::read_link(&p) else {
                    continue;
                };
                let t = t.to_string_lossy().to_string();
                out.pop();
                if t.starts_with('/') {
                    out.clear();
                }
                for tc in comps(&t).into_iter().rev() {
                    todo.push(tc.to_string());
                }
            }
        }
        format!("/{}", out.join("/"))
    }

    /// Read a whole (small) file, following symlinks in the root.
    pub fn read_file(&self, path: &str) -> Option<Vec<u8>> {
        let r = self.resolve(path, true);
        let (p, md) = self.metadata(&r)?;
        if !md.is_file() {
            return None;
        }
        std::fs::read(p).ok()
    }

    /// Is `path` (following symlinks) a directory?
    pub fn is_dir(&self, path: &str) -> bool {
        let r = self.resolve(path, true);
        self.metadata(&r).is_some_and(|(_, md)| md.is_dir())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteouts_opaque_and_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let lo = t.path().join("lo");
        let up = t.path().join("up");
        std::fs::create_dir_all(lo.join("a/b")).unwrap();
        std::fs::write(lo.join("a/b/f"), "x").unwrap();
        std::fs::write(lo.join("a/gone"), "x").unwrap();
        std::os::unix::fs::symlink("/a/b", lo.join("link")).unwrap();
        std::os::unix::fs::symlink("../../../../a", lo.join("esc")).unwrap();
        std::fs::create_dir_all(up.join("a")).unwrap();
        std::fs::write(up.join("a/new"), "y").unwrap();
        let v = MergedView::new(&[lo.clone(), up.clone()]);
        assert!(v.lookup("/a/b/f").is_some());
        assert_eq!(v.resolve("/link/f", true), "/a/b/f");
        assert_eq!(v.resolve("/esc/b", true), "/a/b");
        assert_eq!(v.resolve("/../../x", true), "/x");
        let names: Vec<String> = v.read_dir("/a").into_keys().collect();
        assert_eq!(names, ["b", "gone", "new"]);
        assert!(v.is_dir("/link"));
        assert_eq!(v.read_file("/link/f").unwrap(), b"x");
    }
}
