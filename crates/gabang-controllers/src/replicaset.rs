//! The ReplicaSet reconciler: pods from the template until `replicas` are active.
//!
//! [`reconcile`] takes one ReplicaSet and the pods of its namespace and returns the actions
//! (create, delete, adopt, release) plus the status to write. [`Expectations`] remember what
//! was asked for and not yet seen in the cache, so one gap never creates twice: until the
//! watch has reported every create/delete (or the expectation expires), no new pod actions
//! are issued for that ReplicaSet.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::chrono::{DateTime, Duration, Utc};

use crate::common::{
    controller_ref, pod_active, pod_available, pod_ready, pod_ready_since, selector_matches,
    ObjectKey,
};

/// At most this many creates or deletes per sync (Kubernetes' burstReplicas).
pub const BURST_REPLICAS: usize = 500;
/// Expectations older than this are considered satisfied (the watch may have missed events).
pub const EXPECTATIONS_TTL_SECONDS: i64 = 300;

/// A change to a pod the controller asks the API server for.
#[derive(Debug, Clone, PartialEq)]
pub enum PodAction {
    /// POST the pod (its `metadata.generateName` is `<rs>-`).
    Create(Box<Pod>),
    Delete(ObjectKey),
    /// Replace the pod's ownerReferences: adoption (ours added) or release (ours removed).
    SetOwnerReferences {
        pod: ObjectKey,
        owner_references: Vec<OwnerReference>,
    },
}

#[derive(Debug, Clone)]
struct Expectation {
    adds: i64,
    dels: i64,
    /// Pods (`namespace/name`) asked to be deleted and not yet seen going: each lowers
    /// `dels` once, however many times its deletion is observed.
    deleting: HashSet<String>,
    set_at: DateTime<Utc>,
}

/// Outstanding creates/deletes per controller key (`namespace/name`).
#[derive(Debug, Default, Clone)]
pub struct Expectations {
    map: HashMap<String, Expectation>,
}

impl Expectations {
    /// Nothing outstanding (or the record expired): the controller may act again.
    pub fn satisfied(&self, key: &str, now: DateTime<Utc>) -> bool {
        match self.map.get(key) {
            None => true,
            Some(e) => {
                (e.adds <= 0 && e.dels <= 0)
                    || now - e.set_at > Duration::seconds(EXPECTATIONS_TTL_SECONDS)
            }
        }
    }
    pub fn expect(&mut self, key: &str, adds: i64, dels: i64, now: DateTime<Utc>) {
        self.map.insert(
            key.to_string(),
            Expectation {
                adds,
                dels,
                deleting: HashSet::new(),
                set_at: now,
            },
        );
    }
    /// Expect `adds` creates and the deletion of exactly these pods (`namespace/name`).
    pub fn expect_pods(&mut self, key: &str, adds: i64, deletes: &[String], now: DateTime<Utc>) {
        self.map.insert(
            key.to_string(),
            Expectation {
                adds,
                dels: deletes.len() as i64,
                deleting: deletes.iter().cloned().collect(),
                set_at: now,
            },
        );
    }
    /// The watch saw `pod` deleted or marked for deletion (or our delete of it failed):
    /// lowers the deletions once per pod we asked to delete; other pods do not count.
    pub fn pod_deletion_observed(&mut self, key: &str, pod: &str) {
        if let Some(e) = self.map.get_mut(key) {
            if e.deleting.remove(pod) {
                e.dels -= 1;
            }
        }
    }
    /// The watch saw a pod of this controller created (or the create failed).
    pub fn creation_observed(&mut self, key: &str) {
        if let Some(e) = self.map.get_mut(key) {
            e.adds -= 1;
        }
    }
    /// The watch saw a pod of this controller deleted (or the delete failed).
    pub fn deletion_observed(&mut self, key: &str) {
        if let Some(e) = self.map.get_mut(key) {
            e.dels -= 1;
        }
    }
    pub fn forget(&mut self, key: &str) {
        self.map.remove(key);
    }
}

/// What one sync decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub actions: Vec<PodAction>,
    pub status: ReplicaSetStatus,
}

/// The owner reference a ReplicaSet puts on its pods.
pub fn owner_ref(rs: &ReplicaSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: rs.metadata.name.clone().unwrap_or_default(),
        uid: rs.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A new pod from the ReplicaSet's template.
pub fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let tmpl = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let tmeta = tmpl.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.metadata.name.as_deref().unwrap_or(""))),
            namespace: rs.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner_ref(rs)]),
            ..Default::default()
        },
        spec: tmpl.spec,
        status: None,
    }
}

fn phase_rank(p: &Pod) -> u8 {
    match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Running") => 2,
        _ => 1, // Unknown
    }
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

