//! On-disk layout of containers under the root, atomic JSON files, the name index and
//! liveness checks (pid + start time, so a reused pid is never mistaken for ours).
//!
//! ```text
//! <root>/containers/<id>/config.json   ContainerConfig (written once)
//!                        state.json    ContainerState (shim-owned after create)
//!                        bundle/       OCI bundle (config.json + rootfs mount point)
//!                        upper/ work/  overlay rw layer
//!                        lc/           libcontainer state
//!                        hosts hostname resolv.conf
//!                        container.log JSON lines (+ .1 … rotated)
//!                        stop-requested marker
//! <root>/names/<name>                  contains the id; created with O_EXCL
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{IoCtx, Result, RuntimeError};
use crate::model::{ContainerConfig, ContainerState, Status};

/// Paths of one container.
#[derive(Debug, Clone)]
pub struct ContainerDir {
    pub dir: PathBuf,
}

impl ContainerDir {
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("bundle/rootfs")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    pub fn lc_root(&self) -> PathBuf {
        self.dir.join("lc")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("container.log")
    }
    pub fn stop_marker(&self) -> PathBuf {
        self.dir.join("stop-requested")
    }
    pub fn shim_log(&self) -> PathBuf {
        self.dir.join("shim.log")
    }
}

/// Write `value` as JSON to `path` via a temp file + rename.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let data = serde_json::to_vec_pretty(value).map_err(|source| RuntimeError::Json {
        path: path.to_owned(),
        source,
    })?;
    let mut f = std::fs::File::create(&tmp).at(&tmp)?;
    f.write_all(&data).at(&tmp)?;
    drop(f);
    std::fs::rename(&tmp, path).at(path)
}

fn write_atomic_bytes(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, data).at(&tmp)?;
    std::fs::rename(&tmp, path).at(path)
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let data = std::fs::read(path).at(path)?;
    serde_json::from_slice(&data).map_err(|source| RuntimeError::Json {
        path: path.to_owned(),
        source,
    })
}

/// Start time (clock ticks since boot) of `pid`, or `None` when it does not exist.
pub fn pid_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces/parens: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); starttime is field 22.
    if f.first() == Some(&"Z") || f.first() == Some(&"X") {
        return None;
    }
    f.get(19)?.parse().ok()
}

/// Is the process `pid` that started at `start` still alive?
pub fn alive(pid: Option<i32>, start: Option<u64>) -> bool {
    match (pid, start) {
        (Some(p), Some(s)) if p > 0 => pid_start_time(p) == Some(s),
        _ => false,
    }
}

/// The containers part of a root.
#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
}

