//! The previous controller manager, kept as the benchmark anchor for [`crate::runtime`]: every
//! pass LISTs everything and reconciles everything.
//!
//! [`PollingManager::sync`] is one level-triggered pass: list the objects each reconciler needs (the
//! cache is the fresh list), reconcile each object, write the actions. A key whose writes fail
//! is requeued with exponential backoff (1 s doubling to 5 min) and skipped until then; other
//! keys go on. Expectations are lowered as creates/deletes return, which is exact because the
//! next pass lists after the writes. `gabang server` called `sync` every 300 ms;
//! [`fake_agent_step`] plays the node agent for tests.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Endpoints, Event, Namespace, Node, ObjectReference, Pod, PodCondition, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::chrono::{DateTime, Duration, Utc};

use crate::cluster::{Cluster, ClusterError, Object};
use crate::common::{pod_active, pod_ready, ObjectKey};
use crate::gc::{GcAction, ObjInfo, Propagation};
use crate::nodelifecycle::{self, Clock, NodeAction};
use crate::replicaset::{Expectations, PodAction};
use crate::scheduler::{Decision, Scheduler};
use crate::{deployment, endpoints, gc, replicaset};

/// Result of one pass.
#[derive(Debug, Default, Clone)]
pub struct SyncReport {
    /// Writes done.
    pub writes: usize,
    /// Pods bound by the scheduler.
    pub bound: usize,
    /// Failed keys with their error (they are backed off).
    pub errors: Vec<(String, ClusterError)>,
}

struct Backoff {
    attempts: u32,
    until: DateTime<Utc>,
}

/// Runs all controllers over one cluster.
pub struct PollingManager<C: Cluster> {
    cluster: Arc<C>,
    clock: Arc<dyn Clock>,
    expectations: Expectations,
    node_config: nodelifecycle::Config,
    sched_messages: HashMap<String, String>,
    backoff: HashMap<String, Backoff>,
}

pub(crate) fn clear_rv<K: Object>(mut k: K) -> K {
    k.metadata_mut().resource_version = None;
    k
}

impl<C: Cluster> PollingManager<C> {
    pub fn new(cluster: Arc<C>, clock: Arc<dyn Clock>, node_config: nodelifecycle::Config) -> Self {
        PollingManager {
            cluster,
            clock,
            expectations: Expectations::default(),
            node_config,
            sched_messages: HashMap::new(),
            backoff: HashMap::new(),
        }
    }

    fn ready(&self, key: &str, now: DateTime<Utc>) -> bool {
        self.backoff.get(key).is_none_or(|b| now >= b.until)
    }

    fn outcome(
        &mut self,
        key: String,
        r: Result<usize, ClusterError>,
        now: DateTime<Utc>,
        rep: &mut SyncReport,
    ) {
        match r {
            Ok(n) => {
                rep.writes += n;
                self.backoff.remove(&key);
            }
            Err(e) => {
                let b = self.backoff.entry(key.clone()).or_insert(Backoff {
                    attempts: 0,
                    until: now,
                });
                b.attempts += 1;
                let secs = (1i64 << b.attempts.min(9).saturating_sub(1)).min(300);
                b.until = now + Duration::seconds(secs);
                rep.errors.push((key, e));
            }
        }
    }

    /// One pass of every controller.
    pub fn sync(&mut self) -> Result<SyncReport, ClusterError> {
        let mut rep = SyncReport::default();
        self.sync_nodes(&mut rep)?;
        self.sync_deployments(&mut rep)?;
        self.sync_replica_sets(&mut rep)?;
        self.schedule(&mut rep)?;
        self.sync_endpoints(&mut rep)?;
        self.sync_gc(&mut rep)?;
        Ok(rep)
    }

