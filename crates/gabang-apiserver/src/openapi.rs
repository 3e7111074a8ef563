//! OpenAPI documents with real schemas: `/openapi/v3/<gv>` carries the paths of
//! `discovery.rs` and, under `components.schemas`, the JSON schema of every served
//! kind of that group-version and of every type those use (generated from
//! `k8s-openapi`'s `schemars` impls, with the field docs), each served kind marked
//! with `x-kubernetes-group-version-kind` (what `kubectl explain` and kubectl's
//! field-validation probe look up). `/openapi/v2` is a minimal Swagger 2.0
//! document (kubectl only reads it, as protobuf, for client-side validation of kinds
//! it found nowhere else; finding none there, it goes on to "no matches for kind").
//!
//! A document is built on its first request and kept gzip-compressed (a few tens of
//! KiB instead of megabytes of `Value`s), so an idle server holds nothing of it.

use std::io::{Read, Write};
use std::sync::Mutex;

use bytes::Bytes;
use k8s_openapi::schemars::gen::SchemaSettings;
use serde_json::{json, Value};

use crate::resources::RESOURCES;

/// The `hash` of the per group-version URLs listed in `/openapi/v3`: the documents
/// change only with the server's build.
pub const HASH: &str = concat!("gabang-", env!("CARGO_PKG_VERSION"), "-1");

/// Built documents, gzip-compressed, by group-version path (`api/v1`, `apis/g/v`).
static CACHE: Mutex<Vec<(String, Bytes)>> = Mutex::new(Vec::new());

/// The compressed JSON of one group-version's document, built on first use.
pub fn v3_gzip(gv: &str) -> Option<Bytes> {
    if let Ok(c) = CACHE.lock() {
        if let Some((_, b)) = c.iter().find(|(k, _)| k == gv) {
            return Some(b.clone());
        }
    }
    let doc = v3_doc(gv)?;
    let gz = gzip(&serde_json::to_vec(&doc).unwrap_or_default());
    if let Ok(mut c) = CACHE.lock() {
        if !c.iter().any(|(k, _)| k == gv) {
            c.push((gv.to_string(), gz.clone()));
        }
    }
    Some(gz)
}

fn gzip(raw: &[u8]) -> Bytes {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = e.write_all(raw);
    Bytes::from(e.finish().unwrap_or_default())
}

/// The uncompressed bytes, for a client that does not take gzip.
pub fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = flate2::read::GzDecoder::new(gz).read_to_end(&mut out);
    out
}

/// The whole document of one group-version: paths and component schemas.
pub fn v3_doc(gv: &str) -> Option<Value> {
    let mut doc = crate::discovery::openapi_v3_doc(gv)?;
    let (group, version) = match gv.strip_prefix("api/") {
        Some(v) => ("", v),
        None => gv.strip_prefix("apis/")?.split_once('/')?,
    };
    let mut g = SchemaSettings::openapi3().into_generator();
    let mut kinds = Vec::new();
    for d in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let s = (d.schema)(&mut g);
        let name = serde_json::to_value(&s)
            .ok()
            .and_then(|v| v["$ref"].as_str().map(String::from))
            .and_then(|r| r.rsplit('/').next().map(String::from));
        if let Some(n) = name {
            kinds.push((n, d));
        }
    }
    let mut schemas = serde_json::Map::new();
    for (name, schema) in g.take_definitions() {
        let mut v = serde_json::to_value(&schema).unwrap_or(Value::Null);
        k8s_style_refs(&mut v);
        schemas.insert(name, v);
    }
    for (name, d) in kinds {
        if let Some(s) = schemas.get_mut(&name) {
            s["x-kubernetes-group-version-kind"] =
                json!([{"group": d.group, "version": d.version, "kind": d.kind}]);
        }
    }
    doc["components"] = json!({ "schemas": schemas });
    Some(doc)
}

/// `{"$ref": R, "description": D}` (schemars) becomes Kubernetes' form
/// `{"allOf": [{"$ref": R}], "description": D}`: a `$ref` takes no siblings in
/// OpenAPI 3.0, and kubectl's explain templates follow `allOf`.
fn k8s_style_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.len() > 1 {
                if let Some(r) = m.remove("$ref") {
                    m.insert("allOf".into(), json!([{ "$ref": r }]));
                }
            }
            m.values_mut().for_each(k8s_style_refs);
        }
        Value::Array(a) => a.iter_mut().for_each(k8s_style_refs),
        _ => {}
    }
}

/// `/openapi/v2` as JSON: a valid, schema-less Swagger 2.0 document.
pub fn v2_json() -> Value {
    json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": {}, "definitions": {}})
}

/// `/openapi/v2` as protobuf (`openapi_v2.Document` of gnostic): only its
/// `swagger` field (1), "2.0".
pub fn v2_protobuf() -> Vec<u8> {
    let mut out = vec![0x0a, 3];
    out.extend_from_slice(b"2.0");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_v1_has_schemas_with_docs_and_gvks() {
        let doc = v3_doc("apis/apps/v1").unwrap();
        let s = &doc["components"]["schemas"];
        let d = &s["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            d["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
        );
        let spec = &d["properties"]["spec"];
        assert_eq!(
            spec["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
        );
        let replicas = &s["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["replicas"];
        assert_eq!(replicas["type"], "integer");
        assert!(replicas["description"]
            .as_str()
            .unwrap()
            .contains("Number of desired pods"));
        // Types of other groups that a kind uses are in the same document.
        assert!(s["io.k8s.api.core.v1.PodSpec"].is_object());
        assert!(s["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object());
        let gz = v3_gzip("apis/apps/v1").unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&gunzip(&gz)).unwrap(), doc);
        assert!(v3_doc("apis/nope/v1").is_none());
    }
}
