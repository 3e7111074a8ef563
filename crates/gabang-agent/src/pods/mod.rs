//! One pod made real on this host: [`PodRuntime::sync`] moves a pod one step toward its spec
//! (sandbox → volumes → images → init containers in order → app containers; restarts with
//! backoff; probes) and returns the status to report; [`PodRuntime::terminate`] stops it
//! gracefully and releases everything it made. State survives an agent restart: it is read
//! back from the runtime's containers (their labels, see [`crate::labels`]) and the sandbox
//! dirs under `<root>/pods/<uid>/`.
//!
//! Files, one verb each: `sync.rs` (the step), `sandbox.rs` (netns, IP, /etc files),
//! `cgroups.rs` (the pod cgroup and its limits),
//! `volumes.rs`, `images.rs` (resolve / pull with backoff), `containers.rs` (runtime
//! containers of a pod: observe, create + start, remove old attempts), `probes.rs`,
//! `status.rs` (what kubectl shows), `terminate.rs`.

mod cgroups;
mod containers;
mod images;
mod probes;
mod sandbox;
mod status;
mod sync;
mod terminate;
mod volumes;

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, PodStatus};

use crate::backoff::Backoff;
use crate::podspec::RefSource;
use crate::probe::ProbeState;
use crate::{AgentError, Result};

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

/// How often a pod with running containers but nothing else due is looked at again (to
/// notice exits), and a pod with a running init container (to start the next one soon).
pub const RESYNC_RUNNING: Duration = Duration::from_secs(5);
pub const RESYNC_INIT: Duration = Duration::from_millis(300);
/// How soon a pod blocked on a missing configMap/secret or a create error is retried.
pub const RETRY_CONFIG: Duration = Duration::from_secs(5);

/// The node's pods. `Send + Sync`: the agent calls it from one worker thread per pod.
pub struct PodRuntime {
    cfg: PodRuntimeConfig,
    runtime: gabang_runtime::Runtime,
    content: std::sync::Arc<gabang_content::Store>,
    net: gabang_net::Network,
    /// Pod uid → ids of its runtime containers (scanned from labels at start, then kept).
    index: Mutex<HashMap<String, BTreeSet<String>>>,
    /// Per-pod in-memory state (backoffs, probes), each behind its own lock.
    pods: Mutex<HashMap<String, Arc<Mutex<PodState>>>>,
}

/// What the agent remembers about one pod between syncs (lost on restart, by design: a
/// restarted agent starts backoffs and probes afresh, as the kubelet does).
#[derive(Default)]
struct PodState {
    containers: HashMap<String, ContainerTrack>,
    images: HashMap<String, images::PullBackoff>,
}

/// One container (by name) of a pod.
#[derive(Default)]
struct ContainerTrack {
    backoff: Option<Backoff>,
    /// The runtime container whose exit was fed to `backoff`, and when it may restart.
    exit_seen: Option<String>,
    restart_at: Option<Instant>,
    probes: Option<ProbeSet>,
}

/// The probes of one running attempt.
struct ProbeSet {
    id: String,
    startup: Option<ProbeState>,
    liveness: Option<ProbeState>,
    readiness: Option<ProbeState>,
}

/// The kubelet's restartPolicy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    fn of(pod: &Pod) -> Self {
        match pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) {
            Some("Never") => Self::Never,
            Some("OnFailure") => Self::OnFailure,
            _ => Self::Always,
        }
    }
    /// Should an app container that exited with `code` start again?
    fn restarts_app(self, code: i32) -> bool {
        match self {
            Self::Always => true,
            Self::OnFailure => code != 0,
            Self::Never => false,
        }
    }
    /// Should an init container that exited with `code` start again? (0 = done.)
    fn restarts_init(self, code: i32) -> bool {
        code != 0 && self != Self::Never
    }
}

/// The pod's identity, checked: the uid names dirs, the netns and the veth.
#[derive(Debug, Clone)]
struct PodMeta {
    uid: String,
    namespace: String,
    name: String,
}

impl PodMeta {
    fn of(pod: &Pod) -> Result<Self> {
        let m = &pod.metadata;
        let uid = m
            .uid
            .clone()
            .ok_or_else(|| AgentError::Other("pod has no metadata.uid".into()))?;
        valid_uid(&uid)?;
        Ok(Self {
            uid,
            namespace: m.namespace.clone().unwrap_or_else(|| "default".into()),
            name: m
                .name
                .clone()
                .ok_or_else(|| AgentError::Other("pod has no metadata.name".into()))?,
        })
    }
}

