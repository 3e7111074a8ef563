//! Benchmark (timing lives only here): `gabang run --rm IMG true` side by side with
//! `runc run` on a prepared bundle of the same busybox rootfs and with `docker run --rm` of
//! the same rootfs imported into dockerd (when dockerd answers), interleaved in one run;
//! then 50 detached containers started and removed (gabang, then docker); then the shim's
//! memory per running container.
//! Run: `cargo bench --bench containers` (as root; needs Debian `runc` and `busybox-static`,
//! and a running dockerd for the docker columns: `scripts/start-dockerd.sh`).

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
    // docker: the same rootfs, imported (never pulled: no registry is reachable here).
    let docker = Command::new("docker")
        .args(["info"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        && Command::new("sh")
            .arg("-c")
            .arg(format!(
                "tar -C {} -c . | docker import - gbbench-bb:1",
                rootfs.display()
            ))
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !docker {
        println!(
            "(dockerd not answering: no docker columns; start it with scripts/start-dockerd.sh)"
        );
    }
    let mut gab_none = Vec::new();
    let mut gab_bridge = Vec::new();
    let mut runc = Vec::new();
    let mut dock = Vec::new();
    // Interleaved, in a fresh random order every iteration: what runs right after docker
    // pays for dockerd's teardown still going on in the background, so no tool may always
    // come after it.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..iters {
        let mut order = [0usize, 1, 2, 3];
        for k in (1..4).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(k, (seed % (k as u64 + 1)) as usize);
        }
        for k in order {
            match k {
                0 => gab_none.push(timed(&mut g(&[
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "bb:1",
                    "true",
                ]))),
                1 => gab_bridge.push(timed(&mut g(&["run", "--rm", "bb:1", "true"]))),
                2 => {
                    let id = format!("gbbench-{}-{i}", std::process::id());
                    runc.push(timed(
                        Command::new("runc")
                            .args(["run", "--bundle"])
                            .arg(&bundle)
                            .arg(&id),
                    ));
                }
                _ if docker => dock.push(timed(Command::new("docker").args([
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "gbbench-bb:1",
                    "true",
                ]))),
                _ => {}
            }
        }
    }
    let (rp50, rmean, rmin) = stats(runc);
    let dp50 = (!dock.is_empty()).then(|| stats(dock.clone()).0);
    println!(
        "run --rm true, {iters} iterations each (ms)       p50      mean     min   p50/runc  p50/docker"
    );
    for (name, v) in [
        ("gabang --network none", gab_none),
        ("gabang --network bridge", gab_bridge),
    ] {
        let (p50, mean, min) = stats(v);
        println!(
            "{name:<40} {p50:>8.1} {mean:>8.1} {min:>7.1}   {:>8.2}  {}",
            p50 / rp50,
            dp50.map_or("-".into(), |d| format!("{:>10.3}", p50 / d))
        );
    }
    println!(
        "{:<40} {rp50:>8.1} {rmean:>8.1} {rmin:>7.1}   {:>8.2}",
        "runc run (prepared bundle)", 1.0
    );
    if !dock.is_empty() {
        let (p50, mean, min) = stats(dock);
        println!(
            "{:<40} {p50:>8.1} {mean:>8.1} {min:>7.1}   {:>8.2}",
            "docker run --rm --network none",
            p50 / rp50
        );
    }

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
    if docker {
        let t = Instant::now();
        let mut ids = Vec::new();
        for _ in 0..50 {
            let out = Command::new("docker")
                .args([
                    "run",
                    "-d",
                    "--network",
                    "none",
                    "gbbench-bb:1",
                    "sleep",
                    "1000",
                ])
                .output()
                .unwrap();
            assert!(out.status.success());
            ids.push(String::from_utf8(out.stdout).unwrap().trim().to_owned());
        }
        let dstarted = t.elapsed();
        let t2 = Instant::now();
        timed(Command::new("docker").args(["rm", "-f"]).args(&ids));
        let dremoved = t2.elapsed();
        let total = (dstarted + dremoved).as_secs_f64() * 1000.0;
        println!(
            "50 detached, docker: start {:.0} ms, rm -f {:.0} ms, total {total:.0} ms; gabang/docker {:.3}",
            dstarted.as_secs_f64() * 1000.0,
            dremoved.as_secs_f64() * 1000.0,
            (started + removed).as_secs_f64() * 1000.0 / total
        );
        let _ = Command::new("docker")
            .args(["rmi", "gbbench-bb:1"])
            .stdout(Stdio::null())
            .status();
    }
    let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64 / 1024.0;
    println!(
        "shim per running container: VmRSS {:.2} MiB (mostly shared binary pages), RssAnon {:.2} MiB",
        avg(&rss),
        avg(&anon)
    );
}
