//! The Deployment reconciler: ReplicaSets per pod template, rolled out like Kubernetes.
//!
//! [`reconcile`] takes one Deployment, the ReplicaSets and pods of its namespace, and returns
//! ReplicaSet actions, the revision annotation for the Deployment, and its status. The new
//! ReplicaSet is the one whose template equals the Deployment's (ignoring `pod-template-hash`);
//! it is named `<deployment>-<hash>` where the hash is FNV-32a of the template (+ collisionCount)
//! encoded with Kubernetes' `SafeEncodeString` alphabet. The template is hashed from its JSON,
//! not Go's spew dump, so the suffix differs from a real cluster's but plays the same role.
//! RollingUpdate follows `rolloutRolling` (scale the new RS up within maxSurge, then old ones
//! down within maxUnavailable, unhealthy old pods first); Recreate scales old ReplicaSets to 0,
//! waits for their pods to be gone, then scales the new one up. Rollback is a template change
//! back to an old ReplicaSet's: that RS is reused and its revision bumped to the highest.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::chrono::{DateTime, Utc};

use crate::common::{controller_ref, pod_active, ObjectKey};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const HASH_LABEL: &str = "pod-template-hash";
/// What `kubectl rollout history` shows per revision (set by `kubectl annotate` or the
/// deprecated `--record`): kept on the new ReplicaSet as on the Deployment.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";

/// Deployment annotations that are not copied to its ReplicaSets (Kubernetes'
/// `skipCopyAnnotation`, and kubectl's own).
fn skip_copy_annotation(k: &str) -> bool {
    k.starts_with("kubectl.kubernetes.io/")
        || [
            REVISION,
            REVISION_HISTORY,
            DESIRED_REPLICAS,
            MAX_REPLICAS,
            ROLLBACK_TO,
        ]
        .contains(&k)
}

/// Kubernetes' `copyDeploymentAnnotationsToReplicaSet`: the Deployment's annotations (those
/// not skipped) onto `rs`, overwriting; returns whether anything changed.
fn copy_annotations(d: &Deployment, rs: &mut ReplicaSet) -> bool {
    let mut changed = false;
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy_annotation(k) || a.get(k) == Some(v) {
            continue;
        }
        a.insert(k.clone(), v.clone());
        changed = true;
    }
    changed
}

/// A change to a ReplicaSet the controller asks the API server for.
#[derive(Debug, Clone, PartialEq)]
pub enum RsAction {
    Create(Box<ReplicaSet>),
    /// Replace the ReplicaSet (new `spec.replicas` and/or annotations).
    Update(Box<ReplicaSet>),
    Delete(ObjectKey),
}

/// What one sync decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub actions: Vec<RsAction>,
    /// Value for the Deployment's `deployment.kubernetes.io/revision` annotation.
    pub revision: Option<String>,
    pub status: DeploymentStatus,
}

/// FNV-32a, as Go's `hash/fnv` New32a.
fn fnv32a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in data {
        h ^= *b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    h
}

/// Kubernetes' `rand.SafeEncodeString`: no vowels, no confusable characters.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char)
        .collect()
}

fn without_hash(t: &PodTemplateSpec) -> serde_json::Value {
    let mut t = t.clone();
    if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        l.remove(HASH_LABEL);
        if l.is_empty() {
            if let Some(m) = t.metadata.as_mut() {
                m.labels = None;
            }
        }
    }
    serde_json::to_value(&t).unwrap_or(serde_json::Value::Null)
}

/// The pod-template-hash of a template with this collision count.
pub fn pod_template_hash(t: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut data = serde_json::to_vec(&without_hash(t)).unwrap_or_default();
    if let Some(c) = collision_count {
        data.extend_from_slice(&(c as u32).to_le_bytes());
    }
    safe_encode(&fnv32a(&data).to_string())
}

/// Templates equal, ignoring the pod-template-hash label (Kubernetes' `EqualIgnoreHash`).
pub fn templates_equal(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

/// Kubernetes' `GetScaledValueFromIntOrPercent`.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> i32 {
    match v {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => {
            let Some(p) = s
                .strip_suffix('%')
                .and_then(|p| p.trim().parse::<i64>().ok())
            else {
                return 0;
            };
            let x = p * total as i64;
            (if round_up {
                (x + 99).div_euclid(100)
            } else {
                x.div_euclid(100)
            }) as i32
        }
    }
}

