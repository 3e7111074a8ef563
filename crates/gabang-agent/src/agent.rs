//! The agent loop: register the Node, renew its Lease, follow the Pods bound to this node,
//! run one worker per pod over [`crate::pods::PodRuntime`], write pod status back, finish
//! deletions (graceful stop → final delete), adopt what a previous agent run left and clean
//! orphans, and serve the logs/exec endpoint ([`crate::server`]).
//!
//! Threads (all blocking, each with its own API client):
//! - the *watcher*: lists the pods with `spec.nodeName=<node>`, then watches them; each change
//!   updates the pod table and queues the pod's uid. At start it also asks the backend which
//!   pods are on this host: those the API does not know are orphans and are terminated, the
//!   others are adopted by their next sync (nothing is restarted).
//! - the *ticker*: queues pods whose periodic or requested (`requeue_after`) sync is due.
//! - the *heartbeat*: renews the Lease every 10 s and refreshes the Node status.
//! - `workers` *sync workers* sharing one queue (a uid is never synced by two workers at
//!   once; a change that arrives meanwhile queues it again once the worker is done).
//! - the *event sender* ([`crate::events`]): writes the pods' Events from a bounded queue at
//!   a low CPU priority, so a sync never waits for them.
//! - one short-lived thread per terminating pod (a grace period may last 30 s and must not hold
//!   a sync worker): `terminate`, then the final delete.
//!
//! [`PodBackend`] is what the loop needs from the pod runtime, so tests drive the loop with a
//! fake against a real API server.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gabang_controllers::cluster::{Cluster, ClusterError};
use gabang_controllers::http::{HttpCluster, WatchEvent};
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, EventSource, Node, ObjectReference, Pod, PodStatus, Secret,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::chrono::Utc;

use crate::events::Recorder;
use crate::node::{self, HostFacts, NodeConfig};
use crate::pods::{LocalPod, PodRuntime, SyncOutcome};
use crate::podspec::RefSource;
use crate::{AgentError, Result};

/// What the loop needs from the pod runtime (implemented by [`PodRuntime`]; tests use a fake).
pub trait PodBackend: Send + Sync + 'static {
    fn sync(&self, pod: &Pod, refs: &dyn RefSource) -> Result<SyncOutcome>;
    fn terminate(&self, uid: &str, grace: Duration) -> Result<()>;
    fn local_pods(&self) -> Result<Vec<LocalPod>>;
}

impl PodBackend for PodRuntime {
    fn sync(&self, pod: &Pod, refs: &dyn RefSource) -> Result<SyncOutcome> {
        PodRuntime::sync(self, pod, refs)
    }
    fn terminate(&self, uid: &str, grace: Duration) -> Result<()> {
        PodRuntime::terminate(self, uid, grace)
    }
    fn local_pods(&self) -> Result<Vec<LocalPod>> {
        PodRuntime::local_pods(self)
    }
}

/// How to reach the API server.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub addr: SocketAddr,
    pub ca_pem: String,
    pub token: String,
    /// The API server's local socket, when the agent runs in the server's process
    /// (`gabang up`): requests go there as plain HTTP instead of over TCP + TLS to `addr`.
    pub local: Option<std::path::PathBuf>,
}

impl ApiConfig {
    /// A new blocking client (one per thread: each has its own small runtime).
    pub fn connect(&self) -> Result<HttpCluster> {
        let c = HttpCluster::new(self.addr, &self.ca_pem, &self.token)?;
        Ok(match &self.local {
            Some(p) => c.via_local_socket(p.clone()),
            None => c,
        })
    }
}

/// ConfigMaps and Secrets read from the API server.
pub struct ApiRefs<'a, C: Cluster>(pub &'a C);

