//! Bridge networking and port publishing, inside a network namespace this test creates
//! (the test thread joins it, so the shim, `ip` and `nft` all act there, never on the host's
//! own network). Everything is removed on drop, even after a failure.
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::process::Command;

use common::*;
use gabang_runtime::{Attach, NetworkMode};

struct TestNetns(String);

impl TestNetns {
    /// Create a netns and move the current thread into it.
    fn enter() -> Self {
        let name = format!("gbtest-{}-{}", std::process::id(), rand_suffix());
        assert!(Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success());
        let g = TestNetns(name.clone());
        assert!(Command::new("ip")
            .args(["-n", &name, "link", "set", "lo", "up"])
            .status()
            .unwrap()
            .success());
        let f = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
        rustix::thread::move_into_link_name_space(
            f.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        g
    }
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn http_get(addr: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn bridge_ports_ipam_and_cleanup() {
    let _ns = TestNetns::enter();
    let env = Env::new();
    let web = |port: u16| {
        let mut o = opts(&[
            "sh",
            "-c",
            "mkdir -p /www && echo hello-$HOSTNAME > /www/index.html && exec httpd -f -p 80 -h /www",
        ]);
        o.network = NetworkMode::Bridge;
        o.publish = vec![format!("{port}:80").parse().unwrap()];
        o
    };
    let (a, _) = env.rt.run(env.req(web(18080)), Attach::Detached).unwrap();
    let (b, _) = env.rt.run(env.req(web(18081)), Attach::Detached).unwrap();
    let ia = env.rt.inspect(&a).unwrap()["NetworkSettings"]["IPAddress"].clone();
    let ib = env.rt.inspect(&b).unwrap()["NetworkSettings"]["IPAddress"].clone();
    assert_ne!(ia, ib, "distinct addresses");
    assert!(ia.as_str().unwrap().starts_with("10.89."));

    let mut got = None;
    assert!(eventually(|| {
        got = http_get("127.0.0.1:18080");
        got.is_some()
    }));
    assert!(got.unwrap().contains(&format!("hello-{}", &a[..12])));
    let mut direct = None;
    assert!(eventually(|| {
        direct = http_get(&format!("{}:80", ib.as_str().unwrap()));
        direct.is_some()
    }));
    let direct = direct.unwrap();
    assert!(direct.contains(&format!("hello-{}", &b[..12])));
    let via = http_get("127.0.0.1:18081").unwrap();
    assert!(via.contains(&format!("hello-{}", &b[..12])));

    // The same host port cannot be published twice.
    let e = env
        .rt
        .run(env.req(web(18080)), Attach::Detached)
        .unwrap_err();
    assert!(e.to_string().contains("18080"), "{e}");
    // ... and the failed start left no veth, netns or address behind.
    let veths = String::from_utf8(
        Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .matches("gbv")
    .count();
    assert_eq!(veths, 2);
    let netns = std::fs::read_dir("/run/netns")
        .unwrap()
        .filter(|e| {
            let n = e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .into_owned();
            n == gabang_net::netns_name(&a) || n == gabang_net::netns_name(&b) || {
                let ipam =
                    std::fs::read_to_string(env.tmp.path().join("root/net/ipam.json")).unwrap();
                ipam.contains(n.trim_start_matches("gabang-"))
            }
        })
        .count();
    assert_eq!(netns, 2);
    let ipam: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.tmp.path().join("root/net/ipam.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(ipam.as_object().unwrap().len(), 2, "{ipam}");

    // Container can reach the gateway (host side of the bridge).
    let mut o = opts(&[
        "sh",
        "-c",
        "ip route | grep default; ping -c1 -W2 10.89.0.1 >/dev/null && echo gw-ok",
    ]);
    o.network = NetworkMode::Bridge;
    let (c, _) = env.rt.run(env.req(o), Attach::Detached).unwrap();
    env.rt.wait(&c).unwrap();
    assert!(env.read_log(&c).contains("gw-ok"), "{}", env.read_log(&c));

    // rm tears down veth, netns, nft elements and the address.
    env.rt.remove(&a, true).unwrap();
    assert!(!std::path::Path::new(&format!("/run/netns/gabang-{}", &a[..12])).exists());
    // The veth pair goes with the netns, which the kernel tears down in the background.
    let veth = format!("gbv{}", &a[..11]);
    assert!(
        eventually(|| {
            !String::from_utf8(
                Command::new("ip")
                    .args(["-o", "link"])
                    .output()
                    .unwrap()
                    .stdout,
            )
            .unwrap()
            .contains(&veth)
        }),
        "{veth} left"
    );
    let map = String::from_utf8(
        Command::new("nft")
            .args(["list", "map", "ip", "gabang", "ports"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(!map.contains("18080"), "{map}");
    assert!(map.contains("18081"), "{map}");
    assert!(http_get("127.0.0.1:18080").is_none());
    let ipam = std::fs::read_to_string(env.tmp.path().join("root/net/ipam.json")).unwrap();
    assert!(!ipam.contains(&a), "address released");
}

#[test]
fn network_none_has_only_loopback() {
    let _ns = TestNetns::enter();
    let env = Env::new();
    let (id, _) = env
        .rt
        .run(
            env.req(opts(&["sh", "-c", "ls /sys/class/net | tr '\\n' ' '"])),
            Attach::Detached,
        )
        .unwrap();
    env.rt.wait(&id).unwrap();
    assert_eq!(env.read_log(&id).trim(), "lo");
    // lo is up, like docker's: a server on 127.0.0.1 is reachable inside the container.
    let (id2, _) = env
        .rt
        .run(
            env.req(opts(&[
                "sh",
                "-c",
                "httpd -p 127.0.0.1:8080 -h /etc && wget -q -O /dev/null http://127.0.0.1:8080/passwd && echo reached",
            ])),
            Attach::Detached,
        )
        .unwrap();
    env.rt.wait(&id2).unwrap();
    assert_eq!(env.read_log(&id2).trim(), "reached");
    // The netns made for it is gone with the container.
    for id in [&id, &id2] {
        env.rt.remove(id, true).unwrap();
        let ns = format!("/run/netns/{}", gabang_net::netns_name(id));
        assert!(!std::path::Path::new(&ns).exists(), "{ns} left");
    }
}

/// Many netns on the machine (a node with many pods): the shim detaches `/run/netns` from its
/// own mount namespace and joins its container's netns by fd; the container's network works,
/// eth0 has no IPv6, and the machine's netns mounts are untouched, its own removed at rm.
#[test]
fn crowded_run_netns_is_shed_in_the_shim_only() {
    let _ns = TestNetns::enter();
    let others: Vec<TestNetns> = (0..20)
        .map(|i| {
            let name = format!("gbcrowd-{}-{i}", std::process::id());
            assert!(Command::new("ip")
                .args(["netns", "add", &name])
                .status()
                .unwrap()
                .success());
            TestNetns(name)
        })
        .collect();
    let env = Env::new();
    let mut o = opts(&[
        "sh",
        "-c",
        "cat /proc/sys/net/ipv6/conf/eth0/disable_ipv6; ip -4 addr show eth0 | grep -c inet; exec sleep 1000",
    ]);
    o.network = NetworkMode::Bridge;
    let (id, _) = env.rt.run(env.req(o), Attach::Detached).unwrap();
    assert!(eventually(|| env.read_log(&id).lines().count() >= 2));
    assert_eq!(
        env.read_log(&id),
        "1\n1\n",
        "IPv6 off on eth0, one IPv4 address"
    );
    let st = env.rt.store().live_state(&id).unwrap();
    let shim = st.shim_pid.unwrap();
    let shim_mounts = std::fs::read_to_string(format!("/proc/{shim}/mountinfo")).unwrap();
    assert!(
        !shim_mounts.contains("/run/netns"),
        "the shim's mount table sheds /run/netns"
    );
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for n in &others {
        assert!(host_mounts.contains(&format!("/run/netns/{}", n.0)));
    }
    let own = format!("/run/netns/{}", gabang_net::netns_name(&id));
    assert!(
        host_mounts.contains(&own),
        "the container's netns stays visible"
    );
    // exec joins the running container (its namespaces come from its init process).
    let out = env
        .rt
        .exec_command(
            &id,
            &gabang_runtime::ExecSpec {
                args: vec!["cat".into(), "/etc/hostname".into()],
                ..Default::default()
            },
        )
        .unwrap()
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), &id[..12]);
    env.rt.remove(&id, true).unwrap();
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !host_mounts.contains(&own),
        "rm removes the container's netns mount"
    );
    assert!(!std::path::Path::new(&own).exists());
    for n in &others {
        assert!(host_mounts.contains(&format!("/run/netns/{}", n.0)));
    }
}