    pub fn sync_nodes(&mut self, rep: &mut SyncReport) -> Result<(), ClusterError> {
        let now = self.clock.now();
        let nodes: Vec<Node> = self.cluster.list()?;
        let leases: Vec<Lease> = self.cluster.list()?;
        let pods: Vec<Pod> = self.cluster.list()?;
        let out = nodelifecycle::reconcile(&nodes, &leases, &pods, &self.node_config, now);
        for a in out.actions {
            let c = &self.cluster;
            let (key, r) = match a {
                NodeAction::SetConditions { node, conditions } => (
                    format!("node/{node}"),
                    c.get::<Node>("", &node).and_then(|n| match n {
                        Some(mut n) => {
                            n.status.get_or_insert_with(Default::default).conditions =
                                Some(conditions);
                            c.update_status(&clear_rv(n)).map(|_| 1)
                        }
                        None => Ok(0),
                    }),
                ),
                NodeAction::SetTaints { node, taints } => (
                    format!("node/{node}"),
                    c.get::<Node>("", &node).and_then(|n| match n {
                        Some(mut n) => {
                            n.spec.get_or_insert_with(Default::default).taints = Some(taints);
                            c.update(&clear_rv(n)).map(|_| 1)
                        }
                        None => Ok(0),
                    }),
                ),
                NodeAction::EvictPod { pod, .. } => (
                    format!("pod/{pod}"),
                    ignore_not_found(c.delete::<Pod>(
                        &pod.namespace,
                        &pod.name,
                        Propagation::Background,
                    ))
                    .map(|_| 1),
                ),
            };
            self.outcome(key, r, now, rep);
        }
        Ok(())
    }

    pub fn sync_deployments(&mut self, rep: &mut SyncReport) -> Result<(), ClusterError> {
        let now = self.clock.now();
        let deps: Vec<Deployment> = self.cluster.list()?;
        let rss: Vec<ReplicaSet> = self.cluster.list()?;
        let pods: Vec<Pod> = self.cluster.list()?;
        for d in deps {
            let key = format!("deployment/{}", ObjectKey::of(&d.metadata));
            if !self.ready(&key, now) {
                continue;
            }
            let out = deployment::reconcile(&d, &rss, &pods, now);
            let c = &self.cluster;
            let r = (|| {
                let mut n = 0;
                for a in &out.actions {
                    match a {
                        deployment::RsAction::Create(rs) => {
                            c.create(rs.as_ref())?;
                        }
                        deployment::RsAction::Update(rs) => {
                            c.update(&clear_rv((**rs).clone()))?;
                        }
                        deployment::RsAction::Delete(k) => ignore_not_found(
                            c.delete::<ReplicaSet>(&k.namespace, &k.name, Propagation::Background),
                        )
                        .map(|_| ())?,
                    }
                    n += 1;
                }
                let mut d2 = d.clone();
                let ann = d2.metadata.annotations.get_or_insert_with(BTreeMap::new);
                if let Some(rev) = &out.revision {
                    if ann.get(deployment::REVISION) != Some(rev) {
                        ann.insert(deployment::REVISION.into(), rev.clone());
                        d2 = c.update(&clear_rv(d2))?;
                        n += 1;
                    }
                }
                if d2.status.as_ref() != Some(&out.status) {
                    d2.status = Some(out.status.clone());
                    c.update_status(&clear_rv(d2))?;
                    n += 1;
                }
                Ok(n)
            })();
            self.outcome(key, r, now, rep);
        }
        Ok(())
    }

