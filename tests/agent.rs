//! End-to-end: `gabang up` (API server + controllers + registry + agent in one process) and a
//! second `gabang agent`, driven with the real `kubectl`. A Deployment of busybox httpd comes
//! up with pod IPs on the node, answers HTTP, replaces a deleted pod (whose sandbox goes), is
//! adopted — not restarted, not duplicated — by a `gabang up` restarted after `kill -9`, and
//! spreads over both nodes when scaled up.
//!
//! Everything runs in a network namespace the test thread joins (bridges, veths, ports and
//! nft rules never touch the host); guards delete the pods (so sandboxes, mounts and cgroups
//! are released), kill the processes and remove the namespace even when the test fails.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::Netns;

const BIN: &str = env!("CARGO_BIN_EXE_gabang");

/// A `gabang up` or `gabang agent` process, killed on drop.
struct Proc {
    child: Option<Child>,
}

impl Proc {
    fn spawn(root: &Path, args: &[&str], log: &Path) -> Proc {
        let out = std::fs::File::create(log).unwrap();
        let child = Command::new(BIN)
            .arg("--root")
            .arg(root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Proc { child: Some(child) }
    }
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The test's world; dropping it deletes the pods while the agents still run, then kills the
/// agents, removes any container left in either root, and leaves the namespace.
struct Env {
    tmp: tempfile::TempDir,
    up: Option<Proc>,
    agent2: Option<Proc>,
    _ns: Netns,
}

impl Env {
    fn new() -> Env {
        let ns = Netns::enter("gbagent", "e2e");
        let tmp = tempfile::Builder::new()
            .prefix("gbagent")
            .tempdir_in("/var/tmp")
            .unwrap();
        let tar = tmp.path().join("busybox.tar");
        let o = Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/make-busybox-rootfs.sh"
            ))
            .arg(&tar)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let env = Env {
            tmp,
            up: None,
            agent2: None,
            _ns: ns,
        };
        for root in [env.root1(), env.root2()] {
            let o = Command::new(BIN)
                .arg("--root")
                .arg(&root)
                .args(["import", tar.to_str().unwrap(), "busybox:1"])
                .args(["-c", "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
                .args(["-c", "CMD [\"sh\"]"])
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        env
    }
    fn root1(&self) -> PathBuf {
        self.tmp.path().join("root1")
    }
    fn root2(&self) -> PathBuf {
        self.tmp.path().join("root2")
    }
    fn kubeconfig(&self) -> PathBuf {
        self.root1().join("cluster/admin.kubeconfig")
    }
    fn start_up(&mut self, log: &str) {
        self.up = Some(Proc::spawn(
            &self.root1(),
            &[
                "up",
                "--listen",
                "127.0.0.1:6443",
                "--registry",
                "127.0.0.1:5000",
                "--node-name",
                "n1",
                "--pod-cidr",
                "10.42.201.0/24",
                "--port",
                "10250",
            ],
            &self.tmp.path().join(log),
        ));
    }
    fn start_agent2(&mut self) {
        // The explicit form (the bench uses --kubeconfig).
        let data = self.root1().join("cluster");
        let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
        let ca = data.join("ca.crt");
        self.agent2 = Some(Proc::spawn(
            &self.root2(),
            &[
                "agent",
                "--server",
                "https://127.0.0.1:6443",
                "--token",
                token.trim(),
                "--ca-file",
                ca.to_str().unwrap(),
                "--node-name",
                "n2",
                "--pod-cidr",
                "10.42.202.0/24",
                "--port",
                "10251",
            ],
            &self.tmp.path().join("agent2.log"),
        ));
    }
    fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let o = Command::new("kubectl")
            .env("KUBECONFIG", self.kubeconfig())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }
    fn kubectl_ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.kubectl(args);
        assert!(ok, "kubectl {args:?}: {err}\n{}", self.logs());
        out
    }
    fn kubectl_stdin(&self, args: &[&str], input: &str) {
        let mut c = Command::new("kubectl")
            .env("KUBECONFIG", self.kubeconfig())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    fn pods(&self) -> Vec<Value> {
        let (ok, out, _) = self.kubectl(&["get", "pods", "-o", "json"]);
        if !ok {
            return Vec::new();
        }
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        v["items"].as_array().cloned().unwrap_or_default()
    }
    fn node_ready(&self, node: &str) -> bool {
        let (ok, out, _) = self.kubectl(&["get", "node", node, "-o", "json"]);
        if !ok {
            return false;
        }
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        v["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    }
    /// Running containers of a root (`gabang ps -q --no-trunc`).
    fn running(&self, root: &Path) -> Vec<String> {
        let o = Command::new(BIN)
            .arg("--root")
            .arg(root)
            .args(["ps", "-q", "--no-trunc"])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "gabang ps: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(String::from)
            .collect()
    }
    fn logs(&self) -> String {
        let mut s = String::new();
        for f in ["up.log", "up2.log", "agent2.log"] {
            if let Ok(t) = std::fs::read_to_string(self.tmp.path().join(f)) {
                s.push_str(&format!("--- {f}\n{t}"));
            }
        }
        s
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if self.up.is_some() {
            let _ = self.kubectl(&["delete", "deployment", "--all", "--wait=false"]);
            let _ = self.kubectl(&["delete", "pod", "--all", "--wait=false"]);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                let (ok, out, _) = self.kubectl(&["get", "pods", "-o", "name"]);
                if !ok || out.trim().is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        if let Some(mut p) = self.agent2.take() {
            p.kill9();
        }
        if let Some(mut p) = self.up.take() {
            p.kill9();
        }
        for root in [self.root1(), self.root2()] {
            let o = Command::new(BIN)
                .arg("--root")
                .arg(&root)
                .args(["ps", "-aq", "--no-trunc"])
                .output();
            if let Ok(o) = o {
                for id in String::from_utf8_lossy(&o.stdout).lines() {
                    let _ = Command::new(BIN)
                        .arg("--root")
                        .arg(&root)
                        .args(["rm", "-f", id])
                        .output();
                }
            }
        }
    }
}

fn eventually(env: &Env, what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let (_, pods, _) = env.kubectl(&["get", "pods", "-o", "wide"]);
    panic!("timed out waiting for {what}\n{pods}\n{}", env.logs());
}

fn is_ready(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && p["metadata"]["deletionTimestamp"].is_null()
        && p["status"]["podIP"].is_string()
        && p["spec"]["nodeName"].is_string()
        && p["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn ready_pods(env: &Env) -> Vec<Value> {
    env.pods().into_iter().filter(is_ready).collect()
}

fn http_get(ip: &str) -> String {
    let mut s = std::net::TcpStream::connect_timeout(
        &format!("{ip}:80").parse().unwrap(),
        Duration::from_secs(5),
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn uid(p: &Value) -> String {
    p["metadata"]["uid"].as_str().unwrap_or("").to_string()
}

fn container_id(p: &Value) -> String {
    p["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: httpd
        image: busybox:1
        imagePullPolicy: IfNotPresent
        command: ["httpd", "-f", "-p", "80", "-h", "/var/www"]
"#;

#[test]
fn up_runs_a_deployment_adopts_after_kill9_and_a_second_agent_joins() {
    let mut env = Env::new();
    env.start_up("up.log");
    eventually(&env, "node n1 Ready", 60, || env.node_ready("n1"));
    env.kubectl_stdin(&["apply", "-f", "-"], DEPLOYMENT);
    eventually(&env, "3 Ready pods", 90, || ready_pods(&env).len() == 3);

    // What kubectl shows: Running, pod IPs from the node's range, the NODE column.
    let wide = env.kubectl_ok(&["get", "pods", "-o", "wide"]);
    assert_eq!(wide.matches("Running").count(), 3, "{wide}");
    assert_eq!(wide.matches("10.42.201.").count(), 3, "{wide}");
    assert_eq!(
        wide.lines()
            .filter(|l| l.split_whitespace().nth(6) == Some("n1"))
            .count(),
        3,
        "{wide}"
    );
    let pods = ready_pods(&env);
    let ip = pods[0]["status"]["podIP"].as_str().unwrap().to_string();
    let body = http_get(&ip);
    assert!(body.contains("hello from a gabang bag"), "{body}");
    assert_eq!(env.running(&env.root1()).len(), 3);

    // logs and exec reach the container through the API server and the agent's endpoint.
    let name0 = pods[0]["metadata"]["name"].as_str().unwrap().to_string();
    env.kubectl_ok(&["logs", &name0]);
    let out = env.kubectl_ok(&["exec", &name0, "--", "cat", "/var/www/index.html"]);
    assert!(out.contains("hello from a gabang bag"), "{out}");

    // Delete a pod: the ReplicaSet makes a new one; the old pod's sandbox and container go.
    let victim = pods[0]["metadata"]["name"].as_str().unwrap().to_string();
    let victim_uid = uid(&pods[0]);
    let victim_cid = container_id(&pods[0]);
    env.kubectl_ok(&["delete", "pod", &victim, "--wait=false"]);
    eventually(&env, "a replacement pod", 60, || {
        let ready = ready_pods(&env);
        ready.len() == 3
            && ready.iter().all(|p| uid(p) != victim_uid)
            && env.pods().iter().all(|p| uid(p) != victim_uid)
    });
    let short = victim_cid.trim_start_matches("gabang://").to_string();
    eventually(&env, "the old container removed", 30, || {
        let o = Command::new(BIN)
            .arg("--root")
            .arg(env.root1())
            .args(["ps", "-aq", "--no-trunc"])
            .output()
            .unwrap();
        !String::from_utf8_lossy(&o.stdout).contains(&short)
    });
    assert!(
        !env.root1().join("pods").join(&victim_uid).exists(),
        "the deleted pod's sandbox dir is still there"
    );

    // kill -9 and restart: the same pods and containers are adopted, nothing duplicated.
    let before: Vec<(String, String)> = ready_pods(&env)
        .iter()
        .map(|p| (uid(p), container_id(p)))
        .collect();
    let running_before = env.running(&env.root1());
    assert_eq!(running_before.len(), 3);
    env.up.as_mut().unwrap().kill9();
    env.start_up("up2.log");
    eventually(&env, "the API after restart", 60, || env.node_ready("n1"));
    // Let the restarted agent sync every pod a few times.
    std::thread::sleep(Duration::from_secs(6));
    let after: Vec<(String, String)> = ready_pods(&env)
        .iter()
        .map(|p| (uid(p), container_id(p)))
        .collect();
    let mut b = before.clone();
    let mut a = after.clone();
    b.sort();
    a.sort();
    assert_eq!(a, b, "pods or containers changed across the restart");
    let mut rb = running_before;
    let mut ra = env.running(&env.root1());
    rb.sort();
    ra.sort();
    assert_eq!(ra, rb, "containers restarted or duplicated");
    for p in ready_pods(&env) {
        assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0);
    }

    // A second node joins; a scale-up spreads over both.
    env.start_agent2();
    eventually(&env, "node n2 Ready", 60, || env.node_ready("n2"));
    env.kubectl_ok(&["scale", "deployment", "web", "--replicas=6"]);
    eventually(&env, "6 Ready pods", 90, || ready_pods(&env).len() == 6);
    let ready = ready_pods(&env);
    let on = |n: &str| ready.iter().filter(|p| p["spec"]["nodeName"] == n).count();
    assert!(on("n2") >= 1, "no pod on n2");
    assert_eq!(on("n1") + on("n2"), 6);
    for p in ready.iter().filter(|p| p["spec"]["nodeName"] == "n2") {
        assert!(p["status"]["podIP"]
            .as_str()
            .unwrap()
            .starts_with("10.42.202."));
    }
    assert_eq!(env.running(&env.root2()).len(), on("n2"));
    let n2pod = ready
        .iter()
        .find(|p| p["spec"]["nodeName"] == "n2")
        .unwrap();
    let body = http_get(n2pod["status"]["podIP"].as_str().unwrap());
    assert!(body.contains("hello from a gabang bag"), "{body}");
}
