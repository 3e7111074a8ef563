//! End-to-end: the `gabang` binary against real tools (skopeo) for import, images,
//! inspect, history, tag, save/load round trips and bad input.

use serde_json::Value;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

struct Env {
    tmp: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Env {
            tmp: tempfile::tempdir().unwrap(),
        }
    }
    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }
    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }
    fn gabang(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_gabang"))
            .arg("--root")
            .arg(self.root())
            .args(args)
            .output()
            .unwrap()
    }
    fn ok(&self, args: &[&str]) -> String {
        let o = self.gabang(args);
        assert!(
            o.status.success(),
            "gabang {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
    fn fail(&self, args: &[&str]) -> String {
        let o = self.gabang(args);
        assert!(!o.status.success(), "gabang {args:?} should fail");
        String::from_utf8(o.stderr).unwrap()
    }
    /// A busybox rootfs tarball made from Debian's busybox-static (the project's script).
    fn busybox_tar(&self) -> PathBuf {
        let tar = self.path("busybox.tar");
        let o = Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/make-busybox-rootfs.sh"
            ))
            .arg(&tar)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "make-busybox-rootfs.sh: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        tar
    }
}

fn skopeo(args: &[&str]) -> String {
    let o = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo missing: scripts/install-deps.sh installs it");
    assert!(
        o.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn inspect(env: &Env, r: &str) -> Value {
    let v: Value = serde_json::from_str(&env.ok(&["image", "inspect", r])).unwrap();
    v[0].clone()
}

#[test]
fn import_list_inspect_history_tag() {
    let env = Env::new();
    let tar = env.busybox_tar();
    let id = env.ok(&[
        "import",
        tar.to_str().unwrap(),
        "busybox:1",
        "-c",
        "CMD [\"sh\"]",
    ]);
    assert!(id.trim().starts_with("sha256:"));
    let out = env.ok(&["images"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("REPOSITORY   TAG   IMAGE ID       CREATED"),
        "{out}"
    );
    assert!(lines[1].starts_with("busybox      1     "), "{out}");
    assert!(lines[1].contains(&id.trim()["sha256:".len()..][..12]));
    let doc = inspect(&env, "busybox:1");
    assert_eq!(doc["Id"], id.trim());
    assert_eq!(doc["RepoTags"][0], "busybox:1");
    assert_eq!(doc["Config"]["Cmd"][0], "sh");
    assert_eq!(doc["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    assert!(doc["Size"].as_u64().unwrap() > 500_000);
    let hist = env.ok(&["image", "history", "busybox:1"]);
    assert!(hist.starts_with("IMAGE"), "{hist}");
    assert!(hist.contains("gabang import"), "{hist}");
    env.ok(&["tag", "busybox:1", "localhost:5000/bb:latest"]);
    let out = env.ok(&["images", "localhost:5000/bb"]);
    assert!(out.contains("localhost:5000/bb   latest"), "{out}");
    assert_eq!(inspect(&env, "localhost:5000/bb:latest")["Id"], id.trim());
    // by short ID
    assert_eq!(
        inspect(&env, &id.trim()["sha256:".len()..][..8])["Id"],
        id.trim()
    );
    assert_eq!(
        env.ok(&["images", "-q"]).trim(),
        &id.trim()["sha256:".len()..][..12]
    );
}

#[test]
fn save_load_round_trips_through_skopeo() {
    let env = Env::new();
    let tar = env.busybox_tar();
    env.ok(&["import", tar.to_str().unwrap(), "busybox:1"]);
    let ours = inspect(&env, "busybox:1");
    let manifest_digest = ours["Descriptor"]["digest"].as_str().unwrap().to_string();

    // gabang save (OCI) → skopeo reads it; digests agree.
    let oci = env.path("bb-oci.tar");
    env.ok(&["save", "-o", oci.to_str().unwrap(), "busybox:1"]);
    let sk: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        &format!("oci-archive:{}", oci.display()),
    ]))
    .unwrap();
    assert_eq!(sk["Digest"], manifest_digest.as_str());
    assert_eq!(
        sk["Layers"],
        ours["RootFS"]["Layers"]
            .as_array()
            .map(|_| sk["Layers"].clone())
            .unwrap()
    );
    let skraw: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--config",
        "--raw",
        &format!("oci-archive:{}", oci.display()),
    ]))
    .unwrap();
    assert_eq!(skraw["rootfs"]["diff_ids"], ours["RootFS"]["Layers"]);

    // gabang save --format docker → skopeo reads it as docker-archive; same image ID.
    let dock = env.path("bb-docker.tar");
    env.ok(&[
        "save",
        "--format",
        "docker",
        "-o",
        dock.to_str().unwrap(),
        "busybox:1",
    ]);
    let skd: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--config",
        "--raw",
        &format!("docker-archive:{}", dock.display()),
    ]))
    .unwrap();
    assert_eq!(skd["rootfs"]["diff_ids"], ours["RootFS"]["Layers"]);

    // skopeo writes an OCI archive and a docker archive; gabang loads both into a fresh root.
    let sk_oci = env.path("sk-oci.tar");
    let sk_dock = env.path("sk-docker.tar");
    skopeo(&[
        "copy",
        &format!("oci-archive:{}", oci.display()),
        &format!("oci-archive:{}:sk/oci:2", sk_oci.display()),
    ]);
    skopeo(&[
        "copy",
        &format!("oci-archive:{}", oci.display()),
        &format!("docker-archive:{}:sk/docker:3", sk_dock.display()),
    ]);
    let env2 = Env::new();
    let out = env2.ok(&["load", "-i", sk_oci.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: sk/oci:2");
    let out = env2.ok(&["load", "-i", sk_dock.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: sk/docker:3");
    // The image ID (config digest) is the same everywhere.
    assert_eq!(inspect(&env2, "sk/oci:2")["Id"], ours["Id"]);
    assert_eq!(inspect(&env2, "sk/docker:3")["Id"], ours["Id"]);
    // Our own archives load back too, with names.
    let out = env2.ok(&["load", "-i", oci.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: busybox:1");
    let out = env2.ok(&["load", "-i", dock.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: busybox:1");
    assert_eq!(inspect(&env2, "busybox:1")["Id"], ours["Id"]);
    // A layer shared by all of these is stored and unpacked once.
    let snaps = fs::read_dir(env2.root().join("snapshots")).unwrap().count();
    assert_eq!(snaps, 1);
}

#[test]
fn rmi_and_prune() {
    let env = Env::new();
    let tar = env.busybox_tar();
    env.ok(&["import", tar.to_str().unwrap(), "bb:1"]);
    env.ok(&["tag", "bb:1", "bb:2"]);
    assert_eq!(env.ok(&["rmi", "bb:2"]).trim(), "Untagged: bb:2");
    let out = env.ok(&["rmi", "bb:1"]);
    assert!(
        out.contains("Untagged: bb:1") && out.contains("Deleted: sha256:"),
        "{out}"
    );
    assert_eq!(env.ok(&["images", "-q"]).trim(), "");
    let blobs = fs::read_dir(env.root().join("content/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0, "rmi collects unreferenced blobs");
    env.ok(&["import", tar.to_str().unwrap()]);
    let out = env.ok(&["images"]);
    assert!(out.contains("<none>       <none>"), "{out}");
    let out = env.ok(&["image", "prune", "-f"]);
    assert!(
        out.contains("deleted: sha256:") && out.contains("Total reclaimed space"),
        "{out}"
    );
    assert_eq!(env.ok(&["images", "-q"]).trim(), "");
}

#[test]
fn bad_input_gets_clear_errors_and_stores_nothing() {
    let env = Env::new();
    let e = env.fail(&["import", "/nonexistent.tar", "x:1"]);
    assert!(e.contains("/nonexistent.tar"), "{e}");
    fs::write(env.path("empty.tar"), b"").unwrap();
    let e = env.fail(&["import", env.path("empty.tar").to_str().unwrap(), "x:1"]);
    assert!(e.contains("empty"), "{e}");
    let tar = env.busybox_tar();
    let e = env.fail(&["import", tar.to_str().unwrap(), "Bad:Name"]);
    assert!(e.contains("lowercase"), "{e}");
    let e = env.fail(&["image", "inspect", "nosuch:1"]);
    assert!(e.contains("nosuch:1"), "{e}");
    let e = env.fail(&["tag", "nosuch", "x:1"]);
    assert!(e.contains("not found"), "{e}");
    fs::write(env.path("junk.tar"), vec![7u8; 4096]).unwrap();
    let e = env.fail(&["load", "-i", env.path("junk.tar").to_str().unwrap()]);
    assert!(e.contains("junk.tar"), "{e}");
    // An OCI archive with a corrupted blob is refused and stores nothing.
    env.ok(&["import", tar.to_str().unwrap(), "bb:1"]);
    let oci = env.path("bb.tar");
    env.ok(&["save", "-o", oci.to_str().unwrap(), "bb:1"]);
    let x = env.path("x");
    fs::create_dir_all(&x).unwrap();
    assert!(Command::new("tar")
        .arg("-C")
        .arg(&x)
        .arg("-xf")
        .arg(&oci)
        .status()
        .unwrap()
        .success());
    let cfgs: Vec<PathBuf> = fs::read_dir(x.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            fs::read(p)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .is_some_and(|v| v.get("rootfs").is_some())
        })
        .collect();
    assert_eq!(cfgs.len(), 1);
    // Same length, one byte changed: only the digest can tell.
    let tampered = fs::read_to_string(&cfgs[0])
        .unwrap()
        .replacen("amd64", "amd65", 1);
    fs::write(&cfgs[0], tampered).unwrap();
    let bad = env.path("bad.tar");
    assert!(Command::new("tar")
        .arg("-C")
        .arg(&x)
        .arg("-cf")
        .arg(&bad)
        .arg(".")
        .status()
        .unwrap()
        .success());
    let env2 = Env::new();
    let e = env2.fail(&["load", "-i", bad.to_str().unwrap()]);
    assert!(e.contains("digest mismatch"), "{e}");
    assert_eq!(env2.ok(&["images", "-q"]).trim(), "");
    let blobs: Vec<_> = fs::read_dir(env2.root().join("content/blobs/sha256"))
        .unwrap()
        .collect();
    // Blobs verified before the bad one may remain until GC, but never under a wrong name.
    for b in blobs {
        let p = b.unwrap().path();
        let hex = p.file_name().unwrap().to_str().unwrap().to_string();
        let bytes = fs::read(&p).unwrap();
        assert_eq!(gabang_content::Digest::sha256_of(&bytes).hex(), hex);
    }
}
