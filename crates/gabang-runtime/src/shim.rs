//! The per-container shim: a fresh single-threaded process (`gabang shim …`) that is the only
//! caller of libcontainer. `shim run` mounts the rootfs, sets up the network, creates and
//! starts the container, holds its stdio, writes the JSON log, reaps the exit status and
//! records it in `state.json`, applies the restart policy, and cleans up (libcontainer
//! delete → cgroups, overlay umount, veth/netns/nft elements). `shim exec` joins a running
//! container's namespaces (libcontainer tenant) and returns the process's exit code.
//!
//! Protocol with the caller over `--status-fd`: lines `started`, `error <code> <msg>`,
//! `exited <code>`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use chrono::Utc;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::error::{sys, Result, RuntimeError};
use crate::logs::{LogWriter, DEFAULT_MAX_FILES, DEFAULT_MAX_SIZE};
use crate::model::{ContainerConfig, ContainerState, NetworkMode, Status};
use crate::store::{pid_start_time, ContainerDir, Store};
use crate::{rootfs, spec};

/// What `gabang exec` asks the exec shim to run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub user: Option<String>,
    pub tty: bool,
}

/// Parsed `gabang shim` arguments.
#[derive(Debug, Clone)]
pub struct ShimArgs {
    pub mode: String,
    pub root: PathBuf,
    pub id: String,
    pub status_fd: Option<RawFd>,
    pub attach: bool,
    pub interactive: bool,
    pub exec: Option<ExecSpec>,
}

impl ShimArgs {
    /// Parse `run|exec --root R --id ID [--status-fd N] [--attach] [--interactive] [--exec JSON]`.
    pub fn parse(args: &[String]) -> Result<Self> {
        let bad = |m: &str| RuntimeError::Shim(format!("bad arguments: {m}"));
        let mut it = args.iter();
        let mode = it.next().ok_or_else(|| bad("missing mode"))?.clone();
        let mut a = ShimArgs {
            mode,
            root: PathBuf::new(),
            id: String::new(),
            status_fd: None,
            attach: false,
            interactive: false,
            exec: None,
        };
        while let Some(k) = it.next() {
            match k.as_str() {
                "--root" => a.root = PathBuf::from(it.next().ok_or_else(|| bad("--root"))?),
                "--id" => a.id = it.next().ok_or_else(|| bad("--id"))?.clone(),
                "--status-fd" => {
                    a.status_fd = Some(
                        it.next()
                            .and_then(|v| v.parse().ok())
                            .ok_or_else(|| bad("--status-fd"))?,
                    )
                }
                "--attach" => a.attach = true,
                "--interactive" => a.interactive = true,
                "--exec" => {
                    let j = it.next().ok_or_else(|| bad("--exec"))?;
                    a.exec = Some(serde_json::from_str(j).map_err(|e| bad(&e.to_string()))?);
                }
                other => return Err(bad(other)),
            }
        }
        if a.id.is_empty() || a.root.as_os_str().is_empty() {
            return Err(bad("--root and --id are required"));
        }
        Ok(a)
    }
}

/// Entry point of `gabang shim …`. Returns the process exit code.
pub fn shim_main(args: Vec<String>) -> i32 {
    let a = match ShimArgs::parse(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gabang shim: {e}");
            return 125;
        }
    };
    match a.mode.as_str() {
        "run" => run_mode(&a),
        "exec" => exec_mode(&a),
        m => {
            eprintln!("gabang shim: unknown mode {m}");
            125
        }
    }
}

struct StatusPipe(Option<File>);

impl StatusPipe {
    fn new(fd: Option<RawFd>) -> Self {
        StatusPipe(fd.and_then(|fd| {
            if fd > 2 {
                // SAFETY: the caller handed us this fd to own; mark it close-on-exec at once.
                let f = unsafe { File::from_raw_fd(fd) };
                let _ = rustix::io::fcntl_setfd(&f, rustix::io::FdFlags::CLOEXEC);
                return Some(f);
            }
            // A detached start passes the pipe as stdout (so it can spawn without a fork):
            // take a close-on-exec copy and put /dev/null in its place.
            // SAFETY: `fd` is one of our standard fds, open for the life of the process.
            let std_fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            let copy = rustix::io::fcntl_dupfd_cloexec(std_fd, 3).ok()?;
            if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
                // SAFETY: dup2 onto one of our own standard fds.
                unsafe { libc::dup2(null.as_raw_fd(), fd) };
            }
            Some(File::from(copy))
        }))
    }
    fn send(&mut self, msg: &str) {
        if let Some(f) = &mut self.0 {
            let line = format!("{}\n", msg.replace('\n', " "));
            if f.write_all(line.as_bytes()).is_err() {
                self.0 = None;
            }
        }
    }
}

