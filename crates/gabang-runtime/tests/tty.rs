//! `-t`: the container's process has a real controlling terminal (a pty made inside the
//! container), shells get job control, Ctrl-C typed into the terminal interrupts the
//! foreground process inside, the window size follows the caller's, for `run -it`,
//! `exec -it` and `run -d -t`. The caller's terminal is a pty the test holds.
mod common;

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use gabang_runtime::{Attach, ExecSpec};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::Winsize;

/// The caller's terminal: we hold the master, the shim gets the slave.
struct Term {
    master: std::fs::File,
    slave: OwnedFd,
    seen: String,
}

impl Term {
    fn new(rows: u16, cols: u16) -> Self {
        let ws = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let p = nix::pty::openpty(Some(&ws), None).unwrap();
        Term {
            master: std::fs::File::from(p.master),
            slave: p.slave,
            seen: String::new(),
        }
    }

    fn stdio(&self) -> Stdio {
        Stdio::from(self.slave.try_clone().unwrap())
    }

    fn send(&mut self, s: &str) {
        self.master.write_all(s.as_bytes()).unwrap();
    }

    /// Read until `needle` has been seen (everything read stays in `seen`).
    fn expect(&mut self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while !self.seen.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let ms = u16::try_from(left.as_millis().min(1000)).unwrap();
            let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::from(ms)).unwrap_or(0) == 0 {
                continue;
            }
            match rustix::io::read(&self.master, &mut buf) {
                Ok(0) | Err(_) => return self.seen.contains(needle),
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        true
    }

    fn resize(&self, rows: u16, cols: u16) {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ on our pty master with a valid winsize.
        assert_eq!(
            unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) },
            0
        );
    }
}

const T: Duration = Duration::from_secs(15);

