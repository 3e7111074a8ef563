//! Field ownership (`metadata.managedFields`) and server-side apply.
//!
//! A field set is a set of paths in the `FieldsV1` vocabulary: `f:<field>` steps into a
//! map field, `k:{"name":"web"}` into the item of a keyed list, `v:"x"` names an item of
//! a set of primitives, and `.` stands for the node itself (list items, string maps).
//! [`record_update`] keeps the managers' sets in step with an Update (create, update,
//! patch, scale, status): the fields it changed pass to its manager. [`apply`] merges an
//! applied configuration into the live object, removes the fields the manager applied
//! before and no longer applies (unless another manager owns them), and refuses a
//! change to a field another manager owns (409, unless forced).
//!
//! Without OpenAPI schemas, list and map kinds come from field names (as in `smp.rs`):
//! containers, env, volumes, ... by `name`, ports by (port or containerPort, protocol),
//! volumeMounts by `mountPath`, conditions by `type`, ownerReferences by `uid`,
//! finalizers as a set; every other list is atomic.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::status::ApiError;

type Path = Vec<String>;
pub type FieldSet = BTreeSet<Path>;

/// The key fields of keyed list `field` (with a default for a missing key field).
fn list_keys(
    field: &str,
    items: &[Value],
) -> Option<&'static [(&'static str, Option<&'static str>)]> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => &[("name", None)],
        "volumeMounts" => &[("mountPath", None)],
        "volumeDevices" => &[("devicePath", None)],
        "hostAliases" => &[("ip", None)],
        "conditions" => &[("type", None)],
        "ownerReferences" => &[("uid", None)],
        "topologySpreadConstraints" => &[("topologyKey", None), ("whenUnsatisfiable", None)],
        "ports" => {
            if items.iter().any(|e| e.get("containerPort").is_some()) {
                &[("containerPort", None), ("protocol", Some("TCP"))]
            } else {
                &[("port", None), ("protocol", Some("TCP"))]
            }
        }
        _ => return None,
    })
}

fn is_set(field: &str) -> bool {
    field == "finalizers"
}

/// Maps whose node is owned as well as their entries (string maps in the API types).
fn is_map_node(field: &str, v: &Map<String, Value>) -> bool {
    matches!(
        field,
        "labels"
            | "annotations"
            | "data"
            | "stringData"
            | "binaryData"
            | "matchLabels"
            | "nodeSelector"
            | "limits"
            | "requests"
    ) || (field == "selector" && v.values().all(Value::is_string))
}

/// `k:{...}` of an item: its key fields in name order, defaults filled in.
fn item_key(item: &Value, keys: &[(&str, Option<&str>)]) -> Option<String> {
    let mut sorted: Vec<&(&str, Option<&str>)> = keys.iter().collect();
    sorted.sort_by_key(|(k, _)| *k);
    let mut parts = Vec::new();
    for (k, default) in sorted {
        let v = match item.get(*k) {
            Some(v) if !v.is_null() => v.clone(),
            _ => json!((*default)?),
        };
        parts.push(format!("{}:{}", json!(k), v));
    }
    Some(format!("k:{{{}}}", parts.join(",")))
}

fn keyed<'a>(field: &str, list: &'a [Value]) -> Option<Vec<(String, &'a Value)>> {
    let keys = list_keys(field, list)?;
    if list.is_empty() || !list.iter().all(Value::is_object) {
        return None;
    }
    list.iter()
        .map(|i| item_key(i, keys).map(|k| (k, i)))
        .collect()
}

fn child(path: &Path, step: String) -> Path {
    let mut p = path.clone();
    p.push(step);
    p
}

/// Every field path set in `v` (a value at `path`, in field `field`).
fn collect(v: &Value, path: &Path, field: &str, item: bool, out: &mut FieldSet) {
    collect_in(v, &mut path.clone(), field, item, out);
}