fn err_code(e: &RuntimeError) -> i32 {
    let m = e.to_string();
    if m.contains("not found in $PATH") || m.contains("No such file") {
        127
    } else if m.contains("permission") {
        126
    } else {
        125
    }
}

struct Running {
    pid: Pid,
    pidfd: OwnedFd,
    out: OwnedFd,
    err: OwnedFd,
    stdin: Option<File>,
}

fn run_mode(a: &ShimArgs) -> i32 {
    // SAFETY: plain libc calls at the start of a single-threaded process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        // Off the caller's session and terminal (an attached start did it before exec;
        // a second call fails harmlessly).
        libc::setsid();
    }
    crate::timing("shim main");
    let mut status = StatusPipe::new(a.status_fd);
    let fail = |status: &mut StatusPipe, code: i32, msg: String| {
        status.send(&format!("error {code} {msg}"));
        code
    };
    let store = match Store::open(&a.root) {
        Ok(s) => s,
        Err(e) => return fail(&mut status, 125, e.to_string()),
    };
    let cfg = match store.load_config(&a.id) {
        Ok(c) => c,
        Err(e) => return fail(&mut status, 125, e.to_string()),
    };
    let dir = store.dir(&a.id);
    let mut st = store.load_state(&a.id).unwrap_or_default();
    let me = std::process::id() as i32;
    st.shim_pid = Some(me);
    st.shim_start = pid_start_time(me);
    let _ = std::fs::remove_file(dir.stop_marker());
    let mut log = match LogWriter::open(&dir.log(), DEFAULT_MAX_SIZE, DEFAULT_MAX_FILES) {
        Ok(l) => l,
        Err(e) => return fail(&mut status, 125, e.to_string()),
    };
    // Container output goes to the caller's stdout/stderr (kept as separate fds); the shim's
    // own diagnostics (tracing, libcontainer warnings) go to shim.log, never the terminal.
    let mut outputs = Outputs::take(a.attach, &dir);
    let attach = &mut outputs;
    loop {
        crate::timing("shim starting container");
        match start_container(&store, &cfg, &dir, &mut st, a.interactive) {
            Err(e) => {
                let code = err_code(&e);
                cleanup(&store, &cfg, &dir);
                st.status = Status::Exited;
                st.exit_code = Some(code);
                st.error = Some(e.to_string());
                st.finished_at = Some(Utc::now());
                st.pid = None;
                let _ = store.save_state(&cfg.id, &st);
                status.send(&format!("error {code} {e}"));
                if cfg.options.auto_remove {
                    remove_all(&store, &cfg, &dir);
                }
                return code;
            }
            Ok(run) => {
                st.status = Status::Running;
                st.pid = Some(run.pid.as_raw());
                st.pid_start = pid_start_time(run.pid.as_raw());
                st.started_at = Some(Utc::now());
                st.finished_at = None;
                st.exit_code = None;
                st.error = None;
                st.oom_killed = false;
                let _ = store.save_state(&cfg.id, &st);
                status.send("started");
                crate::timing("started sent");
                let raw = (cfg.options.tty && a.attach)
                    .then(RawTerminal::enter)
                    .flatten();
                if cfg.options.tty && a.attach {
                    let out = attach.out.as_ref().map_or(-1, |f| f.as_raw_fd());
                    if let Some(term) = crate::tty::terminal_fd(&[0, out]) {
                        crate::tty::follow_winsize(term, run.out.as_raw_fd());
                    }
                }
                let code = pump(run, &mut log, attach, a.interactive);
                crate::tty::stop_following_winsize();
                crate::timing("exited");
                drop(raw);
                if cfg.options.auto_remove {
                    // --rm: never restarted, no state to keep. The container disappears
                    // (dir renamed away, name released) before the caller hears of the exit;
                    // its rootfs, mounted only in this shim's mount namespace, is unmounted
                    // and deleted after (each unmount waits for an RCU grace period).
                    release(&store, &cfg, &dir, false);
                    let trash = hide_dir(&store, &cfg, &dir);
                    status.send(&format!("exited {code}"));
                    crate::timing("exited sent");
                    if let Some(trash) = trash {
                        let trash = ContainerDir { dir: trash };
                        if let Err(e) = rootfs::umount_rootfs(&trash) {
                            tracing::warn!("{e}");
                        } else {
                            let _ = std::fs::remove_dir_all(&trash.dir);
                        }
                    } else {
                        remove_dir(&store, &cfg, &dir);
                    }
                    crate::image_usage(&store.root, &cfg.image_id, &cfg.id, false);
                    return code;
                }
                st.oom_killed = oom_killed(&cfg);
                cleanup(&store, &cfg, &dir);
                crate::timing("cleanup done");
                st.status = Status::Exited;
                st.exit_code = Some(code);
                st.finished_at = Some(Utc::now());
                st.pid = None;
                let stop_requested = dir.stop_marker().exists();
                if !cfg.options.auto_remove
                    && cfg
                        .options
                        .restart
                        .should_restart(code, st.restart_count, stop_requested)
                {
                    st.restart_count += 1;
                    st.status = Status::Restarting;
                    let _ = store.save_state(&cfg.id, &st);
                    // docker's back-off: 100ms doubling, capped here at 2s.
                    let backoff = 100u64 << st.restart_count.min(5);
                    std::thread::sleep(std::time::Duration::from_millis(backoff.min(2000)));
                    if dir.stop_marker().exists() {
                        st.status = Status::Exited;
                        let _ = store.save_state(&cfg.id, &st);
                        status.send(&format!("exited {code}"));
                        return code;
                    }
                    continue;
                }
                let _ = store.save_state(&cfg.id, &st);
                crate::timing("cleaned up");
                status.send(&format!("exited {code}"));
                return code;
            }
        }
    }
}