impl Store {
    pub fn open(root: &Path) -> Result<Self> {
        for d in ["containers", "names", "volumes"] {
            let p = root.join(d);
            std::fs::create_dir_all(&p).at(&p)?;
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    pub fn dir(&self, id: &str) -> ContainerDir {
        ContainerDir {
            dir: self.root.join("containers").join(id),
        }
    }

    fn name_file(&self, name: &str) -> PathBuf {
        self.root.join("names").join(name)
    }

    /// Reserve `name` for `id`. Callers create the container dir first, so a name whose
    /// container dir is gone is stale and may be taken over; the whole check runs under an
    /// exclusive `flock` so two runs can never both win.
    pub fn reserve_name(&self, name: &str, id: &str) -> Result<()> {
        let lock_path = self.root.join("names/.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .at(&lock_path)?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| crate::error::sys("flock names", e))?;
        let p = self.name_file(name);
        if let Ok(other) = std::fs::read_to_string(&p) {
            if !other.is_empty() && self.dir(&other).dir.exists() {
                return Err(RuntimeError::NameInUse {
                    name: name.to_owned(),
                    id: other,
                });
            }
        }
        write_atomic_bytes(&p, id.as_bytes())
    }

    pub fn release_name(&self, name: &str, id: &str) {
        let p = self.name_file(name);
        if std::fs::read_to_string(&p).ok().as_deref() == Some(id) {
            let _ = std::fs::remove_file(&p);
        }
    }

    pub fn ids(&self) -> Result<Vec<String>> {
        let d = self.root.join("containers");
        let mut ids = Vec::new();
        for e in std::fs::read_dir(&d).at(&d)? {
            let e = e.at(&d)?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && e.path().join("config.json").exists() {
                ids.push(name);
            }
        }
        Ok(ids)
    }

    /// Resolve a name, full id or unique id prefix.
    pub fn resolve(&self, reference: &str) -> Result<String> {
        if reference.is_empty() {
            return Err(RuntimeError::NotFound(reference.to_owned()));
        }
        if crate::valid_name(reference) {
            if let Ok(id) = std::fs::read_to_string(self.name_file(reference)) {
                if self.dir(&id).config().exists() {
                    return Ok(id);
                }
            }
        }
        if reference.len() == 64 && self.dir(reference).config().exists() {
            return Ok(reference.to_owned());
        }
        // Names only, then a stat of the few that match (not one per container: `rm` of
        // many short ids would be quadratic in stats).
        let d = self.root.join("containers");
        let mut matches = Vec::new();
        for e in std::fs::read_dir(&d).at(&d)? {
            let name = e.at(&d)?.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.')
                && name.starts_with(reference)
                && self.dir(&name).config().exists()
            {
                matches.push(name);
            }
        }
        match matches.len() {
            0 => Err(RuntimeError::NotFound(reference.to_owned())),
            1 => Ok(matches.into_iter().next().unwrap_or_default()),
            _ => Err(RuntimeError::Ambiguous(reference.to_owned())),
        }
    }

    pub fn load_config(&self, id: &str) -> Result<ContainerConfig> {
        let p = self.dir(id).config();
        if !p.exists() {
            return Err(RuntimeError::NotFound(id.to_owned()));
        }
        read_json(&p)
    }

    pub fn load_state(&self, id: &str) -> Result<ContainerState> {
        let p = self.dir(id).state();
        if !p.exists() {
            return Ok(ContainerState::default());
        }
        read_json(&p)
    }

    pub fn save_state(&self, id: &str, state: &ContainerState) -> Result<()> {
        write_json_atomic(&self.dir(id).state(), state)
    }

    /// The state with liveness applied: an active container whose shim is gone is `Dead`.
    pub fn live_state(&self, id: &str) -> Result<ContainerState> {
        let mut st = self.load_state(id)?;
        if st.status.is_active() && !alive(st.shim_pid, st.shim_start) {
            // The shim may have finished writing between our read and the check.
            st = self.load_state(id)?;
            if st.status.is_active() && !alive(st.shim_pid, st.shim_start) {
                st.status = Status::Dead;
            }
        }
        Ok(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_name_reservation_has_one_winner() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let wins: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|i| {
                    let store = store.clone();
                    s.spawn(move || {
                        let id = format!("id{i}");
                        std::fs::create_dir_all(store.dir(&id).dir).unwrap();
                        usize::from(store.reserve_name("web", &id).is_ok())
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(wins, 1);
        // A name whose container dir is gone is free again.
        let owner = std::fs::read_to_string(d.path().join("names/web")).unwrap();
        std::fs::remove_dir_all(store.dir(&owner).dir).unwrap();
        std::fs::create_dir_all(store.dir("fresh").dir).unwrap();
        store.reserve_name("web", "fresh").unwrap();
        assert!(matches!(
            store.reserve_name("web", "id0"),
            Err(RuntimeError::NameInUse { .. })
        ));
    }

    #[test]
    fn liveness_uses_start_time() {
        let me = std::process::id() as i32;
        let start = pid_start_time(me);
        assert!(start.is_some());
        assert!(alive(Some(me), start));
        assert!(!alive(Some(me), start.map(|s| s + 1)));
        assert!(!alive(None, None));
    }
}
