//! Resolve docker's `--user` / `USER` (`name`, `uid`, `name:group`, `uid:gid`) against the
//! container rootfs's `/etc/passwd` and `/etc/group`, as docker does.

use std::path::Path;

use crate::error::{Result, RuntimeError};

/// A resolved process identity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// Home directory from passwd (used for `HOME` when the image sets none).
    pub home: String,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn read_lines(path: &Path) -> Vec<String> {
    // A missing passwd/group file is normal for minimal images.
    std::fs::read_to_string(path)
        .map(|s| s.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn parse_passwd(rootfs: &Path) -> Vec<PasswdEntry> {
    read_lines(&rootfs.join("etc/passwd"))
        .iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 || l.starts_with('#') {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_owned(),
            })
        })
        .collect()
}

fn parse_group(rootfs: &Path) -> Vec<GroupEntry> {
    read_lines(&rootfs.join("etc/group"))
        .iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 || l.starts_with('#') {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_owned(),
                gid: f[2].parse().ok()?,
                members: f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect()
}

/// Resolve `spec` (empty = root) inside `rootfs`.
pub fn resolve_user(rootfs: &Path, spec: &str) -> Result<ResolvedUser> {
    let spec = spec.trim();
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = parse_passwd(rootfs);
    let groups = parse_group(rootfs);
    let err = |m: &str| RuntimeError::User(spec.to_owned(), m.to_owned());

    let (uid, mut gid, home, name) = if user_part.is_empty() {
        (0, 0, "/root".to_owned(), Some("root".to_owned()))
    } else if let Some(e) = passwd.iter().find(|e| e.name == user_part) {
        (e.uid, e.gid, e.home.clone(), Some(e.name.clone()))
    } else if let Ok(uid) = user_part.parse::<u32>() {
        match passwd.iter().find(|e| e.uid == uid) {
            Some(e) => (uid, e.gid, e.home.clone(), Some(e.name.clone())),
            None => (uid, 0, "/".to_owned(), None),
        }
    } else {
        return Err(err("unable to find user in /etc/passwd"));
    };
    if user_part.is_empty() {
        if let Some(e) = passwd.iter().find(|e| e.uid == 0) {
            gid = e.gid;
        }
    }
    let mut additional_gids = Vec::new();
    match group_part {
        Some(g) if !g.is_empty() => {
            gid = if let Some(e) = groups.iter().find(|e| e.name == g) {
                e.gid
            } else if let Ok(n) = g.parse::<u32>() {
                n
            } else {
                return Err(err("unable to find group in /etc/group"));
            };
        }
        _ => {
            if let Some(name) = &name {
                for gr in &groups {
                    if gr.members.iter().any(|m| m == name) && gr.gid != gid {
                        additional_gids.push(gr.gid);
                    }
                }
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_numbers_and_groups() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nwheel:x:10:app\n",
        )
        .unwrap();
        let r = resolve_user(d.path(), "").unwrap();
        assert_eq!((r.uid, r.gid), (0, 0));
        let r = resolve_user(d.path(), "nobody").unwrap();
        assert_eq!(
            (r.uid, r.gid, r.home.as_str()),
            (65534, 65534, "/nonexistent")
        );
        let r = resolve_user(d.path(), "app").unwrap();
        assert_eq!((r.uid, r.gid), (1000, 1000));
        assert_eq!(r.additional_gids, vec![10]);
        let r = resolve_user(d.path(), "app:wheel").unwrap();
        assert_eq!((r.uid, r.gid), (1000, 10));
        let r = resolve_user(d.path(), "4242:77").unwrap();
        assert_eq!((r.uid, r.gid), (4242, 77));
        assert!(resolve_user(d.path(), "ghost").is_err());
        assert!(resolve_user(d.path(), "app:ghosts").is_err());
    }
}
