//! Strategic merge patch as `kubectl apply` sends it: maps merge recursively, `null`
//! deletes, lists of the well-known merge keys (containers by name, ports by
//! containerPort/port, env by name, ...) merge element-wise, directives `$patch`,
//! `$retainKeys`, `$deleteFromPrimitiveList/…` and `$setElementOrder/…` are honoured.
//! The merge-key table is by field name, which holds for the built-in types served here.

use serde_json::{Map, Value};

/// The merge key of list field `field`, or None when the list is replaced whole.
fn merge_key(field: &str, sample: &[&Value]) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "topologySpreadConstraints" => "topologyKey",
        "ports" => {
            if sample.iter().any(|e| e.get("containerPort").is_some()) {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    })
}

/// Primitive lists merged as sets.
fn merges_primitives(field: &str) -> bool {
    field == "finalizers"
}

/// Applies `patch` to `original`.
pub fn apply(original: &Value, patch: &Value) -> Result<Value, String> {
    merge_value(original, patch, "")
}

fn merge_value(orig: &Value, patch: &Value, field: &str) -> Result<Value, String> {
    match patch {
        Value::Object(p) => {
            if p.get("$patch").and_then(Value::as_str) == Some("replace") {
                let mut p = p.clone();
                p.remove("$patch");
                return Ok(Value::Object(p));
            }
            if p.get("$patch").and_then(Value::as_str) == Some("delete") {
                return Ok(Value::Null);
            }
            let base = match orig {
                Value::Object(o) => o.clone(),
                _ => Map::new(),
            };
            merge_map(base, p).map(Value::Object)
        }
        Value::Array(pa) => merge_list(orig, pa, field),
        other => Ok(other.clone()),
    }
}

fn merge_map(
    mut out: Map<String, Value>,
    p: &Map<String, Value>,
) -> Result<Map<String, Value>, String> {
    let retain = p.get("$retainKeys").and_then(Value::as_array).cloned();
    for (k, v) in p {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(del)) = (out.get_mut(field), v.as_array()) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if v.is_null() {
            out.remove(k);
            continue;
        }
        let cur = out.get(k).cloned().unwrap_or(Value::Null);
        let merged = merge_value(&cur, v, k)?;
        if merged.is_null() {
            out.remove(k);
        } else {
            out.insert(k.clone(), merged);
        }
    }
    if let Some(keep) = retain {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        out.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(out)
}

fn merge_list(orig: &Value, patch: &[Value], field: &str) -> Result<Value, String> {
    let orig_list: Vec<Value> = orig.as_array().cloned().unwrap_or_default();
    if patch
        .iter()
        .any(|e| e.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(Value::Array(
            patch
                .iter()
                .filter(|e| e.get("$patch").is_none())
                .cloned()
                .collect(),
        ));
    }
    if merges_primitives(field) {
        let mut out = orig_list;
        for v in patch {
            if !out.contains(v) {
                out.push(v.clone());
            }
        }
        return Ok(Value::Array(out));
    }
    let sample: Vec<&Value> = patch.iter().chain(orig_list.iter()).collect();
    let Some(mk) = merge_key(field, &sample) else {
        return Ok(Value::Array(patch.to_vec()));
    };
    if !patch.iter().all(Value::is_object) {
        return Ok(Value::Array(patch.to_vec()));
    }
    let mut out = orig_list;
    for pe in patch {
        let key = pe.get(mk).cloned().unwrap_or(Value::Null);
        let pos = out.iter().position(|o| o.get(mk) == Some(&key));
        let delete = pe.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                out.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => {
                let merged = merge_value(&out[i], pe, "")?;
                out[i] = merged;
            }
            (None, false) => {
                let mut clean = pe.clone();
                if let Some(o) = clean.as_object_mut() {
                    o.remove("$patch");
                }
                out.push(merge_value(&Value::Null, &clean, "")?);
            }
        }
    }
    Ok(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_containers_by_name_and_deletes_with_null() {
        let orig = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80}], "env": [{"name": "A", "value": "1"}]},
            {"name": "side", "image": "busybox"}
        ]}}}});
        let patch = json!({"metadata": {"labels": {"b": null, "c": "3"}}, "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "side"}],
            "containers": [{"name": "web", "image": "nginx:2", "env": [{"name": "B", "value": "2"}]},
                           {"name": "side", "$patch": "delete"}]}}}});
        let out = apply(&orig, &patch).unwrap();
        assert_eq!(out["metadata"]["labels"], json!({"a": "1", "c": "3"}));
        let cs = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0]["image"], "nginx:2");
        assert_eq!(cs[0]["ports"], json!([{"containerPort": 80}]));
        assert_eq!(
            cs[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        );
    }

    #[test]
    fn replaces_unkeyed_lists_and_merges_finalizers() {
        let orig = json!({"args": ["a", "b"], "finalizers": ["x"]});
        let out = apply(&orig, &json!({"args": ["c"], "finalizers": ["y"]})).unwrap();
        assert_eq!(out, json!({"args": ["c"], "finalizers": ["x", "y"]}));
        let out = apply(&out, &json!({"$deleteFromPrimitiveList/finalizers": ["x"]})).unwrap();
        assert_eq!(out["finalizers"], json!(["y"]));
    }
}
