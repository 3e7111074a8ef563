//! Embedded store vs etcd, side by side in one run, same machine, same disk, both
//! durable (the embedded store fdatasyncs its WAL before a write is acknowledged or
//! visible; etcd fdatasyncs its WAL before acknowledging).
//!
//! `cargo bench -p gabang-store --bench store` (set GABANG_BENCH_SECS to change the
//! seconds per write point, default 4). Prints a markdown table with ratios.

#[path = "../tests/support/etcd_server.rs"]
mod etcd_server;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gabang_store::{Backend, EtcdBackend, SqliteBackend, SqliteConfig};

struct WriteResult {
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

/// Latencies and wall time of one slice.
#[derive(Default)]
struct Slices {
    lat: Vec<Duration>,
    secs: f64,
}

impl Slices {
    fn add(&mut self, (lat, secs): (Vec<Duration>, f64)) {
        self.lat.extend(lat);
        self.secs += secs;
    }

    fn result(mut self) -> WriteResult {
        self.lat.sort();
        WriteResult {
            ops_per_sec: self.lat.len() as f64 / self.secs,
            p50: pct(&self.lat, 0.50),
            p99: pct(&self.lat, 0.99),
        }
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// One slice of `writers` concurrent writers creating new keys for `secs` seconds.
async fn writes(b: Arc<dyn Backend>, tag: &str, writers: usize, secs: f64) -> (Vec<Duration>, f64) {
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let value = vec![b'x'; 256];
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let b = b.clone();
        let value = value.clone();
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            while Instant::now() < stop {
                let key = format!("/bench/{tag}/{w}/{n}");
                let t = Instant::now();
                b.create(&key, value.clone(), None)
                    .await
                    .expect("bench write");
                lat.push(t.elapsed());
                n += 1;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("writer task"));
    }
    (all, start.elapsed().as_secs_f64())
}

/// 100 watchers on one prefix; one writer; latency from the start of the write call
/// to the event's arrival at each watcher.
async fn watch_latency(b: Arc<dyn Backend>, writes: usize) -> (Duration, Duration) {
    let watchers = 100;
    let from = b.current_revision().await.expect("revision");
    let starts: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; writes]));
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let mut w = b.watch("/watch/", from).await.expect("watch");
        let starts = starts.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while lat.len() < writes {
                let ev = w.next().await.expect("watch open").expect("event");
                let now = Instant::now();
                let i: usize = ev.kv.key.rsplit('/').next().unwrap().parse().unwrap();
                let t = starts.lock().unwrap()[i].expect("start recorded");
                lat.push(now - t);
            }
            lat
        }));
    }
    for i in 0..writes {
        starts.lock().unwrap()[i] = Some(Instant::now());
        b.create(&format!("/watch/{i}"), vec![b'w'; 256], None)
            .await
            .expect("write");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("watcher"));
    }
    all.sort();
    (pct(&all, 0.50), pct(&all, 0.99))
}

const SLICES: usize = 8;

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let secs: f64 = std::env::var("GABANG_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.db");
        let sqlite: Arc<dyn Backend> =
            Arc::new(SqliteBackend::open(&path, SqliteConfig::default()).expect("open sqlite"));
        let server = etcd_server::EtcdServer::start().await;
        let etcd: Arc<dyn Backend> = Arc::new(
            EtcdBackend::connect(&[server.endpoint()])
                .await
                .expect("connect etcd"),
        );
        println!("durable writes (256-byte values, {secs} s per point), embedded = SQLite WAL + fdatasync per commit + group commit, etcd = Debian etcd 3.4 on loopback\n");
        println!("| writers | embedded writes/s | etcd writes/s | ratio | embedded p50 ms | etcd p50 ms | embedded p99 ms | etcd p99 ms |");
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
        // GABANG_BENCH_WRITERS=1,16 runs only those write points ("" none);
        // GABANG_BENCH_SKIP_WATCH=1 skips the watch part.
        let points: Vec<usize> = std::env::var("GABANG_BENCH_WRITERS")
            .ok()
            .map(|s| s.split(',').filter_map(|w| w.trim().parse().ok()).collect())
            .unwrap_or_else(|| vec![1, 16, 256]);
        let skip_watch = std::env::var_os("GABANG_BENCH_SKIP_WATCH").is_some();
        for writers in points {
            // Alternate short slices so both see the same disk weather (this machine
            // is shared, and fsync latency drifts).
            let (mut s, mut e) = (Slices::default(), Slices::default());
            for slice in 0..SLICES {
                let tag = format!("{writers}-{slice}");
                s.add(writes(sqlite.clone(), &format!("s{tag}"), writers, secs / SLICES as f64).await);
                e.add(writes(etcd.clone(), &format!("e{tag}"), writers, secs / SLICES as f64).await);
            }
            let (s, e) = (s.result(), e.result());
            println!(
                "| {writers} | {:.0} | {:.0} | {:.2}x | {} | {} | {} | {} |",
                s.ops_per_sec,
                e.ops_per_sec,
                s.ops_per_sec / e.ops_per_sec,
                ms(s.p50),
                ms(e.p50),
                ms(s.p99),
                ms(e.p99)
            );
        }
        if skip_watch {
            return;
        }
        println!("\nwatch delivery to 100 watchers (write call start -> event received), 300 writes\n");
        println!("| | embedded | etcd | ratio (etcd/embedded) |");
        println!("|---|---:|---:|---:|");
        let (s50, s99) = watch_latency(sqlite.clone(), 300).await;
        let (e50, e99) = watch_latency(etcd.clone(), 300).await;
        println!(
            "| p50 ms | {} | {} | {:.2}x |",
            ms(s50),
            ms(e50),
            e50.as_secs_f64() / s50.as_secs_f64()
        );
        println!(
            "| p99 ms | {} | {} | {:.2}x |",
            ms(s99),
            ms(e99),
            e99.as_secs_f64() / s99.as_secs_f64()
        );
        drop(etcd);
        drop(server);
    });
}