/// (maxSurge, maxUnavailable) resolved against `replicas` (`ResolveFenceposts`); defaults 25%/25%;
/// both zero becomes unavailable 1.
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    let replicas = desired(d);
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let pct = IntOrString::String("25%".into());
    let surge = scaled_value(
        ru.and_then(|r| r.max_surge.as_ref()).unwrap_or(&pct),
        replicas,
        true,
    );
    let unavail = scaled_value(
        ru.and_then(|r| r.max_unavailable.as_ref()).unwrap_or(&pct),
        replicas,
        false,
    );
    if surge == 0 && unavail == 0 {
        (0, 1)
    } else {
        (surge, unavail)
    }
}

fn desired(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0)
}

fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// The revision number of a ReplicaSet (0 if absent or unparsable).
pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn is_recreate(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        == Some("Recreate")
}

fn set_replicas(rs: &mut ReplicaSet, n: i32, d: &Deployment) {
    let (surge, _) = fenceposts(d);
    rs.spec.get_or_insert_with(Default::default).replicas = Some(n);
    let a = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    a.insert(DESIRED_REPLICAS.into(), desired(d).to_string());
    a.insert(
        MAX_REPLICAS.into(),
        (desired(d) + if is_recreate(d) { 0 } else { surge }).to_string(),
    );
}

/// Working set of one sync: the ReplicaSets as they will be after the actions.
struct World<'a> {
    d: &'a Deployment,
    new: Option<usize>,
    rss: Vec<ReplicaSet>,
    actions: Vec<RsAction>,
}

impl World<'_> {
    fn olds(&self) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.rss.len())
            .filter(|i| Some(*i) != self.new)
            .collect();
        v.sort_by(|&a, &b| {
            let ca = self.rss[a]
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0);
            let cb = self.rss[b]
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0);
            ca.cmp(&cb)
                .then(self.rss[a].metadata.name.cmp(&self.rss[b].metadata.name))
        });
        v
    }
    fn scale(&mut self, i: usize, n: i32) -> bool {
        if spec_replicas(&self.rss[i]) == n {
            return false;
        }
        let d = self.d;
        set_replicas(&mut self.rss[i], n, d);
        self.push_update(i);
        true
    }
    /// Like `scale`, but also when only the size annotations are out of date (kube's
    /// `scaleReplicaSet`: otherwise the scaling event would be seen again).
    fn scale_annotated(&mut self, i: usize, n: i32) -> bool {
        let d = self.d;
        let mut want = self.rss[i].clone();
        set_replicas(&mut want, n, d);
        if want.spec == self.rss[i].spec
            && want.metadata.annotations == self.rss[i].metadata.annotations
        {
            return false;
        }
        self.rss[i] = want;
        self.push_update(i);
        true
    }
    /// One update per RS per sync: a later change replaces an earlier one (two PUTs of the
    /// same resourceVersion would conflict).
    fn push_update(&mut self, i: usize) {
        let rs = self.rss[i].clone();
        if let Some(slot) = self
            .actions
            .iter_mut()
            .find(|a| matches!(a, RsAction::Update(u) if u.metadata.name == rs.metadata.name))
        {
            *slot = RsAction::Update(Box::new(rs));
        } else {
            self.actions.push(RsAction::Update(Box::new(rs)));
        }
    }
    fn total_spec(&self) -> i32 {
        self.rss.iter().map(spec_replicas).sum()
    }
}

fn owner_ref(d: &Deployment) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: d.metadata.name.clone().unwrap_or_default(),
        uid: d.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The new ReplicaSet object for the Deployment's current template.
pub fn new_replica_set(
    d: &Deployment,
    replicas: i32,
    revision: i64,
    now: DateTime<Utc>,
) -> ReplicaSet {
    let spec = d.spec.clone().unwrap_or_default();
    let collision = d.status.as_ref().and_then(|s| s.collision_count);
    let hash = pod_template_hash(&spec.template, collision);
    let mut template = spec.template.clone();
    let tm = template.metadata.get_or_insert_with(Default::default);
    tm.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(HASH_LABEL.into(), hash.clone());
    let mut selector = spec.selector.clone();
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(HASH_LABEL.into(), hash.clone());
    let mut annotations = d.metadata.annotations.clone().unwrap_or_default();
    annotations.retain(|k, _| !skip_copy_annotation(k));
    annotations.insert(REVISION.into(), revision.to_string());
    let mut rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!(
                "{}-{}",
                d.metadata.name.as_deref().unwrap_or(""),
                hash
            )),
            namespace: d.metadata.namespace.clone(),
            labels: tm.labels.clone(),
            annotations: Some(annotations),
            owner_references: Some(vec![owner_ref(d)]),
            creation_timestamp: Some(Time(now)),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(0),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    };
    set_replicas(&mut rs, replicas, d);
    rs
}

