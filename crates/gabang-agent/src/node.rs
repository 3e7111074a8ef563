//! The agent's Node: registration (capacity cpu/memory/pods=110, allocatable, podCIDR,
//! addresses, daemonEndpoints.kubeletEndpoint.port, nodeInfo), conditions (Ready,
//! MemoryPressure, DiskPressure, PIDPressure) and the Lease `kube-node-lease/<node>` renewed
//! every 10 s.
//!
//! [`HostFacts::probe`] reads the machine (cpus, memory, kernel, OS image); [`node_object`]
//! and [`lease_object`] are pure; [`choose_pod_cidr`] picks the node's pod range; [`register`]
//! and [`renew_lease`] write them through a [`Cluster`].

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use gabang_controllers::cluster::{Cluster, ClusterError};
use gabang_controllers::gc::Propagation;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use k8s_openapi::chrono::{DateTime, Utc};

use crate::{AgentError, Result};

/// The namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Seconds a Lease is valid without renewal.
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// The cluster-wide range node pod CIDRs are carved from (/24 each).
pub const CLUSTER_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 42, 0, 0), 16);
/// The kubelet version the node reports.
pub const KUBELET_VERSION: &str = "v1.32.0-gabang";

/// What the agent knows about its machine.
#[derive(Debug, Clone, PartialEq)]
pub struct HostFacts {
    pub cpus: u32,
    pub memory_bytes: u64,
    pub hostname: String,
    pub kernel: String,
    pub os_image: String,
    /// Kubernetes architecture name (`amd64`, `arm64`, …).
    pub architecture: String,
    pub machine_id: String,
}

impl HostFacts {
    /// Reads the running machine.
    pub fn probe() -> Self {
        // SAFETY: sysconf has no preconditions.
        let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        let cpus = if online > 0 { online as u32 } else { 1 };
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| parse_meminfo_total(&m))
            .unwrap_or(0);
        let (hostname, kernel) = uname();
        let os_image = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| parse_os_release(&s))
            .unwrap_or_else(|| "Linux".into());
        let machine_id = std::fs::read_to_string("/etc/machine-id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        HostFacts {
            cpus,
            memory_bytes,
            hostname,
            kernel,
            os_image,
            architecture: k8s_arch(std::env::consts::ARCH).into(),
            machine_id,
        }
    }
}

/// (nodename, release) from uname(2).
fn uname() -> (String, String) {
    // SAFETY: uname fills the zeroed struct; its fields are NUL-terminated.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return ("localhost".into(), String::new());
        }
        let s = |f: &[libc::c_char]| {
            std::ffi::CStr::from_ptr(f.as_ptr())
                .to_string_lossy()
                .into_owned()
        };
        (s(&u.nodename), s(&u.release))
    }
}

/// `MemTotal:  24596884 kB` → bytes.
pub fn parse_meminfo_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"` → the name.
pub fn parse_os_release(s: &str) -> Option<String> {
    s.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
}

fn k8s_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

/// The IPv4 address of the interface the default route goes through (from /proc), if any.
pub fn default_route_ip() -> Option<Ipv4Addr> {
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    let iface = routes.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 7 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0].to_string())
    })?;
    // SAFETY: getifaddrs fills a list we free below; we only read it.
    unsafe {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut list) != 0 {
            return None;
        }
        let mut found = None;
        let mut p = list;
        while !p.is_null() {
            let ifa = &*p;
            if !ifa.ifa_addr.is_null()
                && i32::from((*ifa.ifa_addr).sa_family) == libc::AF_INET
                && std::ffi::CStr::from_ptr(ifa.ifa_name).to_string_lossy() == iface
            {
                let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                found = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
                break;
            }
            p = ifa.ifa_next;
        }
        libc::freeifaddrs(list);
        found
    }
}

/// Parses `a.b.c.d/n` (the address is masked to the network).
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8)> {
    let bad = || {
        AgentError::Other(format!(
            "pod CIDR {s:?}: expected an IPv4 range like 10.42.0.0/24"
        ))
    };
    let (ip, len) = s.trim().split_once('/').ok_or_else(bad)?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    if !(8..=30).contains(&len) {
        return Err(bad());
    }
    let mask = u32::MAX << (32 - len);
    Ok((Ipv4Addr::from(u32::from(ip) & mask), len))
}

pub fn format_cidr(c: (Ipv4Addr, u8)) -> String {
    format!("{}/{}", c.0, c.1)
}

/// The node's pod bridge for a pod CIDR: `gbk<third octet>` (≤ 15 chars).
pub fn bridge_name(cidr: (Ipv4Addr, u8)) -> String {
    format!("gbk{}", cidr.0.octets()[2])
}

