//! Pod start latency: `sync` of a new 1-container busybox pod until its status says Running
//! and Ready,
//! p50/p99 over N pods, side by side (interleaved) with the runtime alone
//! (`gabang run -d --network bridge busybox sleep 3600`: create + start on a bridge) on the
//! same root in the same run. As root:
//!
//! ```text
//! cargo build --release -p gabang-agent --bins --examples
//! target/release/examples/pod_start [N=50]
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use gabang_runtime::{Attach, CreateRequest, NetworkMode, RunOptions, Runtime, RuntimeConfig};

fn pct(v: &[Duration], p: f64) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    let i = ((s.len() as f64 - 1.0) * p).round() as usize;
    s[i.min(s.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    let node = common::Node::new();
    // The runtime alone, on the same root, with its own bridge and subnet (so the bench does
    // not touch the host's default `gabang0`).
    let net_dir = node.cfg.root.join("net");
    std::fs::create_dir_all(&net_dir).unwrap();
    let third = node.cfg.pod_cidr.0.octets()[2].wrapping_add(1);
    let bridge = format!("gbr{}", &node.cfg.bridge[3..]);
    std::fs::write(
        net_dir.join("config.json"),
        serde_json::to_vec(&gabang_net::NetConfig {
            bridge: bridge.clone(),
            subnet: std::net::Ipv4Addr::new(10, 245, third, 0),
            prefix: 24,
        })
        .unwrap(),
    )
    .unwrap();
    let rt = Runtime::new(RuntimeConfig {
        root: node.cfg.root.clone(),
        shim_exe: common::shim_exe(),
        shim_prefix_args: vec![],
    })
    .unwrap();
    let store = gabang_content::Store::open(&node.cfg.root).unwrap();
    let image = store.resolve_image(common::IMAGE).unwrap();
    let lower = store.snapshot_dirs(&image).unwrap();

    let mut pods = Vec::new();
    let mut pod_times = Vec::new();
    let mut run_ids = Vec::new();
    let mut run_times = Vec::new();
    for i in 0..n {
        // The pod.
        let p = common::pod(
            &format!("bench-{i}"),
            serde_json::json!({"terminationGracePeriodSeconds": 0,
                "containers": [{"name": "c", "image": common::IMAGE, "command": ["sleep", "3600"]}]}),
        );
        let t = Instant::now();
        loop {
            let out = node.rt.sync(&p, &node.refs).unwrap();
            if common::phase(&out) == "Running" && common::condition(&out, "Ready") == "True" {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        pod_times.push(t.elapsed());
        pods.push(common::uid(&p));
        // The runtime alone.
        let req = CreateRequest {
            image: common::IMAGE.into(),
            image_id: image.id.clone(),
            lower_dirs: lower.clone(),
            image_config: image.config.clone(),
            options: RunOptions {
                cmd: vec!["sleep".into(), "3600".into()],
                network: NetworkMode::Bridge,
                ..Default::default()
            },
        };
        let t = Instant::now();
        let (id, _) = rt.run(req, Attach::Detached).unwrap();
        run_times.push(t.elapsed());
        run_ids.push(id);
    }
    let row = |name: &str, v: &[Duration]| {
        println!(
            "{name:<44} p50 {:>7.1} ms   p99 {:>7.1} ms",
            ms(pct(v, 0.5)),
            ms(pct(v, 0.99))
        );
    };
    println!("{n} pods / containers, interleaved, one at a time:");
    row("pod sync → Running+Ready (PodRuntime)", &pod_times);
    row("gabang run -d --network bridge (runtime)", &run_times);
    println!(
        "ratio pod/runtime: p50 {:.2}x  p99 {:.2}x",
        ms(pct(&pod_times, 0.5)) / ms(pct(&run_times, 0.5)),
        ms(pct(&pod_times, 0.99)) / ms(pct(&run_times, 0.99))
    );
    for id in run_ids {
        let _ = rt.remove(&id, true);
    }

    // Many pods at once, one worker thread per pod (as the agent runs them).
    let workers = 8;
    let batch: Vec<_> = (0..n)
        .map(|i| {
            common::pod(
                &format!("par-{i}"),
                serde_json::json!({"terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "c", "image": common::IMAGE, "command": ["sleep", "3600"]}]}),
            )
        })
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let t = Instant::now();
    let par_times: Vec<Duration> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut v = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let Some(p) = batch.get(i) else { break v };
                        let t = Instant::now();
                        loop {
                            let out = node.rt.sync(p, &node.refs).unwrap();
                            if common::phase(&out) == "Running"
                                && common::condition(&out, "Ready") == "True"
                            {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        v.push(t.elapsed());
                    }
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let wall = t.elapsed();
    println!(
        "{n} pods by {workers} workers at once: all Running+Ready in {:.2} s ({:.1} pods/s)",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64()
    );
    row("  per pod sync → Running+Ready, concurrent", &par_times);
    pods.extend(batch.iter().map(common::uid));
    let _ = gabang_net::Network::open(&net_dir).and_then(|n| n.remove_bridge());
    let t = Instant::now();
    for uid in &pods {
        node.rt.terminate(uid, Duration::ZERO).unwrap();
    }
    println!(
        "terminate (grace 0): {:.1} ms per pod",
        ms(t.elapsed()) / pods.len() as f64
    );
}
