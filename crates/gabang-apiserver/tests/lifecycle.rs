//! Object lifecycle over raw HTTP: status subresource, generation, finalizers,
//! pod binding and graceful delete, deletecollection, namespace termination, patches.

mod support;

use serde_json::{json, Value};

const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";

fn deployment(name: &str) -> Value {
    json!({"metadata": {"name": name}, "spec": {"selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_generation_and_patches() {
    let s = support::start().await;
    let (code, d) = s.send("POST", "application/json", DEPLOYS, &deployment("d1"));
    assert_eq!(code, 201, "{d}");
    assert_eq!(d["metadata"]["generation"], 1);
    assert_eq!(d["spec"]["replicas"], 1);

    // The status subresource changes only status; the main resource keeps status.
    let mut st = d.clone();
    st["status"] = json!({"replicas": 1, "readyReplicas": 1});
    st["spec"]["replicas"] = json!(9);
    let (code, out) = s.send(
        "PUT",
        "application/json",
        &format!("{DEPLOYS}/d1/status"),
        &st,
    );
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["status"]["readyReplicas"], 1);
    assert_eq!(out["spec"]["replicas"], 1);
    assert_eq!(out["metadata"]["generation"], 1);
    let (code, out) = s.send(
        "PATCH",
        "application/merge-patch+json",
        &format!("{DEPLOYS}/d1"),
        &json!({"spec": {"replicas": 3}, "status": {"readyReplicas": 0}}),
    );
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["metadata"]["generation"], 2);
    assert_eq!(
        out["status"]["readyReplicas"], 1,
        "status kept on the main resource"
    );

    // JSON patch, strategic merge patch, scale subresource.
    let (code, out) = s.send(
        "PATCH",
        "application/json-patch+json",
        &format!("{DEPLOYS}/d1"),
        &json!([{"op": "replace", "path": "/spec/replicas", "value": 4}]),
    );
    assert_eq!((code, out["spec"]["replicas"].clone()), (200, json!(4)));
    let smp = json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "nginx"}]}}}});
    let (code, out) = s.send(
        "PATCH",
        "application/strategic-merge-patch+json",
        &format!("{DEPLOYS}/d1"),
        &smp,
    );
    assert_eq!(code, 200, "{out}");
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (code, sc) = s.get(&format!("{DEPLOYS}/d1/scale"));
    assert_eq!(
        (code, sc["kind"].clone(), sc["spec"]["replicas"].clone()),
        (200, json!("Scale"), json!(4))
    );
    assert_eq!(sc["status"]["selector"], "app=d1");
    // A stale resourceVersion in a patch is a conflict; validation runs on patches.
    let (code, _) = s.send(
        "PATCH",
        "application/merge-patch+json",
        &format!("{DEPLOYS}/d1"),
        &json!({"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 2}}),
    );
    assert_eq!(code, 409);
    let (code, e) = s.send(
        "PATCH",
        "application/merge-patch+json",
        &format!("{DEPLOYS}/d1"),
        &json!({"spec": {"replicas": -2}}),
    );
    assert_eq!(code, 422, "{e}");
    assert_eq!(e["details"]["causes"][0]["field"], "spec.replicas");
    // Server-side apply creates, then merges.
    let (code, out) = s.send("PATCH",
        "application/apply-patch+yaml",
        "/api/v1/namespaces/default/configmaps/ssa?fieldManager=t",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1"}}),
    );
    assert_eq!(code, 201, "{out}");
    let (code, out) = s.send("PATCH",
        "application/apply-patch+yaml",
        "/api/v1/namespaces/default/configmaps/ssa?fieldManager=t",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"b": "2"}}),
    );
    assert_eq!(code, 200, "{out}");
    // The manager no longer applies "a": it is removed; another manager's field stays.
    assert_eq!(out["data"], json!({"b": "2"}));
    let (code, out) = s.send("PATCH",
        "application/apply-patch+yaml",
        "/api/v1/namespaces/default/configmaps/ssa?fieldManager=u",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"c": "3"}}),
    );
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["data"], json!({"b": "2", "c": "3"}));
    let (code, _) = s.send(
        "PATCH",
        "application/apply-patch+yaml",
        "/api/v1/namespaces/default/configmaps/ssa",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}}),
    );
    assert_eq!(code, 400, "apply needs a fieldManager");
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_binding_and_graceful_pod_delete() {
    let s = support::start().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let (code, _) = s.send(
        "POST",
        "application/json",
        cms,
        &json!({"metadata": {"name": "f", "finalizers": ["example.com/hold"]}}),
    );
    assert_eq!(code, 201);
    let (code, d) = s.send(
        "DELETE",
        "application/json",
        &format!("{cms}/f"),
        &json!({}),
    );
    assert_eq!(code, 200, "{d}");
    assert!(d["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(s.get(&format!("{cms}/f")).0, 200, "held by its finalizer");
    let (code, _) = s.send(
        "PATCH",
        "application/merge-patch+json",
        &format!("{cms}/f"),
        &json!({"metadata": {"finalizers": null}}),
    );
    assert_eq!(code, 200);
    assert_eq!(
        s.get(&format!("{cms}/f")).0,
        404,
        "gone with its last finalizer"
    );

    // Foreground deletion is recorded as a finalizer.
    s.send(
        "POST",
        "application/json",
        cms,
        &json!({"metadata": {"name": "fg"}}),
    );
    let (_, d) = s.send(
        "DELETE",
        "application/json",
        &format!("{cms}/fg"),
        &json!({"propagationPolicy": "Foreground"}),
    );
    assert_eq!(d["metadata"]["finalizers"], json!(["foregroundDeletion"]));

    let pods = "/api/v1/namespaces/default/pods";
    let (code, p) = s.send("POST", "application/json", pods,
        &json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    );
    assert_eq!(code, 201, "{p}");
    assert_eq!(p["status"]["phase"], "Pending");
    let (code, b) = s.send("POST", "application/json", &format!("{pods}/p/binding"),
        &json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}}),
    );
    assert_eq!(code, 201, "{b}");
    let (code, _) = s.send(
        "POST",
        "application/json",
        &format!("{pods}/p/binding"),
        &json!({"metadata": {"name": "p"}, "target": {"name": "n2"}}),
    );
    assert_eq!(code, 409, "bound once");
    let (_, p) = s.get(&format!("{pods}/p"));
    assert_eq!(p["spec"]["nodeName"], "n1");
    // A bound pod is deleted gracefully: marked, then removed with grace 0.
    let (_, d) = s.send(
        "DELETE",
        "application/json",
        &format!("{pods}/p"),
        &json!({}),
    );
    assert_eq!(d["metadata"]["deletionGracePeriodSeconds"], 30);
    assert_eq!(s.get(&format!("{pods}/p")).0, 200);
    s.send(
        "DELETE",
        "application/json",
        &format!("{pods}/p"),
        &json!({"gracePeriodSeconds": 0}),
    );
    assert_eq!(s.get(&format!("{pods}/p")).0, 404);

    // deletecollection with a label selector.
    for (n, l) in [("a", "x"), ("b", "x"), ("c", "y")] {
        s.send(
            "POST",
            "application/json",
            cms,
            &json!({"metadata": {"name": n, "labels": {"k": l}}}),
        );
    }
    let (code, _) = s.send(
        "DELETE",
        "application/json",
        &format!("{cms}?labelSelector=k%3Dx"),
        &json!({}),
    );
    assert_eq!(code, 200);
    let out = s.ok(&["get", "cm", "-l", "k", "-o", "name"]);
    assert_eq!(out.trim(), "configmap/c");
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletion_removes_its_objects() {
    let s = support::start().await;
    let (code, ns) = s.send(
        "POST",
        "application/json",
        "/api/v1/namespaces",
        &json!({"metadata": {"name": "team"}}),
    );
    assert_eq!(code, 201, "{ns}");
    assert_eq!(ns["status"]["phase"], "Active");
    let (code, _) = s.send(
        "POST",
        "application/json",
        "/api/v1/namespaces/team/configmaps",
        &json!({"metadata": {"name": "x"}}),
    );
    assert_eq!(code, 201);
    let (code, d) = s.send(
        "DELETE",
        "application/json",
        "/api/v1/namespaces/team",
        &json!({}),
    );
    assert_eq!(code, 200, "{d}");
    assert_eq!(d["status"]["phase"], "Terminating");
    // The namespace goes once its contents are gone; poll its state, not a clock.
    let mut gone = false;
    for _ in 0..200 {
        if s.get("/api/v1/namespaces/team").0 == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(gone, "namespace never went away");
    assert_eq!(s.get("/api/v1/namespaces/team/configmaps/x").0, 404);
    let (code, e) = s.send(
        "POST",
        "application/json",
        "/api/v1/namespaces/team/configmaps",
        &json!({"metadata": {"name": "y"}}),
    );
    assert_eq!(code, 404, "{e}");
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_left_terminating_is_purged_at_start() {
    use gabang_store::{Backend, SqliteBackend, SqliteConfig};
    // A server stopped between marking the namespace and purging it.
    let dir = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn Backend> = std::sync::Arc::new(
        SqliteBackend::open(&dir.path().join("state.db"), SqliteConfig::default()).unwrap(),
    );
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "old", "uid": "u1",
        "deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Terminating"}});
    store
        .create(
            "/registry/namespaces/old",
            ns.to_string().into_bytes(),
            None,
        )
        .await
        .unwrap();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "old", "uid": "u2"}});
    store
        .create(
            "/registry/configmaps/old/x",
            cm.to_string().into_bytes(),
            None,
        )
        .await
        .unwrap();
    let handle = gabang_apiserver::serve(gabang_apiserver::ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("pki"),
        store: gabang_apiserver::StoreSpec::Backend(store.clone()),
    })
    .await
    .unwrap();
    let s = support::TestServer { handle, store, dir };
    let mut gone = false;
    for _ in 0..200 {
        if s.get("/api/v1/namespaces/old").0 == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(gone, "the terminating namespace was not finished");
    assert_eq!(s.get("/api/v1/namespaces/old/configmaps/x").0, 404);
    s.handle.shutdown().await;
}

