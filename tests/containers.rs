//! End-to-end: the `gabang` binary running real containers (busybox image imported from
//! Debian's busybox-static). Every test runs in a network namespace it creates (the test
//! thread joins it, so bridges, nft rules and ports never touch the host's network) and
//! removes all its containers on drop, even after a failure.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::Netns;

struct Env {
    tmp: tempfile::TempDir,
    _ns: Netns,
}

impl Env {
    fn new(tag: &str) -> Self {
        let ns = Netns::enter("gbe2e", tag);
        let tmp = tempfile::Builder::new()
            .prefix("gbe2e")
            .tempdir_in("/var/tmp")
            .unwrap();
        let env = Env { tmp, _ns: ns };
        let rootfs = env.tmp.path().join("rootfs");
        for d in ["bin", "etc", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/usr/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        let list = Command::new("/usr/bin/busybox")
            .arg("--list")
            .output()
            .unwrap();
        for app in String::from_utf8_lossy(&list.stdout).lines() {
            if app != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(app));
            }
        }
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
        env.ok(&[
            "import",
            rootfs.to_str().unwrap(),
            "busybox:1",
            "-c",
            "CMD [\"sh\"]",
        ]);
        env
    }
    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_gabang"));
        c.arg("--root").arg(self.root()).args(args);
        c
    }
    fn gabang(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().unwrap()
    }
    fn ok(&self, args: &[&str]) -> String {
        let o = self.gabang(args);
        assert!(
            o.status.success(),
            "gabang {args:?} failed ({:?}): {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
    fn code(&self, args: &[&str]) -> i32 {
        self.gabang(args).status.code().unwrap()
    }
    fn inspect(&self, c: &str) -> Value {
        let v: Value = serde_json::from_str(&self.ok(&["inspect", c])).unwrap();
        v[0].clone()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Ok(o) = self.cmd(&["ps", "-aq", "--no-trunc"]).output() {
            for id in String::from_utf8_lossy(&o.stdout).lines() {
                let _ = self.cmd(&["rm", "-f", id]).output();
            }
        }
    }
}

fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

fn http_get(addr: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn run_exit_codes_output_and_rm() {
    let env = Env::new("codes");
    let o = env.gabang(&["run", "--rm", "busybox:1", "echo", "hello"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello\n");
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        env.code(&["run", "--rm", "busybox:1", "sh", "-c", "exit 5"]),
        5
    );
    assert_eq!(env.code(&["run", "--rm", "busybox:1", "nosuchcmd"]), 127);
    assert_eq!(env.code(&["run", "--rm", "nosuchimage:1", "true"]), 125);
    assert_eq!(
        env.code(&["run", "--rm", "--memory", "lots", "busybox:1", "true"]),
        125
    );
    // stdin with -i
    let mut child = env
        .cmd(&[
            "run",
            "-i",
            "--rm",
            "--network",
            "none",
            "busybox:1",
            "tr",
            "a-z",
            "A-Z",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"shout\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "SHOUT\n");
    // -t gives the process a terminal; output still reaches us and the log.
    let o = env.gabang(&[
        "run",
        "-t",
        "--rm",
        "--network",
        "none",
        "busybox:1",
        "sh",
        "-c",
        "test -t 0 && test -t 1 && echo is-a-tty",
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("is-a-tty"));
    // --rm removed everything, even for failures
    assert_eq!(env.ok(&["ps", "-aq"]), "");
    assert!(std::fs::read_dir(env.root().join("containers"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn detached_lifecycle_ps_logs_exec_stop_rm() {
    let env = Env::new("life");
    let id = env
        .ok(&[
            "run",
            "-d",
            "--name",
            "svc",
            "-e",
            "GREETING=hey",
            "busybox:1",
            "sh",
            "-c",
            "trap 'echo bye; exit 3' TERM; echo $GREETING; while true; do sleep 0.1; done",
        ])
        .trim()
        .to_owned();
    assert_eq!(id.len(), 64);
    assert!(env.ok(&["ps"]).contains("svc"));
    assert!(eventually(|| env.ok(&["logs", "svc"]).contains("hey")));
    let ts = env.ok(&["logs", "-t", "--tail", "1", "svc"]);
    assert!(
        ts.starts_with("20") && ts.trim_end().ends_with("hey"),
        "{ts}"
    );
    assert_eq!(
        env.ok(&["exec", "svc", "cat", "/etc/hostname"]).trim(),
        &id[..12]
    );
    assert_eq!(env.code(&["exec", "svc", "sh", "-c", "exit 9"]), 9);
    let j = env.inspect("svc");
    assert_eq!(j["State"]["Status"], "running");
    assert_eq!(j["Name"], "/svc");
    assert!(j["State"]["Pid"].as_i64().unwrap() > 0);
    let stats = env.ok(&["stats", "--no-stream", "svc"]);
    assert!(
        stats.contains("MEM USAGE") && stats.contains(&id[..12]),
        "{stats}"
    );
    // The name is taken.
    assert_eq!(
        env.code(&["run", "-d", "--name", "svc", "busybox:1", "true"]),
        125
    );
    // logs -f ends when the container stops.
    let follower = env
        .cmd(&["logs", "-f", "svc"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    env.ok(&["stop", "-t", "10", "svc"]);
    let out = follower.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("bye"));
    assert_eq!(env.ok(&["wait", "svc"]).trim(), "3");
    let ps = env.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (3)"), "{ps}");
    assert!(!env.ok(&["ps"]).contains("svc"));
    env.ok(&["rm", "svc"]);
    assert!(!env.ok(&["ps", "-a"]).contains("svc"));
}

#[test]
fn ports_reachable_from_localhost_and_concurrent_ipam() {
    let env = Env::new("ports");
    env.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "18090:80",
        "busybox:1",
        "sh",
        "-c",
        "mkdir -p /www && echo hello-web > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    let mut body = None;
    assert!(eventually(|| {
        body = http_get("127.0.0.1:18090");
        body.is_some()
    }));
    assert!(body.unwrap().contains("hello-web"));
    assert_eq!(env.ok(&["port", "web"]).trim(), "80/tcp -> 0.0.0.0:18090");

    // Concurrent runs never share an address; concurrent same-name runs: exactly one wins.
    let envr = &env;
    let results: Vec<(String, i32)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|i| {
                let ns = format!("/run/netns/{}", envr._ns.0);
                s.spawn(move || {
                    let f = std::fs::File::open(ns).unwrap();
                    // SAFETY: join the test netns on this helper thread.
                    unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
                    let name = if i < 3 {
                        "same".to_owned()
                    } else {
                        format!("c{i}")
                    };
                    let o =
                        envr.gabang(&["run", "-d", "--name", &name, "busybox:1", "sleep", "100"]);
                    (name, o.status.code().unwrap())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let same_ok = results
        .iter()
        .filter(|(n, c)| n == "same" && *c == 0)
        .count();
    assert_eq!(same_ok, 1, "{results:?}");
    assert!(results
        .iter()
        .filter(|(n, _)| n != "same")
        .all(|(_, c)| *c == 0));
    let mut ips: Vec<String> = ["web", "same", "c3", "c4", "c5"]
        .iter()
        .map(|n| {
            env.inspect(n)["NetworkSettings"]["IPAddress"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 5, "{ips:?}");

    env.ok(&["rm", "-f", "web"]);
    assert!(http_get("127.0.0.1:18090").is_none());
    // The removed container's veth goes with its netns, torn down by the kernel in the
    // background: wait for it.
    let links = || {
        String::from_utf8(
            Command::new("ip")
                .args(["-o", "link"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while links().matches("gbv").count() != 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let links = links();
    assert_eq!(
        links.matches("gbv").count(),
        4,
        "one veth per running container: {links}"
    );
}

#[test]
fn limits_and_user_via_cli() {
    let env = Env::new("limits");
    assert_eq!(
        env.code(&[
            "run",
            "--name",
            "hog",
            "--memory",
            "16m",
            "--network",
            "none",
            "busybox:1",
            "tail",
            "/dev/zero"
        ]),
        137
    );
    assert_eq!(env.inspect("hog")["State"]["OOMKilled"], true);
    let o = env.ok(&[
        "run",
        "--rm",
        "-u",
        "nobody",
        "-w",
        "/tmp",
        "--network",
        "none",
        "busybox:1",
        "sh",
        "-c",
        "id -u; pwd",
    ]);
    assert_eq!(o, "65534\n/tmp\n");
    let host = env.tmp.path().join("vol");
    std::fs::create_dir_all(&host).unwrap();
    let bind = format!("{}:/data", host.display());
    env.ok(&[
        "run",
        "--rm",
        "-v",
        &bind,
        "--network",
        "none",
        "busybox:1",
        "sh",
        "-c",
        "echo hi > /data/f",
    ]);
    assert_eq!(std::fs::read_to_string(host.join("f")).unwrap(), "hi\n");
}

#[test]
fn sigint_to_attached_run_reaches_the_container() {
    let env = Env::new("sig");
    let mut child = env
        .cmd(&[
            "run",
            "--name",
            "trapper",
            "--network",
            "none",
            "busybox:1",
            "sh",
            "-c",
            "trap 'echo got-int; exit 7' INT; echo ready; while true; do sleep 0.1; done",
        ])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    out.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    // SAFETY: signal the CLI process this test spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    // Hang guard: if the signal got lost, remove the container so the reads below end
    // (and the asserts fail) instead of blocking forever.
    let root = env.root();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        let _ = Command::new(env!("CARGO_BIN_EXE_gabang"))
            .arg("--root")
            .arg(root)
            .args(["rm", "-f", "trapper"])
            .output();
    });
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "got-int\n");
    assert_eq!(child.wait().unwrap().code(), Some(7));
}
