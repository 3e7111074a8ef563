//! The `gabang` binary end to end: `registry serve` in one root, `import` + `push` from a
//! second, `pull` into a third, `login`/`logout` against an htpasswd-protected server, and
//! `registry gc` after deleting an image with skopeo.

use std::path::Path;
use std::process::{Child, Command, Stdio};

fn gabang(root: &Path, args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_gabang"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env("DOCKER_CONFIG", root.join("docker"))
        .output()
        .unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

fn ok(root: &Path, args: &[&str]) -> String {
    let (good, out) = gabang(root, args);
    assert!(good, "gabang {args:?}: {out}");
    out
}

/// `gabang registry serve` on a free loopback port; killed on drop.
struct Serve(Child, String);
impl Serve {
    fn start(root: &Path, extra: &[&str]) -> Serve {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_gabang"))
            .arg("--root")
            .arg(root)
            .args(["registry", "serve", "--addr", &addr])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..200 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Serve(child, addr)
    }
}
impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn busybox_tar(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("bb.tar");
    let st = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/make-busybox-rootfs.sh"
        ))
        .arg(&out)
        .output()
        .unwrap();
    assert!(st.status.success());
    out
}

#[test]
fn serve_push_pull_gc_from_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let (srv, src, dst) = (
        tmp.path().join("srv"),
        tmp.path().join("src"),
        tmp.path().join("dst"),
    );
    let s = Serve::start(&srv, &["--gc-grace", "0"]);
    let r = format!("{}/e2e/bb:1", s.1);
    let tar = busybox_tar(tmp.path());
    ok(&src, &["import", tar.to_str().unwrap(), &r]);
    let out = ok(&src, &["push", &r]);
    assert!(out.contains("digest: sha256:"), "{out}");
    let out = ok(&dst, &["pull", &r]);
    assert!(out.contains("Status: pulled"), "{out}");
    assert!(ok(&dst, &["images"]).contains("e2e/bb"));
    let (good, out) = gabang(&dst, &["pull", &format!("{}/e2e/none:1", s.1)]);
    assert!(!good && out.contains("not found"), "{out}");
    // Delete with skopeo, then collect: the server's blobs go.
    let st = Command::new("skopeo")
        .args(["delete", "--tls-verify=false", &format!("docker://{r}")])
        .status()
        .unwrap();
    assert!(st.success());
    drop(s);
    let out = ok(&srv, &["registry", "gc", "--grace", "0"]);
    assert!(out.contains("blobs"), "{out}");
    let blobs = std::fs::read_dir(srv.join("content/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0, "{out}");
}

#[test]
fn login_and_logout_against_htpasswd() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("r");
    std::fs::create_dir_all(&root).unwrap();
    // bcrypt hash of "pw" (cost 4).
    let ht = root.join("htpasswd");
    std::fs::write(
        &ht,
        "carol:$2b$04$4tXeP/UB7d3WTcr.cV8bdeJbQYZFnbTfYcwpgQqyVD6SzY6qSryge\n",
    )
    .unwrap();
    let s = Serve::start(&root, &["--htpasswd", ht.to_str().unwrap()]);
    let (good, out) = gabang(&root, &["login", &s.1, "-u", "carol", "-p", "wrong"]);
    assert!(!good && out.contains("authentication"), "{out}");
    let out = ok(&root, &["login", &s.1, "-u", "carol", "-p", "pw"]);
    assert!(out.contains("Login Succeeded"), "{out}");
    let cfg = std::fs::read_to_string(root.join("docker/config.json")).unwrap();
    assert!(cfg.contains(&s.1), "{cfg}");
    // With the stored credentials, push goes through the token flow.
    let tar = busybox_tar(tmp.path());
    let r = format!("{}/auth/bb:1", s.1);
    ok(&root, &["import", tar.to_str().unwrap(), &r]);
    ok(&root, &["push", &r]);
    assert!(ok(&root, &["logout", &s.1]).contains("Removing login credentials"));
    let (good, out) = gabang(&root, &["push", &r]);
    assert!(!good && out.contains("gabang login"), "{out}");
}
