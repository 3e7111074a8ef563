//! Pod spec → container plan, volumes and projected files, as Kubernetes defines them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use gabang_agent::podspec::{
    expand, plan_container, plan_volumes, quantity_bytes, quantity_cores, write_projected,
    ContainerPlan, PlanError, PodFacts, ProjectedFile, PullPolicy, RefSource, VolumeKind,
};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::json;

/// ConfigMaps and Secrets of namespace `ns` held in memory; counts lookups.
#[derive(Default)]
struct FakeRefs {
    config_maps: BTreeMap<String, ConfigMap>,
    secrets: BTreeMap<String, Secret>,
    fail: bool,
    calls: Mutex<Vec<String>>,
}

impl FakeRefs {
    fn with_cm(mut self, name: &str, data: serde_json::Value) -> Self {
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "ns"}, "data": data}),
        )
        .unwrap();
        self.config_maps.insert(name.into(), cm);
        self
    }
    /// `data` values are plain strings here; they are base64-encoded like the API sends them.
    fn with_secret(mut self, name: &str, data: &[(&str, &[u8])]) -> Self {
        let data: BTreeMap<String, k8s_openapi::ByteString> = data
            .iter()
            .map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.to_vec())))
            .collect();
        let s = Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        };
        self.secrets.insert(name.into(), s);
        self
    }
}

impl RefSource for FakeRefs {
    fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, String> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("cm {namespace}/{name}"));
        if self.fail {
            return Err("connection refused".into());
        }
        Ok(if namespace == "ns" {
            self.config_maps.get(name).cloned()
        } else {
            None
        })
    }
    fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, String> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("secret {namespace}/{name}"));
        if self.fail {
            return Err("connection refused".into());
        }
        Ok(if namespace == "ns" {
            self.secrets.get(name).cloned()
        } else {
            None
        })
    }
}

fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {
            "name": "web-1", "namespace": "ns", "uid": "u-123",
            "labels": {"app": "web", "tier": "front"},
            "annotations": {"note": "hello"}
        },
        "spec": spec,
        "status": {"podIP": "10.42.0.9", "podIPs": [{"ip": "10.42.0.9"}], "hostIP": "192.168.1.5"}
    }))
    .unwrap()
}

fn facts() -> PodFacts {
    PodFacts {
        pod_ip: Some("10.42.0.7".into()),
        host_ip: Some("192.168.1.2".into()),
        node_name: "n1".into(),
    }
}

fn plan_with(
    p: &Pod,
    refs: &FakeRefs,
    dirs: &BTreeMap<String, PathBuf>,
) -> Result<ContainerPlan, PlanError> {
    let c = &p.spec.as_ref().unwrap().containers[0];
    plan_container(p, c, "spec.containers[0]", dirs, &facts(), refs)
}

fn plan(container: serde_json::Value) -> Result<ContainerPlan, PlanError> {
    plan_refs(container, &FakeRefs::default())
}

fn plan_refs(container: serde_json::Value, refs: &FakeRefs) -> Result<ContainerPlan, PlanError> {
    let p = pod(json!({"containers": [container]}));
    plan_with(&p, refs, &BTreeMap::new())
}