/// One sync of `d` against the ReplicaSets and pods of its namespace.
pub fn reconcile<P: Borrow<Pod>>(
    d: &Deployment,
    replica_sets: &[ReplicaSet],
    pods: &[P],
    now: DateTime<Utc>,
) -> Outcome {
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let spec = d.spec.clone().unwrap_or_default();
    let rss: Vec<ReplicaSet> = replica_sets
        .iter()
        .filter(|rs| rs.metadata.namespace == d.metadata.namespace)
        .filter(|rs| controller_ref(&rs.metadata).is_some_and(|r| r.uid == uid))
        .cloned()
        .collect();
    // The new RS: template equal; the oldest if several.
    let mut new = None;
    for (i, rs) in rss.iter().enumerate() {
        if rs
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| templates_equal(t, &spec.template))
        {
            let older = |j: usize| {
                rss[j].metadata.creation_timestamp.as_ref().map(|t| t.0)
                    > rs.metadata.creation_timestamp.as_ref().map(|t| t.0)
            };
            if new.is_none_or(older) {
                new = Some(i);
            }
        }
    }
    let mut w = World {
        d,
        new,
        rss,
        actions: Vec::new(),
    };
    let max_old_rev = w
        .olds()
        .iter()
        .map(|&i| revision(&w.rss[i]))
        .max()
        .unwrap_or(0);
    let paused = spec.paused.unwrap_or(false);
    let deleting = d.metadata.deletion_timestamp.is_some();
    let mut created = false;
    let mut progressed = false;

    // Revision: the new RS always carries the highest revision (bumped on rollback), and the
    // Deployment's annotations (its change-cause: what `rollout history` shows).
    if let Some(i) = w.new {
        let mut changed = copy_annotations(d, &mut w.rss[i]);
        if revision(&w.rss[i]) <= max_old_rev {
            w.rss[i]
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(REVISION.into(), (max_old_rev + 1).to_string());
            changed = true;
        }
        if changed {
            w.push_update(i);
        }
    }

    let active = w.rss.iter().filter(|rs| spec_replicas(rs) > 0).count();
    if !deleting && is_scaling_event(&w) && (!is_recreate(d) || active <= 1) {
        // replicas changed (also while paused or mid-rollout): resize first (kube's `scale`).
        progressed = scale_proportionally(&mut w);
    } else if !deleting && !paused {
        if is_recreate(d) {
            progressed = rollout_recreate(&mut w, pods, max_old_rev, now, &mut created);
        } else {
            progressed = rollout_rolling(&mut w, max_old_rev, now, &mut created);
        }
    }
    if !deleting {
        cleanup(
            &mut w,
            spec.revision_history_limit.unwrap_or(10).max(0) as usize,
        );
    }
    let rev = w.new.map(|i| revision(&w.rss[i]).to_string());
    let status = status(&w, created, progressed, paused, now);
    Outcome {
        actions: w.actions,
        revision: rev,
        status,
    }
}

/// Kube's `isScalingEvent`: an active ReplicaSet was sized for another `replicas`.
fn is_scaling_event(w: &World<'_>) -> bool {
    let want = desired(w.d);
    w.rss.iter().filter(|rs| spec_replicas(rs) > 0).any(|rs| {
        rs.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(DESIRED_REPLICAS))
            .and_then(|v| v.parse::<i32>().ok())
            .is_some_and(|v| v != want)
    })
}