    pub fn sync_replica_sets(&mut self, rep: &mut SyncReport) -> Result<(), ClusterError> {
        let now = self.clock.now();
        let rss: Vec<ReplicaSet> = self.cluster.list()?;
        let pods: Vec<Pod> = self.cluster.list()?;
        let mut by_ns: HashMap<Option<String>, Vec<Pod>> = HashMap::new();
        for p in pods {
            by_ns
                .entry(p.metadata.namespace.clone())
                .or_default()
                .push(p);
        }
        for rs in rss {
            let k = ObjectKey::of(&rs.metadata).to_string();
            let key = format!("replicaset/{k}");
            if !self.ready(&key, now) {
                continue;
            }
            let ns_pods = by_ns
                .get(&rs.metadata.namespace)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let out = replicaset::reconcile(&rs, ns_pods, &mut self.expectations, now);
            let c = self.cluster.clone();
            let mut n = 0;
            let mut err = None;
            for a in &out.actions {
                let r = match a {
                    PodAction::Create(p) => {
                        let r = c.create(p.as_ref()).map(|_| ());
                        self.expectations.creation_observed(&k);
                        r
                    }
                    PodAction::Delete(pk) => {
                        let r = ignore_not_found(c.delete::<Pod>(
                            &pk.namespace,
                            &pk.name,
                            Propagation::Background,
                        ));
                        self.expectations.deletion_observed(&k);
                        r
                    }
                    PodAction::SetOwnerReferences {
                        pod,
                        owner_references,
                    } => c
                        .get::<Pod>(&pod.namespace, &pod.name)
                        .and_then(|p| match p {
                            Some(mut p) => {
                                p.metadata.owner_references = Some(owner_references.clone());
                                c.update(&clear_rv(p)).map(|_| ())
                            }
                            None => Ok(()),
                        }),
                };
                match r {
                    Ok(()) => n += 1,
                    Err(e) => err = Some(e),
                }
            }
            if rs.status.as_ref() != Some(&out.status) {
                let mut rs2 = rs.clone();
                rs2.status = Some(out.status);
                match c.update_status(&clear_rv(rs2)) {
                    Ok(_) => n += 1,
                    Err(e) => err = Some(e),
                }
            }
            self.outcome(key, err.map_or(Ok(n), Err), now, rep);
        }
        Ok(())
    }

    pub fn schedule(&mut self, rep: &mut SyncReport) -> Result<(), ClusterError> {
        let now = self.clock.now();
        let nodes: Vec<Node> = self.cluster.list()?;
        let pods: Vec<Pod> = self.cluster.list()?;
        let mut pending: Vec<&Pod> = pods
            .iter()
            .filter(|p| {
                pod_active(p)
                    && p.spec
                        .as_ref()
                        .is_some_and(|s| s.node_name.as_deref().is_none_or(str::is_empty))
            })
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        pending.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let mut sched = Scheduler::new(&nodes, &pods);
        for p in pending {
            let pk = ObjectKey::of(&p.metadata);
            let key = format!("pod/{pk}");
            match sched.schedule(p) {
                Decision::Bind { node } => {
                    let r = self
                        .cluster
                        .bind_pod(&pk.namespace, &pk.name, &node)
                        .map(|_| 1);
                    if r.is_ok() {
                        rep.bound += 1;
                        self.sched_messages.remove(&key);
                    } else if let Some(spec) = p.spec.as_ref() {
                        let mut placed = p.clone();
                        placed.spec = Some(spec.clone());
                        sched.remove_pod(&node, &placed);
                    }
                    self.outcome(key, r, now, rep);
                }
                Decision::Unschedulable { message } => {
                    if self.sched_messages.get(&key) == Some(&message) {
                        continue;
                    }
                    let r = self.record_unschedulable(p, &message, now);
                    if r.is_ok() {
                        self.sched_messages.insert(key.clone(), message);
                    }
                    self.outcome(key, r, now, rep);
                }
            }
        }
        Ok(())
    }

