//! `gabang describe`: kubectl's describe output for pods, deployments, replicasets,
//! services and nodes (and a generic key/value form for other kinds), with the object's
//! events from the events API.

use std::path::Path;

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::client::{encode_query, ApiResource};
use super::print::{age_of, tabwrite};
use super::{report, selector_query, targets, DescribeArgs, Session};

/// Text with kubectl's indentation levels (2 spaces each) and tab-separated cells,
/// aligned at the end like kubectl's describe (tabwriter: padding 2).
#[derive(Default)]
struct W(String);

impl W {
    fn line(&mut self, level: usize, text: &str) {
        for _ in 0..level {
            self.0.push_str("  ");
        }
        self.0.push_str(text);
        self.0.push('\n');
    }
    fn finish(self) -> String {
        tabwrite(&self.0, 0, 2)
    }
}

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

fn or_none(x: &str) -> &str {
    if x.is_empty() {
        "<none>"
    } else {
        x
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `Mon, 02 Jan 2006 15:04:05 -0700` (Go's RFC1123Z), local time.
fn rfc1123z(ts: &str) -> String {
    match DateTime::parse_from_rfc3339(ts) {
        Ok(t) => t
            .with_timezone(&chrono::Local)
            .format("%a, %d %b %Y %H:%M:%S %z")
            .to_string(),
        Err(_) => ts.to_string(),
    }
}

fn sorted_map(v: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = v
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), scalar(v))).collect())
        .unwrap_or_default();
    out.sort();
    out
}

/// `Labels:  a=b` with further labels on their own lines, aligned.
fn labels(w: &mut W, indent: &str, title: &str, v: &Value) {
    let kv = sorted_map(v);
    if kv.is_empty() {
        w.line(0, &format!("{indent}{title}:\t<none>"));
        return;
    }
    for (i, (k, v)) in kv.iter().enumerate() {
        let lead = if i == 0 {
            format!("{indent}{title}:")
        } else {
            indent.to_string()
        };
        w.line(0, &format!("{lead}\t{k}={v}"));
    }
}

fn annotations(w: &mut W, indent: &str, v: &Value) {
    let kv: Vec<(String, String)> = sorted_map(v)
        .into_iter()
        .filter(|(k, _)| k != "kubectl.kubernetes.io/last-applied-configuration")
        .collect();
    if kv.is_empty() {
        w.line(0, &format!("{indent}Annotations:\t<none>"));
        return;
    }
    for (i, (k, v)) in kv.iter().enumerate() {
        let lead = if i == 0 {
            format!("{indent}Annotations:")
        } else {
            indent.to_string()
        };
        w.line(0, &format!("{lead}\t{k}: {v}"));
    }
}