/// Kube's `getReplicaSetFraction`: how many replicas `rs` gains (or loses) when the
/// Deployment's allowed size goes from its `max-replicas` annotation to replicas + maxSurge.
fn replica_set_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    let want = desired(d);
    let r = spec_replicas(rs);
    if want == 0 {
        return -r;
    }
    let allowed = want + if is_recreate(d) { 0 } else { fenceposts(d).0 };
    let annotated = rs
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MAX_REPLICAS))
        .and_then(|v| v.parse::<i32>().ok())
        .or_else(|| d.status.as_ref().and_then(|s| s.replicas))
        .unwrap_or(0);
    if annotated <= 0 {
        return 0;
    }
    let size = (r as f64 * allowed as f64 / annotated as f64).round() as i32;
    size - r
}

/// Kube's `scale`: spread a change of `replicas` over the active ReplicaSets in proportion
/// to their sizes (larger first; the rounding leftover goes to the first), within
/// replicas + maxSurge. One active ReplicaSet simply takes the new size; a saturated new one
/// leaves the old ones at zero. Returns whether anything changed.
fn scale_proportionally(w: &mut World<'_>) -> bool {
    let want = desired(w.d);
    let active: Vec<usize> = (0..w.rss.len())
        .filter(|&i| spec_replicas(&w.rss[i]) > 0)
        .collect();
    if active.len() <= 1 {
        let target = active.first().copied().or(w.new);
        return target.is_some_and(|i| w.scale_annotated(i, want));
    }
    if let Some(ni) = w.new {
        if spec_replicas(&w.rss[ni]) == want && available(&w.rss[ni]) >= want {
            let mut changed = w.scale_annotated(ni, want);
            for i in w.olds() {
                if spec_replicas(&w.rss[i]) > 0 {
                    changed |= w.scale_annotated(i, 0);
                }
            }
            return changed;
        }
    }
    if is_recreate(w.d) {
        return false;
    }
    let allowed = want + fenceposts(w.d).0;
    let total: i32 = active.iter().map(|&i| spec_replicas(&w.rss[i])).sum();
    let to_add = allowed - total;
    let created = |i: usize| w.rss[i].metadata.creation_timestamp.as_ref().map(|t| t.0);
    let mut order = active.clone();
    order.sort_by(|&a, &b| {
        let by_size = spec_replicas(&w.rss[b]).cmp(&spec_replicas(&w.rss[a]));
        // Ties: newer first when growing, older first when shrinking.
        let by_age = if to_add > 0 {
            created(b).cmp(&created(a))
        } else {
            created(a).cmp(&created(b))
        };
        by_size
            .then(by_age)
            .then(w.rss[a].metadata.name.cmp(&w.rss[b].metadata.name))
    });
    let mut added = 0;
    let mut sizes = Vec::with_capacity(order.len());
    for &i in &order {
        let r = spec_replicas(&w.rss[i]);
        let mut p = 0;
        if to_add != 0 && to_add != added {
            let f = replica_set_fraction(&w.rss[i], w.d);
            let left = to_add - added;
            p = if to_add > 0 { f.min(left) } else { f.max(left) };
        }
        added += p;
        sizes.push(r + p);
    }
    let mut changed = false;
    for (k, &i) in order.iter().enumerate() {
        let mut n = sizes[k];
        if k == 0 && to_add != 0 {
            n = (n + to_add - added).max(0);
        }
        changed |= w.scale_annotated(i, n);
    }
    changed
}

fn ensure_new(
    w: &mut World<'_>,
    max_old_rev: i64,
    replicas: i32,
    now: DateTime<Utc>,
    created: &mut bool,
) {
    if w.new.is_none() {
        let rs = new_replica_set(w.d, replicas, max_old_rev + 1, now);
        w.actions.push(RsAction::Create(Box::new(rs.clone())));
        w.rss.push(rs);
        w.new = Some(w.rss.len() - 1);
        *created = true;
    }
}

/// Kubernetes' `NewRSNewReplicas` for RollingUpdate, except that a ReplicaSet still above
/// its size (pods not yet deleted after a scale-down) counts its pods: the new one grows
/// only into room the old ones have really freed, so live pods stay within replicas +
/// maxSurge even when the ReplicaSet controller is behind.
fn new_rs_replicas(w: &World<'_>) -> i32 {
    let want = desired(w.d);
    let (surge, _) = fenceposts(w.d);
    let cur_new = w.new.map(|i| spec_replicas(&w.rss[i])).unwrap_or(0);
    let total: i32 = w
        .rss
        .iter()
        .map(|rs| spec_replicas(rs).max(rs.status.as_ref().map_or(0, |s| s.replicas)))
        .sum();
    let max_total = want + surge;
    if total >= max_total {
        return cur_new;
    }
    let up = (max_total - total).min(want - cur_new).max(0);
    cur_new + up
}

