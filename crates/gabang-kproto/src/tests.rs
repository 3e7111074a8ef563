//! Unit tests: hand-built wire bytes for real kinds, the special types, and
//! broken input (truncated, garbage, wrong wire types) that must fail cleanly.

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::{decode, is_protobuf, Error};

// A tiny protobuf writer for building test bodies by hand.
fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}
fn key(tag: u32, wt: u8) -> Vec<u8> {
    varint(u64::from(tag) << 3 | u64::from(wt))
}
/// A length-delimited field (string, bytes or message).
fn ld(tag: u32, b: &[u8]) -> Vec<u8> {
    [key(tag, 2), varint(b.len() as u64), b.to_vec()].concat()
}
fn s(tag: u32, v: &str) -> Vec<u8> {
    ld(tag, v.as_bytes())
}
fn int(tag: u32, v: i64) -> Vec<u8> {
    [key(tag, 0), varint(v as u64)].concat()
}
fn msg(tag: u32, parts: &[Vec<u8>]) -> Vec<u8> {
    ld(tag, &parts.concat())
}
fn entry(tag: u32, k: &str, v: Vec<u8>) -> Vec<u8> {
    msg(tag, &[s(1, k), v])
}
/// magic + Unknown{typeMeta, raw, contentEncoding "", contentType ""} as Go writes it.
fn body(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    [
        b"k8s\0".to_vec(),
        msg(1, &[s(1, api_version), s(2, kind)]),
        ld(2, raw),
        s(3, ""),
        s(4, ""),
    ]
    .concat()
}
/// A meta/v1 Time {seconds, nanos}.
fn time(tag: u32, secs: i64, nanos: i64) -> Vec<u8> {
    msg(tag, &[int(1, secs), int(2, nanos)])
}

/// ObjectMeta the way client-go writes it: non-pointer strings always present.
fn meta(name: &str, labels: &[(&str, &str)]) -> Vec<u8> {
    let mut parts = vec![
        s(1, name),
        s(2, ""),
        s(3, ""),
        s(4, ""),
        s(5, ""),
        int(7, 0),
    ];
    parts.push(ld(8, &[])); // creationTimestamp: the zero time, empty
    for (k, v) in labels {
        parts.push(entry(11, k, s(2, v)));
    }
    msg(1, &parts)
}

fn deployment() -> Vec<u8> {
    let container = msg(
        2,
        &[
            s(1, "busybox"),
            s(2, "busybox:1"),
            s(3, "sleep"),
            s(3, "3600"),
            s(5, ""),
            msg(
                6,
                &[s(1, "http"), int(2, 0), int(3, 8080), s(4, "TCP"), s(5, "")],
            ),
            msg(7, &[s(1, "MODE"), s(2, "prod")]),
            msg(7, &[s(1, "EMPTY"), s(2, "")]),
            msg(
                8,
                &[
                    entry(1, "cpu", msg(2, &[s(1, "500m")])),
                    entry(1, "memory", msg(2, &[s(1, "64Mi")])),
                ],
            ),
            msg(
                10,
                &[
                    // Probe.handler is inline: httpGet appears directly under livenessProbe.
                    msg(
                        1,
                        &[msg(
                            2,
                            &[s(1, "/healthz"), msg(2, &[int(1, 1), s(3, "http")])],
                        )],
                    ),
                    int(2, 3),
                    int(3, 1),
                ],
            ),
            s(13, "/dev/termination-log"),
            s(14, "IfNotPresent"),
            int(16, 0),
            s(20, "File"),
        ],
    );
    let pod_spec = msg(
        2,
        &[
            msg(
                1,
                &[
                    s(1, "cfg"),
                    msg(2, &[msg(19, &[msg(1, &[s(1, "web-config")]), int(3, 420)])]),
                ],
            ),
            container,
            s(3, "Always"),
            int(4, 30),
            s(6, "ClusterFirst"),
            entry(7, "disktype", s(2, "ssd")),
            s(10, ""), // nodeName: empty means unset
            msg(14, &[]),
        ],
    );
    let template = msg(3, &[meta("", &[("app", "web")]), pod_spec]);
    let spec = msg(
        2,
        &[
            int(1, 2),
            msg(2, &[entry(1, "app", s(2, "web"))]),
            template,
            msg(
                4,
                &[
                    s(1, "RollingUpdate"),
                    msg(
                        2,
                        &[
                            msg(1, &[int(1, 1), s(3, "25%")]),
                            msg(2, &[int(1, 0), int(2, 1)]),
                        ],
                    ),
                ],
            ),
            int(5, 0),
            int(6, 10),
        ],
    );
    body(
        "apps/v1",
        "Deployment",
        &[meta("web", &[("app", "web")]), spec, msg(3, &[])].concat(),
    )
}

