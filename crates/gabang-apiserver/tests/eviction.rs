//! `pods/eviction` (policy/v1 Eviction) over raw HTTP, and real `kubectl cordon`,
//! `drain` and `uncordon` against the server with a stand-in kubelet that finishes
//! the graceful deletions the evictions start.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

const PODS: &str = "/api/v1/namespaces/default/pods";

fn pod(name: &str, node: &str) -> Value {
    json!({"metadata": {"name": name, "labels": {"app": "e"}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 20,
            "containers": [{"name": "c", "image": "busybox"}]}})
}

fn evict(s: &support::TestServer, name: &str, opts: Value) -> (u16, Value) {
    s.send(
        "POST",
        "application/json",
        &format!("{PODS}/{name}/eviction"),
        &json!({"apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": name, "namespace": "default"}, "deleteOptions": opts}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_is_a_graceful_delete_with_its_delete_options() {
    let s = support::start().await;
    let (_, list) = s.get("/api/v1");
    let ev = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods/eviction")
        .cloned()
        .expect("pods/eviction in discovery");
    assert_eq!(
        (&ev["group"], &ev["version"], &ev["kind"]),
        (&json!("policy"), &json!("v1"), &json!("Eviction"))
    );

    for (n, node) in [("a", "n1"), ("b", "n1"), ("c", "n1"), ("d", "")] {
        let (code, p) = s.send("POST", "application/json", PODS, &pod(n, node));
        assert_eq!(code, 201, "{p}");
    }
    // Default grace: the pod's own terminationGracePeriodSeconds; the pod stays, terminating.
    let (code, st) = evict(&s, "a", json!({}));
    assert_eq!(code, 201, "{st}");
    assert_eq!(st["kind"], "Status");
    assert_eq!(st["status"], "Success");
    let (code, a) = s.get(&format!("{PODS}/a"));
    assert_eq!(code, 200);
    assert!(a["metadata"]["deletionTimestamp"].is_string(), "{a}");
    assert_eq!(a["metadata"]["deletionGracePeriodSeconds"], 20);

    // deleteOptions.gracePeriodSeconds is honoured.
    let (code, _) = evict(&s, "b", json!({"gracePeriodSeconds": 5}));
    assert_eq!(code, 201);
    let (_, b) = s.get(&format!("{PODS}/b"));
    assert_eq!(b["metadata"]["deletionGracePeriodSeconds"], 5);
    let (code, _) = evict(&s, "c", json!({"gracePeriodSeconds": 0}));
    assert_eq!(code, 201);
    assert_eq!(s.get(&format!("{PODS}/c")).0, 404, "grace 0 removes it now");
    // An unscheduled pod has nothing to stop: it goes at once.
    let (code, _) = evict(&s, "d", json!({}));
    assert_eq!(code, 201);
    assert_eq!(s.get(&format!("{PODS}/d")).0, 404);

    // Preconditions, dry run, bad input.
    s.send("POST", "application/json", PODS, &pod("e", "n1"));
    let (code, _) = evict(
        &s,
        "e",
        json!({"preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}}),
    );
    assert_eq!(code, 409, "uid precondition");
    let (code, _) = evict(&s, "e", json!({"dryRun": ["All"], "gracePeriodSeconds": 0}));
    assert_eq!(code, 201);
    assert_eq!(s.get(&format!("{PODS}/e")).0, 200, "dry run keeps it");
    let (code, st) = evict(&s, "e", json!({"gracePeriodSeconds": -3}));
    assert_eq!(code, 422, "{st}");
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("deleteOptions.gracePeriodSeconds"),
        "{st}"
    );
    let (code, _) = s.send(
        "POST",
        "application/json",
        &format!("{PODS}/e/eviction"),
        &json!({"metadata": {"name": "other"}}),
    );
    assert_eq!(code, 400, "name mismatch");
    let (code, st) = evict(&s, "missing", json!({}));
    assert_eq!(code, 404, "{st}");
    let (code, _) = s.send(
        "POST",
        "application/json",
        "/api/v1/namespaces/default/configmaps/x/eviction",
        &json!({}),
    );
    assert_eq!(code, 405, "eviction is for pods only");
    s.handle.shutdown().await;
}

/// Finishes graceful pod deletions on `node` (what the node agent does), until stopped.
fn fake_kubelet(s: &support::TestServer, node: &str, stop: &AtomicBool) -> usize {
    let mut finished = 0;
    while !stop.load(Ordering::Relaxed) {
        let (_, list) = s.get(&format!(
            "/api/v1/pods?fieldSelector=spec.nodeName%3D{node}"
        ));
        for p in list["items"].as_array().cloned().unwrap_or_default() {
            if p["metadata"]["deletionTimestamp"].is_string() {
                let path = format!(
                    "/api/v1/namespaces/{}/pods/{}",
                    p["metadata"]["namespace"].as_str().unwrap(),
                    p["metadata"]["name"].as_str().unwrap()
                );
                if s.send(
                    "DELETE",
                    "application/json",
                    &path,
                    &json!({"gracePeriodSeconds": 0}),
                )
                .0 == 200
                {
                    finished += 1;
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    finished
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_cordon_drain_uncordon() {
    let s = Arc::new(support::start().await);
    for n in ["n1", "n2"] {
        let (code, b) = s.send("POST", "application/json",
            "/api/v1/nodes",
            &json!({"metadata": {"name": n}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        );
        assert_eq!(code, 201, "{b}");
    }
    for (n, node) in [("p1", "n1"), ("p2", "n1"), ("q1", "n2")] {
        let (code, b) = s.send("POST", "application/json", PODS, &pod(n, node));
        assert_eq!(code, 201, "{b}");
    }
    let out = s.ok(&["cordon", "n1"]);
    assert!(out.contains("node/n1 cordoned"), "{out}");
    let (_, n1) = s.get("/api/v1/nodes/n1");
    assert_eq!(n1["spec"]["unschedulable"], true);

    let stop = Arc::new(AtomicBool::new(false));
    let kubelet = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || fake_kubelet(&s, "n1", &stop))
    };
    let out = s.kubectl(&[
        "drain",
        "n1",
        "--ignore-daemonsets",
        "--force",
        "--timeout=60s",
    ]);
    stop.store(true, Ordering::Relaxed);
    let finished = kubelet.join().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "drain failed: {text}");
    assert!(
        text.contains("pod/p1 evicted") && text.contains("pod/p2 evicted"),
        "{text}"
    );
    assert!(text.contains("node/n1 drained"), "{text}");
    assert_eq!(finished, 2, "both pods were evicted gracefully: {text}");
    assert_eq!(s.get(&format!("{PODS}/p1")).0, 404);
    assert_eq!(s.get(&format!("{PODS}/p2")).0, 404);
    assert_eq!(s.get(&format!("{PODS}/q1")).0, 200, "other nodes untouched");

    let out = s.ok(&["uncordon", "n1"]);
    assert!(out.contains("node/n1 uncordoned"), "{out}");
    let (_, n1) = s.get("/api/v1/nodes/n1");
    assert!(n1["spec"]["unschedulable"].is_null(), "{n1}");
}