fn rollout_rolling(
    w: &mut World<'_>,
    max_old_rev: i64,
    now: DateTime<Utc>,
    created: &mut bool,
) -> bool {
    let want = desired(w.d);
    if w.new.is_none() {
        let n = new_rs_replicas(w);
        ensure_new(w, max_old_rev, n, now, created);
        return true;
    }
    let Some(ni) = w.new else { return false };
    // Scale the new RS up (or down if above desired).
    let cur = spec_replicas(&w.rss[ni]);
    if cur > want {
        return w.scale(ni, want);
    }
    if cur < want {
        let n = new_rs_replicas(w);
        if w.scale(ni, n) {
            return true;
        }
    }
    // Scale old RSs down (reconcileOldReplicaSets).
    let olds = w.olds();
    let old_count: i32 = olds.iter().map(|&i| spec_replicas(&w.rss[i])).sum();
    if old_count == 0 {
        return false;
    }
    let (_, max_unavail) = fenceposts(w.d);
    let min_available = want - max_unavail;
    let new_unavailable = spec_replicas(&w.rss[ni]) - available(&w.rss[ni]);
    let max_scaled_down = w.total_spec() - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return false;
    }
    let mut scaled = false;
    // Unhealthy old replicas first: they cost no availability.
    let mut budget = max_scaled_down;
    for &i in &olds {
        if budget <= 0 {
            break;
        }
        let r = spec_replicas(&w.rss[i]);
        let unhealthy = r - available(&w.rss[i]);
        if r == 0 || unhealthy <= 0 {
            continue;
        }
        let down = unhealthy.min(budget);
        budget -= down;
        scaled |= w.scale(i, r - down);
    }
    // Then healthy ones, keeping minAvailable.
    let avail: i32 = w
        .rss
        .iter()
        .map(|rs| available(rs).min(spec_replicas(rs)))
        .sum();
    let mut total_down = avail - min_available;
    for &i in &olds {
        if total_down <= 0 {
            break;
        }
        let r = spec_replicas(&w.rss[i]);
        if r == 0 {
            continue;
        }
        let down = r.min(total_down);
        total_down -= down;
        scaled |= w.scale(i, r - down);
    }
    scaled
}

fn rollout_recreate<P: Borrow<Pod>>(
    w: &mut World<'_>,
    pods: &[P],
    max_old_rev: i64,
    now: DateTime<Utc>,
    created: &mut bool,
) -> bool {
    let mut scaled = false;
    for i in w.olds() {
        scaled |= w.scale(i, 0);
    }
    if scaled {
        return true;
    }
    // Wait until no pod of an old RS is left.
    let old_uids: Vec<String> = w
        .olds()
        .iter()
        .filter_map(|&i| w.rss[i].metadata.uid.clone())
        .collect();
    let old_pods_left = pods.iter().map(|p| p.borrow()).any(|p| {
        p.metadata.namespace == w.d.metadata.namespace
            && pod_active(p)
            && controller_ref(&p.metadata).is_some_and(|r| old_uids.contains(&r.uid))
    });
    let old_status_left = w
        .olds()
        .iter()
        .any(|&i| w.rss[i].status.as_ref().is_some_and(|s| s.replicas > 0));
    if old_pods_left || old_status_left {
        return false;
    }
    let want = desired(w.d);
    if w.new.is_none() {
        ensure_new(w, max_old_rev, want, now, created);
        return true;
    }
    let Some(ni) = w.new else { return false };
    w.scale(ni, want)
}

