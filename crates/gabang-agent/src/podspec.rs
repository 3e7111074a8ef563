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

/// Write `files` into `dir` so readers never see a half-updated set (kubelet's `..data`
/// symlink swap); returns true when something changed. Idempotent.
pub fn write_projected(dir: &Path, files: &[ProjectedFile]) -> std::io::Result<bool> {
    let _ = (dir, files);
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
    let image = container.image.clone().unwrap_or_default();
    if image.trim().is_empty() {
        return Err(invalid(format!("{field}.image"), "an image is required"));
    }
    let pull_policy = match container.image_pull_policy.as_deref() {
        None | Some("") => default_pull_policy(&image),
        Some("Always") => PullPolicy::Always,
        Some("IfNotPresent") => PullPolicy::IfNotPresent,
        Some("Never") => PullPolicy::Never,
        Some(other) => {
            return Err(invalid(
                format!("{field}.imagePullPolicy"),
                format!("unsupported value {other:?}: one of Always, IfNotPresent, Never"),
            ))
        }
    };

    let mut cache = RefCache::new(pod, refs);
    let env = container_env(pod, container, field, facts, &mut cache)?;
    let lookup = |name: &str| env.get(name).map(str::to_string);
    let expand_all = |v: &Option<Vec<String>>| {
        v.as_ref()
            .map(|items| items.iter().map(|s| expand(s, lookup)).collect::<Vec<_>>())
    };
    // Kubernetes: command replaces ENTRYPOINT and drops CMD; args alone replace CMD.
    let (entrypoint, cmd) = match (expand_all(&container.command), expand_all(&container.args)) {
        (None, None) => (None, None),
        (Some(c), None) => (Some(c), Some(Vec::new())),
        (None, Some(a)) => (None, Some(a)),
        (Some(c), Some(a)) => (Some(c), Some(a)),
    };

    let workdir = container
        .working_dir
        .as_ref()
        .filter(|w| !w.is_empty())
        .cloned();
    if let Some(w) = &workdir {
        if !w.starts_with('/') {
            return Err(invalid(
                format!("{field}.workingDir"),
                format!("{w:?} must be an absolute path"),
            ));
        }
    }

    let user = plan_user(pod, container, field)?;

    let limits = container.resources.as_ref().and_then(|r| r.limits.as_ref());
    let memory_limit = match limits.and_then(|l| l.get("memory")) {
        Some(q) => Some(quantity_bytes(
            q,
            &format!("{field}.resources.limits.memory"),
        )?),
        None => None,
    };
    let cpu_limit = match limits.and_then(|l| l.get("cpu")) {
        Some(q) => Some(quantity_cores(q, &format!("{field}.resources.limits.cpu"))?),
        None => None,
    };

    let mounts = plan_mounts(pod, container, field, volume_dirs, &env)?;

    Ok(ContainerPlan {
        name: container.name.clone(),
        image,
        pull_policy,
        entrypoint,
        cmd,
        env: env.into_pairs(),
        workdir,
        user,
        memory_limit,
        cpu_limit,
        mounts,
        tty: container.tty.unwrap_or(false),
        stdin: container.stdin.unwrap_or(false),
    })
}

