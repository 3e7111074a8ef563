use super::*;
use crate::fixtures::*;
use k8s_openapi::api::apps::v1::{
    DeploymentSpec, DeploymentStrategy, ReplicaSetStatus, RollingUpdateDeployment,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::chrono::TimeZone;

fn t(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap()
}

fn template(image: &str) -> PodTemplateSpec {
    let mut spec = pod("ns", "x", "100m", "").spec.unwrap();
    spec.containers[0].image = Some(image.into());
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(&[("app", "web")])),
            ..Default::default()
        }),
        spec: Some(spec),
    }
}

fn deployment(replicas: i32, image: &str, strategy: DeploymentStrategy) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            namespace: Some("ns".into()),
            name: Some("web".into()),
            uid: Some("uid-web".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            },
            template: template(image),
            strategy: Some(strategy),
            ..Default::default()
        }),
        status: None,
    }
}

fn rolling(surge: IntOrString, unavail: IntOrString) -> DeploymentStrategy {
    DeploymentStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(surge),
            max_unavailable: Some(unavail),
        }),
    }
}

/// A fake cluster: ReplicaSets get pods instantly (not ready); a pod becomes available one step
/// after it was created. Scale-down removes unavailable pods first (the RS ranking).
struct Sim {
    d: Deployment,
    rss: Vec<ReplicaSet>,
    /// Per RS name: pods as "available?" flags.
    pods: BTreeMap<String, Vec<bool>>,
    step: i64,
    uid_seq: u32,
}

impl Sim {
    fn new(d: Deployment) -> Self {
        Sim {
            d,
            rss: Vec::new(),
            pods: BTreeMap::new(),
            step: 0,
            uid_seq: 0,
        }
    }
    fn total_pods(&self) -> i32 {
        self.pods.values().map(|v| v.len() as i32).sum()
    }
    fn available_pods(&self) -> i32 {
        self.pods
            .values()
            .map(|v| v.iter().filter(|a| **a).count() as i32)
            .sum()
    }
    /// One controller sync, then the world reacts. Returns the outcome.
    fn step(&mut self) -> Outcome {
        self.step += 1;
        let o = reconcile::<Pod>(&self.d, &self.rss, &[], t(self.step));
        for a in &o.actions {
            match a {
                RsAction::Create(rs) => {
                    let mut rs = (**rs).clone();
                    self.uid_seq += 1;
                    rs.metadata.uid = Some(format!("rs-uid-{}", self.uid_seq));
                    assert!(
                        !self.rss.iter().any(|r| r.metadata.name == rs.metadata.name),
                        "RS created twice"
                    );
                    self.rss.push(rs);
                }
                RsAction::Update(rs) => {
                    let slot = self
                        .rss
                        .iter_mut()
                        .find(|r| r.metadata.name == rs.metadata.name)
                        .expect("update of unknown RS");
                    let status = slot.status.clone();
                    *slot = (**rs).clone();
                    slot.status = status;
                }
                RsAction::Delete(k) => {
                    self.rss
                        .retain(|r| r.metadata.name.as_deref() != Some(k.name.as_str()));
                    self.pods.remove(&k.name);
                }
            }
        }
        let ann = self
            .d
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new);
        if let Some(r) = &o.revision {
            ann.insert(REVISION.into(), r.clone());
        }
        self.d.status = Some(o.status.clone());
        // World: previously created pods become available; RS sizes match spec.
        for rs in &mut self.rss {
            let name = rs.metadata.name.clone().unwrap();
            let pods = self.pods.entry(name).or_default();
            for p in pods.iter_mut() {
                *p = true;
            }
            let want = spec_replicas(rs) as usize;
            while pods.len() < want {
                pods.push(false);
            }
            while pods.len() > want {
                let idx = pods.iter().position(|a| !*a).unwrap_or(pods.len() - 1);
                pods.remove(idx);
            }
            let avail = pods.iter().filter(|a| **a).count() as i32;
            rs.status = Some(ReplicaSetStatus {
                replicas: pods.len() as i32,
                ready_replicas: Some(avail),
                available_replicas: Some(avail),
                ..Default::default()
            });
        }
        o
    }
    fn settle(&mut self) {
        for _ in 0..10 {
            self.step();
        }
    }
    fn rs_by_image(&self, image: &str) -> &ReplicaSet {
        self.rss
            .iter()
            .find(|r| {
                r.spec
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
                    == Some(image)
            })
            .unwrap()
    }
    fn condition(&self, type_: &str) -> DeploymentCondition {
        self.d
            .status
            .as_ref()
            .unwrap()
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap()
            .clone()
    }
}