/// Delete old, fully scaled-down ReplicaSets beyond `revisionHistoryLimit`, oldest revision first.
fn cleanup(w: &mut World<'_>, limit: usize) {
    let mut dead: Vec<usize> = w
        .olds()
        .into_iter()
        .filter(|&i| {
            let rs = &w.rss[i];
            spec_replicas(rs) == 0
                && rs.status.as_ref().map(|s| s.replicas).unwrap_or(0) == 0
                && rs.metadata.deletion_timestamp.is_none()
        })
        .collect();
    if dead.len() <= limit {
        return;
    }
    dead.sort_by_key(|&i| revision(&w.rss[i]));
    let n = dead.len() - limit;
    for &i in &dead[..n] {
        w.actions
            .push(RsAction::Delete(ObjectKey::of(&w.rss[i].metadata)));
    }
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: DateTime<Utc>,
    prev: Option<&DeploymentCondition>,
) -> DeploymentCondition {
    // lastTransitionTime only moves when the status flips.
    let transition = match prev {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Some(Time(now)),
    };
    let same = prev.is_some_and(|p| p.status == status && p.reason.as_deref() == Some(reason));
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: transition,
        last_update_time: if same {
            prev.and_then(|p| p.last_update_time.clone())
        } else {
            Some(Time(now))
        },
    }
}

fn status(
    w: &World<'_>,
    created: bool,
    progressed: bool,
    paused: bool,
    now: DateTime<Utc>,
) -> DeploymentStatus {
    let d = w.d;
    let want = desired(d);
    let st = |f: &dyn Fn(&ReplicaSet) -> i32| -> i32 { w.rss.iter().map(f).sum() };
    let replicas = st(&|rs| rs.status.as_ref().map(|s| s.replicas).unwrap_or(0));
    let ready = st(&|rs| {
        rs.status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0)
    });
    let avail = st(&available);
    let updated = w
        .new
        .map(|i| w.rss[i].status.as_ref().map(|s| s.replicas).unwrap_or(0))
        .unwrap_or(0);
    let total_spec = w.total_spec();
    let (_, max_unavail) = fenceposts(d);
    let prev = d
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let find = |t: &str| prev.iter().find(|c| c.type_ == t);
    let available_cond = if avail >= want - max_unavail {
        condition(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            now,
            find("Available"),
        )
    } else {
        condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            now,
            find("Available"),
        )
    };
    let new_name = w
        .new
        .and_then(|i| w.rss[i].metadata.name.clone())
        .unwrap_or_default();
    let new_spec = w.new.map(|i| spec_replicas(&w.rss[i])).unwrap_or(0);
    let olds_spec: i32 = w.olds().iter().map(|&i| spec_replicas(&w.rss[i])).sum();
    let complete = w.new.is_some()
        && new_spec == want
        && olds_spec == 0
        && updated == want
        && replicas == want
        && avail == want;
    let progressing = if paused {
        Some(condition(
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused".into(),
            now,
            find("Progressing"),
        ))
    } else if complete {
        Some(condition(
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{new_name}\" has successfully progressed."),
            now,
            find("Progressing"),
        ))
    } else if created {
        Some(condition(
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            format!("Created new replica set \"{new_name}\""),
            now,
            find("Progressing"),
        ))
    } else if progressed || w.new.is_some() {
        // Progress = we scaled, or the pods moved (counts changed) since the last status.
        let moved = d.status.as_ref().map(|s| {
            (
                s.replicas,
                s.updated_replicas,
                s.ready_replicas,
                s.available_replicas,
            )
        }) != Some((Some(replicas), Some(updated), Some(ready), Some(avail)));
        let prev_p = find("Progressing");
        let deadline = d
            .spec
            .as_ref()
            .and_then(|s| s.progress_deadline_seconds)
            .unwrap_or(600) as i64;
        let last = prev_p
            .and_then(|p| p.last_update_time.as_ref())
            .map(|t| t.0);
        if !progressed
            && !moved
            && prev_p.and_then(|p| p.reason.as_deref()) == Some("ProgressDeadlineExceeded")
        {
            prev_p.cloned()
        } else if !progressed
            && !moved
            && last.is_some_and(|l| now - l > k8s_openapi::chrono::Duration::seconds(deadline))
        {
            Some(condition(
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                now,
                prev_p,
            ))
        } else {
            let mut c = condition(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                format!("ReplicaSet \"{new_name}\" is progressing."),
                now,
                prev_p,
            );
            if progressed || moved {
                c.last_update_time = Some(Time(now));
            }
            Some(c)
        }
    } else {
        find("Progressing").cloned()
    };
    let mut conditions = vec![available_cond];
    conditions.extend(progressing);
    DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(replicas),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(avail),
        unavailable_replicas: Some((total_spec - avail).max(0)),
        conditions: Some(conditions),
        collision_count: d.status.as_ref().and_then(|s| s.collision_count),
    }
}

#[cfg(test)]
mod tests;
