//! Push/pull throughput: gabang (client + server) vs skopeo against CNCF Distribution,
//! same machine, same run, same images; and bytes on disk for two images sharing 90% of
//! their layers. Run: `cargo bench -p gabang-registry --bench push_pull`
//! (needs skopeo and docker-registry; `BENCH_MB=64` shrinks the big layer).

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use gabang_content::archive::{save_to_file, SaveFormat, SaveItem};
use gabang_content::{ImageRef, Store};
use gabang_registry::client::{self, Options};
use gabang_registry::registry::Config;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn skopeo(args: &[&str]) {
    let o = Command::new("skopeo").args(args).output().unwrap();
    assert!(
        o.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn du(p: &Path) -> u64 {
    let o = Command::new("du").args(["-sb"]).arg(p).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0)
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

fn main() {
    let mb: usize = std::env::var("BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let work = tempfile::tempdir().unwrap();
    let src = Store::open(&work.path().join("src")).unwrap();
    eprintln!("building images…");
    let big = make_image(
        &src,
        "local/big:1",
        &[tar_with("blob", &noise(1, mb << 20))],
    );
    let layers: Vec<Vec<u8>> = (0..20)
        .map(|i| tar_with(&format!("l{i}"), &noise(100 + i, 4 << 20)))
        .collect();
    let many = make_image(&src, "local/many:1", &layers);
    let images = [("big", &big, mb as f64), ("many", &many, 20.0 * 4.0)];
    // skopeo's source: an OCI layout directory (no archive unpacking inside the timing).
    let layout = work.path().join("layout");
    for (name, img, _) in &images {
        let a = work.path().join(format!("{name}.tar"));
        save_to_file(
            &src,
            &[SaveItem {
                image: (*img).clone(),
                names: vec![format!("local/{name}:1")],
            }],
            SaveFormat::Oci,
            &a,
        )
        .unwrap();
        skopeo(&[
            "copy",
            "-q",
            &format!("oci-archive:{}", a.display()),
            &format!("oci:{}:{name}", layout.display()),
        ]);
        std::fs::remove_file(&a).unwrap();
    }
    let opts = Options {
        docker_config: Some(work.path().join("cfg.json")),
        ..Default::default()
    };
    println!(
        "medians of {} runs each, interleaved",
        std::env::var("BENCH_REPS").unwrap_or_else(|_| "3".into())
    );
    println!("| image | op | gabang (s) | skopeo+distribution (s) | gabang MiB/s | skopeo MiB/s | ratio |");
    println!("|---|---|---|---|---|---|---|");
    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    for (name, img, size_mb) in &images {
        let mut m: [Vec<f64>; 5] = Default::default();
        for rep in 0..reps {
            // gabang client → gabang server (fresh server root and destination store).
            let t = TestRegistry::start(Config::default());
            let dest = ImageRef::parse(&format!("{}/b/{name}:1", t.host())).unwrap();
            let s = Instant::now();
            client::push(&src, &format!("local/{name}:1"), &dest, &opts).unwrap();
            m[0].push(secs(s));
            let dst = Store::open(&work.path().join(format!("dst-{name}-{rep}"))).unwrap();
            let s = Instant::now();
            let f = client::fetch(&dst, &dest, &opts).unwrap();
            m[1].push(secs(s));
            let p = dst
                .add_manifest(&f.manifest, &f.media_type, std::slice::from_ref(&dest))
                .unwrap();
            m[2].push(secs(s));
            assert_eq!(p.config_digest, img.config_digest);
            drop(t);
            drop(dst);
            let _ = std::fs::remove_dir_all(work.path().join(format!("dst-{name}-{rep}")));
            // skopeo → CNCF Distribution (fresh registry and destination layout).
            let d = Distribution::start();
            let s = Instant::now();
            skopeo(&[
                "copy",
                "-q",
                "--dest-tls-verify=false",
                &format!("oci:{}:{name}", layout.display()),
                &format!("docker://{}/b/{name}:1", d.host),
            ]);
            m[3].push(secs(s));
            let out = work.path().join(format!("sk-{name}-{rep}"));
            let s = Instant::now();
            skopeo(&[
                "copy",
                "-q",
                "--src-tls-verify=false",
                &format!("docker://{}/b/{name}:1", d.host),
                &format!("oci:{}:{name}", out.display()),
            ]);
            m[4].push(secs(s));
            drop(d);
            let _ = std::fs::remove_dir_all(&out);
        }
        let med = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        let [mut a, mut b, mut c, mut d, mut e] = m;
        let (g_push, g_fetch, g_pull, s_push, s_pull) = (
            med(&mut a),
            med(&mut b),
            med(&mut c),
            med(&mut d),
            med(&mut e),
        );
        for (op, g, k) in [
            ("push", g_push, s_push),
            ("pull: blobs fetched + verified", g_fetch, s_pull),
            ("pull + unpack into snapshots", g_pull, s_pull),
        ] {
            println!(
                "| {name} ({size_mb:.0} MiB) | {op} | {g:.2} | {k:.2} | {:.0} | {:.0} | {:.2}x |",
                size_mb / g,
                size_mb / k,
                k / g
            );
        }
    }
    // Two images sharing 90% of their layers: 10 layers of 4 MiB, 9 shared.
    let shared: Vec<Vec<u8>> = (0..9)
        .map(|i| tar_with(&format!("s{i}"), &noise(500 + i, 4 << 20)))
        .collect();
    let mut a = shared.clone();
    a.push(tar_with("own", &noise(900, 4 << 20)));
    let mut b = shared.clone();
    b.push(tar_with("own", &noise(901, 4 << 20)));
    make_image(&src, "local/s-a:1", &a);
    make_image(&src, "local/s-b:1", &b);
    let t = TestRegistry::start(Config::default());
    for (l, r) in [("local/s-a:1", "share/a:1"), ("local/s-b:1", "share/b:1")] {
        client::push(
            &src,
            l,
            &ImageRef::parse(&format!("{}/{r}", t.host())).unwrap(),
            &opts,
        )
        .unwrap();
    }
    let g_bytes = du(&t.dir.path().join("content/blobs"));
    let d = Distribution::start();
    for (l, r) in [("s-a", "share/a:1"), ("s-b", "share/b:1")] {
        let _ = l;
        client::push(
            &src,
            &format!("local/{l}:1"),
            &ImageRef::parse(&format!("{}/{r}", d.host)).unwrap(),
            &opts,
        )
        .unwrap();
    }
    let d_bytes = du(&d.dir.path().join("data"));
    let layer_bytes: u64 = a
        .iter()
        .chain(b.iter().skip(9))
        .map(|l| l.len() as u64)
        .sum();
    println!();
    println!(
        "two images sharing 9 of 10 layers (2 x 40 MiB pushed, 44 MiB unique layer bytes = {layer_bytes}): gabang registry blobs on disk {g_bytes} bytes; CNCF Distribution {d_bytes} bytes"
    );
}
