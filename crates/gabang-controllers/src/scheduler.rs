//! The scheduler: places pending pods on nodes.
//!
//! [`Scheduler::new`] precomputes a [`NodeInfo`] per node once (allocatable, what bound pods
//! already request, labels, taints, readiness); [`Scheduler::schedule`] filters and scores the
//! nodes for one pod and, when it binds, updates that node's accounting in place, so a batch of
//! pods costs O(pods × nodes) cheap comparisons and no re-listing.
//!
//! Filters, in Kubernetes' order: unschedulable, NotReady, NoSchedule/NoExecute taints vs
//! tolerations, nodeSelector + required node affinity, pod count, cpu and memory requests.
//! Scores: least allocated (cpu and memory) plus spreading pods of one controller across
//! nodes. A pod that fits nowhere gets a
//! Kubernetes-style message: `0/3 nodes are available: 1 node(s) had untolerated taint {k: v}, 2 Insufficient cpu.`

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, Taint, Toleration,
};

use crate::common::{controller_ref, cpu_millis, pod_terminated, quantity_value};

/// Everything the filters and scores need to know about one node, kept up to date as pods bind.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Only NoSchedule / NoExecute taints (PreferNoSchedule does not filter).
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub ready: bool,
    pub alloc_cpu_m: i64,
    pub alloc_mem: i64,
    pub alloc_pods: i64,
    pub req_cpu_m: i64,
    pub req_mem: i64,
    pub pods: i64,
    /// Pods per controller (interned owner id) on this node, for spreading.
    owner_counts: HashMap<u32, u32>,
}

/// A pod's scheduling needs, computed once per pod.
struct PodNeeds<'a> {
    cpu_m: i64,
    mem: i64,
    node_selector: Option<&'a BTreeMap<String, String>>,
    required_terms: Option<&'a [NodeSelectorTerm]>,
    tolerations: &'a [Toleration],
    owner: Option<u32>,
}

/// Why a node was filtered out; `Display` is Kubernetes' wording.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FilterReason {
    Unschedulable,
    NotReady,
    NodeAffinity,
    UntoleratedTaint(String),
    TooManyPods,
    InsufficientCpu,
    InsufficientMemory,
}

impl std::fmt::Display for FilterReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FilterReason::Unschedulable => write!(f, "node(s) were unschedulable"),
            FilterReason::NotReady => write!(f, "node(s) were not ready"),
            FilterReason::NodeAffinity => {
                write!(f, "node(s) didn't match Pod's node affinity/selector")
            }
            FilterReason::UntoleratedTaint(t) => write!(f, "node(s) had untolerated taint {t}"),
            FilterReason::TooManyPods => write!(f, "Too many pods"),
            FilterReason::InsufficientCpu => write!(f, "Insufficient cpu"),
            FilterReason::InsufficientMemory => write!(f, "Insufficient memory"),
        }
    }
}

/// Outcome of scheduling one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Bind the pod to this node (POST pods/{name}/binding).
    Bind { node: String },
    /// The pod stays Pending; `message` is the FailedScheduling event text.
    Unschedulable { message: String },
}

/// Scheduler state: the node table plus owner interning.
#[derive(Debug, Default)]
pub struct Scheduler {
    nodes: Vec<NodeInfo>,
    by_name: HashMap<String, usize>,
    owners: HashMap<String, u32>,
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Sum of container requests (limits stand in for missing requests, as Kubernetes defaults them),
/// at least the largest init container's.
pub fn pod_requests(spec: &PodSpec) -> (i64, i64) {
    fn one(c: &k8s_openapi::api::core::v1::Container) -> (i64, i64) {
        let r = c.resources.as_ref();
        let get = |name: &str,
                   f: fn(
            &k8s_openapi::apimachinery::pkg::api::resource::Quantity,
        ) -> Option<i64>| {
            r.and_then(|r| {
                r.requests
                    .as_ref()
                    .and_then(|m| m.get(name))
                    .or_else(|| r.limits.as_ref().and_then(|m| m.get(name)))
            })
            .and_then(f)
            .unwrap_or(0)
        };
        (get("cpu", cpu_millis), get("memory", quantity_value))
    }
    let (mut cpu, mut mem) = (0, 0);
    for c in &spec.containers {
        let (a, b) = one(c);
        cpu += a;
        mem += b;
    }
    for c in spec.init_containers.iter().flatten() {
        let (a, b) = one(c);
        cpu = cpu.max(a);
        mem = mem.max(b);
    }
    (cpu, mem)
}

/// Does one toleration tolerate this taint (Kubernetes' `ToleratesTaint`)?
pub fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = tol.effect.as_deref() {
        if !e.is_empty() && e != taint.effect {
            return false;
        }
    }
    let key = tol.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match tol.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            !key.is_empty()
                && tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = req.values.as_deref().unwrap_or(&[]);
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if req.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Required node affinity: the terms are ORed, requirements within a term ANDed; an empty term
/// matches nothing (as in Kubernetes).
pub fn terms_match(
    terms: &[NodeSelectorTerm],
    name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let name = name.to_string();
    terms.iter().any(|t| {
        let exprs = t.match_expressions.as_deref().unwrap_or(&[]);
        let fields = t.match_fields.as_deref().unwrap_or(&[]);
        if exprs.is_empty() && fields.is_empty() {
            return false;
        }
        exprs
            .iter()
            .all(|r| requirement_matches(r, labels.get(&r.key)))
            && fields
                .iter()
                .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(&name)))
    })
}

