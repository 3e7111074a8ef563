#![allow(dead_code)]
//! Helpers to build tars byte by byte, including ones the `tar` crate would refuse to write.

use std::io::Write;

pub enum Kind<'a> {
    File(&'a [u8]),
    Dir,
    Symlink(&'a str),
    Hardlink(&'a str),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

#[derive(Default)]
pub struct RawTar {
    buf: Vec<u8>,
}

impl RawTar {
    pub fn new() -> Self {
        RawTar { buf: Vec::new() }
    }

    pub fn entry(&mut self, name: &str, kind: Kind<'_>, mode: u32) -> &mut Self {
        self.entry_with(name, kind, mode, &[])
    }

    /// Append an entry; `pax` records are emitted as a PAX header first.
    pub fn entry_with(
        &mut self,
        name: &str,
        kind: Kind<'_>,
        mode: u32,
        pax: &[(&str, &[u8])],
    ) -> &mut Self {
        if !pax.is_empty() {
            let mut recs = Vec::new();
            for (k, v) in pax {
                let mut rec = format!(" {k}=").into_bytes();
                rec.extend_from_slice(v);
                rec.push(b'\n');
                let mut len = rec.len() + 1;
                while len.to_string().len() + rec.len() != len {
                    len = len.to_string().len() + rec.len();
                }
                recs.extend_from_slice(len.to_string().as_bytes());
                recs.extend_from_slice(&rec);
            }
            self.raw_header("PaxHeader", b'x', recs.len() as u64, 0o644, "", 0, 0);
            self.data(&recs);
        }
        let (t, size, link, maj, min): (u8, u64, &str, u32, u32) = match &kind {
            Kind::File(d) => (b'0', d.len() as u64, "", 0, 0),
            Kind::Dir => (b'5', 0, "", 0, 0),
            Kind::Symlink(l) => (b'2', 0, l, 0, 0),
            Kind::Hardlink(l) => (b'1', 0, l, 0, 0),
            Kind::Char(a, b) => (b'3', 0, "", *a, *b),
            Kind::Block(a, b) => (b'4', 0, "", *a, *b),
            Kind::Fifo => (b'6', 0, "", 0, 0),
        };
        self.raw_header(name, t, size, mode, link, maj, min);
        if let Kind::File(d) = kind {
            self.data(d);
        }
        self
    }

    fn data(&mut self, d: &[u8]) {
        self.buf.extend_from_slice(d);
        let pad = (512 - d.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
    }

    #[allow(clippy::too_many_arguments)]
    fn raw_header(
        &mut self,
        name: &str,
        t: u8,
        size: u64,
        mode: u32,
        link: &str,
        maj: u32,
        min: u32,
    ) {
        let mut h = [0u8; 512];
        let nb = name.as_bytes();
        assert!(nb.len() <= 100, "test names must fit the header");
        h[..nb.len()].copy_from_slice(nb);
        let oct = |v: u64, w: usize| format!("{v:0w$o}\0", w = w - 1).into_bytes();
        h[100..108].copy_from_slice(&oct(mode as u64, 8));
        h[108..116].copy_from_slice(&oct(0, 8));
        h[116..124].copy_from_slice(&oct(0, 8));
        h[124..136].copy_from_slice(&oct(size, 12));
        h[136..148].copy_from_slice(&oct(1_700_000_000, 12));
        h[156] = t;
        let lb = link.as_bytes();
        h[157..157 + lb.len()].copy_from_slice(lb);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[329..337].copy_from_slice(&oct(maj as u64, 8));
        h[337..345].copy_from_slice(&oct(min as u64, 8));
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| *b as u32).sum();
        h[148..156].copy_from_slice(&format!("{sum:06o}\0 ").into_bytes());
        self.buf.extend_from_slice(&h);
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let mut b = std::mem::take(&mut self.buf);
        b.extend(std::iter::repeat_n(0u8, 1024));
        b
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Every path under `dir` (relative), sorted, with file type letter.
pub fn tree(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &std::path::Path, d: &std::path::Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            let k = if md.is_dir() {
                "d"
            } else if md.file_type().is_symlink() {
                "l"
            } else {
                "f"
            };
            out.push(format!("{k} {rel}"));
            if md.is_dir() {
                walk(base, &p, out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}
