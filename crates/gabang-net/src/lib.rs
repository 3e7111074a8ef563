//! gabang-net: container networking on one host. A Linux bridge (`gabang0`, 10.89.0.0/16 by
//! default) with one veth pair per container whose far end is `eth0` in a named network
//! namespace (`/run/netns/gabang-<id>`, made like `ip netns add` does, so `ip netns` and
//! joining by path keep working); IPAM in a JSON file guarded by `flock` so concurrent runs
//! never share an address; port publishing with nftables DNAT (prerouting + output hook,
//! `route_localnet` on the bridge and a masquerade rule so `127.0.0.1:H` works) driven by one
//! map, so a container's ports are map elements added and deleted atomically.
//!
//! Start reading at [`Network::attach`] (`attach.rs`) / [`Network::detach`] (`detach.rs`).
//! Links, addresses and routes are made over rtnetlink from the calling thread (`nl.rs`,
//! `netns.rs`): no process is executed per container unless it publishes ports (then one
//! `nft` run adds its map elements). Creating the bridge's nft table (once per network) and
//! deleting port elements run the `nft` tool (Debian `nftables`).
//!
//! Threads: nothing here starts a thread when called outside a tokio runtime (the
//! single-threaded `gabang shim` forks later). The netns is entered with `unshare`/`setns`
//! on the calling thread only long enough to bind-mount it and open a netlink socket in it,
//! then the thread returns to its own netns before anything else runs on it.

mod attach;
mod bridge;
mod detach;
mod netns;
mod nftables;
mod nl;

use std::collections::BTreeMap;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("`{cmd}` failed: {stderr}")]
    Command { cmd: String, stderr: String },
    #[error("address pool {0} exhausted")]
    Exhausted(String),
    #[error("host port {0}/{1} is already published")]
    PortInUse(u16, String),
    /// A netlink request (what it did, e.g. "add veth gbv1234 to gabang0") failed.
    #[error("netlink: {op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: rtnetlink::Error,
    },
    /// The bridge to attach to is missing (removed while attaching).
    #[error("bridge {0} not found")]
    NoBridge(String),
}

pub type Result<T> = std::result::Result<T, NetError>;

fn io_at<T>(r: std::io::Result<T>, path: &Path) -> Result<T> {
    r.map_err(|source| NetError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Bridge name and subnet (stored in `<net>/config.json` on first use).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetConfig {
    pub bridge: String,
    pub subnet: Ipv4Addr,
    pub prefix: u8,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            bridge: "gabang0".into(),
            subnet: Ipv4Addr::new(10, 89, 0, 0),
            prefix: 16,
        }
    }
}

impl NetConfig {
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnet) + 1)
    }
    fn size(&self) -> u32 {
        1u32 << (32 - u32::from(self.prefix.clamp(8, 30)))
    }
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub host_port: u16,
    pub container_port: u16,
    /// "tcp" or "udp".
    pub protocol: String,
}

/// What a container got.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attachment {
    pub netns_path: PathBuf,
    pub ip: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub prefix: u8,
    pub host_veth: String,
    pub ports: Vec<Port>,
}

/// The host's container network, state in `<root>/net/`.
pub struct Network {
    dir: PathBuf,
    pub config: NetConfig,
    /// The nft table holding this network's NAT rules (`gabang` for the default network).
    table: String,
}

/// An exclusive `flock` held until drop.
struct Lock {
    _file: File,
}

impl Lock {
    fn take(path: &Path) -> Result<Self> {
        let f = io_at(
            std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path),
            path,
        )?;
        io_at(
            rustix::fs::flock(f.as_fd(), rustix::fs::FlockOperation::LockExclusive)
                .map_err(std::io::Error::from),
            path,
        )?;
        Ok(Self { _file: f })
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    // Unique per process and per call: threads of one process may write the same file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    io_at(std::fs::write(&tmp, data), &tmp)?;
    io_at(std::fs::rename(&tmp, path), path)
}

/// `--network none`: a named netns (`/run/netns/gabang-<id…>`) with only `lo`, and `lo` up
/// (like docker's; the kernel makes it down). `lock_dir` holds the lock taken the first
/// time `/run/netns` is made a shared mount. Remove it with [`remove_netns`].
pub fn loopback_netns(id: &str, lock_dir: &Path) -> Result<PathBuf> {
    nl::outside_tokio(|| {
        let rt = nl::Rt::new()?;
        let path = netns_path(id);
        let r = rt.block_on(async {
            let (_fd, inner) = netns::create(&path, lock_dir, nl::connect)?;
            nl::set_up(&inner, nl::LO_INDEX, "lo").await
        });
        match r {
            Ok(()) => Ok(path),
            Err(e) => {
                let _ = netns::remove(&path);
                Err(e)
            }
        }
    })
}

/// Unmount and unlink the named netns of `id` (from [`loopback_netns`]); idempotent.
pub fn remove_netns(id: &str) -> Result<()> {
    netns::remove(&netns_path(id))
}

