//! The small API the controllers need from a cluster, and an in-memory implementation.
//!
//! [`Cluster`] is list/get/create/update/update_status/delete of typed k8s-openapi objects plus
//! pod binding; [`MemCluster`] keeps objects as JSON in a map with API-server behaviour the
//! controllers rely on: `generateName`, uids, resourceVersion, `metadata.generation` bumped on
//! spec changes, and deletion with finalizers and propagation (`foregroundDeletion`, `orphan`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::{Metadata, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::gc::{Propagation, FOREGROUND, ORPHAN};
pub use crate::http::WatchEvent;
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
    /// Any other failure; the request may or may not have taken effect.
    #[error("cluster API: {0}")]
    Api(String),
    /// The request never reached the API server (connect, TLS or handshake failed): it
    /// certainly had no effect.
    #[error("cluster API unreachable: {0}")]
    Unreachable(String),
}

impl ClusterError {
    /// The server certainly did not carry the request out (rejected it, or never got it).
    pub fn not_applied(&self) -> bool {
        !matches!(self, ClusterError::Api(_))
    }
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

/// A served resource, as discovery describes it: what the garbage collector lists, watches,
/// updates and deletes without a Rust type for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApiResource {
    /// "" for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// The URL segment (`configmaps`).
    pub plural: String,
    pub namespaced: bool,
}

impl ApiResource {
    /// The resource of a k8s-openapi type.
    pub fn of<K: Resource>() -> Self
    where
        K::Scope: 'static,
    {
        ApiResource {
            group: K::GROUP.into(),
            version: K::VERSION.into(),
            kind: K::KIND.into(),
            plural: K::URL_PATH_SEGMENT.into(),
            namespaced: std::any::TypeId::of::<K::Scope>()
                == std::any::TypeId::of::<k8s_openapi::NamespaceResourceScope>(),
        }
    }

    /// `v1`, `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The collection's path in `namespace` ("" = all namespaces, or cluster-scoped).
    pub fn collection_path(&self, namespace: &str) -> String {
        let base = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        if namespace.is_empty() || !self.namespaced {
            format!("{base}/{}", self.plural)
        } else {
            format!("{base}/namespaces/{namespace}/{}", self.plural)
        }
    }
}

/// The resources gabang's API server serves (what [`MemCluster`] reports as discovery).
pub fn builtin_resources() -> Vec<ApiResource> {
    use k8s_openapi::api::{apps::v1 as apps, coordination::v1 as coord, core::v1 as core};
    use k8s_openapi::api::{discovery::v1 as disc, networking::v1 as net};
    vec![
        ApiResource::of::<core::Namespace>(),
        ApiResource::of::<core::Pod>(),
        ApiResource::of::<core::Service>(),
        ApiResource::of::<core::Endpoints>(),
        ApiResource::of::<core::ConfigMap>(),
        ApiResource::of::<core::Secret>(),
        ApiResource::of::<core::Event>(),
        ApiResource::of::<core::ServiceAccount>(),
        ApiResource::of::<core::Node>(),
        ApiResource::of::<apps::Deployment>(),
        ApiResource::of::<apps::ReplicaSet>(),
        ApiResource::of::<net::Ingress>(),
        ApiResource::of::<net::IngressClass>(),
        ApiResource::of::<coord::Lease>(),
        ApiResource::of::<disc::EndpointSlice>(),
    ]
}

/// Any object seen through its metadata only (the item of a metadata informer).
#[derive(Debug, Clone, PartialEq)]
pub struct MetaObject {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
}

impl MetaObject {
    /// From an object's JSON (full object or PartialObjectMetadata) of resource `r`.
    pub fn from_json(r: &ApiResource, v: &serde_json::Value) -> Result<Self, ClusterError> {
        let metadata = serde_json::from_value(v["metadata"].clone())
            .map_err(|e| ClusterError::Api(format!("decode {} metadata: {e}", r.kind)))?;
        Ok(MetaObject {
            api_version: r.api_version(),
            kind: r.kind.clone(),
            metadata,
        })
    }
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
    /// [`Cluster::delete`] of any resource (a normal DELETE with a propagation policy).
    fn delete_dynamic(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
        propagation: Propagation,
    ) -> Result<(), ClusterError>;
    /// The metadata of one object of any resource (None if there is no such object).
    fn get_meta_dynamic(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ObjectMeta>, ClusterError>;
    /// Read the object of any resource, change its metadata with `f` and write it back
    /// (whatever the latest version is). Returns the stored object (JSON), None if there is
    /// no such object.
    fn update_meta_dynamic(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
        f: &dyn Fn(&mut ObjectMeta),
    ) -> Result<Option<serde_json::Value>, ClusterError>;
}

/// Tells blocking watches to end. Cloned handles share one signal; set once.
#[derive(Clone)]
pub struct StopSignal(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for StopSignal {
    fn default() -> Self {
        StopSignal(Arc::new(tokio::sync::watch::channel(false).0))
    }
}

impl StopSignal {
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }
    /// A receiver whose `changed()` completes when [`StopSignal::stop`] is called.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.subscribe()
    }
}

