use super::*;
use crate::fixtures::*;
use k8s_openapi::api::apps::v1::ReplicaSetSpec;
use k8s_openapi::api::core::v1::{ContainerStatus, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::chrono::TimeZone;

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
}

pub(crate) fn rs(name: &str, replicas: i32) -> ReplicaSet {
    let tmpl_pod = pod("ns", "x", "100m", "");
    ReplicaSet {
        metadata: ObjectMeta {
            namespace: Some("ns".into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            generation: Some(3),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&[("app", "web"), ("v", "1")])),
                    ..Default::default()
                }),
                spec: tmpl_pod.spec,
            }),
            min_ready_seconds: None,
        }),
        status: None,
    }
}

/// Apply actions like an API server would: names from generateName, uids, timestamps.
fn apply(pods: &mut Vec<Pod>, actions: &[PodAction], seq: &mut u32, now: DateTime<Utc>) {
    for a in actions {
        match a {
            PodAction::Create(p) => {
                let mut p = (**p).clone();
                *seq += 1;
                let name = format!("{}{:05}", p.metadata.generate_name.clone().unwrap(), seq);
                p.metadata.name = Some(name.clone());
                p.metadata.uid = Some(format!("uid-{name}"));
                p.metadata.creation_timestamp = Some(Time(now));
                pods.push(p);
            }
            PodAction::Delete(k) => pods.retain(|p| ObjectKey::of(&p.metadata) != *k),
            PodAction::SetOwnerReferences {
                pod,
                owner_references,
            } => {
                for p in pods
                    .iter_mut()
                    .filter(|p| ObjectKey::of(&p.metadata) == *pod)
                {
                    p.metadata.owner_references = Some(owner_references.clone());
                }
            }
        }
    }
}

fn creates(o: &Outcome) -> usize {
    o.actions
        .iter()
        .filter(|a| matches!(a, PodAction::Create(_)))
        .count()
}

#[test]
fn creates_from_template_once_per_gap() {
    let r = rs("web-abc", 3);
    let mut exp = Expectations::default();
    let mut pods = Vec::new();
    let o = reconcile(&r, &pods, &mut exp, t(0));
    assert_eq!(creates(&o), 3);
    let PodAction::Create(p) = &o.actions[0] else {
        panic!()
    };
    assert_eq!(p.metadata.generate_name.as_deref(), Some("web-abc-"));
    assert_eq!(
        p.metadata.labels,
        Some(labels(&[("app", "web"), ("v", "1")]))
    );
    let or = &p.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (
            or.kind.as_str(),
            or.uid.as_str(),
            or.controller,
            or.block_owner_deletion
        ),
        ("ReplicaSet", "uid-web-abc", Some(true), Some(true))
    );
    // The cache has not seen the creates yet: a second sync must not create again.
    let again = reconcile(&r, &pods, &mut exp, t(1));
    assert_eq!(creates(&again), 0);
    // Two of three creates observed: still nothing new.
    let mut seq = 0;
    apply(&mut pods, &o.actions[..2], &mut seq, t(1));
    exp.creation_observed("ns/web-abc");
    exp.creation_observed("ns/web-abc");
    assert_eq!(creates(&reconcile(&r, &pods, &mut exp, t(2))), 0);
    apply(&mut pods, &o.actions[2..], &mut seq, t(2));
    exp.creation_observed("ns/web-abc");
    let steady = reconcile(&r, &pods, &mut exp, t(3));
    assert!(steady.actions.is_empty(), "{:?}", steady.actions);
    assert_eq!(steady.status.replicas, 3);
    assert_eq!(steady.status.observed_generation, Some(3));
    // Expectations expire, so a lost watch event cannot wedge the ReplicaSet.
    let mut exp2 = Expectations::default();
    exp2.expect("ns/web-abc", 5, 0, t(0));
    assert!(!exp2.satisfied("ns/web-abc", t(10)));
    assert!(exp2.satisfied("ns/web-abc", t(EXPECTATIONS_TTL_SECONDS + 1)));
}

