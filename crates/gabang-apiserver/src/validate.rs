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
        "Ingress" => check_ingress(obj, &mut errs),
        "IngressClass" => check_ingress_class(obj, &mut errs),
        "Lease" => {
            for f in ["leaseDurationSeconds", "leaseTransitions"] {
                let Some(v) = obj.pointer(&format!("/spec/{f}")).and_then(Value::as_i64) else {
                    continue;
                };
                let min = if f == "leaseDurationSeconds" { 1 } else { 0 };
                if v < min {
                    let what = if min == 1 {
                        "must be greater than 0"
                    } else {
                        "must be greater than or equal to 0"
                    };
                    errs.push((format!("spec.{f}"), format!("Invalid value: {v}: {what}")));
                }
            }
        }
        "EndpointSlice" => check_endpoint_slice(obj, &mut errs),
        "Endpoints" => check_endpoints(obj, &mut errs),
        "Event" => check_event(obj, &mut errs),
        "Node" => check_node(obj, &mut errs),
        _ => {}
    }
    if matches!(def.kind, "ConfigMap" | "Secret") {
        check_data_size(def.kind, obj, &mut errs);
    }
    errs
}

/// Kubernetes' limit on the data of one ConfigMap or Secret.
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

fn check_data_size(kind: &str, obj: &Value, errs: &mut Errs) {
    let mut total = 0usize;
    for field in ["data", "binaryData", "stringData"] {
        let Some(m) = obj.get(field).and_then(Value::as_object) else {
            continue;
        };
        for (k, v) in m {
            let v = v.as_str().unwrap_or("");
            // Base64 in the JSON of Secret data and of binaryData: count the bytes.
            let base64 = field == "binaryData" || (kind == "Secret" && field == "data");
            total += k.len();
            total += if base64 { v.len() / 4 * 3 } else { v.len() };
        }
    }
    if total > MAX_DATA_BYTES {
        errs.push((
            "data".into(),
            format!("Too long: must have at most {MAX_DATA_BYTES} bytes"),
        ));
    }
}

fn unsupported(v: &str, supported: &[&str]) -> String {
    let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    format!(
        "Unsupported value: {v:?}: supported values: {}",
        list.join(", ")
    )
}

fn check_port_number(p: Option<&Value>, path: &str, errs: &mut Errs) {
    if let Some(v) = p {
        let n = v.as_i64().unwrap_or(0);
        if !(1..=65535).contains(&n) {
            errs.push((
                path.to_string(),
                format!("Invalid value: {n}: must be between 1 and 65535, inclusive"),
            ));
        }
    }
}

fn check_protocol(p: Option<&Value>, path: &str, errs: &mut Errs) {
    if let Some(v) = p.and_then(Value::as_str) {
        if !["TCP", "UDP", "SCTP"].contains(&v) {
            errs.push((path.to_string(), unsupported(v, &["SCTP", "TCP", "UDP"])));
        }
    }
}

fn check_ingress_backend(b: &Value, path: &str, errs: &mut Errs) {
    let svc = b.get("service");
    let res = b.get("resource");
    match (svc, res) {
        (Some(_), Some(_)) => errs.push((
            path.to_string(),
            "Invalid value: \"\": cannot set both service and resource backends".into(),
        )),
        (None, None) => errs.push((
            path.to_string(),
            "Invalid value: \"\": resource or service backend is required".into(),
        )),
        (Some(s), None) => {
            let name = s["name"].as_str().unwrap_or("");
            if name.is_empty() {
                errs.push((format!("{path}.service.name"), "Required value".into()));
            } else if !is_dns_label(name) {
                errs.push((format!("{path}.service.name"), format!("Invalid value: {name:?}: a DNS-1035 label must consist of lower case alphanumeric characters or '-'")));
            }
            let port = s.get("port");
            let pname = port.and_then(|p| p.get("name")).and_then(Value::as_str);
            let pnum = port.and_then(|p| p.get("number"));
            match (pname.filter(|n| !n.is_empty()), pnum) {
                (Some(_), Some(_)) => errs.push((
                    format!("{path}.service.port"),
                    "Invalid value: \"\": cannot set both port name & port number".into(),
                )),
                (None, None) => errs.push((
                    format!("{path}.service.port"),
                    "Invalid value: \"\": port name or number is required".into(),
                )),
                (None, Some(n)) => {
                    check_port_number(Some(n), &format!("{path}.service.port.number"), errs)
                }
                (Some(n), None) => {
                    if !is_dns_label(n) {
                        errs.push((
                            format!("{path}.service.port.name"),
                            format!("Invalid value: {n:?}: must be a valid port name"),
                        ));
                    }
                }
            }
        }
        (None, Some(r)) => {
            for f in ["kind", "name"] {
                if r[f].as_str().unwrap_or("").is_empty() {
                    errs.push((format!("{path}.resource.{f}"), "Required value".into()));
                }
            }
        }
    }
}

