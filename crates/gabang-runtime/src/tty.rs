//! Terminals for `-t`: the container's process gets a pty made *inside* the container
//! (libcontainer's console socket: the init opens the pty on the container's devpts, makes
//! the slave its controlling terminal and stdio, and sends the master back over a unix
//! socket), so `tty` names `/dev/pts/N`, shells get job control and Ctrl-C reaches the
//! foreground process group inside. [`ConsoleSocket`] receives the master; [`follow_winsize`]
//! keeps the container's window size equal to the caller's (on SIGWINCH); [`relay`] is the
//! copy loop for `exec -t`.

use std::io::{IoSliceMut, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::termios::{self, SetArg};
use nix::unistd::Pid;

use crate::error::{sys, Result, RuntimeError};

/// A listening unix socket that libcontainer's init connects to, to hand over the pty master.
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// Listen on `dir/name`. The socket is bound through `/proc/self/fd/N/name` so that long
    /// state roots do not hit the 108-byte limit of a socket path.
    pub fn bind(dir: &Path, name: &str) -> Result<Self> {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let d = std::fs::File::open(dir).map_err(|e| sys(format!("open {}", dir.display()), e))?;
        let short = format!("/proc/self/fd/{}/{name}", d.as_raw_fd());
        let listener =
            UnixListener::bind(&short).map_err(|e| sys(format!("bind {}", path.display()), e))?;
        Ok(ConsoleSocket { listener, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accept the init's connection and receive the pty master (waits at most 10 s: by the
    /// time libcontainer's build returns, the init has already sent it).
    pub fn receive_master(&self) -> Result<OwnedFd> {
        let bad = |m: &str| RuntimeError::Shim(format!("console socket: {m}"));
        let mut pfd = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut pfd, PollTimeout::from(10_000u16)) {
            Ok(1) => {}
            _ => return Err(bad("the container never connected")),
        }
        let (conn, _) = self
            .listener
            .accept()
            .map_err(|e| sys("console socket accept", e))?;
        let mut pfd = [PollFd::new(conn.as_fd(), PollFlags::POLLIN)];
        match poll(&mut pfd, PollTimeout::from(10_000u16)) {
            Ok(1) => {}
            _ => return Err(bad("no pty master received")),
        }
        let mut name = [0u8; 256];
        let mut iov = [IoSliceMut::new(&mut name)];
        let mut cmsg = nix::cmsg_space!([RawFd; 2]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| sys("console socket recvmsg", e))?;
        let mut master = None;
        for c in msg.cmsgs().map_err(|e| sys("console socket cmsg", e))? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for fd in fds {
                    // SAFETY: SCM_RIGHTS gave us a fresh descriptor that nobody else owns.
                    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
                    if master.is_none() {
                        master = Some(owned);
                    }
                }
            }
        }
        master.ok_or_else(|| bad("message carried no file descriptor"))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

static WINSIZE_FROM: AtomicI32 = AtomicI32::new(-1);
static WINSIZE_TO: AtomicI32 = AtomicI32::new(-1);

/// Copy the window size of terminal `from` to pty master `to`; false if `from` has none.
pub fn copy_winsize(from: RawFd, to: RawFd) -> bool {
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ with a properly sized winsize; invalid fds just fail.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        libc::ioctl(from, libc::TIOCGWINSZ, &mut ws) == 0
            && libc::ioctl(to, libc::TIOCSWINSZ, &ws) == 0
    }
}

extern "C" fn on_winch(_: libc::c_int) {
    let (from, to) = (
        WINSIZE_FROM.load(Ordering::Relaxed),
        WINSIZE_TO.load(Ordering::Relaxed),
    );
    if from >= 0 && to >= 0 {
        // ioctl(2) is async-signal-safe.
        copy_winsize(from, to);
    }
}

/// Give pty master `master` the window size of terminal `from` now and on every SIGWINCH this
/// process receives (the caller forwards its own SIGWINCH to the shim). `from` and `master`
/// must stay open until [`stop_following_winsize`].
pub fn follow_winsize(from: RawFd, master: RawFd) {
    WINSIZE_FROM.store(from, Ordering::Relaxed);
    WINSIZE_TO.store(master, Ordering::Relaxed);
    copy_winsize(from, master);
    // SAFETY: installing a handler that only does ioctls on fds read from atomics.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_winch as *const () as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGWINCH, &sa, std::ptr::null_mut());
    }
}

/// Stop resizing (before the fds given to [`follow_winsize`] are closed).
pub fn stop_following_winsize() {
    WINSIZE_TO.store(-1, Ordering::Relaxed);
    WINSIZE_FROM.store(-1, Ordering::Relaxed);
}

/// Which of our inherited fds is a terminal to take the window size from.
pub fn terminal_fd(candidates: &[RawFd]) -> Option<RawFd> {
    candidates
        .iter()
        .copied()
        // SAFETY: isatty on fds we hold.
        .find(|fd| *fd >= 0 && unsafe { libc::isatty(*fd) } == 1)
}

/// Copy stdin → master and master → stdout until the process side closes (for `exec -t`);
/// our terminal is raw meanwhile, and its size follows ours.
pub fn relay(master: OwnedFd, _pid: Pid) {
    let stdin = std::io::stdin();
    let saved = termios::tcgetattr(stdin.as_fd()).ok();
    if let Some(t) = &saved {
        let mut raw = t.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
    }
    if let Some(fd) = terminal_fd(&[0, 1]) {
        follow_winsize(fd, master.as_raw_fd());
    }
    let mut buf = [0u8; 16 * 1024];
    let mut stdin_open = true;
    loop {
        let mut fds = vec![PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let rev: Vec<PollFlags> = fds
            .iter()
            .map(|f| f.revents().unwrap_or(PollFlags::empty()))
            .collect();
        drop(fds);
        if !rev[0].is_empty() {
            match rustix::io::read(&master, &mut buf) {
                Ok(0) => break,
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => break,
                Ok(n) => {
                    let mut out = std::io::stdout();
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                }
            }
        }
        if stdin_open && rev.len() > 1 && !rev[1].is_empty() {
            match rustix::io::read(stdin.as_fd(), &mut buf) {
                Err(rustix::io::Errno::INTR) => {}
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    let _ = rustix::io::write(&master, &buf[..n]);
                }
            }
        }
    }
    stop_following_winsize();
    if let Some(t) = saved {
        let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &t);
    }
}
