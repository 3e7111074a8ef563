//! gabang-runtime: a container's life on one host. [`Runtime`] is the caller's side
//! (create/start/wait/kill/stop/rm/list/inspect/logs/exec) and never forks libcontainer
//! itself: every container gets a per-container shim process ([`shim_main`], run as
//! `gabang shim run …`) that mounts the overlay rootfs, calls youki's `libcontainer`,
//! holds stdio, writes the JSON log, reaps and records the exit status in
//! `<root>/containers/<id>/state.json`, so containers outlive the CLI.
//!
//! Start reading at [`Runtime`] (this file), then `shim.rs` (the shim), `spec.rs`
//! (OCI spec + security defaults), `process.rs` (docker's ENTRYPOINT/CMD/env rules),
//! `store.rs` (on-disk layout). Networking is in the `gabang-net` crate.

mod cgroup_warm;
mod error;
mod logs;
mod model;
mod process;
mod rootfs;
mod seccomp;
mod shim;
mod spec;
mod store;
mod tty;
mod user;

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::Utc;
use oci_spec::image::ImageConfiguration;
use serde_json::json;

pub use cgroup_warm::prime_async as prime_cgroup_migration;
pub use error::{Result, RuntimeError};
pub use logs::{LogOptions, LogWriter};
pub use model::{
    ContainerConfig, ContainerState, NetworkMode, PortMapping, RestartPolicy, RunOptions, Status,
    VolumeSpec,
};
pub use process::{plan_process, ProcessPlan};
pub use rootfs::container_resolv_conf;
pub use shim::{shim_main, ExecSpec, ShimArgs};
pub use spec::{DEFAULT_CAPS, DENIED_SYSCALLS, SECCOMP_LABEL};
pub use store::Store;
pub use user::{resolve_user, ResolvedUser};

/// How the runtime launches shims and where it keeps state.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// State root (`--root`): containers in `<root>/containers`, network in `<root>/net`,
    /// volumes in `<root>/volumes`.
    pub root: PathBuf,
    /// The executable that runs the shim (the `gabang` binary).
    pub shim_exe: PathBuf,
    /// Arguments before the shim's own (`["shim"]`).
    pub shim_prefix_args: Vec<String>,
}

/// What to create: the image's layers and config plus the run options.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// The reference the user typed (shown in `ps`).
    pub image: String,
    /// `sha256:<config digest>`.
    pub image_id: String,
    /// Unpacked layer dirs, bottom → top.
    pub lower_dirs: Vec<PathBuf>,
    pub image_config: ImageConfiguration,
    pub options: RunOptions,
}

/// How `start` connects the caller's stdio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// Return once the container runs; output only goes to the log.
    Detached,
    /// The shim writes output to the caller's stdout/stderr (and reads stdin if `stdin`).
    Inherit { stdin: bool },
}

/// A started container; for attached starts, [`Started::wait`] returns the exit code.
pub struct Started {
    pub id: String,
    reader: Option<BufReader<std::fs::File>>,
    child: std::process::Child,
}

impl Started {
    /// Wait for the final exit of an attached container (after restarts, if any).
    /// Returns as soon as the shim reports the exit (for `--rm`, after the container is
    /// removed); the shim process is reaped by a background thread.
    pub fn wait(mut self) -> Result<i32> {
        let mut code = None;
        if let Some(r) = self.reader.as_mut() {
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(c) = line.trim().strip_prefix("exited ") {
                    code = c.parse().ok();
                    break;
                }
                line.clear();
            }
        }
        let mut child = self.child;
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        code.ok_or_else(|| RuntimeError::Shim("shim ended without reporting an exit".into()))
    }
}

/// One row of `ps`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ContainerSummary {
    pub id: String,
    pub name: String,
    pub image: String,
    pub command: String,
    pub created: chrono::DateTime<Utc>,
    pub state: ContainerState,
    pub ports: Vec<PortMapping>,
    pub labels: std::collections::BTreeMap<String, String>,
}