    fn record_unschedulable(
        &self,
        p: &Pod,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, ClusterError> {
        record_unschedulable(self.cluster.as_ref(), &clear_rv(p.clone()), message, now).map(|_| 2)
    }

    pub fn sync_endpoints(&mut self, rep: &mut SyncReport) -> Result<(), ClusterError> {
        let now = self.clock.now();
        let svcs: Vec<Service> = self.cluster.list()?;
        if svcs.is_empty() {
            return Ok(());
        }
        let pods: Vec<Pod> = self.cluster.list()?;
        let eps: Vec<Endpoints> = self.cluster.list()?;
        let slices: Vec<EndpointSlice> = self.cluster.list()?;
        for s in svcs {
            let key = format!("service/{}", ObjectKey::of(&s.metadata));
            if !self.ready(&key, now) || s.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let existing = eps.iter().find(|e| {
                e.metadata.namespace == s.metadata.namespace && e.metadata.name == s.metadata.name
            });
            let actions = endpoints::reconcile(&s, &pods, existing, &slices);
            let c = &self.cluster;
            let r = (|| {
                for a in &actions {
                    match a {
                        endpoints::Action::CreateEndpoints(e) => {
                            c.create(e.as_ref()).map(|_| ())?
                        }
                        endpoints::Action::UpdateEndpoints(e) => {
                            c.update(&clear_rv((**e).clone())).map(|_| ())?
                        }
                        endpoints::Action::DeleteEndpoints(k) => ignore_not_found(
                            c.delete::<Endpoints>(&k.namespace, &k.name, Propagation::Background),
                        )?,
                        endpoints::Action::CreateSlice(e) => c.create(e.as_ref()).map(|_| ())?,
                        endpoints::Action::UpdateSlice(e) => {
                            c.update(&clear_rv((**e).clone())).map(|_| ())?
                        }
                        endpoints::Action::DeleteSlice(k) => {
                            ignore_not_found(c.delete::<EndpointSlice>(
                                &k.namespace,
                                &k.name,
                                Propagation::Background,
                            ))?
                        }
                    }
                }
                Ok(actions.len())
            })();
            self.outcome(key, r, now, rep);
        }
        Ok(())
    }

    pub fn sync_gc(&mut self, rep: &mut SyncReport) -> Result<(), ClusterError> {
        let now = self.clock.now();
        let mut objs = Vec::new();
        collect::<Deployment, C>(&self.cluster, &mut objs)?;
        collect::<ReplicaSet, C>(&self.cluster, &mut objs)?;
        collect::<Pod, C>(&self.cluster, &mut objs)?;
        collect::<Service, C>(&self.cluster, &mut objs)?;
        collect::<Endpoints, C>(&self.cluster, &mut objs)?;
        collect::<EndpointSlice, C>(&self.cluster, &mut objs)?;
        collect::<Event, C>(&self.cluster, &mut objs)?;
        let namespaces: Vec<Namespace> = self.cluster.list()?;
        let known: HashSet<String> = [
            "Deployment",
            "ReplicaSet",
            "Pod",
            "Service",
            "Endpoints",
            "EndpointSlice",
            "Event",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for a in gc::reconcile(&objs, &namespaces, &known) {
            let c = &self.cluster;
            let (key, r) = match a {
                GcAction::Delete { obj, propagation } => (
                    format!("gc/{}/{}", obj.kind, obj.name),
                    dispatch_delete(
                        c.as_ref(),
                        &obj.kind,
                        obj.namespace.as_deref().unwrap_or(""),
                        &obj.name,
                        propagation,
                    ),
                ),
                GcAction::SetOwnerReferences {
                    obj,
                    owner_references,
                } => (
                    format!("gc/{}/{}", obj.kind, obj.name),
                    dispatch_meta(
                        c.as_ref(),
                        &obj.kind,
                        obj.namespace.as_deref().unwrap_or(""),
                        &obj.name,
                        &|m| m.owner_references = Some(owner_references.clone()),
                    ),
                ),
                GcAction::RemoveFinalizer { obj, finalizer } => (
                    format!("gc/{}/{}", obj.kind, obj.name),
                    dispatch_meta(
                        c.as_ref(),
                        &obj.kind,
                        obj.namespace.as_deref().unwrap_or(""),
                        &obj.name,
                        &|m| {
                            if let Some(f) = m.finalizers.as_mut() {
                                f.retain(|x| *x != finalizer)
                            }
                        },
                    ),
                ),
                GcAction::FinalizeNamespace { name } => (
                    format!("gc/Namespace/{name}"),
                    c.get::<Namespace>("", &name).and_then(|ns| match ns {
                        Some(mut ns) => {
                            if let Some(f) = ns.spec.as_mut().and_then(|s| s.finalizers.as_mut()) {
                                f.retain(|x| x != gc::NAMESPACE_FINALIZER);
                            }
                            c.update(&clear_rv(ns.clone()))?;
                            // Finalizers empty: the API server removes a deleting namespace.
                            ignore_not_found(c.delete::<Namespace>(
                                "",
                                &name,
                                Propagation::Background,
                            ))
                            .map(|_| 1)
                        }
                        None => Ok(0),
                    }),
                ),
            };
            self.outcome(key, r, now, rep);
        }
        Ok(())
    }
}

pub(crate) fn ignore_not_found(r: Result<(), ClusterError>) -> Result<(), ClusterError> {
    match r {
        Err(ClusterError::NotFound { .. }) => Ok(()),
        other => other,
    }
}

fn collect<K: Object, C: Cluster>(c: &Arc<C>, out: &mut Vec<ObjInfo>) -> Result<(), ClusterError> {
    for o in c.list::<K>()? {
        out.push(ObjInfo::from_meta(K::API_VERSION, K::KIND, o.metadata()));
    }
    Ok(())
}

fn modify_meta<K: Object, C: Cluster>(
    c: &C,
    ns: &str,
    name: &str,
    f: &dyn Fn(&mut ObjectMeta),
) -> Result<usize, ClusterError> {
    match c.get::<K>(ns, name)? {
        Some(mut o) => {
            f(o.metadata_mut());
            c.update(&clear_rv(o)).map(|_| 1)
        }
        None => Ok(0),
    }
}

pub(crate) fn dispatch_meta<C: Cluster>(
    c: &C,
    kind: &str,
    ns: &str,
    name: &str,
    f: &dyn Fn(&mut ObjectMeta),
) -> Result<usize, ClusterError> {
    match kind {
        "Deployment" => modify_meta::<Deployment, C>(c, ns, name, f),
        "ReplicaSet" => modify_meta::<ReplicaSet, C>(c, ns, name, f),
        "Pod" => modify_meta::<Pod, C>(c, ns, name, f),
        "Service" => modify_meta::<Service, C>(c, ns, name, f),
        "Endpoints" => modify_meta::<Endpoints, C>(c, ns, name, f),
        "EndpointSlice" => modify_meta::<EndpointSlice, C>(c, ns, name, f),
        "Event" => modify_meta::<Event, C>(c, ns, name, f),
        other => Err(ClusterError::Api(format!(
            "garbage collector: unsupported kind {other}"
        ))),
    }
}

pub(crate) fn dispatch_delete<C: Cluster>(
    c: &C,
    kind: &str,
    ns: &str,
    name: &str,
    p: Propagation,
) -> Result<usize, ClusterError> {
    let r = match kind {
        "Deployment" => c.delete::<Deployment>(ns, name, p),
        "ReplicaSet" => c.delete::<ReplicaSet>(ns, name, p),
        "Pod" => c.delete::<Pod>(ns, name, p),
        "Service" => c.delete::<Service>(ns, name, p),
        "Endpoints" => c.delete::<Endpoints>(ns, name, p),
        "EndpointSlice" => c.delete::<EndpointSlice>(ns, name, p),
        "Event" => c.delete::<Event>(ns, name, p),
        other => {
            return Err(ClusterError::Api(format!(
                "garbage collector: unsupported kind {other}"
            )))
        }
    };
    ignore_not_found(r).map(|_| 1)
}

/// A stand-in node agent for tests: for each live node, renew its Lease and mark the pods bound
/// to it Running and Ready with a pod IP ([`fake_agent_renew_leases`] then
/// [`fake_agent_mark_pods`]).
pub fn fake_agent_step<C: Cluster>(
    c: &C,
    live_nodes: &[&str],
    now: DateTime<Utc>,
) -> Result<(), ClusterError> {
    fake_agent_renew_leases(c, live_nodes, now)?;
    fake_agent_mark_pods(c, live_nodes, now)
}

/// The fake agent's heartbeat: renew (or create) each live node's Lease.
pub fn fake_agent_renew_leases<C: Cluster>(
    c: &C,
    live_nodes: &[&str],
    now: DateTime<Utc>,
) -> Result<(), ClusterError> {
    for node in live_nodes {
        let lease = c.get::<Lease>(nodelifecycle::LEASE_NAMESPACE, node)?;
        match lease {
            Some(mut l) => {
                l.spec.get_or_insert_with(Default::default).renew_time = Some(MicroTime(now));
                c.update(&clear_rv(l))?;
            }
            None => {
                c.create(&Lease {
                    metadata: ObjectMeta {
                        namespace: Some(nodelifecycle::LEASE_NAMESPACE.into()),
                        name: Some(node.to_string()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(node.to_string()),
                        renew_time: Some(MicroTime(now)),
                        lease_duration_seconds: Some(40),
                        ..Default::default()
                    }),
                })?;
            }
        }
    }
    Ok(())
}

/// The fake agent's pod work: finish deleting the pods of live nodes that are terminating,
/// and mark their bound pods Running and Ready with a pod IP.
pub fn fake_agent_mark_pods<C: Cluster>(
    c: &C,
    live_nodes: &[&str],
    now: DateTime<Utc>,
) -> Result<(), ClusterError> {
    for (i, node) in live_nodes.iter().enumerate() {
        let pods: Vec<Pod> = c.list()?;
        for (j, p) in pods.into_iter().enumerate() {
            let on_node = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(*node);
            if on_node && p.metadata.deletion_timestamp.is_some() {
                // Containers stopped: the agent's final delete.
                let k = ObjectKey::of(&p.metadata);
                match c.force_delete_pod(&k.namespace, &k.name) {
                    Ok(()) | Err(ClusterError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            if p.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(*node)
                || pod_ready(&p)
                || !pod_active(&p)
            {
                continue;
            }
            let mut p = crate::fixtures::running_ready(p, now);
            p.status.get_or_insert_with(Default::default).pod_ip =
                Some(format!("10.{}.{}.{}", i + 1, j / 250, j % 250 + 1));
            c.update_status(&clear_rv(p))?;
        }
    }
    Ok(())
}

/// An Event about pod `p` (core/v1, as `kubectl describe pod` and `kubectl get events` show).
pub fn pod_event(
    p: &Pod,
    type_: &str,
    reason: &str,
    message: &str,
    component: &str,
    now: DateTime<Utc>,
) -> Event {
    Event {
        metadata: ObjectMeta {
            namespace: p.metadata.namespace.clone(),
            generate_name: Some(format!("{}.", p.metadata.name.as_deref().unwrap_or("pod"))),
            ..Default::default()
        },
        involved_object: ObjectReference {
            kind: Some("Pod".into()),
            api_version: Some("v1".into()),
            namespace: p.metadata.namespace.clone(),
            name: p.metadata.name.clone(),
            uid: p.metadata.uid.clone(),
            ..Default::default()
        },
        reason: Some(reason.into()),
        message: Some(message.into()),
        type_: Some(type_.into()),
        count: Some(1),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        source: Some(k8s_openapi::api::core::v1::EventSource {
            component: Some(component.into()),
            host: None,
        }),
        reporting_component: Some(component.into()),
        ..Default::default()
    }
}

/// A FailedScheduling event for `p` and its PodScheduled=False condition (the /status write
/// uses `p`'s resourceVersion if it has one). Returns the updated pod.
pub(crate) fn record_unschedulable<C: Cluster + ?Sized>(
    c: &C,
    p: &Pod,
    message: &str,
    now: DateTime<Utc>,
) -> Result<Pod, ClusterError> {
    let ev = pod_event(
        p,
        "Warning",
        "FailedScheduling",
        message,
        "default-scheduler",
        now,
    );
    c.create(&ev)?;
    let mut pod = p.clone();
    let st = pod.status.get_or_insert_with(Default::default);
    let conds = st.conditions.get_or_insert_with(Vec::new);
    conds.retain(|c| c.type_ != "PodScheduled");
    conds.push(PodCondition {
        type_: "PodScheduled".into(),
        status: "False".into(),
        reason: Some("Unschedulable".into()),
        message: Some(message.into()),
        last_transition_time: Some(Time(now)),
        ..Default::default()
    });
    c.update_status(&pod)
}
