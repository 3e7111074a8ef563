//! Shared helpers of the registry tests: a server on a free loopback port over a temp root,
//! images made of generated layers, and the busybox base image.
#![allow(dead_code)]

use gabang_content::{Digest, Image, ImageRef, NewLayer, Store};
use gabang_registry::registry::{Config, Registry};
use gabang_registry::server::BackgroundServer;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

pub struct TestRegistry {
    pub dir: tempfile::TempDir,
    pub store: Arc<Store>,
    pub reg: Arc<Registry>,
    pub server: BackgroundServer,
}

impl TestRegistry {
    pub fn start(cfg: Config) -> TestRegistry {
        Self::start_tls(cfg, None)
    }
    pub fn start_tls(cfg: Config, tls: Option<Arc<rustls::ServerConfig>>) -> TestRegistry {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let reg = Arc::new(Registry::open(store.clone(), cfg).unwrap());
        let server =
            BackgroundServer::start(reg.clone(), "127.0.0.1:0".parse().unwrap(), tls).unwrap();
        TestRegistry {
            dir,
            store,
            reg,
            server,
        }
    }
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.server.addr.port())
    }
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.host(), path)
    }
}

/// A tar holding one file.
pub fn tar_with(name: &str, content: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, content).unwrap();
    b.into_inner().unwrap()
}

/// Store uncompressed tar layers and make an image of them tagged `tag`.
pub fn make_image(store: &Store, tag: &str, layers: &[Vec<u8>]) -> Image {
    let mut news = Vec::new();
    for l in layers {
        let d = store.blobs().put(l).unwrap();
        news.push(NewLayer {
            digest: d.clone(),
            size: l.len() as u64,
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            diff_id: d,
        });
    }
    let diff_ids: Vec<String> = news.iter().map(|n| n.diff_id.to_string()).collect();
    let cfg = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let r = ImageRef::parse(tag).unwrap();
    store
        .create_image_raw(&serde_json::to_vec(&cfg).unwrap(), &news, &[r])
        .unwrap()
}

/// Pseudo-random bytes (xorshift), so layers do not compress or dedupe by accident.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The busybox rootfs tarball (made once per test binary).
pub fn busybox_tar() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("gabang-registry-bb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("busybox.tar");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/make-busybox-rootfs.sh");
        let st = std::process::Command::new("bash")
            .arg(script)
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "make-busybox-rootfs.sh failed");
        out
    })
    .clone()
}

pub fn import_busybox(store: &Store, tag: &str) -> Image {
    let r = ImageRef::parse(tag).unwrap();
    gabang_content::import::import(
        store,
        &busybox_tar(),
        Some(&r),
        &Default::default(),
        &|_| {},
    )
    .unwrap()
}

pub fn sha(bytes: &[u8]) -> Digest {
    Digest::sha256_of(bytes)
}

/// Whether a command exists.
pub fn have(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// CNCF Distribution on a free loopback port with its own config and storage; killed on drop.
pub struct Distribution {
    child: Child,
    pub host: String,
    pub dir: tempfile::TempDir,
}

impl Distribution {
    pub fn start() -> Distribution {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry missing (apt-get install docker-registry)");
        let host = format!("127.0.0.1:{port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(&host).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Distribution { child, host, dir }
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
