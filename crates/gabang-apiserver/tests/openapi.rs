//! OpenAPI with schemas: real kubectl explains fields and names unknown kinds.

mod support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_explain_reads_the_field_docs() {
    let s = support::start().await;
    let out = s.ok(&["explain", "deployment.spec.replicas"]);
    assert!(
        out.contains("GROUP:      apps") || out.contains("apps"),
        "{out}"
    );
    assert!(
        out.contains("replicas") && out.contains("<integer>"),
        "{out}"
    );
    assert!(out.contains("Number of desired pods"), "{out}");
    let out = s.ok(&["explain", "pods.spec.containers"]);
    assert!(out.contains("<[]Container>"), "{out}");
    assert!(out.contains("image") && out.contains("<string>"), "{out}");
    assert!(
        out.contains("List of containers belonging to the pod"),
        "{out}"
    );
    let out = s.ok(&["explain", "ingress.spec.rules.http.paths.pathType"]);
    assert!(out.contains("pathType"), "{out}");
    let out = s.ok(&["explain", "configmaps", "--recursive"]);
    assert!(
        out.contains("binaryData") && out.contains("immutable"),
        "{out}"
    );
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_of_an_unknown_kind_says_no_matches() {
    let s = support::start().await;
    let f = s.write(
        "crd.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: 1}\n",
    );
    let err = s.fails(&["apply", "-f", &f]);
    assert!(
        err.contains("no matches for kind \"Widget\" in version \"example.com/v1\""),
        "{err}"
    );
    assert!(!err.contains("failed to download openapi"), "{err}");
    // Known kinds are still validated on the server (unknown fields refused).
    let f = s.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\nbogus: 1\n",
    );
    let err = s.fails(&["apply", "-f", &f]);
    assert!(err.contains("unknown field \"bogus\""), "{err}");
    let (code, v2) = s.get("/openapi/v2");
    assert_eq!((code, v2["swagger"].as_str()), (200, Some("2.0")));
    s.handle.shutdown().await;
}
