//! The controller manager: informers → caches → work queue → idempotent reconcile per key.
//!
//! [`Manager::new`] starts one [`informer`] per kind (Pods, Nodes, Leases, Deployments,
//! ReplicaSets, Services, Endpoints, EndpointSlices, Namespaces, Events), and, after
//! discovery, a metadata-only informer for every other served resource (ConfigMaps, Secrets,
//! ServiceAccounts, Ingresses, …) so the garbage collector covers every kind; until those
//! have listed, the GC waits (an owner of a kind not listed yet is never presumed gone). The
//! scheduler records a `Scheduled` event per binding and node lifecycle a
//! `TaintManagerEviction` event per eviction (best effort). Their handlers map
//! each change to the keys it affects ([`Key`]): a pod to its owning ReplicaSet (or the
//! ReplicaSets that could adopt it), the Services selecting it and the scheduler if it is
//! unbound; a ReplicaSet to its Deployment; Nodes and Leases to node lifecycle; ownership and
//! deletion changes to the garbage collector. The worker ([`Manager::run`], or
//! [`Manager::spawn`] on a thread) pops keys and reconciles each from the caches with the pure
//! reconcilers; a failed key is retried with per-key exponential backoff, and keys that need a
//! later look (lease expiry, progress deadline, minReadySeconds) are queued for that time.
//! Every [`Config::resync`] all keys are queued once more from the caches (no LIST) as a
//! safety net. Idle, the manager sends nothing but the open watches.
//!
//! ReplicaSet expectations are lowered when the pod informer sees the created pod, or the
//! deleted pod go (not when the request returns), so a cache that lags its own writes never
//! makes a ReplicaSet create twice for one gap; they expire after 5 minutes as a fallback.
//! The worker waits for every informer's first list before it reconciles anything.
//!
//! [`Manager::sync`] is for tests and benchmarks: it waits until the informers have seen the
//! cluster's latest version (when the cluster can say, see
//! [`WatchCluster::latest_version`]) and processes queued keys until none is due.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration as StdDuration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Event, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::chrono::{DateTime, Duration, Utc};

use crate::cluster::{ApiResource, ClusterError, MetaObject, Object, StopSignal, WatchCluster};
use crate::common::{
    controller_ref, map_selector_matches, pod_active, selector_matches, ObjectKey,
};
use crate::gc::{GcAction, ObjInfo, Propagation};
use crate::informer::{self, InformerStatus, Progress, Store};
use crate::nodelifecycle::{self, Clock, NodeAction};
use crate::polling::{clear_rv, ignore_not_found, pod_event, record_unschedulable};
pub use crate::polling::{fake_agent_step, SyncReport};
use crate::queue::WorkQueue;
use crate::replicaset::{Expectations, PodAction};
use crate::scheduler::{Decision, Scheduler};
use crate::{deployment, endpoints, gc, replicaset};

/// What the worker reconciles. Namespaced keys are `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Deployment(String),
    ReplicaSet(String),
    /// Endpoints and EndpointSlices of one Service.
    Service(String),
    /// Node lifecycle over all nodes (leases, conditions, taints, evictions).
    Nodes,
    /// One scheduling pass over the pending pods.
    Scheduler,
    /// One garbage-collection pass over the cached objects and namespaces.
    Gc,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Deployment(k) => write!(f, "deployment/{k}"),
            Key::ReplicaSet(k) => write!(f, "replicaset/{k}"),
            Key::Service(k) => write!(f, "service/{k}"),
            Key::Nodes => write!(f, "nodes"),
            Key::Scheduler => write!(f, "scheduler"),
            Key::Gc => write!(f, "gc"),
        }
    }
}

/// Manager settings.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub node: nodelifecycle::Config,
    /// Queue every key again this often (from the caches): a safety net, not the mechanism.
    pub resync: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node: nodelifecycle::Config::default(),
            resync: Duration::seconds(60),
        }
    }
}

impl From<nodelifecycle::Config> for Config {
    fn from(node: nodelifecycle::Config) -> Self {
        Config {
            node,
            ..Config::default()
        }
    }
}

/// The informers' caches.
#[derive(Default)]
pub struct Caches {
    pub pods: Arc<Store<Pod>>,
    pub nodes: Arc<Store<Node>>,
    pub leases: Arc<Store<Lease>>,
    pub deployments: Arc<Store<Deployment>>,
    pub replica_sets: Arc<Store<ReplicaSet>>,
    pub services: Arc<Store<Service>>,
    pub endpoints: Arc<Store<Endpoints>>,
    pub slices: Arc<Store<EndpointSlice>>,
    pub namespaces: Arc<Store<Namespace>>,
    pub events: Arc<Store<Event>>,
}

impl Caches {
    /// The store of `K`, if it is cached.
    fn store<K: Object>(&self) -> Option<&Store<K>> {
        let any: [&dyn std::any::Any; 10] = [
            self.pods.as_ref(),
            self.nodes.as_ref(),
            self.leases.as_ref(),
            self.deployments.as_ref(),
            self.replica_sets.as_ref(),
            self.services.as_ref(),
            self.endpoints.as_ref(),
            self.slices.as_ref(),
            self.namespaces.as_ref(),
            self.events.as_ref(),
        ];
        any.into_iter().find_map(|s| s.downcast_ref::<Store<K>>())
    }
}

/// The resources the typed caches hold.
fn typed_resources() -> Vec<ApiResource> {
    vec![
        ApiResource::of::<Pod>(),
        ApiResource::of::<Node>(),
        ApiResource::of::<Lease>(),
        ApiResource::of::<Deployment>(),
        ApiResource::of::<ReplicaSet>(),
        ApiResource::of::<Service>(),
        ApiResource::of::<Endpoints>(),
        ApiResource::of::<EndpointSlice>(),
        ApiResource::of::<Namespace>(),
        ApiResource::of::<Event>(),
    ]
}

/// What the garbage collector sees beyond the typed caches: every resource discovery
/// reports, with a metadata-only informer for each one the typed caches do not hold
/// (ConfigMaps, Secrets, ServiceAccounts, Ingresses, …).
#[derive(Default)]
struct Discovered {
    /// Discovery answered and the metadata informers are started.
    done: AtomicBool,
    /// Every resource discovery reported, typed ones included.
    resources: RwLock<Vec<ApiResource>>,
    /// The metadata informers' caches.
    stores: RwLock<Vec<MetaStore>>,
}

struct MetaStore {
    store: Arc<Store<MetaObject>>,
    status: Arc<InformerStatus>,
}

impl Discovered {
    /// Discovery is in and every metadata informer has its first list.
    fn ready(&self) -> bool {
        self.done.load(Ordering::Acquire)
            && self
                .stores
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .all(|m| m.status.synced())
    }

