//! `gabang save` and `gabang load`: OCI layout archives (what `skopeo copy … oci-archive:`
//! writes) and `docker save` archives (legacy `manifest.json` layout, and docker 25+'s
//! combined layout). Loading unpacks the archive with the same safe applier as layers,
//! verifies every blob's digest, unpacks the layers, and only then moves tags.

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::layer::apply::{Applier, ApplyOptions};
use crate::layer::{decompressed, Compression};
use crate::reference::{familiar, ImageRef};
use crate::store::{Image, NewLayer, Store, DOCKER_LIST, OCI_INDEX, OCI_MANIFEST};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

/// Archive format for `save`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    /// OCI image layout (plus a docker-compatible manifest.json).
    Oci,
    /// `docker save` legacy layout (uncompressed layer.tar files).
    Docker,
}

/// One image to save and the names it should carry in the archive.
pub struct SaveItem {
    pub image: Image,
    /// Fully qualified `name:tag`s.
    pub names: Vec<String>,
}

fn append_bytes<W: Write>(b: &mut tar::Builder<W>, path: &str, data: &[u8]) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    b.append_data(&mut h, path, data)
        .ctx(|| format!("write {path} to archive"))
}

fn append_dir<W: Write>(b: &mut tar::Builder<W>, path: &str) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_mode(0o755);
    h.set_mtime(0);
    b.append_data(&mut h, path, io::empty())
        .ctx(|| format!("write {path} to archive"))
}

fn append_blob<W: Write>(
    store: &Store,
    b: &mut tar::Builder<W>,
    path: &str,
    d: &Digest,
) -> Result<()> {
    let info = store.blobs().info(d)?;
    let f = store.blobs().open_blob(d)?;
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(info.size);
    h.set_mode(0o644);
    h.set_mtime(0);
    b.append_data(&mut h, path, f)
        .ctx(|| format!("write {path} to archive"))
}

fn split_name_tag(full: &str) -> (String, String) {
    match full.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n.to_string(), t.to_string()),
        _ => (full.to_string(), "latest".to_string()),
    }
}

