//! The whole controller manager against the real gabang-apiserver (HTTPS on loopback, SQLite
//! in a temp dir) with fake nodes and the fake agent (leases renewed, bound pods marked
//! Running/Ready, deleted pods finished): `kubectl rollout undo`, deletion with
//! propagationPolicy=Orphan, the garbage collector on kinds without a typed cache, a deleted
//! Service's Endpoints, and node loss measured on a fake clock from the node's last lease
//! renewal until the replacement pods are bound elsewhere.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use gabang_apiserver::{serve, ServerConfig, ServerHandle, StoreSpec};
use gabang_controllers::cluster::{Cluster, ClusterError};
use gabang_controllers::common::{controller_ref, pod_active, pod_ready};
use gabang_controllers::deployment::{CHANGE_CAUSE, HASH_LABEL, REVISION};
use gabang_controllers::fixtures::{labels, pod, seed, service};
use gabang_controllers::gc::Propagation;
use gabang_controllers::http::HttpCluster;
use gabang_controllers::nodelifecycle::{Clock, FakeClock, SystemClock, LEASE_NAMESPACE};
use gabang_controllers::runtime::{fake_agent_step, Config, Manager};
use gabang_store::{Backend, SqliteBackend, SqliteConfig};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Event, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::chrono::{DateTime, Duration, Utc};

/// An API server with its own runtime and state directory.
struct ControlPlane {
    _handle: ServerHandle,
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    c: Arc<HttpCluster>,
}

fn start(nodes: &[&str]) -> ControlPlane {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Backend> = Arc::new(
        SqliteBackend::open(&dir.path().join("state.db"), SqliteConfig::default()).unwrap(),
    );
    let handle = rt
        .block_on(serve(ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().join("pki"),
            store: StoreSpec::Backend(store),
        }))
        .unwrap();
    let c = Arc::new(HttpCluster::new(handle.local_addr, &handle.ca_pem, &handle.token).unwrap());
    seed(&*c, nodes, "8", "16Gi", 110).unwrap();
    ControlPlane {
        _handle: handle,
        _rt: rt,
        _dir: dir,
        c,
    }
}

fn deployment(name: &str, replicas: i32, image: &str) -> Deployment {
    let mut spec = pod("default", "x", "100m", "64Mi").spec.unwrap();
    spec.containers[0].image = Some(image.into());
    gabang_controllers::fixtures::deployment("default", name, replicas, Some(spec))
}

/// Sync the manager, play the agent, until `f` holds (at most ~10 s of real time). Writes
/// racing with the test's own (409 Conflict) are retried by the manager; anything else fails.
fn run_until(
    m: &mut Manager<HttpCluster>,
    c: &HttpCluster,
    live: &[&str],
    what: &str,
    f: &dyn Fn() -> bool,
) {
    for _ in 0..500 {
        sync_ok(m);
        fake_agent_step(c, live, Utc::now()).unwrap();
        if f() {
            return;
        }
        std::thread::sleep(StdDuration::from_millis(20));
    }
    panic!("never reached: {what}");
}

fn sync_ok(m: &mut Manager<HttpCluster>) -> usize {
    let rep = m.sync().unwrap();
    for (k, e) in &rep.errors {
        assert!(
            matches!(e, ClusterError::Conflict { .. }),
            "{k}: {e} (all: {:?})",
            rep.errors
        );
    }
    rep.writes
}

/// Read-modify-write of a Deployment, retried on conflict (as kubectl does).
fn modify(c: &HttpCluster, name: &str, f: &dyn Fn(&mut Deployment)) {
    for _ in 0..20 {
        let mut d: Deployment = c.get("default", name).unwrap().unwrap();
        f(&mut d);
        match c.update(&d) {
            Ok(_) => return,
            Err(ClusterError::Conflict { .. }) => continue,
            Err(e) => panic!("update deployment {name}: {e}"),
        }
    }
    panic!("update deployment {name}: conflicts");
}

fn image_of(p: &Pod) -> &str {
    p.spec.as_ref().unwrap().containers[0]
        .image
        .as_deref()
        .unwrap_or("")
}

fn image_of_rs(rs: &ReplicaSet) -> &str {
    rs.spec
        .as_ref()
        .unwrap()
        .template
        .as_ref()
        .unwrap()
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .as_deref()
        .unwrap_or("")
}

fn annotation<'a>(m: &'a ObjectMeta, k: &str) -> Option<&'a str> {
    m.annotations.as_ref()?.get(k).map(String::as_str)
}

fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

/// Live pods of the Deployment's app, all Ready with `image`.
fn rolled_out(c: &HttpCluster, app: &str, n: usize, image: &str) -> bool {
    let pods: Vec<Pod> = c.list().unwrap();
    let live: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            pod_active(p)
                && p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("app"))
                    .map(String::as_str)
                    == Some(app)
        })
        .collect();
    live.len() == n && live.iter().all(|p| pod_ready(p) && image_of(p) == image)
}

fn rs_with_image(c: &HttpCluster, image: &str) -> ReplicaSet {
    c.list::<ReplicaSet>()
        .unwrap()
        .into_iter()
        .find(|rs| image_of_rs(rs) == image)
        .unwrap_or_else(|| panic!("no ReplicaSet of {image}"))
}

#[test]
fn rollout_undo_scales_the_old_replica_set_back_up_with_a_new_revision() {
    let cp = start(&["n1", "n2"]);
    let c = cp.c.as_ref();
    let mut m = Manager::new(cp.c.clone(), Arc::new(SystemClock), Config::default());
    let live = ["n1", "n2"];
    let mut d = deployment("web", 3, "web:v1");
    d.metadata.annotations = Some(labels(&[(CHANGE_CAUSE, "deploy v1")]));
    c.create(&d).unwrap();
    run_until(&mut m, c, &live, "v1 rolled out", &|| {
        rolled_out(c, "web", 3, "web:v1")
    });
    // kubectl set image … ; kubectl annotate … change-cause=…
    modify(c, "web", &|d| {
        d.spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .image = Some("web:v2".into());
        d.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(CHANGE_CAUSE.into(), "image v2".into());
    });
    run_until(&mut m, c, &live, "v2 rolled out", &|| {
        rolled_out(c, "web", 3, "web:v2") && replicas(&rs_with_image(c, "web:v1")) == 0
    });
    let v1 = rs_with_image(c, "web:v1");
    let v2 = rs_with_image(c, "web:v2");
    assert_eq!(annotation(&v1.metadata, REVISION), Some("1"));
    assert_eq!(annotation(&v2.metadata, REVISION), Some("2"));
    assert_eq!(annotation(&v1.metadata, CHANGE_CAUSE), Some("deploy v1"));
    assert_eq!(annotation(&v2.metadata, CHANGE_CAUSE), Some("image v2"));

    // kubectl rollout undo --to-revision=1: the template of revision 1's ReplicaSet (without
    // its pod-template-hash label) and its change-cause go back onto the Deployment.
    let mut template = v1.spec.as_ref().unwrap().template.clone().unwrap();
    if let Some(l) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        l.remove(HASH_LABEL);
    }
    let cause = annotation(&v1.metadata, CHANGE_CAUSE).map(String::from);
    modify(c, "web", &|d| {
        d.spec.as_mut().unwrap().template = template.clone();
        if let Some(cause) = &cause {
            d.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(CHANGE_CAUSE.into(), cause.clone());
        }
    });
    run_until(&mut m, c, &live, "back on v1", &|| {
        rolled_out(c, "web", 3, "web:v1") && replicas(&rs_with_image(c, "web:v2")) == 0
    });
    let rss = c.list::<ReplicaSet>().unwrap();
    assert_eq!(rss.len(), 2, "the old ReplicaSet is reused, none created");
    let v1_after = rs_with_image(c, "web:v1");
    assert_eq!(v1_after.metadata.uid, v1.metadata.uid);
    assert_eq!(replicas(&v1_after), 3);
    assert_eq!(annotation(&v1_after.metadata, REVISION), Some("3"));
    assert_eq!(
        annotation(&v1_after.metadata, CHANGE_CAUSE),
        Some("deploy v1")
    );
    run_until(&mut m, c, &live, "the Deployment at revision 3", &|| {
        let d: Deployment = c.get("default", "web").unwrap().unwrap();
        annotation(&d.metadata, REVISION) == Some("3")
            && d.status.and_then(|s| s.updated_replicas) == Some(3)
    });
    // Every live pod belongs to the v1 ReplicaSet.
    for p in c.list::<Pod>().unwrap().iter().filter(|p| pod_active(p)) {
        assert_eq!(
            controller_ref(&p.metadata).map(|r| r.uid.clone()),
            v1.metadata.uid
        );
    }
}