/// Kubernetes' default pull policy for an image reference: `Always` when the tag is
/// `latest` or absent (and there is no digest), `IfNotPresent` otherwise.
pub fn default_pull_policy(image: &str) -> PullPolicy {
    if image.contains('@') {
        return PullPolicy::IfNotPresent;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) if !tag.is_empty() && tag != "latest" => PullPolicy::IfNotPresent,
        _ => PullPolicy::Always,
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> PlanError {
    PlanError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

fn config_err(field: impl Into<String>, message: impl Into<String>) -> PlanError {
    PlanError::Config {
        field: field.into(),
        message: message.into(),
    }
}

fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata
        .namespace
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or("default")
}

// ---------------------------------------------------------------------------------------
// `$(VAR)` expansion

/// Kubernetes' `$(VAR)` expansion (command, args, env values): `$(NAME)` becomes the value
/// `lookup` gives, or stays literally `$(NAME)` when unknown; `$$` is an escaped `$`; any other
/// `$` is kept.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(close) => {
                    let name = &body[..close];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[close + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------------------
// Environment

/// Env vars in first-definition order; a later definition replaces the value in place.
#[derive(Debug, Default)]
struct EnvList {
    order: Vec<String>,
    values: std::collections::HashMap<String, String>,
}

impl EnvList {
    fn set(&mut self, name: String, value: String) {
        if !self.values.contains_key(&name) {
            self.order.push(name.clone());
        }
        self.values.insert(name, value);
    }
    fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }
    fn into_pairs(mut self) -> Vec<String> {
        self.order
            .iter()
            .map(|k| {
                let v = self.values.remove(k).unwrap_or_default();
                format!("{k}={v}")
            })
            .collect()
    }
}

/// A valid environment variable name as Kubernetes checks `envFrom` keys
/// (`[-._a-zA-Z][-._a-zA-Z0-9]*`).
pub fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || matches!(c, '-' | '.' | '_') => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// ConfigMaps and Secrets fetched once per plan.
struct RefCache<'a> {
    src: &'a dyn RefSource,
    namespace: String,
    config_maps: BTreeMap<String, Option<ConfigMap>>,
    secrets: BTreeMap<String, Option<Secret>>,
}

impl<'a> RefCache<'a> {
    fn new(pod: &Pod, src: &'a dyn RefSource) -> Self {
        Self {
            src,
            namespace: pod_namespace(pod).to_string(),
            config_maps: BTreeMap::new(),
            secrets: BTreeMap::new(),
        }
    }
    fn config_map(&mut self, name: &str) -> Result<Option<&ConfigMap>, PlanError> {
        if !self.config_maps.contains_key(name) {
            let got = self
                .src
                .config_map(&self.namespace, name)
                .map_err(PlanError::Source)?;
            self.config_maps.insert(name.to_string(), got);
        }
        Ok(self.config_maps.get(name).and_then(Option::as_ref))
    }
    fn secret(&mut self, name: &str) -> Result<Option<&Secret>, PlanError> {
        if !self.secrets.contains_key(name) {
            let got = self
                .src
                .secret(&self.namespace, name)
                .map_err(PlanError::Source)?;
            self.secrets.insert(name.to_string(), got);
        }
        Ok(self.secrets.get(name).and_then(Option::as_ref))
    }
}

/// A secret's keys and values (`stringData` wins over `data`, as the API server merges them).
fn secret_entries(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    out
}

