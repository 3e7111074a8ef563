//! The pod sandbox: `<root>/pods/<uid>/` with a network namespace whose `eth0` sits on the
//! node's pod bridge (IPAM owner = pod uid; `hostNetwork` pods use the node's network), the pod's `/etc/hosts`, `/etc/hostname` and
//! `/etc/resolv.conf`, and `sandbox.json` written last (atomically): a dir without it is a
//! half-made sandbox, cleaned and made again.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

use super::{PodMeta, PodRuntime};
use crate::{AgentError, Result};

/// `sandbox.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Sandbox {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub netns: PathBuf,
    pub ip: Ipv4Addr,
    pub hostname: String,
    /// When the agent took the pod on (status.startTime, stable across syncs and restarts).
    pub start_time: DateTime<Utc>,
    /// `spec.hostNetwork`: no netns of its own (`netns` is empty), the pod IP is the node's.
    #[serde(default)]
    pub host_network: bool,
}

pub(super) const RECORD: &str = "sandbox.json";

fn io<T>(r: std::io::Result<T>, path: &Path) -> Result<T> {
    r.map_err(|source| AgentError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Write `data` to `path` through a temp file + rename.
pub(super) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    io(std::fs::write(&tmp, data), &tmp)?;
    io(std::fs::rename(&tmp, path), path)
}

/// The sandbox record in `dir`, if complete.
pub(super) fn read(dir: &Path) -> Option<Sandbox> {
    let data = std::fs::read(dir.join(RECORD)).ok()?;
    serde_json::from_slice(&data).ok()
}

/// Files bound into every container of the pod (host path, container path, read-only).
pub(super) fn etc_binds(dir: &Path) -> Vec<(PathBuf, &'static str, bool)> {
    vec![
        (dir.join("etc-hosts"), "/etc/hosts", false),
        (dir.join("etc-hostname"), "/etc/hostname", true),
        (dir.join("etc-resolv.conf"), "/etc/resolv.conf", true),
    ]
}

/// The pod's hostname: `spec.hostname`, else the pod name (cut to a DNS label).
pub(super) fn hostname(pod: &Pod, meta: &PodMeta) -> String {
    let h = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| meta.name.clone());
    h.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches(['-', '.'])
        .to_owned()
}

/// The sandbox of `pod`, made if missing or half made.
pub(super) fn ensure(rt: &PodRuntime, meta: &PodMeta, pod: &Pod) -> Result<Sandbox> {
    let dir = rt.pod_dir(&meta.uid);
    if let Some(sb) = read(&dir) {
        if sb.host_network || sb.netns.exists() {
            return Ok(sb);
        }
        tracing::warn!(
            "pod {}/{}: sandbox netns {} is gone; making a new sandbox",
            meta.namespace,
            meta.name,
            sb.netns.display()
        );
    }
    if dir.exists() {
        // Nothing of a broken sandbox is kept (containers included): it is made again whole.
        tracing::info!("pod {}: cleaning a half-made sandbox", meta.uid);
        super::terminate::release(rt, &meta.uid, std::time::Duration::ZERO)?;
    }
    make(rt, meta, pod, &dir)
}

fn make(rt: &PodRuntime, meta: &PodMeta, pod: &Pod, dir: &Path) -> Result<Sandbox> {
    io(std::fs::create_dir_all(dir.join("volumes")), dir)?;
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let (netns, ip, hostname) = if host_network {
        let ip = rt.cfg.host_ip.parse().map_err(|_| {
            AgentError::Other(format!(
                "hostNetwork pod: node address {:?} is not IPv4",
                rt.cfg.host_ip
            ))
        })?;
        (PathBuf::new(), ip, rt.cfg.node_name.clone())
    } else {
        let att = rt.net.attach(&meta.uid, &[])?;
        (att.netns_path, att.ip, hostname(pod, meta))
    };
    super::cgroups::ensure(&PodRuntime::cgroup_parent(&meta.uid), pod);
    write_etc(dir, pod, ip, &hostname)?;
    let sb = Sandbox {
        uid: meta.uid.clone(),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        netns,
        ip,
        hostname,
        start_time: Utc::now(),
        host_network,
    };
    let data = serde_json::to_vec_pretty(&sb).map_err(|e| AgentError::Other(e.to_string()))?;
    write_atomic(&dir.join(RECORD), &data)?;
    Ok(sb)
}

/// `/etc/hosts` (pod IP + hostname, hostAliases), `/etc/hostname`, `/etc/resolv.conf`.
fn write_etc(dir: &Path, pod: &Pod, ip: Ipv4Addr, hostname: &str) -> Result<()> {
    let mut hosts = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    hosts.push_str(&format!("{ip}\t{hostname}\n"));
    let aliases = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_aliases.clone())
        .unwrap_or_default();
    if !aliases.is_empty() {
        hosts.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            let names = a.hostnames.unwrap_or_default().join("\t");
            hosts.push_str(&format!("{}\t{names}\n", a.ip));
        }
    }
    let binds = etc_binds(dir);
    write_atomic(&binds[0].0, hosts.as_bytes())?;
    write_atomic(&binds[1].0, format!("{hostname}\n").as_bytes())?;
    write_atomic(
        &binds[2].0,
        gabang_runtime::container_resolv_conf().as_bytes(),
    )
}