fn selector_text(sel: &Value) -> String {
    let mut parts: Vec<String> = sorted_map(&sel["matchLabels"])
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in sel["matchExpressions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let key = s(&e, "/key");
        let vals: Vec<String> = e["values"]
            .as_array()
            .map(|a| a.iter().map(scalar).collect())
            .unwrap_or_default();
        parts.push(match s(&e, "/operator") {
            "In" => format!("{key} in ({})", vals.join(",")),
            "NotIn" => format!("{key} notin ({})", vals.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            op => format!("{key} {op}"),
        });
    }
    parts.join(",")
}

fn tolerations(w: &mut W, indent: &str, v: &Value) {
    let ts = v.as_array().cloned().unwrap_or_default();
    if ts.is_empty() {
        w.line(0, &format!("{indent}Tolerations:\t<none>"));
        return;
    }
    for (i, t) in ts.iter().enumerate() {
        let (key, value, effect) = (s(t, "/key"), s(t, "/value"), s(t, "/effect"));
        let mut text = key.to_string();
        if !value.is_empty() {
            text.push_str(&format!("={value}"));
        }
        if !effect.is_empty() {
            text.push_str(&format!(":{effect}"));
        }
        if s(t, "/operator") == "Exists" && value.is_empty() {
            text.push_str(if key.is_empty() && effect.is_empty() {
                "op=Exists"
            } else {
                " op=Exists"
            });
        }
        if let Some(secs) = t["tolerationSeconds"].as_i64() {
            text.push_str(&format!(" for {secs}s"));
        }
        let lead = if i == 0 {
            format!("{indent}Tolerations:")
        } else {
            indent.to_string()
        };
        w.line(0, &format!("{lead}\t{text}"));
    }
}

fn controlled_by(meta: &Value) -> Option<String> {
    meta["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["controller"] == Value::Bool(true))
        .map(|o| format!("{}/{}", s(o, "/kind"), s(o, "/name")))
}

fn probe_text(p: &Value) -> String {
    let how = if let Some(h) = p.get("httpGet") {
        let port = scalar(&h["port"]);
        let host = s(h, "/host");
        let scheme = s(h, "/scheme").to_lowercase();
        let scheme = if scheme.is_empty() {
            "http".into()
        } else {
            scheme
        };
        let path = s(h, "/path");
        format!("http-get {scheme}://{host}:{port}{path}")
    } else if let Some(t) = p.get("tcpSocket") {
        format!("tcp-socket {}:{}", s(t, "/host"), scalar(&t["port"]))
    } else if let Some(e) = p.get("exec") {
        let cmd: Vec<String> = e["command"]
            .as_array()
            .map(|a| a.iter().map(scalar).collect())
            .unwrap_or_default();
        format!("exec [{}]", cmd.join(" "))
    } else if let Some(g) = p.get("grpc") {
        format!("grpc <pod>:{} {}", scalar(&g["port"]), s(g, "/service"))
    } else {
        "unknown".into()
    };
    let n = |k: &str, d: i64| p[k].as_i64().unwrap_or(d);
    format!(
        "{how} delay={}s timeout={}s period={}s #success={} #failure={}",
        n("initialDelaySeconds", 0),
        n("timeoutSeconds", 1),
        n("periodSeconds", 10),
        n("successThreshold", 1),
        n("failureThreshold", 3)
    )
}

fn env_value(e: &Value) -> String {
    if let Some(v) = e.get("value") {
        return scalar(v);
    }
    let from = &e["valueFrom"];
    let optional = |r: &Value| r["optional"].as_bool().unwrap_or(false);
    if let Some(r) = from.get("configMapKeyRef") {
        return format!(
            "<set to the key '{}' of config map '{}'>\tOptional: {}",
            s(r, "/key"),
            s(r, "/name"),
            optional(r)
        );
    }
    if let Some(r) = from.get("secretKeyRef") {
        return format!(
            "<set to the key '{}' in secret '{}'>\tOptional: {}",
            s(r, "/key"),
            s(r, "/name"),
            optional(r)
        );
    }
    if let Some(r) = from.get("fieldRef") {
        let v = s(r, "/apiVersion");
        let v = if v.is_empty() { "v1" } else { v };
        return format!("({v}:{})", s(r, "/fieldPath"));
    }
    if let Some(r) = from.get("resourceFieldRef") {
        return format!("{} ({})", s(r, "/resource"), s(r, "/containerName"));
    }
    String::new()
}

fn container_state(w: &mut W, title: &str, st: &Value) {
    if let Some(r) = st.get("running") {
        w.line(2, &format!("{title}:\tRunning"));
        w.line(3, &format!("Started:\t{}", rfc1123z(s(r, "/startedAt"))));
    } else if let Some(t) = st.get("terminated") {
        w.line(2, &format!("{title}:\tTerminated"));
        w.line(3, &format!("Reason:\t{}", s(t, "/reason")));
        if !s(t, "/message").is_empty() {
            w.line(3, &format!("Message:\t{}", s(t, "/message")));
        }
        w.line(
            3,
            &format!("Exit Code:\t{}", t["exitCode"].as_i64().unwrap_or(0)),
        );
        if let Some(sig) = t["signal"].as_i64().filter(|s| *s > 0) {
            w.line(3, &format!("Signal:\t{sig}"));
        }
        w.line(3, &format!("Started:\t{}", rfc1123z(s(t, "/startedAt"))));
        w.line(3, &format!("Finished:\t{}", rfc1123z(s(t, "/finishedAt"))));
    } else if let Some(wt) = st.get("waiting") {
        w.line(2, &format!("{title}:\tWaiting"));
        if !s(wt, "/reason").is_empty() {
            w.line(3, &format!("Reason:\t{}", s(wt, "/reason")));
        }
    } else {
        w.line(2, &format!("{title}:\tWaiting"));
    }
}

/// `Containers:` (or `Init Containers:`): each container's image, ports, command, state,
/// resources, probes, environment and mounts.
fn containers(w: &mut W, label: &str, cs: &Value, statuses: Option<&Value>, space: &str) {
    w.line(0, &format!("{space}{label}:"));
    let name_space = if space.is_empty() { "" } else { " " };
    for c in cs.as_array().cloned().unwrap_or_default() {
        let name = s(&c, "/name");
        let status = statuses
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|st| s(st, "/name") == name));
        w.line(1, &format!("{name_space}{name}:"));
        if let Some(st) = status {
            w.line(2, &format!("Container ID:\t{}", s(st, "/containerID")));
        }
        w.line(2, &format!("Image:\t{}", s(&c, "/image")));
        if let Some(st) = status {
            w.line(2, &format!("Image ID:\t{}", s(st, "/imageID")));
        }
        let ports = c["ports"].as_array().cloned().unwrap_or_default();
        let proto = |p: &Value| {
            let x = s(p, "/protocol");
            if x.is_empty() {
                "TCP".to_string()
            } else {
                x.to_string()
            }
        };
        let cports: Vec<String> = ports
            .iter()
            .map(|p| format!("{}/{}", p["containerPort"].as_i64().unwrap_or(0), proto(p)))
            .collect();
        let hports: Vec<String> = ports
            .iter()
            .map(|p| format!("{}/{}", p["hostPort"].as_i64().unwrap_or(0), proto(p)))
            .collect();
        let (pl, hl) = if ports.len() > 1 {
            ("Ports", "Host Ports")
        } else {
            ("Port", "Host Port")
        };
        w.line(2, &format!("{pl}:\t{}", or_none(&cports.join(", "))));
        w.line(2, &format!("{hl}:\t{}", or_none(&hports.join(", "))));
        for (key, title) in [("command", "Command"), ("args", "Args")] {
            if let Some(a) = c[key].as_array().filter(|a| !a.is_empty()) {
                w.line(2, &format!("{title}:"));
                for x in a {
                    w.line(3, &scalar(x));
                }
            }
        }
        if let Some(st) = status {
            container_state(w, "State", &st["state"]);
            if st["lastState"].as_object().is_some_and(|m| !m.is_empty()) {
                container_state(w, "Last State", &st["lastState"]);
            }
            let ready = if st["ready"] == Value::Bool(true) {
                "True"
            } else {
                "False"
            };
            w.line(2, &format!("Ready:\t{ready}"));
            w.line(
                2,
                &format!(
                    "Restart Count:\t{}",
                    st["restartCount"].as_i64().unwrap_or(0)
                ),
            );
        }
        for (key, title) in [("limits", "Limits"), ("requests", "Requests")] {
            let kv = sorted_map(&c["resources"][key]);
            if !kv.is_empty() {
                w.line(2, &format!("{title}:"));
                for (k, v) in kv {
                    w.line(3, &format!("{k}:\t{v}"));
                }
            }
        }
        for (key, title) in [
            ("livenessProbe", "Liveness"),
            ("readinessProbe", "Readiness"),
            ("startupProbe", "Startup"),
        ] {
            if let Some(p) = c.get(key).filter(|p| p.is_object()) {
                w.line(2, &format!("{title}:\t{}", probe_text(p)));
            }
        }
        if let Some(from) = c["envFrom"].as_array().filter(|a| !a.is_empty()) {
            w.line(2, "Environment Variables from:");
            for f in from {
                let (name, kind, r) = if let Some(r) = f.get("configMapRef") {
                    (s(r, "/name"), "ConfigMap", r)
                } else if let Some(r) = f.get("secretRef") {
                    (s(r, "/name"), "Secret", r)
                } else {
                    continue;
                };
                let prefix = s(f, "/prefix");
                let with = if prefix.is_empty() {
                    String::new()
                } else {
                    format!(" with prefix '{prefix}'")
                };
                w.line(
                    3,
                    &format!(
                        "{name}\t{kind}{with}\tOptional: {}",
                        r["optional"].as_bool().unwrap_or(false)
                    ),
                );
            }
        }
        match c["env"].as_array().filter(|a| !a.is_empty()) {
            None => w.line(2, "Environment:\t<none>"),
            Some(env) => {
                w.line(2, "Environment:");
                for e in env {
                    w.line(3, &format!("{}:\t{}", s(e, "/name"), env_value(e)));
                }
            }
        }
        match c["volumeMounts"].as_array().filter(|a| !a.is_empty()) {
            None => w.line(2, "Mounts:\t<none>"),
            Some(ms) => {
                w.line(2, "Mounts:");
                for m in ms {
                    let mut flags = vec![if m["readOnly"] == Value::Bool(true) {
                        "ro"
                    } else {
                        "rw"
                    }
                    .to_string()];
                    if !s(m, "/subPath").is_empty() {
                        flags.push(format!("path={:?}", s(m, "/subPath")));
                    }
                    w.line(
                        3,
                        &format!(
                            "{} from {} ({})",
                            s(m, "/mountPath"),
                            s(m, "/name"),
                            flags.join(",")
                        ),
                    );
                }
            }
        }
    }
}