    fn min_seen(&self) -> Option<u64> {
        self.stores
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|m| m.status.seen())
            .min()
    }
}

impl Caches {
    /// An object the garbage collector wrote (JSON, as the API server stored it): cached
    /// at once when its kind has a typed cache, so the next reconcile does not write over
    /// it from a stale copy. Returns the number of writes (1, or 0 for `None`).
    fn write_through_json(&self, kind: &str, v: Option<serde_json::Value>) -> usize {
        fn put<K: Object>(s: &Store<K>, v: serde_json::Value) {
            match serde_json::from_value::<K>(v) {
                Ok(o) => s.write_through(o),
                Err(e) => tracing::debug!("controllers: {} not cached: {e}", K::KIND),
            }
        }
        let Some(v) = v else {
            return 0;
        };
        let gone = !v["metadata"]["deletionTimestamp"].is_null()
            && v["metadata"]["finalizers"]
                .as_array()
                .is_none_or(|f| f.is_empty());
        if gone {
            // The write removed its last finalizer: the object is gone, not to be cached.
            return 1;
        }
        match kind {
            "Pod" => put(&self.pods, v),
            "Node" => put(&self.nodes, v),
            "Lease" => put(&self.leases, v),
            "Deployment" => put(&self.deployments, v),
            "ReplicaSet" => put(&self.replica_sets, v),
            "Service" => put(&self.services, v),
            "Endpoints" => put(&self.endpoints, v),
            "EndpointSlice" => put(&self.slices, v),
            "Namespace" => put(&self.namespaces, v),
            "Event" => put(&self.events, v),
            // The metadata informers' caches follow their watches.
            _ => {}
        }
        1
    }
}

/// State shared by the informer handlers and the worker.
struct Shared {
    caches: Caches,
    discovered: Discovered,
    queue: WorkQueue<Key>,
    expectations: Mutex<Expectations>,
    /// Pods bound by the scheduler that the cache does not show bound yet: pod key → node.
    assumed: Mutex<HashMap<String, String>>,
    /// Pending pods the last scheduling pass could not place (a node or freed room requeues
    /// the scheduler while this is non-zero).
    unschedulable: AtomicUsize,
    clock: Arc<dyn Clock>,
}

fn key_of(m: &ObjectMeta) -> String {
    ObjectKey::of(m).to_string()
}

fn ns_of(m: &ObjectMeta) -> &str {
    m.namespace.as_deref().unwrap_or("")
}

