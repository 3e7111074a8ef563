//! Decoding a protobuf Deployment body vs parsing the same object as JSON (what
//! the server does for JSON bodies: `serde_json::from_slice::<Value>`), side by
//! side in one run. `cargo bench -p gabang-kproto`.

use std::hint::black_box;
use std::time::Instant;

fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}
fn ld(tag: u32, b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(u64::from(tag) << 3 | 2, &mut out);
    varint(b.len() as u64, &mut out);
    out.extend_from_slice(b);
    out
}
fn s(tag: u32, v: &str) -> Vec<u8> {
    ld(tag, v.as_bytes())
}
fn int(tag: u32, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint(u64::from(tag) << 3, &mut out);
    varint(v, &mut out);
    out
}
fn msg(tag: u32, parts: &[Vec<u8>]) -> Vec<u8> {
    ld(tag, &parts.concat())
}
fn entry(tag: u32, k: &str, v: &str) -> Vec<u8> {
    msg(tag, &[s(1, k), s(2, v)])
}

/// A Deployment with 8 containers, each with env, ports, resources and a probe.
fn deployment() -> Vec<u8> {
    let mut containers = Vec::new();
    for i in 0..8 {
        let mut c = vec![
            s(1, &format!("c{i}")),
            s(2, "registry.local:5000/app/server:1.2.3"),
        ];
        c.push(s(3, "/bin/server"));
        c.push(s(4, "--listen=:8080"));
        for p in 0..3 {
            c.push(msg(
                6,
                &[s(1, &format!("p{p}")), int(3, 8080 + p), s(4, "TCP")],
            ));
        }
        for e in 0..12 {
            c.push(msg(
                7,
                &[
                    s(1, &format!("ENV_VAR_{e}")),
                    s(2, &format!("value number {e}")),
                ],
            ));
        }
        c.push(msg(
            8,
            &[
                msg(1, &[s(1, "cpu"), msg(2, &[s(1, "500m")])]),
                msg(1, &[s(1, "memory"), msg(2, &[s(1, "256Mi")])]),
            ],
        ));
        c.push(msg(
            10,
            &[
                msg(1, &[msg(2, &[s(1, "/healthz"), msg(2, &[int(2, 8080)])])]),
                int(2, 5),
            ],
        ));
        c.push(s(14, "IfNotPresent"));
        containers.push(msg(2, &c));
    }
    let mut meta = vec![s(1, "web"), s(3, "default")];
    for l in 0..10 {
        meta.push(entry(11, &format!("label-{l}"), "some-value"));
        meta.push(entry(
            12,
            &format!("example.com/annotation-{l}"),
            "a longer annotation value here",
        ));
    }
    let pod_spec = ld(2, &containers.concat());
    let template = msg(3, &[msg(1, &[entry(11, "app", "web")]), pod_spec]);
    let spec = msg(2, &[int(1, 3), msg(2, &[entry(1, "app", "web")]), template]);
    let raw = [msg(1, &meta), spec].concat();
    let tm = [s(1, "apps/v1"), s(2, "Deployment")].concat();
    [b"k8s\0".to_vec(), ld(1, &tm), ld(2, &raw)].concat()
}

fn main() {
    let pb = deployment();
    let json = serde_json::to_vec(&gabang_kproto::decode(&pb).expect("decodes")).expect("json");
    let n = 2000;
    // The machine is shared: alternate the two for several rounds, keep the best.
    let time = |f: &dyn Fn()| {
        for _ in 0..50 {
            f();
        }
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        t.elapsed().as_secs_f64() / f64::from(n)
    };
    let (mut p, mut j) = (f64::MAX, f64::MAX);
    for _ in 0..7 {
        p = p.min(time(&|| {
            black_box(gabang_kproto::decode(black_box(&pb)).ok());
        }));
        j = j.min(time(&|| {
            black_box(serde_json::from_slice::<serde_json::Value>(black_box(&json)).ok());
        }));
    }
    for (name, bytes, per) in [
        ("protobuf decode (kproto)", pb.len(), p),
        ("JSON parse (serde_json)", json.len(), j),
    ] {
        let mbs = bytes as f64 / per / 1e6;
        println!(
            "{name:<28} {bytes:>6} B  {:>8.1} µs/body  {mbs:>7.1} MB/s",
            per * 1e6
        );
    }
    println!(
        "protobuf/JSON time per object: {:.2}x (best of 7 rounds)",
        p / j
    );
}