impl ContainerSummary {
    /// docker's STATUS column.
    pub fn status_text(&self) -> String {
        let since = |t: Option<chrono::DateTime<Utc>>| {
            t.map(|t| human_duration(Utc::now() - t))
                .unwrap_or_default()
        };
        match self.state.status {
            Status::Created => "Created".into(),
            Status::Running => format!("Up {}", since(self.state.started_at)),
            Status::Restarting => format!(
                "Restarting ({}) {} ago",
                self.state.exit_code.unwrap_or(0),
                since(self.state.finished_at)
            ),
            Status::Exited => format!(
                "Exited ({}) {} ago",
                self.state.exit_code.unwrap_or(0),
                since(self.state.finished_at)
            ),
            Status::Dead => "Dead".into(),
        }
    }
}

fn human_duration(d: chrono::TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0 => "Less than a second".into(),
        1..=59 => format!("{s} seconds"),
        60..=3599 => format!("{} minutes", s / 60),
        _ => format!("{} hours", s / 3600),
    }
}

/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, like docker names.
pub fn valid_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphanumeric())
        && c.all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch))
        && s.len() <= 128
}

/// SIGKILL whatever is left in the container's cgroups (v1 hierarchies and v2); returns
/// the cgroup dirs that exist, for [`rmdir_cgroups`].
pub(crate) fn kill_cgroups(parent: Option<&str>, id: &str) -> Vec<PathBuf> {
    let rel = spec::cgroups_path(parent, id);
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    let mut dirs = vec![PathBuf::from(format!("/sys/fs/cgroup{rel}"))];
    for e in entries.flatten() {
        dirs.push(e.path().join(rel.trim_start_matches('/')));
    }
    dirs.retain(|d| d.is_dir());
    for d in &dirs {
        if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
            for p in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: kill(2) with a pid read from the container's own cgroup.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
    }
    dirs
}

/// Remove cgroup dirs whose tasks are gone. A cgroup stays busy for a moment after its
/// last task was reaped (until an RCU grace period passes): poll finely at first, then
/// back off; give up after about 2 s.
pub(crate) fn rmdir_cgroups(dirs: &[PathBuf]) {
    for d in dirs {
        for attempt in 0..150u32 {
            if std::fs::remove_dir(d).is_ok() || !d.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(if attempt < 50 { 1 } else { 20 }));
        }
    }
}

/// Resource usage read from the container's cgroup (v1 or v2).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ContainerStats {
    /// Total CPU time used, nanoseconds.
    pub cpu_usage_ns: u64,
    pub memory_usage: u64,
    /// `None` when unlimited.
    pub memory_limit: Option<u64>,
    pub pids: u64,
}

fn read_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Read the container's cgroup counters (hybrid/v1 controllers first, then v2).
pub fn cgroup_stats(parent: Option<&str>, id: &str) -> ContainerStats {
    let cg = spec::cgroups_path(parent, id);
    let mut s = ContainerStats::default();
    let v2 = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"];
    s.cpu_usage_ns = ["cpuacct", "cpu,cpuacct"]
        .iter()
        .find_map(|c| read_u64(&format!("/sys/fs/cgroup/{c}{cg}/cpuacct.usage")))
        .or_else(|| {
            v2.iter().find_map(|b| {
                let st = std::fs::read_to_string(format!("{b}{cg}/cpu.stat")).ok()?;
                st.lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|us| us * 1000)
            })
        })
        .unwrap_or(0);
    if let Some(u) = read_u64(&format!("/sys/fs/cgroup/memory{cg}/memory.usage_in_bytes")) {
        s.memory_usage = u;
        s.memory_limit = read_u64(&format!("/sys/fs/cgroup/memory{cg}/memory.limit_in_bytes"))
            .filter(|l| *l < (1u64 << 62));
    } else if let Some(b) = v2
        .iter()
        .find(|b| Path::new(&format!("{b}{cg}/memory.current")).exists())
    {
        s.memory_usage = read_u64(&format!("{b}{cg}/memory.current")).unwrap_or(0);
        s.memory_limit = read_u64(&format!("{b}{cg}/memory.max"));
    }
    s.pids = read_u64(&format!("/sys/fs/cgroup/pids{cg}/pids.current"))
        .or_else(|| {
            v2.iter()
                .find_map(|b| read_u64(&format!("{b}{cg}/pids.current")))
        })
        .unwrap_or(0);
    s
}

