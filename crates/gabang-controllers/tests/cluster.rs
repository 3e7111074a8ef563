//! The controllers together over the in-memory cluster, with fake nodes and a fake agent:
//! scale up/down, rolling update bounds, node loss → replacements elsewhere, unschedulable
//! events, garbage collection and namespace deletion.

use std::collections::BTreeMap;
use std::sync::Arc;

use gabang_controllers::cluster::{Cluster, MemCluster};
use gabang_controllers::fixtures::{labels, node, pod, service};
use gabang_controllers::gc::Propagation;
use gabang_controllers::nodelifecycle::{Clock, Config, FakeClock};
use gabang_controllers::runtime::{fake_agent_step, Manager};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentStrategy, ReplicaSet, RollingUpdateDeployment,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, ContainerPort, Endpoints, Event, Namespace, NamespaceSpec, Node, Pod, Secret,
    Service, ServiceAccount, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::chrono::{Duration, TimeZone, Utc};

struct World {
    c: Arc<MemCluster>,
    clock: Arc<FakeClock>,
    m: Manager<MemCluster>,
    live: Vec<&'static str>,
}

impl World {
    fn new(nodes: &[&'static str]) -> Self {
        let clock = Arc::new(FakeClock::new(Utc.timestamp_opt(1_700_000_000, 0).unwrap()));
        let c = Arc::new(MemCluster::new(clock.clone()));
        for n in nodes {
            c.create(&node(n, "4", "8Gi", 110)).unwrap();
        }
        let m = Manager::new(c.clone(), clock.clone(), Config::default());
        World {
            c,
            clock,
            m,
            live: nodes.to_vec(),
        }
    }
    /// One second of cluster life: agent, then controllers.
    fn tick(&mut self) {
        self.clock.advance(Duration::seconds(1));
        fake_agent_step(self.c.as_ref(), &self.live, self.clock.now()).unwrap();
        let rep = self.m.sync().unwrap();
        assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    }
    fn pods(&self) -> Vec<Pod> {
        self.c.list::<Pod>().unwrap()
    }
    fn deployment(&self) -> Deployment {
        self.c.get::<Deployment>("default", "web").unwrap().unwrap()
    }
    fn until(&mut self, what: &str, f: impl Fn(&World) -> bool) {
        for _ in 0..120 {
            if f(self) {
                return;
            }
            self.tick();
        }
        panic!("never reached: {what}");
    }
}

fn image(p: &Pod) -> String {
    p.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap()
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref().unwrap().node_name.clone()
}

fn web(replicas: i32, img: &str) -> Deployment {
    let mut spec = pod("default", "x", "100m", "64Mi").spec.unwrap();
    spec.containers[0].image = Some(img.into());
    spec.containers[0].ports = Some(vec![ContainerPort {
        name: Some("http".into()),
        container_port: 8080,
        ..Default::default()
    }]);
    let mut d = gabang_controllers::fixtures::deployment("default", "web", replicas, Some(spec));
    if let Some(s) = d.spec.as_mut() {
        s.strategy = Some(DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::Int(1)),
                max_unavailable: Some(IntOrString::Int(1)),
            }),
        });
    }
    d
}

fn all_ready(w: &World, n: usize, img: &str) -> bool {
    let pods = w.pods();
    pods.len() == n && pods.iter().all(|p| ready(p) && image(p) == img)
}

