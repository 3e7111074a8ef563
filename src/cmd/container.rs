//! Container commands (docker's names and flags): run, ps, logs, exec, stop, kill, rm, wait,
//! inspect, stats, port, start, and the hidden `shim` that gabang-runtime launches per container.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use gabang_runtime::{
    Attach, CreateRequest, ExecSpec, LogOptions, NetworkMode, PortMapping, RestartPolicy,
    RunOptions, Runtime, RuntimeConfig, RuntimeError, Status, VolumeSpec,
};

use crate::ui::print_table;

#[derive(Subcommand)]
pub enum ContainerCommand {
    /// Create and run a new container from an image
    Run(Box<RunArgs>),
    /// Start one or more stopped containers (detached)
    Start(NamesArgs),
    /// List containers
    Ps(PsArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Stop one or more running containers (SIGTERM, then SIGKILL after the timeout)
    Stop(StopArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Remove one or more containers
    Rm(RmArgs),
    /// Block until containers stop, then print their exit codes
    Wait(NamesArgs),
    /// Display detailed information on containers (JSON like docker's)
    Inspect(NamesArgs),
    /// Display a live stream of container resource usage
    Stats(StatsArgs),
    /// List port mappings of a container
    Port(PortArgs),
    /// Per-container shim (internal)
    #[command(hide = true)]
    Shim(ShimCmd),
}

#[derive(Args)]
pub struct RunArgs {
    /// Run in the background and print the container ID
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables (K=V, or K to copy it from this environment)
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read environment variables from a file
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    /// Publish a container's port to the host: [IP:]HOST:CONTAINER[/tcp|udp]
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Bind mount (/host:/ctr[:ro]) or named volume (name:/ctr[:ro])
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Memory limit (e.g. 64m, 1g)
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Tune container pids limit
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    /// bridge, none or host
    #[arg(long, default_value = "bridge")]
    pub network: String,
    /// Container host name
    #[arg(long)]
    pub hostname: Option<String>,
    /// no, on-failure[:N], always, unless-stopped
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Keep STDIN open
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY (the container's controlling terminal)
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Security options (`seccomp=unconfined` turns the default seccomp profile off)
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    pub image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

#[derive(Args)]
pub struct NamesArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
}

#[derive(Args)]
pub struct LogsArgs {
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Number of lines to show from the end ("all" for everything)
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    #[arg(short = 't', long)]
    pub timestamps: bool,
    pub container: String,
}

#[derive(Args)]
pub struct ExecArgs {
    #[arg(short = 'i', long)]
    pub interactive: bool,
    #[arg(short = 't', long)]
    pub tty: bool,
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    pub container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub cmd: Vec<String>,
}

#[derive(Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "time", default_value_t = 10)]
    pub time: u64,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct KillArgs {
    /// Signal to send (name or number)
    #[arg(short = 's', long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct StatsArgs {
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    pub containers: Vec<String>,
}

#[derive(Args)]
pub struct PortArgs {
    pub container: String,
}

#[derive(Args)]
pub struct ShimCmd {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

fn runtime(root: &Path) -> Result<Runtime> {
    let exe = std::env::current_exe().context("locate the gabang binary for the shim")?;
    Ok(Runtime::new(RuntimeConfig {
        root: root.to_owned(),
        shim_exe: exe,
        shim_prefix_args: vec!["shim".into()],
    })?)
}

/// Parse docker memory sizes: 1024, 512k, 64m, 1g (b/k/m/g, case-insensitive).
pub fn parse_memory(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix('b')
        .filter(|x| !x.is_empty() && x.chars().last().is_some_and(|c| c.is_ascii_alphabetic()))
        .unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('b') => (&t[..t.len() - 1], 1),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .with_context(|| format!("invalid memory size {s:?}"))?;
    if n <= 0.0 {
        bail!("invalid memory size {s:?}");
    }
    Ok((n * mult as f64) as i64)
}

fn env_from_flag(e: &str) -> Option<String> {
    if e.contains('=') {
        Some(e.to_owned())
    } else {
        std::env::var(e).ok().map(|v| format!("{e}={v}"))
    }
}

fn read_env_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read env file {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(env_from_flag)
        .collect())
}

fn signal_number(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return Ok(n);
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    Ok(match name {
        "KILL" => libc::SIGKILL,
        "TERM" => libc::SIGTERM,
        "INT" => libc::SIGINT,
        "HUP" => libc::SIGHUP,
        "QUIT" => libc::SIGQUIT,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "STOP" => libc::SIGSTOP,
        "CONT" => libc::SIGCONT,
        "ALRM" => libc::SIGALRM,
        "WINCH" => libc::SIGWINCH,
        _ => bail!("invalid signal {s:?}"),
    })
}

fn run_options(a: &RunArgs) -> Result<RunOptions> {
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(read_env_file(f)?);
    }
    env.extend(a.env.iter().filter_map(|e| env_from_flag(e)));
    let mut labels = std::collections::BTreeMap::new();
    for o in &a.security_opt {
        match o.replacen(':', "=", 1).as_str() {
            "seccomp=unconfined" => {
                labels.insert(
                    gabang_runtime::SECCOMP_LABEL.to_owned(),
                    "unconfined".to_owned(),
                );
            }
            other => bail!("--security-opt {other:?}: only seccomp=unconfined is supported"),
        }
    }
    Ok(RunOptions {
        labels,
        name: a.name.clone(),
        cmd: a.cmd.clone(),
        entrypoint: a.entrypoint.clone(),
        env,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        memory: a.memory.as_deref().map(parse_memory).transpose()?,
        cpus: a.cpus,
        pids_limit: a.pids_limit,
        network: a.network.parse::<NetworkMode>()?,
        publish: a
            .publish
            .iter()
            .map(|p| p.parse::<PortMapping>())
            .collect::<std::result::Result<_, _>>()?,
        volumes: a
            .volume
            .iter()
            .map(|v| v.parse::<VolumeSpec>())
            .collect::<std::result::Result<_, _>>()?,
        restart: a.restart.parse::<RestartPolicy>()?,
        read_only: a.read_only,
        auto_remove: a.rm,
        interactive: a.interactive,
        tty: a.tty,
        ..Default::default()
    })
}

fn cmd_run(a: RunArgs, root: &Path) -> Result<i32> {
    gabang_runtime::timing("cli start");
    // docker: errors of `run` itself exit 125; a command that cannot run exits 126/127.
    let prepared = (|| -> Result<(Runtime, CreateRequest)> {
        let opts = run_options(&a)?;
        if opts.auto_remove && opts.restart != RestartPolicy::No {
            bail!("conflicting options: --restart and --rm");
        }
        // Shared with the runtime, which records the container's use of the image in it.
        let store = crate::cmd::image::open_store(root)?;
        gabang_runtime::timing("content store open");
        let image = store
            .resolve_image(&a.image)
            .with_context(|| format!("unable to find image {:?}", a.image))?;
        gabang_runtime::timing("image resolved by reference");
        let lower_dirs = store.snapshot_dirs(&image)?;
        let rt = runtime(root)?;
        Ok((
            rt,
            CreateRequest {
                image: a.image.clone(),
                image_id: image.id.clone(),
                lower_dirs,
                image_config: image.config.clone(),
                options: opts,
            },
        ))
    })();
    gabang_runtime::timing("image resolved");
    let (rt, req) = match prepared {
        Ok(x) => x,
        Err(e) => {
            eprintln!("gabang: {e:#}");
            return Ok(125);
        }
    };
    let attach = if a.detach {
        Attach::Detached
    } else {
        Attach::Inherit {
            stdin: a.interactive,
        }
    };
    let result = if a.detach {
        rt.run(req, attach)
    } else {
        run_attached(&rt, req, attach, a.tty)
    };
    match result {
        Ok((id, None)) => {
            println!("{id}");
            Ok(0)
        }
        Ok((_, Some(code))) => Ok(code),
        Err(RuntimeError::StartFailed { code, message }) => {
            eprintln!("gabang: {message}");
            Ok(code)
        }
        Err(e) => {
            eprintln!("gabang: {e}");
            Ok(125)
        }
    }
}

/// Attached run: like `Runtime::run`, but while waiting, SIGINT/SIGTERM/SIGHUP/SIGQUIT
/// received by the CLI are forwarded to the container (docker's --sig-proxy). With `-t` our
/// terminal is raw while attached with `-i`, so Ctrl-C is a byte for the container's terminal
/// rather than a signal; SIGWINCH goes to the shim, which resizes the container's terminal.
fn run_attached(
    rt: &Runtime,
    req: CreateRequest,
    attach: Attach,
    tty: bool,
) -> std::result::Result<(String, Option<i32>), RuntimeError> {
    let auto_remove = req.options.auto_remove;
    // Handlers go in before the container can print anything: a signal that arrives
    // before the id is known is queued and forwarded once it is.
    let target = std::sync::Arc::new(std::sync::OnceLock::new());
    let mut sigs = vec![libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];
    if tty && (std::io::stdin().is_terminal() || std::io::stdout().is_terminal()) {
        sigs.push(libc::SIGWINCH);
    }
    proxy_signals(rt.clone(), target.clone(), &sigs);
    let id = rt.create(req)?;
    gabang_runtime::timing("created");
    let _ = target.set(id.clone());
    let started = match rt.start(&id, attach) {
        Ok(s) => s,
        Err(e) => {
            if auto_remove {
                let _ = rt.remove(&id, true);
            }
            return Err(e);
        }
    };
    gabang_runtime::timing("started");
    let code = started.wait()?;
    gabang_runtime::timing("done");
    Ok((id, Some(code)))
}

static SIGNAL_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(std::sync::atomic::Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: write(2) is async-signal-safe; one byte from a valid stack location.
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
}

/// Forward `sigs` received by the CLI: SIGWINCH to the container's shim, others to the
/// container's init.
fn proxy_signals(
    rt: Runtime,
    target: std::sync::Arc<std::sync::OnceLock<String>>,
    sigs: &[libc::c_int],
) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds; handlers are reset to default across exec, so shims
    // spawned later are unaffected.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return;
        }
        SIGNAL_PIPE.store(fds[1], std::sync::atomic::Ordering::Relaxed);
        for &sig in sigs {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
    let read_fd = fds[0];
    std::thread::spawn(move || loop {
        let mut b = 0u8;
        // SAFETY: blocking one-byte read from our own pipe.
        let n = unsafe { libc::read(read_fd, (&mut b as *mut u8).cast(), 1) };
        if n == 1 {
            let id = loop {
                if let Some(id) = target.get() {
                    break id;
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            if i32::from(b) == libc::SIGWINCH {
                // Before the shim runs, it reads the size itself when it starts.
                if let Some(pid) = rt.store().live_state(id).ok().and_then(|s| s.shim_pid) {
                    // SAFETY: kill(2) on the shim recorded for this container.
                    unsafe { libc::kill(pid, libc::SIGWINCH) };
                }
                continue;
            }
            // A signal before the container runs waits until it can be delivered.
            for _ in 0..2000 {
                if rt.kill(id, i32::from(b)).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        } else if n == 0 {
            return;
        }
    });
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn ports_text(ports: &[PortMapping]) -> String {
    ports
        .iter()
        .map(|p| {
            format!(
                "{}:{}->{}/{}",
                p.host_ip.as_deref().unwrap_or("0.0.0.0"),
                p.host_port,
                p.container_port,
                p.protocol
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Apply `f` to every named container; report errors per container like docker.
fn each(rt: &Runtime, names: &[String], mut f: impl FnMut(&str, &str) -> Result<()>) -> i32 {
    let mut code = 0;
    for n in names {
        let r = rt
            .resolve(n)
            .map_err(anyhow::Error::from)
            .and_then(|id| f(n, &id));
        if let Err(e) = r {
            eprintln!("gabang: {e:#}");
            code = 1;
        }
    }
    code
}

/// [`each`] for many containers at once, on a few threads (removing a container is mostly
/// waiting: its shim's exit, the filesystem's deletes). Prints in the order given.
fn each_parallel(
    rt: &Runtime,
    names: &[String],
    f: impl Fn(&str, &str) -> Result<()> + Sync,
) -> i32 {
    use std::sync::atomic::{AtomicUsize, Ordering};
    if names.len() < 2 {
        return each(rt, names, f);
    }
    let next = AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<()>>>> =
        names.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..names.len().min(4) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(n) = names.get(i) else { break };
                let r = rt
                    .resolve(n)
                    .map_err(anyhow::Error::from)
                    .and_then(|id| f(n, &id));
                *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
            });
        }
    });
    let mut code = 0;
    for (n, r) in names.iter().zip(results) {
        match r.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(Ok(())) => println!("{n}"),
            Some(Err(e)) => {
                eprintln!("gabang: {e:#}");
                code = 1;
            }
            None => {}
        }
    }
    code
}

fn cmd_stats(a: StatsArgs, rt: &Runtime) -> Result<i32> {
    let ids: Vec<String> = if a.containers.is_empty() {
        rt.list(false)?.into_iter().map(|c| c.id).collect()
    } else {
        a.containers
            .iter()
            .map(|n| rt.resolve(n))
            .collect::<std::result::Result<_, _>>()?
    };
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    loop {
        let before: Vec<_> = ids
            .iter()
            .map(|id| rt.stats(id).unwrap_or_default())
            .collect();
        let t0 = std::time::Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        let dt = t0.elapsed().as_nanos() as f64;
        let mut rows = Vec::new();
        for (id, b) in ids.iter().zip(before) {
            let s = rt.stats(id).unwrap_or_default();
            let name = rt
                .store()
                .load_config(id)
                .map(|c| c.name)
                .unwrap_or_default();
            let cpu = (s.cpu_usage_ns.saturating_sub(b.cpu_usage_ns)) as f64 / dt * 100.0;
            let limit = s.memory_limit.unwrap_or_else(host_memory);
            rows.push(vec![
                short(id).to_owned(),
                name,
                format!("{:.2}%", cpu.min(100.0 * ncpu)),
                format!("{} / {}", mib(s.memory_usage), mib(limit)),
                format!(
                    "{:.2}%",
                    s.memory_usage as f64 * 100.0 / limit.max(1) as f64
                ),
                s.pids.to_string(),
            ]);
        }
        if !a.no_stream && std::io::stdout().is_terminal() {
            print!("\x1b[2J\x1b[H");
        }
        print_table(
            &[
                "CONTAINER ID",
                "NAME",
                "CPU %",
                "MEM USAGE / LIMIT",
                "MEM %",
                "PIDS",
            ],
            rows,
        );
        let _ = std::io::stdout().flush();
        if a.no_stream {
            return Ok(0);
        }
    }
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn mib(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.2}GiB", b as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.2}MiB", b as f64 / (1u64 << 20) as f64)
    }
}

pub fn run(cmd: ContainerCommand, root: &Path) -> Result<i32> {
    if let ContainerCommand::Shim(s) = cmd {
        return Ok(gabang_runtime::shim_main(s.args));
    }
    if let ContainerCommand::Run(a) = cmd {
        // The container's cgroup migration waits for a grace period unless one is already
        // running: start it now, beside the image lookup and the shim's exec.
        gabang_runtime::prime_cgroup_migration();
        return cmd_run(*a, root);
    }
    let rt = runtime(root)?;
    match cmd {
        ContainerCommand::Run(_) | ContainerCommand::Shim(_) => Ok(0),
        ContainerCommand::Start(a) => Ok(each(&rt, &a.containers, |n, id| {
            rt.start(id, Attach::Detached)?;
            println!("{n}");
            Ok(())
        })),
        ContainerCommand::Ps(a) => {
            let list = rt.list(a.all)?;
            if a.quiet {
                for c in list {
                    println!("{}", if a.no_trunc { &c.id } else { short(&c.id) });
                }
                return Ok(0);
            }
            let rows = list
                .iter()
                .map(|c| {
                    let mut cmd = format!("\"{}\"", c.command);
                    if !a.no_trunc && cmd.chars().count() > 22 {
                        cmd = cmd.chars().take(19).collect::<String>() + "…\"";
                    }
                    vec![
                        if a.no_trunc {
                            c.id.clone()
                        } else {
                            short(&c.id).to_owned()
                        },
                        c.image.clone(),
                        cmd,
                        crate::ui::ago(Some(&c.created.to_rfc3339())),
                        c.status_text(),
                        if c.state.status == Status::Running {
                            ports_text(&c.ports)
                        } else {
                            String::new()
                        },
                        c.name.clone(),
                    ]
                })
                .collect();
            print_table(
                &[
                    "CONTAINER ID",
                    "IMAGE",
                    "COMMAND",
                    "CREATED",
                    "STATUS",
                    "PORTS",
                    "NAMES",
                ],
                rows,
            );
            Ok(0)
        }
        ContainerCommand::Logs(a) => {
            let id = rt.resolve(&a.container)?;
            let tail = if a.tail == "all" {
                None
            } else {
                Some(
                    a.tail
                        .parse::<usize>()
                        .with_context(|| format!("--tail {:?}", a.tail))?,
                )
            };
            let opts = LogOptions {
                follow: a.follow,
                tail,
                timestamps: a.timestamps,
            };
            rt.logs(&id, &opts, &mut std::io::stdout(), &mut std::io::stderr())?;
            Ok(0)
        }
        ContainerCommand::Exec(a) => {
            let id = rt.resolve(&a.container)?;
            let spec = ExecSpec {
                args: a.cmd.clone(),
                env: a.env.iter().filter_map(|e| env_from_flag(e)).collect(),
                cwd: a.workdir.clone(),
                user: a.user.clone(),
                tty: a.tty && std::io::stdin().is_terminal(),
            };
            let _ = a.interactive; // stdin is always passed through to the exec'd process
            match rt.exec(&id, &spec) {
                Ok(c) => Ok(c),
                Err(e) => {
                    eprintln!("gabang: {e}");
                    Ok(126)
                }
            }
        }
        ContainerCommand::Stop(a) => Ok(each(&rt, &a.containers, |n, id| {
            rt.stop(id, Duration::from_secs(a.time))?;
            println!("{n}");
            Ok(())
        })),
        ContainerCommand::Kill(a) => {
            let sig = signal_number(&a.signal)?;
            Ok(each(&rt, &a.containers, |n, id| {
                rt.kill(id, sig)?;
                println!("{n}");
                Ok(())
            }))
        }
        ContainerCommand::Rm(a) => Ok({
            if a.force && a.containers.len() > 1 {
                // Kill them all first: they die together, then each is removed.
                for n in &a.containers {
                    if let Ok(id) = rt.resolve(n) {
                        let _ = rt.kill_for_remove(&id);
                    }
                }
            }
            each_parallel(&rt, &a.containers, |_, id| Ok(rt.remove(id, a.force)?))
        }),
        ContainerCommand::Wait(a) => Ok(each(&rt, &a.containers, |_, id| {
            println!("{}", rt.wait(id)?);
            Ok(())
        })),
        ContainerCommand::Inspect(a) => {
            let mut out = Vec::new();
            let code = each(&rt, &a.containers, |_, id| {
                out.push(rt.inspect(id)?);
                Ok(())
            });
            let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&out)?);
            Ok(code)
        }
        ContainerCommand::Stats(a) => cmd_stats(a, &rt),
        ContainerCommand::Port(a) => {
            let id = rt.resolve(&a.container)?;
            let cfg = rt.store().load_config(&id)?;
            for p in &cfg.options.publish {
                println!(
                    "{}/{} -> {}:{}",
                    p.container_port,
                    p.protocol,
                    p.host_ip.as_deref().unwrap_or("0.0.0.0"),
                    p.host_port
                );
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("64m").unwrap(), 64 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("512k").unwrap(), 512 << 10);
        assert_eq!(parse_memory("32MB").unwrap(), 32 << 20);
        assert_eq!(parse_memory("1000").unwrap(), 1000);
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("-1m").is_err());
    }
}
