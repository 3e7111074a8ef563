//! The persisted model of a container: what was asked for ([`RunOptions`], [`ContainerConfig`],
//! written once at create) and what happened ([`ContainerState`], written only by the shim after
//! create). Both live as JSON files in `<root>/containers/<id>/`, replaced by atomic rename.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};

/// `--network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    #[default]
    Bridge,
    None,
    Host,
}

impl std::str::FromStr for NetworkMode {
    type Err = RuntimeError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "bridge" | "default" => Ok(Self::Bridge),
            "none" => Ok(Self::None),
            "host" => Ok(Self::Host),
            other => Err(RuntimeError::InvalidOption(format!(
                "--network {other:?}: expected bridge, none or host"
            ))),
        }
    }
}

impl NetworkMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Bridge => "bridge",
            Self::None => "none",
            Self::Host => "host",
        }
    }
}

/// `--restart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    No,
    OnFailure {
        max_retries: u32,
    },
    Always,
    UnlessStopped,
}

impl std::str::FromStr for RestartPolicy {
    type Err = RuntimeError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || RuntimeError::InvalidOption(format!("--restart {s:?}"));
        match s.split_once(':') {
            None => match s {
                "no" | "" => Ok(Self::No),
                "always" => Ok(Self::Always),
                "unless-stopped" => Ok(Self::UnlessStopped),
                "on-failure" => Ok(Self::OnFailure { max_retries: 0 }),
                _ => Err(bad()),
            },
            Some(("on-failure", n)) => Ok(Self::OnFailure {
                max_retries: n.parse().map_err(|_| bad())?,
            }),
            _ => Err(bad()),
        }
    }
}

impl RestartPolicy {
    pub fn name(&self) -> &'static str {
        match self {
            Self::No => "no",
            Self::OnFailure { .. } => "on-failure",
            Self::Always => "always",
            Self::UnlessStopped => "unless-stopped",
        }
    }
    /// Should a container that exited with `code` after `restarts` restarts be started again?
    /// A stop requested by the user never restarts.
    pub fn should_restart(&self, code: i32, restarts: u32, stop_requested: bool) -> bool {
        if stop_requested {
            return false;
        }
        match self {
            Self::No => false,
            Self::Always | Self::UnlessStopped => true,
            Self::OnFailure { max_retries } => {
                code != 0 && (*max_retries == 0 || restarts < *max_retries)
            }
        }
    }
}

/// `-p [IP:]HOST:CONTAINER[/tcp]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub host_ip: Option<String>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

impl std::str::FromStr for PortMapping {
    type Err = RuntimeError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            RuntimeError::InvalidOption(format!("-p {s:?}: expected [IP:]HOST:CONTAINER[/tcp|udp]"))
        };
        let (body, proto) = match s.rsplit_once('/') {
            Some((b, p)) if p == "tcp" || p == "udp" => (b, p.to_owned()),
            Some(_) => return Err(bad()),
            None => (s, "tcp".to_owned()),
        };
        let parts: Vec<&str> = body.split(':').collect();
        let (ip, h, c) = match parts.as_slice() {
            [h, c] => (None, *h, *c),
            [ip, h, c] => (Some((*ip).to_owned()), *h, *c),
            [c] => (None, *c, *c),
            _ => return Err(bad()),
        };
        Ok(Self {
            host_ip: ip.filter(|i| !i.is_empty()),
            host_port: h.parse().map_err(|_| bad())?,
            container_port: c.parse().map_err(|_| bad())?,
            protocol: proto,
        })
    }
}

/// `-v SRC:DST[:ro]`: SRC is an absolute host path (bind) or a volume name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub source: String,
    pub destination: String,
    pub read_only: bool,
}

impl VolumeSpec {
    pub fn is_bind(&self) -> bool {
        self.source.starts_with('/')
    }
}

impl std::str::FromStr for VolumeSpec {
    type Err = RuntimeError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = |m: &str| RuntimeError::InvalidOption(format!("-v {s:?}: {m}"));
        let parts: Vec<&str> = s.split(':').collect();
        let (src, dst, mode) = match parts.as_slice() {
            [s, d] => (*s, *d, ""),
            [s, d, m] => (*s, *d, *m),
            _ => return Err(bad("expected SRC:DST[:ro|rw]")),
        };
        if !dst.starts_with('/') {
            return Err(bad("destination must be an absolute path"));
        }
        if src.is_empty() {
            return Err(bad("empty source"));
        }
        if !src.starts_with('/') && !crate::valid_name(src) {
            return Err(bad("invalid volume name"));
        }
        let read_only = match mode {
            "" | "rw" => false,
            "ro" => true,
            _ => return Err(bad("mode must be ro or rw")),
        };
        Ok(Self {
            source: src.to_owned(),
            destination: dst.to_owned(),
            read_only,
        })
    }
}

