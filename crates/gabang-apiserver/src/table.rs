//! `meta.k8s.io/v1 Table` rendering for `kubectl get`: Kubernetes-like columns per kind.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// (name, type, priority) of each column of `kind`, NAME first.
fn columns(kind: &str) -> Vec<(&'static str, &'static str, u8)> {
    let mut c = vec![("Name", "string", 0)];
    c.extend(match kind {
        "Pod" => vec![
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        "Deployment" => vec![
            ("Ready", "string", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        "ReplicaSet" => vec![
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        "Service" => vec![
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            ("Age", "string", 0),
            ("Selector", "string", 1),
        ],
        "Namespace" => vec![("Status", "string", 0), ("Age", "string", 0)],
        "Node" => vec![
            ("Status", "string", 0),
            ("Roles", "string", 0),
            ("Age", "string", 0),
            ("Version", "string", 0),
            ("Internal-IP", "string", 1),
            ("External-IP", "string", 1),
            ("OS-Image", "string", 1),
            ("Kernel-Version", "string", 1),
            ("Container-Runtime", "string", 1),
        ],
        "ConfigMap" => vec![("Data", "integer", 0), ("Age", "string", 0)],
        "Secret" => vec![
            ("Type", "string", 0),
            ("Data", "integer", 0),
            ("Age", "string", 0),
        ],
        "Endpoints" => vec![("Endpoints", "string", 0), ("Age", "string", 0)],
        "Ingress" => vec![
            ("Class", "string", 0),
            ("Hosts", "string", 0),
            ("Address", "string", 0),
            ("Ports", "string", 0),
            ("Age", "string", 0),
        ],
        "Lease" => vec![("Holder", "string", 0), ("Age", "string", 0)],
        "IngressClass" => vec![
            ("Controller", "string", 0),
            ("Parameters", "string", 0),
            ("Age", "string", 0),
        ],
        "EndpointSlice" => vec![
            ("AddressType", "string", 0),
            ("Ports", "string", 0),
            ("Endpoints", "string", 0),
            ("Age", "string", 0),
        ],
        _ => vec![("Age", "string", 0)],
    });
    if kind == "Event" {
        c = vec![
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Message", "string", 0),
            ("Name", "string", 1),
        ];
    }
    c
}

/// Kubernetes' short human duration ("5s", "3m", "2d").
pub fn age(ts: Option<&str>, now: DateTime<Utc>) -> String {
    let Some(t) = ts.and_then(|t| DateTime::parse_from_rfc3339(t).ok()) else {
        return "<unknown>".into();
    };
    let s = (now - t.with_timezone(&Utc)).num_seconds().max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=599 => format!("{}m{}s", s / 60, s % 60),
        600..=10799 => format!("{}m", s / 60),
        10800..=172799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn s(v: &Value, p: &str) -> String {
    match v.pointer(p) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Null) | None => String::new(),
        Some(o) => o.to_string(),
    }
}

fn n(v: &Value, p: &str) -> i64 {
    v.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

fn or_none(x: String) -> String {
    if x.is_empty() {
        "<none>".into()
    } else {
        x
    }
}

fn unknown(x: String) -> String {
    if x.is_empty() {
        "<unknown>".into()
    } else {
        x
    }
}

/// kubectl's "a,b,c + 2 more..." of a list; `<unset>` when empty.
fn first_three(items: &[String]) -> String {
    match items.len() {
        0 => "<unset>".into(),
        1..=3 => items.join(","),
        n => format!("{} + {} more...", items[..3].join(","), n - 3),
    }
}

/// READINESS GATES of a pod: `<none>`, or gates whose condition is True / all gates.
fn readiness_gates(o: &Value) -> String {
    let gates = o
        .pointer("/spec/readinessGates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if gates.is_empty() {
        return "<none>".into();
    }
    let conds = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ready = gates
        .iter()
        .filter(|g| {
            conds
                .iter()
                .any(|c| c["type"] == g["conditionType"] && c["status"] == "True")
        })
        .count();
    format!("{ready}/{}", gates.len())
}

fn containers_images(spec: Option<&Value>) -> (String, String) {
    let cs = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names: Vec<String> = cs.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<String> = cs.iter().map(|c| s(c, "/image")).collect();
    (names.join(","), images.join(","))
}

fn selector_string(sel: Option<&Value>) -> String {
    let Some(m) = sel
        .and_then(|s| s.get("matchLabels").or(Some(s)))
        .and_then(Value::as_object)
    else {
        return String::new();
    };
    m.iter()
        .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join(",")
}

fn cells(kind: &str, o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let name = s(o, "/metadata/name");
    let age = age(
        o.pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str),
        now,
    );
    match kind {
        "Pod" => {
            let statuses = o
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = o
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses
                .iter()
                .filter(|c| c["ready"] == json!(true))
                .count();
            let restarts: i64 = statuses
                .iter()
                .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                .sum();
            let mut status = s(o, "/status/phase");
            for c in &statuses {
                let w = s(c, "/state/waiting/reason");
                let t = s(c, "/state/terminated/reason");
                if !w.is_empty() {
                    status = w;
                } else if !t.is_empty() && status != "Succeeded" {
                    status = t;
                }
            }
            if o.pointer("/metadata/deletionTimestamp").is_some() {
                status = "Terminating".into();
            }
            if status.is_empty() {
                status = "Pending".into();
            }
            vec![
                json!(name),
                json!(format!("{ready}/{total}")),
                json!(status),
                json!(restarts.to_string()),
                json!(age),
                json!(or_none(s(o, "/status/podIP"))),
                json!(or_none(s(o, "/spec/nodeName"))),
                json!(or_none(s(o, "/status/nominatedNodeName"))),
                json!(readiness_gates(o)),
            ]
        }
        "Deployment" | "ReplicaSet" => {
            let (cn, im) = containers_images(o.pointer("/spec/template/spec"));
            let sel = selector_string(o.pointer("/spec/selector"));
            if kind == "Deployment" {
                vec![
                    json!(name),
                    json!(format!(
                        "{}/{}",
                        n(o, "/status/readyReplicas"),
                        n(o, "/spec/replicas")
                    )),
                    json!(n(o, "/status/updatedReplicas")),
                    json!(n(o, "/status/availableReplicas")),
                    json!(age),
                    json!(cn),
                    json!(im),
                    json!(sel),
                ]
            } else {
                vec![
                    json!(name),
                    json!(n(o, "/spec/replicas")),
                    json!(n(o, "/status/replicas")),
                    json!(n(o, "/status/readyReplicas")),
                    json!(age),
                    json!(cn),
                    json!(im),
                    json!(sel),
                ]
            }
        }
        "Service" => {
            let ports: Vec<String> = o
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    let np = p
                        .get("nodePort")
                        .and_then(Value::as_i64)
                        .map(|x| format!(":{x}"))
                        .unwrap_or_default();
                    format!("{}{}/{}", n(p, "/port"), np, s(p, "/protocol"))
                })
                .collect();
            let ext = o
                .pointer("/spec/externalIPs")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                json!(name),
                json!(s(o, "/spec/type")),
                json!(or_none(s(o, "/spec/clusterIP"))),
                json!(or_none(ext)),
                json!(or_none(ports.join(","))),
                json!(age),
                json!(or_none(selector_string(o.pointer("/spec/selector")))),
            ]
        }
        "Namespace" => vec![json!(name), json!(s(o, "/status/phase")), json!(age)],
        "Node" => {
            let conds = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let ready = conds
                .iter()
                .find(|c| c["type"] == "Ready")
                .map(|c| c["status"] == "True");
            let status = match ready {
                Some(true) => "Ready",
                Some(false) => "NotReady",
                None => "Unknown",
            };
            let status = if o.pointer("/spec/unschedulable") == Some(&json!(true)) {
                format!("{status},SchedulingDisabled")
            } else {
                status.to_string()
            };
            let roles: Vec<String> = o
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.keys()
                        .filter_map(|k| {
                            k.strip_prefix("node-role.kubernetes.io/").map(String::from)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let address = |ty: &str| {
                o.pointer("/status/addresses")
                    .and_then(Value::as_array)
                    .and_then(|a| a.iter().find(|x| x["type"] == ty))
                    .map(|x| s(x, "/address"))
                    .unwrap_or_default()
            };
            let ip = address("InternalIP");
            vec![
                json!(name),
                json!(status),
                json!(or_none(roles.join(","))),
                json!(age),
                json!(s(o, "/status/nodeInfo/kubeletVersion")),
                json!(or_none(ip)),
                json!(or_none(address("ExternalIP"))),
                json!(unknown(s(o, "/status/nodeInfo/osImage"))),
                json!(unknown(s(o, "/status/nodeInfo/kernelVersion"))),
                json!(unknown(s(o, "/status/nodeInfo/containerRuntimeVersion"))),
            ]
        }
        "ConfigMap" => {
            let c = ["data", "binaryData"]
                .iter()
                .map(|f| o.get(*f).and_then(Value::as_object).map_or(0, |m| m.len()))
                .sum::<usize>();
            vec![json!(name), json!(c), json!(age)]
        }
        "Secret" => vec![
            json!(name),
            json!(s(o, "/type")),
            json!(o
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len())),
            json!(age),
        ],
        "Endpoints" => {
            let mut eps = Vec::new();
            for sub in o
                .get("subsets")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
            {
                for a in sub["addresses"].as_array().cloned().unwrap_or_default() {
                    for p in sub["ports"].as_array().cloned().unwrap_or_default() {
                        eps.push(format!("{}:{}", s(&a, "/ip"), n(&p, "/port")));
                    }
                }
            }
            vec![json!(name), json!(or_none(eps.join(","))), json!(age)]
        }
        "Ingress" => {
            let hosts: Vec<String> = o
                .pointer("/spec/rules")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|r| s(r, "/host"))
                .filter(|h| !h.is_empty())
                .collect();
            let hosts = if hosts.is_empty() {
                "*".to_string()
            } else {
                hosts.join(",")
            };
            vec![
                json!(name),
                json!(or_none(s(o, "/spec/ingressClassName"))),
                json!(hosts),
                json!(s(o, "/status/loadBalancer/ingress/0/ip")),
                json!("80"),
                json!(age),
            ]
        }
        "IngressClass" => {
            let params = match o.pointer("/spec/parameters") {
                Some(p) if p.is_object() => {
                    let group = s(p, "/apiGroup");
                    let kind = if group.is_empty() {
                        s(p, "/kind")
                    } else {
                        format!("{}.{group}", s(p, "/kind"))
                    };
                    format!("{kind}/{}", s(p, "/name"))
                }
                _ => String::new(),
            };
            vec![
                json!(name),
                json!(s(o, "/spec/controller")),
                json!(or_none(params)),
                json!(age),
            ]
        }
        "EndpointSlice" => {
            let ports: Vec<String> = o
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| match p.get("port").and_then(Value::as_i64) {
                    Some(n) => n.to_string(),
                    None => "<unset>".into(),
                })
                .collect();
            let addrs: Vec<String> = o
                .get("endpoints")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|e| {
                    e["addresses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect::<Vec<_>>()
                })
                .collect();
            vec![
                json!(name),
                json!(s(o, "/addressType")),
                json!(first_three(&ports)),
                json!(first_three(&addrs)),
                json!(age),
            ]
        }
        "Lease" => vec![
            json!(name),
            json!(or_none(s(o, "/spec/holderIdentity"))),
            json!(age),
        ],
        "Event" => {
            let last = o.get("lastTimestamp").and_then(Value::as_str).or(o
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str));
            let obj = format!(
                "{}/{}",
                s(o, "/involvedObject/kind").to_lowercase(),
                s(o, "/involvedObject/name")
            );
            vec![
                json!(crate::table::age(last, now)),
                json!(s(o, "/type")),
                json!(s(o, "/reason")),
                json!(obj),
                json!(s(o, "/message")),
                json!(name),
            ]
        }
        _ => vec![json!(name), json!(age)],
    }
}

/// The Table column definitions of `kind`.
pub fn column_definitions(kind: &str) -> Value {
    Value::Array(
        columns(kind)
            .into_iter()
            .map(|(name, ty, prio)| {
                json!({
                    "name": name, "type": ty, "format": if name == "Name" { "name" } else { "" },
                    "description": name, "priority": prio,
                })
            })
            .collect(),
    )
}

/// One Table row for `obj`, carrying its metadata as PartialObjectMetadata.
pub fn row(kind: &str, obj: &Value, now: DateTime<Utc>) -> Value {
    json!({
        "cells": cells(kind, obj, now),
        "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))},
    })
}

/// A whole Table of `items`.
pub fn table(kind: &str, items: &[Value], list_meta: Value, with_columns: bool) -> Value {
    let now = Utc::now();
    let mut t = json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
        "rows": items.iter().map(|o| row(kind, o, now)).collect::<Vec<_>>(),
    });
    if with_columns {
        t["columnDefinitions"] = column_definitions(kind);
    } else {
        t["columnDefinitions"] = json!([]);
    }
    t
}