/// List + watch, what informers need ([`crate::informer`]).
pub trait WatchCluster: Cluster {
    /// All `K` with the list's resourceVersion (to watch from).
    fn list_versioned<K: Object>(&self) -> Result<(Vec<K>, String), ClusterError>;
    /// Watch `K` after `resource_version`, calling `on_event` per event, until it returns
    /// false, `stop` is set or the stream ends. A resourceVersion too old to resume from is
    /// reported as `WatchEvent::Error` whose message starts with "410".
    fn watch<K: Object>(
        &self,
        resource_version: &str,
        stop: &StopSignal,
        on_event: &mut dyn FnMut(WatchEvent<K>) -> bool,
    ) -> Result<(), ClusterError>;
    /// The latest resourceVersion if known without a request (in-memory clusters): the test
    /// harness waits until every informer has seen it. None over HTTP.
    fn latest_version(&self) -> Option<u64> {
        None
    }
    /// The resources served that can be listed, watched and deleted (subresources left out).
    fn discover(&self) -> Result<Vec<ApiResource>, ClusterError>;
    /// [`WatchCluster::list_versioned`] of any resource, metadata only.
    fn list_meta(&self, resource: &ApiResource) -> Result<(Vec<MetaObject>, String), ClusterError>;
    /// [`WatchCluster::watch`] of any resource, metadata only.
    fn watch_meta(
        &self,
        resource: &ApiResource,
        resource_version: &str,
        stop: &StopSignal,
        on_event: &mut dyn FnMut(WatchEvent<MetaObject>) -> bool,
    ) -> Result<(), ClusterError>;
}

type Key = (String, String, String); // (apiVersion/kind, namespace, name)

/// One change in the in-memory cluster's event log.
struct LogEntry {
    seq: u64,
    kind: String,
    ty: u8, // 0 added, 1 modified, 2 deleted
    obj: serde_json::Value,
}

/// Events kept for watches; older ones are compacted (a watch from before gets 410).
const LOG_CAPACITY: usize = 200_000;

#[derive(Default)]
struct State {
    objects: BTreeMap<Key, serde_json::Value>,
    seq: u64,
    log: VecDeque<LogEntry>,
    /// Watches from a resourceVersion below this are too old.
    compacted: u64,
}

impl State {
    fn record(&mut self, kind: &str, ty: u8, obj: serde_json::Value) {
        if self.log.len() >= LOG_CAPACITY {
            if let Some(e) = self.log.pop_front() {
                self.compacted = e.seq;
            }
        }
        self.log.push_back(LogEntry {
            seq: self.seq,
            kind: kind.to_string(),
            ty,
            obj,
        });
    }
}

/// An in-memory cluster for tests and benchmarks, with a watchable event log.
pub struct MemCluster {
    state: Mutex<State>,
    changed: Condvar,
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
            changed: Condvar::new(),
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

    /// Drop the event log up to now: a watch from an older resourceVersion gets 410 Gone.
    pub fn compact(&self) {
        let mut st = self.lock();
        st.compacted = st.seq;
        st.log.clear();
    }

    /// Number of stored objects of a type (for tests).
    pub fn count<K: Object>(&self) -> usize {
        let tk = type_key::<K>();
        self.lock().objects.keys().filter(|k| k.0 == tk).count()
    }

    fn write<K: Object>(&self, obj: &K, status_only: bool) -> Result<K, ClusterError> {
        let key = key_of(obj);
        let v = self.write_raw(key, K::KIND, to_json(obj)?, status_only)?;
        from_json(&v)
    }