impl<C: Cluster> RefSource for ApiRefs<'_, C> {
    fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> std::result::Result<Option<ConfigMap>, String> {
        self.0.get(namespace, name).map_err(|e| e.to_string())
    }
    fn secret(&self, namespace: &str, name: &str) -> std::result::Result<Option<Secret>, String> {
        self.0.get(namespace, name).map_err(|e| e.to_string())
    }
}

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node: NodeConfig,
    /// Sync workers (pods synced at once).
    pub workers: usize,
    /// Every pod is synced at least this often.
    pub resync: Duration,
    /// Lease renewal period.
    pub lease_every: Duration,
    /// Node status refresh period.
    pub status_every: Duration,
    /// Grace for pods found on the host that the API does not know.
    pub orphan_grace: Duration,
    /// How long one watch request lasts before it is renewed.
    pub watch_timeout_secs: u64,
}

impl AgentConfig {
    pub fn new(node: NodeConfig) -> Self {
        AgentConfig {
            node,
            workers: 4,
            resync: Duration::from_secs(5),
            lease_every: Duration::from_secs(10),
            status_every: Duration::from_secs(60),
            orphan_grace: Duration::from_secs(30),
            watch_timeout_secs: 60,
        }
    }
}

/// How soon a pod whose status just changed is synced again.
const FOLLOW_UP: Duration = Duration::from_millis(250);

/// Kubernetes' default terminationGracePeriodSeconds.
const DEFAULT_GRACE: Duration = Duration::from_secs(30);

/// The node's pod CIDR, asked of the API server before the pod runtime is made: `requested`,
/// else the Node's existing range, else the lowest free /24 of 10.42.0.0/16.
pub fn resolve_pod_cidr(
    api: &ApiConfig,
    node_name: &str,
    requested: Option<&str>,
) -> Result<(Ipv4Addr, u8)> {
    if let Some(r) = requested {
        return node::parse_cidr(r);
    }
    let c = api.connect()?;
    let nodes: Vec<Node> = c.list()?;
    node::choose_pod_cidr(node_name, None, &nodes)
}

/// One pod the agent follows, keyed by uid.
struct Entry {
    /// The latest object from the API; `None` once it is gone from the API (or was never
    /// there: an orphan found on the host).
    pod: Option<Pod>,
    /// The status we last wrote.
    reported: Option<PodStatus>,
    /// When the next sync is due even without a change.
    next_sync: Instant,
    /// A terminate thread runs for it.
    terminating: bool,
    /// Grace to use when it disappears from the API.
    grace: Duration,
}

#[derive(Default)]
struct State {
    pods: HashMap<String, Entry>,
    queue: VecDeque<String>,
    queued: HashSet<String>,
    active: HashSet<String>,
    dirty: HashSet<String>,
}

impl State {
    /// Queues a pod whose own follow-up sync is due ahead of the rest: such a step is
    /// usually cheap (a container just started becomes Ready), and a burst of new pods must
    /// not hold it back.
    fn enqueue_front(&mut self, uid: &str) {
        if self.active.contains(uid) {
            self.dirty.insert(uid.to_string());
            return;
        }
        if !self.queued.insert(uid.to_string()) {
            self.queue.retain(|u| u != uid);
        }
        self.queue.push_front(uid.to_string());
    }

    fn enqueue(&mut self, uid: &str) {
        if self.active.contains(uid) {
            self.dirty.insert(uid.to_string());
        } else if self.queued.insert(uid.to_string()) {
            self.queue.push_back(uid.to_string());
        }
    }
}

struct Shared {
    cfg: AgentConfig,
    api: ApiConfig,
    host: HostFacts,
    backend: Arc<dyn PodBackend>,
    stop: Arc<AtomicBool>,
    state: Mutex<State>,
    cv: Condvar,
    /// Pod events, written by their own low-priority thread ([`crate::events`]).
    events: Recorder,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
    /// Sleeps up to `d`, waking early when stopped.
    fn sleep(&self, d: Duration) {
        let deadline = Instant::now() + d;
        while !self.stopped() {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(100)));
        }
    }
    /// A client, retried until it can be made or the agent stops.
    fn client(&self) -> Option<HttpCluster> {
        loop {
            match self.api.connect() {
                Ok(c) => return Some(c),
                Err(e) => {
                    tracing::warn!("agent: API client: {e}");
                    self.sleep(Duration::from_secs(1));
                    if self.stopped() {
                        return None;
                    }
                }
            }
        }
    }
}