#[test]
fn percent_rounding_like_kubernetes() {
    let p = |s: &str| IntOrString::String(s.into());
    assert_eq!(scaled_value(&p("25%"), 10, true), 3);
    assert_eq!(scaled_value(&p("25%"), 10, false), 2);
    assert_eq!(scaled_value(&p("50%"), 3, true), 2);
    assert_eq!(scaled_value(&p("50%"), 3, false), 1);
    assert_eq!(scaled_value(&IntOrString::Int(4), 10, false), 4);
    let d = deployment(1, "v1", rolling(p("25%"), p("25%")));
    assert_eq!(fenceposts(&d), (1, 0));
    let d = deployment(4, "v1", rolling(IntOrString::Int(0), IntOrString::Int(0)));
    assert_eq!(fenceposts(&d), (0, 1));
}

#[test]
fn hash_naming_and_equality_ignore_the_hash_label() {
    let d = deployment(3, "v1", rolling(IntOrString::Int(1), IntOrString::Int(0)));
    let rs = new_replica_set(&d, 3, 1, t(0));
    let hash = pod_template_hash(&d.spec.as_ref().unwrap().template, None);
    assert_eq!(
        rs.metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    assert!(hash
        .chars()
        .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    assert_eq!(
        rs.spec
            .as_ref()
            .unwrap()
            .selector
            .match_labels
            .as_ref()
            .unwrap()
            .get(HASH_LABEL),
        Some(&hash)
    );
    assert!(templates_equal(
        rs.spec.as_ref().unwrap().template.as_ref().unwrap(),
        &d.spec.as_ref().unwrap().template
    ));
    assert_ne!(hash, pod_template_hash(&template("v2"), None));
    assert_ne!(
        hash,
        pod_template_hash(&d.spec.as_ref().unwrap().template, Some(1))
    );
    assert_eq!(
        rs.metadata
            .annotations
            .as_ref()
            .unwrap()
            .get(REVISION)
            .map(String::as_str),
        Some("1")
    );
}

fn check_rollout(replicas: i32, surge: IntOrString, unavail: IntOrString) {
    let mut sim = Sim::new(deployment(replicas, "v1", rolling(surge, unavail)));
    sim.settle();
    assert_eq!(sim.total_pods(), replicas);
    assert_eq!(
        sim.condition("Progressing").reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    let (max_surge, max_unavail) = fenceposts(&sim.d);
    sim.d.spec.as_mut().unwrap().template = template("v2");
    sim.d.metadata.generation = Some(2);
    let mut steps = 0;
    let mut reasons = Vec::new();
    loop {
        let o = sim.step();
        steps += 1;
        reasons.push(sim.condition("Progressing").reason.unwrap());
        assert!(
            sim.total_pods() <= replicas + max_surge,
            "step {steps}: {} pods > {replicas}+{max_surge}",
            sim.total_pods()
        );
        assert!(
            sim.available_pods() >= replicas - max_unavail,
            "step {steps}: {} available < {replicas}-{max_unavail}",
            sim.available_pods()
        );
        if o.actions.is_empty()
            && o.status.updated_replicas == Some(replicas)
            && o.status.available_replicas == Some(replicas)
            && o.status.replicas == Some(replicas)
        {
            break;
        }
        assert!(steps < 100, "rollout did not finish");
    }
    let old = sim.rs_by_image("v1");
    let new = sim.rs_by_image("v2");
    assert_eq!(spec_replicas(old), 0);
    assert_eq!(spec_replicas(new), replicas);
    assert_eq!(revision(new), 2);
    assert_eq!(
        sim.d
            .metadata
            .annotations
            .as_ref()
            .unwrap()
            .get(REVISION)
            .map(String::as_str),
        Some("2")
    );
    assert_eq!(
        reasons.first().map(String::as_str),
        Some("NewReplicaSetCreated")
    );
    assert!(
        reasons.iter().any(|r| r == "ReplicaSetUpdated"),
        "{reasons:?}"
    );
    assert_eq!(
        reasons.last().map(String::as_str),
        Some("NewReplicaSetAvailable")
    );
    assert_eq!(sim.condition("Available").status, "True");
    let st = sim.d.status.as_ref().unwrap();
    assert_eq!(
        (st.observed_generation, st.unavailable_replicas),
        (Some(2), Some(0))
    );
}

#[test]
fn rolling_update_bounds_hold_at_every_step() {
    let p = |s: &str| IntOrString::String(s.into());
    check_rollout(10, p("25%"), p("25%"));
    check_rollout(10, IntOrString::Int(0), IntOrString::Int(1));
    check_rollout(10, IntOrString::Int(1), IntOrString::Int(0));
    check_rollout(5, p("100%"), IntOrString::Int(0));
    check_rollout(3, p("50%"), p("50%"));
}

#[test]
fn rollback_reuses_old_replica_set_and_bumps_revision() {
    let mut sim = Sim::new(deployment(
        3,
        "v1",
        rolling(IntOrString::Int(1), IntOrString::Int(0)),
    ));
    sim.settle();
    sim.d.spec.as_mut().unwrap().template = template("v2");
    sim.settle();
    assert_eq!(sim.rss.len(), 2);
    // kubectl rollout undo: the template goes back to v1's.
    sim.d.spec.as_mut().unwrap().template = template("v1");
    sim.settle();
    assert_eq!(
        sim.rss.len(),
        2,
        "the v1 ReplicaSet is reused, not recreated"
    );
    assert_eq!(revision(sim.rs_by_image("v1")), 3);
    assert_eq!(revision(sim.rs_by_image("v2")), 2);
    assert_eq!(spec_replicas(sim.rs_by_image("v1")), 3);
    assert_eq!(spec_replicas(sim.rs_by_image("v2")), 0);
    assert_eq!(
        sim.d
            .metadata
            .annotations
            .as_ref()
            .unwrap()
            .get(REVISION)
            .map(String::as_str),
        Some("3")
    );
    // Idempotent at rest: no actions.
    assert!(reconcile::<Pod>(&sim.d, &sim.rss, &[], t(1000))
        .actions
        .is_empty());
}

fn change_cause(rs: &ReplicaSet) -> Option<&str> {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CHANGE_CAUSE))
        .map(String::as_str)
}

#[test]
fn change_cause_is_copied_onto_the_current_new_replica_set() {
    let mut sim = Sim::new(deployment(
        2,
        "v1",
        rolling(IntOrString::Int(1), IntOrString::Int(0)),
    ));
    let cause = |sim: &mut Sim, c: &str| {
        sim.d
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(CHANGE_CAUSE.into(), c.into());
    };
    sim.d.metadata.annotations = Some(labels(&[(
        "kubectl.kubernetes.io/last-applied-configuration",
        "{}",
    )]));
    cause(&mut sim, "create v1");
    sim.settle();
    assert_eq!(change_cause(sim.rs_by_image("v1")), Some("create v1"));
    // Annotated after the ReplicaSet exists (kubectl annotate --overwrite): copied on sync.
    cause(&mut sim, "v1 annotated later");
    sim.settle();
    assert_eq!(
        change_cause(sim.rs_by_image("v1")),
        Some("v1 annotated later")
    );
    sim.d.spec.as_mut().unwrap().template = template("v2");
    cause(&mut sim, "image v2");
    sim.settle();
    assert_eq!(change_cause(sim.rs_by_image("v2")), Some("image v2"));
    assert_eq!(
        change_cause(sim.rs_by_image("v1")),
        Some("v1 annotated later"),
        "old ReplicaSets keep their own"
    );
    // Rollback to v1 with a new cause: the reused ReplicaSet takes it.
    sim.d.spec.as_mut().unwrap().template = template("v1");
    cause(&mut sim, "undo to v1");
    sim.settle();
    assert_eq!(change_cause(sim.rs_by_image("v1")), Some("undo to v1"));
    assert_eq!(change_cause(sim.rs_by_image("v2")), Some("image v2"));
    let rs = sim.rs_by_image("v1");
    let a = rs.metadata.annotations.as_ref().unwrap();
    assert_eq!(a.get(REVISION).map(String::as_str), Some("3"));
    assert!(!a.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
    assert!(reconcile::<Pod>(&sim.d, &sim.rss, &[], t(1000))
        .actions
        .is_empty());
}

#[test]
fn recreate_waits_for_old_pods_before_creating_new() {
    let strategy = DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    };
    let mut sim = Sim::new(deployment(3, "v1", strategy));
    sim.settle();
    sim.d.spec.as_mut().unwrap().template = template("v2");
    // First sync: old scaled to 0, nothing new yet.
    let o = sim.step();
    assert!(o.actions.iter().all(|a| matches!(a, RsAction::Update(_))));
    assert_eq!(spec_replicas(sim.rs_by_image("v1")), 0);
    // Old pods still listed in the pod cache: wait.
    let mut old_pod = owned_by(
        pod("ns", "old", "", ""),
        "ReplicaSet",
        "x",
        sim.rs_by_image("v1").metadata.uid.as_deref().unwrap(),
    );
    old_pod.status.as_mut().unwrap().phase = Some("Running".into());
    assert!(reconcile(&sim.d, &sim.rss, &[old_pod], t(50))
        .actions
        .is_empty());
    sim.settle();
    let new = sim.rs_by_image("v2");
    assert_eq!(spec_replicas(new), 3);
    assert_eq!(sim.total_pods(), 3);
}

#[test]
fn paused_does_not_roll_out_and_history_is_limited() {
    let mut d = deployment(2, "v0", rolling(IntOrString::Int(1), IntOrString::Int(0)));
    d.spec.as_mut().unwrap().revision_history_limit = Some(2);
    let mut sim = Sim::new(d);
    sim.settle();
    for v in 1..=5 {
        sim.d.spec.as_mut().unwrap().template = template(&format!("v{v}"));
        sim.settle();
    }
    // Current (v5) + 2 old kept.
    assert_eq!(sim.rss.len(), 3);
    let mut revs: Vec<i64> = sim.rss.iter().map(revision).collect();
    revs.sort();
    assert_eq!(revs, vec![4, 5, 6]);
    sim.d.spec.as_mut().unwrap().paused = Some(true);
    sim.d.spec.as_mut().unwrap().template = template("v9");
    let o = sim.step();
    assert!(o.actions.is_empty(), "{:?}", o.actions);
    assert_eq!(
        sim.condition("Progressing").reason.as_deref(),
        Some("DeploymentPaused")
    );
    sim.d.spec.as_mut().unwrap().paused = Some(false);
    sim.settle();
    assert_eq!(spec_replicas(sim.rs_by_image("v9")), 2);
}

#[test]
fn scale_up_and_down_without_template_change() {
    let mut sim = Sim::new(deployment(
        2,
        "v1",
        rolling(IntOrString::Int(1), IntOrString::Int(0)),
    ));
    sim.settle();
    sim.d.spec.as_mut().unwrap().replicas = Some(7);
    sim.settle();
    assert_eq!(sim.total_pods(), 7);
    sim.d.spec.as_mut().unwrap().replicas = Some(1);
    sim.settle();
    assert_eq!(sim.total_pods(), 1);
    assert_eq!(sim.rss.len(), 1);
    assert_eq!(
        sim.rs_by_image("v1")
            .metadata
            .annotations
            .as_ref()
            .unwrap()
            .get(DESIRED_REPLICAS)
            .map(String::as_str),
        Some("1")
    );
}

#[test]
fn stuck_rollout_exceeds_progress_deadline() {
    let mut sim = Sim::new(deployment(
        2,
        "v1",
        rolling(IntOrString::Int(1), IntOrString::Int(0)),
    ));
    sim.settle();
    sim.d.spec.as_mut().unwrap().template = template("v2");
    sim.step();
    // The new pod never becomes available: reconcile without the world moving.
    let at = |s: i64, sim: &mut Sim| {
        let o = reconcile::<Pod>(&sim.d, &sim.rss, &[], t(s));
        sim.d.status = Some(o.status);
        sim.condition("Progressing")
    };
    let c = at(20, &mut sim);
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("True", Some("ReplicaSetUpdated"))
    );
    let c = at(500, &mut sim);
    assert_eq!(
        c.reason.as_deref(),
        Some("ReplicaSetUpdated"),
        "within the 600 s deadline"
    );
    let c = at(621, &mut sim);
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref()),
        ("False", Some("ProgressDeadlineExceeded"))
    );
    assert_eq!(
        at(700, &mut sim).reason.as_deref(),
        Some("ProgressDeadlineExceeded")
    );
    // The world moves again: progressing resumes.
    sim.settle();
    assert_eq!(
        sim.condition("Progressing").reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
}

