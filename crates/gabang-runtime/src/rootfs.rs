//! The container's root filesystem: overlayfs over the image's layer dirs with a
//! per-container upper/work dir, the generated `/etc/hosts`, `/etc/hostname` and
//! `/etc/resolv.conf`, and volume sources.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{sys, IoCtx, Result, RuntimeError};
use crate::store::ContainerDir;

/// Mount the overlay at `dir.rootfs()`.
/// Mount the container's overlay rootfs. `volatile` (for containers whose writable layer does
/// not outlive them: `--rm`, pod containers) skips overlayfs' sync of the whole upper
/// filesystem at umount, which costs hundreds of ms when the disk is busy.
pub fn mount_overlay(dir: &ContainerDir, lower_dirs: &[PathBuf], volatile: bool) -> Result<()> {
    if lower_dirs.is_empty() {
        return Err(RuntimeError::InvalidOption("image has no layers".into()));
    }
    for d in [dir.rootfs(), dir.upper(), dir.work()] {
        std::fs::create_dir_all(&d).at(&d)?;
    }
    if is_mountpoint(&dir.rootfs()) {
        return Ok(());
    }
    // overlay wants the top layer first.
    let lower: Vec<String> = lower_dirs
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    for l in lower_dirs {
        if !l.is_dir() {
            return Err(RuntimeError::InvalidOption(format!(
                "layer dir {} does not exist",
                l.display()
            )));
        }
    }
    let mut data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        dir.upper().display(),
        dir.work().display()
    );
    // A volatile mount leaves `work/work/incompat/volatile` behind and overlayfs refuses to
    // mount the same upper again until it is gone.
    let _ = std::fs::remove_dir_all(dir.work().join("work/incompat"));
    if volatile {
        data.push_str(",volatile");
    }
    mount(
        Some("overlay"),
        &dir.rootfs(),
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| sys(format!("mount overlay at {}", dir.rootfs().display()), e))
}

pub fn umount_rootfs(dir: &ContainerDir) -> Result<()> {
    let r = dir.rootfs();
    while is_mountpoint(&r) {
        umount2(&r, MntFlags::MNT_DETACH).map_err(|e| sys(format!("umount {}", r.display()), e))?;
    }
    Ok(())
}

/// Is `path` a mount point in our mount namespace? One `statx` (the kernel's MOUNT_ROOT
/// attribute); only kernels older than 5.8 fall back to scanning mountinfo, whose cost grows
/// with every mount on the machine.
pub fn is_mountpoint(path: &Path) -> bool {
    use rustix::fs::{statx, AtFlags, StatxAttributes, StatxFlags, CWD};
    match statx(
        CWD,
        path,
        AtFlags::NO_AUTOMOUNT | AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::empty(),
    ) {
        Ok(st) if st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT) => {
            st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)
        }
        Ok(_) | Err(rustix::io::Errno::NOSYS) => is_mountpoint_by_mountinfo(path),
        Err(_) => false,
    }
}

fn is_mountpoint_by_mountinfo(path: &Path) -> bool {
    let Ok(canon) = std::fs::canonicalize(path) else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = canon.to_string_lossy();
    info.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .map(unescape_mountinfo)
            .is_some_and(|m| m == want)
    })
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Write `hosts`, `hostname`, `resolv.conf` into the container dir; returns bind mounts.
pub fn write_etc_files(
    dir: &ContainerDir,
    hostname: &str,
    ip: Option<Ipv4Addr>,
    host_network: bool,
) -> Result<Vec<(PathBuf, String, bool)>> {
    let hosts = dir.dir.join("hosts");
    let mut h = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    if let Some(ip) = ip {
        h.push_str(&format!("{ip}\t{hostname}\n"));
    }
    if host_network {
        h = std::fs::read_to_string("/etc/hosts").unwrap_or(h);
    }
    std::fs::write(&hosts, h).at(&hosts)?;
    let hn = dir.dir.join("hostname");
    std::fs::write(&hn, format!("{hostname}\n")).at(&hn)?;
    let rc = dir.dir.join("resolv.conf");
    let content = if host_network {
        std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
    } else {
        container_resolv_conf()
    };
    std::fs::write(&rc, content).at(&rc)?;
    Ok(vec![
        (hosts, "/etc/hosts".into(), false),
        (hn, "/etc/hostname".into(), false),
        (rc, "/etc/resolv.conf".into(), false),
    ])
}

