//! Defaulting and validation of objects before they are stored. Errors name the
//! field path, like Kubernetes' (`spec.replicas: Invalid value: -1: ...`).

use serde_json::{json, Value};

use crate::resources::ResourceDef;
use crate::selectors::LabelSelector;

type Errs = Vec<(String, String)>;

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric())
}

fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

fn check_labels(labels: Option<&Value>, path: &str, errs: &mut Errs) {
    let Some(m) = labels.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in m {
        if !is_qualified_name(k) {
            errs.push((path.to_string(), format!("Invalid value: {k:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")));
        }
        match v.as_str() {
            Some(s) if is_label_value(s) => {}
            _ => errs.push((path.to_string(), format!("Invalid value: {v}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (max 63 characters)"))),
        }
    }
}

/// Fills the defaults Kubernetes would on create.
pub fn default_object(def: &ResourceDef, obj: &mut Value) {
    match def.kind {
        "Pod" => {
            if let Some(spec) = obj.get_mut("spec") {
                default_pod_spec(spec);
            }
        }
        "Deployment" | "ReplicaSet" => {
            let spec = &mut obj["spec"];
            if spec.get("replicas").is_none() {
                spec["replicas"] = json!(1);
            }
            if spec.get("revisionHistoryLimit").is_none() {
                spec["revisionHistoryLimit"] = json!(10);
            }
            if def.kind == "Deployment" {
                if spec.get("progressDeadlineSeconds").is_none() {
                    spec["progressDeadlineSeconds"] = json!(600);
                }
                if spec.get("strategy").is_none() {
                    spec["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}});
                }
            }
            if let Some(ps) = spec.pointer_mut("/template/spec") {
                default_pod_spec(ps);
            }
        }
        "Service" => {
            let spec = &mut obj["spec"];
            if spec.get("type").is_none() {
                spec["type"] = json!("ClusterIP");
            }
            if spec.get("sessionAffinity").is_none() {
                spec["sessionAffinity"] = json!("None");
            }
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports {
                    if p.get("protocol").is_none() {
                        p["protocol"] = json!("TCP");
                    }
                    if p.get("targetPort").is_none() {
                        p["targetPort"] = p["port"].clone();
                    }
                }
            }
        }
        "Namespace" => {
            if obj.pointer("/spec/finalizers").is_none() {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
            }
            obj["status"] = json!({"phase": "Active"});
        }
        "Secret" if obj.get("type").is_none() => {
            obj["type"] = json!("Opaque");
        }
        _ => {}
    }
}

fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    for (k, v) in [
        ("restartPolicy", json!("Always")),
        ("dnsPolicy", json!("ClusterFirst")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("schedulerName", json!("default-scheduler")),
        ("securityContext", json!({})),
    ] {
        if spec.get(k).is_none() {
            spec[k] = v;
        }
    }
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                if c.get("imagePullPolicy").is_none() {
                    let image = c["image"].as_str().unwrap_or("");
                    let last = image.rsplit('/').next().unwrap_or("");
                    let latest = !last.contains(':') || last.ends_with(":latest");
                    let policy = if latest && !image.contains('@') {
                        "Always"
                    } else {
                        "IfNotPresent"
                    };
                    c["imagePullPolicy"] = json!(policy);
                }
                if c.get("terminationMessagePath").is_none() {
                    c["terminationMessagePath"] = json!("/dev/termination-log");
                    c["terminationMessagePolicy"] = json!("File");
                }
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports {
                        if p.get("protocol").is_none() {
                            p["protocol"] = json!("TCP");
                        }
                    }
                }
            }
        }
    }
}

fn check_pod_spec(spec: Option<&Value>, path: &str, errs: &mut Errs) {
    let cs = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    match cs {
        None => errs.push((format!("{path}.containers"), "Required value".into())),
        Some(cs) if cs.is_empty() => {
            errs.push((format!("{path}.containers"), "Required value".into()))
        }
        Some(cs) => {
            for (i, c) in cs.iter().enumerate() {
                let name = c["name"].as_str().unwrap_or("");
                if name.is_empty() {
                    errs.push((
                        format!("{path}.containers[{i}].name"),
                        "Required value".into(),
                    ));
                } else if !is_dns_label(name) {
                    errs.push((format!("{path}.containers[{i}].name"), format!("Invalid value: {name:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'")));
                }
                if c["image"].as_str().unwrap_or("").trim().is_empty() {
                    errs.push((
                        format!("{path}.containers[{i}].image"),
                        "Required value".into(),
                    ));
                }
            }
        }
    }
    // Volume names become directory names on the node: RFC 1123 labels only.
    let vols = spec
        .and_then(|s| s.get("volumes"))
        .and_then(Value::as_array);
    for (i, v) in vols.into_iter().flatten().enumerate() {
        let name = v["name"].as_str().unwrap_or("");
        if name.is_empty() {
            errs.push((format!("{path}.volumes[{i}].name"), "Required value".into()));
        } else if !is_dns_label(name) {
            errs.push((format!("{path}.volumes[{i}].name"), format!("Invalid value: {name:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'")));
        }
    }
}