fn volumes(w: &mut W, vs: &Value, space: &str) {
    let vs = vs.as_array().cloned().unwrap_or_default();
    if vs.is_empty() {
        w.line(0, &format!("{space}Volumes:\t<none>"));
        return;
    }
    w.line(0, &format!("{space}Volumes:"));
    for v in vs {
        w.line(0, &format!("{space}  {}:", s(&v, "/name")));
        let ind = format!("{space}    ");
        let mut put = |k: &str, val: String| w.line(0, &format!("{ind}{k}:\t{val}"));
        if let Some(e) = v.get("emptyDir") {
            put(
                "Type",
                "EmptyDir (a temporary directory that shares a pod's lifetime)".into(),
            );
            put("Medium", s(e, "/medium").into());
            let limit = scalar(&e["sizeLimit"]);
            put(
                "SizeLimit",
                if limit.is_empty() {
                    "<unset>".into()
                } else {
                    limit
                },
            );
        } else if let Some(c) = v.get("configMap") {
            put(
                "Type",
                "ConfigMap (a volume populated by a ConfigMap)".into(),
            );
            put("Name", s(c, "/name").into());
            put(
                "Optional",
                c["optional"].as_bool().unwrap_or(false).to_string(),
            );
        } else if let Some(c) = v.get("secret") {
            put("Type", "Secret (a volume populated by a Secret)".into());
            put("SecretName", s(c, "/secretName").into());
            put(
                "Optional",
                c["optional"].as_bool().unwrap_or(false).to_string(),
            );
        } else if let Some(h) = v.get("hostPath") {
            put("Type", "HostPath (bare host directory volume)".into());
            put("Path", s(h, "/path").into());
            put("HostPathType", s(h, "/type").into());
        } else if let Some(p) = v.get("persistentVolumeClaim") {
            put(
                "Type",
                "PersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)".into(),
            );
            put("ClaimName", s(p, "/claimName").into());
            put(
                "ReadOnly",
                p["readOnly"].as_bool().unwrap_or(false).to_string(),
            );
        } else if v.get("projected").is_some() {
            put(
                "Type",
                "Projected (a volume that contains injected data from multiple sources)".into(),
            );
        } else {
            put("Type", "<unknown>".into());
        }
    }
}