/// Host source of a volume: bind paths are created if missing (as docker does),
/// named volumes live in `<root>/volumes/<name>/_data`.
pub fn volume_source(root: &Path, v: &crate::model::VolumeSpec) -> Result<PathBuf> {
    let p = if v.is_bind() {
        PathBuf::from(&v.source)
    } else {
        root.join("volumes").join(&v.source).join("_data")
    };
    if !p.exists() {
        std::fs::create_dir_all(&p).at(&p)?;
    }
    Ok(p)
}

/// Find `args[0]` in the rootfs as `execve` in the container would (PATH search), to give
/// docker's exit codes: 127 not found, 126 not executable.
pub fn check_executable(
    rootfs: &Path,
    cmd: &str,
    env: &[String],
) -> std::result::Result<(), (i32, String)> {
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(crate::process::DEFAULT_PATH);
    let candidates: Vec<String> = if cmd.contains('/') {
        vec![cmd.to_owned()]
    } else {
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{}/{cmd}", d.trim_end_matches('/')))
            .collect()
    };
    for c in &candidates {
        let Some(p) = resolve_in_root(rootfs, c) else {
            continue;
        };
        let Ok(md) = std::fs::metadata(&p) else {
            continue;
        };
        use std::os::unix::fs::PermissionsExt;
        if md.is_dir() || md.permissions().mode() & 0o111 == 0 {
            return Err((126, format!("{cmd}: permission denied")));
        }
        return Ok(());
    }
    Err((
        127,
        format!("exec: \"{cmd}\": executable file not found in $PATH"),
    ))
}

/// Resolve `path` (absolute or relative to /) inside `root`, following symlinks as if `root`
/// were `/`. Returns the host path, or None if a component is missing.
pub fn resolve_in_root(root: &Path, path: &str) -> Option<PathBuf> {
    let mut parts: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    parts.reverse();
    let mut cur: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(p) = parts.pop() {
        match p.as_str() {
            "." => continue,
            ".." => {
                cur.pop();
                continue;
            }
            _ => {}
        }
        let mut host = root.to_path_buf();
        for c in &cur {
            host.push(c);
        }
        host.push(&p);
        let md = std::fs::symlink_metadata(&host).ok()?;
        if md.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                return None;
            }
            let target = std::fs::read_link(&host).ok()?;
            let t = target.to_string_lossy().into_owned();
            if t.starts_with('/') {
                cur.clear();
            }
            for s in t.split('/').filter(|s| !s.is_empty()).rev() {
                parts.push(s.to_owned());
            }
        } else {
            cur.push(p);
        }
    }
    let mut host = root.to_path_buf();
    for c in &cur {
        host.push(c);
    }
    Some(host)
}

/// The host's resolv.conf without loopback resolvers (unreachable from a network namespace),
/// as docker and the kubelet's `Default` DNS policy do; public resolvers if none is left.
pub fn container_resolv_conf() -> String {
    let host_rc = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut out = String::new();
    let mut servers = 0;
    for l in host_rc.lines() {
        if let Some(addr) = l.trim().strip_prefix("nameserver") {
            let addr = addr.trim();
            if addr.starts_with("127.") || addr == "::1" {
                continue;
            }
            servers += 1;
        }
        out.push_str(l);
        out.push('\n');
    }
    if servers == 0 {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_by_statx_agree_with_mountinfo() {
        let tmp = tempfile::tempdir().unwrap();
        let plain = tmp.path().join("plain");
        std::fs::create_dir(&plain).unwrap();
        for (p, want) in [
            (Path::new("/proc"), true),
            (plain.as_path(), false),
            (Path::new("/proc/self"), false),
        ] {
            assert_eq!(is_mountpoint(p), want, "{}", p.display());
            assert_eq!(is_mountpoint_by_mountinfo(p), want, "{}", p.display());
        }
        assert!(!is_mountpoint(&tmp.path().join("missing")));
    }
}
