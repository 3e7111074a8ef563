//! Shared helpers for the pod tests: a node (temp root with a busybox image in its content
//! store, its own pod bridge and pod CIDR) whose guard terminates every pod and removes the
//! bridge on drop, fake configMap/secret sources, pod builders and polling.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gabang_agent::pods::{PodRuntime, PodRuntimeConfig, SyncOutcome};
use gabang_agent::podspec::RefSource;
use k8s_openapi::api::core::v1::{ConfigMap, ContainerStatus, Pod, Secret};

pub const IMAGE: &str = "busybox:test";

/// A busybox rootfs (as `scripts/make-busybox-rootfs.sh` makes it) in `dir`.
pub fn busybox_rootfs(dir: &Path) {
    let bb = Path::new("/usr/bin/busybox");
    assert!(bb.exists(), "apt-get install busybox-static");
    for d in ["bin", "etc", "tmp", "root", "var/www", "proc", "sys", "dev"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy(bb, dir.join("bin/busybox")).unwrap();
    let out = std::process::Command::new(bb)
        .arg("--list")
        .output()
        .unwrap();
    for name in String::from_utf8_lossy(&out.stdout).lines() {
        if name != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(name));
        }
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    std::fs::write(
        dir.join("var/www/index.html"),
        "<h1>hello from a pod</h1>\n",
    )
    .unwrap();
}

/// Import a busybox image tagged `busybox:test` (CMD sh) into the content store at `root`.
pub fn import_busybox(root: &Path) {
    let rootfs = root.join("busybox-rootfs");
    busybox_rootfs(&rootfs);
    let store = gabang_content::Store::open(root).unwrap();
    let tag = gabang_content::ImageRef::parse(IMAGE).unwrap();
    gabang_content::import::import(
        &store,
        &rootfs,
        Some(&tag),
        &gabang_content::import::ImportOptions {
            changes: vec!["CMD [\"sh\"]".into(), "ENV PATH=/bin".into()],
            message: None,
        },
        &|_| {},
    )
    .unwrap();
    std::fs::remove_dir_all(rootfs).unwrap();
}

/// configMaps and secrets the tests can change.
#[derive(Default)]
pub struct Refs {
    pub config_maps: Mutex<BTreeMap<String, ConfigMap>>,
    pub secrets: Mutex<BTreeMap<String, Secret>>,
}

impl Refs {
    pub fn set_config_map(&self, name: &str, data: &[(&str, &str)]) {
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default"},
            "data": data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        }))
        .unwrap();
        self.config_maps
            .lock()
            .unwrap()
            .insert(format!("default/{name}"), cm);
    }
}

impl RefSource for Refs {
    fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, String> {
        Ok(self
            .config_maps
            .lock()
            .unwrap()
            .get(&format!("{namespace}/{name}"))
            .cloned())
    }
    fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, String> {
        Ok(self
            .secrets
            .lock()
            .unwrap()
            .get(&format!("{namespace}/{name}"))
            .cloned())
    }
}

/// The shim binary: cargo's path in tests, else next to the running example
/// (`target/<profile>/examples/x` → `target/<profile>/gabang-agent-shim`).
pub fn shim_exe() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_gabang-agent-shim") {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().unwrap();
            let dir = exe.parent().and_then(Path::parent).unwrap();
            let shim = dir.join("gabang-agent-shim");
            assert!(
                shim.exists(),
                "{} missing: cargo build -p gabang-agent --bins first",
                shim.display()
            );
            shim
        }
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn random_u32() -> u32 {
    let u = std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap();
    u32::from_str_radix(&u[..8], 16).unwrap()
}

/// A fresh pod uid.
pub fn new_uid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .unwrap()
        .trim()
        .to_owned()
}

/// One node: its root, pod runtime, bridge and CIDR. Drop terminates every pod on it and
/// removes the bridge (also when the test failed).
pub struct Node {
    pub cfg: PodRuntimeConfig,
    pub rt: PodRuntime,
    pub refs: Refs,
    pub tmp: tempfile::TempDir,
}

