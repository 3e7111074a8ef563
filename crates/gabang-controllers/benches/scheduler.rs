//! Scheduler throughput: 1,000 fake nodes, 10,000 pending pods (from 100 ReplicaSets).
//! Anchor: Kubernetes' scheduler_perf floor of 680 pods/s; target ≥ 1,000 pods/s.

use std::time::Instant;

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
}
