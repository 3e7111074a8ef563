//! Informers: one list + watch per kind into an in-memory [`Store`], on its own thread.
//!
//! [`spawn`] lists the kind (the cache is replaced and every difference is handed to the
//! handler as `(old, new)`), then watches from the list's resourceVersion, applying each event
//! and calling the handler. A watch that ends resumes from the last event or bookmark; a 410
//! (the version was compacted) or an ERROR event relists; request failures retry with backoff
//! (100 ms doubling to 30 s). [`InformerStatus`] says whether the first list is in and how
//! far the watch has seen. The manager's own writes can be put in the store early with
//! [`Store::write_through`] (a newer resourceVersion always wins, deleted keys stay deleted).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration as StdDuration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::cluster::{
    ApiResource, ClusterError, MetaObject, Object, StopSignal, WatchCluster, WatchEvent,
};

/// What a [`Store`] holds: any object with metadata (a typed k8s-openapi object, or a
/// [`MetaObject`] of a metadata informer).
pub trait Cached: Clone + Send + 'static {
    fn meta(&self) -> &ObjectMeta;
}

impl<T: Object> Cached for T {
    fn meta(&self) -> &ObjectMeta {
        self.metadata()
    }
}

impl Cached for MetaObject {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
}

/// `namespace/name` (cluster-scoped: `/name`).
pub fn store_key(m: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        m.namespace.as_deref().unwrap_or(""),
        m.name.as_deref().unwrap_or("")
    )
}

fn rv_of(m: &ObjectMeta) -> Option<u64> {
    m.resource_version.as_deref().and_then(|v| v.parse().ok())
}

/// Keys deleted recently, so a late write-through cannot bring an object back.
const TOMBSTONES: usize = 20_000;

struct Inner<K> {
    items: BTreeMap<String, Arc<K>>,
    tombstones: HashMap<String, u64>,
}

/// The cache of one kind, keyed `namespace/name`.
pub struct Store<K> {
    inner: RwLock<Inner<K>>,
}

impl<K> Default for Store<K> {
    fn default() -> Self {
        Store {
            inner: RwLock::new(Inner {
                items: BTreeMap::new(),
                tombstones: HashMap::new(),
            }),
        }
    }
}

/// A change: (old, new); None = absent.
type Diff<K> = (Option<Arc<K>>, Option<Arc<K>>);

impl<K: Cached> Store<K> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner<K>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner<K>> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.read()
            .items
            .get(&format!("{namespace}/{name}"))
            .cloned()
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().items.values().cloned().collect()
    }

    /// The objects of one namespace ("" = cluster-scoped objects).
    pub fn list_ns(&self, namespace: &str) -> Vec<Arc<K>> {
        let prefix = format!("{namespace}/");
        self.read()
            .items
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Owned copies of one namespace's objects (what the pure reconcilers take).
    pub fn cloned_ns(&self, namespace: &str) -> Vec<K> {
        self.list_ns(namespace)
            .iter()
            .map(|o| (**o).clone())
            .collect()
    }

    pub fn cloned(&self) -> Vec<K> {
        self.list().iter().map(|o| (**o).clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.read().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A watch event's object; keeps the newer of cached and seen. Returns (old, stored).
    fn apply(&self, obj: K) -> (Option<Arc<K>>, Arc<K>) {
        let key = store_key(obj.meta());
        let mut g = self.write();
        g.tombstones.remove(&key);
        let old = g.items.get(&key).cloned();
        let newer = match (
            old.as_ref().and_then(|o| rv_of(o.meta())),
            rv_of(obj.meta()),
        ) {
            (Some(a), Some(b)) => b >= a,
            _ => true,
        };
        if newer {
            let new = Arc::new(obj);
            g.items.insert(key, new.clone());
            (old, new)
        } else {
            let kept = old.clone().unwrap_or_else(|| Arc::new(obj));
            (old, kept)
        }
    }

    fn remove(&self, obj: &K) -> Option<Arc<K>> {
        let key = store_key(obj.meta());
        let mut g = self.write();
        if g.tombstones.len() >= TOMBSTONES {
            g.tombstones.clear();
        }
        g.tombstones
            .insert(key.clone(), rv_of(obj.meta()).unwrap_or(u64::MAX));
        g.items.remove(&key)
    }

    /// The result of the manager's own create/update: cached now unless the cache already
    /// has a newer version or saw the object deleted since.
    pub fn write_through(&self, obj: K) {
        let key = store_key(obj.meta());
        let rv = rv_of(obj.meta());
        let mut g = self.write();
        if let (Some(&dead), Some(rv)) = (g.tombstones.get(&key), rv) {
            if dead >= rv {
                return;
            }
        }
        let newer = match (g.items.get(&key).and_then(|o| rv_of(o.meta())), rv) {
            (Some(a), Some(b)) => b > a,
            (None, _) => true,
            _ => false,
        };
        if newer {
            g.items.insert(key, Arc::new(obj));
        }
    }

    /// A fresh list: replace everything; returns what changed as (old, new) pairs.
    fn replace(&self, items: Vec<K>) -> Vec<Diff<K>> {
        let mut g = self.write();
        let mut next: BTreeMap<String, Arc<K>> = BTreeMap::new();
        for o in items {
            next.insert(store_key(o.meta()), Arc::new(o));
        }
        let mut changes = Vec::new();
        for (k, old) in &g.items {
            if !next.contains_key(k) {
                changes.push((Some(old.clone()), None));
            }
        }
        for (k, new) in &next {
            let old = g.items.get(k).cloned();
            let same = old
                .as_ref()
                .is_some_and(|o| o.meta().resource_version == new.meta().resource_version);
            if !same {
                changes.push((old, Some(new.clone())));
            }
        }
        g.items = next;
        g.tombstones.clear();
        changes
    }
}

/// How far one informer is.
#[derive(Default)]
pub struct InformerStatus {
    synced: AtomicBool,
    seen: AtomicU64,
    lists: AtomicU64,
}

impl InformerStatus {
    /// The first list is in the store.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }
    /// The latest resourceVersion applied (event, bookmark or list).
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Acquire)
    }
    /// Lists done (1 + relists).
    pub fn lists(&self) -> u64 {
        self.lists.load(Ordering::Acquire)
    }
}