#[test]
fn deployment_decodes_to_kubernetes_json() {
    let got = decode(&deployment()).unwrap();
    let want = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "creationTimestamp": null, "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                "spec": {
                    "volumes": [{"name": "cfg", "configMap": {"name": "web-config", "defaultMode": 420}}],
                    "containers": [{
                        "name": "busybox",
                        "image": "busybox:1",
                        "command": ["sleep", "3600"],
                        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                        "env": [{"name": "MODE", "value": "prod"}, {"name": "EMPTY"}],
                        "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
                        "livenessProbe": {
                            "httpGet": {"path": "/healthz", "port": "http"},
                            "initialDelaySeconds": 3,
                            "timeoutSeconds": 1
                        },
                        "terminationMessagePath": "/dev/termination-log",
                        "imagePullPolicy": "IfNotPresent",
                        "terminationMessagePolicy": "File"
                    }],
                    "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": 30,
                    "dnsPolicy": "ClusterFirst",
                    "nodeSelector": {"disktype": "ssd"},
                    "securityContext": {}
                }
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}},
            "revisionHistoryLimit": 10
        },
        "status": {}
    });
    assert_eq!(got, want, "{}", serde_json::to_string_pretty(&got).unwrap());
    // And k8s-openapi-shaped JSON is what the server stores: it must parse as JSON
    // text identical in meaning (round trip through a string).
    let text = serde_json::to_string(&got).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), want);
}

#[test]
fn zero_means_unset_only_where_go_says_so() {
    // DeploymentSpec.replicas is a pointer: 0 is kept. minReadySeconds and paused
    // are non-pointer `omitempty`: their zero is dropped, a non-zero kept.
    let raw = [
        meta("web", &[]),
        msg(2, &[int(1, 0), int(5, 0), int(7, 1), int(6, 0)]),
    ]
    .concat();
    let v = decode(&body("apps/v1", "Deployment", &raw)).unwrap();
    assert_eq!(
        v["spec"],
        json!({"replicas": 0, "paused": true, "revisionHistoryLimit": 0})
    );
    // ContainerPort.containerPort is required: 0 stays.
    let raw = [
        meta("p", &[]),
        msg(2, &[msg(2, &[s(1, ""), msg(6, &[int(3, 0)])])]),
    ]
    .concat();
    let v = decode(&body("v1", "Pod", &raw)).unwrap();
    assert_eq!(
        v["spec"]["containers"],
        json!([{"name": "", "ports": [{"containerPort": 0}]}])
    );
}

#[test]
fn fields_newer_than_kubernetes_1_32_are_skipped() {
    // PodSpec.hostnameOverride (tag 41) came after 1.32: skipped like any unknown
    // field, as a 1.32 API server skips it; the rest of the spec is kept.
    let raw = [
        meta("p", &[]),
        msg(
            2,
            &[msg(2, &[s(1, "c")]), s(41, "other-name"), s(3, "Never")],
        ),
    ]
    .concat();
    let v = decode(&body("v1", "Pod", &raw)).unwrap();
    assert_eq!(
        v["spec"],
        json!({"containers": [{"name": "c"}], "restartPolicy": "Never"})
    );
}

#[test]
fn secret_bytes_become_base64_and_empty_values_stay() {
    let raw = [
        meta("creds", &[]),
        entry(2, "password", ld(2, b"s3cr\x00t\xff")),
        entry(2, "empty", ld(2, b"")),
        entry(2, "novalue", vec![]),
        s(3, "Opaque"),
        entry(4, "plain", s(2, "text")),
    ]
    .concat();
    let got = decode(&body("v1", "Secret", &raw)).unwrap();
    assert_eq!(
        got["data"],
        json!({"password": "czNjcgB0/w==", "empty": "", "novalue": ""})
    );
    assert_eq!(got["type"], "Opaque");
    assert_eq!(got["stringData"], json!({"plain": "text"}));
    assert_eq!(got["metadata"]["name"], "creds");
    assert!(
        got["metadata"].get("namespace").is_none(),
        "empty optional strings are omitted"
    );
}

