//! attach + detach of one container without ports: the previous implementation (iproute2
//! and nft processes: `ip -o link show` + `nft list table` to check the bridge, two
//! `ip -batch` runs, then `ip link del` + `ip netns del`) against the netlink one, side by
//! side in one run, interleaved. Also a burst of 20 concurrent attach+detach per path.
//!
//! Runs inside a private network namespace (bridge `gbb0`, 10.78.0.0/24) and cleans up.
//! `cargo bench -p gabang-net --bench attach [-- ITERATIONS]` (root).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gabang_net::{host_veth_name, netns_name, NetConfig, Network};
use rustix::thread::UnshareFlags;

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn ip_batch(netns: Option<&str>, lines: &[String]) -> Result<(), String> {
    let mut args: Vec<&str> = Vec::new();
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["-batch", "-"]);
    let mut child = Command::new("ip")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all((lines.join("\n") + "\n").as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The previous `Network::attach` (no ports), process for process.
fn old_attach(net: &Network, id: &str) -> Result<(), String> {
    let br = &net.config.bridge;
    run("ip", &["-o", "link", "show", br])?;
    run("nft", &["list", "table", "ip", net.nft_table()])?;
    let ip = net.allocate(id).map_err(|e| e.to_string())?;
    let ns = netns_name(id);
    let hv = host_veth_name(id);
    let peer = format!("gbp{}", &id[..id.len().min(11)]);
    ip_batch(
        None,
        &[
            format!("netns add {ns}"),
            format!("link add {hv} type veth peer name {peer} netns {ns}"),
            format!("link set {hv} master {br} up"),
        ],
    )?;
    ip_batch(
        Some(&ns),
        &[
            format!("link set {peer} name eth0"),
            format!("addr add {ip}/{} dev eth0", net.config.prefix),
            "link set eth0 up".to_owned(),
            "link set lo up".to_owned(),
            format!("route add default via {}", net.config.gateway()),
        ],
    )
}

/// The previous `Network::detach` (no ports).
fn old_detach(net: &Network, id: &str) -> Result<(), String> {
    let _ = run("ip", &["link", "del", &host_veth_name(id)]);
    let ns = netns_name(id);
    if Path::new("/run/netns").join(&ns).exists() {
        run("ip", &["netns", "del", &ns])?;
    }
    net.release(id).map_err(|e| e.to_string())
}

fn new_cycle(net: &Network, id: &str) -> Result<(), String> {
    new_attach(net, id)?;
    new_detach(net, id)
}

fn old_cycle(net: &Network, id: &str) -> Result<(), String> {
    let r = old_attach(net, id);
    let d = old_detach(net, id);
    r.and(d)
}

/// CPU time (user + system) of this process and its waited-for children.
fn cpu() -> Duration {
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let mut total = Duration::ZERO;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: getrusage fills the struct we pass.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut u) };
        total += tv(u.ru_utime) + tv(u.ru_stime);
    }
    total
}

#[derive(Default)]
struct Stats {
    wall: Vec<Duration>,
    cpu: Duration,
}

