//! Server-side apply with real kubectl: `apply --server-side` creates and updates,
//! drops fields the manager stops applying, records `metadata.managedFields`
//! (Apply and Update entries), and refuses a second manager's change to an owned
//! field (409) unless `--force-conflicts`.

mod support;

use serde_json::Value;

const DEPLOY: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, tier: front}
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
"#;

fn live(s: &support::TestServer) -> Value {
    let out = s.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "json",
        "--show-managed-fields",
    ]);
    serde_json::from_str(&out).unwrap()
}

fn entry<'a>(obj: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
    obj["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_side_apply_owns_fields_and_conflicts() {
    let s = support::start().await;
    let f = s.write("d.yaml", &DEPLOY.replace("IMAGE", "1.25"));
    let out = s.ok(&["apply", "--server-side", "-f", &f]);
    assert!(
        out.contains("deployment.apps/web serverside-applied"),
        "{out}"
    );
    let d = live(&s);
    let e = entry(&d, "kubectl", "Apply").expect("an Apply entry for kubectl");
    assert_eq!(e["apiVersion"], "apps/v1");
    assert_eq!(e["fieldsType"], "FieldsV1");
    assert!(e["time"].is_string());
    let fv = &e["fieldsV1"];
    assert_eq!(fv["f:spec"]["f:replicas"], serde_json::json!({}));
    assert_eq!(
        fv["f:metadata"]["f:labels"],
        serde_json::json!({".": {}, "f:app": {}, "f:tier": {}})
    );
    let c = &fv["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
    assert!(c["f:image"].is_object() && c["f:env"].is_object(), "{fv}");
    // Defaults are the server's, not the applier's.
    assert!(fv["f:spec"].get("f:revisionHistoryLimit").is_none(), "{fv}");
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);

    // A second apply with a changed field; a dropped label and env var are removed.
    let changed = DEPLOY
        .replace("IMAGE", "1.26")
        .replace(", tier: front", "")
        .replace("        env:\n        - {name: A, value: \"1\"}\n", "");
    let f = s.write("d.yaml", &changed);
    let out = s.ok(&["apply", "--server-side", "-f", &f]);
    assert!(out.contains("serverside-applied"), "{out}");
    let d = live(&s);
    let c0 = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c0["image"], "nginx:1.26");
    assert!(c0.get("env").is_none(), "env no longer applied: {c0}");
    assert!(d["metadata"]["labels"].get("tier").is_none(), "{d}");
    assert_eq!(d["metadata"]["generation"], 2);
    assert_eq!(
        d["metadata"]["managedFields"].as_array().unwrap().len(),
        1,
        "{d}"
    );

    // Another manager changing a field kubectl owns: a conflict.
    let theirs = changed.replace("replicas: 2", "replicas: 3");
    let f2 = s.write("d2.yaml", &theirs);
    let err = s.fails(&["apply", "--server-side", "--field-manager=ops", "-f", &f2]);
    assert!(
        err.contains("conflict with \"kubectl\"") && err.contains(".spec.replicas"),
        "{err}"
    );
    assert_eq!(live(&s)["spec"]["replicas"], 2, "nothing changed");
    // Applying the same values is no conflict: both managers own them.
    let out = s.ok(&["apply", "--server-side", "--field-manager=ops", "-f", &f]);
    assert!(out.contains("serverside-applied"), "{out}");
    assert!(entry(&live(&s), "ops", "Apply").is_some());
    // Forced: ops takes spec.replicas over.
    s.ok(&[
        "apply",
        "--server-side",
        "--field-manager=ops",
        "--force-conflicts",
        "-f",
        &f2,
    ]);
    let d = live(&s);
    assert_eq!(d["spec"]["replicas"], 3);
    let mine = entry(&d, "kubectl", "Apply").unwrap();
    assert!(
        mine["fieldsV1"]["f:spec"].get("f:replicas").is_none(),
        "{d}"
    );
    let ops = entry(&d, "ops", "Apply").unwrap();
    assert!(ops["fieldsV1"]["f:spec"]["f:replicas"].is_object(), "{d}");

    // An Update (scale) takes the field from its owner; the next apply conflicts.
    s.ok(&["scale", "deploy", "web", "--replicas=5"]);
    let d = live(&s);
    let updates: Vec<&Value> = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operation"] == "Update")
        .collect();
    assert_eq!(updates.len(), 1, "{d}");
    assert!(updates[0]["fieldsV1"]["f:spec"]["f:replicas"].is_object());
    let err = s.fails(&["apply", "--server-side", "--field-manager=ops", "-f", &f2]);
    assert!(err.contains(".spec.replicas"), "{err}");

    // An object made by client-side apply moves to server-side apply without
    // conflicts (kubectl migrates the client-side manager's fields).
    let svc = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  selector: {app: web}\n  ports:\n  - port: 80\n";
    let fs = s.write("s.yaml", svc);
    s.ok(&["apply", "-f", &fs]);
    let fs = s.write("s.yaml", &svc.replace("port: 80", "port: 81"));
    let out = s.ok(&["apply", "--server-side", "-f", &fs]);
    assert!(out.contains("serverside-applied"), "{out}");
    let port = s.ok(&["get", "svc", "s", "-o", "jsonpath={.spec.ports[*].port}"]);
    assert_eq!(port, "81");

    // Plain creates and edits are recorded as Updates.
    let cm = s.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  k: v\n",
    );
    s.ok(&["create", "-f", &cm]);
    let out = s.ok(&["get", "cm", "c", "-o", "json", "--show-managed-fields"]);
    let c: Value = serde_json::from_str(&out).unwrap();
    let e = &c["metadata"]["managedFields"][0];
    assert_eq!(e["operation"], "Update");
    assert_eq!(e["manager"], "kubectl-create");
    assert_eq!(e["fieldsV1"]["f:data"]["f:k"], serde_json::json!({}));
    s.handle.shutdown().await;
}