fn v(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn command_and_args_table() {
    let neither = plan(json!({"name": "c", "image": "busybox:1.36"})).unwrap();
    assert_eq!((neither.entrypoint, neither.cmd), (None, None));

    let command_only =
        plan(json!({"name": "c", "image": "b:1", "command": ["sleep", "5"]})).unwrap();
    assert_eq!(command_only.entrypoint, Some(v(&["sleep", "5"])));
    assert_eq!(
        command_only.cmd,
        Some(vec![]),
        "command drops the image CMD"
    );

    let args_only = plan(json!({"name": "c", "image": "b:1", "args": ["-c", "x"]})).unwrap();
    assert_eq!(args_only.entrypoint, None, "image ENTRYPOINT kept");
    assert_eq!(args_only.cmd, Some(v(&["-c", "x"])));

    let both =
        plan(json!({"name": "c", "image": "b:1", "command": ["sh"], "args": ["-c", "x"]})).unwrap();
    assert_eq!(both.entrypoint, Some(v(&["sh"])));
    assert_eq!(both.cmd, Some(v(&["-c", "x"])));
}

#[test]
fn expansion_rules() {
    let look = |n: &str| match n {
        "A" => Some("1".to_string()),
        "ü" => Some("u".to_string()),
        _ => None,
    };
    assert_eq!(expand("x$(A)y", look), "x1y");
    assert_eq!(expand("$$(A)", look), "$(A)", "$$ escapes");
    assert_eq!(expand("$(B)", look), "$(B)", "unknown stays literal");
    assert_eq!(expand("a$$b$c$", look), "a$b$c$");
    assert_eq!(expand("$(A", look), "$(A");
    assert_eq!(expand("é$(ü)ö$(A)$(A)", look), "éuö11");
    assert_eq!(expand("$()", look), "$()");
}

#[test]
fn env_order_and_expansion_from_earlier_entries() {
    let p = plan(json!({
        "name": "c", "image": "b:1",
        "command": ["echo", "$(GREETING)", "$$(GREETING)", "$(MISSING)"],
        "args": ["$(LATER)"],
        "env": [
            {"name": "NAME", "value": "world"},
            {"name": "GREETING", "value": "hello $(NAME) $(LATER)"},
            {"name": "LATER", "value": "late"},
            {"name": "NAME", "value": "again"},
            {"name": "EMPTY"}
        ]
    }))
    .unwrap();
    assert_eq!(
        p.env,
        v(&[
            "NAME=again",
            "GREETING=hello world $(LATER)",
            "LATER=late",
            "EMPTY="
        ])
    );
    assert_eq!(
        p.entrypoint,
        Some(v(&[
            "echo",
            "hello world $(LATER)",
            "$(GREETING)",
            "$(MISSING)"
        ]))
    );
    assert_eq!(p.cmd, Some(v(&["late"])));
}

#[test]
fn config_map_and_secret_refs() {
    let refs = FakeRefs::default()
        .with_cm("cfg", json!({"mode": "fast", "level": "3"}))
        .with_secret("creds", &[("password", b"s3cret")]);
    let p = plan_refs(
        json!({
            "name": "c", "image": "b:1",
            "env": [
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
                {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                {"name": "OPT1", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope", "optional": true}}},
                {"name": "OPT2", "valueFrom": {"secretKeyRef": {"name": "ghost", "key": "k", "optional": true}}},
                {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "level"}}},
                {"name": "BOTH", "value": "$(MODE)-$(PW)"}
            ]
        }),
        &refs,
    )
    .unwrap();
    assert_eq!(
        p.env,
        v(&["MODE=fast", "PW=s3cret", "LEVEL=3", "BOTH=fast-s3cret"])
    );
    // Each object is fetched once per plan.
    let calls = refs.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        v(&["cm ns/cfg", "secret ns/creds", "secret ns/ghost"])
    );
}