/// Signalled whenever an informer makes progress (list done, bookmark).
#[derive(Default)]
pub struct Progress {
    m: Mutex<()>,
    cv: Condvar,
}

impl Progress {
    pub fn notify(&self) {
        let _g = self.m.lock().unwrap_or_else(|e| e.into_inner());
        self.cv.notify_all();
    }
    /// Wait until `done()` or `timeout` (real time); returns `done()`.
    pub fn wait_until(&self, timeout: StdDuration, done: &dyn Fn() -> bool) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut g = self.m.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if done() {
                return true;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            let slice = (deadline - now).min(StdDuration::from_millis(20));
            g = self
                .cv
                .wait_timeout(g, slice)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// What an informer calls per change, on its thread.
pub type Handler<K> = Arc<dyn Fn(Option<&K>, Option<&K>) + Send + Sync>;

fn sleep_unless_stopped(stop: &StopSignal, d: StdDuration) {
    let end = std::time::Instant::now() + d;
    while !stop.is_stopped() {
        let now = std::time::Instant::now();
        if now >= end {
            return;
        }
        std::thread::sleep((end - now).min(StdDuration::from_millis(50)));
    }
}

/// Where an informer lists and watches from.
trait Source<K>: Send + 'static {
    fn list(&self) -> Result<(Vec<K>, String), ClusterError>;
    fn watch(
        &self,
        resource_version: &str,
        stop: &StopSignal,
        on_event: &mut dyn FnMut(WatchEvent<K>) -> bool,
    ) -> Result<(), ClusterError>;
}

/// A typed kind.
struct Typed<C>(Arc<C>);

impl<K: Object + Sync, C: WatchCluster + 'static> Source<K> for Typed<C> {
    fn list(&self) -> Result<(Vec<K>, String), ClusterError> {
        self.0.list_versioned::<K>()
    }
    fn watch(
        &self,
        resource_version: &str,
        stop: &StopSignal,
        on_event: &mut dyn FnMut(WatchEvent<K>) -> bool,
    ) -> Result<(), ClusterError> {
        self.0.watch::<K>(resource_version, stop, on_event)
    }
}

/// Any resource, metadata only.
struct Meta<C>(Arc<C>, ApiResource);