#[test]
fn scale_up_down_spread_and_rolling_update() {
    let mut w = World::new(&["n1", "n2", "n3"]);
    w.c.create(&web(3, "v1")).unwrap();
    w.until("3 ready", |w| all_ready(w, 3, "v1"));
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for p in w.pods() {
        *per_node.entry(node_of(&p).unwrap()).or_default() += 1;
    }
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        vec![1, 1, 1],
        "spread across nodes"
    );
    w.until("status available", |w| {
        w.deployment().status.and_then(|s| s.available_replicas) == Some(3)
    });

    // Scale up and down.
    let mut d = w.deployment();
    d.spec.as_mut().unwrap().replicas = Some(7);
    w.c.update(&d).unwrap();
    w.until("7 ready", |w| all_ready(w, 7, "v1"));
    let mut d = w.deployment();
    d.spec.as_mut().unwrap().replicas = Some(4);
    w.c.update(&d).unwrap();
    w.until("4 ready", |w| all_ready(w, 4, "v1"));
    assert_eq!(w.c.count::<ReplicaSet>(), 1);

    // Rolling update: at every tick at most 4+1 pods, at least 4-1 ready.
    let mut d = w.deployment();
    d.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = Some("v2".into());
    w.c.update(&d).unwrap();
    for _ in 0..60 {
        w.tick();
        let pods = w.pods();
        assert!(pods.len() <= 5, "surge bound broken: {} pods", pods.len());
        assert!(
            pods.iter().filter(|p| ready(p)).count() >= 3,
            "unavailability bound broken"
        );
        if all_ready(&w, 4, "v2") {
            break;
        }
    }
    w.until("rollout done", |w| all_ready(w, 4, "v2"));
    w.until("status complete", |w| {
        let d = w.deployment();
        let s = d.status.unwrap();
        s.updated_replicas == Some(4)
            && s.available_replicas == Some(4)
            && s.replicas == Some(4)
            && s.observed_generation == d.metadata.generation
            && s.conditions.unwrap().iter().any(|c| {
                c.type_ == "Progressing" && c.reason.as_deref() == Some("NewReplicaSetAvailable")
            })
    });
    assert_eq!(
        w.deployment()
            .metadata
            .annotations
            .unwrap()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("2")
    );

    // A Service gets the ready pods on the named port.
    w.c.create(&Service {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            name: Some("web".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(labels(&[("app", "web")])),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::String("http".into())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    })
    .unwrap();
    w.tick();
    let ep = w.c.get::<Endpoints>("default", "web").unwrap().unwrap();
    let subset = &ep.subsets.unwrap()[0];
    assert_eq!(subset.addresses.as_ref().unwrap().len(), 4);
    assert_eq!(subset.ports.as_ref().unwrap()[0].port, 8080);

    // Deleting the Deployment (background) removes ReplicaSets and pods through the GC.
    w.c.delete::<Deployment>("default", "web", Propagation::Background)
        .unwrap();
    w.until("all gone", |w| {
        w.c.count::<ReplicaSet>() == 0 && w.pods().is_empty()
    });
}

#[test]
fn node_loss_replaces_pods_elsewhere_within_a_minute() {
    let mut w = World::new(&["n1", "n2", "n3"]);
    w.c.create(&web(6, "v1")).unwrap();
    w.until("6 ready", |w| all_ready(w, 6, "v1"));
    let on_n1 = w
        .pods()
        .iter()
        .filter(|p| node_of(p).as_deref() == Some("n1"))
        .count();
    assert!(on_n1 > 0);
    // n1 stops renewing its lease.
    w.live = vec!["n2", "n3"];
    let lost_at = w.clock.now();
    w.until("replacements ready on n2/n3", |w| {
        let pods = w.pods();
        pods.len() == 6
            && pods
                .iter()
                .all(|p| ready(p) && node_of(p).as_deref() != Some("n1"))
    });
    let took = w.clock.now() - lost_at;
    eprintln!(
        "node loss: replacements ready {}s after the last renewal (grace 40s)",
        took.num_seconds()
    );
    assert!(took <= Duration::seconds(60), "replacement took {took}");
    let n1 = w.c.get::<Node>("", "n1").unwrap().unwrap();
    let cond = n1
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(cond.status, "Unknown");
    // n1 comes back: taint removed, Ready again.
    w.live = vec!["n1", "n2", "n3"];
    w.tick();
    w.tick();
    let n1 = w.c.get::<Node>("", "n1").unwrap().unwrap();
    assert!(n1.spec.unwrap().taints.unwrap_or_default().is_empty());
}

#[test]
fn unschedulable_pod_gets_one_event_per_reason() {
    let mut w = World::new(&["n1", "n2"]);
    w.c.create(&pod("default", "huge", "64", "")).unwrap();
    w.tick();
    w.tick();
    let events = w.c.list::<Event>().unwrap();
    assert_eq!(
        events.len(),
        1,
        "no duplicate events for an unchanged reason"
    );
    assert_eq!(events[0].reason.as_deref(), Some("FailedScheduling"));
    assert_eq!(
        events[0].message.as_deref(),
        Some("0/2 nodes are available: 2 Insufficient cpu.")
    );
    let p = w.c.get::<Pod>("default", "huge").unwrap().unwrap();
    assert!(node_of(&p).is_none());
    assert!(p
        .status
        .unwrap()
        .conditions
        .unwrap()
        .iter()
        .any(|c| c.type_ == "PodScheduled" && c.status == "False"));
}