#[test]
fn missing_refs_name_the_field() {
    let refs = FakeRefs::default().with_cm("cfg", json!({"a": "1"}));
    let err = plan_refs(
        json!({"name": "c", "image": "b:1", "env": [
            {"name": "A", "value": "x"},
            {"name": "B", "value": "y"},
            {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "missing"}}}
        ]}),
        &refs,
    )
    .unwrap_err();
    match &err {
        PlanError::Config { field, message } => {
            assert_eq!(field, "spec.containers[0].env[2].valueFrom.configMapKeyRef");
            assert!(message.contains("missing"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.reason(), "CreateContainerConfigError");

    let err = plan_refs(
        json!({"name": "c", "image": "b:1", "env": [
            {"name": "S", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}
        ]}),
        &refs,
    )
    .unwrap_err();
    assert!(
        matches!(&err, PlanError::Config { field, .. } if field == "spec.containers[0].env[0].valueFrom.secretKeyRef"),
        "{err:?}"
    );

    let err = plan_refs(
        json!({"name": "c", "image": "b:1", "envFrom": [{"configMapRef": {"name": "absent"}}]}),
        &refs,
    )
    .unwrap_err();
    assert!(
        matches!(&err, PlanError::Config { field, .. } if field == "spec.containers[0].envFrom[0].configMapRef"),
        "{err:?}"
    );

    let failing = FakeRefs {
        fail: true,
        ..Default::default()
    };
    let err = plan_refs(
        json!({"name": "c", "image": "b:1", "envFrom": [{"configMapRef": {"name": "x", "optional": true}}]}),
        &failing,
    )
    .unwrap_err();
    assert_eq!(err, PlanError::Source("connection refused".into()));
}

#[test]
fn field_refs_from_pod_and_facts() {
    let fr = |path: &str| json!({"fieldRef": {"fieldPath": path}});
    let p = plan(json!({
        "name": "c", "image": "b:1",
        "env": [
            {"name": "N", "valueFrom": fr("metadata.name")},
            {"name": "NS", "valueFrom": fr("metadata.namespace")},
            {"name": "UID", "valueFrom": fr("metadata.uid")},
            {"name": "APP", "valueFrom": fr("metadata.labels['app']")},
            {"name": "NONE", "valueFrom": fr("metadata.labels['absent']")},
            {"name": "NOTE", "valueFrom": fr("metadata.annotations['note']")},
            {"name": "NODE", "valueFrom": fr("spec.nodeName")},
            {"name": "SA", "valueFrom": fr("spec.serviceAccountName")},
            {"name": "IP", "valueFrom": fr("status.podIP")},
            {"name": "HOST", "valueFrom": fr("status.hostIP")},
            {"name": "IPS", "valueFrom": fr("status.podIPs")}
        ]
    }))
    .unwrap();
    assert_eq!(
        p.env,
        v(&[
            "N=web-1",
            "NS=ns",
            "UID=u-123",
            "APP=web",
            "NONE=",
            "NOTE=hello",
            "NODE=n1",
            "SA=",
            "IP=10.42.0.7",
            "HOST=192.168.1.2",
            "IPS=10.42.0.7"
        ])
    );
    let err = plan(json!({"name": "c", "image": "b:1", "env": [
        {"name": "X", "valueFrom": fr("spec.bogus")}
    ]}))
    .unwrap_err();
    assert!(
        matches!(&err, PlanError::Invalid { field, .. } if field.starts_with("spec.containers[0].env[0].valueFrom.fieldRef")),
        "{err:?}"
    );
}

#[test]
fn resource_field_refs_with_divisor() {
    let p = plan(json!({
        "name": "c", "image": "b:1",
        "resources": {"limits": {"memory": "128Mi", "cpu": "500m"}, "requests": {"cpu": "250m"}},
        "env": [
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}},
            {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "CPU_M", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
            {"name": "REQ_M", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
            {"name": "REQ_MEM", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory"}}}
        ]
    }))
    .unwrap();
    assert_eq!(
        p.env,
        v(&[
            "MEM=134217728",
            "MEM_MI=128",
            "CPU=1",
            "CPU_M=500",
            "REQ_M=250",
            "REQ_MEM=134217728"
        ])
    );
    assert_eq!(p.memory_limit, Some(134217728));
    assert_eq!(p.cpu_limit, Some(0.5));
}

#[test]
fn env_from_prefix_and_precedence() {
    let refs = FakeRefs::default()
        .with_cm(
            "a",
            json!({"HOST": "a-host", "PORT": "80", "bad key": "x", "1ST": "y"}),
        )
        .with_cm("b", json!({"PORT": "8080"}))
        .with_secret("s", &[("TOKEN", b"t0k")]);
    let p = plan_refs(
        json!({
            "name": "c", "image": "b:1",
            "envFrom": [
                {"configMapRef": {"name": "a"}},
                {"configMapRef": {"name": "b"}},
                {"secretRef": {"name": "s"}, "prefix": "S_"},
                {"configMapRef": {"name": "a"}, "prefix": "A_"},
                {"configMapRef": {"name": "missing", "optional": true}}
            ],
            "env": [{"name": "HOST", "value": "env-wins"}, {"name": "URL", "value": "$(HOST):$(PORT)"}]
        }),
        &refs,
    )
    .unwrap();
    assert_eq!(
        p.env,
        v(&[
            "HOST=env-wins",
            "PORT=8080",
            "S_TOKEN=t0k",
            "A_1ST=y",
            "A_HOST=a-host",
            "A_PORT=80",
            "URL=env-wins:8080"
        ]),
        "invalid names (`1ST`, `bad key`) skipped; later envFrom wins; env wins over envFrom"
    );
}

#[test]
fn workdir_user_tty_and_pull_policy() {
    let p = pod(json!({
        "securityContext": {"runAsUser": 1000, "runAsGroup": 2000},
        "containers": [
            {"name": "a", "image": "busybox", "workingDir": "/srv", "tty": true, "stdin": true,
             "securityContext": {"runAsUser": 33}},
            {"name": "b", "image": "reg:5000/busybox:latest"},
            {"name": "c", "image": "reg:5000/busybox:1.36"},
            {"name": "d", "image": "reg:5000/busybox"},
            {"name": "e", "image": "busybox@sha256:abcd"},
            {"name": "f", "image": "busybox", "imagePullPolicy": "Never"}
        ]
    }));
    let refs = FakeRefs::default();
    let spec = p.spec.as_ref().unwrap();
    let plans: Vec<ContainerPlan> = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            plan_container(
                &p,
                c,
                &format!("spec.containers[{i}]"),
                &BTreeMap::new(),
                &facts(),
                &refs,
            )
            .unwrap()
        })
        .collect();
    assert_eq!(plans[0].workdir.as_deref(), Some("/srv"));
    assert_eq!(
        plans[0].user.as_deref(),
        Some("33:2000"),
        "container's runAsUser over the pod's"
    );
    assert!(plans[0].tty && plans[0].stdin);
    assert_eq!(plans[1].user.as_deref(), Some("1000:2000"));
    assert!(!plans[1].tty);
    let policies: Vec<PullPolicy> = plans.iter().map(|p| p.pull_policy).collect();
    assert_eq!(
        policies,
        vec![
            PullPolicy::Always,
            PullPolicy::Always,
            PullPolicy::IfNotPresent,
            PullPolicy::Always,
            PullPolicy::IfNotPresent,
            PullPolicy::Never
        ]
    );
    let err = plan(json!({"name": "c", "image": "b:1", "workingDir": "rel"})).unwrap_err();
    assert!(
        matches!(&err, PlanError::Invalid { field, .. } if field == "spec.containers[0].workingDir")
    );
    let err = plan(json!({"name": "c", "image": ""})).unwrap_err();
    assert!(
        matches!(&err, PlanError::Invalid { field, .. } if field == "spec.containers[0].image")
    );
}

#[test]
fn limits_and_bad_quantities() {
    let p = plan(
        json!({"name": "c", "image": "b:1", "resources": {"limits": {"memory": "1G", "cpu": "2"}}}),
    )
    .unwrap();
    assert_eq!(p.memory_limit, Some(1_000_000_000));
    assert_eq!(p.cpu_limit, Some(2.0));
    let err =
        plan(json!({"name": "c", "image": "b:1", "resources": {"limits": {"memory": "lots"}}}))
            .unwrap_err();
    assert!(
        matches!(&err, PlanError::Invalid { field, .. } if field == "spec.containers[0].resources.limits.memory"),
        "{err:?}"
    );
    assert_eq!(err.reason(), "CreateContainerError");
}

#[test]
fn quantities() {
    let q = |s: &str| Quantity(s.to_string());
    let bytes = |s: &str| quantity_bytes(&q(s), "f");
    let cores = |s: &str| quantity_cores(&q(s), "f");
    assert_eq!(bytes("128Mi"), Ok(128 << 20));
    assert_eq!(bytes("1G"), Ok(1_000_000_000));
    assert_eq!(bytes("1e3"), Ok(1000));
    assert_eq!(bytes("1E3"), Ok(1000));
    assert_eq!(bytes("1E"), Ok(1_000_000_000_000_000_000));
    assert_eq!(bytes("0.5Ki"), Ok(512));
    assert_eq!(bytes("1.5Gi"), Ok(3 << 29));
    assert_eq!(bytes("64k"), Ok(64_000));
    assert_eq!(bytes("0"), Ok(0));
    assert_eq!(bytes("+12"), Ok(12));
    assert_eq!(cores("0.5"), Ok(0.5));
    assert_eq!(cores("500m"), Ok(0.5));
    assert_eq!(cores("2"), Ok(2.0));
    assert_eq!(cores("1e3"), Ok(1000.0));
    assert_eq!(cores(".25"), Ok(0.25));
    assert_eq!(cores("100u"), Ok(0.0001));
    for bad in [
        "500m", "1.5", "-1", "", "abc", "1Ki5", "1.2.3", "1KB", "1e", "1e1e1", "Mi", "1 Mi",
        "99999Ei",
    ] {
        let err = bytes(bad).unwrap_err();
        assert!(
            matches!(&err, PlanError::Invalid { field, .. } if field == "f"),
            "{bad}: {err:?}"
        );
    }
    assert_eq!(cores("1."), Ok(1.0), "`1.` is a valid number");
    for bad in ["-500m", "x", ".", "1m1"] {
        assert!(cores(bad).is_err(), "{bad}");
    }
}

#[test]
fn volume_mounts() {
    let p = pod(json!({
        "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}}],
        "containers": [{"name": "c", "image": "b:1",
            "env": [{"name": "SUB", "value": "pods"}],
            "volumeMounts": [
                {"name": "data", "mountPath": "/data"},
                {"name": "data", "mountPath": "/logs", "subPath": "logs/app", "readOnly": true},
                {"name": "cfg", "mountPath": "/etc/cfg"},
                {"name": "data", "mountPath": "/x", "subPathExpr": "$(SUB)/x"}
            ]}]
    }));
    let dirs: BTreeMap<String, PathBuf> = [
        (
            "data".to_string(),
            PathBuf::from("/var/pods/u/volumes/data"),
        ),
        ("cfg".to_string(), PathBuf::from("/var/pods/u/volumes/cfg")),
    ]
    .into();
    let plan = plan_with(&p, &FakeRefs::default(), &dirs).unwrap();
    let got: Vec<(String, String, bool)> = plan
        .mounts
        .iter()
        .map(|m| {
            (
                m.host_path.display().to_string(),
                m.container_path.clone(),
                m.read_only,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("/var/pods/u/volumes/data".into(), "/data".into(), false),
            (
                "/var/pods/u/volumes/data/logs/app".into(),
                "/logs".into(),
                true
            ),
            ("/var/pods/u/volumes/cfg".into(), "/etc/cfg".into(), true),
            ("/var/pods/u/volumes/data/pods/x".into(), "/x".into(), false),
        ]
    );

    for (mount, field) in [
        (
            json!({"name": "nope", "mountPath": "/n"}),
            "spec.containers[0].volumeMounts[0].name",
        ),
        (
            json!({"name": "data", "mountPath": "/n", "subPath": "../escape"}),
            "spec.containers[0].volumeMounts[0].subPath",
        ),
        (
            json!({"name": "data", "mountPath": "/n", "subPath": "/abs"}),
            "spec.containers[0].volumeMounts[0].subPath",
        ),
        (
            json!({"name": "data", "mountPath": "/n", "subPath": "a/../../b"}),
            "spec.containers[0].volumeMounts[0].subPath",
        ),
        (
            json!({"name": "data", "mountPath": "rel"}),
            "spec.containers[0].volumeMounts[0].mountPath",
        ),
    ] {
        let p = pod(json!({
            "volumes": [{"name": "data", "emptyDir": {}}],
            "containers": [{"name": "c", "image": "b:1", "volumeMounts": [mount]}]
        }));
        let err = plan_with(&p, &FakeRefs::default(), &dirs).unwrap_err();
        assert!(
            matches!(&err, PlanError::Invalid { field: f, .. } if f == field),
            "{err:?}"
        );
    }
}

fn file(path: &str, data: &str, mode: u32) -> ProjectedFile {
    ProjectedFile {
        path: path.into(),
        data: data.as_bytes().to_vec(),
        mode,
    }
}

#[test]
fn volumes_of_every_kind() {
    let refs = FakeRefs::default()
        .with_cm("cfg", json!({"app.conf": "x=1", "other": "o"}))
        .with_secret("tls", &[("tls.crt", b"CERT"), ("tls.key", b"\x00\xffKEY")]);
    let mut bin = refs.config_maps.get("cfg").cloned().unwrap();
    bin.binary_data = Some([("blob".to_string(), k8s_openapi::ByteString(vec![0, 1, 2]))].into());
    let mut refs = refs;
    refs.config_maps.insert("cfg".into(), bin);
    let p = pod(json!({
        "containers": [{"name": "c", "image": "b:1"}],
        "volumes": [
            {"name": "scratch", "emptyDir": {}},
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {"name": "cfg-items", "configMap": {"name": "cfg", "defaultMode": 0o440, "items": [
                {"key": "app.conf", "path": "conf/app.conf"},
                {"key": "other", "path": "o", "mode": 0o600}
            ]}},
            {"name": "tls", "secret": {"secretName": "tls", "items": [{"key": "tls.key", "path": "k"}]}},
            {"name": "opt", "configMap": {"name": "ghost", "optional": true}},
            {"name": "opt-key", "secret": {"secretName": "tls", "optional": true, "items": [{"key": "nope", "path": "n"}]}},
            {"name": "bare"}
        ]
    }));
    let plans = plan_volumes(&p, &refs, false).unwrap();
    let kinds: Vec<(&str, &VolumeKind)> =
        plans.iter().map(|v| (v.name.as_str(), &v.kind)).collect();
    let no_size = VolumeKind::EmptyDir {
        memory: false,
        size_limit: None,
    };
    assert_eq!(kinds[0], ("scratch", &no_size));
    assert_eq!(
        kinds[1],
        (
            "shm",
            &VolumeKind::EmptyDir {
                memory: true,
                size_limit: Some(64 << 20)
            }
        )
    );
    let bytes = |s: &[u8]| s.to_vec();
    assert_eq!(
        kinds[2],
        (
            "cfg",
            &VolumeKind::Projected {
                files: vec![
                    ProjectedFile {
                        path: "app.conf".into(),
                        data: bytes(b"x=1"),
                        mode: 0o644
                    },
                    ProjectedFile {
                        path: "blob".into(),
                        data: vec![0, 1, 2],
                        mode: 0o644
                    },
                    ProjectedFile {
                        path: "other".into(),
                        data: bytes(b"o"),
                        mode: 0o644
                    },
                ]
            }
        )
    );
    assert_eq!(
        kinds[3].1,
        &VolumeKind::Projected {
            files: vec![
                ProjectedFile {
                    path: "conf/app.conf".into(),
                    data: bytes(b"x=1"),
                    mode: 0o440
                },
                ProjectedFile {
                    path: "o".into(),
                    data: bytes(b"o"),
                    mode: 0o600
                },
            ]
        }
    );
    assert_eq!(
        kinds[4].1,
        &VolumeKind::Projected {
            files: vec![ProjectedFile {
                path: "k".into(),
                data: bytes(b"\x00\xffKEY"),
                mode: 0o644
            }]
        }
    );
    assert_eq!(kinds[5].1, &VolumeKind::Projected { files: vec![] });
    assert_eq!(kinds[6].1, &VolumeKind::Projected { files: vec![] });
    assert_eq!(kinds[7], ("bare", &no_size));
}

#[test]
fn volume_errors_name_the_field() {
    let refs = FakeRefs::default().with_cm("cfg", json!({"a": "1"}));
    let cases = [
        (
            json!({"name": "h", "hostPath": {"path": "/etc"}}),
            "spec.volumes[0].hostPath",
            "Invalid",
        ),
        (
            json!({"name": "p", "persistentVolumeClaim": {"claimName": "x"}}),
            "spec.volumes[0].persistentVolumeClaim",
            "Invalid",
        ),
        (
            json!({"name": "d", "downwardAPI": {}}),
            "spec.volumes[0].downwardAPI",
            "Invalid",
        ),
        (
            json!({"name": "m", "configMap": {"name": "missing"}}),
            "spec.volumes[0].configMap",
            "Config",
        ),
        (
            json!({"name": "k", "configMap": {"name": "cfg", "items": [{"key": "zz", "path": "z"}]}}),
            "spec.volumes[0].configMap.items[0].key",
            "Config",
        ),
        (
            json!({"name": "e", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "../x"}]}}),
            "spec.volumes[0].configMap.items[0].path",
            "Invalid",
        ),
        (
            json!({"name": "e", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "/abs"}]}}),
            "spec.volumes[0].configMap.items[0].path",
            "Invalid",
        ),
        (
            json!({"name": "e", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "..data"}]}}),
            "spec.volumes[0].configMap.items[0].path",
            "Invalid",
        ),
        (
            json!({"name": "e", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "x"}, {"key": "a", "path": "x/y"}]}}),
            "spec.volumes[0].configMap",
            "Invalid",
        ),
        (
            json!({"name": "e", "configMap": {"name": "cfg", "defaultMode": 0o1777}}),
            "spec.volumes[0].configMap.defaultMode",
            "Invalid",
        ),
        (
            json!({"name": "s", "secret": {"secretName": "nope"}}),
            "spec.volumes[0].secret",
            "Config",
        ),
        (
            json!({"name": "x", "emptyDir": {"sizeLimit": "1.5"}}),
            "spec.volumes[0].emptyDir.sizeLimit",
            "Invalid",
        ),
    ];
    for (vol, field, kind) in cases {
        let p = pod(json!({"containers": [{"name": "c", "image": "b:1"}], "volumes": [vol]}));
        let err = plan_volumes(&p, &refs, false).unwrap_err();
        let (f, k) = match &err {
            PlanError::Config { field, .. } => (field.as_str(), "Config"),
            PlanError::Invalid { field, .. } => (field.as_str(), "Invalid"),
            PlanError::Source(_) => ("", "Source"),
        };
        assert_eq!((f, k), (field, kind), "{err}");
    }
    // hostPath is fine when the agent allows it.
    let p =
        pod(json!({"containers": [], "volumes": [{"name": "h", "hostPath": {"path": "/etc"}}]}));
    let plans = plan_volumes(&p, &refs, true).unwrap();
    assert_eq!(
        plans[0].kind,
        VolumeKind::HostPath {
            path: "/etc".into()
        }
    );
}

