//! attach/detach against the real kernel, each test inside a netns of its own (see
//! `common`). Needs root, iproute2 (checks only) and nftables.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::time::Duration;

use common::*;
use gabang_net::{host_veth_name, netns_name, NetError, Port};
use serde_json::Value;

fn json(cmd_args: &[&str]) -> Value {
    serde_json::from_str(&sh("ip", cmd_args)).expect("ip -j output")
}

/// Detach leaves the veth pair to the kernel's asynchronous teardown of the netns: wait
/// (up to 10 s) for `cond`.
fn eventually(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("still not true after 10 s: {what}");
}

fn bridge_ports() -> usize {
    json(&["-j", "link", "show", "master", "gbt0"])
        .as_array()
        .map_or(usize::MAX, Vec::len)
}

fn link_is_up(link: &Value) -> bool {
    link["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "UP"))
}

/// Accept one connection on `listener`, answer what it sent with "pong:" prepended.
fn serve_once(listener: TcpListener) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        if let Ok((mut c, _)) = listener.accept() {
            let mut buf = [0u8; 64];
            let n = c.read(&mut buf).unwrap_or(0);
            let mut reply = b"pong:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = c.write_all(&reply);
        }
    })
}

fn ping(addr: SocketAddrV4, msg: &str) -> String {
    let mut c = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(msg.as_bytes()).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut s = String::new();
    c.read_to_string(&mut s).unwrap();
    s
}

#[test]
fn attach_gives_eth0_with_the_address_lo_up_and_a_default_route() {
    let fx = Fixture::new();
    let id = fx.id();
    let before = current_netns_id();
    let att = fx.net.attach(&id, &[]).unwrap();
    assert_eq!(
        current_netns_id(),
        before,
        "the calling thread left its netns"
    );
    assert_eq!(att.netns_path, netns_path(&id));
    assert_eq!(att.gateway, Ipv4Addr::new(10, 77, 0, 1));
    assert_eq!(att.prefix, 24);
    assert_eq!(att.host_veth, host_veth_name(&id));
    assert_eq!(fx.net.allocations().unwrap().get(&id), Some(&att.ip));

    // `ip netns` sees it; inside: eth0 up with the address, lo up, default via the gateway.
    let ns = netns_name(&id);
    assert!(sh("ip", &["netns", "list"])
        .lines()
        .any(|l| l.starts_with(&ns)));
    let addrs = json(&["-n", &ns, "-j", "addr", "show"]);
    let links = addrs.as_array().unwrap();
    let eth0 = links.iter().find(|l| l["ifname"] == "eth0").expect("eth0");
    assert!(link_is_up(eth0), "{eth0}");
    assert!(eth0["addr_info"].as_array().unwrap().iter().any(|a| {
        a["family"] == "inet" && a["local"] == att.ip.to_string() && a["prefixlen"] == 24
    }));
    let lo = links.iter().find(|l| l["ifname"] == "lo").expect("lo");
    assert!(link_is_up(lo), "{lo}");
    assert_eq!(links.len(), 2, "only lo and eth0 in the netns: {addrs}");
    let routes = json(&["-n", &ns, "-j", "route", "show"]);
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "10.77.0.1" && r["dev"] == "eth0"),
        "{routes}"
    );
    // Host side: the veth is up and on the bridge.
    let hv = json(&["-j", "link", "show", "dev", &att.host_veth]);
    assert_eq!(hv[0]["master"], "gbt0", "{hv}");
    assert!(link_is_up(&hv[0]), "{hv}");

    // Attaching an id whose netns exists fails (like `ip netns add`); as on any failure
    // everything of that id is undone, so nothing half-made stays behind.
    assert!(matches!(fx.net.attach(&id, &[]), Err(NetError::Io { .. })));
    assert!(!att.netns_path.exists());
    assert!(!ok("ip", &["link", "show", "dev", &att.host_veth]));
    assert!(fx.net.allocations().unwrap().is_empty());
}

