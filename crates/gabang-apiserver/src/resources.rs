//! The resource table: one row per served resource drives routing, discovery,
//! OpenAPI, storage keys and typed decoding (through `k8s-openapi`).

use k8s_openapi::api::{apps::v1 as apps, coordination::v1 as coord, core::v1 as core};
use k8s_openapi::api::{discovery::v1 as disc, networking::v1 as net};
use k8s_openapi::schemars::{gen::SchemaGenerator, schema::Schema, JsonSchema};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

/// Registers the JSON schema of a type (and of every type it uses) with a generator.
pub type SchemaOf = fn(&mut SchemaGenerator) -> Schema;

fn schema_of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// Decodes a JSON object into its `k8s-openapi` type and back: type errors fail,
/// unknown fields are dropped.
pub type Normalize = fn(&Value) -> Result<Value, String>;

fn typed<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, String> {
    // The error names the field path (`data.a: invalid type: integer `1`, …`).
    let t: T = serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        if path.is_empty() || path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })?;
    let mut out = serde_json::to_value(&t).map_err(|e| e.to_string())?;
    drop_empty_maps(&mut out);
    Ok(out)
}

/// Whether `field: value` is one of the string maps of the API types, empty.
pub fn is_empty_map_field(field: &str, value: &Value) -> bool {
    matches!(
        field,
        "labels"
            | "annotations"
            | "data"
            | "binaryData"
            | "stringData"
            | "matchLabels"
            | "nodeSelector"
            | "limits"
            | "requests"
    ) && value.as_object().is_some_and(|o| o.is_empty())
}

/// Go leaves empty maps out (`omitempty`); k8s-openapi keeps `Some({})`. Drops the
/// empty string maps of the API types so objects read as Kubernetes writes them
/// (`kubectl diff` sends `annotations: {}` and expects no change from it).
fn drop_empty_maps(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, c| !is_empty_map_field(k, c));
            m.values_mut().for_each(drop_empty_maps);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_empty_maps),
        _ => {}
    }
}

/// One served resource.
pub struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub status: bool,
    pub scale: bool,
    pub normalize: Normalize,
    /// The OpenAPI schema of the kind (from `k8s-openapi`'s `schemars` impls).
    pub schema: SchemaOf,
}

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    /// Whether updates bump metadata.generation on spec changes.
    pub fn has_generation(&self) -> bool {
        self.status
    }
}

macro_rules! row {
    ($g:expr, $v:expr, $kind:expr, $plural:expr, $singular:expr, $ns:expr, $short:expr, $cat:expr, $status:expr, $scale:expr, $t:ty) => {
        ResourceDef {
            group: $g,
            version: $v,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $ns,
            short_names: $short,
            categories: $cat,
            status: $status,
            scale: $scale,
            normalize: typed::<$t>,
            schema: schema_of::<$t>,
        }
    };
}

/// Every resource this server serves.
pub static RESOURCES: &[ResourceDef] = &[
    row!(
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        false,
        &["ns"],
        &[],
        true,
        false,
        core::Namespace
    ),
    row!(
        "",
        "v1",
        "Pod",
        "pods",
        "pod",
        true,
        &["po"],
        &["all"],
        true,
        false,
        core::Pod
    ),
    row!(
        "",
        "v1",
        "Service",
        "services",
        "service",
        true,
        &["svc"],
        &["all"],
        true,
        false,
        core::Service
    ),
    row!(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "endpoints",
        true,
        &["ep"],
        &[],
        false,
        false,
        core::Endpoints
    ),
    row!(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        true,
        &["cm"],
        &[],
        false,
        false,
        core::ConfigMap
    ),
    row!(
        "",
        "v1",
        "Secret",
        "secrets",
        "secret",
        true,
        &[],
        &[],
        false,
        false,
        core::Secret
    ),
    row!(
        "",
        "v1",
        "Event",
        "events",
        "event",
        true,
        &["ev"],
        &[],
        false,
        false,
        core::Event
    ),
    row!(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        true,
        &["sa"],
        &[],
        false,
        false,
        core::ServiceAccount
    ),
    row!(
        "",
        "v1",
        "Node",
        "nodes",
        "node",
        false,
        &["no"],
        &[],
        true,
        false,
        core::Node
    ),
    row!(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        true,
        &["deploy"],
        &["all"],
        true,
        true,
        apps::Deployment
    ),
    row!(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        true,
        &["rs"],
        &["all"],
        true,
        true,
        apps::ReplicaSet
    ),
    row!(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        "ingress",
        true,
        &["ing"],
        &[],
        true,
        false,
        net::Ingress
    ),
    row!(
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        "ingressclass",
        false,
        &[],
        &[],
        false,
        false,
        net::IngressClass
    ),
    row!(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        "lease",
        true,
        &[],
        &[],
        false,
        false,
        coord::Lease
    ),
    row!(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        true,
        &[],
        &[],
        false,
        false,
        disc::EndpointSlice
    ),
];

/// The row for (group, version, plural).
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The distinct (group, version) pairs, core first.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// Storage key of one object.
pub fn key(def: &ResourceDef, ns: Option<&str>, name: &str) -> String {
    match ns {
        Some(ns) if def.namespaced => format!("/registry/{}/{}/{}", def.plural, ns, name),
        _ => format!("/registry/{}/{}", def.plural, name),
    }
}

/// Storage prefix of a collection (one namespace, or all).
pub fn prefix(def: &ResourceDef, ns: Option<&str>) -> String {
    match ns {
        Some(ns) if def.namespaced => format!("/registry/{}/{}/", def.plural, ns),
        _ => format!("/registry/{}/", def.plural),
    }
}