/// Record (or drop) that container `owner` uses image `image_id` in the content store, so an
/// image in use is not removed. Best effort: a failure is logged, never fatal.
pub(crate) fn image_usage(root: &Path, image_id: &str, owner: &str, add: bool) {
    if image_id.is_empty() {
        return;
    }
    // The process's shared store: `rm` of many containers, or a node agent, opens it once.
    let store = gabang_content::Store::shared(root);
    let r = store.and_then(|s| {
        if add {
            s.add_usage(image_id, owner)
        } else {
            s.remove_usage(image_id, owner)
        }
    });
    if let Err(e) = r {
        tracing::warn!("image usage {image_id} by {owner}: {e}");
    }
}

/// Phase timing for profiling (`GABANG_LOG=gabang::timing=debug`): wall clock per phase.
pub fn timing(label: &str) {
    tracing::debug!(target: "gabang::timing", "{} {label}", Utc::now().format("%H:%M:%S%.6f"));
}

/// The caller's side of the runtime.
#[derive(Debug, Clone)]
pub struct Runtime {
    cfg: RuntimeConfig,
    store: Store,
}

fn random_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const ADJ: &[&str] = &[
    "brave", "calm", "eager", "fancy", "happy", "jolly", "kind", "lucid", "merry", "nifty",
    "proud", "quiet", "sharp", "tidy", "vivid", "witty",
];
const NOUN: &[&str] = &[
    "bag", "box", "crate", "chest", "case", "pouch", "sack", "trunk", "basket", "bundle", "parcel",
    "pack", "satchel", "tote", "kit", "tin",
];