#[test]
fn namespace_deletion_removes_everything_inside() {
    let mut w = World::new(&["n1"]);
    w.c.create(&Namespace {
        metadata: ObjectMeta {
            name: Some("team".into()),
            ..Default::default()
        },
        spec: Some(NamespaceSpec {
            finalizers: Some(vec!["kubernetes".into()]),
        }),
        status: None,
    })
    .unwrap();
    let mut d = web(2, "v1");
    d.metadata.namespace = Some("team".into());
    w.c.create(&d).unwrap();
    w.c.create(&web(1, "v1")).unwrap();
    w.until("3 pods ready", |w| {
        w.pods().iter().filter(|p| ready(p)).count() == 3
    });
    w.c.delete::<Namespace>("", "team", Propagation::Background)
        .unwrap();
    w.until("team empty and gone", |w| {
        w.pods()
            .iter()
            .all(|p| p.metadata.namespace.as_deref() == Some("default"))
            && w.c.get::<Namespace>("", "team").unwrap().is_none()
    });
    assert_eq!(w.pods().len(), 1, "default namespace untouched");
    // Foreground deletion: the Deployment stays until its ReplicaSet and pods are gone.
    w.c.delete::<Deployment>("default", "web", Propagation::Foreground)
        .unwrap();
    w.tick();
    assert!(w.c.get::<Deployment>("default", "web").unwrap().is_some() || w.pods().is_empty());
    w.until("foreground done", |w| {
        w.c.get::<Deployment>("default", "web").unwrap().is_none()
    });
    assert!(w.pods().is_empty() && w.c.count::<ReplicaSet>() == 0);
}

fn owned_by(name: &str, owner: &ObjectMeta, kind: &str, block: bool) -> ObjectMeta {
    ObjectMeta {
        namespace: Some("default".into()),
        name: Some(name.into()),
        owner_references: Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: kind.into(),
            name: owner.name.clone().unwrap(),
            uid: owner.uid.clone().unwrap(),
            controller: None,
            block_owner_deletion: Some(block),
        }]),
        ..Default::default()
    }
}

/// One object of each kind the typed caches do not hold, owned by `owner`.
fn create_dependents(c: &MemCluster, owner: &ObjectMeta, block: bool) {
    let m = |n: &str| owned_by(n, owner, "Deployment", block);
    c.create(&ConfigMap {
        metadata: m("cm"),
        ..Default::default()
    })
    .unwrap();
    c.create(&Secret {
        metadata: m("secret"),
        ..Default::default()
    })
    .unwrap();
    c.create(&ServiceAccount {
        metadata: m("sa"),
        ..Default::default()
    })
    .unwrap();
    c.create(&Ingress {
        metadata: m("ing"),
        ..Default::default()
    })
    .unwrap();
    c.create(&Lease {
        metadata: m("lease"),
        ..Default::default()
    })
    .unwrap();
}

fn dependents_left(c: &MemCluster) -> usize {
    c.count::<ConfigMap>()
        + c.count::<Secret>()
        + c.count::<ServiceAccount>()
        + c.count::<Ingress>()
        + c.list::<Lease>()
            .unwrap()
            .iter()
            .filter(|l| l.metadata.namespace.as_deref() == Some("default"))
            .count()
}