/// Sort so the pods to delete first come first (Kubernetes' `ActivePods` order): unassigned
/// before assigned, Pending < Unknown < Running, not ready before ready, ready for less time
/// first, more restarts first, newer first.
pub fn rank_for_deletion(pods: &mut [&Pod]) {
    pods.sort_by(|a, b| {
        let assigned = |p: &Pod| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some_and(|n| !n.is_empty())
        };
        let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let ready_since = |p: &Pod| pod_ready_since(p).flatten();
        assigned(a)
            .cmp(&assigned(b))
            .then(phase_rank(a).cmp(&phase_rank(b)))
            .then(pod_ready(a).cmp(&pod_ready(b)))
            .then_with(|| match (ready_since(a), ready_since(b)) {
                (Some(x), Some(y)) => y.cmp(&x),
                _ => std::cmp::Ordering::Equal,
            })
            .then(restarts(b).cmp(&restarts(a)))
            .then(created(b).cmp(&created(a)))
    });
}

/// One sync of `rs` against the pods of its namespace at time `now`.
pub fn reconcile<P: Borrow<Pod>>(
    rs: &ReplicaSet,
    pods: &[P],
    exp: &mut Expectations,
    now: DateTime<Utc>,
) -> Outcome {
    let key = ObjectKey::of(&rs.metadata).to_string();
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let spec = rs.spec.clone().unwrap_or_default();
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let mut actions = Vec::new();
    let mut owned: Vec<&Pod> = Vec::new();
    for p in pods {
        let p: &Pod = p.borrow();
        if p.metadata.namespace != rs.metadata.namespace {
            continue;
        }
        let matches = selector_matches(&spec.selector, p.metadata.labels.as_ref());
        match controller_ref(&p.metadata) {
            Some(r) if r.uid == uid => {
                if matches {
                    owned.push(p);
                } else if p.metadata.deletion_timestamp.is_none() {
                    // Release: the pod stopped matching; drop our reference.
                    let refs = p
                        .metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .filter(|r| r.uid != uid)
                        .cloned()
                        .collect();
                    actions.push(PodAction::SetOwnerReferences {
                        pod: ObjectKey::of(&p.metadata),
                        owner_references: refs,
                    });
                }
            }
            Some(_) => {}
            None => {
                let selects_something = spec
                    .selector
                    .match_labels
                    .as_ref()
                    .is_some_and(|m| !m.is_empty())
                    || spec
                        .selector
                        .match_expressions
                        .as_ref()
                        .is_some_and(|e| !e.is_empty());
                if matches
                    && selects_something
                    && !deleting
                    && p.metadata.deletion_timestamp.is_none()
                {
                    let mut refs: Vec<OwnerReference> =
                        p.metadata.owner_references.clone().unwrap_or_default();
                    refs.push(owner_ref(rs));
                    actions.push(PodAction::SetOwnerReferences {
                        pod: ObjectKey::of(&p.metadata),
                        owner_references: refs,
                    });
                    owned.push(p);
                }
            }
        }
    }
    let mut active: Vec<&Pod> = owned.iter().copied().filter(|p| pod_active(p)).collect();
    let want = spec.replicas.unwrap_or(1).max(0) as usize;
    if !deleting && exp.satisfied(&key, now) {
        if active.len() < want {
            let n = (want - active.len()).min(BURST_REPLICAS);
            exp.expect(&key, n as i64, 0, now);
            for _ in 0..n {
                actions.push(PodAction::Create(Box::new(pod_from_template(rs))));
            }
        } else if active.len() > want {
            let n = (active.len() - want).min(BURST_REPLICAS);
            rank_for_deletion(&mut active);
            let doomed: Vec<String> = active[..n]
                .iter()
                .map(|p| ObjectKey::of(&p.metadata).to_string())
                .collect();
            exp.expect_pods(&key, 0, &doomed, now);
            for p in &active[..n] {
                actions.push(PodAction::Delete(ObjectKey::of(&p.metadata)));
            }
        }
    }
    Outcome {
        actions,
        status: status(rs, &active, now),
    }
}

/// Status from the active owned pods.
pub fn status(rs: &ReplicaSet, active: &[&Pod], now: DateTime<Utc>) -> ReplicaSetStatus {
    let spec = rs.spec.clone().unwrap_or_default();
    let tmpl_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let count = |f: &dyn Fn(&Pod) -> bool| active.iter().filter(|p| f(p)).count() as i32;
    ReplicaSetStatus {
        replicas: active.len() as i32,
        fully_labeled_replicas: Some(count(&|p| {
            let l = p.metadata.labels.clone().unwrap_or_default();
            tmpl_labels.iter().all(|(k, v)| l.get(k) == Some(v))
        })),
        ready_replicas: Some(count(&|p| pod_ready(p))),
        available_replicas: Some(count(&|p| pod_available(p, min_ready, now))),
        observed_generation: rs.metadata.generation,
        conditions: rs.status.as_ref().and_then(|s| s.conditions.clone()),
    }
}

#[cfg(test)]
mod tests;
