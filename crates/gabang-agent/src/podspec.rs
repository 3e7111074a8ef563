//! Pod spec → what each container gets, as Kubernetes defines it (pure functions, no I/O
//! except [`write_projected`], and reading the host's capacity when a `resourceFieldRef`
//! names a limit the container does not set — Kubernetes uses the node's allocatable then).
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

/// Plan every volume of the pod (host paths are chosen by the caller). A configMap/secret
/// that is missing and not `optional` is a `Config` error (an optional one projects no
/// files); hostPath is `Invalid` unless `allow_host_path`; kinds this node does not support
/// (persistentVolumeClaim, projected, downwardAPI, …) are `Invalid` naming the field.
pub fn plan_volumes(
    pod: &Pod,
    refs: &dyn RefSource,
    allow_host_path: bool,
) -> Result<Vec<VolumePlan>, PlanError> {
    let mut cache = RefCache::new(pod, refs);
    let ns = cache.namespace.clone();
    let mut out = Vec::new();
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    for (i, vol) in volumes.into_iter().flatten().enumerate() {
        let f = format!("spec.volumes[{i}]");
        // The name becomes a directory under the pod's dir: never `..`, `/` or empty.
        if !is_dns_label(&vol.name) {
            return Err(invalid(
                format!("{f}.name"),
                format!(
                    "{:?}: a volume name must be a lowercase RFC 1123 label",
                    vol.name
                ),
            ));
        }
        let kind = if let Some(ed) = &vol.empty_dir {
            let memory = match ed.medium.as_deref() {
                None | Some("") => false,
                Some("Memory") => true,
                Some(other) => {
                    return Err(invalid(
                        format!("{f}.emptyDir.medium"),
                        format!("unsupported medium {other:?}"),
                    ))
                }
            };
            let size_limit = match &ed.size_limit {
                Some(q) => Some(quantity_bytes(q, &format!("{f}.emptyDir.sizeLimit"))?),
                None => None,
            };
            VolumeKind::EmptyDir { memory, size_limit }
        } else if let Some(cm) = &vol.config_map {
            let f = format!("{f}.configMap");
            let optional = cm.optional.unwrap_or(false);
            let files = match cache.config_map(&cm.name)? {
                None if optional => Vec::new(),
                None => {
                    return Err(config_err(
                        f,
                        format!("configmap \"{}\" not found in namespace \"{ns}\"", cm.name),
                    ))
                }
                Some(obj) => {
                    let mut data: BTreeMap<String, Vec<u8>> = obj
                        .binary_data
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.0.clone()))
                        .collect();
                    for (k, v) in obj.data.iter().flatten() {
                        data.insert(k.clone(), v.clone().into_bytes());
                    }
                    let what = format!("ConfigMap {ns}/{}", cm.name);
                    project(
                        &f,
                        &what,
                        &data,
                        cm.items.as_deref(),
                        cm.default_mode,
                        optional,
                    )?
                }
            };
            VolumeKind::Projected { files }
        } else if let Some(sec) = &vol.secret {
            let f = format!("{f}.secret");
            let optional = sec.optional.unwrap_or(false);
            let name = sec.secret_name.clone().unwrap_or_default();
            if name.is_empty() {
                return Err(invalid(
                    format!("{f}.secretName"),
                    "a secret name is required",
                ));
            }
            let files = match cache.secret(&name)? {
                None if optional => Vec::new(),
                None => {
                    return Err(config_err(
                        f,
                        format!("secret \"{name}\" not found in namespace \"{ns}\""),
                    ))
                }
                Some(obj) => {
                    let data = secret_entries(obj);
                    let what = format!("Secret {ns}/{name}");
                    project(
                        &f,
                        &what,
                        &data,
                        sec.items.as_deref(),
                        sec.default_mode,
                        optional,
                    )?
                }
            };
            VolumeKind::Projected { files }
        } else if let Some(hp) = &vol.host_path {
            let f = format!("{f}.hostPath");
            if !allow_host_path {
                return Err(invalid(f, "hostPath volumes are not allowed on this node"));
            }
            if !hp.path.starts_with('/') || hp.path.split('/').any(|c| c == "..") {
                return Err(invalid(
                    format!("{f}.path"),
                    format!("{:?} must be an absolute path without '..'", hp.path),
                ));
            }
            VolumeKind::HostPath {
                path: PathBuf::from(&hp.path),
            }
        } else {
            match volume_source_key(vol) {
                // No source at all: the API server defaults it to an emptyDir.
                None => VolumeKind::EmptyDir {
                    memory: false,
                    size_limit: None,
                },
                Some(key) => {
                    return Err(invalid(
                        format!("{f}.{key}"),
                        format!("{key} volumes are not supported by this node"),
                    ))
                }
            }
        };
        out.push(VolumePlan {
            name: vol.name.clone(),
            kind,
        });
    }
    Ok(out)
}