/// Where the named netns of `id` is mounted (`/run/netns/<netns_name>`).
pub(crate) fn netns_path(id: &str) -> PathBuf {
    PathBuf::from(netns::RUN_DIR).join(netns_name(id))
}

/// Names derived from a container id.
pub fn netns_name(id: &str) -> String {
    format!("gabang-{}", &id[..id.len().min(12)])
}
pub fn host_veth_name(id: &str) -> String {
    format!("gbv{}", &id[..id.len().min(11)])
}

pub const NFT_TABLE: &str = "gabang";

impl Network {
    /// Open (and create) `<root>/net`.
    pub fn open(dir: &Path) -> Result<Self> {
        io_at(std::fs::create_dir_all(dir), dir)?;
        let cfg_path = dir.join("config.json");
        let config = if cfg_path.exists() {
            let data = io_at(std::fs::read(&cfg_path), &cfg_path)?;
            serde_json::from_slice(&data).map_err(|source| NetError::Json {
                path: cfg_path.clone(),
                source,
            })?
        } else {
            let c = NetConfig::default();
            write_atomic(
                &cfg_path,
                &serde_json::to_vec_pretty(&c).unwrap_or_default(),
            )?;
            c
        };
        Ok(Self {
            dir: dir.to_owned(),
            config,
            table: NFT_TABLE.to_owned(),
        })
    }

    /// Open (and create) a network with its own bridge, subnet and state dir (e.g. a node's
    /// pod network); `config` is recorded in `<dir>/config.json`, replacing an older one. Its
    /// NAT rules live in their own nft table ([`Network::nft_table`]), so several networks
    /// (the `gabang run` bridge, one pod network per node) coexist on one host.
    pub fn open_with(dir: &Path, config: NetConfig) -> Result<Self> {
        io_at(std::fs::create_dir_all(dir), dir)?;
        let cfg_path = dir.join("config.json");
        let stored: Option<NetConfig> = std::fs::read(&cfg_path)
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok());
        if stored.as_ref() != Some(&config) {
            write_atomic(
                &cfg_path,
                &serde_json::to_vec_pretty(&config).unwrap_or_default(),
            )?;
        }
        let table = format!(
            "gabang_{}",
            config
                .bridge
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect::<String>()
        );
        Ok(Self {
            dir: dir.to_owned(),
            config,
            table,
        })
    }

    /// The nft table of this network's NAT rules.
    pub fn nft_table(&self) -> &str {
        &self.table
    }

    fn ipam_path(&self) -> PathBuf {
        self.dir.join("ipam.json")
    }

    fn read_ipam(&self) -> Result<BTreeMap<String, Ipv4Addr>> {
        let p = self.ipam_path();
        if !p.exists() {
            return Ok(BTreeMap::new());
        }
        let data = io_at(std::fs::read(&p), &p)?;
        serde_json::from_slice(&data).map_err(|source| NetError::Json { path: p, source })
    }

    /// Allocate an address for `owner` (idempotent: the same owner gets its address back).
    pub fn allocate(&self, owner: &str) -> Result<Ipv4Addr> {
        let _l = Lock::take(&self.dir.join("ipam.lock"))?;
        let mut map = self.read_ipam()?;
        if let Some(ip) = map.get(owner) {
            return Ok(*ip);
        }
        let used: std::collections::HashSet<Ipv4Addr> = map.values().copied().collect();
        let base = u32::from(self.config.subnet);
        let ip = (2..self.config.size() - 1)
            .map(|i| Ipv4Addr::from(base + i))
            .find(|ip| !used.contains(ip))
            .ok_or_else(|| {
                NetError::Exhausted(format!("{}/{}", self.config.subnet, self.config.prefix))
            })?;
        map.insert(owner.to_owned(), ip);
        write_atomic(
            &self.ipam_path(),
            &serde_json::to_vec_pretty(&map).unwrap_or_default(),
        )?;
        Ok(ip)
    }

    pub fn release(&self, owner: &str) -> Result<()> {
        let _l = Lock::take(&self.dir.join("ipam.lock"))?;
        let mut map = self.read_ipam()?;
        if map.remove(owner).is_some() {
            write_atomic(
                &self.ipam_path(),
                &serde_json::to_vec_pretty(&map).unwrap_or_default(),
            )?;
        }
        Ok(())
    }

    /// Addresses currently allocated (owner → ip).
    pub fn allocations(&self) -> Result<BTreeMap<String, Ipv4Addr>> {
        let _l = Lock::take(&self.dir.join("ipam.lock"))?;
        self.read_ipam()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipam_never_hands_out_an_address_twice_under_concurrency() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_owned();
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    let n = Network::open(&dir).unwrap();
                    (0..20)
                        .map(|i| n.allocate(&format!("c{t}-{i}")).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<Ipv4Addr> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "duplicate address handed out");
        let net = Network::open(&dir).unwrap();
        assert!(!all.contains(&net.config.gateway()));
        assert_eq!(net.allocate("c0-0").unwrap(), net.allocate("c0-0").unwrap());
        net.release("c0-0").unwrap();
        assert_eq!(net.allocations().unwrap().len(), n - 1);
    }
}
