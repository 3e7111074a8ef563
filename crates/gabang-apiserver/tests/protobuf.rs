//! Real kubectl sends `kubectl create …` bodies as Kubernetes protobuf
//! (`application/vnd.kubernetes.protobuf`). Each create here is checked to have
//! gone out as protobuf (kubectl -v=8 prints the request headers), then read back
//! with `kubectl get -o json` and compared field by field with what kubectl meant.
//! Broken protobuf bodies get Kubernetes Status errors, not 415 or a crash.

mod support;

use base64::Engine;
use serde_json::{json, Value};

const PROTOBUF: &str = "Content-Type: application/vnd.kubernetes.protobuf";

/// Runs a kubectl command that must succeed and must have sent a protobuf body.
fn create(s: &support::TestServer, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push("-v=8");
    let out = s.kubectl(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains(PROTOBUF),
        "kubectl {args:?} did not send protobuf; the test premise is broken:\n{stderr}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn get_json(s: &support::TestServer, what: &[&str]) -> Value {
    let mut args = vec!["get"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["-o", "json"]);
    let out = s.ok(&args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_sends_protobuf_and_the_objects_read_back() {
    let s = support::start().await;

    // Deployment: replicas, labels, selector, template, container.
    let out = create(
        &s,
        &[
            "create",
            "deployment",
            "web",
            "--image=busybox:1",
            "--replicas=2",
            "--port=8080",
        ],
    );
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let d = get_json(&s, &["deployment", "web"]);
    assert_eq!(d["metadata"]["name"], "web");
    assert_eq!(d["metadata"]["namespace"], "default");
    assert_eq!(d["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(d["metadata"]["generation"], 1);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(
        d["spec"]["selector"],
        json!({"matchLabels": {"app": "web"}})
    );
    assert_eq!(
        d["spec"]["template"]["metadata"]["labels"],
        json!({"app": "web"})
    );
    let c = &d["spec"]["template"]["spec"]["containers"];
    assert_eq!(c.as_array().map(Vec::len), Some(1), "{c}");
    assert_eq!(c[0]["name"], "busybox");
    assert_eq!(c[0]["image"], "busybox:1");
    assert_eq!(
        c[0]["ports"],
        json!([{"containerPort": 8080, "protocol": "TCP"}])
    );
    // Go zero values of non-pointer fields do not leak in as explicit zeros.
    assert!(c[0].get("stdin").is_none(), "{c}");
    assert!(d["spec"]["template"]["metadata"]
        .get("generation")
        .is_none());
    assert!(d["spec"].get("minReadySeconds").is_none(), "{}", d["spec"]);
    // And the table view works on it.
    let t = s.ok(&["get", "deploy", "web"]);
    assert!(
        t.lines().nth(1).is_some_and(|l| l.starts_with("web ")),
        "{t}"
    );

    // Deployment with two images, scaled to zero: replicas 0 is kept (a pointer).
    create(
        &s,
        &[
            "create",
            "deployment",
            "multi",
            "--image=busybox:1",
            "--image=nginx:1.25",
            "--replicas=0",
        ],
    );
    let d = get_json(&s, &["deployment", "multi"]);
    assert_eq!(d["spec"]["replicas"], 0);
    let names: Vec<&str> = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["busybox", "nginx"]);

    // ConfigMap: literals (an empty value stays) and a binary file (binaryData).
    let bin: Vec<u8> = vec![0, 1, 2, 0xff, 0xfe, b'\n'];
    let bin_path = s.dir.path().join("blob.bin");
    std::fs::write(&bin_path, &bin).unwrap();
    let from_file = format!("--from-file=blob={}", bin_path.display());
    create(
        &s,
        &[
            "create",
            "configmap",
            "cm",
            "--from-literal=a=b",
            "--from-literal=empty=",
            "--from-literal=multi=line one\nline two",
            &from_file,
        ],
    );
    let cm = get_json(&s, &["configmap", "cm"]);
    assert_eq!(
        cm["data"],
        json!({"a": "b", "empty": "", "multi": "line one\nline two"})
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(cm["binaryData"]["blob"], json!(b64.encode(&bin)));
    assert!(
        cm["metadata"].get("generation").is_none(),
        "{}",
        cm["metadata"]
    );

    // Secret generic: the bytes come back exactly, through jsonpath and base64.
    let secret = "p@ss w0rd\t\u{e9}!";
    let lit = format!("--from-literal=password={secret}");
    create(
        &s,
        &[
            "create",
            "secret",
            "generic",
            "creds",
            &lit,
            "--from-literal=empty=",
        ],
    );
    let got = s.ok(&["get", "secret", "creds", "-o", "jsonpath={.data.password}"]);
    assert_eq!(b64.decode(got.trim()).unwrap(), secret.as_bytes());
    let sec = get_json(&s, &["secret", "creds"]);
    assert_eq!(sec["type"], "Opaque");
    assert_eq!(sec["data"]["empty"], "");

    // Secret docker-registry: a typed secret with a dotted key holding JSON.
    create(
        &s,
        &[
            "create",
            "secret",
            "docker-registry",
            "reg",
            "--docker-server=registry.local:5000",
            "--docker-username=u",
            "--docker-password=p",
        ],
    );
    let reg = get_json(&s, &["secret", "reg"]);
    assert_eq!(reg["type"], "kubernetes.io/dockerconfigjson");
    let cfg = b64
        .decode(reg["data"][".dockerconfigjson"].as_str().unwrap())
        .unwrap();
    let cfg: Value = serde_json::from_slice(&cfg).unwrap();
    assert_eq!(cfg["auths"]["registry.local:5000"]["username"], "u");
    assert_eq!(cfg["auths"]["registry.local:5000"]["password"], "p");

    // Namespace (cluster-scoped), then a ServiceAccount inside it.
    create(&s, &["create", "namespace", "team-a"]);
    let ns = get_json(&s, &["namespace", "team-a"]);
    assert_eq!(ns["metadata"]["name"], "team-a");
    assert!(ns["metadata"].get("namespace").is_none());
    assert_eq!(ns["status"]["phase"], "Active");
    create(&s, &["create", "serviceaccount", "bot", "-n", "team-a"]);
    let sa = get_json(&s, &["serviceaccount", "bot", "-n", "team-a"]);
    assert_eq!(sa["metadata"]["name"], "bot");
    assert_eq!(sa["metadata"]["namespace"], "team-a");

    // Service clusterip: a numeric and a named target port (IntOrString).
    create(
        &s,
        &[
            "create",
            "service",
            "clusterip",
            "web",
            "--tcp=80:8080",
            "--tcp=443:https",
        ],
    );
    let svc = get_json(&s, &["service", "web"]);
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["selector"], json!({"app": "web"}));
    assert_eq!(
        svc["spec"]["ports"],
        json!([
            {"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080},
            {"name": "443-https", "port": 443, "protocol": "TCP", "targetPort": "https"}
        ])
    );
    assert!(svc["spec"]["clusterIP"]
        .as_str()
        .is_some_and(|ip| !ip.is_empty()));

    // Service nodeport (the asked-for port is kept) and externalname.
    create(
        &s,
        &[
            "create",
            "service",
            "nodeport",
            "np",
            "--tcp=80:8080",
            "--node-port=30080",
        ],
    );
    let np = get_json(&s, &["service", "np"]);
    assert_eq!(np["spec"]["type"], "NodePort");
    assert_eq!(np["spec"]["ports"][0]["nodePort"], 30080);
    create(
        &s,
        &[
            "create",
            "service",
            "externalname",
            "ext",
            "--external-name=example.com",
        ],
    );
    let ext = get_json(&s, &["service", "ext"]);
    assert_eq!(ext["spec"]["type"], "ExternalName");
    assert_eq!(ext["spec"]["externalName"], "example.com");

    // Ingress: class, two rules, a numbered and a named backend port.
    create(
        &s,
        &[
            "create",
            "ingress",
            "web",
            "--class=nginx",
            "--rule=foo.com/bar*=web:8080",
            "--rule=bar.com/=web:http",
            "--annotation=team=a",
        ],
    );
    let ing = get_json(&s, &["ingress", "web"]);
    assert_eq!(ing["metadata"]["annotations"], json!({"team": "a"}));
    assert_eq!(ing["spec"]["ingressClassName"], "nginx");
    assert_eq!(
        ing["spec"]["rules"],
        json!([
            {"host": "foo.com", "http": {"paths": [{"path": "/bar", "pathType": "Prefix",
                "backend": {"service": {"name": "web", "port": {"number": 8080}}}}]}},
            {"host": "bar.com", "http": {"paths": [{"path": "/", "pathType": "Exact",
                "backend": {"service": {"name": "web", "port": {"name": "http"}}}}]}}
        ])
    );

    // A dry run goes through the same decoding and stores nothing.
    create(
        &s,
        &[
            "create",
            "configmap",
            "dry",
            "--from-literal=x=y",
            "--dry-run=server",
        ],
    );
    let err = s.fails(&["get", "configmap", "dry"]);
    assert!(err.contains("not found"), "{err}");

    // Validation still applies to protobuf bodies: a bad name is refused by the server.
    let out = s.kubectl(&["create", "configmap", "Bad_Name", "--from-literal=a=b"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Bad_Name"), "{err}");
}

/// `kubectl drain` removes a node's pods through the typed client, so with
/// protobuf bodies: DeleteOptions (or a policy/v1 Eviction where the server
/// serves pods/eviction).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drain_evicts_through_the_eviction_subresource() {
    let s = support::start().await;
    let f = s.write(
        "node.yaml",
        "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n---\napiVersion: v1\nkind: Pod\n\
         metadata: {name: p1, namespace: default}\nspec:\n  nodeName: n1\n  \
         containers: [{name: c, image: busybox:1}]\n",
    );
    s.ok(&["apply", "-f", &f]);
    // With pods/eviction served, kubectl 1.32 posts the Eviction as JSON (it fell back to
    // a protobuf DeleteOptions before): the drain must work either way.
    let out = s.ok(&[
        "drain",
        "n1",
        "--force",
        "--grace-period=0",
        "--timeout=60s",
    ]);
    assert!(out.contains("node/n1 drained"), "{out}");
    let err = s.fails(&["get", "pod", "p1"]);
    assert!(err.contains("not found"), "{err}");
    let node = get_json(&s, &["node", "n1"]);
    assert_eq!(node["spec"]["unschedulable"], true);
}

// A tiny protobuf writer for the raw-body tests.
fn ld(tag: u8, b: &[u8]) -> Vec<u8> {
    assert!(b.len() < 128);
    [vec![tag << 3 | 2, b.len() as u8], b.to_vec()].concat()
}
fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let tm = [ld(1, api_version.as_bytes()), ld(2, kind.as_bytes())].concat();
    [b"k8s\0".to_vec(), ld(1, &tm), ld(2, raw)].concat()
}

fn post(s: &support::TestServer, path: &str, body: &[u8]) -> (u16, Value) {
    let f = s.dir.path().join("body.pb");
    std::fs::write(&f, body).unwrap();
    let data = format!("@{}", f.display());
    let (code, text) = s.curl(
        true,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/vnd.kubernetes.protobuf",
            "--data-binary",
            &data,
        ],
        path,
    );
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {code} {text}"));
    (code, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_protobuf_bodies_get_status_errors() {
    let s = support::start().await;
    let path = "/api/v1/namespaces/default/configmaps";

    // A good hand-made body is accepted (the curl path works).
    let meta = ld(1, &ld(1, b"hand"));
    let data = ld(2, &[ld(1, b"k"), ld(2, b"v")].concat());
    let (code, v) = post(
        &s,
        path,
        &envelope("v1", "ConfigMap", &[meta.clone(), data].concat()),
    );
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["data"], json!({"k": "v"}));

    // Truncated inside the object: 400 naming the field and the offset.
    let mut bad = envelope(
        "v1",
        "ConfigMap",
        &[meta.clone(), ld(2, &ld(1, b"key"))].concat(),
    );
    bad.truncate(bad.len() - 2);
    let (code, v) = post(&s, path, &bad);
    assert_eq!(code, 400, "{v}");
    assert_eq!(
        (v["kind"].as_str(), v["reason"].as_str()),
        (Some("Status"), Some("BadRequest"))
    );
    let msg = v["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("malformed protobuf") && msg.contains("at byte"),
        "{msg}"
    );

    // Invalid UTF-8 in a label value: the path is named.
    let labels = ld(11, &[ld(1, b"app"), ld(2, b"\xff")].concat());
    let bad = envelope("v1", "ConfigMap", &ld(1, &[ld(1, b"x"), labels].concat()));
    let (code, v) = post(&s, path, &bad);
    assert_eq!(code, 400, "{v}");
    let msg = v["message"].as_str().unwrap_or("");
    assert!(msg.contains("metadata.labels"), "{msg}");

    // No magic.
    let (code, v) = post(&s, path, b"\x0a\x02hi");
    assert_eq!(code, 400, "{v}");
    assert!(v["message"].as_str().unwrap_or("").contains("magic"), "{v}");

    // A kind this server has no schema for: 415.
    let (code, v) = post(&s, path, &envelope("v1", "PersistentVolumeClaim", &meta));
    assert_eq!(code, 415, "{v}");
    assert_eq!(v["reason"], "UnsupportedMediaType");

    // A known kind posted to the wrong endpoint: the usual kind check.
    let (code, v) = post(&s, path, &envelope("v1", "Secret", &meta));
    assert_eq!(code, 400, "{v}");

    // The server is still up and nothing half-stored.
    let names = s.ok(&[
        "get",
        "configmaps",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    assert_eq!(names.split_whitespace().collect::<Vec<_>>(), ["hand"]);
}