fn is_wildcard_host(h: &str) -> bool {
    match h.strip_prefix("*.") {
        Some(rest) => is_dns_subdomain(rest),
        None => is_dns_subdomain(h),
    }
}

fn check_ingress(obj: &Value, errs: &mut Errs) {
    let spec = &obj["spec"];
    let rules = spec.get("rules").and_then(Value::as_array);
    if let Some(b) = spec.get("defaultBackend") {
        check_ingress_backend(b, "spec.defaultBackend", errs);
    } else if rules.is_none_or(Vec::is_empty) {
        errs.push((
            "spec".into(),
            "Invalid value: \"\": either `defaultBackend` or `rules` must be specified".into(),
        ));
    }
    for (i, r) in rules.into_iter().flatten().enumerate() {
        let host = r["host"].as_str().unwrap_or("");
        if !host.is_empty() {
            if host.parse::<std::net::IpAddr>().is_ok() {
                errs.push((
                    format!("spec.rules[{i}].host"),
                    format!("Invalid value: {host:?}: must be a DNS name, not an IP address"),
                ));
            } else if !is_wildcard_host(host) {
                errs.push((format!("spec.rules[{i}].host"), format!("Invalid value: {host:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (a wildcard DNS-1123 subdomain may start with '*.')")));
            }
        }
        let Some(http) = r.get("http") else { continue };
        let paths = http.get("paths").and_then(Value::as_array);
        if paths.is_none_or(Vec::is_empty) {
            errs.push((
                format!("spec.rules[{i}].http.paths"),
                "Required value".into(),
            ));
        }
        for (j, p) in paths.into_iter().flatten().enumerate() {
            let at = format!("spec.rules[{i}].http.paths[{j}]");
            let path = p["path"].as_str().unwrap_or("");
            match p.get("pathType").and_then(Value::as_str) {
                None => errs.push((
                    format!("{at}.pathType"),
                    "Required value: pathType must be specified".into(),
                )),
                Some(t @ ("Exact" | "Prefix")) => {
                    if !path.starts_with('/') {
                        errs.push((
                            format!("{at}.path"),
                            format!("Invalid value: {path:?}: must be an absolute path"),
                        ));
                    } else if t == "Prefix" && path.contains("//") {
                        errs.push((
                            format!("{at}.path"),
                            format!("Invalid value: {path:?}: must not contain '//'"),
                        ));
                    }
                }
                Some("ImplementationSpecific") => {
                    if !path.is_empty() && !path.starts_with('/') {
                        errs.push((
                            format!("{at}.path"),
                            format!("Invalid value: {path:?}: must be an absolute path"),
                        ));
                    }
                }
                Some(t) => errs.push((
                    format!("{at}.pathType"),
                    unsupported(t, &["Exact", "ImplementationSpecific", "Prefix"]),
                )),
            }
            match p.get("backend") {
                Some(b) => check_ingress_backend(b, &format!("{at}.backend"), errs),
                None => errs.push((format!("{at}.backend"), "Required value".into())),
            }
        }
    }
    for (i, t) in spec
        .get("tls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        for (j, h) in t["hosts"].as_array().into_iter().flatten().enumerate() {
            let h = h.as_str().unwrap_or("");
            if !is_wildcard_host(h) {
                errs.push((format!("spec.tls[{i}].hosts[{j}]"), format!("Invalid value: {h:?}: a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain")));
            }
        }
    }
}