/// Validates an object about to be stored; returns (field, message) pairs.
pub fn validate(def: &ResourceDef, obj: &Value) -> Errs {
    let mut errs = Errs::new();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let name_ok = match def.kind {
        "Namespace" | "Service" => is_dns_label(name),
        _ => is_dns_subdomain(name),
    };
    if name.is_empty() {
        errs.push((
            "metadata.name".into(),
            "Required value: name or generateName is required".into(),
        ));
    } else if !name_ok {
        errs.push(("metadata.name".into(), format!("Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character")));
    }
    check_labels(
        obj.pointer("/metadata/labels"),
        "metadata.labels",
        &mut errs,
    );
    match def.kind {
        "Pod" => check_pod_spec(obj.get("spec"), "spec", &mut errs),
        "Deployment" | "ReplicaSet" => {
            if let Some(r) = obj.pointer("/spec/replicas").and_then(Value::as_i64) {
                if r < 0 {
                    errs.push((
                        "spec.replicas".into(),
                        format!("Invalid value: {r}: must be greater than or equal to 0"),
                    ));
                }
            }
            match obj.pointer("/spec/selector") {
                None => errs.push(("spec.selector".into(), "Required value".into())),
                Some(sel) => {
                    let s = LabelSelector::from_object(sel);
                    if s.is_empty() {
                        errs.push((
                            "spec.selector".into(),
                            "Invalid value: empty selector is invalid for deployment".into(),
                        ));
                    } else if !s.matches_labels(
                        obj.pointer("/spec/template/metadata/labels")
                            .and_then(Value::as_object),
                    ) {
                        errs.push((
                            "spec.template.metadata.labels".into(),
                            "Invalid value: `selector` does not match template `labels`".into(),
                        ));
                    }
                }
            }
            check_labels(
                obj.pointer("/spec/template/metadata/labels"),
                "spec.template.metadata.labels",
                &mut errs,
            );
            check_pod_spec(
                obj.pointer("/spec/template/spec"),
                "spec.template.spec",
                &mut errs,
            );
        }
        "Service" => {
            if let Some(ports) = obj.pointer("/spec/ports").and_then(Value::as_array) {
                for (i, p) in ports.iter().enumerate() {
                    let port = p["port"].as_i64().unwrap_or(0);
                    if !(1..=65535).contains(&port) {
                        errs.push((
                            format!("spec.ports[{i}].port"),
                            format!(
                                "Invalid value: {port}: must be between 1 and 65535, inclusive"
                            ),
                        ));
                    }
                }
            }
        }
        "ConfigMap" | "Secret" => {
            for field in ["data", "binaryData", "stringData"] {
                if let Some(m) = obj.get(field).and_then(Value::as_object) {
                    for k in m.keys() {
                        let ok = !k.is_empty()
                            && k.len() <= 253
                            && k.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                        if !ok {
                            errs.push((format!("{field}[{k}]"), format!("Invalid value: {k:?}: a valid config key must consist of alphanumeric characters, '-', '_' or '.'")));
                        }
                    }
                }
            }
        }
        _ => {}
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

    #[test]
    fn deployment_errors_name_fields() {
        let d = find("apps", "v1", "deployments").unwrap();
        let obj = json!({"metadata": {"name": "Bad_Name"}, "spec": {"replicas": -1,
            "selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": []}}}});
        let fields: Vec<String> = validate(d, &obj).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "metadata.name",
                "spec.replicas",
                "spec.template.metadata.labels",
                "spec.template.spec.containers"
            ]
        );
    }

    #[test]
    fn pod_defaults() {
        let p = find("", "v1", "pods").unwrap();
        let mut obj = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        default_object(p, &mut obj);
        assert_eq!(obj["spec"]["restartPolicy"], "Always");
        assert_eq!(obj["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert!(validate(p, &obj).is_empty());
    }

    #[test]
    fn volume_names_are_labels() {
        let p = find("", "v1", "pods").unwrap();
        let obj = json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "c", "image": "nginx"}],
            "volumes": [{"name": "ok-1", "emptyDir": {}}, {"name": "../../etc", "emptyDir": {}},
                        {"name": "/etc", "emptyDir": {}}, {"emptyDir": {}}]}});
        let fields: Vec<String> = validate(p, &obj).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "spec.volumes[1].name",
                "spec.volumes[2].name",
                "spec.volumes[3].name"
            ]
        );
    }
}