/// Every regular file under `dir` (following no links) with its content.
fn snapshot(dir: &std::path::Path) -> std::io::Result<BTreeMap<String, String>> {
    fn walk(
        d: &std::path::Path,
        pre: &str,
        out: &mut BTreeMap<String, String>,
    ) -> std::io::Result<()> {
        for e in std::fs::read_dir(d)? {
            let e = e?;
            let name = format!("{pre}{}", e.file_name().to_string_lossy());
            if e.file_type()?.is_dir() {
                walk(&e.path(), &format!("{name}/"), out)?;
            } else {
                out.insert(name, std::fs::read_to_string(e.path())?);
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, "", &mut out)?;
    Ok(out)
}

#[test]
fn write_projected_layout_update_and_idempotence() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol");
    let one = vec![file("a", "1", 0o644), file("conf/app.conf", "x=1", 0o400)];
    assert!(write_projected(&dir, &one).unwrap());
    assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
    assert_eq!(
        std::fs::read_to_string(dir.join("conf/app.conf")).unwrap(),
        "x=1"
    );
    let mode = std::fs::metadata(dir.join("conf/app.conf"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o400);
    assert_eq!(
        std::fs::read_link(dir.join("a")).unwrap(),
        std::path::Path::new("..data/a")
    );
    let ts1 = std::fs::read_link(dir.join("..data")).unwrap();
    assert!(ts1.to_string_lossy().starts_with(".."), "{ts1:?}");

    // Same content again: nothing changes, not even the timestamped dir.
    assert!(!write_projected(&dir, &one).unwrap());
    assert_eq!(std::fs::read_link(dir.join("..data")).unwrap(), ts1);

    // A mode change alone is a change.
    let one_mode = vec![file("a", "1", 0o600), file("conf/app.conf", "x=1", 0o400)];
    assert!(write_projected(&dir, &one_mode).unwrap());

    // New set: `conf` goes away, `b` appears, the old timestamped dir is removed.
    let two = vec![file("a", "2", 0o644), file("b", "bee", 0o644)];
    assert!(write_projected(&dir, &two).unwrap());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let ts2 = std::fs::read_link(dir.join("..data"))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        names,
        vec![ts2.clone(), "..data".to_string(), "a".into(), "b".into()]
    );
    assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "2");

    // A crash between making a timestamped dir and publishing it leaves garbage that the
    // next write removes; a missing visible link is repaired.
    std::fs::create_dir(dir.join("..2000_01_01_00_00_00.junk")).unwrap();
    std::fs::write(dir.join("..2000_01_01_00_00_00.junk/a"), "half").unwrap();
    std::fs::remove_file(dir.join("b")).unwrap();
    assert!(write_projected(&dir, &two).unwrap());
    assert_eq!(std::fs::read_to_string(dir.join("b")).unwrap(), "bee");
    assert!(!dir.join("..2000_01_01_00_00_00.junk").exists());
    assert!(!write_projected(&dir, &two).unwrap());

    // Empty set (an optional configMap that is gone).
    assert!(write_projected(&dir, &[]).unwrap());
    assert!(!dir.join("a").exists() && !dir.join("b").exists());

    // Bad paths are refused before anything is written.
    for bad in ["../x", "/abs", "..hidden", "a//b"] {
        let err = write_projected(&dir, &[file(bad, "x", 0o644)]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{bad}");
    }
}

#[test]
fn write_projected_readers_never_see_a_mixed_set() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vol");
    let set_a = vec![
        file("a", "A-a", 0o644),
        file("b", "A-b", 0o644),
        file("sub/c", "A-c", 0o644),
    ];
    let set_b = vec![
        file("a", "B-a", 0o644),
        file("b", "B-b", 0o644),
        file("d", "B-d", 0o644),
    ];
    let expect = |set: &[ProjectedFile]| -> BTreeMap<String, String> {
        set.iter()
            .map(|f| (f.path.clone(), String::from_utf8(f.data.clone()).unwrap()))
            .collect()
    };
    let (want_a, want_b) = (expect(&set_a), expect(&set_b));
    write_projected(&dir, &set_a).unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (dir, done) = (dir.clone(), done.clone());
        let (want_a, want_b) = (want_a.clone(), want_b.clone());
        std::thread::spawn(move || {
            let (mut seen_a, mut seen_b, mut retries) = (0u32, 0u32, 0u32);
            while !done.load(Ordering::SeqCst) {
                // A consistent reader resolves `..data` once, then reads that set.
                let Ok(ts) = std::fs::read_link(dir.join("..data")) else {
                    retries += 1;
                    continue;
                };
                let snap = snapshot(&dir.join(&ts));
                // Still the live set after reading? Then what was read must be one whole set
                // (a set retired meanwhile may have been half deleted: read again).
                if std::fs::read_link(dir.join("..data")).ok().as_ref() != Some(&ts) {
                    retries += 1;
                    continue;
                }
                match snap {
                    Ok(s) if s == want_a => seen_a += 1,
                    Ok(s) if s == want_b => seen_b += 1,
                    Ok(s) => panic!("mixed or partial set: {s:?}"),
                    Err(e) => panic!("the live set is unreadable: {e}"),
                }
                // Each visible file on its own always has one whole value.
                if let Ok(v) = std::fs::read_to_string(dir.join("a")) {
                    assert!(v == "A-a" || v == "B-a", "partial file: {v:?}");
                }
            }
            (seen_a, seen_b, retries)
        })
    };
    for i in 0..400 {
        let set = if i % 2 == 0 { &set_b } else { &set_a };
        assert!(write_projected(&dir, set).unwrap());
    }
    done.store(true, Ordering::SeqCst);
    let (seen_a, seen_b, retries) = reader.join().unwrap();
    eprintln!("reader: {seen_a} snapshots of A, {seen_b} of B, {retries} retried");
    assert!(seen_a + seen_b > 0, "the reader read something");
    // The last write was set A.
    assert_eq!(
        snapshot(&dir.join(std::fs::read_link(dir.join("..data")).unwrap())).unwrap(),
        want_a
    );
}

#[test]
fn resource_field_ref_without_a_limit_is_the_node_capacity() {
    let p = plan(json!({
        "name": "c", "image": "b:1",
        "env": [
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}},
            {"name": "REQ", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory"}}}
        ]
    }))
    .unwrap();
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(p.env[0], format!("CPU={cpus}"));
    let mem: i64 = p.env[1].strip_prefix("MEM=").unwrap().parse().unwrap();
    assert!(mem > 0);
    assert_eq!(p.env[2], "REQ=0");
    let err = plan(json!({"name": "c", "image": "b:1", "env": [
        {"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "limits.gpu"}}}
    ]}))
    .unwrap_err();
    assert!(
        matches!(&err, PlanError::Invalid { field, .. } if field == "spec.containers[0].env[0].valueFrom.resourceFieldRef.resource"),
        "{err:?}"
    );
}