fn check_ingress_class(obj: &Value, errs: &mut Errs) {
    let c = obj
        .pointer("/spec/controller")
        .and_then(Value::as_str)
        .unwrap_or("");
    if c.is_empty() {
        errs.push(("spec.controller".into(), "Required value".into()));
    } else {
        let ok = c.len() <= 250
            && c.split_once('/').is_some_and(|(d, p)| {
                is_dns_subdomain(d) && !p.is_empty() && !p.contains(char::is_whitespace)
            });
        if !ok {
            errs.push(("spec.controller".into(), format!("Invalid value: {c:?}: must be a domain-prefixed path (such as \"acme.io/foo\")")));
        }
    }
    let Some(p) = obj.pointer("/spec/parameters") else {
        return;
    };
    for f in ["kind", "name"] {
        if p[f].as_str().unwrap_or("").is_empty() {
            errs.push((format!("spec.parameters.{f}"), "Required value".into()));
        }
    }
    let scope = p["scope"].as_str().unwrap_or("Cluster");
    let ns = p["namespace"].as_str().unwrap_or("");
    match scope {
        "Cluster" if !ns.is_empty() => errs.push((
            "spec.parameters.namespace".into(),
            "Forbidden: `parameters.scope` is set to 'Cluster'".into(),
        )),
        "Namespace" if ns.is_empty() => errs.push((
            "spec.parameters.namespace".into(),
            "Required value: `parameters.scope` is set to 'Namespace'".into(),
        )),
        "Cluster" | "Namespace" => {}
        other => errs.push((
            "spec.parameters.scope".into(),
            unsupported(other, &["Cluster", "Namespace"]),
        )),
    }
}

fn is_ip_of(kind: &str, a: &str) -> bool {
    match kind {
        "IPv4" => a.parse::<std::net::Ipv4Addr>().is_ok(),
        "IPv6" => a.parse::<std::net::Ipv6Addr>().is_ok(),
        _ => a.parse::<std::net::IpAddr>().is_ok(),
    }
}

fn check_endpoint_slice(obj: &Value, errs: &mut Errs) {
    let ty = obj.get("addressType").and_then(Value::as_str).unwrap_or("");
    match ty {
        "" => errs.push(("addressType".into(), "Required value".into())),
        "IPv4" | "IPv6" | "FQDN" => {}
        t => errs.push((
            "addressType".into(),
            unsupported(t, &["FQDN", "IPv4", "IPv6"]),
        )),
    }
    let eps = obj.get("endpoints").and_then(Value::as_array);
    if eps.is_some_and(|e| e.len() > 1000) {
        errs.push((
            "endpoints".into(),
            "Too many: must have at most 1000 items".into(),
        ));
    }
    for (i, e) in eps.into_iter().flatten().enumerate() {
        let addrs = e.get("addresses").and_then(Value::as_array);
        match addrs {
            None => errs.push((
                format!("endpoints[{i}].addresses"),
                "Required value: must contain at least 1 address".into(),
            )),
            Some(a) if a.is_empty() => errs.push((
                format!("endpoints[{i}].addresses"),
                "Required value: must contain at least 1 address".into(),
            )),
            Some(a) if a.len() > 100 => errs.push((
                format!("endpoints[{i}].addresses"),
                "Too many: must have at most 100 items".into(),
            )),
            Some(a) => {
                for (j, ad) in a.iter().enumerate() {
                    let ad = ad.as_str().unwrap_or("");
                    let ok = match ty {
                        "FQDN" => is_dns_subdomain(ad),
                        "IPv4" | "IPv6" => is_ip_of(ty, ad),
                        _ => true,
                    };
                    if !ok {
                        let what = match ty {
                            "FQDN" => "must be a valid DNS subdomain",
                            "IPv4" => "must be a valid IPv4 address",
                            _ => "must be a valid IPv6 address",
                        };
                        errs.push((
                            format!("endpoints[{i}].addresses[{j}]"),
                            format!("Invalid value: {ad:?}: {what}"),
                        ));
                    }
                }
            }
        }
    }
    for (i, p) in obj
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = p["name"].as_str().unwrap_or("");
        if !name.is_empty() && !is_dns_label(name) {
            errs.push((format!("ports[{i}].name"), format!("Invalid value: {name:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'")));
        }
        check_port_number(p.get("port"), &format!("ports[{i}].port"), errs);
        check_protocol(p.get("protocol"), &format!("ports[{i}].protocol"), errs);
    }
}