fn qos_class(pod: &Value) -> String {
    let q = s(pod, "/status/qosClass");
    if !q.is_empty() {
        return q.to_string();
    }
    let cs = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let any = cs.iter().any(|c| {
        ["limits", "requests"]
            .iter()
            .any(|k| c["resources"][k].as_object().is_some_and(|m| !m.is_empty()))
    });
    if !any {
        return "BestEffort".into();
    }
    let guaranteed = cs.iter().all(|c| {
        let l = &c["resources"]["limits"];
        let r = &c["resources"]["requests"];
        ["cpu", "memory"]
            .iter()
            .all(|k| l.get(*k).is_some() && r.get(*k).is_none_or(|rv| Some(rv) == l.get(*k)))
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
    .into()
}

/// The pod template of a Deployment or ReplicaSet.
fn pod_template(w: &mut W, t: &Value) {
    w.line(0, "Pod Template:");
    labels(w, "  ", "Labels", &t["metadata"]["labels"]);
    if t["metadata"]["annotations"]
        .as_object()
        .is_some_and(|m| !m.is_empty())
    {
        annotations(w, "  ", &t["metadata"]["annotations"]);
    }
    let sa = s(t, "/spec/serviceAccountName");
    if !sa.is_empty() {
        w.line(0, &format!("  Service Account:\t{sa}"));
    }
    if t["spec"]["initContainers"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        containers(
            w,
            "Init Containers",
            &t["spec"]["initContainers"],
            None,
            "  ",
        );
    }
    containers(w, "Containers", &t["spec"]["containers"], None, "  ");
    volumes(w, &t["spec"]["volumes"], "  ");
    labels(w, "  ", "Node-Selectors", &t["spec"]["nodeSelector"]);
    tolerations(w, "  ", &t["spec"]["tolerations"]);
}

fn describe_pod(w: &mut W, pod: &Value) {
    let meta = &pod["metadata"];
    w.line(0, &format!("Name:\t{}", s(meta, "/name")));
    w.line(0, &format!("Namespace:\t{}", s(meta, "/namespace")));
    if let Some(p) = pod["spec"]["priority"].as_i64() {
        w.line(0, &format!("Priority:\t{p}"));
    }
    let pc = s(pod, "/spec/priorityClassName");
    if !pc.is_empty() {
        w.line(0, &format!("Priority Class Name:\t{pc}"));
    }
    let sa = s(pod, "/spec/serviceAccountName");
    if !sa.is_empty() {
        w.line(0, &format!("Service Account:\t{sa}"));
    }
    let node = s(pod, "/spec/nodeName");
    if node.is_empty() {
        w.line(0, "Node:\t<none>");
    } else {
        w.line(0, &format!("Node:\t{node}/{}", s(pod, "/status/hostIP")));
    }
    let start = s(pod, "/status/startTime");
    if !start.is_empty() {
        w.line(0, &format!("Start Time:\t{}", rfc1123z(start)));
    }
    labels(w, "", "Labels", &meta["labels"]);
    annotations(w, "", &meta["annotations"]);
    if meta.get("deletionTimestamp").is_some_and(|d| !d.is_null()) {
        w.line(
            0,
            &format!(
                "Status:\tTerminating (lasts {})",
                age_of(meta["deletionTimestamp"].as_str(), Utc::now())
            ),
        );
        if let Some(g) = meta["deletionGracePeriodSeconds"].as_i64() {
            w.line(0, &format!("Termination Grace Period:\t{g}s"));
        }
    } else {
        let phase = s(pod, "/status/phase");
        w.line(
            0,
            &format!(
                "Status:\t{}",
                if phase.is_empty() { "Pending" } else { phase }
            ),
        );
    }
    for (k, t) in [("/status/reason", "Reason"), ("/status/message", "Message")] {
        if !s(pod, k).is_empty() {
            w.line(0, &format!("{t}:\t{}", s(pod, k)));
        }
    }
    w.line(0, &format!("IP:\t{}", s(pod, "/status/podIP")));
    let ips: Vec<String> = pod["status"]["podIPs"]
        .as_array()
        .map(|a| a.iter().map(|i| s(i, "/ip").to_string()).collect())
        .unwrap_or_default();
    if ips.is_empty() {
        w.line(0, "IPs:\t<none>");
    } else {
        w.line(0, "IPs:");
        for ip in ips {
            w.line(1, &format!("IP:\t{ip}"));
        }
    }
    if let Some(c) = controlled_by(meta) {
        w.line(0, &format!("Controlled By:\t{c}"));
    }
    let nominated = s(pod, "/status/nominatedNodeName");
    if !nominated.is_empty() {
        w.line(0, &format!("NominatedNodeName:\t{nominated}"));
    }
    if pod["spec"]["initContainers"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        containers(
            w,
            "Init Containers",
            &pod["spec"]["initContainers"],
            pod["status"].get("initContainerStatuses"),
            "",
        );
    }
    containers(
        w,
        "Containers",
        &pod["spec"]["containers"],
        pod["status"].get("containerStatuses"),
        "",
    );
    if let Some(conds) = pod["status"]["conditions"]
        .as_array()
        .filter(|c| !c.is_empty())
    {
        w.line(0, "Conditions:");
        w.line(1, "Type\tStatus");
        for c in conds {
            w.line(1, &format!("{} \t{} ", s(c, "/type"), s(c, "/status")));
        }
    }
    volumes(w, &pod["spec"]["volumes"], "");
    w.line(0, &format!("QoS Class:\t{}", qos_class(pod)));
    labels(w, "", "Node-Selectors", &pod["spec"]["nodeSelector"]);
    tolerations(w, "", &pod["spec"]["tolerations"]);
}

fn conditions3(w: &mut W, conds: &Value) {
    if let Some(conds) = conds.as_array().filter(|c| !c.is_empty()) {
        w.line(0, "Conditions:");
        w.line(1, "Type\tStatus\tReason");
        w.line(1, "----\t------\t------");
        for c in conds {
            w.line(
                1,
                &format!(
                    "{} \t{}\t{}",
                    s(c, "/type"),
                    s(c, "/status"),
                    s(c, "/reason")
                ),
            );
        }
    }
}

fn replicas_created(rs: &Value) -> String {
    format!(
        "{} ({}/{} replicas created)",
        s(rs, "/metadata/name"),
        rs["status"]["replicas"].as_i64().unwrap_or(0),
        rs["spec"]["replicas"].as_i64().unwrap_or(0)
    )
}

fn describe_deployment(sess: &Session, w: &mut W, d: &Value) {
    let meta = &d["metadata"];
    let ns = s(meta, "/namespace");
    w.line(0, &format!("Name:\t{}", s(meta, "/name")));
    w.line(0, &format!("Namespace:\t{ns}"));
    w.line(
        0,
        &format!(
            "CreationTimestamp:\t{}",
            rfc1123z(s(meta, "/creationTimestamp"))
        ),
    );
    labels(w, "", "Labels", &meta["labels"]);
    annotations(w, "", &meta["annotations"]);
    w.line(
        0,
        &format!("Selector:\t{}", selector_text(&d["spec"]["selector"])),
    );
    let st = &d["status"];
    let n = |k: &str| st[k].as_i64().unwrap_or(0);
    w.line(
        0,
        &format!(
            "Replicas:\t{} desired | {} updated | {} total | {} available | {} unavailable",
            d["spec"]["replicas"].as_i64().unwrap_or(1),
            n("updatedReplicas"),
            n("replicas"),
            n("availableReplicas"),
            n("unavailableReplicas")
        ),
    );
    let strategy = s(d, "/spec/strategy/type");
    let strategy = if strategy.is_empty() {
        "RollingUpdate"
    } else {
        strategy
    };
    w.line(0, &format!("StrategyType:\t{strategy}"));
    w.line(
        0,
        &format!(
            "MinReadySeconds:\t{}",
            d["spec"]["minReadySeconds"].as_i64().unwrap_or(0)
        ),
    );
    if strategy == "RollingUpdate" {
        let ru = &d["spec"]["strategy"]["rollingUpdate"];
        let or = |v: &Value| {
            let x = scalar(v);
            if x.is_empty() {
                "25%".to_string()
            } else {
                x
            }
        };
        w.line(
            0,
            &format!(
                "RollingUpdateStrategy:\t{} max unavailable, {} max surge",
                or(&ru["maxUnavailable"]),
                or(&ru["maxSurge"])
            ),
        );
    }
    pod_template(w, &d["spec"]["template"]);
    conditions3(w, &st["conditions"]);
    // The ReplicaSets it controls: the newest revision is the new one.
    let uid = s(meta, "/uid");
    let path = format!("/apis/apps/v1/namespaces/{ns}/replicasets");
    let mut owned: Vec<Value> = sess
        .client
        .get(&path)
        .ok()
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|rs| {
            rs["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|o| o.iter().any(|o| s(o, "/uid") == uid && !uid.is_empty()))
        })
        .collect();
    let revision = |rs: &Value| {
        s(
            rs,
            "/metadata/annotations/deployment.kubernetes.io~1revision",
        )
        .parse::<i64>()
        .unwrap_or(0)
    };
    owned.sort_by_key(|rs| std::cmp::Reverse(revision(rs)));
    let new = owned.first().map(replicas_created);
    let old: Vec<String> = owned
        .iter()
        .skip(1)
        .filter(|rs| {
            rs["spec"]["replicas"].as_i64().unwrap_or(0) > 0
                || rs["status"]["replicas"].as_i64().unwrap_or(0) > 0
        })
        .map(replicas_created)
        .collect();
    w.line(0, &format!("OldReplicaSets:\t{}", or_none(&old.join(", "))));
    w.line(
        0,
        &format!("NewReplicaSet:\t{}", new.as_deref().unwrap_or("<none>")),
    );
}

fn describe_replicaset(sess: &Session, w: &mut W, rs: &Value) {
    let meta = &rs["metadata"];
    let ns = s(meta, "/namespace");
    w.line(0, &format!("Name:\t{}", s(meta, "/name")));
    w.line(0, &format!("Namespace:\t{ns}"));
    let sel = selector_text(&rs["spec"]["selector"]);
    w.line(0, &format!("Selector:\t{sel}"));
    labels(w, "", "Labels", &meta["labels"]);
    annotations(w, "", &meta["annotations"]);
    if let Some(c) = controlled_by(meta) {
        w.line(0, &format!("Controlled By:\t{c}"));
    }
    w.line(
        0,
        &format!(
            "Replicas:\t{} current / {} desired",
            rs["status"]["replicas"].as_i64().unwrap_or(0),
            rs["spec"]["replicas"].as_i64().unwrap_or(1)
        ),
    );
    let uid = s(meta, "/uid");
    let q = selector_query(Some(&sel), None);
    let pods: Vec<Value> = sess
        .client
        .get(&format!("/api/v1/namespaces/{ns}/pods{q}"))
        .ok()
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            p["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|o| o.iter().any(|o| s(o, "/uid") == uid))
        })
        .collect();
    let count = |phase: &str| {
        pods.iter()
            .filter(|p| {
                let ph = s(p, "/status/phase");
                let ph = if ph.is_empty() { "Pending" } else { ph };
                ph == phase
            })
            .count()
    };
    w.line(
        0,
        &format!(
            "Pods Status:\t{} Running / {} Waiting / {} Succeeded / {} Failed",
            count("Running"),
            count("Pending"),
            count("Succeeded"),
            count("Failed")
        ),
    );
    pod_template(w, &rs["spec"]["template"]);
    conditions3(w, &rs["status"]["conditions"]);
}

fn describe_service(sess: &Session, w: &mut W, svc: &Value) {
    let meta = &svc["metadata"];
    let ns = s(meta, "/namespace");
    let name = s(meta, "/name");
    w.line(0, &format!("Name:\t{name}"));
    w.line(0, &format!("Namespace:\t{ns}"));
    labels(w, "", "Labels", &meta["labels"]);
    annotations(w, "", &meta["annotations"]);
    let sel: Vec<String> = sorted_map(&svc["spec"]["selector"])
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    w.line(0, &format!("Selector:\t{}", sel.join(",")));
    let spec = &svc["spec"];
    let ty = s(spec, "/type");
    w.line(
        0,
        &format!("Type:\t{}", if ty.is_empty() { "ClusterIP" } else { ty }),
    );
    let fam_policy = s(spec, "/ipFamilyPolicy");
    if !fam_policy.is_empty() {
        w.line(0, &format!("IP Family Policy:\t{fam_policy}"));
    }
    let fams: Vec<String> = spec["ipFamilies"]
        .as_array()
        .map(|a| a.iter().map(scalar).collect())
        .unwrap_or_default();
    w.line(0, &format!("IP Families:\t{}", or_none(&fams.join(","))));
    let ip = s(spec, "/clusterIP");
    w.line(0, &format!("IP:\t{}", or_none(ip)));
    let ips: Vec<String> = spec["clusterIPs"]
        .as_array()
        .map(|a| a.iter().map(scalar).collect())
        .unwrap_or_default();
    w.line(0, &format!("IPs:\t{}", or_none(&ips.join(","))));
    let ext: Vec<String> = spec["externalIPs"]
        .as_array()
        .map(|a| a.iter().map(scalar).collect())
        .unwrap_or_default();
    if !ext.is_empty() {
        w.line(0, &format!("External IPs:\t{}", ext.join(",")));
    }
    let endpoints = sess
        .client
        .get(&format!("/api/v1/namespaces/{ns}/endpoints/{name}"))
        .ok();
    for p in spec["ports"].as_array().cloned().unwrap_or_default() {
        let pname = s(&p, "/name");
        let proto = if s(&p, "/protocol").is_empty() {
            "TCP"
        } else {
            s(&p, "/protocol")
        };
        let port = p["port"].as_i64().unwrap_or(0);
        w.line(
            0,
            &format!(
                "Port:\t{}\t{port}/{proto}",
                if pname.is_empty() { "<unset>" } else { pname }
            ),
        );
        let target = scalar(&p["targetPort"]);
        let target = if target.is_empty() {
            port.to_string()
        } else {
            target
        };
        w.line(0, &format!("TargetPort:\t{target}/{proto}"));
        if let Some(np) = p["nodePort"].as_i64().filter(|n| *n != 0) {
            w.line(
                0,
                &format!(
                    "NodePort:\t{}\t{np}/{proto}",
                    if pname.is_empty() { "<unset>" } else { pname }
                ),
            );
        }
        let mut eps = Vec::new();
        if let Some(e) = &endpoints {
            for sub in e["subsets"].as_array().cloned().unwrap_or_default() {
                let ports = sub["ports"].as_array().cloned().unwrap_or_default();
                let matching: Vec<i64> = ports
                    .iter()
                    .filter(|ep| s(ep, "/name") == pname)
                    .filter_map(|ep| ep["port"].as_i64())
                    .collect();
                for a in sub["addresses"].as_array().cloned().unwrap_or_default() {
                    for pn in &matching {
                        eps.push(format!("{}:{pn}", s(&a, "/ip")));
                    }
                }
            }
        }
        w.line(0, &format!("Endpoints:\t{}", or_none(&eps.join(","))));
    }
    let aff = s(spec, "/sessionAffinity");
    w.line(
        0,
        &format!(
            "Session Affinity:\t{}",
            if aff.is_empty() { "None" } else { aff }
        ),
    );
    let itp = s(spec, "/internalTrafficPolicy");
    if !itp.is_empty() {
        w.line(0, &format!("Internal Traffic Policy:\t{itp}"));
    }
}

fn describe_node(sess: &Session, w: &mut W, node: &Value) {
    let meta = &node["metadata"];
    let name = s(meta, "/name");
    w.line(0, &format!("Name:\t{name}"));
    let mut roles: Vec<String> = meta["labels"]
        .as_object()
        .map(|m| {
            m.keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/").map(String::from))
                .filter(|r| !r.is_empty())
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    w.line(0, &format!("Roles:\t{}", or_none(&roles.join(","))));
    labels(w, "", "Labels", &meta["labels"]);
    annotations(w, "", &meta["annotations"]);
    w.line(
        0,
        &format!(
            "CreationTimestamp:\t{}",
            rfc1123z(s(meta, "/creationTimestamp"))
        ),
    );
    let taints = node["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if taints.is_empty() {
        w.line(0, "Taints:\t<none>");
    }
    for (i, t) in taints.iter().enumerate() {
        let v = s(t, "/value");
        let text = if v.is_empty() {
            format!("{}:{}", s(t, "/key"), s(t, "/effect"))
        } else {
            format!("{}={v}:{}", s(t, "/key"), s(t, "/effect"))
        };
        w.line(
            0,
            &format!("{}\t{text}", if i == 0 { "Taints:" } else { "" }),
        );
    }
    w.line(
        0,
        &format!(
            "Unschedulable:\t{}",
            node["spec"]["unschedulable"].as_bool().unwrap_or(false)
        ),
    );
    if let Ok(lease) = sess.client.get(&format!(
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
    )) {
        let t = |p: &str| {
            let x = s(&lease, p);
            if x.is_empty() {
                "<unset>".to_string()
            } else {
                rfc1123z(x)
            }
        };
        w.line(0, "Lease:");
        w.line(
            1,
            &format!(
                "HolderIdentity:\t{}",
                or_none(s(&lease, "/spec/holderIdentity"))
            ),
        );
        w.line(1, &format!("AcquireTime:\t{}", t("/spec/acquireTime")));
        w.line(1, &format!("RenewTime:\t{}", t("/spec/renewTime")));
    }
    if let Some(conds) = node["status"]["conditions"]
        .as_array()
        .filter(|c| !c.is_empty())
    {
        w.line(0, "Conditions:");
        w.line(
            1,
            "Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage",
        );
        w.line(
            1,
            "----\t------\t-----------------\t------------------\t------\t-------",
        );
        for c in conds {
            w.line(
                1,
                &format!(
                    "{} \t{} \t{} \t{} \t{} \t{}",
                    s(c, "/type"),
                    s(c, "/status"),
                    rfc1123z(s(c, "/lastHeartbeatTime")),
                    rfc1123z(s(c, "/lastTransitionTime")),
                    s(c, "/reason"),
                    s(c, "/message")
                ),
            );
        }
    }
    w.line(0, "Addresses:");
    for a in node["status"]["addresses"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        w.line(1, &format!("{}:\t{}", s(&a, "/type"), s(&a, "/address")));
    }
    for (key, title) in [("capacity", "Capacity"), ("allocatable", "Allocatable")] {
        let kv = sorted_map(&node["status"][key]);
        if !kv.is_empty() {
            w.line(0, &format!("{title}:"));
            for (k, v) in kv {
                w.line(1, &format!("{k}:\t{v}"));
            }
        }
    }
    let info = &node["status"]["nodeInfo"];
    w.line(0, "System Info:");
    for (k, t) in [
        ("machineID", "Machine ID"),
        ("systemUUID", "System UUID"),
        ("bootID", "Boot ID"),
        ("kernelVersion", "Kernel Version"),
        ("osImage", "OS Image"),
        ("operatingSystem", "Operating System"),
        ("architecture", "Architecture"),
        ("containerRuntimeVersion", "Container Runtime Version"),
        ("kubeletVersion", "Kubelet Version"),
        ("kubeProxyVersion", "Kube-Proxy Version"),
    ] {
        w.line(1, &format!("{t}:\t{}", s(info, &format!("/{k}"))));
    }
    let cidr = s(node, "/spec/podCIDR");
    if !cidr.is_empty() {
        w.line(0, &format!("PodCIDR:\t{cidr}"));
        let cidrs: Vec<String> = node["spec"]["podCIDRs"]
            .as_array()
            .map(|a| a.iter().map(scalar).collect())
            .unwrap_or_default();
        w.line(0, &format!("PodCIDRs:\t{}", cidrs.join(",")));
    }
    let q = selector_query(None, Some(&format!("spec.nodeName={name}")));
    let pods: Vec<Value> = sess
        .client
        .get(&format!("/api/v1/pods{q}"))
        .ok()
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| !matches!(s(p, "/status/phase"), "Succeeded" | "Failed"))
        .collect();
    w.line(
        0,
        &format!("Non-terminated Pods:\t({} in total)", pods.len()),
    );
    if !pods.is_empty() {
        let now = Utc::now();
        w.line(1, "Namespace\tName\tAge");
        w.line(1, "---------\t----\t---");
        for p in &pods {
            w.line(
                1,
                &format!(
                    "{}\t{}\t{}",
                    s(p, "/metadata/namespace"),
                    s(p, "/metadata/name"),
                    age_of(p["metadata"]["creationTimestamp"].as_str(), now)
                ),
            );
        }
    }
}

/// `creationTimestamp` → `Creation Timestamp`, `apiVersion` → `API Version`.
fn smart_label(key: &str) -> String {
    const INITIALISMS: &[&str] = &[
        "API", "CPU", "DNS", "HTTP", "ID", "IP", "JSON", "TCP", "TLS", "UDP", "UID", "URL", "URI",
    ];
    let mut words: Vec<String> = Vec::new();
    let mut cur = String::new();
    for ch in key.chars() {
        if ch.is_uppercase() && !cur.is_empty() && !cur.chars().all(char::is_uppercase) {
            words.push(std::mem::take(&mut cur));
        }
        cur.push(ch);
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
        .into_iter()
        .map(|w| {
            let up = w.to_uppercase();
            if INITIALISMS.contains(&up.as_str()) {
                up
            } else {
                let mut c = w.chars();
                match c.next() {
                    Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                    None => String::new(),
                }
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn unstructured(w: &mut W, level: usize, v: &Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let label = smart_label(k);
                match x {
                    Value::Object(o) if o.is_empty() => {}
                    Value::Array(a) if a.is_empty() => {}
                    Value::Object(_) => {
                        w.line(level, &format!("{label}:"));
                        unstructured(w, level + 1, x);
                    }
                    Value::Array(a) => {
                        w.line(level, &format!("{label}:"));
                        for item in a {
                            if item.is_object() {
                                unstructured(w, level + 1, item);
                            } else {
                                w.line(level + 1, &scalar(item));
                            }
                        }
                    }
                    _ => w.line(level, &format!("{label}:\t{}", scalar(x))),
                }
            }
        }
        other => w.line(level, &scalar(other)),
    }
}

fn describe_configmap(w: &mut W, cm: &Value) {
    let meta = &cm["metadata"];
    w.line(0, &format!("Name:\t{}", s(meta, "/name")));
    w.line(0, &format!("Namespace:\t{}", s(meta, "/namespace")));
    labels(w, "", "Labels", &meta["labels"]);
    annotations(w, "", &meta["annotations"]);
    w.line(0, "");
    w.line(0, "Data");
    w.line(0, "====");
    for (k, v) in sorted_map(&cm["data"]) {
        w.line(0, &format!("{k}:"));
        w.line(0, "----");
        w.line(0, &v);
        w.line(0, "");
    }
    w.line(0, "");
    w.line(0, "BinaryData");
    w.line(0, "====");
    for (k, v) in sorted_map(&cm["binaryData"]) {
        w.line(0, &format!("{k}: {} bytes", v.len() * 3 / 4));
    }
    w.line(0, "");
}

fn describe_namespace(w: &mut W, ns: &Value) {
    let meta = &ns["metadata"];
    w.line(0, &format!("Name:\t{}", s(meta, "/name")));
    labels(w, "", "Labels", &meta["labels"]);
    annotations(w, "", &meta["annotations"]);
    w.line(0, &format!("Status:\t{}", s(ns, "/status/phase")));
}

/// Every field but metadata, kubectl's form for kinds it has no describer for.
fn describe_generic(w: &mut W, obj: &Value) {
    let meta = &obj["metadata"];
    w.line(0, &format!("Name:\t{}", s(meta, "/name")));
    if !s(meta, "/namespace").is_empty() {
        w.line(0, &format!("Namespace:\t{}", s(meta, "/namespace")));
    }
    labels(w, "", "Labels", &meta["labels"]);
    annotations(w, "", &meta["annotations"]);
    let mut rest = obj.clone();
    if let Some(m) = rest.as_object_mut() {
        m.remove("metadata");
    }
    // apiVersion and kind first, as kubectl prints them.
    let mut ordered = serde_json::Map::new();
    for k in ["apiVersion", "kind"] {
        if let Some(v) = rest.as_object_mut().and_then(|m| m.remove(k)) {
            ordered.insert(k.to_string(), v);
        }
    }
    unstructured(w, 0, &Value::Object(ordered));
    let mut meta_rest = serde_json::Map::new();
    for k in ["creationTimestamp", "generation", "resourceVersion", "uid"] {
        if let Some(v) = meta.get(k) {
            meta_rest.insert(k.to_string(), v.clone());
        }
    }
    w.line(0, "Metadata:");
    unstructured(w, 1, &Value::Object(meta_rest));
    unstructured(w, 0, &rest);
}

/// The object's events, oldest first, as kubectl's `Events:` table.
fn events(sess: &Session, w: &mut W, res: &ApiResource, obj: &Value) {
    let meta = &obj["metadata"];
    let mut sel = vec![
        format!("involvedObject.name={}", s(meta, "/name")),
        format!("involvedObject.kind={}", res.kind),
    ];
    let ns = s(meta, "/namespace");
    if !ns.is_empty() {
        sel.push(format!("involvedObject.namespace={ns}"));
    }
    let uid = s(meta, "/uid");
    if !uid.is_empty() {
        sel.push(format!("involvedObject.uid={uid}"));
    }
    let path = if ns.is_empty() {
        "/api/v1/events".to_string()
    } else {
        format!("/api/v1/namespaces/{ns}/events")
    };
    let q = format!("?fieldSelector={}", encode_query(&sel.join(",")));
    let mut items = match sess.client.get(&format!("{path}{q}")) {
        Ok(l) => l["items"].as_array().cloned().unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    if items.is_empty() {
        w.line(0, "Events:\t<none>");
        return;
    }
    let when = |e: &Value| -> String {
        for p in [
            "/lastTimestamp",
            "/eventTime",
            "/firstTimestamp",
            "/metadata/creationTimestamp",
        ] {
            let x = s(e, p);
            if !x.is_empty() {
                return x.to_string();
            }
        }
        String::new()
    };
    let parse = |x: &str| {
        DateTime::parse_from_rfc3339(x)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    items.sort_by_key(|e| parse(&when(e)));
    let now = Utc::now();
    w.line(0, "Events:");
    w.line(1, "Type\tReason\tAge\tFrom\tMessage");
    w.line(1, "----\t------\t----\t----\t-------");
    for e in &items {
        let first = {
            let f = s(e, "/firstTimestamp");
            if f.is_empty() {
                s(e, "/eventTime")
            } else {
                f
            }
        };
        let count = e["count"].as_i64().unwrap_or(1);
        let interval = if count > 1 {
            format!(
                "{} (x{count} over {})",
                age_of(Some(&when(e)), now),
                age_of(Some(first), now)
            )
        } else {
            age_of(
                Some(if first.is_empty() {
                    s(e, "/metadata/creationTimestamp")
                } else {
                    first
                }),
                now,
            )
        };
        let mut source = s(e, "/source/component").to_string();
        if source.is_empty() {
            source = s(e, "/reportingComponent").to_string();
        }
        if source.is_empty() {
            source = s(e, "/reportingController").to_string();
        }
        let host = s(e, "/source/host");
        if !host.is_empty() {
            source = format!("{source}, {host}");
        }
        w.line(
            1,
            &format!(
                "{}\t{}\t{interval}\t{source}\t{}",
                s(e, "/type"),
                s(e, "/reason"),
                s(e, "/message").trim()
            ),
        );
    }
}

/// The describe text of one object.
fn describe_one(sess: &Session, res: &ApiResource, obj: &Value, with_events: bool) -> String {
    let mut w = W::default();
    match (res.group.as_str(), res.kind.as_str()) {
        ("", "Pod") => describe_pod(&mut w, obj),
        ("apps", "Deployment") => describe_deployment(sess, &mut w, obj),
        ("apps", "ReplicaSet") => describe_replicaset(sess, &mut w, obj),
        ("", "Service") => describe_service(sess, &mut w, obj),
        ("", "Node") => describe_node(sess, &mut w, obj),
        ("", "ConfigMap") => describe_configmap(&mut w, obj),
        ("", "Namespace") => {
            // kubectl's namespace describer shows no events.
            describe_namespace(&mut w, obj);
            return w.finish();
        }
        _ => describe_generic(&mut w, obj),
    }
    if with_events {
        events(sess, &mut w, res, obj);
    }
    w.finish()
}

pub fn run(a: DescribeArgs, root: &Path) -> Result<i32> {
    let mut sess = Session::open(&a.conn, root)?;
    let ts = targets(sess.discovery()?, &a.args)?;
    let ns = (!a.all_namespaces).then(|| sess.namespace.clone());
    let mut failed = false;
    let mut out: Vec<String> = Vec::new();
    for t in &ts {
        let objs: Vec<Result<Value>> = if t.names.is_empty() {
            let q = selector_query(a.selector.as_deref(), None);
            match sess
                .client
                .get(&format!("{}{q}", t.res.path(ns.as_deref(), None)))
            {
                Ok(l) => l["items"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(Ok)
                    .collect(),
                Err(e) => vec![Err(e)],
            }
        } else {
            t.names
                .iter()
                .map(|n| sess.client.get(&t.res.path(ns.as_deref(), Some(n))))
                .collect()
        };
        for o in objs {
            match o {
                Ok(o) => out.push(describe_one(&sess, &t.res, &o, !a.no_events)),
                Err(e) => {
                    failed = true;
                    report(&e);
                }
            }
        }
    }
    if out.is_empty() && !failed {
        match ns {
            Some(ns) if ts.iter().any(|t| t.res.namespaced) => {
                eprintln!("No resources found in {ns} namespace.")
            }
            _ => eprintln!("No resources found"),
        }
    }
    print!("{}", out.join("\n\n"));
    Ok(i32::from(failed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_read_like_kubectl() {
        assert_eq!(smart_label("creationTimestamp"), "Creation Timestamp");
        assert_eq!(smart_label("apiVersion"), "API Version");
        assert_eq!(smart_label("uid"), "UID");
        assert_eq!(smart_label("podIP"), "Pod IP");
    }

    #[test]
    fn a_pending_pod_reads_like_kubectl() {
        let pod = json!({
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "fe"}},
            "spec": {"priority": 0, "serviceAccountName": "default", "containers": [{"name": "c", "image": "busybox:1", "command": ["sleep", "9"], "ports": [{"containerPort": 80}]}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False"}]},
        });
        let mut w = W::default();
        describe_pod(&mut w, &pod);
        let text = w.finish();
        let want = "Name:             web
Namespace:        default
Priority:         0
Service Account:  default
Node:             <none>
Labels:           app=web
                  tier=fe
Annotations:      <none>
Status:           Pending
IP:               
IPs:              <none>
Containers:
  c:
    Image:      busybox:1
    Port:       80/TCP
    Host Port:  0/TCP
    Command:
      sleep
      9
    Environment:  <none>
    Mounts:       <none>
Conditions:
  Type           Status
  PodScheduled   False 
Volumes:         <none>
QoS Class:       BestEffort
Node-Selectors:  <none>
Tolerations:     <none>
";
        assert_eq!(text, want);
    }
}
