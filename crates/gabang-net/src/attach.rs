//! attach: a container's netns with `eth0` on the bridge, over rtnetlink.
//!
//! Requests, in order: the bridge (a query), the netns (unshare + bind mount, a socket opened
//! inside it), one RTM_NEWLINK making the veth pair with the host end on the bridge and up
//! and the peer created directly in the netns as `eth0`; then inside the netns: `lo` up,
//! `eth0` up, its address, the default route. Ports: one `nft` run. (Setting the peer up in
//! the RTM_NEWLINK itself is refused with ENOTCONN by Linux 6.18, hence the separate step.)

use std::os::fd::AsRawFd;

use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::{LinkMessageBuilder, LinkUnspec};

use crate::nl::{self, Rt};
use crate::{host_veth_name, netns, netns_path, nftables};
use crate::{Attachment, NetError, Network, Port, Result};

impl Network {
    /// Give container `id` a netns with `eth0` on the bridge and publish `ports`.
    /// On failure everything made so far is undone.
    pub fn attach(&self, id: &str, ports: &[Port]) -> Result<Attachment> {
        nl::outside_tokio(|| {
            let rt = Rt::new()?;
            let r = rt.block_on(self.attach_on(id, ports));
            if r.is_err() {
                // A failed start is rare: undo it completely, the veth included.
                let _ =
                    rt.block_on(async { nl::del_link(&nl::connect()?, &host_veth_name(id)).await });
                let _ = self.detach(id, ports);
            }
            r
        })
    }

    async fn attach_on(&self, id: &str, ports: &[Port]) -> Result<Attachment> {
        let host = nl::connect()?;
        let br_index = self.ensure_bridge_on(&host).await?;
        let ip = self.allocate(id)?;
        let ns_path = netns_path(id);
        let hv = host_veth_name(id);
        let (ns_fd, inner) = netns::create(&ns_path, &self.dir, || {
            // No IPv6 on eth0 (as docker does for networks without IPv6): otherwise every
            // new eth0's duplicate-address probes, router solicitations and MLD reports are
            // flooded by the bridge to every other container, a cost that grows with the
            // square of the containers on a node (a burst of 100 pods). `lo` keeps ::1.
            netns::disable_ipv6_on_new_links();
            nl::connect()
        })?;

        let peer = LinkUnspec::new_with_name("eth0")
            .setns_by_fd(ns_fd.as_raw_fd())
            .build();
        let veth = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
            .name(hv.clone())
            .controller(br_index)
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        // A veth of this name may still be there: detach leaves it to the kernel's
        // (asynchronous) teardown of the old netns, and a restarting container attaches
        // again at once. Then it is deleted here and the create retried.
        let add = |veth| host.link().add(veth).execute();
        let what = || {
            format!(
                "add veth {hv} on {} with eth0 in {}",
                self.config.bridge,
                ns_path.display()
            )
        };
        if let Err(e) = add(veth.clone()).await {
            if nl::errno(&e) != Some(libc::EEXIST) || !nl::del_link(&host, &hv).await? {
                return Err(nl::nl_err(what())(e));
            }
            add(veth).await.map_err(nl::nl_err(what()))?;
        }
        drop(ns_fd);

        let eth0 = nl::link_by_name(&inner, "eth0")
            .await?
            .ok_or_else(|| NetError::Io {
                path: ns_path.clone(),
                source: std::io::Error::other("eth0 missing after creating the veth pair"),
            })?
            .header
            .index;
        let gw = self.config.gateway();
        let prefix = self.config.prefix;
        futures_util::try_join!(nl::set_up(&inner, nl::LO_INDEX, "lo"), async {
            nl::set_up(&inner, eth0, "eth0").await?;
            nl::add_addr(&inner, eth0, ip, prefix, "eth0").await?;
            nl::add_default_route(&inner, eth0, gw).await
        },)?;
        nftables::publish(&self.table, ip, ports)?;
        Ok(Attachment {
            netns_path: ns_path,
            ip,
            gateway: gw,
            prefix,
            host_veth: hv,
            ports: ports.to_vec(),
        })
    }
}