fn net_ports(cfg: &ContainerConfig) -> Vec<gabang_net::Port> {
    cfg.options
        .publish
        .iter()
        .map(|p| gabang_net::Port {
            host_port: p.host_port,
            container_port: p.container_port,
            protocol: p.protocol.clone(),
        })
        .collect()
}

fn lc_err(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Libcontainer(e.to_string())
}

/// Move the shim into its own mount namespace (once), a slave of the machine's: the
/// container's overlay rootfs is mounted there, so the machine's mount table does not grow
/// with every running container (each container start reads it: libcontainer parses
/// /proc/self/mountinfo once per cgroup v1 controller, so that cost grew with the number of
/// containers), and the mount goes away with the shim's namespace whatever way the shim
/// ends. Unmounts on the machine (a pod's netns, a volume) still propagate in.
fn private_mount_namespace() -> Result<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.load(Ordering::Relaxed) {
        return Ok(());
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| sys("unshare(CLONE_NEWNS)", e))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| sys("make / rslave in the shim's mount namespace", e))?;
    DONE.store(true, Ordering::Relaxed);
    Ok(())
}

/// Beyond this many entries in `/run/netns`, [`shed_other_netns`] detaches them.
const CROWDED_RUN_NETNS: usize = 16;

/// A node runs a pod (or container) netns per `/run/netns` bind mount, and every one of them
/// is in this shim's copy of the mount table, which libcontainer reads about fifteen times per
/// start (each v1 controller's mount point, the rootfs setup) and the container's mount
/// namespace copies: with 300 mounts a start took 13 ms more CPU. So when `/run/netns` is
/// crowded, the shim holds its container's netns by fd and detaches the whole `/run/netns`
/// subtree from its own mount namespace (one unmount: the machine's table is untouched, and
/// removing the netns file later still detaches the machine's mount). Returns the path the
/// container joins the netns by.
fn shed_other_netns(path: PathBuf) -> Result<PathBuf> {
    let run = std::path::Path::new("/run/netns");
    if !path.starts_with(run) || !rootfs::is_mountpoint(run) {
        return Ok(path);
    }
    let crowded = std::fs::read_dir(run)
        .map(|d| d.take(CROWDED_RUN_NETNS + 1).count() > CROWDED_RUN_NETNS)
        .unwrap_or(false);
    if !crowded {
        return Ok(path);
    }
    // Kept open for the shim's life (libcontainer's processes inherit it; close-on-exec keeps
    // it out of the container).
    let fd = rustix::fs::open(
        &path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| sys(format!("open {}", path.display()), e))?;
    nix::mount::umount2(run, nix::mount::MntFlags::MNT_DETACH)
        .map_err(|e| sys("detach /run/netns in the shim's mount namespace", e))?;
    let by_fd = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    static HELD: std::sync::Mutex<Option<OwnedFd>> = std::sync::Mutex::new(None);
    *HELD.lock().unwrap_or_else(|p| p.into_inner()) = Some(fd);
    Ok(by_fd)
}

