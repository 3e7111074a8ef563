//! Validation of every served kind, immutable fields on update and patch, and type
//! errors that name the field path.

mod support;

use serde_json::{json, Value};

/// The fields of a 422's causes, or the whole answer when it is not a 422.
fn invalid_fields(s: &support::TestServer, path: &str, body: &Value) -> Vec<String> {
    let (code, e) = s.send("POST", "application/json", path, body);
    assert_eq!(code, 422, "{path}: {e}");
    assert_eq!(e["reason"], "Invalid");
    e["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap().to_string())
        .collect()
}

fn created(s: &support::TestServer, path: &str, body: &Value) -> Value {
    let (code, o) = s.send("POST", "application/json", path, body);
    assert_eq!(code, 201, "{path}: {o}");
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinds_without_checks_before_are_validated() {
    let s = support::start().await;
    let ing = "/apis/networking.k8s.io/v1/namespaces/default/ingresses";
    let backend = json!({"service": {"name": "web", "port": {"number": 80}}});
    created(
        &s,
        ing,
        &json!({"metadata": {"name": "ok"}, "spec": {"rules": [{"host": "a.example.com",
        "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}]}}),
    );
    let fields = invalid_fields(
        &s,
        ing,
        &json!({"metadata": {"name": "bad"}, "spec": {"rules": [{"host": "10.0.0.1",
        "http": {"paths": [
            {"path": "/", "pathType": "Fuzzy", "backend": backend},
            {"path": "x", "pathType": "Exact", "backend": {"service": {"name": "web"}}},
            {"path": "/"},
        ]}}]}}),
    );
    assert_eq!(
        fields,
        [
            "spec.rules[0].host",
            "spec.rules[0].http.paths[0].pathType",
            "spec.rules[0].http.paths[1].path",
            "spec.rules[0].http.paths[1].backend.service.port",
            "spec.rules[0].http.paths[2].pathType",
            "spec.rules[0].http.paths[2].backend",
        ]
    );
    let (_, e) = s.send(
        "POST",
        "application/json",
        ing,
        &json!({"metadata": {"name": "bad"}, "spec": {"rules": [{
        "http": {"paths": [{"path": "/", "pathType": "Fuzzy", "backend": backend}]}}]}}),
    );
    assert!(
        e["message"].as_str().unwrap().contains(
            "Unsupported value: \"Fuzzy\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\""
        ),
        "{e}"
    );
    assert_eq!(
        invalid_fields(&s, ing, &json!({"metadata": {"name": "empty"}, "spec": {}})),
        ["spec"]
    );

    let classes = "/apis/networking.k8s.io/v1/ingressclasses";
    created(
        &s,
        classes,
        &json!({"metadata": {"name": "gabang"}, "spec": {"controller": "gabang.dev/ingress"}}),
    );
    assert_eq!(
        invalid_fields(
            &s,
            classes,
            &json!({"metadata": {"name": "c2"}, "spec": {"controller": "nodomain",
            "parameters": {"kind": "Cfg", "name": "p", "scope": "Namespace"}}})
        ),
        ["spec.controller", "spec.parameters.namespace"]
    );

    let leases = "/apis/coordination.k8s.io/v1/namespaces/default/leases";
    created(
        &s,
        leases,
        &json!({"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 1}}),
    );
    let (_, e) = s.send(
        "POST",
        "application/json",
        leases,
        &json!({"metadata": {"name": "l0"}, "spec": {"leaseDurationSeconds": 0}}),
    );
    assert_eq!(
        e["details"]["causes"][0]["field"], "spec.leaseDurationSeconds",
        "{e}"
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("must be greater than 0"),
        "{e}"
    );

    let slices = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";
    created(
        &s,
        slices,
        &json!({"metadata": {"name": "s"}, "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.1"]}], "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
    );
    assert_eq!(
        invalid_fields(
            &s,
            slices,
            &json!({"metadata": {"name": "s2"}, "addressType": "IPv5",
            "endpoints": [{"addresses": []}], "ports": [{"port": 0}]})
        ),
        ["addressType", "endpoints[0].addresses", "ports[0].port"]
    );
    assert_eq!(
        invalid_fields(
            &s,
            slices,
            &json!({"metadata": {"name": "s3"}, "addressType": "IPv6",
            "endpoints": [{"addresses": ["10.0.0.1"]}]})
        ),
        ["endpoints[0].addresses[0]"]
    );

    let eps = "/api/v1/namespaces/default/endpoints";
    assert_eq!(
        invalid_fields(
            &s,
            eps,
            &json!({"metadata": {"name": "e"}, "subsets": [{"addresses": [{"ip": "nope"}],
            "ports": [{"port": 80}, {"name": "b", "port": 70000, "protocol": "HTTP"}]}]})
        ),
        [
            "subsets[0].addresses[0].ip",
            "subsets[0].ports[0].name",
            "subsets[0].ports[1].port",
            "subsets[0].ports[1].protocol"
        ]
    );

    let events = "/api/v1/namespaces/default/events";
    assert_eq!(
        invalid_fields(
            &s,
            events,
            &json!({"metadata": {"name": "ev"}, "reason": "X"})
        ),
        ["involvedObject.kind", "involvedObject.name"]
    );
    assert_eq!(
        invalid_fields(
            &s,
            events,
            &json!({"metadata": {"name": "ev"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "other"}})
        ),
        ["involvedObject.namespace"]
    );
    created(
        &s,
        events,
        &json!({"metadata": {"name": "ev"}, "type": "Normal",
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}}),
    );

    let nodes = "/api/v1/nodes";
    assert_eq!(
        invalid_fields(
            &s,
            nodes,
            &json!({"metadata": {"name": "n"}, "spec": {"podCIDR": "10.1.0.0/33",
            "taints": [{"key": "k", "effect": "Sometimes"}]}})
        ),
        ["spec.podCIDR", "spec.taints[0].effect"]
    );
    s.handle.shutdown().await;
}

/// POST of a large body from a file (too big for a command-line argument).
fn post_file(s: &support::TestServer, path: &str, body: &Value) -> (u16, Value) {
    let f = s.write("big.json", &body.to_string());
    let (code, b) = s.curl(
        true,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &format!("@{f}"),
        ],
        path,
    );
    (code, serde_json::from_str(&b).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_and_secret_data_is_at_most_one_mib() {
    let s = support::start().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let mib = 1024 * 1024;
    // Key "k" + value: exactly the limit fits, one byte more does not.
    let (code, e) = post_file(
        &s,
        cms,
        &json!({"metadata": {"name": "fits"}, "data": {"k": "x".repeat(mib - 1)}}),
    );
    assert_eq!(code, 201, "{e}");
    let (code, e) = post_file(
        &s,
        cms,
        &json!({"metadata": {"name": "over"}, "data": {"k": "x".repeat(mib)}}),
    );
    assert_eq!(code, 422, "{e}");
    assert_eq!(e["details"]["causes"][0]["field"], "data");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("Too long: must have at most 1048576 bytes"),
        "{e}"
    );
    use base64::Engine;
    let big = base64::engine::general_purpose::STANDARD.encode(vec![7u8; mib + 3]);
    let (code, e) = post_file(
        &s,
        "/api/v1/namespaces/default/secrets",
        &json!({"metadata": {"name": "over"}, "data": {"k": big}}),
    );
    assert_eq!(code, 422, "{e}");
    s.handle.shutdown().await;
}

const DEPLOY: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: APP}}\n  template:\n    metadata: {labels: {app: APP}}\n    spec: {containers: [{name: c, image: busybox}]}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immutable_fields_are_refused_on_update_and_patch() {
    let s = support::start().await;
    // apps/v1 selectors (kubectl apply of a changed selector).
    let f = s.write("d.yaml", &DEPLOY.replace("APP", "web"));
    s.ok(&["apply", "-f", &f]);
    let f = s.write("d.yaml", &DEPLOY.replace("APP", "web2"));
    let err = s.fails(&["apply", "-f", &f]);
    assert!(
        err.contains("spec.selector") && err.contains("field is immutable"),
        "{err}"
    );
    s.ok(&["scale", "deploy", "web", "--replicas", "3"]);

    // Service clusterIP.
    let svc = created(
        &s,
        "/api/v1/namespaces/default/services",
        &json!({"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}]}}),
    );
    assert!(svc["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .starts_with("10.96."));
    let (code, e) = s.send(
        "PATCH",
        "application/merge-patch+json",
        "/api/v1/namespaces/default/services/svc",
        &json!({"spec": {"clusterIP": "10.96.200.200"}}),
    );
    assert_eq!(code, 422, "{e}");
    assert_eq!(e["details"]["causes"][0]["field"], "spec.clusterIP");
    let out = s.ok(&["label", "svc", "svc", "a=b"]);
    assert!(out.contains("labeled"), "{out}");

    // Pods: images, tolerations (added), activeDeadlineSeconds change; nothing else.
    let pods = "/api/v1/namespaces/default/pods";
    created(
        &s,
        pods,
        &json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}),
    );
    s.ok(&["set", "image", "pod/p", "c=busybox:2"]);
    s.ok(&["label", "pod", "p", "x=y"]);
    let (code, p) = s.send("PATCH", "application/strategic-merge-patch+json", &format!("{pods}/p"),
        &json!({"spec": {"activeDeadlineSeconds": 60, "tolerations": [{"key": "k", "operator": "Exists"}]}}));
    assert_eq!(code, 200, "{p}");
    assert_eq!(p["spec"]["containers"][0]["image"], "busybox:2");
    let (code, e) = s.send(
        "PATCH",
        "application/merge-patch+json",
        &format!("{pods}/p"),
        &json!({"spec": {"restartPolicy": "Never"}}),
    );
    assert_eq!(code, 422, "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"),
        "{e}"
    );
    let (code, e) = s.send(
        "PATCH",
        "application/merge-patch+json",
        &format!("{pods}/p"),
        &json!({"spec": {"activeDeadlineSeconds": 120}}),
    );
    assert_eq!(code, 422, "{e}");
    assert_eq!(
        e["details"]["causes"][0]["field"],
        "spec.activeDeadlineSeconds"
    );
    let (code, e) = s.send(
        "PATCH",
        "application/json-patch+json",
        &format!("{pods}/p"),
        &json!([{"op": "remove", "path": "/spec/tolerations/0"}]),
    );
    assert_eq!(code, 422, "{e}");
    // Binding still sets spec.nodeName.
    let (code, b) = s.send(
        "POST",
        "application/json",
        &format!("{pods}/p/binding"),
        &json!({"metadata": {"name": "p"}, "target": {"name": "n1"}}),
    );
    assert_eq!(code, 201, "{b}");

    // Immutable ConfigMaps and Secrets.
    let cms = "/api/v1/namespaces/default/configmaps";
    created(
        &s,
        cms,
        &json!({"metadata": {"name": "frozen"}, "data": {"a": "1"}, "immutable": true}),
    );
    let (code, e) = s.send(
        "PATCH",
        "application/merge-patch+json",
        &format!("{cms}/frozen"),
        &json!({"data": {"a": "2"}}),
    );
    assert_eq!(code, 422, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("data: Forbidden: field is immutable when `immutable` is set"),
        "{e}"
    );
    let (code, e) = s.send(
        "PATCH",
        "application/merge-patch+json",
        &format!("{cms}/frozen"),
        &json!({"immutable": false}),
    );
    assert_eq!(code, 422, "{e}");
    s.ok(&["label", "cm", "frozen", "a=b"]);
    let secrets = "/api/v1/namespaces/default/secrets";
    created(
        &s,
        secrets,
        &json!({"metadata": {"name": "frozen"}, "stringData": {"a": "1"}, "immutable": true}),
    );
    let (code, e) = s.send(
        "PATCH",
        "application/merge-patch+json",
        &format!("{secrets}/frozen"),
        &json!({"data": {"b": "Mg=="}}),
    );
    assert_eq!(code, 422, "{e}");
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_errors_name_the_field_path() {
    let s = support::start().await;
    let (code, e) = s.send(
        "POST",
        "application/json",
        "/api/v1/namespaces/default/configmaps",
        &json!({"metadata": {"name": "t"}, "data": {"a": 1}}),
    );
    assert!(code == 400 || code == 422, "{code} {e}");
    let m = e["message"].as_str().unwrap();
    assert!(
        m.contains("data.a") && m.contains("invalid type: integer `1`"),
        "{m}"
    );
    let (_, e) = s.send(
        "POST",
        "application/json",
        "/apis/apps/v1/namespaces/default/deployments",
        &json!({"metadata": {"name": "t"}, "spec": {"replicas": "two"}}),
    );
    assert!(
        e["message"].as_str().unwrap().contains("spec.replicas"),
        "{e}"
    );
    let f = s.write("bad.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: busybox\n    ports: [{containerPort: http}]\n");
    let err = s.fails(&["apply", "--validate=false", "-f", &f]);
    assert!(
        err.contains("spec.containers[0].ports[0].containerPort"),
        "{err}"
    );
    s.handle.shutdown().await;
}