#[test]
fn two_attachments_reach_each_other_the_gateway_and_beyond_it() {
    let fx = Fixture::new();
    let (a, b) = (fx.id(), fx.id());
    let att_a = fx.net.attach(&a, &[]).unwrap();
    let att_b = fx.net.attach(&b, &[]).unwrap();
    assert_ne!(att_a.ip, att_b.ip);

    // a → b over the bridge.
    let l = in_netns_path(&att_b.netns_path, || {
        TcpListener::bind((att_b.ip, 7000)).unwrap()
    });
    let srv = serve_once(l);
    let got = in_netns_path(&att_a.netns_path, || {
        ping(SocketAddrV4::new(att_b.ip, 7000), "a")
    });
    assert_eq!(got, "pong:a");
    srv.join().unwrap();

    // b → the gateway (the bridge's address on the "host").
    let l = TcpListener::bind((att_b.gateway, 7001)).unwrap();
    let srv = serve_once(l);
    let got = in_netns_path(&att_b.netns_path, || {
        ping(SocketAddrV4::new(att_b.gateway, 7001), "b")
    });
    assert_eq!(got, "pong:b");
    srv.join().unwrap();

    // a → an address outside the subnet: only the default route leads there.
    sh("ip", &["addr", "add", "192.0.2.10/32", "dev", "lo"]);
    let l = TcpListener::bind(("192.0.2.10", 7002)).unwrap();
    let srv = serve_once(l);
    let got = in_netns_path(&att_a.netns_path, || {
        ping(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 10), 7002), "c")
    });
    assert_eq!(got, "pong:c");
    srv.join().unwrap();
}

#[test]
fn detach_leaves_no_veth_no_netns_and_no_address_and_is_idempotent() {
    let fx = Fixture::new();
    let id = fx.id();
    let att = fx.net.attach(&id, &[]).unwrap();
    assert!(att.netns_path.exists());
    assert!(ok("ip", &["link", "show", "dev", &att.host_veth]));
    fx.net.detach(&id, &[]).unwrap();
    assert!(!att.netns_path.exists());
    eventually("the veth is gone", || {
        !ok("ip", &["link", "show", "dev", &att.host_veth])
    });
    let ns = netns_name(&id);
    assert!(!sh("ip", &["netns", "list"])
        .lines()
        .any(|l| l.starts_with(&ns)));
    assert!(fx.net.allocations().unwrap().is_empty());
    // Nothing left: the bridge has no ports.
    eventually("the bridge has no ports", || bridge_ports() == 0);
    // Again: nothing to do, no error.
    fx.net.detach(&id, &[]).unwrap();
    // And the id can be attached again.
    fx.net.attach(&id, &[]).unwrap();
}