impl Runtime {
    pub fn new(cfg: RuntimeConfig) -> Result<Self> {
        let store = Store::open(&cfg.root)?;
        Ok(Self { cfg, store })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Compile the default seccomp profile into this root's cache now. A node agent calls
    /// this when it starts: otherwise every shim of the first burst of pods misses the cache
    /// at once and compiles the same program (~10 ms of CPU each).
    pub fn prepare_seccomp(&self) -> Result<()> {
        seccomp::default_program(&self.cfg.root).map(drop)
    }

    /// Resolve a name or (prefix of an) id.
    pub fn resolve(&self, reference: &str) -> Result<String> {
        self.store.resolve(reference)
    }

    /// Record a new container (not started). Returns its id.
    pub fn create(&self, req: CreateRequest) -> Result<String> {
        let plan = plan_process(&req.image_config, &req.options)?;
        let id = random_id();
        // The dir exists before the name is reserved (see `Store::reserve_name`).
        let dir = self.store.dir(&id);
        std::fs::create_dir_all(dir.bundle()).map_err(|e| error::sys("mkdir", e))?;
        let r = self.create_in(req, plan, &id);
        if r.is_err() {
            let _ = std::fs::remove_dir_all(&dir.dir);
        }
        r
    }

    fn create_in(&self, req: CreateRequest, plan: ProcessPlan, id: &str) -> Result<String> {
        let id = id.to_owned();
        let name = match &req.options.name {
            Some(n) => {
                let n = n.trim_start_matches('/').to_owned();
                if !valid_name(&n) {
                    return Err(RuntimeError::InvalidName(n));
                }
                self.store.reserve_name(&n, &id)?;
                n
            }
            None => loop {
                use rand::Rng;
                let mut r = rand::thread_rng();
                let n = format!(
                    "{}_{}{}",
                    ADJ[r.gen_range(0..ADJ.len())],
                    NOUN[r.gen_range(0..NOUN.len())],
                    r.gen_range(0..1000)
                );
                match self.store.reserve_name(&n, &id) {
                    Ok(()) => break n,
                    Err(RuntimeError::NameInUse { .. }) => continue,
                    Err(e) => return Err(e),
                }
            },
        };
        let hostname = req
            .options
            .hostname
            .clone()
            .unwrap_or_else(|| id[..12].to_owned());
        let cfg = ContainerConfig {
            id: id.clone(),
            name: name.clone(),
            created: Utc::now(),
            image: req.image,
            image_id: req.image_id,
            lower_dirs: req.lower_dirs,
            args: plan.args,
            env: plan.env,
            cwd: plan.cwd,
            user: plan.user,
            hostname,
            entrypoint: plan.entrypoint,
            cmd: plan.cmd,
            options: req.options,
        };
        let dir = self.store.dir(&id);
        let r = (|| {
            self.store.save_state(&id, &ContainerState::default())?;
            store::write_json_atomic(&dir.config(), &cfg)
        })();
        if let Err(e) = r {
            let _ = std::fs::remove_dir_all(&dir.dir);
            self.store.release_name(&name, &id);
            return Err(e);
        }
        image_usage(&self.cfg.root, &cfg.image_id, &id, true);
        Ok(id)
    }

    /// Start a created or exited container through a new shim.
    pub fn start(&self, id: &str, attach: Attach) -> Result<Started> {
        let st = self.store.live_state(id)?;
        if !st.status.can_start() {
            return Err(RuntimeError::BadState {
                id: id.to_owned(),
                status: st.status.as_str().into(),
                verb: "start",
            });
        }
        // The container's cgroup migration will need a grace period: start it now, while
        // the shim is exec'd and mounts the rootfs.
        cgroup_warm::prime_async();
        let (r, w): (OwnedFd, OwnedFd) = rustix::pipe::pipe().map_err(|e| error::sys("pipe", e))?;
        let mut keep_w = None;
        let mut cmd = Command::new(&self.cfg.shim_exe);
        cmd.args(&self.cfg.shim_prefix_args)
            .arg("run")
            .arg("--root")
            .arg(&self.cfg.root)
            .arg("--id")
            .arg(id)
            .current_dir("/");
        match attach {
            Attach::Detached => {
                // No code between fork and exec, so std spawns with posix_spawn (vfork): the
                // caller's page tables are not copied. That matters in the node agent, a big
                // multi-threaded process starting many shims. The status pipe is the shim's
                // stdout (it moves it away and calls setsid itself).
                cmd.arg("--status-fd").arg("1");
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::from(std::fs::File::from(w)));
                // Keep stderr for shim diagnostics in a file, never the caller's terminal.
                let f = std::fs::File::create(self.store.dir(id).shim_log())
                    .map_err(|e| error::sys("shim log", e))?;
                cmd.stderr(f);
            }
            Attach::Inherit { stdin } => {
                cmd.arg("--status-fd").arg("3").arg("--attach");
                if stdin {
                    cmd.arg("--interactive");
                } else {
                    cmd.stdin(Stdio::null());
                }
                let wfd = w.as_raw_fd();
                // SAFETY: only async-signal-safe calls (setsid, dup2) between fork and exec.
                unsafe {
                    cmd.pre_exec(move || {
                        libc::setsid();
                        if libc::dup2(wfd, 3) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                keep_w = Some(w); // open until the spawn
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| error::sys(format!("spawn shim {}", self.cfg.shim_exe.display()), e))?;
        // Our copies of the write end (in `cmd` or `keep_w`) go, so a shim that dies
        // without a word reads as EOF.
        drop(cmd);
        drop(keep_w);
        let mut reader = BufReader::new(std::fs::File::from(r));
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let line = line.trim();
        if line == "started" {
            return Ok(Started {
                id: id.to_owned(),
                reader: Some(reader),
                child,
            });
        }
        let mut child = child;
        let _ = child.wait();
        if let Some(rest) = line.strip_prefix("error ") {
            let (code, msg) = rest.split_once(' ').unwrap_or((rest, ""));
            return Err(RuntimeError::StartFailed {
                code: code.parse().unwrap_or(125),
                message: msg.to_owned(),
            });
        }
        Err(RuntimeError::StartFailed {
            code: 125,
            message: format!(
                "shim exited without reporting (see {})",
                self.store.dir(id).shim_log().display()
            ),
        })
    }

    /// `run`: create + start; returns the id and, when attached, the exit code.
    pub fn run(&self, req: CreateRequest, attach: Attach) -> Result<(String, Option<i32>)> {
        let auto_remove = req.options.auto_remove;
        let id = self.create(req)?;
        match self.start(&id, attach) {
            Ok(s) => match attach {
                Attach::Detached => {
                    // Reap the shim's process entry once it ends, in long-lived callers.
                    std::thread::spawn(move || {
                        let mut s = s;
                        let _ = s.child.wait();
                    });
                    Ok((id, None))
                }
                Attach::Inherit { .. } => {
                    let code = s.wait()?;
                    Ok((id, Some(code)))
                }
            },
            Err(e) => {
                if auto_remove {
                    let _ = self.remove(&id, true);
                }
                Err(e)
            }
        }
    }

    /// Block until the container is no longer running; returns its exit code.
    pub fn wait(&self, id: &str) -> Result<i32> {
        loop {
            let st = self.store.live_state(id)?;
            match st.status {
                Status::Exited => return Ok(st.exit_code.unwrap_or(0)),
                Status::Dead => return Ok(st.exit_code.unwrap_or(255)),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn signal(&self, id: &str, sig: i32, verb: &'static str) -> Result<()> {
        let st = self.store.live_state(id)?;
        if !st.status.can_kill() {
            return Err(RuntimeError::BadState {
                id: id.to_owned(),
                status: st.status.as_str().into(),
                verb,
            });
        }
        if let (Some(pid), true) = (st.pid, store::alive(st.pid, st.pid_start)) {
            // SAFETY: kill(2) on the recorded, start-time-verified container init.
            if unsafe { libc::kill(pid, sig) } != 0 {
                return Err(error::sys("kill", std::io::Error::last_os_error()));
            }
        }
        Ok(())
    }

    /// Send `sig` to the container's init. Like docker, a killed container is not restarted.
    pub fn kill(&self, id: &str, sig: i32) -> Result<()> {
        let _ = std::fs::write(self.store.dir(id).stop_marker(), b"");
        self.signal(id, sig, "kill")
    }

    /// SIGTERM, then SIGKILL after `timeout`; returns when the container has exited.
    pub fn stop(&self, id: &str, timeout: Duration) -> Result<()> {
        let st = self.store.live_state(id)?;
        if !st.status.is_active() {
            return Ok(());
        }
        let _ = std::fs::write(self.store.dir(id).stop_marker(), b"");
        let _ = self.signal(id, libc::SIGTERM, "stop");
        if self.wait_inactive(id, timeout)? {
            return Ok(());
        }
        let _ = self.signal(id, libc::SIGKILL, "stop");
        if self.wait_inactive(id, Duration::from_secs(30))? {
            return Ok(());
        }
        Err(RuntimeError::Shim(format!("container {id} did not stop")))
    }

    fn wait_inactive(&self, id: &str, timeout: Duration) -> Result<bool> {
        // A grace period from a user may be huge: never overflow the clock.
        let now = Instant::now();
        let deadline = now
            .checked_add(timeout)
            .unwrap_or(now + Duration::from_secs(100 * 365 * 24 * 3600));
        loop {
            let shim = match self.store.live_state(id) {
                Ok(st) if st.status.is_active() => st.shim_pid,
                Ok(_) | Err(RuntimeError::NotFound(_)) => return Ok(true),
                Err(e) => return Err(e),
            };
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            // Sleep until the shim exits (a pidfd turns readable then), at most 100 ms at
            // a time: its state is final once it is gone. The state is read again after
            // the pidfd is open, so a reused pid is never waited on.
            let slice = (deadline - now).min(Duration::from_millis(100));
            match shim.map(shim::pidfd_open) {
                Some(Ok(fd))
                    if self
                        .store
                        .live_state(id)
                        .is_ok_and(|s| s.status.is_active()) =>
                {
                    let mut pfd = libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd for the duration of the call.
                    unsafe { libc::poll(&mut pfd, 1, slice.as_millis() as libc::c_int) };
                }
                Some(Ok(_)) => {}
                _ => std::thread::sleep(slice.min(Duration::from_millis(5))),
            }
        }
    }

    /// The first half of a forced remove: mark the container as stopping by request (no
    /// restart) and SIGKILL it, without waiting. `rm -f A B C …` does this for all of them
    /// first, so they die together instead of one after another.
    pub fn kill_for_remove(&self, id: &str) -> Result<()> {
        if self.store.live_state(id)?.status.is_active() {
            let _ = std::fs::write(self.store.dir(id).stop_marker(), b"");
            let _ = self.signal(id, libc::SIGKILL, "remove");
        }
        Ok(())
    }

    /// Remove a container (with `force`, kill it first).
    pub fn remove(&self, id: &str, force: bool) -> Result<()> {
        let cfg = self.store.load_config(id)?;
        let st = self.store.live_state(id)?;
        if st.status.is_active() {
            if !force {
                return Err(RuntimeError::BadState {
                    id: id.to_owned(),
                    status: st.status.as_str().into(),
                    verb: "remove (stop it first or use --force)",
                });
            }
            self.kill_for_remove(id)?;
            if !self.wait_inactive(id, Duration::from_secs(30))? {
                return Err(RuntimeError::Shim(format!("container {id} did not die")));
            }
        }
        if !self.store.dir(id).dir.exists() {
            return Ok(()); // removed by its shim (--rm)
        }
        let dir = self.store.dir(id);
        // A dead shim may have left mounts, cgroups, network: clean them (idempotent).
        shim::cleanup(&self.store, &cfg, &dir);
        if rootfs::is_mountpoint(&dir.rootfs()) {
            return Err(RuntimeError::Shim(format!(
                "{} is still mounted",
                dir.rootfs().display()
            )));
        }
        shim::remove_all(&self.store, &cfg, &dir);
        Ok(())
    }

    /// All containers (running only unless `all`), newest first.
    pub fn list(&self, all: bool) -> Result<Vec<ContainerSummary>> {
        let mut out = Vec::new();
        for id in self.store.ids()? {
            let (Ok(cfg), Ok(state)) = (self.store.load_config(&id), self.store.live_state(&id))
            else {
                continue;
            };
            if !all && !state.status.is_active() {
                continue;
            }
            out.push(ContainerSummary {
                command: cfg.args.join(" "),
                id: cfg.id,
                name: cfg.name,
                image: cfg.image,
                created: cfg.created,
                ports: cfg.options.publish.clone(),
                labels: cfg.options.labels.clone(),
                state,
            });
        }
        out.sort_by_key(|b| std::cmp::Reverse(b.created));
        Ok(out)
    }

    /// docker-inspect-shaped JSON.
    pub fn inspect(&self, id: &str) -> Result<serde_json::Value> {
        let c = self.store.load_config(id)?;
        let s = self.store.live_state(id)?;
        let o = &c.options;
        let ts = |t: Option<chrono::DateTime<Utc>>| {
            t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
        };
        let mut ports = serde_json::Map::new();
        let mut bindings = serde_json::Map::new();
        for p in &o.publish {
            let key = format!("{}/{}", p.container_port, p.protocol);
            let b = json!([{"HostIp": p.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into()), "HostPort": p.host_port.to_string()}]);
            ports.insert(key.clone(), b.clone());
            bindings.insert(key, b);
        }
        let dir = self.store.dir(id);
        let mounts: Vec<serde_json::Value> = o
            .volumes
            .iter()
            .map(|v| {
                let src = if v.is_bind() {
                    v.source.clone()
                } else {
                    self.cfg
                        .root
                        .join("volumes")
                        .join(&v.source)
                        .join("_data")
                        .display()
                        .to_string()
                };
                json!({"Type": if v.is_bind() {"bind"} else {"volume"},
                       "Name": if v.is_bind() {None} else {Some(&v.source)},
                       "Source": src, "Destination": v.destination, "RW": !v.read_only})
            })
            .collect();
        Ok(json!({
            "Id": c.id,
            "Created": ts(Some(c.created)),
            "Path": c.args.first(),
            "Args": c.args.get(1..).unwrap_or(&[]),
            "State": {
                "Status": s.status.as_str(),
                "Running": s.status == Status::Running,
                "Paused": false,
                "Restarting": s.status == Status::Restarting,
                "OOMKilled": s.oom_killed,
                "Dead": s.status == Status::Dead,
                "Pid": if s.status.is_active() { s.pid.unwrap_or(0) } else { 0 },
                "ExitCode": s.exit_code.unwrap_or(0),
                "Error": s.error.clone().unwrap_or_default(),
                "StartedAt": ts(s.started_at),
                "FinishedAt": ts(s.finished_at),
            },
            "Image": c.image_id,
            "ResolvConfPath": dir.dir.join("resolv.conf"),
            "HostnamePath": dir.dir.join("hostname"),
            "HostsPath": dir.dir.join("hosts"),
            "LogPath": dir.log(),
            "Name": format!("/{}", c.name),
            "RestartCount": s.restart_count,
            "Driver": "overlay",
            "Mounts": mounts,
            "HostConfig": {
                "Binds": o.volumes.iter().map(|v| format!("{}:{}{}", v.source, v.destination, if v.read_only {":ro"} else {""})).collect::<Vec<_>>(),
                "NetworkMode": o.network.as_str(),
                "PortBindings": bindings,
                "RestartPolicy": {"Name": o.restart.name(), "MaximumRetryCount": match o.restart { RestartPolicy::OnFailure { max_retries } => max_retries, _ => 0 }},
                "AutoRemove": o.auto_remove,
                "ReadonlyRootfs": o.read_only,
                "Memory": o.memory.unwrap_or(0),
                "NanoCpus": o.cpus.map(|c| (c * 1e9) as i64).unwrap_or(0),
                "PidsLimit": o.pids_limit,
                "CapAdd": null, "CapDrop": null,
                "SecurityOpt": null,
            },
            "GraphDriver": {"Name": "overlay", "Data": {
                "LowerDir": c.lower_dirs.iter().rev().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":"),
                "UpperDir": dir.upper(), "WorkDir": dir.work(), "MergedDir": dir.rootfs()}},
            "Config": {
                "Hostname": c.hostname,
                "User": c.user,
                "Env": c.env,
                "Cmd": c.cmd,
                "Entrypoint": if c.entrypoint.is_empty() { serde_json::Value::Null } else { json!(c.entrypoint) },
                "Image": c.image,
                "WorkingDir": c.cwd,
                "Tty": o.tty,
                "OpenStdin": o.interactive,
                "ExposedPorts": ports.keys().map(|k| (k.clone(), json!({}))).collect::<serde_json::Map<_, _>>(),
            },
            "NetworkSettings": {
                "IPAddress": s.ip_address.clone().unwrap_or_default(),
                "Gateway": s.gateway.clone().unwrap_or_default(),
                "IPPrefixLen": if s.ip_address.is_some() { 16 } else { 0 },
                "Ports": ports,
            },
        }))
    }

    /// Print the container's log.
    pub fn logs(
        &self,
        id: &str,
        opts: &LogOptions,
        out: &mut dyn std::io::Write,
        err: &mut dyn std::io::Write,
    ) -> Result<()> {
        let path = self.store.dir(id).log();
        if !path.exists() {
            return Ok(());
        }
        let store = self.store.clone();
        let id2 = id.to_owned();
        let mut running = move || {
            store
                .live_state(&id2)
                .map(|s| s.status.is_active() || s.status == Status::Created)
                .unwrap_or(false)
        };
        logs::read_logs(&path, opts, out, err, &mut running)
    }

    /// Run a process in a running container via an exec shim that inherits the caller's
    /// stdio. Returns the process's exit code.
    pub fn exec(&self, id: &str, spec: &ExecSpec) -> Result<i32> {
        let status = self
            .exec_command(id, spec)?
            .status()
            .map_err(|e| error::sys("spawn exec shim", e))?;
        Ok(status.code().unwrap_or(255))
    }

    /// The exec shim as a [`Command`] not yet spawned: the caller chooses its stdio (pipes
    /// for the node agent's streaming exec, a pty slave for `tty`). The shim passes its stdio
    /// to the process and exits with the process's code.
    pub fn exec_command(&self, id: &str, spec: &ExecSpec) -> Result<Command> {
        let st = self.store.live_state(id)?;
        if !st.status.can_exec() {
            return Err(RuntimeError::BadState {
                id: id.to_owned(),
                status: st.status.as_str().into(),
                verb: "exec",
            });
        }
        let json = serde_json::to_string(spec).map_err(|e| RuntimeError::Shim(e.to_string()))?;
        let mut cmd = Command::new(&self.cfg.shim_exe);
        if std::env::var_os("GABANG_LOG").is_none() {
            // libcgroups warns about every v1 controller it does not know: not for users.
            cmd.env("GABANG_LOG", "warn,libcgroups=error");
        }
        cmd.args(&self.cfg.shim_prefix_args)
            .args(["exec", "--root"])
            .arg(&self.cfg.root)
            .args(["--id", id, "--exec", &json]);
        Ok(cmd)
    }

    /// Resource usage of a running container.
    pub fn stats(&self, id: &str) -> Result<ContainerStats> {
        let cfg = self.store.load_config(id)?;
        Ok(cgroup_stats(cfg.options.cgroup_parent.as_deref(), id))
    }

    /// Host-side paths of a container (for tests and tooling).
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.store.dir(id).dir
    }

    pub fn root(&self) -> &Path {
        &self.cfg.root
    }
}
