//! detach: undo [`Network::attach`] without running a process (unless ports were published).

use crate::nftables;
use crate::{Network, Port, Result};

impl Network {
    /// Undo [`Network::attach`]; idempotent, best effort on every step: the port elements
    /// that still point at this container, the netns (unmount + unlink; the kernel then
    /// removes the veth pair in the background), the address.
    ///
    /// The veth pair is not deleted here: deleting a device waits ~20-30 ms in the kernel
    /// (RCU), on the path of every `run --rm` and pod deletion. Unmounting the netns drops
    /// its last reference (the container's processes are gone), and the kernel then
    /// destroys the namespace and the pair in the background. A leftover of the same name
    /// is deleted by the next attach of this id; a failed attach deletes it at once.
    pub fn detach(&self, id: &str, ports: &[Port]) -> Result<()> {
        if !ports.is_empty() {
            if let Some(ip) = self.read_ipam().ok().and_then(|m| m.get(id).copied()) {
                nftables::unpublish(&self.table, ip, ports);
            }
        }
        let ns = crate::remove_netns(id);
        let ipam = self.release(id);
        ns.and(ipam)
    }
}