/// The JSON name of the source a volume sets (`persistentVolumeClaim`, `projected`, …).
fn volume_source_key(vol: &k8s_openapi::api::core::v1::Volume) -> Option<String> {
    let value = serde_json::to_value(vol).ok()?;
    value
        .as_object()?
        .iter()
        .find(|(k, v)| k.as_str() != "name" && !v.is_null())
        .map(|(k, _)| k.clone())
}

fn check_mode(mode: i32, field: &str) -> Result<u32, PlanError> {
    if (0..=0o777).contains(&mode) {
        Ok(mode as u32)
    } else {
        Err(invalid(
            field,
            format!("mode {mode:#o} must be between 0 and 0777"),
        ))
    }
}

/// The files a configMap/secret volume projects: all keys (path = key) or `items`.
fn project(
    field: &str,
    what: &str,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<Vec<ProjectedFile>, PlanError> {
    let default_mode = match default_mode {
        Some(m) => check_mode(m, &format!("{field}.defaultMode"))?,
        None => 0o644,
    };
    let mut files = Vec::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (key, bytes) in data {
                check_projected_path(key).map_err(|m| invalid(format!("{field}.items"), m))?;
                files.push(ProjectedFile {
                    path: key.clone(),
                    data: bytes.clone(),
                    mode: default_mode,
                });
            }
        }
        Some(items) => {
            for (j, item) in items.iter().enumerate() {
                let f = format!("{field}.items[{j}]");
                let Some(bytes) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(config_err(
                        format!("{f}.key"),
                        format!("couldn't find key {} in {what}", item.key),
                    ));
                };
                check_projected_path(&item.path).map_err(|m| invalid(format!("{f}.path"), m))?;
                let mode = match item.mode {
                    Some(m) => check_mode(m, &format!("{f}.mode"))?,
                    None => default_mode,
                };
                files.push(ProjectedFile {
                    path: item.path.clone(),
                    data: bytes.clone(),
                    mode,
                });
            }
        }
    }
    check_no_conflicts(&files).map_err(|m| invalid(field, m))?;
    Ok(files)
}

/// A projected file's path: relative, no `..` component, not starting with `..` (those names
/// are the writer's own), no empty components.
fn check_projected_path(path: &str) -> Result<(), String> {
    check_relative(path)?;
    if path.starts_with("..") {
        return Err(format!("{path:?} must not start with '..'"));
    }
    if path.split('/').any(|c| c.is_empty() || c == ".") {
        return Err(format!("{path:?} must not contain empty or '.' components"));
    }
    Ok(())
}

/// No two files at one path, and no file where another needs a directory.
fn check_no_conflicts(files: &[ProjectedFile]) -> Result<(), String> {
    let paths: std::collections::BTreeSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    if paths.len() != files.len() {
        return Err("two items project to the same path".into());
    }
    for p in &paths {
        let mut prefix = String::new();
        for comp in p.split('/') {
            if !prefix.is_empty() && paths.contains(prefix.as_str()) {
                return Err(format!("{prefix:?} is both a file and a directory"));
            }
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(comp);
        }
    }
    Ok(())
}