/// [`collect`] on one path buffer (steps pushed and popped, cloned only into `out`).
fn collect_in(v: &Value, path: &mut Path, field: &str, item: bool, out: &mut FieldSet) {
    match v {
        Value::Object(m) => {
            if item || is_map_node(field, m) {
                out.insert(child(path, ".".into()));
            }
            if m.is_empty() && !item {
                out.insert(path.clone());
            }
            for (k, cv) in m {
                if !cv.is_null() {
                    path.push(format!("f:{k}"));
                    collect_in(cv, path, k, false, out);
                    path.pop();
                }
            }
        }
        Value::Array(list) => {
            if is_set(field) && list.iter().all(|x| !x.is_object() && !x.is_array()) {
                out.insert(child(path, ".".into()));
                for x in list {
                    out.insert(child(path, format!("v:{x}")));
                }
            } else if let Some(items) = keyed(field, list) {
                for (k, it) in items {
                    path.push(k);
                    collect_in(it, path, field, true, out);
                    path.pop();
                }
            } else {
                out.insert(path.clone());
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

/// Top-level and metadata fields no manager owns.
fn strip(set: &mut FieldSet, with_status: bool) {
    const META: &[&str] = &[
        "f:name",
        "f:namespace",
        "f:uid",
        "f:resourceVersion",
        "f:creationTimestamp",
        "f:generation",
        "f:managedFields",
        "f:selfLink",
        "f:deletionTimestamp",
        "f:deletionGracePeriodSeconds",
    ];
    set.retain(|p| match p.first().map(String::as_str) {
        Some("f:apiVersion" | "f:kind") => false,
        Some("f:status") => with_status,
        Some("f:metadata") => !p.get(1).is_some_and(|s| META.contains(&s.as_str())),
        Some(_) => true,
        None => false,
    });
}

/// The fields set in `obj` that managers own (`status` only when `with_status`).
pub fn fields_of(obj: &Value, with_status: bool) -> FieldSet {
    let mut out = FieldSet::new();
    collect(obj, &Vec::new(), "", false, &mut out);
    strip(&mut out, with_status);
    out
}

/// The field paths whose value differs between `a` and `b`.
fn diff(a: &Value, b: &Value, path: &Path, field: &str, item: bool, out: &mut FieldSet) {
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(ma), Value::Object(mb)) => {
            let keys: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
            for k in keys {
                let (va, vb) = (
                    ma.get(k).unwrap_or(&Value::Null),
                    mb.get(k).unwrap_or(&Value::Null),
                );
                if va != vb {
                    diff(va, vb, &child(path, format!("f:{k}")), k, false, out);
                }
            }
            let _ = item;
        }
        (Value::Array(la), Value::Array(lb)) => {
            if let (Some(ka), Some(kb)) = (keyed(field, la), keyed(field, lb)) {
                let ma: BTreeMap<String, &Value> = ka.into_iter().collect();
                let mb: BTreeMap<String, &Value> = kb.into_iter().collect();
                let keys: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
                for k in keys {
                    let p = child(path, k.clone());
                    match (ma.get(k), mb.get(k)) {
                        (Some(x), Some(y)) => diff(x, y, &p, field, true, out),
                        (Some(x), None) | (None, Some(x)) => collect(x, &p, field, true, out),
                        (None, None) => {}
                    }
                }
            } else if is_set(field) {
                let sa: BTreeSet<String> = la.iter().map(Value::to_string).collect();
                let sb: BTreeSet<String> = lb.iter().map(Value::to_string).collect();
                for x in sa.symmetric_difference(&sb) {
                    out.insert(child(path, format!("v:{x}")));
                }
            } else {
                out.insert(path.clone());
            }
        }
        (Value::Null, x) | (x, Value::Null) => collect(x, path, field, item, out),
        _ => {
            out.insert(path.clone());
        }
    }
}

/// Fields that differ between two objects (ownership-relevant ones only).
pub fn changed(old: &Value, new: &Value, with_status: bool) -> FieldSet {
    let mut out = FieldSet::new();
    diff(old, new, &Vec::new(), "", false, &mut out);
    strip(&mut out, with_status);
    out
}

/// A `FieldsV1` tree from a set.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for p in set {
        let mut node = &mut root;
        for step in p {
            let next = node
                .entry(step.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(m) = next else { break };
            node = m;
        }
    }
    Value::Object(root)
}

/// A set from a `FieldsV1` tree (leaves are empty objects).
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn walk(v: &Value, path: &Path, out: &mut FieldSet) {
        let Value::Object(m) = v else { return };
        if m.is_empty() {
            if !path.is_empty() {
                out.insert(path.clone());
            }
            return;
        }
        for (k, c) in m {
            walk(c, &child(path, k.clone()), out);
        }
    }
    let mut out = FieldSet::new();
    walk(v, &Vec::new(), &mut out);
    out
}

/// One `managedFields` entry.
#[derive(Clone, Debug)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: String,
    pub fields: FieldSet,
}

impl Entry {
    fn same_owner(&self, manager: &str, operation: &str, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }
}

