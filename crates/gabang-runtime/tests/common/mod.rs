//! Shared helpers: a busybox rootfs from Debian's busybox-static, a runtime on a temp root,
//! and a guard that removes every container (and so its mounts, cgroups, netns) on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gabang_runtime::{CreateRequest, RunOptions, Runtime, RuntimeConfig};
use oci_spec::image::{ConfigBuilder, ImageConfiguration, ImageConfigurationBuilder};

/// Build a busybox rootfs layer in `dir`.
pub fn busybox_layer(dir: &Path) {
    let bb = Path::new("/usr/bin/busybox");
    assert!(bb.exists(), "apt-get install busybox-static");
    for d in [
        "bin", "etc", "tmp", "root", "proc", "sys", "dev", "home/app",
    ] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy(bb, dir.join("bin/busybox")).unwrap();
    let out = std::process::Command::new(bb)
        .arg("--list")
        .output()
        .unwrap();
    for name in String::from_utf8_lossy(&out.stdout).lines() {
        if name != "busybox" {
            let _ = std::os::unix::fs::symlink("/bin/busybox", dir.join("bin").join(name));
        }
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nwheel:x:10:app\n",
    )
    .unwrap();
    std::fs::write(dir.join("bin/noexec"), "#!/bin/sh\n").unwrap();
}

pub struct Env {
    pub tmp: tempfile::TempDir,
    pub rt: Runtime,
    pub layers: Vec<PathBuf>,
}

pub fn shim_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gabang-runtime-shim"))
}

impl Env {
    pub fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("gbrt")
            .tempdir_in("/var/tmp")
            .unwrap();
        let layer = tmp.path().join("layers/0");
        busybox_layer(&layer);
        let layer2 = tmp.path().join("layers/1");
        std::fs::create_dir_all(layer2.join("etc")).unwrap();
        std::fs::write(layer2.join("etc/motd"), "top layer\n").unwrap();
        let rt = Runtime::new(RuntimeConfig {
            root: tmp.path().join("root"),
            shim_exe: shim_exe(),
            shim_prefix_args: vec![],
        })
        .unwrap();
        Env {
            tmp,
            rt,
            layers: vec![layer, layer2],
        }
    }

    pub fn image(&self) -> ImageConfiguration {
        ImageConfigurationBuilder::default()
            .config(
                ConfigBuilder::default()
                    .env(vec!["PATH=/bin".to_owned(), "FROM_IMAGE=1".to_owned()])
                    .cmd(vec!["sh".to_owned()])
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    pub fn req(&self, opts: RunOptions) -> CreateRequest {
        CreateRequest {
            image: "busybox:test".into(),
            image_id: "sha256:test".into(),
            lower_dirs: self.layers.clone(),
            image_config: self.image(),
            options: opts,
        }
    }

    pub fn read_log(&self, id: &str) -> String {
        let mut out = Vec::new();
        let mut err = Vec::new();
        self.rt
            .logs(id, &Default::default(), &mut out, &mut err)
            .unwrap();
        String::from_utf8_lossy(&out).into_owned() + &String::from_utf8_lossy(&err)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Ok(list) = self.rt.list(true) {
            for c in list {
                let _ = self.rt.remove(&c.id, true);
            }
        }
    }
}

pub fn opts(cmd: &[&str]) -> RunOptions {
    RunOptions {
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        network: gabang_runtime::NetworkMode::None,
        ..Default::default()
    }
}

/// Poll `f` until true or 30 s pass.
pub fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