impl<C: WatchCluster + 'static> Source<MetaObject> for Meta<C> {
    fn list(&self) -> Result<(Vec<MetaObject>, String), ClusterError> {
        self.0.list_meta(&self.1)
    }
    fn watch(
        &self,
        resource_version: &str,
        stop: &StopSignal,
        on_event: &mut dyn FnMut(WatchEvent<MetaObject>) -> bool,
    ) -> Result<(), ClusterError> {
        self.0.watch_meta(&self.1, resource_version, stop, on_event)
    }
}

/// Start the informer for `K`: a thread named `informer-<Kind>` that runs until `stop`.
pub fn spawn<K: Object + Sync, C: WatchCluster + 'static>(
    cluster: Arc<C>,
    store: Arc<Store<K>>,
    handler: Handler<K>,
    status: Arc<InformerStatus>,
    progress: Arc<Progress>,
    stop: StopSignal,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let source = Typed(cluster);
    std::thread::Builder::new()
        .name(format!("informer-{}", K::KIND))
        .spawn(move || run(&source, K::KIND, store, handler, status, progress, stop))
}

/// Start a metadata-only informer for any resource: a thread named `informer-<Kind>`.
pub fn spawn_meta<C: WatchCluster + 'static>(
    cluster: Arc<C>,
    resource: ApiResource,
    store: Arc<Store<MetaObject>>,
    handler: Handler<MetaObject>,
    status: Arc<InformerStatus>,
    progress: Arc<Progress>,
    stop: StopSignal,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let kind = resource.kind.clone();
    let source = Meta(cluster, resource);
    std::thread::Builder::new()
        .name(format!("informer-{kind}"))
        .spawn(move || run(&source, &kind, store, handler, status, progress, stop))
}

fn run<K: Cached, S: Source<K>>(
    source: &S,
    kind: &str,
    store: Arc<Store<K>>,
    handler: Handler<K>,
    status: Arc<InformerStatus>,
    progress: Arc<Progress>,
    stop: StopSignal,
) {
    let mut backoff = StdDuration::from_millis(100);
    let max_backoff = StdDuration::from_secs(30);
    let fail = |what: &str, e: &dyn std::fmt::Display, backoff: &mut StdDuration| {
        tracing::warn!("informer {kind}: {what}: {e}");
        sleep_unless_stopped(&stop, *backoff);
        *backoff = (*backoff * 2).min(max_backoff);
    };
    'relist: while !stop.is_stopped() {
        let (items, mut rv) = match source.list() {
            Ok(x) => x,
            Err(e) => {
                fail("list", &e, &mut backoff);
                continue;
            }
        };
        status.lists.fetch_add(1, Ordering::AcqRel);
        for (old, new) in store.replace(items) {
            handler(old.as_deref(), new.as_deref());
        }
        if let Ok(v) = rv.parse() {
            status.seen.store(v, Ordering::Release);
        }
        status.synced.store(true, Ordering::Release);
        progress.notify();
        loop {
            if stop.is_stopped() {
                return;
            }
            let mut relist = false;
            let mut got_event = false;
            let from = rv.clone();
            let r = source.watch(&from, &stop, &mut |ev| {
                got_event = true;
                let seen = match ev {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                        let v = o.meta().resource_version.clone();
                        let (old, new) = store.apply(o);
                        handler(old.as_deref(), Some(&new));
                        v
                    }
                    WatchEvent::Deleted(o) => {
                        let v = o.meta().resource_version.clone();
                        let old = store.remove(&o);
                        handler(Some(old.as_deref().unwrap_or(&o)), None);
                        v
                    }
                    WatchEvent::Bookmark(v) => {
                        if let Ok(n) = v.parse() {
                            status.seen.store(n, Ordering::Release);
                        }
                        rv = v;
                        progress.notify();
                        return true;
                    }
                    WatchEvent::Error(msg) => {
                        tracing::info!("informer {kind}: watch ended: {msg}; relisting");
                        relist = true;
                        return false;
                    }
                };
                if let Some(v) = seen {
                    if let Ok(n) = v.parse() {
                        status.seen.store(n, Ordering::Release);
                    }
                    rv = v;
                }
                true
            });
            if relist {
                continue 'relist;
            }
            match r {
                Ok(()) if got_event => backoff = StdDuration::from_millis(100),
                Ok(()) => {
                    // Ended without a single event: do not spin on a server that closes at once.
                    sleep_unless_stopped(&stop, backoff);
                    backoff = (backoff * 2).min(max_backoff);
                }
                Err(e) => fail("watch", &e, &mut backoff),
            }
        }
    }
}
