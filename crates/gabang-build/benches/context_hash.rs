//! Benchmark: hashing a 256 MiB build context cold, then warm through the
//! persisted stat cache, and a no-op rebuild of `COPY . /app` + RUN through
//! `build()` with an executor that does nothing — side by side with anchors
//! measured in the same run: `sha256sum` over the same files, and
//! `tar -c | sha256sum` (what the classic docker client does to send a context).
//!
//! Run: `cargo bench -p gabang-build --bench context_hash`

use gabang_build::cache::CacheIndex;
use gabang_build::context::{BuildContext, StatCache};
use gabang_build::plan::*;
use gabang_build::{build, parse};
use std::process::Command;
use std::time::{Duration, Instant};

struct Nop;

impl StepExecutor for Nop {
    fn resolve_image(&self, r: &str, _p: &Platform) -> Result<BaseImage, ExecError> {
        Ok(BaseImage {
            id: format!("sha256:{r}"),
            config: Default::default(),
            extra: Default::default(),
            state: StateId("img".into()),
        })
    }
    fn scratch(&self) -> Result<StateId, ExecError> {
        Ok(StateId("scratch".into()))
    }
    fn run(&self, req: &RunRequest) -> Result<StepOutput, ExecError> {
        Ok(StepOutput {
            state: StateId(req.cache_key.clone()),
            layer: None,
        })
    }
    fn copy(&self, req: &CopyRequest) -> Result<StepOutput, ExecError> {
        Ok(StepOutput {
            state: StateId(req.cache_key.clone()),
            layer: None,
        })
    }
    fn mkdir_workdir(
        &self,
        _s: &StateId,
        _p: &str,
        _u: Option<&str>,
    ) -> Result<Option<StepOutput>, ExecError> {
        Ok(None)
    }
    fn has_state(&self, _s: &StateId) -> bool {
        true
    }
}

fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let r = f();
    (t.elapsed(), r)
}

fn sh(cmd: &str) -> Duration {
    let (d, out) = time(|| Command::new("sh").arg("-c").arg(cmd).output());
    match out {
        Ok(o) if o.status.success() => d,
        Ok(o) => panic!("{cmd}: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => panic!("{cmd}: {e}"),
    }
}

fn main() {
    let ctx = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    // 256 × 1 MiB files + 2000 small files
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    for i in 0..256 {
        for b in block.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let dir = ctx.path().join(format!("big/{}", i % 16));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(format!("f{i}.bin")), &block).expect("write");
    }
    for i in 0..2000 {
        let dir = ctx.path().join(format!("small/{}", i % 40));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join(format!("s{i}.txt")),
            format!("small file {i}\n").repeat(20),
        )
        .expect("write");
    }
    // let files age past the stat cache's racy window
    std::thread::sleep(Duration::from_millis(1100));
    let root = ctx.path().display().to_string();

    let anchor_sha = sh(&format!(
        "cd {root} && find . -type f -print0 | xargs -0 sha256sum > /dev/null"
    ));
    let anchor_tar = sh(&format!("cd {root} && tar -cf - . | sha256sum > /dev/null"));

    let cache_path = state.path().join("stat.json");
    let (cold, stats_cold) = time(|| {
        let mut c = BuildContext::open(ctx.path(), StatCache::load(&cache_path)).expect("open");
        let src = c.resolve_sources(&[".".into()]).expect("resolve");
        c.hash_sources(&src).expect("hash");
        c.save_stat_cache().expect("save");
        c.stats()
    });
    let (warm, stats_warm) = time(|| {
        let mut c = BuildContext::open(ctx.path(), StatCache::load(&cache_path)).expect("open");
        let src = c.resolve_sources(&[".".into()]).expect("resolve");
        c.hash_sources(&src).expect("hash");
        c.stats()
    });

    let df = parse(
        "Dockerfile",
        "FROM busybox\nCOPY . /app/\nRUN make\nRUN make install\nENV A=1\nCMD [\"/app/run\"]\n",
    )
    .expect("parse");
    let opts = BuildOptions::new("bench");
    let stat2 = state.path().join("stat2.json");
    let idx = state.path().join("cache.json");
    let run_build = || {
        let mut c = BuildContext::open(ctx.path(), StatCache::load(&stat2)).expect("open");
        let mut cache = CacheIndex::load(&idx);
        build(&df, &opts, &mut c, &mut cache, &Nop).expect("build")
    };
    let (first, _) = time(run_build);
    let (noop, r) = time(run_build);
    assert!(
        r.steps.iter().filter(|s| s.miss.is_some()).count() == 0,
        "no-op rebuild must hit the cache"
    );

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("context: 256 MiB in 256 files + 2000 small files");
    println!(
        "{:<48} {:>10} {:>12} {:>12}",
        "what", "ms", "vs sha256sum", "vs tar|sha"
    );
    for (name, d) in [
        ("anchor: find | xargs sha256sum", anchor_sha),
        ("anchor: tar -c . | sha256sum (docker client)", anchor_tar),
        ("gabang: hash context, cold (empty stat cache)", cold),
        ("gabang: hash context, warm (stat cache)", warm),
        ("gabang: build() first (COPY hashes context)", first),
        ("gabang: build() no-op rebuild, all cached", noop),
    ] {
        println!(
            "{:<48} {:>10.1} {:>12.3} {:>12.3}",
            name,
            ms(d),
            d.as_secs_f64() / anchor_sha.as_secs_f64(),
            d.as_secs_f64() / anchor_tar.as_secs_f64()
        );
    }
    println!(
        "cold: {} files / {} MiB hashed; warm: {} files / {} bytes hashed, {} stat-cache hits",
        stats_cold.files_hashed,
        stats_cold.bytes_hashed >> 20,
        stats_warm.files_hashed,
        stats_warm.bytes_hashed,
        stats_warm.cache_hits
    );
}
