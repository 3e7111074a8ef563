//! detach: undo [`Network::attach`] without running a process (unless ports were published).

use std::path::PathBuf;

use crate::nl::{self, Rt};
use crate::{host_veth_name, netns, netns_name, nftables};
use crate::{Network, Port, Result};

impl Network {
    /// Undo [`Network::attach`]; idempotent, best effort on every step: the port elements
    /// that still point at this container, the netns (unmount + unlink; the kernel then
    /// removes the veth pair in the background), the address.
    pub fn detach(&self, id: &str, ports: &[Port]) -> Result<()> {
        nl::outside_tokio(|| {
            let rt = Rt::new()?;
            rt.block_on(self.detach_on(id, ports, false))
        })
    }

    /// `delete_veth`: delete the veth pair now (a failed attach) instead of leaving it to
    /// the namespace's teardown.
    pub(crate) async fn detach_on(
        &self,
        id: &str,
        ports: &[Port],
        delete_veth: bool,
    ) -> Result<()> {
        if !ports.is_empty() {
            if let Some(ip) = self.read_ipam().ok().and_then(|m| m.get(id).copied()) {
                nftables::unpublish(&self.table, ip, ports);
            }
        }
        // The veth pair is not deleted here: deleting a device waits ~20-30 ms in the
        // kernel (RCU), on the path of every `run --rm` and pod deletion. Unmounting the
        // netns drops its last reference (the container's processes are gone), and the
        // kernel then destroys the namespace and the pair in the background. A leftover of
        // the same name is deleted by the next attach of this id.
        let veth = if delete_veth {
            match nl::connect() {
                Ok(host) => nl::del_link(&host, &host_veth_name(id)).await.map(|_| ()),
                Err(e) => Err(e),
            }
        } else {
            Ok(())
        };
        let ns = netns::remove(&PathBuf::from(netns::RUN_DIR).join(netns_name(id)));
        let ipam = self.release(id);
        veth.and(ns).and(ipam)
    }
}