/// The node's pod CIDR: the one asked for, else the one its Node already has, else the
/// lowest /24 of [`CLUSTER_CIDR`] no other Node uses.
pub fn choose_pod_cidr(
    node_name: &str,
    requested: Option<&str>,
    nodes: &[Node],
) -> Result<(Ipv4Addr, u8)> {
    if let Some(r) = requested {
        return parse_cidr(r);
    }
    let cidr_of = |n: &Node| {
        n.spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_deref())
            .and_then(|c| parse_cidr(c).ok())
    };
    if let Some(own) = nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(node_name))
        .and_then(cidr_of)
    {
        return Ok(own);
    }
    let used: Vec<(Ipv4Addr, u8)> = nodes
        .iter()
        .filter(|n| n.metadata.name.as_deref() != Some(node_name))
        .filter_map(cidr_of)
        .collect();
    let base = u32::from(CLUSTER_CIDR.0);
    let count = 1u32 << (24 - CLUSTER_CIDR.1);
    for i in 0..count {
        let cand = Ipv4Addr::from(base + (i << 8));
        let overlaps = used.iter().any(|&(ip, len)| {
            let l = len.min(24);
            let mask = u32::MAX << (32 - l);
            (u32::from(ip) & mask) == (u32::from(cand) & mask)
        });
        if !overlaps {
            return Ok((cand, 24));
        }
    }
    Err(AgentError::Other(format!(
        "no free /24 left in {}",
        format_cidr(CLUSTER_CIDR)
    )))
}

/// How this node registers.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    pub node_ip: Ipv4Addr,
    pub pod_cidr: (Ipv4Addr, u8),
    /// The logs/exec endpoint's port (daemonEndpoints.kubeletEndpoint.port).
    pub endpoint_port: u16,
    /// gabang's version (containerRuntimeVersion `gabang://<version>`).
    pub runtime_version: String,
}

fn condition(type_: &str, status: &str, reason: &str, message: &str, now: &Time) -> NodeCondition {
    NodeCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    }
}

/// The Node this agent reports (metadata, spec.podCIDR(s), full status).
pub fn node_object(cfg: &NodeConfig, host: &HostFacts, now: DateTime<Utc>) -> Node {
    let now = Time(now);
    let mut capacity = BTreeMap::new();
    capacity.insert("cpu".to_string(), Quantity(host.cpus.to_string()));
    capacity.insert(
        "memory".to_string(),
        Quantity(format!("{}Ki", host.memory_bytes / 1024)),
    );
    capacity.insert("pods".to_string(), Quantity("110".into()));
    let labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), cfg.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), host.architecture.clone()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "beta.kubernetes.io/arch".to_string(),
            host.architecture.clone(),
        ),
    ]);
    let cidr = format_cidr(cfg.pod_cidr);
    Node {
        metadata: ObjectMeta {
            name: Some(cfg.name.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(cidr.clone()),
            pod_cidrs: Some(vec![cidr]),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            capacity: Some(capacity.clone()),
            allocatable: Some(capacity),
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: cfg.node_ip.to_string(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: cfg.name.clone(),
                },
            ]),
            daemon_endpoints: Some(NodeDaemonEndpoints {
                kubelet_endpoint: Some(DaemonEndpoint {
                    port: i32::from(cfg.endpoint_port),
                }),
            }),
            node_info: Some(NodeSystemInfo {
                architecture: host.architecture.clone(),
                boot_id: String::new(),
                container_runtime_version: format!("gabang://{}", cfg.runtime_version),
                kernel_version: host.kernel.clone(),
                kube_proxy_version: String::new(),
                kubelet_version: KUBELET_VERSION.into(),
                machine_id: host.machine_id.clone(),
                operating_system: "linux".into(),
                os_image: host.os_image.clone(),
                system_uuid: String::new(),
            }),
            conditions: Some(vec![
                condition(
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                    &now,
                ),
                condition(
                    "DiskPressure",
                    "False",
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                    &now,
                ),
                condition(
                    "PIDPressure",
                    "False",
                    "KubeletHasSufficientPID",
                    "kubelet has sufficient PID available",
                    &now,
                ),
                condition(
                    "Ready",
                    "True",
                    "KubeletReady",
                    "kubelet is posting ready status",
                    &now,
                ),
            ]),
            ..Default::default()
        }),
    }
}

/// Keeps each condition's lastTransitionTime when its status did not change.
fn keep_transitions(new: &mut NodeStatus, old: Option<&NodeStatus>) {
    let old = old.and_then(|s| s.conditions.as_ref());
    if let (Some(new_c), Some(old_c)) = (new.conditions.as_mut(), old) {
        for c in new_c.iter_mut() {
            if let Some(o) = old_c.iter().find(|o| o.type_ == c.type_) {
                if o.status == c.status {
                    c.last_transition_time = o.last_transition_time.clone();
                }
            }
        }
    }
}