fn container_env(
    pod: &Pod,
    container: &Container,
    field: &str,
    facts: &PodFacts,
    cache: &mut RefCache<'_>,
) -> Result<EnvList, PlanError> {
    let mut env = EnvList::default();
    let ns = cache.namespace.clone();

    for (i, from) in container.env_from.iter().flatten().enumerate() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let mut pairs: Vec<(String, String)> = Vec::new();
        match (&from.config_map_ref, &from.secret_ref) {
            (Some(cm_ref), None) => {
                let f = format!("{field}.envFrom[{i}].configMapRef");
                match cache.config_map(&cm_ref.name)? {
                    Some(cm) => pairs.extend(
                        cm.data
                            .iter()
                            .flatten()
                            .map(|(k, v)| (k.clone(), v.clone())),
                    ),
                    None if cm_ref.optional.unwrap_or(false) => {}
                    None => {
                        return Err(config_err(
                            f,
                            format!(
                                "configmap \"{}\" not found in namespace \"{ns}\"",
                                cm_ref.name
                            ),
                        ))
                    }
                }
            }
            (None, Some(s_ref)) => {
                let f = format!("{field}.envFrom[{i}].secretRef");
                match cache.secret(&s_ref.name)? {
                    Some(s) => pairs.extend(
                        secret_entries(s)
                            .into_iter()
                            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned())),
                    ),
                    None if s_ref.optional.unwrap_or(false) => {}
                    None => {
                        return Err(config_err(
                            f,
                            format!("secret \"{}\" not found in namespace \"{ns}\"", s_ref.name),
                        ))
                    }
                }
            }
            _ => {
                return Err(invalid(
                    format!("{field}.envFrom[{i}]"),
                    "exactly one of configMapRef or secretRef must be set",
                ))
            }
        }
        for (k, v) in pairs {
            let name = format!("{prefix}{k}");
            // Kubernetes skips keys that are not valid variable names (and records an event).
            if is_env_var_name(&name) {
                env.set(name, v);
            }
        }
    }

    for (i, var) in container.env.iter().flatten().enumerate() {
        let f = format!("{field}.env[{i}]");
        if var.name.is_empty() {
            return Err(invalid(format!("{f}.name"), "a name is required"));
        }
        let value = match &var.value_from {
            None => {
                let raw = var.value.as_deref().unwrap_or("");
                Some(expand(raw, |n| env.get(n).map(str::to_string)))
            }
            Some(src) => {
                let f = format!("{f}.valueFrom");
                if let Some(sel) = &src.config_map_key_ref {
                    let f = format!("{f}.configMapKeyRef");
                    let optional = sel.optional.unwrap_or(false);
                    match cache.config_map(&sel.name)? {
                        None if optional => None,
                        None => {
                            return Err(config_err(
                                f,
                                format!(
                                    "configmap \"{}\" not found in namespace \"{ns}\"",
                                    sel.name
                                ),
                            ))
                        }
                        Some(cm) => match cm.data.as_ref().and_then(|d| d.get(&sel.key)) {
                            Some(v) => Some(v.clone()),
                            None if optional => None,
                            None => {
                                return Err(config_err(
                                    f,
                                    format!(
                                        "couldn't find key {} in ConfigMap {ns}/{}",
                                        sel.key, sel.name
                                    ),
                                ))
                            }
                        },
                    }
                } else if let Some(sel) = &src.secret_key_ref {
                    let f = format!("{f}.secretKeyRef");
                    let optional = sel.optional.unwrap_or(false);
                    match cache.secret(&sel.name)? {
                        None if optional => None,
                        None => {
                            return Err(config_err(
                                f,
                                format!("secret \"{}\" not found in namespace \"{ns}\"", sel.name),
                            ))
                        }
                        Some(s) => match secret_entries(s).remove(&sel.key) {
                            Some(v) => Some(String::from_utf8_lossy(&v).into_owned()),
                            None if optional => None,
                            None => {
                                return Err(config_err(
                                    f,
                                    format!(
                                        "couldn't find key {} in Secret {ns}/{}",
                                        sel.key, sel.name
                                    ),
                                ))
                            }
                        },
                    }
                } else if let Some(sel) = &src.field_ref {
                    Some(field_ref_value(pod, facts, sel, &format!("{f}.fieldRef"))?)
                } else if let Some(sel) = &src.resource_field_ref {
                    Some(resource_field_value(
                        pod,
                        container,
                        sel,
                        &format!("{f}.resourceFieldRef"),
                    )?)
                } else {
                    return Err(invalid(f, "one of configMapKeyRef, secretKeyRef, fieldRef or resourceFieldRef must be set"));
                }
            }
        };
        if let Some(v) = value {
            env.set(var.name.clone(), v);
        }
    }
    Ok(env)
}