#[test]
fn concurrent_attach_of_20_ids_all_succeed_with_distinct_addresses() {
    let fx = Fixture::new();
    fx.net.ensure_bridge().unwrap();
    let ids: Vec<String> = (0..20).map(|_| fx.id()).collect();
    let atts: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = ids
            .iter()
            .map(|id| {
                let fd = &fx.ns.fd;
                let net = fx.reopen();
                s.spawn(move || {
                    enter(fd);
                    net.attach(id, &[])
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let atts: Vec<_> = atts
        .into_iter()
        .map(|r| r.expect("every concurrent attach succeeds"))
        .collect();
    let ips: HashSet<Ipv4Addr> = atts.iter().map(|a| a.ip).collect();
    assert_eq!(ips.len(), 20, "an address was handed out twice");
    assert!(!ips.contains(&fx.net.config.gateway()));
    let ports = json(&["-j", "link", "show", "master", "gbt0"]);
    assert_eq!(ports.as_array().map(Vec::len), Some(20));
    for a in &atts {
        let ns = a.netns_path.file_name().unwrap().to_str().unwrap();
        let eth0 = json(&["-n", ns, "-j", "addr", "show", "dev", "eth0"]);
        assert_eq!(eth0[0]["addr_info"][0]["local"], a.ip.to_string(), "{eth0}");
    }
    // Concurrent detach leaves nothing either.
    std::thread::scope(|s| {
        for id in &ids {
            let fd = &fx.ns.fd;
            let net = fx.reopen();
            s.spawn(move || {
                enter(fd);
                net.detach(id, &[]).unwrap()
            });
        }
    });
    assert!(fx.net.allocations().unwrap().is_empty());
    assert!(atts.iter().all(|a| !a.netns_path.exists()));
    eventually("the bridge has no ports", || bridge_ports() == 0);
}

#[test]
fn published_ports_reach_the_container_and_a_taken_port_undoes_the_attach() {
    let fx = Fixture::new();
    let (a, b) = (fx.id(), fx.id());
    let ports = [Port {
        host_port: 18080,
        container_port: 80,
        protocol: "tcp".into(),
    }];
    let att = fx.net.attach(&a, &ports).unwrap();
    let l = in_netns_path(&att.netns_path, || {
        TcpListener::bind((Ipv4Addr::UNSPECIFIED, 80)).unwrap()
    });
    let srv = serve_once(l);
    // Through 127.0.0.1 of the "host" (output hook, route_localnet, masquerade).
    assert_eq!(ping("127.0.0.1:18080".parse().unwrap(), "p"), "pong:p");
    srv.join().unwrap();

    // The same host port for another container: refused, and nothing of b is left.
    let err = fx.net.attach(&b, &ports).unwrap_err();
    assert!(matches!(err, NetError::PortInUse(18080, _)), "{err}");
    assert!(!netns_path(&b).exists());
    assert!(!ok("ip", &["link", "show", "dev", &host_veth_name(&b)]));
    assert!(!fx.net.allocations().unwrap().contains_key(&b));
    // a's port is untouched by b's cleanup; detaching a removes it.
    let table = fx.net.nft_table().to_owned();
    let key = ["get", "element", "ip", &table, "ports", "{ tcp . 18080 }"];
    assert!(ok("nft", &key));
    fx.net.detach(&a, &ports).unwrap();
    assert!(!ok("nft", &key));
}

#[test]
fn a_stale_netns_fails_the_attach_cleanly_and_the_retry_succeeds() {
    let fx = Fixture::new();
    let id = fx.id();
    fx.net.ensure_bridge().unwrap();
    // A leftover of a crashed run: the mount point exists already.
    std::fs::create_dir_all("/run/netns").unwrap();
    std::fs::write(netns_path(&id), b"").unwrap();
    let err = fx.net.attach(&id, &[]).unwrap_err();
    assert!(matches!(err, NetError::Io { .. }), "{err}");
    assert!(!netns_path(&id).exists());
    assert!(fx.net.allocations().unwrap().is_empty());
    assert!(!ok("ip", &["link", "show", "dev", &host_veth_name(&id)]));
    fx.net.attach(&id, &[]).unwrap();
}

#[test]
fn attach_works_when_called_inside_a_tokio_runtime() {
    let fx = Fixture::new();
    let id = fx.id();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let att = rt.block_on(async { fx.net.attach(&id, &[]) }).unwrap();
    assert!(att.netns_path.exists());
    rt.block_on(async { fx.net.detach(&id, &[]) }).unwrap();
    assert!(!att.netns_path.exists());
}

#[test]
fn the_bridge_is_made_once_and_repaired_when_down_or_without_its_table() {
    let fx = Fixture::new();
    fx.net.ensure_bridge().unwrap();
    let br = json(&["-j", "addr", "show", "dev", "gbt0"]);
    assert!(link_is_up(&br[0]));
    assert_eq!(br[0]["addr_info"][0]["local"], "10.77.0.1", "{br}");
    let table = fx.net.nft_table().to_owned();
    assert!(ok("nft", &["list", "table", "ip", &table]));
    sh("ip", &["link", "set", "gbt0", "down"]);
    sh("nft", &["delete", "table", "ip", &table]);
    fx.net.ensure_bridge().unwrap();
    assert!(link_is_up(&json(&["-j", "link", "show", "dev", "gbt0"])[0]));
    assert!(ok("nft", &["list", "table", "ip", &table]));
    fx.net.remove_bridge().unwrap();
    assert!(!ok("ip", &["link", "show", "dev", "gbt0"]));
    assert!(!ok("nft", &["list", "table", "ip", &table]));
    fx.net.remove_bridge().unwrap();
}
