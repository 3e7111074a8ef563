//! Pod startup latency as a watcher sees it (for `benches/agent.sh`): watches the pods of
//! `default` until `N` pods were seen Ready, then prints per-pod (bound → Ready) latency
//! percentiles. Times are when the watch events arrive here (millisecond resolution), not the
//! status timestamps (second resolution).
//!
//!   pod_latency DATA_DIR N     (DATA_DIR = ROOT/cluster: ca.crt, admin.token, API address
//!                               from admin.kubeconfig)

use std::collections::HashMap;
use std::time::Instant;

use gabang_controllers::http::{HttpCluster, WatchEvent};
use k8s_openapi::api::core::v1::Pod;

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: pod_latency DATA_DIR N");
        std::process::exit(2);
    }
    let dir = std::path::PathBuf::from(&args[1]);
    let want: usize = args[2].parse().unwrap_or(0);
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| {
            eprintln!("{}: {e}", dir.join(f).display());
            std::process::exit(1)
        })
    };
    let kc = read("admin.kubeconfig");
    let addr = kc
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: https://"))
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| {
            eprintln!("no server in admin.kubeconfig");
            std::process::exit(1)
        });
    let c =
        HttpCluster::new(addr, &read("ca.crt"), read("admin.token").trim()).unwrap_or_else(|e| {
            eprintln!("{e}");
            std::process::exit(1)
        });
    let start = Instant::now();
    let mut seen: HashMap<String, f64> = HashMap::new();
    let mut bound: HashMap<String, f64> = HashMap::new();
    let mut ready_at: HashMap<String, f64> = HashMap::new();
    println!("watching");
    let mut rv = "0".to_string();
    while ready_at.len() < want {
        let from = rv.clone();
        let r = c.watch_in::<Pod>("default", "", &from, 600, |ev| {
            let p = match ev {
                WatchEvent::Added(p) | WatchEvent::Modified(p) => p,
                WatchEvent::Bookmark(v) => {
                    rv = v;
                    return true;
                }
                _ => return true,
            };
            if let Some(v) = &p.metadata.resource_version {
                rv = v.clone();
            }
            let now = start.elapsed().as_secs_f64();
            let name = p.metadata.name.clone().unwrap_or_default();
            seen.entry(name.clone()).or_insert(now);
            if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                bound.entry(name.clone()).or_insert(now);
            }
            if ready(&p) {
                ready_at.entry(name).or_insert(now);
            }
            ready_at.len() < want
        });
        if let Err(e) = r {
            eprintln!("watch: {e}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    // Per pod, when the watch first saw it (created), bound and Ready (seconds since the watch
    // began), for a look at how the burst is spread; the last line is the summary.
    let mut rows: Vec<(&String, f64, f64)> = ready_at
        .iter()
        .filter_map(|(n, r)| bound.get(n).map(|b| (n, *b, *r)))
        .collect();
    rows.sort_by(|a, b| a.1.total_cmp(&b.1));
    for (n, b, r) in &rows {
        let c = seen.get(*n).copied().unwrap_or(*b);
        println!("# {n} created {c:.3} bound {b:.3} ready {r:.3}");
    }
    let mut lat: Vec<f64> = rows.iter().map(|(_, b, r)| r - b).collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| lat[((p * (lat.len() - 1) as f64).round() as usize).min(lat.len() - 1)];
    println!("{:.3} {:.3} {:.3} {}", q(0.5), q(0.99), q(1.0), lat.len());
}