fn start_container(
    store: &Store,
    cfg: &ContainerConfig,
    dir: &ContainerDir,
    st: &mut ContainerState,
    interactive: bool,
) -> Result<Running> {
    let opts = &cfg.options;
    let mut netns_path = None;
    let mut ip = None;
    if let Some(ns) = &opts.netns {
        ip = opts.netns_ip;
        st.ip_address = opts.netns_ip.map(|i| i.to_string());
        netns_path = Some(ns.clone());
    } else if opts.network == NetworkMode::Bridge {
        let net = gabang_net::Network::open(&store.root.join("net"))?;
        let att = net.attach(&cfg.id, &net_ports(cfg))?;
        ip = Some(att.ip);
        st.ip_address = Some(att.ip.to_string());
        st.gateway = Some(att.gateway.to_string());
        netns_path = Some(att.netns_path);
    } else if opts.owns_loopback_netns() {
        let lock_dir = store.root.join("net");
        std::fs::create_dir_all(&lock_dir).map_err(|e| crate::error::sys("mkdir net", e))?;
        netns_path = Some(gabang_net::loopback_netns(&cfg.id, &lock_dir)?);
    }
    // The network namespace (above) is made in the machine's mount namespace, where
    // `ip netns` and the node agent see it; the rootfs is mounted in the shim's own.
    private_mount_namespace()?;
    let netns_path = match netns_path {
        Some(p) => Some(shed_other_netns(p)?),
        None => None,
    };
    rootfs::mount_overlay(dir, &cfg.lower_dirs, opts.volatile_rootfs())?;
    crate::timing("overlay mounted");
    let rootfs_dir = dir.rootfs();
    let user = crate::user::resolve_user(&rootfs_dir, &cfg.user)?;
    let mut env = cfg.env.clone();
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!("HOSTNAME={}", cfg.hostname));
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    ensure_dir_in_root(&rootfs_dir, &cfg.cwd)?;
    let cmd = cfg.args.first().ok_or(RuntimeError::NoCommand)?;
    rootfs::check_executable(&rootfs_dir, cmd, &env)
        .map_err(|(code, message)| RuntimeError::StartFailed { code, message })?;

    let host_network = opts.netns.is_none() && opts.network == NetworkMode::Host;
    let mut binds = rootfs::write_etc_files(dir, &cfg.hostname, ip, host_network)?;
    for v in &opts.volumes {
        let src = rootfs::volume_source(&store.root, v)?;
        binds.push((src, v.destination.clone(), v.read_only));
    }
    let spec = spec::build_spec(&spec::SpecInput {
        id: &cfg.id,
        args: &cfg.args,
        env: &env,
        cwd: &cfg.cwd,
        user: &user,
        hostname: &cfg.hostname,
        read_only: opts.read_only,
        memory: opts.memory,
        cpus: opts.cpus,
        pids_limit: opts.pids_limit,
        netns_path,
        host_network,
        binds,
        seccomp: crate::seccomp::confined(opts),
        terminal: opts.tty,
        cgroup_parent: opts.cgroup_parent.as_deref(),
    })?;
    spec::write_spec(&dir.bundle(), &spec)?;
    crate::timing("spec written");

    let lc_root = dir.lc_root();
    let _ = std::fs::remove_dir_all(lc_root.join(&cfg.id));
    std::fs::create_dir_all(&lc_root).map_err(|e| crate::error::sys("mkdir lc", e))?;
    // Keeps the cgroup lock's fast path warm for the container's migration (cgroup_warm).
    crate::cgroup_warm::prime();
    crate::timing("libcontainer build");
    let seccomp =
        crate::seccomp::SeccompExecutor::new(&store.root, crate::seccomp::confined(opts))?;
    let builder = ContainerBuilder::new(cfg.id.clone(), SyscallType::default())
        .with_executor(seccomp)
        .with_root_path(&lc_root)
        .map_err(lc_err)?;
    // With -t the container's init makes the pty inside the container (its controlling
    // terminal) and sends us the master, which we read (and write, with -i).
    let console = if opts.tty {
        Some(crate::tty::ConsoleSocket::bind(&dir.dir, "console.sock")?)
    } else {
        None
    };
    let (builder, pipes) = match &console {
        Some(sock) => (builder.with_console_socket(Some(sock.path())), None),
        None => {
            let (out_r, out_w) = rustix::pipe::pipe().map_err(|e| sys("pipe", e))?;
            let (err_r, err_w) = rustix::pipe::pipe().map_err(|e| sys("pipe", e))?;
            let (stdin_child, stdin_ours) = if interactive {
                let (r, w) = rustix::pipe::pipe().map_err(|e| sys("pipe", e))?;
                (r, Some(File::from(w)))
            } else {
                let null = File::open("/dev/null").map_err(|e| sys("/dev/null", e))?;
                (OwnedFd::from(null), None)
            };
            (
                builder
                    .with_stdin(stdin_child)
                    .with_stdout(out_w)
                    .with_stderr(err_w),
                Some((out_r, err_r, stdin_ours)),
            )
        }
    };
    let mut container = builder
        .as_init(dir.bundle())
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(lc_err)?;
    let (out_r, err_r, stdin_ours) = match (pipes, &console) {
        (Some(p), _) => p,
        (None, sock) => {
            let sock = sock
                .as_ref()
                .ok_or_else(|| RuntimeError::Shim("no console socket".into()))?;
            let master = sock.receive_master()?;
            // stderr shares the pty: the spare pipe just reports EOF.
            let (err_r, _) = rustix::pipe::pipe().map_err(|e| sys("pipe", e))?;
            let stdin_ours = if interactive {
                Some(File::from(master.try_clone().map_err(|e| sys("dup", e))?))
            } else {
                None
            };
            (master, err_r, stdin_ours)
        }
    };
    drop(console);
    container.start().map_err(lc_err)?;
    crate::timing("container started");
    let pid = container
        .pid()
        .ok_or_else(|| RuntimeError::Libcontainer("container has no pid".into()))?;
    let pidfd = pidfd_open(pid.as_raw())?;
    Ok(Running {
        pid,
        pidfd,
        out: out_r,
        err: err_r,
        stdin: stdin_ours,
    })
}

