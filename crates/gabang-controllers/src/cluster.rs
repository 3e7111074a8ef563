//! The small API the controllers need from a cluster, and an in-memory implementation.
//!
//! [`Cluster`] is list/get/create/update/update_status/delete of typed k8s-openapi objects plus
//! pod binding; [`MemCluster`] keeps objects as JSON in a map with API-server behaviour the
//! controllers rely on: `generateName`, uids, resourceVersion, `metadata.generation` bumped on
//! spec changes, and deletion with finalizers and propagation (`foregroundDeletion`, `orphan`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::{Metadata, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::gc::{Propagation, FOREGROUND, ORPHAN};
use crate::nodelifecycle::Clock;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ClusterError {
    #[error("{kind} {key} not found")]
    NotFound { kind: String, key: String },
    #[error("{kind} {key} already exists")]
    AlreadyExists { kind: String, key: String },
    #[error("{kind} {key}: conflict: {message}")]
    Conflict {
        kind: String,
        key: String,
        message: String,
    },
    #[error("{kind} {key}: invalid object: {message}")]
    Invalid {
        kind: String,
        key: String,
        message: String,
    },
    #[error("cluster API: {0}")]
    Api(String),
}

/// Objects the controllers handle.
pub trait Object:
    Resource + Metadata<Ty = ObjectMeta> + Serialize + DeserializeOwned + Clone + Send + 'static
{
}
impl<
        T: Resource
            + Metadata<Ty = ObjectMeta>
            + Serialize
            + DeserializeOwned
            + Clone
            + Send
            + 'static,
    > Object for T
{
}

/// What controllers do to a cluster. Namespaced objects are addressed by (namespace, name);
/// cluster-scoped ones use an empty namespace.
pub trait Cluster: Send + Sync {
    fn list<K: Object>(&self) -> Result<Vec<K>, ClusterError>;
    fn get<K: Object>(&self, namespace: &str, name: &str) -> Result<Option<K>, ClusterError>;
    /// Create; returns the stored object (name from generateName, uid, resourceVersion).
    fn create<K: Object>(&self, obj: &K) -> Result<K, ClusterError>;
    /// Replace metadata + spec (a changed spec bumps `metadata.generation`).
    fn update<K: Object>(&self, obj: &K) -> Result<K, ClusterError>;
    /// Replace the status only (the /status subresource).
    fn update_status<K: Object>(&self, obj: &K) -> Result<K, ClusterError>;
    fn delete<K: Object>(
        &self,
        namespace: &str,
        name: &str,
        propagation: Propagation,
    ) -> Result<(), ClusterError>;
    /// POST pods/{name}/binding.
    fn bind_pod(&self, namespace: &str, name: &str, node: &str) -> Result<(), ClusterError>;
    /// The node agent's final delete of a pod (gracePeriodSeconds=0): a bound pod deleted
    /// normally stays (terminating) until its agent has stopped it and calls this.
    fn force_delete_pod(&self, namespace: &str, name: &str) -> Result<(), ClusterError>;
}

type Key = (String, String, String); // (apiVersion/kind, namespace, name)

#[derive(Default)]
struct State {
    objects: BTreeMap<Key, serde_json::Value>,
    seq: u64,
}

/// An in-memory cluster for tests and benchmarks.
pub struct MemCluster {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
}

fn type_key<K: Resource>() -> String {
    format!("{}/{}", K::API_VERSION, K::KIND)
}

