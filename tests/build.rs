//! End-to-end: `gabang build` on a busybox base (Debian's busybox-static), then the
//! same Dockerfile through `docker build` (classic builder) to compare the results.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

struct Env {
    tmp: tempfile::TempDir,
}

fn make_busybox_tar(out: &Path) {
    let s = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/make-busybox-rootfs.sh"
        ))
        .arg(out)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(s.success());
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("gbbuild")
            .tempdir_in("/var/tmp")
            .unwrap();
        let env = Env { tmp };
        let tar = env.tmp.path().join("busybox.tar");
        make_busybox_tar(&tar);
        env.ok(&["import", tar.to_str().unwrap(), "busybox:1"]);
        env
    }
    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }
    fn gabang(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_gabang"))
            .arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
    fn ok(&self, args: &[&str]) -> String {
        let o = self.gabang(args);
        assert!(
            o.status.success(),
            "gabang {args:?} failed ({:?}):\n{}\n{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Ok(o) = Command::new(env!("CARGO_BIN_EXE_gabang"))
            .arg("--root")
            .arg(self.root())
            .args(["ps", "-aq", "--no-trunc"])
            .output()
        {
            for id in String::from_utf8_lossy(&o.stdout).lines() {
                let _ = Command::new(env!("CARGO_BIN_EXE_gabang"))
                    .arg("--root")
                    .arg(self.root())
                    .args(["rm", "-f", id])
                    .output();
            }
        }
    }
}

const DOCKERFILE: &str = r#"# a multi-stage build with most of the language
ARG BASE=busybox:1
FROM ${BASE} AS builder
RUN mkdir -p /out && echo built > /out/artifact && echo junk > /out/junk
RUN rm /out/junk
FROM ${BASE}
ARG GREETING=hello
ENV APP_HOME=/app PATH=/usr/local/bin:/usr/bin:/bin
WORKDIR /app
COPY src/ /app/src/
COPY --chown=www:www owned.txt /app/
COPY --from=builder /out/artifact /app/
RUN <<EOF
echo "$GREETING from $APP_HOME" > /app/greeting
rm /app/src/removed.txt
EOF
USER www
LABEL org.example.k=v
EXPOSE 8080
VOLUME /data
CMD ["cat", "/app/greeting"]
"#;

fn write_context(dir: &Path) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(dir.join(".dockerignore"), "src/*.log\n!src/keep.log\n").unwrap();
    std::fs::write(dir.join("src/a.txt"), "a\n").unwrap();
    std::fs::write(dir.join("src/drop.log"), "ignored\n").unwrap();
    std::fs::write(dir.join("src/keep.log"), "kept\n").unwrap();
    std::fs::write(dir.join("src/removed.txt"), "deleted by a later RUN\n").unwrap();
    std::fs::write(dir.join("owned.txt"), "mine\n").unwrap();
}

const PROBE: &str = "ls /app/src; stat -c '%U:%G' /app/owned.txt; id -un; cat /app/artifact /app/greeting; ls /out 2>&1 | head -1";