#[test]
fn int_or_string_forms() {
    let port = |target: Vec<u8>| {
        let raw = [
            meta("svc", &[]),
            msg(2, &[msg(1, &[s(2, "TCP"), int(3, 80), target])]),
        ]
        .concat();
        decode(&body("v1", "Service", &raw))
    };
    let v = port(msg(4, &[int(1, 0), int(2, 8080)])).unwrap();
    assert_eq!(v["spec"]["ports"][0]["targetPort"], json!(8080));
    let v = port(msg(4, &[int(1, 1), s(3, "http")])).unwrap();
    assert_eq!(v["spec"]["ports"][0]["targetPort"], json!("http"));
    // Negative int32 values are sign-extended to ten bytes on the wire.
    let v = port(msg(4, &[int(1, 0), int(2, -5)])).unwrap();
    assert_eq!(v["spec"]["ports"][0]["targetPort"], json!(-5));
    // An empty IntOrString is Go's zero value: the number 0.
    let v = port(msg(4, &[])).unwrap();
    assert_eq!(v["spec"]["ports"][0]["targetPort"], json!(0));
    let e = port(msg(4, &[int(1, 7)])).unwrap_err();
    assert!(
        matches!(&e, Error::Malformed { path, .. } if path == "spec.ports[0].targetPort"),
        "{e}"
    );
    assert_eq!(e.http_status(), 400);
}

