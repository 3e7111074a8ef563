//! [`Store`]: the content store as the rest of gabang sees it — images (manifest + config +
//! layers) with tags, unpacked snapshots, usage by containers, leases, and GC.

use crate::blobs::BlobStore;
use crate::digest::{chain_ids, Digest};
use crate::error::{Error, IoContext, Result};
use crate::layer::apply::{apply_layer, ApplyOptions};
use crate::layer::diff::LayerBlob;
use crate::meta::{now_ms, ImageRow, Meta};
use crate::reference::ImageRef;
use crate::snapshot::{SnapshotInfo, Snapshots};
use oci_spec::image::{ImageConfiguration, ImageManifest};
use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// An image in the store.
#[derive(Debug, Clone)]
pub struct Image {
    /// The image ID as docker shows it: `sha256:<config digest hex>`.
    pub id: String,
    pub config_digest: Digest,
    pub manifest_digest: Digest,
    pub manifest_media_type: String,
    pub manifest: ImageManifest,
    pub config: ImageConfiguration,
    /// The exact config bytes (digests are of raw bytes, never re-serialised JSON).
    pub config_bytes: Vec<u8>,
    /// Fully qualified `name:tag`s pointing at this image.
    pub tags: Vec<String>,
    /// When this store got the image (unix seconds).
    pub added: i64,
}

impl Image {
    pub fn diff_ids(&self) -> Result<Vec<Digest>> {
        self.config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| d.parse::<Digest>())
            .collect()
    }
    pub fn chain_ids(&self) -> Result<Vec<Digest>> {
        Ok(chain_ids(&self.diff_ids()?))
    }
    pub fn layer_digests(&self) -> Result<Vec<Digest>> {
        self.manifest
            .layers()
            .iter()
            .map(|l| Digest::try_from(l.digest()))
            .collect()
    }
    /// Short ID (12 hex) like `docker images`.
    pub fn short_id(&self) -> &str {
        self.config_digest.short()
    }
}

/// A layer to put in a new image.
#[derive(Debug, Clone)]
pub struct NewLayer {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    pub diff_id: Digest,
}

impl From<&LayerBlob> for NewLayer {
    fn from(b: &LayerBlob) -> Self {
        NewLayer {
            digest: b.digest.clone(),
            size: b.size,
            media_type: b.media_type.clone(),
            diff_id: b.diff_id.clone(),
        }
    }
}

/// What GC removed.
#[derive(Debug, Default, Clone)]
pub struct GcReport {
    pub blobs_removed: usize,
    pub snapshots_removed: usize,
    pub bytes_freed: u64,
}

/// A lease: while held, blobs written by this operation are safe from GC.
pub struct Lease<'a> {
    store: &'a Store,
    id: String,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Ok(m) = self.store.meta.lock() {
            let _ = m.remove_lease(&self.id);
        }
    }
}

/// The content store under one root.
pub struct Store {
    root: PathBuf,
    blobs: BlobStore,
    snapshots: Snapshots,
    meta: Mutex<Meta>,
    apply: ApplyOptions,
}

impl Store {
    /// Open the store under `root` (the `--root` of gabang): `content/`, `snapshots/`, `metadata.db`.
    pub fn open(root: &Path) -> Result<Store> {
        fs::create_dir_all(root).ctx(|| format!("create {}", root.display()))?;
        fs::create_dir_all(root.join("tmp")).ctx(|| format!("create {}/tmp", root.display()))?;
        Ok(Store {
            root: root.to_path_buf(),
            blobs: BlobStore::open(&root.join("content"))?,
            snapshots: Snapshots::open(&root.join("snapshots"))?,
            meta: Mutex::new(Meta::open(&root.join("metadata.db"))?),
            apply: ApplyOptions::default(),
        })
    }