/// A running agent; [`AgentHandle::stop`] ends its loops (pods keep running).
pub struct AgentHandle {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl AgentHandle {
    pub fn node_name(&self) -> &str {
        &self.shared.cfg.node.name
    }

    /// Stops the loops and waits for the workers, ticker and heartbeat. The watcher and any
    /// terminate threads finish on their own (the watch request times out).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.cv.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for AgentHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Registers the Node, renews its Lease once, and starts the loop.
pub fn start(
    api: ApiConfig,
    cfg: AgentConfig,
    backend: Arc<dyn PodBackend>,
) -> Result<AgentHandle> {
    let host = HostFacts::probe();
    let client = api.connect()?;
    node::register(&client, &cfg.node, &host)?;
    node::renew_lease(&client, &cfg.node.name)?;
    // The events thread reuses the registration's client and follows the agent's stop flag.
    let stop = Arc::new(AtomicBool::new(false));
    let (events, events_thread) = {
        let stop = stop.clone();
        Recorder::start(client, move || stop.load(Ordering::SeqCst))
            .map_err(|e| AgentError::Other(format!("spawning agent-events: {e}")))?
    };
    let shared = Arc::new(Shared {
        cfg,
        api,
        host,
        backend,
        stop,
        state: Mutex::new(State::default()),
        cv: Condvar::new(),
        events,
    });
    let mut threads = vec![events_thread];
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .map_err(|e| AgentError::Other(format!("spawning {name}: {e}")))
    };
    {
        let s = shared.clone();
        // Not joined on stop: it is blocked in a watch request until that times out.
        spawn("agent-watch", Box::new(move || watch_loop(&s)))?;
    }
    {
        let s = shared.clone();
        threads.push(spawn("agent-tick", Box::new(move || tick_loop(&s)))?);
    }
    {
        let s = shared.clone();
        threads.push(spawn(
            "agent-heartbeat",
            Box::new(move || heartbeat_loop(&s)),
        )?);
    }
    for i in 0..shared.cfg.workers.max(1) {
        let s = shared.clone();
        threads.push(spawn(
            &format!("agent-sync-{i}"),
            Box::new(move || worker_loop(&s)),
        )?);
    }
    Ok(AgentHandle { shared, threads })
}

fn uid_of(p: &Pod) -> Option<String> {
    p.metadata.uid.clone()
}

fn grace_of(p: &Pod) -> Duration {
    let secs = p
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            p.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(DEFAULT_GRACE.as_secs() as i64);
    Duration::from_secs(secs.max(0) as u64)
}

/// The pod changed (or appeared) in the API.
fn upsert(st: &mut State, pod: Pod) {
    let Some(uid) = uid_of(&pod) else { return };
    let grace = grace_of(&pod);
    match st.pods.get_mut(&uid) {
        Some(e) => {
            // Our own status write coming back: nothing to do for the pod.
            let echo = e.pod.as_ref().is_some_and(|old| {
                old.spec == pod.spec
                    && old.metadata.deletion_timestamp == pod.metadata.deletion_timestamp
                    && e.reported.is_some()
                    && e.reported == pod.status
            });
            e.pod = Some(pod);
            e.grace = grace;
            if echo {
                return;
            }
        }
        None => {
            st.pods.insert(
                uid.clone(),
                Entry {
                    pod: Some(pod),
                    reported: None,
                    // The first sync is queued now (behind other new pods); the ticker only
                    // promotes follow-ups.
                    next_sync: Instant::now() + Duration::from_secs(5),
                    terminating: false,
                    grace,
                },
            );
        }
    }
    st.enqueue(&uid);
}

/// The pod is gone from the API: whatever still runs here is stopped.
fn gone(st: &mut State, uid: &str, last: Option<&Pod>) {
    if let Some(e) = st.pods.get_mut(uid) {
        if let Some(p) = last {
            e.grace = grace_of(p);
        }
        e.pod = None;
        st.enqueue(uid);
    }
}

fn watch_loop(s: &Shared) {
    let Some(c) = s.client() else { return };
    let selector = format!("spec.nodeName={}", s.cfg.node.name);
    let mut first = true;
    while !s.stopped() {
        // (Re)list: the table becomes exactly the listed pods (plus orphans at the start).
        let (pods, mut rv) = match c.list_in::<Pod>("", &selector) {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("agent: listing pods: {e}");
                s.sleep(Duration::from_secs(1));
                continue;
            }
        };
        let local = if first {
            match s.backend.local_pods() {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!("agent: local pods: {e}");
                    s.sleep(Duration::from_secs(1));
                    continue;
                }
            }
        } else {
            Vec::new()
        };
        {
            let mut st = s.lock();
            let listed: HashSet<String> = pods.iter().filter_map(uid_of).collect();
            let missing: Vec<String> = st
                .pods
                .iter()
                .filter(|(uid, e)| e.pod.is_some() && !listed.contains(*uid))
                .map(|(uid, _)| uid.clone())
                .collect();
            for uid in missing {
                gone(&mut st, &uid, None);
            }
            for p in pods {
                upsert(&mut st, p);
            }
            for lp in local {
                if !listed.contains(&lp.uid) && !st.pods.contains_key(&lp.uid) {
                    tracing::info!(
                        "agent: pod {}/{} ({}) is not in the API: terminating it",
                        lp.namespace,
                        lp.name,
                        lp.uid
                    );
                    st.pods.insert(
                        lp.uid.clone(),
                        Entry {
                            pod: None,
                            reported: None,
                            next_sync: Instant::now(),
                            terminating: false,
                            grace: s.cfg.orphan_grace,
                        },
                    );
                    st.enqueue(&lp.uid);
                }
            }
        }
        s.cv.notify_all();
        first = false;
        // Watch from the list's revision until an error asks for a relist.
        loop {
            if s.stopped() {
                return;
            }
            let mut relist = false;
            let from = rv.clone();
            let r = c.watch_in::<Pod>("", &selector, &from, s.cfg.watch_timeout_secs, |ev| {
                if s.stopped() {
                    return false;
                }
                let mut st = s.lock();
                match ev {
                    WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                        tracing::debug!(
                            "agent: {} pod event {}",
                            Utc::now().format("%H:%M:%S%.3f"),
                            p.metadata.name.as_deref().unwrap_or("")
                        );
                        if let Some(v) = p.metadata.resource_version.clone() {
                            rv = v;
                        }
                        upsert(&mut st, p);
                    }
                    WatchEvent::Deleted(p) => {
                        if let Some(v) = p.metadata.resource_version.clone() {
                            rv = v;
                        }
                        if let Some(uid) = uid_of(&p) {
                            gone(&mut st, &uid, Some(&p));
                        }
                    }
                    WatchEvent::Bookmark(v) => {
                        if !v.is_empty() {
                            rv = v;
                        }
                    }
                    WatchEvent::Error(m) => {
                        tracing::info!("agent: pod watch ended: {m}");
                        relist = true;
                        return false;
                    }
                }
                drop(st);
                s.cv.notify_all();
                true
            });
            if let Err(e) = r {
                tracing::warn!("agent: pod watch: {e}");
                s.sleep(Duration::from_millis(500));
                relist = true;
            }
            if relist {
                break;
            }
        }
    }
}