/// The entries of an object's `metadata.managedFields`.
pub fn entries(obj: &Value) -> Vec<Entry> {
    let Some(list) = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    let s = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    list.iter()
        .map(|e| Entry {
            manager: s(e, "manager"),
            operation: s(e, "operation"),
            api_version: s(e, "apiVersion"),
            time: s(e, "time"),
            subresource: s(e, "subresource"),
            fields: from_fields_v1(e.get("fieldsV1").unwrap_or(&Value::Null)),
        })
        .collect()
}

/// Writes `list` as `metadata.managedFields` (dropping empty entries).
pub fn set_entries(obj: &mut Value, list: &[Entry]) {
    let rendered: Vec<Value> = list
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({"manager": e.manager, "operation": e.operation,
                "apiVersion": e.api_version, "time": e.time, "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields)});
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if rendered.is_empty() {
            m.remove("managedFields");
        } else {
            m.insert("managedFields".into(), Value::Array(rendered));
        }
    }
}

/// The manager of a request: `?fieldManager=`, else the User-Agent's program name.
pub fn manager_of(field_manager: Option<&str>, user_agent: &str) -> String {
    if let Some(m) = field_manager.filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let prog = user_agent.split('/').next().unwrap_or("").trim();
    if prog.is_empty() {
        "unknown".into()
    } else {
        prog.chars().take(128).collect()
    }
}

/// Who does a write: the manager, the API version used, the subresource, the time.
pub struct Op<'a> {
    pub manager: &'a str,
    pub api_version: String,
    pub subresource: &'a str,
    pub time: &'a str,
}

/// Records an Update `op` that turned `old` (None: a create) into `new`: the fields
/// it changed pass to its manager; fields gone from the object leave every set.
pub fn record_update(old: Option<&Value>, new: &mut Value, op: &Op<'_>) {
    let with_status = op.subresource == "status";
    let mut list = old.map(entries).unwrap_or_default();
    let now_fields = fields_of(new, true);
    let changed = match old {
        Some(o) => changed(o, new, with_status),
        None => fields_of(new, with_status),
    };
    let changed: FieldSet = changed.intersection(&now_fields).cloned().collect();
    for e in &mut list {
        e.fields
            .retain(|p| now_fields.contains(p) && !changed.contains(p));
    }
    if !changed.is_empty() {
        match list
            .iter_mut()
            .find(|e| e.same_owner(op.manager, "Update", op.subresource))
        {
            Some(e) => {
                e.fields.extend(changed);
                e.time = op.time.to_string();
                e.api_version = op.api_version.to_string();
            }
            None => list.push(Entry {
                manager: op.manager.to_string(),
                operation: "Update".into(),
                api_version: op.api_version.to_string(),
                time: op.time.to_string(),
                subresource: op.subresource.to_string(),
                fields: changed,
            }),
        }
    }
    list.retain(|e| !e.fields.is_empty());
    set_entries(new, &list);
}

/// Renders a path as Kubernetes prints it in conflicts: `.spec.containers[name="web"].image`.
pub fn render_path(p: &Path) -> String {
    let mut s = String::new();
    for step in p {
        if let Some(f) = step.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = step.strip_prefix("k:") {
            let inner = serde_json::from_str::<Map<String, Value>>(k)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_else(|_| k.to_string());
            s.push_str(&format!("[{inner}]"));
        } else if let Some(v) = step.strip_prefix("v:") {
            s.push_str(&format!("[={v}]"));
        }
    }
    s
}

/// Removes the node at `p` from `obj` (a no-op when it is not there); lists and maps
/// the removal leaves empty go too.
fn remove_path(obj: &mut Value, p: &[String]) {
    match p.split_last() {
        Some((last, parent)) if last == "." => remove_path(obj, parent),
        Some(_) => {
            remove_at(obj, p, "");
        }
        None => {}
    }
}

/// Removes `steps` below `node` (in field `field`); true when `node` is left empty.
fn remove_at(node: &mut Value, steps: &[String], field: &str) -> bool {
    let Some((step, rest)) = steps.split_first() else {
        return false;
    };
    let next_field = step.strip_prefix("f:").unwrap_or(field).to_string();
    if rest.is_empty() {
        if let Some(f) = step.strip_prefix("f:") {
            if let Some(m) = node.as_object_mut() {
                if m.remove(f).is_some() {
                    return m.is_empty();
                }
            }
        } else if let Value::Array(list) = node {
            let keys = list_keys(field, list);
            let n = list.len();
            list.retain(|it| !matches_step(it, step, keys));
            return list.len() < n && list.is_empty();
        }
        return false;
    }
    let emptied = match step_into(node, step, field) {
        Some(c) => remove_at(c, rest, &next_field),
        None => false,
    };
    if emptied {
        return remove_at(node, std::slice::from_ref(step), field);
    }
    false
}