/// The value of a `fieldRef` (downward API) for `pod`.
pub fn field_ref_value(
    pod: &Pod,
    facts: &PodFacts,
    sel: &k8s_openapi::api::core::v1::ObjectFieldSelector,
    field: &str,
) -> Result<String, PlanError> {
    if let Some(v) = sel.api_version.as_deref() {
        if !v.is_empty() && v != "v1" {
            return Err(invalid(
                format!("{field}.apiVersion"),
                format!("unsupported apiVersion {v:?}"),
            ));
        }
    }
    let path = sel.field_path.as_str();
    let meta = &pod.metadata;
    let status = pod.status.as_ref();
    let spec = pod.spec.as_ref();
    let map_key = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?;
        let inner = rest.strip_prefix('[')?.strip_suffix(']')?;
        let key = inner
            .strip_prefix('\'')
            .and_then(|s| s.strip_suffix('\''))
            .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))?;
        Some(key.to_string())
    };
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => pod_namespace(pod).to_string(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| facts.node_name.clone()),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" => facts
            .pod_ip
            .clone()
            .or_else(|| status.and_then(|s| s.pod_ip.clone()))
            .unwrap_or_default(),
        "status.hostIP" => facts
            .host_ip
            .clone()
            .or_else(|| status.and_then(|s| s.host_ip.clone()))
            .unwrap_or_default(),
        "status.podIPs" => match &facts.pod_ip {
            Some(ip) => ip.clone(),
            None => status
                .and_then(|s| s.pod_ips.as_ref())
                .map(|ips| {
                    ips.iter()
                        .map(|p| p.ip.clone())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default(),
        },
        "status.hostIPs" => match &facts.host_ip {
            Some(ip) => ip.clone(),
            None => status
                .and_then(|s| s.host_ips.as_ref())
                .map(|ips| {
                    ips.iter()
                        .map(|p| p.ip.clone())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default(),
        },
        _ => {
            if let Some(key) = map_key("metadata.labels") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(&key))
                    .cloned()
                    .unwrap_or_default()
            } else if let Some(key) = map_key("metadata.annotations") {
                meta.annotations
                    .as_ref()
                    .and_then(|a| a.get(&key))
                    .cloned()
                    .unwrap_or_default()
            } else {
                return Err(invalid(
                    format!("{field}.fieldPath"),
                    format!("unsupported fieldPath {path:?}"),
                ));
            }
        }
    };
    Ok(value)
}

/// The value of a `resourceFieldRef`: the container's limit (the node's capacity when unset)
/// or request (the limit, else 0, when unset), divided by `divisor` (default 1) and rounded up.
pub fn resource_field_value(
    pod: &Pod,
    container: &Container,
    sel: &k8s_openapi::api::core::v1::ResourceFieldSelector,
    field: &str,
) -> Result<String, PlanError> {
    let target = match sel.container_name.as_deref().filter(|n| !n.is_empty()) {
        None => container,
        Some(name) if name == container.name => container,
        Some(name) => pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .find(|c| c.name == name)
            .ok_or_else(|| {
                invalid(
                    format!("{field}.containerName"),
                    format!("container {name:?} not found"),
                )
            })?,
    };
    let (kind, res) = sel.resource.split_once('.').ok_or_else(|| {
        invalid(
            format!("{field}.resource"),
            format!("unsupported resource {:?}", sel.resource),
        )
    })?;
    if !matches!(kind, "limits" | "requests")
        || !matches!(res, "cpu" | "memory" | "ephemeral-storage")
    {
        return Err(invalid(
            format!("{field}.resource"),
            format!("unsupported resource {:?}", sel.resource),
        ));
    }
    let resources = target.resources.as_ref();
    let limit = resources
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get(res));
    let request = resources
        .and_then(|r| r.requests.as_ref())
        .and_then(|l| l.get(res));
    let qfield = format!("{field}.resource");
    let value = match (kind, limit, request) {
        ("limits", Some(q), _) | ("requests", _, Some(q)) | ("requests", Some(q), None) => {
            Exact::parse(&q.0).ok_or_else(|| bad_quantity(&qfield, &q.0))?
        }
        ("limits", None, _) => node_capacity(res),
        _ => Exact { num: 0, den: 1 },
    };
    let divisor = match &sel.divisor {
        Some(q) if !q.0.is_empty() => {
            Exact::parse(&q.0).ok_or_else(|| bad_quantity(&format!("{field}.divisor"), &q.0))?
        }
        _ => Exact { num: 1, den: 1 },
    };
    if divisor.num <= 0 {
        return Err(invalid(
            format!("{field}.divisor"),
            "must be greater than zero",
        ));
    }
    let n = value
        .ceil_div(&divisor)
        .ok_or_else(|| invalid(qfield, "value out of range"))?;
    Ok(n.to_string())
}

