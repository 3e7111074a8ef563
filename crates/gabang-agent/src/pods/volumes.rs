//! The pod's volumes on the host, under `<root>/pods/<uid>/volumes/<name>`: emptyDir (a
//! tmpfs for `medium: Memory`), configMap/secret files written with the `..data` swap on
//! every sync (so updates reach running pods), hostPath as is (only when allowed).

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

use crate::podspec::{self, PlanError, RefSource, VolumeKind};

/// Volume name → host dir, or why containers cannot be made yet.
pub(super) struct Volumes {
    pub dirs: BTreeMap<String, PathBuf>,
    pub error: Option<PlanError>,
}

pub(super) fn ensure(
    pod: &Pod,
    pod_dir: &Path,
    refs: &dyn RefSource,
    allow_host_path: bool,
) -> Volumes {
    let plans = match podspec::plan_volumes(pod, refs, allow_host_path) {
        Ok(p) => p,
        Err(e) => {
            return Volumes {
                dirs: BTreeMap::new(),
                error: Some(e),
            }
        }
    };
    let mut dirs = BTreeMap::new();
    for v in plans {
        let field = format!("spec.volumes[{}]", v.name);
        let dir = pod_dir.join("volumes").join(&v.name);
        let r = match &v.kind {
            VolumeKind::EmptyDir { memory, size_limit } => {
                empty_dir(&dir, *memory, *size_limit).map(|()| dir)
            }
            VolumeKind::Projected { files } => std::fs::create_dir_all(&dir)
                .and_then(|()| podspec::write_projected(&dir, files))
                .map(|_| dir),
            VolumeKind::HostPath { path } => Ok(path.clone()),
        };
        match r {
            Ok(d) => {
                dirs.insert(v.name.clone(), d);
            }
            Err(e) => {
                return Volumes {
                    dirs,
                    error: Some(PlanError::Invalid {
                        field,
                        message: format!(
                            "{}: {e}",
                            pod_dir.join("volumes").join(&v.name).display()
                        ),
                    }),
                }
            }
        }
    }
    Volumes { dirs, error: None }
}

fn empty_dir(dir: &Path, memory: bool, size_limit: Option<i64>) -> std::io::Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        // World-writable like the kubelet's, so any container user can use it.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
    }
    if memory && !is_mountpoint(dir) {
        let mut data = "mode=0777".to_owned();
        if let Some(s) = size_limit.filter(|s| *s > 0) {
            data.push_str(&format!(",size={s}"));
        }
        let data = std::ffi::CString::new(data).map_err(std::io::Error::other)?;
        rustix::mount::mount(
            "tmpfs",
            dir,
            "tmpfs",
            rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV,
            data.as_c_str(),
        )
        .map_err(std::io::Error::from)?;
    }
    Ok(())
}

/// Is `dir` the root of a mount (its device differs from its parent's)?
pub(super) fn is_mountpoint(dir: &Path) -> bool {
    match (std::fs::metadata(dir), dir.parent().map(std::fs::metadata)) {
        (Ok(a), Some(Ok(b))) => a.dev() != b.dev(),
        _ => false,
    }
}
