//! Pod spec → what each container gets, as Kubernetes defines it (pure functions, no I/O
//! except [`write_projected`]).
//!
//! - [`plan_container`]: `command` replaces the image ENTRYPOINT (and drops its CMD), `args`
//!   replace CMD; env from `value` (with `$(VAR)` expansion), `configMapKeyRef`,
//!   `secretKeyRef`, `fieldRef`, `resourceFieldRef`, `envFrom` (with prefix; later entries win,
//!   `env` wins over `envFrom`); `workingDir`; `securityContext.runAsUser/runAsGroup`;
//!   resource limits (memory bytes, cpu cores); volumeMounts (with subPath, readOnly).
//! - [`plan_volumes`]: emptyDir, configMap, secret (items, defaultMode, optional), hostPath
//!   (only when allowed), each a [`VolumePlan`].
//! - [`write_projected`]: writes a configMap/secret volume's files so an update is atomic for
//!   readers (kubelet's `..data` symlink swap).
//!
//! Errors name the field path at fault (`spec.containers[1].env[0].valueFrom...`) and map to
//! the Kubernetes waiting reason (`CreateContainerConfigError`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Where configMaps and secrets referenced by a pod come from (the API server, or a fake).
pub trait RefSource: Send + Sync {
    fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, String>;
    fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, String>;
}

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum PlanError {
    /// A referenced object or key is missing (→ `CreateContainerConfigError`).
    #[error("{field}: {message}")]
    Config { field: String, message: String },
    /// The spec cannot be honoured on this node (bad quantity, hostPath not allowed, …).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The API server could not be asked (retry later).
    #[error("{0}")]
    Source(String),
}

impl PlanError {
    /// The container waiting reason kubectl shows.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Config { .. } | Self::Source(_) => "CreateContainerConfigError",
            Self::Invalid { .. } => "CreateContainerError",
        }
    }
}

/// Values `fieldRef` / the downward API can read that are not in the Pod object itself yet.
#[derive(Debug, Clone, Default)]
pub struct PodFacts {
    pub pod_ip: Option<String>,
    pub host_ip: Option<String>,
    pub node_name: String,
}

/// `imagePullPolicy` with Kubernetes' default (Always for `:latest` or no tag, else IfNotPresent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// One volume mount of a container, resolved to a host path.
#[derive(Debug, Clone, PartialEq)]
pub struct MountPlan {
    /// Host path to bind (the volume's dir, joined with `subPath` when given).
    pub host_path: PathBuf,
    pub container_path: String,
    pub read_only: bool,
}

/// What one container gets beyond its image.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerPlan {
    pub name: String,
    pub image: String,
    pub pull_policy: PullPolicy,
    /// `Some` replaces the image ENTRYPOINT (`command`); with `command` set and `args` unset
    /// the image CMD is dropped (`cmd` = `Some(vec![])`).
    pub entrypoint: Option<Vec<String>>,
    /// `Some` replaces the image CMD.
    pub cmd: Option<Vec<String>>,
    /// `K=V` in Kubernetes' order (envFrom first, then env), `$(VAR)` expanded. The image's
    /// own env is merged by the runtime (these win).
    pub env: Vec<String>,
    pub workdir: Option<String>,
    /// `uid[:gid]` from securityContext (container's over pod's), if any.
    pub user: Option<String>,
    pub memory_limit: Option<i64>,
    pub cpu_limit: Option<f64>,
    pub mounts: Vec<MountPlan>,
    pub tty: bool,
    pub stdin: bool,
}

/// What a volume is on the host.
#[derive(Debug, Clone, PartialEq)]
pub enum VolumeKind {
    /// An empty dir made for the pod (`medium: Memory` → tmpfs).
    EmptyDir {
        memory: bool,
        size_limit: Option<i64>,
    },
    /// Files to project (configMap / secret), relative paths.
    Projected { files: Vec<ProjectedFile> },
    /// An existing host path (only when the agent allows hostPath).
    HostPath { path: PathBuf },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProjectedFile {
    /// Relative path inside the volume (no `..`, not absolute).
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VolumePlan {
    pub name: String,
    pub kind: VolumeKind,
}

/// Plan every volume of the pod. `volume_root` is unused by the plan itself (paths are chosen
/// by the caller); a configMap/secret that is missing and not `optional` is a `Config` error.
pub fn plan_volumes(
    pod: &Pod,
    refs: &dyn RefSource,
    allow_host_path: bool,
) -> Result<Vec<VolumePlan>, PlanError> {
    let _ = (pod, refs, allow_host_path);
    todo!("podspec helper")
}

/// Plan one container (`field` is its path, e.g. `spec.containers[0]` or
/// `spec.initContainers[1]`); `volume_dirs` maps volume name → host dir made by the caller.
pub fn plan_container(
    pod: &Pod,
    container: &Container,
    field: &str,
    volume_dirs: &BTreeMap<String, PathBuf>,
    facts: &PodFacts,
    refs: &dyn RefSource,
) -> Result<ContainerPlan, PlanError> {
    let _ = (pod, container, field, volume_dirs, facts, refs);
    todo!("podspec helper")
}

/// Write `files` into `dir` so readers never see a half-updated set (kubelet's `..data`
/// symlink swap); returns true when something changed. Idempotent.
pub fn write_projected(dir: &Path, files: &[ProjectedFile]) -> std::io::Result<bool> {
    let _ = (dir, files);
    todo!("podspec helper")
}

/// Memory quantity → bytes (`128Mi`, `1G`, `1e3`, `500m` is an error for memory).
pub fn quantity_bytes(q: &Quantity, field: &str) -> Result<i64, PlanError> {
    let _ = (q, field);
    todo!("podspec helper")
}

/// CPU quantity → cores (`500m` → 0.5, `2` → 2.0).
pub fn quantity_cores(q: &Quantity, field: &str) -> Result<f64, PlanError> {
    let _ = (q, field);
    todo!("podspec helper")
}
