//! The built-in Kubernetes client end to end: a real `gabang server` (API server,
//! controllers, scheduler; no node) on a free loopback port in a temp root, driven with
//! `gabang apply|get|describe|delete|scale|kubectl logs` from the built binary. With no
//! node, pods stay Pending and the scheduler records FailedScheduling events.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_gabang");

/// How long a test waits for the cluster to reach a state before failing (a guard, not
/// a measurement).
const PATIENCE: Duration = Duration::from_secs(60);

/// A `gabang server` in its own temp root; killed on drop, even when the test fails.
struct Server {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        // A port the kernel just handed out: free unless another process takes it between
        // this and the server's bind (then the start is retried on a new one).
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
            let child = Command::new(BIN)
                .arg("--root")
                .arg(dir.path().join("root"))
                .args(["server", "--listen", &format!("127.0.0.1:{port}")])
                .env_remove("KUBECONFIG")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let mut s = Server {
                child: Some(child),
                dir,
            };
            let deadline = Instant::now() + PATIENCE;
            while Instant::now() < deadline {
                if let Some(c) = s.child.as_mut() {
                    if c.try_wait().unwrap().is_some() {
                        break;
                    }
                }
                if s.kubeconfig().exists() && s.run(&["get", "ns"], None).status.success() {
                    return s;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            eprintln!("gabang server on port {port} did not start:\n{}", s.log());
            s.stop();
        }
        panic!("gabang server did not start");
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn kubeconfig(&self) -> PathBuf {
        self.root().join("cluster/admin.kubeconfig")
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// `gabang --root ROOT ARGS…` (the kubeconfig found at ROOT/cluster, $KUBECONFIG unset).
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = Command::new(BIN)
            .arg("--root")
            .arg(self.root())
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        }
        c.wait_with_output().unwrap()
    }