/// `kubectl diff` (client- and server-side) and `apply --dry-run=server`: they ask
/// for `/openapi/v2`, get 404 and go on with kubectl's compiled-in types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_diff_and_server_dry_run() {
    let s = support::start().await;
    let f = s.write("d.yaml", &DEPLOY.replace("IMAGE", "1.25"));
    s.ok(&["apply", "--server-side", "-f", &f]);
    let rv = |s: &support::TestServer| {
        s.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ])
    };
    let before = rv(&s);
    // A no-op apply (or replace) writes nothing: the resourceVersion stays.
    s.ok(&["apply", "--server-side", "-f", &f]);
    assert_eq!(rv(&s), before);
    let y = s.ok(&["get", "deploy", "web", "-o", "yaml"]);
    let fy = s.write("live.yaml", &y);
    s.ok(&["replace", "-f", &fy]);
    assert_eq!(rv(&s), before);
    let same = s.kubectl(&["diff", "-f", &f]);
    assert_eq!(same.status.code(), Some(0), "{same:?}");
    let f2 = s.write("d2.yaml", &DEPLOY.replace("IMAGE", "1.26"));
    for extra in [&[][..], &["--server-side"][..]] {
        let mut args = vec!["diff"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-f", &f2]);
        let out = s.kubectl(&args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert!(
            text.contains("-        image: nginx:1.25")
                && text.contains("+        image: nginx:1.26"),
            "{text}"
        );
    }
    let out = s.ok(&[
        "apply",
        "--server-side",
        "--dry-run=server",
        "-f",
        &f2,
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(out, "nginx:1.26");
    let live = s.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(live, "nginx:1.25", "a dry run stores nothing");
    // kubectl diff and apply work with the (schema-less) OpenAPI v2 document served.
    let (code, v2) = s.curl(true, &[], "/openapi/v2");
    assert_eq!(code, 200, "{v2}");
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_maps_are_left_out_like_go_does() {
    let s = support::start().await;
    let f = s.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: e\n  labels: {}\n  annotations: {}\ndata: {}\n",
    );
    // kubectl validates strictly by default: empty maps are not unknown fields.
    s.ok(&["apply", "-f", &f]);
    let out = s.ok(&["get", "cm", "e", "-o", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(v["metadata"].get("labels").is_none(), "{v}");
    assert!(v.get("data").is_none(), "{v}");
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_to_the_status_subresource_is_recorded_as_such() {
    let s = support::start().await;
    let f = s.write("d.yaml", &DEPLOY.replace("IMAGE", "1.25"));
    s.ok(&["apply", "--server-side", "-f", &f]);
    let body = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"}, "status": {"replicas": 2, "readyReplicas": 1}});
    let (code, out) = s.curl(
        true,
        &[
            "-X",
            "PATCH",
            "-H",
            "Content-Type: application/apply-patch+yaml",
            "-d",
            &body.to_string(),
        ],
        "/apis/apps/v1/namespaces/default/deployments/web/status?fieldManager=ctrl",
    );
    assert_eq!(code, 200, "{out}");
    let d = live(&s);
    assert_eq!(d["status"]["readyReplicas"], 1);
    let e = entry(&d, "ctrl", "Apply").expect("ctrl's Apply entry");
    assert_eq!(e["subresource"], "status");
    assert!(
        e["fieldsV1"]["f:status"]["f:readyReplicas"].is_object(),
        "{e}"
    );
    assert!(e["fieldsV1"].get("f:spec").is_none(), "{e}");
    // The main resource's applier keeps its fields.
    assert!(entry(&d, "kubectl", "Apply").unwrap()["fieldsV1"]["f:spec"].is_object());
    s.handle.shutdown().await;
}