fn owned_by(name: &str, owner: &ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        namespace: Some("default".into()),
        name: Some(name.into()),
        owner_references: Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: owner.name.clone().unwrap(),
            uid: owner.uid.clone().unwrap(),
            controller: None,
            block_owner_deletion: Some(true),
        }]),
        ..Default::default()
    }
}

#[test]
fn orphan_deletion_keeps_replica_sets_and_pods_without_the_owner_reference() {
    let cp = start(&["n1", "n2"]);
    let c = cp.c.as_ref();
    let mut m = Manager::new(cp.c.clone(), Arc::new(SystemClock), Config::default());
    let live = ["n1", "n2"];
    let d = c.create(&deployment("web", 2, "web:v1")).unwrap();
    c.create(&ConfigMap {
        metadata: owned_by("web-config", &d.metadata),
        ..Default::default()
    })
    .unwrap();
    run_until(&mut m, c, &live, "2 ready", &|| {
        rolled_out(c, "web", 2, "web:v1")
    });
    let rs_before = c.list::<ReplicaSet>().unwrap();
    assert_eq!(rs_before.len(), 1);
    let pods_before: Vec<String> = c
        .list::<Pod>()
        .unwrap()
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();

    // kubectl delete deployment web --cascade=orphan
    c.delete::<Deployment>("default", "web", Propagation::Orphan)
        .unwrap();
    run_until(&mut m, c, &live, "the Deployment gone", &|| {
        c.get::<Deployment>("default", "web").unwrap().is_none()
    });
    // A few more rounds: nothing else may go.
    for _ in 0..10 {
        sync_ok(&mut m);
        fake_agent_step(c, &live, Utc::now()).unwrap();
        std::thread::sleep(StdDuration::from_millis(20));
    }
    let rs = c.list::<ReplicaSet>().unwrap();
    assert_eq!(rs.len(), 1, "the ReplicaSet is orphaned, not deleted");
    assert_eq!(rs[0].metadata.uid, rs_before[0].metadata.uid);
    assert!(
        rs[0]
            .metadata
            .owner_references
            .clone()
            .unwrap_or_default()
            .is_empty(),
        "{:?}",
        rs[0].metadata.owner_references
    );
    assert!(rs[0].metadata.deletion_timestamp.is_none());
    let cm = c.get::<ConfigMap>("default", "web-config").unwrap();
    let cm = cm.expect("the ConfigMap is orphaned, not deleted");
    assert!(cm.metadata.owner_references.unwrap_or_default().is_empty());
    // The pods stay with their ReplicaSet, which keeps them running.
    let pods = c.list::<Pod>().unwrap();
    let names: Vec<String> = pods
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, pods_before);
    for p in &pods {
        assert_eq!(
            controller_ref(&p.metadata).map(|r| r.uid.clone()),
            rs[0].metadata.uid
        );
    }
    c.delete::<Pod>("default", &names[0], Propagation::Background)
        .unwrap();
    run_until(
        &mut m,
        c,
        &live,
        "the orphaned ReplicaSet replaces a pod",
        &|| {
            rolled_out(c, "web", 2, "web:v1")
                && c.get::<Pod>("default", &names[0]).unwrap().is_none()
        },
    );
}

#[test]
fn gc_and_endpoints_cover_kinds_without_a_typed_cache() {
    let cp = start(&["n1"]);
    let c = cp.c.as_ref();
    let mut m = Manager::new(cp.c.clone(), Arc::new(SystemClock), Config::default());
    let live = ["n1"];
    let d = c.create(&deployment("web", 1, "web:v1")).unwrap();
    c.create(&ConfigMap {
        metadata: owned_by("web-config", &d.metadata),
        ..Default::default()
    })
    .unwrap();
    c.create(&Secret {
        metadata: owned_by("web-secret", &d.metadata),
        ..Default::default()
    })
    .unwrap();
    c.create(&service("default", "web", &[("app", "web")], 80))
        .unwrap();
    run_until(&mut m, c, &live, "ready with endpoints", &|| {
        rolled_out(c, "web", 1, "web:v1")
            && c.get::<Endpoints>("default", "web")
                .unwrap()
                .and_then(|e| e.subsets)
                .is_some_and(|s| !s.is_empty())
            && c.list::<EndpointSlice>().unwrap().len() == 1
    });
    // Scheduled event of the pod's binding.
    let pod = c.list::<Pod>().unwrap().remove(0);
    let name = pod.metadata.name.clone().unwrap();
    let events = c.list::<Event>().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("Scheduled")
                && e.message.as_deref()
                    == Some(format!("Successfully assigned default/{name} to n1").as_str())),
        "{events:?}"
    );

    c.delete::<Service>("default", "web", Propagation::Background)
        .unwrap();
    run_until(&mut m, c, &live, "the Service's Endpoints gone", &|| {
        c.get::<Endpoints>("default", "web").unwrap().is_none()
            && c.list::<EndpointSlice>().unwrap().is_empty()
    });
    c.delete::<Deployment>("default", "web", Propagation::Background)
        .unwrap();
    run_until(
        &mut m,
        c,
        &live,
        "the ConfigMap and Secret collected",
        &|| {
            c.get::<ConfigMap>("default", "web-config")
                .unwrap()
                .is_none()
                && c.get::<Secret>("default", "web-secret").unwrap().is_none()
                && c.list::<ReplicaSet>().unwrap().is_empty()
        },
    );
}