pub(crate) fn pidfd_open(pid: i32) -> Result<OwnedFd> {
    // SAFETY: pidfd_open returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(crate::error::sys(
            "pidfd_open",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: fd is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Create `path` (absolute, in-container) inside `root` without following symlinks out of it.
fn ensure_dir_in_root(root: &std::path::Path, path: &str) -> Result<()> {
    let mut cur = String::new();
    for comp in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        let parent = rootfs::resolve_in_root(root, &cur)
            .ok_or_else(|| RuntimeError::InvalidOption(format!("working dir {path}")))?;
        cur = format!("{cur}/{comp}");
        if rootfs::resolve_in_root(root, &cur).is_none() && comp != ".." {
            let p = parent.join(comp);
            std::fs::create_dir(&p).map_err(|e| crate::error::sys(format!("mkdir {path}"), e))?;
        }
    }
    Ok(())
}

/// Our stdin terminal in raw mode while attached with -t; restored on drop.
struct RawTerminal(nix::sys::termios::Termios);

impl RawTerminal {
    fn enter() -> Option<Self> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawTerminal(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        use nix::sys::termios::{tcsetattr, SetArg};
        let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.0);
    }
}

/// Where attached output goes.
struct Outputs {
    out: Option<File>,
    err: Option<File>,
}