/// Spawn the shim on the terminal's slave, in a new session (as `Runtime::start` does);
/// with `ctty` the slave becomes its controlling terminal (as for the exec shim, which
/// runs in the caller's foreground). `status` becomes fd 3.
fn spawn_shim(term: &Term, args: &[String], ctty: bool, status: Option<&OwnedFd>) -> Child {
    let mut cmd = Command::new(shim_exe());
    cmd.args(args)
        .stdin(term.stdio())
        .stdout(term.stdio())
        .stderr(term.stdio());
    let status_fd = status.map(|f| f.as_raw_fd()).unwrap_or(-1);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            if ctty && libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if status_fd >= 0 && libc::dup2(status_fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

/// Is a process running `sleep <arg>` (a value unique to the test) anywhere?
fn sleeping(arg: &str) -> bool {
    let want = format!("sleep\0{arg}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want.as_bytes()))
}

/// The checks shared by `run -it` and `exec -it`, typed into an interactive `sh`.
fn check_interactive_shell(term: &mut Term, resize: impl Fn(&Term), sleep_arg: &str) {
    // Typed text is echoed back, so the expected output is computed by the shell.
    term.send("tty; stty size; case $- in *m*) echo JOBS-$((40+2));; esac\r");
    assert!(term.expect("/dev/pts/", T), "tty: {}", term.seen);
    assert!(term.expect("24 80", T), "initial size: {}", term.seen);
    assert!(term.expect("JOBS-42", T), "job control: {}", term.seen);
    assert!(
        !term.seen.contains("job control turned off"),
        "{}",
        term.seen
    );

    resize(term);
    let mut resized = false;
    for _ in 0..20 {
        term.send("stty size\r");
        if term.expect("50 132", Duration::from_millis(500)) {
            resized = true;
            break;
        }
    }
    assert!(resized, "size follows the caller: {}", term.seen);

    term.send(&format!("sleep {sleep_arg}\r"));
    assert!(
        crate::eventually(|| sleeping(sleep_arg)),
        "sleep started: {}",
        term.seen
    );
    term.send("\x03");
    // The shell gets the terminal back when its foreground job dies of SIGINT (130).
    assert!(
        crate::eventually(|| !sleeping(sleep_arg)),
        "sleep interrupted: {}",
        term.seen
    );
    term.send("echo AFTER-$?\r");
    assert!(
        term.expect("AFTER-130", T),
        "Ctrl-C interrupts the foreground process: {}",
        term.seen
    );
    term.send("echo ALIVE-$((1+1))\r");
    assert!(
        term.expect("ALIVE-2", T),
        "the shell survives: {}",
        term.seen
    );
}

#[test]
fn run_it_gives_a_controlling_terminal() {
    let env = Env::new();
    let mut o = opts(&["sh"]);
    o.tty = true;
    o.interactive = true;
    let id = env.rt.create(env.req(o)).unwrap();
    let mut term = Term::new(24, 80);
    let (r, w) = rustix::pipe::pipe().unwrap();
    let root = env.rt.root().display().to_string();
    let args: Vec<String> = [
        "run",
        "--root",
        &root,
        "--id",
        &id,
        "--status-fd",
        "3",
        "--attach",
        "--interactive",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut shim = spawn_shim(&term, &args, false, Some(&w));
    drop(w);
    let mut status = std::io::BufReader::new(std::fs::File::from(r));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut status, &mut line).unwrap();
    assert_eq!(line.trim(), "started", "{}", term.seen);

    let shim_pid = shim.id() as i32;
    check_interactive_shell(
        &mut term,
        |t| {
            t.resize(50, 132);
            // The CLI (in the terminal's session) forwards its SIGWINCH to the shim.
            // SAFETY: kill(2) to our own child.
            unsafe { libc::kill(shim_pid, libc::SIGWINCH) };
        },
        "4241",
    );

    term.send("exit 3\r");
    line.clear();
    std::io::BufRead::read_line(&mut status, &mut line).unwrap();
    assert_eq!(line.trim(), "exited 3", "{}", term.seen);
    assert_eq!(shim.wait().unwrap().code(), Some(3));
    let log = env.read_log(&id);
    assert!(log.contains("/dev/pts/0"), "tty output is logged: {log}");
    assert!(log.contains("AFTER-130"), "{log}");
}

#[test]
fn exec_it_gives_a_controlling_terminal() {
    let env = Env::new();
    let (id, _) = env
        .rt
        .run(env.req(opts(&["sleep", "1000"])), Attach::Detached)
        .unwrap();
    let mut term = Term::new(24, 80);
    let spec = ExecSpec {
        args: vec!["sh".into()],
        tty: true,
        ..Default::default()
    };
    let root = env.rt.root().display().to_string();
    let args: Vec<String> = vec![
        "exec".into(),
        "--root".into(),
        root,
        "--id".into(),
        id.clone(),
        "--exec".into(),
        serde_json::to_string(&spec).unwrap(),
    ];
    // The exec shim runs in the caller's foreground: the kernel sends it SIGWINCH itself.
    let mut shim = spawn_shim(&term, &args, true, None);
    check_interactive_shell(&mut term, |t| t.resize(50, 132), "4242");
    term.send("exit 5\r");
    assert_eq!(shim.wait().unwrap().code(), Some(5), "{}", term.seen);
    // Nothing is left behind in the container dir.
    let leftovers: Vec<_> = std::fs::read_dir(env.rt.container_dir(&id))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("exec-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn detached_tty_logs_and_exits() {
    let env = Env::new();
    let mut o = opts(&["sh", "-c", "tty; echo out; echo err >&2; exit 4"]);
    o.tty = true;
    let (id, _) = env.rt.run(env.req(o), Attach::Detached).unwrap();
    assert_eq!(env.rt.wait(&id).unwrap(), 4);
    let log = env.read_log(&id);
    assert!(log.contains("/dev/pts/0"), "{log}");
    assert!(log.contains("out") && log.contains("err"), "{log}");
}
