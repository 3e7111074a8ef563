//! gabang-agent: the node agent. It turns the Pods bound to its node into a sandbox (a network
//! namespace with an IP from the node's pod CIDR, volume dirs) plus one runtime container per
//! Pod container, keeps them as the spec says (init containers, restart policy with backoff,
//! probes), reports status back to the API server, and serves the container logs/exec endpoint
//! the API server proxies `kubectl logs/exec` to.
//!
//! Start reading at [`agent`] (the loop: Node registration, Lease, pod workers), then
//! [`pods::PodRuntime`] (one pod made real on this host), [`podspec`] (Pod spec → what each
//! container gets: Kubernetes' command/args, env, volumes, limits), [`probe`] (liveness,
//! readiness, startup), [`server`] (the logs/exec endpoint).

pub mod agent;
pub mod backoff;
mod error;
mod events;
pub mod node;
pub mod pods;
pub mod podspec;
pub mod probe;
pub mod server;

pub use error::{AgentError, Result};

/// Labels the agent puts on every runtime container it makes (`RunOptions::labels`): how pods
/// are found again after an agent restart and how the logs/exec endpoint finds a container.
pub mod labels {
    pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
    pub const POD_NAME: &str = "io.kubernetes.pod.name";
    pub const POD_UID: &str = "io.kubernetes.pod.uid";
    pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
    /// The container's restart count when it was made (0, 1, 2, …): the previous attempt is
    /// kept for `kubectl logs --previous`.
    pub const ATTEMPT: &str = "io.kubernetes.container.restartCount";
    /// "init" for init containers, "app" otherwise.
    pub const CONTAINER_TYPE: &str = "io.gabang.container.type";
}