fn tick_loop(s: &Shared) {
    while !s.stopped() {
        {
            let mut st = s.lock();
            let now = Instant::now();
            let due: Vec<String> = st
                .pods
                .iter()
                .filter(|(_, e)| e.next_sync <= now && !e.terminating)
                .map(|(uid, _)| uid.clone())
                .collect();
            for uid in &due {
                st.enqueue_front(uid);
            }
            if !due.is_empty() {
                s.cv.notify_all();
            }
        }
        s.sleep(Duration::from_millis(100));
    }
}

fn heartbeat_loop(s: &Shared) {
    let Some(c) = s.client() else { return };
    let mut next_lease = Instant::now() + s.cfg.lease_every;
    let mut next_status = Instant::now() + s.cfg.status_every;
    while !s.stopped() {
        let now = Instant::now();
        if now >= next_lease {
            match node::renew_lease(&c, &s.cfg.node.name) {
                Ok(_) => next_lease = now + s.cfg.lease_every,
                Err(e) => {
                    tracing::warn!("agent: renewing the lease: {e}");
                    next_lease = now + Duration::from_secs(1);
                }
            }
        }
        if now >= next_status {
            match node::refresh(&c, &s.cfg.node, &s.host) {
                Ok(()) => next_status = now + s.cfg.status_every,
                Err(e) => {
                    tracing::warn!("agent: node status: {e}");
                    next_status = now + Duration::from_secs(2);
                }
            }
        }
        s.sleep(Duration::from_millis(200));
    }
}