/// Write `items` as an archive to `out`.
pub fn save<W: Write>(store: &Store, items: &[SaveItem], format: SaveFormat, out: W) -> Result<W> {
    let mut b = tar::Builder::new(out);
    let mut written: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut docker_manifest = Vec::new();
    match format {
        SaveFormat::Oci => {
            append_bytes(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
            append_dir(&mut b, "blobs/")?;
            append_dir(&mut b, "blobs/sha256/")?;
            let mut index = Vec::new();
            for it in items {
                let img = &it.image;
                let mut blobs = vec![img.manifest_digest.clone(), img.config_digest.clone()];
                blobs.extend(img.layer_digests()?);
                for d in &blobs {
                    let p = format!("blobs/{}/{}", d.algorithm().name(), d.hex());
                    if written.insert(p.clone()) {
                        append_blob(store, &mut b, &p, d)?;
                    }
                }
                let msize = store.blobs().info(&img.manifest_digest)?.size;
                let desc = |name: Option<&String>| {
                    let mut d = json!({"mediaType": img.manifest_media_type, "digest": img.manifest_digest.to_string(), "size": msize});
                    if let Some(n) = name {
                        let (_, tag) = split_name_tag(n);
                        d["annotations"] = json!({"io.containerd.image.name": n, "org.opencontainers.image.ref.name": tag});
                    }
                    d
                };
                if it.names.is_empty() {
                    index.push(desc(None));
                }
                for n in &it.names {
                    index.push(desc(Some(n)));
                }
                docker_manifest.push(json!({
                    "Config": format!("blobs/sha256/{}", img.config_digest.hex()),
                    "RepoTags": it.names.iter().map(|n| familiar(n)).collect::<Vec<_>>(),
                    "Layers": img.layer_digests()?.iter().map(|d| format!("blobs/sha256/{}", d.hex())).collect::<Vec<_>>(),
                }));
            }
            let idx = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index});
            append_bytes(
                &mut b,
                "index.json",
                &serde_json::to_vec(&idx).map_err(|e| Error::json("index", e))?,
            )?;
        }
        SaveFormat::Docker => {
            let mut repos: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
            for it in items {
                let img = &it.image;
                let cfg_path = format!("{}.json", img.config_digest.hex());
                if written.insert(cfg_path.clone()) {
                    append_bytes(&mut b, &cfg_path, &img.config_bytes)?;
                }
                let mut layer_paths = Vec::new();
                let diff_ids = img.diff_ids()?;
                for (ld, diff) in img.layer_digests()?.iter().zip(&diff_ids) {
                    let dir = diff.hex().to_string();
                    let p = format!("{dir}/layer.tar");
                    if written.insert(p.clone()) {
                        append_dir(&mut b, &format!("{dir}/"))?;
                        append_bytes(&mut b, &format!("{dir}/VERSION"), b"1.0")?;
                        // Legacy archives carry uncompressed tars: decompress to a temp file
                        // (tar headers need the size up front).
                        let tmp = tempfile::tempfile_in(store.root().join("tmp"))
                            .ctx(|| "temp file".to_string())?;
                        let (_, mut r) = decompressed(store.blobs().open_blob(ld)?)
                            .ctx(|| format!("read layer {ld}"))?;
                        let mut tmpw = io::BufWriter::new(tmp);
                        let n =
                            io::copy(&mut r, &mut tmpw).ctx(|| format!("decompress layer {ld}"))?;
                        let mut tmp = tmpw
                            .into_inner()
                            .map_err(|e| e.into_error())
                            .ctx(|| "flush temp".to_string())?;
                        io::Seek::seek(&mut tmp, io::SeekFrom::Start(0))
                            .ctx(|| "seek temp".to_string())?;
                        let mut h = tar::Header::new_ustar();
                        h.set_entry_type(tar::EntryType::Regular);
                        h.set_size(n);
                        h.set_mode(0o644);
                        h.set_mtime(0);
                        b.append_data(&mut h, &p, tmp)
                            .ctx(|| format!("write {p}"))?;
                    }
                    layer_paths.push(p);
                }
                for n in &it.names {
                    let (name, tag) = split_name_tag(&familiar(n));
                    if let Some(last) = diff_ids.last() {
                        repos
                            .entry(name)
                            .or_default()
                            .insert(tag, last.hex().to_string());
                    }
                }
                docker_manifest.push(json!({
                    "Config": cfg_path,
                    "RepoTags": it.names.iter().map(|n| familiar(n)).collect::<Vec<_>>(),
                    "Layers": layer_paths,
                }));
            }
            append_bytes(
                &mut b,
                "repositories",
                &serde_json::to_vec(&repos).map_err(|e| Error::json("repositories", e))?,
            )?;
        }
    }
    append_bytes(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&docker_manifest).map_err(|e| Error::json("manifest.json", e))?,
    )?;
    b.into_inner().ctx(|| "finish archive".to_string())
}

/// Save to a file path atomically (temp file + rename).
pub fn save_to_file(
    store: &Store,
    items: &[SaveItem],
    format: SaveFormat,
    path: &Path,
) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .ctx(|| format!("create temp file in {}", dir.display()))?;
    let w = save(
        store,
        items,
        format,
        io::BufWriter::with_capacity(1 << 20, tmp),
    )?;
    let tmp = w
        .into_inner()
        .map_err(|e| e.into_error())
        .ctx(|| format!("write {}", path.display()))?;
    tmp.as_file()
        .sync_all()
        .ctx(|| format!("fsync {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .ctx(|| format!("rename into {}", path.display()))?;
    Ok(())
}

/// What `load` brought in.
pub struct Loaded {
    pub image: Image,
    /// Fully qualified names tagged from the archive.
    pub names: Vec<String>,
}

struct Extracted {
    root: rustix::fd::OwnedFd,
    shown: String,
}

impl Extracted {
    fn open(&self, rel: &str) -> Result<File> {
        let fd = rustix::fs::openat2(
            &self.root,
            rel,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| Error::BadArchive {
            path: self.shown.clone().into(),
            reason: format!("{rel}: {e}"),
        })?;
        Ok(File::from(fd))
    }
    fn exists(&self, rel: &str) -> bool {
        self.open(rel).is_ok()
    }
    fn read(&self, rel: &str, limit: u64) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.open(rel)?
            .take(limit)
            .read_to_end(&mut v)
            .ctx(|| format!("read {rel} from {}", self.shown))?;
        Ok(v)
    }
    fn json(&self, rel: &str) -> Result<Value> {
        let b = self.read(rel, 4 << 20)?;
        serde_json::from_slice(&b).map_err(|e| Error::BadArchive {
            path: self.shown.clone().into(),
            reason: format!("{rel}: {e}"),
        })
    }
}

fn bad(shown: &str, reason: impl Into<String>) -> Error {
    Error::BadArchive {
        path: shown.into(),
        reason: reason.into(),
    }
}