#[test]
fn scaling_mid_rollout_is_proportional() {
    let mut sim = Sim::new(deployment(
        10,
        "v1",
        rolling(
            IntOrString::String("25%".into()),
            IntOrString::String("25%".into()),
        ),
    ));
    sim.settle();
    assert_eq!(spec_replicas(sim.rs_by_image("v1")), 10);
    // Start a rollout: the new RS gets maxSurge (3) pods, the old one keeps 10.
    sim.d.spec.as_mut().unwrap().template = template("v2");
    sim.step();
    assert_eq!(spec_replicas(sim.rs_by_image("v1")), 10);
    assert_eq!(spec_replicas(sim.rs_by_image("v2")), 3);
    // Scale to 20 mid-rollout: 25 allowed (20 + 5 surge); old 10*25/13 = 19, new 3*25/13 = 6.
    sim.d.spec.as_mut().unwrap().replicas = Some(20);
    let o = sim.step();
    assert_eq!(o.actions.len(), 2, "{:?}", o.actions);
    let (old, new) = (sim.rs_by_image("v1"), sim.rs_by_image("v2"));
    assert_eq!((spec_replicas(old), spec_replicas(new)), (19, 6));
    for rs in [old, new] {
        let a = rs.metadata.annotations.as_ref().unwrap();
        assert_eq!(a.get(DESIRED_REPLICAS).map(String::as_str), Some("20"));
        assert_eq!(a.get(MAX_REPLICAS).map(String::as_str), Some("25"));
    }
    // The rollout goes on from there within the new bounds, and ends at 20 new pods.
    for _ in 0..30 {
        sim.step();
        assert!(sim.total_pods() <= 25, "{} pods", sim.total_pods());
    }
    assert_eq!(spec_replicas(sim.rs_by_image("v2")), 20);
    assert_eq!(spec_replicas(sim.rs_by_image("v1")), 0);
    // Shrinking mid-rollout spreads the cut the same way (larger first).
    sim.d.spec.as_mut().unwrap().template = template("v3");
    sim.step();
    let before: i32 = sim.rss.iter().map(spec_replicas).sum();
    sim.d.spec.as_mut().unwrap().replicas = Some(8);
    sim.step();
    let (v2, v3) = (sim.rs_by_image("v2"), sim.rs_by_image("v3"));
    assert!(before > 20);
    assert!(
        spec_replicas(v2) + spec_replicas(v3) <= 8 + 2,
        "within 8 + maxSurge 2"
    );
    assert!(spec_replicas(v2) > 0 && spec_replicas(v3) > 0);
    for _ in 0..30 {
        sim.step();
    }
    assert_eq!(spec_replicas(sim.rs_by_image("v3")), 8);
    assert_eq!(spec_replicas(sim.rs_by_image("v2")), 0);
}
