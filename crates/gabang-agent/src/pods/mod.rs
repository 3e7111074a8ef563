//! One pod made real on this host: [`PodRuntime::sync`] moves a pod one step toward its spec
//! (sandbox → volumes → images → init containers in order → app containers; restarts with
//! backoff; probes) and returns the status to report; [`PodRuntime::terminate`] stops it
//! gracefully and releases everything it made. State survives an agent restart: it is read
//! back from the runtime's containers (their labels, see [`crate::labels`]) and the sandbox
//! dirs under `<root>/pods/<uid>/`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};

use crate::podspec::RefSource;
use crate::Result;

/// How the pod runtime is set up on this node.
#[derive(Debug, Clone)]
pub struct PodRuntimeConfig {
    /// The node's state root (content store, containers, `pods/`, `net-pods/`).
    pub root: PathBuf,
    /// The `gabang` executable and the args before the shim's own (`["shim"]`).
    pub shim_exe: PathBuf,
    pub shim_prefix_args: Vec<String>,
    pub node_name: String,
    /// The node's address (status.hostIP).
    pub host_ip: String,
    /// The node's pod CIDR (e.g. 10.42.0.0/24): the bridge gets `.1`, pods the rest.
    pub pod_cidr: (Ipv4Addr, u8),
    /// The node's pod bridge (≤ 15 chars, e.g. `gbk0`).
    pub bridge: String,
    /// hostPath volumes are refused unless this is set.
    pub allow_host_path: bool,
}

/// What one sync step found and what to do next.
#[derive(Debug, Clone)]
pub struct SyncOutcome {
    /// The pod's status as kubectl should see it (phase, conditions, containerStatuses,
    /// initContainerStatuses, podIP(s), hostIP, startTime).
    pub status: PodStatus,
    /// Call `sync` again within this long (a probe or a backoff is due), even if the pod
    /// does not change.
    pub requeue_after: Option<Duration>,
    /// Events to record (`type`, `reason`, `message`), e.g. ("Normal","Pulled",…),
    /// ("Warning","BackOff",…).
    pub events: Vec<(String, String, String)>,
}

/// A pod found on this host (for adoption after a restart and orphan cleanup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPod {
    pub uid: String,
    pub namespace: String,
    pub name: String,
}

/// The node's pods. `Send + Sync`: the agent calls it from one worker thread per pod.
pub struct PodRuntime {
    _cfg: PodRuntimeConfig,
}

impl PodRuntime {
    pub fn new(cfg: PodRuntimeConfig) -> Result<Self> {
        let _ = cfg;
        todo!("pod runtime helper")
    }

    /// Move `pod` one step toward its spec. Idempotent; never duplicates a container.
    pub fn sync(&self, pod: &Pod, refs: &dyn RefSource) -> Result<SyncOutcome> {
        let _ = (pod, refs);
        todo!("pod runtime helper")
    }

    /// Stop the pod's containers (SIGTERM, `grace`, SIGKILL) and release its sandbox
    /// (netns, veth, IP, volume dirs, cgroups). Idempotent; `Ok` once nothing is left.
    pub fn terminate(&self, uid: &str, grace: Duration) -> Result<()> {
        let _ = (uid, grace);
        todo!("pod runtime helper")
    }

    /// Pods that have a sandbox or containers on this host.
    pub fn local_pods(&self) -> Result<Vec<LocalPod>> {
        todo!("pod runtime helper")
    }

    /// The runtime the pods' containers live in (for the logs/exec endpoint).
    pub fn runtime(&self) -> &gabang_runtime::Runtime {
        todo!("pod runtime helper")
    }
}