/// The host's capacity when a limit is unset (Kubernetes uses the node's allocatable).
fn node_capacity(res: &str) -> Exact {
    match res {
        "cpu" => Exact {
            num: std::thread::available_parallelism().map_or(1, |n| n.get()) as i128,
            den: 1,
        },
        "memory" => {
            let kib = std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("MemTotal:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i128>().ok())
                })
                .unwrap_or(0);
            Exact {
                num: kib * 1024,
                den: 1,
            }
        }
        _ => {
            // ephemeral-storage: the filesystem of the root.
            let st = rustix::fs::statvfs("/").ok();
            let bytes = st.map_or(0, |s| s.f_blocks as i128 * s.f_frsize as i128);
            Exact { num: bytes, den: 1 }
        }
    }
}

fn plan_user(pod: &Pod, container: &Container, field: &str) -> Result<Option<String>, PlanError> {
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let csc = container.security_context.as_ref();
    let uid = csc
        .and_then(|c| c.run_as_user)
        .map(|u| (u, format!("{field}.securityContext.runAsUser")))
        .or_else(|| {
            psc.and_then(|p| p.run_as_user)
                .map(|u| (u, "spec.securityContext.runAsUser".to_string()))
        });
    let gid = csc
        .and_then(|c| c.run_as_group)
        .map(|g| (g, format!("{field}.securityContext.runAsGroup")))
        .or_else(|| {
            psc.and_then(|p| p.run_as_group)
                .map(|g| (g, "spec.securityContext.runAsGroup".to_string()))
        });
    for (v, f) in uid.iter().chain(gid.iter()) {
        if *v < 0 || *v > u32::MAX as i64 {
            return Err(invalid(f.clone(), format!("{v} is not a valid id")));
        }
    }
    // runAsGroup without runAsUser keeps the image's user: `user` cannot say "group only", so
    // it is left to the image then.
    Ok(match (uid, gid) {
        (Some((u, _)), Some((g, _))) => Some(format!("{u}:{g}")),
        (Some((u, _)), None) => Some(u.to_string()),
        _ => None,
    })
}

/// Checks a relative path inside a volume: not empty, not absolute, no `..` component.
fn check_relative(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("must not be empty".into());
    }
    if path.starts_with('/') {
        return Err(format!("{path:?} must be a relative path"));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(format!("{path:?} must not contain '..'"));
    }
    Ok(())
}

