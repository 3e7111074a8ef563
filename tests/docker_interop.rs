//! gabang and a real docker engine (Debian's docker.io) exchange images through
//! `docker save` / `gabang load` and `gabang save --format docker` / `docker load`;
//! the image ID (config digest) agrees. scripts/test.sh starts dockerd when it is missing.

use std::path::Path;
use std::process::Command;

fn docker(args: &[&str]) -> String {
    let o = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI missing (scripts/install-deps.sh)");
    assert!(
        o.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

fn gabang(root: &Path, args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_gabang"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "gabang {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

fn require_dockerd() {
    let ok = Command::new("docker")
        .arg("info")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "no docker engine: scripts/test.sh starts dockerd (--bridge=none --iptables=false)"
    );
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
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    out
}

/// Removes the test's images from the docker engine even when the test fails.
struct DockerImages(Vec<String>);
impl Drop for DockerImages {
    fn drop(&mut self) {
        for i in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", i]).output();
        }
    }
}

#[test]
fn docker_save_loads_into_gabang_and_gabang_save_loads_into_docker() {
    require_dockerd();
    let tmp = tempfile::tempdir().unwrap();
    let tag = format!("gabang-test/bb:{}", std::process::id());
    let back = format!("gabang-test/back:{}", std::process::id());
    let _cleanup = DockerImages(vec![tag.clone(), back.clone()]);
    let tar = busybox_tar(tmp.path());

    // docker import + docker save → gabang load
    let docker_id = docker(&["import", tar.to_str().unwrap(), &tag]);
    let saved = tmp.path().join("docker-save.tar");
    docker(&["save", "-o", saved.to_str().unwrap(), &tag]);
    let root = tmp.path().join("root");
    let out = gabang(&root, &["load", "-i", saved.to_str().unwrap()]);
    assert_eq!(out, format!("Loaded image: {tag}"));
    let doc: serde_json::Value =
        serde_json::from_str(&gabang(&root, &["image", "inspect", &tag])).unwrap();
    assert_eq!(
        doc[0]["Id"],
        docker_id.as_str(),
        "image ID differs from docker's"
    );
    let docker_layers = docker(&["image", "inspect", "-f", "{{json .RootFS.Layers}}", &tag]);
    assert_eq!(doc[0]["RootFS"]["Layers"].to_string(), docker_layers);

    // gabang save --format docker (and OCI) → docker load
    gabang(&root, &["tag", &tag, &back]);
    docker(&["rmi", "-f", &tag]);
    for format in ["docker", "oci"] {
        let ours = tmp.path().join(format!("ours-{format}.tar"));
        gabang(
            &root,
            &[
                "save",
                "--format",
                format,
                "-o",
                ours.to_str().unwrap(),
                &back,
            ],
        );
        let _ = Command::new("docker").args(["rmi", "-f", &back]).output();
        let out = docker(&["load", "-i", ours.to_str().unwrap()]);
        assert!(out.contains(&back), "{format}: {out}");
        assert_eq!(
            docker(&["image", "inspect", "-f", "{{.Id}}", &back]),
            docker_id,
            "{format}"
        );
    }
}