fn valid_uid(uid: &str) -> Result<()> {
    if uid.len() < 8
        || uid.len() > 64
        || !uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(AgentError::Other(format!(
            "pod uid {uid:?}: expected 8-64 characters of [a-zA-Z0-9-]"
        )));
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PodRuntime {
    pub fn new(cfg: PodRuntimeConfig) -> Result<Self> {
        let mut cfg = cfg;
        cfg.root = std::path::absolute(&cfg.root).map_err(|source| AgentError::Io {
            path: cfg.root.clone(),
            source,
        })?;
        let runtime = gabang_runtime::Runtime::new(gabang_runtime::RuntimeConfig {
            root: cfg.root.clone(),
            shim_exe: cfg.shim_exe.clone(),
            shim_prefix_args: cfg.shim_prefix_args.clone(),
        })?;
        runtime.prepare_seccomp()?;
        // The process's store, which the runtime also records image use in.
        let content = gabang_content::Store::shared(&cfg.root)?;
        let net = gabang_net::Network::open_with(
            &cfg.root.join("net-pods"),
            gabang_net::NetConfig {
                bridge: cfg.bridge.clone(),
                subnet: cfg.pod_cidr.0,
                prefix: cfg.pod_cidr.1,
            },
        )?;
        let pods_dir = cfg.root.join("pods");
        std::fs::create_dir_all(&pods_dir).map_err(|source| AgentError::Io {
            path: pods_dir,
            source,
        })?;
        let rt = Self {
            cfg,
            runtime,
            content,
            net,
            index: Mutex::new(HashMap::new()),
            pods: Mutex::new(HashMap::new()),
        };
        rt.rescan()?;
        Ok(rt)
    }

    /// Move `pod` one step toward its spec. Idempotent; never duplicates a container.
    pub fn sync(&self, pod: &Pod, refs: &dyn RefSource) -> Result<SyncOutcome> {
        sync::sync(self, pod, refs)
    }

    /// Stop the pod's containers (SIGTERM, `grace`, SIGKILL) and release its sandbox
    /// (netns, veth, IP, volume dirs, cgroups). Idempotent; `Ok` once nothing is left.
    pub fn terminate(&self, uid: &str, grace: Duration) -> Result<()> {
        terminate::terminate(self, uid, grace)
    }

    /// Pods that have a sandbox or containers on this host.
    pub fn local_pods(&self) -> Result<Vec<LocalPod>> {
        self.rescan()?;
        let mut out: std::collections::BTreeMap<String, LocalPod> = Default::default();
        let dir = self.cfg.root.join("pods");
        let entries = std::fs::read_dir(&dir).map_err(|source| AgentError::Io {
            path: dir.clone(),
            source,
        })?;
        for e in entries.flatten() {
            let uid = e.file_name().to_string_lossy().into_owned();
            if valid_uid(&uid).is_err() || !e.path().is_dir() {
                continue;
            }
            let (namespace, name) = match sandbox::read(&e.path()) {
                Some(sb) => (sb.namespace, sb.name),
                None => (String::new(), String::new()),
            };
            out.insert(
                uid.clone(),
                LocalPod {
                    uid,
                    namespace,
                    name,
                },
            );
        }
        let ids: Vec<(String, BTreeSet<String>)> = lock(&self.index)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (uid, ids) in ids {
            let labels = ids
                .iter()
                .find_map(|id| self.runtime.store().load_config(id).ok())
                .map(|c| c.options.labels)
                .unwrap_or_default();
            let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
            let p = out.entry(uid.clone()).or_insert_with(|| LocalPod {
                uid,
                namespace: String::new(),
                name: String::new(),
            });
            if p.name.is_empty() {
                p.namespace = get(crate::labels::POD_NAMESPACE);
                p.name = get(crate::labels::POD_NAME);
            }
        }
        Ok(out.into_values().collect())
    }

    /// The runtime the pods' containers live in (for the logs/exec endpoint).
    pub fn runtime(&self) -> &gabang_runtime::Runtime {
        &self.runtime
    }

    /// The pod network (bridge, IPAM) of this node.
    pub fn network(&self) -> &gabang_net::Network {
        &self.net
    }

    /// `<root>/pods/<uid>`.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.cfg.root.join("pods").join(uid)
    }

    /// The cgroup parent of a pod's containers.
    pub fn cgroup_parent(uid: &str) -> String {
        format!("/gabang/pods/{uid}")
    }

    /// Add to the uid → containers index from the runtime's labelled containers.
    fn rescan(&self) -> Result<()> {
        let mut map: HashMap<String, BTreeSet<String>> = HashMap::new();
        for id in self.runtime.store().ids()? {
            let Ok(cfg) = self.runtime.store().load_config(&id) else {
                continue;
            };
            if let Some(uid) = cfg.options.labels.get(crate::labels::POD_UID) {
                map.entry(uid.clone()).or_default().insert(id);
            }
        }
        // Union, never replace: a sync may have added a container since the listing began;
        // ids of removed containers are dropped when a sync finds them gone.
        let mut index = lock(&self.index);
        for (uid, ids) in map {
            index.entry(uid).or_default().extend(ids);
        }
        Ok(())
    }

    fn pod_state(&self, uid: &str) -> Arc<Mutex<PodState>> {
        lock(&self.pods).entry(uid.to_owned()).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_runtime_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<PodRuntime>();
    }

    #[test]
    fn restart_policy_decisions() {
        assert!(RestartPolicy::Always.restarts_app(0));
        assert!(!RestartPolicy::OnFailure.restarts_app(0));
        assert!(RestartPolicy::OnFailure.restarts_app(2));
        assert!(!RestartPolicy::Never.restarts_app(1));
        assert!(!RestartPolicy::Always.restarts_init(0));
        assert!(RestartPolicy::Always.restarts_init(1));
        assert!(!RestartPolicy::Never.restarts_init(1));
    }

    #[test]
    fn uids_that_could_escape_a_path_or_an_ifname_are_refused() {
        assert!(valid_uid("0b6f7a2e-1c3d-4e5f-8a9b-0c1d2e3f4a5b").is_ok());
        assert!(valid_uid("../../etc").is_err());
        assert!(valid_uid("a b c d e f").is_err());
        assert!(valid_uid("short").is_err());
    }
}
