//! Relay between the caller's terminal and a pty master (for `exec -t`).

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{self, SetArg};
use nix::unistd::Pid;

/// Copy stdin → master and master → stdout until the process side closes.
pub fn relay(master: OwnedFd, _pid: Pid) {
    let stdin = std::io::stdin();
    let saved = termios::tcgetattr(stdin.as_fd()).ok();
    if let Some(t) = &saved {
        let mut raw = t.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        // Copy the window size.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: ioctls on valid fds with a properly sized struct.
        unsafe {
            if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
                libc::ioctl(
                    std::os::fd::AsRawFd::as_raw_fd(&master),
                    libc::TIOCSWINSZ,
                    &ws,
                );
            }
        }
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
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mut out = std::io::stdout();
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                }
            }
        }
        if stdin_open && rev.len() > 1 && !rev[1].is_empty() {
            match rustix::io::read(stdin.as_fd(), &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    let _ = rustix::io::write(&master, &buf[..n]);
                }
            }
        }
    }
    if let Some(t) = saved {
        let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &t);
    }
}
