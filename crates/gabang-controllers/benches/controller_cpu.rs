//! CPU time of the controller manager against the real in-process API server (HTTPS on
//! loopback, SQLite in a temp dir), side by side in one run: the watch-driven
//! `runtime::Manager` and the previous `polling::PollingManager` (a full LIST-everything pass
//! every 300 ms, as `gabang server` ran it; the anchor), the latter both with the kept-alive
//! HTTP client and with a new connection per request (as it shipped before).
//!
//! For each: a Deployment scaled 0 → 100 replicas on 3 fake nodes (fake agent on its own
//! thread) until all pods are Ready and the Deployment reports 100 available; then 10 s idle,
//! reported per minute. The manager's CPU is the sum over the threads it started (informers,
//! worker, its HTTP client's runtime), read from /proc/self/task/*/schedstat; the API
//! server's and the agent's threads are excluded.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use gabang_apiserver::{serve, ServerConfig, StoreSpec};
use gabang_controllers::cluster::{Cluster, ClusterError};
use gabang_controllers::common::pod_ready;
use gabang_controllers::fixtures::{pod, seed};
use gabang_controllers::http::HttpCluster;
use gabang_controllers::nodelifecycle::{Config as NodeConfig, SystemClock};
use gabang_controllers::polling::PollingManager;
use gabang_controllers::polling::{fake_agent_mark_pods, fake_agent_renew_leases};
use gabang_controllers::runtime::{Config, Manager};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::chrono::Utc;

const NODES: [&str; 3] = ["n1", "n2", "n3"];
const REPLICAS: i32 = 100;
const IDLE_SECS: u64 = 10;

