//! Test fixtures: every kernel test runs its "host" side in a network namespace of its own
//! (the bridge, the nft table and the host veth ends live and die there), and removes the
//! containers' named netns it made, even when the test fails (Drop guards).

#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;

use gabang_net::{NetConfig, Network};
use rustix::fs::{Mode, OFlags};
use rustix::thread::{LinkNameSpaceType, UnshareFlags};

fn open_ns(path: &Path) -> OwnedFd {
    rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// The netns the calling thread is in, as `(dev, inode)`.
pub fn current_netns_id() -> (u64, u64) {
    let st = rustix::fs::stat("/proc/thread-self/ns/net").expect("stat own netns");
    (st.st_dev, st.st_ino)
}

/// Enter the netns at `fd` on the calling thread.
pub fn enter(fd: &OwnedFd) {
    rustix::thread::move_into_link_name_space(fd.as_fd(), Some(LinkNameSpaceType::Network))
        .expect("setns");
}

/// A fresh, unnamed netns that the creating thread is moved into; the thread goes back to
/// its old netns on drop, and the netns dies with its last reference.
pub struct TestNs {
    pub fd: OwnedFd,
    home: OwnedFd,
}

impl TestNs {
    pub fn new() -> Self {
        let home = open_ns(Path::new("/proc/thread-self/ns/net"));
        // SAFETY: CLONE_NEWNET only changes this thread's network namespace.
        unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET) }.expect("unshare");
        let fd = open_ns(Path::new("/proc/thread-self/ns/net"));
        let ns = TestNs { fd, home };
        sh("ip", &["link", "set", "lo", "up"]);
        ns
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = rustix::thread::move_into_link_name_space(
            self.home.as_fd(),
            Some(LinkNameSpaceType::Network),
        );
    }
}

/// Run a command in the calling thread's netns; panics with its stderr on failure.
pub fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether a command succeeds (in the calling thread's netns).
pub fn ok(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A container id unique on this host (its netns and veth names are global).
pub fn unique_id() -> String {
    format!("t{:011x}{:052x}", rand::random::<u64>() >> 20, 0)
}

/// A test's network: its own netns, state dir and bridge; detaches every id it handed out.
pub struct Fixture {
    pub net: Network,
    pub ids: std::sync::Mutex<Vec<String>>,
    pub dir: tempfile::TempDir,
    pub ns: TestNs,
}

pub fn config() -> NetConfig {
    NetConfig {
        bridge: "gbt0".into(),
        subnet: Ipv4Addr::new(10, 77, 0, 0),
        prefix: 24,
    }
}

impl Fixture {
    pub fn new() -> Self {
        let ns = TestNs::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let net = Network::open_with(dir.path(), config()).expect("open network");
        Fixture {
            net,
            ids: Default::default(),
            dir,
            ns,
        }
    }

    /// A fresh id, detached (and its netns removed) when the fixture drops.
    pub fn id(&self) -> String {
        let id = unique_id();
        self.ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(id.clone());
        id
    }

    /// Another `Network` over the same state dir (what another process would open).
    pub fn reopen(&self) -> Network {
        Network::open_with(self.dir.path(), config()).expect("reopen network")
    }
}

pub fn netns_path(id: &str) -> PathBuf {
    Path::new("/run/netns").join(gabang_net::netns_name(id))
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut *self.ids.lock().unwrap_or_else(|p| p.into_inner()));
        for id in ids {
            let _ = self.net.detach(&id, &[]);
            let p = netns_path(&id);
            if p.exists() {
                let _ = rustix::mount::unmount(&p, rustix::mount::UnmountFlags::DETACH);
                let _ = std::fs::remove_file(&p);
            }
        }
        let _ = self.net.remove_bridge();
    }
}

/// Run `f` on a thread that is in the netns at `ns` (a path or an fd), return its result.
pub fn in_netns_path<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> T {
    let fd = open_ns(path);
    in_netns(&fd, f)
}

pub fn in_netns<T: Send>(fd: &OwnedFd, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(fd);
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}