#[test]
fn build_run_cache_and_failure() {
    let env = Env::new();
    let ctx = env.tmp.path().join("ctx");
    write_context(&ctx);
    let out = env.ok(&["build", "-t", "app:1", ctx.to_str().unwrap()]);
    assert!(out.contains("Step 1/"), "{out}");
    assert!(out.contains("Successfully tagged app:1"), "{out}");

    let run = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "app:1",
        "sh",
        "-c",
        PROBE,
    ]);
    let lines: Vec<&str> = run.lines().collect();
    // .dockerignore exception kept keep.log, dropped drop.log; the RUN's rm is a whiteout
    assert_eq!(lines[..2], ["a.txt", "keep.log"], "{run}");
    assert_eq!(lines[2], "www:www", "COPY --chown by name: {run}");
    assert_eq!(lines[3], "www", "USER by name: {run}");
    assert_eq!(lines[4], "built", "COPY --from=builder: {run}");
    assert_eq!(lines[5], "hello from /app", "heredoc + ARG + ENV: {run}");
    assert!(
        lines[6].contains("No such file"),
        "builder files stay out: {run}"
    );
    assert_eq!(
        env.ok(&["run", "--rm", "--network", "none", "app:1"]),
        "hello from /app\n",
        "CMD"
    );

    // no-op rebuild: every filesystem step cached, same image
    let again = env.ok(&["build", "-t", "app:1", ctx.to_str().unwrap()]);
    assert!(!again.contains("cache miss"), "{again}");
    assert!(again.matches("---> CACHED").count() >= 7, "{again}");
    // every step ends with ` ---> <id>` (docker's classic output), the same ids both times
    let ids = |out: &str| -> Vec<String> {
        out.lines()
            .filter_map(|l| l.strip_prefix(" ---> "))
            .filter(|id| id.len() == 12 && id.chars().all(|c| c.is_ascii_hexdigit()))
            .map(str::to_owned)
            .collect()
    };
    let steps = again.lines().filter(|l| l.starts_with("Step ")).count();
    let stages = again.lines().filter(|l| l.contains(" : FROM ")).count();
    assert_eq!(ids(&again).len(), steps - stages, "{again}");
    assert_eq!(
        ids(&again),
        ids(&env.ok(&["build", "-t", "app:1", ctx.to_str().unwrap()]))
    );
    let id1 = env.ok(&["build", "-q", "-t", "app:1", ctx.to_str().unwrap()]);
    let id2 = env.ok(&["build", "-q", "-t", "app:1", ctx.to_str().unwrap()]);
    assert_eq!(id1, id2, "a no-op rebuild gives the same image");

    // one source file changed: the miss names it, earlier steps stay cached
    std::fs::write(ctx.join("src/a.txt"), "changed\n").unwrap();
    let changed = env.ok(&["build", "-t", "app:1", ctx.to_str().unwrap()]);
    let miss = changed
        .lines()
        .find(|l| l.contains("cache miss"))
        .unwrap_or_default()
        .to_string();
    assert!(miss.contains("src/a.txt"), "{changed}");
    assert!(changed.contains("---> CACHED"), "{changed}");
    let run = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "app:1",
        "cat",
        "/app/src/a.txt",
    ]);
    assert_eq!(run, "changed\n");

    // build arg changes the RUN that uses it
    let ba = env.ok(&[
        "build",
        "-q",
        "--build-arg",
        "GREETING=hi",
        "-t",
        "app:2",
        ctx.to_str().unwrap(),
    ]);
    assert!(ba.trim().starts_with("sha256:"), "{ba}");
    assert_eq!(
        env.ok(&["run", "--rm", "--network", "none", "app:2"]),
        "hi from /app\n"
    );

    // a failing RUN: its exit code, the tail of its output, and no tag
    let bad = env.tmp.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(
        bad.join("Dockerfile"),
        "FROM busybox:1\nRUN echo will-not-be-tagged > /x\nRUN echo first-line; echo second-line >&2; exit 3\n",
    )
    .unwrap();
    let o = env.gabang(&["build", "-t", "bad:1", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("non-zero code: 3"), "{err}");
    assert!(err.contains("second-line"), "{err}");
    let images = env.ok(&["images"]);
    assert!(!images.contains("bad"), "{images}");
    // and no build container is left behind
    assert_eq!(env.ok(&["ps", "-aq"]), "");

    // WORKDIR cannot leave the rootfs; COPY cannot leave the context
    let esc = env.tmp.path().join("esc");
    std::fs::create_dir_all(&esc).unwrap();
    std::os::unix::fs::symlink("/etc", esc.join("out")).unwrap();
    std::fs::write(
        esc.join("Dockerfile"),
        "FROM busybox:1\nWORKDIR /../../../w\nCOPY ../x /y\n",
    )
    .unwrap();
    let o = env.gabang(&["build", "-t", "esc:1", esc.to_str().unwrap()]);
    assert!(!o.status.success());
    std::fs::write(
        esc.join("Dockerfile"),
        "FROM busybox:1\nWORKDIR /../../../w\nCOPY out/passwd /y\n",
    )
    .unwrap();
    let o = env.gabang(&["build", "-t", "esc:1", esc.to_str().unwrap()]);
    assert!(
        !o.status.success(),
        "a symlink out of the context must not be followed"
    );
    std::fs::write(
        esc.join("Dockerfile"),
        "FROM busybox:1\nWORKDIR /../../../w\nRUN pwd > /pwd\n",
    )
    .unwrap();
    env.ok(&["build", "-t", "esc:1", esc.to_str().unwrap()]);
    assert_eq!(
        env.ok(&["run", "--rm", "--network", "none", "esc:1", "cat", "/pwd"]),
        "/w\n"
    );
    assert!(!Path::new("/w").exists());
}