fn key_of<K: Object>(obj: &K) -> Key {
    let m = obj.metadata();
    (
        type_key::<K>(),
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

fn to_json<K: Object>(obj: &K) -> Result<serde_json::Value, ClusterError> {
    serde_json::to_value(obj).map_err(|e| ClusterError::Api(format!("encode {}: {e}", K::KIND)))
}

fn from_json<K: Object>(v: &serde_json::Value) -> Result<K, ClusterError> {
    serde_json::from_value(v.clone())
        .map_err(|e| ClusterError::Api(format!("decode {}: {e}", K::KIND)))
}

/// A Namespace with `spec.finalizers` left is not removed when deleted (it goes Terminating).
fn namespace_finalizers(kind: &str, v: &serde_json::Value) -> bool {
    kind == "Namespace"
        && v["spec"]["finalizers"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
}

const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

impl MemCluster {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemCluster {
            state: Mutex::new(State::default()),
            clock,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn not_found<K: Resource>(ns: &str, name: &str) -> ClusterError {
        ClusterError::NotFound {
            kind: K::KIND.into(),
            key: format!("{ns}/{name}"),
        }
    }

    /// Number of stored objects of a type (for tests).
    pub fn count<K: Object>(&self) -> usize {
        let tk = type_key::<K>();
        self.lock().objects.keys().filter(|k| k.0 == tk).count()
    }

    fn write<K: Object>(&self, obj: &K, status_only: bool) -> Result<K, ClusterError> {
        let mut st = self.lock();
        let key = key_of(obj);
        let Some(old) = st.objects.get(&key).cloned() else {
            return Err(Self::not_found::<K>(&key.1, &key.2));
        };
        let old_obj: K = from_json(&old)?;
        let mut new = to_json(obj)?;
        if let (Some(rv_new), Some(rv_old)) = (
            &obj.metadata().resource_version,
            &old_obj.metadata().resource_version,
        ) {
            if rv_new != rv_old {
                return Err(ClusterError::Conflict {
                    kind: K::KIND.into(),
                    key: format!("{}/{}", key.1, key.2),
                    message: format!("resourceVersion {rv_new} is not the latest ({rv_old})"),
                });
            }
        }
        if status_only {
            let mut kept = old.clone();
            if let Some(s) = new.get("status") {
                kept["status"] = s.clone();
            }
            new = kept;
        } else {
            if let Some(s) = old.get("status") {
                new["status"] = s.clone();
            }
            // Identity and server-owned fields survive.
            new["metadata"]["uid"] = old["metadata"]["uid"].clone();
            new["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
            new["metadata"]["deletionTimestamp"] = old["metadata"]["deletionTimestamp"].clone();
            let gen = old["metadata"]["generation"].as_i64().unwrap_or(1);
            let changed = new.get("spec") != old.get("spec");
            new["metadata"]["generation"] = serde_json::json!(if changed { gen + 1 } else { gen });
        }
        st.seq += 1;
        new["metadata"]["resourceVersion"] = serde_json::json!(st.seq.to_string());
        // Deleting and no finalizers left: gone.
        let deleting = !new["metadata"]["deletionTimestamp"].is_null();
        let finalizers_empty = new["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|a| a.is_empty())
            && !namespace_finalizers(K::KIND, &new);
        let out: K = from_json(&new)?;
        if deleting && finalizers_empty {
            st.objects.remove(&key);
        } else {
            st.objects.insert(key, new);
        }
        Ok(out)
    }
}

impl Cluster for MemCluster {
    fn list<K: Object>(&self) -> Result<Vec<K>, ClusterError> {
        let tk = type_key::<K>();
        let st = self.lock();
        st.objects
            .range((tk.clone(), String::new(), String::new())..)
            .take_while(|(k, _)| k.0 == tk)
            .map(|(_, v)| from_json(v))
            .collect()
    }

    fn get<K: Object>(&self, namespace: &str, name: &str) -> Result<Option<K>, ClusterError> {
        let st = self.lock();
        st.objects
            .get(&(type_key::<K>(), namespace.to_string(), name.to_string()))
            .map(from_json)
            .transpose()
    }

    fn create<K: Object>(&self, obj: &K) -> Result<K, ClusterError> {
        let mut obj = obj.clone();
        let mut st = self.lock();
        st.seq += 1;
        let seq = st.seq;
        let m = obj.metadata_mut();
        if m.name.as_deref().is_none_or(str::is_empty) {
            let Some(prefix) = m.generate_name.clone() else {
                return Err(ClusterError::Invalid {
                    kind: K::KIND.into(),
                    key: "?".into(),
                    message: "metadata.name or metadata.generateName is required".into(),
                });
            };
            let mut n = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let suffix: String = (0..5)
                .map(|_| {
                    let c = NAME_ALPHABET[(n % NAME_ALPHABET.len() as u64) as usize] as char;
                    n /= NAME_ALPHABET.len() as u64;
                    c
                })
                .collect();
            m.name = Some(format!("{prefix}{suffix}"));
        }
        m.uid = Some(format!("uid-{seq}"));
        m.resource_version = Some(seq.to_string());
        m.generation = Some(1);
        m.creation_timestamp = Some(Time(self.clock.now()));
        m.deletion_timestamp = None;
        let key = key_of(&obj);
        if st.objects.contains_key(&key) {
            return Err(ClusterError::AlreadyExists {
                kind: K::KIND.into(),
                key: format!("{}/{}", key.1, key.2),
            });
        }
        st.objects.insert(key, to_json(&obj)?);
        Ok(obj)
    }

    fn update<K: Object>(&self, obj: &K) -> Result<K, ClusterError> {
        self.write(obj, false)
    }

    fn update_status<K: Object>(&self, obj: &K) -> Result<K, ClusterError> {
        self.write(obj, true)
    }

    fn delete<K: Object>(
        &self,
        namespace: &str,
        name: &str,
        propagation: Propagation,
    ) -> Result<(), ClusterError> {
        let key = (type_key::<K>(), namespace.to_string(), name.to_string());
        let now = self.clock.now();
        let mut st = self.lock();
        let Some(v) = st.objects.get(&key) else {
            return Err(Self::not_found::<K>(namespace, name));
        };
        let mut obj: K = from_json(v)?;
        let m = obj.metadata_mut();
        if m.deletion_timestamp.is_some() {
            return Ok(());
        }
        let spec_fins = namespace_finalizers(K::KIND, v);
        let fins = m.finalizers.get_or_insert_with(Vec::new);
        match propagation {
            Propagation::Foreground => fins.push(FOREGROUND.into()),
            Propagation::Orphan => fins.push(ORPHAN.into()),
            Propagation::Background => {}
        }
        if fins.is_empty() && !spec_fins {
            st.objects.remove(&key);
        } else {
            m.deletion_timestamp = Some(Time(now));
            st.seq += 1;
            m.resource_version = Some(st.seq.to_string());
            let v = to_json(&obj)?;
            st.objects.insert(key, v);
        }
        Ok(())
    }

    fn force_delete_pod(&self, namespace: &str, name: &str) -> Result<(), ClusterError> {
        match self.delete::<k8s_openapi::api::core::v1::Pod>(
            namespace,
            name,
            Propagation::Background,
        ) {
            Err(ClusterError::NotFound { .. }) => Ok(()),
            other => other,
        }
    }

    fn bind_pod(&self, namespace: &str, name: &str, node: &str) -> Result<(), ClusterError> {
        type P = k8s_openapi::api::core::v1::Pod;
        let mut st = self.lock();
        let key = (type_key::<P>(), namespace.to_string(), name.to_string());
        let Some(v) = st.objects.get_mut(&key) else {
            return Err(Self::not_found::<P>(namespace, name));
        };
        if v["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
        {
            return Err(ClusterError::Conflict {
                kind: "Pod".into(),
                key: format!("{namespace}/{name}"),
                message: "pod is already assigned to a node".into(),
            });
        }
        v["spec"]["nodeName"] = serde_json::json!(node);
        Ok(())
    }
}