fn worker_loop(s: &Arc<Shared>) {
    let Some(c) = s.client() else { return };
    loop {
        let uid = {
            let mut st = s.lock();
            loop {
                if s.stopped() {
                    return;
                }
                if let Some(uid) = st.queue.pop_front() {
                    st.queued.remove(&uid);
                    st.active.insert(uid.clone());
                    break uid;
                }
                st =
                    s.cv.wait_timeout(st, Duration::from_millis(500))
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
            }
        };
        process(s, &c, &uid);
        let mut st = s.lock();
        st.active.remove(&uid);
        if st.dirty.remove(&uid) {
            st.enqueue(&uid);
            drop(st);
            s.cv.notify_one();
        }
    }
}

/// One step for one pod.
fn process(s: &Arc<Shared>, c: &HttpCluster, uid: &str) {
    let (pod, reported, terminating, grace) = {
        let st = s.lock();
        let Some(e) = st.pods.get(uid) else { return };
        (e.pod.clone(), e.reported.clone(), e.terminating, e.grace)
    };
    if terminating {
        return;
    }
    match pod {
        None => spawn_terminate(s, uid, None, grace),
        Some(p) if p.metadata.deletion_timestamp.is_some() => {
            spawn_terminate(s, uid, Some(p), grace)
        }
        Some(p) => sync_one(s, c, uid, p, reported),
    }
}

fn sync_one(s: &Shared, c: &HttpCluster, uid: &str, pod: Pod, reported: Option<PodStatus>) {
    let t0 = Instant::now();
    let outcome = s.backend.sync(&pod, &ApiRefs(c));
    tracing::debug!(
        "agent: {} synced {} in {:?}",
        Utc::now().format("%H:%M:%S%.3f"),
        pod.metadata.name.as_deref().unwrap_or(""),
        t0.elapsed()
    );
    let mut next = s.cfg.resync;
    let mut new_reported = reported.clone();
    match outcome {
        Err(e) => {
            tracing::warn!(
                "agent: pod {}/{}: {e}",
                pod.metadata.namespace.as_deref().unwrap_or(""),
                pod.metadata.name.as_deref().unwrap_or("")
            );
            next = Duration::from_secs(1);
        }
        Ok(out) => {
            if let Some(r) = out.requeue_after {
                next = next.min(r);
            }
            for (type_, reason, message) in &out.events {
                record_event(s, &pod, type_, reason, message);
            }
            let same = reported.as_ref() == Some(&out.status)
                || (reported.is_none() && pod.status.as_ref() == Some(&out.status));
            if !same {
                // A pod whose status just changed is in flux (a container was just started
                // and is not Ready yet): look again soon, ahead of new pods.
                next = next.min(FOLLOW_UP);
                let mut p = pod.clone();
                p.status = Some(out.status.clone());
                p.metadata.resource_version = None;
                let t1 = Instant::now();
                let r = c.update_status(&p);
                tracing::debug!(
                    "agent: {} status of {} written in {:?} (ready: {})",
                    Utc::now().format("%H:%M:%S%.3f"),
                    p.metadata.name.as_deref().unwrap_or(""),
                    t1.elapsed(),
                    out.status
                        .conditions
                        .iter()
                        .flatten()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                );
                match r {
                    Ok(_) => new_reported = Some(out.status),
                    Err(ClusterError::NotFound { .. }) => {}
                    Err(e) => {
                        tracing::warn!(
                            "agent: status of {}/{}: {e}",
                            p.metadata.namespace.as_deref().unwrap_or(""),
                            p.metadata.name.as_deref().unwrap_or("")
                        );
                        next = Duration::from_secs(1);
                    }
                }
            } else if reported.is_none() {
                new_reported = Some(out.status);
            }
        }
    }
    let mut st = s.lock();
    if let Some(e) = st.pods.get_mut(uid) {
        e.reported = new_reported;
        e.next_sync = Instant::now() + next;
    }
}