fn matches_step(it: &Value, step: &str, keys: Option<&[(&str, Option<&str>)]>) -> bool {
    if let Some(v) = step.strip_prefix("v:") {
        return serde_json::from_str::<Value>(v).is_ok_and(|v| *it == v);
    }
    keys.and_then(|k| item_key(it, k)).as_deref() == Some(step)
}

fn step_into<'v>(node: &'v mut Value, step: &str, field: &str) -> Option<&'v mut Value> {
    if let Some(f) = step.strip_prefix("f:") {
        return node.get_mut(f);
    }
    let list = node.as_array_mut()?;
    let keys = list_keys(field, list);
    list.iter_mut().find(|it| matches_step(it, step, keys))
}

/// The outcome of a server-side apply: the object to store (managedFields set).
pub fn apply(live: &Value, applied: &Value, op: &Op<'_>, force: bool) -> Result<Value, ApiError> {
    let with_status = op.subresource == "status";
    let mut list = entries(live);
    let mine = |e: &Entry| e.same_owner(op.manager, "Apply", op.subresource);
    let previous: FieldSet = list
        .iter()
        .find(|e| mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut clean = applied.clone();
    if let Some(m) = clean.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
        m.remove("resourceVersion");
    }
    let wanted = fields_of(&clean, with_status);
    let mut merged = crate::smp::apply(live, &clean).map_err(ApiError::bad_request)?;

    // Fields this manager applied before and no longer does, that nobody else owns.
    let others: FieldSet = list
        .iter()
        .filter(|e| !mine(e))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let dropped: Vec<&Path> = previous
        .iter()
        .filter(|p| !wanted.contains(*p) && !others.contains(*p))
        .collect();
    // Whole nodes first (a list item found by its key), then single fields.
    for p in dropped
        .iter()
        .filter(|p| p.last().is_some_and(|l| l == "."))
    {
        // A node goes only when nothing in it is owned any more.
        let node = &p[..p.len() - 1];
        let held = others
            .iter()
            .chain(wanted.iter())
            .any(|o| o.len() > node.len() && o.starts_with(node));
        if !held {
            remove_path(&mut merged, p);
        }
    }
    for p in dropped
        .iter()
        .filter(|p| p.last().is_some_and(|l| l != "."))
    {
        remove_path(&mut merged, p);
    }

    let diffs = changed(live, &merged, with_status);
    let mut conflicts: BTreeMap<(String, String), Vec<Path>> = BTreeMap::new();
    for e in list.iter().filter(|e| !mine(e)) {
        for p in e.fields.intersection(&diffs) {
            conflicts
                .entry((e.manager.clone(), e.api_version.clone()))
                .or_default()
                .push(p.clone());
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&conflicts));
    }
    let now_fields = fields_of(&merged, true);
    for e in list.iter_mut().filter(|e| !mine(e)) {
        e.fields
            .retain(|p| now_fields.contains(p) && !(force && diffs.contains(p)));
    }
    let entry = Entry {
        manager: op.manager.to_string(),
        operation: "Apply".into(),
        api_version: op.api_version.to_string(),
        time: op.time.to_string(),
        subresource: op.subresource.to_string(),
        fields: wanted,
    };
    match list.iter_mut().find(|e| mine(e)) {
        // A no-op apply leaves the entry (and so the object) as it was.
        Some(e) if diffs.is_empty() && e.fields == entry.fields => {}
        Some(e) => *e = entry,
        None => list.push(entry),
    }
    set_entries(&mut merged, &list);
    Ok(merged)
}

