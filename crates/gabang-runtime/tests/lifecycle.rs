//! Lifecycle against the real kernel: overlay rootfs, libcontainer via the shim, exit codes,
//! logs, state on disk, stop/kill/rm, exec.
mod common;

use std::time::Duration;

use common::*;
use gabang_runtime::{Attach, Status};

#[test]
fn run_detached_exit_code_logs_and_cleanup() {
    let env = Env::new();
    let (id, code) = env
        .rt
        .run(
            env.req(opts(&[
                "sh",
                "-c",
                "echo out; echo err >&2; cat /etc/motd; exit 3",
            ])),
            Attach::Detached,
        )
        .unwrap();
    assert_eq!(code, None);
    assert_eq!(env.rt.wait(&id).unwrap(), 3);
    let log = env.read_log(&id);
    assert!(log.contains("out\n") && log.contains("err\n"), "{log}");
    assert!(log.contains("top layer"), "upper layer visible: {log}");
    let st = env.rt.store().live_state(&id).unwrap();
    assert_eq!(st.status, Status::Exited);
    // After exit: overlay unmounted, cgroup gone.
    let dir = env.rt.container_dir(&id);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&dir.join("bundle/rootfs").display().to_string()));
    assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/memory/gabang/{id}")).exists());
    assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/pids/gabang/{id}")).exists());
    env.rt.remove(&id, false).unwrap();
    assert!(!dir.exists());
    assert!(env.rt.resolve(&id).is_err());
}

#[test]
fn exit_codes_like_docker() {
    let env = Env::new();
    let e = env
        .rt
        .run(env.req(opts(&["nosuchcmd"])), Attach::Detached)
        .unwrap_err();
    assert!(
        matches!(
            e,
            gabang_runtime::RuntimeError::StartFailed { code: 127, .. }
        ),
        "{e}"
    );
    let e = env
        .rt
        .run(env.req(opts(&["/bin/noexec"])), Attach::Detached)
        .unwrap_err();
    assert!(
        matches!(
            e,
            gabang_runtime::RuntimeError::StartFailed { code: 126, .. }
        ),
        "{e}"
    );
    let (id, _) = env
        .rt
        .run(env.req(opts(&["sleep", "1000"])), Attach::Detached)
        .unwrap();
    env.rt.kill(&id, libc::SIGKILL).unwrap();
    assert_eq!(env.rt.wait(&id).unwrap(), 137);
    let (id, _) = env
        .rt
        .run(env.req(opts(&["sh", "-c", "exit 300"])), Attach::Detached)
        .unwrap();
    assert_eq!(env.rt.wait(&id).unwrap(), 44);
}

#[test]
fn user_env_workdir_hostname_and_etc_files() {
    let env = Env::new();
    let mut o = opts(&[
        "sh",
        "-c",
        "id -u; id -g; id -G; pwd; echo $FROM_IMAGE $A $HOME; hostname; cat /etc/hostname; grep -c localhost /etc/hosts",
    ]);
    o.user = Some("app".into());
    o.workdir = Some("/made/by/run".into());
    o.env = vec!["A=x".into()];
    o.hostname = Some("boxy".into());
    let (id, _) = env.rt.run(env.req(o), Attach::Detached).unwrap();
    assert_eq!(env.rt.wait(&id).unwrap(), 0);
    let log = env.read_log(&id);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], "1000", "{log}");
    assert_eq!(lines[1], "1000");
    assert!(lines[2].split(' ').any(|g| g == "10"), "{log}");
    assert_eq!(lines[3], "/made/by/run");
    assert_eq!(lines[4], "1 x /home/app");
    assert_eq!(lines[5], "boxy");
    assert_eq!(lines[6], "boxy");
    assert!(lines[7].parse::<u32>().unwrap() >= 1);
}