#[test]
fn node_loss_replacements_are_bound_elsewhere_within_60s_of_the_last_renewal() {
    let cp = start(&["n1", "n2", "n3"]);
    let c = cp.c.as_ref();
    let clock = Arc::new(FakeClock::new(Utc::now()));
    // The default grace period (40 s), on the fake clock.
    let mut m = Manager::new(cp.c.clone(), clock.clone(), Config::default());
    let mut live = vec!["n1", "n2", "n3"];
    // One second of cluster life: the agents heartbeat, then the controllers act until
    // they are done with what they saw (the watches deliver in real time, the clock stands).
    let tick = |m: &mut Manager<HttpCluster>, live: &[&str]| {
        clock.advance(Duration::seconds(1));
        fake_agent_step(c, live, clock.now()).unwrap();
        let mut quiet = 0;
        for _ in 0..200 {
            if sync_ok(m) == 0 {
                quiet += 1;
                if quiet == 3 {
                    return;
                }
            } else {
                quiet = 0;
            }
            std::thread::sleep(StdDuration::from_millis(15));
        }
        panic!("the controllers never settled");
    };
    c.create(&deployment("web", 6, "web:v1")).unwrap();
    for _ in 0..30 {
        tick(&mut m, &live);
        if rolled_out(c, "web", 6, "web:v1") {
            break;
        }
    }
    assert!(rolled_out(c, "web", 6, "web:v1"), "6 ready");
    let on = |n: &str| -> Vec<String> {
        c.list::<Pod>()
            .unwrap()
            .iter()
            .filter(|p| pod_active(p) && p.spec.as_ref().unwrap().node_name.as_deref() == Some(n))
            .map(|p| p.metadata.name.clone().unwrap())
            .collect()
    };
    let lost = on("n1");
    assert!(!lost.is_empty(), "some pods on n1");

    // n1 stops renewing its lease.
    live = vec!["n2", "n3"];
    let last_renewal: DateTime<Utc> = c
        .get::<Lease>(LEASE_NAMESPACE, "n1")
        .unwrap()
        .unwrap()
        .spec
        .unwrap()
        .renew_time
        .unwrap()
        .0;
    let replaced = || {
        let pods: Vec<Pod> = c.list().unwrap();
        let active: Vec<&Pod> = pods.iter().filter(|p| pod_active(p)).collect();
        active.len() == 6
            && active.iter().all(|p| {
                let n = p.spec.as_ref().unwrap().node_name.as_deref();
                n.is_some() && n != Some("n1")
            })
    };
    let mut took = None;
    for _ in 0..120 {
        tick(&mut m, &live);
        if replaced() {
            took = Some(clock.now() - last_renewal);
            break;
        }
    }
    let took = took.expect("replacements never bound");
    eprintln!(
        "node loss over the API server: replacements bound {} s after the last renewal (grace 40 s)",
        took.num_seconds()
    );
    assert!(
        took > Duration::seconds(40),
        "not before the grace period: {took}"
    );
    assert!(took <= Duration::seconds(60), "replacement took {took}");
    // The evicted pods stay Terminating (their agent is gone), each with its eviction event.
    let events = c.list::<Event>().unwrap();
    for name in &lost {
        let p = c.get::<Pod>("default", name).unwrap().expect("terminating");
        assert!(p.metadata.deletion_timestamp.is_some());
        assert!(
            events
                .iter()
                .any(|e| e.reason.as_deref() == Some("TaintManagerEviction")
                    && e.involved_object.name.as_deref() == Some(name.as_str())),
            "no eviction event for {name}"
        );
    }
}
