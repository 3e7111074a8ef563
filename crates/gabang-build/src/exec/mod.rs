//! The real [`StepExecutor`]: build states are snapshots of the content store
//! (a [`StateId`] is the chain id of the top layer, or `scratch`), RUN runs in
//! a container of `gabang-runtime` over the parent's snapshot dirs and its
//! upper dir becomes the layer (whiteouts included) and the new snapshot;
//! COPY/ADD/WORKDIR write a layer directory directly, no container.
//!
//! RUN's network defaults to `host` (the build reaches what the host reaches;
//! `/etc/resolv.conf` is the host's); `RUN --network=none` isolates a step.
//!
//! Layers are stored as uncompressed tars (like docker's local layer store:
//! compressing 256 MiB costs more than the rest of the step).
//!
//! Every layer made here is recorded in `<root>/build/layers/<diff id>.json`
//! (blob digest, size, media type) so a cached state can be turned into an
//! image later without redoing anything: see [`StoreExecutor::image_layers`].

pub mod copy;
pub mod view;

use crate::cache::LayerInfo;
use crate::config::ExtraConfig;
use crate::plan::{
    BaseImage, CopyFrom, CopyRequest, ExecError, Platform, Progress, RunRequest, StateId,
    StepExecutor, StepOutput,
};
use copy::{resolve_chown, LayerWriter, Owner};
use gabang_content::layer::diff::write_layer;
use gabang_content::layer::Compression;
use gabang_content::snapshot::SnapshotInfo;
use gabang_content::{Digest, NewLayer, Store};
use gabang_runtime::{Attach, CreateRequest, NetworkMode, RunOptions, Runtime, VolumeSpec};
use oci_spec::image::ImageConfiguration;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use view::MergedView;

/// Where progress and RUN output go.
pub trait BuildSink: Sync {
    fn progress(&self, event: &Progress<'_>);
    /// One line of a RUN step's output.
    fn output(&self, line: &str);
}

pub struct StoreExecutor<'a> {
    store: &'a Store,
    runtime: &'a Runtime,
    sink: &'a dyn BuildSink,
    layers: Mutex<HashMap<String, NewLayer>>,
    meta_dir: PathBuf,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LayerRecord {
    digest: String,
    size: u64,
    media_type: String,
}

fn xerr(message: impl Into<String>) -> ExecError {
    ExecError {
        message: message.into(),
        ..Default::default()
    }
}

const SCRATCH: &str = "scratch";

impl<'a> StoreExecutor<'a> {
    pub fn new(
        store: &'a Store,
        runtime: &'a Runtime,
        sink: &'a dyn BuildSink,
    ) -> Result<Self, ExecError> {
        let meta_dir = store.root().join("build/layers");
        std::fs::create_dir_all(&meta_dir)
            .map_err(|e| xerr(format!("create {}: {e}", meta_dir.display())))?;
        Ok(StoreExecutor {
            store,
            runtime,
            sink,
            layers: Mutex::new(HashMap::new()),
            meta_dir,
        })
    }

    /// Snapshot dirs of a state, bottom → top.
    pub fn state_dirs(&self, state: &StateId) -> Result<Vec<PathBuf>, ExecError> {
        if state.0 == SCRATCH {
            return Ok(vec![]);
        }
        let mut chain: Digest = state
            .0
            .parse()
            .map_err(|_| xerr(format!("bad build state {}", state.0)))?;
        let mut out = Vec::new();
        loop {
            let info = self
                .store
                .snapshots()
                .info(&chain)
                .map_err(|e| xerr(e.to_string()))?
                .ok_or_else(|| xerr(format!("snapshot {chain} is gone (pruned?)")))?;
            out.push(self.store.snapshots().fs_path(&chain));
            match info.parent {
                Some(p) => chain = p,
                None => break,
            }
        }
        out.reverse();
        Ok(out)
    }

    fn view(&self, state: &StateId) -> Result<MergedView, ExecError> {
        Ok(MergedView::new(&self.state_dirs(state)?))
    }

    /// The layers (for the manifest) of an image config built here.
    pub fn image_layers(&self, config: &ImageConfiguration) -> Result<Vec<NewLayer>, ExecError> {
        let known = self.layers.lock().map_err(|_| xerr("lock"))?.clone();
        config
            .rootfs()
            .diff_ids()
            .iter()
            .map(|d| {
                if let Some(l) = known.get(d) {
                    return Ok(l.clone());
                }
                let diff: Digest = d.parse().map_err(|_| xerr(format!("bad diff id {d}")))?;
                let rec = self
                    .record(&diff)
                    .ok_or_else(|| xerr(format!("layer {d} is not known to the build cache")))?;
                Ok(NewLayer {
                    digest: rec.digest.parse().map_err(|_| xerr("bad layer record"))?,
                    size: rec.size,
                    media_type: rec.media_type,
                    diff_id: diff,
                })
            })
            .collect()
    }

