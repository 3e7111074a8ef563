//! Container-escape classes, against real containers:
//! - CVE-2019-5736: a container process hammering `/proc/PID/exe` of every process it can
//!   see (directly and through held O_PATH fds) while we `exec` into it many times never
//!   writes the host's shim binary, and never even resolves it; the same attack does
//!   succeed on a binary of the container's own (the positive control).
//! - CVE-2024-21626: the container's processes (init and exec'd) hold only fds 0, 1, 2, and
//!   `-w` tricks like `/proc/self/fd/N` either fail cleanly (125/126/127) or leave the cwd
//!   inside the container's root.
mod common;
mod probe;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::*;
use gabang_runtime::{Attach, ExecSpec, Runtime, RuntimeConfig, RuntimeError};
use probe::probe_layer;

fn exec_out(rt: &Runtime, id: &str, args: &[&str]) -> std::process::Output {
    let spec = ExecSpec {
        args: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    rt.exec_command(id, &spec).unwrap().output().unwrap()
}

#[test]
fn host_binary_is_not_writable_through_proc_exe() {
    let mut env = Env::new();
    probe_layer(&mut env);
    // The shim binary the runtime runs (a copy, so that a successful attack would only
    // damage the copy), and its content before the attack.
    let shim = env.tmp.path().join("shim-under-attack");
    std::fs::copy(shim_exe(), &shim).unwrap();
    let before = std::fs::read(&shim).unwrap();
    let original = std::fs::read(shim_exe()).unwrap();
    env.rt = Runtime::new(RuntimeConfig {
        root: env.rt.root().to_owned(),
        shim_exe: shim.clone(),
        shim_prefix_args: vec![],
    })
    .unwrap();

    let (id, _) = env
        .rt
        .run(env.req(opts(&["probe", "attack"])), Attach::Detached)
        .unwrap();
    assert!(eventually(|| env
        .rt
        .store()
        .live_state(&id)
        .unwrap()
        .status
        == gabang_runtime::Status::Running));
    // Positive control: the attack works on what the container may touch. A copy of busybox
    // run from /tmp is seen, and once it has exited it is written through the held fd.
    let o = exec_out(
        &env.rt,
        &id,
        &[
            "sh",
            "-c",
            "cp /bin/busybox /tmp/bb2 && ln -s bb2 /tmp/sleep",
        ],
    );
    assert!(o.status.success(), "{o:?}");
    let o = exec_out(&env.rt, &id, &["/tmp/sleep", "0.5"]);
    assert!(o.status.success(), "{o:?}");
    assert!(
        eventually(|| env.read_log(&id).contains("WROTE /tmp/bb2")),
        "the attacker works: {}",
        env.read_log(&id)
    );
    // The runtime's exec path is the classic window: a process of ours enters the container.
    for i in 0..40 {
        let o = exec_out(&env.rt, &id, &["cat", "/etc/hostname"]);
        assert!(o.status.success(), "exec {i}: {o:?}");
    }
    let o = exec_out(&env.rt, &id, &["touch", "/stop"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(env.rt.wait(&id).unwrap(), 0);
    let log = env.read_log(&id);
    let summary = log
        .lines()
        .find(|l| l.starts_with("attack rounds="))
        .unwrap_or_else(|| panic!("attacker ran: {log}"));
    let rounds: u64 = summary
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rounds="))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(rounds > 0, "{summary}");
    for l in log.lines() {
        if let Some(t) = l.strip_prefix("WROTE ").or_else(|| l.strip_prefix("SAW ")) {
            // Only the control; never the shim (which would show as a host path).
            assert_eq!(
                t, "/tmp/bb2",
                "the container reached a runtime binary: {log}"
            );
        }
    }
    assert!(summary.ends_with("saw=1 wrote=1"), "{summary}");
    assert!(
        std::fs::read(&shim).unwrap() == before,
        "shim binary changed"
    );
    assert!(
        std::fs::read(shim_exe()).unwrap() == original,
        "built shim binary changed"
    );
}

/// Parse `ls -l /proc/self/fd` output into (fd, target).
fn fds(out: &str) -> Vec<(u32, String)> {
    out.lines()
        .filter_map(|l| {
            let (left, target) = l.split_once(" -> ")?;
            let fd = left.split_whitespace().last()?.parse().ok()?;
            Some((fd, target.to_owned()))
        })
        .collect()
}

fn assert_only_stdio(out: &str, what: &str) {
    let list = fds(out);
    assert!(!list.is_empty(), "{what}: {out}");
    for (fd, target) in &list {
        let ls_own_dir = target.starts_with("/proc/") && target.ends_with("/fd");
        assert!(
            *fd <= 2 || ls_own_dir,
            "{what}: fd {fd} -> {target} leaked in: {out}"
        );
    }
    for fd in 0..=2 {
        assert!(list.iter().any(|(f, _)| *f == fd), "{what}: {out}");
    }
}

#[test]
fn container_processes_hold_only_stdio() {
    let env = Env::new();
    let (id, _) = env
        .rt
        .run(
            env.req(opts(&["ls", "-l", "/proc/self/fd"])),
            Attach::Detached,
        )
        .unwrap();
    assert_eq!(env.rt.wait(&id).unwrap(), 0);
    assert_only_stdio(&env.read_log(&id), "run");

    let (id, _) = env
        .rt
        .run(env.req(opts(&["sleep", "1000"])), Attach::Detached)
        .unwrap();
    let o = exec_out(&env.rt, &id, &["ls", "-l", "/proc/self/fd"]);
    assert!(o.status.success(), "{o:?}");
    assert_only_stdio(&String::from_utf8_lossy(&o.stdout), "exec");
    // The init (sleep) itself, seen from an exec'd process.
    let o = exec_out(&env.rt, &id, &["ls", "-l", "/proc/1/fd"]);
    assert!(o.status.success(), "{o:?}");
    let init = String::from_utf8_lossy(&o.stdout).into_owned();
    let list = fds(&init);
    assert_eq!(
        list.iter().map(|(f, _)| *f).collect::<Vec<_>>(),
        [0, 1, 2],
        "init: {init}"
    );
}

/// (dev, inode) of a path.
fn id_of(p: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

/// Is the cwd of `pid` inside its root? Walk `..` from the cwd, as the host sees it, until
/// the process's root (inside) or the host's `/` (escaped).
fn cwd_inside_root(pid: i32) -> bool {
    let root = id_of(Path::new(&format!("/proc/{pid}/root"))).unwrap();
    let mut cur = PathBuf::from(format!("/proc/{pid}/cwd"));
    for _ in 0..256 {
        let here = id_of(&cur).unwrap();
        if here == root {
            return true;
        }
        let up = cur.join("..");
        if id_of(&up).unwrap() == here {
            return false; // the host's /
        }
        cur = up;
    }
    false
}

const TRICKS: &[&str] = &[
    "/proc/self/fd/3",
    "/proc/self/fd/4",
    "/proc/self/fd/5",
    "/proc/self/fd/6",
    "/proc/self/fd/7",
    "/proc/self/fd/8",
    "/proc/self/fd/9",
    "/proc/self/fd/10",
    "/proc/self/cwd",
    "/proc/1/cwd",
    "/proc/self/root/..",
    "/../../../..",
];

fn init_pid(env: &Env, id: &str) -> Option<i32> {
    let st = env.rt.store().live_state(id).ok()?;
    (st.status == gabang_runtime::Status::Running)
        .then_some(st.pid)
        .flatten()
}

#[test]
fn workdir_tricks_fail_cleanly_or_stay_inside() {
    let env = Env::new();
    let mut outcomes = Vec::new();
    for w in TRICKS {
        let mut o = opts(&["sleep", "1000"]);
        o.workdir = Some((*w).to_owned());
        match env.rt.run(env.req(o), Attach::Detached) {
            Err(RuntimeError::StartFailed { code, message }) => {
                assert!((125..=127).contains(&code), "-w {w}: {code} {message}");
                outcomes.push(format!("{w}: refused {code}"));
            }
            Err(e) => panic!("-w {w}: unexpected error {e}"),
            Ok((id, _)) => match init_pid(&env, &id) {
                Some(pid) => {
                    assert!(cwd_inside_root(pid), "-w {w}: cwd escaped the rootfs");
                    outcomes.push(format!("{w}: inside"));
                    env.rt.remove(&id, true).unwrap();
                }
                None => {
                    let code = env.rt.wait(&id).unwrap();
                    assert!((125..=127).contains(&code), "-w {w}: exit {code}");
                    outcomes.push(format!("{w}: exited {code}"));
                }
            },
        }
    }
    eprintln!("run -w: {outcomes:#?}");
}

#[test]
fn exec_workdir_tricks_fail_cleanly_or_stay_inside() {
    let env = Env::new();
    let (id, _) = env
        .rt
        .run(env.req(opts(&["sleep", "1000"])), Attach::Detached)
        .unwrap();
    let mut outcomes = Vec::new();
    for (i, w) in TRICKS.iter().enumerate() {
        let arg = format!("{}", 3000 + i);
        let spec = ExecSpec {
            args: vec!["sleep".into(), arg.clone()],
            cwd: Some((*w).to_owned()),
            ..Default::default()
        };
        let mut child = env
            .rt
            .exec_command(&id, &spec)
            .unwrap()
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let want = format!("sleep\0{arg}\0");
        let mut found = None;
        let started = eventually(|| {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            found = std::fs::read_dir("/proc").unwrap().flatten().find_map(|e| {
                let c = std::fs::read(e.path().join("cmdline")).ok()?;
                (c == want.as_bytes())
                    .then(|| e.file_name().to_str()?.parse::<i32>().ok())
                    .flatten()
            });
            found.is_some()
        });
        assert!(started, "exec -w {w} neither ran nor failed");
        match found {
            Some(pid) => {
                assert!(cwd_inside_root(pid), "exec -w {w}: cwd escaped the rootfs");
                outcomes.push(format!("{w}: inside"));
                // SAFETY: kill(2) on the sleep we just found.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let _ = child.wait();
            }
            None => {
                let o = child.wait_with_output().unwrap();
                let code = o.status.code().unwrap_or(255);
                assert!(
                    (125..=127).contains(&code),
                    "exec -w {w}: exit {code}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                outcomes.push(format!("{w}: refused {code}"));
            }
        }
    }
    eprintln!("exec -w: {outcomes:#?}");
}