fn tids() -> HashSet<u32> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn comm(tid: u32) -> String {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Nanoseconds on CPU of these threads (exited ones count 0).
fn cpu_ns(threads: &HashSet<u32>) -> u64 {
    threads
        .iter()
        .filter_map(|t| {
            std::fs::read_to_string(format!("/proc/self/task/{t}/schedstat"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

struct Result {
    rollout_s: f64,
    rollout_cpu_ms: f64,
    idle_cpu_ms_per_min: f64,
    requests: String,
}

fn deployment() -> Deployment {
    gabang_controllers::fixtures::deployment(
        "default",
        "web",
        0,
        pod("default", "x", "10m", "16Mi").spec,
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Watch,
    Polling,
    /// The polling loop with a new connection (TLS handshake) per request: as shipped before.
    PollingNoKeepAlive,
}

fn run(v: Variant) -> Result {
    let polling = v != Variant::Watch;
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("apiserver")
        .enable_all()
        .build()
        .unwrap();
    let handle = rt
        .block_on(serve(ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().join("pki"),
            store: StoreSpec::Url(format!(
                "sqlite://{}",
                dir.path().join("state.db").display()
            )),
        }))
        .unwrap();
    let client =
        || Arc::new(HttpCluster::new(handle.local_addr, &handle.ca_pem, &handle.token).unwrap());
    let c = client();
    seed(&*c, &NODES, "64", "256Gi", 200).unwrap();
    c.create(&deployment()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let agent = {
        let (c, stop) = (client(), stop.clone());
        std::thread::Builder::new()
            .name("agent".into())
            .spawn(move || {
                // Like a node agent: a lease heartbeat every 10 s, pod status promptly.
                let mut last_renew: Option<Instant> = None;
                while !stop.load(Ordering::Relaxed) {
                    if last_renew.is_none_or(|t| t.elapsed() >= StdDuration::from_secs(10)) {
                        let _ = fake_agent_renew_leases(c.as_ref(), &NODES, Utc::now());
                        last_renew = Some(Instant::now());
                    }
                    let _ = fake_agent_mark_pods(c.as_ref(), &NODES, Utc::now());
                    std::thread::sleep(StdDuration::from_millis(100));
                }
            })
            .unwrap()
    };
    // Everything started from here on, apart from the API server's threads, is the manager.
    let before = tids();
    let mc = if v == Variant::PollingNoKeepAlive {
        Arc::new(
            HttpCluster::new(handle.local_addr, &handle.ca_pem, &handle.token)
                .unwrap()
                .with_keep_alive(false),
        )
    } else {
        client()
    };
    let stats = {
        let mc = mc.clone();
        move || mc.stats()
    };
    let mgr_stop = Arc::new(AtomicBool::new(false));
    let mgr: Box<dyn FnOnce()> = if polling {
        let (mc, s) = (mc.clone(), mgr_stop.clone());
        let t = std::thread::Builder::new()
            .name("ctrl-polling".into())
            .spawn(move || {
                let mut m = PollingManager::new(mc, Arc::new(SystemClock), NodeConfig::default());
                while !s.load(Ordering::Relaxed) {
                    let _ = m.sync();
                    std::thread::sleep(StdDuration::from_millis(300));
                }
            })
            .unwrap();
        let s = mgr_stop.clone();
        Box::new(move || {
            s.store(true, Ordering::Relaxed);
            let _ = t.join();
        })
    } else {
        let h = Manager::new(mc.clone(), Arc::new(SystemClock), Config::default())
            .spawn()
            .unwrap();
        Box::new(move || h.stop())
    };
    std::thread::sleep(StdDuration::from_millis(300));
    let mine = || -> HashSet<u32> {
        tids()
            .difference(&before)
            .copied()
            .filter(|t| {
                let n = comm(*t);
                !(n == "apiserver" || n == "agent" || n.starts_with("store-"))
            })
            .collect()
    };
    // Scale 0 -> 100.
    let t0 = Instant::now();
    let cpu0 = cpu_ns(&mine());
    let q0 = stats();
    loop {
        let mut d: Deployment = c.get("default", "web").unwrap().unwrap();
        d.spec.as_mut().unwrap().replicas = Some(REPLICAS);
        match c.update(&d) {
            Ok(_) => break,
            Err(ClusterError::Conflict { .. }) => continue,
            Err(e) => panic!("{e}"),
        }
    }
    loop {
        let pods: Vec<Pod> = c.list().unwrap();
        let ready = pods.iter().filter(|p| pod_ready(p)).count();
        let d: Deployment = c.get("default", "web").unwrap().unwrap();
        if ready == REPLICAS as usize
            && d.status.and_then(|s| s.available_replicas) == Some(REPLICAS)
        {
            break;
        }
        assert!(t0.elapsed() < StdDuration::from_secs(120), "rollout stuck");
        std::thread::sleep(StdDuration::from_millis(50));
    }
    let rollout_s = t0.elapsed().as_secs_f64();
    let cpu1 = cpu_ns(&mine());
    let q1 = stats();
    // Idle.
    std::thread::sleep(StdDuration::from_millis(500));
    let r0 = stats();
    let cpu2 = cpu_ns(&mine());
    let t2 = Instant::now();
    std::thread::sleep(StdDuration::from_secs(IDLE_SECS));
    let cpu3 = cpu_ns(&mine());
    let idle_s = t2.elapsed().as_secs_f64();
    let r1 = stats();
    mgr();
    stop.store(true, Ordering::Relaxed);
    let _ = agent.join();
    rt.block_on(handle.shutdown());
    rt.shutdown_timeout(StdDuration::from_secs(2));
    Result {
        rollout_s,
        rollout_cpu_ms: (cpu1 - cpu0) as f64 / 1e6,
        idle_cpu_ms_per_min: (cpu3 - cpu2) as f64 / 1e6 / idle_s * 60.0,
        requests: format!(
            "rollout: {} LIST, {} GET, {} writes; idle {IDLE_SECS}s: {} LIST, {} GET, {} writes, {} watches opened",
            q1.lists - q0.lists,
            q1.gets - q0.gets,
            q1.writes - q0.writes,
            r1.lists - r0.lists,
            r1.gets - r0.gets,
            r1.writes - r0.writes,
            r1.watches - r0.watches
        ),
    }
}

fn main() {
    let new = run(Variant::Watch);
    let old = run(Variant::Polling);
    let before = run(Variant::PollingNoKeepAlive);
    for (what, r) in [
        ("watch-driven Manager", &new),
        ("polling, keep-alive", &old),
        ("polling as before", &before),
    ] {
        println!(
            "{what:>22}: 0 -> {REPLICAS} Ready in {:.2}s, manager CPU {:.0} ms; idle CPU {:.0} ms/min; {}",
            r.rollout_s, r.rollout_cpu_ms, r.idle_cpu_ms_per_min, r.requests
        );
    }
    for (what, r) in [
        ("polling, keep-alive", &old),
        ("polling as before", &before),
    ] {
        println!(
            "{what} / watch-driven: rollout CPU {:.1}x, idle CPU {:.0}x",
            r.rollout_cpu_ms / new.rollout_cpu_ms.max(0.001),
            r.idle_cpu_ms_per_min / new.idle_cpu_ms_per_min.max(0.001)
        );
    }
}
