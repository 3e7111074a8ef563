//! The default seccomp profile (docker's allow-list) against real containers: everyday
//! busybox tools still work, namespace/mount/keyring/kexec syscalls fail with EPERM, clone3
//! with ENOSYS, in `run` and in `exec`; `seccomp=unconfined` turns the profile off.
mod common;
mod probe;

use common::*;
use gabang_runtime::{Attach, ExecSpec, NetworkMode, SECCOMP_LABEL};
use probe::probe_layer;

const PROBES: &[&str] = &[
    "unshare_user",
    "unshare_net",
    "clone_newuser",
    "mount",
    "umount",
    "add_key",
    "keyctl",
    "kexec_load",
    "bpf",
    "setns",
    "reboot",
    "socket_vsock",
    "clone3",
    "fork",
    "socket_inet",
    "chroot",
    "personality_query",
    "personality_bsd",
];

fn run_probe(env: &Env, o: gabang_runtime::RunOptions) -> String {
    let (id, _) = env.rt.run(env.req(o), Attach::Detached).unwrap();
    assert_eq!(env.rt.wait(&id).unwrap(), 0, "{}", env.read_log(&id));
    env.read_log(&id)
}

fn assert_confined(out: &str) {
    for denied in [
        "unshare_user",
        "unshare_net",
        "clone_newuser",
        "mount",
        "umount",
        "add_key",
        "keyctl",
        "kexec_load",
        "bpf",
        "setns",
        "reboot",
        "socket_vsock",
        "personality_bsd",
    ] {
        assert!(
            out.contains(&format!("\n{denied}=EPERM\n"))
                || out.starts_with(&format!("{denied}=EPERM\n")),
            "{denied} must fail with EPERM: {out}"
        );
    }
    assert!(out.contains("\nclone3=ENOSYS\n"), "clone3 → ENOSYS: {out}");
    for allowed in ["fork", "socket_inet", "chroot", "personality_query"] {
        assert!(
            out.contains(&format!("\n{allowed}=ok\n")),
            "{allowed} allowed: {out}"
        );
    }
}

#[test]
fn default_profile_refuses_privileged_syscalls_in_run_and_exec() {
    let mut env = Env::new();
    probe_layer(&mut env);
    let mut args = vec!["probe"];
    args.extend_from_slice(PROBES);
    let out = run_probe(&env, opts(&args));
    assert_confined(&out);

    // exec'd processes get the same filter (libcontainer drops it for tenants: we add it).
    let (id, _) = env
        .rt
        .run(env.req(opts(&["sleep", "1000"])), Attach::Detached)
        .unwrap();
    let spec = ExecSpec {
        args: PROBES
            .iter()
            .map(|s| s.to_string())
            .fold(vec!["probe".to_owned()], |mut v, s| {
                v.push(s);
                v
            }),
        ..Default::default()
    };
    let o = env.rt.exec_command(&id, &spec).unwrap().output().unwrap();
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_confined(&out);
    let o = env
        .rt
        .exec_command(
            &id,
            &ExecSpec {
                args: vec!["grep".into(), "Seccomp:".into(), "/proc/self/status".into()],
                ..Default::default()
            },
        )
        .unwrap()
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Seccomp:\t2"),
        "exec is filtered: {o:?}"
    );
}

#[test]
fn seccomp_unconfined_turns_the_profile_off() {
    let mut env = Env::new();
    probe_layer(&mut env);
    let mut o = opts(&[
        "sh",
        "-c",
        "grep Seccomp: /proc/self/status; probe clone3 keyctl unshare_user",
    ]);
    o.labels.insert(SECCOMP_LABEL.into(), "unconfined".into());
    let out = run_probe(&env, o);
    assert!(out.contains("Seccomp:\t0"), "{out}");
    // The kernel itself answers now: EINVAL for a NULL clone3 argument, not ENOSYS.
    assert!(out.contains("clone3=EINVAL"), "{out}");
    assert!(!out.contains("keyctl=EPERM"), "{out}");
}

#[test]
fn busybox_tools_work_under_the_default_profile() {
    let env = Env::new();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let script = format!(
        "set -e; mkdir -p /tmp/www; echo served > /tmp/www/index.html; \
         httpd -p 127.0.0.1:{port} -h /tmp/www; \
         wget -q -O - http://127.0.0.1:{port}/index.html; \
         printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 {port} | grep -q served && echo via-nc; \
         ls / > /dev/null && echo ls-ok; cat /etc/passwd | head -1; \
         sleep 100 & k=$!; kill $k; wait $k || echo killed-$?; \
         top -b -n1 | head -1 | cut -c1-4; ps | grep -c sleep >/dev/null && echo ps-ok; \
         ping -c1 -W2 127.0.0.1 > /dev/null && echo ping-ok; \
         date > /dev/null && echo date-ok; sort /etc/passwd | md5sum > /dev/null && echo sort-ok; \
         kill $(pidof httpd); echo done"
    );
    let mut o = opts(&["sh", "-c", &script]);
    o.network = NetworkMode::Host;
    let (id, _) = env.rt.run(env.req(o), Attach::Detached).unwrap();
    let code = env.rt.wait(&id).unwrap();
    let log = env.read_log(&id);
    assert_eq!(code, 0, "{log}");
    for want in [
        "served",
        "via-nc",
        "ls-ok",
        "root:x:0:0",
        "killed-143",
        "Mem:",
        "ps-ok",
        "ping-ok",
        "date-ok",
        "sort-ok",
        "done",
    ] {
        assert!(log.contains(want), "{want}: {log}");
    }
}
