//! gabang-controllers: the reconcilers that keep a cluster's declared state true.
//!
//! Every reconciler here is PURE: observed objects (k8s-openapi types) and a clock value in,
//! a list of actions out; running one twice on the same input yields the same actions, and
//! applying them converges. Start with [`scheduler`] (placement) and [`replicaset`] (pods
//! from a template); [`deployment`] drives ReplicaSets, [`endpoints`] turns Services + Pods into
//! Endpoints/EndpointSlices, [`gc`] follows ownerReferences and namespace deletion, and
//! [`nodelifecycle`] turns expired node Leases into NotReady nodes and evictions. Shared
//! helpers (selectors, quantities, pod readiness) live in [`common`]; [`fixtures`] builds fake
//! nodes and pods.
//!
//! [`runtime::Manager`] runs them: [`informer`]s (list + watch per kind into caches; metadata
//! only for the kinds just the GC needs, found by discovery) feed a
//! [`queue`] of keys, each reconciled from the caches. It talks to a [`cluster::Cluster`]:
//! [`http::HttpCluster`] (our API server) or [`cluster::MemCluster`] (tests). [`polling`] is
//! the previous list-everything-every-pass loop, kept as the benchmark anchor.

pub mod cluster;
pub mod common;
pub mod deployment;
pub mod endpoints;
pub mod fixtures;
pub mod gc;
pub mod http;
pub mod informer;
pub mod nodelifecycle;
pub mod polling;
pub mod queue;
pub mod replicaset;
pub mod runtime;
pub mod scheduler;