fn bound_node(p: &Pod) -> Option<&str> {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Does this change matter to the garbage collector (ownership, deletion, finalizers)?
fn gc_relevant(old: Option<&ObjectMeta>, new: Option<&ObjectMeta>) -> bool {
    match (old, new) {
        (_, None) => true,
        (None, Some(n)) => {
            n.owner_references.as_ref().is_some_and(|r| !r.is_empty())
                || n.deletion_timestamp.is_some()
        }
        (Some(o), Some(n)) => {
            o.owner_references != n.owner_references
                || o.deletion_timestamp != n.deletion_timestamp
                || o.finalizers != n.finalizers
        }
    }
}

impl Shared {
    fn on_pod(&self, old: Option<&Pod>, new: Option<&Pod>) {
        let q = &self.queue;
        let metas = [old.map(|p| &p.metadata), new.map(|p| &p.metadata)];
        // Owners (and would-be owners) of the pod.
        for m in metas.into_iter().flatten() {
            let ns = ns_of(m);
            match controller_ref(m) {
                Some(r) if r.kind == "ReplicaSet" => {
                    q.add(Key::ReplicaSet(format!("{ns}/{}", r.name)));
                }
                Some(_) => {}
                None => {
                    if m.deletion_timestamp.is_none() {
                        for rs in self.caches.replica_sets.list_ns(ns) {
                            let sel = rs.spec.as_ref().map(|s| &s.selector);
                            if sel.is_some_and(|s| selector_matches(s, m.labels.as_ref())) {
                                q.add(Key::ReplicaSet(key_of(&rs.metadata)));
                            }
                        }
                    }
                }
            }
        }
        // Expectations: lowered by what the watch shows, never by what a request returned.
        if let Some(r) = new
            .or(old)
            .and_then(|p| controller_ref(&p.metadata))
            .filter(|r| r.kind == "ReplicaSet")
        {
            let p = new.or(old).map(|p| &p.metadata);
            let rs_key = format!("{}/{}", p.map(ns_of).unwrap_or(""), r.name);
            let mut exp = self.expectations.lock().unwrap_or_else(|e| e.into_inner());
            if old.is_none() && new.is_some() {
                exp.creation_observed(&rs_key);
            }
            if new.is_none_or(|p| p.metadata.deletion_timestamp.is_some()) {
                if let Some(m) = p {
                    exp.pod_deletion_observed(&rs_key, &key_of(m));
                }
            }
        }
        // A deleted pod of a Recreate rollout: its Deployment may go on.
        if new.is_none() {
            if let Some((ns, r)) = old.and_then(|p| {
                controller_ref(&p.metadata).map(|r| (ns_of(&p.metadata).to_string(), r))
            }) {
                if let Some(rs) = self.caches.replica_sets.get(&ns, &r.name) {
                    if let Some(d) = controller_ref(&rs.metadata).filter(|d| d.kind == "Deployment")
                    {
                        q.add(Key::Deployment(format!("{ns}/{}", d.name)));
                    }
                }
            }
        }
        // Services selecting the pod before or after.
        let ns = new.or(old).map(|p| ns_of(&p.metadata)).unwrap_or("");
        let svcs = self.caches.services.list_ns(ns);
        for s in &svcs {
            let Some(sel) = s.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
                continue;
            };
            if sel.is_empty() {
                continue;
            }
            let hit = [old, new]
                .into_iter()
                .flatten()
                .any(|p| map_selector_matches(sel, p.metadata.labels.as_ref()));
            if hit {
                q.add(Key::Service(key_of(&s.metadata)));
            }
        }
        // The scheduler: a pending pod, or room freed while some pod waits.
        match new {
            Some(p) if bound_node(p).is_some() || !pod_active(p) => {
                self.forget_assumed(&p.metadata);
            }
            Some(p) => {
                if pod_active(p) {
                    q.add(Key::Scheduler);
                }
            }
            None => {
                if let Some(p) = old {
                    self.forget_assumed(&p.metadata);
                }
            }
        }
        let freed = old.is_some_and(|o| bound_node(o).is_some() && pod_active(o))
            && new.is_none_or(|n| !pod_active(n));
        if freed && self.unschedulable.load(Ordering::Acquire) > 0 {
            q.add(Key::Scheduler);
        }
        // Node lifecycle: a pod landing on (or still on) a node that is not Ready.
        if let Some(node) = new.and_then(bound_node) {
            if self
                .caches
                .nodes
                .get("", node)
                .is_none_or(|n| !node_ready(&n))
            {
                q.add(Key::Nodes);
            }
        }
        if gc_relevant(metas[0], metas[1]) {
            q.add(Key::Gc);
        }
    }

    fn forget_assumed(&self, m: &ObjectMeta) {
        let mut a = self.assumed.lock().unwrap_or_else(|e| e.into_inner());
        if !a.is_empty() {
            a.remove(&key_of(m));
        }
    }

    fn on_replica_set(&self, old: Option<&ReplicaSet>, new: Option<&ReplicaSet>) {
        for rs in [old, new].into_iter().flatten() {
            let ns = ns_of(&rs.metadata);
            self.queue.add(Key::ReplicaSet(key_of(&rs.metadata)));
            if let Some(d) = controller_ref(&rs.metadata).filter(|r| r.kind == "Deployment") {
                self.queue.add(Key::Deployment(format!("{ns}/{}", d.name)));
            }
        }
        if new.is_none() {
            if let Some(rs) = old {
                self.expectations
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .forget(&key_of(&rs.metadata));
            }
        }
        if gc_relevant(old.map(|o| &o.metadata), new.map(|o| &o.metadata)) {
            self.queue.add(Key::Gc);
        }
    }

    fn on_deployment(&self, old: Option<&Deployment>, new: Option<&Deployment>) {
        if let Some(d) = new.or(old) {
            self.queue.add(Key::Deployment(key_of(&d.metadata)));
        }
        if gc_relevant(old.map(|o| &o.metadata), new.map(|o| &o.metadata)) {
            self.queue.add(Key::Gc);
        }
    }

    fn on_service(&self, old: Option<&Service>, new: Option<&Service>) {
        if let Some(s) = new.or(old) {
            self.queue.add(Key::Service(key_of(&s.metadata)));
        }
        if gc_relevant(old.map(|o| &o.metadata), new.map(|o| &o.metadata)) {
            self.queue.add(Key::Gc);
        }
    }

    fn on_endpoints(&self, old: Option<&Endpoints>, new: Option<&Endpoints>) {
        if let Some(e) = new.or(old) {
            self.queue.add(Key::Service(key_of(&e.metadata)));
        }
        if gc_relevant(old.map(|o| &o.metadata), new.map(|o| &o.metadata)) {
            self.queue.add(Key::Gc);
        }
    }

    fn on_slice(&self, old: Option<&EndpointSlice>, new: Option<&EndpointSlice>) {
        for s in [old, new].into_iter().flatten() {
            if let Some(svc) = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(endpoints::SERVICE_NAME_LABEL))
            {
                self.queue
                    .add(Key::Service(format!("{}/{svc}", ns_of(&s.metadata))));
            }
        }
        if gc_relevant(old.map(|o| &o.metadata), new.map(|o| &o.metadata)) {
            self.queue.add(Key::Gc);
        }
    }

    fn on_node(&self, old: Option<&Node>, new: Option<&Node>) {
        self.queue.add(Key::Nodes);
        let capacity_changed = match (old, new) {
            (Some(o), Some(n)) => {
                o.spec != n.spec
                    || o.status.as_ref().map(|s| &s.allocatable)
                        != n.status.as_ref().map(|s| &s.allocatable)
                    || node_ready(o) != node_ready(n)
            }
            _ => true,
        };
        if capacity_changed && self.unschedulable.load(Ordering::Acquire) > 0 {
            self.queue.add(Key::Scheduler);
        }
    }

    fn on_namespace(&self, _old: Option<&Namespace>, _new: Option<&Namespace>) {
        self.queue.add(Key::Gc);
    }

    fn on_event(&self, old: Option<&Event>, new: Option<&Event>) {
        let terminating = new.is_some_and(|e| {
            self.caches
                .namespaces
                .get("", ns_of(&e.metadata))
                .is_some_and(|n| n.metadata.deletion_timestamp.is_some())
        });
        if terminating || gc_relevant(old.map(|o| &o.metadata), new.map(|o| &o.metadata)) {
            self.queue.add(Key::Gc);
        }
    }

    /// A change of a resource only the garbage collector watches.
    fn on_meta(&self, old: Option<&MetaObject>, new: Option<&MetaObject>) {
        let terminating = new.is_some_and(|o| {
            o.metadata.namespace.as_deref().is_some_and(|ns| {
                self.caches
                    .namespaces
                    .get("", ns)
                    .is_some_and(|n| n.metadata.deletion_timestamp.is_some())
            })
        });
        if terminating || gc_relevant(old.map(|o| &o.metadata), new.map(|o| &o.metadata)) {
            self.queue.add(Key::Gc);
        }
    }

    /// Every key the caches know of (resync).
    fn queue_all(&self) {
        let q = &self.queue;
        for d in self.caches.deployments.list() {
            q.add(Key::Deployment(key_of(&d.metadata)));
        }
        for rs in self.caches.replica_sets.list() {
            q.add(Key::ReplicaSet(key_of(&rs.metadata)));
        }
        for s in self.caches.services.list() {
            q.add(Key::Service(key_of(&s.metadata)));
        }
        q.add(Key::Nodes);
        q.add(Key::Scheduler);
        q.add(Key::Gc);
    }
}

/// Runs all controllers over one cluster.
pub struct Manager<C: WatchCluster + 'static> {
    cluster: Arc<C>,
    shared: Arc<Shared>,
    config: Config,
    sched_messages: HashMap<String, String>,
    /// Pod creates whose outcome is unknown (the connection broke after sending), per
    /// ReplicaSet key: pod names to look up once the API server answers again.
    unknown_creates: HashMap<String, Vec<String>>,
    names: std::collections::hash_map::RandomState,
    name_seq: u64,
    statuses: Vec<Arc<InformerStatus>>,
    progress: Arc<Progress>,
    stop: StopSignal,
    next_resync: Option<DateTime<Utc>>,
}

impl<C: WatchCluster + 'static> Drop for Manager<C> {
    fn drop(&mut self) {
        self.stop.stop();
        self.shared.queue.wake();
    }
}

/// A manager running on its own thread ([`Manager::spawn`]).
pub struct ManagerHandle {
    stop: StopSignal,
    thread: Option<std::thread::JoinHandle<()>>,
    wake: Box<dyn Fn() + Send>,
}

