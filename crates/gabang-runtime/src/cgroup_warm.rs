//! Start a container's cgroup migration's grace period early.
//!
//! Moving a task into a cgroup (a write to `cgroup.procs`, which libcontainer's init does
//! for the container in every hierarchy) takes the kernel's global
//! `cgroup_threadgroup_rwsem` for writing. When no writer took it recently, that waits for a
//! whole RCU grace period first: 5-18 ms on these VMs, the biggest single wait of a
//! container start (runc pays it too). A writer arriving while the previous one is less than
//! a grace period gone waits for none (0.5 ms).
//!
//! So the caller of a start writes its own pid into the cgroup it is already in (a no-op
//! migration that takes the same lock) on a short-lived thread, while the shim is exec'd and
//! mounts the rootfs; the shim writes once more just before libcontainer forks, so the
//! container's own migration finds the lock's fast path. Nothing moves: each writer names
//! the cgroup it is in. Failures are ignored (not root, no cgroup fs): the start then simply
//! pays the wait itself, as before.

use std::path::PathBuf;

/// The `cgroup.procs` of the cgroup this process is in: a v1 hierarchy (`pids` first, any
/// other after) or the v2 one.
fn own_cgroup_procs() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut v2 = None;
    let mut v1 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrl), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if path.contains("..") {
            continue;
        }
        if ctrl.is_empty() {
            v2 = Some(path.to_owned());
        } else if !ctrl.starts_with("name=") {
            let first = ctrl.split(',').next().unwrap_or(ctrl).to_owned();
            if v1.is_none() || first == "pids" {
                v1 = Some((ctrl.to_owned(), path.to_owned()));
            }
        }
    }
    if let Some((ctrl, path)) = v1 {
        let p = PathBuf::from(format!("/sys/fs/cgroup/{ctrl}{path}/cgroup.procs"));
        if p.exists() {
            return Some(p);
        }
    }
    let path = v2?;
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .iter()
        .map(|m| PathBuf::from(format!("{m}{path}/cgroup.procs")))
        .find(|p| p.exists())
}

/// One no-op migration of this process, now (blocks for the grace period when the lock's
/// fast path is cold).
pub fn prime() {
    if let Some(procs) = own_cgroup_procs() {
        let _ = std::fs::write(procs, std::process::id().to_string());
    }
}

/// [`prime`] on a detached short-lived thread. Not for the shim (it must stay
/// single-threaded when libcontainer forks): the shim calls [`prime`].
pub fn prime_async() {
    let _ = std::thread::Builder::new()
        .name("cgroup-prime".into())
        .spawn(prime);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cgroup_is_found_and_a_prime_moves_nothing() {
        let Some(procs) = own_cgroup_procs() else {
            return; // no cgroup filesystem in this environment
        };
        let me = std::process::id().to_string();
        let before = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        assert!(std::fs::read_to_string(&procs)
            .unwrap()
            .lines()
            .any(|l| l == me));
        prime();
        assert_eq!(
            std::fs::read_to_string("/proc/self/cgroup").unwrap(),
            before
        );
    }
}
