//! Builders for Nodes, Pods, Services and Deployments used by tests, benchmarks and fake
//! clusters.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, Namespace, Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodCondition, PodSpec,
    PodStatus, PodTemplateSpec, ResourceRequirements, Service, ServicePort, ServiceSpec, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use k8s_openapi::chrono::{DateTime, Utc};

use crate::cluster::{Cluster, ClusterError};
use crate::nodelifecycle::LEASE_NAMESPACE;

pub fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A Ready node with allocatable `cpu` (e.g. "4"), `memory` (e.g. "8Gi") and `pods`.
pub fn node(name: &str, cpu: &str, memory: &str, pods: i64) -> Node {
    let alloc: BTreeMap<String, Quantity> = [
        ("cpu".to_string(), Quantity(cpu.into())),
        ("memory".to_string(), Quantity(memory.into())),
        ("pods".to_string(), Quantity(pods.to_string())),
    ]
    .into_iter()
    .collect();
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            allocatable: Some(alloc.clone()),
            capacity: Some(alloc),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

pub fn with_labels(mut n: Node, kv: &[(&str, &str)]) -> Node {
    n.metadata.labels = Some(labels(kv));
    n
}

pub fn with_taint(mut n: Node, key: &str, value: &str, effect: &str) -> Node {
    let spec = n.spec.get_or_insert_with(Default::default);
    spec.taints.get_or_insert_with(Vec::new).push(Taint {
        key: key.into(),
        value: Some(value.into()).filter(|v: &String| !v.is_empty()),
        effect: effect.into(),
        time_added: None,
    });
    n
}

/// A pending pod with one container requesting `cpu` / `memory` (empty = no request).
pub fn pod(ns: &str, name: &str, cpu: &str, memory: &str) -> Pod {
    let mut req = BTreeMap::new();
    if !cpu.is_empty() {
        req.insert("cpu".to_string(), Quantity(cpu.into()));
    }
    if !memory.is_empty() {
        req.insert("memory".to_string(), Quantity(memory.into()));
    }
    Pod {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{ns}-{name}")),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some("busybox".into()),
                resources: Some(ResourceRequirements {
                    requests: Some(req).filter(|r| !r.is_empty()),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Pending".into()),
            ..Default::default()
        }),
    }
}

pub fn owned_by(mut p: Pod, kind: &str, name: &str, uid: &str) -> Pod {
    p.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    p
}

pub fn bound(mut p: Pod, node: &str) -> Pod {
    if let Some(s) = p.spec.as_mut() {
        s.node_name = Some(node.into());
    }
    p
}

/// Mark a pod Running and Ready since `since`.
pub fn running_ready(mut p: Pod, since: DateTime<Utc>) -> Pod {
    let st = p.status.get_or_insert_with(Default::default);
    st.phase = Some("Running".into());
    st.conditions = Some(vec![PodCondition {
        type_: "Ready".into(),
        status: "True".into(),
        last_transition_time: Some(Time(since)),
        ..Default::default()
    }]);
    p
}

/// A ClusterIP Service `ns/name` selecting `selector`, with one unnamed TCP `port`.
pub fn service(ns: &str, name: &str, selector: &[(&str, &str)], port: i32) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(labels(selector)),
            ports: Some(vec![ServicePort {
                port,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// A Deployment `ns/name` of `replicas` pods running `spec`, selecting and labelling its pods
/// `app=<name>` (default strategy).
pub fn deployment(ns: &str, name: &str, replicas: i32, spec: Option<PodSpec>) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", name)])),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&[("app", name)])),
                    ..Default::default()
                }),
                spec,
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// Seeds an empty cluster for tests and benchmarks: the `default` and `kube-node-lease`
/// namespaces (kept if they exist), then one [`node`] per name with the given capacity, its
/// Ready status written through the status subresource.
pub fn seed<C: Cluster>(
    c: &C,
    nodes: &[&str],
    cpu: &str,
    memory: &str,
    pods: i64,
) -> Result<(), ClusterError> {
    for ns in ["default", LEASE_NAMESPACE] {
        let want = Namespace {
            metadata: ObjectMeta {
                name: Some(ns.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        match c.create(&want) {
            Ok(_) | Err(ClusterError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    for n in nodes {
        let want = node(n, cpu, memory, pods);
        let mut created = c.create(&want)?;
        created.status = want.status;
        c.update_status(&created)?;
    }
    Ok(())
}
