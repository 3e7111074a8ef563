//! detach: undo [`Network::attach`] without running a process (unless ports were published).

use std::path::PathBuf;

use crate::nl::{self, Rt};
use crate::{host_veth_name, netns, netns_name, nftables};
use crate::{Network, Port, Result};

impl Network {
    /// Undo [`Network::attach`]; idempotent, best effort on every step: the port elements
    /// that still point at this container, the veth pair, the netns (unmount + unlink), the
    /// address.
    pub fn detach(&self, id: &str, ports: &[Port]) -> Result<()> {
        nl::outside_tokio(|| {
            let rt = Rt::new()?;
            rt.block_on(self.detach_on(id, ports))
        })
    }

    pub(crate) async fn detach_on(&self, id: &str, ports: &[Port]) -> Result<()> {
        if !ports.is_empty() {
            if let Some(ip) = self.read_ipam().ok().and_then(|m| m.get(id).copied()) {
                nftables::unpublish(&self.table, ip, ports);
            }
        }
        let hv = host_veth_name(id);
        let veth = match nl::connect() {
            Ok(host) => nl::del_link(&host, &hv).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = &veth {
            tracing::warn!("detach {id}: {e}");
        }
        // Deleting the netns would also delete the veth, but only later (the kernel cleans
        // namespaces asynchronously), so the veth goes first, explicitly.
        let ns = netns::remove(&PathBuf::from(netns::RUN_DIR).join(netns_name(id)));
        let ipam = self.release(id);
        veth.and(ns).and(ipam)
    }
}
