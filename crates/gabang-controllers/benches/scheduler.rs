//! Scheduler throughput: 1,000 fake nodes, 10,000 pending pods (from 100 ReplicaSets).
//! Anchor: Kubernetes' scheduler_perf floor of 680 pods/s; target ≥ 1,000 pods/s.
//! Then a Deployment scaled 0 → 1,000 replicas over the in-memory cluster with the fake agent,
//! until all pods are bound and Ready (target ≤ 10 s wall time), by the watch-driven
//! `runtime::Manager` and, side by side, the previous list-everything `polling::PollingManager`.

use std::sync::Arc;
use std::time::Instant;

use gabang_controllers::cluster::{Cluster, MemCluster};
use gabang_controllers::fixtures::deployment;
use gabang_controllers::nodelifecycle::{Clock, Config, FakeClock};
use gabang_controllers::polling::PollingManager;
use gabang_controllers::runtime::{fake_agent_step, Manager, SyncReport};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::chrono::{Duration, TimeZone, Utc};

use gabang_controllers::fixtures::{node, owned_by, pod, with_labels, with_taint};
use gabang_controllers::scheduler::{Decision, Scheduler};

fn main() {
    let nodes: Vec<_> = (0..1000)
        .map(|i| {
            let n = with_labels(
                node(&format!("node-{i:04}"), "32", "128Gi", 110),
                &[("zone", ["a", "b", "c"][i % 3])],
            );
            if i % 10 == 0 {
                with_taint(n, "dedicated", "infra", "NoSchedule")
            } else {
                n
            }
        })
        .collect();
    let pods: Vec<_> = (0..10_000)
        .map(|i| {
            let rs = i % 100;
            owned_by(
                pod("bench", &format!("p-{i}"), "100m", "128Mi"),
                "ReplicaSet",
                &format!("rs-{rs}"),
                &format!("uid-rs-{rs}"),
            )
        })
        .collect();
    let t0 = Instant::now();
    let mut s = Scheduler::new(&nodes, &[]);
    let setup = t0.elapsed();
    let t1 = Instant::now();
    let mut bound = 0usize;
    for p in &pods {
        if let Decision::Bind { .. } = s.schedule(p) {
            bound += 1;
        }
    }
    let el = t1.elapsed();
    let rate = bound as f64 / el.as_secs_f64();
    println!(
        "scheduler: {bound}/{} pods bound on {} nodes in {:.3}s (+{:.1} ms node setup)",
        pods.len(),
        nodes.len(),
        el.as_secs_f64(),
        setup.as_secs_f64() * 1e3
    );
    println!("throughput: {rate:.0} pods/s; anchor kubernetes scheduler_perf floor 680 pods/s -> {:.1}x; target 1000 pods/s -> {:.1}x", rate / 680.0, rate / 1000.0);
    let max = s.nodes().iter().map(|n| n.pods).max().unwrap_or(0);
    let min = s
        .nodes()
        .iter()
        .filter(|n| n.taints.is_empty())
        .map(|n| n.pods)
        .min()
        .unwrap_or(0);
    println!("spread: untainted nodes hold {min}..={max} pods each");
    let new = scale_to_1000("watch-driven Manager", |c, clock| {
        let mut m = Manager::new(c, clock, Config::default());
        Box::new(move || m.sync().unwrap())
    });
    let old = scale_to_1000("polling PollingManager (anchor)", |c, clock| {
        let mut m = PollingManager::new(c, clock, Config::default());
        Box::new(move || m.sync().unwrap())
    });
    println!(
        "0 -> 1000: watch-driven {new:.2}s vs polling {old:.2}s -> {:.2}x",
        old / new
    );
}

type Step = Box<dyn FnMut() -> SyncReport>;

fn scale_to_1000(what: &str, make: impl Fn(Arc<MemCluster>, Arc<FakeClock>) -> Step) -> f64 {
    let clock = Arc::new(FakeClock::new(Utc.timestamp_opt(1_700_000_000, 0).unwrap()));
    let c = Arc::new(MemCluster::new(clock.clone()));
    let names: Vec<String> = (0..20).map(|i| format!("node-{i:02}")).collect();
    for n in &names {
        c.create(&node(n, "64", "256Gi", 110)).unwrap();
    }
    let live: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut step = make(c.clone(), clock.clone());
    let spec = pod("bench", "x", "10m", "16Mi").spec;
    c.create(&deployment("bench", "web", 0, spec)).unwrap();
    step();
    let t0 = Instant::now();
    let mut d: Deployment = c.get("bench", "web").unwrap().unwrap();
    d.spec.as_mut().unwrap().replicas = Some(1000);
    c.update(&d).unwrap();
    let mut passes = 0;
    loop {
        passes += 1;
        clock.advance(Duration::milliseconds(200));
        step();
        fake_agent_step(c.as_ref(), &live, clock.now()).unwrap();
        let d: Deployment = c.get("bench", "web").unwrap().unwrap();
        let pods = c.list::<Pod>().unwrap();
        let bound_ready = pods
            .iter()
            .filter(|p| {
                p.spec.as_ref().unwrap().node_name.is_some()
                    && p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        if bound_ready == 1000 && d.status.and_then(|s| s.ready_replicas) == Some(1000) {
            break;
        }
        assert!(passes < 200, "scale-up did not finish");
    }
    let el = t0.elapsed().as_secs_f64();
    println!("{what}: deployment 0 -> 1000 replicas bound and Ready (20 nodes, in-memory cluster, fake agent): {el:.2}s in {passes} passes; target 10s -> {:.1}x headroom", 10.0 / el);
    el
}
