//! Shared by `tests/server.rs` and `benches/exec.rs`: a runtime on a temp root with a busybox
//! layer and labelled containers (removed on drop), and an API server + agent endpoint + Node.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use gabang_agent::labels;
use gabang_agent::server::{self, EndpointConfig, EndpointHandle};
use gabang_apiserver::{serve, ServerConfig, ServerHandle, StoreSpec};
use gabang_runtime::{Attach, CreateRequest, NetworkMode, RunOptions, Runtime, RuntimeConfig};
use gabang_store::{Backend, SqliteBackend, SqliteConfig};
use oci_spec::image::{ConfigBuilder, ImageConfigurationBuilder};

/// The runtime's shim binary (a bin target of gabang-runtime), built on first use.
pub fn shim_exe() -> PathBuf {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let out = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "gabang-runtime",
                "--bin",
                "gabang-runtime-shim",
                "--message-format=json",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::inherit())
            .output()
            .expect("cargo runs");
        assert!(out.status.success(), "building gabang-runtime-shim failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["target"]["name"] == "gabang-runtime-shim")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reports the shim executable")
    })
    .clone()
}

/// A busybox rootfs from Debian's busybox-static.
pub fn busybox_layer(dir: &Path) {
    let bb = Path::new("/usr/bin/busybox");
    assert!(bb.exists(), "apt-get install busybox-static");
    for d in ["bin", "etc", "tmp", "root", "proc", "sys", "dev"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy(bb, dir.join("bin/busybox")).unwrap();
    let out = Command::new(bb).arg("--list").output().unwrap();
    for name in String::from_utf8_lossy(&out.stdout).lines() {
        if name != "busybox" {
            let _ = std::os::unix::fs::symlink("/bin/busybox", dir.join("bin").join(name));
        }
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
}

/// A runtime on a temp root; removes every container it made on drop.
pub struct Node {
    pub rt: Arc<Runtime>,
    layer: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Node {
    pub fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("gbsrv")
            .tempdir_in("/var/tmp")
            .unwrap();
        let layer = tmp.path().join("layer");
        busybox_layer(&layer);
        let rt = Runtime::new(RuntimeConfig {
            root: tmp.path().join("root"),
            shim_exe: shim_exe(),
            shim_prefix_args: vec![],
        })
        .unwrap();
        Node {
            rt: Arc::new(rt),
            layer,
            _tmp: tmp,
        }
    }

    /// Starts a container of pod `default/<pod>` with the agent's labels.
    pub fn run(&self, pod: &str, container: &str, attempt: u32, script: &str) -> String {
        let mut l = BTreeMap::new();
        l.insert(labels::POD_NAMESPACE.to_string(), "default".to_string());
        l.insert(labels::POD_NAME.to_string(), pod.to_string());
        l.insert(labels::POD_UID.to_string(), format!("uid-{pod}"));
        l.insert(labels::CONTAINER_NAME.to_string(), container.to_string());
        l.insert(labels::ATTEMPT.to_string(), attempt.to_string());
        let req = CreateRequest {
            image: "busybox:test".into(),
            image_id: "sha256:test".into(),
            lower_dirs: vec![self.layer.clone()],
            image_config: ImageConfigurationBuilder::default()
                .config(
                    ConfigBuilder::default()
                        .env(vec!["PATH=/bin".to_owned()])
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
            options: RunOptions {
                cmd: vec!["sh".into(), "-c".into(), script.into()],
                network: NetworkMode::None,
                labels: l,
                ..Default::default()
            },
        };
        let id = self.rt.create(req).unwrap();
        self.rt.start(&id, Attach::Detached).unwrap();
        id
    }

    pub fn log(&self, id: &str) -> String {
        let mut out = Vec::new();
        self.rt
            .logs(id, &Default::default(), &mut out, &mut Vec::new())
            .unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    pub fn exited(&self, id: &str) -> bool {
        self.rt
            .list(true)
            .unwrap()
            .iter()
            .any(|c| c.id == id && !c.state.status.is_active())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(list) = self.rt.list(true) {
            for c in list {
                let _ = self.rt.remove(&c.id, true);
            }
        }
    }
}

pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

/// The API server, the endpoint and a Node object pointing at it.
pub struct Cluster {
    pub api: ServerHandle,
    pub endpoint: EndpointHandle,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn start(node: &Node) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Backend> = Arc::new(
            SqliteBackend::open(&dir.path().join("state.db"), SqliteConfig::default()).unwrap(),
        );
        let api = serve(ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().join("pki"),
            store: StoreSpec::Backend(store),
        })
        .await
        .unwrap();
        let endpoint = server::start(
            EndpointConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                token: api.token.clone(),
            },
            node.rt.clone(),
        )
        .unwrap();
        let c = Cluster { api, endpoint, dir };
        let manifest = c.write(
            "node.yaml",
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n",
        );
        c.ok(&["apply", "-f", &manifest]);
        let status = serde_json::json!({"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "n1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": c.endpoint.local_addr.port()}}}});
        c.ok(&[
            "patch",
            "node",
            "n1",
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ]);
        c
    }

    /// A Pod bound to n1 with these containers.
    pub fn pod(&self, name: &str, containers: &[&str]) {
        let cs: Vec<String> = containers
            .iter()
            .map(|c| format!("  - {{name: {c}, image: busybox:test}}\n"))
            .collect();
        let f = self.write(
            &format!("{name}.yaml"),
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: n1\n  containers:\n{}",
                cs.concat()
            ),
        );
        self.ok(&["apply", "-f", &f]);
    }

    pub fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    pub fn kubectl(&self) -> Command {
        let mut c = Command::new("kubectl");
        c.env("KUBECONFIG", &self.api.kubeconfig)
            .env("HOME", self.dir.path())
            .current_dir(self.dir.path());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.kubectl().args(args).output().expect("kubectl runs")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// curl -k straight to the endpoint; returns (HTTP code, body).
    pub fn curl_endpoint(&self, token: Option<&str>, path: &str) -> (u16, String) {
        let mut c = Command::new("curl");
        c.args(["-sk", "-w", "\n%{http_code}"]);
        if let Some(t) = token {
            c.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        let out = c
            .arg(format!("https://{}{path}", self.endpoint.local_addr))
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}