#[test]
fn stop_kill_exec_and_force_remove() {
    let env = Env::new();
    let mut o = opts(&[
        "sh",
        "-c",
        "trap 'exit 42' TERM; while true; do sleep 0.1; done",
    ]);
    o.name = Some("stoppable".into());
    let (id, _) = env.rt.run(env.req(o), Attach::Detached).unwrap();
    assert_eq!(env.rt.resolve("stoppable").unwrap(), id);
    assert_eq!(env.rt.list(false).unwrap().len(), 1);
    // exec into its namespaces
    let code = env
        .rt
        .exec(
            &id,
            &gabang_runtime::ExecSpec {
                args: vec![
                    "sh".into(),
                    "-c".into(),
                    "test $(hostname) = $HOSTNAME && exit 7".into(),
                ],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(code, 7);
    env.rt.stop(&id, Duration::from_secs(20)).unwrap();
    assert_eq!(env.rt.wait(&id).unwrap(), 42);
    assert!(env.rt.list(false).unwrap().is_empty());
    assert_eq!(env.rt.list(true).unwrap().len(), 1);

    // SIGTERM ignored by a pid-1 sh without a trap → SIGKILL after the timeout → 137.
    let (id2, _) = env
        .rt
        .run(
            env.req(opts(&["sh", "-c", "while true; do sleep 0.1; done"])),
            Attach::Detached,
        )
        .unwrap();
    env.rt.stop(&id2, Duration::from_millis(300)).unwrap();
    assert_eq!(env.rt.wait(&id2).unwrap(), 137);

    let (id3, _) = env
        .rt
        .run(env.req(opts(&["sleep", "1000"])), Attach::Detached)
        .unwrap();
    assert!(env.rt.remove(&id3, false).is_err(), "running needs --force");
    env.rt.remove(&id3, true).unwrap();
    assert!(env.rt.resolve(&id3).is_err());
}

#[test]
fn auto_remove_and_names_are_unique() {
    let env = Env::new();
    let mut o = opts(&["true"]);
    o.auto_remove = true;
    o.name = Some("gone".into());
    let (id, _) = env.rt.run(env.req(o.clone()), Attach::Detached).unwrap();
    assert!(
        eventually(|| env.rt.resolve(&id).is_err()),
        "--rm removed it"
    );
    // name is free again
    let mut o2 = opts(&["sleep", "100"]);
    o2.name = Some("gone".into());
    let (id2, _) = env.rt.run(env.req(o2.clone()), Attach::Detached).unwrap();
    assert!(matches!(
        env.rt.create(env.req(o2)),
        Err(gabang_runtime::RuntimeError::NameInUse { .. })
    ));
    env.rt.remove(&id2, true).unwrap();
}

#[test]
fn dead_shim_is_reported_and_rm_cleans_up() {
    let env = Env::new();
    let (id, _) = env
        .rt
        .run(env.req(opts(&["sleep", "1000"])), Attach::Detached)
        .unwrap();
    let st = env.rt.store().live_state(&id).unwrap();
    let shim = st.shim_pid.unwrap();
    let init = st.pid.unwrap();
    // SAFETY: killing the shim process this test started.
    unsafe { libc::kill(shim, libc::SIGKILL) };
    assert!(eventually(|| env
        .rt
        .store()
        .live_state(&id)
        .unwrap()
        .status
        == Status::Dead));
    let dir = env.rt.container_dir(&id);
    // The rootfs was mounted in the shim's own mount namespace, never in the machine's:
    // a dead shim leaves no mount behind here.
    assert!(!std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(&dir.join("bundle/rootfs").display().to_string()));
    let init_root = std::fs::read_dir(format!("/proc/{init}/root/bin"))
        .unwrap()
        .count();
    assert!(init_root > 0, "the container still sees its rootfs");
    // rm -f of a dead container kills what is left and removes mounts and cgroups.
    env.rt.remove(&id, true).unwrap();
    assert!(!dir.exists());
    assert!(!std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(&dir.join("bundle/rootfs").display().to_string()));
    assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/pids/gabang/{id}")).exists());
    assert!(eventually(|| gabang_runtime::Store::open(
        std::path::Path::new("/")
    )
    .map(
        |_| !std::path::Path::new(&format!("/proc/{init}/cmdline")).exists()
            || std::fs::read_to_string(format!("/proc/{init}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    )
    .unwrap_or(true)));
}