fn check_endpoints(obj: &Value, errs: &mut Errs) {
    for (i, sub) in obj
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        for list in ["addresses", "notReadyAddresses"] {
            for (j, a) in sub[list].as_array().into_iter().flatten().enumerate() {
                let ip = a["ip"].as_str().unwrap_or("");
                if ip.is_empty() {
                    errs.push((
                        format!("subsets[{i}].{list}[{j}].ip"),
                        "Required value".into(),
                    ));
                } else if !is_ip_of("", ip) {
                    errs.push((
                        format!("subsets[{i}].{list}[{j}].ip"),
                        format!("Invalid value: {ip:?}: must be a valid IP address"),
                    ));
                }
            }
        }
        let ports = sub["ports"].as_array().cloned().unwrap_or_default();
        for (k, p) in ports.iter().enumerate() {
            let name = p["name"].as_str().unwrap_or("");
            if name.is_empty() && ports.len() > 1 {
                errs.push((
                    format!("subsets[{i}].ports[{k}].name"),
                    "Required value".into(),
                ));
            }
            check_port_number(
                Some(p.get("port").unwrap_or(&Value::Null)),
                &format!("subsets[{i}].ports[{k}].port"),
                errs,
            );
            check_protocol(
                p.get("protocol"),
                &format!("subsets[{i}].ports[{k}].protocol"),
                errs,
            );
        }
    }
}