/// Stops the pod on its own thread (a grace period must not hold a sync worker), then, if
/// the pod is still in the API, makes the final delete.
fn spawn_terminate(s: &Arc<Shared>, uid: &str, pod: Option<Pod>, grace: Duration) {
    {
        let mut st = s.lock();
        match st.pods.get_mut(uid) {
            Some(e) if !e.terminating => e.terminating = true,
            _ => return,
        }
    }
    let s2 = s.clone();
    let owned = uid.to_string();
    let r = std::thread::Builder::new()
        .name("agent-terminate".into())
        .spawn(move || terminate_one(&s2, &owned, pod, grace));
    if let Err(e) = r {
        tracing::warn!("agent: cannot start a terminate thread: {e}");
        let mut st = s.lock();
        if let Some(e) = st.pods.get_mut(uid) {
            e.terminating = false;
        }
    }
}

fn terminate_one(s: &Shared, uid: &str, pod: Option<Pod>, grace: Duration) {
    let mut done = false;
    for attempt in 0.. {
        match s.backend.terminate(uid, grace) {
            Ok(()) => {
                done = true;
                break;
            }
            Err(e) => {
                tracing::warn!("agent: terminating pod {uid}: {e}");
                if attempt >= 5 || s.stopped() {
                    break;
                }
                s.sleep(Duration::from_secs(1));
            }
        }
    }
    if done {
        if let Some(p) = &pod {
            let ns = p.metadata.namespace.as_deref().unwrap_or("default");
            let name = p.metadata.name.as_deref().unwrap_or("");
            if let Some(c) = s.client() {
                match c.force_delete_pod(ns, name) {
                    Ok(()) | Err(ClusterError::NotFound { .. }) => {}
                    Err(e) => {
                        tracing::warn!("agent: final delete of {ns}/{name}: {e}");
                        done = false;
                    }
                }
            }
        }
    }
    let mut st = s.lock();
    if done {
        // Keep a deleted pod's entry only while the API still shows it (a final delete that
        // raced with an update): the watch's DELETED event or the next relist removes it.
        match st.pods.get(uid).map(|e| e.pod.is_some()) {
            Some(true) if pod.is_none() => {
                if let Some(e) = st.pods.get_mut(uid) {
                    e.terminating = false;
                }
                st.enqueue(uid);
            }
            _ => {
                st.pods.remove(uid);
            }
        }
    } else if let Some(e) = st.pods.get_mut(uid) {
        e.terminating = false;
        e.next_sync = Instant::now() + Duration::from_secs(2);
    }
}

fn record_event(s: &Shared, pod: &Pod, type_: &str, reason: &str, message: &str) {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let now = Utc::now();
    let ev = Event {
        metadata: ObjectMeta {
            name: Some(format!(
                "{name}.{:x}",
                now.timestamp_nanos_opt().unwrap_or_default()
            )),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            ..Default::default()
        },
        type_: Some(type_.into()),
        reason: Some(reason.into()),
        message: Some(message.into()),
        source: Some(EventSource {
            component: Some("kubelet".into()),
            host: Some(s.cfg.node.name.clone()),
        }),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(s.cfg.node.name.clone()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: Some(MicroTime(now)),
        count: Some(1),
        ..Default::default()
    };
    s.events.record(ev);
}
