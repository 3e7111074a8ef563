//! gabang-net: container networking on one host. A Linux bridge (`gabang0`, 10.89.0.0/16 by
//! default) with one veth pair per container whose far end becomes `eth0` in a named network
//! namespace (`/run/netns/gabang-<id>`); IPAM in a JSON file guarded by `flock` so concurrent
//! runs never share an address; port publishing with nftables DNAT (prerouting + output hook,
//! `route_localnet` on the bridge and a masquerade rule so `127.0.0.1:H` works) driven by one
//! map, so a container's ports are map elements added and deleted atomically.
//!
//! Start reading at [`Network::attach`] / [`Network::detach`]. Links and rules are made with
//! the iproute2 `ip` and `nft` tools (Debian `iproute2`, `nftables`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;

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

fn run(cmd: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| NetError::Io {
            path: PathBuf::from(cmd),
            source,
        })?;
    if !out.status.success() {
        return Err(NetError::Command {
            cmd: format!("{cmd} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run `ip [-n NS] -batch -` with one command per line; fails on the first failing line.
fn ip_batch(netns: Option<&str>, lines: &[String]) -> Result<()> {
    let mut args: Vec<&str> = Vec::new();
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["-batch", "-"]);
    let mut child = Command::new("ip")
        .args(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| NetError::Io {
            path: "ip".into(),
            source,
        })?;
    let script = lines.join("\n") + "\n";
    if let Some(mut stdin) = child.stdin.take() {
        io_at(stdin.write_all(script.as_bytes()), Path::new("ip"))?;
    }
    let out = io_at(child.wait_with_output(), Path::new("ip"))?;
    if !out.status.success() {
        return Err(NetError::Command {
            cmd: format!("ip {} <<< {script:?}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

fn nft(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| NetError::Io {
            path: "nft".into(),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        io_at(stdin.write_all(script.as_bytes()), Path::new("nft"))?;
    }
    let out = io_at(child.wait_with_output(), Path::new("nft"))?;
    if !out.status.success() {
        return Err(NetError::Command {
            cmd: format!("nft -f - <<< {script:?}"),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    // Unique per process and per call: threads of one process may write the same file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    io_at(std::fs::write(&tmp, data), &tmp)?;
    io_at(std::fs::rename(&tmp, path), path)
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

    /// Remove the bridge and the nft table (for tests and node teardown); idempotent. Veths
    /// still on the bridge are detached by the kernel.
    pub fn remove_bridge(&self) -> Result<()> {
        let _l = Lock::take(&self.dir.join("bridge.lock"))?;
        if run("ip", &["link", "show", &self.config.bridge]).is_ok() {
            run("ip", &["link", "del", &self.config.bridge])?;
        }
        if run("nft", &["list", "table", "ip", &self.table]).is_ok() {
            run("nft", &["delete", "table", "ip", &self.table])?;
        }
        Ok(())
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

    /// Create the bridge, forwarding and the nft table once (under a lock).
    pub fn ensure_bridge(&self) -> Result<()> {
        let _l = Lock::take(&self.dir.join("bridge.lock"))?;
        let br = &self.config.bridge;
        // (Not /sys/class/net: sysfs shows the netns it was mounted in, not this thread's.)
        match run("ip", &["-o", "link", "show", br]) {
            Err(_) => {
                let addr = format!("{}/{}", self.config.gateway(), self.config.prefix);
                ip_batch(
                    None,
                    &[
                        format!("link add {br} type bridge"),
                        format!("addr add {addr} dev {br}"),
                        format!("link set {br} up"),
                    ],
                )?;
            }
            Ok(out) => {
                let flags = out.split('<').nth(1).and_then(|f| f.split('>').next());
                if !flags.is_some_and(|f| f.split(',').any(|x| x == "UP")) {
                    run("ip", &["link", "set", br, "up"])?;
                }
            }
        }
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1");
        let _ = std::fs::write(format!("/proc/sys/net/ipv4/conf/{br}/route_localnet"), "1");
        if run("nft", &["list", "table", "ip", &self.table]).is_err() {
            let subnet = format!("{}/{}", self.config.subnet, self.config.prefix);
            nft(&format!(
                "table ip {table} {{
  map ports {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
  chain prerouting {{ type nat hook prerouting priority dstnat; fib daddr type local dnat ip to meta l4proto . th dport map @ports; }}
  chain output {{ type nat hook output priority -100; fib daddr type local dnat ip to meta l4proto . th dport map @ports; }}
  chain postrouting {{ type nat hook postrouting priority srcnat; ip saddr 127.0.0.0/8 oifname \"{br}\" masquerade; ip saddr {subnet} oifname != \"{br}\" masquerade; }}
}}\n",
                table = self.table
            ))?;
        }
        Ok(())
    }

    /// Give container `id` a netns with `eth0` on the bridge and publish `ports`.
    /// On failure everything made so far is undone.
    pub fn attach(&self, id: &str, ports: &[Port]) -> Result<Attachment> {
        self.ensure_bridge()?;
        let r = self.attach_inner(id, ports);
        if r.is_err() {
            let _ = self.detach(id, ports);
        }
        r
    }

    fn attach_inner(&self, id: &str, ports: &[Port]) -> Result<Attachment> {
        let ip = self.allocate(id)?;
        let ns = netns_name(id);
        let hv = host_veth_name(id);
        let peer = format!("gbp{}", &id[..id.len().min(11)]);
        let addr = format!("{ip}/{}", self.config.prefix);
        let gw = self.config.gateway();
        // Two `ip -batch` processes instead of eight `ip` runs (each exec costs ms).
        ip_batch(
            None,
            &[
                format!("netns add {ns}"),
                format!("link add {hv} type veth peer name {peer} netns {ns}"),
                format!("link set {hv} master {} up", self.config.bridge),
            ],
        )?;
        ip_batch(
            Some(&ns),
            &[
                format!("link set {peer} name eth0"),
                format!("addr add {addr} dev eth0"),
                "link set eth0 up".to_owned(),
                "link set lo up".to_owned(),
                format!("route add default via {gw}"),
            ],
        )?;
        if !ports.is_empty() {
            let elems: Vec<String> = ports
                .iter()
                .map(|p| {
                    format!(
                        "{} . {} : {ip} . {}",
                        p.protocol, p.host_port, p.container_port
                    )
                })
                .collect();
            // `add element` fails if the key exists: a host port is never published twice.
            nft(&format!(
                "add element ip {} ports {{ {} }}\n",
                self.table,
                elems.join(", ")
            ))
            .map_err(|e| match ports.first() {
                Some(p) => {
                    tracing::debug!("publish failed: {e}");
                    NetError::PortInUse(p.host_port, p.protocol.clone())
                }
                None => e,
            })?;
        }
        Ok(Attachment {
            netns_path: PathBuf::from("/run/netns").join(&ns),
            ip,
            gateway: self.config.gateway(),
            prefix: self.config.prefix,
            host_veth: hv,
            ports: ports.to_vec(),
        })
    }

    /// Undo [`Network::attach`]; idempotent, best effort on every step.
    pub fn detach(&self, id: &str, ports: &[Port]) -> Result<()> {
        let ip = self.read_ipam().ok().and_then(|m| m.get(id).copied());
        if let Some(ip) = ip {
            for p in ports {
                // Only delete elements that still point at this container.
                let key = format!("{} . {}", p.protocol, p.host_port);
                if let Ok(out) = run(
                    "nft",
                    &[
                        "get",
                        "element",
                        "ip",
                        &self.table,
                        "ports",
                        &format!("{{ {key} }}"),
                    ],
                ) {
                    if out.contains(&format!(": {ip} . {}", p.container_port)) {
                        let _ = nft(&format!(
                            "delete element ip {} ports {{ {key} }}\n",
                            self.table
                        ));
                    }
                }
            }
        }
        let _ = run("ip", &["link", "del", &host_veth_name(id)]);
        let ns = netns_name(id);
        if Path::new("/run/netns").join(&ns).exists() {
            run("ip", &["netns", "del", &ns])?;
        }
        self.release(id)
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