/// The symlink readers follow to the current set of files.
pub const DATA_DIR: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// Write `files` into `dir` so readers never see a half-updated set (kubelet's `..data`
/// symlink swap); returns true when something changed. Idempotent.
///
/// Layout: the files live in a timestamped dir `..<ts>` that is never changed once
/// published; `..data` is a symlink to it, replaced by `rename`; each top-level name is a
/// symlink `name -> ..data/name`. A reader that resolves `..data` once sees one whole set.
/// One writer per `dir` at a time. Nothing is fsynced (like kubelet): the content is
/// rebuilt from the API objects, and a set damaged by a power loss differs from the wanted
/// one, so the next call rewrites it.
pub fn write_projected(dir: &Path, files: &[ProjectedFile]) -> std::io::Result<bool> {
    use std::io::{Error, ErrorKind};
    for f in files {
        check_projected_path(&f.path)
            .map_err(|m| Error::new(ErrorKind::InvalidInput, format!("{}: {m}", dir.display())))?;
        if f.mode > 0o7777 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("{}: bad mode {:o}", f.path, f.mode),
            ));
        }
    }
    check_no_conflicts(files).map_err(|m| Error::new(ErrorKind::InvalidInput, m))?;
    std::fs::create_dir_all(dir)?;

    let current = match std::fs::read_link(dir.join(DATA_DIR)) {
        Ok(target) => Some(target),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let mut changed = false;
    let current_ok = match &current {
        Some(t) => same_content(&dir.join(t), files)?,
        None => false,
    };
    let live = match current {
        Some(t) if current_ok => t,
        _ => {
            let ts_name = new_ts_dir(dir)?;
            let ts = dir.join(&ts_name);
            for f in files {
                let path = ts.join(&f.path);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                write_file(&path, &f.data, f.mode)?;
            }
            // Publish: a fresh symlink renamed over `..data` (atomic for readers).
            let tmp = dir.join(DATA_TMP);
            match std::fs::remove_file(&tmp) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            std::os::unix::fs::symlink(&ts_name, &tmp)?;
            std::fs::rename(&tmp, dir.join(DATA_DIR))?;
            changed = true;
            PathBuf::from(ts_name)
        }
    };

    // The user-visible names: one symlink per top-level entry.
    let wanted: std::collections::BTreeSet<&str> = files
        .iter()
        .filter_map(|f| f.path.split('/').next())
        .collect();
    for name in &wanted {
        let link = dir.join(name);
        let target = Path::new(DATA_DIR).join(name);
        match std::fs::read_link(&link) {
            Ok(t) if t == target => continue,
            Ok(_) => std::fs::remove_file(&link)?,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            // Something else (not a symlink) is in the way: kubelet leaves it alone too.
            Err(e) if e.kind() == ErrorKind::InvalidInput => continue,
            Err(e) => return Err(e),
        }
        std::os::unix::fs::symlink(&target, &link)?;
        changed = true;
    }
    // Old names, old timestamped dirs, a leftover temp link.
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ft = entry.file_type()?;
        if name == DATA_DIR || Path::new(name) == live {
            continue;
        }
        if name.starts_with("..") {
            if ft.is_dir() {
                std::fs::remove_dir_all(entry.path())?;
            } else {
                std::fs::remove_file(entry.path())?;
            }
            continue;
        }
        if ft.is_symlink() && !wanted.contains(name) {
            let target = std::fs::read_link(entry.path())?;
            if target.starts_with(DATA_DIR) {
                std::fs::remove_file(entry.path())?;
                changed = true;
            }
        }
    }
    Ok(changed)
}

/// Makes a new empty `..<UTC timestamp>.<unique>` dir in `dir` and returns its name.
fn new_ts_dir(dir: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let stamp = chrono::Utc::now().format("%Y_%m_%d_%H_%M_%S");
    for attempt in 0u32..100 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("..{stamp}.{}{nanos:09}{attempt}", std::process::id());
        match std::fs::create_dir(dir.join(&name)) {
            Ok(()) => {
                std::fs::set_permissions(dir.join(&name), std::fs::Permissions::from_mode(0o755))?;
                return Ok(name);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!("{}: no free timestamped dir name", dir.display()),
    ))
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
}

/// Does the published dir `ts` hold exactly `files` (content and mode)?
fn same_content(ts: &Path, files: &[ProjectedFile]) -> std::io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Vec::new();
    if !collect_files(ts, "", &mut found)? {
        return Ok(false);
    }
    if found.len() != files.len() {
        return Ok(false);
    }
    for f in files {
        if !found.iter().any(|p| p == &f.path) {
            return Ok(false);
        }
        let path = ts.join(&f.path);
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.permissions().mode() & 0o7777 != f.mode || meta.len() != f.data.len() as u64 {
            return Ok(false);
        }
        if std::fs::read(&path)? != f.data {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Regular files under `dir` as relative paths; false when `dir` is missing or holds
/// something else than dirs and regular files.
fn collect_files(dir: &Path, prefix: &str, out: &mut Vec<String>) -> std::io::Result<bool> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            return Ok(false);
        };
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let ft = entry.file_type()?;
        if ft.is_dir() {
            if !collect_files(&entry.path(), &rel, out)? {
                return Ok(false);
            }
        } else if ft.is_file() {
            out.push(rel);
        } else {
            return Ok(false);
        }
    }
    Ok(true)
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

/// A lowercase RFC 1123 label (what Kubernetes requires of volume names).
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}