    /// Replace the stored object `key` with `new` (JSON; `status_only`: its status only),
    /// with the API server's rules; returns what was stored.
    fn write_raw(
        &self,
        key: Key,
        kind: &str,
        mut new: serde_json::Value,
        status_only: bool,
    ) -> Result<serde_json::Value, ClusterError> {
        let mut st = self.lock();
        let Some(old) = st.objects.get(&key).cloned() else {
            return Err(ClusterError::NotFound {
                kind: kind.into(),
                key: format!("{}/{}", key.1, key.2),
            });
        };
        if let (Some(rv_new), Some(rv_old)) = (
            new["metadata"]["resourceVersion"].as_str(),
            old["metadata"]["resourceVersion"].as_str(),
        ) {
            if rv_new != rv_old {
                return Err(ClusterError::Conflict {
                    kind: kind.into(),
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
            && !namespace_finalizers(kind, &new);
        if deleting && finalizers_empty {
            st.objects.remove(&key);
            st.record(&key.0, 2, new.clone());
        } else {
            st.objects.insert(key.clone(), new.clone());
            st.record(&key.0, 1, new.clone());
        }
        drop(st);
        self.changed.notify_all();
        Ok(new)
    }

    /// Delete the stored object `key` (`kind` for errors and namespace rules).
    fn delete_raw(
        &self,
        key: Key,
        kind: &str,
        propagation: Propagation,
    ) -> Result<(), ClusterError> {
        let now = self.clock.now();
        let mut st = self.lock();
        let Some(v) = st.objects.get(&key) else {
            return Err(ClusterError::NotFound {
                kind: kind.into(),
                key: format!("{}/{}", key.1, key.2),
            });
        };
        let mut v = v.clone();
        if !v["metadata"]["deletionTimestamp"].is_null() {
            return Ok(());
        }
        let spec_fins = namespace_finalizers(kind, &v);
        let mut fins: Vec<serde_json::Value> = v["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        match propagation {
            Propagation::Foreground => fins.push(serde_json::json!(FOREGROUND)),
            Propagation::Orphan => fins.push(serde_json::json!(ORPHAN)),
            Propagation::Background => {}
        }
        st.seq += 1;
        v["metadata"]["resourceVersion"] = serde_json::json!(st.seq.to_string());
        if fins.is_empty() && !spec_fins {
            st.objects.remove(&key);
            st.record(&key.0, 2, v);
        } else {
            v["metadata"]["finalizers"] = serde_json::json!(fins);
            v["metadata"]["deletionTimestamp"] = serde_json::to_value(Time(now))
                .map_err(|e| ClusterError::Api(format!("encode time: {e}")))?;
            st.objects.insert(key.clone(), v.clone());
            st.record(&key.0, 1, v);
        }
        drop(st);
        self.changed.notify_all();
        Ok(())
    }

    /// Watch objects of type key `tk` after `resource_version`, as JSON.
    fn watch_raw(
        &self,
        tk: &str,
        resource_version: &str,
        stop: &StopSignal,
        on_event: &mut dyn FnMut(WatchEvent<serde_json::Value>) -> Result<bool, ClusterError>,
    ) -> Result<(), ClusterError> {
        let mut from: u64 = resource_version
            .parse()
            .map_err(|_| ClusterError::Api(format!("bad resourceVersion {resource_version:?}")))?;
        loop {
            let mut batch = Vec::new();
            let head;
            {
                let mut st = self.lock();
                while st.seq <= from && !stop.is_stopped() {
                    let (g, _) = self
                        .changed
                        .wait_timeout(st, std::time::Duration::from_millis(100))
                        .unwrap_or_else(|e| e.into_inner());
                    st = g;
                }
                if stop.is_stopped() {
                    return Ok(());
                }
                if from < st.compacted {
                    let at = st.compacted;
                    drop(st);
                    on_event(WatchEvent::Error(format!(
                        "410 Gone: too old resource version {from} (compacted at {at})"
                    )))?;
                    return Ok(());
                }
                let start = st.log.partition_point(|e| e.seq <= from);
                for e in st.log.range(start..) {
                    if e.kind == tk {
                        batch.push((e.ty, e.obj.clone()));
                    }
                }
                head = st.seq;
            }
            for (ty, v) in batch {
                let ev = match ty {
                    0 => WatchEvent::Added(v),
                    1 => WatchEvent::Modified(v),
                    _ => WatchEvent::Deleted(v),
                };
                if !on_event(ev)? {
                    return Ok(());
                }
            }
            from = head;
            // Caught up: a bookmark says how far this watch has seen.
            if !on_event(WatchEvent::Bookmark(head.to_string()))? {
                return Ok(());
            }
        }
    }

    fn list_raw(&self, tk: &str) -> (Vec<serde_json::Value>, u64) {
        let st = self.lock();
        let items = st
            .objects
            .range((tk.to_string(), String::new(), String::new())..)
            .take_while(|(k, _)| k.0 == tk)
            .map(|(_, v)| v.clone())
            .collect();
        (items, st.seq)
    }
}

fn dyn_type_key(r: &ApiResource) -> String {
    format!("{}/{}", r.api_version(), r.kind)
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
        let v = to_json(&obj)?;
        st.objects.insert(key.clone(), v.clone());
        st.record(&key.0, 0, v);
        drop(st);
        self.changed.notify_all();
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
        self.delete_raw(key, K::KIND, propagation)
    }

    fn delete_dynamic(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
        propagation: Propagation,
    ) -> Result<(), ClusterError> {
        let ns = if resource.namespaced { namespace } else { "" };
        let key = (dyn_type_key(resource), ns.to_string(), name.to_string());
        self.delete_raw(key, &resource.kind, propagation)
    }

    fn get_meta_dynamic(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ObjectMeta>, ClusterError> {
        let ns = if resource.namespaced { namespace } else { "" };
        let key = (dyn_type_key(resource), ns.to_string(), name.to_string());
        let v = self.lock().objects.get(&key).cloned();
        v.map(|v| MetaObject::from_json(resource, &v).map(|m| m.metadata))
            .transpose()
    }

    fn update_meta_dynamic(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
        f: &dyn Fn(&mut ObjectMeta),
    ) -> Result<Option<serde_json::Value>, ClusterError> {
        let ns = if resource.namespaced { namespace } else { "" };
        let key = (dyn_type_key(resource), ns.to_string(), name.to_string());
        let Some(mut v) = self.lock().objects.get(&key).cloned() else {
            return Ok(None);
        };
        let mut meta: ObjectMeta = serde_json::from_value(v["metadata"].clone())
            .map_err(|e| ClusterError::Api(format!("decode {} metadata: {e}", resource.kind)))?;
        f(&mut meta);
        meta.resource_version = None;
        v["metadata"] = serde_json::to_value(&meta)
            .map_err(|e| ClusterError::Api(format!("encode {} metadata: {e}", resource.kind)))?;
        match self.write_raw(key, &resource.kind, v, false) {
            Ok(v) => Ok(Some(v)),
            Err(ClusterError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
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
        st.seq += 1;
        let seq = st.seq;
        let Some(v) = st.objects.get_mut(&key) else {
            return Err(Self::not_found::<P>(namespace, name));
        };
        v["metadata"]["resourceVersion"] = serde_json::json!(seq.to_string());
        let v = v.clone();
        st.record(&key.0, 1, v);
        drop(st);
        self.changed.notify_all();
        Ok(())
    }
}

impl WatchCluster for MemCluster {
    fn list_versioned<K: Object>(&self) -> Result<(Vec<K>, String), ClusterError> {
        // Under one lock: the version is exactly the list's.
        let tk = type_key::<K>();
        let st = self.lock();
        let items = st
            .objects
            .range((tk.clone(), String::new(), String::new())..)
            .take_while(|(k, _)| k.0 == tk)
            .map(|(_, v)| from_json(v))
            .collect::<Result<Vec<K>, _>>()?;
        Ok((items, st.seq.to_string()))
    }

    fn watch<K: Object>(
        &self,
        resource_version: &str,
        stop: &StopSignal,
        on_event: &mut dyn FnMut(WatchEvent<K>) -> bool,
    ) -> Result<(), ClusterError> {
        self.watch_raw(&type_key::<K>(), resource_version, stop, &mut |ev| {
            Ok(on_event(ev.try_map(|v| from_json::<K>(&v))?))
        })
    }

    fn discover(&self) -> Result<Vec<ApiResource>, ClusterError> {
        Ok(builtin_resources())
    }

    fn list_meta(&self, resource: &ApiResource) -> Result<(Vec<MetaObject>, String), ClusterError> {
        let (items, seq) = self.list_raw(&dyn_type_key(resource));
        let items = items
            .iter()
            .map(|v| MetaObject::from_json(resource, v))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((items, seq.to_string()))
    }

    fn watch_meta(
        &self,
        resource: &ApiResource,
        resource_version: &str,
        stop: &StopSignal,
        on_event: &mut dyn FnMut(WatchEvent<MetaObject>) -> bool,
    ) -> Result<(), ClusterError> {
        self.watch_raw(&dyn_type_key(resource), resource_version, stop, &mut |ev| {
            Ok(on_event(
                ev.try_map(|v| MetaObject::from_json(resource, &v))?,
            ))
        })
    }

    fn latest_version(&self) -> Option<u64> {
        Some(self.lock().seq)
    }
}