fn plan_mounts(
    pod: &Pod,
    container: &Container,
    field: &str,
    volume_dirs: &BTreeMap<String, PathBuf>,
    env: &EnvList,
) -> Result<Vec<MountPlan>, PlanError> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    let mut out = Vec::new();
    for (j, m) in container.volume_mounts.iter().flatten().enumerate() {
        let f = format!("{field}.volumeMounts[{j}]");
        let dir = volume_dirs.get(&m.name).ok_or_else(|| {
            invalid(
                format!("{f}.name"),
                format!("volume {:?} not found", m.name),
            )
        })?;
        if !m.mount_path.starts_with('/') {
            return Err(invalid(
                format!("{f}.mountPath"),
                format!("{:?} must be an absolute path", m.mount_path),
            ));
        }
        let sub = match (
            m.sub_path.as_deref().filter(|s| !s.is_empty()),
            m.sub_path_expr.as_deref().filter(|s| !s.is_empty()),
        ) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    format!("{f}.subPathExpr"),
                    "subPath and subPathExpr are mutually exclusive",
                ))
            }
            (Some(s), None) => Some((s.to_string(), format!("{f}.subPath"))),
            (None, Some(e)) => Some((
                expand(e, |n| env.get(n).map(str::to_string)),
                format!("{f}.subPathExpr"),
            )),
            (None, None) => None,
        };
        let host_path = match sub {
            Some((s, sf)) => {
                check_relative(&s).map_err(|msg| invalid(sf, msg))?;
                dir.join(s)
            }
            None => dir.clone(),
        };
        // configMap, secret, downwardAPI and projected volumes are always mounted read-only.
        let ro_kind = volumes
            .and_then(|vs| vs.iter().find(|v| v.name == m.name))
            .is_some_and(|v| {
                v.config_map.is_some()
                    || v.secret.is_some()
                    || v.downward_api.is_some()
                    || v.projected.is_some()
            });
        out.push(MountPlan {
            host_path,
            container_path: m.mount_path.clone(),
            read_only: m.read_only.unwrap_or(false) || ro_kind,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Quantities

/// A quantity as the exact fraction `num / den` (`den` a power of ten).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Exact {
    num: i128,
    den: i128,
}

impl Exact {
    /// Parses Kubernetes' quantity syntax: `<sign?><digits>[.<digits>]<suffix>` with suffix
    /// one of `Ki Mi Gi Ti Pi Ei`, `n u m "" k M G T P E`, or `e<int>` / `E<int>`.
    fn parse(s: &str) -> Option<Exact> {
        let (neg, body) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = body
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(body.len());
        let (number, suffix) = body.split_at(num_end);
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if int_part.is_empty() && frac_part.is_empty() || frac_part.contains('.') {
            return None;
        }
        let (pow10, pow2): (i32, u32) = match suffix {
            "" => (0, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            _ => {
                let exp = suffix.strip_prefix(['e', 'E'])?;
                let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                if digits.is_empty()
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                    || digits.len() > 3
                {
                    return None;
                }
                (exp.parse::<i32>().ok()?, 0)
            }
        };
        let digits = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 30 {
            return None;
        }
        let mut num: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        let exp10 = pow10.checked_sub(i32::try_from(frac_part.len()).ok()?)?;
        num = num.checked_mul(1i128.checked_shl(pow2)?)?;
        let mut den: i128 = 1;
        if exp10 >= 0 {
            num = num.checked_mul(10i128.checked_pow(exp10.unsigned_abs())?)?;
        } else {
            den = 10i128.checked_pow(exp10.unsigned_abs())?;
        }
        if neg {
            num = -num;
        }
        Some(Exact { num, den })
    }

    /// `ceil(self / other)` as an integer (`other` > 0).
    fn ceil_div(&self, other: &Exact) -> Option<i128> {
        let a = self.num.checked_mul(other.den)?;
        let b = self.den.checked_mul(other.num)?;
        if b == 0 {
            return None;
        }
        let q = a.div_euclid(b);
        Some(if a.rem_euclid(b) == 0 { q } else { q + 1 })
    }
}

fn bad_quantity(field: &str, s: &str) -> PlanError {
    invalid(field, format!("quantity {s:?} is not valid"))
}

/// Memory quantity → bytes (`128Mi`, `1G`, `1e3`, `500m` is an error for memory).
pub fn quantity_bytes(q: &Quantity, field: &str) -> Result<i64, PlanError> {
    let e = Exact::parse(&q.0).ok_or_else(|| bad_quantity(field, &q.0))?;
    if e.num < 0 {
        return Err(invalid(
            field,
            format!("quantity {:?} must not be negative", q.0),
        ));
    }
    if e.num % e.den != 0 {
        return Err(invalid(
            field,
            format!("quantity {:?} is not a whole number of bytes", q.0),
        ));
    }
    i64::try_from(e.num / e.den)
        .map_err(|_| invalid(field, format!("quantity {:?} is too large", q.0)))
}

/// CPU quantity → cores (`500m` → 0.5, `2` → 2.0).
pub fn quantity_cores(q: &Quantity, field: &str) -> Result<f64, PlanError> {
    let e = Exact::parse(&q.0).ok_or_else(|| bad_quantity(field, &q.0))?;
    if e.num < 0 {
        return Err(invalid(
            field,
            format!("quantity {:?} must not be negative", q.0),
        ));
    }
    Ok(e.num as f64 / e.den as f64)
}
