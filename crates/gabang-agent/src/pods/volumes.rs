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

/// Check (and make) a mount source inside the pod's volumes before it is bind-mounted: a
/// `subPath` must not lead out of its volume through a symlink a container planted in a
/// writable volume (`ln -s / /data/x` + `subPath: x`). Symlinks that stay inside the volume
/// (a configMap key → `..data/key`) are fine. Missing directories are made one component at
/// a time, never through a symlink. Sources outside `pod_dir` (hostPath) are the admin's.
pub(super) fn check_mount_source(pod_dir: &Path, host_path: &Path) -> Result<(), String> {
    let vols = pod_dir.join("volumes");
    let Ok(rel) = host_path.strip_prefix(&vols) else {
        return Ok(());
    };
    let mut comps = rel.components();
    let Some(std::path::Component::Normal(name)) = comps.next() else {
        return Err(format!(
            "mount source {} is not a volume",
            host_path.display()
        ));
    };
    let vol_dir = vols.join(name);
    let vol_real = std::fs::canonicalize(&vol_dir)
        .map_err(|e| format!("volume {}: {e}", vol_dir.display()))?;
    let mut cur = vol_dir.clone();
    for c in comps {
        let std::path::Component::Normal(c) = c else {
            return Err(format!(
                "subPath of {} leaves its volume",
                host_path.display()
            ));
        };
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                let real = std::fs::canonicalize(&cur)
                    .map_err(|e| format!("subPath {}: {e}", cur.display()))?;
                if !real.starts_with(&vol_real) {
                    return Err(format!(
                        "subPath {} is a symlink out of volume {:?}",
                        cur.display(),
                        name
                    ));
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&cur).map_err(|e| format!("subPath {}: {e}", cur.display()))?;
            }
            Err(e) => return Err(format!("subPath {}: {e}", cur.display())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod mount_source_tests {
    use super::check_mount_source;

    #[test]
    fn a_sub_path_never_leaves_its_volume_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let pod = d.path();
        let vol = pod.join("volumes/data");
        std::fs::create_dir_all(vol.join("..data")).unwrap();
        std::fs::write(vol.join("..data/key"), "v").unwrap();
        std::os::unix::fs::symlink("..data/key", vol.join("key")).unwrap();
        std::os::unix::fs::symlink("/", vol.join("root")).unwrap();
        std::os::unix::fs::symlink("/etc", vol.join("..data/etc")).unwrap();
        // a container-planted link to / is refused, directly or deeper
        assert!(check_mount_source(pod, &vol.join("root")).is_err());
        assert!(check_mount_source(pod, &vol.join("root/etc")).is_err());
        assert!(check_mount_source(pod, &vol.join("..data/etc/cron.d")).is_err());
        // a link inside the volume (configMap key) is fine; missing dirs are made
        assert!(check_mount_source(pod, &vol.join("key")).is_ok());
        assert!(check_mount_source(pod, &vol.join("a/b")).is_ok());
        assert!(vol.join("a/b").is_dir());
        // hostPath sources are not ours to judge
        assert!(check_mount_source(pod, std::path::Path::new("/srv/x")).is_ok());
    }
}