fn conflict_error(conflicts: &BTreeMap<(String, String), Vec<Path>>) -> ApiError {
    let n: usize = conflicts.values().map(Vec::len).sum();
    let mut causes = Vec::new();
    let mut parts = Vec::new();
    for ((m, v), paths) in conflicts {
        let rendered: Vec<String> = paths.iter().map(render_path).collect();
        for r in &rendered {
            causes.push(json!({"type": "FieldManagerConflict",
                "message": format!("conflict with \"{m}\" using {v}"), "field": r}));
        }
        if rendered.len() == 1 {
            parts.push(format!("conflict with \"{m}\" using {v}: {}", rendered[0]));
        } else {
            parts.push(format!(
                "conflicts with \"{m}\" using {v}:\n- {}",
                rendered.join("\n- ")
            ));
        }
    }
    let plural = if n == 1 { "conflict" } else { "conflicts" };
    let mut e = ApiError::new(
        409,
        "Conflict",
        format!("Apply failed with {n} {plural}: {}", parts.join("\n")),
    );
    e.details = Some(json!({"causes": causes}));
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(image: &str, replicas: i64) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                    {"name": "web", "image": image, "ports": [{"containerPort": 80}],
                     "env": [{"name": "A", "value": "1"}]}]}}}})
    }

    fn op<'a>(m: &'a str) -> Op<'a> {
        Op {
            manager: m,
            api_version: "apps/v1".into(),
            subresource: "",
            time: "2026-01-01T00:00:00Z",
        }
    }

    #[test]
    fn fields_v1_has_the_kubernetes_shape() {
        let f = fields_of(&deploy("nginx", 2), false);
        let tree = to_fields_v1(&f);
        assert_eq!(
            tree["f:metadata"]["f:labels"],
            json!({".": {}, "f:app": {}})
        );
        let c = &tree["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"];
        assert_eq!(c["."], json!({}));
        assert_eq!(c["f:image"], json!({}));
        assert_eq!(
            c["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"],
            json!({".": {}, "f:containerPort": {}})
        );
        assert!(tree.get("f:apiVersion").is_none());
        assert!(tree["f:metadata"].get("f:name").is_none());
        assert_eq!(from_fields_v1(&tree), f);
    }

    #[test]
    fn apply_owns_removes_and_conflicts() {
        let live = json!({"metadata": {"name": "web"}});
        let a = apply(&live, &deploy("nginx:1", 2), &op("alice"), false).unwrap();
        assert_eq!(a["metadata"]["managedFields"][0]["manager"], "alice");
        assert_eq!(a["metadata"]["managedFields"][0]["operation"], "Apply");

        // Dropping env from the applied config removes it (alice alone owned it).
        let mut next = deploy("nginx:2", 2);
        next["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("env");
        let b = apply(&a, &next, &op("alice"), false).unwrap();
        let c0 = &b["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c0["image"], "nginx:2");
        assert!(c0.get("env").is_none(), "{c0}");

        // Another manager changing alice's field conflicts; the same value does not.
        let bob = json!({"metadata": {"name": "web"}, "spec": {"replicas": 5}});
        let err = apply(&b, &bob, &op("bob"), false).unwrap_err();
        assert_eq!(err.code, 409);
        assert!(
            err.message
                .contains("conflict with \"alice\" using apps/v1: .spec.replicas"),
            "{}",
            err.message
        );
        let same = json!({"metadata": {"name": "web"}, "spec": {"replicas": 2}});
        let shared = apply(&b, &same, &op("bob"), false).unwrap();
        assert_eq!(entries(&shared).len(), 2);
        // Forced: bob takes the field over.
        let forced = apply(&b, &bob, &op("bob"), true).unwrap();
        assert_eq!(forced["spec"]["replicas"], 5);
        let es = entries(&forced);
        let alice = es.iter().find(|e| e.manager == "alice").unwrap();
        assert!(!alice
            .fields
            .contains(&vec!["f:spec".to_string(), "f:replicas".to_string()]));
    }

    #[test]
    fn updates_take_the_fields_they_change() {
        let live = json!({"metadata": {"name": "web"}});
        let a = apply(&live, &deploy("nginx:1", 2), &op("alice"), false).unwrap();
        let mut scaled = a.clone();
        scaled["spec"]["replicas"] = json!(4);
        record_update(Some(&a), &mut scaled, &op("kubectl-scale"));
        let es = entries(&scaled);
        let s = es.iter().find(|e| e.manager == "kubectl-scale").unwrap();
        assert_eq!(s.operation, "Update");
        assert_eq!(
            s.fields,
            FieldSet::from([vec!["f:spec".to_string(), "f:replicas".to_string()]])
        );
        // alice re-applying replicas 2 now conflicts with the scaler.
        let err = apply(&scaled, &deploy("nginx:1", 2), &op("alice"), false).unwrap_err();
        assert!(err.message.contains("kubectl-scale"), "{}", err.message);
    }
}