#[test]
fn scale_down_deletes_in_kubernetes_rank_order() {
    let r = rs("web", 1);
    let own = |p: Pod| owned_by(with_pod_labels(p), "ReplicaSet", "web", "uid-web");
    let mut old_ready = running_ready(bound(own(pod("ns", "old-ready", "", "")), "n1"), t(0));
    old_ready.metadata.creation_timestamp = Some(Time(t(0)));
    let mut new_ready = running_ready(bound(own(pod("ns", "new-ready", "", "")), "n1"), t(50));
    new_ready.metadata.creation_timestamp = Some(Time(t(40)));
    let mut crashy = running_ready(bound(own(pod("ns", "crashy", "", "")), "n1"), t(0));
    crashy.metadata.creation_timestamp = Some(Time(t(0)));
    crashy.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
        restart_count: 7,
        ..Default::default()
    }]);
    let mut running_not_ready = bound(own(pod("ns", "running-not-ready", "", "")), "n1");
    running_not_ready.status.as_mut().unwrap().phase = Some("Running".into());
    let pending_bound = bound(own(pod("ns", "pending-bound", "", "")), "n1");
    let unassigned = own(pod("ns", "unassigned", "", ""));
    let pods = vec![
        old_ready,
        new_ready,
        crashy,
        running_not_ready,
        pending_bound,
        unassigned,
    ];
    let o = reconcile(&r, &pods, &mut Expectations::default(), t(100));
    let deleted: Vec<String> = o
        .actions
        .iter()
        .map(|a| match a {
            PodAction::Delete(k) => k.name.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    // new-ready was ready for less time than crashy/old-ready; crashy restarted more than old-ready.
    assert_eq!(
        deleted,
        vec![
            "unassigned",
            "pending-bound",
            "running-not-ready",
            "new-ready",
            "crashy"
        ]
    );
}

fn with_pod_labels(mut p: Pod) -> Pod {
    p.metadata.labels = Some(labels(&[("app", "web"), ("v", "1")]));
    p
}

#[test]
fn adopts_orphans_and_releases_non_matching() {
    let r = rs("web", 2);
    let orphan = with_pod_labels(pod("ns", "orphan", "", ""));
    let mut stray = owned_by(pod("ns", "stray", "", ""), "ReplicaSet", "web", "uid-web");
    stray.metadata.labels = Some(labels(&[("app", "other")]));
    let foreign = owned_by(
        with_pod_labels(pod("ns", "foreign", "", "")),
        "ReplicaSet",
        "x",
        "uid-x",
    );
    let other_ns = with_pod_labels(pod("elsewhere", "o", "", ""));
    let mut dying = with_pod_labels(pod("ns", "dying", "", ""));
    dying.metadata.deletion_timestamp = Some(Time(t(0)));
    let o = reconcile(
        &r,
        &[orphan, stray, foreign, other_ns, dying],
        &mut Expectations::default(),
        t(0),
    );
    let mut adopted = 0;
    let mut released = 0;
    for a in &o.actions {
        match a {
            PodAction::SetOwnerReferences {
                pod,
                owner_references,
            } if pod.name == "orphan" => {
                assert_eq!(owner_references.len(), 1);
                assert_eq!(owner_references[0].uid, "uid-web");
                adopted += 1;
            }
            PodAction::SetOwnerReferences {
                pod,
                owner_references,
            } if pod.name == "stray" => {
                assert!(owner_references.is_empty());
                released += 1;
            }
            PodAction::Create(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((adopted, released), (1, 1));
    // The adopted pod counts: one more is created, not two.
    assert_eq!(creates(&o), 1);
}

#[test]
fn status_counts_ready_available_and_labels() {
    let mut r = rs("web", 3);
    r.spec.as_mut().unwrap().min_ready_seconds = Some(30);
    let own = |p: Pod| owned_by(p, "ReplicaSet", "web", "uid-web");
    let long_ready = running_ready(own(with_pod_labels(pod("ns", "a", "", ""))), t(0));
    let just_ready = running_ready(own(with_pod_labels(pod("ns", "b", "", ""))), t(90));
    let mut partial = own(pod("ns", "c", "", ""));
    partial.metadata.labels = Some(labels(&[("app", "web")]));
    let mut done = own(with_pod_labels(pod("ns", "d", "", "")));
    done.status.as_mut().unwrap().phase = Some("Failed".into());
    let o = reconcile(
        &r,
        &[long_ready, just_ready, partial, done],
        &mut Expectations::default(),
        t(100),
    );
    let s = o.status;
    assert_eq!(s.replicas, 3);
    assert_eq!(s.fully_labeled_replicas, Some(2));
    assert_eq!(s.ready_replicas, Some(2));
    assert_eq!(s.available_replicas, Some(1));
    assert!(
        o.actions.is_empty(),
        "failed pod is not active, 3 active = replicas: {:?}",
        o.actions
    );
}

#[test]
fn replaces_failed_pods_and_stops_when_deleting() {
    let mut r = rs("web", 2);
    let own = |p: Pod| owned_by(with_pod_labels(p), "ReplicaSet", "web", "uid-web");
    let mut failed = own(pod("ns", "f", "", ""));
    failed.status.as_mut().unwrap().phase = Some("Failed".into());
    let pods = vec![own(pod("ns", "ok", "", "")), failed];
    assert_eq!(
        creates(&reconcile(&r, &pods, &mut Expectations::default(), t(0))),
        1
    );
    r.metadata.deletion_timestamp = Some(Time(t(0)));
    assert!(reconcile(&r, &pods, &mut Expectations::default(), t(0))
        .actions
        .is_empty());
}