/// Polls `cond` (state, not a clock) for a while; true once it holds.
async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..300 {
        if cond() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_termination_honours_finalizers_and_graceful_pod_deletion() {
    let s = support::start().await;
    s.ok(&["create", "namespace", "team"]);
    let cms = "/api/v1/namespaces/team/configmaps";
    let pods = "/api/v1/namespaces/team/pods";
    for body in [
        json!({"metadata": {"name": "plain"}}),
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    ] {
        assert_eq!(s.send("POST", "application/json", cms, &body).0, 201);
    }
    let (code, n) = s.send(
        "POST",
        "application/json",
        "/api/v1/nodes",
        &json!({"metadata": {"name": "n1"}}),
    );
    assert_eq!(code, 201, "{n}");
    for (pod, node) in [("on-n1", "n1"), ("on-gone-node", "gone")] {
        let (code, p) = s.send(
            "POST",
            "application/json",
            pods,
            &json!({"metadata": {"name": pod},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}}),
        );
        assert_eq!(code, 201, "{p}");
    }

    let out = s.ok(&["delete", "namespace", "team", "--wait=false"]);
    assert!(out.contains("namespace \"team\" deleted"), "{out}");
    let t = s.ok(&["get", "ns", "team", "--no-headers"]);
    assert!(t.contains("Terminating"), "{t}");
    // Nothing new goes into a terminating namespace.
    let (code, e) = s.send(
        "POST",
        "application/json",
        cms,
        &json!({"metadata": {"name": "late"}}),
    );
    assert_eq!(code, 403, "{e}");
    assert_eq!(
        e["message"],
        "configmaps \"late\" is forbidden: unable to create new content in namespace team because it is being terminated"
    );
    let f = s.write(
        "late.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: late, namespace: team}\n",
    );
    let err = s.fails(&["apply", "-f", &f]);
    assert!(err.contains("because it is being terminated"), "{err}");

    // Contents go through the ordinary delete path: the plain object and the pod of a
    // node that does not exist go; the finalizer holds its object; the pod of a live
    // node is deleted gracefully (its agent finishes it).
    assert!(eventually(|| s.get(&format!("{cms}/plain")).0 == 404).await);
    assert!(eventually(|| s.get(&format!("{pods}/on-gone-node")).0 == 404).await);
    let (code, held) = s.get(&format!("{cms}/held"));
    assert_eq!(code, 200, "{held}");
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
    let (code, p) = s.get(&format!("{pods}/on-n1"));
    assert_eq!(code, 200, "{p}");
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 30);
    assert!(
        eventually(|| {
            let (_, ns) = s.get("/api/v1/namespaces/team");
            ns["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter().any(|c| {
                    c["type"] == "NamespaceFinalizersRemaining"
                        && c["status"] == "True"
                        && c["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("example.com/hold in 1 resource instances"))
                })
            })
        })
        .await,
        "{:?}",
        s.get("/api/v1/namespaces/team")
    );
    let (_, ns) = s.get("/api/v1/namespaces/team");
    assert_eq!(ns["status"]["phase"], "Terminating");
    assert!(ns["metadata"]["deletionTimestamp"].is_string());

    // The finalizer removed, then the agent's final delete: the namespace goes.
    let (code, _) = s.send(
        "PATCH",
        "application/merge-patch+json",
        &format!("{cms}/held"),
        &json!({"metadata": {"finalizers": null}}),
    );
    assert_eq!(code, 200);
    assert_eq!(
        s.get("/api/v1/namespaces/team").0,
        200,
        "the pod still runs"
    );
    let (code, _) = s.send(
        "DELETE",
        "application/json",
        &format!("{pods}/on-n1"),
        &json!({"gracePeriodSeconds": 0}),
    );
    assert_eq!(code, 200);
    assert!(eventually(|| s.get("/api/v1/namespaces/team").0 == 404).await);
    // The name can be used again.
    s.ok(&["create", "namespace", "team"]);
    // The namespaces every cluster has cannot be deleted (as in Kubernetes).
    let err = s.fails(&["delete", "namespace", "default"]);
    assert!(err.contains("this namespace may not be deleted"), "{err}");
    assert_eq!(s.get("/api/v1/namespaces/kube-system").0, 200);
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_spec_finalizers_change_only_through_finalize() {
    let s = support::start().await;
    let (code, ns) = s.send("POST", "application/json", "/api/v1/namespaces",
        &json!({"metadata": {"name": "fin"}, "spec": {"finalizers": ["kubernetes", "example.com/ns"]}}));
    assert_eq!(code, 201, "{ns}");
    let (code, _) = s.send(
        "DELETE",
        "application/json",
        "/api/v1/namespaces/fin",
        &json!({}),
    );
    assert_eq!(code, 200);
    // Empty: the `kubernetes` finalizer is done, the other one holds the namespace.
    assert!(
        eventually(|| {
            let (_, ns) = s.get("/api/v1/namespaces/fin");
            ns["spec"]["finalizers"] == json!(["example.com/ns"])
        })
        .await
    );
    // A PUT cannot change spec.finalizers (as in Kubernetes) ...
    let (_, mut ns) = s.get("/api/v1/namespaces/fin");
    ns["spec"]["finalizers"] = json!([]);
    let (code, out) = s.send("PUT", "application/json", "/api/v1/namespaces/fin", &ns);
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["spec"]["finalizers"], json!(["example.com/ns"]));
    assert_eq!(s.get("/api/v1/namespaces/fin").0, 200);
    // ... the finalize subresource does, and the namespace goes.
    let (_, mut ns) = s.get("/api/v1/namespaces/fin");
    ns["spec"]["finalizers"] = json!([]);
    let (code, out) = s.send(
        "PUT",
        "application/json",
        "/api/v1/namespaces/fin/finalize",
        &ns,
    );
    assert_eq!(code, 200, "{out}");
    assert!(eventually(|| s.get("/api/v1/namespaces/fin").0 == 404).await);
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_has_a_default_service_account() {
    let s = support::start().await;
    for ns in ["default", "kube-system"] {
        let out = s.ok(&["get", "serviceaccount", "default", "-n", ns, "-o", "name"]);
        assert_eq!(out.trim(), "serviceaccount/default");
    }
    s.ok(&["create", "namespace", "apps"]);
    let out = s.ok(&["get", "sa", "-n", "apps", "-o", "name"]);
    assert_eq!(out.trim(), "serviceaccount/default");
    // A namespace made by server-side apply gets one too.
    let f = s.write(
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: applied}\n",
    );
    s.ok(&["apply", "--server-side", "-f", &f]);
    let out = s.ok(&[
        "get",
        "sa",
        "default",
        "-n",
        "applied",
        "-o",
        "jsonpath={.metadata.namespace}",
    ]);
    assert_eq!(out, "applied");
    s.handle.shutdown().await;
}