impl NodeInfo {
    fn from_node(node: &Node) -> Self {
        let status = node.status.as_ref();
        let alloc = status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()));
        let get =
            |k: &str,
             f: fn(&k8s_openapi::apimachinery::pkg::api::resource::Quantity) -> Option<i64>,
             d: i64| { alloc.and_then(|a| a.get(k)).and_then(f).unwrap_or(d) };
        let spec = node.spec.as_ref();
        NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: spec
                .and_then(|s| s.taints.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
                .collect(),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            ready: node_ready(node),
            alloc_cpu_m: get("cpu", cpu_millis, 0),
            alloc_mem: get("memory", quantity_value, 0),
            alloc_pods: get("pods", quantity_value, 110),
            req_cpu_m: 0,
            req_mem: 0,
            pods: 0,
            owner_counts: HashMap::new(),
        }
    }

    /// All reasons this node rejects the pod (empty = fits). Resource shortfalls are all
    /// reported together, other filters stop at the first failure, like Kubernetes' framework.
    fn filter(&self, p: &PodNeeds<'_>, out: &mut Vec<FilterReason>) {
        if self.unschedulable {
            out.push(FilterReason::Unschedulable);
            return;
        }
        if !self.ready {
            out.push(FilterReason::NotReady);
            return;
        }
        // Taints before node affinity, as Kubernetes' filter plugins run (TaintToleration,
        // then NodeAffinity): a tainted node reports its taint.
        for t in &self.taints {
            if !p.tolerations.iter().any(|tol| tolerates(tol, t)) {
                out.push(FilterReason::UntoleratedTaint(format!(
                    "{{{}: {}}}",
                    t.key,
                    t.value.as_deref().unwrap_or("")
                )));
                return;
            }
        }
        if let Some(sel) = p.node_selector {
            if !sel.iter().all(|(k, v)| self.labels.get(k) == Some(v)) {
                out.push(FilterReason::NodeAffinity);
                return;
            }
        }
        if let Some(terms) = p.required_terms {
            if !terms_match(terms, &self.name, &self.labels) {
                out.push(FilterReason::NodeAffinity);
                return;
            }
        }
        if self.pods + 1 > self.alloc_pods {
            out.push(FilterReason::TooManyPods);
        }
        if p.cpu_m > 0 && self.req_cpu_m + p.cpu_m > self.alloc_cpu_m {
            out.push(FilterReason::InsufficientCpu);
        }
        if p.mem > 0 && self.req_mem + p.mem > self.alloc_mem {
            out.push(FilterReason::InsufficientMemory);
        }
    }

    /// Least-allocated score in 0..=100 (mean of cpu and memory free fraction after placing).
    fn least_allocated(&self, p: &PodNeeds<'_>) -> i64 {
        fn frac(alloc: i64, used: i64) -> i64 {
            if alloc <= 0 {
                return 0;
            }
            ((alloc - used).max(0) * 100) / alloc
        }
        (frac(self.alloc_cpu_m, self.req_cpu_m + p.cpu_m)
            + frac(self.alloc_mem, self.req_mem + p.mem))
            / 2
    }

    fn add(&mut self, cpu_m: i64, mem: i64, owner: Option<u32>) {
        self.req_cpu_m += cpu_m;
        self.req_mem += mem;
        self.pods += 1;
        if let Some(o) = owner {
            *self.owner_counts.entry(o).or_insert(0) += 1;
        }
    }
}

impl Scheduler {
    /// Build the node table from nodes and the pods already bound to them (terminated pods hold
    /// no resources).
    pub fn new(nodes: &[Node], pods: &[Pod]) -> Self {
        Self::with_pods(nodes, pods)
    }

