//! Real kubectl against the server: apply, get (table, yaml, json, wide), describe,
//! scale, replace with a stale object, delete, get -w, api-resources, errors.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const DEPLOY: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:IMAGE
        ports:
        - containerPort: 80
        env:
        - {name: A, value: "1"}
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_get_describe_scale_replace_delete() {
    let s = support::start().await;
    let f = s.write("deploy.yaml", &DEPLOY.replace("IMAGE", "1.25"));
    let out = s.ok(&["apply", "-f", &f]);
    assert!(out.contains("deployment.apps/web created"), "{out}");
    assert!(out.contains("service/web created"), "{out}");

    // A changed file is applied as a strategic merge patch.
    let f = s.write("deploy.yaml", &DEPLOY.replace("IMAGE", "1.26"));
    let out = s.ok(&["apply", "-f", &f]);
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    assert!(out.contains("service/web unchanged"), "{out}");
    let img = s.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.metadata.generation} {.spec.template.spec.containers[0].env[0].name}"]);
    assert_eq!(img, "nginx:1.26 2 A");

    // Tables.
    let t = s.ok(&["get", "deploy"]);
    let header: Vec<&str> = t.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert!(t.lines().nth(1).unwrap().starts_with("web "), "{t}");
    let wide = s.ok(&["get", "deploy,svc", "-o", "wide"]);
    assert!(
        wide.contains("IMAGES") && wide.contains("nginx:1.26") && wide.contains("app=web"),
        "{wide}"
    );
    assert!(wide.contains("10.96.") && wide.contains("80/TCP"), "{wide}");
    let all = s.ok(&["get", "deploy", "-A"]);
    assert!(
        all.starts_with("NAMESPACE") && all.contains("default"),
        "{all}"
    );

    // yaml / json.
    let y = s.ok(&["get", "deploy", "web", "-o", "yaml"]);
    assert!(
        y.contains("kubectl.kubernetes.io/last-applied-configuration"),
        "{y}"
    );
    assert!(
        y.contains("revisionHistoryLimit: 10"),
        "defaults filled: {y}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&s.ok(&["get", "svc", "web", "-o", "json"])).unwrap();
    assert_eq!(j["spec"]["ports"][0]["targetPort"], 80);
    assert_eq!(j["spec"]["type"], "ClusterIP");

    let d = s.ok(&["describe", "deploy", "web"]);
    assert!(d.contains("Replicas:") && d.contains("2 desired"), "{d}");
    assert!(d.contains("nginx:1.26"), "{d}");

    let out = s.ok(&["scale", "deploy", "web", "--replicas", "5"]);
    assert!(out.contains("scaled"), "{out}");
    assert_eq!(
        s.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "5"
    );

    // Replace with a stale object: conflict.
    let stale = s.write("stale.json", &s.ok(&["get", "deploy", "web", "-o", "json"]));
    s.ok(&["label", "deploy", "web", "tier=fe"]);
    let err = s.fails(&["replace", "-f", &stale]);
    assert!(
        err.contains("Conflict") && err.contains("the object has been modified"),
        "{err}"
    );

    let r = s.ok(&["api-resources"]);
    for want in [
        "deployments",
        "replicasets",
        "pods",
        "ingresses",
        "leases",
        "endpointslices",
    ] {
        assert!(r.contains(want), "{want} missing: {r}");
    }

    let out = s.ok(&["delete", "-f", &f]);
    assert!(out.contains("deployment.apps \"web\" deleted"), "{out}");
    let err = s.fails(&["get", "deploy", "web"]);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_watch_sees_changes() {
    let s = support::start().await;
    let mut child = Command::new("kubectl")
        .args(["get", "configmaps", "-w", "--output-watch-events"])
        .env("KUBECONFIG", &s.handle.kubeconfig)
        .env("HOME", s.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let cm = s.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: watched}\ndata: {a: b}\n",
    );
    // Keep changing until the watcher reports the object (the watch may start after the first apply).
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    s.ok(&["apply", "-f", &cm]);
    while !seen.iter().any(|l: &String| l.contains("watched"))
        && std::time::Instant::now() < deadline
    {
        if let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
            seen.push(l);
        }
    }
    s.ok(&["delete", "-f", &cm]);
    while !seen.iter().any(|l: &String| l.starts_with("DELETED"))
        && std::time::Instant::now() < deadline
    {
        if let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
            seen.push(l);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.iter()
            .any(|l| l.starts_with("ADDED") && l.contains("watched")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.starts_with("DELETED") && l.contains("watched")),
        "{seen:?}"
    );
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_status_errors() {
    let s = support::start().await;
    let bad = s.write("bad.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bad}\nspec:\n  replicas: -1\n  selector: {matchLabels: {app: a}}\n  template:\n    metadata: {labels: {app: b}}\n    spec: {containers: []}\n");
    let err = s.fails(&["apply", "-f", &bad]);
    for f in [
        "spec.replicas",
        "spec.template.metadata.labels",
        "spec.template.spec.containers",
    ] {
        assert!(err.contains(f), "{f} not named: {err}");
    }
    let unknown = s.write(
        "unk.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c1}\ndata: {a: b}\nbogus: 1\n",
    );
    let err = s.fails(&["apply", "-f", &unknown]);
    assert!(err.contains("unknown field \"bogus\""), "{err}");
    let badname = s.write(
        "bn.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Not_Valid}\n",
    );
    let err = s.fails(&["apply", "-f", &badname]);
    assert!(err.contains("metadata.name"), "{err}");
    let nons = s.write(
        "nons.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c2, namespace: nope}\n",
    );
    let err = s.fails(&["apply", "-f", &nons]);
    assert!(err.contains("namespaces \"nope\" not found"), "{err}");
    let err = s.fails(&["get", "widgets"]);
    assert!(err.contains("doesn't have a resource type"), "{err}");
    // Nothing half-stored.
    assert!(s.ok(&["get", "cm", "-A", "-o", "name"]).is_empty());

    // Raw HTTP: anonymous refused except health and version; 404 for unknown kinds; 413.
    assert_eq!(s.curl(false, &[], "/api/v1/pods").0, 401);
    assert_eq!(s.curl(false, &[], "/healthz"), (200, "ok".into()));
    assert_eq!(s.curl(false, &[], "/version").0, 200);
    let (code, body) = s.curl(true, &[], "/apis/example.com/v1/widgets");
    assert_eq!(code, 404, "{body}");
    let big = s.write(
        "big.json",
        &format!(
            "{{\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"a\":\"{}\"}}}}",
            "x".repeat(4 << 20)
        ),
    );
    let (code, body) = s.curl(
        true,
        &[
            "--http1.1",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &format!("@{big}"),
        ],
        "/api/v1/namespaces/default/configmaps",
    );
    assert_eq!(code, 413, "{body}");
    // Over HTTP/2 too, with a Content-Length and with a chunked upload: a Status.
    for chunked in [false, true] {
        let mut args = vec![
            "--http2",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
        ];
        if chunked {
            args.extend(["-H", "Transfer-Encoding: chunked"]);
        }
        let data = format!("@{big}");
        args.extend(["--data-binary", &data]);
        let (code, body) = s.curl(true, &args, "/api/v1/namespaces/default/configmaps");
        assert_eq!(code, 413, "chunked {chunked}: {body}");
        let st: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(st["reason"], "RequestEntityTooLarge");
    }
    let (code, body) = s.curl(
        true,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            "{\"metadata\":{\"generateName\":\"gen-\"}}",
        ],
        "/api/v1/namespaces/default/configmaps",
    );
    assert_eq!(code, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["metadata"]["name"].as_str().unwrap().starts_with("gen-"));
    assert!(v["metadata"]["uid"].is_string() && v["metadata"]["creationTimestamp"].is_string());
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_selectors_and_watch_gone() {
    let s = support::start().await;
    for i in 0..5 {
        let tier = if i % 2 == 0 { "even" } else { "odd" };
        let body =
            format!("{{\"metadata\":{{\"name\":\"c{i}\",\"labels\":{{\"tier\":\"{tier}\"}}}}}}");
        let (code, b) = s.curl(
            true,
            &[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-d",
                &body,
            ],
            "/api/v1/namespaces/default/configmaps",
        );
        assert_eq!(code, 201, "{b}");
    }
    let (_, b) = s.curl(true, &[], "/api/v1/namespaces/default/configmaps?limit=2");
    let page: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cont = page["metadata"]["continue"].as_str().unwrap().to_string();
    let (_, b) = s.curl(
        true,
        &[],
        &format!("/api/v1/namespaces/default/configmaps?limit=10&continue={cont}"),
    );
    let page2: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(page2["items"].as_array().unwrap().len(), 3);
    assert!(page2["metadata"].get("continue").is_none());
    let out = s.ok(&["get", "cm", "-l", "tier=even", "-o", "name"]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["configmap/c0", "configmap/c2", "configmap/c4"]
    );
    let out = s.ok(&[
        "get",
        "cm",
        "--field-selector",
        "metadata.name=c3",
        "-o",
        "name",
    ]);
    assert_eq!(out.trim(), "configmap/c3");
    let old = page["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    // Streaming list: initial events, then a bookmark marking their end.
    let (code, body) = s.curl(true, &["--max-time", "3"], "/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&labelSelector=tier%3Dodd");
    assert_eq!(code, 200, "{body}");
    let types: Vec<String> = body
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(types, ["ADDED", "ADDED", "BOOKMARK"], "{body}");
    assert!(body.contains("k8s.io/initial-events-end"), "{body}");

    // After compaction a watch from an old revision ends with 410 Expired.
    s.ok(&["label", "cm", "c1", "x=y"]);
    let rev = s.store.current_revision().await.unwrap();
    s.store.compact(rev).await.unwrap();
    let (code, body) = s.curl(
        true,
        &["--max-time", "5"],
        &format!(
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={}",
            old.parse::<i64>().unwrap() - 3
        ),
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("\"type\":\"ERROR\"") && body.contains("410"),
        "{body}"
    );
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_kubernetes_client_creates_lists_watches() {
    if Command::new("python3")
        .args(["-c", "import kubernetes"])
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        panic!("python3 with the kubernetes package is required (pip install kubernetes)");
    }
    let s = support::start().await;
    let script = s.write("client.py", include_str!("client.py"));
    let out = Command::new("python3")
        .arg(&script)
        .env("KUBECONFIG", &s.handle.kubeconfig)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("created py-cm"), "{stdout}");
    assert!(stdout.contains("listed py-cm"), "{stdout}");
    assert!(stdout.contains("watched ADDED py-cm"), "{stdout}");
    assert!(stdout.contains("watched MODIFIED py-cm"), "{stdout}");
    assert!(stdout.contains("deployment py-web replicas 3"), "{stdout}");
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_tables_for_pods_nodes_namespaces() {
    let s = support::start().await;
    let pod = s.write("pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p1, labels: {app: x}}\nspec:\n  containers:\n  - {name: c, image: busybox}\n");
    s.ok(&["apply", "-f", &pod]);
    let t = s.ok(&["get", "pods"]);
    let header: Vec<&str> = t.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    let row: Vec<&str> = t.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["p1", "0/1", "Pending", "0"]);
    let wide = s.ok(&["get", "pods", "-o", "wide"]);
    let header: Vec<&str> = wide
        .lines()
        .next()
        .unwrap()
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED NODE",
            "READINESS GATES"
        ]
    );
    assert!(
        wide.lines()
            .nth(1)
            .unwrap()
            .trim_end()
            .ends_with("<none>           <none>"),
        "{wide}"
    );

    let node = s.write(
        "node.yaml",
        "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n",
    );
    s.ok(&["apply", "-f", &node]);
    let (code, n) = s.send("PATCH", "application/merge-patch+json", "/api/v1/nodes/n1/status",
        &serde_json::json!({"status": {"nodeInfo": {"osImage": "Debian GNU/Linux 12 (bookworm)", "kernelVersion": "6.1.0-test",
            "containerRuntimeVersion": "gabang://0.1.0", "kubeletVersion": "v1.32.0-gabang"},
            "addresses": [{"type": "InternalIP", "address": "10.0.0.5"}]}}));
    assert_eq!(code, 200, "{n}");
    let wide = s.ok(&["get", "nodes", "-o", "wide"]);
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "STATUS",
            "ROLES",
            "AGE",
            "VERSION",
            "INTERNAL-IP",
            "EXTERNAL-IP",
            "OS-IMAGE",
            "KERNEL-VERSION",
            "CONTAINER-RUNTIME"
        ]
    );
    let row = wide.lines().nth(1).unwrap();
    for want in [
        "10.0.0.5",
        "Debian GNU/Linux 12 (bookworm)",
        "6.1.0-test",
        "gabang://0.1.0",
    ] {
        assert!(row.contains(want), "{want}: {wide}");
    }

    let more = s.write("more.yaml", "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: gabang}\nspec:\n  controller: gabang.dev/ingress\n  parameters: {apiGroup: k8s.example.com, kind: IngressParameters, name: external-lb}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-abc}\naddressType: IPv4\nports: [{name: http, port: 80}, {name: https, port: 443}]\nendpoints:\n- addresses: [10.1.0.1]\n- addresses: [10.1.0.2]\n- addresses: [10.1.0.3]\n- addresses: [10.1.0.4]\n- addresses: [10.1.0.5]\n");
    s.ok(&["apply", "-f", &more]);
    let t = s.ok(&["get", "ingressclass"]);
    let header: Vec<&str> = t.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "CONTROLLER", "PARAMETERS", "AGE"]);
    assert!(
        t.contains("gabang.dev/ingress")
            && t.contains("IngressParameters.k8s.example.com/external-lb"),
        "{t}"
    );
    let t = s.ok(&["get", "endpointslices"]);
    let header: Vec<&str> = t.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]);
    let row: Vec<&str> = t.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        &row[..7],
        [
            "web-abc",
            "IPv4",
            "80,443",
            "10.1.0.1,10.1.0.2,10.1.0.3",
            "+",
            "2",
            "more..."
        ]
    );
    let ns = s.ok(&["get", "ns"]);
    assert!(
        ns.starts_with("NAME") && ns.contains("STATUS") && ns.contains("kube-system"),
        "{ns}"
    );
    let d = s.ok(&["describe", "pod", "p1"]);
    assert!(d.contains("busybox") && d.contains("Pending"), "{d}");
    s.handle.shutdown().await;
}