/// A scale patch without a resourceVersion is retried over concurrent writes of the same
/// object (a controller's status updates), never answered 409; one with a stale
/// resourceVersion still is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_patches_race_status_updates_without_conflicts() {
    let s = support::start().await;
    let (code, d) = s.send("POST", "application/json", DEPLOYS, &deployment("race"));
    assert_eq!(code, 201, "{d}");
    let status_path = format!("{DEPLOYS}/race/status");
    let scale_path = format!("{DEPLOYS}/race/scale");
    std::thread::scope(|sc| {
        sc.spawn(|| {
            for i in 0..20 {
                let (code, out) = s.send(
                    "PATCH",
                    "application/merge-patch+json",
                    &status_path,
                    &json!({"status": {"observedGeneration": i}}),
                );
                assert_eq!(code, 200, "{out}");
            }
        });
        for i in 0..20 {
            let (code, out) = s.send(
                "PATCH",
                "application/merge-patch+json",
                &scale_path,
                &json!({"spec": {"replicas": i}}),
            );
            assert_eq!(code, 200, "scale patch {i}: {out}");
        }
    });
    let (code, _) = s.send(
        "PATCH",
        "application/merge-patch+json",
        &scale_path,
        &json!({"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 2}}),
    );
    assert_eq!(code, 409);
}