impl ManagerHandle {
    /// Stop the worker and the informers and wait for the worker to finish its key.
    pub fn stop(mut self) {
        self.stop_inner();
    }
    fn stop_inner(&mut self) {
        self.stop.stop();
        (self.wake)();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ManagerHandle {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

impl<C: WatchCluster + 'static> Manager<C> {
    /// Start the informers; reconciling starts with [`Manager::run`] or [`Manager::sync`].
    pub fn new(cluster: Arc<C>, clock: Arc<dyn Clock>, config: impl Into<Config>) -> Self {
        let shared = Arc::new(Shared {
            caches: Caches::default(),
            discovered: Discovered::default(),
            queue: WorkQueue::default(),
            expectations: Mutex::new(Expectations::default()),
            assumed: Mutex::new(HashMap::new()),
            unschedulable: AtomicUsize::new(0),
            clock,
        });
        let stop = StopSignal::default();
        let progress = Arc::new(Progress::default());
        let mut m = Manager {
            cluster,
            shared: shared.clone(),
            config: config.into(),
            sched_messages: HashMap::new(),
            unknown_creates: HashMap::new(),
            names: std::collections::hash_map::RandomState::new(),
            name_seq: 0,
            statuses: Vec::new(),
            progress,
            stop,
            next_resync: None,
        };
        let c = &shared.caches;
        macro_rules! inform {
            ($store:expr, $method:ident) => {{
                let sh = shared.clone();
                m.start_informer($store.clone(), Arc::new(move |o, n| sh.$method(o, n)));
            }};
        }
        inform!(c.namespaces, on_namespace);
        inform!(c.nodes, on_node);
        inform!(c.leases, on_lease);
        inform!(c.deployments, on_deployment);
        inform!(c.replica_sets, on_replica_set);
        inform!(c.pods, on_pod);
        inform!(c.services, on_service);
        inform!(c.endpoints, on_endpoints);
        inform!(c.slices, on_slice);
        inform!(c.events, on_event);
        m.start_discovery();
        m
    }

    /// On a thread (retrying until the API server answers): discover the served resources
    /// and start a metadata informer for each one the typed caches do not hold, for the GC.
    fn start_discovery(&mut self) {
        let cluster = self.cluster.clone();
        let shared = self.shared.clone();
        let progress = self.progress.clone();
        let stop = self.stop.clone();
        let spawned = std::thread::Builder::new()
            .name("gc-discovery".into())
            .spawn(move || {
                let mut backoff = StdDuration::from_millis(100);
                let resources = loop {
                    if stop.is_stopped() {
                        return;
                    }
                    match cluster.discover() {
                        Ok(r) => break r,
                        Err(e) => {
                            tracing::warn!("controllers: discovery: {e}");
                            let end = std::time::Instant::now() + backoff;
                            while !stop.is_stopped() && std::time::Instant::now() < end {
                                std::thread::sleep(StdDuration::from_millis(50));
                            }
                            backoff = (backoff * 2).min(StdDuration::from_secs(30));
                        }
                    }
                };
                let typed = typed_resources();
                let mut stores = Vec::new();
                for r in &resources {
                    if typed.iter().any(|t| t.group == r.group && t.kind == r.kind) {
                        continue;
                    }
                    let store = Arc::new(Store::default());
                    let status = Arc::new(InformerStatus::default());
                    let sh = shared.clone();
                    let started = informer::spawn_meta(
                        cluster.clone(),
                        r.clone(),
                        store.clone(),
                        Arc::new(move |o, n| sh.on_meta(o, n)),
                        status.clone(),
                        progress.clone(),
                        stop.clone(),
                    );
                    match started {
                        Ok(_) => stores.push(MetaStore { store, status }),
                        Err(e) => {
                            // Its kind stays unknown to the GC: owners of it are never
                            // presumed gone.
                            tracing::error!("controllers: informer {} not started: {e}", r.kind);
                        }
                    }
                }
                let d = &shared.discovered;
                *d.stores.write().unwrap_or_else(|e| e.into_inner()) = stores;
                *d.resources.write().unwrap_or_else(|e| e.into_inner()) = resources;
                d.done.store(true, Ordering::Release);
                progress.notify();
                shared.queue.add(Key::Gc);
            });
        if let Err(e) = spawned {
            tracing::error!("controllers: discovery not started: {e}");
        }
    }

    fn start_informer<K: Object + Sync>(&mut self, store: Arc<Store<K>>, h: informer::Handler<K>) {
        let status = Arc::new(InformerStatus::default());
        self.statuses.push(status.clone());
        if let Err(e) = informer::spawn(
            self.cluster.clone(),
            store,
            h,
            status,
            self.progress.clone(),
            self.stop.clone(),
        ) {
            tracing::error!("controllers: informer {} not started: {e}", K::KIND);
        }
    }

    /// The caches (read-only use).
    pub fn caches(&self) -> &Caches {
        &self.shared.caches
    }

    /// Lists each informer has done (1 each once synced; more after relists), the garbage
    /// collector's metadata informers included.
    pub fn informer_lists(&self) -> u64 {
        let meta: u64 = self
            .shared
            .discovered
            .stores
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|m| m.status.lists())
            .sum();
        self.statuses.iter().map(|s| s.lists()).sum::<u64>() + meta
    }

    /// Block until every informer has its first list, the garbage collector's metadata
    /// informers (after discovery) included, or `timeout`; returns whether so.
    pub fn wait_for_sync(&self, timeout: StdDuration) -> bool {
        let d = &self.shared.discovered;
        self.progress.wait_until(timeout, &|| {
            self.stop.is_stopped() || (self.statuses.iter().all(|s| s.synced()) && d.ready())
        }) && !self.stop.is_stopped()
    }

    /// The typed informers (all but the garbage collector needs) have their first list.
    fn wait_for_typed_sync(&self, timeout: StdDuration) -> bool {
        self.progress.wait_until(timeout, &|| {
            self.stop.is_stopped() || self.statuses.iter().all(|s| s.synced())
        }) && !self.stop.is_stopped()
    }

    /// Tests and benchmarks: wait until the informers have seen everything written so far
    /// (if the cluster can tell), then process keys until none is due; repeat while work
    /// turned up. Returns what was done.
    pub fn sync(&mut self) -> Result<SyncReport, ClusterError> {
        let mut rep = SyncReport::default();
        let shared = self.shared.clone();
        let d = &shared.discovered;
        if !self.wait_for_sync(StdDuration::from_secs(30)) {
            return Err(ClusterError::Api("informers did not sync".into()));
        }
        for _ in 0..50 {
            if let Some(v) = self.cluster.latest_version() {
                let statuses = &self.statuses;
                self.progress.wait_until(StdDuration::from_secs(10), &|| {
                    statuses.iter().all(|s| s.seen() >= v) && d.min_seen().is_none_or(|s| s >= v)
                });
            }
            if self.drain(&mut rep) == 0 {
                break;
            }
        }
        Ok(rep)
    }

    /// Process every key due now; returns how many were processed.
    fn drain(&mut self, rep: &mut SyncReport) -> usize {
        let mut n = 0;
        let now = self.shared.clock.now();
        match self.next_resync {
            None => self.next_resync = Some(now + self.config.resync),
            Some(t) if now >= t => {
                self.shared.queue_all();
                self.next_resync = Some(now + self.config.resync);
            }
            Some(_) => {}
        }
        while let Some(k) = self.shared.queue.pop(self.shared.clock.now()) {
            if self.stop.is_stopped() {
                break;
            }
            self.process(k, rep);
            n += 1;
        }
        n
    }

    /// The worker loop: reconcile keys as they come until stopped. Sleeps on the queue (no
    /// polling) until a key is added or a delayed key is due.
    pub fn run(&mut self) {
        // The garbage collector waits for discovery on its own (see `sync_gc`): an API
        // server without discovery must not stop the other controllers.
        while !self.stop.is_stopped() && !self.wait_for_typed_sync(StdDuration::from_secs(3600)) {}
        while !self.stop.is_stopped() {
            let mut rep = SyncReport::default();
            self.drain(&mut rep);
            for (k, e) in &rep.errors {
                tracing::warn!("controllers: {k}: {e}");
            }
            let now = self.shared.clock.now();
            let mut until = self.next_resync.unwrap_or(now + self.config.resync);
            if let Some(d) = self.shared.queue.next_due() {
                until = until.min(d);
            }
            let wait = (until - now)
                .to_std()
                .unwrap_or(StdDuration::ZERO)
                .max(StdDuration::from_millis(1));
            self.shared.queue.wait(wait);
        }
    }

    /// Run [`Manager::run`] on a thread named `controller-manager`.
    pub fn spawn(mut self) -> std::io::Result<ManagerHandle> {
        let stop = self.stop.clone();
        let shared = self.shared.clone();
        let thread = std::thread::Builder::new()
            .name("controller-manager".into())
            .spawn(move || self.run())?;
        Ok(ManagerHandle {
            stop,
            thread: Some(thread),
            wake: Box::new(move || shared.queue.wake()),
        })
    }

    fn outcome(&mut self, key: Key, r: Result<usize, ClusterError>, rep: &mut SyncReport) {
        match r {
            Ok(n) => {
                rep.writes += n;
                self.shared.queue.forget(&key);
            }
            Err(e) => {
                self.shared
                    .queue
                    .add_rate_limited(key.clone(), self.shared.clock.now());
                rep.errors.push((key.to_string(), e));
            }
        }
    }

    fn process(&mut self, key: Key, rep: &mut SyncReport) {
        let r = match &key {
            Key::Deployment(k) => self.sync_deployment(k),
            Key::ReplicaSet(k) => self.sync_replica_set(k),
            Key::Service(k) => self.sync_service(k),
            Key::Nodes => self.sync_nodes(),
            Key::Scheduler => self.schedule(rep),
            Key::Gc => self.sync_gc(rep),
        };
        self.outcome(key, r, rep);
    }

    // ---- writes that keep the cache in step with what we wrote ----

    fn create<K: Object>(&self, obj: &K) -> Result<K, ClusterError> {
        let out = self.cluster.create(obj)?;
        if let Some(s) = self.shared.caches.store::<K>() {
            s.write_through(out.clone());
        }
        Ok(out)
    }

    fn update<K: Object>(&self, obj: &K) -> Result<K, ClusterError> {
        let out = self.cluster.update(obj)?;
        if let Some(s) = self.shared.caches.store::<K>() {
            s.write_through(out.clone());
        }
        Ok(out)
    }

    fn update_status<K: Object>(&self, obj: &K) -> Result<K, ClusterError> {
        let out = self.cluster.update_status(obj)?;
        if let Some(s) = self.shared.caches.store::<K>() {
            s.write_through(out.clone());
        }
        Ok(out)
    }

    /// Create an Event; best effort, as Kubernetes' event recorders (a lost event is logged,
    /// never retried: the change it reports is already made).
    fn record_event(&self, ev: Event) {
        if let Err(e) = self.create(&ev) {
            tracing::warn!(
                "controllers: event {} for {}: {e}",
                ev.reason.as_deref().unwrap_or(""),
                ev.involved_object.name.as_deref().unwrap_or("")
            );
        }
    }

    // ---- reconcilers ----

    fn sync_deployment(&mut self, k: &str) -> Result<usize, ClusterError> {
        let (ns, name) = k.split_once('/').unwrap_or(("", k));
        let c = &self.shared.caches;
        let Some(d) = c.deployments.get(ns, name) else {
            return Ok(0);
        };
        let d = (*d).clone();
        let rss = c.replica_sets.cloned_ns(ns);
        let pods = c.pods.list_ns(ns);
        let now = self.shared.clock.now();
        let out = deployment::reconcile(&d, &rss, &pods, now);
        let mut n = 0;
        for a in &out.actions {
            match a {
                deployment::RsAction::Create(rs) => {
                    match self.create(rs.as_ref()) {
                        Ok(_) => {}
                        // The cache had not shown it yet (the name is the template hash).
                        Err(ClusterError::AlreadyExists { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                deployment::RsAction::Update(rs) => match self.update(rs.as_ref()) {
                    // Deleted meanwhile (the cache has not seen it go yet).
                    Ok(_) | Err(ClusterError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                },
                deployment::RsAction::Delete(k) => {
                    ignore_not_found(self.cluster.delete::<ReplicaSet>(
                        &k.namespace,
                        &k.name,
                        Propagation::Background,
                    ))?
                }
            }
            n += 1;
        }
        let mut d2 = d.clone();
        let ann = d2.metadata.annotations.get_or_insert_with(BTreeMap::new);
        if let Some(rev) = &out.revision {
            if ann.get(deployment::REVISION) != Some(rev) {
                ann.insert(deployment::REVISION.into(), rev.clone());
                d2 = match self.update(&d2) {
                    Ok(d) => d,
                    // Deleted meanwhile: nothing left to write.
                    Err(ClusterError::NotFound { .. }) => return Ok(n),
                    Err(e) => return Err(e),
                };
                n += 1;
            }
        }
        if d2.status.as_ref() != Some(&out.status) {
            d2.status = Some(out.status.clone());
            match self.update_status(&d2) {
                Ok(_) => n += 1,
                Err(ClusterError::NotFound { .. }) => return Ok(n),
                Err(e) => return Err(e),
            }
        }
        // Look again when the progress deadline could pass, while a rollout is under way.
        let spec = d.spec.clone().unwrap_or_default();
        let complete = out.status.conditions.iter().flatten().any(|c| {
            c.type_ == "Progressing"
                && matches!(
                    c.reason.as_deref(),
                    Some(
                        "NewReplicaSetAvailable" | "ProgressDeadlineExceeded" | "DeploymentPaused"
                    )
                )
        });
        if !complete && d.metadata.deletion_timestamp.is_none() {
            let secs = spec.progress_deadline_seconds.unwrap_or(600) as i64 + 1;
            self.shared.queue.add_at(
                Key::Deployment(k.to_string()),
                now + Duration::seconds(secs),
            );
        }
        Ok(n)
    }

    fn sync_replica_set(&mut self, k: &str) -> Result<usize, ClusterError> {
        let (ns, name) = k.split_once('/').unwrap_or(("", k));
        let shared = self.shared.clone();
        let c = &shared.caches;
        let Some(rs) = c.replica_sets.get(ns, name) else {
            self.lock_exp().forget(k);
            return Ok(0);
        };
        let rs = (*rs).clone();
        self.resolve_unknown_creates(k, ns)?;
        let pods = c.pods.list_ns(ns);
        let now = self.shared.clock.now();
        let out = {
            let mut exp = self.lock_exp();
            replicaset::reconcile(&rs, &pods, &mut exp, now)
        };
        let mut n = 0;
        let mut err = None;
        for a in &out.actions {
            if self.stop.is_stopped() {
                // Shutting down mid-batch: the rest is left to the next manager.
                break;
            }
            let r = match a {
                PodAction::Create(p) => {
                    // The name is chosen here (not by generateName) so that a create whose
                    // outcome is unknown can be looked up later.
                    let mut p = (**p).clone();
                    let name = self.pod_name(p.metadata.generate_name.as_deref().unwrap_or(""));
                    p.metadata.name = Some(name.clone());
                    match self.cluster.create(&p) {
                        Ok(_) => Ok(()),
                        Err(e) => {
                            if e.not_applied() {
                                // Certainly not created: nothing for the watch to show.
                                self.lock_exp().creation_observed(k);
                            } else {
                                self.unknown_creates
                                    .entry(k.to_string())
                                    .or_default()
                                    .push(name);
                            }
                            Err(e)
                        }
                    }
                }
                PodAction::Delete(pk) => {
                    let r = self.cluster.delete::<Pod>(
                        &pk.namespace,
                        &pk.name,
                        Propagation::Background,
                    );
                    if r.as_ref().is_err_and(ClusterError::not_applied) {
                        // Already gone or refused: do not wait for the watch (as kube does).
                        self.lock_exp().pod_deletion_observed(k, &pk.to_string());
                    }
                    ignore_not_found(r)
                }
                PodAction::SetOwnerReferences {
                    pod,
                    owner_references,
                } => match c.pods.get(&pod.namespace, &pod.name) {
                    Some(p) => {
                        let mut p = (*p).clone();
                        p.metadata.owner_references = Some(owner_references.clone());
                        self.update(&p).map(|_| ())
                    }
                    None => Ok(()),
                },
            };
            match r {
                Ok(()) => n += 1,
                Err(e) => err = Some(e),
            }
        }
        if rs.status.as_ref() != Some(&out.status) {
            let mut rs2 = rs.clone();
            rs2.status = Some(out.status.clone());
            match self.update_status(&rs2) {
                Ok(_) => n += 1,
                // Deleted meanwhile (the cache has not seen it go yet): nothing to report.
                Err(ClusterError::NotFound { .. }) => {}
                Err(e) => err = Some(e),
            }
        }
        // Ready pods become available after minReadySeconds: look again then.
        let min_ready = rs
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        if min_ready > 0
            && out.status.ready_replicas.unwrap_or(0) > out.status.available_replicas.unwrap_or(0)
        {
            self.shared.queue.add_at(
                Key::ReplicaSet(k.to_string()),
                now + Duration::seconds(min_ready as i64) + Duration::milliseconds(100),
            );
        }
        match err {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    /// `<prefix><5 random characters>` as the API server's generateName would make.
    fn pod_name(&mut self, prefix: &str) -> String {
        use std::hash::{BuildHasher, Hasher};
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        self.name_seq += 1;
        let mut h = self.names.build_hasher();
        h.write_u64(self.name_seq);
        let mut n = h.finish();
        let suffix: String = (0..5)
            .map(|_| {
                let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
                n /= ALPHABET.len() as u64;
                c
            })
            .collect();
        format!("{prefix}{suffix}")
    }

    /// Creates of this ReplicaSet whose outcome was unknown: a pod that exists will be seen
    /// by the pod informer (which lowers the expectation); one that does not was never
    /// created, so its expectation is lowered now. Fails while the API server does not answer.
    fn resolve_unknown_creates(&mut self, k: &str, ns: &str) -> Result<(), ClusterError> {
        let Some(names) = self.unknown_creates.remove(k) else {
            return Ok(());
        };
        let mut left = Vec::new();
        let mut err = None;
        for name in names {
            if err.is_some() {
                left.push(name);
                continue;
            }
            match self.cluster.get::<Pod>(ns, &name) {
                Ok(Some(_)) => {}
                Ok(None) => self.lock_exp().creation_observed(k),
                Err(e) => {
                    left.push(name);
                    err = Some(e);
                }
            }
        }
        if !left.is_empty() {
            self.unknown_creates.insert(k.to_string(), left);
        }
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn lock_exp(&self) -> std::sync::MutexGuard<'_, Expectations> {
        self.shared
            .expectations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn sync_service(&mut self, k: &str) -> Result<usize, ClusterError> {
        let (ns, name) = k.split_once('/').unwrap_or(("", k));
        let c = &self.shared.caches;
        let existing = c.endpoints.get(ns, name);
        let slices = c.slices.cloned_ns(ns);
        let actions = match c.services.get(ns, name) {
            // The Service is gone: so are its Endpoints and EndpointSlices.
            None => endpoints::for_deleted_service(ns, name, existing.as_deref(), &slices),
            Some(s) if s.metadata.deletion_timestamp.is_some() => return Ok(0),
            Some(s) => {
                let pods = c.pods.list_ns(ns);
                endpoints::reconcile(&s, &pods, existing.as_deref(), &slices)
            }
        };
        for a in &actions {
            match a {
                endpoints::Action::CreateEndpoints(e) => {
                    self.create(e.as_ref())?;
                }
                endpoints::Action::UpdateEndpoints(e) => {
                    self.update(e.as_ref())?;
                }
                endpoints::Action::DeleteEndpoints(k) => {
                    ignore_not_found(self.cluster.delete::<Endpoints>(
                        &k.namespace,
                        &k.name,
                        Propagation::Background,
                    ))?
                }
                endpoints::Action::CreateSlice(e) => {
                    self.create(e.as_ref())?;
                }
                endpoints::Action::UpdateSlice(e) => {
                    self.update(e.as_ref())?;
                }
                endpoints::Action::DeleteSlice(k) => {
                    ignore_not_found(self.cluster.delete::<EndpointSlice>(
                        &k.namespace,
                        &k.name,
                        Propagation::Background,
                    ))?
                }
            }
        }
        Ok(actions.len())
    }

    fn sync_nodes(&mut self) -> Result<usize, ClusterError> {
        let c = &self.shared.caches;
        let now = self.shared.clock.now();
        let nodes = c.nodes.cloned();
        let leases = c.leases.cloned_ns(nodelifecycle::LEASE_NAMESPACE);
        let pods = c.pods.list();
        let out = nodelifecycle::reconcile(&nodes, &leases, &pods, &self.config.node, now);
        if let Some(t) = out.next_check {
            self.shared.queue.add_at(Key::Nodes, t);
        }
        let mut n = 0;
        let mut err = None;
        for a in out.actions {
            let r = match a {
                NodeAction::SetConditions { node, conditions } => match c.nodes.get("", &node) {
                    Some(nd) => {
                        let mut nd = (*nd).clone();
                        nd.status.get_or_insert_with(Default::default).conditions =
                            Some(conditions);
                        self.update_status(&nd).map(|_| 1)
                    }
                    None => Ok(0),
                },
                NodeAction::SetTaints { node, taints } => match c.nodes.get("", &node) {
                    Some(nd) => {
                        let mut nd = (*nd).clone();
                        nd.spec.get_or_insert_with(Default::default).taints = Some(taints);
                        self.update(&nd).map(|_| 1)
                    }
                    None => Ok(0),
                },
                NodeAction::EvictPod { pod, reason, .. } => {
                    // Looked up first: the watch may drop the deleted pod from the cache
                    // before the event is written.
                    let cached = c.pods.get(&pod.namespace, &pod.name);
                    match self.cluster.delete::<Pod>(
                        &pod.namespace,
                        &pod.name,
                        Propagation::Background,
                    ) {
                        Ok(()) => {
                            if let Some(p) = cached {
                                let msg = format!("Marking for deletion Pod {pod}: {reason}");
                                self.record_event(pod_event(
                                    &p,
                                    "Normal",
                                    "TaintManagerEviction",
                                    &msg,
                                    "taint-eviction-controller",
                                    now,
                                ));
                            }
                            Ok(2)
                        }
                        Err(ClusterError::NotFound { .. }) => Ok(0),
                        Err(e) => Err(e),
                    }
                }
            };
            match r {
                Ok(k) => n += k,
                Err(e) => err = Some(e),
            }
        }
        match err {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    fn schedule(&mut self, rep: &mut SyncReport) -> Result<usize, ClusterError> {
        let c = &self.shared.caches;
        let now = self.shared.clock.now();
        let nodes = c.nodes.cloned();
        let assumed = self
            .shared
            .assumed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut pods = c.pods.list();
        // Pods we bound that the cache does not show bound yet count as placed.
        let mut pending_idx = Vec::new();
        for (i, p) in pods.iter_mut().enumerate() {
            if !pod_active(p) || bound_node(p).is_some() {
                continue;
            }
            match assumed.get(&key_of(&p.metadata)) {
                Some(node) => {
                    let mut placed = (**p).clone();
                    if let Some(s) = placed.spec.as_mut() {
                        s.node_name = Some(node.clone());
                    }
                    *p = Arc::new(placed);
                }
                None => {
                    if p.spec.is_some() {
                        pending_idx.push(i);
                    }
                }
            }
        }
        if pending_idx.is_empty() {
            self.shared.unschedulable.store(0, Ordering::Release);
            return Ok(0);
        }
        pending_idx.sort_by_key(|&i| pods[i].metadata.creation_timestamp.as_ref().map(|t| t.0));
        let mut sched = Scheduler::with_pods(&nodes, &pods);
        let mut writes = 0;
        let mut unschedulable = 0;
        let mut err = None;
        let mut live = HashSet::new();
        for i in pending_idx {
            let p: &Pod = &pods[i];
            let pk = ObjectKey::of(&p.metadata);
            let key = pk.to_string();
            live.insert(key.clone());
            match sched.schedule(p) {
                Decision::Bind { node } => {
                    match self.cluster.bind_pod(&pk.namespace, &pk.name, &node) {
                        Ok(()) => {
                            rep.bound += 1;
                            writes += 2;
                            let msg = format!("Successfully assigned {key} to {node}");
                            self.record_event(pod_event(
                                p,
                                "Normal",
                                "Scheduled",
                                &msg,
                                "default-scheduler",
                                now,
                            ));
                            self.sched_messages.remove(&key);
                            self.shared
                                .assumed
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(key, node);
                        }
                        // Deleted meanwhile: nothing to place.
                        Err(ClusterError::NotFound { .. }) => sched.remove_pod(&node, p),
                        Err(e) => {
                            sched.remove_pod(&node, p);
                            err = Some(e);
                        }
                    }
                }
                Decision::Unschedulable { message } => {
                    unschedulable += 1;
                    if self.sched_messages.get(&key) == Some(&message) {
                        continue;
                    }
                    match record_unschedulable(self.cluster.as_ref(), p, &message, now) {
                        Ok(updated) => {
                            c.pods.write_through(updated);
                            writes += 2;
                            self.sched_messages.insert(key, message);
                        }
                        Err(e) => err = Some(e),
                    }
                }
            }
        }
        self.sched_messages.retain(|k, _| live.contains(k));
        self.shared
            .unschedulable
            .store(unschedulable, Ordering::Release);
        match err {
            Some(e) => Err(e),
            None => Ok(writes),
        }
    }

    fn sync_gc(&mut self, rep: &mut SyncReport) -> Result<usize, ClusterError> {
        let d = &self.shared.discovered;
        if !d.ready() {
            // Not every kind is known yet: an owner of a kind not listed yet must not be
            // presumed gone. Look again shortly.
            self.shared.queue.add_at(
                Key::Gc,
                self.shared.clock.now() + Duration::milliseconds(200),
            );
            return Ok(0);
        }
        let c = &self.shared.caches;
        let mut objs = Vec::new();
        fn collect<K: Object + Sync>(s: &Store<K>, out: &mut Vec<ObjInfo>) {
            for o in s.list() {
                out.push(ObjInfo::from_meta(K::API_VERSION, K::KIND, o.metadata()));
            }
        }
        collect(&c.deployments, &mut objs);
        collect(&c.replica_sets, &mut objs);
        collect(&c.pods, &mut objs);
        collect(&c.services, &mut objs);
        collect(&c.endpoints, &mut objs);
        collect(&c.slices, &mut objs);
        collect(&c.events, &mut objs);
        collect(&c.leases, &mut objs);
        collect(&c.nodes, &mut objs);
        collect(&c.namespaces, &mut objs);
        for m in d.stores.read().unwrap_or_else(|e| e.into_inner()).iter() {
            for o in m.store.list() {
                objs.push(ObjInfo::from_meta(&o.api_version, &o.kind, &o.metadata));
            }
        }
        let mut resources = typed_resources();
        resources.extend(
            d.resources
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
        let known: HashSet<String> = resources.iter().map(|r| r.kind.clone()).collect();
        let resource_of = |obj: &gc::ObjRef| -> Result<&ApiResource, ClusterError> {
            resources
                .iter()
                .find(|r| r.api_version() == obj.api_version && r.kind == obj.kind)
                .ok_or_else(|| {
                    ClusterError::Api(format!(
                        "garbage collector: unsupported kind {}/{}",
                        obj.api_version, obj.kind
                    ))
                })
        };
        let namespaces = c.namespaces.cloned();
        let mut n = 0;
        let mut err = None;
        let cl = self.cluster.as_ref();
        let by_uid: HashMap<&str, &ObjInfo> =
            objs.iter().map(|o| (o.obj.uid.as_str(), o)).collect();
        let terminating: HashSet<&str> = namespaces
            .iter()
            .filter(|ns| ns.metadata.deletion_timestamp.is_some())
            .filter_map(|ns| ns.metadata.name.as_deref())
            .collect();
        // Owners presumed gone (no cached object has their uid) are looked up before a
        // dependent is deleted or loses its reference, as Kubernetes' GC does: a watch that
        // lags (the owner's informer behind the dependent's) must not delete anything.
        let mut verified: HashMap<String, bool> = HashMap::new();
        let mut lagging = false;
        for a in gc::reconcile(&objs, &namespaces, &known) {
            let subject = match &a {
                GcAction::Delete { obj, .. } | GcAction::SetOwnerReferences { obj, .. } => {
                    Some(obj)
                }
                _ => None,
            };
            if let Some(obj) = subject.filter(|o| {
                !o.namespace
                    .as_deref()
                    .is_some_and(|ns| terminating.contains(ns))
            }) {
                let refs = by_uid
                    .get(obj.uid.as_str())
                    .map(|o| o.owner_references.as_slice())
                    .unwrap_or(&[]);
                let mut alive = false;
                for r in refs.iter().filter(|r| !by_uid.contains_key(r.uid.as_str())) {
                    let exists = match verified.get(&r.uid) {
                        Some(&e) => e,
                        None => {
                            let owner = gc::ObjRef {
                                api_version: r.api_version.clone(),
                                kind: r.kind.clone(),
                                namespace: obj.namespace.clone(),
                                name: r.name.clone(),
                                uid: r.uid.clone(),
                            };
                            let e = match resource_of(&owner) {
                                // A kind we do not serve: never presumed gone by gc::reconcile.
                                Err(_) => true,
                                Ok(res) => cl
                                    .get_meta_dynamic(
                                        res,
                                        obj.namespace.as_deref().unwrap_or(""),
                                        &r.name,
                                    )?
                                    .is_some_and(|m| m.uid.as_deref() == Some(r.uid.as_str())),
                            };
                            verified.insert(r.uid.clone(), e);
                            e
                        }
                    };
                    alive |= exists;
                }
                if alive {
                    lagging = true;
                    continue;
                }
            }
            let (what, r) = match a {
                GcAction::Delete { obj, propagation } => (
                    format!("{}/{}", obj.kind, obj.name),
                    resource_of(&obj).and_then(|r| {
                        ignore_not_found(cl.delete_dynamic(
                            r,
                            obj.namespace.as_deref().unwrap_or(""),
                            &obj.name,
                            propagation,
                        ))
                        .map(|_| 1)
                    }),
                ),
                GcAction::SetOwnerReferences {
                    obj,
                    owner_references,
                } => (
                    format!("{}/{}", obj.kind, obj.name),
                    resource_of(&obj).and_then(|r| {
                        cl.update_meta_dynamic(
                            r,
                            obj.namespace.as_deref().unwrap_or(""),
                            &obj.name,
                            &|m| m.owner_references = Some(owner_references.clone()),
                        )
                        .map(|v| c.write_through_json(&obj.kind, v))
                    }),
                ),
                GcAction::RemoveFinalizer { obj, finalizer } => (
                    format!("{}/{}", obj.kind, obj.name),
                    resource_of(&obj).and_then(|r| {
                        cl.update_meta_dynamic(
                            r,
                            obj.namespace.as_deref().unwrap_or(""),
                            &obj.name,
                            &|m| {
                                if let Some(f) = m.finalizers.as_mut() {
                                    f.retain(|x| *x != finalizer)
                                }
                            },
                        )
                        .map(|v| c.write_through_json(&obj.kind, v))
                    }),
                ),
                GcAction::FinalizeNamespace { name } => (
                    format!("Namespace/{name}"),
                    cl.get::<Namespace>("", &name).and_then(|ns| match ns {
                        Some(mut ns) => {
                            if let Some(f) = ns.spec.as_mut().and_then(|s| s.finalizers.as_mut()) {
                                f.retain(|x| x != gc::NAMESPACE_FINALIZER);
                            }
                            cl.update(&clear_rv(ns.clone()))?;
                            ignore_not_found(cl.delete::<Namespace>(
                                "",
                                &name,
                                Propagation::Background,
                            ))
                            .map(|_| 1)
                        }
                        None => Ok(0),
                    }),
                ),
            };
            match r {
                Ok(k) => n += k,
                Err(e) => {
                    rep.errors.push((format!("gc/{what}"), e.clone()));
                    err = Some(e);
                }
            }
        }
        if lagging {
            // The cache has not caught up with an owner yet: look again once it has.
            self.shared
                .queue
                .add_at(Key::Gc, self.shared.clock.now() + Duration::seconds(1));
        }
        match err {
            // Already reported per object; the key is retried with backoff.
            Some(e) => {
                rep.errors.pop();
                Err(e)
            }
            None => Ok(n),
        }
    }
}

impl Shared {
    /// A renewal of a Ready node's lease changes nothing now: node lifecycle already has a
    /// delayed look at that node's lease expiry (and then sees the renewal). New, deleted
    /// and not-Ready nodes' leases are looked at at once.
    fn on_lease(&self, old: Option<&Lease>, new: Option<&Lease>) {
        let (Some(_), Some(l)) = (old, new) else {
            self.queue.add(Key::Nodes);
            return;
        };
        let node = l.metadata.name.as_deref().unwrap_or("");
        if self
            .caches
            .nodes
            .get("", node)
            .is_none_or(|n| !node_ready(&n))
        {
            self.queue.add(Key::Nodes);
        }
    }
}