impl Outputs {
    fn take(attach: bool, dir: &ContainerDir) -> Self {
        let dup = |fd: RawFd| -> Option<File> {
            // SAFETY: F_DUPFD_CLOEXEC on a standard fd we inherited.
            let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
            (n >= 0).then(|| unsafe { File::from_raw_fd(n) })
        };
        let o = Outputs {
            out: if attach { dup(1) } else { None },
            err: if attach { dup(2) } else { None },
        };
        if let Ok(f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.shim_log())
        {
            // SAFETY: dup2 onto our own stdout/stderr.
            unsafe {
                libc::dup2(f.as_raw_fd(), 2);
                libc::dup2(f.as_raw_fd(), 1);
            }
        }
        o
    }
    fn write(&mut self, stream: usize, data: &[u8]) {
        let slot = if stream == 0 {
            &mut self.out
        } else {
            &mut self.err
        };
        if let Some(f) = slot {
            if f.write_all(data).is_err() {
                *slot = None;
            }
        }
    }
}

/// Move container output to the log (and the attached terminal) until the init exits.
fn pump(mut run: Running, log: &mut LogWriter, attach: &mut Outputs, interactive: bool) -> i32 {
    let mut open = [true, true];
    let mut stdin_open = interactive && run.stdin.is_some();
    let mut exited = false;
    let mut buf = vec![0u8; 64 * 1024];
    let stdin_fd = std::io::stdin();
    loop {
        let mut fds = vec![
            PollFd::new(run.out.as_fd(), PollFlags::POLLIN),
            PollFd::new(run.err.as_fd(), PollFlags::POLLIN),
            PollFd::new(run.pidfd.as_fd(), PollFlags::POLLIN),
        ];
        if stdin_open {
            fds.push(PollFd::new(stdin_fd.as_fd(), PollFlags::POLLIN));
        }
        let timeout = if exited {
            PollTimeout::from(2000u16)
        } else {
            PollTimeout::NONE
        };
        let n = match poll(&mut fds, timeout) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        };
        let revents: Vec<PollFlags> = fds
            .iter()
            .map(|f| f.revents().unwrap_or(PollFlags::empty()))
            .collect();
        drop(fds);
        if n == 0 && exited {
            break; // an escaped writer keeps the pipe open: stop waiting.
        }
        for (s, fd) in [(0usize, &run.out), (1usize, &run.err)] {
            if !open[s] || revents[s].is_empty() {
                continue;
            }
            // One read per readiness event (poll is level-triggered), so fds stay blocking.
            match rustix::io::read(fd, &mut buf) {
                Ok(0) => open[s] = false,
                Ok(k) => {
                    let _ = log.feed(s, &buf[..k]);
                    attach.write(s, &buf[..k]);
                }
                Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => {}
                Err(_) => open[s] = false, // EIO: the pty slave side is closed
            }
        }
        if !revents[2].is_empty() {
            exited = true;
        }
        if stdin_open && revents.len() > 3 && !revents[3].is_empty() {
            match std::io::stdin().lock().read(&mut buf) {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    run.stdin = None;
                }
                Ok(k) => {
                    if let Some(w) = &mut run.stdin {
                        if w.write_all(&buf[..k]).is_err() {
                            stdin_open = false;
                            run.stdin = None;
                        }
                    }
                }
            }
        }
        if exited && !open[0] && !open[1] {
            break;
        }
    }
    let _ = log.flush_partial();
    let code = match waitpid(run.pid, None) {
        Ok(WaitStatus::Exited(_, c)) => c,
        Ok(WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
        _ => 255,
    };
    // We are a subreaper: collect anything else that ended up with us.
    while let Ok(ws) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if ws == WaitStatus::StillAlive {
            break;
        }
    }
    code
}