// ---------- against docker's classic builder ----------

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn docker_ok(args: &[&str]) -> String {
    let o = docker(args);
    assert!(
        o.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

struct DockerImages(Vec<String>);
impl Drop for DockerImages {
    fn drop(&mut self) {
        for i in &self.0 {
            let _ = docker(&["rmi", "-f", i]);
        }
    }
}

/// Files (path, type, owner, mode, size, content digest of small files) under `dirs`.
const LIST: &str = "for d in /app /out /etc /bin/busybox; do [ -e $d ] && find $d -xdev; done | sort | while read f; do printf '%s ' \"$f\"; stat -c '%F %u:%g %a' \"$f\" | tr '\\n' ' '; if [ -f \"$f\" ] && [ ! -L \"$f\" ]; then md5sum < \"$f\" | cut -c1-8; else echo; fi; done";

const CONFIG_KEYS: [&str; 8] = [
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Labels",
    "Volumes",
];

fn norm(v: &Value) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::Object(m) if m.is_empty() => Value::Null,
        Value::Array(a) if a.is_empty() => Value::Null,
        Value::String(s) if s.is_empty() => Value::Null,
        other => other.clone(),
    }
}

#[test]
fn same_result_as_docker_classic_builder() {
    if !docker(&["info"]).status.success() {
        let s = Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/start-dockerd.sh"
            ))
            .status()
            .unwrap();
        assert!(s.success(), "no docker engine");
    }
    let env = Env::new();
    let tag = format!("gabang-cmp-{}", std::process::id());
    let base = format!("{tag}-base:1");
    let _guard = DockerImages(vec![format!("{tag}:1"), base.clone()]);
    let tar = env.tmp.path().join("busybox.tar");
    docker_ok(&["import", tar.to_str().unwrap(), &base]);
    let ctx = env.tmp.path().join("ctx");
    write_context(&ctx);
    // the classic builder has no heredocs: the same step as one shell line
    let classic = DOCKERFILE.replace(
        "RUN <<EOF\necho \"$GREETING from $APP_HOME\" > /app/greeting\nrm /app/src/removed.txt\nEOF\n",
        "RUN echo \"$GREETING from $APP_HOME\" > /app/greeting && rm /app/src/removed.txt\n",
    );
    assert_ne!(classic, DOCKERFILE);
    std::fs::write(ctx.join("Dockerfile"), classic).unwrap();
    let arg = format!("BASE={base}");
    env.ok(&["tag", "busybox:1", &base]);
    env.ok(&[
        "build",
        "--build-arg",
        &arg,
        "-t",
        "app:1",
        ctx.to_str().unwrap(),
    ]);
    docker_ok(&[
        "build",
        "--build-arg",
        &arg,
        "-t",
        &format!("{tag}:1"),
        ctx.to_str().unwrap(),
    ]);

    let ours = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-u",
        "0",
        "app:1",
        "sh",
        "-c",
        LIST,
    ]);
    let theirs = docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-u",
        "0",
        &format!("{tag}:1"),
        "sh",
        "-c",
        LIST,
    ]);
    // /etc/hosts, hostname, resolv.conf are per-container mounts in both: compare names only;
    // /etc/mtab comes from docker's run-time init layer, not from the build
    let strip = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.starts_with("/etc/mtab "))
            .map(|l| {
                if ["/etc/hosts ", "/etc/hostname ", "/etc/resolv.conf "]
                    .iter()
                    .any(|p| l.starts_with(p))
                {
                    l.split(' ').next().unwrap_or("").to_string()
                } else {
                    l.to_string()
                }
            })
            .collect()
    };
    assert_eq!(strip(&ours), strip(&theirs), "final filesystems differ");

    let ours: Value = serde_json::from_str(&env.ok(&["image", "inspect", "app:1"])).unwrap();
    let theirs: Value =
        serde_json::from_str(&docker_ok(&["image", "inspect", &format!("{tag}:1")])).unwrap();
    for k in CONFIG_KEYS {
        assert_eq!(
            norm(&ours[0]["Config"][k]),
            norm(&theirs[0]["Config"][k]),
            "config {k} differs"
        );
    }
}
