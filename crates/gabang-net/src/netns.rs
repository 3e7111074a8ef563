//! Named network namespaces as iproute2 makes them: `/run/netns` a shared mount point, and
//! `/run/netns/NAME` a bind mount of a fresh netns, so `ip netns`, `ip -n` and joining by
//! path keep working.
//!
//! The netns is made with `unshare(CLONE_NEWNET)` on the calling thread, which returns to its
//! own netns (`setns`) before [`create`] returns; while inside, the caller's closure opens
//! what must live in the new netns (a netlink socket). No thread and no process is started:
//! this is safe in the single-threaded shim, and in a multi-threaded process it only moves
//! the calling thread, for the duration of the call.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountPropagationFlags, UnmountFlags};
use rustix::thread::{LinkNameSpaceType, UnshareFlags};

use crate::{io_at, NetError, Result};

pub(crate) const RUN_DIR: &str = "/run/netns";

fn errno_io(e: rustix::io::Errno) -> std::io::Error {
    std::io::Error::from(e)
}

/// Make `/run/netns` exist and be a shared mount (iproute2's `netns add` preamble).
fn prepare_run_dir(lock_dir: &Path) -> Result<()> {
    let dir = Path::new(RUN_DIR);
    match rustix::fs::mkdir(dir, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return io_at(Err(errno_io(e)), dir),
    }
    let share = || {
        rustix::mount::mount_change(
            dir,
            MountPropagationFlags::SHARED | MountPropagationFlags::REC,
        )
    };
    match share() {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INVAL) => {
            // Not a mount point yet: bind it onto itself once (under a lock, so concurrent
            // first attaches do not stack several bind mounts), then share it.
            let _l = crate::Lock::take(&lock_dir.join("netns.lock"))?;
            if share().is_ok() {
                return Ok(());
            }
            io_at(
                rustix::mount::mount_bind_recursive(dir, dir).map_err(errno_io),
                dir,
            )?;
            io_at(share().map_err(errno_io), dir)
        }
        Err(e) => io_at(Err(errno_io(e)), dir),
    }
}

/// Create the named netns at `path` and call `inside` while the calling thread is in it.
/// Returns an fd of the new netns and what `inside` returned. On error nothing is left.
pub(crate) fn create<T>(
    path: &Path,
    lock_dir: &Path,
    inside: impl FnOnce() -> Result<T>,
) -> Result<(OwnedFd, T)> {
    prepare_run_dir(lock_dir)?;
    let self_ns = Path::new("/proc/thread-self/ns/net");
    let home = io_at(
        rustix::fs::open(self_ns, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(errno_io),
        self_ns,
    )?;
    // The mount point: fails if the name is taken (like `ip netns add`).
    let f = io_at(
        rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno_io),
        path,
    )?;
    drop(f);
    // SAFETY: CLONE_NEWNET only changes this thread's network namespace; it does not unshare
    // the fd table (the hazard `unshare_unsafe` documents).
    if let Err(e) = unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET) } {
        let _ = std::fs::remove_file(path);
        return io_at(Err(errno_io(e)), Path::new("unshare(CLONE_NEWNET)"));
    }
    let made = (|| {
        io_at(
            rustix::mount::mount_bind(self_ns, path).map_err(errno_io),
            path,
        )?;
        let fd = io_at(
            rustix::fs::open(self_ns, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                .map_err(errno_io),
            self_ns,
        )?;
        Ok((fd, inside()?))
    })();
    let back =
        rustix::thread::move_into_link_name_space(home.as_fd(), Some(LinkNameSpaceType::Network));
    if let Err(e) = back {
        // Practically impossible (root, an fd we hold), but this thread must not go on in
        // the container's netns: report it loudly.
        tracing::error!("setns back to the original netns failed: {e}");
        let _ = remove(path);
        return Err(NetError::Io {
            path: self_ns.to_owned(),
            source: errno_io(e),
        });
    }
    if made.is_err() {
        let _ = remove(path);
    }
    made
}

/// In the calling thread's netns: links made from now on come up without IPv6. Best effort
/// (a kernel without IPv6 has nothing to disable).
pub(crate) fn disable_ipv6_on_new_links() {
    let _ = std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", b"1");
}

/// Unmount and unlink a named netns; idempotent (a missing or unmounted path is fine).
pub(crate) fn remove(path: &Path) -> Result<()> {
    match rustix::mount::unmount(path, UnmountFlags::DETACH) {
        Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return io_at(Err(errno_io(e)), path),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => io_at(Err(e), path),
    }
}
