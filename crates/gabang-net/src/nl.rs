//! rtnetlink glue: a tokio current_thread runtime made and dropped inside one call (no
//! threads), a connection in the calling thread's netns, and the few requests attach, detach
//! and the bridge need.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{LinkFlags, LinkMessage};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use crate::{NetError, Result};

pub(crate) const ENODEV: i32 = libc::ENODEV;
pub(crate) const EEXIST: i32 = libc::EEXIST;

/// Run `f` where a runtime may be started: on the calling thread, or, when the caller is
/// itself inside a tokio runtime (where `block_on` would panic), on a scoped thread. The shim
/// never runs inside a tokio runtime, so it never gets that thread.
pub(crate) fn outside_tokio<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    })
}

/// A current_thread runtime (no worker or blocking threads) for one attach/detach.
pub(crate) struct Rt(tokio::runtime::Runtime);

impl Rt {
    pub(crate) fn new() -> Result<Self> {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map(Rt)
            .map_err(|source| NetError::Io {
                path: "tokio runtime".into(),
                source,
            })
    }

    pub(crate) fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.0.block_on(f)
    }
}

/// A netlink connection in the calling thread's current netns; call inside [`Rt::block_on`].
/// The connection task lives until the runtime is dropped.
pub(crate) fn connect() -> Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|source| NetError::Io {
        path: "netlink route socket".into(),
        source,
    })?;
    tokio::spawn(conn);
    Ok(handle)
}

pub(crate) fn nl_err(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let op = op.into();
    move |source| NetError::Netlink { op, source }
}

/// The errno of a netlink error answer (positive), if it is one.
pub(crate) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

/// The link called `name` in the handle's netns, `None` if there is none.
pub(crate) async fn link_by_name(h: &Handle, name: &str) -> Result<Option<LinkMessage>> {
    let mut s = h.link().get().match_name(name.to_owned()).execute();
    match s.try_next().await {
        Ok(m) => Ok(m),
        Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
        Err(e) => Err(nl_err(format!("get link {name}"))(e)),
    }
}

/// The index of `lo`: always 1 in a netns (it is registered first).
pub(crate) const LO_INDEX: u32 = 1;

pub(crate) fn is_up(m: &LinkMessage) -> bool {
    m.header.flags.contains(LinkFlags::Up)
}

pub(crate) async fn set_up(h: &Handle, index: u32, what: &str) -> Result<()> {
    h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl_err(format!("set {what} up")))
}

pub(crate) async fn add_addr(
    h: &Handle,
    index: u32,
    ip: Ipv4Addr,
    prefix: u8,
    what: &str,
) -> Result<()> {
    h.address()
        .add(index, IpAddr::V4(ip), prefix)
        .execute()
        .await
        .map_err(nl_err(format!("add address {ip}/{prefix} to {what}")))
}

pub(crate) async fn add_default_route(h: &Handle, index: u32, gw: Ipv4Addr) -> Result<()> {
    h.route()
        .add(
            RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gw)
                .output_interface(index)
                .build(),
        )
        .execute()
        .await
        .map_err(nl_err(format!("add default route via {gw}")))
}

/// Delete link `name`; `Ok(false)` when it did not exist.
pub(crate) async fn del_link(h: &Handle, name: &str) -> Result<bool> {
    match h
        .link()
        .del_with_message(LinkUnspec::new_with_name(name).build())
        .execute()
        .await
    {
        Ok(()) => Ok(true),
        Err(e) if errno(&e) == Some(ENODEV) => Ok(false),
        Err(e) => Err(nl_err(format!("delete link {name}"))(e)),
    }
}
