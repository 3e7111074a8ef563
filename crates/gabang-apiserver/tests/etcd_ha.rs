//! Two API servers on one etcd (started here on loopback, random ports, temp data
//! dir): each sees the other's writes, a watch on one sees the other's writes,
//! optimistic concurrency holds across them (a stale resourceVersion → 409), and
//! real kubectl works against both. Needs Debian's `etcd-server`.

mod support;

#[path = "../../gabang-store/tests/support/etcd_server.rs"]
mod etcd_server;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use gabang_apiserver::{serve, ServerConfig, StoreSpec};
use serde_json::json;

async fn start_on(url: &str) -> support::TestServer {
    let dir = tempfile::tempdir().unwrap();
    let store = gabang_store::open(url).await.unwrap();
    let handle = serve(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("pki"),
        store: StoreSpec::Url(url.to_string()),
    })
    .await
    .unwrap();
    support::TestServer { handle, store, dir }
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

const DEPLOY: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
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
        image: nginx:1.25
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_servers_share_one_etcd() {
    let etcd = etcd_server::EtcdServer::start().await;
    let url = format!("etcd://{}", etcd.endpoint().trim_start_matches("http://"));
    let a = start_on(&url).await;
    let b = start_on(&url).await;

    // A write through A is read through B, with the same resourceVersion.
    let (code, made) = a.send(
        "POST",
        "application/json",
        CMS,
        &json!({"metadata": {"name": "shared"}, "data": {"k": "1"}}),
    );
    assert_eq!(code, 201, "{made}");
    let (code, seen) = b.get(&format!("{CMS}/shared"));
    assert_eq!(code, 200, "{seen}");
    assert_eq!(seen["data"]["k"], "1");
    assert_eq!(seen["metadata"]["uid"], made["metadata"]["uid"]);
    assert_eq!(
        seen["metadata"]["resourceVersion"],
        made["metadata"]["resourceVersion"]
    );

    // A watch on B (kubectl get -w) sees writes made through A.
    let mut w = Command::new("kubectl")
        .args(["get", "cm", "-w", "--output-watch-events"])
        .env("KUBECONFIG", &b.handle.kubeconfig)
        .env("HOME", b.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let out = w.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // The initial listing comes first: wait for it so the writes below are live events.
    loop {
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        if line.contains("shared") {
            break;
        }
    }
    let (code, _) = a.send(
        "POST",
        "application/json",
        CMS,
        &json!({"metadata": {"name": "from-a"}}),
    );
    assert_eq!(code, 201);
    let (code, _) = a.send(
        "PATCH",
        "application/merge-patch+json",
        &format!("{CMS}/from-a"),
        &json!({"data": {"x": "y"}}),
    );
    assert_eq!(code, 200);
    let (code, _) = a.send(
        "DELETE",
        "application/json",
        &format!("{CMS}/from-a"),
        &json!({}),
    );
    assert_eq!(code, 200);
    let mut events = Vec::new();
    while events.len() < 3 {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("watch on B missed A's writes; got {events:?}"));
        if line.contains("from-a") {
            events.push(line.split_whitespace().next().unwrap_or("").to_string());
        }
    }
    assert_eq!(events, ["ADDED", "MODIFIED", "DELETED"]);
    let _ = w.kill();
    let _ = w.wait();

    // Optimistic concurrency across servers: B refuses an update with A's old version.
    let stale = seen["metadata"]["resourceVersion"].clone();
    let (code, upd) = a.send(
        "PUT",
        "application/json",
        &format!("{CMS}/shared"),
        &json!({"metadata": {"name": "shared", "resourceVersion": stale}, "data": {"k": "2"}}),
    );
    assert_eq!(code, 200, "{upd}");
    let (code, conflict) = b.send(
        "PUT",
        "application/json",
        &format!("{CMS}/shared"),
        &json!({"metadata": {"name": "shared", "resourceVersion": stale}, "data": {"k": "3"}}),
    );
    assert_eq!(code, 409, "{conflict}");
    assert_eq!(conflict["reason"], "Conflict");
    let (_, now) = b.get(&format!("{CMS}/shared"));
    assert_eq!(now["data"]["k"], "2");
    // ... and accepts it with the current one.
    let (code, _) = b.send("PUT",
        "application/json",
        &format!("{CMS}/shared"),
        &json!({"metadata": {"name": "shared", "resourceVersion": upd["metadata"]["resourceVersion"]}, "data": {"k": "3"}}),
    );
    assert_eq!(code, 200);
    assert_eq!(a.get(&format!("{CMS}/shared")).1["data"]["k"], "3");

    // Lists with paging agree on both.
    for i in 0..5 {
        b.send(
            "POST",
            "application/json",
            CMS,
            &json!({"metadata": {"name": format!("p{i}")}}),
        );
    }
    let (_, page) = a.get(&format!("{CMS}?limit=2"));
    let cont = page["metadata"]["continue"].as_str().unwrap().to_string();
    let (_, rest) = b.get(&format!("{CMS}?limit=100&continue={cont}"));
    let mut names: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["items"].as_array().unwrap())
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4", "shared"]);

    // kubectl against both.
    let f = a.write("deploy.yaml", DEPLOY);
    let out = a.ok(&["apply", "-f", &f]);
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let out = b.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]);
    assert_eq!(out, "2");
    b.ok(&["scale", "deploy", "web", "--replicas", "4"]);
    let out = a.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.replicas} {.metadata.generation}",
    ]);
    assert_eq!(out, "4 2");
    let f = b.write("deploy.yaml", &DEPLOY.replace("1.25", "1.26"));
    let out = b.ok(&["apply", "-f", &f]);
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    let out = a.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(out, "nginx:1.26");
    let out = b.ok(&["delete", "deploy", "web"]);
    assert!(out.contains("deleted"), "{out}");
    let err = a.fails(&["get", "deploy", "web"]);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );

    // Services made at once through both servers get distinct cluster IPs.
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    let mut threads = Vec::new();
    for i in 0..16 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        threads.push(std::thread::spawn(move || {
            let (code, svc) = s.send(
                "POST",
                "application/json",
                "/api/v1/namespaces/default/services",
                &json!({"metadata": {"name": format!("s{i}")}, "spec": {"ports": [{"port": 80}]}}),
            );
            assert_eq!(code, 201, "{svc}");
            svc["spec"]["clusterIP"].as_str().unwrap().to_string()
        }));
    }
    let mut ips: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 16, "duplicate cluster IPs: {ips:?}");
    drop(etcd);
}
