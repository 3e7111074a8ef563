//! nftables: the network's NAT table and its `ports` map. Writing rules runs the `nft` tool
//! (once per network for the table, once per container that publishes ports); whether the
//! table exists is asked over nfnetlink, so an attach without ports runs no process.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{io_at, NetError, Port, Result};

pub(crate) fn run(cmd: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
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

/// `nft -f -` with `script` on stdin.
pub(crate) fn nft(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
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

/// The table with the `ports` map, DNAT from local addresses and masquerade.
pub(crate) fn create_table(table: &str, bridge: &str, subnet: &str) -> Result<()> {
    nft(&format!(
        "table ip {table} {{
  map ports {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
  chain prerouting {{ type nat hook prerouting priority dstnat; fib daddr type local dnat ip to meta l4proto . th dport map @ports; }}
  chain output {{ type nat hook output priority -100; fib daddr type local dnat ip to meta l4proto . th dport map @ports; }}
  chain postrouting {{ type nat hook postrouting priority srcnat; ip saddr 127.0.0.0/8 oifname \"{bridge}\" masquerade; ip saddr {subnet} oifname != \"{bridge}\" masquerade; }}
}}\n"
    ))
}

/// Add the container's map elements in one `nft` run. `add element` fails if a key exists:
/// a host port is never published twice.
pub(crate) fn publish(table: &str, ip: Ipv4Addr, ports: &[Port]) -> Result<()> {
    let Some(first) = ports.first() else {
        return Ok(());
    };
    let elems: Vec<String> = ports
        .iter()
        .map(|p| {
            format!(
                "{} . {} : {ip} . {}",
                p.protocol, p.host_port, p.container_port
            )
        })
        .collect();
    nft(&format!(
        "add element ip {table} ports {{ {} }}\n",
        elems.join(", ")
    ))
    .map_err(|e| {
        tracing::debug!("publish failed: {e}");
        NetError::PortInUse(first.host_port, first.protocol.clone())
    })
}

/// Delete the elements of `ports` that still point at `ip`; best effort.
pub(crate) fn unpublish(table: &str, ip: Ipv4Addr, ports: &[Port]) {
    for p in ports {
        let key = format!("{} . {}", p.protocol, p.host_port);
        let set = format!("{{ {key} }}");
        if let Ok(out) = run("nft", &["get", "element", "ip", table, "ports", &set]) {
            if out.contains(&format!(": {ip} . {}", p.container_port)) {
                let _ = nft(&format!("delete element ip {table} ports {set}\n"));
            }
        }
    }
}

pub(crate) fn delete_table(table: &str) -> Result<()> {
    if table_exists(table)? {
        run("nft", &["delete", "table", "ip", table])?;
    }
    Ok(())
}

// nfnetlink constants (linux/netfilter/nfnetlink.h, nf_tables.h).
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_GETTABLE: u16 = 1;
const NFTA_TABLE_NAME: u16 = 1;
const NFPROTO_IPV4: u8 = 2;
const NLMSG_ERROR: u16 = 2;
const NLMSG_HDRLEN: usize = 16;

/// Whether `ip <table>` exists in the calling thread's netns: one NFT_MSG_GETTABLE request
/// over NETLINK_NETFILTER (no crate builds nf_tables messages without libnftnl, so these
/// 20 bytes are written here).
pub(crate) fn table_exists(table: &str) -> Result<bool> {
    use rtnetlink::sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
    let what = Path::new("nfnetlink");
    let mut sock = io_at(Socket::new(NETLINK_NETFILTER), what)?;
    io_at(sock.bind_auto(), what)?;
    io_at(sock.connect(&SocketAddr::new(0, 0)), what)?;
    let name_len = table.len() + 1;
    let attr_len = 4 + name_len;
    let total = NLMSG_HDRLEN + 4 + attr_len.next_multiple_of(4);
    let mut m = Vec::with_capacity(total);
    m.extend_from_slice(&(total as u32).to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE).to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    m.extend_from_slice(&[NFPROTO_IPV4, 0, 0, 0]); // nfgenmsg: family, version, res_id
    m.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    m.extend_from_slice(&NFTA_TABLE_NAME.to_ne_bytes());
    m.extend_from_slice(table.as_bytes());
    m.resize(total, 0); // NUL terminator and padding
    io_at(sock.send(&m, 0), what)?;
    let mut found = false;
    loop {
        let (buf, _) = io_at(sock.recv_from_full(), what)?;
        let mut off = 0;
        while off + NLMSG_HDRLEN <= buf.len() {
            let len =
                u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
            let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
            if len < NLMSG_HDRLEN || off + len > buf.len() {
                return io_at(
                    Err(std::io::Error::other("truncated nfnetlink answer")),
                    what,
                );
            }
            if ty == NLMSG_ERROR {
                if len < NLMSG_HDRLEN + 4 {
                    return io_at(Err(std::io::Error::other("short nfnetlink error")), what);
                }
                let p = off + NLMSG_HDRLEN;
                let code = i32::from_ne_bytes([buf[p], buf[p + 1], buf[p + 2], buf[p + 3]]);
                return match -code {
                    0 => Ok(found),
                    libc::ENOENT => Ok(false),
                    errno => io_at(Err(std::io::Error::from_raw_os_error(errno)), what),
                };
            }
            // NFT_MSG_NEWTABLE: the table.
            found = true;
            off += len.next_multiple_of(4);
        }
    }
}