    /// The process-wide store for `root`, opened on first use: a CLI command, the runtime and
    /// a node agent that each need the store share one database connection (opening it parses
    /// the schema and maps the WAL, ~1 ms each time).
    pub fn shared(root: &Path) -> Result<std::sync::Arc<Store>> {
        static STORES: Mutex<Vec<(PathBuf, std::sync::Arc<Store>)>> = Mutex::new(Vec::new());
        let mut stores = STORES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, s)) = stores.iter().find(|(r, _)| r == root) {
            return Ok(s.clone());
        }
        let s = std::sync::Arc::new(Store::open(root)?);
        stores.push((root.to_path_buf(), s.clone()));
        Ok(s)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }
    pub fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }
    /// Limits applied when unpacking layers.
    pub fn set_apply_options(&mut self, opts: ApplyOptions) {
        self.apply = opts;
    }
    pub fn apply_options(&self) -> &ApplyOptions {
        &self.apply
    }

    /// A scratch directory under the root (same filesystem as the store, so renames work).
    pub fn tempdir(&self) -> Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix("op-")
            .tempdir_in(self.root.join("tmp"))
            .ctx(|| "create temp dir".to_string())
    }

    fn meta(&self) -> Result<std::sync::MutexGuard<'_, Meta>> {
        self.meta
            .lock()
            .map_err(|_| Error::invalid("metadata", "lock poisoned"))
    }

    /// Protect what this operation writes from a concurrent GC until the lease drops.
    pub fn lease(&self) -> Result<Lease<'_>> {
        let id = format!("{:016x}", rand::random::<u64>());
        self.meta()?.add_lease(&id, Duration::from_secs(6 * 3600))?;
        Ok(Lease { store: self, id })
    }

    // ---- images ----

    fn load_image(&self, row: &ImageRow, tags: Vec<String>) -> Result<Image> {
        let md: Digest = row.manifest_digest.parse()?;
        let mbytes = self.blobs.read(&md)?;
        let manifest: ImageManifest = serde_json::from_slice(&mbytes)
            .map_err(|e| Error::json(format!("manifest {md}"), e))?;
        let cd = Digest::try_from(manifest.config().digest())?;
        let config_bytes = self.blobs.read(&cd)?;
        let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(|e| Error::json(format!("config {cd}"), e))?;
        Ok(Image {
            id: cd.to_string(),
            config_digest: cd,
            manifest_digest: md,
            manifest_media_type: row.media_type.clone(),
            manifest,
            config,
            config_bytes,
            tags,
            added: row.added,
        })
    }

    /// All images, newest first.
    pub fn list_images(&self) -> Result<Vec<Image>> {
        let (rows, tags) = {
            let m = self.meta()?;
            (m.images()?, m.tags()?)
        };
        let mut out = Vec::new();
        for row in rows {
            let t: Vec<String> = tags
                .iter()
                .filter(|(_, d)| *d == row.manifest_digest)
                .map(|(n, _)| n.clone())
                .collect();
            match self.load_image(&row, t) {
                Ok(img) => out.push(img),
                Err(e) => tracing::warn!("image {} unreadable: {e}", row.manifest_digest),
            }
        }
        out.sort_by(|a, b| b.added.cmp(&a.added).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Find an image by `name[:tag]`, `name@digest`, full or short image ID, or manifest digest.
    pub fn resolve_image(&self, reference: &str) -> Result<Image> {
        let by_ref = ImageRef::parse(reference);
        // Fast path: a tag is one indexed lookup.
        if let Some(t) = by_ref
            .as_ref()
            .ok()
            .filter(|r| r.digest().is_none())
            .and_then(|r| r.tagged())
        {
            let hit = self.meta()?.by_tag(&t)?;
            if let Some((row, tags)) = hit {
                return self.load_image(&row, tags);
            }
        }
        let images = self.list_images()?;
        if let Ok(r) = &by_ref {
            if let Some(d) = r.digest() {
                if let Some(img) = images
                    .iter()
                    .find(|i| i.manifest_digest.to_string() == d || i.id == d)
                {
                    return Ok(img.clone());
                }
            } else if let Some(t) = r.tagged() {
                if let Some(img) = images.iter().find(|i| i.tags.contains(&t)) {
                    return Ok(img.clone());
                }
            }
        }
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        if !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let matches: Vec<&Image> = images
                .iter()
                .filter(|i| {
                    i.config_digest.hex().starts_with(hex) || i.manifest_digest.hex() == hex
                })
                .collect();
            let mut ids: Vec<&str> = matches.iter().map(|i| i.id.as_str()).collect();
            ids.sort();
            ids.dedup();
            match ids.len() {
                0 => {}
                1 => return Ok(matches[0].clone()),
                n => {
                    return Err(Error::AmbiguousImage {
                        reference: reference.to_string(),
                        count: n,
                    })
                }
            }
        }
        match by_ref {
            Err(e) if !reference.bytes().all(|b| b.is_ascii_hexdigit()) => Err(e),
            _ => Err(Error::ImageNotFound(reference.to_string())),
        }
    }

    /// Write config + manifest for layers, record the image and point `tags` at it.
    pub fn create_image(
        &self,
        config: &ImageConfiguration,
        layers: &[NewLayer],
        tags: &[ImageRef],
    ) -> Result<Image> {
        let config_bytes =
            serde_json::to_vec(config).map_err(|e| Error::json("image config", e))?;
        self.create_image_raw(&config_bytes, layers, tags)
    }

    /// Same as [`Store::create_image`] with exact config bytes.
    pub fn create_image_raw(
        &self,
        config_bytes: &[u8],
        layers: &[NewLayer],
        tags: &[ImageRef],
    ) -> Result<Image> {
        let config: ImageConfiguration =
            serde_json::from_slice(config_bytes).map_err(|e| Error::json("image config", e))?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != layers.len() {
            return Err(Error::invalid(
                "image",
                format!(
                    "config lists {} diff ids but {} layers were given",
                    diff_ids.len(),
                    layers.len()
                ),
            ));
        }
        for (l, d) in layers.iter().zip(diff_ids) {
            if l.diff_id.to_string() != *d {
                return Err(Error::invalid(
                    "image",
                    format!(
                        "layer {} has diff id {} but config says {d}",
                        l.digest, l.diff_id
                    ),
                ));
            }
            if !self.blobs.exists(&l.digest) {
                return Err(Error::BlobNotFound(l.digest.to_string()));
            }
        }
        let (cd, fresh_config) = self.blobs.put_fresh(config_bytes)?;
        let mut manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": cd.to_string(), "size": config_bytes.len()},
            "layers": layers.iter().map(|l| serde_json::json!({
                "mediaType": l.media_type, "digest": l.digest.to_string(), "size": l.size})).collect::<Vec<_>>(),
        });
        if layers.is_empty() {
            manifest["layers"] = serde_json::json!([]);
        }
        let mbytes = serde_json::to_vec(&manifest).map_err(|e| Error::json("manifest", e))?;
        let res = self.add_manifest(&mbytes, OCI_MANIFEST, tags);
        if res.is_err() && fresh_config {
            let _ = self.blobs.delete(&cd);
        }
        res
    }

    /// Register an already-stored manifest (whose config and layers are stored) under `tags`.
    /// Unpacks its layers first, so a bad layer leaves tags untouched.
    pub fn add_manifest(
        &self,
        manifest_bytes: &[u8],
        media_type: &str,
        tags: &[ImageRef],
    ) -> Result<Image> {
        let manifest: ImageManifest =
            serde_json::from_slice(manifest_bytes).map_err(|e| Error::json("manifest", e))?;
        let (md, fresh) = self.blobs.put_fresh(manifest_bytes)?;
        let cd = Digest::try_from(manifest.config().digest())?;
        let row = ImageRow {
            manifest_digest: md.to_string(),
            media_type: media_type.to_string(),
            config_digest: cd.to_string(),
            added: now_ms() / 1000,
        };
        if let Err(e) = self
            .load_image(&row, vec![])
            .and_then(|img| self.unpack(&img))
        {
            if fresh {
                let _ = self.blobs.delete(&md);
            }
            return Err(e);
        }
        let tag_names: Vec<String> = tags.iter().filter_map(|t| t.tagged()).collect();
        self.meta()?.put_image(&row, &tag_names)?;
        self.resolve_image(&md.to_string())
    }

    /// Unpack every layer of an image into snapshots (skipping those already there).
    pub fn unpack(&self, image: &Image) -> Result<Vec<SnapshotInfo>> {
        let diff_ids = image.diff_ids()?;
        let chains = chain_ids(&diff_ids);
        let layers = image.manifest.layers();
        if layers.len() != diff_ids.len() {
            return Err(Error::invalid(
                format!("image {}", image.id),
                format!(
                    "manifest has {} layers, config has {} diff ids",
                    layers.len(),
                    diff_ids.len()
                ),
            ));
        }
        let mut out = Vec::new();
        for (i, layer) in layers.iter().enumerate() {
            let chain = &chains[i];
            if let Some(info) = self.snapshots.info(chain)? {
                out.push(info);
                continue;
            }
            let ld = Digest::try_from(layer.digest())?;
            let blob = self.blobs.open_blob(&ld)?;
            let staging = self.snapshots.stage()?;
            let mut opts = self.apply.clone();
            opts.expected_diff_id = Some(diff_ids[i].clone());
            let report = apply_layer(blob, &staging.fs(), &opts).map_err(|e| match e {
                Error::UnsafeEntry { .. } | Error::LayerLimit(_) | Error::DigestMismatch { .. } => {
                    e
                }
                other => Error::invalid(format!("layer {ld}"), other.to_string()),
            })?;
            let info = SnapshotInfo {
                chain_id: chain.clone(),
                parent: if i == 0 {
                    None
                } else {
                    Some(chains[i - 1].clone())
                },
                diff_id: diff_ids[i].clone(),
                size: report.content_bytes,
                tar_size: report.tar_bytes,
            };
            self.snapshots.commit(staging, &info)?;
            out.push(info);
        }
        Ok(out)
    }

    /// Unpacked layer directories of an image, bottom → top (for overlay `lowerdir`, reverse them).
    pub fn snapshot_dirs(&self, image: &Image) -> Result<Vec<PathBuf>> {
        self.unpack(image)?;
        Ok(image
            .chain_ids()?
            .iter()
            .map(|c| self.snapshots.fs_path(c))
            .collect())
    }

    /// Total unpacked size of an image (like docker's SIZE), falling back to blob sizes.
    pub fn image_size(&self, image: &Image) -> u64 {
        let Ok(chains) = image.chain_ids() else {
            return 0;
        };
        chains
            .iter()
            .zip(image.manifest.layers())
            .map(|(c, l)| match self.snapshots.info(c) {
                Ok(Some(i)) => i.size,
                _ => l.size(),
            })
            .sum()
    }

    /// Point `target` at the image `source` resolves to (docker tag).
    pub fn tag(&self, source: &str, target: &str) -> Result<Image> {
        let img = self.resolve_image(source)?;
        let r = ImageRef::parse(target)?;
        let t = r.tagged().ok_or_else(|| Error::InvalidReference {
            reference: target.to_string(),
            reason: "a tag target cannot be a digest".into(),
        })?;
        self.meta()?.set_tag(&t, &img.manifest_digest.to_string())?;
        self.resolve_image(&img.manifest_digest.to_string())
    }

    /// Record that `owner` (e.g. `registry:app`) references these blobs: GC keeps them.
    pub fn add_blob_refs(&self, owner: &str, digests: &[Digest]) -> Result<()> {
        let ds: Vec<String> = digests.iter().map(|d| d.to_string()).collect();
        self.meta()?.add_blob_refs(owner, &ds)
    }

    /// Drop `owner`'s references to these blobs (all of them when `None`).
    pub fn remove_blob_refs(&self, owner: &str, digests: Option<&[Digest]>) -> Result<()> {
        let ds: Option<Vec<String>> = digests.map(|v| v.iter().map(|d| d.to_string()).collect());
        self.meta()?.remove_blob_refs(owner, ds.as_deref())
    }

    pub fn add_usage(&self, image_id: &str, owner: &str) -> Result<()> {
        self.meta()?.add_usage(image_id, owner)
    }
    pub fn remove_usage(&self, image_id: &str, owner: &str) -> Result<()> {
        self.meta()?.remove_usage(image_id, owner)
    }
    pub fn users(&self, image: &Image) -> Result<Vec<String>> {
        self.meta()?
            .users(&[&image.id, &image.manifest_digest.to_string()])
    }

    /// docker rmi: untag `reference`; when it named the image by ID/digest, or it was the
    /// last tag, delete the image. Refuses an image in use unless `force`.
    /// Returns lines like docker's ("Untagged: …", "Deleted: …").
    pub fn remove_image(&self, reference: &str, force: bool) -> Result<Vec<String>> {
        let img = self.resolve_image(reference)?;
        let users = self.users(&img)?;
        let mut out = Vec::new();
        let by_tag = ImageRef::parse(reference)
            .ok()
            .and_then(|r| {
                if r.digest().is_none() {
                    r.tagged()
                } else {
                    None
                }
            })
            .filter(|t| img.tags.contains(t));
        let delete_all = match &by_tag {
            Some(_) if img.tags.len() > 1 => false,
            Some(_) => true,
            None => {
                if img.tags.len() > 1 && !force {
                    return Err(Error::invalid(
                        format!("image {}", img.short_id()),
                        format!("it is referenced in multiple repositories ({}); remove by name or use -f", img.tags.len()),
                    ));
                }
                true
            }
        };
        if delete_all && !users.is_empty() && !force {
            return Err(Error::ImageInUse {
                image: reference.to_string(),
                users: users.join(", "),
            });
        }
        let mut m = self.meta()?;
        if let Some(t) = by_tag.filter(|_| !delete_all) {
            m.remove_tag(&t)?;
            out.push(format!("Untagged: {}", crate::reference::familiar(&t)));
            return Ok(out);
        }
        for t in &img.tags {
            out.push(format!("Untagged: {}", crate::reference::familiar(t)));
        }
        m.remove_image(&img.manifest_digest.to_string())?;
        out.push(format!("Deleted: {}", img.id));
        Ok(out)
    }

    /// Remove images with no tag (docker image prune), or every image no container uses (`all`).
    pub fn prune_images(&self, all: bool) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for img in self.list_images()? {
            if (!img.tags.is_empty() && !all) || !self.users(&img)?.is_empty() {
                continue;
            }
            for t in &img.tags {
                out.push(format!("untagged: {}", crate::reference::familiar(t)));
            }
            self.meta()?
                .remove_image(&img.manifest_digest.to_string())?;
            out.push(format!("deleted: {}", img.id));
        }
        Ok(out)
    }

    /// Garbage-collect blobs and snapshots that no image, container or live lease uses.
    pub fn gc(&self) -> Result<GcReport> {
        // A blob touched after this instant may belong to an operation that will record
        // its reference right after our reads (e.g. a registry commit in another process):
        // it is kept. Anything touched before now is covered by the leases read below.
        let started_ms = now_ms() - 5;
        let oldest_lease = self.meta()?.oldest_live_lease()?;
        let (rows, usage, refs) = {
            let m = self.meta()?;
            (m.images()?, m.all_usage()?, m.all_blob_refs()?)
        };
        let mut keep_blobs: HashSet<Digest> = HashSet::new();
        let mut keep_chains: HashSet<Digest> = HashSet::new();
        keep_blobs.extend(refs.iter().filter_map(|d| d.parse::<Digest>().ok()));
        let used: BTreeSet<&str> = usage.iter().map(|(i, _)| i.as_str()).collect();
        for row in &rows {
            if let Ok(md) = row.manifest_digest.parse::<Digest>() {
                keep_blobs.insert(md);
            }
            match self.load_image(row, vec![]) {
                Ok(img) => {
                    keep_blobs.insert(img.config_digest.clone());
                    if let Ok(ls) = img.layer_digests() {
                        keep_blobs.extend(ls);
                    }
                    if let Ok(cs) = img.chain_ids() {
                        keep_chains.extend(cs);
                    }
                }
                Err(e) => tracing::warn!("gc: image {} unreadable: {e}", row.manifest_digest),
            }
        }
        // Images removed (rmi -f) while a container still uses them keep their blobs and
        // snapshots through usage: the key is an image ID (config) or a manifest digest.
        for u in used {
            let Ok(d) = u.parse::<Digest>() else { continue };
            keep_blobs.insert(d.clone());
            let Ok(bytes) = self.blobs.read(&d) else {
                continue;
            };
            let (config, layers) = match serde_json::from_slice::<ImageManifest>(&bytes) {
                Ok(m) => {
                    let Ok(cd) = Digest::try_from(m.config().digest()) else {
                        continue;
                    };
                    keep_blobs.insert(cd.clone());
                    for l in m.layers() {
                        if let Ok(ld) = Digest::try_from(l.digest()) {
                            keep_blobs.insert(ld);
                        }
                    }
                    (self.blobs.read(&cd).ok(), true)
                }
                Err(_) => (Some(bytes), false),
            };
            let Some(cfg) =
                config.and_then(|b| serde_json::from_slice::<ImageConfiguration>(&b).ok())
            else {
                continue;
            };
            let diffs: Vec<Digest> = cfg
                .rootfs()
                .diff_ids()
                .iter()
                .filter_map(|d| d.parse().ok())
                .collect();
            keep_chains.extend(chain_ids(&diffs));
            if !layers {
                // Known only by config: keep every layer blob whose manifest used this config.
                for row in rows.iter().filter(|r| r.config_digest == u) {
                    if let Ok(img) = self.load_image(row, vec![]) {
                        keep_blobs.extend(img.layer_digests().unwrap_or_default());
                    }
                }
            }
        }
        let mut report = GcReport::default();
        let cutoff_ms = oldest_lease.map(|t| t - 2000);
        for b in self.blobs.list()? {
            if keep_blobs.contains(&b.digest) {
                continue;
            }
            let mtime_ms = b
                .modified
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            if mtime_ms >= started_ms || matches!(cutoff_ms, Some(c) if mtime_ms >= c) {
                continue;
            }
            if self.blobs.delete(&b.digest)? {
                report.blobs_removed += 1;
                report.bytes_freed += b.size;
            }
        }
        if oldest_lease.is_none() {
            for s in self.snapshots.list()? {
                if keep_chains.contains(&s.chain_id) {
                    continue;
                }
                self.snapshots.remove(&s.chain_id)?;
                report.snapshots_removed += 1;
                report.bytes_freed += s.size;
            }
        }
        Ok(report)
    }
}
