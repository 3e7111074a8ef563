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

pub mod cluster;
pub mod common;
pub mod deployment;
pub mod endpoints;
pub mod fixtures;
pub mod gc;
pub mod http;
pub mod nodelifecycle;
pub mod replicaset;
pub mod runtime;
pub mod scheduler;
