//! Request body formats: YAML for create, update and server-side apply, YAML bombs
//! refused, unknown content types answered with 415.

mod support;

use serde_json::Value;

/// A request with a raw body from a file: (http code, the answer as JSON or Null).
fn send_raw(
    s: &support::TestServer,
    method: &str,
    ctype: &str,
    path: &str,
    body: &str,
) -> (u16, Value) {
    let f = s.write("body.raw", body);
    let (code, b) = s.curl(
        true,
        &[
            "-X",
            method,
            "-H",
            &format!("Content-Type: {ctype}"),
            "--data-binary",
            &format!("@{f}"),
        ],
        path,
    );
    (code, serde_json::from_str(&b).unwrap_or_default())
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_bodies_for_create_update_and_apply() {
    let s = support::start().await;
    let (code, cm) = send_raw(
        &s,
        "POST",
        "application/yaml",
        CMS,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\n  labels: {app: web}\ndata:\n  a: \"1\"\n  text: |\n    line one\n    line two\n",
    );
    assert_eq!(code, 201, "{cm}");
    assert_eq!(cm["data"]["text"], "line one\nline two\n");
    assert_eq!(cm["metadata"]["labels"]["app"], "web");
    let rv = cm["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, cm) = send_raw(
        &s,
        "PUT",
        "application/yaml",
        &format!("{CMS}/y"),
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: y, resourceVersion: \"{rv}\"}}\ndata: {{a: \"2\"}}\n"),
    );
    assert_eq!(code, 200, "{cm}");
    assert_eq!(cm["data"], serde_json::json!({"a": "2"}));
    // Server-side apply with a YAML body creates, then merges.
    let apply = |name: &str, data: &str| {
        send_raw(
            &s,
            "PATCH",
            "application/apply-patch+yaml",
            &format!("{CMS}/{name}?fieldManager=yaml-client"),
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n{data}"),
        )
    };
    let (code, out) = apply("applied", "  k: v\n");
    assert_eq!(code, 201, "{out}");
    let (code, out) = apply("applied", "  k: w\n  n: \"3\"\n");
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["data"], serde_json::json!({"k": "w", "n": "3"}));
    let mf = out["metadata"]["managedFields"].as_array().unwrap();
    assert!(mf
        .iter()
        .any(|e| e["manager"] == "yaml-client" && e["operation"] == "Apply"));
    // Bad YAML: 400 naming the place.
    let (code, e) = send_raw(&s, "POST", "application/yaml", CMS, "metadata: {name: [\n");
    assert_eq!(code, 400, "{e}");
    assert_eq!(e["kind"], "Status");
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_bombs_are_refused() {
    let s = support::start().await;
    // Billion laughs: nine levels of nine aliases each (9^9 strings if expanded).
    let mut doc = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\nl0: &l0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for i in 1..10 {
        let p = i - 1;
        doc.push_str(&format!(
            "l{i}: &l{i} [*l{p},*l{p},*l{p},*l{p},*l{p},*l{p},*l{p},*l{p},*l{p}]\n"
        ));
    }
    for (ctype, path) in [
        ("application/yaml", CMS.to_string()),
        (
            "application/apply-patch+yaml",
            format!("{CMS}/bomb?fieldManager=t"),
        ),
    ] {
        let method = if ctype == "application/yaml" {
            "POST"
        } else {
            "PATCH"
        };
        let (code, e) = send_raw(&s, method, ctype, &path, &doc);
        assert_eq!(code, 400, "{e}");
        assert!(
            e["message"].as_str().unwrap().contains("repetition limit"),
            "{e}"
        );
    }
    // Deep nesting.
    let deep = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: deep}}\nx: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let (code, e) = send_raw(&s, "POST", "application/yaml", CMS, &deep);
    assert_eq!(code, 400, "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("recursion limit"),
        "{e}"
    );
    // The server is fine afterwards.
    assert_eq!(s.get(CMS).0, 200);
    assert_eq!(s.get(&format!("{CMS}/bomb")).0, 404);
    s.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_content_types_get_415() {
    let s = support::start().await;
    for (method, path) in [("POST", CMS.to_string()), ("PUT", format!("{CMS}/x"))] {
        let (code, e) = send_raw(
            &s,
            method,
            "text/plain",
            &path,
            "{\"metadata\":{\"name\":\"x\"}}",
        );
        assert_eq!(code, 415, "{e}");
        assert_eq!(e["kind"], "Status");
        assert_eq!(e["reason"], "UnsupportedMediaType");
    }
    let (code, e) = send_raw(
        &s,
        "PATCH",
        "application/yaml",
        &format!("{CMS}/x"),
        "data: {a: b}\n",
    );
    assert!(code == 415 || code == 404, "{code} {e}");
    s.handle.shutdown().await;
}