    fn record(&self, diff: &Digest) -> Option<LayerRecord> {
        let b = std::fs::read(self.meta_dir.join(format!("{}.json", diff.hex()))).ok()?;
        serde_json::from_slice(&b).ok()
    }

    /// Turn a filled staging dir into a layer + snapshot on top of `parent`.
    fn commit(
        &self,
        parent: &StateId,
        staging: gabang_content::snapshot::Staging,
    ) -> Result<StepOutput, ExecError> {
        let dir = staging.fs();
        let empty = std::fs::read_dir(&dir)
            .map(|mut r| r.next().is_none())
            .unwrap_or(true);
        if empty {
            return Ok(StepOutput {
                state: parent.clone(),
                layer: None,
            });
        }
        let blob = write_layer(self.store.blobs(), &dir, Compression::None)
            .map_err(|e| xerr(format!("write layer: {e}")))?;
        let parent_chain: Option<Digest> = if parent.0 == SCRATCH {
            None
        } else {
            Some(parent.0.parse().map_err(|_| xerr("bad parent state"))?)
        };
        let chain = match &parent_chain {
            None => blob.diff_id.clone(),
            Some(p) => Digest::sha256_of(format!("{p} {}", blob.diff_id).as_bytes()),
        };
        let rec = LayerRecord {
            digest: blob.digest.to_string(),
            size: blob.size,
            media_type: blob.media_type.clone(),
        };
        let path = self.meta_dir.join(format!("{}.json", blob.diff_id.hex()));
        let tmp = path.with_extension(format!("tmp{}", rand_suffix()));
        let bytes = serde_json::to_vec(&rec).map_err(|e| xerr(e.to_string()))?;
        std::fs::write(&tmp, bytes)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| xerr(format!("write {}: {e}", path.display())))?;
        if !self.store.snapshots().exists(&chain) {
            let info = SnapshotInfo {
                chain_id: chain.clone(),
                parent: parent_chain,
                diff_id: blob.diff_id.clone(),
                size: blob.tar_size,
                tar_size: blob.tar_size,
            };
            self.store
                .snapshots()
                .commit(staging, &info)
                .map_err(|e| xerr(format!("commit snapshot: {e}")))?;
        }
        let nl = NewLayer::from(&blob);
        if let Ok(mut m) = self.layers.lock() {
            m.insert(blob.diff_id.to_string(), nl);
        }
        Ok(StepOutput {
            state: StateId(chain.to_string()),
            layer: Some(LayerInfo {
                diff_id: blob.diff_id.to_string(),
                blob_digest: Some(blob.digest.to_string()),
                size: blob.size,
            }),
        })
    }

    fn stage(&self) -> Result<gabang_content::snapshot::Staging, ExecError> {
        self.store
            .snapshots()
            .stage()
            .map_err(|e| xerr(format!("staging: {e}")))
    }
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    n ^ (std::process::id() as u64) << 32
}

/// Remove what the runtime itself put into the upper dir (mount points for
/// `/etc/hosts` & co, `/proc`, `/sys`, `/dev`) when the image did not have them.
fn prune_runtime_artefacts(upper: &Path, base: &MergedView) {
    for f in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
        let p = upper.join(f);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file() && m.len() == 0)
            && base.lookup(f).is_none()
        {
            let _ = std::fs::remove_file(&p);
        }
    }
    for d in [
        "dev/pipes",
        "dev/shm",
        "dev/pts",
        "dev/mqueue",
        "dev",
        "proc",
        "sys",
        "etc",
    ] {
        let p = upper.join(d);
        let empty = std::fs::read_dir(&p).is_ok_and(|mut r| r.next().is_none());
        if !empty {
            continue;
        }
        let same = match (std::fs::symlink_metadata(&p), base.metadata(d)) {
            (Ok(a), Some((_, b))) => {
                use std::os::unix::fs::MetadataExt;
                b.is_dir() && a.mode() == b.mode() && a.uid() == b.uid() && a.gid() == b.gid()
            }
            (Ok(_), None) => d != "etc",
            _ => false,
        };
        let opaque = {
            let mut buf = [0u8; 2];
            rustix::fs::lgetxattr(&p, "trusted.overlay.opaque", &mut buf).is_ok()
        };
        if same && !opaque {
            let _ = std::fs::remove_dir(&p);
        }
    }
}

/// Last `n` lines of a container's JSON log.
fn log_lines(bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for l in bytes.split(|&b| b == b'\n') {
        if l.is_empty() {
            continue;
        }
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(l) {
            if let Some(s) = v.get("log").and_then(|x| x.as_str()) {
                out.push(s.trim_end_matches('\n').to_string());
            }
        }
    }
    out
}

