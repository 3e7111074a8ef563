//! The network's bridge and nft table: made once, checked on every attach without running a
//! process (an rtnetlink link query and an nfnetlink table query).

use rtnetlink::{Handle, LinkBridge};

use crate::nl::{self, Rt};
use crate::{nftables, Lock, NetError, Network, Result};

impl Network {
    /// Create the bridge, forwarding and the nft table once (under a lock); cheap and
    /// lock-free when they already exist.
    pub fn ensure_bridge(&self) -> Result<()> {
        nl::outside_tokio(|| {
            let rt = Rt::new()?;
            rt.block_on(async {
                let host = nl::connect()?;
                self.ensure_bridge_on(&host).await.map(|_| ())
            })
        })
    }

    /// [`Network::ensure_bridge`] on an open connection; returns the bridge's ifindex.
    pub(crate) async fn ensure_bridge_on(&self, host: &Handle) -> Result<u32> {
        let br = &self.config.bridge;
        self.sysctls();
        if let Some(m) = nl::link_by_name(host, br).await? {
            if nl::is_up(&m) && nftables::table_exists(&self.table)? {
                return Ok(m.header.index);
            }
        }
        let _l = Lock::take(&self.dir.join("bridge.lock"))?;
        let index = match nl::link_by_name(host, br).await? {
            Some(m) => {
                if !nl::is_up(&m) {
                    nl::set_up(host, m.header.index, br).await?;
                }
                m.header.index
            }
            None => {
                match host
                    .link()
                    .add(LinkBridge::new(br).up().build())
                    .execute()
                    .await
                {
                    Ok(()) => {}
                    // Made by a process that does not share our lock dir.
                    Err(e) if nl::errno(&e) == Some(nl::EEXIST) => {}
                    Err(e) => return Err(nl::nl_err(format!("add bridge {br}"))(e)),
                }
                let m = nl::link_by_name(host, br)
                    .await?
                    .ok_or_else(|| NetError::NoBridge(br.clone()))?;
                match nl::add_addr(
                    host,
                    m.header.index,
                    self.config.gateway(),
                    self.config.prefix,
                    br,
                )
                .await
                {
                    Err(NetError::Netlink { source, .. })
                        if nl::errno(&source) == Some(nl::EEXIST) => {}
                    r => r?,
                }
                m.header.index
            }
        };
        self.sysctls();
        if !nftables::table_exists(&self.table)? {
            let subnet = format!("{}/{}", self.config.subnet, self.config.prefix);
            nftables::create_table(&self.table, br, &subnet)?;
        }
        Ok(index)
    }

    /// Forwarding on, and `route_localnet` on the bridge so `127.0.0.1:H` can be DNATed to
    /// it (best effort: the bridge may not exist yet on the first call).
    fn sysctls(&self) {
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1");
        let _ = std::fs::write(
            format!(
                "/proc/sys/net/ipv4/conf/{}/route_localnet",
                self.config.bridge
            ),
            "1",
        );
    }

    /// Remove the bridge and the nft table (for tests and node teardown); idempotent. Veths
    /// still on the bridge are detached by the kernel.
    pub fn remove_bridge(&self) -> Result<()> {
        let _l = Lock::take(&self.dir.join("bridge.lock"))?;
        nl::outside_tokio(|| {
            let rt = Rt::new()?;
            rt.block_on(async {
                let host = nl::connect()?;
                nl::del_link(&host, &self.config.bridge).await
            })
        })?;
        nftables::delete_table(&self.table)
    }
}
