//! `gabang import`: a rootfs tarball (plain, gzip or zstd) or a folder → a one-layer image.

use crate::digest::{Algorithm, HashingWriter};
use crate::error::{Error, IoContext, Result};
use crate::layer::{decompressed, diff::write_layer, Compression};
use crate::reference::ImageRef;
use crate::store::{Image, NewLayer, Store};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

struct Counted<R> {
    inner: R,
    n: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n.fetch_add(k as u64, Ordering::Relaxed);
        Ok(k)
    }
}
use std::path::Path;

/// Dockerfile-like changes applied to an imported image's config (`--change`).
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub changes: Vec<String>,
    pub message: Option<String>,
}

fn shell_or_json(v: &str) -> Vec<String> {
    let t = v.trim();
    if t.starts_with('[') {
        if let Ok(list) = serde_json::from_str::<Vec<String>>(t) {
            return list;
        }
    }
    vec!["/bin/sh".into(), "-c".into(), t.to_string()]
}

/// Apply `CMD`, `ENTRYPOINT`, `ENV`, `WORKDIR`, `USER`, `EXPOSE`, `LABEL` change lines.
pub fn apply_changes(cfg: &mut serde_json::Value, changes: &[String]) -> Result<()> {
    for (i, line) in changes.iter().enumerate() {
        let (instr, rest) = line.trim().split_once(char::is_whitespace).ok_or_else(|| {
            Error::invalid(
                format!("--change #{}", i + 1),
                format!("{line:?}: expected INSTRUCTION ARGS"),
            )
        })?;
        let rest = rest.trim();
        let c = &mut cfg["config"];
        match instr.to_ascii_uppercase().as_str() {
            "CMD" => c["Cmd"] = serde_json::json!(shell_or_json(rest)),
            "ENTRYPOINT" => c["Entrypoint"] = serde_json::json!(shell_or_json(rest)),
            "WORKDIR" => c["WorkingDir"] = serde_json::json!(rest),
            "USER" => c["User"] = serde_json::json!(rest),
            "ENV" => {
                let (k, v) = rest
                    .split_once('=')
                    .or_else(|| rest.split_once(' '))
                    .ok_or_else(|| Error::invalid(format!("--change #{}", i + 1), "ENV needs KEY=VALUE"))?;
                let mut env: Vec<String> = c["Env"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
                    .unwrap_or_default();
                env.retain(|e| e.split('=').next() != Some(k));
                env.push(format!("{k}={}", v.trim()));
                c["Env"] = serde_json::json!(env);
            }
            "EXPOSE" => {
                for p in rest.split_whitespace() {
                    let key = if p.contains('/') { p.to_string() } else { format!("{p}/tcp") };
                    c["ExposedPorts"][key] = serde_json::json!({});
                }
            }
            "LABEL" => {
                let (k, v) = rest
                    .split_once('=')
                    .ok_or_else(|| Error::invalid(format!("--change #{}", i + 1), "LABEL needs KEY=VALUE"))?;
                c["Labels"][k.trim()] = serde_json::json!(v.trim().trim_matches('"'));
            }
            other => {
                return Err(Error::invalid(
                    format!("--change #{}", i + 1),
                    format!("unsupported instruction {other:?} (CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL)"),
                ))
            }
        }
    }
    Ok(())
}

/// Import a rootfs from `source` (a tar file, `-` for stdin, or a directory).
pub fn import(
    store: &Store,
    source: &Path,
    tag: Option<&ImageRef>,
    opts: &ImportOptions,
    progress: &dyn Fn(u64),
) -> Result<Image> {
    let _lease = store.lease()?;
    let mut fresh_layer = None;
    let layer = if source.is_dir() {
        let before: std::collections::HashSet<_> = store
            .blobs()
            .list()?
            .into_iter()
            .map(|b| b.digest)
            .collect();
        let l = write_layer(store.blobs(), source, Compression::Gzip)?;
        if !before.contains(&l.digest) {
            fresh_layer = Some(l.digest.clone());
        }
        l
    } else {
        let input: Box<dyn Read + Send> = if source == Path::new("-") {
            Box::new(io::stdin())
        } else {
            Box::new(std::fs::File::open(source).ctx(|| format!("open {}", source.display()))?)
        };
        let read = Arc::new(AtomicU64::new(0));
        let counted = Counted {
            inner: input,
            n: read.clone(),
        };
        let (_, mut tar) = decompressed(counted).ctx(|| format!("read {}", source.display()))?;
        let bw = store.blobs().writer(Algorithm::Sha256)?;
        let enc = flate2::write::GzEncoder::new(bw, flate2::Compression::fast());
        let mut hw = HashingWriter::new(enc, Algorithm::Sha256);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match tar.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).ctx(|| format!("read {}", source.display())),
            };
            hw.write_all(&buf[..n]).ctx(|| "write layer".to_string())?;
            progress(read.load(Ordering::Relaxed));
        }
        let (enc, diff_id, tar_size) = hw.finish();
        if tar_size == 0 {
            return Err(Error::BadArchive {
                path: source.to_path_buf(),
                reason: "empty input: expected a tar archive".into(),
            });
        }
        let bw = enc.finish().ctx(|| "finish gzip".to_string())?;
        let size = bw.bytes_written();
        let (digest, fresh) = bw.commit_fresh(None, None)?;
        fresh_layer = fresh.then(|| digest.clone());
        crate::layer::diff::LayerBlob {
            diff_id,
            digest,
            size,
            media_type: Compression::Gzip.oci_media_type().to_string(),
            tar_size,
        }
    };
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut cfg = serde_json::json!({
        "created": now,
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id.to_string()]},
        "history": [{"created": now, "created_by": "gabang import",
                     "comment": opts.message.clone().unwrap_or_else(|| format!("Imported from {}", source.display()))}],
    });
    apply_changes(&mut cfg, &opts.changes)?;
    let config_bytes = serde_json::to_vec(&cfg).map_err(|e| Error::json("image config", e))?;
    let tags: Vec<ImageRef> = tag.into_iter().cloned().collect();
    let res = store.create_image_raw(&config_bytes, &[NewLayer::from(&layer)], &tags);
    if res.is_err() {
        // A rejected rootfs stores nothing (a layer that was already stored stays).
        if let Some(d) = fresh_layer {
            let _ = store.blobs().delete(&d);
        }
    }
    res
}