#[test]
fn times_render_like_kubernetes() {
    let raw = [
        meta("ev", &[]),
        msg(2, &[s(1, "Pod"), s(3, "p")]),
        time(6, 1_700_000_000, 999_999_999),
        ld(7, &[]),
        msg(10, &[int(1, 1_700_000_000), int(2, 123_456_789)]),
        int(8, 3),
    ]
    .concat();
    let v = decode(&body("v1", "Event", &raw)).unwrap();
    // Time keeps whole seconds, MicroTime microseconds; an empty Time is null.
    assert_eq!(v["firstTimestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(v["lastTimestamp"], Value::Null);
    assert_eq!(v["eventTime"], "2023-11-14T22:13:20.123456Z");
    assert_eq!(v["count"], 3);
    assert_eq!(v["involvedObject"], json!({"kind": "Pod", "name": "p"}));

    let lease = [
        meta("l", &[]),
        msg(
            2,
            &[s(1, "me"), int(2, 15), msg(3, &[int(1, 0)]), int(5, 2)],
        ),
    ]
    .concat();
    let v = decode(&body("coordination.k8s.io/v1", "Lease", &lease)).unwrap();
    assert_eq!(v["spec"]["acquireTime"], "1970-01-01T00:00:00.000000Z");
    assert_eq!(v["spec"]["leaseTransitions"], 2);

    // Time ignores its nanos (Kubernetes never reads them); MicroTime checks them.
    let raw = [meta("ev", &[]), time(6, 0, -1)].concat();
    let v = decode(&body("v1", "Event", &raw)).unwrap();
    assert_eq!(v["firstTimestamp"], "1970-01-01T00:00:00Z");
    for (tag, name, bad) in [
        (6, "firstTimestamp", (i64::MAX, 0)),
        (6, "firstTimestamp", (-100_000_000_000, 0)),
        (10, "eventTime", (0, -1)),
        (10, "eventTime", (0, 1_000_000_000)),
    ] {
        let raw = [meta("ev", &[]), time(tag, bad.0, bad.1)].concat();
        let e = decode(&body("v1", "Event", &raw)).unwrap_err();
        assert!(
            matches!(&e, Error::Malformed { path, .. } if path == name),
            "{e}"
        );
    }
}

#[test]
fn nested_lists_and_maps_merge_like_protobuf() {
    // A Pod whose spec arrives in two pieces (protobuf merges them), two
    // containers, a map with a repeated key (last wins), packed and unpacked
    // repeated int64.
    let packed: Vec<u8> = [varint(1000), varint(2000)].concat();
    let raw = [
        meta("p", &[("a", "1"), ("a", "2"), ("b", "")]),
        msg(2, &[msg(2, &[s(1, "one"), s(2, "busybox:1")])]),
        msg(
            2,
            &[
                msg(
                    2,
                    &[s(1, "two"), s(2, "busybox:1"), s(4, "-c"), s(4, "echo hi")],
                ),
                msg(14, &[ld(4, &packed), int(4, 3000)]),
                s(10, "node-1"),
            ],
        ),
        msg(
            3,
            &[s(1, "Pending"), msg(2, &[s(1, "Ready"), s(2, "False")])],
        ),
    ]
    .concat();
    let v = decode(&body("v1", "Pod", &raw)).unwrap();
    assert_eq!(v["metadata"]["labels"], json!({"a": "2", "b": ""}));
    let names: Vec<&str> = v["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["one", "two"]);
    assert_eq!(v["spec"]["containers"][1]["args"], json!(["-c", "echo hi"]));
    assert_eq!(
        v["spec"]["securityContext"]["supplementalGroups"],
        json!([1000, 2000, 3000])
    );
    assert_eq!(v["spec"]["nodeName"], "node-1");
    assert_eq!(
        v["status"],
        json!({"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]})
    );
}

#[test]
fn delete_options_eviction_and_scale() {
    let opts = [int(1, 0), msg(2, &[s(1, "uid-1")]), s(4, "Foreground")].concat();
    // DeleteOptions is accepted under any group version.
    for gv in ["v1", "apps/v1", "meta.k8s.io/v1"] {
        let v = decode(&body(gv, "DeleteOptions", &opts)).unwrap();
        assert_eq!(v["gracePeriodSeconds"], 0);
        assert_eq!(v["preconditions"], json!({"uid": "uid-1"}));
        assert_eq!(v["propagationPolicy"], "Foreground");
        assert_eq!(v["apiVersion"], gv);
    }
    let ev = [meta("p", &[]), msg(2, &[int(1, 30)])].concat();
    let v = decode(&body("policy/v1", "Eviction", &ev)).unwrap();
    assert_eq!(v["deleteOptions"], json!({"gracePeriodSeconds": 30}));
    let sc = [
        meta("web", &[]),
        msg(2, &[int(1, 5)]),
        msg(3, &[int(1, 2), s(2, "app=web")]),
    ]
    .concat();
    let v = decode(&body("autoscaling/v1", "Scale", &sc)).unwrap();
    assert_eq!(v["spec"], json!({"replicas": 5}));
    assert_eq!(v["status"], json!({"replicas": 2, "selector": "app=web"}));
}

#[test]
fn managed_fields_embed_raw_json() {
    let mf = msg(
        17,
        &[
            s(1, "kubectl"),
            s(2, "Update"),
            s(6, "FieldsV1"),
            msg(7, &[ld(1, br#"{"f:data":{}}"#)]),
        ],
    );
    let raw = [msg(1, &[s(1, "cm"), mf]), entry(2, "k", s(2, "v"))].concat();
    let v = decode(&body("v1", "ConfigMap", &raw)).unwrap();
    assert_eq!(
        v["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:data": {}})
    );
    let bad = [msg(
        1,
        &[s(1, "cm"), msg(17, &[msg(7, &[ld(1, b"{nope")])])],
    )]
    .concat();
    let e = decode(&body("v1", "ConfigMap", &bad)).unwrap_err();
    assert!(
        matches!(&e, Error::Malformed { path, .. } if path == "metadata.managedFields[0].fieldsV1"),
        "{e}"
    );
}

#[test]
fn errors_name_the_field_and_offset() {
    // Invalid UTF-8 in spec.template.spec.containers[1].image.
    let bad_image = b"busy\xffbox";
    let c = |img: &[u8]| msg(2, &[s(1, "c"), ld(2, img)]);
    let raw = [
        meta("web", &[]),
        msg(2, &[msg(3, &[msg(2, &[c(b"ok"), c(bad_image)])])]),
    ]
    .concat();
    let b = body("apps/v1", "Deployment", &raw);
    let e = decode(&b).unwrap_err();
    let Error::Malformed { path, offset, what } = &e else {
        panic!("{e}")
    };
    assert_eq!(path, "spec.template.spec.containers[1].image");
    assert!(what.contains("UTF-8"), "{what}");
    assert_eq!(
        &b[*offset..*offset + 1],
        b"\xff",
        "offset points at the bad byte"
    );
    assert!(e
        .to_string()
        .contains("spec.template.spec.containers[1].image"));

    // A string field sent as a varint.
    let raw = [
        meta("web", &[]),
        msg(2, &[msg(3, &[msg(2, &[msg(2, &[int(2, 5)])])])]),
    ]
    .concat();
    let e = decode(&body("apps/v1", "Deployment", &raw)).unwrap_err();
    assert!(e.to_string().contains("wire type varint"), "{e}");

    // Unknown fields are skipped, whatever their wire type.
    let raw = [
        meta("cm", &[]),
        int(99, 7),
        ld(100, b"junk"),
        [key(101, 1), vec![0; 8]].concat(),
        [key(102, 5), vec![0; 4]].concat(),
    ]
    .concat();
    assert!(decode(&body("v1", "ConfigMap", &raw)).is_ok());
    // Groups are not.
    let raw = [meta("cm", &[]), key(99, 3)].concat();
    assert!(decode(&body("v1", "ConfigMap", &raw)).is_err());
}

#[test]
fn envelope_errors() {
    assert_eq!(decode(b"{\"kind\":\"Pod\"}"), Err(Error::NoMagic));
    assert_eq!(decode(b""), Err(Error::NoMagic));
    let e = decode(&body("v1", "PersistentVolumeClaim", &[])).unwrap_err();
    assert_eq!(e.http_status(), 415);
    assert!(e.to_string().contains("PersistentVolumeClaim"), "{e}");
    let e = decode(&body("apps/v2", "Deployment", &[])).unwrap_err();
    assert_eq!(e.http_status(), 415);
    let gz = [
        b"k8s\0".to_vec(),
        msg(1, &[s(1, "v1"), s(2, "Pod")]),
        ld(2, b""),
        s(3, "gzip"),
    ]
    .concat();
    let e = decode(&gz).unwrap_err();
    assert_eq!((e.http_status(), e.reason()), (415, "UnsupportedMediaType"));
    let no_kind = [b"k8s\0".to_vec(), msg(1, &[s(1, "v1")])].concat();
    assert_eq!(decode(&no_kind).unwrap_err().http_status(), 400);
    // An object with nothing set is still an object.
    assert_eq!(
        decode(&body("v1", "Namespace", &[])).unwrap(),
        json!({"apiVersion": "v1", "kind": "Namespace"})
    );
    assert!(is_protobuf("application/vnd.kubernetes.protobuf"));
    assert!(is_protobuf(
        "Application/Vnd.Kubernetes.Protobuf; charset=binary"
    ));
    assert!(!is_protobuf("application/json"));
}

#[test]
fn every_truncation_fails_cleanly() {
    let full = deployment();
    // The object (field 2 of the envelope) spans raw_start..raw_end; a cut at a
    // field boundary of the envelope is a valid (smaller) body, as in protobuf.
    let raw_start = 4 + msg(1, &[s(1, "apps/v1"), s(2, "Deployment")]).len();
    let raw_end = full.len() - 4; // the two empty trailing strings
    for cut in 0..full.len() {
        let r = decode(&full[..cut]);
        if cut < 4 || (cut > raw_start && cut < raw_end) {
            let e = r.expect_err(&format!("a body cut at {cut} must not decode"));
            assert_eq!(e.http_status(), 400, "cut {cut}: {e}");
            if let Error::Malformed { offset, .. } = e {
                assert!(offset <= cut, "cut {cut}: offset {offset} is past the end");
            }
        }
    }
    // Lengths inside the object that run past their parent.
    let mut b = deployment();
    let at = b.len() - 8; // somewhere in the trailing status/encoding fields
    b[at] = 0x7f;
    let _ = decode(&b);
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let good = deployment();
    let mut decoded = 0;
    for round in 0..20_000 {
        let b: Vec<u8> = if round % 2 == 0 {
            // Random garbage after the magic and a valid envelope header.
            let n = rng.gen_range(0..200);
            let junk: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            body("apps/v1", "Deployment", &junk)
        } else {
            // A valid body with a few bytes flipped.
            let mut b = good.clone();
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(4..b.len());
                b[i] = rng.gen();
            }
            b
        };
        if let Ok(v) = decode(&b) {
            assert!(v.is_object());
            decoded += 1;
        }
    }
    // Some mutations land in string contents and still decode; most do not.
    assert!(decoded > 0 && decoded < 20_000, "{decoded}");
}

#[test]
fn varints_longer_than_64_bits_are_refused() {
    let raw = [meta("p", &[]), key(2, 2), vec![0xff; 10], vec![0x01]].concat();
    let e = decode(&body("v1", "Pod", &raw)).unwrap_err();
    assert!(e.to_string().contains("varint"), "{e}");
}