/// Did the kernel OOM-kill a process of the container's cgroup (v1 or v2)?
fn oom_killed(cfg: &ContainerConfig) -> bool {
    let cg = spec::cgroups_path(cfg.options.cgroup_parent.as_deref(), &cfg.id);
    let candidates = [
        format!("/sys/fs/cgroup/memory{cg}/memory.oom_control"),
        format!("/sys/fs/cgroup{cg}/memory.events"),
        format!("/sys/fs/cgroup/unified{cg}/memory.events"),
    ];
    candidates.iter().any(|p| {
        std::fs::read_to_string(p).is_ok_and(|s| {
            s.lines().any(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        })
    })
}

/// Undo everything `start_container` did; idempotent.
pub(crate) fn cleanup(store: &Store, cfg: &ContainerConfig, dir: &ContainerDir) {
    release(store, cfg, dir, true)
}

/// [`cleanup`], leaving the rootfs mounted unless `umount`.
fn release(store: &Store, cfg: &ContainerConfig, dir: &ContainerDir, umount: bool) {
    // No libcontainer `delete`: it would build a cgroup manager (a fresh procfs mount and a
    // mountinfo parse per v1 controller) and sleep 10 ms whenever a cgroup is still busy
    // right after the exit, only to do what these two lines do (we use no hooks and no
    // Intel RDT): kill what is left in the container's cgroups and remove them, then drop
    // libcontainer's state dir.
    // The cgroups go last: right after the exit they stay busy for a moment, which the
    // unmount and the network detach overlap.
    crate::timing("cleanup: kill cgroups");
    let cgroups = crate::kill_cgroups(cfg.options.cgroup_parent.as_deref(), &cfg.id);
    let lc = dir.lc_root().join(&cfg.id);
    if lc.exists() {
        if let Err(e) = std::fs::remove_dir_all(&lc) {
            tracing::warn!("remove {}: {e}", lc.display());
        }
    }
    crate::timing("cleanup: umount");
    if umount {
        if let Err(e) = rootfs::umount_rootfs(dir) {
            tracing::warn!("{e}");
        }
    }
    if cfg.options.owns_bridge_attachment() {
        if let Ok(net) = gabang_net::Network::open(&store.root.join("net")) {
            if let Err(e) = net.detach(&cfg.id, &net_ports(cfg)) {
                tracing::warn!("network detach {}: {e}", cfg.id);
            }
        }
    }
    if cfg.options.owns_loopback_netns() {
        if let Err(e) = gabang_net::remove_netns(&cfg.id) {
            tracing::warn!("netns of {}: {e}", cfg.id);
        }
    }
    crate::timing("cleanup: remove cgroups");
    crate::rmdir_cgroups(&cgroups);
}

pub(crate) fn remove_all(store: &Store, cfg: &ContainerConfig, dir: &ContainerDir) {
    if remove_dir(store, cfg, dir) {
        crate::image_usage(&store.root, &cfg.image_id, &cfg.id, false);
    }
}

/// Rename the container's dir out of sight and release its name; the renamed dir (to
/// delete) or None when the rename failed.
fn hide_dir(store: &Store, cfg: &ContainerConfig, dir: &ContainerDir) -> Option<PathBuf> {
    let trash = dir
        .dir
        .with_file_name(format!(".rm-{}-{}", cfg.id, std::process::id()));
    std::fs::rename(&dir.dir, &trash).ok()?;
    store.release_name(&cfg.name, &cfg.id);
    Some(trash)
}

/// Remove the container's dir and name (not its image usage). False if still mounted.
fn remove_dir(store: &Store, cfg: &ContainerConfig, dir: &ContainerDir) -> bool {
    if rootfs::is_mountpoint(&dir.rootfs()) {
        return false; // never recurse into a mounted rootfs
    }
    // Rename first so the container disappears atomically, then delete at leisure.
    if let Some(trash) = hide_dir(store, cfg, dir) {
        let _ = std::fs::remove_dir_all(&trash);
    } else {
        let _ = std::fs::remove_dir_all(&dir.dir);
        store.release_name(&cfg.name, &cfg.id);
    }
    true
}

fn exec_mode(a: &ShimArgs) -> i32 {
    // CVE-2019-5736: the process that enters the container is this binary until it execs.
    // Non-dumpable, its /proc/PID/exe (and the rest of /proc/PID) is closed to the
    // container's processes, whatever capabilities they or it hold; execve resets it.
    // SAFETY: prctl on ourselves.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    match exec_inner(a) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gabang exec: {e}");
            err_code(&e)
        }
    }
}