    /// Must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args, None);
        assert!(
            o.status.success(),
            "gabang {args:?} failed ({:?}):\n{}{}\n--- server log\n{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Must fail with exit code 1; returns (stdout, stderr).
    fn fails(&self, args: &[&str]) -> (String, String) {
        let o = self.run(args, None);
        assert_eq!(
            o.status.code(),
            Some(1),
            "gabang {args:?} should fail with 1:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    /// Polls `gabang ARGS` until `done(stdout)`; panics with the last output after PATIENCE.
    fn wait_for(&self, args: &[&str], done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let o = self.run(args, None);
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            if o.status.success() && done(&out) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "gabang {args:?} never got there; last output:\n{out}{}\n--- server log\n{}",
                String::from_utf8_lossy(&o.stderr),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn web_yaml(replicas: u32) -> String {
    format!(
        "apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
# the app
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {{app: web}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: web
        image: busybox:1
        command: [httpd, -f]
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {{app: web}}
  ports:
  - port: 80
    targetPort: 80
"
    )
}

/// Split a table line on runs of spaces.
fn cells(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Each column of a table starts where its header starts, on every line.
fn assert_aligned(table: &str) {
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    let starts: Vec<usize> = header
        .match_indices(|c: char| c != ' ')
        // A column starts after two spaces at least ("NOMINATED NODE" is one header).
        .filter(|(i, _)| *i == 0 || (*i >= 2 && &header.as_bytes()[i - 2..*i] == b"  "))
        .map(|(i, _)| i)
        .collect();
    for l in lines {
        for &s in &starts {
            assert!(
                s == 0 || (l.as_bytes().get(s - 1) == Some(&b' ') && l.len() > s),
                "column at {s} not aligned in:\n{table}"
            );
        }
        // Three spaces at least between columns.
        let row_starts = starts.iter().skip(1);
        for &s in row_starts {
            assert_eq!(&l[s - 3..s], "   ", "{table}");
        }
    }
}

#[test]
fn apply_creates_configures_and_leaves_unchanged() {
    let s = Server::start();
    let f = s.write("web.yaml", &web_yaml(2));
    assert_eq!(
        s.ok(&["apply", "-f", &f]),
        "namespace/shop created\ndeployment.apps/web created\nservice/web created\n"
    );
    assert_eq!(
        s.ok(&["apply", "-f", &f]),
        "namespace/shop unchanged\ndeployment.apps/web unchanged\nservice/web unchanged\n"
    );
    // Changed, from stdin.
    let o = s.run(&["apply", "-f", "-"], Some(&web_yaml(3)));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "namespace/shop unchanged\ndeployment.apps/web configured\nservice/web unchanged\n"
    );
    let d = s.json(&["get", "deploy", "web", "-n", "shop"]);
    assert_eq!(d["kind"], "Deployment");
    assert_eq!(d["apiVersion"], "apps/v1");
    assert_eq!(d["spec"]["replicas"], 3);
    assert!(
        d["metadata"].get("managedFields").is_none(),
        "managedFields are left out like kubectl: {d}"
    );

    // scale, then apply takes the manifest's replicas back.
    assert_eq!(
        s.ok(&["scale", "deploy/web", "--replicas", "5", "-n", "shop"]),
        "deployment.apps/web scaled\n"
    );
    assert_eq!(
        s.json(&["get", "deploy", "web", "-n", "shop"])["spec"]["replicas"],
        5
    );
    let dir = s.dir.path().join("manifests");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("web.yaml"), web_yaml(3)).unwrap();
    std::fs::write(dir.join("notes.txt"), "not a manifest").unwrap();
    assert_eq!(
        s.ok(&["apply", "-f", dir.to_str().unwrap(), "-o", "name"]),
        "namespace/shop\ndeployment.apps/web\nservice/web\n"
    );
    assert_eq!(
        s.json(&["get", "deploy", "web", "-n", "shop"])["spec"]["replicas"],
        3
    );

    // The object in the manifest names its namespace; a different -n is refused.
    let (_, err) = s.fails(&["apply", "-f", &f, "-n", "default"]);
    assert!(
        err.contains("the namespace from the provided object \"shop\" does not match the namespace \"default\""),
        "{err}"
    );
    // A server-side dry run stores nothing.
    let cm = s.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: \"1\"\n",
    );
    assert_eq!(
        s.ok(&["apply", "-f", &cm, "--dry-run", "server"]),
        "configmap/settings created (server dry run)\n"
    );
    s.fails(&["get", "cm", "settings"]);
    assert_eq!(s.ok(&["apply", "-f", &cm]), "configmap/settings created\n");
    let y: serde_yaml::Value =
        serde_yaml::from_str(&s.ok(&["get", "cm", "settings", "-o", "yaml"])).unwrap();
    assert_eq!(y["kind"].as_str(), Some("ConfigMap"));
    assert_eq!(y["data"]["a"].as_str(), Some("1"));
    assert_eq!(y["metadata"]["namespace"].as_str(), Some("default"));
}

#[test]
fn get_prints_tables_lists_and_watches() {
    let s = Server::start();
    let f = s.write("web.yaml", &web_yaml(2));
    s.ok(&["apply", "-f", &f]);
    // The ReplicaSet controller makes the pods; with no node they stay Pending.
    let names = s.wait_for(&["get", "pods", "-n", "shop", "-o", "name"], |o| {
        o.lines().count() == 2
    });
    assert!(names.lines().all(|l| l.starts_with("pod/web-")), "{names}");

    let t = s.ok(&["get", "po", "-n", "shop"]);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(
        cells(lines[0]),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    assert_eq!(lines.len(), 3, "{t}");
    for l in &lines[1..] {
        let c = cells(l);
        assert!(c[0].starts_with("web-"), "{t}");
        assert_eq!(&c[1..4], ["0/1", "Pending", "0"], "{t}");
    }
    assert_aligned(&t);

    let wide = s.ok(&["get", "pods", "-n", "shop", "-o", "wide"]);
    assert_eq!(
        cells(wide.lines().next().unwrap()),
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ]
    );
    assert!(
        wide.lines()
            .skip(1)
            .all(|l| cells(l)[5..] == ["<none>", "<none>", "<none>", "<none>"]),
        "{wide}"
    );
    assert_aligned(&wide);

    let all = s.ok(&["get", "pods", "-A"]);
    assert_eq!(
        cells(all.lines().next().unwrap())[..2],
        ["NAMESPACE", "NAME"]
    );
    assert_eq!(
        all.lines().filter(|l| l.starts_with("shop ")).count(),
        2,
        "{all}"
    );
    assert_aligned(&all);

    // Several types: one block each, names prefixed by their type.
    let multi = s.ok(&["get", "deploy,svc", "-n", "shop"]);
    let blocks: Vec<&str> = multi.split("\n\n").collect();
    assert_eq!(blocks.len(), 2, "{multi}");
    assert_eq!(
        cells(blocks[0].lines().nth(1).unwrap())[0],
        "deployment.apps/web"
    );
    assert_eq!(
        cells(blocks[0].lines().next().unwrap()),
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    );
    assert!(
        blocks[1]
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("service/web "),
        "{multi}"
    );
    assert_eq!(
        s.ok(&[
            "get",
            "svc/web",
            "deployments.apps/web",
            "-n",
            "shop",
            "-o",
            "name"
        ]),
        "service/web\ndeployment.apps/web\n"
    );

    // Selectors.
    assert_eq!(
        s.ok(&["get", "pods", "-n", "shop", "-l", "app=web", "-o", "name"])
            .lines()
            .count(),
        2
    );
    let o = s.run(&["get", "pods", "-n", "shop", "-l", "app=nothing"], None);
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "No resources found in shop namespace.\n"
    );
    let labelled = s.ok(&["get", "deploy", "-n", "shop", "--show-labels"]);
    assert!(
        labelled.lines().next().unwrap().ends_with("LABELS"),
        "{labelled}"
    );
    assert!(
        labelled.lines().nth(1).unwrap().ends_with("app=web"),
        "{labelled}"
    );

    // -o json of a collection: a List.
    let list = s.json(&["get", "pods", "-n", "shop"]);
    assert_eq!(list["kind"], "List");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items
        .iter()
        .all(|p| p["kind"] == "Pod" && p["apiVersion"] == "v1"));
    let y: serde_yaml::Value =
        serde_yaml::from_str(&s.ok(&["get", "deploy", "-n", "shop", "-o", "yaml"])).unwrap();
    assert_eq!(y["kind"].as_str(), Some("List"));
    assert_eq!(y["items"][0]["metadata"]["name"].as_str(), Some("web"));

    // Missing names: the others still print, the error says which, exit code 1.
    let (out, err) = s.fails(&["get", "deploy", "web", "nope", "-n", "shop"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert_eq!(
        err,
        "Error from server (NotFound): deployments.apps \"nope\" not found\n"
    );

    // -w: the list, then a line per change.
    let mut w = Command::new(BIN)
        .arg("--root")
        .arg(s.root())
        .args(["get", "pods", "-n", "default", "-w"])
        .env_remove("KUBECONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = w.stdout.take().unwrap();
    let _guard = Kill(w);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout).lines() {
            if tx.send(l.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let pod = s.write(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: watched\nspec:\n  containers:\n  - name: c\n    image: busybox:1\n",
    );
    s.ok(&["apply", "-f", &pod]);
    let first = rx.recv_timeout(PATIENCE).expect("a watch line");
    // No pods at the start: the header comes with the first event.
    assert_eq!(
        cells(&first),
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    );
    let row = rx.recv_timeout(PATIENCE).expect("a watch row");
    assert_eq!(cells(&row)[..3], ["watched", "0/1", "Pending"]);
}

#[test]
fn describe_shows_details_and_events() {
    let s = Server::start();
    let pod = s.write(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: lonely\n  labels: {app: lonely, tier: x}\nspec:\n  containers:\n  - name: c\n    image: busybox:1\n    command: [sleep, \"3600\"]\n    env:\n    - {name: A, value: b}\n",
    );
    s.ok(&["apply", "-f", &pod]);
    // No node: the scheduler's FailedScheduling event shows in the pod's Events.
    // (The event is written before the pod's PodScheduled condition: wait for both.)
    let d = s.wait_for(&["describe", "pod", "lonely"], |o| {
        o.contains("FailedScheduling") && o.contains("PodScheduled")
    });
    let field = |text: &str, key: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
    };
    assert_eq!(field(&d, "Name:"), "lonely");
    assert_eq!(field(&d, "Namespace:"), "default");
    assert_eq!(field(&d, "Node:"), "<none>");
    assert_eq!(field(&d, "Status:"), "Pending");
    assert_eq!(field(&d, "Labels:"), "app=lonely");
    let labels = d.lines().find(|l| l.starts_with("Labels:")).unwrap();
    let next = d
        .lines()
        .skip_while(|l| !l.starts_with("Labels:"))
        .nth(1)
        .unwrap();
    assert_eq!(next.trim(), "tier=x", "{d}");
    assert_eq!(
        labels.find("app=lonely"),
        next.find("tier=x"),
        "aligned:\n{d}"
    );
    assert!(d.contains("\nContainers:\n  c:\n    Image:"), "{d}");
    assert!(d.contains("    Command:\n      sleep\n      3600\n"), "{d}");
    assert!(d.contains("    Environment:\n      A:"), "{d}");
    assert_eq!(field(&d, "      A:"), "b");
    assert!(d.contains("  PodScheduled   False \n"), "{d}");
    let events = d.split("\nEvents:\n").nth(1).expect("an Events section");
    let ev: Vec<&str> = events.lines().collect();
    assert_eq!(cells(ev[0]), ["Type", "Reason", "Age", "From", "Message"]);
    assert_eq!(cells(ev[1]), ["----", "------", "----", "----", "-------"]);
    let row = cells(ev[2]);
    assert_eq!(row[..2], ["Warning", "FailedScheduling"]);
    assert_eq!(row[3], "default-scheduler");
    assert!(ev[2].contains("0/0 nodes are available"), "{d}");

    let f = s.write("web.yaml", &web_yaml(2));
    s.ok(&["apply", "-f", &f]);
    s.wait_for(&["get", "rs", "-n", "shop", "-o", "name"], |o| {
        !o.is_empty()
    });
    let dep = s.wait_for(&["describe", "deploy/web", "-n", "shop"], |o| {
        o.lines()
            .any(|l| l.starts_with("NewReplicaSet:") && l.contains(" web-"))
    });
    assert_eq!(field(&dep, "Selector:"), "app=web");
    assert!(
        field(&dep, "Replicas:").starts_with("2 desired | "),
        "{dep}"
    );
    assert_eq!(field(&dep, "StrategyType:"), "RollingUpdate");
    assert!(
        dep.contains("Pod Template:\n  Labels:  app=web\n  Containers:\n   web:\n"),
        "{dep}"
    );
    // The ReplicaSet's status catches up with its pods.
    let rs = s.wait_for(&["describe", "rs", "-n", "shop"], |o| {
        o.contains("2 current / 2 desired") && o.contains("2 Waiting")
    });
    assert!(
        field(&rs, "Controlled By:").starts_with("Deployment/web"),
        "{rs}"
    );
    assert_eq!(field(&rs, "Replicas:"), "2 current / 2 desired");
    assert_eq!(
        field(&rs, "Pods Status:"),
        "0 Running / 2 Waiting / 0 Succeeded / 0 Failed"
    );
    let svc = s.ok(&["describe", "svc", "web", "-n", "shop"]);
    assert_eq!(field(&svc, "Selector:"), "app=web");
    assert_eq!(field(&svc, "Type:"), "ClusterIP");
    assert_eq!(field(&svc, "TargetPort:"), "80/TCP");
    assert_eq!(field(&svc, "Endpoints:"), "<none>");

    // A node object (no agent behind it) and a kind with no describer of its own.
    let node = s.write(
        "node.yaml",
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n9\n  labels: {node-role.kubernetes.io/edge: \"\"}\nspec:\n  unschedulable: true\n",
    );
    s.ok(&["apply", "-f", &node]);
    let n = s.ok(&["describe", "no", "n9"]);
    assert_eq!(field(&n, "Name:"), "n9");
    assert_eq!(field(&n, "Roles:"), "edge");
    assert_eq!(field(&n, "Unschedulable:"), "true");
    assert!(n.contains("\nSystem Info:\n"), "{n}");
    let lease = s.write(
        "lease.yaml",
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: l1\nspec:\n  holderIdentity: me\n",
    );
    s.ok(&["apply", "-f", &lease]);
    let l = s.ok(&["describe", "lease", "l1"]);
    assert_eq!(field(&l, "Kind:"), "Lease");
    assert!(l.contains("Spec:\n  Holder Identity:  me\n"), "{l}");

    let (_, err) = s.fails(&["describe", "pod", "ghost"]);
    assert_eq!(
        err,
        "Error from server (NotFound): pods \"ghost\" not found\n"
    );
}

#[test]
fn delete_by_name_label_and_manifest() {
    let s = Server::start();
    let pods = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p1\n  labels: {group: a}\nspec:\n  containers:\n  - {name: c, image: busybox:1}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p2\n  labels: {group: a}\nspec:\n  containers:\n  - {name: c, image: busybox:1}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p3\nspec:\n  containers:\n  - {name: c, image: busybox:1}\n";
    let f = s.write("pods.yaml", pods);
    s.ok(&["apply", "-f", &f]);
    assert_eq!(s.ok(&["delete", "pod", "p3"]), "pod \"p3\" deleted\n");
    let (_, err) = s.fails(&["get", "pod", "p3"]);
    assert_eq!(err, "Error from server (NotFound): pods \"p3\" not found\n");
    let (out, err) = s.fails(&["delete", "pod", "p3"]);
    assert_eq!(out, "");
    assert_eq!(err, "Error from server (NotFound): pods \"p3\" not found\n");
    s.ok(&["delete", "pod", "p3", "--ignore-not-found"]);

    let o = s.ok(&[
        "delete",
        "pods",
        "-l",
        "group=a",
        "--grace-period",
        "0",
        "--force",
    ]);
    assert_eq!(o, "pod \"p1\" force deleted\npod \"p2\" force deleted\n");
    let o = s.run(&["get", "pods"], None);
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "No resources found in default namespace.\n"
    );

    // From the manifest, with dependents orphaned: the ReplicaSet stays.
    let web = s.write("web.yaml", &web_yaml(1));
    s.ok(&["apply", "-f", &web]);
    s.wait_for(&["get", "rs", "-n", "shop", "-o", "name"], |o| {
        !o.is_empty()
    });
    assert_eq!(
        s.ok(&[
            "delete",
            "deploy",
            "web",
            "-n",
            "shop",
            "--cascade=orphan",
            "--timeout",
            "60s"
        ]),
        "deployment.apps \"web\" deleted\n"
    );
    let rs = s.json(&["get", "rs", "-n", "shop"]);
    assert_eq!(rs["items"].as_array().unwrap().len(), 1, "{rs}");
    let app = web_yaml(1).split_once("---\n").unwrap().1.to_string();
    let app = s.write("app.yaml", &app);
    let (out, err) = s.fails(&["delete", "-f", &app]);
    assert_eq!(out, "service \"web\" deleted\n");
    assert_eq!(
        err,
        "Error from server (NotFound): deployments.apps \"web\" not found\n"
    );
    // A namespace goes once the namespace controller has emptied it.
    assert_eq!(
        s.ok(&["delete", "ns", "shop", "--timeout", "60s"]),
        "namespace \"shop\" deleted\n"
    );
    s.fails(&["get", "ns", "shop"]);
    assert_eq!(s.ok(&["get", "rs", "-n", "shop", "-o", "name"]), "");
}

#[test]
fn errors_say_what_and_where() {
    let s = Server::start();
    // YAML errors name the file, the document and the line.
    let bad = s.write(
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n   oops: 1\n",
    );
    let (out, err) = s.fails(&["apply", "-f", &bad]);
    assert_eq!(out, "");
    assert!(
        err.starts_with(&format!(
            "error: error parsing {bad} (document 2): line 9 column"
        )),
        "{err}"
    );
    let nokind = s.write("nokind.yaml", "apiVersion: v1\nmetadata: {name: a}\n");
    let (_, err) = s.fails(&["apply", "-f", &nokind]);
    assert_eq!(
        err,
        format!("error: error validating {nokind} (document 1, line 1): kind not set\n")
    );
    let (_, err) = s.fails(&["apply", "-f", "/nonexistent.yaml"]);
    assert!(
        err.contains("\"/nonexistent.yaml\" does not exist"),
        "{err}"
    );
    // API errors as kubectl shows them, the other documents still applied.
    let mixed = s.write(
        "mixed.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok, namespace: nowhere}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine}\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n",
    );
    let (out, err) = s.fails(&["apply", "-f", &mixed]);
    assert_eq!(out, "configmap/fine created\n");
    let errs: Vec<&str> = err.lines().collect();
    assert_eq!(
        errs[0],
        format!("Error from server (NotFound): error when applying {mixed:?}: namespaces \"nowhere\" not found")
    );
    assert!(
        errs[1].starts_with(&format!(
            "error: {mixed} (document 3, line 9): resource mapping not found for kind \"Widget\""
        )),
        "{err}"
    );

    let (_, err) = s.fails(&["get", "foo"]);
    assert_eq!(
        err,
        "error: the server doesn't have a resource type \"foo\"\n"
    );
    let (_, err) = s.fails(&["get", "pods", "-o", "toml"]);
    assert!(
        err.starts_with("error: unable to match a printer suitable for the output format \"toml\""),
        "{err}"
    );
    let (_, err) = s.fails(&["get", "pods", "x", "-A"]);
    assert!(
        err.contains("cannot be retrieved by name across all namespaces"),
        "{err}"
    );

    // The kubeconfig: --kubeconfig, then $KUBECONFIG, then ROOT/cluster/admin.kubeconfig.
    let elsewhere = s.dir.path().join("empty-root");
    let o = Command::new(BIN)
        .arg("--root")
        .arg(&elsewhere)
        .args(["get", "pods"])
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with(&format!(
            "error: no kubeconfig: {} does not exist",
            elsewhere.join("cluster/admin.kubeconfig").display()
        )),
        "{err}"
    );
    let kc = s.kubeconfig();
    let o = Command::new(BIN)
        .arg("--root")
        .arg(&elsewhere)
        .args(["get", "ns", "default", "-o", "name"])
        .env("KUBECONFIG", format!("/nonexistent:{}", kc.display()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "namespace/default\n");
    let o = Command::new(BIN)
        .arg("--root")
        .arg(&elsewhere)
        .args(["get", "ns", "default", "-o", "name", "--kubeconfig"])
        .arg(&kc)
        .env("KUBECONFIG", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "namespace/default\n");

    // A server that is not there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = s.write(
        "dead.kubeconfig",
        &format!("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{closed}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"),
    );
    let (_, err) = s.fails(&["get", "pods", "--kubeconfig", &dead]);
    assert!(
        err.starts_with(&format!(
            "error: cannot reach the API server at https://127.0.0.1:{closed} (kubeconfig {dead}): "
        )),
        "{err}"
    );

    // Pod logs go through the API server: a pod with no node has none yet.
    let pod = s.write(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: quiet\nspec:\n  containers:\n  - {name: c, image: busybox:1}\n",
    );
    s.ok(&["apply", "-f", &pod]);
    let (_, err) = s.fails(&["kubectl", "logs", "quiet"]);
    assert!(err.starts_with("Error from server (BadRequest): "), "{err}");
    let (_, err) = s.fails(&["k", "logs", "pod/nope"]);
    assert_eq!(
        err,
        "Error from server (NotFound): pods \"nope\" not found\n"
    );
}