impl StepExecutor for StoreExecutor<'_> {
    fn resolve_image(&self, reference: &str, platform: &Platform) -> Result<BaseImage, ExecError> {
        let img = self.store.resolve_image(reference).map_err(|e| {
            xerr(format!(
                "{e} (this build runs offline: `gabang import`/`gabang load` the base image first)"
            ))
        })?;
        let os = img.config.os().to_string();
        let arch = img.config.architecture().to_string();
        if !os.is_empty() && os != platform.os || !arch.is_empty() && arch != platform.arch {
            self.sink.progress(&Progress::Warning(&format!(
                "image {reference} is {os}/{arch}, not the requested {platform}"
            )));
        }
        let infos = self
            .store
            .unpack(&img)
            .map_err(|e| xerr(format!("unpack {reference}: {e}")))?;
        let layers = img.layer_digests().map_err(|e| xerr(e.to_string()))?;
        if let Ok(mut m) = self.layers.lock() {
            for ((info, d), l) in infos.iter().zip(layers).zip(img.manifest.layers()) {
                m.insert(
                    info.diff_id.to_string(),
                    NewLayer {
                        digest: d,
                        size: l.size(),
                        media_type: l.media_type().to_string(),
                        diff_id: info.diff_id.clone(),
                    },
                );
            }
        }
        let state = match infos.last() {
            Some(i) => StateId(i.chain_id.to_string()),
            None => StateId(SCRATCH.into()),
        };
        let raw: serde_json::Value =
            serde_json::from_slice(&img.config_bytes).unwrap_or(serde_json::Value::Null);
        Ok(BaseImage {
            id: img.manifest_digest.to_string(),
            config: img.config.clone(),
            extra: ExtraConfig::from_config_json(&raw),
            state,
        })
    }

    fn scratch(&self) -> Result<StateId, ExecError> {
        Ok(StateId(SCRATCH.into()))
    }

    fn run(&self, req: &RunRequest) -> Result<StepOutput, ExecError> {
        let mut lower = self.state_dirs(&req.state)?;
        let base = MergedView::new(&lower);
        let tmp = self
            .store
            .tempdir()
            .map_err(|e| xerr(format!("temp dir: {e}")))?;
        if lower.is_empty() {
            let e = tmp.path().join("empty");
            std::fs::create_dir_all(&e).map_err(|e| xerr(e.to_string()))?;
            lower.push(e);
        }
        let mut volumes = Vec::new();
        if !req.files.is_empty() {
            let pipes = tmp.path().join("pipes");
            std::fs::create_dir_all(&pipes).map_err(|e| xerr(e.to_string()))?;
            for f in &req.files {
                let name = f.path.rsplit('/').next().unwrap_or("script");
                let p = pipes.join(name);
                std::fs::write(&p, &f.content).map_err(|e| xerr(e.to_string()))?;
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(f.mode));
            }
            volumes.push(VolumeSpec {
                source: pipes.display().to_string(),
                destination: "/dev/pipes".into(),
                read_only: true,
            });
        }
        let network = match req.network.as_deref() {
            None | Some("default") | Some("host") => NetworkMode::Host,
            Some("none") => NetworkMode::None,
            Some(other) => {
                return Err(xerr(format!(
                    "RUN --network={other}: expected default, none or host"
                )))
            }
        };
        if !req.mounts.is_empty() {
            return Err(xerr("RUN --mount is not supported by gabang build yet"));
        }
        let options = RunOptions {
            cmd: req.argv.clone(),
            entrypoint: Some(String::new()),
            env: req.env.clone(),
            workdir: Some(if req.workdir.is_empty() {
                "/".into()
            } else {
                req.workdir.clone()
            }),
            user: req.user.clone(),
            network,
            volumes,
            ..Default::default()
        };
        let id = self
            .runtime
            .create(CreateRequest {
                image: format!("build step {}", &req.cache_key),
                image_id: String::new(),
                lower_dirs: lower,
                image_config: ImageConfiguration::default(),
                options,
            })
            .map_err(|e| xerr(format!("create the build container: {e}")))?;
        let result = self.run_container(&id, &base, &req.state);
        let _ = self.runtime.remove(&id, true);
        result
    }

    fn copy(&self, req: &CopyRequest) -> Result<StepOutput, ExecError> {
        let base = self.view(&req.state)?;
        let owner = match &req.chown {
            Some(c) => Some(resolve_chown(&base, c).map_err(xerr)?),
            None => None,
        };
        let chmod = match &req.chmod {
            Some(m) => {
                Some(u32::from_str_radix(m, 8).map_err(|_| xerr(format!("bad --chmod {m}")))?)
            }
            None => None,
        };
        let staging = self.stage()?;
        let dir = staging.fs();
        let w = LayerWriter {
            dir: &dir,
            base: &base,
            owner,
            chmod,
        };
        match &req.from {
            CopyFrom::Context {
                root,
                items,
                entries,
            } => w.copy_context(root, items, entries, req.add),
            CopyFrom::Inline { files } => w.copy_inline(files),
            CopyFrom::State { state, paths, dest } => {
                let src = self.view(state)?;
                w.copy_state(&src, paths, dest)
            }
        }
        .map_err(xerr)?;
        self.commit(&req.state, staging)
    }

    fn mkdir_workdir(
        &self,
        state: &StateId,
        path: &str,
        _user: Option<&str>,
    ) -> Result<Option<StepOutput>, ExecError> {
        let base = self.view(state)?;
        let canon = base.resolve(path, true);
        if base.is_dir(&canon) {
            return Ok(None);
        }
        let staging = self.stage()?;
        let dir = staging.fs();
        let w = LayerWriter {
            dir: &dir,
            base: &base,
            owner: None,
            chmod: None,
        };
        w.ensure_parents(&canon).map_err(xerr)?;
        w.put_dir(&canon, 0o755, Owner { uid: 0, gid: 0 }, None)
            .map_err(xerr)?;
        self.commit(state, staging).map(Some)
    }

    fn has_state(&self, state: &StateId) -> bool {
        if state.0 == SCRATCH {
            return true;
        }
        let Ok(dirs) = self.state_dirs(state) else {
            return false;
        };
        if dirs.is_empty() {
            return false;
        }
        // the top layer's blob must still be there to make an image of it
        let Ok(chain) = state.0.parse::<Digest>() else {
            return false;
        };
        match self.store.snapshots().info(&chain) {
            Ok(Some(info)) => match self.record(&info.diff_id) {
                Some(rec) => rec
                    .digest
                    .parse::<Digest>()
                    .is_ok_and(|d| self.store.blobs().exists(&d)),
                None => true, // a base image's layer: the image holds it
            },
            _ => false,
        }
    }

    fn progress(&self, event: &Progress<'_>) {
        self.sink.progress(event)
    }
}