fn exec_inner(a: &ShimArgs) -> Result<i32> {
    let store = Store::open(&a.root)?;
    let cfg = store.load_config(&a.id)?;
    let st = store.live_state(&a.id)?;
    if !st.status.can_exec() {
        return Err(RuntimeError::BadState {
            id: a.id.clone(),
            status: st.status.as_str().into(),
            verb: "exec",
        });
    }
    let ex = a.exec.clone().unwrap_or_default();
    let dir = store.dir(&a.id);
    // The rootfs is mounted in the container's shim's mount namespace only: look at it
    // through the container's init process.
    let pid = st
        .pid
        .ok_or_else(|| RuntimeError::Shim(format!("container {} has no process", a.id)))?;
    let rootfs_dir = PathBuf::from(format!("/proc/{pid}/root"));
    let user = crate::user::resolve_user(&rootfs_dir, ex.user.as_deref().unwrap_or(&cfg.user))?;
    let cmd = ex.args.first().ok_or(RuntimeError::NoCommand)?;
    let mut full_env = cfg.env.clone();
    for e in &ex.env {
        crate::process::set_env(&mut full_env, e);
    }
    rootfs::check_executable(&rootfs_dir, cmd, &full_env)
        .map_err(|(code, message)| RuntimeError::StartFailed { code, message })?;
    let cwd = ex.cwd.clone().unwrap_or_else(|| cfg.cwd.clone());
    let builder = ContainerBuilder::new(a.id.clone(), SyscallType::default())
        .with_executor(crate::seccomp::SeccompExecutor::new(
            &store.root,
            crate::seccomp::confined(&cfg.options),
        )?)
        .with_root_path(dir.lc_root())
        .map_err(lc_err)?;
    if ex.tty {
        // The process gets a pty made inside the container (its controlling terminal):
        // libcontainer wants `terminal: true` in a process.json for that.
        let config_path = dir.bundle().join("config.json");
        let init_spec = oci_spec::runtime::Spec::load(&config_path)
            .map_err(|e| RuntimeError::Shim(format!("reading {}: {e}", config_path.display())))?;
        let mut process = init_spec
            .process()
            .clone()
            .ok_or_else(|| RuntimeError::Shim("the container's spec has no process".into()))?;
        let mut penv = process.env().clone().unwrap_or_default();
        for e in &ex.env {
            crate::process::set_env(&mut penv, e);
        }
        let mut puser = oci_spec::runtime::User::default();
        puser.set_uid(user.uid);
        puser.set_gid(user.gid);
        if !user.additional_gids.is_empty() {
            puser.set_additional_gids(Some(user.additional_gids.clone()));
        }
        process
            .set_terminal(Some(true))
            .set_args(Some(ex.args.clone()))
            .set_env(Some(penv))
            .set_cwd(PathBuf::from(&cwd))
            .set_user(puser)
            .set_no_new_privileges(Some(true));
        let me = std::process::id();
        let process_json = dir.dir.join(format!("exec-{me}.json"));
        crate::store::write_json_atomic(&process_json, &process)?;
        let _rm = RemoveOnDrop(process_json.clone());
        let sock = crate::tty::ConsoleSocket::bind(&dir.dir, &format!("exec-{me}.sock"))?;
        let pid = builder
            .with_console_socket(Some(sock.path()))
            .as_tenant()
            .with_process(Some(&process_json))
            .with_container_args(ex.args.clone())
            .with_detach(true)
            .build()
            .map_err(lc_err)?;
        let master = sock.receive_master();
        drop(sock);
        match master {
            Ok(m) => crate::tty::relay(m, pid),
            Err(e) => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = waitpid(pid, None);
                return Err(e);
            }
        }
        return Ok(exit_code(waitpid(pid, None)));
    }
    let env: HashMap<String, String> = ex
        .env
        .iter()
        .filter_map(|e| e.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let pid = builder
        .as_tenant()
        .with_container_args(ex.args.clone())
        .with_env(env)
        .with_cwd(Some(cwd))
        .with_user(Some(user.uid))
        .with_group(Some(user.gid))
        .with_additional_gids(user.additional_gids.clone())
        .with_no_new_privs(true)
        .with_detach(false)
        .build()
        .map_err(lc_err)?;
    Ok(exit_code(waitpid(pid, None)))
}

fn exit_code(w: nix::Result<WaitStatus>) -> i32 {
    match w {
        Ok(WaitStatus::Exited(_, c)) => c,
        Ok(WaitStatus::Signaled(_, sig, _)) => 128 + sig as i32,
        _ => 255,
    }
}

/// Removes a file when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
