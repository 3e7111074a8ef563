//! Limits (memory → OOM 137, pids, cpu quota) and docker-like security defaults, checked
//! from inside real containers and from the host's cgroup files.
mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use gabang_runtime::Attach;

fn cgroup_file(ctrl: &str, id: &str, file: &str) -> Option<String> {
    for base in [
        format!("/sys/fs/cgroup/{ctrl}/gabang/{id}"),
        format!("/sys/fs/cgroup/gabang/{id}"),
    ] {
        if let Ok(s) = std::fs::read_to_string(Path::new(&base).join(file)) {
            return Some(s.trim().to_owned());
        }
    }
    None
}

#[test]
fn memory_limit_oom_kills_with_137_and_oomkilled() {
    let env = Env::new();
    let mut o = opts(&["tail", "/dev/zero"]);
    o.memory = Some(16 << 20);
    let (id, _) = env.rt.run(env.req(o), Attach::Detached).unwrap();
    assert_eq!(env.rt.wait(&id).unwrap(), 137);
    let j = env.rt.inspect(&id).unwrap();
    assert_eq!(j["State"]["OOMKilled"], true, "{j:#}");
    assert_eq!(j["State"]["ExitCode"], 137);
    assert_eq!(j["HostConfig"]["Memory"], 16 << 20);
}

#[test]
fn pids_limit_stops_a_fork_bomb_and_cpus_sets_quota() {
    let env = Env::new();
    let mut o = opts(&[
        "sh",
        "-c",
        "(for i in $(seq 1 40); do sleep 1000 & done); echo spawned; exec sleep 1000",
    ]);
    o.pids_limit = Some(10);
    o.cpus = Some(0.5);
    let (id, _) = env.rt.run(env.req(o), Attach::Detached).unwrap();
    let ok = eventually(|| env.read_log(&id).contains("spawned"));
    assert!(ok, "log: {}", env.read_log(&id));
    let log = env.read_log(&id);
    assert!(log.contains("fork"), "fork failures reported: {log}");
    assert_eq!(cgroup_file("pids", &id, "pids.max").as_deref(), Some("10"));
    let cur: u32 = cgroup_file("pids", &id, "pids.current")
        .unwrap()
        .parse()
        .unwrap();
    assert!(cur <= 10, "pids.current {cur}");
    let quota = cgroup_file("cpu,cpuacct", &id, "cpu.cfs_quota_us")
        .or_else(|| cgroup_file("cpu", &id, "cpu.cfs_quota_us"))
        .or_else(|| cgroup_file("cpu", &id, "cpu.max"));
    assert!(
        quota.as_deref().is_some_and(|q| q.starts_with("50000")),
        "{quota:?}"
    );
    env.rt.remove(&id, true).unwrap();
    assert!(
        cgroup_file("pids", &id, "pids.max").is_none(),
        "cgroup removed"
    );
}

#[test]
fn security_defaults() {
    let env = Env::new();
    let mut o = opts(&[
        "sh",
        "-c",
        "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; \
         ls /proc/self/fd | tr '\\n' ' '; echo; \
         (head -c 1 /proc/kcore | wc -c) 2>&1; \
         (echo 1 > /proc/sys/vm/drop_caches) 2>/dev/null && echo procsys-writable || echo procsys-ro; \
         (mount -t tmpfs t /tmp) 2>/dev/null && echo mount-ok || echo mount-denied; \
         (touch /newfile) 2>/dev/null && echo rootfs-rw || echo rootfs-ro",
    ]);
    o.read_only = true;
    let (id, _) = env.rt.run(env.req(o), Attach::Detached).unwrap();
    assert_eq!(env.rt.wait(&id).unwrap(), 0);
    let log = env.read_log(&id);
    assert!(
        log.contains("CapEff:\t00000000a80425fb"),
        "docker's cap set: {log}"
    );
    assert!(log.contains("NoNewPrivs:\t1"), "{log}");
    assert!(log.contains("Seccomp:\t2"), "{log}");
    // ls's own dir fd is 3: nothing of the host leaks in.
    assert!(log.contains("\n0 1 2 3 \n"), "fds: {log}");
    assert!(log.contains("\n0\n"), "/proc/kcore masked: {log}");
    assert!(log.contains("procsys-ro"), "{log}");
    assert!(log.contains("mount-denied"), "{log}");
    assert!(log.contains("rootfs-ro"), "{log}");
}

#[test]
fn bind_and_named_volumes() {
    let env = Env::new();
    let host = env.tmp.path().join("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("in.txt"), "from host\n").unwrap();
    let mut o = opts(&[
        "sh",
        "-c",
        "cat /data/in.txt; echo back > /data/out.txt; cat /cache/keep 2>/dev/null; echo kept > /cache/keep",
    ]);
    o.volumes = vec![
        format!("{}:/data", host.display()).parse().unwrap(),
        "cachevol:/cache".parse().unwrap(),
    ];
    let (id, _) = env.rt.run(env.req(o.clone()), Attach::Detached).unwrap();
    assert_eq!(env.rt.wait(&id).unwrap(), 0);
    assert!(env.read_log(&id).contains("from host"));
    assert_eq!(
        std::fs::read_to_string(host.join("out.txt")).unwrap(),
        "back\n"
    );
    env.rt.remove(&id, false).unwrap();
    // The named volume outlives its container.
    let (id, _) = env.rt.run(env.req(o), Attach::Detached).unwrap();
    assert_eq!(env.rt.wait(&id).unwrap(), 0);
    assert!(env.read_log(&id).contains("kept"));
    assert!(env
        .tmp
        .path()
        .join("root/volumes/cachevol/_data/keep")
        .exists());
}

#[test]
fn restart_policies() {
    let env = Env::new();
    let mut o = opts(&["sh", "-c", "echo run; exit 1"]);
    o.restart = "on-failure:2".parse().unwrap();
    let (id, _) = env.rt.run(env.req(o), Attach::Detached).unwrap();
    assert!(eventually(|| {
        let s = env.rt.store().live_state(&id).unwrap();
        s.status == gabang_runtime::Status::Exited && s.restart_count == 2
    }));
    assert_eq!(env.read_log(&id).matches("run").count(), 3);

    let mut o = opts(&["sh", "-c", "echo again; sleep 0.2"]);
    o.restart = "always".parse().unwrap();
    let (id, _) = env.rt.run(env.req(o), Attach::Detached).unwrap();
    assert!(eventually(|| env
        .rt
        .store()
        .live_state(&id)
        .unwrap()
        .restart_count
        >= 2));
    env.rt.stop(&id, Duration::from_secs(10)).unwrap();
    let s = env.rt.store().live_state(&id).unwrap();
    assert!(
        !s.status.is_active(),
        "stop ends an always-restarting container"
    );
}