impl StoreExecutor<'_> {
    fn run_container(
        &self,
        id: &str,
        base: &MergedView,
        parent: &StateId,
    ) -> Result<StepOutput, ExecError> {
        let cdir = self.runtime.container_dir(id);
        let started = self
            .runtime
            .start(id, Attach::Detached)
            .map_err(|e| xerr(format!("start the build container: {e}")))?;
        let log_path = cdir.join("container.log");
        let done = std::sync::atomic::AtomicBool::new(false);
        let mut tail: Vec<String> = Vec::new();
        let code = std::thread::scope(|sc| {
            let follower = sc.spawn(|| {
                let mut pos = 0u64;
                let mut pending: Vec<u8> = Vec::new();
                let mut all: Vec<String> = Vec::new();
                loop {
                    let finished = done.load(std::sync::atomic::Ordering::Acquire);
                    if let Ok(mut f) = std::fs::File::open(&log_path) {
                        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                        if len < pos {
                            pos = 0; // rotated
                        }
                        if f.seek(SeekFrom::Start(pos)).is_ok() {
                            let mut buf = Vec::new();
                            if f.read_to_end(&mut buf).is_ok() {
                                pos += buf.len() as u64;
                                pending.extend_from_slice(&buf);
                            }
                        }
                    }
                    if let Some(cut) = pending.iter().rposition(|&b| b == b'\n') {
                        let chunk: Vec<u8> = pending.drain(..=cut).collect();
                        for l in log_lines(&chunk) {
                            self.sink.output(&l);
                            all.push(l);
                            if all.len() > 200 {
                                all.drain(..100);
                            }
                        }
                    }
                    if finished {
                        return all;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            });
            let code = started.wait();
            done.store(true, std::sync::atomic::Ordering::Release);
            tail = follower.join().unwrap_or_default();
            code
        });
        let code = code.map_err(|e| xerr(format!("build container: {e}")))?;
        if code != 0 {
            let n = tail.len().saturating_sub(20);
            return Err(ExecError {
                message: "the command returned a non-zero code".into(),
                exit_code: Some(code),
                output_tail: tail[n..].join("\n"),
            });
        }
        let upper = cdir.join("upper");
        prune_runtime_artefacts(&upper, base);
        let staging = self.stage()?;
        let dest = staging.fs();
        std::fs::remove_dir(&dest)
            .and_then(|_| std::fs::rename(&upper, &dest))
            .map_err(|e| xerr(format!("take the container's upper dir: {e}")))?;
        self.commit(parent, staging)
    }
}