/// Creates or updates the Node: labels and spec.podCIDR merged into what is there (taints and
/// other fields the control plane set stay), then the whole status.
pub fn register<C: Cluster>(api: &C, cfg: &NodeConfig, host: &HostFacts) -> Result<Node> {
    let want = node_object(cfg, host, Utc::now());
    let existing: Option<Node> = api.get("", &cfg.name)?;
    let mut stored = match existing {
        None => match api.create(&want) {
            Ok(n) => n,
            Err(ClusterError::AlreadyExists { .. }) => api
                .get("", &cfg.name)?
                .ok_or_else(|| AgentError::Other(format!("node {} vanished", cfg.name)))?,
            Err(e) => return Err(e.into()),
        },
        Some(mut n) => {
            let labels = n.metadata.labels.get_or_insert_with(Default::default);
            let mut changed = false;
            for (k, v) in want.metadata.labels.iter().flatten() {
                if labels.get(k) != Some(v) {
                    labels.insert(k.clone(), v.clone());
                    changed = true;
                }
            }
            let spec = n.spec.get_or_insert_with(Default::default);
            let cidr = format_cidr(cfg.pod_cidr);
            if spec.pod_cidr.as_deref() != Some(cidr.as_str()) {
                spec.pod_cidr = Some(cidr.clone());
                spec.pod_cidrs = Some(vec![cidr]);
                changed = true;
            }
            if changed {
                n.metadata.resource_version = None;
                api.update(&n)?
            } else {
                n
            }
        }
    };
    update_node_status(api, &mut stored, want.status.clone())?;
    Ok(stored)
}

/// Writes `status` (keeping unchanged conditions' transition times) over `node`'s.
pub fn update_node_status<C: Cluster>(
    api: &C,
    node: &mut Node,
    status: Option<NodeStatus>,
) -> Result<()> {
    let mut status = status.unwrap_or_default();
    keep_transitions(&mut status, node.status.as_ref());
    node.status = Some(status);
    node.metadata.resource_version = None;
    *node = api.update_status(node)?;
    Ok(())
}

/// Refreshes the Node's status (heartbeat times, conditions); re-registers if it was removed.
pub fn refresh<C: Cluster>(api: &C, cfg: &NodeConfig, host: &HostFacts) -> Result<()> {
    match api.get::<Node>("", &cfg.name)? {
        None => register(api, cfg, host).map(|_| ()),
        Some(mut n) => {
            let want = node_object(cfg, host, Utc::now());
            update_node_status(api, &mut n, want.status)
        }
    }
}

/// The Lease `kube-node-lease/<node>` renewed `now`.
pub fn lease_object(node: &str, now: DateTime<Utc>) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(node.into()),
            namespace: Some(LEASE_NAMESPACE.into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.into()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

/// Creates or renews the node's Lease.
pub fn renew_lease<C: Cluster>(api: &C, node: &str) -> Result<Lease> {
    let now = Utc::now();
    match api.get::<Lease>(LEASE_NAMESPACE, node)? {
        None => {
            let l = lease_object(node, now);
            match api.create(&l) {
                Ok(l) => Ok(l),
                Err(ClusterError::AlreadyExists { .. }) => renew_lease(api, node),
                Err(e) => Err(e.into()),
            }
        }
        Some(mut l) => {
            let spec = l.spec.get_or_insert_with(Default::default);
            spec.holder_identity = Some(node.into());
            spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
            spec.renew_time = Some(MicroTime(now));
            l.metadata.resource_version = None;
            Ok(api.update(&l)?)
        }
    }
}

/// Removes the node's Lease (unused by the loop; for tools that deregister a node).
pub fn delete_lease<C: Cluster>(api: &C, node: &str) -> Result<()> {
    match api.delete::<Lease>(LEASE_NAMESPACE, node, Propagation::Background) {
        Ok(()) | Err(ClusterError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: Option<&str>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: cidr.map(String::from),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn pod_cidr_choice() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            choose_pod_cidr("a", None, &[]).unwrap(),
            (ip("10.42.0.0"), 24)
        );
        let nodes = [
            node("a", Some("10.42.0.0/24")),
            node("b", Some("10.42.2.0/24")),
        ];
        // Its own Node's range is kept; a new node takes the lowest free one.
        assert_eq!(
            choose_pod_cidr("b", None, &nodes).unwrap(),
            (ip("10.42.2.0"), 24)
        );
        assert_eq!(
            choose_pod_cidr("c", None, &nodes).unwrap(),
            (ip("10.42.1.0"), 24)
        );
        // An explicit range wins and is masked.
        assert_eq!(
            choose_pod_cidr("c", Some("10.42.7.9/24"), &nodes).unwrap(),
            (ip("10.42.7.0"), 24)
        );
        assert!(choose_pod_cidr("c", Some("10.42.7.0"), &nodes).is_err());
        assert!(choose_pod_cidr("c", Some("x/24"), &nodes).is_err());
        assert_eq!(bridge_name((ip("10.42.7.0"), 24)), "gbk7");
    }

    #[test]
    fn host_parsers() {
        assert_eq!(
            parse_meminfo_total("MemTotal:       24596884 kB\nMemFree: 1 kB\n"),
            Some(24596884 * 1024)
        );
        assert_eq!(parse_meminfo_total("nothing"), None);
        assert_eq!(
            parse_os_release("ID=debian\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n")
                .as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        let h = HostFacts::probe();
        assert!(h.cpus >= 1);
        assert!(h.memory_bytes > 0);
        assert!(!h.kernel.is_empty());
    }
}
