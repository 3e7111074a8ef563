//! The watch-driven manager against the real gabang-apiserver (HTTPS on loopback, SQLite in a
//! temp dir): a manager restart and an API server restart in the middle of a scale-up never
//! create a pod too many; informers relist after their resourceVersion is compacted (410);
//! once converged, the manager sends no requests (only its watches stay open).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use gabang_apiserver::{serve, ServerConfig, ServerHandle, StoreSpec};
use gabang_controllers::cluster::{Cluster, ClusterError, WatchCluster};
use gabang_controllers::common::{controller_ref, pod_active, pod_ready};
use gabang_controllers::fixtures::{pod, seed, service};
use gabang_controllers::http::{HttpCluster, WatchEvent};
use gabang_controllers::nodelifecycle::SystemClock;
use gabang_controllers::runtime::{fake_agent_step, Config, Manager};
use gabang_store::{Backend, SqliteBackend, SqliteConfig};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::chrono::Utc;

const NODES: [&str; 3] = ["n1", "n2", "n3"];

/// An API server on its own runtime: dropping the runtime closes every connection, as a
/// process restart would.
struct Server {
    rt: Option<tokio::runtime::Runtime>,
    handle: Option<ServerHandle>,
}

impl Server {
    fn start(dir: &Path, listen: SocketAddr, store: StoreSpec) -> Server {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let deadline = Instant::now() + StdDuration::from_secs(10);
        let handle = loop {
            let cfg = ServerConfig {
                listen,
                data_dir: dir.join("pki"),
                store: match &store {
                    StoreSpec::Url(u) => StoreSpec::Url(u.clone()),
                    StoreSpec::Backend(b) => StoreSpec::Backend(b.clone()),
                },
            };
            match rt.block_on(serve(cfg)) {
                Ok(h) => break h,
                // The old listener may take a moment to go.
                Err(e) if Instant::now() < deadline => {
                    eprintln!("restart: {e}; retrying");
                    std::thread::sleep(StdDuration::from_millis(100));
                }
                Err(e) => panic!("API server: {e}"),
            }
        };
        Server {
            rt: Some(rt),
            handle: Some(handle),
        }
    }
    fn addr(&self) -> SocketAddr {
        self.handle.as_ref().unwrap().local_addr
    }
    fn client(&self) -> Arc<HttpCluster> {
        let h = self.handle.as_ref().unwrap();
        Arc::new(HttpCluster::new(h.local_addr, &h.ca_pem, &h.token).unwrap())
    }
    /// Stop: every task and connection of this server ends.
    fn kill(mut self) {
        self.handle.take();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(StdDuration::from_secs(2));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.handle.take();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn setup(c: &HttpCluster) {
    seed(c, &NODES, "64", "256Gi", 200).unwrap();
}

fn deployment(replicas: i32) -> Deployment {
    gabang_controllers::fixtures::deployment(
        "default",
        "web",
        replicas,
        pod("default", "x", "10m", "16Mi").spec,
    )
}

/// The fake node agent on a thread, with its own client (errors while the server is down
/// are expected and skipped).
struct Agent {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Agent {
    fn start(c: Arc<Mutex<Arc<HttpCluster>>>) -> Agent {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let client = c.lock().unwrap().clone();
                let _ = fake_agent_step(client.as_ref(), &NODES, Utc::now());
                std::thread::sleep(StdDuration::from_millis(50));
            }
        });
        Agent {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Watches the pods (its own list + watch code, not the informers') and checks, at every
/// event, that the live pods owned by a ReplicaSet stay within `bound`.
#[derive(Default)]
struct Seen {
    live: HashMap<String, Pod>,
    created: HashSet<String>,
    max_live: usize,
    violations: Vec<String>,
}

struct Observer {
    seen: Arc<Mutex<Seen>>,
    bound: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn owned_live(p: &Pod) -> bool {
    pod_active(p) && controller_ref(&p.metadata).is_some_and(|r| r.kind == "ReplicaSet")
}

impl Observer {
    fn start(client: Arc<Mutex<Arc<HttpCluster>>>, bound: usize) -> Observer {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let bound = Arc::new(AtomicUsize::new(bound));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, b2, st2) = (seen.clone(), bound.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let note = |p: Option<Pod>, gone: Option<String>| {
                let mut s = s2.lock().unwrap();
                if let Some(p) = p {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    if owned_live(&p) {
                        s.created.insert(p.metadata.uid.clone().unwrap_or_default());
                        s.live.insert(name, p);
                    } else {
                        s.live.remove(&name);
                    }
                }
                if let Some(n) = gone {
                    s.live.remove(&n);
                }
                let n = s.live.len();
                s.max_live = s.max_live.max(n);
                let b = b2.load(Ordering::SeqCst);
                if n > b {
                    let mut by_rs: std::collections::BTreeMap<String, usize> = Default::default();
                    for p in s.live.values() {
                        if let Some(r) = controller_ref(&p.metadata) {
                            *by_rs.entry(r.name.clone()).or_default() += 1;
                        }
                    }
                    s.violations.push(format!(
                        "{n} live pods > bound {b}: by ReplicaSet {by_rs:?}"
                    ));
                }
            };
            while !st2.load(Ordering::Relaxed) {
                let c = client.lock().unwrap().clone();
                let Ok((pods, mut rv)) = c.list_in::<Pod>("default", "") else {
                    std::thread::sleep(StdDuration::from_millis(20));
                    continue;
                };
                {
                    let mut s = s2.lock().unwrap();
                    s.live.clear();
                }
                for p in pods {
                    note(Some(p), None);
                }
                loop {
                    if st2.load(Ordering::Relaxed) {
                        return;
                    }
                    let c = client.lock().unwrap().clone();
                    let mut relist = false;
                    let from = rv.clone();
                    let r = c.watch_in::<Pod>("default", "", &from, 2, |ev| {
                        match ev {
                            WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                                rv = p.metadata.resource_version.clone().unwrap_or_default();
                                note(Some(p), None);
                            }
                            WatchEvent::Deleted(p) => {
                                rv = p.metadata.resource_version.clone().unwrap_or_default();
                                note(None, p.metadata.name.clone());
                            }
                            WatchEvent::Bookmark(v) => rv = v,
                            WatchEvent::Error(_) => {
                                relist = true;
                                return false;
                            }
                        }
                        !st2.load(Ordering::Relaxed)
                    });
                    if relist {
                        break;
                    }
                    if r.is_err() {
                        std::thread::sleep(StdDuration::from_millis(20));
                    }
                }
            }
        });
        Observer {
            seen,
            bound,
            stop,
            thread: Some(thread),
        }
    }
    fn live(&self) -> usize {
        self.seen.lock().unwrap().live.len()
    }
    fn created(&self) -> usize {
        self.seen.lock().unwrap().created.len()
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn wait_for(what: &str, secs: u64, f: &dyn Fn() -> bool) {
    let deadline = Instant::now() + StdDuration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(StdDuration::from_millis(20));
    }
    panic!("never reached: {what}");
}

/// Change the Deployment (read-modify-write, retried on conflict with the manager's status
/// writes).
fn update_deployment(c: &HttpCluster, f: &dyn Fn(&mut Deployment)) {
    for _ in 0..50 {
        let mut d: Deployment = c.get("default", "web").unwrap().unwrap();
        f(&mut d);
        match c.update(&d) {
            Ok(_) => return,
            Err(ClusterError::Conflict { .. }) => continue,
            Err(e) => panic!("update: {e}"),
        }
    }
    panic!("update: conflicts did not stop");
}

fn scale(c: &HttpCluster, replicas: i32) {
    update_deployment(c, &|d| d.spec.as_mut().unwrap().replicas = Some(replicas));
}

fn ready_pods(c: &HttpCluster) -> usize {
    c.list::<Pod>()
        .map(|ps| ps.iter().filter(|p| owned_live(p) && pod_ready(p)).count())
        .unwrap_or(0)
}

fn manager(c: Arc<HttpCluster>) -> Manager<HttpCluster> {
    Manager::new(c, Arc::new(SystemClock), Config::default())
}

#[test]
fn restarts_of_manager_and_apiserver_never_create_a_pod_too_many() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let server = Server::start(
        dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        StoreSpec::Url(url.clone()),
    );
    let addr = server.addr();
    let client = Arc::new(Mutex::new(server.client()));
    let c = || client.lock().unwrap().clone();
    setup(&c());
    let observer = Observer::start(client.clone(), 40);
    let agent = Agent::start(client.clone());

    // Manager 1 starts the scale-up and is stopped in the middle of it.
    let m1 = manager(server.client()).spawn().unwrap();
    c().create(&deployment(40)).unwrap();
    wait_for("first pods", 30, &|| observer.live() >= 3);
    m1.stop();
    let after_m1 = observer.created();
    // Manager 2 takes over from what the API server has.
    let m2 = manager(server.client()).spawn().unwrap();
    wait_for("40 ready", 60, &|| ready_pods(&c()) == 40);

    // Scale to 80 and restart the API server while the pods are being created.
    observer.bound.store(80, Ordering::SeqCst);
    scale(&c(), 80);
    wait_for("scale-up under way", 30, &|| observer.live() > 42);
    let mid = observer.live();
    server.kill();
    let server = Server::start(dir.path(), addr, StoreSpec::Url(url));
    *client.lock().unwrap() = server.client();
    let deadline = Instant::now() + StdDuration::from_secs(90);
    while ready_pods(&c()) != 80 {
        if Instant::now() > deadline {
            let pods: Vec<Pod> = c().list().unwrap();
            let seen = observer.seen.lock().unwrap();
            panic!(
                "never 80 ready after the restart: {} pods, {} live, {} ready; observer: {} live, {} created, {:?}",
                pods.len(),
                pods.iter().filter(|p| owned_live(p)).count(),
                ready_pods(&c()),
                seen.live.len(),
                seen.created.len(),
                seen.violations
            );
        }
        std::thread::sleep(StdDuration::from_millis(20));
    }
    // Settle, then look at everything.
    std::thread::sleep(StdDuration::from_millis(500));
    let pods: Vec<Pod> = c().list().unwrap();
    assert_eq!(pods.iter().filter(|p| owned_live(p)).count(), 80);
    assert_eq!(c().list::<ReplicaSet>().unwrap().len(), 1);
    {
        let seen = observer.seen.lock().unwrap();
        assert!(seen.violations.is_empty(), "{:?}", seen.violations);
        assert_eq!(seen.max_live, 80);
        // No pod was ever created beyond the 80 (a duplicate would have been seen, then
        // deleted).
        assert_eq!(seen.created.len(), 80, "pods ever created");
    }
    eprintln!(
        "manager 1 stopped after {after_m1} pods; API server restarted at {mid} of 80 live pods"
    );
    assert!(
        after_m1 < 40,
        "manager 1 was stopped mid scale-up ({after_m1})"
    );
    assert!(mid < 80, "the API server restarted mid scale-up ({mid})");

    // A rollout (new image) with a manager restart in the middle: the live pods stay within
    // 80 + maxSurge (25% = 20) throughout, and it ends with 80 pods of the new template.
    observer.bound.store(100, Ordering::SeqCst);
    update_deployment(&c(), &|d| {
        let t = &mut d.spec.as_mut().unwrap().template;
        t.spec.as_mut().unwrap().containers[0].image = Some("web:v2".into());
    });
    let image_of = |p: &Pod| {
        p.spec.as_ref().unwrap().containers[0]
            .image
            .clone()
            .unwrap_or_default()
    };
    let new_live = || {
        c().list::<Pod>()
            .map(|ps| {
                ps.iter()
                    .filter(|p| owned_live(p) && image_of(p) == "web:v2")
                    .count()
            })
            .unwrap_or(0)
    };
    wait_for("rollout under way", 30, &|| new_live() >= 10);
    m2.stop();
    let rolled_at = new_live();
    let m3 = manager(server.client()).spawn().unwrap();
    wait_for("rollout done", 120, &|| {
        let pods: Vec<Pod> = c().list().unwrap_or_default();
        let live: Vec<&Pod> = pods.iter().filter(|p| owned_live(p)).collect();
        live.len() == 80 && live.iter().all(|p| image_of(p) == "web:v2" && pod_ready(p))
    });
    std::thread::sleep(StdDuration::from_millis(500));
    m3.stop();
    drop(agent);
    let pods: Vec<Pod> = c().list().unwrap();
    let live: Vec<&Pod> = pods.iter().filter(|p| owned_live(p)).collect();
    assert_eq!(live.len(), 80);
    assert!(live.iter().all(|p| image_of(p) == "web:v2"));
    assert_eq!(c().list::<ReplicaSet>().unwrap().len(), 2);
    let seen = observer.seen.lock().unwrap();
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    assert!(seen.max_live <= 100, "{}", seen.max_live);
    eprintln!(
        "rollout: manager restarted at {rolled_at} new pods; at most {} live pods",
        seen.max_live
    );
    assert!(
        rolled_at < 80,
        "the manager restarted mid-rollout ({rolled_at})"
    );
}

#[test]
fn informers_relist_after_410_and_the_idle_manager_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Backend> = Arc::new(
        SqliteBackend::open(&dir.path().join("state.db"), SqliteConfig::default()).unwrap(),
    );
    let server = Server::start(
        dir.path(),
        "127.0.0.1:0".parse().unwrap(),
        StoreSpec::Backend(store.clone()),
    );
    let addr = server.addr();
    let client = Arc::new(Mutex::new(server.client()));
    let c = || client.lock().unwrap().clone();
    setup(&c());
    let agent = Agent::start(client.clone());
    let mc = server.client();
    let m = manager(mc.clone());
    assert!(m.wait_for_sync(StdDuration::from_secs(30)));
    // One list per served resource: the typed informers, and a metadata informer for the
    // garbage collector of each resource they do not cover (ConfigMaps, Secrets, …).
    let served = c().discover().unwrap().len() as u64;
    assert!(served > 10, "{served} resources");
    assert_eq!(m.informer_lists(), served, "one list per informer");
    let before = mc.stats().lists;
    assert_eq!(before, served);
    let handle = m.spawn().unwrap();
    c().create(&deployment(3)).unwrap();
    c().create(&service("default", "web", &[("app", "web")], 80))
        .unwrap();
    let converged = || {
        let eps = c()
            .get::<k8s_openapi::api::core::v1::Endpoints>("default", "web")
            .ok()
            .flatten();
        let addrs = eps
            .and_then(|e| e.subsets)
            .map(|s| {
                s.iter()
                    .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
                    .sum::<usize>()
            })
            .unwrap_or(0);
        let d: Option<Deployment> = c().get("default", "web").ok().flatten();
        ready_pods(&c()) == 3
            && addrs == 3
            && d.and_then(|d| d.status).and_then(|s| s.available_replicas) == Some(3)
    };
    wait_for("3 ready pods, endpoints and status", 60, &converged);

    // Idle: over 3 s the manager sends no request at all (no LIST, no GET, no write), only
    // its watches stay open. The agent keeps renewing leases meanwhile.
    std::thread::sleep(StdDuration::from_millis(500));
    let s0 = mc.stats();
    std::thread::sleep(StdDuration::from_secs(3));
    let s1 = mc.stats();
    assert_eq!(s1.lists, s0.lists, "no LIST while idle: {s0:?} -> {s1:?}");
    assert_eq!(s1.gets, s0.gets, "no GET while idle: {s0:?} -> {s1:?}");
    assert_eq!(
        s1.writes, s0.writes,
        "no write while idle: {s0:?} -> {s1:?}"
    );
    assert_eq!(
        s1.watches, s0.watches,
        "the watches stay open: {s0:?} -> {s1:?}"
    );
    assert_eq!(
        s1.lists, before,
        "only the informers' first lists ever: {s1:?}"
    );

    // 410: break the watches (API server down), compact the store at its latest revision
    // (past the versions of the informers whose kinds changed less recently), start the
    // server again: those informers get 410 Gone on resuming, relist, and the manager goes
    // on working.
    drop(agent);
    let rev: i64 = c().list_in::<Namespace>("", "").unwrap().1.parse().unwrap();
    server.kill();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(store.compact(rev)).unwrap();
    let server = Server::start(dir.path(), addr, StoreSpec::Backend(store.clone()));
    *client.lock().unwrap() = server.client();
    let agent = Agent::start(client.clone());
    wait_for("relists after 410", 60, &|| mc.stats().lists > before);
    scale(&c(), 5);
    wait_for("5 ready after relisting", 60, &|| ready_pods(&c()) == 5);
    drop(agent);
    handle.stop();
}