/// What `run`/`create` asks for, beyond the image.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunOptions {
    pub name: Option<String>,
    /// Arguments after the image (override CMD).
    pub cmd: Vec<String>,
    /// `--entrypoint` (`Some("")` clears the image's entrypoint).
    pub entrypoint: Option<String>,
    /// `-e K=V` / `-e K` (already merged with `--env-file`s by the caller).
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    /// `--memory` in bytes.
    pub memory: Option<i64>,
    /// `--cpus`.
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    pub network: NetworkMode,
    pub publish: Vec<PortMapping>,
    pub volumes: Vec<VolumeSpec>,
    pub restart: RestartPolicy,
    pub read_only: bool,
    pub auto_remove: bool,
    pub interactive: bool,
    pub tty: bool,
    /// Free-form labels (the node agent records pod namespace/name/uid and container name).
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Join this existing network namespace (a pod sandbox) instead of making one; `network`
    /// is then ignored and nothing is attached or detached for this container.
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// The address of the joined namespace, for `/etc/hosts` and `inspect`.
    #[serde(default)]
    pub netns_ip: Option<std::net::Ipv4Addr>,
    /// Parent cgroup (relative, e.g. `/gabang/pod-<uid>`); default `/gabang`.
    #[serde(default)]
    pub cgroup_parent: Option<String>,
}

impl RunOptions {
    /// The writable layer dies with the container (`--rm`, or a pod container, which the
    /// node agent replaces rather than restarts): no need to sync it to disk at unmount.
    pub fn volatile_rootfs(&self) -> bool {
        self.auto_remove || self.labels.contains_key("io.kubernetes.pod.uid")
    }
    /// Does the shim make (and later remove) this container's own bridge attachment?
    pub fn owns_bridge_attachment(&self) -> bool {
        self.netns.is_none() && self.network == NetworkMode::Bridge
    }
    /// Does the shim make (and later remove) a loopback-only netns (`--network none`)?
    pub fn owns_loopback_netns(&self) -> bool {
        self.netns.is_none() && self.network == NetworkMode::None
    }
}

/// The immutable part of a container record (`config.json` in the container dir).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub id: String,
    pub name: String,
    pub created: DateTime<Utc>,
    /// The image reference the user gave.
    pub image: String,
    /// `sha256:<config digest>`.
    pub image_id: String,
    /// Unpacked layer dirs, bottom → top.
    pub lower_dirs: Vec<PathBuf>,
    /// The process after combining image config and options (user not yet resolved).
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    pub hostname: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub options: RunOptions,
}

/// Lifecycle states. Transitions are guarded by the `can_*` methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Restarting,
    Exited,
    /// The shim died without recording an exit (computed, never written).
    Dead,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::Exited => "exited",
            Self::Dead => "dead",
        }
    }
    pub fn can_start(&self) -> bool {
        matches!(self, Self::Created | Self::Exited | Self::Dead)
    }
    pub fn can_kill(&self) -> bool {
        matches!(self, Self::Running | Self::Restarting)
    }
    pub fn can_exec(&self) -> bool {
        matches!(self, Self::Running)
    }
    /// Without `--force`.
    pub fn can_remove(&self) -> bool {
        matches!(self, Self::Created | Self::Exited | Self::Dead)
    }
    pub fn is_active(&self) -> bool {
        matches!(self, Self::Running | Self::Restarting)
    }
}

/// The mutable part (`state.json`), written by the shim.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContainerState {
    pub status: Status,
    /// Container init pid (host pid namespace).
    pub pid: Option<i32>,
    /// Start time of `pid` (field 22 of /proc/pid/stat) to detect pid reuse.
    pub pid_start: Option<u64>,
    pub shim_pid: Option<i32>,
    pub shim_start: Option<u64>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub oom_killed: bool,
    pub error: Option<String>,
    pub restart_count: u32,
    pub ip_address: Option<String>,
    pub gateway: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags() {
        let p: PortMapping = "127.0.0.1:8080:80/tcp".parse().unwrap();
        assert_eq!(p.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!((p.host_port, p.container_port), (8080, 80));
        let p: PortMapping = "8080:80".parse().unwrap();
        assert_eq!(p.host_ip, None);
        assert!("80:x".parse::<PortMapping>().is_err());
        let v: VolumeSpec = "/h:/c:ro".parse().unwrap();
        assert!(v.is_bind() && v.read_only);
        let v: VolumeSpec = "data:/c".parse().unwrap();
        assert!(!v.is_bind());
        assert!("data:rel".parse::<VolumeSpec>().is_err());
        assert!("../x:/c".parse::<VolumeSpec>().is_err());
        assert_eq!(
            "on-failure:3".parse::<RestartPolicy>().unwrap(),
            RestartPolicy::OnFailure { max_retries: 3 }
        );
        assert!("sometimes".parse::<RestartPolicy>().is_err());
    }

    #[test]
    fn restart_policy_decisions() {
        let p = RestartPolicy::OnFailure { max_retries: 2 };
        assert!(p.should_restart(1, 0, false));
        assert!(p.should_restart(1, 1, false));
        assert!(!p.should_restart(1, 2, false));
        assert!(!p.should_restart(0, 0, false));
        assert!(RestartPolicy::Always.should_restart(0, 100, false));
        assert!(!RestartPolicy::Always.should_restart(0, 0, true));
        assert!(!RestartPolicy::No.should_restart(1, 0, false));
    }
}
