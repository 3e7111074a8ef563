//! Benchmark (timing lives only here): `gabang run --rm IMG true` side by side with
//! `runc run` on a prepared bundle of the same busybox rootfs, in the same run; then 50
//! detached containers started and removed; then the shim's memory per running container.
//! Run: `cargo bench --bench containers` (as root; needs Debian `runc` and `busybox-static`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn busybox_rootfs(dir: &Path) {
    for d in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/usr/bin/busybox", dir.join("bin/busybox")).unwrap();
    for app in ["sh", "true", "sleep", "echo"] {
        let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(app));
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
}

fn stats(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64;
    (ms(v[v.len() / 2]), mean, ms(v[0]))
}

fn timed(cmd: &mut Command) -> Duration {
    let t = Instant::now();
    let st = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .status()
        .unwrap();
    let d = t.elapsed();
    assert!(st.success(), "{cmd:?} failed");
    d
}

fn main() {
    let gabang = env!("CARGO_BIN_EXE_gabang");
    let iters: usize = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let tmp = tempfile::Builder::new()
        .prefix("gbbench")
        .tempdir_in("/var/tmp")
        .unwrap();
    let root = tmp.path().join("root");
    let rootfs = tmp.path().join("bundle/rootfs");
    busybox_rootfs(&rootfs);
    let g = |args: &[&str]| {
        let mut c = Command::new(gabang);
        c.arg("--root").arg(&root).args(args);
        c
    };
    timed(&mut g(&["import", rootfs.to_str().unwrap(), "bb:1"]));
    // runc bundle: `runc spec`, then a non-terminal `true`.
    let bundle = tmp.path().join("bundle");
    assert!(Command::new("runc")
        .args(["spec"])
        .current_dir(&bundle)
        .status()
        .unwrap()
        .success());
    let cfg_path = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["true"]);
    spec["root"]["readonly"] = false.into();
    std::fs::write(&cfg_path, serde_json::to_vec(&spec).unwrap()).unwrap();

    // The bridge runs create gabang0 and the nft table in this netns: remove them after,
    // unless they were already there.
    let had_bridge = Command::new("ip")
        .args(["link", "show", "gabang0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    let mut gab_none = Vec::new();
    let mut gab_bridge = Vec::new();
    let mut runc = Vec::new();
    for i in 0..iters {
        gab_none.push(timed(&mut g(&[
            "run",
            "--rm",
            "--network",
            "none",
            "bb:1",
            "true",
        ])));
        gab_bridge.push(timed(&mut g(&["run", "--rm", "bb:1", "true"])));
        let id = format!("gbbench-{}-{i}", std::process::id());
        runc.push(timed(
            Command::new("runc")
                .args(["run", "--bundle"])
                .arg(&bundle)
                .arg(&id),
        ));
    }
    let (rp50, rmean, rmin) = stats(runc);
    println!("run --rm true, {iters} iterations each (ms)       p50      mean     min   p50/runc");
    for (name, v) in [
        ("gabang --network none", gab_none),
        ("gabang --network bridge", gab_bridge),
    ] {
        let (p50, mean, min) = stats(v);
        println!(
            "{name:<40} {p50:>8.1} {mean:>8.1} {min:>7.1}   {:.2}",
            p50 / rp50
        );
    }
    println!(
        "{:<40} {rp50:>8.1} {rmean:>8.1} {rmin:>7.1}   1.00",
        "runc run (prepared bundle)"
    );

    // 50 detached containers started, then removed.
    let t = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..50 {
        let out = g(&["run", "-d", "--network", "none", "bb:1", "sleep", "1000"])
            .output()
            .unwrap();
        assert!(out.status.success());
        ids.push(String::from_utf8(out.stdout).unwrap().trim().to_owned());
    }
    let started = t.elapsed();
    // Shim memory per running container (outside the container itself).
    let mut rss = Vec::new();
    let mut anon = Vec::new();
    for id in &ids {
        let st: serde_json::Value = serde_json::from_slice(
            &std::fs::read(root.join("containers").join(id).join("state.json")).unwrap(),
        )
        .unwrap();
        let pid = st["shim_pid"].as_i64().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        rss.push(kb("VmRSS:"));
        anon.push(kb("RssAnon:"));
    }
    let t2 = Instant::now();
    let mut args = vec!["rm", "-f"];
    args.extend(ids.iter().map(String::as_str));
    timed(&mut g(&args));
    let removed = t2.elapsed();
    println!(
        "50 detached: start {:.0} ms, rm -f {:.0} ms, total {:.0} ms",
        started.as_secs_f64() * 1000.0,
        removed.as_secs_f64() * 1000.0,
        (started + removed).as_secs_f64() * 1000.0
    );
    if !had_bridge {
        let _ = Command::new("ip").args(["link", "del", "gabang0"]).status();
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", "gabang"])
            .status();
    }
    let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64 / 1024.0;
    println!(
        "shim per running container: VmRSS {:.2} MiB (mostly shared binary pages), RssAnon {:.2} MiB",
        avg(&rss),
        avg(&anon)
    );
}