/// Load an OCI layout archive or a `docker save` archive (optionally compressed) from `input`.
pub fn load<R: Read + Send + 'static>(store: &Store, input: R, shown: &str) -> Result<Vec<Loaded>> {
    let _lease = store.lease()?;
    let tmp = store.tempdir()?;
    // The archive is untrusted: unpack it with the same safe applier as layers.
    let opts = ApplyOptions {
        same_owner: false,
        ..store.apply_options().clone()
    };
    let (_, r) = decompressed(input).ctx(|| format!("read {shown}"))?;
    let mut ap = Applier::new(tmp.path(), &opts)?;
    ap.run(r)
        .map_err(|e| bad(shown, format!("not a valid archive: {e}")))?;
    let x = Extracted {
        root: rustix::fs::open(
            tmp.path(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| "open extracted archive".to_string())?,
        shown: shown.to_string(),
    };
    let docker_tags: Vec<(String, Vec<String>)> = if x.exists("manifest.json") {
        let m = x.json("manifest.json")?;
        m.as_array()
            .ok_or_else(|| bad(shown, "manifest.json: expected a JSON array"))?
            .iter()
            .map(|e| {
                (
                    e["Config"].as_str().unwrap_or_default().to_string(),
                    e["RepoTags"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|t| t.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default(),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    if x.exists("index.json") {
        load_oci(store, &x, &docker_tags)
    } else if x.exists("manifest.json") {
        load_docker(store, &x)
    } else {
        Err(bad(
            shown,
            "neither index.json (OCI layout) nor manifest.json (docker save) found",
        ))
    }
}

fn ingest_from(store: &Store, x: &Extracted, d: &Digest, size: Option<u64>) -> Result<()> {
    if store.blobs().exists(d) {
        store.blobs().touch(d);
        return Ok(());
    }
    let rel = format!("blobs/{}/{}", d.algorithm().name(), d.hex());
    let f = x
        .open(&rel)
        .map_err(|_| bad(&x.shown, format!("blob {d} is referenced but missing")))?;
    store
        .blobs()
        .ingest(io::BufReader::with_capacity(1 << 20, f), Some(d), size)
        .map_err(|e| match e {
            Error::DigestMismatch { .. } | Error::SizeMismatch { .. } => {
                bad(&x.shown, format!("{rel}: {e}"))
            }
            other => other,
        })?;
    Ok(())
}

fn parse_digest(x: &Extracted, v: &Value, what: &str) -> Result<Digest> {
    v.as_str()
        .ok_or_else(|| bad(&x.shown, format!("{what}: missing digest")))?
        .parse()
        .map_err(|e: Error| bad(&x.shown, format!("{what}: {e}")))
}

/// Pick the manifest(s) for this platform from an index-like document.
fn resolve_manifests(
    store: &Store,
    x: &Extracted,
    desc: &Value,
    depth: usize,
) -> Result<Vec<(Digest, String, Value)>> {
    if depth > 4 {
        return Err(bad(&x.shown, "index nesting too deep"));
    }
    let d = parse_digest(x, &desc["digest"], "index entry")?;
    ingest_from(store, x, &d, desc["size"].as_u64())?;
    let bytes = store.blobs().read(&d)?;
    let doc: Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(&x.shown, format!("manifest {d}: {e}")))?;
    let mt = doc["mediaType"]
        .as_str()
        .or(desc["mediaType"].as_str())
        .unwrap_or(OCI_MANIFEST)
        .to_string();
    if mt == OCI_INDEX || mt == DOCKER_LIST || doc.get("manifests").is_some() {
        let list = doc["manifests"].as_array().cloned().unwrap_or_default();
        let arch = std::env::consts::ARCH
            .replace("x86_64", "amd64")
            .replace("aarch64", "arm64");
        let pick = list
            .iter()
            .find(|m| {
                m["platform"]["os"] == "linux" && m["platform"]["architecture"] == arch.as_str()
            })
            .or_else(|| list.iter().find(|m| m.get("platform").is_none()))
            .or_else(|| list.first())
            .ok_or_else(|| bad(&x.shown, format!("index {d} lists no manifests")))?;
        return resolve_manifests(store, x, pick, depth + 1);
    }
    Ok(vec![(d, mt, doc)])
}

fn load_oci(
    store: &Store,
    x: &Extracted,
    docker_tags: &[(String, Vec<String>)],
) -> Result<Vec<Loaded>> {
    let index = x.json("index.json")?;
    let entries = index["manifests"].as_array().cloned().unwrap_or_default();
    if entries.is_empty() {
        return Err(bad(&x.shown, "index.json lists no manifests"));
    }
    let mut out: Vec<Loaded> = Vec::new();
    for e in &entries {
        for (md, mt, doc) in resolve_manifests(store, x, e, 0)? {
            let cd = parse_digest(x, &doc["config"]["digest"], "config")?;
            ingest_from(store, x, &cd, doc["config"]["size"].as_u64())?;
            for l in doc["layers"].as_array().cloned().unwrap_or_default() {
                let ld = parse_digest(x, &l["digest"], "layer")?;
                ingest_from(store, x, &ld, l["size"].as_u64())?;
            }
            let ann = &e["annotations"];
            let mut names: Vec<String> = Vec::new();
            if let Some(n) = ann["io.containerd.image.name"].as_str() {
                names.push(n.to_string());
            } else if let Some(n) = ann["org.opencontainers.image.ref.name"].as_str() {
                if n.contains(':') || n.contains('/') {
                    names.push(n.to_string());
                }
            }
            let cfg_path = format!("blobs/sha256/{}", cd.hex());
            for (c, tags) in docker_tags {
                if *c == cfg_path {
                    names.extend(tags.iter().cloned());
                }
            }
            let mut refs: Vec<ImageRef> = Vec::new();
            for r in names.iter().filter_map(|n| ImageRef::parse(n).ok()) {
                if r.tag().is_some() && !refs.iter().any(|x| x.tagged() == r.tagged()) {
                    refs.push(r);
                }
            }
            let bytes = store.blobs().read(&md)?;
            let img = store.add_manifest(&bytes, &mt, &refs)?;
            let names: Vec<String> = refs.iter().filter_map(|r| r.tagged()).collect();
            if let Some(prev) = out
                .iter_mut()
                .find(|l| l.image.manifest_digest == img.manifest_digest)
            {
                prev.names.extend(names);
                prev.image = img;
            } else {
                out.push(Loaded { image: img, names });
            }
        }
    }
    Ok(out)
}

fn load_docker(store: &Store, x: &Extracted) -> Result<Vec<Loaded>> {
    let m = x.json("manifest.json")?;
    let mut out = Vec::new();
    for (i, e) in m.as_array().cloned().unwrap_or_default().iter().enumerate() {
        let what = format!("manifest.json[{i}]");
        let cfg_rel = e["Config"]
            .as_str()
            .ok_or_else(|| bad(&x.shown, format!("{what}.Config missing")))?;
        let cfg_bytes = x.read(cfg_rel, 16 << 20)?;
        let cfg: Value = serde_json::from_slice(&cfg_bytes)
            .map_err(|err| bad(&x.shown, format!("{cfg_rel}: {err}")))?;
        let diff_ids: Vec<Digest> = cfg["rootfs"]["diff_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|d| parse_digest(x, d, &format!("{cfg_rel} rootfs.diff_ids")))
            .collect::<Result<_>>()?;
        let layer_rels: Vec<String> = e["Layers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|l| l.as_str().map(String::from))
            .collect();
        if layer_rels.len() != diff_ids.len() {
            return Err(bad(
                &x.shown,
                format!(
                    "{what}: {} layers but config has {} diff ids",
                    layer_rels.len(),
                    diff_ids.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        for (rel, diff_id) in layer_rels.iter().zip(&diff_ids) {
            let mut f = x.open(rel)?;
            let mut head = [0u8; 4];
            let n = f.read(&mut head).ctx(|| format!("read {rel}"))?;
            let compression = Compression::detect(&head[..n]);
            let f = x.open(rel)?;
            let digest =
                store
                    .blobs()
                    .ingest(io::BufReader::with_capacity(1 << 20, f), None, None)?;
            let size = store.blobs().info(&digest)?.size;
            layers.push(NewLayer {
                digest,
                size,
                media_type: compression.oci_media_type().to_string(),
                diff_id: diff_id.clone(),
            });
        }
        let refs: Vec<ImageRef> = e["RepoTags"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|t| t.as_str().and_then(|t| ImageRef::parse(t).ok()))
            .collect();
        let img = store.create_image_raw(&cfg_bytes, &layers, &refs)?;
        out.push(Loaded {
            names: refs.iter().filter_map(|r| r.tagged()).collect(),
            image: img,
        });
    }
    Ok(out)
}