#[test]
fn gc_covers_every_served_kind_background_foreground_and_orphan() {
    let mut w = World::new(&["n1"]);
    // Background: everything a deleted Deployment owned goes, whatever its kind.
    let d = w.c.create(&web(1, "v1")).unwrap();
    create_dependents(&w.c, &d.metadata, false);
    w.until("1 ready", |w| all_ready(w, 1, "v1"));
    assert_eq!(dependents_left(&w.c), 5);
    w.c.delete::<Deployment>("default", "web", Propagation::Background)
        .unwrap();
    w.until("dependents of every kind collected", |w| {
        dependents_left(&w.c) == 0 && w.pods().is_empty()
    });

    // Orphan: the dependents stay, without the reference to the deleted owner.
    let d = w.c.create(&web(1, "v1")).unwrap();
    create_dependents(&w.c, &d.metadata, true);
    w.tick();
    w.c.delete::<Deployment>("default", "web", Propagation::Orphan)
        .unwrap();
    w.until("owner gone", |w| {
        w.c.get::<Deployment>("default", "web").unwrap().is_none()
    });
    for _ in 0..3 {
        w.tick();
    }
    assert_eq!(dependents_left(&w.c), 5, "orphans are kept");
    let cm = w.c.get::<ConfigMap>("default", "cm").unwrap().unwrap();
    assert!(cm.metadata.owner_references.unwrap_or_default().is_empty());
    let sa = w.c.get::<ServiceAccount>("default", "sa").unwrap().unwrap();
    assert!(sa.metadata.owner_references.unwrap_or_default().is_empty());
    assert_eq!(w.c.count::<ReplicaSet>(), 1, "its ReplicaSet orphaned too");

    // Foreground: the owner stays until its blocking ConfigMap is gone.
    let mut d2 = web(0, "v1");
    d2.metadata.name = Some("fg".into());
    let d2 = w.c.create(&d2).unwrap();
    w.c.create(&ConfigMap {
        metadata: owned_by("fg-cm", &d2.metadata, "Deployment", true),
        ..Default::default()
    })
    .unwrap();
    w.tick();
    w.c.delete::<Deployment>("default", "fg", Propagation::Foreground)
        .unwrap();
    assert!(
        w.c.get::<Deployment>("default", "fg").unwrap().is_some(),
        "kept while a blocking dependent exists"
    );
    w.until("foreground deletion done", |w| {
        w.c.get::<Deployment>("default", "fg").unwrap().is_none()
    });
    assert!(w.c.get::<ConfigMap>("default", "fg-cm").unwrap().is_none());
}

#[test]
fn a_deleted_service_takes_its_endpoints_and_slices() {
    let mut w = World::new(&["n1"]);
    w.c.create(&web(2, "v1")).unwrap();
    w.c.create(&service("default", "web", &[("app", "web")], 80))
        .unwrap();
    w.until("endpoints and a slice", |w| {
        w.c.get::<Endpoints>("default", "web").unwrap().is_some()
            && w.c.count::<EndpointSlice>() == 1
            && all_ready(w, 2, "v1")
    });
    w.c.delete::<Service>("default", "web", Propagation::Background)
        .unwrap();
    w.tick();
    assert!(w.c.get::<Endpoints>("default", "web").unwrap().is_none());
    assert_eq!(w.c.count::<EndpointSlice>(), 0);
    // The pods are not the Service's: they stay.
    assert_eq!(w.pods().len(), 2);
}

fn events_with(c: &MemCluster, reason: &str) -> Vec<Event> {
    c.list::<Event>()
        .unwrap()
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

#[test]
fn binding_and_eviction_are_reported_as_events() {
    let mut w = World::new(&["n1", "n2"]);
    w.c.create(&web(2, "v1")).unwrap();
    w.until("2 ready", |w| all_ready(w, 2, "v1"));
    let scheduled = events_with(&w.c, "Scheduled");
    assert_eq!(scheduled.len(), 2, "one Scheduled event per bound pod");
    for p in w.pods() {
        let name = p.metadata.name.clone().unwrap();
        let e = scheduled
            .iter()
            .find(|e| e.involved_object.name.as_deref() == Some(name.as_str()))
            .expect("an event for each pod");
        assert_eq!(
            e.message.as_deref(),
            Some(
                format!(
                    "Successfully assigned default/{name} to {}",
                    node_of(&p).unwrap()
                )
                .as_str()
            )
        );
        assert_eq!(e.type_.as_deref(), Some("Normal"));
        assert_eq!(e.involved_object.uid, p.metadata.uid);
        assert_eq!(
            e.source.as_ref().and_then(|s| s.component.as_deref()),
            Some("default-scheduler")
        );
    }
    let on_n1: Vec<String> = w
        .pods()
        .iter()
        .filter(|p| node_of(p).as_deref() == Some("n1"))
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(on_n1.len(), 1, "spread over both nodes");
    w.live = vec!["n2"];
    w.until("evicted", |w| {
        !events_with(&w.c, "TaintManagerEviction").is_empty()
    });
    let ev = events_with(&w.c, "TaintManagerEviction");
    assert_eq!(ev.len(), 1);
    assert_eq!(
        ev[0].involved_object.name.as_deref(),
        Some(on_n1[0].as_str())
    );
    assert_eq!(
        ev[0].message.as_deref(),
        Some(
            format!(
                "Marking for deletion Pod default/{}: Node n1 is unreachable: taint node.kubernetes.io/unreachable:NoExecute",
                on_n1[0]
            )
            .as_str()
        )
    );
    w.until("replacement on n2", |w| all_ready(w, 2, "v1"));
    assert_eq!(events_with(&w.c, "Scheduled").len(), 3);
}