    /// [`Scheduler::new`] over pods held any way (e.g. `Arc<Pod>` from a cache).
    pub fn with_pods<P: Borrow<Pod>>(nodes: &[Node], pods: &[P]) -> Self {
        let mut s = Scheduler::default();
        for n in nodes {
            let info = NodeInfo::from_node(n);
            s.by_name.insert(info.name.clone(), s.nodes.len());
            s.nodes.push(info);
        }
        for p in pods {
            let p: &Pod = p.borrow();
            if pod_terminated(p) {
                continue;
            }
            let Some(spec) = p.spec.as_ref() else {
                continue;
            };
            let Some(node) = spec.node_name.as_deref() else {
                continue;
            };
            let Some(&i) = s.by_name.get(node) else {
                continue;
            };
            let (cpu, mem) = pod_requests(spec);
            let owner = s.owner_id(p);
            s.nodes[i].add(cpu, mem, owner);
        }
        s
    }

    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    fn owner_id(&mut self, pod: &Pod) -> Option<u32> {
        let r = controller_ref(&pod.metadata)?;
        let next = self.owners.len() as u32;
        Some(*self.owners.entry(r.uid.clone()).or_insert(next))
    }

    /// Choose a node for `pod`; on `Bind` the node's accounting already includes the pod.
    pub fn schedule(&mut self, pod: &Pod) -> Decision {
        let Some(spec) = pod.spec.as_ref() else {
            return Decision::Unschedulable {
                message: "pod has no spec".into(),
            };
        };
        let (cpu_m, mem) = pod_requests(spec);
        let owner = self.owner_id(pod);
        let needs = PodNeeds {
            cpu_m,
            mem,
            node_selector: spec.node_selector.as_ref().filter(|m| !m.is_empty()),
            required_terms: spec
                .affinity
                .as_ref()
                .and_then(|a| a.node_affinity.as_ref())
                .and_then(|na| {
                    na.required_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .map(|ns| ns.node_selector_terms.as_slice()),
            tolerations: spec.tolerations.as_deref().unwrap_or(&[]),
            owner,
        };
        let mut reasons: Vec<FilterReason> = Vec::new();
        let mut failures: BTreeMap<FilterReason, usize> = BTreeMap::new();
        // Feasible nodes with their least-allocated score and owner count.
        let mut feasible: Vec<(usize, i64, u32)> = Vec::new();
        let mut max_count = 0u32;
        for (i, n) in self.nodes.iter().enumerate() {
            reasons.clear();
            n.filter(&needs, &mut reasons);
            if reasons.is_empty() {
                let count = needs
                    .owner
                    .and_then(|o| n.owner_counts.get(&o).copied())
                    .unwrap_or(0);
                max_count = max_count.max(count);
                feasible.push((i, n.least_allocated(&needs), count));
            } else {
                for r in reasons.drain(..) {
                    *failures.entry(r).or_insert(0) += 1;
                }
            }
        }
        let best = feasible
            .iter()
            .map(|&(i, la, count)| {
                // Spreading, as SelectorSpread: fewer pods of this owner scores higher.
                let spread = if max_count == 0 {
                    100
                } else {
                    ((max_count - count) as i64 * 100) / max_count as i64
                };
                (la + spread, i)
            })
            // Highest score; ties go to the earliest node (deterministic).
            .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        match best {
            Some((_, i)) => {
                self.nodes[i].add(cpu_m, mem, owner);
                Decision::Bind {
                    node: self.nodes[i].name.clone(),
                }
            }
            None => Decision::Unschedulable {
                message: unschedulable_message(self.nodes.len(), &failures),
            },
        }
    }

    /// Forget a pod that left `node` (deleted, evicted, terminated).
    pub fn remove_pod(&mut self, node: &str, pod: &Pod) {
        let Some(&i) = self.by_name.get(node) else {
            return;
        };
        let Some(spec) = pod.spec.as_ref() else {
            return;
        };
        let (cpu, mem) = pod_requests(spec);
        let owner = controller_ref(&pod.metadata).and_then(|r| self.owners.get(&r.uid).copied());
        let n = &mut self.nodes[i];
        n.req_cpu_m -= cpu;
        n.req_mem -= mem;
        n.pods -= 1;
        if let Some(o) = owner {
            if let Some(c) = n.owner_counts.get_mut(&o) {
                *c = c.saturating_sub(1);
            }
        }
    }
}

/// `0/N nodes are available: <count> <reason>, ….` with reasons sorted as Kubernetes sorts the
/// formatted strings.
pub fn unschedulable_message(nodes: usize, failures: &BTreeMap<FilterReason, usize>) -> String {
    if nodes == 0 {
        return "0/0 nodes are available: no nodes available to schedule pods.".into();
    }
    let mut parts: Vec<String> = failures.iter().map(|(r, c)| format!("{c} {r}")).collect();
    parts.sort();
    format!("0/{nodes} nodes are available: {}.", parts.join(", "))
}

#[cfg(test)]
mod tests;
