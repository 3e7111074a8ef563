//! The logs/exec endpoint behind the real API server, driven by real kubectl (v1.32) against
//! real containers: the API server (gabang-apiserver) proxies `pods/log` and `pods/exec` to the
//! agent endpoint of the pod's Node, which finds the runtime container by its labels.
//! Containers are made here with the agent's labels (no pod runtime needed); a guard removes
//! them even when an assertion fails.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
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
fn shim_exe() -> PathBuf {
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
fn busybox_layer(dir: &Path) {
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
struct Node {
    rt: Arc<Runtime>,
    layer: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Node {
    fn new() -> Self {
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
    fn run(&self, pod: &str, container: &str, attempt: u32, script: &str) -> String {
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

    fn log(&self, id: &str) -> String {
        let mut out = Vec::new();
        self.rt
            .logs(id, &Default::default(), &mut out, &mut Vec::new())
            .unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    fn exited(&self, id: &str) -> bool {
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

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
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
struct Cluster {
    api: ServerHandle,
    endpoint: EndpointHandle,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(node: &Node) -> Self {
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
    fn pod(&self, name: &str, containers: &[&str]) {
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

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    fn kubectl(&self) -> Command {
        let mut c = Command::new("kubectl");
        c.env("KUBECONFIG", &self.api.kubeconfig)
            .env("HOME", self.dir.path())
            .current_dir(self.dir.path());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.kubectl().args(args).output().expect("kubectl runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// curl -k straight to the endpoint; returns (HTTP code, body).
    fn curl_endpoint(&self, token: Option<&str>, path: &str) -> (u16, String) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_through_the_api_server() {
    let node = Node::new();
    let old = node.run("web", "app", 0, "echo old-1; echo old-2");
    eventually("the first attempt to exit", || node.exited(&old));
    let app = node.run(
        "web",
        "app",
        1,
        "echo one; echo two; echo three; exec sleep 1000",
    );
    let side = node.run(
        "web",
        "side",
        0,
        "echo side-out; echo side-err >&2; exec sleep 1000",
    );
    eventually("app's output", || node.log(&app).contains("three"));
    eventually("side's output", || node.log(&side).contains("side-out"));
    let c = Cluster::start(&node).await;
    c.pod("web", &["app", "side"]);

    assert_eq!(c.ok(&["logs", "web", "-c", "app"]), "one\ntwo\nthree\n");
    // No -c: kubectl picks the first container.
    assert_eq!(c.ok(&["logs", "web"]), "one\ntwo\nthree\n");
    let side_log = c.ok(&["logs", "web", "-c", "side"]);
    assert!(
        side_log.contains("side-out\n") && side_log.contains("side-err\n"),
        "{side_log}"
    );
    assert_eq!(c.ok(&["logs", "web", "-c", "app", "--tail=1"]), "three\n");
    let ts = c.ok(&["logs", "web", "-c", "app", "--tail=2", "--timestamps"]);
    let lines: Vec<&str> = ts.lines().collect();
    assert_eq!(lines.len(), 2, "{ts}");
    for (l, want) in lines.iter().zip(["two", "three"]) {
        let (t, text) = l.split_once(' ').unwrap();
        assert_eq!(text, want);
        assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{l}");
    }
    assert_eq!(
        c.ok(&["logs", "web", "-c", "app", "--previous"]),
        "old-1\nold-2\n"
    );
    assert_eq!(
        c.ok(&["logs", "web", "-c", "app", "--limit-bytes=5"]),
        "one\nt"
    );
    let e = c.fails(&["logs", "web", "-c", "side", "--previous"]);
    assert!(
        e.contains("previous terminated container \"side\" in pod \"web\" not found"),
        "{e}"
    );
    let e = c.fails(&["logs", "web", "-c", "nope"]);
    assert!(e.contains("container nope is not valid for pod web"), "{e}");
    let e = c.fails(&["logs", "missing"]);
    assert!(e.contains("pods \"missing\" not found"), "{e}");
    // A pod not bound to a node.
    let f = c.write(
        "free.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: free\nspec:\n  containers:\n  - {name: a, image: busybox:test}\n",
    );
    c.ok(&["apply", "-f", &f]);
    let e = c.fails(&["logs", "free"]);
    assert!(e.contains("pod free does not have a host assigned"), "{e}");

    // -f streams until the container exits; the container waits for a file made by exec.
    let job = node.run(
        "job",
        "main",
        0,
        "echo start; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo end",
    );
    eventually("job's output", || node.log(&job).contains("start"));
    c.pod("job", &["main"]);
    let mut follow = c
        .kubectl()
        .args(["logs", "-f", "job"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(follow.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "start\n");
    c.ok(&["exec", "job", "--", "touch", "/tmp/go"]);
    line.clear();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "end\n");
    line.clear();
    assert_eq!(out.read_line(&mut line).unwrap(), 0, "EOF after the exit");
    assert!(follow.wait().unwrap().success());

    // Discovery lists the subresources.
    let res = c.ok(&["get", "--raw", "/api/v1"]);
    assert!(
        res.contains("\"pods/log\"") && res.contains("\"pods/exec\""),
        "{res}"
    );
    c.api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_through_the_api_server() {
    let node = Node::new();
    let app = node.run("web", "app", 0, "exec sleep 1000");
    let c = Cluster::start(&node).await;
    c.pod("web", &["app"]);
    eventually("app to run", || {
        node.rt.list(false).unwrap().iter().any(|s| s.id == app)
    });

    let hostname = node.rt.inspect(&app).unwrap()["Config"]["Hostname"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        c.ok(&["exec", "web", "--", "cat", "/etc/hostname"]).trim(),
        hostname
    );
    // stdout and stderr arrive on their own channels.
    let out = c.run(&[
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "echo to-out; echo to-err >&2",
    ]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "to-out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-err\n");

    // The exit code comes back through the status channel.
    let out = c.run(&["exec", "web", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");

    // stdin, closed at EOF (protocol v5).
    let mut child = c
        .kubectl()
        .args(["exec", "-i", "web", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hi\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");

    // A terminal: kubectl -t needs one, so run it under script(1).
    let cmd = format!(
        "KUBECONFIG={} kubectl exec -it web -- sh -c 'test -t 0 && test -t 1 && echo in-tty'",
        c.api.kubeconfig.display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(Stdio::null())
        .current_dir(c.dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // The terminal's line discipline turns \n into \r\n.
    assert!(text.contains("in-tty\r\n"), "{text:?}");

    // Errors.
    let e = c.fails(&["exec", "web", "-c", "nope", "--", "true"]);
    assert!(e.contains("container nope is not valid for pod web"), "{e}");
    let out = c.run(&["exec", "web", "--", "no-such-binary"]);
    assert!(!out.status.success());

    // The endpoint itself only answers the API server's token.
    let path = "/containerLogs/default/web/app";
    assert_eq!(c.curl_endpoint(None, path).0, 401);
    assert_eq!(c.curl_endpoint(Some("wrong"), path).0, 401);
    assert_eq!(c.curl_endpoint(Some(&c.api.token), path).0, 200);
    let (code, body) = c.curl_endpoint(Some(&c.api.token), "/containerLogs/default/web/nope");
    assert_eq!(code, 404, "{body}");
    assert!(
        body.contains("container \"nope\" in pod \"web\" not found"),
        "{body}"
    );
    let (code, body) = c.curl_endpoint(
        Some(&c.api.token),
        "/exec/default/web/app?command=true&stdout=1",
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("websocket"), "{body}");
    c.api.shutdown().await;
}
