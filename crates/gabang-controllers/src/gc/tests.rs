use super::*;
use k8s_openapi::api::core::v1::NamespaceSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::chrono::{TimeZone, Utc};

fn obj(kind: &str, ns: &str, name: &str, owners: &[(&str, &str, bool)]) -> ObjInfo {
    ObjInfo {
        obj: ObjRef {
            api_version: "v1".into(),
            kind: kind.into(),
            namespace: Some(ns.into()),
            name: name.into(),
            uid: format!("uid-{name}"),
        },
        owner_references: owners
            .iter()
            .map(|(k, n, block)| OwnerReference {
                api_version: "apps/v1".into(),
                kind: k.to_string(),
                name: n.to_string(),
                uid: format!("uid-{n}"),
                controller: Some(true),
                block_owner_deletion: Some(*block),
            })
            .collect(),
        finalizers: vec![],
        deleting: false,
    }
}

fn kinds() -> HashSet<String> {
    ["Deployment", "ReplicaSet", "Pod", "Service"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// A tiny API server: applies GC actions with Kubernetes' deletion semantics.
struct Store {
    objs: Vec<ObjInfo>,
    namespaces: Vec<Namespace>,
}

impl Store {
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.objs.iter().map(|o| o.obj.name.clone()).collect();
        v.sort();
        v
    }
    fn maybe_remove(&mut self, uid: &str) {
        self.objs
            .retain(|o| !(o.obj.uid == uid && o.deleting && o.finalizers.is_empty()));
    }
    /// A user's DELETE with a propagation policy.
    fn delete(&mut self, uid: &str, p: Propagation) {
        if let Some(o) = self.objs.iter_mut().find(|o| o.obj.uid == uid) {
            if o.deleting {
                return;
            }
            o.deleting = true;
            match p {
                Propagation::Foreground => o.finalizers.push(FOREGROUND.into()),
                Propagation::Orphan => o.finalizers.push(ORPHAN.into()),
                Propagation::Background => {}
            }
        }
        self.maybe_remove(uid);
    }
    /// Run the GC until it has nothing to do; returns the order objects disappeared in.
    fn run_gc(&mut self) -> Vec<String> {
        let mut gone = Vec::new();
        for _ in 0..50 {
            let before = self.names();
            let actions = reconcile(&self.objs, &self.namespaces, &kinds());
            if actions.is_empty() {
                return gone;
            }
            for a in actions {
                match a {
                    GcAction::Delete { obj, propagation } => self.delete(&obj.uid, propagation),
                    GcAction::SetOwnerReferences {
                        obj,
                        owner_references,
                    } => {
                        if let Some(o) = self.objs.iter_mut().find(|o| o.obj.uid == obj.uid) {
                            o.owner_references = owner_references;
                        }
                    }
                    GcAction::RemoveFinalizer { obj, finalizer } => {
                        if let Some(o) = self.objs.iter_mut().find(|o| o.obj.uid == obj.uid) {
                            o.finalizers.retain(|f| *f != finalizer);
                        }
                        self.maybe_remove(&obj.uid);
                    }
                    GcAction::FinalizeNamespace { name } => {
                        self.namespaces
                            .retain(|n| n.metadata.name.as_deref() != Some(name.as_str()));
                    }
                }
            }
            for n in before {
                if !self.names().contains(&n) {
                    gone.push(n);
                }
            }
        }
        panic!("GC did not converge");
    }
}

fn cluster() -> Store {
    Store {
        objs: vec![
            obj("Deployment", "ns", "web", &[]),
            obj("ReplicaSet", "ns", "web-rs", &[("Deployment", "web", true)]),
            obj("Pod", "ns", "web-rs-a", &[("ReplicaSet", "web-rs", true)]),
            obj("Pod", "ns", "web-rs-b", &[("ReplicaSet", "web-rs", true)]),
            obj("Pod", "ns", "lonely", &[]),
        ],
        namespaces: vec![],
    }
}

#[test]
fn background_deletes_dependents_of_gone_owners() {
    let mut s = cluster();
    s.delete("uid-web", Propagation::Background);
    assert_eq!(s.names(), vec!["lonely", "web-rs", "web-rs-a", "web-rs-b"]);
    let gone = s.run_gc();
    assert_eq!(gone, vec!["web-rs", "web-rs-a", "web-rs-b"]);
    assert_eq!(s.names(), vec!["lonely"]);
    assert!(reconcile(&s.objs, &[], &kinds()).is_empty());
}

#[test]
fn foreground_owner_waits_for_blocking_dependents() {
    let mut s = cluster();
    s.delete("uid-web", Propagation::Foreground);
    let gone = s.run_gc();
    // Pods first, then their ReplicaSet, then the Deployment.
    assert_eq!(gone, vec!["web-rs-a", "web-rs-b", "web-rs", "web"]);
    assert_eq!(s.names(), vec!["lonely"]);
}

#[test]
fn orphan_keeps_dependents_and_removes_references() {
    let mut s = cluster();
    s.delete("uid-web-rs", Propagation::Orphan);
    s.run_gc();
    assert_eq!(s.names(), vec!["lonely", "web", "web-rs-a", "web-rs-b"]);
    assert!(s
        .objs
        .iter()
        .filter(|o| o.obj.kind == "Pod")
        .all(|o| o.owner_references.is_empty()));
}

#[test]
fn dangling_references_dropped_when_another_owner_lives() {
    let mut s = cluster();
    s.objs.push(obj(
        "Pod",
        "ns",
        "shared",
        &[
            ("ReplicaSet", "gone-rs", false),
            ("Deployment", "web", false),
        ],
    ));
    s.run_gc();
    let shared = s.objs.iter().find(|o| o.obj.name == "shared").unwrap();
    assert_eq!(shared.owner_references.len(), 1);
    assert_eq!(shared.owner_references[0].name, "web");
}

#[test]
fn unknown_owner_kinds_are_not_presumed_gone() {
    let s = Store {
        objs: vec![obj("Pod", "ns", "p", &[("CronJob", "nightly", true)])],
        namespaces: vec![],
    };
    assert!(reconcile(&s.objs, &[], &kinds()).is_empty());
}

#[test]
fn namespace_deletion_empties_then_finalizes() {
    let mut s = cluster();
    s.objs.push(obj("Service", "other", "keep", &[]));
    s.namespaces = vec![Namespace {
        metadata: ObjectMeta {
            name: Some("ns".into()),
            deletion_timestamp: Some(Time(Utc.timestamp_opt(0, 0).unwrap())),
            ..Default::default()
        },
        spec: Some(NamespaceSpec {
            finalizers: Some(vec![NAMESPACE_FINALIZER.into()]),
        }),
        status: None,
    }];
    // The namespace is not finalized while objects remain.
    let first = reconcile(&s.objs, &s.namespaces, &kinds());
    assert!(!first
        .iter()
        .any(|a| matches!(a, GcAction::FinalizeNamespace { .. })));
    s.run_gc();
    assert_eq!(s.names(), vec!["keep"]);
    assert!(s.namespaces.is_empty());
}