impl Node {
    pub fn new() -> Node {
        let tmp = tempfile::Builder::new()
            .prefix("gbpods")
            .tempdir_in("/var/tmp")
            .unwrap();
        let root = tmp.path().join("root");
        import_busybox(&root);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let r = random_u32();
        // A /24 out of 10.244.0.0/16 and a bridge name unique in this process and unlikely
        // to clash with another test process.
        let third = ((r >> 8) as u8).wrapping_add((n * 37) as u8);
        let cfg = PodRuntimeConfig {
            root,
            shim_exe: shim_exe(),
            shim_prefix_args: vec![],
            node_name: "node-a".into(),
            host_ip: "192.0.2.10".into(),
            pod_cidr: (Ipv4Addr::new(10, 244, third, 0), 24),
            bridge: format!("gbt{:04x}{n:02}", r & 0xffff),
            allow_host_path: false,
        };
        let rt = PodRuntime::new(cfg.clone()).unwrap();
        Node {
            cfg,
            rt,
            refs: Refs::default(),
            tmp,
        }
    }

    pub fn sync(&self, pod: &Pod) -> SyncOutcome {
        self.rt.sync(pod, &self.refs).unwrap()
    }

    /// Sync until `f` holds (at the pace the runtime asks for, at most 100 ms apart), or
    /// panic after `secs` with the last status.
    pub fn sync_until(
        &self,
        pod: &mut Pod,
        secs: u64,
        mut f: impl FnMut(&SyncOutcome) -> bool,
    ) -> SyncOutcome {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let out = self.sync(pod);
            // Carry the status forward as the API server would.
            pod.status = Some(out.status.clone());
            if f(&out) {
                return out;
            }
            if Instant::now() > deadline {
                panic!(
                    "condition not reached; last status: {}",
                    serde_json::to_string_pretty(&out.status).unwrap()
                );
            }
            let pause = out
                .requeue_after
                .unwrap_or(Duration::from_millis(100))
                .min(Duration::from_millis(100));
            std::thread::sleep(pause);
        }
    }

    /// The ids of the runtime containers labelled with the pod's uid.
    pub fn containers_of(&self, uid: &str) -> Vec<gabang_runtime::ContainerSummary> {
        self.rt
            .runtime()
            .list(true)
            .unwrap()
            .into_iter()
            .filter(|c| {
                c.labels
                    .get(gabang_agent::labels::POD_UID)
                    .map(String::as_str)
                    == Some(uid)
            })
            .collect()
    }

    /// Run `argv` in a running container, returning (exit code, stdout).
    pub fn exec(&self, container_id: &str, argv: &[&str]) -> (i32, String) {
        let spec = gabang_runtime::ExecSpec {
            args: argv.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let out = self
            .rt
            .runtime()
            .exec_command(container_id, &spec)
            .unwrap()
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.rt.pod_dir(uid)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(pods) = self.rt.local_pods() {
            for p in pods {
                let _ = self.rt.terminate(&p.uid, Duration::ZERO);
            }
        }
        let _ = self.rt.network().remove_bridge();
    }
}

/// A pod from JSON `spec`, with a fresh uid.
pub fn pod(name: &str, spec: serde_json::Value) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": new_uid()},
        "spec": spec,
    }))
    .unwrap()
}

pub fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap()
}

/// The status of container `name` (app or init).
pub fn cstatus(out: &SyncOutcome, name: &str) -> ContainerStatus {
    out.status
        .container_statuses
        .iter()
        .flatten()
        .chain(out.status.init_container_statuses.iter().flatten())
        .find(|c| c.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("no status for container {name}"))
}

pub fn phase(out: &SyncOutcome) -> &str {
    out.status.phase.as_deref().unwrap_or("")
}

pub fn condition(out: &SyncOutcome, ty: &str) -> String {
    out.status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == ty)
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

pub fn running(c: &ContainerStatus) -> bool {
    c.state.as_ref().is_some_and(|s| s.running.is_some())
}

pub fn waiting_reason(c: &ContainerStatus) -> String {
    c.state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.clone())
        .unwrap_or_default()
}

/// The runtime id from a `gabang://<id>` containerID.
pub fn runtime_id(c: &ContainerStatus) -> String {
    c.container_id
        .as_deref()
        .and_then(|i| i.strip_prefix("gabang://"))
        .unwrap()
        .to_owned()
}

/// GET `path` from `ip:port` over plain HTTP/1.0; the response body.
pub fn http_get(ip: &str, port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = format!("{ip}:{port}").parse().unwrap();
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

/// Poll `f` until true or `secs` pass.
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Is `path` a mount point (per /proc/self/mountinfo)?
pub fn is_mounted(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| Path::new(m) == path)
}
