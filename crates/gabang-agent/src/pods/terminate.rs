//! Stop a pod and release everything it made: containers (SIGTERM, grace, SIGKILL, all at
//! once), mounts under the pod dir (memory emptyDirs), the netns + veth + IP, the pod's
//! cgroup dirs (every v1 controller and v2), and `<root>/pods/<uid>`. Idempotent.

use std::path::Path;
use std::time::Duration;

use super::{containers, lock, PodRuntime};
use crate::{AgentError, Result};

pub(super) fn terminate(rt: &PodRuntime, uid: &str, grace: Duration) -> Result<()> {
    super::valid_uid(uid)?;
    let state = rt.pod_state(uid);
    let _guard = lock(&state);
    release(rt, uid, grace)?;
    lock(&rt.pods).remove(uid);
    Ok(())
}

/// Everything of `terminate` but the per-pod lock (the caller holds it).
pub(super) fn release(rt: &PodRuntime, uid: &str, grace: Duration) -> Result<()> {
    let ids = containers::ids(rt, uid);
    // Stop them all at once: the pod's grace period is shared, not per container.
    std::thread::scope(|s| {
        for id in &ids {
            s.spawn(move || {
                if let Err(e) = rt.runtime.stop(id, grace) {
                    tracing::warn!("pod {uid}: stop {id}: {e}");
                }
            });
        }
    });
    let mut first_err = None;
    for id in &ids {
        match rt.runtime.remove(id, true) {
            Ok(()) | Err(gabang_runtime::RuntimeError::NotFound(_)) => {
                containers::forget(rt, uid, id);
            }
            Err(e) => {
                tracing::warn!("pod {uid}: remove {id}: {e}");
                first_err.get_or_insert(AgentError::from(e));
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let dir = rt.pod_dir(uid);
    unmount_under(&dir)?;
    rt.net.detach(uid, &[])?;
    remove_cgroups(&PodRuntime::cgroup_parent(uid));
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(AgentError::Io { path: dir, source }),
    }
}

/// Mount points at or under `dir` (from /proc/self/mountinfo), deepest first.
pub(super) fn mounts_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<std::path::PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| std::path::PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

fn unmount_under(dir: &Path) -> Result<()> {
    for m in mounts_under(dir) {
        if let Err(e) = rustix::mount::unmount(&m, rustix::mount::UnmountFlags::DETACH) {
            if e != rustix::io::Errno::INVAL && e != rustix::io::Errno::NOENT {
                return Err(AgentError::Io {
                    path: m,
                    source: e.into(),
                });
            }
        }
    }
    Ok(())
}

/// Remove the pod's cgroup dir in every hierarchy (hybrid: each v1 controller and the
/// unified one; pure v2: the root), killing anything left inside first.
pub(super) fn remove_cgroups(rel: &str) {
    let rel = rel.trim_start_matches('/');
    let mut dirs = vec![Path::new("/sys/fs/cgroup").join(rel)];
    if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in entries.flatten() {
            dirs.push(e.path().join(rel));
        }
    }
    for d in dirs {
        remove_cgroup_tree(&d);
    }
}

fn remove_cgroup_tree(d: &Path) {
    if !d.is_dir() {
        return;
    }
    if let Ok(entries) = std::fs::read_dir(d) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    for _ in 0..100 {
        if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
            for p in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: kill(2) of a process left in the pod's own cgroup.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
        if std::fs::remove_dir(d).is_ok() || !d.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::warn!("cgroup {} could not be removed", d.display());
}