impl Stats {
    fn pct(&self, p: f64) -> Duration {
        let mut v = self.wall.clone();
        v.sort();
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    }
    fn mean(&self) -> Duration {
        self.wall.iter().sum::<Duration>() / self.wall.len() as u32
    }
    fn cpu_per_op(&self) -> Duration {
        self.cpu / self.wall.len() as u32
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn id(tag: &str, n: usize) -> String {
    format!("b{tag}{:05}{:04x}{:053}", n, std::process::id() & 0xffff, 0)
}

type Cycle = fn(&Network, &str) -> Result<(), String>;
type Phase = fn(&Network, &str) -> Result<(), String>;

fn new_attach(net: &Network, id: &str) -> Result<(), String> {
    net.attach(id, &[]).map(|_| ()).map_err(|e| e.to_string())
}

fn new_detach(net: &Network, id: &str) -> Result<(), String> {
    net.detach(id, &[]).map_err(|e| e.to_string())
}

/// `n` threads each running `f` on their own id at once; wall and CPU of the whole burst.
fn burst(
    net: &Network,
    f: Cycle,
    n: usize,
    tag: &str,
    round: usize,
    ns: &std::os::fd::OwnedFd,
) -> Stats {
    let c0 = cpu();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for i in 0..n {
            let id = id(tag, round * 1000 + i);
            s.spawn(move || {
                rustix::thread::move_into_link_name_space(
                    std::os::fd::AsFd::as_fd(ns),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .expect("setns");
                f(net, &id).expect("burst cycle");
            });
        }
    });
    Stats {
        wall: vec![t0.elapsed()],
        cpu: cpu() - c0,
    }
}

fn main() {
    let iters: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    // SAFETY: CLONE_NEWNET only moves this (main) thread into a fresh network namespace.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET) }.expect("unshare (root?)");
    let ns = rustix::fs::open(
        "/proc/thread-self/ns/net",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .expect("own netns");
    let dir = tempfile::tempdir().expect("tempdir");
    let net = Network::open_with(
        dir.path(),
        NetConfig {
            bridge: "gbb0".into(),
            subnet: std::net::Ipv4Addr::new(10, 78, 0, 0),
            prefix: 24,
        },
    )
    .expect("network");
    net.ensure_bridge().expect("bridge");

    let paths: [(&str, Cycle); 2] = [
        ("ip/nft exec (old)", old_cycle),
        ("netlink (new)", new_cycle),
    ];
    let phases: [(&str, Phase, Phase); 2] = [
        ("ip/nft exec (old)", old_attach, old_detach),
        ("netlink (new)", new_attach, new_detach),
    ];
    // [path][0 = attach, 1 = detach, 2 = both]
    let mut stats: [[Stats; 3]; 2] = Default::default();
    for i in 0..(iters + 10) {
        for (k, (_, attach, detach)) in phases.iter().enumerate() {
            let id = id(if k == 0 { "o" } else { "n" }, i);
            let c0 = cpu();
            let t0 = Instant::now();
            attach(&net, &id).expect("attach");
            let (c1, t1) = (cpu(), Instant::now());
            detach(&net, &id).expect("detach");
            let (c2, t2) = (cpu(), Instant::now());
            if i >= 10 {
                for (j, (w, c)) in [(t1 - t0, c1 - c0), (t2 - t1, c2 - c1), (t2 - t0, c2 - c0)]
                    .into_iter()
                    .enumerate()
                {
                    stats[k][j].wall.push(w);
                    stats[k][j].cpu += c;
                }
            }
        }
    }
    println!("one container, no ports, {iters} iterations per path (interleaved):");
    println!(
        "{:<8} {:<20} {:>9} {:>9} {:>9} {:>12}",
        "step", "path", "p50 ms", "p99 ms", "mean ms", "CPU ms/op"
    );
    for (j, step) in ["attach", "detach", "both"].iter().enumerate() {
        for (k, (name, _, _)) in phases.iter().enumerate() {
            let s = &stats[k][j];
            println!(
                "{:<8} {:<20} {:>9.2} {:>9.2} {:>9.2} {:>12.2}",
                step,
                name,
                ms(s.pct(0.5)),
                ms(s.pct(0.99)),
                ms(s.mean()),
                ms(s.cpu_per_op())
            );
        }
        let (o, n) = (&stats[0][j], &stats[1][j]);
        println!(
            "{:<8} ratio old/new: p50 {:.1}x, p99 {:.1}x, CPU {:.1}x",
            step,
            o.pct(0.5).as_secs_f64() / n.pct(0.5).as_secs_f64(),
            o.pct(0.99).as_secs_f64() / n.pct(0.99).as_secs_f64(),
            o.cpu.as_secs_f64() / n.cpu.as_secs_f64()
        );
    }

    let rounds = 5;
    let mut b: [Stats; 2] = Default::default();
    for r in 0..rounds {
        for (k, (_, f)) in paths.iter().enumerate() {
            let s = burst(&net, *f, 20, if k == 0 { "p" } else { "q" }, r, &ns);
            b[k].wall.extend(s.wall);
            b[k].cpu += s.cpu;
        }
    }
    print_bursts(
        &format!("20 concurrent attach+detach (threads), {rounds} rounds each"),
        &b,
    );

    // 100 pods arriving at once: attach only (detach afterwards, not timed).
    let attaches: [(&str, Phase, Phase); 2] = [
        ("ip/nft exec (old)", old_attach, old_detach),
        ("netlink (new)", new_attach, new_detach),
    ];
    let rounds = 3;
    let mut b: [Stats; 2] = Default::default();
    for r in 0..rounds {
        for (k, (_, attach, detach)) in attaches.iter().enumerate() {
            let tag = if k == 0 { "x" } else { "y" };
            let s = burst(&net, *attach, 100, tag, r, &ns);
            b[k].wall.extend(s.wall);
            b[k].cpu += s.cpu;
            burst(&net, *detach, 100, tag, r, &ns);
        }
    }
    print_bursts(
        &format!("100 concurrent attaches (threads), {rounds} rounds each"),
        &b,
    );
    let _ = net.remove_bridge();
}

fn print_bursts(title: &str, b: &[Stats; 2]) {
    println!("\n{title}:");
    println!(
        "{:<20} {:>12} {:>14}",
        "path", "wall ms p50", "CPU ms/burst"
    );
    for (k, name) in ["ip/nft exec (old)", "netlink (new)"].iter().enumerate() {
        println!(
            "{:<20} {:>12.1} {:>14.1}",
            name,
            ms(b[k].pct(0.5)),
            ms(b[k].cpu_per_op())
        );
    }
    println!(
        "ratio old/new: wall {:.1}x, CPU {:.1}x",
        b[0].pct(0.5).as_secs_f64() / b[1].pct(0.5).as_secs_f64(),
        b[0].cpu.as_secs_f64() / b[1].cpu.as_secs_f64()
    );
}