fn check_event(obj: &Value, errs: &mut Errs) {
    let Some(io) = obj.get("involvedObject").filter(|v| v.is_object()) else {
        errs.push(("involvedObject".into(), "Required value".into()));
        return;
    };
    for f in ["kind", "name"] {
        if io[f].as_str().unwrap_or("").is_empty() {
            errs.push((format!("involvedObject.{f}"), "Required value".into()));
        }
    }
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let ions = io["namespace"].as_str().unwrap_or("");
    // Events of cluster-scoped objects live in "default" (as in Kubernetes).
    let ok = if ions.is_empty() {
        ns.is_empty() || ns == "default"
    } else {
        ions == ns
    };
    if !ok {
        errs.push((
            "involvedObject.namespace".into(),
            format!("Invalid value: {ions:?}: does not match event.namespace"),
        ));
    }
    if let Some(t) = obj.get("type").and_then(Value::as_str) {
        if !t.is_empty() && !["Normal", "Warning"].contains(&t) {
            errs.push(("type".into(), unsupported(t, &["Normal", "Warning"])));
        }
    }
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => bits <= 32,
        Ok(std::net::IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

fn check_node(obj: &Value, errs: &mut Errs) {
    let spec = &obj["spec"];
    if let Some(c) = spec.get("podCIDR").and_then(Value::as_str) {
        if !c.is_empty() && !is_cidr(c) {
            errs.push(("spec.podCIDR".into(), format!("Invalid value: {c:?}: must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")));
        }
    }
    for (i, c) in spec["podCIDRs"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let c = c.as_str().unwrap_or("");
        if !is_cidr(c) {
            errs.push((format!("spec.podCIDRs[{i}]"), format!("Invalid value: {c:?}: must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")));
        }
    }
    for (i, t) in spec["taints"].as_array().into_iter().flatten().enumerate() {
        let key = t["key"].as_str().unwrap_or("");
        if key.is_empty() {
            errs.push((format!("spec.taints[{i}].key"), "Required value".into()));
        } else if !is_qualified_name(key) {
            errs.push((format!("spec.taints[{i}].key"), format!("Invalid value: {key:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")));
        }
        let v = t["value"].as_str().unwrap_or("");
        if !is_label_value(v) {
            errs.push((format!("spec.taints[{i}].value"), format!("Invalid value: {v:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (max 63 characters)")));
        }
        let effect = t["effect"].as_str().unwrap_or("");
        if effect.is_empty() {
            errs.push((format!("spec.taints[{i}].effect"), "Required value".into()));
        } else if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
            errs.push((
                format!("spec.taints[{i}].effect"),
                unsupported(effect, &["NoExecute", "NoSchedule", "PreferNoSchedule"]),
            ));
        }
    }
}

const POD_UPDATE_FORBIDDEN: &str = "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// What an update may not change (Kubernetes' immutable fields); `old` is the stored
/// object, `new` the one about to replace it (both defaulted and normalized).
pub fn validate_update(def: &ResourceDef, old: &Value, new: &Value) -> Errs {
    let mut errs = Errs::new();
    let immutable = |path: &str, v: &Value| {
        (
            path.to_string(),
            format!("Invalid value: {}: field is immutable", v),
        )
    };
    match def.kind {
        "Deployment" | "ReplicaSet" => {
            let (o, n) = (old.pointer("/spec/selector"), new.pointer("/spec/selector"));
            if o != n {
                errs.push(immutable("spec.selector", n.unwrap_or(&Value::Null)));
            }
        }
        "Service" => {
            let o = old
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("");
            let n = new
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("");
            let to_external = new.pointer("/spec/type").and_then(Value::as_str)
                == Some("ExternalName")
                && n.is_empty();
            if !o.is_empty() && o != "None" && n != o && !to_external {
                errs.push(immutable("spec.clusterIP", &json!(n)));
            }
            if o == "None" && n != o {
                errs.push(immutable("spec.clusterIP", &json!(n)));
            }
        }
        "EndpointSlice" if old.get("addressType") != new.get("addressType") => {
            errs.push(immutable(
                "addressType",
                new.get("addressType").unwrap_or(&Value::Null),
            ));
        }
        "ConfigMap" | "Secret" => {
            if def.kind == "Secret" && old.get("type") != new.get("type") {
                errs.push(immutable("type", new.get("type").unwrap_or(&Value::Null)));
            }
            if old.get("immutable") == Some(&json!(true)) {
                if new.get("immutable") != Some(&json!(true)) {
                    errs.push((
                        "immutable".into(),
                        "Forbidden: field is immutable when `immutable` is set".into(),
                    ));
                }
                for f in ["data", "binaryData"] {
                    let empty = json!({});
                    let o = old.get(f).unwrap_or(&empty);
                    let n = new.get(f).unwrap_or(&empty);
                    if o != n {
                        errs.push((
                            f.to_string(),
                            "Forbidden: field is immutable when `immutable` is set".into(),
                        ));
                    }
                }
            }
        }
        "Pod" => check_pod_update(old, new, &mut errs),
        _ => {}
    }
    errs
}

fn check_pod_update(old: &Value, new: &Value, errs: &mut Errs) {
    let (Some(o), Some(n)) = (old.get("spec"), new.get("spec")) else {
        return;
    };
    let mut o = o.clone();
    default_pod_spec(&mut o);
    let mut n = n.clone();
    // activeDeadlineSeconds: may be set, or lowered; not removed.
    let od = o.get("activeDeadlineSeconds").and_then(Value::as_i64);
    let nd = n.get("activeDeadlineSeconds").and_then(Value::as_i64);
    match (od, nd) {
        (Some(_), None) => errs.push((
            "spec.activeDeadlineSeconds".into(),
            "Invalid value: \"null\": must not update from a positive integer to nil value".into(),
        )),
        (Some(a), Some(b)) if b > a => errs.push((
            "spec.activeDeadlineSeconds".into(),
            format!("Invalid value: {b}: must be less than or equal to previous value"),
        )),
        _ => {}
    }
    // Images may change: take the old ones for the comparison.
    for list in ["containers", "initContainers"] {
        let (Some(oc), Some(nc)) = (
            o.get(list).and_then(Value::as_array).cloned(),
            n.get_mut(list).and_then(Value::as_array_mut),
        ) else {
            continue;
        };
        if oc.len() == nc.len() {
            for (a, b) in oc.iter().zip(nc.iter_mut()) {
                if b.get("image").is_some() {
                    b["image"] = a["image"].clone();
                }
            }
        }
    }
    // Tolerations may only be added to.
    let ot = o
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let nt = n
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if ot.iter().all(|t| nt.contains(t)) {
        if let Some(m) = n.as_object_mut() {
            match o.get("tolerations") {
                Some(t) => m.insert("tolerations".into(), t.clone()),
                None => m.remove("tolerations"),
            };
        }
    }
    // terminationGracePeriodSeconds: only from a negative value to 1.
    let og = o
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    let ng = n
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    if og.is_some_and(|g| g < 0) && ng == Some(1) {
        n["terminationGracePeriodSeconds"] = json!(og);
    }
    for f in ["activeDeadlineSeconds"] {
        if let Some(m) = n.as_object_mut() {
            match o.get(f) {
                Some(v) => m.insert(f.into(), v.clone()),
                None => m.remove(f),
            };
        }
    }
    if o != n {
        errs.push(("spec".into(), POD_UPDATE_FORBIDDEN.into()));
    }
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
